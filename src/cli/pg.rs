//! `cairn pg …`: PostgreSQL WAL archiving and point-in-time recovery.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;

use super::Global;
use cairn::format::lock::LockKind;
use cairn::ops::backup::BackupOptions;
use cairn::ops::pg::archive::Pushed;
use cairn::ops::pg::{self, backup::BaseBackupOptions, restore as pgrestore, Fetched};
use cairn::pg::recovery::{Action, Target};
use cairn::repo::keycache;
use cairn::{Error, Result};

#[derive(Args)]
pub struct PgArgs {
    #[command(subcommand)]
    pub cmd: PgCmd,
}

#[derive(Subcommand)]
pub enum PgCmd {
    /// Archive one WAL file (archive_command = 'cairn … pg wal-push %p')
    WalPush(WalPushArgs),
    /// Restore one archived WAL file (restore_command = 'cairn … pg wal-fetch %f %p'); exit 1 if not archived
    WalFetch(WalFetchArgs),
    /// Take a base backup of a running cluster (a snapshot tagged pg-base)
    Backup(BackupArgs),
    /// Restore a cluster to a point in time: base backup, recovery settings, recovery.signal
    Restore(RestoreArgs),
    /// Base backups, archived WAL, gaps and lag per system; non-zero exit on a gap or stale archive
    Status(StatusArgs),
}

#[derive(Args)]
pub struct WalPushArgs {
    /// The WAL file (PostgreSQL's %p)
    pub path: PathBuf,
    /// The cluster's data directory (default: the working directory, as PostgreSQL runs archive_command)
    #[arg(long, value_name = "DIR")]
    pub pgdata: Option<PathBuf>,
    /// Do not cache the master key (every call then runs the password's key derivation)
    #[arg(long)]
    pub no_key_cache: bool,
}

#[derive(Args)]
pub struct WalFetchArgs {
    /// The WAL file's name (PostgreSQL's %f)
    pub name: String,
    /// Where to write it (PostgreSQL's %p)
    pub dest: PathBuf,
    /// The cluster's data directory (default: the working directory, as PostgreSQL runs restore_command)
    #[arg(long, value_name = "DIR")]
    pub pgdata: Option<PathBuf>,
    /// The system identifier to fetch for (default: the data directory's)
    #[arg(long, value_name = "ID")]
    pub system_id: Option<u64>,
    /// Do not cache the master key
    #[arg(long)]
    pub no_key_cache: bool,
}

