//! XChaCha20-Poly1305 with typed associated data.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use crate::error::{Error, Result};

pub const NONCE_LEN: usize = 24;
pub const TAG_LEN: usize = 16;

/// What a sealed object is. Its byte goes into the associated data, so one
/// kind of object cannot be passed off as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectType {
    DataBlob = 1,
    TreeBlob = 2,
    PackHeader = 3,
    Index = 4,
    Snapshot = 5,
    Config = 6,
    Lock = 7,
    /// An archived PostgreSQL WAL file (`wal/…`, format-spec/13-wal.md).
    WalFile = 8,
    /// A PostgreSQL system's record (`wal/<system id>/cluster`).
    ClusterRecord = 9,
    /// A group of data blobs sealed as one unit (format 2, format-spec/05).
    DataGroup = 10,
    /// A group of tree blobs sealed as one unit (format 2).
    TreeGroup = 11,
}

/// Associated data: `"cairn" 0x01 <type>`.
pub fn associated_data(ty: ObjectType) -> [u8; 7] {
    [b'c', b'a', b'i', b'r', b'n', 1, ty as u8]
}

/// A fresh random nonce.
pub fn random_nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    rand::Rng::fill(&mut rand::thread_rng(), &mut n[..]);
    n
}

/// Encrypts `buf` in place and returns the tag.
pub fn encrypt_in_place(key: &[u8; 32], nonce: &[u8; NONCE_LEN], ad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
    let cipher = XChaCha20Poly1305::new(key.into());
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(nonce), ad, buf)
        .expect("XChaCha20 accepts any buffer shorter than 256 GiB");
    tag.into()
}

/// Decrypts `buf` in place, checking `tag`.
pub fn decrypt_in_place(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    ad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<()> {
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt_in_place_detached(XNonce::from_slice(nonce), ad, buf, Tag::from_slice(tag))
        .map_err(|_| Error::crypto("authentication failed"))
}
