//! Salvage: recover the blobs of a damaged pack without trusting its header.
//!
//! A pack is `magic, frame*, sealed header, trailer`, and each frame is
//! `u32 sealed length, u8 kind` before one sealed blob (format-spec/05).
//! Every sealed blob authenticates on its own and its id is the keyed hash
//! of its plaintext, so a blob can be recovered from its frame alone. The
//! walk goes frame by frame; where a frame does not open (a damaged blob,
//! or a damaged length), it moves on byte by byte until the next offset
//! where a frame opens. Nothing that fails to authenticate is returned.

use crate::crypto::MasterKey;
use crate::error::Result;
use crate::format::pack as fmt;
use crate::id::BlobKind;
use crate::seal;

/// Largest blob plaintext accepted while salvaging (trees may be large).
const MAX_BLOB: usize = 1 << 30;

/// One recovered blob.
pub struct Recovered {
    pub kind: BlobKind,
    pub id: [u8; 32],
    pub plain: Vec<u8>,
}

/// What a salvage walk found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SalvageStats {
    /// Blobs recovered (authenticated and hashed).
    pub recovered: u64,
    /// Bytes between recovered frames that did not open (damage).
    pub lost_bytes: u64,
}

/// Tries to open the frame at `at`; returns its blobs (one, or a group's)
/// and the next offset.
fn frame_at(key: &MasterKey, bytes: &[u8], at: usize, end: usize) -> Option<(Vec<Recovered>, usize)> {
    let head = bytes.get(at..at + fmt::FRAME_LEN)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let (kind, grouped) = match head[4] {
        fmt::FRAME_DATA_GROUP => (BlobKind::Data, true),
        fmt::FRAME_TREE_GROUP => (BlobKind::Tree, true),
        k => (BlobKind::from_u8(k)?, false),
    };
    let start = at + fmt::FRAME_LEN;
    // Cheap filters first: a plausible length and the seal's version byte.
    if len < seal::OVERHEAD || start.checked_add(len)? > end || bytes.get(start) != Some(&seal::SEAL_VERSION) {
        return None;
    }
    let ty = super::unit_type(kind, grouped);
    let plain = seal::open(&key.enc, ty, &bytes[start..start + len], MAX_BLOB).ok()?;
    let blobs = if grouped {
        // The group's table says where each blob is; each id is recomputed.
        let parts = fmt::decode_group(&plain).ok()?;
        parts.into_iter().map(|p| Recovered { kind, id: key.blob_id(p), plain: p.to_vec() }).collect()
    } else {
        vec![Recovered { kind, id: key.blob_id(&plain), plain }]
    };
    Some((blobs, start + len))
}

