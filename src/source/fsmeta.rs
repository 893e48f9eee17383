//! Reading one filesystem entry (its `lstat` metadata, symlink target and
//! extended attributes) into a tree [`Node`].

use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::format::tree::{Content, Node, NodeKind};
use crate::id::TreeId;

/// Longest owner name kept, in bytes: the tree format stores names with a
/// one-byte length.
const MAX_NAME_BYTES: usize = 255;

/// Largest buffer offered to `getpwuid_r` / `getgrgid_r` before giving up.
const MAX_LOOKUP_BUF: usize = 1 << 20;

/// Caches uid -> user name and gid -> group name lookups (libc
/// `getpwuid_r` / `getgrgid_r`); the name is empty when unknown.
#[derive(Debug, Default)]
pub struct OwnerNames {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl OwnerNames {
    pub fn new() -> Self {
        Self::default()
    }

    /// The name of user `uid`, or `""` if there is none.
    pub fn user(&mut self, uid: u32) -> String {
        self.users.entry(uid).or_insert_with(|| lookup_user(uid)).clone()
    }

    /// The name of group `gid`, or `""` if there is none.
    pub fn group(&mut self, gid: u32) -> String {
        self.groups.entry(gid).or_insert_with(|| lookup_group(gid)).clone()
    }
}

/// Converts a C name to a `String` (lossily) of at most [`MAX_NAME_BYTES`]
/// bytes, cut on a character boundary.
fn owner_name(name: &CStr) -> String {
    let mut s = name.to_string_lossy().into_owned();
    if s.len() > MAX_NAME_BYTES {
        let mut end = MAX_NAME_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Runs a reentrant `get*_r` lookup, growing the buffer on `ERANGE`.
/// `call(entry, buf, buflen, result)` must behave like `getpwuid_r`;
/// `name_of` returns the entry's name pointer.
fn lookup<T>(
    mut call: impl FnMut(*mut T, *mut libc::c_char, usize, *mut *mut T) -> libc::c_int,
    name_of: impl Fn(&T) -> *const libc::c_char,
) -> String {
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        let mut entry = std::mem::MaybeUninit::<T>::uninit();
        let mut result: *mut T = std::ptr::null_mut();
        let rc = call(entry.as_mut_ptr(), buf.as_mut_ptr(), buf.len(), &mut result);
        match rc {
            0 => {}
            libc::EINTR => continue,
            libc::ERANGE if buf.len() < MAX_LOOKUP_BUF => {
                let n = buf.len() * 2;
                buf.resize(n, 0);
                continue;
            }
            _ => return String::new(),
        }
        if result.is_null() {
            return String::new();
        }
        // SAFETY: on success with a non-null `result`, the lookup function
        // has initialised the entry `result` points to (which is `entry`).
        let entry = unsafe { &*result };
        let name = name_of(entry);
        if name.is_null() {
            return String::new();
        }
        // SAFETY: the name is a NUL-terminated string stored in `buf`,
        // which is alive and unmodified until the end of this iteration.
        return owner_name(unsafe { CStr::from_ptr(name) });
    }
}

/// The name of the user running cairn, for snapshots and locks: `$USER`,
/// else `$LOGNAME`, else the name of the real uid (cron and systemd units
/// may set neither variable), else `""`.
pub fn current_user() -> String {
    let var = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    var("USER").or_else(|| var("LOGNAME")).unwrap_or_else(|| {
        // SAFETY: getuid has no preconditions and cannot fail.
        lookup_user(unsafe { libc::getuid() })
    })
}

fn lookup_user(uid: u32) -> String {
    lookup::<libc::passwd>(
        |pwd, buf, len, result| {
            // SAFETY: `pwd` points to writable storage for one `passwd`,
            // `buf` to `len` writable bytes, `result` to a writable pointer;
            // all outlive the call (see `lookup`).
            unsafe { libc::getpwuid_r(uid, pwd, buf, len, result) }
        },
        |pwd| pwd.pw_name,
    )
}

fn lookup_group(gid: u32) -> String {
    lookup::<libc::group>(
        |grp, buf, len, result| {
            // SAFETY: `grp` points to writable storage for one `group`,
            // `buf` to `len` writable bytes, `result` to a writable pointer;
            // all outlive the call (see `lookup`).
            unsafe { libc::getgrgid_r(gid, grp, buf, len, result) }
        },
        |grp| grp.gr_name,
    )
}

/// Nanoseconds since the epoch from seconds and a nanosecond part,
/// saturating far outside the representable range (~ years 1677..2262).
fn to_ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// Whether an xattr error means "this filesystem (or entry type) has no
/// extended attributes", which is not an error for a backup.
fn xattrs_unsupported(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported
        || matches!(e.raw_os_error(), Some(c) if c == libc::ENOTSUP || c == libc::EOPNOTSUPP)
}

/// The extended attributes of `path` itself (symlinks are not followed),
/// sorted by name. Unsupported filesystems yield an empty list.
fn read_xattrs(path: &Path) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if xattrs_unsupported(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        match xattr::get(path, &name) {
            Ok(Some(value)) => out.push((name.into_vec(), value)),
            // Removed between listing and reading.
            Ok(None) => {}
            Err(e) if xattrs_unsupported(&e) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

/// Builds the [`Node`] for one directory entry from its `lstat` metadata.
///
/// `name` is the raw file-name bytes and `path` the full path (used for
/// `readlink` and extended attributes, which are read from the entry itself,
/// never through a symlink). Files get `Content::File(vec![])` and
/// directories `Content::Dir(TreeId::default())`; the caller fills them in.
pub fn node_from_metadata(
    name: Vec<u8>,
    path: &Path,
    meta: &std::fs::Metadata,
    owners: &mut OwnerNames,
) -> io::Result<Node> {
    node_from_metadata_since(name, path, meta, owners, None)
}

/// As [`node_from_metadata`], but reuses the previous snapshot's extended
/// attributes and symlink target when the entry's inode, kind and ctime are
/// unchanged: changing either updates the ctime, so re-reading them (one
/// `llistxattr` per entry) would only find the same values.
pub fn node_from_metadata_since(
    name: Vec<u8>,
    path: &Path,
    meta: &std::fs::Metadata,
    owners: &mut OwnerNames,
    prev: Option<&Node>,
) -> io::Result<Node> {
    let ctime_ns = to_ns(meta.ctime(), meta.ctime_nsec());
    let ft = meta.file_type();
    let same = prev.filter(|p| {
        p.inode == meta.ino() && p.device == meta.dev() && p.ctime_ns == ctime_ns && p.mode == meta.mode() & 0o7777
    });
    let (kind, content, size) = if ft.is_file() {
        (NodeKind::File, Content::File(Vec::new()), meta.size())
    } else if ft.is_dir() {
        (NodeKind::Dir, Content::Dir(TreeId::default()), 0)
    } else if ft.is_symlink() {
        let target = match same.map(|p| &p.content) {
            Some(Content::Symlink(t)) => t.clone(),
            _ => std::fs::read_link(path)?.into_os_string().into_vec(),
        };
        let len = target.len() as u64;
        (NodeKind::Symlink, Content::Symlink(target), len)
    } else if ft.is_fifo() {
        (NodeKind::Fifo, Content::None, 0)
    } else if ft.is_char_device() {
        (NodeKind::CharDev, Content::Device(meta.rdev()), 0)
    } else if ft.is_block_device() {
        (NodeKind::BlockDev, Content::Device(meta.rdev()), 0)
    } else if ft.is_socket() {
        (NodeKind::Socket, Content::None, 0)
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: unknown file type (mode {:o})", path.display(), meta.mode()),
        ));
    };
    let xattrs = match same.filter(|p| p.kind == kind) {
        Some(p) => p.xattrs.clone(),
        None => read_xattrs(path)?,
    };
    let uid = meta.uid();
    let gid = meta.gid();
    Ok(Node {
        name,
        kind,
        mode: meta.mode() & 0o7777,
        uid,
        gid,
        user: owners.user(uid),
        group: owners.group(gid),
        mtime_ns: to_ns(meta.mtime(), meta.mtime_nsec()),
        ctime_ns,
        size,
        inode: meta.ino(),
        device: meta.dev(),
        nlink: u32::try_from(meta.nlink()).unwrap_or(u32::MAX),
        content,
        xattrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::{CString, OsStr};
    use std::os::unix::ffi::OsStrExt;

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    fn read(path: &Path, owners: &mut OwnerNames) -> Node {
        let meta = std::fs::symlink_metadata(path).unwrap();
        let name = path.file_name().unwrap().as_bytes().to_vec();
        node_from_metadata(name, path, &meta, owners).unwrap()
    }

    fn cpath(p: &Path) -> CString {
        CString::new(p.as_os_str().as_bytes()).unwrap()
    }

    #[test]
    fn owner_names() {
        let mut o = OwnerNames::new();
        assert_eq!(o.user(0), "root");
        assert_eq!(o.user(0), "root");
        assert!(!o.group(0).is_empty());
        assert_eq!(o.user(4_000_000_123), "");
        assert_eq!(o.group(4_000_000_123), "");
    }

    #[test]
    fn owner_name_is_truncated_on_char_boundary() {
        let long = CString::new("é".repeat(200)).unwrap();
        let s = owner_name(&long);
        assert_eq!(s.len(), 254);
        assert!(s.chars().all(|c| c == 'é'));
    }

    #[test]
    fn ns_conversion() {
        assert_eq!(to_ns(1, 5), 1_000_000_005);
        assert_eq!(to_ns(-2, 999_999_999), -1_000_000_001);
        assert_eq!(to_ns(i64::MAX, 0), i64::MAX);
        assert_eq!(to_ns(i64::MIN, 0), i64::MIN);
    }

    #[test]
    fn reads_all_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut o = OwnerNames::new();

        let f = d.join("file");
        std::fs::write(&f, b"hello world").unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
        let ft = filetime::FileTime::from_unix_time(1_600_000_000, 123_456_789);
        filetime::set_file_times(&f, ft, ft).unwrap();
        let n = read(&f, &mut o);
        assert_eq!(n.name, b"file");
        assert_eq!(n.kind, NodeKind::File);
        assert_eq!(n.mode, 0o640);
        assert_eq!(n.size, 11);
        assert_eq!(n.content, Content::File(vec![]));
        assert_eq!(n.mtime_ns, 1_600_000_000_123_456_789);
        assert!(n.ctime_ns > 0);
        assert_eq!(n.nlink, 1);
        let meta = std::fs::symlink_metadata(&f).unwrap();
        assert_eq!(n.inode, meta.ino());
        assert_eq!(n.device, meta.dev());
        assert_eq!(n.uid, meta.uid());
        assert_eq!(n.gid, meta.gid());
        assert_eq!(n.user, o.user(meta.uid()));

        // Pre-epoch time with a nanosecond part.
        let ft = filetime::FileTime::from_unix_time(-2, 999_999_999);
        filetime::set_file_times(&f, ft, ft).unwrap();
        assert_eq!(read(&f, &mut o).mtime_ns, -1_000_000_001);

        let sub = d.join("dir");
        std::fs::create_dir(&sub).unwrap();
        let n = read(&sub, &mut o);
        assert_eq!(n.kind, NodeKind::Dir);
        assert_eq!(n.size, 0);
        assert_eq!(n.content, Content::Dir(TreeId::default()));

        // Dangling symlink with a non-UTF-8 target: read the link itself.
        let l = d.join("link");
        let target = OsStr::from_bytes(b"no\xffwhere/x");
        std::os::unix::fs::symlink(target, &l).unwrap();
        let n = read(&l, &mut o);
        assert_eq!(n.kind, NodeKind::Symlink);
        assert_eq!(n.content, Content::Symlink(b"no\xffwhere/x".to_vec()));
        assert_eq!(n.size, 10);

        let p = d.join("fifo");
        // SAFETY: the path is a valid NUL-terminated string.
        assert_eq!(unsafe { libc::mkfifo(cpath(&p).as_ptr(), 0o600) }, 0);
        let n = read(&p, &mut o);
        assert_eq!(n.kind, NodeKind::Fifo);
        assert_eq!(n.mode, 0o600);
        assert_eq!(n.content, Content::None);
        assert_eq!(n.size, 0);

        let s = d.join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&s).unwrap();
        let n = read(&s, &mut o);
        assert_eq!(n.kind, NodeKind::Socket);
        assert_eq!(n.content, Content::None);

        let h1 = d.join("h1");
        let h2 = d.join("h2");
        std::fs::write(&h1, b"x").unwrap();
        std::fs::hard_link(&h1, &h2).unwrap();
        let (a, b) = (read(&h1, &mut o), read(&h2, &mut o));
        assert_eq!((a.nlink, b.nlink), (2, 2));
        assert_eq!(a.inode, b.inode);
        assert_eq!(a.device, b.device);

        if is_root() {
            let c = d.join("null");
            let dev = libc::makedev(1, 3);
            // SAFETY: the path is a valid NUL-terminated string.
            let rc = unsafe { libc::mknod(cpath(&c).as_ptr(), libc::S_IFCHR | 0o644, dev) };
            if rc == 0 {
                let n = read(&c, &mut o);
                assert_eq!(n.kind, NodeKind::CharDev);
                assert_eq!(n.content, Content::Device(dev));
                assert_eq!(n.size, 0);
            } else {
                eprintln!("skipping char device: {}", io::Error::last_os_error());
            }
        } else {
            eprintln!("skipping char device: not root");
        }
    }

    #[test]
    fn reads_xattrs_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        std::fs::write(&f, b"").unwrap();
        if let Err(e) = xattr::set(&f, "user.cairn", b"hello") {
            eprintln!("skipping xattr test: {e}");
            return;
        }
        xattr::set(&f, "user.a", b"").unwrap();
        xattr::set(&f, "user.z", b"\x00\xff").unwrap();
        let mut o = OwnerNames::new();
        let n = read(&f, &mut o);
        let user: Vec<_> = n.xattrs.iter().filter(|(k, _)| k.starts_with(b"user.")).cloned().collect();
        assert_eq!(
            user,
            vec![
                (b"user.a".to_vec(), b"".to_vec()),
                (b"user.cairn".to_vec(), b"hello".to_vec()),
                (b"user.z".to_vec(), b"\x00\xff".to_vec()),
            ]
        );
        assert!(n.xattrs.windows(2).all(|w| w[0].0 < w[1].0));

        // A symlink to the file does not report the file's xattrs.
        let l = dir.path().join("l");
        std::os::unix::fs::symlink(&f, &l).unwrap();
        let n = read(&l, &mut o);
        assert!(n.xattrs.iter().all(|(k, _)| !k.starts_with(b"user.")));
    }
}
