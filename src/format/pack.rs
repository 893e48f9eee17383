//! Pack layout (`data/<xx>/<id>`). See format-spec/05-packs.md.
//!
//! ```text
//! +------------+-----------------------------------+---------------+----------+--------+
//! | "CAIRNPK1" | frame* (len u32, kind u8, sealed) | sealed header | hlen u32 | "CPKT" |
//! | "CAIRNPK2" |                                   |               |          | "CPK2" |
//! +------------+-----------------------------------+---------------+----------+--------+
//! ```
//!
//! Layout 1 (repository format 1) seals every blob alone and lists 45-byte
//! entries. Layout 2 (format 2) may seal a *group* of consecutive blobs as
//! one unit (their plaintexts behind a table of lengths, compressed
//! together) and lists units, each with the ids and lengths of its blobs.

use super::wire::{Reader, Writer};
use crate::error::{Error, Result};
use crate::id::BlobKind;

pub const MAGIC: &[u8; 8] = b"CAIRNPK1";
pub const TRAILER_MAGIC: &[u8; 4] = b"CPKT";
/// Layout 2's magic and trailer magic.
pub const MAGIC_2: &[u8; 8] = b"CAIRNPK2";
pub const TRAILER_MAGIC_2: &[u8; 4] = b"CPK2";
/// Frame kinds of layout 2's groups (1 and 2 are single data and tree blobs).
pub const FRAME_DATA_GROUP: u8 = 3;
pub const FRAME_TREE_GROUP: u8 = 4;
/// Largest plaintext of a group holding more than one blob: a writer closes
/// a group once it reaches its target (1 MiB), so a group is at most the
/// target plus one chunk (16 MiB at most, format-spec/04-config.md).
pub const MAX_GROUP: usize = 32 << 20;

/// How a pack is laid out: by the repository's format version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PackLayout {
    /// Format 1: every blob sealed alone, 45-byte entries.
    V1,
    /// Format 2: blobs alone or in groups, entries listed by unit.
    V2,
}

impl PackLayout {
    pub fn magic(self) -> &'static [u8; 8] {
        match self {
            PackLayout::V1 => MAGIC,
            PackLayout::V2 => MAGIC_2,
        }
    }

    fn trailer_magic(self) -> &'static [u8; 4] {
        match self {
            PackLayout::V1 => TRAILER_MAGIC,
            PackLayout::V2 => TRAILER_MAGIC_2,
        }
    }

    /// The layout whose pack magic `m` is.
    pub fn from_magic(m: &[u8]) -> Option<Self> {
        [PackLayout::V1, PackLayout::V2].into_iter().find(|l| l.magic().as_slice() == m)
    }
}
/// `u32 header length` + trailer magic.
pub const TRAILER_LEN: usize = 8;
/// Bytes before each sealed blob: `u32 sealed length`, `u8 kind`.
pub const FRAME_LEN: usize = 5;
/// Bytes of one entry in a pack header or index.
pub const ENTRY_LEN: usize = 45;

/// Where one blob lies in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    pub kind: BlobKind,
    pub id: [u8; 32],
    /// Offset of the sealed unit (after its frame) from the start of the
    /// pack: the blob alone, or the group that holds it.
    pub offset: u32,
    /// Length of the sealed unit.
    pub length: u32,
    /// `None`: the unit is this blob alone. `Some(i)`: the unit is a group
    /// and the blob's plaintext starts at byte `i` of the group's plaintext.
    pub inner: Option<u32>,
    /// Length of the plaintext blob.
    pub raw_length: u32,
}

/// What names a sealed unit: its place, its length, and how it is sealed
/// (kind, alone or grouped). Entries that agree on all of it read the same
/// unit; a reader that keeps a unit open for the next entry compares this,
/// not the offset alone (a damaged index could give one offset two lengths).
pub type UnitKey = (u32, u32, u8, bool);

