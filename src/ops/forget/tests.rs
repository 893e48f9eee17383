//! Tests of retention policies, grouping and plans.
use super::*;
use chrono::NaiveDate;
use chrono_tz::Europe::Berlin;
use chrono_tz::Tz;
use proptest::prelude::*;
use std::collections::BTreeSet;

fn snapshot(time: DateTime<FixedOffset>, host: &str, paths: &[&str], tags: &[&str]) -> Snapshot {
    Snapshot { paths: paths.iter().map(|p| p.to_string()).collect(), ..Snapshot::for_test(time, host, tags) }
}

fn id(n: usize) -> SnapshotId {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&(n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    SnapshotId(b)
}

/// `2026-01-05 18:00` on the wall clock of `tz`, or RFC 3339 with an
/// offset (for the two halves of a repeated hour).
fn at(tz: &Tz, s: &str) -> DateTime<FixedOffset> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return t;
    }
    let n = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap_or_else(|e| panic!("{s}: {e}"));
    tz.from_local_datetime(&n).single().unwrap_or_else(|| panic!("{s} is not one instant in {tz}")).fixed_offset()
}

/// `daily=7 weekly=4 monthly=unlimited within=7d within-daily=30d tag=a,b`.
fn policy(s: &str) -> KeepPolicy {
    let mut p = KeepPolicy::default();
    for item in s.split_whitespace() {
        let (k, v) = item.split_once('=').unwrap_or_else(|| panic!("{item}"));
        let n = || Some(v.parse::<Keep>().unwrap());
        let d = || Some(v.parse::<Duration>().unwrap());
        match k {
            "last" => p.last = n(),
            "hourly" => p.hourly = n(),
            "daily" => p.daily = n(),
            "weekly" => p.weekly = n(),
            "monthly" => p.monthly = n(),
            "yearly" => p.yearly = n(),
            "within" => p.within = d(),
            "within-hourly" => p.within_hourly = d(),
            "within-daily" => p.within_daily = d(),
            "within-weekly" => p.within_weekly = d(),
            "within-monthly" => p.within_monthly = d(),
            "within-yearly" => p.within_yearly = d(),
            "tag" => p.tags.push(v.to_string()),
            other => panic!("unknown rule {other}"),
        }
    }
    p
}

struct Case {
    name: &'static str,
    tz: Tz,
    /// "" for a date after every snapshot.
    now: &'static str,
    /// `TIME` or `TIME #tag,tag`.
    snaps: &'static [&'static str],
    policy: &'static str,
    /// The `TIME`s kept.
    keep: &'static [&'static str],
}

/// The snapshots of a case (host h, path /data), with their TIME labels.
fn case_snapshots(tz: &Tz, snaps: &[&str]) -> (Vec<(SnapshotId, Snapshot)>, BTreeMap<SnapshotId, String>) {
    let mut list = Vec::new();
    let mut label = BTreeMap::new();
    for (n, s) in snaps.iter().enumerate() {
        let (time, tags) = s.split_once(" #").unwrap_or((s, ""));
        let tags: Vec<&str> = tags.split(',').filter(|t| !t.is_empty()).collect();
        list.push((id(n), snapshot(at(tz, time), "h", &["/data"], &tags)));
        label.insert(id(n), time.to_string());
    }
    (list, label)
}

fn far_future() -> DateTime<Utc> {
    "2100-01-01T00:00:00Z".parse().unwrap()
}

fn explain(plan: &ForgetPlan, label: &BTreeMap<SnapshotId, String>) -> String {
    let mut out = String::new();
    for g in &plan.groups {
        for e in &g.snapshots {
            let verdict = if e.keep { "keep  " } else { "remove" };
            out += &format!("  {verdict} {:<26} {}\n", label[&e.id], e.reasons.join(", "));
        }
    }
    out
}

