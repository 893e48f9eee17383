//! An opened repository: backend, master key, config and index cache
//! (whose sync and blob reads live in [`crate::index`]).
//!
//! [`Repository`] only exists once a password has opened a key file and the
//! config has decrypted, so nothing can back up into, or read from, an
//! unopened repository.

pub mod keycache;
pub mod keys;
pub mod lock;

use std::collections::HashSet;
use std::path::PathBuf;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::backend::Backend;
use crate::crypto::aead::ObjectType;
use crate::crypto::kdf;
use crate::crypto::MasterKey;
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::format::config::{ChunkerParams, Config};
use crate::format::snapshot::Snapshot;
use crate::format::FORMAT_VERSION;
use crate::id::{IndexId, KeyId, RepoId, SnapshotId};
use crate::index::IndexCache;
use crate::seal;

/// Largest sealed JSON/index object we are willing to open (1 GiB).
const MAX_OBJECT: usize = 1 << 30;

/// Where the index cache lives.
#[derive(Clone, Debug, Default)]
pub enum CacheMode {
    /// `$CAIRN_CACHE_DIR`, `$XDG_CACHE_HOME/cairn` or `~/.cache/cairn`.
    #[default]
    Default,
    Dir(PathBuf),
    /// In memory only (`--no-cache`).
    Memory,
}

impl CacheMode {
    pub fn root(&self) -> Option<PathBuf> {
        match self {
            CacheMode::Default => crate::index::default_root(),
            CacheMode::Dir(d) => Some(d.clone()),
            CacheMode::Memory => None,
        }
    }
}

/// Settings chosen at `init`.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub chunker: Option<ChunkerParams>,
    /// The chunker for database dumps (`Config::dump_chunker`): by default
    /// [`default_dump_chunker`] with `chunker`'s seed; `Some(None)` writes
    /// none (dumps are then cut by `chunker`, as before the field existed).
    pub dump_chunker: Option<Option<ChunkerParams>>,
    /// zstd level for groups of small chunks (`Config::group_compression`).
    pub group_compression: Option<i32>,
    pub pack_size: u32,
    pub compression: i32,
    /// The chunk-id key of another repository (`init --copy-chunker-params`):
    /// with the same chunker parameters, both repositories give the same
    /// data the same chunk ids, so `copy` between them dedups.
    pub id_key: Option<[u8; 32]>,
    /// The repository format version (`init --format-version`): 2 by
    /// default; 1 for a repository that older cairn releases must read.
    pub format_version: u32,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            chunker: None,
            dump_chunker: None,
            group_compression: Some(DEFAULT_GROUP_COMPRESSION),
            pack_size: 16 << 20,
            compression: 3,
            id_key: None,
            format_version: FORMAT_VERSION,
        }
    }
}

/// Default chunker sizes: min 128 KiB, average 512 KiB, max 2 MiB.
pub fn default_chunker() -> ChunkerParams {
    chunker_for_average(512 << 10)
}

/// The average size of the chunks a dump is cut into by default: small
/// enough that the rows a night changes, scattered through a dump, cost a
/// few KiB each instead of a whole 512 KiB chunk (README, "Chunk sizes").
pub const DEFAULT_DUMP_CHUNK: u32 = 4 << 10;

/// The zstd level `init` writes for groups of small chunks: a group is
/// 1 MiB of chunks compressed as one, where a higher level than the
/// default 3 pays (README, "Chunk sizes").
pub const DEFAULT_GROUP_COMPRESSION: i32 = 6;

/// Default chunker for dumps: min 1 KiB, average 4 KiB, max 16 KiB, with
/// the seed of `files` (one secret for both).
pub fn default_dump_chunker(files: &ChunkerParams) -> ChunkerParams {
    ChunkerParams { seed: files.seed, ..chunker_for_average(DEFAULT_DUMP_CHUNK) }
}

/// Chunker parameters with a fresh seed for an average chunk size (a power
/// of two): chunks are cut between a quarter and four times it.
pub fn chunker_for_average(avg: u32) -> ChunkerParams {
    ChunkerParams { min_size: (avg / 4).max(256), avg_size: avg, max_size: avg * 4, seed: rand::random() }
}

