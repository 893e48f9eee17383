//! `find`, `diff`, `stats` and `tag`: looking across snapshots, and
//! changing their tags.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::commands::FilterArgs;
use super::output::bytes;
use super::Global;
use cairn::format::lock::LockKind;
use cairn::ops::diff::{self, Change};
use cairn::ops::find::{self, FindOptions, Matcher, SnapshotHits};
use cairn::ops::snapshots;
use cairn::ops::stats::{self, Mode};
use cairn::ops::tag::{self, TagChange};
use cairn::{Error, Result};

#[derive(Args)]
pub struct FindArgs {
    /// Patterns: without `/` they match a name, with `/` the whole path (`*`, `?`, `**`, `[...]`)
    #[arg(required = true, value_name = "PATTERN")]
    pub patterns: Vec<String>,
    /// Search only this snapshot (id, unique prefix or "latest"; may repeat)
    #[arg(short, long = "snapshot", value_name = "ID")]
    pub snapshots: Vec<String>,
    /// Only entries modified at or before TIME (YYYY-MM-DD, "YYYY-MM-DD HH:MM[:SS]" local time, or RFC 3339)
    #[arg(short = 'N', long, value_name = "TIME")]
    pub newest: Option<String>,
    /// Only entries modified at or after TIME
    #[arg(short = 'O', long, value_name = "TIME")]
    pub oldest: Option<String>,
    /// Match patterns regardless of case
    #[arg(short, long)]
    pub ignore_case: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print one JSON document: [{snapshot, hits, matches}]
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DiffArgs {
    /// The older snapshot: id, unique prefix or "latest", optionally SNAPSHOT:PATH
    #[arg(value_name = "SNAPSHOT1")]
    pub first: String,
    /// The newer snapshot, optionally SNAPSHOT:PATH
    #[arg(value_name = "SNAPSHOT2")]
    pub second: String,
    /// Compare only this path of both snapshots
    pub path: Option<PathBuf>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print one JSON document: {changes, statistics}
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct StatsArgs {
    /// Snapshots (ids, unique prefixes or "latest"); default: all that match the filters
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// restore-size (what a restore writes), raw-data (distinct blobs, dedup and compression), files-by-contents (or files)
    #[arg(long, value_name = "MODE", default_value = "restore-size", value_parser = mode)]
    pub mode: Mode,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct TagArgs {
    /// Snapshots to change (ids, unique prefixes or "latest"); else those the filters select
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Add tags (may repeat; commas separate several)
    #[arg(long, value_name = "TAGS")]
    pub add: Vec<String>,
    /// Remove tags (may repeat; commas separate several)
    #[arg(long, value_name = "TAGS")]
    pub remove: Vec<String>,
    /// Replace all tags with these (--set "" removes them all)
    #[arg(long, value_name = "TAGS")]
    pub set: Vec<String>,
    /// Change every snapshot (needed when no snapshot or filter is given)
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

fn mode(s: &str) -> std::result::Result<Mode, String> {
    s.parse::<Mode>().map_err(|e| e.message().to_string())
}

fn json_string(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::invalid(e.to_string()))
}

fn stdout_err(e: std::io::Error) -> Error {
    Error::io("stdout", e)
}

/// `--newest`/`--oldest`: RFC 3339, `YYYY-MM-DD[ HH:MM[:SS]]` (local time;
/// a date alone is its midnight, as in restic). Nanoseconds since the epoch.
fn parse_time(flag: &str, s: &str) -> Result<i64> {
    let bad = || Error::invalid(format!("{flag} {s:?}: use YYYY-MM-DD, \"YYYY-MM-DD HH:MM[:SS]\" or RFC 3339"));
    let t = if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        Some(t)
    } else {
        let local = |t: chrono::NaiveDateTime| t.and_local_timezone(chrono::Local).earliest().map(|t| t.fixed_offset());
        ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
            .iter()
            .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
            .or_else(|| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))
            .and_then(local)
    };
    t.and_then(|t| t.timestamp_nanos_opt()).ok_or_else(bad)
}

/// Local `YYYY-MM-DD HH:MM:SS` of nanoseconds since the epoch.
fn local_time(ns: i64) -> String {
    chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), 0)
        .map(|t| t.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "?".into())
}