impl PackEntry {
    /// The unit this entry reads.
    pub fn unit_key(&self) -> UnitKey {
        (self.offset, self.length, self.kind as u8, self.inner.is_some())
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.put_u8(self.kind as u8);
        out.put(&self.id);
        out.put_u32(self.offset);
        out.put_u32(self.length);
        out.put_u32(self.raw_length);
    }

    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self> {
        let k = r.u8()?;
        let kind = BlobKind::from_u8(k).ok_or_else(|| Error::corrupt(format!("unknown blob kind {k}")))?;
        Ok(Self { kind, id: r.array()?, offset: r.u32()?, length: r.u32()?, inner: None, raw_length: r.u32()? })
    }

    /// End of the sealed blob within the pack.
    pub fn end(&self) -> u64 {
        self.offset as u64 + self.length as u64
    }
}

/// The entries of one group of `blobs` (id, raw length), in table order,
/// sealed as one unit at `offset` of `length` bytes: the one place that
/// says where a blob's plaintext starts in a group's plaintext.
pub fn group_entries(kind: BlobKind, offset: u32, length: u32, blobs: &[([u8; 32], u32)]) -> Vec<PackEntry> {
    let mut inner = 4 + 4 * blobs.len() as u64;
    blobs
        .iter()
        .map(|&(id, raw_length)| {
            // A group's plaintext is far below 4 GiB (MAX_GROUP); a forged
            // table that overflows gets offsets no group can satisfy.
            let e = PackEntry { kind, id, offset, length, inner: Some(inner.min(u32::MAX as u64) as u32), raw_length };
            inner += raw_length as u64;
            e
        })
        .collect()
}

/// A group's plaintext: `u32 n`, the `n` blobs' lengths (u32 each), then
/// their plaintexts one after another.
pub fn encode_group<B: AsRef<[u8]>>(blobs: &[B]) -> Vec<u8> {
    let total: usize = blobs.iter().map(|b| b.as_ref().len()).sum();
    let mut out = Vec::with_capacity(4 + 4 * blobs.len() + total);
    out.put_u32(blobs.len() as u32);
    for b in blobs {
        out.put_u32(b.as_ref().len() as u32);
    }
    for b in blobs {
        out.extend_from_slice(b.as_ref());
    }
    out
}

/// The blobs' plaintexts of a group, after checking that the table
/// accounts for every byte exactly.
pub fn decode_group(plain: &[u8]) -> Result<Vec<&[u8]>> {
    let mut r = Reader::new(plain, "group");
    let n = r.count(4)?;
    if n == 0 {
        return Err(Error::corrupt("group: no blobs"));
    }
    let mut lengths = Vec::with_capacity(n);
    for _ in 0..n {
        lengths.push(r.u32()? as usize);
    }
    let mut out = Vec::with_capacity(n);
    for l in lengths {
        out.push(r.bytes(l)?);
    }
    r.finish()?;
    Ok(out)
}

/// The plaintext of the blob at `inner` (of `raw_length` bytes) in a
/// group's plaintext: it must be exactly one of the table's blobs.
pub fn group_slice(plain: &[u8], inner: u32, raw_length: u32) -> Result<&[u8]> {
    let blobs = decode_group(plain)?;
    let mut start = 4 + 4 * blobs.len();
    for b in blobs {
        // (An empty blob starts where the next one does: both must match.)
        if start == inner as usize && b.len() == raw_length as usize {
            return Ok(b);
        }
        start += b.len();
    }
    Err(Error::corrupt(format!("no blob of {raw_length} bytes starts at byte {inner} of its group")))
}

/// Plaintext of a layout-2 pack header: `u32` unit count, then the units
/// (see [`put_units`]).
pub fn encode_header_2(entries: &[PackEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + entries.len() * 36 + 16);
    put_units(&mut out, entries);
    out
}

pub fn decode_header_2(bytes: &[u8]) -> Result<Vec<PackEntry>> {
    let mut r = Reader::new(bytes, "pack header");
    let out = get_units(&mut r)?;
    r.finish()?;
    Ok(out)
}

