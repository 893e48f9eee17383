//! `copy` and `init --copy-chunker-params`: the second repository they read.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::output::bytes;
use super::{password, Global};
use cairn::backend::Backend;
use cairn::format::lock::LockKind;
use cairn::ops::copy::{self, CopyMode};
use cairn::repo::Repository;
use cairn::{Error, Result};

/// The source repository, as restic's `copy` takes it.
#[derive(Args, Clone)]
pub struct FromRepoArgs {
    /// Source repository (a directory or s3:…)
    #[arg(long, env = "CAIRN_FROM_REPOSITORY", value_name = "REPO")]
    pub from_repo: Option<String>,
    /// Read the source's password from a file (first line)
    #[arg(long, env = "CAIRN_FROM_PASSWORD_FILE", value_name = "FILE")]
    pub from_password_file: Option<PathBuf>,
    /// Run a shell command and use its output as the source's password
    #[arg(long, env = "CAIRN_FROM_PASSWORD_COMMAND", value_name = "CMD")]
    pub from_password_command: Option<String>,
}

impl FromRepoArgs {
    /// Opens the source repository (its password from CAIRN_FROM_PASSWORD,
    /// the flags, or a prompt).
    pub fn open(&self, g: &Global) -> Result<Repository> {
        let loc = self
            .from_repo
            .as_deref()
            .ok_or_else(|| Error::invalid("no source repository: use --from-repo or set CAIRN_FROM_REPOSITORY"))?;
        let backend = Backend::open(loc, false, &g.backend_options()?)?;
        let pw = password::read(&password::PasswordSource {
            env_var: "CAIRN_FROM_PASSWORD",
            file: self.from_password_file.as_deref(),
            command: self.from_password_command.as_deref(),
            prompt: "enter password for the source repository: ",
        })?;
        Repository::open(backend, &pw, g.cache_mode()).map_err(|e| e.context("source repository"))
    }
}

#[derive(Args)]
pub struct CopyArgs {
    /// Snapshots to copy (ids, unique prefixes or "latest"); default: all that match the filters
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub from: FromRepoArgs,
    #[command(flatten)]
    pub filter: super::commands::FilterArgs,
    /// Show what would be copied, and copy nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn copy(g: &Global, a: &CopyArgs) -> Result<i32> {
    g.needs_lock("copy")?;
    let src = a.from.open(g)?;
    let dst = g.open()?;
    if src.config.id == dst.config.id {
        return Err(Error::invalid("the source and the destination are the same repository"));
    }
    let src_lock = g.lock(&src, LockKind::Shared, "copy (source)")?;
    let dst_lock = g.lock(&dst, LockKind::Shared, "copy")?;
    cairn::steps::reached("copy:locked");
    let plan = copy::plan(&src, &dst, &a.filter.filter(), &a.snapshots)?;
    let say = !g.quiet && !a.json;
    if say && plan.mode == CopyMode::Rechunk && plan.to_copy().next().is_some() {
        eprintln!(
            "note: the repositories use different chunker parameters or chunk-id keys, so files are re-chunked \
             (slower; `init --copy-chunker-params --from-repo SRC` makes a destination that dedups with its source)"
        );
    }
    if say || a.dry_run {
        for item in &plan.items {
            let s = &item.snapshot;
            let what = match &item.existing {
                Some(d) => format!("already there as {}", d.short()),
                None if a.dry_run => "would copy".to_string(),
                None => "copying".to_string(),
            };
            if !a.json {
                println!(
                    "snapshot {} of {} at {} ({}): {what}",
                    item.source_id.short(),
                    s.paths.join(", "),
                    s.time.format("%Y-%m-%d %H:%M:%S"),
                    s.hostname
                );
            }
        }
    }
    if a.dry_run {
        if a.json {
            let items: Vec<_> = plan
                .items
                .iter()
                .map(|i| json!({"source": i.source_id, "existing": i.existing, "copy": i.existing.is_none()}))
                .collect();
            println!("{}", json!({"dry_run": true, "rechunk": plan.mode == CopyMode::Rechunk, "snapshots": items}));
        }
        return Ok(0);
    }
    // PostgreSQL WAL first: a base backup copied below finds its WAL there.
    let compare = plan.to_copy().filter_map(|i| i.snapshot.pg.as_ref()).flat_map(cairn::ops::pg::backup_wal).collect();
    let (wal_files, wal_bytes) = cairn::ops::pg::copy_wal(&src, &dst, &compare)?;
    if wal_files > 0 && !g.quiet && !a.json {
        println!("copied {wal_files} PostgreSQL WAL file(s) ({})", bytes(wal_bytes));
    }
    let r = copy::run(&src, &dst, &plan)?;
    if a.json {
        let copied: Vec<_> = r.copied.iter().map(|(s, d)| json!({"source": s, "copy": d})).collect();
        println!(
            "{}",
            json!({
                "copied": copied, "skipped": r.skipped, "data_blobs": r.data_blobs, "tree_blobs": r.tree_blobs,
                "bytes_sent": r.raw_sent, "packs": r.packs, "packs_verified": r.packs_verified,
                "rechunk": plan.mode == CopyMode::Rechunk,
                "wal_files": wal_files, "wal_bytes": wal_bytes,
            })
        );
    } else if !g.quiet {
        for (s, d) in &r.copied {
            println!("copied snapshot {} as {}", s.short(), d.short());
        }
        println!(
            "{} snapshot(s) copied, {} already there; {} new blobs ({}), {} pack(s) written and verified",
            r.copied.len(),
            r.skipped,
            r.data_blobs + r.tree_blobs,
            bytes(r.raw_sent),
            r.packs_verified
        );
    }
    drop((src_lock, dst_lock)); // released before the request counts, which include them
    if g.verbose {
        eprintln!("source {}", src.backend.stats.summary());
        eprintln!("destination {}", dst.backend.stats.summary());
    }
    Ok(0)
}
