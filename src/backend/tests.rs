//! The backend suite: every backend must pass the same tests.

use super::*;

/// Runs the whole suite against `b`, which must be empty.
pub fn suite(b: &Backend) {
    // put / get / overwrite
    b.put("snapshots/aa", Bytes::from_static(b"hello")).unwrap();
    assert_eq!(&b.get("snapshots/aa").unwrap()[..], b"hello");
    b.put("snapshots/aa", Bytes::from_static(b"world!")).unwrap();
    assert_eq!(&b.get("snapshots/aa").unwrap()[..], b"world!");
    assert_eq!(b.size("snapshots/aa").unwrap(), 6);
    // ranged get
    b.put("data/ab/abcd", Bytes::from((0u8..=255).collect::<Vec<_>>())).unwrap();
    assert_eq!(&b.get_range("data/ab/abcd", 10..14).unwrap()[..], &[10, 11, 12, 13]);
    let rs = b.get_ranges("data/ab/abcd", &[0..2, 254..256]).unwrap();
    assert_eq!(&rs[1][..], &[254, 255]);
    // streamed get: the pieces, in order, are the object
    assert_eq!(streamed(b, "data/ab/abcd"), (0u8..=255).collect::<Vec<_>>());
    // listing is by prefix and recursive
    b.put("data/cd/cdef", Bytes::from_static(b"x")).unwrap();
    let mut names: Vec<String> = b.list("data").unwrap().into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(names, vec!["data/ab/abcd", "data/cd/cdef"]);
    assert!(b.list("index").unwrap().is_empty());
    // missing objects are NotFound
    assert_eq!(b.get("snapshots/zz").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(b.get_range("snapshots/zz", 0..1).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(b.get_streamed("snapshots/zz", |_| ()).unwrap_err().kind(), ErrorKind::NotFound);
    // background puts
    let p: Vec<PendingPut> =
        (0..8).map(|i| b.spawn_put(&format!("index/{i}"), Bytes::from(vec![i as u8; 1000]))).collect();
    for x in p {
        x.wait().unwrap();
    }
    assert_eq!(b.list("index").unwrap().len(), 8);
    // delete
    b.delete("data/cd/cdef").unwrap();
    assert_eq!(b.list("data").unwrap().len(), 1);
}

/// An object read through [`Backend::get_streamed`], with a check that the
/// count it returns is the bytes it handed over.
fn streamed(b: &Backend, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let n = b.get_streamed(name, |piece| out.extend_from_slice(piece)).unwrap();
    assert_eq!(n, out.len() as u64);
    out
}

#[test]
fn memory_backend_passes_suite() {
    suite(&Backend::memory().unwrap());
}

#[test]
fn local_backend_passes_suite() {
    let dir = tempfile::tempdir().unwrap();
    suite(&Backend::local(dir.path(), true).unwrap());
}

#[test]
fn local_streamed_get_reads_in_bounded_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let b = Backend::local(dir.path(), true).unwrap();
    let data: Vec<u8> = (0..STREAM_PIECE * 5 / 2 + 3).map(|i| (i % 253) as u8).collect();
    b.put("data/ab/big", Bytes::from(data.clone())).unwrap();
    let mut pieces = Vec::new();
    let mut back = Vec::new();
    b.get_streamed("data/ab/big", |p| {
        pieces.push(p.len());
        back.extend_from_slice(p)
    })
    .unwrap();
    assert!(back == data, "the object read back differs");
    assert_eq!(pieces, vec![STREAM_PIECE, STREAM_PIECE, STREAM_PIECE / 2 + 3]);
}

#[test]
fn local_missing_directory_is_no_repository() {
    let dir = tempfile::tempdir().unwrap();
    let e = Backend::local(&dir.path().join("nope"), false).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::NoRepository);
}

// ----- local puts: staging, permissions, errors

