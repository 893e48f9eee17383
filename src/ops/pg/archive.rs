//! The WAL archive: `pg wal-push` and `pg wal-fetch`, and the listing that
//! status, restore and prune read (format-spec/13-wal.md).
//!
//! Layout under the repository:
//!
//! ```text
//! wal/<system id>/cluster                          the system's record (sealed JSON, type 9)
//! wal/<system id>/<timeline+log, 16 hex>/<file>    segments, .partial and .backup files (type 8)
//! wal/<system id>/<timeline>.history               timeline history files (type 8)
//! ```
//!
//! Rule W1 (push): a file is reported archived only once its object is
//! durable (the backend's put contract). W2: a name is written once; a push
//! of a name that exists compares contents: the same is success, different
//! is an error and nothing is overwritten. W3: a segment's header must
//! carry its own position and the system identifier it is filed under.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::backend::Backend;
use crate::crypto::aead::ObjectType;
use crate::crypto::MasterKey;
use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::format::wal::{ClusterRecord, WalObject};
use crate::pg::wal::{control_system_id, SegmentHeader, WalFile};
use crate::seal;

/// The largest WAL file cairn archives (PostgreSQL's largest segment).
const MAX_WAL_FILE: usize = 1 << 30;
/// Bound on a sealed cluster record's plaintext.
const MAX_RECORD: usize = 1 << 16;

/// The object name of an archived WAL file.
pub fn object_name(system_id: u64, file: &WalFile) -> String {
    match file.folder() {
        Some(folder) => format!("wal/{system_id}/{folder}/{file}"),
        None => format!("wal/{system_id}/{file}"),
    }
}

/// The object name of a system's record.
pub fn record_name(system_id: u64) -> String {
    format!("wal/{system_id}/cluster")
}

/// Keys and storage the archive works with.
pub struct Archive<'a> {
    pub backend: &'a Backend,
    pub key: &'a MasterKey,
    /// zstd level (the repository's `compression`).
    pub level: i32,
}

/// What a push did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// The file is now archived.
    Stored { bytes: u64 },
    /// The same content was archived before (a retry of a push whose
    /// success PostgreSQL did not see).
    AlreadyArchived,
}

/// One archived file, as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub file: WalFile,
    pub size: u64,
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
}

