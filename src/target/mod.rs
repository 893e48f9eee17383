//! Restore side of the filesystem: creating special entries and applying a
//! [`Node`]'s metadata (ownership, mode, xattrs, times) to a restored entry.

pub mod dirs;

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use filetime::FileTime;

use crate::format::tree::{Content, Node, NodeKind};

/// Options for applying metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaOptions {
    /// Restore numeric ownership (`lchown`). Default: only when running as
    /// root.
    pub owners: bool,
}

impl Default for MetaOptions {
    fn default() -> Self {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        Self { owners: euid == 0 }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| invalid(format!("{}: path contains a NUL byte", path.display())))
}

/// `mknod(path, kind | perm, rdev)`.
fn mknod(path: &CString, kind: libc::mode_t, perm: u32, rdev: u64) -> io::Result<()> {
    let mode = kind | (perm & 0o777) as libc::mode_t;
    let rdev = libc::dev_t::try_from(rdev).map_err(|_| invalid(format!("device number {rdev:#x} out of range")))?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::mknod(path.as_ptr(), mode, rdev) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Creates a symlink, FIFO, character/block device or socket at `path` from
/// `node`. The path must not exist. Permission bits are applied as far as
/// the umask allows; call [`apply_metadata`] afterwards for the exact mode.
pub fn create_special(path: &Path, node: &Node) -> io::Result<()> {
    let cpath = c_path(path)?;
    match (node.kind, &node.content) {
        (NodeKind::Symlink, Content::Symlink(target)) => std::os::unix::fs::symlink(OsStr::from_bytes(target), path),
        (NodeKind::Fifo, _) => {
            let mode = (node.mode & 0o777) as libc::mode_t;
            // SAFETY: `cpath` is a valid NUL-terminated string that outlives
            // the call.
            let rc = unsafe { libc::mkfifo(cpath.as_ptr(), mode) };
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        }
        (NodeKind::CharDev, Content::Device(rdev)) => mknod(&cpath, libc::S_IFCHR, node.mode, *rdev),
        (NodeKind::BlockDev, Content::Device(rdev)) => mknod(&cpath, libc::S_IFBLK, node.mode, *rdev),
        (NodeKind::Socket, _) => match mknod(&cpath, libc::S_IFSOCK, node.mode, 0) {
            Ok(()) => Ok(()),
            // Some systems only allow mknod(S_IFSOCK) to root: bind a socket
            // instead (dropping the listener leaves the socket file).
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => std::os::unix::net::UnixListener::bind(path).map(drop),
            Err(e) => Err(e),
        },
        (NodeKind::File | NodeKind::Dir, _) => {
            Err(invalid(format!("{}: create_special called for a {:?}", path.display(), node.kind)))
        }
        (kind, content) => {
            Err(invalid(format!("{}: {kind:?} node has mismatched content {content:?}", path.display())))
        }
    }
}

/// Nanoseconds since the epoch as a [`FileTime`] (negative values round
/// towards minus infinity, with a non-negative nanosecond part).
fn file_time(ns: i64) -> FileTime {
    let secs = ns.div_euclid(1_000_000_000);
    // rem_euclid is in 0..1e9, so it always fits in a u32.
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    FileTime::from_unix_time(secs, nanos)
}

/// Applies `node`'s metadata to the existing entry at `path`, in this order:
/// ownership (`lchown` to the numeric uid/gid, only if `opts.owners`), mode
/// (not for symlinks), extended attributes (never through a symlink), then
/// access and modification times with nanosecond precision (a symlink's own
/// times; the entry is never opened).
///
/// Whether the entry is a symlink is decided by `lstat`ing `path`, so a
/// symlink is never followed. Returns human-readable warnings for non-fatal
/// failures; returns `Err` only when `path` itself cannot be `lstat`ed (or
/// contains a NUL byte).
pub fn apply_metadata(path: &Path, node: &Node, opts: &MetaOptions) -> io::Result<Vec<String>> {
    c_path(path)?;
    let meta = std::fs::symlink_metadata(path)?;
    let is_link = meta.file_type().is_symlink();
    let mut warnings = Vec::new();
    if is_link != (node.kind == NodeKind::Symlink) {
        warnings.push(format!(
            "{}: expected a {:?} but found {}",
            path.display(),
            node.kind,
            if is_link { "a symlink" } else { "no symlink" }
        ));
    }

    if opts.owners {
        if let Err(e) = std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid)) {
            warnings.push(format!("chown {}:{} on {}: {e}", node.uid, node.gid, path.display()));
        }
    }

    if !is_link {
        let perms = std::fs::Permissions::from_mode(node.mode & 0o7777);
        if let Err(e) = std::fs::set_permissions(path, perms) {
            warnings.push(format!("chmod {:o} on {}: {e}", node.mode & 0o7777, path.display()));
        }
    }

    for (name, value) in &node.xattrs {
        // xattr::set uses lsetxattr: it never follows a symlink.
        if let Err(e) = xattr::set(path, OsStr::from_bytes(name), value) {
            warnings.push(format!("xattr {} on {}: {e}", String::from_utf8_lossy(name), path.display()));
        }
    }

    // The format keeps no access time: it is set to the modification time.
    let atime = file_time(node.mtime_ns);
    let mtime = file_time(node.mtime_ns);
    // `set_symlink_file_times` is utimensat(AT_SYMLINK_NOFOLLOW) on the path:
    // it sets a symlink's own times and is the same as a plain utimensat for
    // everything else. (`filetime::set_file_times` opens the entry, which
    // blocks on a FIFO, fails on a socket or an unreadable file, and has
    // side effects on devices.)
    if let Err(e) = filetime::set_symlink_file_times(path, atime, mtime) {
        warnings.push(format!("times on {}: {e}", path.display()));
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::fsmeta::{node_from_metadata, OwnerNames};
    use std::os::unix::fs::MetadataExt;

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    fn read(path: &Path) -> Node {
        let meta = std::fs::symlink_metadata(path).unwrap();
        let name = path.file_name().unwrap().as_bytes().to_vec();
        node_from_metadata(name, path, &meta, &mut OwnerNames::new()).unwrap()
    }

    fn user_xattrs(n: &Node) -> Vec<(Vec<u8>, Vec<u8>)> {
        n.xattrs.iter().filter(|(k, _)| k.starts_with(b"user.")).cloned().collect()
    }

    fn node(kind: NodeKind, content: Content, mode: u32, mtime_ns: i64) -> Node {
        Node { mode, uid: 1234, gid: 5678, mtime_ns, ..Node::for_test("x", kind, content) }
    }

    #[test]
    fn file_time_handles_negative_ns() {
        let t = file_time(-1);
        assert_eq!((t.unix_seconds(), t.nanoseconds()), (-1, 999_999_999));
        let t = file_time(-1_000_000_000);
        assert_eq!((t.unix_seconds(), t.nanoseconds()), (-1, 0));
        let t = file_time(1_600_000_000_123_456_789);
        assert_eq!((t.unix_seconds(), t.nanoseconds()), (1_600_000_000, 123_456_789));
        let t = file_time(i64::MIN);
        assert_eq!((t.unix_seconds(), t.nanoseconds()), (-9_223_372_037, 145_224_192));
    }

    #[test]
    fn create_special_rejects_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let fifo = node(NodeKind::Fifo, Content::None, 0o644, 0);
        // NUL byte in the path.
        let bad = d.join(OsStr::from_bytes(b"a\0b"));
        let e = create_special(&bad, &fifo).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = apply_metadata(&bad, &fifo, &MetaOptions::default()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        // NUL byte in a symlink target.
        let l = node(NodeKind::Symlink, Content::Symlink(b"a\0b".to_vec()), 0o777, 0);
        assert!(create_special(&d.join("l"), &l).is_err());
        // Regular files and directories are not special.
        let f = node(NodeKind::File, Content::File(vec![]), 0o644, 0);
        let e = create_special(&d.join("f"), &f).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        // Device without a device number.
        let c = node(NodeKind::CharDev, Content::None, 0o644, 0);
        let e = create_special(&d.join("c"), &c).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        // Existing path.
        create_special(&d.join("p"), &fifo).unwrap();
        let e = create_special(&d.join("p"), &fifo).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        // Missing path.
        assert!(apply_metadata(&d.join("missing"), &fifo, &MetaOptions::default()).is_err());
    }

    /// Backs up entries of every kind with node_from_metadata, restores them
    /// elsewhere with create_special + apply_metadata, and reads them back.
    #[test]
    fn round_trip() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let (s, t) = (src.path(), dst.path());
        let root = is_root();
        let opts = MetaOptions::default();
        assert_eq!(opts.owners, root);

        // Source entries.
        std::fs::write(s.join("file"), b"data").unwrap();
        std::fs::create_dir(s.join("dir")).unwrap();
        std::os::unix::fs::symlink("file", s.join("link")).unwrap();
        let fifo_c = CString::new(s.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: the path is a valid NUL-terminated string.
        assert_eq!(unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o640) }, 0);
        drop(std::os::unix::net::UnixListener::bind(s.join("sock")).unwrap());
        let xattrs_ok = xattr::set(s.join("file"), "user.cairn", b"hello").is_ok();
        if !xattrs_ok {
            eprintln!("skipping xattrs: user xattrs unsupported here");
        }
        let mut names = vec!["file", "dir", "link", "fifo", "sock"];
        if root {
            let c = CString::new(s.join("null").as_os_str().as_bytes()).unwrap();
            // SAFETY: the path is a valid NUL-terminated string.
            let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 3)) };
            if rc == 0 {
                names.push("null");
            } else {
                eprintln!("skipping char device: {}", io::Error::last_os_error());
            }
        } else {
            eprintln!("skipping char device and ownership: not root");
        }

        let mut owners = OwnerNames::new();
        for (i, name) in names.iter().enumerate() {
            let sp = s.join(name);
            let meta = std::fs::symlink_metadata(&sp).unwrap();
            let mut n = node_from_metadata(name.as_bytes().to_vec(), &sp, &meta, &mut owners).unwrap();
            // Distinct times with non-zero nanoseconds, one before the epoch.
            let i = i as i64;
            n.mtime_ns = 1_500_000_000_000_000_000 + i * 1_000_000_007 + 123_456_789;
            if *name == "fifo" {
                n.mtime_ns = -1_000_000_001;
            }
            n.uid = 1234;
            n.gid = 5678;
            if *name == "file" {
                n.mode = 0o4755;
            }
            if *name == "dir" {
                n.mode = 0o1750;
            }

            let tp = t.join(name);
            match n.kind {
                NodeKind::File => std::fs::write(&tp, b"data").unwrap(),
                NodeKind::Dir => std::fs::create_dir(&tp).unwrap(),
                _ => create_special(&tp, &n).unwrap(),
            }
            let warnings = apply_metadata(&tp, &n, &opts).unwrap();
            assert!(warnings.is_empty(), "{name}: {warnings:?}");

            let back = read(&tp);
            assert_eq!(back.kind, n.kind, "{name}");
            assert_eq!(back.content, n.content, "{name}");
            assert_eq!(back.mtime_ns, n.mtime_ns, "{name}");
            let atime = std::fs::symlink_metadata(&tp).unwrap();
            let atime_ns = atime.atime() * 1_000_000_000 + atime.atime_nsec();
            if n.kind != NodeKind::Symlink {
                // (reading a symlink back updates its atime)
                assert_eq!(atime_ns, n.mtime_ns, "{name}: atime is set to mtime");
            }
            assert_eq!(back.size, n.size, "{name}");
            assert_eq!(user_xattrs(&back), user_xattrs(&n), "{name}");
            if n.kind != NodeKind::Symlink {
                assert_eq!(back.mode, n.mode, "{name}");
            }
            if root {
                assert_eq!((back.uid, back.gid), (1234, 5678), "{name}");
            }
            match *name {
                "file" => {
                    assert_eq!(back.mode, 0o4755);
                    if xattrs_ok {
                        assert_eq!(user_xattrs(&back), vec![(b"user.cairn".to_vec(), b"hello".to_vec())]);
                    }
                }
                "link" => assert_eq!(back.content, Content::Symlink(b"file".to_vec())),
                "null" => assert_eq!(back.content, Content::Device(libc::makedev(1, 3))),
                _ => {}
            }
        }

        // The symlink's own times were set, not those of its target.
        let file = read(&t.join("file"));
        let link = read(&t.join("link"));
        assert_ne!(file.mtime_ns, link.mtime_ns);
        assert_eq!(file.mtime_ns, 1_500_000_000_123_456_789);
        assert_eq!(link.mtime_ns, 1_500_000_000_000_000_000 + 2 * 1_000_000_007 + 123_456_789);
        let followed = std::fs::metadata(t.join("link")).unwrap();
        assert_eq!(followed.ino(), std::fs::symlink_metadata(t.join("file")).unwrap().ino());
        assert_eq!(followed.mtime(), 1_500_000_000);
        assert_eq!(followed.mtime_nsec(), 123_456_789);
    }

    #[test]
    fn symlink_metadata_does_not_touch_target() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("target"), b"").unwrap();
        std::fs::set_permissions(d.join("target"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let before = read(&d.join("target"));
        let mut n = node(NodeKind::Symlink, Content::Symlink(b"target".to_vec()), 0o777, 1_000_000_000_000_000_001);
        n.uid = before.uid;
        n.gid = before.gid;
        n.xattrs = vec![(b"user.cairn".to_vec(), b"hello".to_vec())];
        create_special(&d.join("l"), &n).unwrap();
        let warnings = apply_metadata(&d.join("l"), &n, &MetaOptions::default()).unwrap();
        // Linux refuses user.* xattrs on symlinks: reported as a warning.
        assert!(warnings.iter().all(|w| w.starts_with("xattr user.cairn on ")), "{warnings:?}");
        let after = read(&d.join("target"));
        assert_eq!(after.mode, 0o600);
        assert_eq!(after.mtime_ns, before.mtime_ns);
        assert!(user_xattrs(&after).is_empty());
        assert_eq!(read(&d.join("l")).mtime_ns, 1_000_000_000_000_000_001);
    }
}
