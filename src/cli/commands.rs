//! One function per subcommand: arguments in, an operation of `cairn::ops`
//! called, results printed.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::json;

use super::output::{bytes, table};
use super::{Cli, Cmd, Global, EXIT_PARTIAL};
use cairn::format::lock::LockKind;
use cairn::ops::backup::{self, BackupOptions, StreamInput};
use cairn::ops::restore::{self, Filter, RestorePlan};
use cairn::ops::snapshots::{self, SnapshotFilter};
use cairn::ops::{cat, check, dump, ls, stream};
use cairn::repo::{InitOptions, Repository};
use cairn::target::MetaOptions;
use cairn::{Error, Result};

#[derive(Args)]
pub struct InitArgs {
    /// Use the chunker parameters and chunk-id key of --from-repo, so that `copy` between them dedups
    #[arg(long, requires = "from_repo")]
    pub copy_chunker_params: bool,
    /// Target size of a data pack in MiB (default 16; larger packs mean fewer objects on S3)
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub pack_size: Option<u32>,
    /// Average chunk size in KiB (a power of two, 1..=4096; default 512). Chunks are cut between a quarter and four times it: smaller chunks store less of a file or dump that changes in scattered places, at more index entries per byte
    #[arg(long, value_name = "KIB", conflicts_with = "copy_chunker_params", value_parser = parse_chunk_size)]
    pub chunk_size: Option<u32>,
    /// Average chunk size in KiB for database dumps: streams (stdin, a command's output, PostgreSQL and Redis sources), PostgreSQL base backups and `backup --chunker dump` (a power of two, 1..=4096; default 4)
    #[arg(long, value_name = "KIB", conflicts_with = "copy_chunker_params", value_parser = parse_chunk_size)]
    pub dump_chunk_size: Option<u32>,
    /// zstd level for runs of small chunks compressed together (1..=22; default 6): 3 backs up a first night of dumps ~1.7x faster and stores ~7 % more
    #[arg(long, value_name = "LEVEL", value_parser = clap::value_parser!(i32).range(1..=22))]
    pub group_compression: Option<i32>,
    /// Repository format version: 3 (default) names a large file's chunks by chunk lists that deduplicate; 2 for a repository that cairn releases before format 3 must read (1: before format 2)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=3))]
    pub format_version: Option<u32>,
    #[command(flatten)]
    pub from: super::copy::FromRepoArgs,
}

/// `backup --chunker`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ChunkerChoice {
    Files,
    Dump,
}

#[derive(Args)]
pub struct BackupArgs {
    /// Files and directories to back up
    pub paths: Vec<PathBuf>,
    /// Back up stdin (or the command's output) as a file with this name
    #[arg(long, value_name = "NAME")]
    pub stdin_filename: Option<String>,
    /// Run the command after `--` and back up its stdout; a non-zero exit writes no snapshot
    #[arg(long, requires = "stdin_filename")]
    pub stdin_from_command: bool,
    /// Accept a stream of 0 bytes (refused by default)
    #[arg(long)]
    pub allow_empty: bool,
    /// Exclude paths matching a pattern (may repeat)
    #[arg(short = 'e', long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Read exclude patterns from a file (may repeat)
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Do not cross filesystem boundaries
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Which of the repository's chunkers cuts the files: `files` (default, 512 KiB chunks) or `dump` (4 KiB chunks: for directories of database dumps, data files or disk images that change in scattered places). A stream is always cut as a dump
    #[arg(long, value_enum, value_name = "KIND", default_value_t = ChunkerChoice::Files)]
    pub chunker: ChunkerChoice,
    /// Add a tag to the snapshot (may repeat; commas separate several)
    #[arg(long, value_name = "TAG")]
    pub tag: Vec<String>,
    /// Record this hostname instead of the machine's
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Set the snapshot's time (RFC 3339 or "YYYY-MM-DD HH:MM:SS", local time)
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
    /// Use this snapshot as the parent instead of the latest matching one
    #[arg(long, value_name = "SNAPSHOT")]
    pub parent: Option<String>,
    /// Read every file again, even if unchanged since the parent
    #[arg(short, long)]
    pub force: bool,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
    /// The command to run with --stdin-from-command
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Args)]
pub struct FilterArgs {
    /// Only snapshots of this host (may repeat)
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots with these tags (a,b = both; repeat for either)
    #[arg(long = "tag", value_name = "TAGS")]
    pub tags: Vec<String>,
    /// Only snapshots that include this path (may repeat)
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
}

