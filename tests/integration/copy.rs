//! `copy` between repositories, on the local backend and the real S3 server:
//! same chunk ids (`init --copy-chunker-params`) in both directions between
//! a local directory and S3, re-chunking between repositories with other
//! keys, snapshot selection, dedup against what was copied before, an
//! interrupted copy resumed, a damaged source, and the refusals.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{
    assert_trees_equal, aws_env, both_backends, flip_middle, largest, noise, output, random_bytes, requests, restored,
    s3_host_port, s3_shared, sha256_hex, Out, Repo, Where,
};

const MIB: u64 = 1 << 20;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

// ----- helpers

/// `cairn -r DST ARGS` with `--from-repo SRC` appended and the source's
/// password in `CAIRN_FROM_PASSWORD` (and the `AWS_*` variables when the
/// source is on S3 and the destination is not).
fn with_source(dst: &Repo, src: &Repo, args: &[&str]) -> Out {
    let mut c = dst.cmd();
    if src.on == Where::S3 {
        aws_env(&mut c);
    }
    c.env("CAIRN_FROM_PASSWORD", src.password()).args(args).args(["--from-repo", src.url()]);
    output(c)
}

/// Initializes `dst` from `src` (`init --copy-chunker-params` and `extra`).
fn init_same_ids(dst: &Repo, src: &Repo, extra: &[&str]) {
    let mut args = vec!["init", "--copy-chunker-params"];
    args.extend_from_slice(extra);
    let o = with_source(dst, src, &args);
    assert_eq!(o.code, Some(0), "init --copy-chunker-params of {} from {} failed:\n{}", dst.url(), src.url(), o.stderr);
}

/// `copy ARGS` from `src` into `dst`; must succeed. Returns the output.
fn copy_ok(dst: &Repo, src: &Repo, args: &[&str]) -> Out {
    let mut all = vec!["copy"];
    all.extend_from_slice(args);
    let o = with_source(dst, src, &all);
    assert_eq!(o.code, Some(0), "copy {args:?} from {} to {} failed:\n{}", src.url(), dst.url(), o.stderr);
    o.assert_no_panic("copy");
    o
}

/// `copy --json ARGS`; must succeed. Returns the parsed summary.
fn copy_json(dst: &Repo, src: &Repo, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let o = copy_ok(dst, src, &all);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("copy --json is not JSON ({e}): {}", o.stdout_str()))
}

fn u(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no number {key:?} in {v}"))
}

/// The (source, copy) ids of a `copy --json` summary.
fn copied(v: &Value) -> Vec<(String, String)> {
    v["copied"]
        .as_array()
        .unwrap_or_else(|| panic!("no `copied` array in {v}"))
        .iter()
        .map(|c| (c["source"].as_str().expect("source id").into(), c["copy"].as_str().expect("copy id").into()))
        .collect()
}

/// A small tree (~3 MiB): files in nested directories, an empty file and
/// a symlink.
fn small_tree(root: &Path, seed: u64) {
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("big.bin"), noise(2 * MIB as usize, seed)).unwrap();
    std::fs::write(root.join("sub/mid.bin"), noise(700 << 10, seed + 1)).unwrap();
    std::fs::write(root.join("sub/deeper/note.txt"), format!("note {seed}\n")).unwrap();
    std::fs::write(root.join("sub/empty"), b"").unwrap();
    std::os::unix::fs::symlink("../big.bin", root.join("sub/link")).unwrap();
}

/// Restores snapshot `spec` of `repo` and asserts it equals `src` (the
/// backed-up directory): names, bytes, sizes, modes, times, links.
fn assert_restores(repo: &Repo, spec: &str, src: &Path) {
    let t = tempfile::tempdir().unwrap();
    let o = repo.out(&["restore", spec, "--target", p(t.path())]);
    assert_eq!(o.code, Some(0), "restore {spec} from {} failed:\n{}", repo.url(), o.stderr);
    assert_trees_equal(src, &restored(t.path(), src));
}

fn check_read_data(repo: &Repo) {
    let o = repo.out(&["check", "--read-data"]);
    assert_eq!(o.code, Some(0), "check --read-data of {} failed:\n{}{}", repo.url(), o.stdout_str(), o.stderr);
    assert!(o.stdout_str().contains("no errors"), "check --read-data: {}{}", o.stdout_str(), o.stderr);
}