pub fn find(g: &Global, a: &FindArgs) -> Result<i32> {
    let opts = FindOptions {
        patterns: a.patterns.clone(),
        ignore_case: a.ignore_case,
        newest: a.newest.as_deref().map(|s| parse_time("--newest", s)).transpose()?,
        oldest: a.oldest.as_deref().map(|s| parse_time("--oldest", s)).transpose()?,
    };
    let matcher = Matcher::new(&opts)?;
    let repo = g.open()?;
    let _lock = g.read_lock(&repo, "find")?;
    let snaps = snapshots::select(&repo, &a.snapshots, &a.filter.filter())?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut all: Vec<SnapshotHits> = Vec::new();
    let mut first = true;
    let stats = find::find(&repo, &snaps, &matcher, &mut |id, snap, hits| {
        if a.json {
            all.push(hits);
            return Ok(());
        }
        if !first {
            writeln!(out).map_err(stdout_err)?;
        }
        first = false;
        let when = snap.time.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S");
        writeln!(out, "Found matching entries in snapshot {} from {when}", id.short()).map_err(stdout_err)?;
        for h in &hits.matches {
            let user = if h.user.is_empty() { h.uid.to_string() } else { h.user.clone() };
            let group = if h.group.is_empty() { h.gid.to_string() } else { h.group.clone() };
            let target = h.linktarget.as_deref().map(|t| format!(" -> {t}")).unwrap_or_default();
            writeln!(
                out,
                "{} {user:>8} {group:>8} {:>12} {} {}{target}",
                h.permissions,
                h.size,
                local_time(h.mtime_ns),
                h.path
            )
            .map_err(stdout_err)?;
        }
        Ok(())
    })?;
    if a.json {
        writeln!(out, "{}", json_string(&all)?).map_err(stdout_err)?;
    }
    out.flush().map_err(stdout_err)?;
    if !a.json && !g.quiet && stats.hits == 0 {
        eprintln!("no matching entries in {} snapshot(s)", stats.snapshots);
    }
    if g.verbose {
        eprintln!("searched {} snapshot(s), read {} tree(s)", stats.snapshots, stats.trees_loaded);
    }
    g.report_stats(&repo);
    Ok(0)
}