impl FilterArgs {
    pub(super) fn filter(&self) -> SnapshotFilter {
        SnapshotFilter { hosts: self.hosts.clone(), tags: self.tags.clone(), paths: self.paths.clone() }
    }
}

#[derive(Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print JSON (restic's field names)
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct LsArgs {
    /// Snapshot id (unique prefix) or "latest"
    pub snapshot: String,
    /// Only this path in the snapshot
    pub path: Option<PathBuf>,
    /// Print JSON, one object per line
    #[arg(long)]
    pub json: bool,
    /// Show mode, size and time
    #[arg(short, long)]
    pub long: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// SNAPSHOT or SNAPSHOT:SUBPATH (snapshot id prefix or "latest")
    pub snapshot: String,
    /// Directory to restore into
    #[arg(short, long, value_name = "DIR")]
    pub target: PathBuf,
    /// Restore only paths matching a pattern (may repeat)
    #[arg(short, long, value_name = "PATTERN")]
    pub include: Vec<String>,
    /// Skip paths matching a pattern (may repeat)
    #[arg(short, long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Show what would be restored, and restore nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args)]
pub struct DumpArgs {
    /// Snapshot id (unique prefix) or "latest"
    pub snapshot: String,
    /// Path of a file in the snapshot (for a stream snapshot: its file name)
    pub path: PathBuf,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args)]
pub struct CatArgs {
    /// config | index ID | snapshot ID | pack ID
    pub what: String,
    /// The object's id (unique prefix; for a snapshot also "latest")
    pub id: Option<String>,
}

#[derive(Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub cmd: KeyCmd,
}

