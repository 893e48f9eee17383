//! Packs: many sealed blobs in one object, located by a sealed header.
//! [`PackWriter`] assembles one; [`blob_from_pack_bytes`] and
//! [`read_header`] read back. Layout: format-spec/05-packs.md.

use bytes::Bytes;
pub mod packer;
pub mod salvage;
pub mod verify;

use sha2::{Digest, Sha256};

use crate::backend::Backend;
use crate::crypto::aead::ObjectType;
use crate::error::{Error, Result, ResultExt};
use crate::format::pack::{self as fmt, PackEntry};
use crate::id::{BlobKind, PackId};
use crate::seal;

/// Object name of a pack: `data/<first two hex digits>/<id>`.
pub fn object_name(id: &PackId) -> String {
    let h = id.to_hex();
    format!("data/{}/{}", &h[..2], h)
}

/// Assembles one pack in memory.
pub struct PackWriter {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
    layout: fmt::PackLayout,
}

/// The object type a unit of `kind` blobs is sealed with: alone or grouped.
pub fn unit_type(kind: BlobKind, grouped: bool) -> ObjectType {
    match (kind, grouped) {
        (BlobKind::Data, false) => ObjectType::DataBlob,
        (BlobKind::Tree, false) => ObjectType::TreeBlob,
        (BlobKind::Data, true) => ObjectType::DataGroup,
        (BlobKind::Tree, true) => ObjectType::TreeGroup,
    }
}

impl PackWriter {
    /// A layout-1 pack (format 1).
    pub fn new(capacity: usize) -> Self {
        Self::with_layout(fmt::PackLayout::V1, capacity)
    }

    pub fn with_layout(layout: fmt::PackLayout, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.extend_from_slice(layout.magic());
        Self { buf, entries: Vec::new(), layout }
    }

    /// Appends one sealed blob.
    pub fn add(&mut self, kind: BlobKind, id: [u8; 32], sealed: &[u8], raw_length: u32) {
        self.buf.extend_from_slice(&fmt::encode_frame(kind, sealed.len() as u32));
        let offset = self.buf.len() as u32;
        self.buf.extend_from_slice(sealed);
        self.entries.push(PackEntry { kind, id, offset, length: sealed.len() as u32, inner: None, raw_length });
    }