#[test]
fn policy_table() {
    let utc = chrono_tz::UTC;
    let cases = [
        Case {
            name: "keep-last 2",
            tz: Berlin,
            now: "",
            snaps: &["2026-01-01 12:00", "2026-01-02 12:00", "2026-01-03 12:00", "2026-01-04 12:00"],
            policy: "last=2",
            keep: &["2026-01-04 12:00", "2026-01-03 12:00"],
        },
        Case {
            name: "keep-last more than there are",
            tz: Berlin,
            now: "",
            snaps: &["2026-01-01 12:00", "2026-01-02 12:00", "2026-01-03 12:00"],
            policy: "last=10",
            keep: &["2026-01-01 12:00", "2026-01-02 12:00", "2026-01-03 12:00"],
        },
        Case {
            name: "keep-daily keeps the newest of each day",
            tz: Berlin,
            now: "",
            snaps: &[
                "2026-01-04 08:00",
                "2026-01-05 09:00",
                "2026-01-05 18:00",
                "2026-01-05 23:59",
                "2026-01-06 00:00",
                "2026-01-06 12:00",
            ],
            policy: "daily=2",
            keep: &["2026-01-06 12:00", "2026-01-05 23:59"],
        },
        Case {
            name: "keep-daily with count left also keeps the oldest snapshot",
            tz: Berlin,
            now: "",
            snaps: &["2026-01-05 09:00", "2026-01-05 18:00", "2026-01-06 12:00"],
            policy: "daily=3",
            keep: &["2026-01-06 12:00", "2026-01-05 18:00", "2026-01-05 09:00"],
        },
        Case {
            name: "days are local days, not UTC days",
            tz: Berlin,
            now: "",
            // 00:30 in Berlin is 23:30 UTC of the day before.
            snaps: &["2026-01-04 12:00", "2026-01-05 00:30", "2026-01-05 23:30"],
            policy: "daily=2",
            keep: &["2026-01-05 23:30", "2026-01-04 12:00"],
        },
        Case {
            name: "keep-weekly across ISO week 53",
            tz: Berlin,
            now: "",
            snaps: &[
                "2020-12-27 12:00", // 2020-W52
                "2020-12-28 12:00", // 2020-W53 ...
                "2020-12-31 12:00",
                "2021-01-01 12:00",
                "2021-01-03 12:00", // ... to here
                "2021-01-04 12:00", // 2021-W01
                "2021-01-10 12:00",
            ],
            policy: "weekly=3",
            keep: &["2021-01-10 12:00", "2021-01-03 12:00", "2020-12-27 12:00"],
        },
        Case {
            name: "keep-weekly: ISO week 1 that starts in December",
            tz: Berlin,
            now: "",
            snaps: &[
                "2024-12-29 12:00", // 2024-W52
                "2024-12-30 12:00", // 2025-W01
                "2025-01-05 12:00", // 2025-W01
                "2025-01-06 12:00", // 2025-W02
            ],
            policy: "weekly=2",
            keep: &["2025-01-06 12:00", "2025-01-05 12:00"],
        },
        Case {
            name: "keep-monthly across month ends of a leap year",
            tz: Berlin,
            now: "",
            snaps: &[
                "2024-01-30 12:00",
                "2024-01-31 23:30",
                "2024-02-01 00:30",
                "2024-02-28 12:00",
                "2024-02-29 23:59",
                "2024-03-01 00:00",
            ],
            policy: "monthly=3",
            keep: &["2024-03-01 00:00", "2024-02-29 23:59", "2024-01-31 23:30"],
        },
        Case {
            name: "keep-monthly: February of a common year",
            tz: Berlin,
            now: "",
            snaps: &["2023-01-31 12:00", "2023-02-28 23:59", "2023-03-01 00:00", "2023-03-31 12:00"],
            policy: "monthly=2",
            keep: &["2023-03-31 12:00", "2023-02-28 23:59"],
        },
        Case {
            name: "keep-yearly",
            tz: Berlin,
            now: "",
            snaps: &[
                "2023-06-01 12:00",
                "2023-12-31 23:59",
                "2024-01-01 00:00",
                "2024-07-01 12:00",
                "2025-03-01 12:00",
            ],
            policy: "yearly=2",
            keep: &["2025-03-01 12:00", "2024-07-01 12:00"],
        },
        Case {
            name: "keep-yearly unlimited (and the oldest)",
            tz: Berlin,
            now: "",
            snaps: &[
                "2023-06-01 12:00",
                "2023-12-31 23:59",
                "2024-01-01 00:00",
                "2024-07-01 12:00",
                "2025-03-01 12:00",
            ],
            policy: "yearly=unlimited",
            keep: &["2025-03-01 12:00", "2024-07-01 12:00", "2023-12-31 23:59", "2023-06-01 12:00"],
        },
        Case {
            name: "keep-hourly",
            tz: utc,
            now: "",
            snaps: &[
                "2026-01-05 09:00",
                "2026-01-05 10:05",
                "2026-01-05 10:55",
                "2026-01-05 11:00",
                "2026-01-05 12:59",
            ],
            policy: "hourly=3",
            keep: &["2026-01-05 12:59", "2026-01-05 11:00", "2026-01-05 10:55"],
        },
        Case {
            name: "DST fall back: the repeated hour is two hourly buckets",
            tz: Berlin,
            now: "",
            snaps: &[
                "2026-10-24 12:00",
                "2026-10-25T02:10:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:30:00+01:00",
            ],
            policy: "hourly=2",
            keep: &["2026-10-25T02:30:00+01:00", "2026-10-25T02:30:00+02:00"],
        },
        Case {
            name: "DST fall back: the repeated hour is in one day",
            tz: Berlin,
            now: "",
            snaps: &[
                "2026-10-24 12:00",
                "2026-10-25T02:10:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:30:00+01:00",
            ],
            policy: "daily=2",
            keep: &["2026-10-25T02:30:00+01:00", "2026-10-24 12:00"],
        },
        Case {
            name: "DST spring forward: hours around the gap",
            tz: Berlin,
            now: "",
            snaps: &["2026-03-29 01:30", "2026-03-29 03:30", "2026-03-29 03:45"],
            policy: "hourly=5",
            keep: &["2026-03-29 03:45", "2026-03-29 01:30"],
        },
        Case {
            name: "DST spring forward: one day",
            tz: Berlin,
            now: "",
            snaps: &["2026-03-28 23:00", "2026-03-29 01:30", "2026-03-29 03:30", "2026-03-29 23:59"],
            policy: "daily=1",
            keep: &["2026-03-29 23:59"],
        },
        Case {
            name: "keep-within 1d is a calendar day across DST (23 h)",
            tz: Berlin,
            now: "",
            snaps: &["2026-03-28 11:30", "2026-03-28 12:30", "2026-03-29 12:00"],
            policy: "within=1d",
            keep: &["2026-03-29 12:00", "2026-03-28 12:30"],
        },
        Case {
            name: "keep-within 24h is elapsed time",
            tz: Berlin,
            now: "",
            snaps: &["2026-03-28 10:30", "2026-03-28 11:30", "2026-03-28 12:30", "2026-03-29 12:00"],
            policy: "within=24h",
            keep: &["2026-03-29 12:00", "2026-03-28 12:30", "2026-03-28 11:30"],
        },
        Case {
            name: "keep-within: a snapshot dated in the future is not the reference",
            tz: Berlin,
            now: "2026-06-01 00:00",
            snaps: &["2026-05-20 12:00", "2026-05-25 12:00", "2026-05-31 12:00", "2031-01-01 12:00"],
            policy: "within=7d",
            keep: &["2031-01-01 12:00", "2026-05-31 12:00", "2026-05-25 12:00"],
        },
        Case {
            name: "keep-within: every snapshot in the future, now is the reference",
            tz: Berlin,
            now: "2020-01-01 00:00",
            snaps: &["2026-05-20 12:00", "2026-05-25 12:00", "2026-05-31 12:00"],
            policy: "within=7d",
            keep: &["2026-05-31 12:00", "2026-05-25 12:00", "2026-05-20 12:00"],
        },
        Case {
            name: "keep-within 1m from 31 March ends on 28 February",
            tz: Berlin,
            now: "",
            snaps: &[
                "2026-02-27 12:00",
                "2026-02-28 11:00",
                "2026-02-28 12:00",
                "2026-02-28 13:00",
                "2026-03-01 00:00",
                "2026-03-31 12:00",
            ],
            policy: "within=1m",
            keep: &["2026-03-31 12:00", "2026-03-01 00:00", "2026-02-28 13:00"],
        },
        Case {
            name: "keep-within 1m from 31 March of a leap year ends on 29 February",
            tz: Berlin,
            now: "",
            snaps: &["2024-02-28 13:00", "2024-02-29 11:00", "2024-02-29 13:00", "2024-03-31 12:00"],
            policy: "within=1m",
            keep: &["2024-03-31 12:00", "2024-02-29 13:00"],
        },
        Case {
            name: "keep-within 1y from 29 February ends on 28 February",
            tz: Berlin,
            now: "",
            snaps: &["2023-02-28 11:00", "2023-02-28 13:00", "2023-03-01 12:00", "2024-02-29 12:00"],
            policy: "within=1y",
            keep: &["2024-02-29 12:00", "2023-03-01 12:00", "2023-02-28 13:00"],
        },
        Case {
            name: "keep-within-daily",
            tz: Berlin,
            now: "",
            snaps: &[
                "2026-01-01 12:00",
                "2026-01-02 09:00",
                "2026-01-02 18:00",
                "2026-01-03 09:00",
                "2026-01-03 18:00",
                "2026-01-04 09:00",
                "2026-01-04 18:00",
            ],
            policy: "within-daily=2d",
            keep: &["2026-01-04 18:00", "2026-01-03 18:00"],
        },
        Case {
            name: "keep-tag: all tags of one entry",
            tz: Berlin,
            now: "",
            snaps: &[
                "2026-01-01 12:00 #db",
                "2026-01-02 12:00 #db,nightly",
                "2026-01-03 12:00 #nightly",
                "2026-01-04 12:00",
            ],
            policy: "tag=db,nightly tag=weekly",
            keep: &["2026-01-02 12:00"],
        },
        Case {
            name: "keep-tag: any entry",
            tz: Berlin,
            now: "",
            snaps: &[
                "2026-01-01 12:00 #db",
                "2026-01-02 12:00 #db,nightly",
                "2026-01-03 12:00 #nightly",
                "2026-01-04 12:00",
            ],
            policy: "tag=nightly tag=db",
            keep: &["2026-01-01 12:00", "2026-01-02 12:00", "2026-01-03 12:00"],
        },
        Case {
            name: "keep-daily unlimited",
            tz: Berlin,
            now: "",
            snaps: &[
                "2026-01-01 08:00",
                "2026-01-01 20:00",
                "2026-01-02 08:00",
                "2026-01-02 20:00",
                "2026-01-03 08:00",
            ],
            policy: "daily=unlimited",
            keep: &["2026-01-03 08:00", "2026-01-02 20:00", "2026-01-01 20:00", "2026-01-01 08:00"],
        },
        Case {
            name: "keep-last unlimited keeps everything",
            tz: Berlin,
            now: "",
            snaps: &["2026-01-01 08:00", "2026-01-01 20:00", "2026-01-02 08:00"],
            policy: "last=unlimited",
            keep: &["2026-01-01 08:00", "2026-01-01 20:00", "2026-01-02 08:00"],
        },
        Case {
            name: "a zero count keeps nothing by itself",
            tz: Berlin,
            now: "",
            snaps: &["2026-01-01 08:00", "2026-01-02 08:00", "2026-01-03 08:00"],
            policy: "last=1 daily=0",
            keep: &["2026-01-03 08:00"],
        },
    ];
    let mut failures = Vec::new();
    for c in &cases {
        let (list, label) = case_snapshots(&c.tz, c.snaps);
        let now = if c.now.is_empty() { far_future() } else { at(&c.tz, c.now).with_timezone(&Utc) };
        let plan = plan(&list, &policy(c.policy), GroupBy::default(), &c.tz, now);
        let got: BTreeSet<&str> = plan.keep.iter().map(|id| label[id].as_str()).collect();
        let want: BTreeSet<&str> = c.keep.iter().copied().collect();
        if got != want {
            failures.push(format!(
                "{} ({}):\n  want {want:?}\n  got  {got:?}\n{}",
                c.name,
                c.policy,
                explain(&plan, &label)
            ));
        }
        assert_eq!(plan.keep.len() + plan.remove.len(), list.len(), "{}", c.name);
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

/// The reasons of one case, by TIME label.
fn reasons(tz: Tz, now: &str, snaps: &[&str], p: &str) -> BTreeMap<String, Vec<String>> {
    let (list, label) = case_snapshots(&tz, snaps);
    let now = if now.is_empty() { far_future() } else { at(&tz, now).with_timezone(&Utc) };
    let plan = plan(&list, &policy(p), GroupBy::default(), &tz, now);
    plan.groups.iter().flat_map(|g| &g.snapshots).map(|e| (label[&e.id].clone(), e.reasons.clone())).collect()
}

#[test]
fn reasons_name_the_rules() {
    let r = reasons(
        Berlin,
        "",
        &["2026-01-05 09:00", "2026-01-05 18:00 #db", "2026-01-06 12:00"],
        "last=1 daily=3 within=1d tag=db",
    );
    assert_eq!(r["2026-01-06 12:00"], ["within 1d", "last snapshot", "daily snapshot"]);
    assert_eq!(r["2026-01-05 18:00"], ["tag 'db'", "within 1d", "daily snapshot"]);
    assert_eq!(r["2026-01-05 09:00"], ["oldest daily snapshot"]);
    let r = reasons(Berlin, "", &["2026-01-04 18:00", "2026-01-05 18:00"], "within-daily=30d weekly=1");
    assert_eq!(r["2026-01-05 18:00"], ["weekly snapshot", "daily within 30d"]);
    assert_eq!(r["2026-01-04 18:00"], ["daily within 30d"]);
}

/// A year of daily snapshots (2025, 03:00 in Berlin), as `MM-DD` labels.
fn year_of_dailies() -> (Vec<(SnapshotId, Snapshot)>, BTreeMap<SnapshotId, String>) {
    let mut list = Vec::new();
    let mut label = BTreeMap::new();
    let mut d = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
    let mut n = 0;
    while d.year() == 2025 {
        let t = Berlin.from_local_datetime(&d.and_hms_opt(3, 0, 0).unwrap()).single().unwrap().fixed_offset();
        list.push((id(n), snapshot(t, "db1", &["/srv"], &[])));
        label.insert(id(n), d.format("%m-%d").to_string());
        n += 1;
        d = d.succ_opt().unwrap();
    }
    (list, label)
}

fn kept_labels(p: &str) -> BTreeSet<String> {
    let (list, label) = year_of_dailies();
    let plan = plan(&list, &policy(p), GroupBy::default(), &Berlin, far_future());
    assert_eq!(plan.groups.len(), 1);
    plan.keep.iter().map(|id| label[id].clone()).collect()
}

fn labels(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

const MONTH_ENDS_JAN_TO_OCT: [&str; 10] =
    ["01-31", "02-28", "03-31", "04-30", "05-31", "06-30", "07-31", "08-31", "09-30", "10-31"];

#[test]
fn seven_daily_four_weekly_monthly_forever() {
    // --keep-daily 7 --keep-weekly 4 --keep-monthly unlimited
    let got = kept_labels("daily=7 weekly=4 monthly=unlimited");
    let mut want = labels(&["12-25", "12-26", "12-27", "12-28", "12-29", "12-30", "12-31"]); // daily
    want.extend(labels(&["12-21", "12-14"])); // weekly: 12-31 (2026-W01), 12-28, 12-21, 12-14
    want.extend(labels(&MONTH_ENDS_JAN_TO_OCT)); // monthly, with 11-30 and 12-31
    want.insert("11-30".into());
    want.insert("01-01".into()); // the oldest: the monthly rule has count left
    assert_eq!(got, want);
    assert_eq!(got.len(), 21);
}

#[test]
fn thirty_days_daily_twelve_weeks_weekly_twelve_months_monthly() {
    // The documented form: --keep-within-daily 30d --keep-within-weekly 84d --keep-within-monthly 12m
    let got = kept_labels("within-daily=30d within-weekly=84d within-monthly=12m");
    let mut want: BTreeSet<String> = (2..=31).map(|d| format!("12-{d:02}")).collect(); // 30 days
                                                                                       // Weeks with a snapshot after 10-08 03:00: 13 ISO weeks (W41..W52, 2026-W01),
                                                                                       // each its Sunday (or 12-31).
    want.extend(labels(&["11-30", "11-23", "11-16", "11-09", "11-02", "10-26", "10-19", "10-12"]));
    want.extend(labels(&MONTH_ENDS_JAN_TO_OCT)); // 12 months: and 11-30, 12-31
    assert_eq!(got, want);
    assert_eq!(got.len(), 48);

    // The count form keeps exactly 30 days, 12 weeks and 12 months of
    // snapshots that exist (it reaches further back after missed days).
    let got = kept_labels("daily=30 weekly=12 monthly=12");
    want.remove("10-12");
    assert_eq!(got, want);
    assert_eq!(got.len(), 47);
}

#[test]
fn grouping() {
    let t = |d: u32| Berlin.with_ymd_and_hms(2026, 1, d, 12, 0, 0).unwrap().fixed_offset();
    let list = vec![
        (id(0), snapshot(t(1), "a", &["/x"], &[])),
        (id(1), snapshot(t(2), "a", &["/x"], &[])),
        (id(2), snapshot(t(3), "a", &["/x"], &["t"])),
        (id(3), snapshot(t(4), "a", &["/y", "/x"], &[])),
        (id(4), snapshot(t(5), "a", &["/x", "/y"], &[])),
        (id(5), snapshot(t(6), "b", &["/x"], &["t"])),
        (id(6), snapshot(t(7), "b", &["/x"], &["t"])),
    ];
    let last1 = policy("last=1");
    let run = |g: &str| {
        let p = plan(&list, &last1, g.parse().unwrap(), &Berlin, far_future());
        let keys: Vec<String> = p.groups.iter().map(|g| g.key.to_string()).collect();
        let mut keep = p.keep.clone();
        keep.sort();
        (keys, keep)
    };
    let sorted = |mut v: Vec<SnapshotId>| {
        v.sort();
        v
    };
    assert_eq!(
        run("host,paths"),
        (
            vec!["host a, paths [/x]".into(), "host a, paths [/x /y]".into(), "host b, paths [/x]".into()],
            sorted(vec![id(2), id(4), id(6)])
        )
    );
    assert_eq!(run("host"), (vec!["host a".into(), "host b".into()], sorted(vec![id(4), id(6)])));
    assert_eq!(run(""), (vec!["all snapshots".into()], vec![id(6)]));
    assert_eq!(run("tags"), (vec!["tags []".into(), "tags [t]".into()], sorted(vec![id(4), id(6)])));
    assert_eq!(run("host,paths,tags").1, sorted(vec![id(1), id(2), id(4), id(6)]));
    let p = plan(&list, &last1, GroupBy { host: true, paths: false, tags: false }, &Berlin, far_future());
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["groups"][0]["key"], serde_json::json!({"host": "a"}));
    assert_eq!(v["groups"][0]["snapshots"][0]["reasons"], serde_json::json!(["last snapshot"]));
    assert_eq!(v["groups"][0]["snapshots"][0]["keep"], true);
    assert_eq!(v["group_by"], "host");
    assert_eq!(v["remove"].as_array().unwrap().len(), 5);
}

#[test]
fn keep_none_and_explicit_remove_everything_given() {
    let t = |d: u32| Berlin.with_ymd_and_hms(2026, 1, d, 12, 0, 0).unwrap().fixed_offset();
    let list: Vec<_> = (0..4).map(|n| (id(n), snapshot(t(n as u32 + 1), "a", &["/x"], &[]))).collect();
    let p = plan_keep_none(&list, GroupBy::default());
    assert!(p.keep.is_empty());
    assert_eq!(p.remove.len(), 4);
    let named = vec![list[1].clone(), list[3].clone(), list[1].clone()];
    let p = plan_explicit(&named);
    assert_eq!(p.remove, vec![id(3), id(1)]);
    assert_eq!(p.groups.len(), 1);
    // An empty policy keeps everything (restic's fallback; the CLI refuses it first).
    let p = plan(&list, &KeepPolicy::default(), GroupBy::default(), &Berlin, far_future());
    assert_eq!(p.keep.len(), 4);
    assert!(p.groups[0].snapshots.iter().all(|e| e.reasons == ["policy is empty"]));
}

#[test]
fn counts_parse() {
    assert_eq!("7".parse::<Keep>().unwrap(), Keep::N(7));
    assert_eq!("0".parse::<Keep>().unwrap(), Keep::N(0));
    assert_eq!("unlimited".parse::<Keep>().unwrap(), Keep::Unlimited);
    for bad in ["-1", "x", "", "7d", "1.5", "99999999999"] {
        let e = bad.parse::<Keep>().unwrap_err();
        assert!(e.message().contains(&format!("{bad:?}")), "{bad}: {e}");
        assert_eq!(e.kind(), crate::error::ErrorKind::InvalidInput);
    }
    let e = "-1".parse::<Keep>().unwrap_err().to_string();
    assert!(e.contains("non-negative number or 'unlimited'"), "{e}");
    assert!("x".parse::<Keep>().unwrap_err().to_string().contains("non-negative number or 'unlimited'"));
}

#[test]
fn durations_parse() {
    let d = |y, m, dd, h| Duration { years: y, months: m, days: dd, hours: h };
    assert_eq!("2y5m7d3h".parse::<Duration>().unwrap(), d(2, 5, 7, 3));
    assert_eq!("7d".parse::<Duration>().unwrap(), d(0, 0, 7, 0));
    assert_eq!("30d".parse::<Duration>().unwrap(), d(0, 0, 30, 0));
    assert_eq!("1y".parse::<Duration>().unwrap(), d(1, 0, 0, 0));
    assert_eq!("12m".parse::<Duration>().unwrap(), d(0, 12, 0, 0));
    assert_eq!("3h1d".parse::<Duration>().unwrap(), d(0, 0, 1, 3));
    assert_eq!("0d".parse::<Duration>().unwrap(), d(0, 0, 0, 0));
    for s in ["2y5m7d3h", "7d", "1y", "12m", "36h"] {
        assert_eq!(s.parse::<Duration>().unwrap().to_string(), s);
    }
    for (bad, why) in [
        ("5q", "unknown unit 'q'"),
        ("3x", "unknown unit 'x'"),
        ("", "empty"),
        ("-7d", "negative"),
        ("7", "no unit"),
        ("d7", "expected a number"),
        ("7d7d", "twice"),
        ("7 d", "unknown unit ' '"),
        ("7D", "unknown unit 'D'"),
        ("99999999999d", "too large"),
    ] {
        let e = bad.parse::<Duration>().unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&format!("{bad:?}")) && msg.contains(why), "{bad:?}: {msg}");
        assert_eq!(e.kind(), crate::error::ErrorKind::InvalidInput);
    }
}