/// An opened repository.
pub struct Repository {
    pub backend: Backend,
    pub key: MasterKey,
    pub config: Config,
    pub cache: IndexCache,
    key_id: KeyId,
    /// Index objects that did not load at the last sync (damaged or gone),
    /// with the reason. Their packs are not used until `repair index`.
    pub(crate) damaged_indexes: std::sync::Mutex<Vec<(IndexId, String)>>,
    /// Held while the cache is rebuilt because a pack was missing.
    pub(crate) relocating: std::sync::Mutex<()>,
    /// The groups opened last (format 2), for reads chunk by chunk.
    pub(crate) units: crate::index::units::UnitCache,
    /// Where warnings go (the CLI prints them; by default nowhere).
    warn: Warn,
    /// Snapshot objects found unreadable, each warned about once.
    unreadable_snapshots: std::sync::Mutex<HashSet<SnapshotId>>,
    /// How far a restore or a `check --read-data` has got (the CLI shows it).
    pub progress: std::sync::Arc<crate::progress::Meter>,
}

/// A sink for warnings that do not stop an operation.
pub type Warn = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// An object name: exactly 64 lower-case hex digits.
pub fn parse_object_name(base: &str) -> Option<[u8; 32]> {
    if base.len() != 64 || !base.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut id = [0u8; 32];
    hex::decode_to_slice(base, &mut id).ok()?;
    Some(id)
}

