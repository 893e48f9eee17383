//! S3 failure cases on the real server: credentials, missing bucket, an endpoint
//! that dies, throttling, server errors; and the few-requests property.
//!
//! Every test here needs `CAIRN_TEST_S3` (see `common::s3_enabled`). The two
//! tests that stop radosgw hold the exclusive side of the S3 lock and need
//! the cluster directory of `scripts/s3-server.sh` (`CAIRN_S3_DIR`, default
//! `/var/tmp/cairn-s3`); they restart radosgw in a drop guard, so a failing
//! test never leaves the server down for the next one.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(name)
}

fn write(path: &Path, data: &[u8]) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).expect("mkdir -p");
    }
    std::fs::write(path, data).expect("write");
}

/// A source tree of `files` files of `each` random bytes, plus a small file.
fn random_tree(root: &Path, files: usize, each: usize) -> PathBuf {
    let src = root.join("src");
    for i in 0..files {
        write(&src.join(format!("sub{}/f{i}.bin", i % 3)), &random_bytes(each));
    }
    write(&src.join("small.txt"), b"a small file\n");
    src
}

/// Restores the latest snapshot of `repo` (through `url`) and compares the
/// result with `src`, entry by entry and byte by byte.
fn assert_restores(repo: &Repo, url: &str, src: &Path, what: &str) {
    let t = repo.dir.path().join(format!("restore-{}", unique_name("t")));
    let mut c = repo.cmd_via(url);
    c.args(["restore", "latest", "--target", p(&t)]);
    let o = output(c);
    assert_eq!(o.code, Some(0), "{what}: restore failed:\n{}", o.stderr);
    assert_trees_equal(src, &restored(&t, src));
}

/// The command `repo.cmd()` with `args`, through `url`, captured.
fn out_via(repo: &Repo, url: &str, args: &[&str]) -> Out {
    let mut c = repo.cmd_via(url);
    c.args(args);
    output(c)
}

// ----- radosgw control

/// The directory of the cluster that `scripts/s3-server.sh` runs.
fn cluster_dir() -> PathBuf {
    std::env::var_os("CAIRN_S3_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/var/tmp/cairn-s3"))
}

fn s3_server(cmd: &str) -> std::process::Output {
    std::process::Command::new("bash")
        .arg(script("s3-server.sh"))
        .arg(cmd)
        .arg(cluster_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/s3-server.sh")
}

fn rgw(cmd: &str) {
    let o = s3_server(cmd);
    assert!(o.status.success(), "s3-server.sh {cmd} failed:\n{}", String::from_utf8_lossy(&o.stderr));
}

/// Whether the radosgw of [`cluster_dir`] is the server of `CAIRN_TEST_S3`
/// (so that the tests can stop and start it). If not: a loud skip, or a
/// panic under CI.
fn rgw_controllable(test: &str) -> bool {
    let conf = cluster_dir().join("ceph.conf");
    let port = s3_host_port().rsplit(':').next().unwrap_or_default().to_string();
    let ok = std::fs::read_to_string(&conf)
        .map(|c| {
            let want = format!("rgw frontends = beast endpoint=127.0.0.1:{port}");
            c.lines().map(str::trim).any(|l| l == want || l.starts_with(&format!("{want} ")))
        })
        .unwrap_or(false);
    if !ok {
        let msg = format!(
            "{test}: {} is not the cluster of CAIRN_TEST_S3 (radosgw on port {port}); set CAIRN_S3_DIR",
            conf.display()
        );
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("\n*** skipped: {msg} ***");
    }
    ok
}

/// Asserts that radosgw is still down (its port refuses connections) while
/// the test has it stopped. (`s3-server.sh start` of another process would
/// restart it, but waits for [`ClusterLock`]; not `status`, which would too.)
fn assert_rgw_still_down(test: &str) {
    use std::net::ToSocketAddrs as _;
    let addr = s3_host_port().to_socket_addrs().expect("resolve the S3 endpoint").next().expect("an address");
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(),
        "{test}: radosgw answers on {addr} again while this test has it stopped: another process restarted it, \
         so this run proves nothing"
    );
}

