//! `cairn status` (a Nagios/Icinga plugin), its Prometheus textfile as a
//! real node_exporter reads it, and `completions` / `man`.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;

use cairn::crypto::aead::ObjectType;
use cairn::format::lock::Lock;
use cairn::monitor::prometheus::{write_textfile, Metrics, SourceMetrics};
use cairn::repo::{CacheMode, Repository};

use crate::common::{bare_cmd, output, requests, Out, Repo};

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

/// A source directory with one file, under the repository's temp dir.
fn source(repo: &Repo, name: &str) -> PathBuf {
    let dir = repo.dir.path().join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("f"), name.as_bytes()).expect("write");
    dir
}

/// A backup of `dir` dated `hours_ago` before now.
fn backup_at(repo: &Repo, dir: &Path, hours_ago: i64) {
    let t = (Utc::now() - chrono::Duration::hours(hours_ago)).to_rfc3339();
    repo.backup_json(&["--time", &t, "--host", "h1", p(dir)], None);
}

fn status(repo: &Repo, args: &[&str]) -> (Out, Vec<String>) {
    let mut a = vec!["status"];
    a.extend_from_slice(args);
    let o = repo.out(&a);
    o.assert_no_panic("status");
    let lines = o.stdout_str().lines().map(String::from).collect();
    (o, lines)
}

#[test]
fn status_fresh_is_ok_with_perfdata_and_one_line_per_source() {
    let repo = Repo::init();
    let (a, b) = (source(&repo, "a"), source(&repo, "b"));
    backup_at(&repo, &a, 2);
    backup_at(&repo, &a, 1);
    backup_at(&repo, &b, 0);
    let (o, lines) = status(&repo, &[]);
    assert_eq!(o.code, Some(0), "{lines:?} {}", o.stderr);
    let first = &lines[0];
    assert!(first.starts_with("OK - newest snapshot: h1:"), "{first}");
    let (_, perf) = first.split_once(" | ").expect("perfdata after |");
    let label = format!("'h1:{}_age'=", p(&a));
    let age_field = perf.split(' ').find(|f| f.starts_with(&label)).unwrap_or_else(|| panic!("{label} in {perf}"));
    let secs: u64 = age_field[label.len()..].split('s').next().and_then(|n| n.parse().ok()).expect("seconds");
    assert!((3590..3700).contains(&secs), "{age_field}");
    assert!(age_field.ends_with("s;90000;108000;0"), "{age_field}");
    assert!(perf.contains(&format!("'h1:{}_snapshots'=2;;;0", p(&a))), "{perf}");
    assert!(perf.contains(&format!("'h1:{}_snapshots'=1;;;0", p(&b))), "{perf}");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[1].starts_with(&format!("OK h1:{}: 2 snapshots, newest ", p(&a))), "{lines:?}");
    // The filter picks sources.
    let (o, lines) = status(&repo, &["--path", p(&b)]);
    assert_eq!(o.code, Some(0));
    assert_eq!(lines.len(), 2, "{lines:?}");
}

#[test]
fn status_old_snapshots_are_warning_then_critical() {
    let repo = Repo::init();
    let a = source(&repo, "a");
    backup_at(&repo, &a, 26);
    let (o, lines) = status(&repo, &[]);
    assert_eq!(o.code, Some(1), "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("WARNING - h1:{}: newest snapshot 1d2h old (warning above 1d1h) | ", p(&a))),
        "{lines:?}"
    );
    // Thresholds from the command line: 2d, 90m.
    assert_eq!(status(&repo, &["--warn", "2d", "--crit", "3d"]).0.code, Some(0));
    let (o, lines) = status(&repo, &["--warn", "90m", "--crit", "1d"]);
    assert_eq!(o.code, Some(2), "{lines:?}");
    assert!(lines[0].starts_with("CRITICAL - ") && lines[0].contains(";5400;86400;0"), "{lines:?}");
    let b = source(&repo, "b");
    backup_at(&repo, &b, 31);
    let (o, lines) = status(&repo, &[]);
    assert_eq!(o.code, Some(2), "{lines:?}");
    assert!(lines[0].contains("newest snapshot 1d7h old (critical above 1d6h)"), "{lines:?}");
    // --crit below --warn is UNKNOWN; a bad duration a usage error.
    assert_eq!(status(&repo, &["--warn", "2h", "--crit", "1h"]).0.code, Some(3));
    assert_eq!(status(&repo, &["--warn", "2x"]).0.code, Some(64));
}

