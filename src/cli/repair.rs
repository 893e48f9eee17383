//! `cairn repair index|snapshots`.

use clap::{Args, Subcommand};

use cairn::format::lock::LockKind;
use cairn::ops::repair::{index, snapshots};
use cairn::{Error, Result};

use super::{output, Global};

#[derive(Args)]
pub struct RepairArgs {
    #[command(subcommand)]
    pub what: RepairCmd,
}

#[derive(Subcommand)]
pub enum RepairCmd {
    /// Rebuild the index from the packs; salvage damaged packs blob by blob
    Index(IndexArgs),
    /// Rewrite snapshots without the files whose data is lost
    Snapshots(SnapshotsArgs),
}

#[derive(Args)]
pub struct IndexArgs {
    /// Read every pack whole (not only its header): packs that do not match
    /// their name, or hold a blob that does not authenticate, are salvaged
    #[arg(long)]
    pub read_data: bool,
    /// Show what would be done, and change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print the plan (and the result) as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct SnapshotsArgs {
    /// Delete each original snapshot once its replacement is stored
    #[arg(long)]
    pub forget: bool,
    /// Show what would be done, and change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print the plan (and the result) as JSON
    #[arg(long)]
    pub json: bool,
}

fn json(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::invalid(e.to_string()))
}

pub fn repair(g: &Global, a: &RepairArgs) -> Result<i32> {
    g.needs_lock("repair")?;
    match &a.what {
        RepairCmd::Index(a) => repair_index(g, a),
        RepairCmd::Snapshots(a) => repair_snapshots(g, a),
    }
}

fn repair_index(g: &Global, a: &IndexArgs) -> Result<i32> {
    let repo = g.open_quietly()?;
    let _lock = if a.dry_run { None } else { Some(g.lock(&repo, LockKind::Exclusive, "repair index")?) };
    cairn::steps::reached("repair:locked");
    let plan = index::plan(&repo, a.read_data)?;
    let say = !a.json && !g.quiet;
    if !a.json {
        for (id, why) in &plan.damaged_indexes {
            println!("damaged index/{id}: {why}");
        }
        for id in &plan.missing {
            println!("missing pack {id}: the index names it; its entries are dropped");
        }
        for id in &plan.unindexed {
            println!("unindexed pack {id}: indexed again");
        }
        for d in &plan.damaged {
            println!(
                "damaged pack {} ({}): {}; salvaging its blobs, then deleting it",
                d.id,
                output::bytes(d.size),
                d.reason
            );
        }
        if say {
            println!(
                "{} packs with {} blobs read {}; {} old index object(s) to replace",
                plan.good_packs,
                plan.blobs,
                if plan.read_data { "whole" } else { "by header" },
                plan.old_indexes.len()
            );
        }
    }
    if a.dry_run || plan.is_clean() {
        if a.json {
            println!("{}", json(&serde_json::json!({ "dry_run": a.dry_run, "plan": plan }))?);
        } else if say {
            println!(
                "{}",
                if plan.is_clean() { "the index is sound: nothing to do" } else { "dry run: nothing changed" }
            );
        }
        return Ok(0);
    }
    let report = index::run(&repo, &plan)?;
    if a.json {
        println!("{}", json(&serde_json::json!({ "plan": plan, "report": report }))?);
    } else if say {
        println!(
            "wrote {} index object(s); salvaged {} blob(s) ({} already held elsewhere) into {} new pack(s); deleted {} damaged pack(s) and {} old index object(s)",
            report.indexes_written,
            report.salvaged_blobs,
            report.salvaged_duplicates,
            report.packs_written,
            report.packs_deleted,
            report.indexes_deleted
        );
        if report.lost_bytes > 0 {
            println!("{} of damaged packs could not be recovered", output::bytes(report.lost_bytes));
        }
        if !plan.damaged.is_empty() || !plan.missing.is_empty() {
            println!("next: `cairn repair snapshots` to rewrite the snapshots that used lost data");
        }
    }
    g.report_stats(&repo);
    Ok(0)
}

fn repair_snapshots(g: &Global, a: &SnapshotsArgs) -> Result<i32> {
    let repo = g.open_quietly()?;
    let _lock = if a.dry_run { None } else { Some(g.lock(&repo, LockKind::Exclusive, "repair snapshots")?) };
    cairn::steps::reached("repair:locked");
    let plan = snapshots::plan(&repo, a.forget)?;
    let say = !a.json && !g.quiet;
    if !a.json {
        for id in &plan.put_back {
            println!(
                "snapshot {}: the object is damaged; putting back the verified copy from the local cache",
                id.short()
            );
        }
        if !plan.trees_from_cache.is_empty() {
            println!(
                "{} tree(s) that the index lacks are in the local cache, verified against their ids: storing them again",
                plan.trees_from_cache.len()
            );
        }
        for (id, why) in &plan.unreadable {
            if a.forget {
                println!("snapshot {}: {why}; no verified copy exists: deleting it (--forget)", id.short());
            } else {
                println!("snapshot {}: {why}; no verified copy exists, left as it is", id.short());
            }
        }
        for (old, new) in &plan.already_replaced {
            println!(
                "snapshot {}: already replaced by {}{}",
                old.short(),
                new.short(),
                if a.forget { "; deleting the original" } else { "" }
            );
        }
        for f in &plan.rewrite {
            println!(
                "snapshot {} ({}, {}): {} path(s) lost",
                f.id.short(),
                f.snapshot.time.format("%Y-%m-%d %H:%M:%S"),
                f.snapshot.hostname,
                f.dropped.len()
            );
            for d in &f.dropped {
                println!("  drop {}: {}", d.path, d.reason);
            }
        }
        if say {
            println!("{} snapshot(s) intact, {} to rewrite", plan.intact, plan.rewrite.len());
        }
    }
    if a.dry_run {
        if a.json {
            println!("{}", json(&serde_json::json!({ "dry_run": true, "plan": plan }))?);
        } else if say {
            println!("dry run: nothing changed");
        }
        return Ok(0);
    }
    let report = snapshots::run(&repo, &plan)?;
    if a.json {
        println!("{}", json(&serde_json::json!({ "plan": plan, "report": report }))?);
    } else if say {
        for (old, new) in &report.rewritten {
            println!(
                "snapshot {} rewritten as {} (tagged {}){}",
                old.short(),
                new.short(),
                snapshots::REPAIRED_TAG,
                if a.forget { "; original deleted" } else { "" }
            );
        }
        if !report.rewritten.is_empty() && !a.forget {
            println!("the originals are kept: `cairn repair snapshots --forget` deletes them once replaced");
        }
    }
    g.report_stats(&repo);
    if plan.unreadable.is_empty() || a.forget {
        Ok(0)
    } else {
        Err(Error::corrupt(format!(
            "{} snapshot object(s) are damaged and have no verified copy; `cairn repair snapshots --forget` (or `cairn forget ID`) removes them",
            plan.unreadable.len()
        )))
    }
}
