//! `mount`: the repository as a read-only filesystem (FUSE, through the
//! `fuser` crate; no libfuse is needed when running as root).
//!
//! - [`layout`]: the directories (`snapshots/`, `ids/`, `hosts/`, `tags/`,
//!   `latest` links);
//! - [`inodes`]: the inodes the kernel holds, made as it looks names up
//!   and dropped as it forgets them;
//! - [`filemap`]: where a file's bytes are, in bounded memory for a file
//!   named by chunk lists;
//! - [`blobs`]: the bounded LRU of decrypted chunks, read through the same
//!   verifying blob reader as `dump`, with a few chunks fetched ahead of
//!   sequential reads;
//! - [`fs`]: the kernel's requests.
//!
//! The mount ends when it is unmounted (`umount`, `fusermount3 -u`) or on
//! SIGINT, SIGTERM or SIGHUP, which unmount it (lazily if it is busy).

pub mod blobs;
pub mod filemap;
pub mod fs;
pub mod inodes;
pub mod layout;

use std::path::Path;
use std::sync::Arc;

use fuser::{Config, MountOption, Session, SessionACL};

use crate::error::{Error, ErrorKind, Result};
use crate::repo::Repository;

/// How to mount.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Let other users see the mount (permissions are then checked by the
    /// kernel against each entry's recorded mode and owner).
    pub allow_other: bool,
    /// Bytes of decrypted chunks kept in memory.
    pub cache_bytes: usize,
    /// Threads answering the kernel.
    pub threads: usize,
    /// Chunks fetched ahead of a sequential read.
    pub ahead: usize,
    /// Print what the mount held (inodes, cached chunks) when it ends.
    pub verbose: bool,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self { allow_other: false, cache_bytes: 64 << 20, threads: 4, ahead: 4, verbose: false }
    }
}

/// Mounts the repository at `mountpoint` and serves it until it is
/// unmounted or a signal arrives. `ready` runs once the mount is in place.
pub fn mount(repo: Arc<Repository>, mountpoint: &Path, opts: &MountOptions, ready: impl FnOnce()) -> Result<()> {
    let md =
        std::fs::metadata(mountpoint).map_err(|e| Error::io(format!("mount point {}", mountpoint.display()), e))?;
    if !md.is_dir() {
        return Err(Error::invalid(format!("mount point {} is not a directory", mountpoint.display())));
    }
    let snapshots = repo.snapshots()?;
    let fs = fs::CairnFs {
        table: inodes::Table::new(layout::root_item(&snapshots)),
        cache: blobs::ChunkCache::new(repo.clone(), opts.cache_bytes, opts.ahead.clamp(1, 8)),
        repo,
        ahead: opts.ahead,
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        uid: unsafe { libc::getuid() },
        // SAFETY: as above.
        gid: unsafe { libc::getgid() },
        verbose: opts.verbose,
        shown: std::sync::Mutex::new(fs::Shown {
            ids: snapshots.iter().map(|(id, _)| *id).collect(),
            checked: std::time::Instant::now(),
        }),
    };
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::NoSuid,
        MountOption::FSName("cairn".into()),
        MountOption::Subtype("cairn".into()),
    ];
    if opts.allow_other {
        config.acl = SessionACL::All;
        config.mount_options.push(MountOption::DefaultPermissions);
    }
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = true;

    let mut session = Session::new(fs, mountpoint, &config).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied || e.kind() == std::io::ErrorKind::NotFound {
            " (mounting needs /dev/fuse, and root or fusermount3 from the fuse3 package)"
        } else {
            ""
        };
        Error::with_source(ErrorKind::Io, format!("cannot mount at {}: {e}{hint}", mountpoint.display()), e)
    })?;
    let unmounter = session.unmount_callable();
    let signals = signal_hook::iterator::Signals::new([libc::SIGINT, libc::SIGTERM, libc::SIGHUP])
        .map_err(|e| Error::io("installing signal handlers", e))?;
    let handle = signals.handle();
    let point = mountpoint.to_path_buf();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asked_by_signal = asked.clone();
    std::thread::spawn(move || unmount_on_signal(signals, unmounter, &point, &asked_by_signal));
    ready();
    let served = session.run();
    handle.close();
    match served {
        // A busy mount detached on a signal ends with the kernel aborting the
        // connection when its last user closes it: that is the end we asked for.
        Err(e) if is_aborted(&e) && asked.load(std::sync::atomic::Ordering::SeqCst) => Ok(()),
        r => r.map_err(|e| Error::io(format!("serving the mount at {}", mountpoint.display()), e)),
    }
}

fn is_aborted(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::ConnectionAborted || e.raw_os_error() == Some(libc::ENODEV)
}

fn unmount_on_signal(
    mut signals: signal_hook::iterator::Signals,
    mut unmounter: fuser::SessionUnmounter,
    point: &Path,
    asked: &std::sync::atomic::AtomicBool,
) {
    if signals.forever().next().is_none() {
        return; // closed: the mount ended by itself
    }
    asked.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Err(e) = unmounter.unmount() {
        eprintln!("cairn mount: {} is busy ({e}); detaching it, it goes when its last user closes it", point.display());
        lazy_unmount(point);
    }
}

/// Detaches a busy mount (MNT_DETACH as root, else `fusermount3 -u -z`).
fn lazy_unmount(point: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(point.as_os_str().as_bytes()) else { return };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return;
    }
    for bin in ["fusermount3", "fusermount"] {
        if std::process::Command::new(bin).arg("-u").arg("-z").arg(point).status().is_ok_and(|s| s.success()) {
            return;
        }
    }
    eprintln!("cairn mount: could not unmount {}; run `umount -l {}`", point.display(), point.display());
}
