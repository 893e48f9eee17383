//! Index objects (`index/<id>`): which blobs each pack holds, which packs
//! a prune has marked for deletion, and the prune runs' records.
//! See format-spec/06-index.md.

use super::pack::{get_units, put_units, units_len, PackEntry, PackLayout, ENTRY_LEN};
use super::wire::{Reader, Writer};
use crate::error::{Error, Result};
use crate::id::PackId;

/// Version 1: live pack records only. Version 2 adds marked packs and
/// prune run records; a writer uses it only when it has some.
pub const VERSION: u8 = 1;
pub const VERSION_MARKS: u8 = 2;
/// Version 3 (repository format 2): pack records list units (single blobs
/// and groups, as a layout-2 pack header does), and the marked and run
/// lists are always present.
pub const VERSION_UNITS: u8 = 3;

/// One pack's entries, as listed in an index object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexPack {
    pub id: PackId,
    pub blobs: Vec<PackEntry>,
}

/// The id of one prune run (16 random bytes).
pub type RunId = [u8; 16];

/// A pack that prune run `run` marked for deletion. Its blobs stay
/// readable, but writers must not reuse them. `blobs` is empty for a pack
/// that no index object named when it was marked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkedPack {
    pub run: RunId,
    pub pack: IndexPack,
}

/// A lock seen by a prune run right after it stored its marks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeenLock {
    /// The lock's session (format-spec/08-locks.md).
    pub session: [u8; 16],
    /// The lock object's id (`locks/<hex>`).
    pub object: [u8; 32],
}

/// What a prune run saw after it stored its marks: the packs of `run` may be
/// deleted once none of these sessions holds a lock any more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRecord {
    pub run: RunId,
    /// Unix seconds, by the pruning host's clock.
    pub time: i64,
    pub locks: Vec<SeenLock>,
}

/// The decoded plaintext of an index object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Index {
    pub packs: Vec<IndexPack>,
    pub marked: Vec<MarkedPack>,
    pub runs: Vec<RunRecord>,
}

fn pack_len(p: &IndexPack) -> usize {
    36 + p.blobs.len() * ENTRY_LEN
}

fn put_pack(out: &mut Vec<u8>, p: &IndexPack) {
    out.put(&p.id.0);
    out.put_u32(p.blobs.len() as u32);
    for b in &p.blobs {
        b.encode_into(out);
    }
}

fn get_pack(r: &mut Reader) -> Result<IndexPack> {
    let id = PackId(r.array()?);
    let m = r.count(ENTRY_LEN)?;
    let mut blobs = Vec::with_capacity(m);
    for _ in 0..m {
        blobs.push(PackEntry::decode_from(r)?);
    }
    Ok(IndexPack { id, blobs })
}

/// Plaintext: `u8 version`, `u32 pack count`, then per pack
/// `[32] pack id`, `u32 blob count`, entries. Version 2 follows with the
/// marked packs and the run records.
pub fn encode(packs: &[IndexPack]) -> Vec<u8> {
    encode_index(&Index { packs: packs.to_vec(), ..Default::default() })
}

/// The index object of `ix` for a repository whose packs are of `layout`:
/// version 1 or 2 for format 1, version 3 for format 2.
pub fn encode_index_as(layout: PackLayout, ix: &Index) -> Vec<u8> {
    match layout {
        PackLayout::V1 => encode_index(ix),
        PackLayout::V2 => encode_index_3(ix),
    }
}

fn put_pack_3(out: &mut Vec<u8>, p: &IndexPack) {
    out.put(&p.id.0);
    put_units(out, &p.blobs);
}

fn get_pack_3(r: &mut Reader) -> Result<IndexPack> {
    Ok(IndexPack { id: PackId(r.array()?), blobs: get_units(r)? })
}