#[derive(Args)]
pub struct BackupArgs {
    /// The running cluster's data directory
    #[arg(long, value_name = "DIR")]
    pub pgdata: PathBuf,
    /// Connection string or URI (default: the libpq environment, PGHOST, PGPORT, PGUSER…)
    #[arg(long, value_name = "CONNINFO")]
    pub dbname: Option<String>,
    /// Start with an immediate checkpoint instead of a spread one
    #[arg(long)]
    pub fast: bool,
    /// Add a tag (besides pg-base; repeatable)
    #[arg(long, value_name = "TAG")]
    pub tag: Vec<String>,
    /// Hostname to record
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Seconds to wait for the backup's WAL to reach the archive
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub wal_timeout: u64,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The data directory to create (empty or absent)
    #[arg(long, value_name = "DIR")]
    pub pgdata: PathBuf,
    /// Recover to this time ("YYYY-MM-DD HH:MM:SS[.ffffff][+TZ]")
    #[arg(long, value_name = "TIME", group = "target")]
    pub time: Option<String>,
    /// Recover to this LSN (0/16B3748)
    #[arg(long, value_name = "LSN", group = "target")]
    pub lsn: Option<String>,
    /// Recover to this transaction id
    #[arg(long, value_name = "XID", group = "target")]
    pub xid: Option<String>,
    /// Recover to this restore point (pg_create_restore_point)
    #[arg(long, value_name = "NAME", group = "target")]
    pub name: Option<String>,
    /// Stop as soon as the base backup is consistent
    #[arg(long, group = "target")]
    pub immediate: bool,
    /// What the server does at the target
    #[arg(long, value_enum, default_value = "pause")]
    pub target_action: TargetAction,
    /// Stop just before the target instead of just after it
    #[arg(long)]
    pub target_exclusive: bool,
    /// recovery_target_timeline: a number, current or latest (default: the newest archived timeline that
    /// descends from the base backup)
    #[arg(long, value_name = "TIMELINE")]
    pub target_timeline: Option<String>,
    /// Restore this base backup instead of the newest one that ends before the target
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<String>,
    /// The system identifier to restore (default: the newest base backup's)
    #[arg(long, value_name = "ID")]
    pub system_id: Option<u64>,
    /// Replace the contents of a non-empty directory
    #[arg(long, alias = "force")]
    pub delta: bool,
    /// Restore tablespace OID into DIR instead of where it was (repeatable)
    #[arg(long, value_name = "OID=DIR", value_parser = parse_tablespace)]
    pub tablespace_map: Vec<(u32, PathBuf)>,
    /// The restore_command to write (default: this cairn with this repository and password file)
    #[arg(long, value_name = "CMD")]
    pub restore_command: Option<String>,
    /// Write archive_mode = off: the restored cluster does not archive into the repository (drills, copies)
    #[arg(long)]
    pub no_archive: bool,
    /// Print the plan and write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum TargetAction {
    Pause,
    Promote,
    Shutdown,
}

#[derive(Args)]
pub struct StatusArgs {
    /// Exit non-zero when the newest WAL is older than this (e.g. 1h; set archive_timeout below it)
    #[arg(long, value_name = "DURATION", value_parser = super::parse_wait)]
    pub max_lag: Option<std::time::Duration>,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

fn parse_tablespace(s: &str) -> std::result::Result<(u32, PathBuf), String> {
    let (oid, dir) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected OID=DIR"))?;
    let oid = oid.trim().parse().map_err(|_| format!("{s:?}: {oid:?} is not a tablespace OID"))?;
    Ok((oid, absolute(Path::new(dir))))
}

/// Exit code of `pg status` when it finds a gap or a stale archive.
const EXIT_PROBLEM: i32 = 1;

pub fn run(g: &Global, a: &PgArgs) -> Result<i32> {
    match &a.cmd {
        PgCmd::WalPush(a) => wal_push(g, a),
        PgCmd::WalFetch(a) => wal_fetch(g, a),
        PgCmd::Backup(a) => backup(g, a),
        PgCmd::Restore(a) => restore(g, a),
        PgCmd::Status(a) => status(g, a),
    }
}

/// Opens the key through the key cache (unless `--no-key-cache` or `--no-cache`).
fn unlock(g: &Global, no_key_cache: bool) -> Result<keycache::Unlocked> {
    let backend = g.backend(false)?;
    let pw = g.password("enter password for repository: ")?;
    let root = if no_key_cache { None } else { g.cache_mode().root() };
    keycache::unlock(backend, &pw, root.as_deref())
}

fn here() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

fn wal_push(g: &Global, a: &WalPushArgs) -> Result<i32> {
    let un = unlock(g, a.no_key_cache)?;
    let pgdata = a.pgdata.clone().unwrap_or_else(here);
    let (file, pushed) = pg::wal_push(&un, &a.path, &pgdata)?;
    if g.verbose {
        match pushed {
            Pushed::Stored { bytes } => eprintln!("archived {file} ({bytes} bytes)"),
            Pushed::AlreadyArchived => eprintln!("{file} was archived already with the same content"),
        }
        eprintln!("{}", un.backend.stats.summary());
    } else if pushed == Pushed::AlreadyArchived && !g.quiet {
        eprintln!("{file} was archived already with the same content");
    }
    Ok(0)
}

/// Exit code of `wal-fetch` for every failure but "not archived":
/// PostgreSQL takes an exit status up to 125 for "not in the archive" and
/// ends recovery there (promoting, with no target), so a read error must
/// stop recovery instead (format-spec/13-wal.md, rule W4).
pub const EXIT_STOP_RECOVERY: i32 = 255;

fn wal_fetch(g: &Global, a: &WalFetchArgs) -> Result<i32> {
    match fetch_one(g, a) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!(
                "error: {e}; wal-fetch exits {EXIT_STOP_RECOVERY} so that PostgreSQL stops recovery instead of ending it \
                 early (fix the cause and start the server again: recovery resumes)"
            );
            Ok(EXIT_STOP_RECOVERY)
        }
    }
}