/// The second run of a copy: nothing to do, nothing sent, and (with `-v`)
/// no object written to the destination but its lock.
fn assert_second_run_sends_nothing(dst: &Repo, src: &Repo, snapshots: usize) {
    let o = copy_ok(dst, src, &["-v"]);
    let out = o.stdout_str();
    assert!(out.contains("0 snapshot(s) copied"), "second copy run:\n{out}");
    assert!(out.contains(&format!("{snapshots} already there")), "second copy run:\n{out}");
    let r = requests(&o.stderr, "destination ");
    assert!(r.put <= 2, "the second copy run stored {} objects on the destination: {r:?}", r.put);
    assert!(r.written < 4096, "the second copy run wrote {} bytes to the destination: {r:?}", r.written);
    // Only its own lock, released before the counts are printed.
    assert_eq!(r.delete, 1, "{r:?}");
    let v = copy_json(dst, src, &[]);
    assert_eq!(copied(&v), vec![], "{v}");
    assert_eq!(u(&v, "skipped"), snapshots as u64, "{v}");
    assert_eq!((u(&v, "bytes_sent"), u(&v, "packs"), u(&v, "data_blobs")), (0, 0, 0), "{v}");
    assert_eq!(dst.snapshots().len(), snapshots, "a second run added snapshots");
}

/// Copying the copies back into `orig` (whose snapshots they are) copies
/// nothing: each copy names its original.
fn assert_copy_back_copies_nothing(orig: &Repo, copies: &Repo, snapshots: usize) {
    let before = orig.list("");
    let v = copy_json(orig, copies, &[]);
    assert_eq!(copied(&v), vec![], "copying back copied again: {v}");
    assert_eq!(u(&v, "skipped"), snapshots as u64, "{v}");
    assert_eq!(orig.snapshots().len(), snapshots);
    let after: Vec<_> = orig.list("").into_iter().filter(|(n, _)| !n.starts_with("locks/")).collect();
    let before: Vec<_> = before.into_iter().filter(|(n, _)| !n.starts_with("locks/")).collect();
    assert_eq!(after, before, "copying back changed {}", orig.url());
}

// ----- 1. same chunk ids, local <-> S3

fn same_ids_round_trip(from: Where, to: Where) {
    let src = Repo::init_on(from);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    small_tree(&dir, 1);
    let b = src.backup_json(&[p(&dir)], None);
    let dst = Repo::uninit_on(to);
    init_same_ids(&dst, &src, &[]);

    let v = copy_json(&dst, &src, &[]);
    assert_eq!(v["rechunk"], false, "{v}");
    let ids = copied(&v);
    assert_eq!(ids.len(), 1, "{v}");
    assert_eq!(ids[0].0, b["snapshot_id"].as_str().unwrap(), "{v}");
    assert!(u(&v, "bytes_sent") >= 2 * MIB + (700 << 10), "{v}");
    assert!(u(&v, "packs") >= 1 && u(&v, "packs_verified") == u(&v, "packs"), "{v}");
    assert_eq!(u(&v, "skipped"), 0, "{v}");

    // Blobs keep their ids: the copy has the source's root tree.
    let (s, d) = (src.snapshots(), dst.snapshots());
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["id"], ids[0].1.as_str());
    assert_eq!(d[0]["tree"], s[0]["tree"], "same chunk ids, but another root tree");
    for k in ["hostname", "paths", "tags", "time"] {
        assert_eq!(d[0][k], s[0][k], "{k} of the copy");
    }

    assert_restores(&dst, &ids[0].1, &dir);
    check_read_data(&dst);
    assert_second_run_sends_nothing(&dst, &src, 1);
    assert_copy_back_copies_nothing(&src, &dst, 1);
}

#[test]
fn same_ids_local_to_local() {
    same_ids_round_trip(Where::Local, Where::Local);
}

#[test]
fn same_ids_local_to_s3() {
    let Some(_lock) = s3_shared("integration::copy::same_ids_local_to_s3") else { return };
    same_ids_round_trip(Where::Local, Where::S3);
}

