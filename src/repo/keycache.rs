//! The master-key cache: opening a repository without argon2id.
//!
//! PostgreSQL runs `archive_command` once per WAL segment, so `pg wal-push`
//! and `pg wal-fetch` cannot afford argon2id (~0.1 s and 32 MiB) on every
//! call. After one full opening they keep the master key in a per-user
//! file, `<cache dir>/keys/<hex SHA-256 of the repository location>`, which
//! later calls open with the password through a fast key derivation:
//!
//! ```text
//! file      = "CAIRNKC1" | salt [32] | key id [32] | nonce [24] | sealed master key [64] | tag [16]
//! cache key = BLAKE3-derive-key("cairn 2026-12 master key cache", salt || password)
//! sealed    = XChaCha20-Poly1305(cache key, nonce, AD = "cairn key cache" || key id, master key)
//! ```
//!
//! The file is private (0600 in a 0700 directory) and held to the standard
//! of the password file: whoever can read both can read the repository
//! without argon2id's cost, and whoever can read the password file can
//! read it anyway (format-spec/12-threat-model.md). A cached key is only
//! used after it authenticates the repository's `config`, so a repository
//! created anew at the same location, or a changed password, falls back to
//! the key files and rewrites the cache.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{keys, MAX_OBJECT};
use crate::backend::Backend;
use crate::crypto::aead::{self, ObjectType, NONCE_LEN, TAG_LEN};
use crate::crypto::{MasterKey, MASTER_KEY_LEN};
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::format::config::Config;
use crate::id::KeyId;
use crate::seal;

const MAGIC: &[u8; 8] = b"CAIRNKC1";
const CONTEXT: &str = "cairn 2026-12 master key cache";
const FILE_LEN: usize = 8 + 32 + 32 + NONCE_LEN + MASTER_KEY_LEN + TAG_LEN;

/// A repository opened for the WAL archive: its key and config, without
/// the index cache that [`super::Repository`] keeps.
pub struct Unlocked {
    pub backend: Backend,
    pub key: MasterKey,
    pub config: Config,
    pub key_id: KeyId,
    /// Whether the key came from the cache (no argon2id ran).
    pub from_cache: bool,
    /// The cache file, when caching.
    pub cache_file: Option<PathBuf>,
}

impl Unlocked {
    /// Whether this user has seen `what` done for this repository before
    /// (a marker file beside the cached key). Markers only save requests:
    /// a missing one makes the caller do the (idempotent) work again.
    pub fn marked(&self, what: &str) -> bool {
        self.cache_file.as_ref().is_some_and(|f| marker(f, what).exists())
    }

    /// Records that `what` is done (see [`Self::marked`]).
    pub fn mark(&self, what: &str) {
        if let Some(f) = &self.cache_file {
            let _ = store(&marker(f, what), b"");
        }
    }
}

/// Removes every marker of a cache file.
fn forget_markers(file: &Path) {
    let (Some(dir), Some(name)) = (file.parent(), file.file_name().and_then(|n| n.to_str())) else { return };
    let prefix = format!("{name}.");
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn marker(file: &Path, what: &str) -> PathBuf {
    let mut name = file.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{what}"));
    file.with_file_name(name)
}

/// The cache file for a repository location under `root`.
pub fn cache_file(root: &Path, location: &str) -> PathBuf {
    root.join("keys").join(hex::encode(Sha256::digest(location.as_bytes())))
}

fn cache_key(salt: &[u8; 32], password: &[u8]) -> zeroize::Zeroizing<[u8; 32]> {
    let mut material = zeroize::Zeroizing::new(Vec::with_capacity(32 + password.len()));
    material.extend_from_slice(salt);
    material.extend_from_slice(password);
    zeroize::Zeroizing::new(blake3::derive_key(CONTEXT, &material))
}

fn ad(key_id: &[u8; 32]) -> Vec<u8> {
    let mut v = b"cairn key cache".to_vec();
    v.extend_from_slice(key_id);
    v
}

/// Encodes a cache file.
fn encode(key: &MasterKey, key_id: &KeyId, password: &[u8]) -> Vec<u8> {
    let salt: [u8; 32] = rand::random();
    let nonce = aead::random_nonce();
    let ck = cache_key(&salt, password);
    let mut buf = zeroize::Zeroizing::new(key.to_bytes().to_vec());
    let tag = aead::encrypt_in_place(&ck, &nonce, &ad(&key_id.0), &mut buf);
    let mut out = Vec::with_capacity(FILE_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&salt);
    out.extend_from_slice(&key_id.0);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&buf);
    out.extend_from_slice(&tag);
    out
}

/// Decodes a cache file with the password; `None` if it is not a cache
/// file or the password does not open it.
fn decode(b: &[u8], password: &[u8]) -> Option<(KeyId, MasterKey)> {
    if b.len() != FILE_LEN || &b[..8] != MAGIC {
        return None;
    }
    let salt: [u8; 32] = b[8..40].try_into().ok()?;
    let key_id: [u8; 32] = b[40..72].try_into().ok()?;
    let nonce: [u8; NONCE_LEN] = b[72..72 + NONCE_LEN].try_into().ok()?;
    let at = 72 + NONCE_LEN;
    let mut buf = zeroize::Zeroizing::new(b[at..at + MASTER_KEY_LEN].to_vec());
    let tag: [u8; TAG_LEN] = b[at + MASTER_KEY_LEN..].try_into().ok()?;
    let ck = cache_key(&salt, password);
    aead::decrypt_in_place(&ck, &nonce, &ad(&key_id), &mut buf, &tag).ok()?;
    let mk: [u8; MASTER_KEY_LEN] = buf[..].try_into().ok()?;
    Some((KeyId(key_id), MasterKey::from_bytes(&mk)))
}