#[derive(Subcommand)]
pub enum KeyCmd {
    /// List key files
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Add a password (new key file wrapping the same master key)
    Add {
        /// Read the new password from a file (else CAIRN_NEW_PASSWORD or a prompt)
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
        /// Label stored in the key file (default user@host)
        #[arg(long)]
        label: Option<String>,
    },
    /// Remove a key file by id prefix (not the one in use)
    Remove {
        /// Id (unique prefix) of the key file to remove
        id: String,
    },
    /// Change the password of the key in use
    Passwd {
        /// Read the new password from a file (else CAIRN_NEW_PASSWORD or a prompt)
        #[arg(long, value_name = "FILE")]
        new_password_file: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct UnlockArgs {
    /// Remove all locks, not only stale ones
    #[arg(long)]
    pub remove_all: bool,
}

#[derive(Args)]
pub struct CheckArgs {
    /// Also read every pack and verify every blob
    #[arg(long)]
    pub read_data: bool,
    /// Read only some packs: n/m (group n of m), day/m (group by day number: m nights cover all), or x%
    #[arg(long, value_name = "SUBSET", conflicts_with = "read_data")]
    pub read_data_subset: Option<String>,
    /// Verify every stream snapshot's SHA-256 (reads each stream again; --read-data verifies the newest of each)
    #[arg(long)]
    pub verify_streams: bool,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
    /// Memory for the set of the chunks the snapshots name (20 bytes per
    /// chunk) before it moves to a file beside the cache: a size (256M:
    /// ~13M chunks; 1G)
    #[arg(long, default_value = super::prune::DEFAULT_SCRATCH_MEMORY, value_name = "SIZE")]
    pub scratch_memory: String,
}

pub fn run(cli: &Cli, job: Option<&cairn::job::config::JobConfig>) -> Result<i32> {
    let g = &cli.global;
    // SIGINT/SIGTERM/SIGHUP: remove the lock, stop a child, exit 130/143/129
    // (mount unmounts on them itself).
    // wal-push and wal-fetch keep the default dispositions: PostgreSQL
    // stops them with SIGTERM when it shuts down, and must see that signal
    // (an exit status of 126 or more would abort recovery).
    let pg_wal = matches!(&cli.command, Cmd::Pg(p) if matches!(p.cmd, super::pg::PgCmd::WalPush(_) | super::pg::PgCmd::WalFetch(_)));
    if !matches!(cli.command, Cmd::Mount(_)) && !pg_wal {
        cairn::interrupt::install().map_err(|e| Error::io("installing the signal handlers", e))?;
    }
    match &cli.command {
        Cmd::Init(a) => init(g, a),
        Cmd::Backup(a) => backup(g, a),
        Cmd::Snapshots(a) => snapshots(g, a),
        Cmd::Ls(a) => ls(g, a),
        Cmd::Restore(a) => restore(g, a),
        Cmd::Dump(a) => dump(g, a),
        Cmd::Cat(a) => cat(g, a),
        Cmd::Key(a) => key(g, a),
        Cmd::Unlock(a) => {
            let repo = g.open()?;
            let n = repo.unlock(a.remove_all)?;
            if !g.quiet {
                println!("removed {n} lock(s)");
            }
            Ok(0)
        }
        Cmd::Check(a) => check(g, a),
        Cmd::Copy(a) => super::copy::copy(g, a),
        Cmd::Forget(a) => super::forget::forget(g, a),
        Cmd::Prune(a) => super::prune::prune(g, a),
        Cmd::Repair(a) => super::repair::repair(g, a),
        Cmd::Migrate(a) => super::migrate::migrate(g, a),
        Cmd::Find(a) => super::browse::find(g, a),
        Cmd::Diff(a) => super::browse::diff(g, a),
        Cmd::Stats(a) => super::browse::stats(g, a),
        Cmd::Tag(a) => super::browse::tag(g, a),
        Cmd::Mount(a) => super::mount::mount(g, a),
        Cmd::Pg(a) => super::pg::run(g, a),
        Cmd::Run(a) => super::run::run(g, a, job),
        Cmd::Drill(a) => super::drill::drill(g, a, job),
        Cmd::Status(a) => super::status::status(g, a, job),
        Cmd::Completions(a) => super::docs::completions(a),
        Cmd::Man(a) => super::docs::man(a),
    }
}

pub(crate) fn parse_chunk_size(s: &str) -> std::result::Result<u32, String> {
    let kib: u32 = s.parse().map_err(|_| format!("`{s}` is not a whole number of KiB"))?;
    if !(1..=4096).contains(&kib) || !kib.is_power_of_two() {
        return Err(format!("{kib} KiB: the average chunk size must be a power of two from 1 to 4096 KiB"));
    }
    Ok(kib)
}

fn init(g: &Global, a: &InitArgs) -> Result<i32> {
    let mut opts = InitOptions::default();
    if let Some(m) = a.pack_size {
        opts.pack_size = m << 20;
    }
    if let Some(kib) = a.chunk_size {
        opts.chunker = Some(cairn::repo::chunker_for_average(kib << 10));
    }
    if let Some(kib) = a.dump_chunk_size {
        let seed = opts.chunker.get_or_insert_with(cairn::repo::default_chunker).seed;
        opts.dump_chunker =
            Some(Some(cairn::format::config::ChunkerParams { seed, ..cairn::repo::chunker_for_average(kib << 10) }));
    }
    if let Some(v) = a.format_version {
        opts.format_version = v;
    }
    if let Some(l) = a.group_compression {
        opts.group_compression = Some(l);
    }
    if a.copy_chunker_params {
        let src = a.from.open(g)?;
        opts.chunker = Some(src.config.chunker);
        opts.dump_chunker = Some(src.config.dump_chunker);
        opts.id_key = Some(src.key.id);
    }
    let backend = g.backend(true)?;
    let pw = g.password_for_init()?;
    let repo = Repository::init(backend, &pw, &opts, g.cache_mode())?;
    if !g.quiet {
        println!(
            "created cairn repository {} (format {}) at {}",
            repo.config.id.short(),
            repo.config.version,
            repo.backend.location()
        );
        println!("Losing the password means losing the data: keep it safe.");
    }
    Ok(0)
}

fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::FixedOffset>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    for fmt in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            if let Some(t) = t.and_local_timezone(chrono::Local).earliest() {
                return Ok(t.fixed_offset());
            }
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0).and_then(|t| t.and_local_timezone(chrono::Local).earliest()) {
            return Ok(t.fixed_offset());
        }
    }
    Err(Error::invalid(format!("--time {s:?}: use RFC 3339 or \"YYYY-MM-DD HH:MM:SS\"")))
}

