//! Verifying stream snapshots against the size and SHA-256 their snapshot
//! records (format-spec/09-snapshots.md, `stream` and `streams`): `dump`
//! hashes what it writes, `restore` hashes each stream file it restored,
//! and `check` reassembles streams in order and hashes them. Any mismatch
//! is an error naming the stream, the snapshot and both hashes.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::snapshot::{Snapshot, StreamInfo};
use crate::id::{SnapshotId, TreeId};
use crate::ops::snapshots::{clean_path, label};
use crate::repo::Repository;

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new(), len: 0 }
    }

    /// Bytes written and their SHA-256 (lower-case hex).
    pub fn finish(self) -> (u64, String) {
        (self.len, hex::encode(self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The stream record of `s` whose file `path` names (`/NAME`).
pub fn stream_at<'a>(s: &'a Snapshot, path: &Path) -> Option<&'a StreamInfo> {
    let want = clean_path(&path.to_string_lossy());
    s.streams().iter().find(|st| want == clean_path(&st.filename))
}

/// The streams of `s` that `restore` of `sub` with `filter` writes whole
/// into the target, each as `<target>/<filename>`: all of them (less
/// those excluded) when `sub` is the root, the one `sub` names otherwise.
/// A stream whose file a repair dropped is not among them.
pub fn restored_streams<'a>(
    repo: &Repository,
    s: &'a Snapshot,
    sub: &Path,
    filter: &crate::ops::restore::Filter,
) -> Result<Vec<&'a StreamInfo>> {
    let sub = clean_path(&sub.to_string_lossy());
    let mut out = Vec::new();
    for st in s.streams() {
        let path = Path::new("/").join(&st.filename);
        let chosen = if sub == "/" { filter.selects(&path) } else { sub == clean_path(&st.filename) };
        if !chosen {
            continue;
        }
        if s.repaired.is_some() && crate::ops::restore::lookup(repo, s.tree, &path)?.is_none() {
            continue;
        }
        out.push(st);
    }
    Ok(out)
}

/// Verifies each restored stream file (see [`verify_restored`]); every
/// one is checked, and the errors, if any, are joined into one.
pub fn verify_restored_all(target: &Path, id: &SnapshotId, s: &Snapshot, streams: &[&StreamInfo]) -> Result<()> {
    let errors: Vec<Error> =
        streams.iter().filter_map(|st| verify_restored(&target.join(&st.filename), id, s, st).err()).collect();
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.into_iter().next().unwrap_or_else(|| Error::corrupt("stream mismatch"))),
        _ => Err(Error::corrupt(errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))),
    }
}

/// Compares what was read or written with the snapshot's record: one line
/// naming the snapshot, the stream and both values.
pub fn compare(id: &SnapshotId, s: &Snapshot, st: &StreamInfo, size: u64, sha256: &str) -> Result<()> {
    if size == st.size && sha256.eq_ignore_ascii_case(&st.sha256) {
        return Ok(());
    }
    let sizes = if size == st.size { String::new() } else { format!(" ({size} bytes, recorded {})", st.size) };
    Err(Error::corrupt(format!(
        "stream {} of snapshot {} does not match its recorded hash: expected SHA-256 {}, got {sha256}{sizes}",
        st.filename,
        label(id, s),
        st.sha256
    )))
}

/// Where `restore` leaves a restored stream file whose hash does not match.
pub fn mismatch_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".sha256-mismatch");
    file.with_file_name(name)
}

/// Hashes the restored stream file `file` and compares it with the record.
/// On a mismatch the file is renamed to [`mismatch_path`] (kept for
/// inspection, but no longer under the name of a complete restore) and
/// the error says where it is.
pub fn verify_restored(file: &Path, id: &SnapshotId, s: &Snapshot, st: &StreamInfo) -> Result<()> {
    let mut f = std::fs::File::open(file).map_err(|e| Error::io(file.display(), e))?;
    let mut h = HashingWriter::new(std::io::sink());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(file.display(), e))?;
        if n == 0 {
            break;
        }
        h.write_all(&buf[..n]).map_err(|e| Error::io("hashing", e))?;
    }
    let (size, sha) = h.finish();
    compare(id, s, st, size, &sha).map_err(|e| {
        let to = mismatch_path(file);
        match std::fs::rename(file, &to) {
            Ok(()) => e.context(format!("{} renamed to {}", file.display(), to.display())),
            Err(r) => e.context(format!("{} (could not be renamed: {r})", file.display())),
        }
    })
}

/// Which stream snapshots `check` verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// The newest of each stream (host and file name): what `latest`
    /// restores.
    Newest,
    /// Every stream snapshot.
    All,
}

/// What [`verify`] found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Stream snapshots compared (each stream file read and hashed once).
    pub verified: usize,
    /// Streams compared: more than `verified` when snapshots hold several.
    pub streams: usize,
    /// One line per stream that does not match or could not be read.
    pub problems: Vec<String>,
    /// Stream snapshots left out, and why (a repair dropped their file).
    pub skipped: Vec<String>,
}

