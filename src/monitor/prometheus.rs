//! Metrics for node_exporter's textfile collector: the Prometheus text
//! exposition format, written atomically.
//!
//! Every sample has the labels `repository` (the short repository id) and
//! `source`. Names follow node_exporter's conventions: base units in the
//! name (`_seconds`, `_bytes`), Unix times as `..._timestamp_seconds`
//! gauges, no sample timestamps (the collector adds its own).
//!
//! Sharing a file: [`write_textfile`] reads the file's `cairn_` samples
//! back and replaces only those it has a value for, keyed by metric name,
//! repository and source. So `cairn status` (which knows snapshots) and
//! `cairn run` (which knows runs, checks and drills) can write one file,
//! and several repositories too; a sample nobody writes again stays as it
//! was (remove the file to start afresh). Lines that are not cairn's are
//! dropped: give other tools their own `.prom` file. Writers that overlap
//! are detected (the file was replaced since it was read) and merge again.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::job::state::{DrillState, RunState};

/// What one writer knows of one source; `None` is not written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SourceMetrics {
    pub source: String,
    /// The time of the last backup that saved everything (its snapshot's).
    pub last_success: Option<DateTime<Utc>>,
    /// When the last run started, how long it took, whether it succeeded.
    pub last_run: Option<DateTime<Utc>>,
    pub last_run_duration_seconds: Option<f64>,
    pub last_run_success: Option<bool>,
    /// Sealed bytes the last run added to the repository.
    pub bytes_added: Option<u64>,
    /// How many snapshots the source has.
    pub snapshots: Option<u64>,
    pub last_check: Option<DateTime<Utc>>,
    pub last_check_success: Option<bool>,
    /// The last restore drill (a test restore).
    pub last_drill: Option<DateTime<Utc>>,
    pub last_drill_success: Option<bool>,
    /// Age of the newest snapshot when written.
    pub snapshot_age_seconds: Option<u64>,
}

/// The metrics of one repository.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metrics {
    /// The short repository id (`cairn cat config`'s id, 8 hex digits).
    pub repository: String,
    pub sources: Vec<SourceMetrics>,
}

impl Metrics {
    /// What `cairn run` and `cairn drill` recorded (their states), as
    /// metrics of the sources they name: per source the run's start, the
    /// source's backup time, success and bytes added; the run's check
    /// (which covers the repository, so every source of the run); the
    /// drill's start and the source's result. The snapshot metrics (count,
    /// age, last success) are `cairn status`'s.
    pub fn from_states(repository: &str, run: Option<&RunState>, drill: Option<&DrillState>) -> Metrics {
        let mut sources: Vec<SourceMetrics> = Vec::new();
        let mut entry = |name: &str| -> usize {
            match sources.iter().position(|s| s.source == name) {
                Some(i) => i,
                None => {
                    sources.push(SourceMetrics { source: name.to_string(), ..Default::default() });
                    sources.len() - 1
                }
            }
        };
        let mut at = Vec::new();
        if let Some(r) = run {
            for s in &r.sources {
                at.push((entry(&s.name), s));
            }
        }
        let mut drilled = Vec::new();
        if let Some(d) = drill {
            for s in &d.sources {
                drilled.push((entry(&s.name), s.success));
            }
        }
        if let Some(r) = run {
            for (i, s) in at {
                let m = &mut sources[i];
                m.last_run = Some(r.started);
                m.last_run_duration_seconds = Some(s.duration_seconds);
                m.last_run_success = Some(s.success);
                m.bytes_added = s.success.then_some(s.bytes_added);
                if let Some(ok) = r.check_success {
                    m.last_check = Some(r.started);
                    m.last_check_success = Some(ok);
                }
            }
        }
        if let Some(d) = drill {
            for (i, ok) in drilled {
                sources[i].last_drill = Some(d.started);
                sources[i].last_drill_success = Some(ok);
            }
        }
        Metrics { repository: repository.to_string(), sources }
    }
}