fn backup(g: &Global, a: &BackupArgs) -> Result<i32> {
    // Warm the inode cache while the repository opens (KDF, cache sync).
    let prefetch = prefetch_for(a);
    let repo = g.open()?;
    let start = std::time::Instant::now();
    let out = backup_in(g, &repo, a, prefetch)?;
    render_backup(g, a, &out, start);
    g.report_stats(&repo);
    Ok(if out.snapshot.partial { EXIT_PARTIAL } else { 0 })
}

/// Starts reading the inodes of a tree backup's paths ahead.
pub(super) fn prefetch_for(a: &BackupArgs) -> Option<std::sync::Arc<cairn::source::prefetch::Prefetch>> {
    match &a.stdin_filename {
        None if a.paths.is_empty() => None,
        None => {
            limit_heap_growth();
            let roots = a.paths.iter().filter_map(|p| backup::absolute(p).ok()).collect();
            Some(std::sync::Arc::new(cairn::source::prefetch::Prefetch::start(roots)))
        }
        Some(_) => None,
    }
}

/// One backup into an open repository, as `a` asks (`cairn backup`, and
/// each source of `cairn run`). Its lock is held until it returns.
pub(super) fn backup_in(
    g: &Global,
    repo: &Repository,
    a: &BackupArgs,
    prefetch: Option<std::sync::Arc<cairn::source::prefetch::Prefetch>>,
) -> Result<backup::BackupOutcome> {
    with_backup_options(g, repo, a, prefetch, |opts| match &a.stdin_filename {
        Some(name) => {
            let input = if a.stdin_from_command { StreamInput::Command(a.command.clone()) } else { StreamInput::Stdin };
            backup::backup_stream(repo, input, name, a.allow_empty, opts)
        }
        None => backup::backup_paths(repo, &a.paths, opts),
    })
}

/// A snapshot of several streams (a database source of `cairn run`) with
/// the options of `a` (tags, host, time...; it names no paths or stdin
/// file). Its lock is held until it returns.
pub(super) fn backup_streams_in(
    g: &Global,
    repo: &Repository,
    a: &BackupArgs,
    inputs: Vec<backup::NamedStream>,
) -> Result<backup::BackupOutcome> {
    with_backup_options(g, repo, a, None, |opts| backup::backup_streams(repo, inputs, a.allow_empty, opts))
}

