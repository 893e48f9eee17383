//! Habits restic and borg users bring: password files with CRLF, a
//! missing path among several, a lock held by another host, the user
//! recorded without `$USER`, and `init` without a terminal.

use std::path::Path;

use serde_json::Value;

use cairn::crypto::aead::ObjectType;
use cairn::format::lock::Lock;
use cairn::repo::{CacheMode, Repository};

use crate::common::{output, Repo};

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

#[test]
fn password_files_with_crlf_or_trailing_spaces_open_the_repository() {
    let repo = Repo::init();
    let pw = repo.password().to_string();
    let file = repo.dir.path().join("pw");
    for (contents, ok) in [
        (format!("{pw}\r\n"), true),
        (format!("{pw}  \n"), true),
        (format!("{pw}\t \r\n"), true),
        (format!("{pw}\nsecond line\n"), true),
        (format!("{pw}x\r\n"), false),
        (format!(" {pw}\n"), false),
    ] {
        std::fs::write(&file, &contents).unwrap();
        let mut c = repo.cmd();
        c.env_remove("CAIRN_PASSWORD").args(["--password-file", p(&file), "snapshots"]);
        let o = output(c);
        let expected = if ok { 0 } else { 12 };
        assert_eq!(o.code, Some(expected), "password file {contents:?}: {}", o.stderr);
    }
}

#[test]
fn init_without_a_terminal_asks_nothing_and_needs_a_password_source() {
    let repo = Repo::uninit();
    let mut c = repo.cmd();
    c.env_remove("CAIRN_PASSWORD").arg("init").write_stdin("typed\ntyped\n");
    let o = output(c);
    o.assert_failed(Some(1), "init with no password source");
    let line = o.one_error_line("init with no password source");
    assert!(line.contains("no password given"), "{line}");
    assert!(!repo.path().join("config").exists(), "init without a password wrote a config");
    // A password file is read once, with no prompt.
    let file = repo.dir.path().join("pw");
    std::fs::write(&file, format!("{}\r\n", repo.password())).unwrap();
    let mut c = repo.cmd();
    c.env_remove("CAIRN_PASSWORD").args(["--password-file", p(&file), "init"]);
    let o = output(c);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(!o.stderr.contains("password"), "a prompt on a pipe: {}", o.stderr);
    assert_eq!(repo.run(&["snapshots", "--json"]).trim(), "[]");
}

#[test]
fn a_missing_path_is_skipped_with_a_warning_and_exit_3() {
    let repo = Repo::init();
    let a = repo.dir.path().join("a");
    std::fs::create_dir(&a).unwrap();
    std::fs::write(a.join("f"), b"kept").unwrap();
    let missing = repo.dir.path().join("not-there");
    let o = repo.out(&["backup", "--json", p(&a), p(&missing)]);
    o.assert_no_panic("backup with a missing path");
    assert_eq!(o.code, Some(3), "exit code with one missing path:\n{}", o.stderr);
    assert!(
        o.stderr.lines().any(|l| l.starts_with("warning: ") && l.contains(p(&missing)) && l.contains("no such file")),
        "no warning naming the missing path:\n{}",
        o.stderr
    );
    let summary: Value = serde_json::from_slice(&o.stdout).expect("backup --json");
    assert_eq!(summary["partial"], true, "{summary}");
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["paths"], serde_json::json!([p(&a)]), "{}", snaps[0]);
    assert_eq!(repo.dump("latest", &format!("{}/f", p(&a))), b"kept");

    // Every path missing: an error, and no snapshot.
    let o = repo.out(&["backup", p(&missing), p(&repo.dir.path().join("gone too"))]);
    o.assert_failed(Some(1), "backup of missing paths only");
    let line = o.one_error_line("backup of missing paths only");
    assert!(line.contains("nothing to back up") && line.contains(p(&missing)), "{line}");
    assert_eq!(repo.snapshots().len(), 1, "a backup of nothing wrote a snapshot");
}

#[test]
fn a_lock_of_another_host_says_what_clears_it() {
    let repo = Repo::init();
    let r = Repository::open(repo.backend(), repo.password().as_bytes(), CacheMode::Memory).expect("open");
    let time = chrono::Utc::now() - chrono::Duration::minutes(10);
    let lock = Lock {
        time: time.to_rfc3339(),
        exclusive: true,
        hostname: "other-host.example".into(),
        username: "someone".into(),
        pid: 4242,
        operation: "repair".into(),
        kind: "exclusive".into(),
        ..Default::default()
    };
    r.save_object("locks", ObjectType::Lock, &lock.encode()).expect("write the lock");
    let o = repo.out(&["snapshots"]);
    assert_eq!(o.code, Some(0), "snapshots takes no lock: {}", o.stderr);
    let o = repo.out(&["backup", "--stdin-filename", "x"]);
    o.assert_failed(Some(11), "backup beside another host's exclusive lock");
    let line = o.one_error_line("locked");
    assert!(line.contains("other-host.example") && line.contains("4242"), "{line}");
    assert!(line.contains("`cairn unlock --remove-all`"), "does not say how to remove it: {line}");
    let stale_at = (time + chrono::Duration::minutes(30)).format("%Y-%m-%d %H:%M:%S UTC").to_string();
    assert!(line.contains(&format!("stale at {stale_at}")), "does not say when it goes stale ({stale_at}): {line}");
    // What it says works.
    assert_eq!(repo.run(&["unlock"]).trim(), "removed 0 lock(s)");
    assert_eq!(repo.run(&["unlock", "--remove-all"]).trim(), "removed 1 lock(s)");
    let mut c = repo.cmd();
    c.args(["backup", "--stdin-filename", "x"]).write_stdin("data");
    assert_eq!(output(c).code, Some(0));
}

#[test]
fn the_user_comes_from_the_uid_when_user_is_unset() {
    let repo = Repo::init();
    let out = std::process::Command::new("id").arg("-un").output().expect("id");
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success() && !name.is_empty(), "no name for this uid");
    let mut c = repo.cmd();
    c.env_remove("USER").env_remove("LOGNAME").args(["backup", "--stdin-filename", "x"]).write_stdin("data");
    assert_eq!(output(c).code, Some(0));
    let mut c = repo.cmd();
    c.env("USER", "from-env").args(["backup", "--stdin-filename", "y"]).write_stdin("data");
    assert_eq!(output(c).code, Some(0));
    let users: Vec<Value> = repo.snapshots().iter().map(|s| s["username"].clone()).collect();
    assert_eq!(users, [Value::from(name), Value::from("from-env")]);
}