#[test]
fn status_without_snapshots_is_critical() {
    let repo = Repo::init();
    let (o, lines) = status(&repo, &[]);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert_eq!(lines, ["CRITICAL - the repository has no snapshots"]);
    backup_at(&repo, &source(&repo, "a"), 0);
    let (o, lines) = status(&repo, &["--host", "elsewhere"]);
    assert_eq!(o.code, Some(2));
    assert_eq!(lines, ["CRITICAL - no snapshot matches --host elsewhere"]);
}

#[test]
fn status_partial_snapshot_is_warning() {
    let repo = Repo::init();
    let a = source(&repo, "a");
    let missing = repo.dir.path().join("not-there");
    let o = repo.out(&["backup", "--host", "h1", p(&a), p(&missing)]);
    assert_eq!(o.code, Some(3), "a partial backup: {}", o.stderr);
    let (o, lines) = status(&repo, &[]);
    assert_eq!(o.code, Some(1), "{lines:?}");
    assert!(
        lines[0].starts_with("WARNING - ") && lines[0].contains("newest snapshot is partial (1 path unreadable)"),
        "{lines:?}"
    );
}

#[test]
fn status_of_an_unreadable_repository_is_unknown_in_one_line() {
    let repo = Repo::init();
    backup_at(&repo, &source(&repo, "a"), 0);
    let check = |o: &Out, what: &str, needle: &str| {
        assert_eq!(o.code, Some(3), "{what}: {}", o.stderr);
        let out = o.stdout_str();
        assert_eq!(out.lines().count(), 1, "{what}: {out}");
        assert!(out.starts_with("UNKNOWN - ") && out.contains(needle), "{what}: {out}");
        o.assert_no_panic(what);
    };
    let bad = Repo::init().with_password("wrong");
    check(&bad.out(&["status"]), "wrong password", "wrong password");
    let none = Repo::uninit();
    check(&none.out(&["status"]), "no repository", "no repository");
    // S3 on a port where nothing listens: unreachable after the retries.
    let mut c = bare_cmd(repo.dir.path());
    c.args(["-r", "s3:http://127.0.0.1:9/bucket", "-o", "s3.max-retries=0", "-o", "s3.timeout=5", "status"])
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y");
    check(&output(c), "unreachable S3", "UNKNOWN - ");
    // JSON too.
    let o = bad.out(&["status", "--json"]);
    assert_eq!(o.code, Some(3));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["state"], "UNKNOWN");
}

#[test]
fn status_json_shape() {
    let repo = Repo::init();
    let a = source(&repo, "a");
    backup_at(&repo, &a, 3);
    let o = repo.out(&["status", "--json", "--warn", "1h"]);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    let v: Value = serde_json::from_slice(&o.stdout).expect("status --json");
    assert_eq!(v["state"], "WARNING");
    assert_eq!(v["warn_seconds"], 3600);
    assert_eq!(v["crit_seconds"], 108000);
    assert!(v["now"].as_str().is_some_and(|s| s.ends_with('Z')), "{v}");
    let s = &v["sources"][0];
    assert_eq!(s["name"], format!("h1:{}", p(&a)));
    assert_eq!(s["state"], "WARNING");
    assert_eq!(s["snapshots"], 1);
    assert_eq!(s["partial"], false);
    assert!(s["age_seconds"].as_u64().is_some_and(|n| (10_790..10_900).contains(&n)), "{s}");
    assert_eq!(s["newest"].as_str().map(str::len), Some(8));
    assert!(s["reasons"][0].as_str().is_some_and(|r| r.contains("warning above 1h")), "{s}");
    assert!(s["last_success"].is_string() && s["newest_time"].is_string(), "{s}");
    assert_eq!(v["problems"], serde_json::json!([]));
    assert_eq!(v["wal"], serde_json::json!([]));
}

