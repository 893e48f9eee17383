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