fn fetch_one(g: &Global, a: &WalFetchArgs) -> Result<i32> {
    let pgdata = a.pgdata.clone().unwrap_or_else(here);
    let backend = g.backend(false)?;
    let pw = g.password("enter password for repository: ")?;
    let root = if a.no_key_cache { None } else { g.cache_mode().root() };
    // One request per WAL file: the cached key opens the object, which
    // authenticates it. Not found, or a key that does not open it (a new
    // repository at this location), goes the long way below, which checks
    // the key against `config` first.
    if let Some(key) = root.as_deref().and_then(|r| keycache::cached_key(r, backend.location(), &pw)) {
        match pg::wal_fetch(&backend, &key, &a.name, &a.dest, &pgdata, a.system_id) {
            Ok(Fetched::Restored { bytes }) => {
                if g.verbose {
                    eprintln!("restored {} ({bytes} bytes)", a.name);
                    eprintln!("{}", backend.stats.summary());
                }
                return Ok(0);
            }
            Ok(Fetched::NotInArchive) => {}
            Err(e) if e.kind() == cairn::ErrorKind::Crypto => {}
            Err(e) => return Err(e),
        }
    }
    let un = keycache::unlock(backend, &pw, root.as_deref())?;
    match pg::wal_fetch(&un.backend, &un.key, &a.name, &a.dest, &pgdata, a.system_id)? {
        Fetched::Restored { bytes } => {
            if g.verbose {
                eprintln!("restored {} ({bytes} bytes)", a.name);
                eprintln!("{}", un.backend.stats.summary());
            }
            Ok(0)
        }
        // PostgreSQL asks for files past the end of the archive: quiet.
        Fetched::NotInArchive => {
            if g.verbose {
                eprintln!("{} is not in the archive", a.name);
            }
            Ok(1)
        }
    }
}

fn backup(g: &Global, a: &BackupArgs) -> Result<i32> {
    g.needs_lock("pg backup")?;
    let repo = g.open()?;
    let lock = std::sync::Arc::new(g.lock(&repo, LockKind::Shared, "pg backup")?);
    let opts = BaseBackupOptions {
        pgdata: a.pgdata.clone(),
        dbname: a.dbname.clone(),
        fast: a.fast,
        wal_timeout: std::time::Duration::from_secs(a.wal_timeout),
        backup: BackupOptions {
            tags: a.tag.iter().flat_map(|t| t.split(',')).filter(|t| !t.is_empty()).map(String::from).collect(),
            host: a.host.clone(),
            lock: Some(lock),
            ..Default::default()
        },
    };
    let start = std::time::Instant::now();
    let out = pg::backup::base_backup(&repo, &opts)?;
    let pg = out.snapshot.pg.as_ref().ok_or_else(|| Error::invalid("base backup recorded nothing"))?;
    if a.json {
        println!(
            "{}",
            json!({
                "id": out.id, "short_id": out.id.short(), "system_id": pg.system_id, "timeline": pg.timeline,
                "start_lsn": pg.start_lsn, "stop_lsn": pg.stop_lsn, "start_wal": pg.start_wal,
                "stop_wal": pg.stop_wal, "stop_time": pg.stop_time, "data_added": out.snapshot.summary.data_added,
                "files": out.snapshot.summary.total_files_processed,
                "bytes": out.snapshot.summary.total_bytes_processed,
                "seconds": start.elapsed().as_secs_f64(),
            })
        );
    } else if !g.quiet {
        let m = &out.snapshot.summary;
        println!(
            "base backup of system {} (timeline {}, WAL {} to {}, LSN {} to {}): {} files, {}, {} added in {:.1}s",
            pg.system_id,
            pg.timeline,
            pg.start_wal,
            pg.stop_wal,
            pg.start_lsn,
            pg.stop_lsn,
            m.total_files_processed,
            super::output::bytes(m.total_bytes_processed),
            super::output::bytes(m.data_added),
            start.elapsed().as_secs_f64()
        );
        println!("snapshot {} saved", out.id.short());
    }
    g.report_stats(&repo);
    Ok(0)
}

