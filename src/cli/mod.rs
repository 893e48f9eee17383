//! The command line: the only module that knows clap. Parses arguments,
//! opens the repository, calls one operation in `cairn::ops`, prints.

mod browse;
mod commands;
mod config;
mod copy;
mod docs;
mod drill;
mod forget;
mod migrate;
mod mount;
mod output;
mod password;
mod pg;
mod progress;
mod prune;
mod repair;
mod run;
mod status;
mod usage;

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use cairn::backend::{Backend, BackendOptions};
use cairn::format::lock::LockKind;
use cairn::repo::lock::LockGuard;
use cairn::repo::{CacheMode, Repository};
use cairn::{Error, Result};

/// Exit code of a backup whose snapshot is partial (some files unreadable).
pub const EXIT_PARTIAL: i32 = 3;

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Encrypted, deduplicating backups",
    max_term_width = 100,
    after_help = usage::EXIT_CODES
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Cmd,
}

/// Options every command takes: listed after the command's own, under
/// their own heading.
#[derive(Args, Clone)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Repository: a local directory, or s3:http[s]://host[:port]/bucket[/prefix] or s3://bucket[/prefix]
    #[arg(short = 'r', long = "repo", env = "CAIRN_REPOSITORY", global = true, value_name = "REPO")]
    pub repo: Option<String>,
    /// Read the password from a file (first line)
    #[arg(long, env = "CAIRN_PASSWORD_FILE", global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Run a shell command and use its output as the password
    #[arg(long, env = "CAIRN_PASSWORD_COMMAND", global = true, value_name = "CMD")]
    pub password_command: Option<String>,
    /// Cache directory (default: $XDG_CACHE_HOME/cairn or ~/.cache/cairn)
    #[arg(long, env = "CAIRN_CACHE_DIR", global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Keep no local cache (reads the index from the repository each time)
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Backend option KEY=VALUE (s3.connections, s3.max-retries, s3.retry-timeout, s3.timeout, s3.region)
    #[arg(short = 'o', long = "option", global = true, value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// Wait up to this long for a conflicting lock to go (e.g. 30s, 10m, 2h)
    #[arg(long, global = true, value_name = "DURATION", value_parser = parse_wait)]
    pub retry_lock: Option<std::time::Duration>,
    /// Take no lock: for commands that only read (snapshots, ls, restore, dump, find, diff, stats, cat,
    /// check, mount), e.g. on read-only media. A prune running meanwhile may then move data they read.
    #[arg(long, global = true)]
    pub no_lock: bool,
    /// Read flags and the job from this TOML file (README "The nightly job"); the command line wins
    #[arg(long, env = "CAIRN_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The config file /etc/cairn/NAME.toml, else ~/.config/cairn/NAME.toml
    #[arg(short = 'P', long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// Print less (no summaries)
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Print more, including backend request counts
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Create a new repository
    Init(commands::InitArgs),
    /// Back up paths, or a stream from stdin or a command
    Backup(commands::BackupArgs),
    /// List snapshots
    Snapshots(commands::SnapshotsArgs),
    /// List the files of a snapshot
    Ls(commands::LsArgs),
    /// Restore a snapshot (or a path in it) into a directory
    Restore(commands::RestoreArgs),
    /// Write one file of a snapshot to stdout
    Dump(commands::DumpArgs),
    /// Show a decrypted object as JSON (config, index ID, snapshot ID, pack ID)
    Cat(commands::CatArgs),
    /// Manage the passwords (key files) of the repository
    Key(commands::KeyArgs),
    /// Remove stale locks
    Unlock(commands::UnlockArgs),
    /// Copy snapshots from another repository into this one (only the data it lacks)
    Copy(copy::CopyArgs),
    /// Remove snapshots according to a retention policy
    Forget(forget::ForgetArgs),
    /// Delete data that no snapshot uses (safe beside running backups)
    Prune(prune::PruneArgs),
    /// Verify the repository's structure and, with --read-data, every byte
    Check(commands::CheckArgs),
    /// Repair a damaged repository: rebuild the index, rewrite snapshots
    Repair(repair::RepairArgs),
    /// Adopt format 3 (chunk lists) or 2 (runs of small chunks compressed together), or another chunk size, keeping what is stored
    Migrate(migrate::MigrateArgs),
    /// Find files by name or path pattern across snapshots
    Find(browse::FindArgs),
    /// Show what changed between two snapshots
    Diff(browse::DiffArgs),
    /// Sizes of snapshots: logical, stored, dedup and compression ratios
    Stats(browse::StatsArgs),
    /// Add, remove or set the tags of snapshots
    Tag(browse::TagArgs),
    /// Mount the repository read-only as a filesystem (FUSE)
    Mount(mount::MountArgs),
    /// Run the nightly job of a config file: hooks, every source's backup, forget, check, notifications
    Run(run::RunArgs),
    /// Restore test of the config's sources: restore, verify every byte, compare with the live files, query a scratch database
    Drill(drill::DrillArgs),
    /// PostgreSQL: WAL archiving (wal-push, wal-fetch), base backups, point-in-time restore, status
    Pg(pg::PgArgs),
    /// Monitoring check (Nagios/Icinga): age of the newest snapshot of each source; exit 0-3
    #[command(after_help = usage::STATUS_EXIT_CODES)]
    Status(status::StatusArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions(docs::CompletionsArgs),
    /// Print the manual page (roff), or write one per command into a directory
    Man(docs::ManArgs),
}

