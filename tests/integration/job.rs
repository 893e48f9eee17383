//! The config file and `cairn run`: sources, hooks, forget and check,
//! notifications to a loopback receiver, the run state, config errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::common::*;

/// A test's job: a local repository named only in the config file.
pub(crate) struct Job {
    pub(crate) repo: Repo,
    pub(crate) config: PathBuf,
}

impl Job {
    /// `body` goes after `[repository]`; `{dir}` in it is the test's
    /// temporary directory.
    pub(crate) fn new(body: &str) -> Job {
        let repo = Repo::init();
        let d = repo.dir.path();
        std::fs::write(d.join("pw"), PASSWORD).unwrap();
        let config = d.join("db1.toml");
        let text = format!(
            "[repository]\nrepository = \"{}\"\npassword-file = \"{}\"\n\n{}",
            repo.url(),
            d.join("pw").display(),
            body.replace("{dir}", &d.display().to_string())
        );
        std::fs::write(&config, text).unwrap();
        Job { repo, config }
    }

    pub(crate) fn dir(&self) -> &Path {
        self.repo.dir.path()
    }

    /// `cairn --config FILE ARGS`, no -r, no password in the environment.
    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_with(&self.config, args)
    }

    /// The same with another config file.
    pub(crate) fn cmd_with(&self, config: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("cairn"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir())
            .env("XDG_STATE_HOME", self.dir().join("state"))
            .env("CAIRN_CACHE_DIR", self.repo.cache())
            .env("CAIRN_INSECURE_TEST_KDF", "1")
            .arg("--config")
            .arg(config)
            .args(args);
        c
    }

    pub(crate) fn out(&self, args: &[&str]) -> (i32, String, String) {
        let o = self.cmd(args).output().unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    pub(crate) fn state(&self) -> serde_json::Value {
        let p = self.dir().join("state/cairn/db1.json");
        serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
    }

    pub(crate) fn snapshots(&self) -> Vec<serde_json::Value> {
        let (code, out, err) = self.out(&["snapshots", "--json"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    }
}

pub(crate) fn data_dir(d: &Path) -> PathBuf {
    let data = d.join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("a.txt"), "alpha").unwrap();
    std::fs::write(data.join("sub/b.bin"), noise(200_000, 1)).unwrap();
    std::fs::write(data.join("skip.tmp"), "excluded").unwrap();
    data
}

const TWO_SOURCES: &str = r#"
[backup]
host = "db1"
tags = ["nightly"]

[[backup.snapshots]]
name = "files"
sources = ["{dir}/data"]
exclude = ["*.tmp"]

[[backup.snapshots]]
command = ["sh", "-c", "echo 'create table t (x int);'; seq 1 20000"]
stdin-filename = "app.sql"

[forget]
keep-last = 2
prune = true

[check]
read-data = true

[hooks]
run-before = ["echo \"before $CAIRN_HOOK\" >> {dir}/hooks.log"]
run-after = ["echo after >> {dir}/hooks.log"]
run-failed = ["echo \"failed: $CAIRN_ERROR\" >> {dir}/hooks.log"]
run-finally = ["echo finally >> {dir}/hooks.log"]
"#;

#[test]
fn run_backs_up_every_source_then_forgets_checks_and_records_its_state() {
    let job = Job::new(TWO_SOURCES);
    data_dir(job.dir());
    for night in 0..3 {
        let (code, out, err) = job.out(&["run"]);
        assert_eq!(code, 0, "night {night}: {out}\n{err}");
        assert!(out.contains("files: snapshot ") && out.contains("app.sql: snapshot "), "{out}");
        assert!(out.contains("run succeeded") && out.contains("2 of 2 source(s) saved"), "{out}");
    }
    let hooks = std::fs::read_to_string(job.dir().join("hooks.log")).unwrap();
    assert_eq!(hooks, "before run-before\nafter\nfinally\n".repeat(3));
    // keep-last 2 per source (host, paths), after each run's forget.
    let snaps = job.snapshots();
    assert_eq!(snaps.len(), 4, "{snaps:?}");
    for s in &snaps {
        assert_eq!(s["hostname"], "db1");
        assert_eq!(s["tags"], serde_json::json!(["nightly"]));
    }
    // The tree source left the excluded file out; the stream restores exactly.
    let restored = job.dir().join("restored");
    let (code, _, err) = job.out(&[
        "restore",
        "latest",
        "--path",
        &format!("{}/data", job.dir().display()),
        "--target",
        restored.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let back = restored.join(job.dir().strip_prefix("/").unwrap()).join("data");
    assert_eq!(std::fs::read(back.join("sub/b.bin")).unwrap(), noise(200_000, 1));
    assert!(!back.join("skip.tmp").exists());
    let (code, dump, err) = job.out(&["dump", "latest", "app.sql"]);
    assert_eq!(code, 0, "{err}");
    assert!(dump.starts_with("create table t (x int);\n1\n2\n") && dump.ends_with("20000\n"));

    let st = job.state();
    assert_eq!(st["success"], true);
    assert_eq!(st["check_success"], true);
    assert_eq!(st["sources"].as_array().unwrap().len(), 2);
    assert_eq!(st["sources"][0]["name"], "files");
    assert!(st["sources"][0]["snapshot"].as_str().unwrap().len() == 64);

    // --json: one object on stdout.
    let (code, out, err) = job.out(&["run", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["success"], true);
    assert_eq!(v["sources"][1]["name"], "app.sql");
    // Its tree names the stream's chunks (4 KiB on average, 32 bytes of id
    // each; their number depends on the repository's secret seed) and its
    // time, so it is stored again: a few percent of the stream, no data.
    let added = v["sources"][1]["data_added"].as_u64().unwrap();
    assert!(added < dump.len() as u64 / 20, "an unchanged stream of {} bytes added {added}: {v}", dump.len());
}

#[test]
fn a_failing_source_fails_the_run_and_the_others_are_still_saved() {
    let job = Job::new(&TWO_SOURCES.replace("seq 1 20000\"]", "seq 1 5; exit 3\"]"));
    data_dir(job.dir());
    let (code, out, err) = job.out(&["run"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("files: snapshot ") && out.contains("app.sql: FAILED: command"), "{out}");
    assert!(out.contains("run FAILED") && out.contains("1 of 2 source(s) saved"), "{out}");
    let hooks = std::fs::read_to_string(job.dir().join("hooks.log")).unwrap();
    let lines: Vec<&str> = hooks.lines().collect();
    assert_eq!(lines[0], "before run-before");
    assert!(lines[1].starts_with("failed: app.sql: command ") && lines[1].contains("exited with status 3"), "{hooks}");
    assert_eq!(lines[2], "finally");
    assert_eq!(lines.len(), 3, "{hooks}");
    let snaps = job.snapshots();
    assert_eq!(snaps.len(), 1, "the failed stream stored no snapshot");
    let st = job.state();
    assert_eq!(st["success"], false);
    assert_eq!(st["sources"][1]["success"], false);
    assert!(st["errors"][0].as_str().unwrap().starts_with("app.sql: "), "{st}");
}

#[test]
fn a_failing_run_before_hook_backs_up_nothing() {
    let job = Job::new(&TWO_SOURCES.replace("run-before = [\"echo", "run-before = [\"exit 9\", \"echo"));
    data_dir(job.dir());
    let (code, out, _) = job.out(&["run"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("run-before hook `exit 9` exited with status 9; nothing was backed up"), "{out}");
    assert!(job.snapshots().is_empty());
    let hooks = std::fs::read_to_string(job.dir().join("hooks.log")).unwrap();
    assert!(hooks.starts_with("failed: run-before: ") && hooks.ends_with("finally\n"), "{hooks}");
}

#[test]
fn forget_in_a_run_keeps_other_hosts_snapshots() {
    let job = Job::new(TWO_SOURCES);
    let data = data_dir(job.dir());
    // Another host backs up the same path into the shared repository.
    for _ in 0..3 {
        job.repo.run(&["backup", "--host", "db2", data.to_str().unwrap()]);
    }
    for _ in 0..3 {
        let (code, out, err) = job.out(&["run"]);
        assert_eq!(code, 0, "{out}\n{err}");
    }
    let snaps = job.snapshots();
    assert_eq!(snaps.iter().filter(|s| s["hostname"] == "db2").count(), 3);
    assert_eq!(snaps.iter().filter(|s| s["hostname"] == "db1").count(), 4);
}

#[test]
fn dry_run_prints_the_plan_and_runs_nothing() {
    let job = Job::new(TWO_SOURCES);
    data_dir(job.dir());
    let (code, out, err) = job.out(&["run", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    let d = job.dir().display().to_string();
    assert!(
        out.contains(&format!("source files: cairn backup '--exclude=*.tmp' --host=db1 --tag=nightly {d}/data")),
        "{out}"
    );
    assert!(out.contains("source app.sql: cairn backup --host=db1 --tag=nightly --stdin-filename=app.sql --stdin-from-command -- sh -c"), "{out}");
    assert!(out.contains("cairn forget --keep-last=2 --prune --host=db1"), "{out}");
    assert!(out.contains("cairn check --read-data"), "{out}");
    assert!(!job.dir().join("hooks.log").exists());
    assert!(job.snapshots().is_empty());
    // --source picks one; an unknown one is an error naming the sources.
    let (code, out, _) = job.out(&["run", "-n", "--source", "files"]);
    assert_eq!(code, 0);
    assert!(out.contains("source files:") && !out.contains("source app.sql:"), "{out}");
    let (code, _, err) = job.out(&["run", "--source", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no source named \"nope\"") && err.contains("files, app.sql"), "{err}");
}

#[test]
fn config_flags_apply_to_every_command_and_the_command_line_wins() {
    let job = Job::new(TWO_SOURCES);
    let data = data_dir(job.dir());
    // [repository] alone opens the repository for any command.
    let (code, _, err) = job.out(&["backup", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // [backup]'s host and tags apply to `cairn backup`; the command line wins.
    let (code, _, err) = job.out(&["backup", "--host", "other", data.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let snaps = job.snapshots();
    assert_eq!(snaps[0]["hostname"], "db1");
    assert_eq!(snaps[0]["tags"], serde_json::json!(["nightly"]));
    assert_eq!(snaps[1]["hostname"], "other");
    // -r on the command line beats [repository].
    let other = Repo::init();
    let mut c = job.cmd(&["snapshots", "--json"]);
    c.arg("-r").arg(other.url()).env("CAIRN_PASSWORD", PASSWORD);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[]");
    // -P NAME finds ~/.config/cairn/NAME.toml.
    let prof = job.dir().join(".config/cairn");
    std::fs::create_dir_all(&prof).unwrap();
    std::fs::copy(&job.config, prof.join("nightly.toml")).unwrap();
    let mut c = Command::new(assert_cmd::cargo::cargo_bin("cairn"));
    c.env_clear().env("HOME", job.dir()).env("CAIRN_CACHE_DIR", job.repo.cache()).env("CAIRN_INSECURE_TEST_KDF", "1");
    let o = c.args(["-P", "nightly", "snapshots", "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.len(), 2);
}

#[test]
fn config_mistakes_are_one_line_naming_the_key_and_the_file() {
    let cases: &[(&str, &str, i32)] = &[
        ("[forget]\nkeep-dayly = 3\n", "unknown key `keep-dayly` in [forget]", 1),
        ("[forgett]\nkeep-daily = 3\n", "unknown section [forgett]", 1),
        ("[forget]\nkeep-daily = \"x\"\n", "invalid value 'x' for '--keep-daily <N>'", 64),
        ("[hooks]\nbefore = [\"x\"]\n", "unknown field `before`", 1),
        (
            "[[backup.snapshots]]\nsources = [\"/x\"]\nexclud = [\"y\"]\n",
            "unknown key `exclud` in [backup.snapshots]",
            1,
        ),
        ("[[backup.snapshots]]\nsources = [\"x\"]\n", "\"x\" is not an absolute path", 1),
        ("[forget\n", "TOML parse error", 1),
        ("[check]\nread-data = \"yes\"\n", "`read-data` is a switch", 1),
    ];
    for (body, want, want_code) in cases {
        let job = Job::new(body);
        let (code, out, err) = job.out(&["forget", "--keep-last", "1"]);
        assert_eq!(code, *want_code, "{body}: {out}{err}");
        assert!(err.starts_with("error: config ") && err.contains("db1.toml"), "{body}: {err}");
        assert!(err.contains(want), "{body}: want {want:?} in {err}");
        assert_eq!(err.trim_end().lines().count(), if *want_code == 64 { 2 } else { 1 }, "{body}: {err}");
    }
    let job = Job::new("");
    let (code, _, err) = job.out(&["run"]);
    assert_eq!(code, 1);
    assert!(err.contains("no sources: add [[backup.snapshots]] entries"), "{err}");
}

/// Requests a receiver got: (request line, body).
pub(crate) type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A loopback HTTP receiver: records (request line, body), answers 200.
pub(crate) fn receiver() -> (String, Received) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let mut len = 0;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let mut s = s;
            let _ = write!(s, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nOK");
            g.lock().unwrap().push((line.trim().to_string(), String::from_utf8_lossy(&body).into_owned()));
        }
    });
    (url, got)
}

#[test]
fn notifications_reach_healthchecks_and_a_webhook() {
    let (url, got) = receiver();
    let body = format!("{TWO_SOURCES}\n[notify]\nhealthchecks = \"{url}/ping/uuid\"\nwebhook = \"{url}/hook\"\n");
    let job = Job::new(&body);
    data_dir(job.dir());
    let (code, out, err) = job.out(&["run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    {
        let g = got.lock().unwrap();
        let lines: Vec<&str> = g.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(lines, ["POST /ping/uuid/start HTTP/1.1", "POST /ping/uuid HTTP/1.1", "POST /hook HTTP/1.1"]);
        assert!(g[1].1.contains("files: snapshot ") && g[1].1.contains("run succeeded"), "{}", g[1].1);
        let v: serde_json::Value = serde_json::from_str(&g[2].1).unwrap();
        assert_eq!(v["success"], true);
        assert_eq!(v["sources"][0]["name"], "files");
    }
    got.lock().unwrap().clear();
    // A failing source: /fail with the log's tail, the webhook says so.
    std::fs::write(&job.config, std::fs::read_to_string(&job.config).unwrap().replace("seq 1 20000", "exit 4"))
        .unwrap();
    let (code, _, _) = job.out(&["run"]);
    assert_eq!(code, 1);
    let g = got.lock().unwrap();
    assert_eq!(g[1].0, "POST /ping/uuid/fail HTTP/1.1");
    assert!(g[1].1.contains("app.sql: FAILED: command") && g[1].1.contains("run FAILED"), "{}", g[1].1);
    let v: serde_json::Value = serde_json::from_str(&g[2].1).unwrap();
    assert_eq!(v["success"], false);
    assert_eq!(v["sources"][1]["success"], false);
}

#[test]
fn an_unreachable_notification_target_is_a_warning_not_a_failure() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let body = format!("{TWO_SOURCES}\n[notify]\nwebhook = \"http://127.0.0.1:{port}/hook\"\ntimeout = 1\n");
    let job = Job::new(&body);
    data_dir(job.dir());
    let (code, out, err) = job.out(&["run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!("warning: notification to http://127.0.0.1:{port}/hook failed after 3 tries")),
        "{out}"
    );
}

#[test]
fn run_without_a_config_says_how_to_give_one() {
    let r = Repo::init();
    let o = r.cmd().arg("run").output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("`cairn run` needs a config file: --config FILE, -P NAME"), "{err}");
}

#[test]
fn drill_restores_verifies_and_compares_then_fails_on_damage_and_silent_differences() {
    let job = Job::new(TWO_SOURCES);
    let data = data_dir(job.dir());
    let (code, out, err) = job.out(&["run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let (code, out, err) = job.out(&["drill"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("files: ok") && out.contains("2 file(s) sampled and compared with the live source: 2 identical"),
        "{out}"
    );
    assert!(out.contains("/app.sql: 108") && out.contains("size and SHA-256 match"), "{out}");
    assert!(out.contains("drill passed: 2 of 2"), "{out}");
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(job.dir().join("state/cairn/db1.drill.json")).unwrap()).unwrap();
    assert_eq!(st["success"], true);

    // A live file changed since the backup: reported, not a failure.
    std::fs::write(data.join("a.txt"), "changed").unwrap();
    let (code, out, _) = job.out(&["drill", "--source", "files"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 identical, 1 modified since the backup"), "{out}");
    // Different bytes although the live file was not modified since the
    // backup started: the backup (or the disk) is wrong.
    let old = filetime::FileTime::from_unix_time(1_000_000_000, 0);
    filetime::set_file_mtime(data.join("a.txt"), old).unwrap();
    let (code, out, _) = job.out(&["drill", "--source", "files", "--json"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["success"], false);
    let p = v["sources"][0]["problems"][0].as_str().unwrap();
    assert!(
        p.ends_with("data/a.txt differs from the live file, which was not modified since the backup started"),
        "{p}"
    );
    std::fs::write(data.join("a.txt"), "alpha").unwrap();

    // A damaged pack: the drill fails and names it.
    for p in job.repo.objects("data") {
        flip_middle(&p);
    }
    let (code, out, _) = job.out(&["drill"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("files: FAILED") && out.contains("app.sql: FAILED"), "{out}");
    assert!(out.contains("drill FAILED: 0 of 2"), "{out}");
}

#[test]
fn drill_of_a_source_never_backed_up_fails() {
    let job = Job::new(TWO_SOURCES);
    let (code, out, _) = job.out(&["drill", "--source", "app.sql"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no snapshot of host db1 with paths /app.sql to drill"), "{out}");
}

#[test]
fn an_offsite_config_copies_with_its_copy_section_alone() {
    let job = Job::new(TWO_SOURCES);
    data_dir(job.dir());
    let (code, out, err) = job.out(&["run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let offsite = Repo::init();
    let cfg = job.dir().join("db1-offsite.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository]\nrepository = \"{}\"\npassword-file = \"{}\"\n\n[copy]\nfrom-repo = \"{}\"\nfrom-password-file = \"{}\"\nhost = \"db1\"\n",
            offsite.url(),
            job.dir().join("pw").display(),
            job.repo.url(),
            job.dir().join("pw").display()
        ),
    )
    .unwrap();
    let o = job.cmd_with(&cfg, &["copy"]).output().unwrap();
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let n: Vec<serde_json::Value> = serde_json::from_str(&offsite.run(&["snapshots", "--json"])).unwrap();
    assert_eq!(n.len(), 2);
}

#[test]
fn run_and_drill_write_the_prometheus_textfile() {
    let body = format!("{TWO_SOURCES}\n[monitor]\nprometheus-textfile = \"{{dir}}/textfile/cairn.prom\"\n");
    let job = Job::new(&body);
    data_dir(job.dir());
    // A directory that does not exist: a warning, not a failure.
    let (code, out, err) = job.out(&["run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("warning: cannot write ") && out.contains("textfile/.cairn.prom"), "{out}");
    std::fs::create_dir(job.dir().join("textfile")).unwrap();
    let (code, out, err) = job.out(&["run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let prom = std::fs::read_to_string(job.dir().join("textfile/cairn.prom")).unwrap();
    for want in [
        "source=\"files\"} 1\n",
        "cairn_last_run_success{",
        "cairn_snapshots{",
        "cairn_last_check_success{",
        "cairn_snapshot_age_seconds{",
        "cairn_last_success_timestamp_seconds{",
    ] {
        assert!(prom.contains(want), "{want} missing in:\n{prom}");
    }
    assert!(!prom.contains("cairn_last_drill_success{"), "{prom}");
    let line = |p: &str, m: &str, src: &str| {
        p.lines()
            .find(|l| l.starts_with(&format!("{m}{{")) && l.contains(&format!("source=\"{src}\"")))
            .map(String::from)
    };
    assert!(line(&prom, "cairn_last_run_success", "app.sql").unwrap().ends_with(" 1"), "{prom}");
    // The drill adds its samples and keeps the run's.
    let (code, out, _) = job.out(&["drill"]);
    assert_eq!(code, 0, "{out}");
    let prom = std::fs::read_to_string(job.dir().join("textfile/cairn.prom")).unwrap();
    assert!(line(&prom, "cairn_last_drill_success", "files").unwrap().ends_with(" 1"), "{prom}");
    assert!(line(&prom, "cairn_last_run_success", "files").is_some(), "{prom}");
    // A failed run says so.
    std::fs::write(&job.config, std::fs::read_to_string(&job.config).unwrap().replace("seq 1 20000", "exit 4"))
        .unwrap();
    let (code, _, _) = job.out(&["run"]);
    assert_eq!(code, 1);
    let prom = std::fs::read_to_string(job.dir().join("textfile/cairn.prom")).unwrap();
    assert!(line(&prom, "cairn_last_run_success", "app.sql").unwrap().ends_with(" 0"), "{prom}");
    assert!(line(&prom, "cairn_last_run_success", "files").unwrap().ends_with(" 1"), "{prom}");
}

/// The ```toml blocks of the README's nightly-job section.
fn readme_configs() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("### The nightly job").expect("the README's nightly job section");
    let section = &readme[start..];
    let end = section[4..].find("\n### ").map_or(section.len(), |i| i + 4);
    section[..end].split("```toml\n").skip(1).map(|b| b.split("```").next().unwrap().to_string()).collect()
}

#[test]
fn the_readme_configs_parse_and_plan() {
    let configs = readme_configs();
    assert_eq!(configs.len(), 2, "the job and its offsite copy");
    let d = tempfile::tempdir().unwrap();
    let job = d.path().join("db1.toml");
    std::fs::write(&job, &configs[0]).unwrap();
    let o = Command::new(assert_cmd::cargo::cargo_bin("cairn"))
        .env_clear()
        .env("HOME", d.path())
        .args(["--config", job.to_str().unwrap(), "run", "--dry-run"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    for want in [
        "source volumes: cairn backup",
        "source app: cairn backup",
        "[pg_dump app + pg_dumpall --globals-only]",
        "source redis: cairn backup",
        "source app.crontab:",
        "cairn forget --keep-daily=7 --keep-monthly=12 --keep-weekly=4 --prune --host=db1",
        "cairn check --read-data-subset=day/7",
        "hook run-after: cairn -P db1-offsite copy",
        "notify healthchecks: https://hc-ping.com/",
    ] {
        assert!(out.contains(want), "{want:?} not in the plan:\n{out}");
    }
    // The offsite one: its keys are valid (the failure is the missing
    // repository, not the config).
    let off = d.path().join("db1-offsite.toml");
    std::fs::write(&off, &configs[1]).unwrap();
    let o = Command::new(assert_cmd::cargo::cargo_bin("cairn"))
        .env_clear()
        .env("HOME", d.path())
        .env("CAIRN_PASSWORD", "x")
        .args(["--config", off.to_str().unwrap(), "unlock"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("config "), "{err}");
}
