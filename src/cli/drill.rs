//! `cairn drill`: restore tests of the config's sources (src/ops/drill).

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use cairn::job::config::JobConfig;
use cairn::job::state;
use cairn::ops::drill::{self, DrillOptions};
use cairn::{Error, Result};

use super::Global;

#[derive(Args)]
pub struct DrillArgs {
    /// Only the sources with these names (may repeat)
    #[arg(long = "source", value_name = "NAME")]
    pub sources: Vec<String>,
    /// Files of each tree snapshot compared with the live source (default: [drill] sample-files, else 20)
    #[arg(long, value_name = "N")]
    pub sample: Option<usize>,
    /// Where scratch directories are made (default: $TMPDIR or /tmp)
    #[arg(long, value_name = "DIR")]
    pub scratch: Option<PathBuf>,
    /// Print the result as one JSON object
    #[arg(long)]
    pub json: bool,
}

pub fn drill(g: &Global, a: &DrillArgs, job: Option<&JobConfig>) -> Result<i32> {
    let job = job.ok_or_else(|| {
        Error::invalid(
            "`cairn drill` needs a config file: --config FILE, -P NAME or CAIRN_CONFIG (its sources are drilled)",
        )
    })?;
    for n in &a.sources {
        if !job.sources.iter().any(|s| &s.name == n) {
            let names: Vec<&str> = job.sources.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::invalid(format!(
                "no source named {n:?} in {} (sources: {})",
                job.path.display(),
                names.join(", ")
            )));
        }
    }
    let started = chrono::Utc::now();
    let t0 = Instant::now();
    let repo = g.open()?;
    // A shared lock, as restore's: a prune beside defers its deletions.
    let _lock = g.read_lock(&repo, "drill")?;
    let snaps = repo.snapshots()?;
    let opts = DrillOptions {
        scratch: a.scratch.clone().unwrap_or_else(std::env::temp_dir),
        sample: a.sample.or(job.drill.sample_files).unwrap_or(20),
        config: &job.drill,
    };
    let mut results = Vec::new();
    for s in job.sources.iter().filter(|s| a.sources.is_empty() || a.sources.contains(&s.name)) {
        let d = drill::drill_source(&repo, &snaps, &job.source_host(s), s, &opts);
        if !a.json {
            let snap = d.snapshot.as_deref().map(|i| &i[..8]).unwrap_or("-");
            println!("{}: {} (snapshot {snap}, {:.1}s)", d.name, if d.success { "ok" } else { "FAILED" }, d.seconds);
            for c in &d.checks {
                println!("  {c}");
            }
            for p in &d.problems {
                println!("  FAILED: {p}");
            }
        }
        results.push(d);
    }
    let ok = results.iter().all(|d| d.success);
    let st = state::DrillState {
        started,
        duration_seconds: t0.elapsed().as_secs_f64(),
        success: ok,
        sources: results
            .iter()
            .map(|d| state::DrillSourceState {
                name: d.name.clone(),
                success: d.success,
                snapshot: d.snapshot.clone(),
                problems: d.problems.clone(),
            })
            .collect(),
    };
    if let Some(p) = job.monitor.state_file.clone().or_else(|| state::default_path(&job.path)) {
        if let Err(e) = state::write(&state::drill_path(&p), &st) {
            eprintln!("warning: {e}");
        }
    }
    if let Some(w) = super::status::write_job_metrics(job, Some(&repo), None, Some(&st)) {
        eprintln!("warning: {w}");
    }
    if a.json {
        let v = serde_json::json!({
            "message_type": "drill",
            "success": ok,
            "started": started.to_rfc3339(),
            "duration_seconds": st.duration_seconds,
            "sources": results,
        });
        println!("{v}");
    } else {
        println!(
            "drill {}: {} of {} source(s) passed",
            if ok { "passed" } else { "FAILED" },
            results.iter().filter(|d| d.success).count(),
            results.len()
        );
    }
    Ok(if ok { 0 } else { 1 })
}