/// SHA-256 name of stored bytes.
pub fn content_id(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn user_label() -> String {
    let host = hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    format!("{user}@{host}")
}

impl Repository {
    /// Creates a repository: key file first, `config` last.
    pub fn init(backend: Backend, password: &[u8], opts: &InitOptions, cache: CacheMode) -> Result<Self> {
        match backend.get("config") {
            Ok(_) => return Err(Error::invalid(format!("a repository already exists at {}", backend.location()))),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if password.is_empty() {
            return Err(Error::invalid("refusing an empty password"));
        }
        let mut key = MasterKey::generate();
        if let Some(id) = opts.id_key {
            key.id = id;
        }
        if !crate::format::FORMAT_VERSIONS.contains(&opts.format_version) {
            return Err(Error::invalid(format!(
                "format version {} is not one this cairn writes ({} to {})",
                opts.format_version,
                crate::format::FORMAT_VERSIONS.start(),
                crate::format::FORMAT_VERSIONS.end()
            )));
        }
        let chunker = opts.chunker.unwrap_or_else(default_chunker);
        let config = Config {
            version: opts.format_version,
            id: RepoId(rand::random()),
            chunker,
            pack_size: opts.pack_size,
            compression: opts.compression,
            dump_chunker: opts.dump_chunker.unwrap_or_else(|| Some(default_dump_chunker(&chunker))),
            group_compression: opts.group_compression,
        };
        config.chunker.validate()?;
        if let Some(d) = &config.dump_chunker {
            d.validate()?;
        }
        let kf = kdf::wrap(&key, password, kdf::params_for_new_keys(), user_label())?;
        let key_id = keys::store_key(&backend, &kf)?;
        let sealed = seal::seal(&key.enc, ObjectType::Config, &config.encode(), None);
        if !backend.put_new("config", Bytes::from(sealed))? {
            let _ = backend.delete(&format!("keys/{key_id}"));
            return Err(Error::invalid(format!("a repository already exists at {}", backend.location())));
        }
        let cache = IndexCache::open(cache.root().as_deref(), &config.id)?;
        cache.clear()?;
        Ok(Self::assemble(backend, key, config, cache, key_id))
    }

    /// Writes `config` again, whole, in one put (format-spec/04-config.md:
    /// only `migrate` does, under the exclusive lock). The id must stay.
    pub fn replace_config(&self, config: &Config) -> Result<()> {
        if config.id != self.config.id {
            return Err(Error::invalid("a config keeps its repository's id"));
        }
        config.chunker.validate()?;
        let sealed = seal::seal(&self.key.enc, ObjectType::Config, &config.encode(), None);
        // The config must still open as one of ours before it is replaced.
        Config::decode(&seal::open(&self.key.enc, ObjectType::Config, &sealed, MAX_OBJECT)?)?;
        self.backend.put("config", Bytes::from(sealed))
    }

    /// An opened repository's state, with nothing absorbed or warned yet.
    fn assemble(backend: Backend, key: MasterKey, config: Config, cache: IndexCache, key_id: KeyId) -> Self {
        Self {
            backend,
            key,
            config,
            cache,
            key_id,
            damaged_indexes: Default::default(),
            relocating: Default::default(),
            units: Default::default(),
            warn: std::sync::Arc::new(|_| {}),
            unreadable_snapshots: Default::default(),
            progress: Default::default(),
        }
    }

    /// Opens a repository with a password and syncs the cache.
    pub fn open(backend: Backend, password: &[u8], cache: CacheMode) -> Result<Self> {
        let repo = Self::open_unsynced(backend, password, cache)?;
        repo.sync_cache()?;
        Ok(repo)
    }

    /// Opens a repository without reading its index: for commands that
    /// only list snapshots (`status`), which then cost the key, the config,
    /// the snapshot listing and the snapshot objects the cache lacks. Such
    /// a repository must not look up blobs (its index cache may be stale).
    pub fn open_unsynced(backend: Backend, password: &[u8], cache: CacheMode) -> Result<Self> {
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
        let (key_id, key, plain) = keys::find_key(&backend, password, |k| {
            seal::open(&k.enc, ObjectType::Config, &sealed_config, MAX_OBJECT).context("config")
        })?;
        let config = Config::decode(&plain)?;
        let cache = IndexCache::open(cache.root().as_deref(), &config.id)?;
        Ok(Self::assemble(backend, key, config, cache, key_id))
    }

    /// The key file this session opened with.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Seals and stores a JSON/index object under `folder/<sha256>`.
    pub fn save_object(&self, folder: &str, ty: ObjectType, plain: &[u8]) -> Result<[u8; 32]> {
        Ok(self.store_object(folder, ty, plain)?.0)
    }

    /// Seals and stores an object; returns its id and the stored bytes.
    fn store_object(&self, folder: &str, ty: ObjectType, plain: &[u8]) -> Result<([u8; 32], Bytes)> {
        let sealed = Bytes::from(seal::seal(&self.key.enc, ty, plain, Some(self.config.compression)));
        let id = content_id(&sealed);
        self.backend.put(&format!("{folder}/{}", hex::encode(id)), sealed.clone())?;
        Ok((id, sealed))
    }

    /// Loads `folder/<id>`, checks its name against its SHA-256, opens it.
    pub fn load_object(&self, folder: &str, id: &[u8; 32], ty: ObjectType) -> Result<Vec<u8>> {
        Ok(self.fetch_object(folder, id, ty)?.1)
    }

    /// [`Self::load_object`], also returning the stored bytes.
    fn fetch_object(&self, folder: &str, id: &[u8; 32], ty: ObjectType) -> Result<(Bytes, Vec<u8>)> {
        let name = format!("{folder}/{}", hex::encode(id));
        let bytes = self.backend.get(&name).map_err(|e| {
            if e.kind() == ErrorKind::NotFound {
                Error::not_found(format!("{name} does not exist"))
            } else {
                e
            }
        })?;
        if &content_id(&bytes) != id {
            return Err(Error::corrupt(format!("{name} is damaged: its content does not match its name")));
        }
        let plain = seal::open(&self.key.enc, ty, &bytes, MAX_OBJECT).context(&name)?;
        Ok((bytes, plain))
    }

    /// Ids of all objects in a folder whose names are valid: exactly 64
    /// lower-case hex digits. Anything else is ignored.
    pub fn list_ids(&self, folder: &str) -> Result<Vec<[u8; 32]>> {
        let mut out = Vec::new();
        for (name, _) in self.backend.list(folder)? {
            if let Some(id) = parse_object_name(name.rsplit('/').next().unwrap_or("")) {
                out.push(id);
            }
        }
        Ok(out)
    }

    // ----- snapshots

    pub fn save_snapshot(&self, s: &Snapshot) -> Result<SnapshotId> {
        let (id, sealed) = self.store_object("snapshots", ObjectType::Snapshot, &s.encode())?;
        let _ = self.cache.put_snapshot(&id, &sealed);
        Ok(SnapshotId(id))
    }

    /// Loads a snapshot: from the local cache when it has a copy that
    /// matches its name and opens (a snapshot object never changes), else
    /// from the repository.
    pub fn load_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        match self.cached_snapshot(id)? {
            Some((_, s)) => Ok(s),
            None => self.fetch_snapshot(id),
        }
    }

    /// The local cache's copy of a snapshot object, if it matches the
    /// snapshot's name and opens: the stored bytes and the snapshot.
    pub fn cached_snapshot(&self, id: &SnapshotId) -> Result<Option<(Bytes, Snapshot)>> {
        let Some(sealed) = self.cache.snapshot(&id.0)? else { return Ok(None) };
        if content_id(&sealed) != id.0 {
            return Ok(None);
        }
        let Ok(plain) = seal::open(&self.key.enc, ObjectType::Snapshot, &sealed, MAX_OBJECT) else {
            return Ok(None);
        };
        Ok(Snapshot::decode(&plain).ok().map(|s| (Bytes::from(sealed), s)))
    }

    /// Loads a snapshot from the repository itself (for `check`), and
    /// refreshes the cached copy.
    ///
    /// Every caller names a snapshot it has just listed, so a missing one
    /// was forgotten since: said so, as a "no snapshot" answer.
    pub fn fetch_snapshot(&self, id: &SnapshotId) -> Result<Snapshot> {
        let (bytes, plain) = match self.fetch_object("snapshots", &id.0, ObjectType::Snapshot) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::not_found(format!(
                    "no snapshot {}: it was forgotten since it was listed",
                    id.short()
                )))
            }
            r => r?,
        };
        let s = Snapshot::decode(&plain).context(format!("snapshot {id}"))?;
        let _ = self.cache.put_snapshot(&id.0, &bytes);
        Ok(s)
    }

    /// Sends warnings (an unreadable snapshot left out of a listing) to `f`.
    pub fn set_warn(&mut self, f: Warn) {
        self.warn = f;
    }

    /// All readable snapshots, oldest first. A damaged snapshot object is
    /// left out with a warning naming it, so that listing, browsing and
    /// backups go on (`check` reports it; `forget ID` or `repair snapshots
    /// --forget` removes it).
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        self.list_snapshots(false)
    }

    /// All snapshots, oldest first; a damaged one is an error. For prune,
    /// which must not decide what is unused without every snapshot.
    pub fn snapshots_strict(&self) -> Result<Vec<(SnapshotId, Snapshot)>> {
        self.list_snapshots(true)
    }

    fn list_snapshots(&self, strict: bool) -> Result<Vec<(SnapshotId, Snapshot)>> {
        let mut out = Vec::new();
        let ids = self.list_ids("snapshots")?;
        self.cache.retain_snapshots(&ids.iter().copied().collect())?;
        for id in ids {
            let id = SnapshotId(id);
            match self.load_snapshot(&id) {
                Ok(s) => out.push((id, s)),
                // Forgotten since the listing (a forget or tag beside us).
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) if !strict && matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Crypto) => {
                    let mut seen = self.unreadable_snapshots.lock().unwrap_or_else(|p| p.into_inner());
                    if seen.insert(id) {
                        (self.warn)(&format!(
                            "snapshots/{id} cannot be read ({e}); it is left out (`cairn forget {}` removes it)",
                            id.short()
                        ));
                    }
                }
                Err(e) if strict => {
                    return Err(e.context(format!("snapshots/{id} (`cairn forget {}` removes it)", id.short())))
                }
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Resolves `latest` or a unique id prefix.
    pub fn find_snapshot(&self, spec: &str) -> Result<(SnapshotId, Snapshot)> {
        if spec == "latest" {
            return self.snapshots()?.pop().ok_or_else(|| Error::not_found("the repository has no snapshots"));
        }
        let id = self.find_snapshot_id(spec)?;
        Ok((id, self.load_snapshot(&id)?))
    }

    /// Resolves `latest` or a unique id prefix to an id, without reading
    /// the snapshot named by a prefix (so that a damaged one can be named).
    pub fn find_snapshot_id(&self, spec: &str) -> Result<SnapshotId> {
        if spec == "latest" {
            return self.find_snapshot(spec).map(|(id, _)| id);
        }
        if spec.is_empty() || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!("{spec:?} is not a snapshot id or 'latest'")));
        }
        let spec = spec.to_ascii_lowercase();
        let matches: Vec<[u8; 32]> =
            self.list_ids("snapshots")?.into_iter().filter(|id| hex::encode(id).starts_with(&spec)).collect();
        match matches.as_slice() {
            [] => Err(Error::not_found(format!("no snapshot matches {spec:?}"))),
            [one] => Ok(SnapshotId(*one)),
            _ => Err(Error::invalid(format!("{spec:?} matches {} snapshots; give more of the id", matches.len()))),
        }
    }
}

