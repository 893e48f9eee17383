//! `cairn status`: a Nagios/Icinga plugin. The first line is
//! `OK|WARNING|CRITICAL|UNKNOWN - …` with performance data after `|`, one
//! line per source follows, and the exit code is the plugin's (0–3).
//! Takes no lock and reads no index: the snapshot list and the snapshot
//! objects (which the cache holds), plus the WAL listing.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use clap::Args;

use cairn::job::config::{parse_duration, JobConfig};
use cairn::job::state;
use cairn::monitor::prometheus::{self, Metrics, SourceMetrics};
use cairn::ops::pg;
use cairn::ops::status::{self, NamedSource, State, StatusReport, Thresholds};
use cairn::{Error, ErrorKind, Result};

use super::commands::FilterArgs;
use super::Global;

#[derive(Args)]
pub struct StatusArgs {
    /// WARNING when the newest snapshot of a source is older than this (e.g. 25h, 90m, 2d) [default: the
    /// config's [monitor] warn, else 25h]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub warn: Option<std::time::Duration>,
    /// CRITICAL when the newest snapshot of a source is older than this [default: [monitor] crit, else 30h]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub crit: Option<std::time::Duration>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Print the verdict as JSON (same exit codes)
    #[arg(long)]
    pub json: bool,
    /// Also write the snapshot metrics to this node_exporter textfile (merged with its other cairn samples)
    /// [default: the config's [monitor] prometheus-textfile]
    #[arg(long, value_name = "FILE")]
    pub prometheus_textfile: Option<PathBuf>,
}

/// What a run of `status` uses: the command line's, else the config
/// file's `[monitor]` section, else the defaults.
struct Settings {
    thresholds: Thresholds,
    textfile: Option<PathBuf>,
    /// The run state of the config's `cairn run`.
    run_state: Option<PathBuf>,
}

fn settings(a: &StatusArgs, job: Option<&JobConfig>) -> Result<Settings> {
    let from_config = |v: Option<&String>, key: &str| -> Result<Option<std::time::Duration>> {
        let (Some(v), Some(job)) = (v, job) else { return Ok(None) };
        parse_duration(v)
            .map(Some)
            .map_err(|e| Error::invalid(format!("config {}: [monitor] {key}: {e}", job.path.display())))
    };
    let monitor = job.map(|j| &j.monitor);
    let default = Thresholds::default();
    let warn = match a.warn {
        Some(w) => w,
        None => from_config(monitor.and_then(|m| m.warn.as_ref()), "warn")?.unwrap_or(default.warn),
    };
    let crit = match a.crit {
        Some(c) => c,
        None => from_config(monitor.and_then(|m| m.crit.as_ref()), "crit")?.unwrap_or(default.crit),
    };
    if crit < warn {
        return Err(Error::invalid(format!(
            "the critical age ({}s) must not be shorter than the warning age ({}s)",
            crit.as_secs(),
            warn.as_secs()
        )));
    }
    Ok(Settings {
        thresholds: Thresholds { warn, crit },
        textfile: a.prometheus_textfile.clone().or_else(|| monitor.and_then(|m| m.prometheus_textfile.clone())),
        run_state: job.and_then(|j| j.monitor.state_file.clone().or_else(|| state::default_path(&j.path))),
    })
}

/// Runs `status`; every failure is UNKNOWN (exit 3) with one line.
pub fn status(g: &Global, a: &StatusArgs, job: Option<&JobConfig>) -> Result<i32> {
    let state = match settings(a, job).and_then(|s| Ok((report(g, a, &s, job)?, s))) {
        Ok(((mut report, repo_id), settings)) => {
            if let Some(path) = &settings.textfile {
                if let Err(e) = prometheus::write_textfile(path, &metrics(&report, &repo_id)) {
                    // The verdict on the backups stands, and this joins it.
                    report.raise(State::Warning, format!("Prometheus textfile: {e}"));
                }
            }
            print_report(&report, a.json)?;
            report.state
        }
        Err(e) => {
            let line = format!("UNKNOWN - {e}");
            if a.json {
                let v = serde_json::json!({"state": "UNKNOWN", "problems": [e.to_string()]});
                println!("{v}");
            } else {
                println!("{}", line.replace('|', "/"));
            }
            State::Unknown
        }
    };
    Ok(state.exit_code())
}

fn print_report(r: &StatusReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r).map_err(|e| Error::invalid(e.to_string()))?);
    } else {
        println!("{}", r.first_line());
        for l in r.long_lines() {
            println!("{l}");
        }
    }
    Ok(())
}

