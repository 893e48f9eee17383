//! `mount`: a real FUSE mount of a real repository (local and S3), read
//! by ordinary tools: file contents by SHA-256, metadata by lstat, a walk
//! with `find`, concurrent readers, a damaged chunk, and unmounting on
//! signals.
//!
//! The tests need /dev/fuse and root (or fusermount3). Without them they
//! skip loudly, and fail when `CI` is set (CI has both).

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::backup_restore::build_odd_tree;
use crate::common::{self, both_backends, sha256_hex, Repo, Where};

/// Whether FUSE mounts can be made here; else why not.
fn fuse_unavailable() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("/dev/fuse is missing".into());
    }
    if !common::is_root() && which("fusermount3").is_none() {
        return Some("not root and no fusermount3".into());
    }
    None
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(bin)).find(|p| p.exists())
}

fn skip(test: &str) -> bool {
    match fuse_unavailable() {
        None => false,
        Some(why) if std::env::var_os("CI").is_some() => panic!("{test}: cannot mount in CI: {why}"),
        Some(why) => {
            eprintln!("SKIPPED {test}: {why}");
            true
        }
    }
}

fn is_mounted(point: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let want = point.to_str().expect("utf-8 mount point");
    mountinfo.lines().any(|l| l.split(' ').nth(4) == Some(want))
}

/// A running `cairn mount`. Dropping it kills the process and detaches
/// the mount, so a failing test leaves nothing mounted.
struct Mounted {
    child: Option<Child>,
    point: PathBuf,
}

impl Mounted {
    fn start(repo: &Repo, point: &Path, extra: &[&str]) -> Self {
        std::fs::create_dir_all(point).expect("mkdir mount point");
        let mut c = repo.std_cmd_via(repo.url());
        c.arg("mount").args(extra).arg(point).stdout(Stdio::null()).stderr(Stdio::piped());
        let child = c.spawn().expect("spawn cairn mount");
        let mut m = Self { child: Some(child), point: point.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(is_mounted(point) && point.join("snapshots").exists()) {
            if let Some(status) = m.child.as_mut().and_then(|c| c.try_wait().expect("wait")) {
                let err = m.stderr();
                panic!("cairn mount exited with {status} before mounting:\n{err}");
            }
            assert!(Instant::now() < deadline, "{} was not mounted within 60 s", point.display());
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill() with a pid of our own child; no memory is passed.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0, "kill");
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(e) = self.child.as_mut().and_then(|c| c.stderr.as_mut()) {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// Waits for the process to exit (within 60 s): its exit code and log.
    fn wait(mut self) -> (Option<i32>, String) {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "cairn mount did not exit within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status.code(), err)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if is_mounted(&self.point) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.point).status();
        }
    }
}

/// What must match between a source entry and its copy in the mount.
#[derive(Debug, PartialEq)]
struct Meta {
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    nlink: u64,
    rdev: u64,
    link: Option<PathBuf>,
    sha256: Option<String>,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn meta(path: &Path) -> Meta {
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    let kind = m.mode() & libc::S_IFMT;
    let is_file = kind == libc::S_IFREG;
    let is_dir = kind == libc::S_IFDIR;
    let mut xattrs: Vec<(String, Vec<u8>)> = if kind == libc::S_IFLNK || kind == libc::S_IFIFO {
        Vec::new()
    } else {
        xattr::list(path)
            .map(|names| {
                names
                    .filter_map(|n| xattr::get(path, &n).ok().flatten().map(|v| (n.to_string_lossy().into_owned(), v)))
                    .collect()
            })
            .unwrap_or_default()
    };
    xattrs.sort();
    Meta {
        kind,
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        // A directory's size is the source filesystem's business.
        size: if is_dir { 0 } else { m.size() },
        mtime: (m.mtime(), m.mtime_nsec()),
        nlink: if is_dir { 0 } else { m.nlink() },
        rdev: m.rdev(),
        link: std::fs::read_link(path).ok(),
        sha256: is_file.then(|| sha256_hex(&std::fs::read(path).expect("read file"))),
        xattrs,
    }
}

/// The names in a directory, sorted.
fn sorted_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A temporary directory with `src/NAME` holding `data`: (the directory,
/// the source path).
fn source_with(name: &str, data: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join(name), data).unwrap();
    (tmp, src)
}

/// Every path under `root`, relative, in a stable order.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        if !std::fs::symlink_metadata(&dir).expect("lstat").is_dir() {
            continue;
        }
        for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
            let r = rel.join(e.expect("entry").file_name());
            out.push(r.clone());
            stack.push(r);
        }
    }
    out.sort();
    out
}

