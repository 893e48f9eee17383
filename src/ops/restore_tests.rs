//! Unit tests of restore's progress: what the bar counts.

use super::*;
use crate::backend::Backend;
use crate::format::config::DataKind;
use crate::ops::backup::{backup_paths, BackupOptions};
use crate::repo::{CacheMode, InitOptions};

/// Noise that no chunk of shares with another.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

#[test]
fn progress_counts_every_byte_written_listed_files_included() {
    std::env::set_var("CAIRN_INSECURE_TEST_KDF", "1");
    let repo = Repository::init(Backend::memory().unwrap(), b"pw", &InitOptions::default(), CacheMode::Memory).unwrap();
    let src = tempfile::tempdir().unwrap();
    // Cut as a dump (4 KiB chunks): 3 MiB is several hundred chunks, a
    // file named by chunk lists, which restore streams after the packs.
    let files = [("big.sql", noise(3 << 20, 1)), ("a", noise(10_000, 2)), ("b", b"hello".to_vec())];
    for (name, data) in &files {
        std::fs::write(src.path().join(name), data).unwrap();
    }
    let opts = BackupOptions { data: DataKind::Dump, ..Default::default() };
    let out = backup_paths(&repo, &[src.path().to_path_buf()], &opts).unwrap();

    let filter = Filter::new(&[], &[]).unwrap();
    let root = src.path().strip_prefix("/").unwrap();
    let plan = RestorePlan::build(&repo, out.snapshot.tree, root, Path::new("/x"), &filter).unwrap();
    assert_eq!(plan.files.iter().filter(|f| f.streamed).count(), 1, "the big file is listed: {:?}", plan.files);

    let target = tempfile::tempdir().unwrap();
    let report = run(&repo, out.snapshot.tree, root, target.path(), &filter, &MetaOptions::default()).unwrap();
    let total: u64 = files.iter().map(|(_, d)| d.len() as u64).sum();
    assert_eq!(report.bytes, total);
    assert_eq!(repo.progress.get(), (total, total), "the bar ends full, at the bytes of the files");
    for (name, data) in &files {
        assert_eq!(&std::fs::read(target.path().join(name)).unwrap(), data, "{name}");
    }
}