/// Checks `a`, takes the backup lock and runs `f` with the options `a`
/// gives.
fn with_backup_options(
    g: &Global,
    repo: &Repository,
    a: &BackupArgs,
    prefetch: Option<std::sync::Arc<cairn::source::prefetch::Prefetch>>,
    f: impl FnOnce(&BackupOptions) -> Result<backup::BackupOutcome>,
) -> Result<backup::BackupOutcome> {
    g.needs_lock("backup")?;
    if a.stdin_filename.is_some() && !a.paths.is_empty() {
        return Err(Error::invalid("give either paths or --stdin-filename, not both"));
    }
    if a.stdin_from_command && a.command.is_empty() {
        return Err(Error::invalid("--stdin-from-command needs the command after `--`"));
    }
    if !a.stdin_from_command && !a.command.is_empty() {
        return Err(Error::invalid("a command after `--` needs --stdin-from-command"));
    }
    // The index as read at open, before the lock: what prune's rule 11
    // must not be trusted with (the lock re-reads it).
    cairn::steps::reached("backup:opened");
    let parent = match &a.parent {
        Some(p) => Some(repo.find_snapshot(p)?.0),
        None => None,
    };
    let opts = BackupOptions {
        tags: a.tag.iter().flat_map(|t| t.split(',')).filter(|t| !t.is_empty()).map(String::from).collect(),
        host: a.host.clone(),
        time: a.time.as_deref().map(parse_time).transpose()?,
        excludes: a.exclude.clone(),
        exclude_files: a.exclude_file.clone(),
        one_file_system: a.one_file_system,
        force: a.force,
        parent,
        progress: !g.quiet && !a.json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal(),
        prefetch,
        lock: None,
        before_commit: None,
        data: match a.chunker {
            ChunkerChoice::Files => cairn::format::config::DataKind::Files,
            ChunkerChoice::Dump => cairn::format::config::DataKind::Dump,
        },
    };
    let lock = std::sync::Arc::new(g.lock(repo, LockKind::Shared, "backup")?);
    cairn::steps::reached("backup:locked");
    let opts = BackupOptions { lock: Some(lock.clone()), ..opts };
    let out = f(&opts)?;
    drop(opts);
    drop(lock); // released before the request counts, which include it
    Ok(out)
}

fn render_backup(g: &Global, a: &BackupArgs, out: &backup::BackupOutcome, start: std::time::Instant) {
    let s = &out.snapshot;
    let m = &s.summary;
    if a.json {
        let v = json!({
            "message_type": "summary",
            "snapshot_id": out.id,
            "short_id": out.id.short(),
            "partial": s.partial,
            "files_new": m.files_new,
            "files_changed": m.files_changed,
            "files_unchanged": m.files_unchanged,
            "dirs": m.dirs,
            "data_blobs": m.data_blobs,
            "tree_blobs": m.tree_blobs,
            "data_added": m.data_added,
            "total_files_processed": m.total_files_processed,
            "total_bytes_processed": m.total_bytes_processed,
            "total_duration": start.elapsed().as_secs_f64(),
            "stream": s.stream,
            "errors": m.errors,
        });
        println!("{v}");
    } else if !g.quiet {
        println!("Files:       {} new, {} changed, {} unchanged", m.files_new, m.files_changed, m.files_unchanged);
        if m.dirs > 0 {
            println!("Dirs:        {}", m.dirs);
        }
        println!("Added:       {} stored ({} new blobs)", bytes(m.data_added), m.data_blobs + m.tree_blobs);
        let ratio = if m.data_added > 0 { m.total_bytes_processed as f64 / m.data_added as f64 } else { f64::INFINITY };
        println!(
            "Processed:   {} in {} files, {:.2}s; {} read per byte stored",
            bytes(m.total_bytes_processed),
            m.total_files_processed,
            start.elapsed().as_secs_f64(),
            if ratio.is_finite() { format!("{ratio:.1}x") } else { "all deduplicated,".to_string() }
        );
        if let Some(st) = &s.stream {
            println!("Stream:      {} ({} bytes, sha256 {})", st.filename, st.size, st.sha256);
        }
        println!(
            "snapshot {} saved{}",
            out.id.short(),
            if s.partial { " (partial: some files could not be read)" } else { "" }
        );
    }
}

