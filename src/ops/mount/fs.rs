//! The FUSE side of the mount: kernel requests answered from the inode
//! table ([`super::layout`]) and the chunk cache ([`super::blobs`]).
//!
//! Every error that input can cause (a damaged chunk, a missing pack, an
//! unreadable tree) answers that one request with EIO and is logged on
//! stderr with the path in the mount; the mount itself goes on.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, KernelConfig, LockOwner,
    OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyXattr,
    Request,
};

use super::blobs::ChunkCache;
use super::inodes::Table;
use super::layout::{root_item, Item};
use crate::error::Error;
use crate::format::tree::{Content, Node, NodeKind};
use crate::id::SnapshotId;
use crate::repo::Repository;

/// How long the kernel may cache names and attributes inside a snapshot,
/// which never changes.
const TTL: Duration = Duration::from_secs(300);
/// The same for the made-up directories, which change with the snapshots.
const TTL_LAYOUT: Duration = Duration::from_secs(1);
/// How often the snapshot list is looked at again (one list request) while
/// the made-up directories are being read.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// The snapshots the layout shows, and when the list was last read.
pub struct Shown {
    pub ids: BTreeSet<SnapshotId>,
    pub checked: Instant,
}

pub struct CairnFs {
    pub repo: Arc<Repository>,
    pub table: Table,
    pub cache: Arc<ChunkCache>,
    /// Chunks fetched ahead of a read.
    pub ahead: usize,
    /// Owner of the directories the mount makes up.
    pub uid: u32,
    pub gid: u32,
    pub shown: Mutex<Shown>,
    /// Print what the mount held when it ends.
    pub verbose: bool,
}

