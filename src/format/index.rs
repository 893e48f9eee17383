//! Index objects (`index/<id>`): which blobs each pack holds.
//! See format-spec/06-index.md.

use super::pack::{PackEntry, ENTRY_LEN};
use super::wire::{Reader, Writer};
use crate::error::{Error, Result};
use crate::id::PackId;

pub const VERSION: u8 = 1;

/// One pack's entries, as listed in an index object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexPack {
    pub id: PackId,
    pub blobs: Vec<PackEntry>,
}

/// Plaintext: `u8 version`, `u32 pack count`, then per pack
/// `[32] pack id`, `u32 blob count`, entries.
pub fn encode(packs: &[IndexPack]) -> Vec<u8> {
    let n: usize = packs.iter().map(|p| 36 + p.blobs.len() * ENTRY_LEN).sum();
    let mut out = Vec::with_capacity(5 + n);
    out.put_u8(VERSION);
    out.put_u32(packs.len() as u32);
    for p in packs {
        out.put(&p.id.0);
        out.put_u32(p.blobs.len() as u32);
        for b in &p.blobs {
            b.encode_into(&mut out);
        }
    }
    out
}

pub fn decode(bytes: &[u8]) -> Result<Vec<IndexPack>> {
    let mut r = Reader::new(bytes, "index");
    let v = r.u8()?;
    if v != VERSION {
        return Err(Error::corrupt(format!("index: unsupported version {v}")));
    }
    let n = r.count(36)?;
    let mut packs = Vec::with_capacity(n);
    for _ in 0..n {
        let id = PackId(r.array()?);
        let m = r.count(ENTRY_LEN)?;
        let mut blobs = Vec::with_capacity(m);
        for _ in 0..m {
            blobs.push(PackEntry::decode_from(&mut r)?);
        }
        packs.push(IndexPack { id, blobs });
    }
    r.finish()?;
    Ok(packs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::BlobKind;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(packs in proptest::collection::vec(
            (proptest::array::uniform32(any::<u8>()), proptest::collection::vec((proptest::array::uniform32(any::<u8>()), any::<u32>()), 0..10)), 0..10)) {
            let packs: Vec<IndexPack> = packs.into_iter().map(|(id, blobs)| IndexPack {
                id: PackId(id),
                blobs: blobs.into_iter().map(|(b, o)| PackEntry { kind: BlobKind::Data, id: b, offset: o, length: o / 2, raw_length: o / 3 }).collect(),
            }).collect();
            prop_assert_eq!(decode(&encode(&packs)).unwrap(), packs);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&bytes);
        }
    }
}