/// The lock by which `s3-server.sh` serializes its calls on the cluster
/// (`DIR.lock`), held while a test has radosgw stopped, so that an
/// `s3-server.sh start` of another process (which would restart radosgw)
/// waits. Must be dropped before [`RgwRestart`] runs `rgw-start`, and no
/// `s3-server.sh` call may be made while it is held.
struct ClusterLock {
    _file: std::fs::File,
}

fn lock_cluster() -> ClusterLock {
    use std::os::unix::io::AsRawFd;
    let dir = cluster_dir();
    let path = PathBuf::from(format!("{}.lock", dir.to_str().expect("utf-8 dir").trim_end_matches('/')));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    loop {
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return ClusterLock { _file: f };
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "flock {}: {e}", path.display());
    }
}

/// Starts radosgw again when dropped (also when the test panics).
struct RgwRestart;

impl Drop for RgwRestart {
    fn drop(&mut self) {
        let o = s3_server("rgw-start");
        if !o.status.success() {
            eprintln!("s3-server.sh rgw-start failed:\n{}", String::from_utf8_lossy(&o.stderr));
        }
    }
}

/// A child process, killed and reaped when dropped if still running.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Kid {
    /// Waits for the exit status, at most `limit`.
    fn wait_for(&mut self, limit: Duration) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.0.try_wait().expect("try_wait") {
                return st;
            }
            assert!(t0.elapsed() < limit, "the child process still runs after {limit:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A `backup SRC [ARGS]` running in the background, its stderr in a file.
struct BackgroundBackup {
    kid: Kid,
    stderr: PathBuf,
}

impl BackgroundBackup {
    fn start(repo: &Repo, src: &Path, opts: &[&str]) -> Self {
        let stderr = repo.dir.path().join(unique_name("backup-stderr"));
        let mut c = repo.std_cmd_via(repo.url());
        c.args(opts)
            .arg("backup")
            .arg(src)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"));
        Self { kid: Kid(c.spawn().expect("spawn cairn backup")), stderr }
    }

    fn running(&mut self) -> bool {
        matches!(self.kid.0.try_wait(), Ok(None))
    }

    /// Waits until the repository holds at least one pack (the backup is
    /// well under way); panics if the backup ends first.
    fn wait_for_packs(&mut self, repo: &Repo) {
        let t0 = Instant::now();
        loop {
            if !repo.list("data").is_empty() {
                assert!(self.running(), "the backup finished before radosgw could be stopped: make more data");
                return;
            }
            assert!(
                self.running(),
                "the backup ended before storing a pack:\n{}",
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
            assert!(t0.elapsed() < Duration::from_secs(120), "no pack stored after 120 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the end (at most `limit`): the exit code and stderr.
    fn finish(mut self, limit: Duration) -> Out {
        let st = self.kid.wait_for(limit);
        let stderr = std::fs::read_to_string(&self.stderr).expect("read stderr");
        Out { code: st.code(), stdout: Vec::new(), stderr }
    }
}

/// After an interrupted (or not) backup: `check` passes, a backup of the
/// same tree completes, and the latest snapshot restores byte-identical.
fn assert_repository_recovers(repo: &Repo, src: &Path, what: &str) {
    let t0 = Instant::now();
    let o = repo.out(&["check"]);
    assert_eq!(o.code, Some(0), "{what}: check failed after radosgw came back:\n{}{}", o.stdout_str(), o.stderr);
    eprintln!("{what}: check {:?}", t0.elapsed());
    let s = repo.backup_json(&[p(src)], None);
    assert_eq!(s["partial"], false, "{what}: {s}");
    eprintln!("{what}: backup {:?}", t0.elapsed());
    let o = repo.out(&["check"]);
    assert_eq!(o.code, Some(0), "{what}: check failed after the re-run backup:\n{}{}", o.stdout_str(), o.stderr);
    eprintln!("{what}: check {:?}", t0.elapsed());
    assert_restores(repo, repo.url(), src, what);
    eprintln!("{what}: restore {:?}", t0.elapsed());
}

// ----- a fault-injecting proxy in front of the server

/// `scripts/s3-fault-proxy.py` in front of the server of `CAIRN_TEST_S3`,
/// killed when dropped.
pub(crate) struct Proxy {
    kid: Kid,
    port: u16,
    counts: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    pub(crate) fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let counts = dir.path().join("counts.json");
        let mut c = std::process::Command::new("python3");
        c.arg(script("s3-fault-proxy.py"))
            .args(["--listen", "127.0.0.1:0", "--upstream", &s3_host_port(), "--counts"])
            .arg(&counts)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut kid = Kid(c.spawn().expect("spawn python3 scripts/s3-fault-proxy.py"));
        let mut line = String::new();
        std::io::BufReader::new(kid.0.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the proxy's port");
        let port = line
            .trim()
            .strip_prefix("port=")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("the proxy printed {line:?}, not port=N"));
        Self { kid, port, counts, _dir: dir }
    }

    /// `url` with the server's host:port replaced by the proxy's.
    pub(crate) fn url(&self, url: &str) -> String {
        let hp = s3_host_port();
        assert!(url.contains(&hp), "{url} does not name {hp}");
        url.replacen(&hp, &format!("127.0.0.1:{}", self.port), 1)
    }

    fn counts(&self) -> serde_json::Value {
        let s = std::fs::read_to_string(&self.counts).unwrap_or_else(|e| panic!("{}: {e}", self.counts.display()));
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("proxy counts are not JSON ({e}): {s}"))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.kid.0.kill();
        let _ = self.kid.0.wait();
    }
}

// ----- the tests

#[test]
fn wrong_credentials_fail_with_one_clear_line_and_harm_nothing() {
    let Some(_lock) = s3_shared("s3::wrong_credentials_fail_with_one_clear_line_and_harm_nothing") else { return };
    let repo = Repo::init_on(Where::S3);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("a.txt"), b"first\n");
    write(&src.join("b.bin"), &noise(300_000, 7));
    repo.backup_json(&[p(&src)], None);
    let before = repo.list("");

    let wrong: [(&str, &str); 2] =
        [("AWS_SECRET_ACCESS_KEY", "not-the-secret"), ("AWS_ACCESS_KEY_ID", "no-such-access-key")];
    for (var, value) in wrong {
        for args in [&["snapshots"][..], &["backup", p(&src)], &["check"]] {
            let what = format!("{args:?} with a wrong {var}");
            let mut c = repo.cmd();
            c.env(var, value).args(args);
            let t0 = Instant::now();
            let o = output(c);
            o.assert_failed(None, &what);
            let line = o.one_error_line(&what);
            assert!(line.contains("access denied"), "{what}: the error does not say access denied: {line}");
            assert!(line.contains("credentials"), "{what}: the error does not point at the credentials: {line}");
            assert!(line.contains(repo.url()), "{what}: the error does not name the repository: {line}");
            assert!(o.stdout.is_empty(), "{what}: printed {}", o.stdout_str());
            // A refusal is not retried.
            assert!(t0.elapsed() < Duration::from_secs(20), "{what}: took {:?}", t0.elapsed());
        }
    }
    assert_eq!(repo.list(""), before, "a command with wrong credentials changed the repository");

    // The right credentials still work, and nothing was left half-done.
    let o = repo.out(&["check"]);
    assert_eq!(o.code, Some(0), "check failed:\n{}", o.stderr);
    write(&src.join("c.txt"), b"added after the failures\n");
    let s = repo.backup_json(&[p(&src)], None);
    assert_eq!(s["files_new"], 1, "{s}");
    assert_eq!(repo.snapshots().len(), 2);
    assert_restores(&repo, repo.url(), &src, "after wrong credentials");
}

#[test]
fn a_missing_bucket_is_exit_10_and_init_does_not_create_it() {
    let Some(_lock) = s3_shared("s3::a_missing_bucket_is_exit_10_and_init_does_not_create_it") else { return };
    let loc = s3_location();
    let endpoint = loc.endpoint.expect("an endpoint");
    let url = format!("s3:{endpoint}/{}/repo", unique_name("cairn-missing"));
    let repo = Repo::uninit_on(Where::S3);
    for args in [&["init"][..], &["snapshots"], &["backup", "--stdin-filename", "f"], &["init"]] {
        let what = format!("{args:?} on {url}");
        let mut c = repo.cmd_via(&url);
        c.args(args).write_stdin(b"data".to_vec());
        let o = output(c);
        o.assert_failed(Some(10), &what);
        let line = o.one_error_line(&what);
        assert!(line.contains("bucket does not exist"), "{what}: unclear error: {line}");
        assert!(line.contains(&url), "{what}: the error does not name the URL: {line}");
    }
}

/// radosgw dies while a backup of ~100 MiB uploads packs, and comes back
/// after ~3 s: the backup rides it out (or fails clearly), and the
/// repository is sound either way.
#[test]
fn endpoint_dying_mid_backup_is_ridden_out_and_leaves_a_sound_repository() {
    let test = "s3::endpoint_dying_mid_backup_is_ridden_out_and_leaves_a_sound_repository";
    let Some(_lock) = s3_exclusive(test) else { return };
    if !rgw_controllable(test) {
        return;
    }
    let repo = Repo::init_on(Where::S3);
    let tmp = tempfile::tempdir().unwrap();
    let src = random_tree(tmp.path(), 10, 10 << 20);

    let mut b = BackgroundBackup::start(&repo, &src, &[]);
    let t0 = Instant::now();
    b.wait_for_packs(&repo);
    let restart = RgwRestart;
    rgw("rgw-stop");
    let held = lock_cluster();
    let stopped = Instant::now();
    eprintln!("radosgw stopped {:?} into the backup", t0.elapsed());
    std::thread::sleep(Duration::from_secs(3));
    assert_rgw_still_down(test);
    drop(held);
    drop(restart);
    eprintln!("radosgw back after {:?}", stopped.elapsed());

    let o = b.finish(Duration::from_secs(300));
    eprintln!("backup ended with {:?} after {:?}:\n{}", o.code, t0.elapsed(), o.stderr);
    o.assert_no_panic("backup across a radosgw restart");
    if o.code == Some(0) {
        let snaps = repo.snapshots();
        assert_eq!(snaps.len(), 1, "the backup reported success but saved {} snapshots", snaps.len());
    } else {
        o.assert_failed(None, "backup across a radosgw restart");
        let line = o.one_error_line("backup across a radosgw restart");
        assert!(line.contains("even after retries"), "unclear error: {line}");
        assert!(repo.snapshots().is_empty(), "a failed backup saved a snapshot");
    }
    assert_repository_recovers(&repo, &src, "after a radosgw restart");
}

/// radosgw stays down for ~10 s while retries give up after 5 s: the
/// backup fails with one clear line, and the repository is sound after.
#[test]
fn endpoint_down_longer_than_the_retry_timeout_fails_clearly_and_recovers() {
    let test = "s3::endpoint_down_longer_than_the_retry_timeout_fails_clearly_and_recovers";
    let Some(_lock) = s3_exclusive(test) else { return };
    if !rgw_controllable(test) {
        return;
    }
    let repo = Repo::init_on(Where::S3);
    let tmp = tempfile::tempdir().unwrap();
    let src = random_tree(tmp.path(), 8, 10 << 20);

    let opts = ["-o", "s3.retry-timeout=5", "-o", "s3.max-retries=3"];
    let mut b = BackgroundBackup::start(&repo, &src, &opts);
    b.wait_for_packs(&repo);
    let restart = RgwRestart;
    rgw("rgw-stop");
    let held = lock_cluster();
    let stopped = Instant::now();
    let o = b.finish(Duration::from_secs(60));
    let failed_after = stopped.elapsed();
    eprintln!("backup ended with {:?} {failed_after:?} after radosgw stopped:\n{}", o.code, o.stderr);
    if let Some(rest) = Duration::from_secs(10).checked_sub(stopped.elapsed()) {
        std::thread::sleep(rest);
    }
    assert_rgw_still_down(test);
    drop(held);
    drop(restart);

    o.assert_failed(Some(75), "backup with radosgw down for 10 s");
    let line = o.one_error_line("backup with radosgw down for 10 s");
    assert!(
        line.contains("cannot reach") || line.contains("did not answer successfully"),
        "the error does not say the server did not answer: {line}"
    );
    assert!(line.contains("even after retries"), "{line}");
    assert!(line.contains(repo.url()) || line.contains("data/"), "the error names no object or location: {line}");
    assert!(failed_after < Duration::from_secs(30), "giving up took {failed_after:?} with retry-timeout=5");
    let snaps = repo.snapshots();
    assert!(snaps.is_empty(), "a failed backup saved a snapshot: {snaps:?}");
    assert_repository_recovers(&repo, &src, "after radosgw was down for 10 s");
}

/// Every third request answered 503 SlowDown: retries carry a backup and a
/// restore through.
#[test]
fn throttling_503_on_every_third_request_is_retried_through() {
    let Some(_lock) = s3_shared("s3::throttling_503_on_every_third_request_is_retried_through") else { return };
    let repo = Repo::init_on(Where::S3);
    let proxy = Proxy::start(&["--fail-every", "3", "--status", "503"]);
    let via = proxy.url(repo.url());
    let tmp = tempfile::tempdir().unwrap();
    let src = random_tree(tmp.path(), 4, 1 << 20);
    write(&src.join("noise.bin"), &noise(3 << 20, 11));

    let o = out_via(&repo, &via, &["backup", "--json", p(&src)]);
    assert_eq!(o.code, Some(0), "backup through the throttling proxy failed:\n{}", o.stderr);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).expect("backup --json");
    assert_eq!(s["partial"], false, "{s}");
    assert_eq!(s["files_new"], 6, "{s}");
    let after_backup = proxy.counts();
    assert!(after_backup["injected"].as_u64().unwrap() > 0, "no fault was injected: {after_backup}");
    assert!(after_backup["PUT"].as_u64().unwrap() >= 3, "the backup stored nothing through the proxy: {after_backup}");

    assert_restores(&repo, &via, &src, "restore through the throttling proxy");
    let o = out_via(&repo, &via, &["check", "--read-data"]);
    assert_eq!(o.code, Some(0), "check --read-data through the proxy failed:\n{}", o.stderr);
    let end = proxy.counts();
    assert!(
        end["injected"].as_u64().unwrap() > after_backup["injected"].as_u64().unwrap(),
        "no fault was injected during the restore: {end}"
    );
    // The snapshot is there for a client that talks to the server directly.
    assert_eq!(repo.snapshots()[0]["id"], s["snapshot_id"]);
}

/// A server that answers 500 to everything: commands give up after the
/// few retries allowed, with one clear line.
#[test]
fn server_errors_on_every_request_fail_quickly_with_one_clear_line() {
    let Some(_lock) = s3_shared("s3::server_errors_on_every_request_fail_quickly_with_one_clear_line") else {
        return;
    };
    let repo = Repo::init_on(Where::S3);
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("f"), b"content\n");
    let proxy = Proxy::start(&["--fail-first", "1000000", "--status", "500"]);
    let via = proxy.url(repo.url());
    let before = repo.list("");
    for args in [&["snapshots"][..], &["backup", p(tmp.path())]] {
        let what = format!("{args:?} with every request failing with 500");
        let mut all = vec!["-o", "s3.max-retries=2", "-o", "s3.retry-timeout=5"];
        all.extend_from_slice(args);
        let t0 = Instant::now();
        let o = out_via(&repo, &via, &all);
        let took = t0.elapsed();
        o.assert_failed(Some(75), &what);
        let line = o.one_error_line(&what);
        assert!(line.contains("did not answer successfully, even after retries"), "{what}: unclear error: {line}");
        assert!(line.contains("500"), "{what}: the error does not show the status: {line}");
        assert!(took < Duration::from_secs(30), "{what}: took {took:?}");
    }
    let c = proxy.counts();
    let injected = c["injected"].as_u64().unwrap();
    assert_eq!(injected, c["total"].as_u64().unwrap(), "{c}");
    // Each command tried its first request 1 + 2 times, and stopped there.
    assert!((6..=12).contains(&injected), "unexpected number of requests: {c}");
    assert_eq!(repo.list(""), before, "the failing commands changed the repository");
}

