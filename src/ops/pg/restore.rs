//! `pg restore`: a plan (which base backup, which target, which settings),
//! then its execution (format-spec/13-wal.md, rules R1–R4).
//!
//! R1. The base backup is the newest one of the system that ends before
//!     the target (its stop time, LSN or next transaction id); never one
//!     that ends after it. Targets that cannot be placed (a restore
//!     point's name, latest, immediate) take the newest base backup.
//! R2. The backup's own WAL (start to stop segment) must be in the
//!     archive before anything is written.
//! R3. The directory must be empty or absent; `--delta` empties it first,
//!     unless a server may be running on it.
//! R4. The files, then `backup_label` (and `tablespace_map`), then the
//!     recovery settings and `recovery.signal`: a restore interrupted
//!     before the end leaves a directory PostgreSQL refuses to start as a
//!     primary (no backup_label), not a silently wrong cluster.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};

use super::archive::Archive;
use super::backup::BASE_TAG;
use crate::error::{Error, Result};
use crate::format::snapshot::{PgInfo, Snapshot};
use crate::id::SnapshotId;
use crate::ops::restore::{self, Filter, RestoreReport};
use crate::pg::recovery::{Action, Settings, Target};
use crate::pg::wal::{Lsn, WalFile};
use crate::repo::Repository;
use crate::target::MetaOptions;

/// What `pg restore` was asked.
#[derive(Clone, Debug)]
pub struct Request {
    pub pgdata: PathBuf,
    pub target: Target,
    pub action: Action,
    pub inclusive: bool,
    /// `--snapshot`: this base backup instead of the chosen one.
    pub snapshot: Option<String>,
    pub system_id: Option<u64>,
    /// Empty a non-empty directory first.
    pub delta: bool,
    pub restore_command: String,
    /// `--tablespace-map OID=DIR`: where a tablespace goes (default: where
    /// it was).
    pub tablespace_map: Vec<(u32, PathBuf)>,
    /// `--target-timeline`: a number, `current` or `latest`; by default the
    /// newest archived timeline that descends from the base backup.
    pub timeline: Option<String>,
    /// Keep archiving in the restored cluster (false: `archive_mode = off`).
    pub archive: bool,
}

/// One tablespace of a base backup and where it is restored.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TablespacePlan {
    pub oid: u32,
    /// Its directory when it was backed up (a path in the snapshot).
    pub from: String,
    pub to: PathBuf,
    pub empty_first: bool,
}

/// Parses a `tablespace_map`: one `<oid> <path>` line per tablespace.
pub fn parse_tablespace_map(text: &str) -> Result<Vec<(u32, String)>> {
    let mut v = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (oid, path) = line
            .split_once(' ')
            .and_then(|(o, p)| Some((o.parse::<u32>().ok()?, p)))
            .ok_or_else(|| Error::corrupt(format!("tablespace_map line {line:?} is not `<oid> <path>`")))?;
        v.push((oid, path.to_string()));
    }
    Ok(v)
}

/// Whether a directory exists and holds something.
fn non_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false)
}

/// What `pg restore` will do; `--dry-run` prints it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    pub snapshot: SnapshotId,
    pub system_id: u64,
    pub backup_stop_time: DateTime<FixedOffset>,
    pub backup_stop_lsn: String,
    /// Why this base backup (R1).
    pub reason: String,
    pub pgdata: PathBuf,
    /// Whether the directory is emptied first (`--delta`).
    pub empty_first: bool,
    pub settings: Settings,
    pub tablespaces: Vec<TablespacePlan>,
    /// What the user should know before starting the server (a gap in
    /// the WAL after the base backup: recovery stops there).
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub pg: PgInfo,
    #[serde(skip)]
    pub snap: Snapshot,
}

/// Parses a recovery target time as PostgreSQL would read it, into a
/// time cairn can compare and a string both agree on.
pub fn parse_target_time(s: &str) -> Result<DateTime<FixedOffset>> {
    let t = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d);
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f %#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(d) = DateTime::parse_from_str(t, f) {
            return Ok(d);
        }
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(n) = chrono::NaiveDateTime::parse_from_str(t, f) {
            if let Some(d) = n.and_local_timezone(chrono::Local).single() {
                return Ok(d.fixed_offset());
            }
        }
    }
    Err(Error::invalid(format!(
        "--time {s:?}: use \"YYYY-MM-DD HH:MM:SS[.ffffff][+TZ]\" or RFC 3339 (without a zone, the local time zone)"
    )))
}

/// The base backups of the repository, oldest first.
pub fn base_backups(repo: &Repository) -> Result<Vec<(SnapshotId, Snapshot, PgInfo)>> {
    let mut v: Vec<_> = repo
        .snapshots()?
        .into_iter()
        .filter_map(|(id, s)| {
            let pg = s.pg.clone()?;
            (s.tags.iter().any(|t| t == BASE_TAG)).then_some((id, s, pg))
        })
        .collect();
    v.sort_by_key(|(_, _, pg)| pg.stop_time);
    Ok(v)
}