/// Every file and directory under `dir` (not `dir` itself), sorted.
fn walk(dir: &FsPath) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("reading {}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// `path`'s permission bits.
fn mode(path: &FsPath) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

/// Asserts that `root` and everything under it is private: directories
/// 0700, files 0600. Returns what it checked (below `root`).
fn assert_private(root: &FsPath) -> Vec<PathBuf> {
    assert_eq!(mode(root), 0o700, "{}", root.display());
    let all = walk(root);
    for p in &all {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(p), want, "mode of {} is {:o}, not {want:o}", p.display(), mode(p));
    }
    all
}

/// Staging files (`name#N`) under `dir`.
fn staging_files(dir: &FsPath) -> Vec<PathBuf> {
    walk(dir).into_iter().filter(|p| p.file_name().unwrap().to_string_lossy().contains('#')).collect()
}

/// Sets the process umask for the life of the guard (the umask is
/// process-wide, so other tests see it too: only use one they tolerate).
struct Umask(libc::mode_t);

impl Umask {
    fn set(mask: libc::mode_t) -> Self {
        // SAFETY: umask only swaps the process's file mode mask.
        Umask(unsafe { libc::umask(mask) })
    }
}

impl Drop for Umask {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::umask(self.0) };
    }
}

#[test]
fn local_put_leaves_no_staging_file() {
    let dir = tempfile::tempdir().unwrap();
    let b = Backend::local(dir.path(), true).unwrap();
    suite(&b);
    b.put("data/ef/ef01", Bytes::from(vec![7u8; 100_000])).unwrap();
    assert!(b.put_new("config", Bytes::from_static(b"one")).unwrap());
    assert!(!b.put_new("config", Bytes::from_static(b"two")).unwrap(), "put_new replaced an object");
    assert_eq!(&b.get("config").unwrap()[..], b"one");
    assert_eq!(staging_files(dir.path()), Vec::<PathBuf>::new());
    // A staging file left by a killed put: listings skip it, and later
    // puts of the same name work beside it and leave no other.
    let stale = dir.path().join("data/ef/ef01#1");
    std::fs::write(&stale, b"half").unwrap();
    b.put("data/ef/ef01", Bytes::from_static(b"whole")).unwrap();
    b.spawn_put("data/ef/ef01", Bytes::from_static(b"whole")).wait().unwrap();
    assert_eq!(&b.get("data/ef/ef01").unwrap()[..], b"whole");
    assert_eq!(staging_files(dir.path()), vec![stale]);
    let mut names: Vec<String> = b.list("data").unwrap().into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(names, vec!["data/ab/abcd", "data/ef/ef01"]);
}

#[test]
fn local_repository_and_cache_are_private_whatever_the_umask() {
    use crate::crypto::aead::ObjectType;
    use crate::repo::{CacheMode, InitOptions, Repository};
    let _umask = Umask::set(0o022);
    std::env::set_var("CAIRN_INSECURE_TEST_KDF", "1");
    let tmp = tempfile::tempdir().unwrap();
    let (root, cache) = (tmp.path().join("repo"), tmp.path().join("cache"));
    let b = Backend::local(&root, true).unwrap();
    let repo = Repository::init(b, b"pw", &InitOptions::default(), CacheMode::Dir(cache.clone())).unwrap();
    // A pack (in the background, as the packer stores them), an index
    // object and a snapshot object.
    repo.backend.spawn_put(&format!("data/3f/3f{}", "0".repeat(62)), Bytes::from(vec![1u8; 5000])).wait().unwrap();
    repo.save_index(Vec::new()).unwrap();
    repo.save_object("snapshots", ObjectType::Snapshot, b"{}").unwrap();
    let checked = assert_private(&root);
    for want in ["config", "keys", "data", "data/3f", "index", "snapshots"] {
        assert!(checked.contains(&root.join(want)), "no {want} in {checked:?}");
    }
    assert!(!walk(&root.join("keys")).is_empty() && !walk(&root.join("index")).is_empty());
    let checked = assert_private(&cache);
    let db = repo.cache.path().expect("on disk").to_path_buf();
    assert!(db.starts_with(cache.join(repo.config.id.to_hex())), "{}", db.display());
    assert!(checked.contains(&db), "no {} in {checked:?}", db.display());
}

