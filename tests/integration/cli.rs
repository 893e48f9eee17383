//! The command line contract: exit codes, one-line errors, refusals that
//! write nothing, and `--help` everywhere.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use crate::common::{self, bare_cmd, output, sha256_hex, Repo};

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

#[test]
fn wrong_password_exits_12_with_one_error_line() {
    let repo = Repo::init();
    for args in [&["snapshots"][..], &["backup", "--stdin-filename", "x"], &["check"], &["key", "list"]] {
        let mut c = repo.cmd();
        c.env("CAIRN_PASSWORD", "not the password").args(args).write_stdin("data");
        let o = output(c);
        o.assert_failed(Some(12), &format!("{args:?} with a wrong password"));
        let line = o.one_error_line("wrong password");
        assert!(line.to_lowercase().contains("password"), "unclear: {line}");
        assert!(o.stdout.is_empty(), "stdout: {}", o.stdout_str());
    }
    assert_eq!(repo.snapshots(), Vec::<Value>::new(), "a backup with a wrong password wrote a snapshot");
}

#[test]
fn missing_repository_exits_10_and_no_repository_option_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    // A path where nothing exists, and an empty directory.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for repo in [tmp.path().join("nothing-here"), empty] {
        let mut c = bare_cmd(tmp.path());
        c.args(["-r", p(&repo), "snapshots"]);
        let o = output(c);
        o.assert_failed(Some(10), &format!("no repository at {}", repo.display()));
        let line = o.one_error_line("no repository");
        assert!(line.contains(p(&repo)), "the error does not name the location: {line}");
    }
    assert!(!tmp.path().join("nothing-here").exists(), "opening a missing repository created it");

    let mut c = bare_cmd(tmp.path());
    c.args(["snapshots"]);
    let o = output(c);
    o.assert_failed(Some(1), "no -r");
    let line = o.one_error_line("no -r");
    assert!(line.contains("CAIRN_REPOSITORY") || line.contains("--repo"), "unclear: {line}");
}

#[test]
fn failing_stdin_command_reports_status_and_stderr_tail_and_writes_no_snapshot() {
    let repo = Repo::init();
    let script = "echo partial; echo \"pg_dump: connection refused\" >&2; exit 2";
    let o = repo.out(&["backup", "--stdin-filename", "db.sql", "--stdin-from-command", "--", "sh", "-c", script]);
    o.assert_failed(None, "failing command");
    let errors: Vec<&str> = o.stderr_lines().into_iter().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line:\n{}", o.stderr);
    let e = errors[0];
    assert!(e.contains("status 2"), "the error does not give the exit status: {e}");
    assert!(e.contains("connection refused"), "the error does not quote the command's stderr: {e}");
    assert_eq!(repo.snapshots(), Vec::<Value>::new(), "a failed command produced a snapshot");

    // Killed by a signal is a failure too.
    let o = repo.out(&["backup", "--stdin-filename", "db.sql", "--stdin-from-command", "--", "sh", "-c", "kill -9 $$"]);
    o.assert_failed(None, "killed command");
    assert!(o.stderr.contains("signal"), "{}", o.stderr);
    // So is a command that does not exist.
    let o = repo.out(&["backup", "--stdin-filename", "db.sql", "--stdin-from-command", "--", "/nonexistent/pg_dump"]);
    o.assert_failed(None, "missing command");
    o.one_error_line("missing command");
    assert_eq!(repo.snapshots(), Vec::<Value>::new());
}

#[test]
fn empty_stream_is_refused_unless_allow_empty() {
    let repo = Repo::init();
    let o = {
        let mut c = repo.cmd();
        c.args(["backup", "--stdin-filename", "empty.sql"]).write_stdin(Vec::new());
        output(c)
    };
    o.assert_failed(None, "empty stdin");
    let line = o.one_error_line("empty stdin");
    assert!(line.contains("empty"), "unclear: {line}");
    let o = repo.out(&["backup", "--stdin-filename", "empty.sql", "--stdin-from-command", "--", "true"]);
    o.assert_failed(None, "empty command output");
    assert_eq!(repo.snapshots(), Vec::<Value>::new(), "an empty stream became a snapshot");

    let s = repo.backup_json(&["--stdin-filename", "empty.sql", "--allow-empty"], Some(b""));
    assert_eq!(s["total_bytes_processed"], 0);
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["stream"]["size"], 0);
    assert_eq!(snaps[0]["stream"]["sha256"], sha256_hex(b""));
    assert_eq!(repo.dump("latest", "empty.sql"), b"");
}