/// Whether a base backup ends before the target: `Some(false)` when it
/// ends after it, `None` when the target cannot be placed.
fn ends_before(pg: &PgInfo, target: &Target) -> Result<Option<bool>> {
    Ok(match target {
        Target::Time(t) => Some(pg.stop_time <= parse_target_time(t)?),
        Target::Lsn(l) => Some(Lsn::parse(&pg.stop_lsn)? <= Lsn::parse(l)?),
        Target::Xid(x) => {
            let xid: u64 = x.trim().parse().map_err(|_| Error::invalid(format!("--xid {x:?} is not a number")))?;
            // A 32-bit xid is taken in the epoch of the backup.
            pg.next_xid.map(|n| {
                let full = if xid >> 32 == 0 { (n & !0xffff_ffff) | xid } else { xid };
                n <= full
            })
        }
        Target::Latest | Target::Immediate | Target::Name(_) => None,
    })
}

/// Builds the plan (R1–R3 checked, nothing written).
pub fn plan(repo: &Repository, req: &Request) -> Result<Plan> {
    if let Target::Lsn(l) = &req.target {
        Lsn::parse(l)?;
    }
    if let Target::Time(t) = &req.target {
        parse_target_time(t)?;
    }
    let all = base_backups(repo)?;
    let system_id = match req.system_id {
        Some(s) => s,
        None => match all.last() {
            Some((_, _, pg)) => pg.system_id,
            None => {
                return Err(Error::invalid(
                    "no PostgreSQL base backup in the repository (take one with `cairn pg backup`)",
                ))
            }
        },
    };
    let candidates: Vec<_> = all.into_iter().filter(|(_, _, pg)| pg.system_id == system_id).collect();
    let (id, snap, pg, reason) = match &req.snapshot {
        Some(spec) => {
            let (id, _) = repo.find_snapshot(spec)?;
            let Some((id, s, pg)) = candidates.iter().find(|(i, _, _)| *i == id).cloned() else {
                return Err(Error::invalid(format!(
                    "snapshot {} is not a base backup of system {system_id}",
                    id.short()
                )));
            };
            if ends_before(&pg, &req.target)? == Some(false) {
                return Err(Error::invalid(format!(
                    "base backup {} ends after the target (at {}, LSN {}): recovery cannot go back in time",
                    id.short(),
                    pg.stop_time,
                    pg.stop_lsn
                )));
            }
            (id, s, pg, "chosen with --snapshot".to_string())
        }
        None => {
            let mut chosen = None;
            for (id, s, pg) in candidates.iter().rev() {
                if ends_before(pg, &req.target)? != Some(false) {
                    chosen = Some((*id, s.clone(), pg.clone()));
                    break;
                }
            }
            let Some((id, s, pg)) = chosen else {
                let oldest = candidates
                    .first()
                    .map(|(_, _, pg)| format!(" (the oldest ends at {}, LSN {})", pg.stop_time, pg.stop_lsn));
                return Err(Error::invalid(format!(
                    "no base backup of system {system_id} ends before the target{}",
                    oldest.unwrap_or_default()
                )));
            };
            let reason = match req.target {
                Target::Latest | Target::Immediate | Target::Name(_) => "the newest base backup".to_string(),
                _ => "the newest base backup that ends before the target".to_string(),
            };
            (id, s, pg, reason)
        }
    };
    // R2: the backup's own WAL is archived.
    let archive = Archive { backend: &repo.backend, key: &repo.key, level: repo.config.compression };
    let seg = pg.segment_size;
    let (start, stop) = match (WalFile::parse(&pg.start_wal), WalFile::parse(&pg.stop_wal)) {
        (Some(a), Some(b)) => (a, b),
        _ => return Err(Error::corrupt(format!("snapshot {}: its WAL names do not parse", id.short()))),
    };
    if let (Some(a), Some(b)) = (start.segno(seg), stop.segno(seg)) {
        let listed: std::collections::HashSet<String> =
            archive.list(system_id)?.into_iter().map(|l| l.file.to_string()).collect();
        for segno in a..=b {
            let f = WalFile::segment(start.timeline(), segno, seg);
            if !listed.contains(&f.to_string()) {
                return Err(Error::invalid(format!(
                    "WAL segment {f}, which base backup {} needs to be consistent, is not in the archive: this backup cannot be restored",
                    id.short()
                )));
            }
        }
    }
    // The timeline to follow: the newest one whose history contains the
    // base backup (PostgreSQL's `latest` would take the newest timeline of
    // the archive even when it forked off before the backup, and refuse).
    let timeline = match &req.timeline {
        Some(t) => t.clone(),
        None => descendant_timeline(&archive, system_id, &pg)?.to_string(),
    };
    let warnings = gaps_after(&archive, system_id, &pg)?;
    // R3, for the data directory and each tablespace's.
    let mut tablespaces = Vec::new();
    let map = pg.tablespace_map.as_deref().map(parse_tablespace_map).transpose()?.unwrap_or_default();
    for (oid, _) in &req.tablespace_map {
        if !map.iter().any(|(o, _)| o == oid) {
            return Err(Error::invalid(format!(
                "--tablespace-map {oid}=…: base backup {} has no tablespace {oid}",
                id.short()
            )));
        }
    }
    for (oid, from) in map {
        let to = req
            .tablespace_map
            .iter()
            .find(|(o, _)| *o == oid)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| from.clone().into());
        if to.starts_with(&req.pgdata) || req.pgdata.starts_with(&to) {
            return Err(Error::invalid(format!(
                "tablespace {oid} would go to {}, inside or around the data directory: pass --tablespace-map {oid}=DIR",
                to.display()
            )));
        }
        let busy = non_empty(&to);
        if busy && !req.delta {
            return Err(Error::invalid(format!(
                "tablespace {oid} goes to {}, which is not empty: pass --tablespace-map {oid}=DIR (an empty directory), or --delta to replace its contents",
                to.display()
            )));
        }
        tablespaces.push(TablespacePlan { oid, from, to, empty_first: busy });
    }
    let empty_first = match non_empty(&req.pgdata) {
        true => {
            if !req.delta {
                return Err(Error::invalid(format!(
                    "{} is not empty: restore into an empty directory, or pass --delta to replace its contents",
                    req.pgdata.display()
                )));
            }
            if req.pgdata.join("postmaster.pid").exists() {
                return Err(Error::invalid(format!(
                    "{} has a postmaster.pid: stop the server running on it first (or remove the file if it is stale)",
                    req.pgdata.display()
                )));
            }
            true
        }
        _ => false,
    };
    Ok(Plan {
        snapshot: id,
        system_id,
        backup_stop_time: pg.stop_time,
        backup_stop_lsn: pg.stop_lsn.clone(),
        reason,
        pgdata: req.pgdata.clone(),
        empty_first,
        settings: Settings {
            restore_command: req.restore_command.clone(),
            target: req.target.clone(),
            action: req.action,
            inclusive: req.inclusive,
            timeline,
            archive: req.archive,
        },
        tablespaces,
        warnings,
        pg,
        snap,
    })
}

