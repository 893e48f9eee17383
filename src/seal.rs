//! Sealing: compress (zstd, or raw when that does not help), then encrypt
//! (XChaCha20-Poly1305). See format-spec/03-ids-and-sealing.md.
//!
//! ```text
//! sealed    = version u8 (=1) | nonce [24] | ciphertext | tag [16]
//! plaintext = compression u8 (0 raw, 1 zstd) | payload
//! AD        = "cairn" 0x01 <object type u8>
//! ```

use std::cell::RefCell;

use crate::crypto::aead::{self, associated_data, ObjectType, NONCE_LEN, TAG_LEN};
use crate::error::{Error, Result};

pub const SEAL_VERSION: u8 = 1;
/// Bytes a sealed object adds to its payload.
pub const OVERHEAD: usize = 1 + NONCE_LEN + 1 + TAG_LEN;

const COMP_RAW: u8 = 0;
const COMP_ZSTD: u8 = 1;

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    /// Creating a decompression context costs more than opening a small
    /// tree blob: keep one per thread.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn decompress(data: &[u8], max_len: usize) -> std::io::Result<Vec<u8>> {
    // The output buffer is allocated at its capacity up front: size it by
    // the frame's recorded content size (cairn's frames carry it) when that
    // is within the bound, not by the bound (1 GiB for a WAL file).
    let max_len = match zstd::zstd_safe::get_frame_content_size(data) {
        Ok(Some(n)) if n <= max_len as u64 => n as usize,
        _ => max_len,
    };
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        match d.as_mut() {
            Some(d) => d.decompress(data, max_len),
            None => zstd::bulk::decompress(data, max_len),
        }
    })
}

fn compress(data: &[u8], level: i32) -> Option<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().map(|(l, _)| *l) != Some(level) {
            *c = Some((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        let (_, comp) = c.as_mut()?;
        comp.compress(data).ok()
    })
}

/// Seals `plain` with a random nonce. `level` is the zstd level; `None`
/// stores raw.
pub fn seal(key: &[u8; 32], ty: ObjectType, plain: &[u8], level: Option<i32>) -> Vec<u8> {
    seal_with_nonce(key, ty, plain, level, &aead::random_nonce())
}

/// Seals with an explicit nonce (deterministic: test vectors only; a nonce
/// must never be reused with the same key).
pub fn seal_with_nonce(
    key: &[u8; 32],
    ty: ObjectType,
    plain: &[u8],
    level: Option<i32>,
    nonce: &[u8; NONCE_LEN],
) -> Vec<u8> {
    let compressed = level.and_then(|l| compress(plain, l)).filter(|c| c.len() < plain.len());
    let (comp, payload) = match &compressed {
        Some(c) => (COMP_ZSTD, c.as_slice()),
        None => (COMP_RAW, plain),
    };
    let mut out = Vec::with_capacity(OVERHEAD + payload.len());
    out.push(SEAL_VERSION);
    out.extend_from_slice(nonce);
    out.push(comp);
    out.extend_from_slice(payload);
    let tag = aead::encrypt_in_place(key, nonce, &associated_data(ty), &mut out[1 + NONCE_LEN..]);
    out.extend_from_slice(&tag);
    out
}

/// Opens a sealed object: authenticates, decrypts and decompresses.
/// `max_len` bounds the plaintext (the index's raw length for blobs).
pub fn open(key: &[u8; 32], ty: ObjectType, sealed: &[u8], max_len: usize) -> Result<Vec<u8>> {
    if sealed.len() < OVERHEAD {
        return Err(Error::corrupt(format!("sealed {ty:?} is too short ({} bytes)", sealed.len())));
    }
    if sealed[0] != SEAL_VERSION {
        return Err(Error::corrupt(format!("sealed {ty:?} has unknown version {}", sealed[0])));
    }
    let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN].try_into().expect("length checked");
    let tag_at = sealed.len() - TAG_LEN;
    let tag: [u8; TAG_LEN] = sealed[tag_at..].try_into().expect("length checked");
    let mut buf = sealed[1 + NONCE_LEN..tag_at].to_vec();
    aead::decrypt_in_place(key, &nonce, &associated_data(ty), &mut buf, &tag)
        .map_err(|_| Error::crypto(format!("sealed {ty:?} failed authentication")))?;
    match buf[0] {
        COMP_RAW => {
            buf.remove(0);
            if buf.len() > max_len {
                return Err(Error::corrupt(format!("sealed {ty:?} is longer than expected")));
            }
            Ok(buf)
        }
        COMP_ZSTD => decompress(&buf[1..], max_len)
            .map_err(|e| Error::corrupt(format!("sealed {ty:?} does not decompress: {e}"))),
        c => Err(Error::corrupt(format!("sealed {ty:?} has unknown compression {c}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [42; 32];

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..5000), level in proptest::option::of(1i32..5)) {
            let s = seal(&KEY, ObjectType::DataBlob, &data, level);
            prop_assert!(s.len() <= data.len() + OVERHEAD);
            prop_assert_eq!(open(&KEY, ObjectType::DataBlob, &s, data.len()).unwrap(), data);
        }

        #[test]
        fn any_flipped_bit_is_detected(data in proptest::collection::vec(any::<u8>(), 1..500), pos in any::<usize>(), bit in 0u8..8) {
            let mut s = seal(&KEY, ObjectType::TreeBlob, &data, Some(3));
            let p = pos % s.len();
            s[p] ^= 1 << bit;
            prop_assert!(open(&KEY, ObjectType::TreeBlob, &s, data.len()).is_err());
        }

        #[test]
        fn open_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = open(&KEY, ObjectType::Index, &bytes, 1000);
        }
    }

    #[test]
    fn type_is_bound() {
        let s = seal(&KEY, ObjectType::Snapshot, b"{}", None);
        let e = open(&KEY, ObjectType::Index, &s, 100).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Crypto);
    }

    #[test]
    fn compressible_data_is_compressed_and_random_is_raw() {
        let text = vec![b'a'; 10_000];
        assert!(seal(&KEY, ObjectType::DataBlob, &text, Some(3)).len() < 200);
        let noise: Vec<u8> = (0..10_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let s = seal(&KEY, ObjectType::DataBlob, &noise, Some(3));
        assert!(s.len() <= noise.len() + OVERHEAD);
    }
}