#[test]
fn group_by_parses() {
    assert_eq!("host,paths".parse::<GroupBy>().unwrap(), GroupBy::default());
    assert_eq!("".parse::<GroupBy>().unwrap(), GroupBy::NONE);
    assert_eq!("tags, host".parse::<GroupBy>().unwrap(), GroupBy { host: true, paths: false, tags: true });
    assert_eq!(GroupBy { host: true, paths: true, tags: true }.to_string(), "host,paths,tags");
    let e = "hostname".parse::<GroupBy>().unwrap_err().to_string();
    assert!(e.contains("\"hostname\""), "{e}");
}

#[test]
fn empty_policies() {
    assert!(KeepPolicy::default().is_empty());
    assert!(policy("last=0 hourly=0 daily=0 weekly=0 monthly=0 yearly=0").is_empty());
    assert!(policy("within=0d within-daily=0h").is_empty());
    let p = KeepPolicy { tags: vec!["".into(), ",".into()], ..Default::default() };
    assert!(p.is_empty());
    for one in ["last=1", "daily=unlimited", "within=1h", "within-yearly=1y", "tag=x"] {
        assert!(!policy(one).is_empty(), "{one}");
    }
    assert_eq!(
        policy("daily=7 weekly=4 monthly=unlimited within-daily=30d within=2d tag=a,b").to_string(),
        "keep daily 7, weekly 4, monthly all, daily within 30d, all within 2d of the newest, tag 'a,b'"
    );
}