#[test]
fn local_put_failure_is_an_error_naming_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let b = Backend::local(dir.path(), true).unwrap();
    // `data` is a regular file, so `data/ab/` cannot be made (root or not).
    std::fs::write(dir.path().join("data"), b"not a directory").unwrap();
    let root = dir.path().canonicalize().unwrap();
    let errors = [
        b.put("data/ab/abcd", Bytes::from_static(b"x")).unwrap_err(),
        b.spawn_put("data/ab/abcd", Bytes::from_static(b"x")).wait().unwrap_err(),
        b.put_new("data/ab/abcd", Bytes::from_static(b"x")).unwrap_err(),
    ];
    for e in errors {
        assert_eq!(e.kind(), ErrorKind::Io, "{e}");
        let text = e.to_string();
        // One sentence: the object, the repository, the reason in words.
        let named = format!("cannot write data/ab/abcd on {}: not a directory (", root.display());
        assert!(text.contains(&named), "the error does not name data/ab/abcd and {}: {text}", root.display());
        assert!(!text.contains("os error"), "{text}");
        assert!(!text.contains('\n'), "more than one line: {text}");
    }
    // The final name is a directory: the rename fails, and the staging
    // file is removed.
    std::fs::create_dir_all(dir.path().join("snapshots/aa")).unwrap();
    let e = b.put("snapshots/aa", Bytes::from_static(b"x")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io, "{e}");
    assert!(e.to_string().contains("snapshots/aa"), "{e}");
    assert_eq!(staging_files(dir.path()), Vec::<PathBuf>::new());
    // Names that listings would skip are refused, not stored unseen.
    assert!(b.put("snapshots/bb#3", Bytes::from_static(b"x")).is_err());
    assert_eq!(staging_files(dir.path()), Vec::<PathBuf>::new());
}

// ----- the same suite on the S3 server of `CAIRN_TEST_S3`

/// `$CAIRN_TEST_S3` (e.g. `s3:http://127.0.0.1:7480/cairn-test`, with the
/// `AWS_*` credentials, as `scripts/s3-server.sh start` prints them). Unset:
/// a loud skip, or a panic when `CI` is set (CI always has the server).
fn s3_base(test: &str) -> Option<String> {
    if let Some(base) = std::env::var("CAIRN_TEST_S3").ok().filter(|s| !s.trim().is_empty()) {
        return Some(base.trim().trim_end_matches('/').to_string());
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: CAIRN_TEST_S3 is not set, and CI is: CI must run the S3 tests (scripts/test.sh starts the server)"
    );
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "\n*** {test}: skipped: CAIRN_TEST_S3 not set (eval \"$(bash scripts/s3-server.sh start /var/tmp/cairn-s3 7480)\" first) ***"
    );
    None
}

/// The shared side of the lock file of the integration tests
/// (`tests/integration/common.rs`, `S3_LOCK`), whose tests that stop
/// radosgw take the exclusive side.
struct S3Lock(#[allow(dead_code)] std::fs::File);

fn s3_lock() -> S3Lock {
    use std::os::unix::io::AsRawFd;
    let path = "/tmp/cairn-s3-tests.lock";
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {path}: {e}"));
    loop {
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_SH) } == 0 {
            return S3Lock(f);
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "flock {path}: {e}");
    }
}

/// An empty S3 backend under a prefix of its own (`BASE/bt-<random hex>`);
/// its objects are deleted when it is dropped.
struct S3Scratch {
    url: String,
    backend: Backend,
    _lock: S3Lock,
}

impl S3Scratch {
    fn new(test: &str) -> Option<Self> {
        let base = s3_base(test)?;
        let lock = s3_lock();
        let url = format!("{base}/bt-{:016x}", rand::random::<u64>());
        let backend = Backend::open(&url, true, &Default::default()).unwrap_or_else(|e| panic!("opening {url}: {e}"));
        assert_eq!(backend.list("").unwrap(), Vec::new(), "{url} is not empty");
        Some(Self { url, backend, _lock: lock })
    }

