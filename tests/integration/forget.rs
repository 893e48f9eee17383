//! `forget`: retention policies on backdated snapshots (`backup --time`),
//! dry runs, refusals, and snapshots named by id.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::{bare_cmd, output, Repo};

/// A repository and a small directory to back up.
fn setup() -> (Repo, String) {
    let repo = Repo::init();
    let src = repo.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"some data").unwrap();
    let src = src.to_str().expect("utf-8 path").to_string();
    (repo, src)
}

/// Backs up `src` as of `time` (local "YYYY-MM-DD HH:MM:SS") for `host`;
/// returns the snapshot id.
fn backup_at(repo: &Repo, src: &str, time: &str, host: &str) -> String {
    let s = repo.backup_json(&["--time", time, "--host", host, src], None);
    s["snapshot_id"].as_str().expect("snapshot_id").to_string()
}

fn snapshot_ids(repo: &Repo) -> BTreeSet<String> {
    repo.snapshots().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
}

fn ids(v: &Value) -> BTreeSet<String> {
    v.as_array().expect("array").iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

#[test]
fn dry_run_json_reports_the_plan_and_removes_nothing() {
    let (repo, src) = setup();
    let d1 = backup_at(&repo, &src, "2026-01-01 12:00:00", "h");
    let d2 = backup_at(&repo, &src, "2026-01-02 12:00:00", "h");
    let d3_early = backup_at(&repo, &src, "2026-01-03 09:00:00", "h");
    let d3_late = backup_at(&repo, &src, "2026-01-03 18:00:00", "h");
    let before = repo.list("snapshots");

    let v = repo.json(&["forget", "--keep-daily", "2", "--dry-run", "--json"]);
    assert_eq!(v["dry_run"], true);
    let plan = &v["plan"];
    assert_eq!(ids(&plan["keep"]), BTreeSet::from([d3_late.clone(), d2.clone()]), "{plan:#}");
    assert_eq!(ids(&plan["remove"]), BTreeSet::from([d1.clone(), d3_early.clone()]), "{plan:#}");
    let groups = plan["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0]["key"]["host"], "h");
    assert_eq!(groups[0]["key"]["paths"], serde_json::json!([src]));
    let entries = groups[0]["snapshots"].as_array().unwrap();
    let order: Vec<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(order, [&d3_late, &d3_early, &d2, &d1], "not newest first");
    assert_eq!(entries[0]["keep"], true);
    assert_eq!(entries[0]["reasons"], serde_json::json!(["daily snapshot"]));
    assert_eq!(entries[1]["keep"], false);
    assert_eq!(entries[1]["reasons"], serde_json::json!([]));

    assert_eq!(repo.list("snapshots"), before, "a dry run changed the repository");
    assert_eq!(snapshot_ids(&repo).len(), 4);

    // The text form says what would happen and changes nothing either.
    let out = repo.run(&["forget", "--keep-daily", "2", "--dry-run"]);
    assert!(out.contains("would remove 2 snapshot(s)"), "{out}");
    assert!(out.contains(&d3_early[..8]) && out.contains("remove"), "{out}");
    assert_eq!(repo.list("snapshots"), before);

    // Without --dry-run the plan is carried out.
    let v = repo.json(&["forget", "--keep-daily", "2", "--json"]);
    assert_eq!(v["dry_run"], false);
    assert_eq!(v["report"]["removed"], 2);
    assert_eq!(snapshot_ids(&repo), BTreeSet::from([d3_late, d2]));
    repo.run(&["check"]);
}

#[test]
fn keep_last_keeps_one_per_host_and_paths() {
    let (repo, src) = setup();
    let other = repo.dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("b.txt"), b"other data").unwrap();
    let other = other.to_str().unwrap().to_string();
    for d in 1..=3 {
        backup_at(&repo, &src, &format!("2026-02-0{d} 10:00:00"), "alpha");
        backup_at(&repo, &src, &format!("2026-02-0{d} 11:00:00"), "beta");
    }
    let alpha_newest = backup_at(&repo, &src, "2026-02-04 10:00:00", "alpha");
    let beta_newest = backup_at(&repo, &src, "2026-02-04 11:00:00", "beta");
    let alpha_other = backup_at(&repo, &other, "2026-01-01 10:00:00", "alpha");
    assert_eq!(snapshot_ids(&repo).len(), 9);

    let out = repo.run(&["forget", "--keep-last", "1"]);
    assert!(out.contains("removed 6 snapshot(s)"), "{out}");
    assert!(out.contains("snapshots of host alpha") && out.contains("snapshots of host beta"), "{out}");
    assert_eq!(snapshot_ids(&repo), BTreeSet::from([alpha_newest.clone(), beta_newest, alpha_other.clone()]));

    // --host: only that host's snapshots are considered.
    let v = repo.json(&["forget", "--keep-last", "1", "--group-by", "host", "--host", "alpha", "--json"]);
    assert_eq!(ids(&v["plan"]["remove"]), BTreeSet::from([alpha_other]));
    assert_eq!(snapshot_ids(&repo).len(), 2);
    assert!(snapshot_ids(&repo).contains(&alpha_newest));
}

#[test]
fn no_policy_is_refused_with_one_error_line() {
    let (repo, src) = setup();
    backup_at(&repo, &src, "2026-01-01 12:00:00", "h");
    backup_at(&repo, &src, "2026-01-02 12:00:00", "h");
    for args in [&["forget"][..], &["forget", "--keep-daily", "0"], &["forget", "--dry-run"]] {
        let o = repo.out(args);
        o.assert_failed(Some(1), &format!("{args:?}"));
        let line = o.one_error_line(&format!("{args:?}"));
        assert!(line.contains("refusing to forget every snapshot") && line.contains("--keep-none"), "{line}");
        assert!(o.stdout.is_empty(), "{}", o.stdout_str());
    }
    assert_eq!(snapshot_ids(&repo).len(), 2);

    // --keep-none removes what the filters select, on purpose.
    backup_at(&repo, &src, "2026-01-03 12:00:00", "other");
    repo.run(&["forget", "--keep-none", "--host", "other"]);
    assert_eq!(snapshot_ids(&repo).len(), 2);
}

#[test]
fn bad_counts_and_durations_are_clear_errors() {
    let (repo, src) = setup();
    backup_at(&repo, &src, "2026-01-01 12:00:00", "h");
    for (args, want) in [
        (&["forget", "--keep-daily", "-1"][..], "must be a non-negative number or 'unlimited'"),
        (&["forget", "--keep-daily", "x"], "must be a non-negative number or 'unlimited'"),
        (&["forget", "--keep-within", "3x"], "unknown unit 'x'"),
        (&["forget", "--keep-within", ""], "empty"),
        (&["forget", "-l", "1", "--group-by", "hostname"], "hostname"),
    ] {
        let o = repo.out(args);
        // Refused by the option's parser: a usage error.
        o.assert_failed(Some(cairn::error::EXIT_USAGE), &format!("{args:?}"));
        let first = o.stderr_lines().first().copied().unwrap_or_default().to_string();
        assert!(first.starts_with("error: ") && first.contains(want), "{args:?}: {}", o.stderr);
        let value = args[args.len() - 1];
        if !value.is_empty() {
            assert!(first.contains(value), "{args:?}: the error does not name the value: {first}");
        }
    }
    assert_eq!(snapshot_ids(&repo).len(), 1);
}

#[test]
fn forget_named_snapshots() {
    let (repo, src) = setup();
    let a = backup_at(&repo, &src, "2026-01-01 12:00:00", "h");
    let b = backup_at(&repo, &src, "2026-01-02 12:00:00", "h");
    let c = backup_at(&repo, &src, "2026-01-03 12:00:00", "h");

    let out = repo.run(&["forget", &a[..8], "--dry-run"]);
    assert!(out.contains(&a[..8]) && out.contains("would remove 1 snapshot(s)"), "{out}");
    assert_eq!(snapshot_ids(&repo).len(), 3);

    let v = repo.json(&["forget", &a[..8], "latest", "--json"]);
    assert_eq!(ids(&v["plan"]["remove"]), BTreeSet::from([a, c]));
    assert_eq!(snapshot_ids(&repo), BTreeSet::from([b]));

    // Ids and a policy do not mix; an unknown id is an error.
    let o = repo.out(&["forget", "abcd", "--keep-last", "1"]);
    o.assert_failed(Some(1), "ids and a policy");
    o.one_error_line("ids and a policy");
    let o = repo.out(&["forget", "0000000000"]);
    o.assert_failed(Some(1), "unknown id");
    assert!(o.one_error_line("unknown id").contains("no snapshot matches"), "{}", o.stderr);
    assert_eq!(snapshot_ids(&repo).len(), 1);
}

#[test]
fn help_lists_forget_and_its_options() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = bare_cmd(tmp.path());
    c.args(["forget", "--help"]);
    let o = output(c);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let help = o.stdout_str();
    for opt in [
        "--keep-last",
        "--keep-yearly",
        "--keep-within-monthly",
        "--keep-tag",
        "--group-by",
        "--keep-none",
        "--dry-run",
    ] {
        assert!(help.contains(opt), "forget --help lacks {opt}:\n{help}");
    }
    let mut c = bare_cmd(tmp.path());
    c.arg("--help");
    let top = output(c).stdout_str();
    assert!(top.lines().any(|l| l.trim_start().starts_with("forget")), "--help does not list forget:\n{top}");
}
