//! Exit codes a wrapper can act on (README "Exit codes", `cairn --help`):
//! 75 when the storage stays unreachable after the retries, 4 when the
//! repository holds damaged data, 64 for a command line that does not
//! parse; and storage failures told in one sentence.

use std::path::Path;

use serde_json::Value;

use crate::common::{self, bare_cmd, noise, output, Out, Repo};

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

/// A TCP port on 127.0.0.1 that nothing listens on (bound, then freed).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
    l.local_addr().expect("address").port()
}

#[test]
fn unreachable_s3_exits_75_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("s3:http://127.0.0.1:{}/bucket/repo", closed_port());
    for args in [&["snapshots"][..], &["init"], &["backup", "--stdin-filename", "x"]] {
        let mut c = bare_cmd(tmp.path());
        c.env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .args(["-r", &url, "-o", "s3.max-retries=1", "-o", "s3.retry-timeout=5"])
            .args(args)
            .write_stdin("data");
        let o = output(c);
        let what = format!("{args:?} against a closed port");
        o.assert_failed(Some(75), &what);
        let line = o.one_error_line(&what);
        assert!(line.contains("cannot reach s3:http://127.0.0.1:"), "{what}: unclear: {line}");
        assert!(line.contains("connection refused"), "{what}: no reason: {line}");
        assert!(!line.contains("os error") && !line.contains("Generic"), "{what}: raw error text: {line}");
    }
}

/// A local write the filesystem refuses (here a file size limit, EFBIG:
/// the same path as a full disk's ENOSPC, which needs root to stage) is
/// one sentence naming the object and the repository, exit 1, and no
/// snapshot.
#[test]
fn a_refused_local_write_is_one_sentence_naming_object_and_repository() {
    let repo = Repo::init();
    let src = repo.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("big"), noise(4 << 20, 7)).unwrap();
    let cmd = repo.std_cmd_via(repo.url());
    // The limit is 1024 blocks: 512 KiB or 1 MiB, by the shell's unit.
    let mut c = assert_cmd::Command::new("sh");
    c.env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.args(["-c", "ulimit -f 1024 && exec \"$@\"", "sh"]).arg(cmd.get_program()).args(cmd.get_args());
    c.args(["--no-cache", "backup", p(&src)]);
    let o = output(c);
    o.assert_failed(Some(1), "backup over the file size limit");
    let line = o.one_error_line("backup over the file size limit");
    let expect = format!(" on {}: file too large", repo.url());
    assert!(line.contains("cannot write data/") && line.contains(&expect), "unclear: {line}");
    assert!(!line.contains("os error") && !line.contains("Generic"), "raw error text: {line}");
    assert_eq!(repo.snapshots(), Vec::<Value>::new(), "a failed backup wrote a snapshot");
}

/// ENOSPC itself, on the one target a test can fill without root:
/// `dump` into /dev/full.
#[test]
fn dump_into_a_full_device_says_so_in_words() {
    if !Path::new("/dev/full").exists() {
        eprintln!("skipping: no /dev/full");
        return;
    }
    let repo = Repo::init();
    repo.backup_json(&["--stdin-filename", "db.sql"], Some(&noise(256 << 10, 3)));
    let cmd = repo.std_cmd_via(repo.url());
    let mut c = assert_cmd::Command::new("sh");
    c.env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c.args(["-c", "exec \"$@\" > /dev/full", "sh"]).arg(cmd.get_program()).args(cmd.get_args());
    c.args(["dump", "latest", "db.sql"]);
    let o = output(c);
    o.assert_failed(Some(1), "dump into /dev/full");
    let line = o.one_error_line("dump into /dev/full");
    assert!(line.ends_with(": no space left on device"), "unclear: {line}");
}

#[test]
fn damage_found_by_check_exits_4() {
    let repo = Repo::init();
    repo.backup_json(&["--stdin-filename", "db.sql"], Some(&noise(1 << 20, 5)));
    assert_eq!(repo.out(&["check", "--read-data"]).code, Some(0));
    common::flip_middle(&common::largest(&repo.packs()));
    let o = repo.out(&["check", "--read-data"]);
    o.assert_failed(Some(4), "check of a damaged pack");
    assert!(o.stderr.contains("check found"), "{}", o.stderr);
    // Data that fails its verification on the way out: the same code.
    let o = repo.out(&["dump", "latest", "db.sql"]);
    o.assert_failed(Some(4), "dump of damaged data");
}

#[test]
fn usage_errors_exit_64_in_at_most_three_lines() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [&["backup", "--bogus"][..], &["restore", "latest"], &["frobnicate"], &["key", "add", "--lable", "x"]] {
        let mut c = bare_cmd(tmp.path());
        c.args(args);
        let o: Out = output(c);
        let what = format!("cairn {args:?}");
        o.assert_failed(Some(64), &what);
        let lines = o.stderr_lines();
        assert!((2..=3).contains(&lines.len()), "{what}: {} lines:\n{}", lines.len(), o.stderr);
        assert!(lines[0].starts_with("error: "), "{what}:\n{}", o.stderr);
        assert!(lines.last().is_some_and(|l| l.contains("--help")), "{what}: no hint:\n{}", o.stderr);
        assert!(o.stdout.is_empty(), "{what}: {}", o.stdout_str());
    }
    // --help and --version are not errors; --help lists the exit codes.
    let mut c = bare_cmd(tmp.path());
    c.arg("--help");
    let o = output(c);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let help = o.stdout_str();
    for code in ["  3 ", "  4 ", "  10 ", "  11 ", "  12 ", "  64 ", "  75 "] {
        assert!(help.contains(code), "--help does not list exit code {code:?}:\n{help}");
    }
}