/// Version 3: `u8 3`, `u32` pack count, pack records (`[32]` pack id,
/// units), `u32` marked count, marked records (`[16]` run id, pack record),
/// `u32` run count, run records (as in version 2).
pub fn encode_index_3(ix: &Index) -> Vec<u8> {
    let n: usize = ix.packs.iter().map(|p| 32 + units_len(&p.blobs)).sum::<usize>()
        + ix.marked.iter().map(|m| 48 + units_len(&m.pack.blobs)).sum::<usize>()
        + ix.runs.iter().map(|r| 28 + 48 * r.locks.len()).sum::<usize>();
    let mut out = Vec::with_capacity(13 + n);
    out.put_u8(VERSION_UNITS);
    out.put_u32(ix.packs.len() as u32);
    for p in &ix.packs {
        put_pack_3(&mut out, p);
    }
    out.put_u32(ix.marked.len() as u32);
    for m in &ix.marked {
        out.put(&m.run);
        put_pack_3(&mut out, &m.pack);
    }
    put_runs(&mut out, &ix.runs);
    out
}

fn put_runs(out: &mut Vec<u8>, runs: &[RunRecord]) {
    out.put_u32(runs.len() as u32);
    for r in runs {
        out.put(&r.run);
        out.put_i64(r.time);
        out.put_u32(r.locks.len() as u32);
        for l in &r.locks {
            out.put(&l.session);
            out.put(&l.object);
        }
    }
}

fn get_runs(r: &mut Reader, ix: &mut Index) -> Result<()> {
    let n = r.count(28)?;
    for _ in 0..n {
        let run = r.array()?;
        let time = r.i64()?;
        let m = r.count(48)?;
        let mut locks = Vec::with_capacity(m);
        for _ in 0..m {
            locks.push(SeenLock { session: r.array()?, object: r.array()? });
        }
        ix.runs.push(RunRecord { run, time, locks });
    }
    Ok(())
}

pub fn encode_index(ix: &Index) -> Vec<u8> {
    let n: usize = ix.packs.iter().map(pack_len).sum::<usize>()
        + ix.marked.iter().map(|m| 16 + pack_len(&m.pack)).sum::<usize>()
        + ix.runs.iter().map(|r| 28 + 48 * r.locks.len()).sum::<usize>();
    let v2 = !ix.marked.is_empty() || !ix.runs.is_empty();
    let mut out = Vec::with_capacity(13 + n);
    out.put_u8(if v2 { VERSION_MARKS } else { VERSION });
    out.put_u32(ix.packs.len() as u32);
    for p in &ix.packs {
        put_pack(&mut out, p);
    }
    if v2 {
        out.put_u32(ix.marked.len() as u32);
        for m in &ix.marked {
            out.put(&m.run);
            put_pack(&mut out, &m.pack);
        }
        put_runs(&mut out, &ix.runs);
    }
    out
}

/// Decodes the live pack records (the whole object must be valid).
pub fn decode(bytes: &[u8]) -> Result<Vec<IndexPack>> {
    Ok(decode_index(bytes)?.packs)
}