    /// Appends one sealed group of `blobs` (id, raw length, in the group's
    /// table order). Only layout 2 has groups.
    pub fn add_group(&mut self, kind: BlobKind, blobs: &[([u8; 32], u32)], sealed: &[u8]) {
        assert_eq!(self.layout, fmt::PackLayout::V2, "groups exist in layout 2 only");
        let frame_kind = match kind {
            BlobKind::Data => fmt::FRAME_DATA_GROUP,
            BlobKind::Tree => fmt::FRAME_TREE_GROUP,
        };
        let l = (sealed.len() as u32).to_le_bytes();
        self.buf.extend_from_slice(&[l[0], l[1], l[2], l[3], frame_kind]);
        let offset = self.buf.len() as u32;
        self.buf.extend_from_slice(sealed);
        self.entries.extend(fmt::group_entries(kind, offset, sealed.len() as u32, blobs));
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn blob_count(&self) -> usize {
        self.entries.len()
    }

    /// Seals the header with a random nonce and closes the pack.
    pub fn finish(self, key: &[u8; 32]) -> FinishedPack {
        self.finish_with_nonce(key, &crate::crypto::aead::random_nonce())
    }

    /// As [`finish`](Self::finish) with an explicit nonce (test vectors).
    pub fn finish_with_nonce(mut self, key: &[u8; 32], nonce: &[u8; 24]) -> FinishedPack {
        let header = fmt::encode_header_of(self.layout, &self.entries);
        let sealed = seal::seal_with_nonce(key, ObjectType::PackHeader, &header, Some(1), nonce);
        self.buf.extend_from_slice(&sealed);
        self.buf.extend_from_slice(&fmt::encode_trailer_of(self.layout, sealed.len() as u32));
        let id = PackId(Sha256::digest(&self.buf).into());
        FinishedPack { id, bytes: Bytes::from(self.buf), entries: self.entries }
    }
}

/// A complete pack, ready to store.
pub struct FinishedPack {
    pub id: PackId,
    pub bytes: Bytes,
    pub entries: Vec<PackEntry>,
}

/// Largest header a pack may claim (a pack of 1 GiB of 1-byte blobs is far less).
const MAX_HEADER: u64 = 64 << 20;

/// Reads and opens a pack's header from the backend (two ranged reads).
/// Packs with their stored sizes.
pub type PackSizes = Vec<(PackId, u64)>;

/// The packs under `data/` with their sizes, sorted; and the names there
/// that are not pack names (ignored by readers, reported by check).
pub fn list_packs(backend: &Backend) -> Result<(PackSizes, Vec<String>)> {
    let (mut packs, mut odd) = (Vec::new(), Vec::new());
    for (name, size) in backend.list("data")? {
        match crate::repo::parse_object_name(name.rsplit('/').next().unwrap_or("")).map(PackId) {
            Some(id) if name == object_name(&id) => packs.push((id, size)),
            _ => odd.push(name),
        }
    }
    packs.sort();
    Ok((packs, odd))
}

pub fn read_header(backend: &Backend, key: &[u8; 32], id: &PackId) -> Result<Vec<PackEntry>> {
    let name = object_name(id);
    let size = backend.size(&name)?;
    if size < (fmt::MAGIC.len() + fmt::TRAILER_LEN) as u64 {
        return Err(Error::corrupt(format!("pack {id} is too short ({size} bytes)")));
    }
    let trailer = backend.get_range(&name, size - fmt::TRAILER_LEN as u64..size)?;
    let (hlen, layout) = fmt::decode_trailer_any(&trailer, size).context(format!("pack {id}"))?;
    let hlen = hlen as u64;
    if hlen > MAX_HEADER {
        return Err(Error::corrupt(format!("pack {id}: header length {hlen} is implausible")));
    }
    let start = size - fmt::TRAILER_LEN as u64 - hlen;
    let sealed = backend.get_range(&name, start..start + hlen)?;
    open_header(key, id, layout, &sealed, start)
}

/// Opens a pack's sealed header, which starts at byte `start` of the pack;
/// every entry must lie between the magic and `start`.
pub fn open_header(
    key: &[u8; 32],
    id: &PackId,
    layout: fmt::PackLayout,
    sealed: &[u8],
    start: u64,
) -> Result<Vec<PackEntry>> {
    let plain =
        seal::open(key, ObjectType::PackHeader, sealed, MAX_HEADER as usize).context(format!("pack {id} header"))?;
    let entries = fmt::decode_header_of(layout, &plain).context(format!("pack {id}"))?;
    if entries.iter().any(|e| e.end() > start || (e.offset as usize) < fmt::MAGIC.len() + fmt::FRAME_LEN) {
        return Err(Error::corrupt(format!("pack {id}: header points outside the blobs")));
    }
    Ok(entries)
}

/// Opens the header of a pack held whole in memory.
pub fn header_from_bytes(key: &[u8; 32], id: &PackId, bytes: &[u8]) -> Result<Vec<PackEntry>> {
    let size = bytes.len() as u64;
    let layout = bytes.get(..fmt::MAGIC.len()).and_then(fmt::PackLayout::from_magic);
    let Some(layout) = layout.filter(|_| size >= (fmt::MAGIC.len() + fmt::TRAILER_LEN) as u64) else {
        return Err(Error::corrupt(format!("pack {id} does not start with the pack magic")));
    };
    let (hlen, trailer_layout) =
        fmt::decode_trailer_any(&bytes[bytes.len() - fmt::TRAILER_LEN..], size).context(format!("pack {id}"))?;
    if trailer_layout != layout {
        return Err(Error::corrupt(format!("pack {id}: its magic and its trailer name different layouts")));
    }
    let start = bytes.len() - fmt::TRAILER_LEN - hlen as usize;
    open_header(key, id, layout, &bytes[start..start + hlen as usize], start as u64)
}

/// Opens a sealed unit: the plaintext of the blob alone (`entry.inner` is
/// `None`) or of the whole group. Authenticated, not yet checked against
/// any id: [`blob_in_unit`] does that.
pub fn open_unit(key: &crate::crypto::MasterKey, entry: &PackEntry, sealed: &[u8]) -> Result<Vec<u8>> {
    let ty = unit_type(entry.kind, entry.inner.is_some());
    let limit = match entry.inner {
        None => entry.raw_length as usize,
        Some(inner) => fmt::MAX_GROUP.max(inner as usize + entry.raw_length as usize),
    };
    seal::open(&key.enc, ty, sealed, limit)
}

/// The blob's plaintext in its opened unit, checked: its length and place
/// against the group's table, its keyed hash against its id. Anything else
/// is corrupt: wrong bytes are never returned.
pub fn blob_in_unit<'a>(key: &crate::crypto::MasterKey, entry: &PackEntry, unit: &'a [u8]) -> Result<&'a [u8]> {
    let plain = match entry.inner {
        None => unit,
        Some(inner) => fmt::group_slice(unit, inner, entry.raw_length)?,
    };
    if plain.len() != entry.raw_length as usize {
        return Err(Error::corrupt("blob length does not match the index"));
    }
    if key.blob_id(plain) != entry.id {
        return Err(Error::corrupt("blob content does not match its id"));
    }
    Ok(plain)
}

/// Opens one blob's sealed unit and checks that the plaintext hashes to
/// its id. Anything else is corrupt: wrong bytes are never returned.
pub fn open_blob(key: &crate::crypto::MasterKey, entry: &PackEntry, sealed: &[u8]) -> Result<Vec<u8>> {
    let unit = open_unit(key, entry, sealed)?;
    match entry.inner {
        None => {
            blob_in_unit(key, entry, &unit)?;
            Ok(unit)
        }
        Some(_) => Ok(blob_in_unit(key, entry, &unit)?.to_vec()),
    }
}

