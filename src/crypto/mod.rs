//! Keys and authenticated encryption.
//!
//! - [`MasterKey`]: the repository's secret: an encryption key and a chunk-id
//!   key, wrapped by every key file.
//! - [`kdf`]: argon2id password stretching and key-file wrapping.
//! - [`aead`]: XChaCha20-Poly1305 with random nonces and typed associated
//!   data, used by [`crate::seal`].

pub mod aead;
pub mod kdf;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length of the master key material in a key file.
pub const MASTER_KEY_LEN: usize = 64;

/// The repository secret. Never written unwrapped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    /// XChaCha20-Poly1305 key for every sealed object.
    pub enc: [u8; 32],
    /// BLAKE3 key for chunk and tree ids.
    pub id: [u8; 32],
}

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = Self { enc: [0; 32], id: [0; 32] };
        rand::Rng::fill(&mut rand::thread_rng(), &mut k.enc[..]);
        rand::Rng::fill(&mut rand::thread_rng(), &mut k.id[..]);
        k
    }

    pub fn to_bytes(&self) -> [u8; MASTER_KEY_LEN] {
        let mut out = [0u8; MASTER_KEY_LEN];
        out[..32].copy_from_slice(&self.enc);
        out[32..].copy_from_slice(&self.id);
        out
    }

    pub fn from_bytes(b: &[u8; MASTER_KEY_LEN]) -> Self {
        let mut k = Self { enc: [0; 32], id: [0; 32] };
        k.enc.copy_from_slice(&b[..32]);
        k.id.copy_from_slice(&b[32..]);
        k
    }

    /// Keyed BLAKE3 of `data`: the id of a chunk or tree.
    pub fn blob_id(&self, data: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&self.id, data).as_bytes()
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}