#[test]
fn same_ids_s3_to_local() {
    let Some(_lock) = s3_shared("integration::copy::same_ids_s3_to_local") else { return };
    same_ids_round_trip(Where::S3, Where::Local);
}

// ----- 2. other password and keys: re-chunked

both_backends!(rechunk_with_other_password_and_keys);

/// Source and destination both on `w`, the destination a plain `init` with
/// another password.
fn rechunk_with_other_password_and_keys(w: Where) {
    let src = Repo::init_on(w);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tree");
    small_tree(&dir, 2);
    src.backup_json(&[p(&dir), "--host", "h-tree"], None);
    let stream = noise(1536 << 10, 3);
    let sb = src.backup_json(&["--stdin-filename", "db.dump", "--host", "h-stream"], Some(&stream));

    let dst = Repo::uninit_on(w).with_password("a different password");
    dst.init_repo();

    let o = copy_ok(&dst, &src, &[]);
    assert!(o.stderr.contains("re-chunked"), "no re-chunk note on stderr:\n{}", o.stderr);
    assert!(o.stdout_str().contains("2 snapshot(s) copied"), "{}", o.stdout_str());

    let (s, d) = (src.snapshots(), dst.snapshots());
    assert_eq!(d.len(), 2, "{d:?}");
    let by_host = |v: &[Value], h: &str| v.iter().find(|x| x["hostname"] == h).cloned().expect("snapshot by host");
    let (st, dt) = (by_host(&s, "h-tree"), by_host(&d, "h-tree"));
    assert_ne!(st["tree"], dt["tree"], "other keys, yet the same tree id");
    assert_eq!(dt["paths"], st["paths"]);
    assert_restores(&dst, dt["id"].as_str().unwrap(), &dir);

    // The stream snapshot keeps its recorded size and hash, and its bytes.
    let (ss, ds) = (by_host(&s, "h-stream"), by_host(&d, "h-stream"));
    assert_eq!(ds["stream"], ss["stream"], "stream info of the copy");
    assert_eq!(ds["stream"]["size"], stream.len() as u64);
    assert_eq!(ds["stream"]["sha256"], sha256_hex(&stream).as_str());
    assert_eq!(ss["id"], sb["snapshot_id"]);
    let dumped = dst.dump(ds["id"].as_str().unwrap(), "/db.dump");
    assert!(dumped == stream, "dump of the copied stream differs ({} vs {} bytes)", dumped.len(), stream.len());

    check_read_data(&dst);

    // --json says rechunk (into a third repository, the stream alone).
    let dst2 = Repo::uninit_on(w).with_password("yet another password");
    dst2.init_repo();
    let v = copy_json(&dst2, &src, &["--host", "h-stream"]);
    assert_eq!(v["rechunk"], true, "{v}");
    assert_eq!(copied(&v).len(), 1, "{v}");
    assert!(u(&v, "bytes_sent") >= stream.len() as u64, "{v}");
    assert_eq!(dst2.dump("latest", "/db.dump"), stream);

    assert_second_run_sends_nothing(&dst, &src, 2);
    // Copies of copies keep the first id: dst -> dst2 -> src copies nothing.
    let v = copy_json(&dst2, &dst, &[]);
    assert_eq!((copied(&v).len(), u(&v, "skipped")), (1, 1), "{v}");
    assert_copy_back_copies_nothing(&src, &dst2, 2);
}

// ----- 3. snapshot selection