/// Name, help text of every metric, in output order.
pub const METRICS: &[(&str, &str)] = &[
    ("cairn_last_success_timestamp_seconds", "Unix time of the last backup that saved everything (its snapshot time)."),
    ("cairn_last_run_timestamp_seconds", "Unix time the last run started."),
    ("cairn_last_run_duration_seconds", "How long the last run took."),
    ("cairn_last_run_success", "Whether the last run succeeded (1) or failed (0)."),
    ("cairn_bytes_added_bytes", "Bytes the last run added to the repository (compressed, encrypted)."),
    ("cairn_snapshots", "Number of snapshots of the source."),
    ("cairn_last_check_timestamp_seconds", "Unix time of the last repository check."),
    ("cairn_last_check_success", "Whether the last check found the repository sound (1) or not (0)."),
    ("cairn_last_drill_timestamp_seconds", "Unix time of the last restore drill."),
    ("cairn_last_drill_success", "Whether the last restore drill succeeded (1) or not (0)."),
    ("cairn_snapshot_age_seconds", "Age of the newest snapshot when the file was written."),
];

fn time(t: Option<DateTime<Utc>>) -> Option<f64> {
    t.map(|t| t.timestamp_millis() as f64 / 1000.0)
}

fn flag(b: Option<bool>) -> Option<f64> {
    b.map(|b| if b { 1.0 } else { 0.0 })
}

impl SourceMetrics {
    /// The values this source has, by metric name.
    fn values(&self) -> Vec<(&'static str, f64)> {
        let all = [
            time(self.last_success),
            time(self.last_run),
            self.last_run_duration_seconds,
            flag(self.last_run_success),
            self.bytes_added.map(|b| b as f64),
            self.snapshots.map(|n| n as f64),
            time(self.last_check),
            flag(self.last_check_success),
            time(self.last_drill),
            flag(self.last_drill_success),
            self.snapshot_age_seconds.map(|s| s as f64),
        ];
        METRICS.iter().zip(all).filter_map(|((name, _), v)| v.map(|v| (*name, v))).collect()
    }
}

/// A sample's labels, sorted by name.
type Labels = Vec<(String, String)>;

/// The samples of a file: metric name → labels → value, plus the HELP and
/// TYPE of names cairn no longer (or not yet) knows.
#[derive(Debug, Default)]
struct Samples {
    values: BTreeMap<String, BTreeMap<Labels, f64>>,
    help: BTreeMap<String, String>,
    kind: BTreeMap<String, String>,
}

impl Samples {
    fn add(&mut self, m: &Metrics) {
        for s in &m.sources {
            let labels =
                vec![("repository".to_string(), m.repository.clone()), ("source".to_string(), s.source.clone())];
            for (name, v) in s.values() {
                self.values.entry(name.to_string()).or_default().insert(labels.clone(), v);
            }
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let known: Vec<&str> = METRICS.iter().map(|(n, _)| *n).collect();
        let others = self.values.keys().filter(|n| !known.contains(&n.as_str())).map(String::as_str);
        for name in known.iter().copied().chain(others) {
            let Some(samples) = self.values.get(name).filter(|s| !s.is_empty()) else { continue };
            let help = METRICS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, h)| h.to_string())
                .or_else(|| self.help.get(name).cloned());
            if let Some(h) = help {
                let _ = writeln!(out, "# HELP {name} {}", escape_help(&h));
            }
            let kind = self.kind.get(name).filter(|_| !known.contains(&name)).map_or("gauge", String::as_str);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, v) in samples {
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
                let _ = writeln!(out, "{name}{{{}}} {}", l.join(","), number(*v));
            }
        }
        out
    }
}

/// The text of `m` alone, in the exposition format.
pub fn render(m: &Metrics) -> String {
    let mut s = Samples::default();
    s.add(m);
    s.render()
}

/// `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Reads the `cairn_` samples of a file as [`render`] writes them (or a
/// newer cairn); other lines are skipped.
fn parse(text: &str) -> Samples {
    let mut s = Samples::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((name, h)) = rest.split_once(' ').filter(|(n, _)| n.starts_with("cairn_")) {
                s.help.insert(name.to_string(), h.replace("\\n", "\n").replace("\\\\", "\\"));
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            if let Some((name, k)) = rest.split_once(' ').filter(|(n, _)| n.starts_with("cairn_")) {
                s.kind.insert(name.to_string(), k.trim().to_string());
            }
        } else if line.starts_with("cairn_") {
            if let Some((name, labels, v)) = parse_sample(line) {
                s.values.entry(name).or_default().insert(labels, v);
            }
        }
    }
    s
}

