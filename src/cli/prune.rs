//! `cairn prune`: reclaim the space of unused data, beside running backups.

use clap::Args;

use cairn::format::lock::LockKind;
use cairn::ops::prune::{self, MaxUnused, PruneOptions};
use cairn::repo::Repository;
use cairn::Result;

use super::output::bytes;
use super::Global;

/// `--scratch-memory`'s default (the library's DEFAULT_MEMORY), for prune
/// and check.
pub(super) const DEFAULT_SCRATCH_MEMORY: &str = "256M";

/// A `--scratch-memory` size in bytes (prune's and check's).
pub(super) fn scratch_memory(s: &str) -> Result<usize> {
    match MaxUnused::parse(s) {
        Ok(MaxUnused::Bytes(n)) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        _ => Err(cairn::Error::invalid(format!("invalid --scratch-memory {s:?}: use a size (64M, 1G)"))),
    }
}

#[derive(Args)]
pub struct PruneArgs {
    /// Unused space tolerated in partly used packs before they are
    /// repacked: a percentage of the used data (5%), a size (500M, 2G), or
    /// `unlimited` (never repack)
    #[arg(long, default_value = "5%", value_name = "LIMIT")]
    pub max_unused: String,
    /// Show what would be done; change nothing
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Print the plan and the result as JSON
    #[arg(long)]
    pub json: bool,
    /// Memory for the set of used blobs (20 bytes per blob) before it moves
    /// to a file beside the cache: a size (256M: ~13M blobs; 1G)
    #[arg(long, default_value = DEFAULT_SCRATCH_MEMORY, value_name = "SIZE")]
    pub scratch_memory: String,
}

pub fn prune(g: &Global, a: &PruneArgs) -> Result<i32> {
    g.needs_lock("prune")?;
    let repo = g.open()?;
    if let Some(doc) = run(g, &repo, a)? {
        println!("{}", to_json(&doc)?);
    }
    Ok(0)
}

/// `forget --prune`: a prune with the default settings. With `json`, its
/// document is returned (forget prints one document for both).
pub fn after_forget(g: &Global, repo: &Repository, json: bool) -> Result<Option<serde_json::Value>> {
    run(
        g,
        repo,
        &PruneArgs { max_unused: "5%".into(), dry_run: false, json, scratch_memory: DEFAULT_SCRATCH_MEMORY.into() },
    )
}

fn to_json(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(|e| cairn::Error::invalid(e.to_string()))
}

/// Runs prune; prints the text output, or returns the JSON document.
fn run(g: &Global, repo: &Repository, a: &PruneArgs) -> Result<Option<serde_json::Value>> {
    let opts = PruneOptions {
        max_unused: MaxUnused::parse(&a.max_unused)?,
        scratch_dir: repo.cache.path().and_then(|p| p.parent()).map(Into::into),
        scratch_memory: scratch_memory(&a.scratch_memory)?,
    };
    let lock = if a.dry_run { None } else { Some(g.lock(repo, LockKind::Maintenance, "prune")?) };
    let plan = prune::plan(repo, &opts)?;
    let say = !a.json && !g.quiet;
    let t = &plan.totals;
    if say {
        println!("{} snapshot(s); {} pack(s) read from the index", plan.snapshots, plan.packs.len());
        let line = |what: &str, (n, b): (u64, u64)| {
            if n > 0 {
                println!("  {what:<38} {n:>7} pack(s)  {:>12}", bytes(b));
            }
        };
        line("keep", t.keep);
        line("repack (partly used)", t.repack);
        line("mark for deletion (unused)", t.mark);
        line("marked earlier, still waiting", t.pending);
        line("marked earlier, used again: unmark", t.unmark);
        line("marked earlier, unused: delete", t.delete);
        if t.repack.0 > 0 {
            println!("  repacking writes {} again", bytes(t.repack_used_bytes));
        }
        for w in &plan.waiting_for {
            println!("  waiting for {w}");
        }
        if !plan.wal.delete.is_empty() {
            println!(
                "  PostgreSQL WAL before the oldest base backup: {} file(s), {}",
                plan.wal.delete.len(),
                bytes(plan.wal.bytes)
            );
        }
    }
    if a.dry_run {
        if a.json {
            return Ok(Some(serde_json::json!({ "dry_run": true, "plan": plan })));
        } else if say {
            let now = t.delete.1;
            let later = t.mark.1 + t.repack.1 - t.repack_used_bytes.min(t.repack.1);
            println!("dry run: would free {} now and about {} more once the marks are settled (at once if no backup is running)", bytes(now), bytes(later));
        }
        return Ok(None);
    }
    let session = lock.as_ref().map(|l| l.session()).unwrap_or_default();
    let plan_json = if a.json {
        Some(serde_json::to_value(&plan).map_err(|e| cairn::Error::invalid(e.to_string()))?)
    } else {
        None
    };
    let report = prune::run(repo, plan, session)?;
    drop(lock);
    if !a.json && say {
        if report.repacked_packs > 0 {
            println!(
                "repacked {} blob(s) from {} pack(s) into {} new pack(s)",
                report.repacked_blobs, report.repacked_packs, report.new_packs
            );
        }
        println!(
            "deleted {} pack(s), freed {}; index: {} object(s) written, {} deleted",
            report.packs_deleted,
            bytes(report.bytes_freed),
            report.index_objects_written,
            report.index_objects_deleted
        );
        if report.wal_deleted > 0 {
            println!(
                "deleted {} PostgreSQL WAL file(s) older than every kept base backup, freed {}",
                report.wal_deleted,
                bytes(report.wal_bytes_freed)
            );
        }
        if report.staging_removed > 0 {
            println!(
                "removed {} staging file(s) of interrupted writes ({})",
                report.staging_removed,
                bytes(report.staging_bytes_removed)
            );
        }
        if report.packs_unmarked > 0 {
            println!("{} marked pack(s) are used again and were kept", report.packs_unmarked);
        }
        if report.packs_pending > 0 {
            println!(
                "{} pack(s) ({}) stay marked until these writers finish; the next prune deletes them:",
                report.packs_pending,
                bytes(report.bytes_pending)
            );
            for w in &report.waiting_for {
                println!("  {w}");
            }
        }
    }
    if g.verbose {
        let t: Vec<String> = report.timings.iter().map(|(what, s)| format!("{what} {s:.2}s")).collect();
        eprintln!("prune phases: {}", t.join(", "));
    }
    g.report_stats(repo);
    Ok(plan_json.map(|plan| serde_json::json!({ "dry_run": false, "plan": plan, "report": report })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_memory_default_is_the_librarys() {
        let lib = cairn::index::scratch::DEFAULT_MEMORY as u64;
        assert_eq!(MaxUnused::parse(DEFAULT_SCRATCH_MEMORY).unwrap(), MaxUnused::Bytes(lib));
    }
}
