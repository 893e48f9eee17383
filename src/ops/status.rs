//! `status`: is the newest backup of each source recent and whole? A pure
//! evaluation of a snapshot list at a given "now" ([`evaluate`]), in the
//! Nagios/Icinga plugin convention: a state per source and for the whole
//! ([`State`], exit codes 0–3), a first line with performance data
//! ([`StatusReport::first_line`]) and one line per source after it
//! ([`StatusReport::long_lines`]).
//!
//! Without a configuration a *source* is a group of snapshots with the same
//! host and paths (what `forget --group-by host,paths` groups, through
//! [`GroupBy::key`]); `cairn run` names its sources itself and builds each
//! with [`evaluate_source`].
//!
//! The rules, per source:
//! - the newest snapshot older than `warn` is WARNING, older than `crit`
//!   CRITICAL (a snapshot dated in the future counts as age 0);
//! - the newest snapshot being partial is at least WARNING;
//! - [`SourceStatus::raise`] adds anything else known (a failed last run).
//!
//! The whole: the worst source; no snapshot at all (under the filter) is
//! CRITICAL; a WAL archive with a gap, or whose newest WAL is older than
//! `warn`, is at least WARNING ([`StatusReport::add_wal`]).

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::forget::GroupBy;
use super::pg::status::SystemStatus;
use super::snapshots::SnapshotFilter;
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;

/// A Nagios plugin state, in order of badness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl State {
    /// The plugin exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub fn exit_code(self) -> i32 {
        match self {
            State::Ok => 0,
            State::Warning => 1,
            State::Critical => 2,
            State::Unknown => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
            State::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Ages above which the newest snapshot of a source is WARNING, CRITICAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub warn: Duration,
    pub crit: Duration,
}

impl Default for Thresholds {
    /// 25 hours and 30 hours: a daily backup may run an hour late.
    fn default() -> Self {
        Self { warn: Duration::from_secs(25 * 3600), crit: Duration::from_secs(30 * 3600) }
    }
}

/// The verdict on one source.
#[derive(Clone, Debug, Serialize)]
pub struct SourceStatus {
    /// How the output and the metrics name the source: `host:/path,/path`
    /// (or the name a configuration gives it).
    pub name: String,
    pub state: State,
    /// Why the state is not OK, one phrase each.
    pub reasons: Vec<String>,
    /// How many snapshots the source has.
    pub snapshots: usize,
    /// The newest snapshot's short id, time and age in seconds.
    pub newest: Option<String>,
    pub newest_time: Option<DateTime<Utc>>,
    pub age_seconds: Option<u64>,
    /// Whether the newest snapshot is partial.
    pub partial: bool,
    /// The time of the newest snapshot that is not partial (the last
    /// backup that saved everything).
    pub last_success: Option<DateTime<Utc>>,
    /// Sealed bytes the newest snapshot added.
    pub bytes_added: Option<u64>,
}

impl SourceStatus {
    /// Makes the state at least `state`, with a reason.
    pub fn raise(&mut self, state: State, reason: impl Into<String>) {
        self.state = self.state.max(state);
        self.reasons.push(reason.into());
    }
}

/// The verdict on a repository (or on the sources a filter picks).
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    pub state: State,
    pub now: DateTime<Utc>,
    pub warn_seconds: u64,
    pub crit_seconds: u64,
    pub sources: Vec<SourceStatus>,
    /// What is wrong beyond the sources (no snapshot at all, a WAL gap).
    pub problems: Vec<String>,
    /// One line per PostgreSQL system whose WAL archive was looked at.
    pub wal: Vec<WalStatus>,
}

/// The WAL archive verdict on one PostgreSQL system.
#[derive(Clone, Debug, Serialize)]
pub struct WalStatus {
    pub system_id: u64,
    pub state: State,
    pub lag_seconds: Option<u64>,
    pub reachable: Option<String>,
    pub problems: Vec<String>,
}

/// `3h12m`, `2d4h`, `45s`: an age in at most two units.
pub fn human_age(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h{m}m"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d{h}h"),
    }
}

/// The default name of a source: `host:/a,/b` (sorted paths).
pub fn source_name(s: &Snapshot) -> String {
    let key = GroupBy::default().key(s);
    format!("{}:{}", key.host.unwrap_or_default(), key.paths.unwrap_or_default().join(","))
}