impl Archive<'_> {
    fn seal(&self, ty: ObjectType, plain: &[u8]) -> Vec<u8> {
        seal::seal(&self.key.enc, ty, plain, Some(self.level))
    }

    /// Opens a stored WAL object and checks that it is the file `file` of
    /// system `system_id`.
    pub fn open(&self, system_id: u64, file: &WalFile, sealed: &[u8]) -> Result<WalObject> {
        let name = object_name(system_id, file);
        let plain = seal::open(&self.key.enc, ObjectType::WalFile, sealed, MAX_WAL_FILE + 256).context(&name)?;
        let o = WalObject::decode_owned(plain).context(&name)?;
        if o.name != file.to_string() || o.system_id != system_id {
            return Err(Error::corrupt(format!(
                "{name} holds {} of system {}, not this file (an object moved under another name)",
                o.name, o.system_id
            )));
        }
        if file.has_header() {
            SegmentHeader::decode(&o.content)
                .and_then(|h| {
                    if h.system_id != system_id {
                        return Err(Error::invalid(format!("its header names system {}", h.system_id)));
                    }
                    h.check(file, o.content.len() as u64)
                })
                .map_err(|e| Error::corrupt(format!("{name}: {}", e.message())))?;
        }
        Ok(o)
    }

    /// Reads the record of a system, if one was written.
    pub fn record(&self, system_id: u64) -> Result<Option<ClusterRecord>> {
        let name = record_name(system_id);
        let sealed = match self.backend.get(&name) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let plain = seal::open(&self.key.enc, ObjectType::ClusterRecord, &sealed, MAX_RECORD).context(&name)?;
        let r = ClusterRecord::decode(&plain).context(&name)?;
        if r.system_id != system_id {
            return Err(Error::corrupt(format!("{name} records system {}", r.system_id)));
        }
        Ok(Some(r))
    }

    /// Writes a system's record unless one exists (the first writer wins;
    /// all writers of one system agree on what it says).
    pub fn ensure_record(&self, r: &ClusterRecord) -> Result<()> {
        let name = record_name(r.system_id);
        if self.backend.is_local() {
            self.backend.put_new(&name, Bytes::from(self.seal(ObjectType::ClusterRecord, &r.encode())))?;
            return Ok(());
        }
        match self.backend.size(&name) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.backend.put(&name, Bytes::from(self.seal(ObjectType::ClusterRecord, &r.encode())))
            }
            Err(e) => Err(e),
        }
    }

    /// Archives one WAL file (rules W1–W3). `content` is the whole file.
    pub fn push(&self, system_id: u64, file: &WalFile, content: Vec<u8>) -> Result<Pushed> {
        let name = object_name(system_id, file);
        let bytes = content.len() as u64;
        let plain = WalObject { name: file.to_string(), system_id, content };
        let sealed = Bytes::from(self.seal(ObjectType::WalFile, &plain.encode()));
        let stored = if self.backend.is_local() {
            // Linked into place only if the name is free: atomic.
            self.backend.put_new(&name, sealed)?
        } else {
            match self.backend.size(&name) {
                Ok(_) => false,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    crate::steps::reached("wal-push:before-put");
                    self.backend.put(&name, sealed)?;
                    true
                }
                Err(e) => return Err(e),
            }
        };
        if stored {
            return Ok(Pushed::Stored { bytes });
        }
        // W2: the name exists. Same content: a retry; else refuse.
        let existing = self.backend.get(&name)?;
        let old = self.open(system_id, file, &existing).map_err(|e| {
            Error::new(
                e.kind(),
                format!(
                    "{file} is archived already, and the archived copy is damaged ({}); not replacing it",
                    e.message()
                ),
            )
        })?;
        if old.content == plain.content {
            Ok(Pushed::AlreadyArchived)
        } else {
            Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{file} is archived already with different content (system {system_id}); \
                     refusing to replace it: is another cluster with the same system identifier archiving here?"
                ),
            ))
        }
    }

    /// Fetches one WAL file; `None` if it is not in the archive.
    pub fn fetch(&self, system_id: u64, file: &WalFile) -> Result<Option<Vec<u8>>> {
        let name = object_name(system_id, file);
        let sealed = match self.backend.get(&name) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(self.open(system_id, file, &sealed)?.content))
    }

    /// Every archived file of a system, sorted by name. Names that are not
    /// WAL files are skipped (and reported by `check`).
    pub fn list(&self, system_id: u64) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        for (name, size, modified) in self.backend.list_with_times(&format!("wal/{system_id}"))? {
            let Some(file) = parse_object_name(system_id, &name) else { continue };
            out.push(Listed { file, size, modified });
        }
        out.sort_by_key(|l| (l.file.timeline(), l.file.to_string()));
        Ok(out)
    }

    /// The systems that have a folder under `wal/`.
    pub fn systems(&self) -> Result<Vec<u64>> {
        let mut ids: Vec<u64> = self
            .backend
            .list("wal")?
            .into_iter()
            .filter_map(|(name, _)| name.strip_prefix("wal/")?.split('/').next()?.parse().ok())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }
}

/// The WAL file an object name holds, if it is one (in the right folder).
pub fn parse_object_name(system_id: u64, name: &str) -> Option<WalFile> {
    let rest = name.strip_prefix(&format!("wal/{system_id}/"))?;
    let file = WalFile::parse(rest.rsplit('/').next()?)?;
    (object_name(system_id, &file) == name).then_some(file)
}

/// Which system a file belongs to: a segment's header says it; for other
/// files (and to cross-check) the data directory's `global/pg_control`.
pub fn system_of(file: &WalFile, content: &[u8], pgdata: &Path) -> Result<u64> {
    let control = control_system_id(pgdata);
    if file.has_header() {
        let h = SegmentHeader::decode(content).map_err(|e| Error::invalid(format!("{file}: {}", e.message())))?;
        h.check(file, content.len() as u64)?;
        if let Ok(c) = control {
            if c != h.system_id {
                return Err(Error::invalid(format!(
                    "{file} was written by system {}, but {} belongs to system {c}: not archiving WAL of another cluster",
                    h.system_id,
                    pgdata.display()
                )));
            }
        }
        return Ok(h.system_id);
    }
    control.map_err(|e| {
        Error::invalid(format!(
            "{file}: cannot tell which cluster it belongs to: reading {}: {} (run wal-push from the data directory, as PostgreSQL does, or pass --pgdata)",
            pgdata.join("global/pg_control").display(),
            crate::error::io_reason(&e)
        ))
    })
}