/// Reads `entries` from a whole pack's bytes, opening each unit once (the
/// blobs of a group one after another), and hands each entry its checked
/// plaintext or why not. Entries are taken in the order given; consecutive
/// entries of one unit share its opening.
pub fn each_blob_in_pack_bytes<'e>(
    key: &crate::crypto::MasterKey,
    pack: &[u8],
    entries: impl IntoIterator<Item = &'e PackEntry>,
    mut f: impl FnMut(&'e PackEntry, Result<&[u8]>) -> Result<()>,
) -> Result<()> {
    let mut unit: Option<(fmt::UnitKey, Result<Vec<u8>>)> = None;
    for e in entries {
        if unit.as_ref().is_none_or(|(at, _)| *at != e.unit_key()) {
            let opened = match pack.get(e.offset as usize..e.end() as usize) {
                Some(sealed) => open_unit(key, e, sealed),
                None => Err(Error::corrupt("blob lies outside the pack")),
            };
            unit = Some((e.unit_key(), opened));
        }
        match &unit {
            Some((_, Ok(u))) => f(e, blob_in_unit(key, e, u))?,
            Some((_, Err(err))) => f(e, Err(Error::new(err.kind(), err.to_string())))?,
            None => f(e, Err(Error::corrupt("no unit")))?,
        }
    }
    Ok(())
}

/// Finds one blob in a whole pack's bytes (used by tests and salvage).
pub fn blob_from_pack_bytes(key: &crate::crypto::MasterKey, pack: &[u8], entry: &PackEntry) -> Result<Vec<u8>> {
    let sealed = pack
        .get(entry.offset as usize..entry.end() as usize)
        .ok_or_else(|| Error::corrupt("blob lies outside the pack"))?;
    open_blob(key, entry, sealed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn chunk_pack_read_back(blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..20)) {
            let mk = MasterKey::generate();
            let backend = Backend::memory().unwrap();
            let mut w = PackWriter::new(1 << 16);
            for b in &blobs {
                let sealed = seal::seal(&mk.enc, ObjectType::DataBlob, b, Some(3));
                w.add(BlobKind::Data, mk.blob_id(b), &sealed, b.len() as u32);
            }
            let p = w.finish(&mk.enc);
            backend.put(&object_name(&p.id), p.bytes.clone()).unwrap();
            let header = read_header(&backend, &mk.enc, &p.id).unwrap();
            prop_assert_eq!(&header, &p.entries);
            for (b, e) in blobs.iter().zip(&header) {
                prop_assert_eq!(&blob_from_pack_bytes(&mk, &p.bytes, e).unwrap(), b);
            }
        }
    }

    /// Each unit of a layout-2 pack is opened once; a damaged group fails
    /// its blobs and only those.
    #[test]
    fn each_blob_opens_each_unit_once_and_names_damage() {
        let mk = MasterKey::generate();
        let blobs: Vec<Vec<u8>> = (0..7u8).map(|i| vec![i; 1000 + i as usize]).collect();
        let mut w = PackWriter::with_layout(fmt::PackLayout::V2, 1 << 16);
        for g in blobs.chunks(3) {
            let sealed = seal::seal(&mk.enc, ObjectType::DataGroup, &fmt::encode_group(g), Some(3));
            let list: Vec<([u8; 32], u32)> = g.iter().map(|b| (mk.blob_id(b), b.len() as u32)).collect();
            w.add_group(BlobKind::Data, &list, &sealed);
        }
        let p = w.finish(&mk.enc);
        let mut got = Vec::new();
        each_blob_in_pack_bytes(&mk, &p.bytes, &p.entries, |_, plain| {
            got.push(plain.unwrap().to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(got, blobs);
        let mut bytes = p.bytes.to_vec();
        bytes[p.entries[3].offset as usize + 30] ^= 1; // the second group
        let mut failed = Vec::new();
        each_blob_in_pack_bytes(&mk, &bytes, &p.entries, |e, plain| {
            if plain.is_err() {
                failed.push(e.id);
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(failed, p.entries[3..6].iter().map(|e| e.id).collect::<Vec<_>>());
    }

    #[test]
    fn swapped_blob_is_rejected() {
        let mk = MasterKey::generate();
        let mut w = PackWriter::new(1024);
        for b in [b"one".as_slice(), b"two"] {
            let sealed = seal::seal(&mk.enc, ObjectType::DataBlob, b, None);
            w.add(BlobKind::Data, mk.blob_id(b), &sealed, 3);
        }
        let p = w.finish(&mk.enc);
        let mut wrong = p.entries[0];
        wrong.id = p.entries[1].id;
        assert!(blob_from_pack_bytes(&mk, &p.bytes, &wrong).is_err());
    }
}