/// Single-quotes a word for the shell that runs restore_command.
fn sh(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-=:,@+".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The restore_command that runs this cairn with this repository.
fn restore_command(g: &Global) -> Result<String> {
    let exe = std::env::current_exe().map_err(|e| Error::io("finding cairn's own path", e))?;
    let repo = g.repo.clone().unwrap_or_default();
    let repo = if repo.starts_with("s3:") {
        repo
    } else {
        absolute(Path::new(repo.trim_start_matches("local:"))).display().to_string()
    };
    let mut words = vec![sh(&exe.to_string_lossy()), "-r".into(), sh(&repo)];
    if let Some(f) = &g.password_file {
        words.extend(["--password-file".into(), sh(&absolute(f).to_string_lossy())]);
    } else if let Some(c) = &g.password_command {
        words.extend(["--password-command".into(), sh(c)]);
    } else {
        return Err(Error::invalid(
            "the restored server needs a restore_command that finds the password: pass --password-file or \
             --password-command (or write your own with --restore-command)",
        ));
    }
    if let Some(d) = &g.cache_dir {
        words.extend(["--cache-dir".into(), sh(&absolute(d).to_string_lossy())]);
    }
    for o in &g.options {
        words.extend(["-o".into(), sh(o)]);
    }
    words.extend(["pg", "wal-fetch", "%f", "%p"].map(String::from));
    Ok(words.join(" "))
}

fn restore(g: &Global, a: &RestoreArgs) -> Result<i32> {
    let target = if let Some(t) = &a.time {
        Target::Time(pgrestore::parse_target_time(t)?.format("%Y-%m-%d %H:%M:%S%.6f%:z").to_string())
    } else if let Some(l) = &a.lsn {
        Target::Lsn(l.clone())
    } else if let Some(x) = &a.xid {
        Target::Xid(x.clone())
    } else if let Some(n) = &a.name {
        Target::Name(n.clone())
    } else if a.immediate {
        Target::Immediate
    } else {
        Target::Latest
    };
    let action = match a.target_action {
        TargetAction::Pause => Action::Pause,
        TargetAction::Promote => Action::Promote,
        TargetAction::Shutdown => Action::Shutdown,
    };
    let restore_command = match &a.restore_command {
        Some(c) => c.clone(),
        None => restore_command(g)?,
    };
    let repo = g.open()?;
    let _lock = g.read_lock(&repo, "pg restore")?;
    let req = pgrestore::Request {
        pgdata: absolute(&a.pgdata),
        target,
        action,
        inclusive: !a.target_exclusive,
        snapshot: a.snapshot.clone(),
        system_id: a.system_id,
        delta: a.delta,
        restore_command,
        tablespace_map: a.tablespace_map.clone(),
        timeline: a.target_timeline.clone(),
        archive: !a.no_archive,
    };
    let plan = pgrestore::plan(&repo, &req)?;
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    let describe = |p: &pgrestore::Plan| {
        let mut lines = vec![format!(
            "base backup {} of system {} ({}; ends {} at LSN {})",
            p.snapshot.short(),
            p.system_id,
            p.reason,
            p.backup_stop_time,
            p.backup_stop_lsn
        )];
        if p.empty_first {
            lines.push(format!("empty {} first (--delta)", p.pgdata.display()));
        }
        for t in &p.tablespaces {
            let first = if t.empty_first { ", emptied first (--delta)" } else { "" };
            lines.push(format!("tablespace {} from {} into {}{first}", t.oid, t.from, t.to.display()));
        }
        lines.push(format!("into {}, then in postgresql.auto.conf:", p.pgdata.display()));
        lines.extend(p.settings.lines().into_iter().map(|l| format!("  {l}")));
        lines
    };
    if a.dry_run {
        if a.json {
            println!("{}", serde_json::to_string(&plan).map_err(|e| Error::invalid(e.to_string()))?);
        } else {
            println!("would restore:");
            for l in describe(&plan) {
                println!("  {l}");
            }
        }
        return Ok(0);
    }
    let report = pgrestore::execute(&repo, &plan)?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if !report.failed.is_empty() {
        for f in &report.failed {
            eprintln!("error: not restored: {f}");
        }
        return Err(Error::corrupt(format!(
            "{} file(s) could not be restored because repository data is damaged; {} is not a usable cluster",
            report.failed.len(),
            plan.pgdata.display()
        )));
    }
    if a.json {
        println!(
            "{}",
            json!({"snapshot": plan.snapshot, "pgdata": plan.pgdata, "files": report.files, "bytes": report.bytes,
                   "settings": plan.settings})
        );
    } else if !g.quiet {
        for l in describe(&plan) {
            println!("{l}");
        }
        println!(
            "restored {} files ({}); start PostgreSQL on {} to recover",
            report.files,
            super::output::bytes(report.bytes),
            plan.pgdata.display()
        );
    }
    Ok(0)
}

fn status(g: &Global, a: &StatusArgs) -> Result<i32> {
    let repo = g.open()?;
    let _lock = g.read_lock(&repo, "pg status")?;
    let mut systems = pg::status::status(&repo)?;
    if let Some(max) = a.max_lag {
        for s in &mut systems {
            match s.lag_seconds {
                Some(l) if l as u64 > max.as_secs() => {
                    s.problems.push(format!("the newest WAL arrived {l}s ago, more than --max-lag {}s", max.as_secs()))
                }
                None => s.problems.push("no WAL archived".into()),
                _ => {}
            }
        }
    }
    let bad = systems.iter().any(|s| !s.problems.is_empty());
    if a.json {
        println!("{}", serde_json::to_string_pretty(&systems).map_err(|e| Error::invalid(e.to_string()))?);
    } else if systems.is_empty() {
        println!("no PostgreSQL WAL or base backups in this repository");
    } else {
        for s in &systems {
            println!("system {} (segments of {}):", s.system_id, super::output::bytes(s.segment_size));
            for b in &s.base_backups {
                println!(
                    "  base backup {}  timeline {}  WAL {}..{}  ends {} (LSN {})",
                    b.snapshot, b.timeline, b.start_wal, b.stop_wal, b.stop_time, b.stop_lsn
                );
            }
            for t in &s.timelines {
                println!("  timeline {}: {} segments, {} to {}", t.timeline, t.segments, t.first, t.last);
                for (x, y) in &t.gaps {
                    println!("    GAP: {x} to {y} missing");
                }
            }
            if let Some(r) = &s.reachable {
                println!("  a restore of the newest base backup can replay up to {r}");
            }
            if let (Some(n), Some(l)) = (&s.newest_wal, s.lag_seconds) {
                println!("  newest WAL: {n}, archived {l}s ago");
            }
            for p in &s.problems {
                println!("  PROBLEM: {p}");
            }
        }
    }
    Ok(if bad { EXIT_PROBLEM } else { 0 })
}