#[test]
fn status_takes_no_lock_and_reads_no_index() {
    let repo = Repo::init();
    backup_at(&repo, &source(&repo, "a"), 0);
    let r = Repository::open(repo.backend(), repo.password().as_bytes(), CacheMode::Memory).expect("open");
    let lock = Lock {
        time: Utc::now().to_rfc3339(),
        exclusive: true,
        hostname: "other-host.example".into(),
        username: "someone".into(),
        pid: 4242,
        operation: "prune".into(),
        kind: "exclusive".into(),
        ..Default::default()
    };
    r.save_object("locks", ObjectType::Lock, &lock.encode()).expect("write the lock");
    // The cache holds the snapshot (the backup wrote it there).
    let o = repo.out(&["-v", "status"]);
    assert_eq!(o.code, Some(0), "status beside an exclusive lock: {}", o.stderr);
    let n = requests(&o.stderr, "");
    assert_eq!((n.put, n.delete), (0, 0), "status wrote: {n:?}");
    // The config and one key file; no index, no snapshot object.
    assert!(n.get <= 2, "status read more than the config and a key: {n:?}");
}

/// The node_exporter of Debian's prometheus-node-exporter package.
pub(crate) fn node_exporter() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .flat_map(|d| [d.join("prometheus-node-exporter"), d.join("node_exporter")])
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "node_exporter is not installed, and CI is set: CI must run this test (scripts/test.sh installs it)"
        );
        eprintln!(
            "\n*** status_textfile_is_scraped_by_node_exporter: skipped: no node_exporter (apt-get install prometheus-node-exporter) ***"
        );
    }
    found
}

/// Kills the exporter when the test ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET /metrics` over a plain TCP stream; the body, or `None` while the
/// exporter does not answer yet.
fn scrape(port: u16) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_string())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_string()))
}

/// Starts `exporter` on a free loopback port with only the textfile
/// collector reading `dir`, and returns its first `/metrics` body.
pub(crate) fn scrape_textfiles(exporter: &Path, dir: &Path) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let child = std::process::Command::new(exporter)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--collector.textfile.directory={}", p(dir)))
        .args(["--collector.disable-defaults", "--collector.textfile"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start node_exporter");
    let _child = Child(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(b) = scrape(port) {
            return b;
        }
        assert!(Instant::now() < deadline, "node_exporter did not answer on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn status_textfile_is_scraped_by_node_exporter() {
    let Some(exporter) = node_exporter() else { return };
    let repo = Repo::init();
    let a = source(&repo, "a");
    backup_at(&repo, &a, 2);
    backup_at(&repo, &a, 1);
    let dir = repo.dir.path().join("textfile");
    std::fs::create_dir(&dir).expect("mkdir");
    let file = dir.join("cairn.prom");
    let repo_id = repo.json(&["cat", "config"])["id"].as_str().expect("config id")[..8].to_string();
    // What a `cairn run` wrote before: status keeps it.
    let run = Metrics {
        repository: repo_id.clone(),
        sources: vec![SourceMetrics {
            source: format!("h1:{}", p(&a)),
            last_run: Some(Utc::now()),
            last_run_success: Some(true),
            last_run_duration_seconds: Some(1.5),
            bytes_added: Some(1234),
            ..Default::default()
        }],
    };
    write_textfile(&file, &run).expect("the run's metrics");
    let (o, _) = status(&repo, &["--prometheus-textfile", p(&file)]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);

    let body = scrape_textfiles(&exporter, &dir);
    assert!(body.lines().any(|l| l == "node_textfile_scrape_error 0"), "textfile collector error:\n{body}");
    let labels = format!("{{repository=\"{repo_id}\",source=\"h1:{}\"}}", p(&a));
    assert!(body.contains(&format!("cairn_snapshots{labels} 2\n")), "{labels} not in:\n{body}");
    assert!(body.contains(&format!("cairn_snapshot_age_seconds{labels} ")), "{body}");
    let last = body
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cairn_last_success_timestamp_seconds{labels} ")))
        .unwrap_or_else(|| panic!("no last success in:\n{body}"));
    let last: f64 = last.parse().expect("a number");
    let want = (Utc::now() - chrono::Duration::hours(1)).timestamp() as f64;
    assert!((last - want).abs() < 120.0, "last success {last}, expected about {want}");
    assert!(body.contains(&format!("cairn_last_run_success{labels} 1\n")), "{body}");
    assert!(body.contains(&format!("cairn_last_run_duration_seconds{labels} 1.5\n")), "{body}");
    assert!(body.contains(&format!("cairn_bytes_added_bytes{labels} 1234\n")), "{body}");
    assert!(body.contains("# TYPE cairn_snapshots gauge"), "{body}");
    assert!(body.contains("# HELP cairn_snapshot_age_seconds "), "{body}");
    let mode = std::fs::metadata(&file).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.ok(), Some(0o644));
}

#[test]
fn completions_and_man_pages() {
    let home = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let mut c = bare_cmd(home.path());
        c.args(args);
        let o = output(c);
        assert_eq!(o.code, Some(0), "{args:?}: {}", o.stderr);
        o.stdout_str()
    };
    let bash = run(&["completions", "bash"]);
    for sub in ["backup", "restore", "forget", "status", "pg", "completions"] {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        assert!(run(&["completions", shell]).contains("status"), "{shell}");
    }
    let man = run(&["man"]);
    // clap_mangen writes the apostrophe string's definition, then .TH.
    let first = man.lines().find(|l| !l.starts_with(".ie ") && !l.starts_with(".el ")).unwrap_or_default();
    assert!(first.starts_with(".TH cairn 1"), "{}", &man[..man.len().min(300)]);
    assert!(man.contains("status"), "the page lists the commands");
    let dir = home.path().join("man");
    run(&["man", "--dir", p(&dir)]);
    for page in ["cairn.1", "cairn-backup.1", "cairn-status.1", "cairn-pg-status.1"] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH "), "{page}");
    }
}

