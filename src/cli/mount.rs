//! `cairn mount MOUNTPOINT`: the repository as a read-only filesystem.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::Global;
use cairn::format::lock::LockKind;
use cairn::ops::mount::{self, MountOptions};
use cairn::Result;

#[derive(Args)]
pub struct MountArgs {
    /// An empty directory to mount on
    pub mountpoint: PathBuf,
    /// Let other users read the mount (checked against each file's recorded owner and mode)
    #[arg(long)]
    pub allow_other: bool,
    /// Memory for decrypted chunks, in MiB
    #[arg(long, value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub cache_size: u32,
    /// Take no lock (a prune meanwhile may then delete data the mount reads)
    #[arg(long)]
    pub no_lock: bool,
}

pub fn mount(g: &Global, a: &MountArgs) -> Result<i32> {
    let repo = Arc::new(g.open()?);
    // A shared lock, like a backup's: prune marks beside it but deletes
    // nothing the mount may still read until it ends.
    let lock = if a.no_lock || g.no_lock { None } else { Some(g.lock(&repo, LockKind::Shared, "mount")?) };
    let opts = MountOptions {
        allow_other: a.allow_other,
        cache_bytes: (a.cache_size as usize) << 20,
        verbose: g.verbose,
        ..Default::default()
    };
    // Chunks cross threads (fetch-ahead workers -> readers), and glibc's
    // per-thread arenas keep freed ones. Two arenas: measured reading 1 GiB
    // (scripts/bench-mount.sh), RSS 135 MiB instead of 153 at the same speed;
    // backup's fixed mmap threshold (limit_heap_growth) gave 85 MiB but made
    // reads 30% slower.
    // glibc only (other C libraries have no mallopt). SAFETY: mallopt only
    // sets an allocator tunable; it is called before the mount's threads
    // start, with a valid parameter and value.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let point = a.mountpoint.display().to_string();
    let quiet = g.quiet;
    mount::mount(repo, &a.mountpoint, &opts, || {
        if !quiet {
            eprintln!("mounted at {point}; Ctrl-C or `umount {point}` unmounts it");
        }
    })?;
    drop(lock);
    if !quiet {
        eprintln!("unmounted {point}");
    }
    Ok(0)
}