#[test]
fn filters_ids_latest_and_dry_run_select_the_right_snapshots() {
    let src = Repo::init();
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    for (d, seed) in [(&one, 10), (&two, 11)] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("f.bin"), noise(300 << 10, seed)).unwrap();
    }
    // Oldest first: a (alpha, one, daily), b (alpha, two, daily+weekly), c (beta, one, weekly).
    let snap = |dir: &Path, host: &str, tag: &str, time: &str| -> String {
        let v = src.backup_json(&[p(dir), "--host", host, "--tag", tag, "--time", time], None);
        v["snapshot_id"].as_str().unwrap().to_string()
    };
    let a = snap(&one, "alpha", "daily", "2024-01-01 10:00:00");
    let b = snap(&two, "alpha", "daily,weekly", "2024-01-02 10:00:00");
    let c = snap(&one, "beta", "weekly", "2024-01-03 10:00:00");

    let fresh = || {
        let d = Repo::uninit();
        init_same_ids(&d, &src, &[]);
        d
    };
    let sources = |v: &Value| -> Vec<String> { copied(v).into_iter().map(|(s, _)| s).collect() };
    let hosts = |r: &Repo| -> Vec<String> {
        r.snapshots().iter().map(|s| s["hostname"].as_str().unwrap().to_string()).collect()
    };

    let d = fresh();
    let v = copy_json(&d, &src, &["--host", "beta"]);
    assert_eq!(sources(&v), vec![c.clone()], "--host beta: {v}");
    assert_eq!(hosts(&d), vec!["beta"]);

    let d = fresh();
    let v = copy_json(&d, &src, &["--tag", "daily"]);
    assert_eq!(sources(&v), vec![a.clone(), b.clone()], "--tag daily: {v}");
    assert_eq!(hosts(&d), vec!["alpha", "alpha"]);

    let d = fresh();
    let v = copy_json(&d, &src, &["--tag", "weekly", "--host", "alpha"]);
    assert_eq!(sources(&v), vec![b.clone()], "--tag weekly --host alpha: {v}");

    let d = fresh();
    let v = copy_json(&d, &src, &["--path", p(&one)]);
    assert_eq!(sources(&v), vec![a.clone(), c.clone()], "--path one: {v}");
    let paths: Vec<Value> = d.snapshots().iter().map(|s| s["paths"].clone()).collect();
    assert_eq!(paths, vec![serde_json::json!([p(&one)]), serde_json::json!([p(&one)])]);
    let v = copy_json(&d, &src, &["--path", p(&two), "--host", "beta"]);
    assert_eq!(sources(&v), Vec::<String>::new(), "no snapshot of two on beta: {v}");
    assert_eq!(u(&v, "skipped"), 0);
    assert_eq!(d.snapshots().len(), 2);

    // Explicit ids: a prefix and `latest` (c, the newest); a repeated one
    // counts once.
    let d = fresh();
    let v = copy_json(&d, &src, &[&a[..8], "latest", &c[..12]]);
    assert_eq!(sources(&v), vec![a.clone(), c.clone()], "ids {} latest: {v}", &a[..8]);
    assert_eq!(hosts(&d), vec!["alpha", "beta"]);
    let o = with_source(&d, &src, &["copy", "ffffffffff"]);
    o.assert_failed(None, "copy of an unknown id");
    assert!(o.stderr.contains("ffffffffff"), "{}", o.stderr);

    // Dry run: lists what it would do, writes nothing.
    let before = (d.list("data"), d.list("index"), d.list("snapshots"));
    let o = copy_ok(&d, &src, &["--dry-run"]);
    let out = o.stdout_str();
    assert_eq!(out.matches("would copy").count(), 1, "{out}");
    assert_eq!(out.matches("already there").count(), 2, "{out}");
    assert!(out.contains(&b[..8]), "{out}");
    let o = copy_ok(&d, &src, &["-n", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["dry_run"], true, "{v}");
    let would: Vec<&str> = v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["copy"] == true)
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(would, vec![b.as_str()], "{v}");
    assert_eq!((d.list("data"), d.list("index"), d.list("snapshots")), before, "--dry-run changed the destination");
    assert_eq!(d.snapshots().len(), 2);

    // And for real: only b is left.
    let v = copy_json(&d, &src, &[]);
    assert_eq!(sources(&v), vec![b.clone()], "{v}");
    assert_eq!(u(&v, "skipped"), 2, "{v}");
}

// ----- 4. dedup against what was copied before

both_backends!(second_snapshot_sends_only_its_new_chunks);