    /// The same location through a new client (nothing shared with
    /// `backend`: what the server really holds).
    fn reopen(&self) -> Backend {
        Backend::open(&self.url, false, &Default::default()).unwrap_or_else(|e| panic!("opening {}: {e}", self.url))
    }
}

impl Drop for S3Scratch {
    fn drop(&mut self) {
        for (name, _) in self.backend.list("").unwrap_or_default() {
            if let Err(e) = self.backend.delete(&name) {
                eprintln!("cleaning up {}: deleting {name}: {e}", self.url);
            }
        }
    }
}

#[test]
fn s3_backend_passes_suite() {
    let Some(s) = S3Scratch::new("backend::tests::s3_backend_passes_suite") else { return };
    suite(&s.backend);
    // The objects are on the server, under the prefix, with their sizes.
    let mut on_server = s.reopen().list("").unwrap();
    on_server.sort();
    let mut want: Vec<(String, u64)> = vec![("data/ab/abcd".into(), 256), ("snapshots/aa".into(), 6)];
    want.extend((0..8).map(|i| (format!("index/{i}"), 1000)));
    want.sort();
    assert_eq!(on_server, want);
    assert_eq!(&s.reopen().get("snapshots/aa").unwrap()[..], b"world!");
    let st = &s.backend.stats;
    assert_eq!(st.puts.load(Ordering::Relaxed), 12, "{}", st.summary());
    assert_eq!(st.deletes.load(Ordering::Relaxed), 1, "{}", st.summary());
}

#[test]
fn s3_large_objects_go_up_in_parts_and_read_back_whole() {
    let Some(s) = S3Scratch::new("backend::tests::s3_large_objects_go_up_in_parts_and_read_back_whole") else {
        return;
    };
    let len = MULTIPART_THRESHOLD + MULTIPART_PART / 2 + 5;
    let data: Bytes = (0..len).map(|i| (i % 251) as u8 ^ (i >> 20) as u8).collect::<Vec<u8>>().into();
    s.backend.put("data/big", data.clone()).unwrap();
    let parts = len.div_ceil(MULTIPART_PART) as u64;
    let puts = s.backend.stats.puts.load(Ordering::Relaxed);
    assert!(puts >= parts, "{len} bytes went up in {puts} requests, fewer than {parts} parts");
    let b = s.reopen();
    assert_eq!(b.size("data/big").unwrap(), len as u64);
    assert!(b.get("data/big").unwrap() == data, "the object read back differs");
    assert!(streamed(&b, "data/big") == data, "the object streamed back differs");
    // A range across the first part boundary, and the last bytes.
    let at = MULTIPART_PART as u64;
    assert_eq!(b.get_range("data/big", at - 3..at + 3).unwrap(), data.slice(MULTIPART_PART - 3..MULTIPART_PART + 3));
    let end = len as u64;
    assert_eq!(b.get_range("data/big", end - 7..end).unwrap(), data.slice(len - 7..));
    assert_eq!(b.list("data").unwrap(), vec![("data/big".to_string(), len as u64)]);
}

#[test]
fn s3_missing_bucket_is_no_repository() {
    let Some(base) = s3_base("backend::tests::s3_missing_bucket_is_no_repository") else { return };
    let _lock = s3_lock();
    let loc = S3Location::parse(&base).expect("an s3: URL").expect("a valid s3: URL");
    let endpoint = loc.endpoint.expect("CAIRN_TEST_S3 names an endpoint");
    let url = format!("s3:{endpoint}/cairn-missing-{:016x}/repo", rand::random::<u64>());
    let b = Backend::open(&url, true, &Default::default()).unwrap();
    for e in [b.list("").unwrap_err(), b.get("config").unwrap_err(), b.put("config", Bytes::new()).unwrap_err()] {
        assert_eq!(e.kind(), ErrorKind::NoRepository, "{e}");
        assert!(e.to_string().contains("the bucket does not exist"), "{e}");
    }
}