/// Bytes of the smallest unit (a single blob: kind, offset, length, id,
/// raw length).
pub const UNIT_LEN: usize = 45;

/// Units, as in a layout-2 header and an index version 3 pack record:
/// `u32 count`, then per unit `u8 frame kind`, `u32 offset`,
/// `u32 sealed length`, and for a single blob (kind 1 or 2) its
/// `[32] id` and `u32 raw length`; for a group (kind 3 or 4) `u32 n`
/// and `n` × (`[32] id`, `u32 raw length`) in table order. Consecutive
/// grouped entries at one offset form one unit.
pub fn put_units(out: &mut Vec<u8>, entries: &[PackEntry]) {
    let units = units_of(entries);
    out.put_u32(units.len() as u32);
    for u in units {
        let e = &u[0];
        match e.inner {
            None => {
                out.put_u8(e.kind as u8);
                out.put_u32(e.offset);
                out.put_u32(e.length);
                out.put(&e.id);
                out.put_u32(e.raw_length);
            }
            Some(_) => {
                out.put_u8(match e.kind {
                    BlobKind::Data => FRAME_DATA_GROUP,
                    BlobKind::Tree => FRAME_TREE_GROUP,
                });
                out.put_u32(e.offset);
                out.put_u32(e.length);
                out.put_u32(u.len() as u32);
                for b in u {
                    out.put(&b.id);
                    out.put_u32(b.raw_length);
                }
            }
        }
    }
}

/// Entries cut into units: a single blob alone, grouped entries by offset.
fn units_of(entries: &[PackEntry]) -> Vec<&[PackEntry]> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let e = &entries[i];
        let mut j = i + 1;
        if e.inner.is_some() {
            while j < entries.len()
                && entries[j].inner.is_some()
                && entries[j].offset == e.offset
                && entries[j].kind == e.kind
            {
                j += 1;
            }
        }
        out.push(&entries[i..j]);
        i = j;
    }
    out
}

/// Encoded size of `entries` as units.
pub fn units_len(entries: &[PackEntry]) -> usize {
    4 + units_of(entries).iter().map(|u| if u[0].inner.is_none() { UNIT_LEN } else { 13 + 36 * u.len() }).sum::<usize>()
}

pub fn get_units(r: &mut Reader<'_>) -> Result<Vec<PackEntry>> {
    let n = r.count(UNIT_LEN)?;
    // Sized exactly: a pack of groups has many more entries than units, and
    // growing by doubling would hold up to three times the decoded index.
    let mut out = Vec::with_capacity(count_entries(r.clone(), n));
    let mut previous: Option<u32> = None;
    for _ in 0..n {
        let k = r.u8()?;
        let (offset, length) = (r.u32()?, r.u32()?);
        // Two units cannot lie at one place (and a listing that put them
        // there would not encode back to itself).
        if previous.replace(offset) == Some(offset) {
            return Err(Error::corrupt(format!("two units at offset {offset}")));
        }
        match k {
            1 | 2 => {
                let kind = BlobKind::from_u8(k).expect("1 or 2");
                out.push(PackEntry { kind, id: r.array()?, offset, length, inner: None, raw_length: r.u32()? });
            }
            FRAME_DATA_GROUP | FRAME_TREE_GROUP => {
                let kind = if k == FRAME_DATA_GROUP { BlobKind::Data } else { BlobKind::Tree };
                let m = r.count(36)?;
                if m == 0 {
                    return Err(Error::corrupt("a group of no blobs"));
                }
                let mut blobs = Vec::with_capacity(m);
                for _ in 0..m {
                    blobs.push((r.array()?, r.u32()?));
                }
                out.extend(group_entries(kind, offset, length, &blobs));
            }
            _ => return Err(Error::corrupt(format!("unknown unit kind {k}"))),
        }
    }
    Ok(out)
}

