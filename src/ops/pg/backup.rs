//! `pg backup`: a base backup of a running PostgreSQL cluster, as a
//! snapshot of its data directory (format-spec/13-wal.md, rules B1–B4).
//!
//! B1. `pg_backup_start` (non-exclusive, in one `psql` session) before any
//!     file is read; every file is read in full (chunks that did not
//!     change dedup against the last backup, so it stores what changed).
//! B2. `pg_backup_stop` once every file is stored (without waiting for
//!     the archiver: B3 waits, with a timeout, for this repository's
//!     archive); its `backup_label` and tablespace map go into the
//!     snapshot, not into the tree.
//! B3. The snapshot is committed only once every WAL segment from the
//!     backup's start to its stop is in this repository's archive: a
//!     snapshot that `pg backup` reports saved can be restored.
//! B4. What PostgreSQL's documentation says a base backup leaves out is
//!     left out (pg_wal/ contents, postmaster.pid, temporary files...).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};

use super::archive::{object_name, Archive};
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::PgInfo;
use crate::format::wal::ClusterRecord;
use crate::ops::backup::{self, BackupOptions, BackupOutcome, BeforeCommit};
use crate::pg::label::BackupLabel;
use crate::pg::session::{literal, Session};
use crate::pg::wal::{control_system_id, Lsn, WalFile};
use crate::repo::Repository;

/// The tag every base backup carries.
pub const BASE_TAG: &str = "pg-base";

/// Options of `pg backup`.
#[derive(Clone, Debug)]
pub struct BaseBackupOptions {
    pub pgdata: PathBuf,
    /// A connection string or URI; else the libpq environment.
    pub dbname: Option<String>,
    /// Ask for an immediate checkpoint instead of a spread one.
    pub fast: bool,
    /// How long to wait for the backup's WAL to reach the archive.
    pub wal_timeout: Duration,
    /// Tags, host and lock of the snapshot (the tag `pg-base` is added).
    pub backup: BackupOptions,
}

/// Directories whose contents a base backup leaves out (the directories
/// themselves are kept), and files it leaves out, relative to the data
/// directory: PostgreSQL's "Backing Up the Data Directory" list.
const EMPTY_DIRS: &[&str] =
    &["pg_wal", "pg_replslot", "pg_dynshmem", "pg_notify", "pg_serial", "pg_snapshots", "pg_stat_tmp", "pg_subtrans"];
const SKIP_FILES: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "tablespace_map.old",
    "recovery.signal",
    "standby.signal",
];

fn excludes(pgdata: &Path) -> Vec<String> {
    let base = globset::escape(&pgdata.to_string_lossy());
    let mut v: Vec<String> = EMPTY_DIRS.iter().map(|d| format!("{base}/{d}/*")).collect();
    v.extend(SKIP_FILES.iter().map(|f| format!("{base}/{f}")));
    // Temporary files and relation cache init files, anywhere.
    v.push("pgsql_tmp*".into());
    v.push("pg_internal.init".into());
    v
}

/// What the server says about itself before the backup.
struct Server {
    version: u32,
    system_id: u64,
    segment_size: u64,
    /// The directories `pg_tblspc/<oid>` links to (backed up beside the
    /// data directory, at their own paths).
    tablespaces: Vec<PathBuf>,
}

/// The targets of the tablespace links in `pg_tblspc/` (a directory there,
/// an in-place tablespace, is inside the data directory already).
fn tablespace_dirs(pgdata: &Path) -> Result<Vec<PathBuf>> {
    let dir = pgdata.join("pg_tblspc");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(dir.display(), e)),
    };
    for e in entries {
        let e = e.map_err(|e| Error::io(dir.display(), e))?;
        if e.file_type().map(|t| t.is_symlink()).unwrap_or(false) {
            let target = std::fs::canonicalize(e.path()).map_err(|err| Error::io(e.path().display(), err))?;
            if target.starts_with(pgdata) {
                return Err(Error::invalid(format!(
                    "tablespace {} lies inside the data directory ({}): PostgreSQL advises against it and cairn does not back it up twice",
                    e.file_name().to_string_lossy(),
                    target.display()
                )));
            }
            out.push(target);
        }
    }
    out.sort();
    Ok(out)
}