pub fn diff(g: &Global, a: &DiffArgs) -> Result<i32> {
    let (s1, p1) = diff::split_spec(&a.first);
    let (s2, p2) = diff::split_spec(&a.second);
    if a.path.is_some() && (p1.is_some() || p2.is_some()) {
        return Err(Error::invalid("give the path either as PATH or as SNAPSHOT:PATH, not both"));
    }
    // A path given once applies to both snapshots.
    let common = a.path.clone().or_else(|| if p1.is_some() != p2.is_some() { p1.clone().or(p2.clone()) } else { None });
    let abs = |p: Option<PathBuf>| Path::new("/").join(p.unwrap_or_else(|| PathBuf::from("/")));
    let (path1, path2) = (abs(p1.or(common.clone())), abs(p2.or(common)));
    let repo = g.open()?;
    let _lock = g.read_lock(&repo, "diff")?;
    let filter = a.filter.filter();
    let (id1, snap1) = snapshots::find(&repo, s1, &filter)?;
    let (id2, snap2) = snapshots::find(&repo, s2, &filter)?;
    if !snapshots::has_path(&repo, &snap1, &path1)? && !snapshots::has_path(&repo, &snap2, &path2)? {
        let (l1, l2) = (snapshots::label(&id1, &snap1), snapshots::label(&id2, &snap2));
        return Err(Error::not_found(if path1 == path2 {
            format!("{} is in neither snapshot {l1} nor {l2}", path1.display())
        } else {
            format!("{} is not in snapshot {l1}, nor {} in {l2}", path1.display(), path2.display())
        }));
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if !a.json && !g.quiet {
        writeln!(out, "comparing snapshot {} to {}:\n", id1.short(), id2.short()).map_err(stdout_err)?;
    }
    let mut changes: Vec<Change> = Vec::new();
    let st = diff::diff(&repo, snap1.tree, &path1, snap2.tree, &path2, &mut |c| {
        if a.json {
            changes.push(c);
            Ok(())
        } else {
            writeln!(out, "{:<5}{}", c.modifier.symbol(), c.path).map_err(stdout_err)
        }
    })?;
    if a.json {
        let v = json!({
            "source_snapshot": id1,
            "target_snapshot": id2,
            "changes": changes,
            "statistics": st,
        });
        writeln!(out, "{v}").map_err(stdout_err)?;
    } else if !g.quiet {
        let (n, r) = (&st.added, &st.removed);
        let lines = [
            String::new(),
            format!("Files:       {:>5} new, {:>5} removed, {:>5} changed", n.files, r.files, st.changed_files),
            format!("Dirs:        {:>5} new, {:>5} removed", n.dirs, r.dirs),
            format!("Others:      {:>5} new, {:>5} removed", n.others, r.others),
            format!("Metadata:    {:>5} changed, {:>5} changed type", st.metadata_changed, st.type_changed),
            format!("Data Blobs:  {:>5} new, {:>5} removed", n.data_blobs, r.data_blobs),
            format!("Tree Blobs:  {:>5} new, {:>5} removed", n.tree_blobs, r.tree_blobs),
            format!("  Added:   {}", bytes(n.bytes)),
            format!("  Removed: {}", bytes(r.bytes)),
        ];
        for l in lines {
            writeln!(out, "{l}").map_err(stdout_err)?;
        }
    }
    out.flush().map_err(stdout_err)?;
    if g.verbose {
        eprintln!("read {} tree(s)", st.trees_loaded);
    }
    g.report_stats(&repo);
    Ok(0)
}

fn ratio(r: Option<f64>) -> String {
    r.map(|x| format!("{x:.2}x")).unwrap_or_else(|| "-".into())
}

pub fn stats(g: &Global, a: &StatsArgs) -> Result<i32> {
    let repo = g.open()?;
    let _lock = g.read_lock(&repo, "stats")?;
    let snaps = snapshots::select(&repo, &a.snapshots, &a.filter.filter())?;
    let scratch = repo.cache.path().and_then(|p| p.parent()).map(std::path::Path::to_path_buf);
    let r = stats::stats(&repo, &snaps, a.mode, scratch.as_deref())?;
    if let Some(raw) = r.raw.as_ref().filter(|raw| raw.missing_blobs > 0) {
        eprintln!("warning: {} referenced blob(s) are not in the index (run `cairn check`)", raw.missing_blobs);
    }
    if a.json {
        println!("{}", json_string(&r)?);
    } else {
        println!("Stats in {} mode:", r.mode.name());
        let row = |k: &str, v: String| println!("{k:>24}:  {v}");
        row("Snapshots processed", r.snapshots_count.to_string());
        match &r.raw {
            None => {
                let what = if a.mode == Mode::FilesByContents { "Distinct File Contents" } else { "Total File Count" };
                row(what, r.total_file_count.to_string());
                row("Total Size", bytes(r.total_size));
            }
            Some(raw) => {
                row("Total File Count", r.total_file_count.to_string());
                row("Restore Size", bytes(raw.restore_size));
                row(
                    "Total Blob Count",
                    format!("{} ({} data, {} tree)", raw.total_blob_count, raw.data_blob_count, raw.tree_blob_count),
                );
                row("Total Uncompressed Size", bytes(raw.total_uncompressed_size));
                row("Total Size", format!("{} stored", bytes(r.total_size)));
                row("Deduplication Ratio", ratio(raw.dedup_ratio));
                row("Compression Ratio", ratio(raw.compression_ratio));
                row(
                    "Compression Space Saving",
                    raw.compression_space_saving.map(|p| format!("{p:.2}%")).unwrap_or_else(|| "-".into()),
                );
            }
        }
    }
    if g.verbose {
        eprintln!("read {} tree(s)", r.trees_loaded);
    }
    g.report_stats(&repo);
    Ok(0)
}

pub fn tag(g: &Global, a: &TagArgs) -> Result<i32> {
    let set = (!a.set.is_empty()).then_some(a.set.as_slice());
    let change = TagChange::new(set, &a.add, &a.remove)?;
    let filter = a.filter.filter();
    let filtered = !(filter.hosts.is_empty() && filter.tags.is_empty() && filter.paths.is_empty());
    if a.all && (!a.snapshots.is_empty() || filtered) {
        return Err(Error::invalid("--all changes every snapshot: give it without snapshot ids or filters"));
    }
    if !a.all && a.snapshots.is_empty() && !filtered {
        return Err(Error::invalid(
            "give snapshot ids or filters (--host, --tag, --path), or --all to change every snapshot",
        ));
    }
    let repo = g.open()?;
    g.needs_lock("tag")?;
    let lock = g.lock(&repo, LockKind::Maintenance, "tag")?;
    let snaps = snapshots::select(&repo, &a.snapshots, &filter)?;
    let report = tag::run(&repo, &snaps, &change)?;
    drop(lock);
    if a.json {
        let changes: Vec<_> = report
            .changed
            .iter()
            .map(|c| json!({"old_snapshot_id": c.old, "new_snapshot_id": c.new, "tags": c.tags}))
            .collect();
        let v = json!({
            "changed_snapshots": report.changed.len(),
            "unchanged_snapshots": report.unchanged.len(),
            "changes": changes,
        });
        println!("{v}");
    } else if !g.quiet {
        for c in &report.changed {
            let tags = if c.tags.is_empty() { "(none)".to_string() } else { c.tags.join(",") };
            println!("{} -> {}  tags: {tags}", c.old.short(), c.new.short());
        }
        let unchanged = match report.unchanged.len() {
            0 => String::new(),
            n => format!(" ({n} already as asked)"),
        };
        println!("modified {} snapshot(s){unchanged}", report.changed.len());
    }
    g.report_stats(&repo);
    Ok(0)
}