fn mount_shows_every_snapshot_with_exact_files_and_metadata(w: Where) {
    if skip("mount_shows_every_snapshot_with_exact_files_and_metadata") {
        return;
    }
    let repo = Repo::init_on(w);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_odd_tree(&src);
    let s = src.to_str().expect("utf-8");
    let first = repo.backup_json(&["--host", "db1", "--tag", "nightly", "--time", "2026-11-20 01:00:00", s], None);
    let dump = b"-- a stream snapshot\n".repeat(50_000);
    repo.backup_json(&["--host", "db2", "--stdin-filename", "db.sql", "--time", "2026-11-21 01:00:00"], Some(&dump));

    let point = tmp.path().join("mnt");
    let m = Mounted::start(&repo, &point, &[]);
    let names = |d: &str| sorted_names(&point.join(d));
    assert_eq!(names(""), ["hosts", "ids", "snapshots", "tags"]);
    assert_eq!(names("hosts"), ["db1", "db2"]);
    assert_eq!(names("tags"), ["nightly"]);
    assert_eq!(names("snapshots").len(), 3, "{:?}", names("snapshots"));
    let short = &first["snapshot_id"].as_str().expect("id")[..8];
    assert!(names("ids").contains(&short.to_string()), "{:?}", names("ids"));
    let latest_db1 = std::fs::read_link(point.join("hosts/db1/latest")).expect("latest link");
    assert!(latest_db1.to_str().expect("utf-8").starts_with("2026-11-20T01:00:00"), "{latest_db1:?}");

    // Every entry of the source, by content and metadata, through three
    // routes to the same snapshot.
    let rel = src.strip_prefix("/").expect("absolute");
    let routes = [
        point.join("hosts/db1/latest").join(rel),
        point.join("tags/nightly/latest").join(rel),
        point.join("ids").join(short).join(rel),
    ];
    let entries = walk(&src);
    assert!(entries.len() > 20, "{entries:?}");
    for route in &routes {
        assert_eq!(walk(route), entries, "the mount lists other entries under {}", route.display());
        for e in &entries {
            assert_eq!(meta(&route.join(e)), meta(&src.join(e)), "{} differs in the mount", e.display());
        }
    }
    // The stream snapshot is one file.
    let stream = point.join("hosts/db2/latest/db.sql");
    assert_eq!(sha256_hex(&std::fs::read(&stream).expect("read db.sql")), sha256_hex(&dump));

    // find(1) walks the whole mount.
    let out = std::process::Command::new("find").arg(&point).output().expect("find");
    assert!(out.status.success(), "find failed: {}", String::from_utf8_lossy(&out.stderr));
    let found = out.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
    assert!(found > 3 * entries.len(), "find saw only {found} entries");
    let leaf = out.stdout.split(|b| *b == b'\n').any(|l| l.ends_with(b"/leaf.txt"));
    assert!(leaf, "find did not reach the deepest file");

    // Several processes read the large file at once.
    let big = routes[0].join("big.bin");
    let want = sha256_hex(&std::fs::read(src.join("big.bin")).expect("read"));
    let readers: Vec<Child> = (0..4)
        .map(|_| std::process::Command::new("sha256sum").arg(&big).stdout(Stdio::piped()).spawn().expect("sha256sum"))
        .collect();
    for r in readers {
        let out = r.wait_with_output().expect("sha256sum");
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).starts_with(&want), "a concurrent reader got other bytes");
    }

    // Read-only.
    let e = std::fs::write(routes[0].join("small.txt"), b"x").expect_err("writing into the mount");
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");

    m.signal(libc::SIGTERM);
    let (code, log) = m.wait();
    assert_eq!(code, Some(0), "mount did not exit cleanly on SIGTERM:\n{log}");
    assert!(!is_mounted(&point), "still mounted after SIGTERM");
}