fn time(ns: i64) -> SystemTime {
    let d = Duration::new(ns.unsigned_abs() / 1_000_000_000, (ns.unsigned_abs() % 1_000_000_000) as u32);
    if ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

fn file_type(k: NodeKind) -> FileType {
    match k {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::CharDev => FileType::CharDevice,
        NodeKind::BlockDev => FileType::BlockDevice,
        NodeKind::Socket => FileType::Socket,
    }
}

fn item_type(item: &Item) -> FileType {
    match item {
        Item::Virtual { .. } | Item::Snapshot { .. } => FileType::Directory,
        Item::Link { .. } => FileType::Symlink,
        Item::Node(n) => file_type(n.kind),
    }
}

/// A device number as the kernel's FUSE interface encodes it
/// (`new_encode_dev`), from the `st_rdev` the tree records.
fn kernel_rdev(rdev: u64) -> u32 {
    let major = libc::major(rdev);
    let minor = libc::minor(rdev);
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

fn node_attr(ino: u64, n: &Node) -> FileAttr {
    let mtime = time(n.mtime_ns);
    let rdev = match n.content {
        Content::Device(d) => kernel_rdev(d),
        _ => 0,
    };
    let nlink = match (n.nlink, n.kind) {
        (0, NodeKind::Dir) => 2,
        (0, _) => 1,
        (l, _) => l,
    };
    FileAttr {
        ino: INodeNo(ino),
        size: n.size,
        blocks: n.size.div_ceil(512),
        atime: mtime,
        mtime,
        ctime: time(n.ctime_ns),
        crtime: mtime,
        kind: file_type(n.kind),
        perm: (n.mode & 0o7777) as u16,
        nlink,
        uid: n.uid,
        gid: n.gid,
        rdev,
        blksize: 4096,
        flags: 0,
    }
}

impl CairnFs {
    fn attr(&self, ino: u64, item: &Item) -> FileAttr {
        let (kind, perm, size, t) = match item {
            Item::Node(n) => return node_attr(ino, n),
            Item::Virtual { time_ns, .. } | Item::Snapshot { time_ns, .. } => (FileType::Directory, 0o555, 0, *time_ns),
            Item::Link { target, time_ns } => (FileType::Symlink, 0o777, target.len() as u64, *time_ns),
        };
        let t = time(t);
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: 0,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Before a made-up directory is read: takes in new or forgotten
    /// snapshots, at most every [`REFRESH_EVERY`]. A failure is logged and
    /// the old layout stays.
    fn refresh(&self, ino: u64) {
        if !matches!(self.table.item(ino), Some(Item::Virtual { .. })) {
            return;
        }
        let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        if shown.checked.elapsed() < REFRESH_EVERY {
            return;
        }
        shown.checked = Instant::now();
        let ids: BTreeSet<SnapshotId> = match self.repo.list_ids("snapshots") {
            Ok(ids) => ids.into_iter().map(SnapshotId).collect(),
            Err(e) => return eprintln!("cairn mount: listing snapshots: {e}"),
        };
        if ids == shown.ids {
            return;
        }
        // New snapshots come with new index objects: read them first.
        match self.repo.sync_cache().and_then(|()| self.repo.snapshots()) {
            Ok(snaps) => {
                shown.ids = snaps.iter().map(|(id, _)| *id).collect();
                self.table.refresh(root_item(&snaps));
            }
            Err(e) => eprintln!("cairn mount: reading the new snapshots: {e}"),
        }
    }

    /// Logs an error with the path it concerns; the request gets EIO.
    fn fail(&self, ino: u64, what: &str, e: &Error) -> Errno {
        eprintln!("cairn mount: {}: {what}: {e}", self.table.path(ino).display());
        Errno::EIO
    }

    fn xattrs(&self, ino: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
        match self.table.item(ino) {
            Some(Item::Node(n)) => n.xattrs.clone(),
            _ => Vec::new(),
        }
    }
}

fn ttl(item: &Item) -> Duration {
    match item {
        Item::Node(_) => TTL,
        _ => TTL_LAYOUT,
    }
}

fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

impl Filesystem for CairnFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Larger read-ahead lets the kernel ask for more of a file at once;
        // the kernel caps it at what it supports.
        let _ = config.set_max_readahead(1 << 20);
        Ok(())
    }

    fn destroy(&mut self) {
        if self.verbose {
            eprintln!(
                "cairn mount: {} inodes held at the end, at most {} at once; {} KiB of chunks cached",
                self.table.len(),
                self.table.most(),
                self.cache.held() >> 10
            );
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.refresh(parent.0);
        match self.table.lookup(&self.repo, parent.0, name) {
            Ok(Some(ino)) => match self.table.item(ino) {
                Some(item) => reply.entry(&ttl(&item), &self.attr(ino, &item), Generation(0)),
                None => reply.error(Errno::ENOENT),
            },
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(self.fail(parent.0, "listing", &e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.table.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.table.item(ino.0) {
            Some(item) => reply.attr(&ttl(&item), &self.attr(ino.0, &item)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.table.item(ino.0) {
            Some(Item::Link { target, .. }) => reply.data(std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str())),
            Some(Item::Node(n)) => match &n.content {
                Content::Symlink(t) => reply.data(t),
                _ => reply.error(Errno::EINVAL),
            },
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.table.file_map(&self.repo, ino.0) {
            // The content never changes: the kernel may keep its pages.
            Ok(Some(_)) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Ok(None) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(self.fail(ino.0, "opening", &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let map = match self.table.file_map(&self.repo, ino.0) {
            Ok(Some(m)) => m,
            Ok(None) => return reply.error(Errno::EINVAL),
            Err(e) => return reply.error(self.fail(ino.0, "opening", &e)),
        };
        match map.read(&self.cache, offset, size as usize, self.ahead) {
            Ok((buf, range)) => reply.data(&buf[range]),
            Err(e) => reply.error(self.fail(ino.0, &format!("reading at offset {offset}"), &e)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if offset == 0 {
            self.refresh(ino.0);
        }
        let children = match self.table.children(&self.repo, ino.0) {
            Ok(Some(c)) => c,
            Ok(None) => return reply.error(Errno::ENOTDIR),
            Err(e) => return reply.error(self.fail(ino.0, "listing", &e)),
        };
        let parent = self.table.parent(ino.0).unwrap_or(ino.0);
        let dots = [(OsStr::new("."), ino.0, FileType::Directory), (OsStr::new(".."), parent, FileType::Directory)];
        let entries =
            dots.into_iter().chain(children.iter().map(|(name, item)| (name.as_os_str(), 0, item_type(item))));
        // Skipped before anything is looked up: a large directory is read
        // in many calls, each from where the last one stopped.
        for (i, (name, number, kind)) in entries.enumerate().skip(offset as usize) {
            let number = if i < 2 { number } else { self.table.number(ino.0, name) };
            if reply.add(INodeNo(number), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let name = std::os::unix::ffi::OsStrExt::as_bytes(name);
        match self.xattrs(ino.0).into_iter().find(|(n, _)| n == name) {
            Some((_, v)) => reply_xattr(reply, size, &v),
            None => reply.error(Errno::NO_XATTR),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let mut list = Vec::new();
        for (n, _) in self.xattrs(ino.0) {
            list.extend_from_slice(&n);
            list.push(0);
        }
        reply_xattr(reply, size, &list);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_and_after_the_epoch() {
        assert_eq!(time(1_500_000_000), UNIX_EPOCH + Duration::new(1, 500_000_000));
        assert_eq!(time(-1_500_000_000), UNIX_EPOCH - Duration::new(1, 500_000_000));
    }

    #[test]
    fn device_numbers_use_the_kernel_encoding() {
        // 8:1 (sda1) and 259:70000, whose minor needs the high bits.
        assert_eq!(kernel_rdev(libc::makedev(8, 1)), 0x801);
        let big = kernel_rdev(libc::makedev(259, 70000));
        assert_eq!(big & 0xff, 70000 & 0xff);
        assert_eq!((big >> 8) & 0xfff, 259);
        assert_eq!(big >> 20, 70000 >> 8);
    }
}