/// Gaps in the archived WAL after the base backup, on its timeline: replay
/// stops at the first one (with no target, the server then promotes there).
fn gaps_after(archive: &Archive, system_id: u64, pg: &PgInfo) -> Result<Vec<String>> {
    let seg = pg.segment_size;
    let Some(start) = WalFile::parse(&pg.start_wal).and_then(|f| f.segno(seg)) else { return Ok(Vec::new()) };
    let mut have: Vec<u64> = archive
        .list(system_id)?
        .into_iter()
        .filter(|l| matches!(l.file, WalFile::Segment { tli, .. } if tli == pg.timeline))
        .filter_map(|l| l.file.segno(seg))
        .filter(|n| *n >= start)
        .collect();
    have.sort_unstable();
    Ok(have
        .windows(2)
        .find(|w| w[1] > w[0] + 1)
        .map(|w| {
            vec![format!(
                "the archive has a gap after {} (up to {} is missing): recovery on timeline {} cannot replay past it",
                WalFile::segment(pg.timeline, w[0], seg),
                WalFile::segment(pg.timeline, w[1] - 1, seg),
                pg.timeline
            )]
        })
        .unwrap_or_default())
}

/// The newest archived timeline that contains the base backup's end.
pub(crate) fn descendant_timeline(archive: &Archive, system_id: u64, pg: &PgInfo) -> Result<u32> {
    let stop = Lsn::parse(&pg.stop_lsn)?;
    let mut best = pg.timeline;
    for l in archive.list(system_id)? {
        let WalFile::History { tli } = l.file else { continue };
        if tli <= best {
            continue;
        }
        let Some(text) = archive.fetch(system_id, &l.file)? else { continue };
        let history = crate::pg::wal::parse_history(&String::from_utf8_lossy(&text))?;
        if crate::pg::wal::timeline_contains(tli, &history, pg.timeline, stop) {
            best = tli;
        }
    }
    Ok(best)
}

fn empty_dir(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir.display(), e))? {
        let e = e.map_err(|e| Error::io(dir.display(), e))?;
        let p = e.path();
        let r = if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.map_err(|err| Error::io(p.display(), err))?;
    }
    Ok(())
}