/// Chunks of 128 KiB-2 MiB cross threads (reader -> seal workers -> packer),
/// and glibc's adaptive mmap threshold then keeps freed ones in its arenas:
/// measured on a 2 GiB tree backup, peak RSS 102 MB with it, 58 MB with a
/// fixed 256 KiB threshold, at the same speed. (Restore is faster with the
/// adaptive threshold, and its memory is bounded by batching; streams are
/// faster with it too and stay near 40 MB either way.)
fn limit_heap_growth() {
    // glibc only (other C libraries have no mallopt). SAFETY: mallopt only
    // sets an allocator tunable; it is called before the pipeline threads
    // start, with a valid parameter and value.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

fn snapshots(g: &Global, a: &SnapshotsArgs) -> Result<i32> {
    let repo = g.open()?;
    let list = snapshots::list(&repo, &a.filter.filter())?;
    if a.json {
        let v: Vec<_> = list.iter().map(|(id, s)| snapshots::to_json(id, s)).collect();
        println!("{}", serde_json::to_string(&v).map_err(|e| Error::invalid(e.to_string()))?);
    } else {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|(id, s)| {
                vec![
                    id.short(),
                    s.time.format("%Y-%m-%d %H:%M:%S").to_string(),
                    s.hostname.clone(),
                    s.tags.join(","),
                    s.paths.join(" "),
                    bytes(s.summary.total_bytes_processed),
                    if s.partial { "partial".into() } else { String::new() },
                ]
            })
            .collect();
        table(&["ID", "Time", "Host", "Tags", "Paths", "Size", ""], &rows);
        if !g.quiet {
            println!("{} snapshots", list.len());
        }
    }
    g.report_stats(&repo);
    Ok(0)
}

fn ls(g: &Global, a: &LsArgs) -> Result<i32> {
    let repo = g.open()?;
    let _lock = g.read_lock(&repo, "ls")?;
    let (id, snap) = snapshots::find(&repo, &a.snapshot, &a.filter.filter())?;
    let path = a.path.clone().unwrap_or_else(|| PathBuf::from("/"));
    snapshots::require_path(&repo, &id, &snap, &path)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        let head = json!({"message_type": "snapshot", "id": id, "short_id": id.short(), "time": snap.time.to_rfc3339(), "hostname": snap.hostname, "paths": snap.paths, "tree": snap.tree});
        writeln!(out, "{head}").map_err(|e| Error::io("stdout", e))?;
    }
    ls::walk(&repo, snap.tree, &path, &mut |e| {
        let line = if a.json {
            let mut v = serde_json::to_value(&e).map_err(|e| Error::invalid(e.to_string()))?;
            v["message_type"] = json!("node");
            v.to_string()
        } else if a.long {
            format!("{:?} {:o} {:>6} {:>6} {:>12} {} {}", e.kind, e.mode, e.uid, e.gid, e.size, e.mtime, e.path)
        } else {
            e.path
        };
        writeln!(out, "{line}").map_err(|e| Error::io("stdout", e))
    })?;
    Ok(0)
}

/// `SNAPSHOT[:SUBPATH]`.
fn split_spec(spec: &str) -> (&str, PathBuf) {
    match spec.split_once(':') {
        Some((s, p)) => (s, PathBuf::from(if p.is_empty() { "/" } else { p })),
        None => (spec, PathBuf::from("/")),
    }
}