/// A 1 MiB WAL segment of timeline 1 with a valid long page header (as
/// PostgreSQL 16 writes it), named for segment number `n`.
fn wal_segment(dir: &Path, system_id: u64, n: u64) -> PathBuf {
    const SEG: u64 = 1 << 20;
    let mut b = vec![0u8; SEG as usize];
    b[0..2].copy_from_slice(&0xD113u16.to_le_bytes());
    b[2..4].copy_from_slice(&2u16.to_le_bytes()); // XLP_LONG_HEADER
    b[4..8].copy_from_slice(&1u32.to_le_bytes());
    b[8..16].copy_from_slice(&(n * SEG).to_le_bytes());
    b[24..32].copy_from_slice(&system_id.to_le_bytes());
    b[32..36].copy_from_slice(&(SEG as u32).to_le_bytes());
    b[36..40].copy_from_slice(&8192u32.to_le_bytes());
    let per_log = 0x1_0000_0000 / SEG;
    let path = dir.join(format!("{:08X}{:08X}{:08X}", 1, n / per_log, n % per_log));
    std::fs::write(&path, b).expect("write segment");
    path
}

#[test]
fn status_wal_gap_is_warning() {
    let repo = Repo::init();
    backup_at(&repo, &source(&repo, "a"), 0);
    let wal = repo.dir.path().join("wal");
    std::fs::create_dir(&wal).expect("mkdir");
    let push = |n: u64| repo.run(&["pg", "wal-push", "--pgdata", p(&wal), p(&wal_segment(&wal, 7_000_001, n))]);
    push(1);
    push(2);
    let (o, lines) = status(&repo, &[]);
    assert_eq!(o.code, Some(0), "{lines:?}");
    assert!(lines[0].contains("'pg_7000001_wal_lag'="), "{lines:?}");
    assert!(
        lines.last().is_some_and(|l| l.starts_with("OK PostgreSQL system 7000001 WAL archive, newest WAL ")),
        "{lines:?}"
    );
    push(4);
    let (o, lines) = status(&repo, &[]);
    assert_eq!(o.code, Some(1), "{lines:?}");
    assert!(
        lines[0].starts_with(
            "WARNING - PostgreSQL system 7000001: timeline 1: segment 000000010000000000000003 is missing"
        ),
        "{lines:?}"
    );
    let v: Value = serde_json::from_slice(&repo.out(&["status", "--json"]).stdout).expect("json");
    assert_eq!(v["wal"][0]["system_id"], 7_000_001);
    assert_eq!(v["wal"][0]["state"], "WARNING");
}

