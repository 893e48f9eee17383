//! Unit tests of [`super::evaluate`]: synthetic snapshot lists, a fixed now.

use chrono::{DateTime, TimeDelta, Utc};

use super::*;
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;

fn now() -> DateTime<Utc> {
    "2026-12-05T12:00:00Z".parse().expect("time")
}

fn id(n: u8) -> SnapshotId {
    SnapshotId([n; 32])
}

/// A snapshot of `host` and `paths` taken `hours_ago` before [`now`].
fn snap(n: u8, host: &str, paths: &[&str], hours_ago: i64) -> (SnapshotId, Snapshot) {
    let time = (now() - TimeDelta::hours(hours_ago)).fixed_offset();
    let s = Snapshot { paths: paths.iter().map(|p| p.to_string()).collect(), ..Snapshot::for_test(time, host, &[]) };
    (id(n), s)
}

fn all() -> SnapshotFilter {
    SnapshotFilter::default()
}

#[test]
fn fresh_sources_are_ok_with_perfdata() {
    let list = vec![
        snap(1, "db1", &["/srv", "/etc"], 30),
        snap(2, "db1", &["/etc", "/srv"], 2),
        snap(3, "web", &["/var/www"], 1),
    ];
    let r = evaluate(&list, now(), &Thresholds::default(), &all());
    assert_eq!(r.state, State::Ok);
    assert_eq!(r.sources.len(), 2, "{r:?}");
    let db = &r.sources[0];
    assert_eq!((db.name.as_str(), db.snapshots, db.age_seconds), ("db1:/etc,/srv", 2, Some(7200)));
    assert_eq!(db.newest.as_deref(), Some(id(2).short().as_str()));
    let line = r.first_line();
    assert!(line.starts_with("OK - newest snapshot: db1:/etc,/srv 2h ago, web:/var/www 1h ago | "), "{line}");
    assert!(line.contains("'db1:/etc,/srv_age'=7200s;90000;108000;0"), "{line}");
    assert!(line.contains("'db1:/etc,/srv_snapshots'=2;;;0"), "{line}");
    assert!(line.contains("'web:/var/www_age'=3600s;90000;108000;0"), "{line}");
    assert_eq!(line.lines().count(), 1);
    let long = r.long_lines();
    assert_eq!(long.len(), 2);
    assert!(long[0].starts_with("OK db1:/etc,/srv: 2 snapshots, newest "), "{long:?}");
    assert_eq!(r.state.exit_code(), 0);
}

#[test]
fn age_thresholds_warn_then_crit() {
    let t = Thresholds::default();
    for (hours, want) in
        [(24, State::Ok), (25, State::Ok), (26, State::Warning), (30, State::Warning), (31, State::Critical)]
    {
        let r = evaluate(&[snap(1, "h", &["/a"], hours)], now(), &t, &all());
        assert_eq!(r.state, want, "{hours}h: {r:?}");
    }
    let r = evaluate(&[snap(1, "h", &["/a"], 26), snap(2, "g", &["/a"], 1)], now(), &t, &all());
    assert_eq!(r.state.exit_code(), 1);
    let line = r.first_line();
    assert!(
        line.starts_with("WARNING - h:/a: newest snapshot 1d2h old (warning above 1d1h); 1 other source OK | "),
        "{line}"
    );
    let t = Thresholds { warn: Duration::from_secs(60), crit: Duration::from_secs(120) };
    let r = evaluate(&[snap(1, "h", &["/a"], 1)], now(), &t, &all());
    assert_eq!(r.state, State::Critical);
    assert!(r.first_line().contains("=3600s;60;120;0"), "{}", r.first_line());
}

#[test]
fn no_snapshots_is_critical() {
    let r = evaluate(&[], now(), &Thresholds::default(), &all());
    assert_eq!(r.state, State::Critical);
    assert_eq!(r.first_line(), "CRITICAL - the repository has no snapshots");
    assert_eq!(r.state.exit_code(), 2);
    let f = SnapshotFilter { hosts: vec!["nohost".into()], ..Default::default() };
    let r = evaluate(&[snap(1, "h", &["/a"], 1)], now(), &Thresholds::default(), &f);
    assert_eq!(r.state, State::Critical);
    assert_eq!(r.first_line(), "CRITICAL - no snapshot matches --host nohost");
}

#[test]
fn filter_picks_sources() {
    let list = vec![snap(1, "a", &["/x"], 40), snap(2, "b", &["/x"], 1)];
    let f = SnapshotFilter { hosts: vec!["b".into()], ..Default::default() };
    let r = evaluate(&list, now(), &Thresholds::default(), &f);
    assert_eq!(r.state, State::Ok);
    assert_eq!(r.sources.len(), 1);
}

#[test]
fn partial_newest_is_warning_older_partial_is_not() {
    let mut p = snap(2, "h", &["/a"], 1);
    p.1.partial = true;
    p.1.summary.errors = vec!["/a/x: permission denied".into()];
    let list = vec![snap(1, "h", &["/a"], 10), p.clone()];
    let r = evaluate(&list, now(), &Thresholds::default(), &all());
    assert_eq!(r.state, State::Warning);
    let s = &r.sources[0];
    assert!(s.partial);
    assert_eq!(s.last_success, Some(now() - TimeDelta::hours(10)));
    assert!(r.first_line().contains("newest snapshot is partial (1 path unreadable)"), "{}", r.first_line());
    // A partial snapshot followed by a whole one: OK.
    p.1.time = (now() - TimeDelta::hours(20)).fixed_offset();
    let r = evaluate(&[p, snap(3, "h", &["/a"], 1)], now(), &Thresholds::default(), &all());
    assert_eq!(r.state, State::Ok);
    // Partial and old: critical wins.
    let mut old = snap(4, "h", &["/a"], 40);
    old.1.partial = true;
    let r = evaluate(&[old], now(), &Thresholds::default(), &all());
    assert_eq!(r.state, State::Critical);
    assert_eq!(r.sources[0].reasons.len(), 2);
}