fn restore(g: &Global, a: &RestoreArgs) -> Result<i32> {
    let repo = g.open()?;
    let _lock = g.read_lock(&repo, "restore")?;
    let (snap_spec, sub) = split_spec(&a.snapshot);
    let (id, snap) = snapshots::find(&repo, snap_spec, &a.filter.filter())?;
    snapshots::require_path(&repo, &id, &snap, &sub)?;
    let filter = Filter::new(&a.include, &a.exclude)?;
    if a.dry_run {
        let plan = RestorePlan::build(&repo, snap.tree, &sub, &a.target, &filter)?;
        println!(
            "would restore snapshot {} into {}: {} dirs, {} files, {} other entries, {} from {} blobs in {} packs",
            id.short(),
            a.target.display(),
            plan.dirs.len(),
            plan.files.len(),
            plan.specials.len(),
            bytes(plan.total_bytes),
            plan.blob_count(),
            plan.packs.len()
        );
        for f in &plan.files {
            println!("  {}", f.path.display());
        }
        return Ok(0);
    }
    let shown = super::progress::show(repo.progress.clone(), "restored", super::progress::wanted(g.quiet));
    let report = restore::run(&repo, snap.tree, &sub, &a.target, &filter, &MetaOptions::default())?;
    drop(shown);
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for f in &report.failed {
        eprintln!("error: not restored: {f}");
    }
    // Each stream file restored whole is hashed and compared with its
    // own record.
    if snap.is_stream() && report.failed.is_empty() {
        let restored = stream::restored_streams(&repo, &snap, &sub, &filter)?;
        stream::verify_restored_all(&a.target, &id, &snap, &restored)?;
    }
    if !g.quiet {
        println!(
            "restored snapshot {} into {}: {} files, {} dirs, {} other, {}",
            id.short(),
            a.target.display(),
            report.files,
            report.dirs,
            report.specials,
            bytes(report.bytes)
        );
    }
    g.report_stats(&repo);
    if !report.failed.is_empty() {
        return Err(Error::corrupt(format!(
            "{} file(s) could not be restored because repository data is damaged (run `cairn check --read-data`)",
            report.failed.len()
        )));
    }
    Ok(0)
}

fn dump(g: &Global, a: &DumpArgs) -> Result<i32> {
    let repo = g.open()?;
    let _lock = g.read_lock(&repo, "dump")?;
    let path = if a.path.is_absolute() { a.path.clone() } else { Path::new("/").join(&a.path) };
    let filter = a.filter.filter();
    // `latest` is the newest snapshot (of those the filters select) that has PATH.
    let (id, snap) = if a.snapshot == "latest" {
        let (id, snap, skipped) = snapshots::latest_with_path(&repo, &filter, &path)?;
        if skipped > 0 && g.verbose {
            eprintln!(
                "{skipped} newer snapshot(s) have no {}: dumping snapshot {}",
                path.display(),
                snapshots::label(&id, &snap)
            );
        }
        (id, snap)
    } else {
        let (id, snap) = snapshots::find(&repo, &a.snapshot, &filter)?;
        snapshots::require_path(&repo, &id, &snap, &path)?;
        (id, snap)
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    dump::dump_snapshot(&repo, &id, &snap, &path, &mut out)?;
    Ok(0)
}

fn cat(g: &Global, a: &CatArgs) -> Result<i32> {
    let repo = g.open()?;
    let need = || a.id.as_deref().ok_or_else(|| Error::invalid(format!("cat {} needs an id", a.what)));
    let v = match a.what.as_str() {
        "config" => cat::config(&repo)?,
        "index" => cat::index(&repo, need()?)?,
        "pack" => cat::pack(&repo, need()?)?,
        "snapshot" => {
            let (_, s) = repo.find_snapshot(need()?)?;
            serde_json::to_value(&s).map_err(|e| Error::invalid(e.to_string()))?
        }
        other => return Err(Error::invalid(format!("cat {other:?}: use config, index, snapshot or pack"))),
    };
    println!("{}", serde_json::to_string_pretty(&v).map_err(|e| Error::invalid(e.to_string()))?);
    Ok(0)
}

fn key(g: &Global, a: &KeyArgs) -> Result<i32> {
    let mut repo = g.open()?;
    match &a.cmd {
        KeyCmd::List { json } => {
            let keys = repo.list_keys()?;
            if *json {
                println!("{}", serde_json::to_string(&keys).map_err(|e| Error::invalid(e.to_string()))?);
            } else {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| {
                        vec![
                            format!("{}{}", if k.current { "*" } else { " " }, k.id.short()),
                            k.label.clone(),
                            chrono::DateTime::from_timestamp(k.created, 0).map(|t| t.to_rfc3339()).unwrap_or_default(),
                        ]
                    })
                    .collect();
                table(&[" ID", "Label", "Created"], &rows);
            }
        }
        KeyCmd::Add { new_password_file, label } => {
            let pw = super::password::read_new(new_password_file.as_deref())?;
            let id = repo.add_key(&pw, label.clone())?;
            println!("added key {}", id.short());
        }
        KeyCmd::Remove { id } => {
            let id = repo.remove_key(id)?;
            println!("removed key {}", id.short());
        }
        KeyCmd::Passwd { new_password_file } => {
            let pw = super::password::read_new(new_password_file.as_deref())?;
            let id = repo.change_password(&pw)?;
            println!("password changed; new key {}", id.short());
        }
    }
    Ok(0)
}