#[test]
fn status_with_a_config_file_takes_its_thresholds_and_its_last_run() {
    let repo = Repo::init();
    let a = source(&repo, "a");
    backup_at(&repo, &a, 2);
    let d = repo.dir.path();
    let textfile = d.join("cairn.prom");
    let config = d.join("db1.toml");
    let text = format!(
        "[repository]\nrepository = \"{}\"\n\n[monitor]\nwarn = \"1h\"\ncrit = \"1d\"\nprometheus-textfile = \"{}\"\n",
        repo.url(),
        p(&textfile)
    );
    std::fs::write(&config, text).expect("config");
    let run = |args: &[&str]| {
        let mut c = bare_cmd(d);
        c.env("XDG_STATE_HOME", d.join("state")).arg("--config").arg(&config).arg("status").args(args);
        let o = output(c);
        o.assert_no_panic("status --config");
        o
    };
    let o = run(&[]);
    assert_eq!(o.code, Some(1), "[monitor] warn = 1h: {}", o.stdout_str());
    assert!(o.stdout_str().contains(";3600;86400;0"), "{}", o.stdout_str());
    assert!(std::fs::read_to_string(&textfile).is_ok_and(|t| t.contains("cairn_snapshots{")), "no textfile");
    // The command line wins.
    assert_eq!(run(&["--warn", "3h"]).code, Some(0));
    // A textfile that cannot be written: WARNING, saying why.
    let o = run(&["--warn", "3h", "--prometheus-textfile", p(&d.join("no-such-dir/cairn.prom"))]);
    assert_eq!(o.code, Some(1), "{}", o.stdout_str());
    assert!(o.stdout_str().starts_with("WARNING - Prometheus textfile: "), "{}", o.stdout_str());
    // A failed last run (as `cairn run` records it) is a warning.
    let state = cairn::job::state::RunState {
        started: Utc::now() - chrono::Duration::minutes(30),
        duration_seconds: 2.0,
        success: false,
        errors: vec!["app: pg_dump exited with status 1".into()],
        sources: vec![],
        check_success: None,
    };
    cairn::job::state::write(&d.join("state/cairn/db1.json"), &state).expect("state");
    let o = run(&["--warn", "3h"]);
    assert_eq!(o.code, Some(1), "{}", o.stdout_str());
    assert!(
        o.stdout_str().starts_with("WARNING - the last run (30m ago) failed: app: pg_dump exited with status 1; "),
        "{}",
        o.stdout_str()
    );
    // And a failed drill, recorded beside it.
    let drill = cairn::job::state::DrillState {
        started: Utc::now() - chrono::Duration::hours(5),
        duration_seconds: 9.0,
        success: false,
        sources: vec![cairn::job::state::DrillSourceState {
            name: "app".into(),
            success: false,
            snapshot: None,
            problems: vec!["query returned false".into()],
        }],
    };
    cairn::job::state::write(&d.join("state/cairn/db1.drill.json"), &drill).expect("drill state");
    let o = run(&["--warn", "3h"]);
    assert_eq!(o.code, Some(1), "{}", o.stdout_str());
    assert!(o.stdout_str().contains("; the last drill (5h ago) failed: app; "), "{}", o.stdout_str());
}

#[test]
fn status_with_config_sources_names_them() {
    let repo = Repo::init();
    let a = source(&repo, "a");
    backup_at(&repo, &a, 2);
    // Not a source of the config: not judged.
    backup_at(&repo, &source(&repo, "elsewhere"), 50);
    let d = repo.dir.path();
    let config = d.join("db1.toml");
    let text = format!(
        "[repository]\nrepository = \"{}\"\n\n[backup]\nhost = \"h1\"\n\n[[backup.snapshots]]\nname = \"files\"\nsources = [\"{}\"]\n\n[[backup.snapshots]]\nname = \"app\"\ncommand = [\"true\"]\nstdin-filename = \"app.sql\"\n",
        repo.url(),
        p(&a)
    );
    std::fs::write(&config, text).expect("config");
    let mut c = bare_cmd(d);
    c.env("XDG_STATE_HOME", d.join("state")).arg("--config").arg(&config).arg("status");
    let o = output(c);
    o.assert_no_panic("status --config");
    let out = o.stdout_str();
    assert_eq!(o.code, Some(2), "{out}{}", o.stderr);
    assert!(out.starts_with("CRITICAL - app: no snapshot; 1 other source OK | 'files_age'="), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[1].starts_with("OK files: 1 snapshot, newest "), "{out}");
    assert!(lines[2].starts_with("CRITICAL app: 0 snapshots: no snapshot"), "{out}");
}