/// `name{a="x",b="y"} 1.5` (no timestamp).
fn parse_sample(line: &str) -> Option<(String, Labels, f64)> {
    let end = line.find(['{', ' '])?;
    let name = &line[..end];
    let mut rest = &line[end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.chars();
        loop {
            let first = loop {
                match chars.next()? {
                    ',' | ' ' => continue,
                    c => break c,
                }
            };
            if first == '}' {
                break;
            }
            let mut key = first.to_string();
            loop {
                match chars.next()? {
                    '=' => break,
                    c => key.push(c),
                }
            }
            if chars.next()? != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    c => value.push(c),
                }
            }
            labels.push((key.trim().to_string(), value));
        }
        rest = chars.as_str();
    }
    let mut words = rest.split_whitespace();
    let v = match words.next()? {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        w => w.parse().ok()?,
    };
    labels.sort();
    Some((name.to_string(), labels, v))
}

/// (device, inode) of a file, or `None` if it does not exist.
fn identity(path: &Path) -> Result<Option<(u64, u64)>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some((m.dev(), m.ino()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path.display(), e)),
    }
}

/// Writes `m` into the textfile `path`, keeping the file's other `cairn_`
/// samples (see the module's notes): a temporary file in the same
/// directory (not ending in `.prom`, so the collector skips it), synced,
/// mode 0644, renamed over `path`, the directory synced.
pub fn write_textfile(path: &Path, m: &Metrics) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("{}: not a file name", path.display())))?
        .to_string_lossy()
        .into_owned();
    for _ in 0..5 {
        let before = identity(path)?;
        let old = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(path.display(), e)),
        };
        let mut samples = parse(&old);
        samples.add(m);
        let text = samples.render();
        let tmp = dir.join(format!(".{name}.{}.{:08x}.tmp", std::process::id(), rand::random::<u32>()));
        let written = (|| {
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io_sentence(format!("cannot write {}", tmp.display()), e));
        }
        // Another writer replaced the file since it was read: merge again.
        if identity(path)? != before {
            let _ = std::fs::remove_file(&tmp);
            continue;
        }
        if let Err(e) = std::fs::rename(&tmp, path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io_sentence(format!("cannot replace {}", path.display()), e));
        }
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        return Ok(());
    }
    Err(Error::new(crate::ErrorKind::Transient, format!("{} kept changing while it was written", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn sample() -> Metrics {
        Metrics {
            repository: "1a2b3c4d".into(),
            sources: vec![SourceMetrics {
                source: "db1:/etc".into(),
                last_success: Some(t("2026-12-05T03:00:10Z")),
                snapshots: Some(12),
                snapshot_age_seconds: Some(3600),
                last_run_success: Some(false),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn renders_help_type_and_samples() {
        let text = render(&sample());
        let want = "\
# HELP cairn_last_success_timestamp_seconds Unix time of the last backup that saved everything (its snapshot time).
# TYPE cairn_last_success_timestamp_seconds gauge
cairn_last_success_timestamp_seconds{repository=\"1a2b3c4d\",source=\"db1:/etc\"} 1796439610
# HELP cairn_last_run_success Whether the last run succeeded (1) or failed (0).
# TYPE cairn_last_run_success gauge
cairn_last_run_success{repository=\"1a2b3c4d\",source=\"db1:/etc\"} 0
# HELP cairn_snapshots Number of snapshots of the source.
# TYPE cairn_snapshots gauge
cairn_snapshots{repository=\"1a2b3c4d\",source=\"db1:/etc\"} 12
# HELP cairn_snapshot_age_seconds Age of the newest snapshot when the file was written.
# TYPE cairn_snapshot_age_seconds gauge
cairn_snapshot_age_seconds{repository=\"1a2b3c4d\",source=\"db1:/etc\"} 3600
";
        assert_eq!(text, want);
    }

    #[test]
    fn labels_escape_and_parse_back() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        let mut m = sample();
        m.sources[0].source = "we\"ird\\ na,me=}\n".into();
        m.sources[0].last_run_duration_seconds = Some(1.25);
        let text = render(&m);
        let back = parse(&text);
        let mut again = Samples::default();
        again.add(&m);
        assert_eq!(back.values, again.values);
        assert_eq!(back.render(), text);
    }

    #[test]
    fn merge_keeps_what_it_does_not_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cairn.prom");
        std::fs::write(&path, "# HELP other_metric x\nother_metric 1\n").expect("write");
        // `run` writes run facts for source a.
        let run = Metrics {
            repository: "r1".into(),
            sources: vec![SourceMetrics {
                source: "a".into(),
                last_run: Some(t("2026-12-05T03:00:00Z")),
                last_run_success: Some(true),
                bytes_added: Some(100),
                ..Default::default()
            }],
        };
        write_textfile(&path, &run).expect("run");
        // `status` writes snapshot facts of a and b.
        let status = |n: u64| Metrics {
            repository: "r1".into(),
            sources: ["a", "b"]
                .iter()
                .map(|s| SourceMetrics { source: s.to_string(), snapshots: Some(n), ..Default::default() })
                .collect(),
        };
        write_textfile(&path, &status(3)).expect("status");
        write_textfile(&path, &status(4)).expect("status again");
        // Another repository's writer.
        let other = Metrics {
            repository: "r2".into(),
            sources: vec![SourceMetrics { source: "a".into(), snapshots: Some(9), ..Default::default() }],
        };
        write_textfile(&path, &other).expect("other");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("other_metric"), "{text}");
        assert!(text.contains("cairn_last_run_success{repository=\"r1\",source=\"a\"} 1\n"), "{text}");
        assert!(text.contains("cairn_bytes_added_bytes{repository=\"r1\",source=\"a\"} 100\n"), "{text}");
        assert!(text.contains("cairn_snapshots{repository=\"r1\",source=\"a\"} 4\n"), "{text}");
        assert!(text.contains("cairn_snapshots{repository=\"r1\",source=\"b\"} 4\n"), "{text}");
        assert!(text.contains("cairn_snapshots{repository=\"r2\",source=\"a\"} 9\n"), "{text}");
        assert_eq!(text.matches("# TYPE cairn_snapshots gauge").count(), 1, "{text}");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["cairn.prom".to_string()], "temporary files left behind");
    }

    #[test]
    fn run_and_drill_states_become_metrics() {
        use crate::job::state::{DrillSourceState, SourceState};
        let source = |name: &str, success: bool| SourceState {
            name: name.into(),
            success,
            partial: false,
            snapshot: None,
            bytes_added: 100,
            duration_seconds: 2.5,
            error: None,
        };
        let run = RunState {
            started: t("2026-12-05T03:00:00Z"),
            duration_seconds: 10.0,
            success: false,
            errors: vec![],
            sources: vec![source("files", true), source("app", false)],
            check_success: Some(true),
        };
        let drill = DrillState {
            started: t("2026-12-04T05:00:00Z"),
            duration_seconds: 3.0,
            success: true,
            sources: vec![DrillSourceState { name: "redis".into(), success: true, snapshot: None, problems: vec![] }],
        };
        let m = Metrics::from_states("r1", Some(&run), Some(&drill));
        let names: Vec<&str> = m.sources.iter().map(|s| s.source.as_str()).collect();
        assert_eq!(names, ["files", "app", "redis"]);
        let files = &m.sources[0];
        assert_eq!(files.last_run, Some(t("2026-12-05T03:00:00Z")));
        assert_eq!(
            (files.last_run_success, files.bytes_added, files.last_check_success),
            (Some(true), Some(100), Some(true))
        );
        assert_eq!((m.sources[1].last_run_success, m.sources[1].bytes_added), (Some(false), None));
        assert_eq!((m.sources[2].last_drill_success, m.sources[2].last_run), (Some(true), None));
        let text = render(&m);
        assert!(text.contains("cairn_last_run_duration_seconds{repository=\"r1\",source=\"app\"} 2.5\n"), "{text}");
        assert!(text.contains("cairn_last_drill_timestamp_seconds{repository=\"r1\",source=\"redis\"} "), "{text}");
    }

    #[test]
    fn unknown_cairn_metrics_are_kept_with_their_type() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.prom");
        std::fs::write(&path, "# HELP cairn_future_total From a newer cairn.\n# TYPE cairn_future_total counter\ncairn_future_total{repository=\"r\",source=\"s\"} 5\n")
            .expect("write");
        write_textfile(&path, &sample()).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.ends_with("# HELP cairn_future_total From a newer cairn.\n# TYPE cairn_future_total counter\ncairn_future_total{repository=\"r\",source=\"s\"} 5\n"), "{text}");
    }
}