/// Writes a small file owned like the data directory.
fn write_owned(dir: &Path, name: &str, text: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let p = dir.join(name);
    std::fs::write(&p, text).map_err(|e| Error::io(p.display(), e))?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).map_err(|e| Error::io(p.display(), e))?;
    if let Ok(m) = std::fs::metadata(dir) {
        let _ = std::os::unix::fs::lchown(&p, Some(m.uid()), Some(m.gid()));
    }
    Ok(())
}

fn merge(into: &mut RestoreReport, r: RestoreReport) {
    into.files += r.files;
    into.dirs += r.dirs;
    into.specials += r.specials;
    into.bytes += r.bytes;
    into.failed.extend(r.failed);
    into.warnings.extend(r.warnings);
}

/// Executes a plan (R3, R4).
pub fn execute(repo: &Repository, plan: &Plan) -> Result<RestoreReport> {
    let dir = &plan.pgdata;
    if plan.empty_first {
        empty_dir(dir)?;
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| Error::io(dir.display(), e))?;
    let mut report = restore::run(
        repo,
        plan.snap.tree,
        Path::new(&plan.pg.pgdata),
        dir,
        &Filter::new(&[], &[])?,
        &MetaOptions::default(),
    )?;
    if !report.failed.is_empty() {
        return Ok(report);
    }
    // PostgreSQL refuses a data directory open to others.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| Error::io(dir.display(), e))?;
    for sub in ["pg_wal", "pg_wal/archive_status"] {
        let p = dir.join(sub);
        if !p.exists() {
            std::fs::DirBuilder::new().mode(0o700).create(&p).map_err(|e| Error::io(p.display(), e))?;
            if let Ok(m) = std::fs::metadata(dir) {
                use std::os::unix::fs::MetadataExt;
                let _ = std::os::unix::fs::lchown(&p, Some(m.uid()), Some(m.gid()));
            }
        }
    }
    // Tablespaces: each into its directory; the map names where they went
    // (PostgreSQL makes pg_tblspc/<oid> link there when it starts).
    let mut map = String::new();
    for t in &plan.tablespaces {
        if t.empty_first {
            empty_dir(&t.to)?;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&t.to)
            .map_err(|e| Error::io(t.to.display(), e))?;
        let r = restore::run(
            repo,
            plan.snap.tree,
            Path::new(&t.from),
            &t.to,
            &Filter::new(&[], &[])?,
            &MetaOptions::default(),
        )?;
        let failed = !r.failed.is_empty();
        merge(&mut report, r);
        if failed {
            return Ok(report);
        }
        map.push_str(&format!("{} {}\n", t.oid, t.to.display()));
    }
    write_owned(dir, "backup_label", &plan.pg.backup_label)?;
    if plan.pg.tablespace_map.is_some() {
        write_owned(dir, "tablespace_map", &map)?;
    }
    plan.settings.apply(dir)?;
    if let Ok(m) = std::fs::metadata(dir) {
        use std::os::unix::fs::MetadataExt;
        for f in ["postgresql.auto.conf", "recovery.signal"] {
            let _ = std::os::unix::fs::lchown(dir.join(f), Some(m.uid()), Some(m.gid()));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(stop: &str, lsn: &str, xid: u64) -> PgInfo {
        let t = DateTime::parse_from_rfc3339(stop).unwrap();
        PgInfo {
            system_id: 1,
            version: 150000,
            pgdata: "/d".into(),
            timeline: 1,
            segment_size: 16 << 20,
            start_lsn: "0/2000028".into(),
            stop_lsn: lsn.into(),
            start_wal: "000000010000000000000002".into(),
            stop_wal: "000000010000000000000002".into(),
            start_time: t,
            stop_time: t,
            next_xid: Some(xid),
            backup_label: String::new(),
            tablespace_map: None,
        }
    }

    #[test]
    fn targets_are_placed_against_the_backup_end() {
        let pg = info("2026-12-05T08:00:00+00:00", "0/3000100", (1 << 32) | 500);
        let t = |s: &str| ends_before(&pg, &Target::Time(s.into())).unwrap();
        assert_eq!(t("2026-12-05 08:00:01+00"), Some(true));
        assert_eq!(t("2026-12-05 07:59:59+00"), Some(false));
        assert_eq!(t("2026-12-05T10:00:01+02:00"), Some(true));
        assert_eq!(t("2026-12-05T09:59:59+02:00"), Some(false));
        let l = |s: &str| ends_before(&pg, &Target::Lsn(s.into())).unwrap();
        assert_eq!(l("0/3000100"), Some(true));
        assert_eq!(l("0/30000FF"), Some(false));
        let x = |s: &str| ends_before(&pg, &Target::Xid(s.into())).unwrap();
        assert_eq!(x("500"), Some(true));
        assert_eq!(x("499"), Some(false));
        assert_eq!(ends_before(&pg, &Target::Latest).unwrap(), None);
        assert!(parse_target_time("yesterday").is_err());
    }
}