fn mount_gives_eio_for_a_damaged_chunk_names_the_file_and_goes_on(w: Where) {
    if skip("mount_gives_eio_for_a_damaged_chunk_names_the_file_and_goes_on") {
        return;
    }
    let repo = Repo::init_on(w);
    let (tmp, src) = source_with("victim.bin", &common::noise(4 << 20, 7));
    let s = src.to_str().expect("utf-8");
    repo.backup_json(&[s], None);
    // The tree lives in its own pack; damage the data pack (the larger).
    let packs = repo.list("data");
    let (name, _) = packs.iter().max_by_key(|(_, size)| *size).expect("a data pack").clone();
    let b = repo.backend();
    let mut bytes = b.get(&name).expect("get pack").to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    b.put(&name, bytes.into()).expect("put damaged pack");
    // A small file stored after the damage, in a pack of its own.
    std::fs::write(src.join("fine.txt"), b"still readable\n").unwrap();
    repo.backup_json(&[s], None);

    let point = tmp.path().join("mnt");
    let m = Mounted::start(&repo, &point, &[]);
    let base = point.join("snapshots/latest").join(src.strip_prefix("/").unwrap());
    let e = std::fs::read(base.join("victim.bin")).expect_err("reading a damaged file succeeded");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    // The mount goes on: other files read, directories list.
    assert_eq!(std::fs::read(base.join("fine.txt")).expect("read fine.txt"), b"still readable\n");
    assert_eq!(walk(&base).len(), 2);
    assert!(is_mounted(&point));

    m.signal(libc::SIGINT);
    let (code, log) = m.wait();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("victim.bin"), "the log does not name the damaged file:\n{log}");
    assert!(!is_mounted(&point));
}

both_backends!(
    mount_shows_every_snapshot_with_exact_files_and_metadata,
    mount_gives_eio_for_a_damaged_chunk_names_the_file_and_goes_on
);