/// How many entries `n` units hold (a pre-pass over a copy of the reader;
/// a malformed unit ends the count, and the real pass names the error).
fn count_entries(mut r: Reader<'_>, n: usize) -> usize {
    let mut total = 0usize;
    for _ in 0..n {
        let Ok(k) = r.u8() else { break };
        if r.bytes(8).is_err() {
            break;
        }
        match k {
            1 | 2 => {
                total += 1;
                if r.bytes(36).is_err() {
                    break;
                }
            }
            FRAME_DATA_GROUP | FRAME_TREE_GROUP => {
                let Ok(m) = r.count(36) else { break };
                total += m;
                if r.bytes(36 * m).is_err() {
                    break;
                }
            }
            _ => break,
        }
    }
    total
}

/// Each entry's share of the pack's stored bytes: a blob alone its sealed
/// length; the blobs of a group their unit's sealed length split in
/// proportion to their plaintext (the shares of a unit add up to it).
pub fn stored_shares(entries: &[PackEntry]) -> Vec<u32> {
    let mut out = Vec::with_capacity(entries.len());
    for u in units_of(entries) {
        if u[0].inner.is_none() {
            out.push(u[0].length);
            continue;
        }
        let total: u64 = u.iter().map(|e| e.raw_length as u64).sum::<u64>().max(1);
        let mut given = 0u64;
        for (i, e) in u.iter().enumerate() {
            let share = if i + 1 == u.len() {
                (u[0].length as u64).saturating_sub(given)
            } else {
                u[0].length as u64 * e.raw_length as u64 / total
            };
            given += share;
            out.push(share as u32);
        }
    }
    out
}

/// Plaintext of a pack header: `u32 count`, then `count` entries.
pub fn encode_header(entries: &[PackEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + entries.len() * ENTRY_LEN);
    out.put_u32(entries.len() as u32);
    for e in entries {
        e.encode_into(&mut out);
    }
    out
}

pub fn decode_header(bytes: &[u8]) -> Result<Vec<PackEntry>> {
    let mut r = Reader::new(bytes, "pack header");
    let n = r.count(ENTRY_LEN)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(PackEntry::decode_from(&mut r)?);
    }
    r.finish()?;
    Ok(out)
}

/// Frame that precedes each sealed blob.
pub fn encode_frame(kind: BlobKind, sealed_len: u32) -> [u8; FRAME_LEN] {
    let l = sealed_len.to_le_bytes();
    [l[0], l[1], l[2], l[3], kind as u8]
}

/// The header plaintext of a pack of `layout`.
pub fn encode_header_of(layout: PackLayout, entries: &[PackEntry]) -> Vec<u8> {
    match layout {
        PackLayout::V1 => encode_header(entries),
        PackLayout::V2 => encode_header_2(entries),
    }
}

pub fn decode_header_of(layout: PackLayout, bytes: &[u8]) -> Result<Vec<PackEntry>> {
    match layout {
        PackLayout::V1 => decode_header(bytes),
        PackLayout::V2 => decode_header_2(bytes),
    }
}

/// Trailer of a layout-1 pack: header length and magic.
pub fn encode_trailer(header_len: u32) -> [u8; TRAILER_LEN] {
    encode_trailer_of(PackLayout::V1, header_len)
}

/// Trailer: header length and the layout's trailer magic.
pub fn encode_trailer_of(layout: PackLayout, header_len: u32) -> [u8; TRAILER_LEN] {
    let mut out = [0u8; TRAILER_LEN];
    out[..4].copy_from_slice(&header_len.to_le_bytes());
    out[4..].copy_from_slice(layout.trailer_magic());
    out
}

/// Reads a layout-1 trailer (see [`decode_trailer_any`]).
pub fn decode_trailer(trailer: &[u8], pack_len: u64) -> Result<u32> {
    match decode_trailer_any(trailer, pack_len)? {
        (hlen, PackLayout::V1) => Ok(hlen),
        _ => Err(Error::corrupt("pack trailer is damaged")),
    }
}