#[test]
fn unreadable_file_gives_exit_3_and_a_partial_snapshot_with_the_rest() {
    let repo = Repo::uninit();
    let Some(mut init) = repo.cmd_as_nobody() else {
        eprintln!("skipping: needs root and setpriv to make a file unreadable to cairn");
        return;
    };
    init.arg("init");
    let o = output(init);
    assert_eq!(o.code, Some(0), "init as nobody failed:\n{}", o.stderr);
    let src = repo.dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"readable a").unwrap();
    std::fs::write(src.join("sub/b.txt"), b"readable b").unwrap();
    std::fs::write(src.join("secret"), b"nobody may read this").unwrap();
    std::fs::set_permissions(src.join("secret"), std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::create_dir(src.join("closed")).unwrap();
    std::fs::write(src.join("closed/inside"), b"x").unwrap();
    std::fs::set_permissions(src.join("closed"), std::fs::Permissions::from_mode(0o000)).unwrap();

    let mut c = repo.cmd_as_nobody().unwrap();
    c.args(["backup", "--json", p(&src)]);
    let o = output(c);
    o.assert_no_panic("partial backup");
    assert_eq!(o.code, Some(3), "exit code of a backup with an unreadable file; stderr:\n{}", o.stderr);
    assert!(o.stderr.contains("secret"), "stderr does not name the unreadable file:\n{}", o.stderr);
    assert!(o.stderr.contains("closed"), "stderr does not name the unreadable directory:\n{}", o.stderr);
    let summary: Value = serde_json::from_slice(&o.stdout).expect("backup --json");
    assert_eq!(summary["partial"], true, "{summary}");
    assert_eq!(summary["errors"].as_array().map(Vec::len), Some(2), "{summary}");

    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["partial"], true);
    let listed = repo.run(&["ls", "latest", p(&src)]);
    let rel: Vec<&str> = listed.lines().map(|l| l.strip_prefix(p(&src)).unwrap_or(l)).collect();
    assert_eq!(rel, ["", "/a.txt", "/sub", "/sub/b.txt"], "listing:\n{listed}");
    assert_eq!(repo.dump("latest", &format!("{}/sub/b.txt", p(&src))), b"readable b");
}

#[test]
fn init_twice_fails_and_cat_shows_config_and_snapshots() {
    let repo = Repo::init();
    let keys_before = repo.objects("keys");
    for pw in [common::PASSWORD, "another password"] {
        let mut c = repo.cmd();
        c.env("CAIRN_PASSWORD", pw).arg("init");
        let o = output(c);
        o.assert_failed(Some(1), "second init");
        let line = o.one_error_line("second init");
        assert!(line.contains("already"), "unclear: {line}");
    }
    assert_eq!(repo.objects("keys"), keys_before, "a refused init changed the keys");

    let config = repo.json(&["cat", "config"]);
    let ch = &config["chunker"];
    for f in ["min_size", "avg_size", "max_size"] {
        assert!(ch[f].as_u64().is_some_and(|v| v > 0), "cat config: chunker.{f} missing: {config}");
    }
    assert!(ch["min_size"].as_u64() <= ch["avg_size"].as_u64() && ch["avg_size"].as_u64() <= ch["max_size"].as_u64());

    let s = repo.backup_json(&["--stdin-filename", "f"], Some(b"cat me"));
    let listed = &repo.snapshots()[0];
    for spec in ["latest", s["short_id"].as_str().unwrap(), s["snapshot_id"].as_str().unwrap()] {
        let cat = repo.json(&["cat", "snapshot", spec]);
        assert_eq!(cat["tree"], listed["tree"], "cat snapshot {spec}: {cat}");
        assert_eq!(cat["hostname"], listed["hostname"]);
        assert_eq!(cat["stream"]["sha256"], sha256_hex(b"cat me"));
    }
    let o = repo.out(&["cat", "snapshot"]);
    o.assert_failed(Some(1), "cat snapshot without an id");
    o.one_error_line("cat snapshot without an id");
    let o = repo.out(&["cat", "nonsense"]);
    o.assert_failed(Some(1), "cat nonsense");
    o.one_error_line("cat nonsense");
}