fn check_server(s: &mut Session, pgdata: &Path) -> Result<Server> {
    let rows = s.query(
        "SELECT current_setting('server_version_num'), (SELECT system_identifier FROM pg_control_system()), \
         current_setting('data_directory'), pg_is_in_recovery(), current_setting('archive_mode'), \
         (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size')",
    )?;
    let r = rows.first().filter(|r| r.len() == 6).ok_or_else(|| Error::new(ErrorKind::Io, "unexpected reply"))?;
    let num = |v: &str, what: &str| {
        v.parse::<u64>().map_err(|_| Error::new(ErrorKind::Io, format!("PostgreSQL sent {what} {v:?}")))
    };
    let version = num(&r[0], "server_version_num")? as u32;
    if version < 120_000 {
        return Err(Error::invalid(format!(
            "PostgreSQL {} is too old: cairn's base backups need version 12 or later",
            version / 10000
        )));
    }
    let system_id = num(&r[1], "system_identifier")?;
    let server_dir = PathBuf::from(&r[2]);
    let same = match (server_dir.canonicalize(), pgdata.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        return Err(Error::invalid(format!(
            "--pgdata {} is not the data directory of the server connected to ({}); pass the server's own data directory",
            pgdata.display(),
            server_dir.display()
        )));
    }
    if r[3] == "t" {
        return Err(Error::invalid("the server is a standby: cairn takes base backups from the primary only"));
    }
    if r[4] == "off" {
        return Err(Error::invalid(
            "archive_mode is off: a base backup cannot be restored without its WAL; set archive_mode = on and \
             archive_command = 'cairn … pg wal-push %p', then restart PostgreSQL",
        ));
    }
    match control_system_id(pgdata) {
        Ok(c) if c == system_id => {}
        Ok(c) => {
            return Err(Error::invalid(format!(
                "{} belongs to system {c}, but the server connected to is system {system_id}",
                pgdata.display()
            )))
        }
        Err(e) => return Err(Error::io(pgdata.join("global/pg_control").display(), e)),
    }
    let tablespaces = tablespace_dirs(pgdata)?;
    Ok(Server { version, system_id, segment_size: num(&r[5], "wal_segment_size")?, tablespaces })
}

fn timestamp(v: &str) -> Result<DateTime<FixedOffset>> {
    DateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S%.f%#z")
        .map_err(|_| Error::new(ErrorKind::Io, format!("PostgreSQL sent the time {v:?}")))
}

fn unhex(v: &str) -> Result<String> {
    let b = hex::decode(v).map_err(|_| Error::new(ErrorKind::Io, "PostgreSQL sent a label that is not hex"))?;
    String::from_utf8(b).map_err(|_| Error::new(ErrorKind::Io, "backup label is not UTF-8"))
}