/// Walks a pack's bytes and hands every blob that authenticates to `found`.
pub fn salvage(key: &MasterKey, bytes: &[u8], mut found: impl FnMut(Recovered) -> Result<()>) -> Result<SalvageStats> {
    // The blobs end where the header starts, if the trailer still says
    // where that is; else scan to the end.
    let end = bytes
        .len()
        .checked_sub(fmt::TRAILER_LEN)
        .and_then(|t| fmt::decode_trailer_any(&bytes[t..], bytes.len() as u64).ok().map(|(h, _)| t - h as usize))
        .filter(|&e| e >= fmt::MAGIC.len())
        .unwrap_or(bytes.len());
    let mut stats = SalvageStats::default();
    let mut at = fmt::MAGIC.len().min(end);
    while at + fmt::FRAME_LEN + seal::OVERHEAD <= end {
        match frame_at(key, bytes, at, end) {
            Some((blobs, next)) => {
                for blob in blobs {
                    stats.recovered += 1;
                    found(blob)?;
                }
                at = next;
            }
            None => {
                stats.lost_bytes += 1;
                at += 1;
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::aead::ObjectType;
    use crate::pack::PackWriter;

    fn pack_of(mk: &MasterKey, blobs: &[Vec<u8>]) -> (Vec<u8>, Vec<[u8; 32]>) {
        let mut w = PackWriter::new(1 << 16);
        let mut ids = Vec::new();
        for (i, b) in blobs.iter().enumerate() {
            let kind = if i % 3 == 2 { BlobKind::Tree } else { BlobKind::Data };
            let ty = if kind == BlobKind::Tree { ObjectType::TreeBlob } else { ObjectType::DataBlob };
            let sealed = seal::seal(&mk.enc, ty, b, Some(1));
            w.add(kind, mk.blob_id(b), &sealed, b.len() as u32);
            ids.push(mk.blob_id(b));
        }
        (w.finish(&mk.enc).bytes.to_vec(), ids)
    }

    fn blobs() -> Vec<Vec<u8>> {
        (0..8u8).map(|i| (0..3000u32).map(|j| (j as u8).wrapping_mul(i + 1) ^ i).collect()).collect()
    }

    fn ids_of(mk: &MasterKey, bytes: &[u8]) -> (Vec<[u8; 32]>, SalvageStats) {
        let mut got = Vec::new();
        let stats = salvage(mk, bytes, |b| {
            assert_eq!(mk.blob_id(&b.plain), b.id);
            got.push(b.id);
            Ok(())
        })
        .unwrap();
        (got, stats)
    }

    #[test]
    fn intact_pack_gives_every_blob_in_order() {
        let mk = MasterKey::generate();
        let (bytes, ids) = pack_of(&mk, &blobs());
        let (got, stats) = ids_of(&mk, &bytes);
        assert_eq!(got, ids);
        assert_eq!(stats.lost_bytes, 0);
    }

    #[test]
    fn damaged_header_or_trailer_loses_no_blob() {
        let mk = MasterKey::generate();
        let (mut bytes, ids) = pack_of(&mk, &blobs());
        let n = bytes.len();
        bytes[n - 20] ^= 1; // inside the sealed header
        assert_eq!(ids_of(&mk, &bytes).0, ids);
        bytes[n - 2] ^= 1; // the trailer's magic: scan to the end
        assert_eq!(ids_of(&mk, &bytes).0, ids);
        bytes.truncate(n - 30); // the header cut off
        assert_eq!(ids_of(&mk, &bytes).0, ids);
    }

    /// A layout-2 pack: groups give back each of their blobs, with or
    /// without the header.
    #[test]
    fn groups_give_every_blob_without_the_header() {
        let mk = MasterKey::generate();
        let blobs = blobs();
        let mut w = PackWriter::with_layout(fmt::PackLayout::V2, 1 << 16);
        let mut ids = Vec::new();
        for g in blobs.chunks(3) {
            let plain = fmt::encode_group(g);
            let sealed = seal::seal(&mk.enc, ObjectType::DataGroup, &plain, Some(1));
            let list: Vec<([u8; 32], u32)> = g.iter().map(|b| (mk.blob_id(b), b.len() as u32)).collect();
            ids.extend(list.iter().map(|l| l.0));
            w.add_group(BlobKind::Data, &list, &sealed);
        }
        let mut bytes = w.finish(&mk.enc).bytes.to_vec();
        let (got, stats) = ids_of(&mk, &bytes);
        assert_eq!((got, stats.lost_bytes), (ids.clone(), 0));
        let n = bytes.len();
        bytes.truncate(n - 30); // the header cut off
        assert_eq!(ids_of(&mk, &bytes).0, ids);
        // A damaged group loses its blobs, and only those.
        bytes[fmt::MAGIC.len() + fmt::FRAME_LEN + 40] ^= 1;
        assert_eq!(ids_of(&mk, &bytes).0, ids[3..].to_vec());
    }

    #[test]
    fn damage_inside_a_blob_or_its_frame_loses_only_that_blob() {
        let mk = MasterKey::generate();
        let (clean, ids) = pack_of(&mk, &blobs());
        let frame_len = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        // Offsets of each frame.
        let mut frames = vec![fmt::MAGIC.len()];
        for _ in 1..ids.len() {
            let at = *frames.last().unwrap();
            frames.push(at + fmt::FRAME_LEN + frame_len(&clean, at));
        }
        for (k, &at) in frames.iter().enumerate() {
            for delta in [0, 4, fmt::FRAME_LEN + 30] {
                let mut bytes = clean.clone();
                bytes[at + delta] ^= 0x40;
                let (got, stats) = ids_of(&mk, &bytes);
                let want: Vec<[u8; 32]> = ids.iter().enumerate().filter(|(i, _)| *i != k).map(|(_, id)| *id).collect();
                assert_eq!(got, want, "frame {k}, byte +{delta}");
                assert!(stats.lost_bytes > 0);
            }
        }
    }

    #[test]
    fn wrong_key_or_garbage_recovers_nothing() {
        let mk = MasterKey::generate();
        let (bytes, _) = pack_of(&mk, &blobs());
        assert!(ids_of(&MasterKey::generate(), &bytes).0.is_empty());
        assert!(ids_of(&mk, &[7u8; 5000]).0.is_empty());
        assert!(ids_of(&mk, &[]).0.is_empty());
    }
}