/// `-v` request counts of a command, with its JSON stdout.
fn counted(repo: &Repo, args: &[&str]) -> (Requests, serde_json::Value) {
    let mut all = vec!["-v"];
    all.extend_from_slice(args);
    let o = repo.out(&all);
    assert_eq!(o.code, Some(0), "{all:?} failed:\n{}", o.stderr);
    let json = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{all:?}: not JSON ({e})"));
    (requests(&o.stderr, ""), json)
}

#[test]
fn warm_cache_commands_make_a_few_requests_whatever_the_snapshot_count() {
    let Some(_lock) = s3_shared("s3::warm_cache_commands_make_a_few_requests_whatever_the_snapshot_count") else {
        return;
    };
    let repo = Repo::init_on(Where::S3);
    // A snapshot records the metadata of its path's ancestors too: /tmp,
    // where other tests make directories all the time, would make each
    // backup's root tree new. /var/tmp holds still.
    let tmp = tempfile::Builder::new().prefix("cairn-few-requests-").tempdir_in("/var/tmp").unwrap();
    let src = tmp.path().join("src");
    write(&src.join("a.txt"), b"a\n");
    write(&src.join("d/b.bin"), &noise(50_000, 5));

    // Snapshots 1..=n, each with a distinct --tag so each is a new snapshot;
    // `snapshots` has seen each one before the measured runs.
    let grow_to = |n: usize| {
        while repo.snapshots().len() < n {
            repo.backup_json(&["--tag", &format!("t{n}"), p(&src)], None);
        }
        assert_eq!(repo.snapshots().len(), n);
    };
    let measure = |n: usize| -> (Requests, Requests) {
        grow_to(n);
        let (snaps, list) = counted(&repo, &["snapshots", "--json"]);
        assert_eq!(list.as_array().expect("array").len(), n);
        let (backup, s) = counted(&repo, &["backup", "--json", p(&src)]);
        assert_eq!(s["files_new"], 0, "{s}");
        assert_eq!(s["files_changed"], 0, "{s}");
        assert_eq!(s["data_added"], 0, "{s}");
        assert_eq!(s["tree_blobs"], 0, "{s}");
        eprintln!("{n} snapshots: snapshots {snaps:?}; unchanged backup {backup:?}");
        (snaps, backup)
    };
    let (snaps2, backup2) = measure(2);
    let (snaps6, backup6) = measure(6);

    assert_eq!(
        (snaps2.list, snaps2.get),
        (snaps6.list, snaps6.get),
        "snapshots with a warm cache: the lists and gets grow with the snapshots ({snaps2:?} vs {snaps6:?})"
    );
    assert_eq!((snaps2.put, snaps2.delete), (0, 0), "snapshots wrote: {snaps2:?}");
    for (n, r) in [(3, backup2), (7, backup6)] {
        // keys, index, snapshots, locks (twice: taking the lock, and prune's
        // rule), and the index again once the lock is stored.
        assert!(r.list <= 6, "unchanged backup with {n} snapshots: {r:?}");
        assert!(r.get <= 3, "unchanged backup with {n} snapshots: {r:?}");
        assert!(r.put <= 2, "unchanged backup with {n} snapshots: {r:?}");
    }
    assert_eq!(
        (backup2.list, backup2.get, backup2.put),
        (backup6.list, backup6.get, backup6.put),
        "unchanged backup: requests grow with the snapshots"
    );
    assert_eq!(repo.list("locks"), Vec::new(), "the commands left their locks behind");
}

#[test]
fn a_large_backup_uploads_several_packs() {
    let Some(_lock) = s3_shared("s3::a_large_backup_uploads_several_packs") else { return };
    let repo = Repo::init_on(Where::S3);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("big.bin"), &random_bytes(40 << 20));
    let (r, s) = counted(&repo, &["backup", "--json", p(&src)]);
    assert_eq!(s["partial"], false, "{s}");
    assert!(r.put >= 3, "40 MiB went up in {} puts: {r:?}", r.put);
    assert!(r.written >= 40 << 20, "{r:?}");
    let packs: Vec<_> = repo.list("data").into_iter().filter(|(_, len)| *len > 1 << 20).collect();
    assert!(packs.len() >= 2, "40 MiB of random data in {} packs over 1 MiB: {packs:?}", packs.len());
    assert!(packs.iter().map(|(_, l)| l).sum::<u64>() >= 40 << 20, "{packs:?}");
}