pub fn decode_index(bytes: &[u8]) -> Result<Index> {
    let mut r = Reader::new(bytes, "index");
    let v = r.u8()?;
    if v == VERSION_UNITS {
        let mut ix = Index::default();
        let n = r.count(36)?;
        for _ in 0..n {
            ix.packs.push(get_pack_3(&mut r)?);
        }
        let n = r.count(52)?;
        for _ in 0..n {
            let run = r.array()?;
            ix.marked.push(MarkedPack { run, pack: get_pack_3(&mut r)? });
        }
        get_runs(&mut r, &mut ix)?;
        r.finish()?;
        return Ok(ix);
    }
    if v != VERSION && v != VERSION_MARKS {
        return Err(Error::corrupt(format!("index: unsupported version {v}")));
    }
    let mut ix = Index::default();
    let n = r.count(36)?;
    ix.packs.reserve(n);
    for _ in 0..n {
        ix.packs.push(get_pack(&mut r)?);
    }
    if v == VERSION_MARKS {
        let n = r.count(52)?;
        for _ in 0..n {
            let run = r.array()?;
            ix.marked.push(MarkedPack { run, pack: get_pack(&mut r)? });
        }
        get_runs(&mut r, &mut ix)?;
        if ix.marked.is_empty() && ix.runs.is_empty() {
            return Err(Error::corrupt("index: version 2 with neither marks nor run records"));
        }
    }
    r.finish()?;
    Ok(ix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobKind;
    use proptest::prelude::*;

    fn packs_strategy() -> impl Strategy<Value = Vec<IndexPack>> {
        proptest::collection::vec(
            (
                proptest::array::uniform32(any::<u8>()),
                proptest::collection::vec((proptest::array::uniform32(any::<u8>()), any::<u32>()), 0..6),
            ),
            0..6,
        )
        .prop_map(|v| {
            v.into_iter()
                .map(|(id, blobs)| IndexPack {
                    id: PackId(id),
                    blobs: blobs
                        .into_iter()
                        .map(|(b, o)| PackEntry {
                            kind: BlobKind::Data,
                            id: b,
                            offset: o,
                            length: o / 2,
                            inner: None,
                            raw_length: o / 3,
                        })
                        .collect(),
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn round_trip(packs in packs_strategy()) {
            let bytes = encode(&packs);
            prop_assert_eq!(bytes[0], VERSION);
            prop_assert_eq!(decode(&bytes).unwrap(), packs);
        }

        #[test]
        fn round_trip_with_marks(packs in packs_strategy(), marked in packs_strategy(), run in any::<[u8; 16]>(),
                                 time in any::<i64>(), locks in proptest::collection::vec((any::<[u8; 16]>(), any::<[u8; 32]>()), 0..4)) {
            let ix = Index {
                packs,
                marked: marked.into_iter().map(|pack| MarkedPack { run, pack }).collect(),
                runs: vec![RunRecord { run, time, locks: locks.into_iter().map(|(session, object)| SeenLock { session, object }).collect() }],
            };
            let bytes = encode_index(&ix);
            prop_assert_eq!(bytes[0], VERSION_MARKS);
            prop_assert_eq!(decode_index(&bytes).unwrap(), ix.clone());
            prop_assert_eq!(decode(&bytes).unwrap(), ix.packs);
        }

        /// Never panics, and what decodes encodes back to the same bytes
        /// (the fuzz target's property), version 3 included.
        #[test]
        fn decode_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..400), v3 in any::<bool>()) {
            if v3 && !bytes.is_empty() {
                bytes[0] = VERSION_UNITS;
            }
            if let Ok(ix) = decode_index(&bytes) {
                let again = if bytes[0] == VERSION_UNITS { encode_index_3(&ix) } else { encode_index(&ix) };
                prop_assert_eq!(again, bytes);
            }
        }

        /// Version 3 carries single blobs and groups, live and marked.
        #[test]
        fn version_3_round_trip(units in proptest::collection::vec(crate::format::pack::tests::unit(), 0..8),
                                plain in packs_strategy(), run in any::<[u8; 16]>(), with_run in any::<bool>()) {
            let mut offset = 13;
            let mut blobs = Vec::new();
            for u in units {
                blobs.extend(crate::format::pack::tests::entries_of(&u, &mut offset));
            }
            let grouped = IndexPack { id: PackId([7; 32]), blobs };
            let mut packs = plain.clone();
            packs.push(grouped.clone());
            let ix = Index {
                packs,
                marked: vec![MarkedPack { run, pack: grouped }],
                runs: if with_run { vec![RunRecord { run, time: 9, locks: vec![] }] } else { vec![] },
            };
            let bytes = encode_index_as(PackLayout::V2, &ix);
            prop_assert_eq!(bytes[0], VERSION_UNITS);
            prop_assert_eq!(decode_index(&bytes).unwrap(), ix.clone());
            // Format 1 keeps writing versions 1 and 2.
            let only_plain = Index { packs: plain, ..Default::default() };
            prop_assert_eq!(encode_index_as(PackLayout::V1, &only_plain)[0], VERSION);
        }
    }

    #[test]
    fn version_3_empty_and_trailing_bytes() {
        let b = encode_index_3(&Index::default());
        assert_eq!(b, [3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode_index(&b).unwrap(), Index::default());
        let mut t = b.clone();
        t.push(0);
        assert!(decode_index(&t).is_err());
    }

    #[test]
    fn version_2_without_marks_or_runs_rejected() {
        let mut b = encode(&[]);
        b[0] = VERSION_MARKS;
        b.extend([0; 8]);
        assert!(decode_index(&b).is_err());
    }

    #[test]
    fn version_2_trailing_bytes_rejected() {
        let ix = Index { runs: vec![RunRecord { run: [1; 16], time: 5, locks: vec![] }], ..Default::default() };
        let mut b = encode_index(&ix);
        b.push(0);
        assert!(decode_index(&b).is_err());
    }
}