#[test]
fn unlock_without_locks_removes_none_and_backup_leaves_no_lock() {
    let repo = Repo::init();
    assert_eq!(repo.run(&["unlock"]).trim(), "removed 0 lock(s)");
    repo.backup_json(&["--stdin-filename", "f"], Some(b"x"));
    assert_eq!(repo.objects("locks"), Vec::<std::path::PathBuf>::new(), "backup left its lock behind");
    assert_eq!(repo.run(&["unlock", "--remove-all"]).trim(), "removed 0 lock(s)");
}

#[test]
fn help_of_every_subcommand_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let subs: &[&[&str]] = &[
        &[],
        &["init"],
        &["backup"],
        &["snapshots"],
        &["ls"],
        &["restore"],
        &["dump"],
        &["cat"],
        &["key"],
        &["key", "list"],
        &["key", "add"],
        &["key", "remove"],
        &["key", "passwd"],
        &["unlock"],
        &["check"],
    ];
    for sub in subs {
        let mut c = bare_cmd(tmp.path());
        c.args(*sub).arg("--help");
        let o = output(c);
        assert_eq!(o.code, Some(0), "{sub:?} --help: {}", o.stderr);
        assert!(o.stdout_str().contains("Usage:"), "{sub:?} --help:\n{}", o.stdout_str());
        assert!(o.stderr.is_empty(), "{sub:?} --help wrote to stderr: {}", o.stderr);
    }
    let mut c = bare_cmd(tmp.path());
    c.arg("--help");
    let top = output(c).stdout_str();
    for name in ["init", "backup", "snapshots", "ls", "restore", "dump", "cat", "key", "unlock", "check"] {
        assert!(top.lines().any(|l| l.trim_start().starts_with(name)), "--help does not list {name}:\n{top}");
    }
    // An unknown subcommand is a usage error, not a success.
    let mut c = bare_cmd(tmp.path());
    c.arg("frobnicate");
    assert_eq!(output(c).code, Some(cairn::error::EXIT_USAGE));
}

#[test]
fn password_file_uses_its_first_line() {
    let repo = Repo::init();
    let f = repo.dir.path().join("pw");
    std::fs::write(&f, format!("{}\nsecond line, e.g. a comment\n", common::PASSWORD)).unwrap();
    let mut c = repo.cmd();
    c.env_remove("CAIRN_PASSWORD").args(["--password-file", p(&f), "snapshots", "--json"]);
    let o = output(c);
    assert_eq!(o.code, Some(0), "--password-file with two lines:\n{}", o.stderr);
}

/// `cairn dump … | head -c 10` and `cairn ls -l … | head -1`: the reader
/// leaving early ends cairn quietly, with 141 (128 + SIGPIPE) like a shell
/// tool, and no `error:` line. (SIGPIPE itself stays ignored, so that a
/// storage server that drops its connection gives an error, not a silent
/// death.)
#[test]
fn closed_stdout_pipe_ends_quietly_with_141() {
    use std::io::Read;
    let repo = Repo::init();
    repo.backup_json(&["--stdin-filename", "big.bin"], Some(&common::noise(8 << 20, 5)));
    for args in [&["dump", "latest", "big.bin"][..], &["ls", "--long", "latest"]] {
        let mut c = repo.std_cmd_via(repo.url());
        c.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let mut kid = c.spawn().expect("spawn cairn");
        let mut first = [0u8; 10];
        kid.stdout.take().expect("stdout").read_exact(&mut first).expect("read the first bytes");
        // The pipe's read end is closed here: cairn's next write fails.
        let out = kid.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if args[0] == "dump" {
            assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
        } else {
            assert!(matches!(out.status.code(), Some(0 | 141)), "{args:?}: {:?} {stderr}", out.status);
        }
        assert!(!stderr.contains("error"), "{args:?} printed an error: {stderr}");
    }
}