impl Global {
    pub(crate) fn cache_mode(&self) -> CacheMode {
        if self.no_cache {
            CacheMode::Memory
        } else if let Some(d) = &self.cache_dir {
            CacheMode::Dir(d.clone())
        } else {
            CacheMode::Default
        }
    }

    pub(crate) fn backend(&self, create: bool) -> Result<Backend> {
        let loc = self
            .repo
            .as_deref()
            .ok_or_else(|| Error::invalid("no repository given: use -r/--repo or set CAIRN_REPOSITORY"))?;
        Backend::open(loc, create, &self.backend_options()?)
    }

    pub(crate) fn backend_options(&self) -> Result<BackendOptions> {
        let mut o = BackendOptions::default();
        for kv in &self.options {
            o.set(kv)?;
        }
        Ok(o)
    }

    pub(crate) fn password(&self, prompt: &str) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        password::read(&password::PasswordSource {
            env_var: "CAIRN_PASSWORD",
            file: self.password_file.as_deref(),
            command: self.password_command.as_deref(),
            prompt,
        })
    }

    /// The password of a new repository: asked twice on a terminal.
    fn password_for_init(&self) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        password::read_for_init(&password::PasswordSource {
            env_var: "CAIRN_PASSWORD",
            file: self.password_file.as_deref(),
            command: self.password_command.as_deref(),
            prompt: "enter password for new repository: ",
        })
    }

    /// Opens the repository: the typed state every command but `init` needs.
    pub fn open(&self) -> Result<Repository> {
        let repo = self.open_quietly()?;
        for (id, why) in repo.damaged_indexes() {
            let why = if why.contains(&id.to_string()) { why } else { format!("index/{id}: {why}") };
            eprintln!("warning: {why}; its entries are not used (run `cairn check`, then `cairn repair index`)");
        }
        Ok(repo)
    }

    /// Opens without warning about damaged index objects (for the commands
    /// that report them themselves: check, repair).
    pub fn open_quietly(&self) -> Result<Repository> {
        let backend = self.backend(false)?;
        let pw = self.password("enter password for repository: ")?;
        let mut repo = Repository::open(backend, &pw, self.cache_mode())?;
        repo.set_warn(std::sync::Arc::new(|m| eprintln!("warning: {m}")));
        Ok(repo)
    }

    /// Takes a lock, waiting up to `--retry-lock` for a conflicting one.
    /// The index is read again once the lock is stored: what this process
    /// then reuses or reads was indexed before its lock existed, which is
    /// what prune's two phases rely on (format-spec/10-write-order.md,
    /// rule 11; the open read it before the lock).
    pub(crate) fn lock(&self, repo: &Repository, kind: LockKind, op: &str) -> Result<LockGuard> {
        let guard = repo.lock_retrying(kind, op, self.retry_lock.unwrap_or_default())?;
        cairn::steps::note(|| format!("locked {kind:?} for {op}"));
        repo.sync_cache()?;
        Ok(guard)
    }

    /// The shared lock a reading command holds (none with `--no-lock`):
    /// prune then marks beside it but deletes nothing until it is gone, so
    /// a restore, dump or mount never finds its data moved away.
    pub(crate) fn read_lock(&self, repo: &Repository, op: &str) -> Result<Option<LockGuard>> {
        if self.no_lock {
            return Ok(None);
        }
        let guard = self.lock(repo, LockKind::Shared, op)?;
        cairn::steps::reached("read:locked");
        Ok(Some(guard))
    }

    /// Refuses `--no-lock` for a command that writes or deletes.
    pub(crate) fn needs_lock(&self, command: &str) -> Result<()> {
        if self.no_lock {
            return Err(Error::invalid(format!("--no-lock is only for commands that read; {command} writes")));
        }
        Ok(())
    }

    pub(crate) fn report_stats(&self, repo: &Repository) {
        if self.verbose {
            eprintln!("{}", repo.backend.stats.summary());
        }
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let usage_error = |e: clap::Error, argv: &[std::ffi::OsString], prefix: &str| -> i32 {
        // --help and --version.
        if !e.use_stderr() {
            let _ = e.print();
            return 0;
        }
        let args: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let msg = usage::short_error(&e.render().to_string(), &args);
        match msg.strip_prefix("error: ") {
            Some(rest) if !prefix.is_empty() => eprintln!("error: {prefix}{rest}"),
            _ => eprintln!("{prefix}{msg}"),
        }
        cairn::error::EXIT_USAGE
    };
    let matches = match Cli::command().try_get_matches_from(&argv) {
        Ok(m) => m,
        Err(e) => return usage_error(e, &argv, ""),
    };
    // A config file (--config, -P): its flags where the command line and
    // the environment give none, then the command line parsed again.
    let job = match config::named(&matches) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {e}");
            return e.kind().exit_code();
        }
    };
    let parsed = match &job {
        None => Cli::from_arg_matches(&matches),
        Some(cfg) => {
            let argv2 = match config::augment(&argv, &matches, cfg) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("error: {e}");
                    return e.kind().exit_code();
                }
            };
            match Cli::command().try_get_matches_from(&argv2) {
                Ok(m) => Cli::from_arg_matches(&m),
                Err(e) => return usage_error(e, &argv2, &format!("config {}: ", cfg.path.display())),
            }
        }
    };
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => return usage_error(e, &argv, ""),
    };
    match commands::run(&cli, job.as_ref()) {
        Ok(code) => code,
        Err(e) if e.is_broken_pipe() => crate::EXIT_BROKEN_PIPE,
        Err(e) => {
            cairn::interrupt::yield_to_signal();
            eprintln!("error: {e}");
            e.kind().exit_code()
        }
    }
}

/// A wait such as `90s`, `10m`, `2h` or `1h30m`.
pub(crate) fn parse_wait(s: &str) -> std::result::Result<std::time::Duration, String> {
    let bad = || format!("invalid duration {s:?}: use a number with s, m or h, such as 30s, 10m or 2h");
    let (mut total, mut num) = (0u64, String::new());
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = total.checked_add(n.checked_mul(unit).ok_or_else(bad)?).ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() || s.trim().is_empty() {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs(total))
}