/// The verdict on one source from its snapshots (any order).
pub fn evaluate_source(
    name: &str,
    snapshots: &[&(SnapshotId, Snapshot)],
    now: DateTime<Utc>,
    t: &Thresholds,
) -> SourceStatus {
    let newest = snapshots.iter().max_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
    let last_success = snapshots.iter().filter(|(_, s)| !s.partial).map(|(_, s)| s.time.to_utc()).max();
    let mut st = SourceStatus {
        name: name.to_string(),
        state: State::Ok,
        reasons: Vec::new(),
        snapshots: snapshots.len(),
        newest: newest.map(|(id, _)| id.short()),
        newest_time: newest.map(|(_, s)| s.time.to_utc()),
        age_seconds: None,
        partial: newest.is_some_and(|(_, s)| s.partial),
        last_success,
        bytes_added: newest.map(|(_, s)| s.summary.data_added),
    };
    let Some((_, s)) = newest else {
        st.raise(State::Critical, "no snapshot");
        return st;
    };
    let age = u64::try_from((now - s.time.to_utc()).num_seconds()).unwrap_or(0);
    st.age_seconds = Some(age);
    if age > t.crit.as_secs() {
        st.raise(
            State::Critical,
            format!("newest snapshot {} old (critical above {})", human_age(age), human_age(t.crit.as_secs())),
        );
    } else if age > t.warn.as_secs() {
        st.raise(
            State::Warning,
            format!("newest snapshot {} old (warning above {})", human_age(age), human_age(t.warn.as_secs())),
        );
    }
    if s.partial {
        let n = s.summary.errors.len();
        st.raise(
            State::Warning,
            format!("newest snapshot is partial ({n} path{} unreadable)", if n == 1 { "" } else { "s" }),
        );
    }
    st
}

/// The verdict on every source (host and paths) among the snapshots the
/// filter matches.
pub fn evaluate(
    snapshots: &[(SnapshotId, Snapshot)],
    now: DateTime<Utc>,
    thresholds: &Thresholds,
    filter: &SnapshotFilter,
) -> StatusReport {
    let mut groups: std::collections::BTreeMap<String, Vec<&(SnapshotId, Snapshot)>> = Default::default();
    for entry in snapshots.iter().filter(|(_, s)| filter.matches(s)) {
        groups.entry(source_name(&entry.1)).or_default().push(entry);
    }
    let sources = groups.iter().map(|(name, list)| evaluate_source(name, list, now, thresholds)).collect();
    let mut report = StatusReport::from_sources(sources, now, thresholds);
    if report.sources.is_empty() {
        let why = if filter.is_empty() {
            "the repository has no snapshots".to_string()
        } else {
            format!("no snapshot matches {filter}")
        };
        report.raise(State::Critical, why);
    }
    report
}

/// A source as a configuration names it: its snapshots are those of `host`
/// whose paths are exactly `paths` (what `cairn run` records for it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedSource {
    pub name: String,
    pub host: String,
    /// Sorted.
    pub paths: Vec<String>,
}

/// The verdict on the sources a configuration names, in its order; a
/// source without a snapshot is CRITICAL.
pub fn evaluate_named(
    snapshots: &[(SnapshotId, Snapshot)],
    now: DateTime<Utc>,
    thresholds: &Thresholds,
    sources: &[NamedSource],
) -> StatusReport {
    let evaluated = sources
        .iter()
        .map(|src| {
            let mine: Vec<&(SnapshotId, Snapshot)> = snapshots
                .iter()
                .filter(|(_, s)| {
                    let mut p = s.paths.clone();
                    p.sort();
                    s.hostname == src.host && p == src.paths
                })
                .collect();
            evaluate_source(&src.name, &mine, now, thresholds)
        })
        .collect();
    StatusReport::from_sources(evaluated, now, thresholds)
}

impl StatusReport {
    /// A report over sources evaluated already (`cairn run` evaluates the
    /// sources its configuration names, each with [`evaluate_source`]).
    pub fn from_sources(sources: Vec<SourceStatus>, now: DateTime<Utc>, t: &Thresholds) -> Self {
        let state = sources.iter().map(|s| s.state).max().unwrap_or(State::Ok);
        Self {
            state,
            now,
            warn_seconds: t.warn.as_secs(),
            crit_seconds: t.crit.as_secs(),
            sources,
            problems: Vec::new(),
            wal: Vec::new(),
        }
    }

    /// Makes the state at least `state`, with a problem beyond the sources.
    pub fn raise(&mut self, state: State, problem: impl Into<String>) {
        self.state = self.state.max(state);
        self.problems.push(problem.into());
    }