fn second_snapshot_sends_only_its_new_chunks(w: Where) {
    let src = Repo::init();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..8 {
        std::fs::write(dir.join(format!("f{i}.bin")), noise(MIB as usize, 100 + i)).unwrap();
    }
    src.backup_json(&[p(&dir)], None);
    let dst = Repo::uninit_on(w);
    init_same_ids(&dst, &src, &[]);
    let first = copy_json(&dst, &src, &[]);
    assert!(u(&first, "bytes_sent") >= 8 * MIB, "{first}");

    // The second snapshot: the same 8 MiB, one new 256 KiB file, one small
    // file changed.
    std::fs::write(dir.join("new.bin"), noise(256 << 10, 200)).unwrap();
    std::fs::write(dir.join("small.txt"), b"changed").unwrap();
    let second = src.backup_json(&[p(&dir)], None);
    let total = u(&second, "total_bytes_processed");
    assert!(total >= 8 * MIB + (256 << 10), "{second}");

    let size_before = dst.size();
    let o = copy_ok(&dst, &src, &["-v"]);
    assert!(o.stdout_str().contains("1 snapshot(s) copied, 1 already there"), "{}", o.stdout_str());
    let r = requests(&o.stderr, "destination ");
    assert!(r.written < total / 10, "copying the second snapshot wrote {} bytes (of {total}): {r:?}", r.written);
    assert!(r.written >= 256 << 10, "the new file was not sent: {r:?}");
    let grown = dst.size() - size_before;
    assert!(grown < total / 10, "the destination grew by {grown} bytes (snapshot of {total})");
    // The source side: only the new chunks were read.
    let rs = requests(&o.stderr, "source ");
    assert!(rs.read < total / 10, "read {} bytes from the source: {rs:?}", rs.read);

    assert_restores(&dst, "latest", &dir);
    assert_eq!(dst.snapshots().len(), 2);

    // The same from a fresh destination with JSON: bytes_sent of the second
    // snapshot alone is small.
    let dst2 = Repo::uninit_on(w);
    init_same_ids(&dst2, &src, &[]);
    let sn = src.snapshots();
    let old = sn[0]["id"].as_str().unwrap();
    copy_json(&dst2, &src, &[old]);
    let v = copy_json(&dst2, &src, &[]);
    assert_eq!(copied(&v).len(), 1, "{v}");
    let sent = u(&v, "bytes_sent");
    assert!(sent < total / 10 && sent >= 256 << 10, "bytes_sent {sent} of a {total}-byte snapshot: {v}");
}

// ----- 5. an interrupted copy resumes

/// A TCP relay to `upstream` whose client-to-server direction (uploads)
/// is paced to `rate` bytes per second over all connections together.
/// Bytes pass unchanged, so S3 signatures stay valid. Stops accepting when
/// dropped.
struct SlowProxy {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl SlowProxy {
    fn start(upstream: String, rate: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let pace = Arc::new(Mutex::new(Instant::now()));
        let stop2 = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let pace = pace.clone();
                std::thread::spawn(move || relay(client, server, Some((pace, rate))));
                std::thread::spawn(move || relay(s2, c2, None));
            }
        });
        Self { port, stop }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes the accept loop
    }
}

