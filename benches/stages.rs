//! Criterion benches for each backup stage, and for a whole backup and
//! restore through the library on a local repository.
//!
//! `cargo bench --bench stages`; `cargo test --benches` runs each once.

use std::hint::black_box;

use cairn::backend::Backend;
use cairn::chunker::Chunker;
use cairn::crypto::aead::ObjectType;
use cairn::crypto::MasterKey;
use cairn::ops::backup::{backup_paths, BackupOptions};
use cairn::ops::restore::{execute, Filter, RestorePlan};
use cairn::repo::{default_chunker, CacheMode, InitOptions, Repository};
use cairn::seal;
use cairn::target::MetaOptions;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Text-like data that compresses about 3-4x with zstd, like a real dump.
fn dumpish(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 100);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut i = 0u64;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        i += 1;
        out.extend_from_slice(
            format!(
                "{i}\t{}\t2026-11-{:02} 12:{:02}:{:02}\tuser{}@example.com\t{}\n",
                x % 100000,
                x % 28 + 1,
                x % 60,
                (x >> 8) % 60,
                x % 5000,
                x >> 40
            )
            .as_bytes(),
        );
    }
    out.truncate(len);
    out
}

const MIB: usize = 1 << 20;

fn stages(c: &mut Criterion) {
    let data = dumpish(32 * MIB);
    let key = MasterKey::generate();
    let chunker = Chunker::new(&default_chunker()).unwrap();
    let mut g = c.benchmark_group("stages");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("chunk", |b| b.iter(|| chunker.stream(&data[..]).map(|c| c.unwrap().len()).sum::<usize>()));
    g.bench_function("hash", |b| b.iter(|| black_box(key.blob_id(&data))));
    let one = &data[..512 << 10];
    g.throughput(Throughput::Bytes(one.len() as u64));
    g.bench_function("seal_zstd3", |b| b.iter(|| seal::seal(&key.enc, ObjectType::DataBlob, black_box(one), Some(3))));
    let sealed = seal::seal(&key.enc, ObjectType::DataBlob, one, Some(3));
    g.bench_function("open", |b| {
        b.iter(|| seal::open(&key.enc, ObjectType::DataBlob, black_box(&sealed), one.len()).unwrap())
    });
    g.finish();
}

fn whole(c: &mut Criterion) {
    std::env::set_var("CAIRN_INSECURE_TEST_KDF", "1");
    let src = tempfile::tempdir().unwrap();
    let total = 48 * MIB;
    // A few big files and many small ones.
    for i in 0..4 {
        std::fs::write(src.path().join(format!("big{i}.sql")), dumpish(total / 8)).unwrap();
    }
    for i in 0..2000 {
        let d = src.path().join(format!("d{}", i % 20));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("f{i}")), &dumpish(total / 2 / 2000)[..]).unwrap();
    }
    let mut g = c.benchmark_group("whole");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function("backup_first", |b| {
        b.iter_with_setup(
            || {
                let dir = tempfile::tempdir().unwrap();
                let backend = Backend::local(&dir.path().join("repo"), true).unwrap();
                let repo = Repository::init(backend, b"pw", &InitOptions::default(), CacheMode::Memory).unwrap();
                (dir, repo)
            },
            |(_dir, repo)| backup_paths(&repo, &[src.path().to_path_buf()], &BackupOptions::default()).unwrap(),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::local(&dir.path().join("repo"), true).unwrap();
    let repo = Repository::init(backend, b"pw", &InitOptions::default(), CacheMode::Memory).unwrap();
    let snap = backup_paths(&repo, &[src.path().to_path_buf()], &BackupOptions::default()).unwrap();
    g.bench_function("backup_unchanged", |b| {
        b.iter(|| backup_paths(&repo, &[src.path().to_path_buf()], &BackupOptions::default()).unwrap())
    });
    g.bench_function("restore", |b| {
        b.iter_with_setup(
            || tempfile::tempdir().unwrap(),
            |t| {
                let plan = RestorePlan::build(
                    &repo,
                    snap.snapshot.tree,
                    std::path::Path::new("/"),
                    t.path(),
                    &Filter::default(),
                )
                .unwrap();
                execute(&repo, &plan, &MetaOptions::default()).unwrap()
            },
        )
    });
    g.finish();
}

criterion_group!(benches, stages, whole);
criterion_main!(benches);
