//! Pack layout (`data/<xx>/<id>`). See format-spec/05-packs.md.
//!
//! ```text
//! +----------+-------------------------------+----------------+-----------+-------+
//! | "CAIRNPK1" | frame* (len u32, kind u8, sealed) | sealed header | hlen u32 | "CPKT" |
//! +----------+-------------------------------+----------------+-----------+-------+
//! ```

use super::wire::{Reader, Writer};
use crate::error::{Error, Result};
use crate::id::BlobKind;

pub const MAGIC: &[u8; 8] = b"CAIRNPK1";
pub const TRAILER_MAGIC: &[u8; 4] = b"CPKT";
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
    /// Offset of the sealed blob (after its frame) from the start of the pack.
    pub offset: u32,
    /// Length of the sealed blob.
    pub length: u32,
    /// Length of the plaintext blob.
    pub raw_length: u32,
}

impl PackEntry {
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
        Ok(Self { kind, id: r.array()?, offset: r.u32()?, length: r.u32()?, raw_length: r.u32()? })
    }

    /// End of the sealed blob within the pack.
    pub fn end(&self) -> u64 {
        self.offset as u64 + self.length as u64
    }
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

/// Trailer: header length and magic.
pub fn encode_trailer(header_len: u32) -> [u8; TRAILER_LEN] {
    let mut out = [0u8; TRAILER_LEN];
    out[..4].copy_from_slice(&header_len.to_le_bytes());
    out[4..].copy_from_slice(TRAILER_MAGIC);
    out
}

/// Reads the trailer: the sealed header's length. `pack_len` is the whole
/// pack's size, used to check that the header fits.
pub fn decode_trailer(trailer: &[u8], pack_len: u64) -> Result<u32> {
    if trailer.len() != TRAILER_LEN || &trailer[4..] != TRAILER_MAGIC {
        return Err(Error::corrupt("pack trailer is damaged"));
    }
    let hlen = u32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
    if (hlen as u64) + (TRAILER_LEN + MAGIC.len()) as u64 > pack_len {
        return Err(Error::corrupt(format!("pack header length {hlen} exceeds the pack")));
    }
    Ok(hlen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry() -> impl Strategy<Value = PackEntry> {
        (any::<bool>(), proptest::array::uniform32(any::<u8>()), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
            |(t, id, offset, length, raw_length)| PackEntry {
                kind: if t { BlobKind::Tree } else { BlobKind::Data },
                id,
                offset,
                length,
                raw_length,
            },
        )
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