/// Verifies the stream snapshots among `snaps` (oldest first) that `which`
/// selects. A snapshot whose root tree was already verified through
/// another one is compared without being read again.
pub fn verify(repo: &Repository, snaps: &[(SnapshotId, Snapshot)], which: Which) -> VerifyReport {
    let mut report = VerifyReport::default();
    let mut newest_seen: HashSet<(&str, &str)> = HashSet::new();
    let mut hashed: HashMap<(TreeId, &str), (u64, String)> = HashMap::new();
    for (id, s) in snaps.iter().rev() {
        let mut any = false;
        for st in s.streams() {
            if which == Which::Newest && !newest_seen.insert((&s.hostname, &st.filename)) {
                continue;
            }
            let path = Path::new("/").join(&st.filename);
            // A repaired snapshot whose stream file was dropped (its data
            // lost): the `repaired` record says so already.
            if s.repaired.is_some() {
                match crate::ops::restore::lookup(repo, s.tree, &path) {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        report.skipped.push(format!(
                            "stream {} of snapshot {} was dropped by `repair snapshots`; not verified",
                            st.filename,
                            label(id, s)
                        ));
                        continue;
                    }
                    Err(e) => {
                        report.problems.push(format!("stream {} of snapshot {}: {e}", st.filename, label(id, s)));
                        continue;
                    }
                }
            }
            let result = match hashed.get(&(s.tree, st.filename.as_str())) {
                Some((size, sha)) => compare(id, s, st, *size, sha),
                None => {
                    let mut h = HashingWriter::new(std::io::sink());
                    match crate::ops::dump::dump(repo, s.tree, &path, &mut h) {
                        Ok(_) => {
                            let (size, sha) = h.finish();
                            let r = compare(id, s, st, size, &sha);
                            hashed.insert((s.tree, st.filename.as_str()), (size, sha));
                            r
                        }
                        Err(e) => Err(e.context(format!("stream {} of snapshot {}", st.filename, label(id, s)))),
                    }
                }
            };
            any = true;
            report.streams += 1;
            if let Err(e) = result {
                report.problems.push(e.to_string());
            }
        }
        if any {
            report.verified += 1;
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snapshot::Snapshot;

    fn stream_snapshot(data: &[u8]) -> Snapshot {
        let t = chrono::DateTime::from_timestamp(0, 0).unwrap().fixed_offset();
        let mut s = Snapshot::for_test(t, "db1", &[]);
        s.stream = Some(StreamInfo {
            filename: "app.sql".into(),
            size: data.len() as u64,
            sha256: hex::encode(Sha256::digest(data)),
            command: None,
        });
        s
    }

    #[test]
    fn compare_names_the_snapshot_and_both_hashes() {
        let s = stream_snapshot(b"dump");
        let st = s.stream.clone().unwrap();
        let id = SnapshotId([0xab; 32]);
        let mut h = HashingWriter::new(Vec::new());
        h.write_all(b"dump").unwrap();
        let (n, sha) = h.finish();
        compare(&id, &s, &st, n, &sha).unwrap();
        let other = hex::encode(Sha256::digest(b"dumq"));
        let e = compare(&id, &s, &st, 4, &other).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Corrupt);
        let msg = e.to_string();
        assert!(msg.contains("abababab (1970-01-01 00:00:00, host db1)"), "{msg}");
        assert!(msg.contains(&format!("expected SHA-256 {}, got {other}", st.sha256)), "{msg}");
        // Same hash, wrong length (the record says 4 bytes).
        let e = compare(&id, &s, &st, 5, &st.sha256).unwrap_err();
        assert!(e.to_string().contains("(5 bytes, recorded 4)"), "{e}");
    }

    #[test]
    fn a_restored_file_that_does_not_match_is_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let s = stream_snapshot(b"good");
        let st = s.stream.clone().unwrap();
        let id = SnapshotId([1; 32]);
        let f = dir.path().join("app.sql");
        std::fs::write(&f, b"good").unwrap();
        verify_restored(&f, &id, &s, &st).unwrap();
        assert!(f.exists());
        std::fs::write(&f, b"bad!").unwrap();
        let e = verify_restored(&f, &id, &s, &st).unwrap_err();
        assert!(!f.exists());
        assert_eq!(std::fs::read(mismatch_path(&f)).unwrap(), b"bad!");
        assert!(e.to_string().contains("app.sql.sha256-mismatch"), "{e}");
    }

    #[test]
    fn stream_at_matches_the_file_name() {
        let s = stream_snapshot(b"x");
        assert!(stream_at(&s, Path::new("/app.sql")).is_some());
        assert!(stream_at(&s, Path::new("app.sql")).is_some());
        assert!(stream_at(&s, Path::new("/other")).is_none());
    }
}