/// Copies `from` to `to` until EOF or an error, then shuts both down.
fn relay(mut from: TcpStream, mut to: TcpStream, pace: Option<(Arc<Mutex<Instant>>, u64)>) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((next, rate)) = &pace {
            let wait = {
                let mut next = next.lock().unwrap();
                let now = Instant::now();
                *next = (*next).max(now) + Duration::from_secs_f64(n as f64 / *rate as f64);
                *next - now
            };
            std::thread::sleep(wait);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

#[test]
fn interrupted_copy_to_s3_resumes_without_sending_indexed_packs_again() {
    let Some(_lock) =
        s3_shared("integration::copy::interrupted_copy_to_s3_resumes_without_sending_indexed_packs_again")
    else {
        return;
    };
    let src = Repo::init();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("big");
    std::fs::create_dir_all(&dir).unwrap();
    let total = 48 * MIB;
    std::fs::write(dir.join("random.bin"), random_bytes(total as usize)).unwrap();
    src.backup_json(&[p(&dir)], None);

    let dst = Repo::uninit_on(Where::S3);
    init_same_ids(&dst, &src, &["--pack-size", "1"]);

    // Uploads through a relay paced to 1.6 MB/s: 48 MiB would take ~31 s,
    // so the copy is still sending when its first index object (~20 s in)
    // appears.
    let proxy = SlowProxy::start(s3_host_port(), 1_600_000);
    let via = dst.url().replacen(&s3_host_port(), &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(via, dst.url());
    let log = tmp.path().join("copy.stderr");
    let mut c = dst.std_cmd_via(&via);
    c.env("CAIRN_FROM_PASSWORD", src.password())
        .args(["copy", "--from-repo", src.url(), "--json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = c.spawn().expect("start copy");
    let started = Instant::now();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the copy ended ({st}) before an index object appeared; stderr:\n{}", log_text());
        }
        if !dst.list("index").is_empty() {
            break;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no index object on the destination after 90 s; stderr:\n{}", log_text());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().expect("kill -9 the copy");
    let st = child.wait().unwrap();
    assert!(!st.success(), "the copy finished before it was killed ({st}); stderr:\n{}", log_text());
    let waited = started.elapsed();
    drop(proxy);
    assert!(dst.list("snapshots").is_empty(), "an interrupted copy left a snapshot");
    let packs_left = dst.list("data").len();
    assert!(packs_left >= 1, "no pack stored before the kill");

    // The second run: direct, and only what was not indexed is sent.
    let v = copy_json(&dst, &src, &[]);
    let sent = u(&v, "bytes_sent");
    assert_eq!(copied(&v).len(), 1, "{v}");
    assert!(sent < total - MIB, "the resumed copy sent {sent} of {total} bytes (killed after {waited:?}): {v}");
    assert!(sent > 0, "nothing left to send after the kill at {waited:?}?: {v}");
    assert_eq!(u(&v, "packs_verified"), u(&v, "packs"), "{v}");
    check_read_data(&dst);
    assert_restores(&dst, "latest", &dir);
}

// ----- 6. a damaged source

both_backends!(damaged_source_pack_fails_naming_it_and_writes_no_snapshot);

/// The source is local (its pack files are damaged in place); the
/// destination on `w`, once with the same ids and once re-chunking.
fn damaged_source_pack_fails_naming_it_and_writes_no_snapshot(w: Where) {
    let src = Repo::init();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    small_tree(&dir, 4);
    src.backup_json(&[p(&dir)], None);
    let pack = largest(&src.packs());
    let pack_id = crate::common::file_name(&pack);
    flip_middle(&pack);

    let same = Repo::uninit_on(w);
    init_same_ids(&same, &src, &[]);
    let other = Repo::uninit_on(w).with_password("other");
    other.init_repo();
    for (dst, what) in [(&same, "same ids"), (&other, "re-chunk")] {
        let o = with_source(dst, &src, &["copy", "--json"]);
        o.assert_failed(None, what);
        let line = o.one_error_line(what);
        assert!(line.contains(&pack_id), "{what}: the error does not name pack {pack_id}: {line}");
        assert!(line.contains("source"), "{what}: the error does not say it is the source: {line}");
        assert!(dst.list("snapshots").is_empty(), "{what}: a snapshot was written");
        assert!(o.stdout.is_empty(), "{what}: a JSON summary for a failed copy: {}", o.stdout_str());
    }
}

// ----- 7. refusals

#[test]
fn wrong_source_password_exits_12_and_same_repository_is_refused() {
    let src = Repo::init();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("f"), b"some data").unwrap();
    src.backup_json(&[p(tmp.path())], None);
    let dst = Repo::init();

    let mut c = dst.cmd();
    c.env("CAIRN_FROM_PASSWORD", "not the password").args(["copy", "--from-repo", src.url()]);
    let o = output(c);
    o.assert_failed(Some(12), "wrong source password");
    let line = o.one_error_line("wrong source password");
    assert!(line.contains("source"), "{line}");
    assert!(dst.snapshots().is_empty());

    // The same repository, however it is spelled, is refused.
    let before = src.list("");
    for spelling in [src.url().to_string(), format!("{}/", src.url()), format!("{}/.", src.url())] {
        let mut c = src.cmd_via(&spelling);
        c.env("CAIRN_FROM_PASSWORD", src.password()).args(["copy", "--from-repo", src.url()]);
        let o = output(c);
        o.assert_failed(None, "copy into itself");
        let line = o.one_error_line("copy into itself");
        assert!(line.contains("same repository"), "{spelling}: {line}");
    }
    assert_eq!(src.snapshots().len(), 1);
    assert_eq!(src.list(""), before, "a refused copy changed the repository");
}