/// Waits until every segment from `start` to `stop` is archived (B3).
fn wait_for_wal(
    archive: &Archive,
    system_id: u64,
    start: &WalFile,
    stop: &WalFile,
    seg: u64,
    timeout: Duration,
) -> Result<()> {
    let (Some(a), Some(b)) = (start.segno(seg), stop.segno(seg)) else { return Ok(()) };
    let deadline = Instant::now() + timeout;
    for segno in a..=b {
        let f = WalFile::segment(start.timeline(), segno, seg);
        let name = object_name(system_id, &f);
        loop {
            match archive.backend.size(&name) {
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::NotFound && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    return Err(Error::new(
                        ErrorKind::Io,
                        format!(
                            "WAL segment {f}, which this base backup needs, did not reach the archive within {}s; \
                             is archive_command `cairn … pg wal-push %p` with this repository? (no snapshot was written)",
                            timeout.as_secs()
                        ),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Takes a base backup (rules B1–B4).
pub fn base_backup(repo: &Repository, o: &BaseBackupOptions) -> Result<BackupOutcome> {
    let pgdata = backup::absolute(&o.pgdata)?;
    let mut session = Session::connect(o.dbname.as_deref())?;
    let server = check_server(&mut session, &pgdata)?;
    let archive = Archive { backend: &repo.backend, key: &repo.key, level: repo.config.compression };
    archive.ensure_record(&ClusterRecord {
        system_id: server.system_id,
        segment_size: server.segment_size,
        version: server.version / 10000 * 10000,
        created: chrono::Local::now().fixed_offset(),
        hostname: backup::hostname_or(&o.backup.host),
    })?;
    let label = literal(&format!("cairn {}", chrono::Local::now().format("%Y-%m-%d %H:%M:%S")));
    let fast = if o.fast { "true" } else { "false" };
    let start_sql = if server.version >= 150_000 {
        format!("SELECT l, clock_timestamp() FROM pg_backup_start({label}, {fast}) AS l")
    } else {
        format!("SELECT l, clock_timestamp() FROM pg_start_backup({label}, {fast}, false) AS l")
    };
    let started = session.query(&start_sql)?;
    let start_time = timestamp(started.first().and_then(|r| r.get(1)).map(String::as_str).unwrap_or(""))?;
    crate::steps::reached("pg-backup:started");
    let session = Arc::new(Mutex::new(Some(session)));
    let stop_session = session.clone();
    let version = server.version;
    let system_id = server.system_id;
    let seg = server.segment_size;
    let dir = pgdata.to_string_lossy().into_owned();
    let timeout = o.wal_timeout;
    let backend = repo.backend.clone();
    let key = repo.key.clone();
    let level = repo.config.compression;
    let stop = move || -> Result<PgInfo> {
        let mut guard = stop_session.lock().map_err(|_| Error::new(ErrorKind::Io, "session lock poisoned"))?;
        let s = guard.as_mut().ok_or_else(|| Error::new(ErrorKind::Io, "the backup session is gone"))?;
        let stop_sql = if version >= 150_000 {
            "SELECT s.lsn, encode(convert_to(s.labelfile, 'UTF8'), 'hex'), \
             encode(convert_to(coalesce(s.spcmapfile, ''), 'UTF8'), 'hex'), pg_walfile_name(s.lsn), \
             clock_timestamp(), txid_snapshot_xmax(txid_current_snapshot()) FROM pg_backup_stop(false) AS s"
        } else {
            "SELECT s.lsn, encode(convert_to(s.labelfile, 'UTF8'), 'hex'), \
             encode(convert_to(coalesce(s.spcmapfile, ''), 'UTF8'), 'hex'), pg_walfile_name(s.lsn), \
             clock_timestamp(), txid_snapshot_xmax(txid_current_snapshot()) FROM pg_stop_backup(false, false) AS s"
        };
        let rows = s.query(stop_sql)?;
        let r = rows.first().filter(|r| r.len() == 6).ok_or_else(|| Error::new(ErrorKind::Io, "unexpected reply"))?;
        let backup_label = unhex(&r[1])?;
        let spcmap = unhex(&r[2])?;
        let parsed = BackupLabel::parse(&backup_label)?;
        let stop_lsn = Lsn::parse(&r[0])?;
        let stop_file = WalFile::parse(&r[3])
            .ok_or_else(|| Error::new(ErrorKind::Io, format!("PostgreSQL sent the WAL file name {:?}", r[3])))?;
        let stop_time = timestamp(&r[4])?;
        let next_xid = r[5].parse().ok();
        if let Some(s) = guard.take() {
            s.close();
        }
        crate::steps::reached("pg-backup:stopped");
        let archive = Archive { backend: &backend, key: &key, level };
        wait_for_wal(&archive, system_id, &parsed.start_file, &stop_file, seg, timeout)?;
        Ok(PgInfo {
            system_id,
            version,
            pgdata: dir.clone(),
            timeline: parsed.timeline,
            segment_size: seg,
            start_lsn: parsed.start_lsn.to_string(),
            stop_lsn: stop_lsn.to_string(),
            start_wal: parsed.start_file.to_string(),
            stop_wal: stop_file.to_string(),
            start_time,
            stop_time,
            next_xid,
            backup_label,
            tablespace_map: (!spcmap.is_empty()).then_some(spcmap),
        })
    };
    let mut opts = o.backup.clone();
    opts.tags.push(BASE_TAG.into());
    opts.excludes.extend(excludes(&pgdata));
    // B1: read every file; unchanged chunks dedup.
    opts.force = true;
    // Relation files change page by page: cut them as dumps are.
    opts.data = crate::format::config::DataKind::Dump;
    opts.before_commit = Some(BeforeCommit(Arc::new(stop)));
    let mut paths = vec![pgdata];
    paths.extend(server.tablespaces.iter().cloned());
    let out = backup::backup_paths(repo, &paths, &opts);
    // On failure the session ends here, which aborts the backup on the
    // server (a non-exclusive backup ends with its session).
    if let Ok(mut g) = session.lock() {
        g.take();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_keep_the_directories() {
        let ex = crate::source::exclude::Excludes::new(&excludes(Path::new("/var/lib/pg [15]/main")), &[]).unwrap();
        let base = Path::new("/var/lib/pg [15]/main");
        assert!(ex.is_excluded(&base.join("pg_wal/000000010000000000000001")));
        assert!(ex.is_excluded(&base.join("pg_wal/archive_status")));
        assert!(!ex.is_excluded(&base.join("pg_wal")));
        assert!(ex.is_excluded(&base.join("postmaster.pid")));
        assert!(ex.is_excluded(&base.join("base/1/pgsql_tmp123")));
        assert!(!ex.is_excluded(&base.join("base/1/1259")));
        assert!(!ex.is_excluded(&base.join("global/pg_control")));
    }

    #[test]
    fn server_times_parse() {
        assert!(timestamp("2026-12-05 08:00:01.123456+00").is_ok());
        assert!(timestamp("2026-12-05 08:00:01+05:30").is_ok());
    }
}