pub(super) fn check(g: &Global, a: &CheckArgs) -> Result<i32> {
    let read = match &a.read_data_subset {
        Some(sub) => check::ReadData::parse_subset(sub, chrono::Utc::now().timestamp().div_euclid(86_400))?,
        None if a.read_data => check::ReadData::All,
        None => check::ReadData::None,
    };
    let scratch_memory = super::prune::scratch_memory(&a.scratch_memory)?;
    let repo = g.open_quietly()?;
    // Not beside a prune, whose half-done index rewrite would read as damage.
    let lock = if g.no_lock { None } else { Some(g.lock(&repo, LockKind::Maintenance, "check")?) };
    let shown = super::progress::show(
        repo.progress.clone(),
        "read",
        read != check::ReadData::None && super::progress::wanted(g.quiet),
    );
    let mut report = check::check_with(&repo, read, scratch_memory)?;
    drop(shown);
    let streams = match (a.verify_streams, read) {
        (true, _) => Some(stream::Which::All),
        (false, check::ReadData::All) => Some(stream::Which::Newest),
        _ => None,
    };
    if let Some(which) = streams {
        let v = stream::verify(&repo, &repo.snapshots()?, which);
        let streams = if v.streams == v.verified { String::new() } else { format!(" ({} streams)", v.streams) };
        report
            .notes
            .push(format!("{} stream snapshot(s){streams} verified against their recorded SHA-256", v.verified));
        report.notes.extend(v.skipped);
        report.problems.extend(v.problems);
    }
    drop(lock);
    if a.json {
        println!("{}", serde_json::to_string(&report).map_err(|e| Error::invalid(e.to_string()))?);
    } else {
        for p in &report.problems {
            println!("error: {p}");
        }
        for o in &report.damaged_objects {
            println!("damaged: {o}");
        }
        for p in &report.affected {
            println!("affected: {p}");
        }
        for p in &report.notes {
            if !g.quiet {
                println!("note: {p}");
            }
        }
        if !g.quiet {
            println!(
                "checked {} snapshots, {} trees{}, {} packs{}{}: {}",
                report.snapshots,
                report.trees,
                if report.lists > 0 { format!(", {} chunk lists", report.lists) } else { String::new() },
                report.packs,
                if report.wal_files > 0 { format!(", {} WAL files", report.wal_files) } else { String::new() },
                if read != check::ReadData::None {
                    let wal =
                        if report.wal_read > 0 { format!(" and {} WAL files", report.wal_read) } else { String::new() };
                    format!(", {} packs and {} blobs{wal} read", report.packs_read, report.blobs_read)
                } else {
                    String::new()
                },
                if report.problems.is_empty() { "no errors" } else { "ERRORS FOUND" }
            );
            if !report.problems.is_empty() {
                println!(
                    "to repair: `cairn repair index --read-data`, then `cairn repair snapshots --forget` (both take --dry-run)"
                );
            }
        }
    }
    g.report_stats(&repo);
    if report.problems.is_empty() {
        Ok(0)
    } else {
        Err(Error::corrupt(format!("check found {} problem(s)", report.problems.len())))
    }
}
