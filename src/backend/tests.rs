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
    // listing is by prefix and recursive
    b.put("data/cd/cdef", Bytes::from_static(b"x")).unwrap();
    let mut names: Vec<String> = b.list("data").unwrap().into_iter().map(|(n, _)| n).collect();
    names.sort();
    assert_eq!(names, vec!["data/ab/abcd", "data/cd/cdef"]);
    assert!(b.list("index").unwrap().is_empty());
    // missing objects are NotFound
    assert_eq!(b.get("snapshots/zz").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(b.get_range("snapshots/zz", 0..1).unwrap_err().kind(), ErrorKind::NotFound);
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
fn local_missing_directory_is_no_repository() {
    let dir = tempfile::tempdir().unwrap();
    let e = Backend::local(&dir.path().join("nope"), false).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::NoRepository);
}