#[test]
fn mount_detaches_when_busy_at_sigterm() {
    if skip("mount_detaches_when_busy_at_sigterm") {
        return;
    }
    let repo = Repo::init();
    let (tmp, src) = source_with("f", b"held open\n");
    repo.backup_json(&[src.to_str().unwrap()], None);
    let point = tmp.path().join("mnt");
    let m = Mounted::start(&repo, &point, &[]);
    let held = std::fs::File::open(point.join("snapshots/latest").join(src.strip_prefix("/").unwrap()).join("f"))
        .expect("open a file in the mount");
    m.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    while is_mounted(&point) {
        assert!(Instant::now() < deadline, "a busy mount was not detached on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(held);
    let (code, log) = m.wait();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("busy"), "{log}");
}

#[test]
fn mount_refuses_bad_mount_points_and_repositories_in_one_line() {
    let repo = Repo::init();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let o = repo.out(&["mount", file.to_str().unwrap()]);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert_eq!(o.stderr.trim().lines().count(), 1, "{}", o.stderr);
    assert!(o.stderr.contains("not a directory"), "{}", o.stderr);
    let o = repo.out(&["mount", tmp.path().join("missing").to_str().unwrap()]);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert_eq!(o.stderr.trim().lines().count(), 1, "{}", o.stderr);

    let none = Repo::uninit();
    let o = none.out(&["mount", tmp.path().to_str().unwrap()]);
    assert_eq!(o.code, Some(10), "{}", o.stderr);
    assert_eq!(o.stderr.trim().lines().count(), 1, "{}", o.stderr);
}

#[test]
fn mount_shows_snapshots_made_and_forgotten_while_it_runs() {
    if skip("mount_shows_snapshots_made_and_forgotten_while_it_runs") {
        return;
    }
    let repo = Repo::init();
    let (tmp, src) = source_with("f", b"first\n");
    let s = src.to_str().unwrap();
    let first = repo.backup_json(&["--time", "2026-11-20 01:00:00", s], None);
    let point = tmp.path().join("mnt");
    let m = Mounted::start(&repo, &point, &[]);
    let listed = || sorted_names(&point.join("snapshots"));
    assert_eq!(listed().len(), 2, "{:?}", listed());
    let wait_for = |what: &str, ok: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ok() {
            assert!(Instant::now() < deadline, "the mount did not show {what} within 30 s: {:?}", listed());
            std::thread::sleep(Duration::from_millis(200));
        }
    };

    std::fs::write(src.join("f"), b"second\n").unwrap();
    repo.backup_json(&["--tag", "later", "--time", "2026-11-21 01:00:00", s], None);
    wait_for("the new snapshot", &|| listed().len() == 3);
    let latest = std::fs::read_link(point.join("snapshots/latest")).expect("latest");
    assert!(latest.to_str().unwrap().starts_with("2026-11-21T01:00:00"), "{latest:?}");
    let rel = src.strip_prefix("/").unwrap();
    assert_eq!(std::fs::read(point.join("snapshots/latest").join(rel).join("f")).unwrap(), b"second\n");
    assert_eq!(std::fs::read(point.join("tags/later/latest").join(rel).join("f")).unwrap(), b"second\n");

    let o = repo.out(&["forget", first["snapshot_id"].as_str().unwrap()]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    wait_for("the snapshot forgotten", &|| listed().len() == 2);

    m.signal(libc::SIGTERM);
    let (code, log) = m.wait();
    assert_eq!(code, Some(0), "{log}");
}

/// The mount holds the inodes the kernel holds: after a walk, once the
/// kernel drops its dentry and inode caches, the table is back to (about)
/// the root, so a walk of a huge repository does not keep growing it.
#[test]
fn mount_lets_go_of_inodes_the_kernel_forgets() {
    if skip("mount_lets_go_of_inodes_the_kernel_forgets") {
        return;
    }
    let repo = Repo::init();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for d in 0..20 {
        for f in 0..20 {
            let p = src.join(format!("d{d}/f{f}"));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, format!("{d}/{f}\n")).unwrap();
        }
    }
    repo.backup_json(&[src.to_str().unwrap()], None);
    let point = tmp.path().join("mnt");
    let m = Mounted::start(&repo, &point, &["--verbose"]);
    let base = point.join("snapshots/latest").join(src.strip_prefix("/").unwrap());
    let entries = walk(&base);
    assert_eq!(entries.len(), 20 + 400);
    for e in entries.iter().filter(|e| e.components().count() == 2) {
        std::fs::read(base.join(e)).expect("read");
    }
    // Drop the kernel's dentries and inodes: it forgets ours.
    std::fs::write("/proc/sys/vm/drop_caches", b"2").expect("drop_caches");
    std::thread::sleep(Duration::from_millis(500));
    m.signal(libc::SIGTERM);
    let (code, log) = m.wait();
    assert_eq!(code, Some(0), "{log}");
    let line = log.lines().find(|l| l.contains("inodes held at the end")).unwrap_or_else(|| panic!("{log}"));
    let numbers: Vec<usize> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
    let (end, most) = (numbers[0], numbers[1]);
    assert!(most > 400, "the walk held only {most} inodes at once: {line}");
    assert!(end < 20, "{end} inodes still held after the kernel dropped its caches: {line}");
}