#[test]
fn run_deletes_the_removed_snapshot_objects() {
    let repo = crate::repo::memory_repo();
    for d in 1..=3 {
        let t = Berlin.with_ymd_and_hms(2026, 1, d, 12, 0, 0).unwrap().fixed_offset();
        repo.save_snapshot(&snapshot(t, "a", &["/x"], &[])).unwrap();
    }
    let list = repo.snapshots().unwrap();
    let p = plan(&list, &policy("last=1"), GroupBy::default(), &Berlin, far_future());
    assert_eq!(run(&repo, &p).unwrap(), ForgetReport { removed: 2, kept: 1 });
    let left = repo.snapshots().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].0, list[2].0);
    // Again: nothing left to delete is not an error.
    assert_eq!(run(&repo, &p).unwrap().removed, 2);
}

proptest! {
    #[test]
    fn newest_is_kept_and_every_snapshot_is_kept_or_removed(
        snaps in proptest::collection::vec((0i64..3 * 365 * 24 * 60, 0usize..2, 0usize..2), 1..60),
        last in 1u32..4,
        daily in proptest::option::of(0u32..8),
        weekly in proptest::option::of(0u32..5),
        monthly in proptest::option::of(0u32..13),
        within in proptest::option::of(0u32..40),
        within_weekly in proptest::option::of(0u32..100),
        group in 0usize..4,
    ) {
        let base = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let list: Vec<_> = snaps
            .iter()
            .enumerate()
            .map(|(n, &(minutes, host, path))| {
                let t = (base + TimeDelta::minutes(minutes)).fixed_offset();
                (id(n), snapshot(t, ["a", "b"][host], &[["/x", "/y"][path]], &[]))
            })
            .collect();
        let p = KeepPolicy {
            last: Some(Keep::N(last)),
            daily: daily.map(Keep::N),
            weekly: weekly.map(Keep::N),
            monthly: monthly.map(Keep::N),
            within: within.map(|d| Duration { days: d, ..Default::default() }),
            within_weekly: within_weekly.map(|d| Duration { days: d, ..Default::default() }),
            ..Default::default()
        };
        let g = ["host,paths", "host", "", "paths"][group].parse().unwrap();
        let plan = plan(&list, &p, g, &Berlin, base + TimeDelta::days(2000));
        let mut seen = BTreeSet::new();
        for grp in &plan.groups {
            prop_assert!(!grp.snapshots.is_empty());
            prop_assert!(grp.snapshots[0].keep, "the newest of {} is removed", grp.key);
            prop_assert!(grp.snapshots.windows(2).all(|w| w[0].time >= w[1].time));
            for e in &grp.snapshots {
                prop_assert_eq!(e.keep, !e.reasons.is_empty());
                prop_assert!(seen.insert(e.id));
            }
        }
        let all: BTreeSet<SnapshotId> = list.iter().map(|(id, _)| *id).collect();
        prop_assert_eq!(&seen, &all);
        let kept: BTreeSet<SnapshotId> = plan.keep.iter().copied().collect();
        let removed: BTreeSet<SnapshotId> = plan.remove.iter().copied().collect();
        prop_assert!(kept.is_disjoint(&removed));
        prop_assert_eq!(&kept.union(&removed).copied().collect::<BTreeSet<_>>(), &all);
        prop_assert_eq!(plan.keep.len() + plan.remove.len(), list.len());
    }
}