/// A new repository in memory, for unit tests (fast key derivation).
#[cfg(test)]
pub fn memory_repo() -> Repository {
    std::env::set_var("CAIRN_INSECURE_TEST_KDF", "1");
    Repository::init(Backend::memory().unwrap(), b"pw", &InitOptions::default(), CacheMode::Memory).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_named_by_hash_and_verified() {
        let r = memory_repo();
        let id = r.save_object("snapshots", ObjectType::Snapshot, b"{}").unwrap();
        assert_eq!(r.load_object("snapshots", &id, ObjectType::Snapshot).unwrap(), b"{}");
        // The wrong type does not open.
        assert!(r.load_object("snapshots", &id, ObjectType::Index).is_err());
        let missing = r.load_object("snapshots", &[0; 32], ObjectType::Snapshot).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound);
    }

    /// A snapshot forgotten between a listing and its load (a restore
    /// beside `forget`) is a plain "no snapshot" answer.
    #[test]
    fn a_snapshot_forgotten_since_it_was_listed_is_no_snapshot() {
        let r = memory_repo();
        let e = r.load_snapshot(&SnapshotId([7; 32])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("no snapshot 07070707: it was forgotten since it was listed"), "{e}");
    }

    #[test]
    fn init_twice_is_refused() {
        let r = memory_repo();
        let e = Repository::init(r.backend, b"pw", &InitOptions::default(), CacheMode::Memory).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn open_wrong_password_and_missing_repo() {
        let r = memory_repo();
        let e = Repository::open(r.backend, b"nope", CacheMode::Memory).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::WrongPassword);
        let e = Repository::open(Backend::memory().unwrap(), b"pw", CacheMode::Memory).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::NoRepository);
    }

    /// A key file whose argon2 parameters argon2 refuses is damage, named
    /// in the error, not a wrong password.
    #[test]
    fn invalid_argon2_parameters_are_a_damaged_key_file() {
        let r = memory_repo();
        let (good, _) = keys::list_key_files(&r.backend).unwrap().pop().unwrap();
        let mut bytes = r.backend.get(&format!("keys/{good}")).unwrap().to_vec();
        // Bytes 14..18: t_cost (format-spec/02-keys.md); argon2 needs >= 1.
        bytes[14..18].copy_from_slice(&0u32.to_le_bytes());
        let bad = crate::id::KeyId(content_id(&bytes));
        r.backend.put(&format!("keys/{bad}"), bytes::Bytes::from(bytes)).unwrap();
        r.backend.delete(&format!("keys/{good}")).unwrap();
        let e = Repository::open(r.backend.clone(), b"pw", CacheMode::Memory).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&format!("keys/{bad}")) && msg.contains("invalid argon2 parameters"), "{msg}");
    }
}