/// Opens the repository (no index, no lock) and evaluates it; the short
/// repository id comes along for the metrics.
fn report(g: &Global, a: &StatusArgs, settings: &Settings, job: Option<&JobConfig>) -> Result<(StatusReport, String)> {
    let backend = g.backend(false)?;
    let pw = g.password("enter password for repository: ")?;
    let mut repo = cairn::repo::Repository::open_unsynced(backend, &pw, g.cache_mode())?;
    // Snapshots that cannot be read are left out of the list: a warning.
    let unreadable: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = unreadable.clone();
    repo.set_warn(Arc::new(move |m| sink.lock().unwrap_or_else(|p| p.into_inner()).push(m.to_string())));
    let snapshots = repo.snapshots()?;
    let filter = a.filter.filter();
    let now = Utc::now();
    // A config file's sources by their names, unless a filter picks others.
    let mut report = match job.filter(|j| filter.is_empty() && !j.sources.is_empty()) {
        Some(j) => status::evaluate_named(&snapshots, now, &settings.thresholds, &named_sources(j)),
        None => status::evaluate(&snapshots, now, &settings.thresholds, &filter),
    };
    for m in unreadable.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        report.raise(State::Warning, m.clone());
    }
    // The WAL archive, if any: of every system, or with a filter of the
    // systems whose base backups it matches.
    match pg::status::status(&repo) {
        Ok(mut systems) => {
            if !filter.is_empty() {
                let mine: Vec<u64> = snapshots
                    .iter()
                    .filter(|(_, s)| filter.matches(s))
                    .filter_map(|(_, s)| s.pg.as_ref().map(|p| p.system_id))
                    .collect();
                systems.retain(|s| mine.contains(&s.system_id));
            }
            report.add_wal(&systems);
        }
        Err(e) if e.kind() == ErrorKind::Transient => return Err(e),
        Err(e) => report.raise(State::Warning, format!("WAL archive: {e}")),
    }
    // The last `cairn run` and `cairn drill` of the config file, as they
    // recorded them on this machine.
    if let Some(path) = &settings.run_state {
        let ago = |t: chrono::DateTime<Utc>| status::human_age(u64::try_from((now - t).num_seconds()).unwrap_or(0));
        match state::read::<state::RunState>(path) {
            Ok(Some(r)) if !r.success => {
                let why = if r.errors.is_empty() { String::new() } else { format!(": {}", r.errors.join("; ")) };
                report.raise(State::Warning, format!("the last run ({} ago) failed{why}", ago(r.started)));
            }
            Ok(_) => {}
            Err(e) => report.raise(State::Warning, e.to_string()),
        }
        match state::read::<state::DrillState>(&state::drill_path(path)) {
            Ok(Some(d)) if !d.success => {
                let failed: Vec<&str> = d.sources.iter().filter(|s| !s.success).map(|s| s.name.as_str()).collect();
                let which = if failed.is_empty() { String::new() } else { format!(": {}", failed.join(", ")) };
                report.raise(State::Warning, format!("the last drill ({} ago) failed{which}", ago(d.started)));
            }
            Ok(_) => {}
            Err(e) => report.raise(State::Warning, e.to_string()),
        }
    }
    g.report_stats(&repo);
    Ok((report, repo.config.id.short()))
}

/// The sources of a config file: the host its backups record (the entry's
/// `host`, else `[backup]`'s, else this machine's) and the paths `cairn
/// run` gives their snapshots (as `cairn drill` finds them).
fn named_sources(job: &JobConfig) -> Vec<NamedSource> {
    job.sources
        .iter()
        .map(|s| NamedSource {
            name: s.name.clone(),
            host: job.source_host(s),
            paths: cairn::ops::drill::source_paths(&s.kind),
        })
        .collect()
}

/// Updates the config's Prometheus textfile (if it names one) after a run
/// or a drill: the state's metrics and those of the snapshot list. Returns
/// a warning when it cannot.
pub(super) fn write_job_metrics(
    job: &JobConfig,
    repo: Option<&cairn::repo::Repository>,
    run: Option<&state::RunState>,
    drill: Option<&state::DrillState>,
) -> Option<String> {
    let path = job.monitor.prometheus_textfile.as_ref()?;
    let repo_id = repo.map(|r| r.config.id.short()).unwrap_or_default();
    let mut m = Metrics::from_states(&repo_id, run, drill);
    if let Some(repo) = repo {
        let t = Thresholds::default();
        match repo.snapshots() {
            Ok(snaps) => {
                let report = status::evaluate_named(&snaps, Utc::now(), &t, &named_sources(job));
                for s in metrics(&report, &repo_id).sources {
                    match m.sources.iter_mut().find(|x| x.source == s.source) {
                        Some(x) => {
                            x.last_success = s.last_success;
                            x.snapshots = s.snapshots;
                            x.snapshot_age_seconds = s.snapshot_age_seconds;
                        }
                        None => m.sources.push(s),
                    }
                }
            }
            Err(e) => return Some(format!("Prometheus textfile {}: {e}", path.display())),
        }
    }
    prometheus::write_textfile(path, &m).err().map(|e| e.to_string())
}

/// The snapshot-derived metrics of a report.
fn metrics(r: &StatusReport, repository: &str) -> Metrics {
    Metrics {
        repository: repository.to_string(),
        sources: r
            .sources
            .iter()
            .map(|s| SourceMetrics {
                source: s.name.clone(),
                last_success: s.last_success,
                snapshots: Some(s.snapshots as u64),
                snapshot_age_seconds: s.age_seconds,
                ..Default::default()
            })
            .collect(),
    }
}