/// Writes the cache file privately and atomically (a staging file renamed
/// into place). Failing to cache is not an error: the next call derives
/// the key again.
fn store(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = file.parent().expect("cache files live in a directory");
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let staging = dir.join(format!(".{}.{}", std::process::id(), rand::random::<u32>()));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&staging)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    match written.and_then(|()| std::fs::rename(&staging, file)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            Err(e)
        }
    }
}

/// The cached key of a location, if the password opens it: not yet known
/// to belong to the repository there (see [`unlock`], which checks it
/// against `config`). For reads that authenticate what they read with it,
/// and fall back to [`unlock`] when that fails.
pub fn cached_key(cache_root: &Path, location: &str, password: &[u8]) -> Option<MasterKey> {
    std::fs::read(cache_file(cache_root, location)).ok().and_then(|b| decode(&b, password)).map(|(_, k)| k)
}

/// Opens the repository's key: from the cache under `cache_root` when it
/// holds a key that the password opens and that authenticates `config`,
/// else from the key files (argon2id), caching the result.
pub fn unlock(backend: Backend, password: &[u8], cache_root: Option<&Path>) -> Result<Unlocked> {
    let sealed_config = match backend.get("config") {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(Error::new(
                ErrorKind::NoRepository,
                format!("no repository at {} (no config object)", backend.location()),
            ))
        }
        Err(e) => return Err(e),
    };
    let open_config = |k: &MasterKey| seal::open(&k.enc, ObjectType::Config, &sealed_config, MAX_OBJECT);
    let file = cache_root.map(|r| cache_file(r, backend.location()));
    if let Some(file) = &file {
        if let Some((key_id, key)) = std::fs::read(file).ok().and_then(|b| decode(&b, password)) {
            if let Ok(plain) = open_config(&key) {
                let config = Config::decode(&plain)?;
                return Ok(Unlocked { backend, key, config, key_id, from_cache: true, cache_file: Some(file.clone()) });
            }
        }
    }
    let (key_id, key, plain) = keys::find_key(&backend, password, |k| open_config(k).context("config"))?;
    let config = Config::decode(&plain)?;
    if let Some(file) = &file {
        // Markers of work done were for whatever this location held when
        // they were written: a repository made anew there has none of it.
        forget_markers(file);
        if let Err(e) = store(file, &encode(&key, &key_id, password)) {
            eprintln!("warning: could not cache the key in {}: {e}", file.display());
        }
    }
    Ok(Unlocked { backend, key, config, key_id, from_cache: false, cache_file: file })
}

/// Removes the cached key of a location (`pg … --no-key-cache` never
/// writes one; this is for `key passwd`/`key remove` and tests).
pub fn forget(cache_root: &Path, location: &str) {
    let _ = std::fs::remove_file(cache_file(cache_root, location));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_file_opens_with_its_password_only() {
        let key = MasterKey::generate();
        let id = KeyId([9; 32]);
        let b = encode(&key, &id, b"pw");
        assert_eq!(b.len(), FILE_LEN);
        let (got_id, got) = decode(&b, b"pw").unwrap();
        assert_eq!(got_id, id);
        assert_eq!(got.to_bytes(), key.to_bytes());
        assert!(decode(&b, b"pw2").is_none());
        for i in [0, 8, 40, 72, 100, FILE_LEN - 1] {
            let mut d = b.clone();
            d[i] ^= 1;
            assert!(decode(&d, b"pw").is_none(), "{i}");
        }
        assert!(decode(&b[..FILE_LEN - 1], b"pw").is_none());
    }

    #[test]
    fn unlock_uses_the_cache_only_for_the_repository_it_opened() {
        let d = tempfile::tempdir().unwrap();
        let repo = crate::repo::memory_repo();
        let b = repo.backend.clone();
        let first = unlock(b.clone(), b"pw", Some(d.path())).unwrap();
        assert!(!first.from_cache);
        let second = unlock(b.clone(), b"pw", Some(d.path())).unwrap();
        assert!(second.from_cache);
        assert_eq!(second.key.to_bytes(), repo.key.to_bytes());
        assert_eq!(second.config.id, repo.config.id);
        second.mark("record-1");
        assert!(second.marked("record-1"));
        // Another password does not open the cache (nor the repository).
        assert_eq!(unlock(b.clone(), b"nope", Some(d.path())).err().map(|e| e.kind()), Some(ErrorKind::WrongPassword));
        // A new repository at the same location ("memory"): the cached key
        // does not authenticate its config, so the key files decide.
        let other = crate::repo::memory_repo();
        assert_eq!(other.backend.location(), b.location());
        let third = unlock(other.backend.clone(), b"pw", Some(d.path())).unwrap();
        assert!(!third.from_cache);
        assert_eq!(third.key.to_bytes(), other.key.to_bytes());
        // Markers went with the key that no longer opens the config.
        assert!(!third.marked("record-1"));
        // Without a cache directory nothing is cached.
        assert!(!unlock(b, b"pw", None).unwrap().from_cache);
    }

    #[test]
    fn stored_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let f = cache_file(d.path(), "s3:http://x/b");
        store(&f, b"x").unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(f.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