#[test]
fn future_snapshot_counts_as_fresh() {
    let r = evaluate(&[snap(1, "h", &["/a"], -3)], now(), &Thresholds::default(), &all());
    assert_eq!(r.state, State::Ok);
    assert_eq!(r.sources[0].age_seconds, Some(0));
}

#[test]
fn raised_source_and_report() {
    let e = snap(1, "h", &["/a"], 1);
    let mut s = evaluate_source("nightly", &[&e], now(), &Thresholds::default());
    assert_eq!(s.state, State::Ok);
    s.raise(State::Warning, "last run failed");
    let none = evaluate_source("weekly", &[], now(), &Thresholds::default());
    assert_eq!(none.state, State::Critical);
    let r = StatusReport::from_sources(vec![s, none], now(), &Thresholds::default());
    assert_eq!(r.state, State::Critical);
    assert!(
        r.first_line().starts_with("CRITICAL - nightly: last run failed; weekly: no snapshot | "),
        "{}",
        r.first_line()
    );
}

#[test]
fn wal_gap_and_lag_are_warnings() {
    let sys = |lag: Option<i64>, problems: Vec<String>| SystemStatus {
        system_id: 7,
        segment_size: 16 << 20,
        base_backups: vec![],
        timelines: vec![],
        history_files: vec![],
        reachable: None,
        newest_wal: None,
        newest_wal_time: None,
        lag_seconds: lag,
        problems,
    };
    let base = || evaluate(&[snap(1, "h", &["/a"], 1)], now(), &Thresholds::default(), &all());
    let mut r = base();
    r.add_wal(&[sys(Some(60), vec![])]);
    assert_eq!(r.state, State::Ok);
    assert!(r.first_line().contains("'pg_7_wal_lag'=60s;90000;;0"), "{}", r.first_line());
    let mut r = base();
    r.add_wal(&[sys(Some(60), vec!["timeline 1: segment 000000010000000000000003 is missing".into()])]);
    assert_eq!(r.state, State::Warning);
    assert!(r.first_line().starts_with("WARNING - PostgreSQL system 7: timeline 1: segment"), "{}", r.first_line());
    let mut r = base();
    r.add_wal(&[sys(Some(100_000), vec![])]);
    assert_eq!(r.state, State::Warning);
    let mut r = base();
    r.add_wal(&[sys(None, vec![])]);
    assert_eq!(r.state, State::Warning);
    assert!(r
        .long_lines()
        .last()
        .is_some_and(|l| l.starts_with("WARNING PostgreSQL system 7 WAL archive: no WAL archived")));
}

#[test]
fn labels_are_quoted() {
    assert_eq!(perf_label("a b"), "'a b'");
    assert_eq!(perf_label("it's"), "'it''s'");
    assert_eq!(perf_label("x=y|z\n"), "'x_y_z_'");
    // A `|` in a source's name or a reason does not start perfdata early.
    let r = evaluate(&[snap(1, "a|b", &["/x"], 40)], now(), &Thresholds::default(), &all());
    let line = r.first_line();
    assert_eq!(line.matches('|').count(), 1, "{line}");
    assert!(line.starts_with("CRITICAL - a/b:/x: newest snapshot") && line.contains("'a_b:/x_age'="), "{line}");
    assert!(r.long_lines().iter().all(|l| !l.contains('|')));
}

#[test]
fn ages_read_short() {
    assert_eq!(human_age(45), "45s");
    assert_eq!(human_age(600), "10m");
    assert_eq!(human_age(3600), "1h");
    assert_eq!(human_age(3 * 3600 + 12 * 60), "3h12m");
    assert_eq!(human_age(86_400), "1d");
    assert_eq!(human_age(86_400 + 3600 + 5), "1d1h");
}

#[test]
fn named_sources_take_their_own_snapshots() {
    let list = vec![
        snap(1, "db1", &["/etc", "/srv"], 2),
        snap(2, "db1", &["/app.sql"], 40),
        snap(3, "other", &["/etc", "/srv"], 1),
    ];
    let named = |name: &str, host: &str, paths: &[&str]| NamedSource {
        name: name.into(),
        host: host.into(),
        paths: paths.iter().map(|p| p.to_string()).collect(),
    };
    let sources = [
        named("files", "db1", &["/etc", "/srv"]),
        named("app", "db1", &["/app.sql"]),
        named("redis", "db1", &["/redis.rdb"]),
    ];
    let r = evaluate_named(&list, now(), &Thresholds::default(), &sources);
    let got: Vec<(&str, State, usize)> = r.sources.iter().map(|s| (s.name.as_str(), s.state, s.snapshots)).collect();
    assert_eq!(got, [("files", State::Ok, 1), ("app", State::Critical, 1), ("redis", State::Critical, 0)]);
    assert_eq!(r.sources[0].newest.as_deref(), Some(id(1).short().as_str()));
    assert_eq!(r.state, State::Critical);
    assert!(
        r.first_line().starts_with(
            "CRITICAL - app: newest snapshot 1d16h old (critical above 1d6h); redis: no snapshot; 1 other source OK | "
        ),
        "{}",
        r.first_line()
    );
}