    /// Adds the WAL archive verdicts of `pg status`: a gap or a missing
    /// start segment is WARNING, and so is WAL that stopped arriving (the
    /// newest older than the warning threshold, or none at all).
    pub fn add_wal(&mut self, systems: &[SystemStatus]) {
        for sys in systems {
            let mut w = WalStatus {
                system_id: sys.system_id,
                state: State::Ok,
                lag_seconds: sys.lag_seconds.map(|l| u64::try_from(l).unwrap_or(0)),
                reachable: sys.reachable.clone(),
                problems: sys.problems.clone(),
            };
            match w.lag_seconds {
                Some(l) if l > self.warn_seconds => {
                    w.problems.push(format!("newest WAL arrived {} ago", human_age(l)));
                }
                None => w.problems.push("no WAL archived".into()),
                _ => {}
            }
            if !w.problems.is_empty() {
                w.state = State::Warning;
                for p in &w.problems {
                    self.raise(State::Warning, format!("PostgreSQL system {}: {p}", sys.system_id));
                }
            }
            self.wal.push(w);
        }
    }

    /// The plugin's first line: `STATE - summary | perfdata`.
    pub fn first_line(&self) -> String {
        let mut summary: Vec<String> = self.problems.clone();
        let bad: Vec<&SourceStatus> = self.sources.iter().filter(|s| s.state != State::Ok).collect();
        for s in &bad {
            summary.push(format!("{}: {}", s.name, s.reasons.join(", ")));
        }
        let ok = self.sources.len() - bad.len();
        if bad.is_empty() && !self.sources.is_empty() {
            let ages: Vec<String> = self
                .sources
                .iter()
                .map(|s| format!("{} {} ago", s.name, human_age(s.age_seconds.unwrap_or(0))))
                .collect();
            summary.push(format!("newest snapshot: {}", ages.join(", ")));
        } else if ok > 0 {
            summary.push(format!("{ok} other source{} OK", if ok == 1 { "" } else { "s" }));
        }
        let mut line = format!("{} - {}", self.state, plain(&summary.join("; ")));
        let perf = self.perfdata();
        if !perf.is_empty() {
            line.push_str(" | ");
            line.push_str(&perf);
        }
        line
    }

    /// Performance data: per source `'<name>_age'=<s>s;<warn>;<crit>;0`
    /// and `'<name>_snapshots'=<n>;;;0`, per WAL archive its lag.
    pub fn perfdata(&self) -> String {
        let mut out = Vec::new();
        for s in &self.sources {
            if let Some(age) = s.age_seconds {
                out.push(format!(
                    "{}={age}s;{};{};0",
                    perf_label(&format!("{}_age", s.name)),
                    self.warn_seconds,
                    self.crit_seconds
                ));
            }
            out.push(format!("{}={};;;0", perf_label(&format!("{}_snapshots", s.name)), s.snapshots));
        }
        for w in &self.wal {
            if let Some(l) = w.lag_seconds {
                out.push(format!(
                    "{}={l}s;{};;0",
                    perf_label(&format!("pg_{}_wal_lag", w.system_id)),
                    self.warn_seconds
                ));
            }
        }
        out.join(" ")
    }

    /// The plugin's long output: one line per source, then per WAL archive
    /// (without `|`, which would start performance data).
    pub fn long_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.sources {
            let newest = match (&s.newest, s.newest_time, s.age_seconds) {
                (Some(id), Some(t), Some(age)) => {
                    format!(", newest {id} at {} ({} ago)", t.format("%Y-%m-%d %H:%M:%S UTC"), human_age(age))
                }
                _ => String::new(),
            };
            let why = if s.reasons.is_empty() { String::new() } else { format!(": {}", s.reasons.join(", ")) };
            out.push(format!(
                "{} {}: {} snapshot{}{newest}{why}",
                s.state,
                s.name,
                s.snapshots,
                if s.snapshots == 1 { "" } else { "s" }
            ));
        }
        for w in &self.wal {
            let lag = w.lag_seconds.map(|l| format!(", newest WAL {} ago", human_age(l))).unwrap_or_default();
            let reach = w.reachable.as_ref().map(|r| format!(", restorable up to {r}")).unwrap_or_default();
            let why = if w.problems.is_empty() { String::new() } else { format!(": {}", w.problems.join(", ")) };
            out.push(format!("{} PostgreSQL system {} WAL archive{lag}{reach}{why}", w.state, w.system_id));
        }
        out.iter().map(|l| plain(l)).collect()
    }
}

/// Text for a plugin's output: no `|` (it starts performance data), no
/// line breaks.
fn plain(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c == '|' {
                '/'
            } else if c.is_control() {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// A perfdata label: in single quotes, a quote doubled; `=` and `|` (which
/// end the label and the output) and control characters become `_`.
pub fn perf_label(s: &str) -> String {
    let clean: String = s.chars().map(|c| if c == '=' || c == '|' || c.is_control() { '_' } else { c }).collect();
    format!("'{}'", clean.replace('\'', "''"))
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