/// Writes `content` to `dest` through a temporary file in its directory,
/// so that PostgreSQL never reads a partly written file.
pub fn write_file(dest: &Path, content: &[u8]) -> Result<()> {
    let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = dest.file_name().ok_or_else(|| Error::invalid(format!("{}: not a file name", dest.display())))?;
    let tmp: PathBuf = dir.join(format!(".{}.cairn-{}", name.to_string_lossy(), std::process::id()));
    let r = std::fs::write(&tmp, content).and_then(|()| std::fs::rename(&tmp, dest));
    r.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(dest.display(), e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 << 20;

    fn segment(sysid: u64, segno: u64) -> Vec<u8> {
        let mut b = vec![0u8; SEG as usize];
        b[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
        b[2..4].copy_from_slice(&2u16.to_le_bytes());
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[8..16].copy_from_slice(&(segno * SEG).to_le_bytes());
        b[24..32].copy_from_slice(&sysid.to_le_bytes());
        b[32..36].copy_from_slice(&(SEG as u32).to_le_bytes());
        b[36..40].copy_from_slice(&8192u32.to_le_bytes());
        b[100..120].fill(0xAB);
        b
    }

    #[test]
    fn push_fetch_and_duplicates() {
        let backend = Backend::memory().unwrap();
        let key = MasterKey::generate();
        let a = Archive { backend: &backend, key: &key, level: 3 };
        let f = WalFile::segment(1, 0x102, SEG);
        let seg = segment(77, 0x102);
        assert!(matches!(a.push(77, &f, seg.clone()).unwrap(), Pushed::Stored { .. }));
        // Padded with zeros: nearly free.
        assert!(backend.size(&object_name(77, &f)).unwrap() < 1000);
        assert_eq!(a.push(77, &f, seg.clone()).unwrap(), Pushed::AlreadyArchived);
        let mut other = seg.clone();
        other[5000] = 1;
        assert!(a.push(77, &f, other).unwrap_err().to_string().contains("different content"));
        assert_eq!(a.fetch(77, &f).unwrap().unwrap(), seg);
        assert_eq!(a.fetch(77, &WalFile::segment(1, 0x103, SEG)).unwrap(), None);
        assert_eq!(a.fetch(78, &f).unwrap(), None);
        let h = WalFile::History { tli: 2 };
        a.push(77, &h, b"1\t0/3000000\tno recovery target specified\n".to_vec()).unwrap();
        let listed: Vec<String> = a.list(77).unwrap().into_iter().map(|l| l.file.to_string()).collect();
        assert_eq!(listed, ["000000010000000100000002", "00000002.history"]);
        assert_eq!(a.systems().unwrap(), [77]);
    }

    #[test]
    fn a_moved_object_is_damage() {
        let backend = Backend::memory().unwrap();
        let key = MasterKey::generate();
        let a = Archive { backend: &backend, key: &key, level: 3 };
        let f1 = WalFile::History { tli: 2 };
        let f2 = WalFile::History { tli: 3 };
        a.push(5, &f1, b"x".to_vec()).unwrap();
        let b = backend.get(&object_name(5, &f1)).unwrap();
        backend.put(&object_name(5, &f2), b).unwrap();
        let e = a.fetch(5, &f2).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    }

    #[test]
    fn object_names() {
        let f = WalFile::parse("000000020000000A000000FF.partial").unwrap();
        let n = object_name(7318, &f);
        assert_eq!(n, "wal/7318/000000020000000A/000000020000000A000000FF.partial");
        assert_eq!(parse_object_name(7318, &n), Some(f));
        assert_eq!(parse_object_name(7318, "wal/7318/00000002.history"), Some(WalFile::History { tli: 2 }));
        assert_eq!(parse_object_name(7318, "wal/7318/0000000200000000/00000002000000010000000A"), None);
        assert_eq!(parse_object_name(7318, "wal/7318/cluster"), None);
    }
}