/// Reads the trailer: the sealed header's length and the pack's layout.
/// `pack_len` is the whole pack's size, used to check that the header fits.
pub fn decode_trailer_any(trailer: &[u8], pack_len: u64) -> Result<(u32, PackLayout)> {
    let layout = match trailer.get(4..) {
        Some(m) if trailer.len() == TRAILER_LEN && m == TRAILER_MAGIC => PackLayout::V1,
        Some(m) if trailer.len() == TRAILER_LEN && m == TRAILER_MAGIC_2 => PackLayout::V2,
        _ => return Err(Error::corrupt("pack trailer is damaged")),
    };
    let hlen = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
    if (hlen as u64) + (TRAILER_LEN + MAGIC.len()) as u64 > pack_len {
        return Err(Error::corrupt(format!("pack header length {hlen} exceeds the pack")));
    }
    Ok((hlen, layout))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry() -> impl Strategy<Value = PackEntry> {
        (any::<bool>(), proptest::array::uniform32(any::<u8>()), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
            |(t, id, offset, length, raw_length)| PackEntry {
                kind: if t { BlobKind::Tree } else { BlobKind::Data },
                id,
                offset,
                length,
                inner: None,
                raw_length,
            },
        )
    }

    /// A unit: its kind, whether it is a group, its sealed length and its
    /// blobs (id, raw length).
    pub(crate) type Unit = (BlobKind, bool, u32, Vec<([u8; 32], u32)>);

    pub(crate) fn unit() -> impl Strategy<Value = Unit> {
        (
            any::<bool>(),
            any::<bool>(),
            1u32..1 << 20,
            proptest::collection::vec((proptest::array::uniform32(any::<u8>()), 0u32..1 << 16), 1..6),
        )
            .prop_map(|(tree, grouped, length, mut blobs)| {
                if !grouped {
                    blobs.truncate(1);
                }
                (if tree { BlobKind::Tree } else { BlobKind::Data }, grouped, length, blobs)
            })
    }

    /// The entries of `u` placed at `*offset` (moved past it and a frame).
    pub(crate) fn entries_of(u: &Unit, offset: &mut u32) -> Vec<PackEntry> {
        let (kind, grouped, length, blobs) = u;
        let out = if *grouped {
            group_entries(*kind, *offset, *length, blobs)
        } else {
            let (id, raw_length) = blobs[0];
            vec![PackEntry { kind: *kind, id, offset: *offset, length: *length, inner: None, raw_length }]
        };
        *offset += length + FRAME_LEN as u32;
        out
    }

    proptest! {
        #[test]
        fn header_2_round_trip(units in proptest::collection::vec(unit(), 0..12)) {
            let mut offset = 13;
            let entries: Vec<PackEntry> = units.iter().flat_map(|u| entries_of(u, &mut offset)).collect();
            let enc = encode_header_2(&entries);
            prop_assert_eq!(enc.len(), units_len(&entries));
            let decoded = decode_header_2(&enc).unwrap();
            // Allocated exactly (the pre-pass counted the groups' entries).
            prop_assert_eq!(decoded.capacity(), entries.len());
            prop_assert_eq!(decoded, entries.clone());
            // Shares add up to each unit's sealed length.
            let shares = stored_shares(&entries);
            let total: u64 = shares.iter().map(|&s| s as u64).sum();
            prop_assert_eq!(total, units.iter().map(|u| u.2 as u64).sum::<u64>());
        }

        /// What decodes encodes back to the same bytes (the fuzz target's
        /// property): a listing has one encoding.
        #[test]
        fn header_2_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..500)) {
            if let Ok(entries) = decode_header_2(&bytes) {
                prop_assert_eq!(encode_header_2(&entries), bytes);
            }
        }

        /// Every blob of a group is found at the inner offset its entry
        /// gives, and nowhere else.
        #[test]
        fn group_slices(blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..8)) {
            let plain = encode_group(&blobs);
            let list: Vec<([u8; 32], u32)> = blobs.iter().map(|b| ([0; 32], b.len() as u32)).collect();
            let entries = group_entries(BlobKind::Data, 8, 100, &list);
            prop_assert_eq!(decode_group(&plain).unwrap(), blobs.iter().map(|b| b.as_slice()).collect::<Vec<_>>());
            for (e, b) in entries.iter().zip(&blobs) {
                prop_assert_eq!(group_slice(&plain, e.inner.unwrap(), e.raw_length).unwrap(), b.as_slice());
                // One byte off is refused (unless an empty blob starts there too).
                if !b.is_empty() {
                    prop_assert!(group_slice(&plain, e.inner.unwrap() + 1, e.raw_length).is_err()
                        || blobs.iter().any(|x| x.is_empty()));
                }
            }
        }

        #[test]
        fn group_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), inner in any::<u32>(), raw in any::<u32>()) {
            let _ = decode_group(&bytes);
            let _ = group_slice(&bytes, inner, raw);
        }
    }

    #[test]
    fn group_table_must_account_for_every_byte() {
        let mut g = encode_group(&[b"ab".as_slice(), b"cde"]);
        assert_eq!(g, [2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, b'a', b'b', b'c', b'd', b'e']);
        assert_eq!(group_slice(&g, 12, 2).unwrap(), b"ab");
        assert_eq!(group_slice(&g, 14, 3).unwrap(), b"cde");
        assert!(group_slice(&g, 14, 2).is_err(), "a wrong length");
        g.push(0);
        assert!(decode_group(&g).is_err(), "a byte the table does not account for");
        assert!(decode_group(&[0, 0, 0, 0]).is_err(), "an empty group");
    }

    /// Found by the fuzz target: two groups at one offset decoded, then
    /// encoded as one.
    #[test]
    fn two_units_at_one_offset_are_refused() {
        let group = |out: &mut Vec<u8>| {
            out.put_u8(FRAME_DATA_GROUP);
            out.put_u32(13);
            out.put_u32(100);
            out.put_u32(1);
            out.put(&[7; 32]);
            out.put_u32(5);
        };
        let mut b = Vec::new();
        b.put_u32(2);
        group(&mut b);
        group(&mut b);
        assert!(decode_header_2(&b).unwrap_err().to_string().contains("two units at offset 13"));
        let mut one = Vec::new();
        one.put_u32(1);
        group(&mut one);
        assert_eq!(encode_header_2(&decode_header_2(&one).unwrap()), one);
    }

    #[test]
    fn trailers_name_their_layout() {
        let t = encode_trailer_of(PackLayout::V2, 100);
        assert_eq!(&t[4..], b"CPK2");
        assert_eq!(decode_trailer_any(&t, 200).unwrap(), (100, PackLayout::V2));
        assert!(decode_trailer(&t, 200).is_err(), "a layout-1 reader does not take it");
        assert_eq!(PackLayout::from_magic(b"CAIRNPK2"), Some(PackLayout::V2));
        assert_eq!(PackLayout::from_magic(b"CAIRNPK3"), None);
    }

    proptest! {
        #[test]
        fn header_round_trip(entries in proptest::collection::vec(entry(), 0..50)) {
            let enc = encode_header(&entries);
            prop_assert_eq!(enc.len(), 4 + entries.len() * ENTRY_LEN);
            prop_assert_eq!(decode_header(&enc).unwrap(), entries);
        }

        #[test]
        fn header_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..500)) {
            let _ = decode_header(&bytes);
        }
    }

    #[test]
    fn trailer_checks() {
        let t = encode_trailer(100);
        assert_eq!(decode_trailer(&t, 200).unwrap(), 100);
        assert!(decode_trailer(&t, 50).is_err());
        assert!(decode_trailer(b"12345678", 200).is_err());
    }
}