/// A mount beside a prune that repacks what it serves: with its shared
/// lock, prune defers the deletions; with `--no-lock`, the packs go, and
/// the mount reads the index again and serves the same bytes.
#[test]
fn mount_reads_exactly_while_prune_repacks_under_it() {
    if skip("mount_reads_exactly_while_prune_repacks_under_it") {
        return;
    }
    use crate::schedule::{hashes, World};
    for extra in [&[][..], &["--no-lock"][..]] {
        let world = World::new(Where::Local);
        let v2 = world.versions.values().find(|d| d.ends_with("v2")).unwrap().clone();
        let id = world.snapshot_of(&v2).unwrap();
        let point = world.repo.dir.path().join("mnt");
        let m = Mounted::start(&world.repo, &point, extra);
        let inside = point.join("ids").join(&id[..8]).join(v2.strip_prefix("/").unwrap());
        assert_eq!(sorted_names(&inside).len(), 9, "{extra:?}");
        let o = world.repo.out(&["prune", "--max-unused", "0"]);
        assert_eq!(o.code, Some(0), "prune beside a mount {extra:?}:\n{}", o.stderr);
        let deleted = !o.stdout_str().contains("deleted 0 pack(s)");
        assert_eq!(
            deleted,
            !extra.is_empty(),
            "{extra:?}: prune deleted packs under a locked mount?\n{}",
            o.stdout_str()
        );
        assert_eq!(hashes(&inside), hashes(&v2), "mount {extra:?} after prune");
        m.signal(libc::SIGTERM);
        let (code, log) = m.wait();
        assert_eq!(code, Some(0), "{log}");
        world.verify(&format!("mount {extra:?} beside prune"));
    }
}

/// A dump of several MiB is named by chunk lists: the mount maps it list by
/// list as reads get there. Whole and positioned reads give its bytes;
/// after damage in the middle, reads there fail with EIO and the start
/// still reads.
#[test]
fn mount_reads_a_listed_dump_at_any_offset_and_fails_only_where_damaged() {
    if skip("mount_reads_a_listed_dump_at_any_offset_and_fails_only_where_damaged") {
        return;
    }
    use std::os::unix::fs::FileExt;
    let repo = Repo::init();
    let dump = common::noise(5 << 20, 21);
    // 5 MiB in 4 KiB chunks: ~1,300 chunks, more than a node holds.
    repo.backup_json(&["--stdin-filename", "db.sql"], Some(&dump));

    let point = repo.dir.path().join("mnt");
    let m = Mounted::start(&repo, &point, &[]);
    let path = point.join("snapshots/latest/db.sql");
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), dump.len() as u64);
    // Positioned reads first (the map learns the lists before each), then
    // the whole file.
    let f = std::fs::File::open(&path).expect("open db.sql");
    let n = dump.len();
    for (offset, size) in [(n - 100, 100), (3 << 20, 70_000), (123_457, 1), (0, 4096), (n - 1, 10)] {
        let mut buf = vec![0u8; size];
        let got = f.read_at(&mut buf, offset as u64).expect("read_at");
        assert_eq!(&buf[..got], &dump[offset..(offset + size).min(n)], "at {offset}");
    }
    drop(f);
    assert_eq!(sha256_hex(&std::fs::read(&path).expect("read db.sql")), sha256_hex(&dump));
    m.signal(libc::SIGTERM);
    assert_eq!(m.wait().0, Some(0));

    // Damage the middle of the data pack (the largest); a fresh mount.
    let (name, _) = repo.list("data").into_iter().max_by_key(|(_, size)| *size).expect("a data pack");
    let b = repo.backend();
    let mut bytes = b.get(&name).expect("get pack").to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    b.put(&name, bytes.into()).expect("put damaged pack");
    let m = Mounted::start(&repo, &point, &[]);
    let f = std::fs::File::open(&path).expect("open db.sql");
    let mut buf = vec![0u8; 4096];
    assert_eq!(f.read_at(&mut buf, 0).expect("the start still reads"), 4096);
    assert_eq!(&buf[..], &dump[..4096]);
    let e = std::fs::read(&path).expect_err("reading the damaged dump whole succeeded");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    drop(f);
    m.signal(libc::SIGTERM);
    let (code, log) = m.wait();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("db.sql"), "the log does not name the damaged file:\n{log}");
}
