//! The two chunkers of a repository (format-spec/04-config.md, "The chunker
//! for dumps"): what `init` writes, which data each one cuts (streams and
//! `backup --chunker dump` in small chunks, file trees in large ones),
//! `init --dump-chunk-size`, `migrate` of a repository made before the
//! field, and `copy` between repositories that cut dumps alike or not.

use std::path::Path;

use serde_json::Value;

use crate::common::{noise, output, Repo};

const MIB: u64 = 1 << 20;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

fn config(repo: &Repo) -> Value {
    repo.json(&["cat", "config"])
}

/// `cairn -r DST ARGS --from-repo SRC` with the source's password; must
/// succeed. Returns its stdout.
fn from_source(dst: &Repo, src: &Repo, args: &[&str]) -> Vec<u8> {
    let mut c = dst.cmd();
    c.env("CAIRN_FROM_PASSWORD", src.password()).args(args).args(["--from-repo", src.url()]);
    let o = output(c);
    assert_eq!(o.code, Some(0), "{args:?}: {}", o.stderr);
    o.stdout
}

/// New data blobs of a backup.
fn blobs(v: &Value) -> u64 {
    v["data_blobs"].as_u64().unwrap_or_else(|| panic!("no data_blobs in {v}"))
}

#[test]
fn init_writes_a_small_chunker_for_dumps_and_streams_use_it() {
    let repo = Repo::init();
    let c = config(&repo);
    assert_eq!(c["chunker"]["avg_size"], 512 * 1024, "{c}");
    assert_eq!(c["dump_chunker"]["avg_size"], 4096, "{c}");
    assert_eq!(
        (c["dump_chunker"]["min_size"].as_u64(), c["dump_chunker"]["max_size"].as_u64()),
        (Some(1024), Some(16384))
    );
    assert_eq!(c["dump_chunker"]["seed"], c["chunker"]["seed"], "one secret seed");
    assert_eq!(c["group_compression"], 6, "{c}");

    let data = noise(4 << 20, 31);
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("f.bin"), &data).unwrap();
    // A tree: chunks of 128 KiB to 2 MiB.
    let tree = repo.backup_json(&[p(tmp.path())], None);
    assert!((2..=32).contains(&blobs(&tree)), "a 4 MiB file cut into {} chunks", blobs(&tree));
    // A stream: chunks of 1 to 16 KiB (4 MiB / 16 KiB = 256 at the least).
    let stream = repo.backup_json(&["--stdin-filename", "db.sql"], Some(&data));
    assert!(blobs(&stream) >= 256, "a 4 MiB stream cut into only {} chunks", blobs(&stream));
    // The same file cut as a dump: the stream's chunks, nothing new.
    let as_dump = repo.backup_json(&["--chunker", "dump", "--force", p(tmp.path())], None);
    assert_eq!(blobs(&as_dump), 0, "{as_dump}");
    assert_eq!(repo.dump("latest", "db.sql").len(), data.len());
    repo.run(&["check", "--read-data"]);
    // A bad value is one clear line.
    let o = repo.out(&["backup", "--chunker", "tiny", p(tmp.path())]);
    assert_eq!(o.code, Some(64), "{}", o.stderr);
    assert!(o.stderr.contains("tiny"), "{}", o.stderr);
}

#[test]
fn init_dump_chunk_size_sets_the_average_for_dumps_only() {
    let repo = Repo::uninit();
    repo.run(&["init", "--dump-chunk-size", "64", "--chunk-size", "1024"]);
    let c = config(&repo);
    assert_eq!(c["dump_chunker"]["avg_size"], 64 * 1024, "{c}");
    assert_eq!(c["chunker"]["avg_size"], 1024 * 1024, "{c}");
    assert_eq!(c["dump_chunker"]["seed"], c["chunker"]["seed"]);
    let data = noise(4 << 20, 32);
    let s = repo.backup_json(&["--stdin-filename", "x"], Some(&data));
    // 4 MiB in chunks of 16 to 256 KiB, 64 on average.
    assert!((16..=256).contains(&blobs(&s)), "{} chunks", blobs(&s));
    let o = repo.out(&["init", "--dump-chunk-size", "3"]);
    assert_eq!(o.code, Some(64), "{}", o.stderr);
    let o = Repo::uninit().out(&["init", "--dump-chunk-size", "3"]);
    assert_eq!(o.code, Some(64));
    assert!(o.stderr.contains("power of two"), "{}", o.stderr);
}

#[test]
fn migrate_gives_an_older_repository_the_chunker_for_dumps() {
    // Dumps cut as files are (512 KiB), as in a repository made before the
    // chunker for dumps (a config without the field is the unit test's,
    // ops::migrate); then `migrate` to 4 KiB, and what it means.
    let repo = Repo::init();
    let data = noise(3 << 20, 33);
    let o = repo.out(&["migrate", "--dump-chunk-size", "512", "--json"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let first = repo.backup_json(&["--stdin-filename", "db"], Some(&data));
    assert!(blobs(&first) < 32, "dumps cut at 512 KiB: {} chunks", blobs(&first));
    let plan: Value =
        serde_json::from_str(repo.run(&["migrate", "--dry-run", "--dump-chunk-size", "4", "--json"]).trim())
            .expect("plan is JSON");
    assert_eq!(plan["dump_chunker_from"]["avg_size"], 512 * 1024, "{plan}");
    assert_eq!(plan["dump_chunker_to"]["avg_size"], 4096, "{plan}");
    let said = repo.run(&["migrate", "--dump-chunk-size", "4"]);
    assert!(said.contains("dumps: chunks 1-16 KiB, average 4 KiB"), "{said}");
    let second = repo.backup_json(&["--stdin-filename", "db"], Some(&data));
    assert!(blobs(&second) >= 192, "dumps cut at 4 KiB after migrate: {} chunks", blobs(&second));
    let third = repo.backup_json(&["--stdin-filename", "db"], Some(&data));
    assert_eq!(blobs(&third), 0, "{third}");
    assert!(repo.run(&["migrate"]).contains("nothing to change"));
    assert_eq!(repo.dump("latest", "db"), data);
    repo.run(&["check", "--read-data"]);
}

#[test]
fn copy_cuts_dumps_with_the_destinations_chunker_for_dumps() {
    let src = Repo::init();
    let data = noise(2 << 20, 34);
    src.backup_json(&["--stdin-filename", "db.sql"], Some(&data));
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("f.bin"), noise(2 << 20, 35)).unwrap();
    src.backup_json(&[p(tmp.path())], None);

    // Another key and a dump chunker of 64 KiB: cut again.
    let dst = Repo::uninit();
    dst.run(&["init", "--dump-chunk-size", "64"]);
    let report: Value = serde_json::from_slice(&from_source(&dst, &src, &["copy", "--json"])).expect("copy --json");
    assert_eq!(report["rechunk"], true, "{report}");
    // The copied stream is in the destination's 64 KiB chunks: the same
    // stream backed up there adds nothing.
    let again = dst.backup_json(&["--stdin-filename", "db.sql"], Some(&data));
    assert_eq!(blobs(&again), 0, "the copy was not cut as the destination cuts dumps: {again}");
    assert_eq!(dst.dump("latest", "db.sql"), data);
    dst.run(&["check", "--read-data"]);

    // --copy-chunker-params takes both chunkers: blobs keep their ids.
    let same = Repo::uninit();
    from_source(&same, &src, &["init", "--copy-chunker-params"]);
    assert_eq!(config(&same)["dump_chunker"], config(&src)["dump_chunker"]);
    let report: Value = serde_json::from_slice(&from_source(&same, &src, &["copy", "--json"])).expect("copy --json");
    assert_eq!(report["rechunk"], false, "{report}");
    assert!(same.size() > 4 * MIB - MIB / 2, "both snapshots' data is there");
}

/// Text that compresses the way a dump does (several x, more at higher
/// levels): rows of numbers, words and timestamps.
fn rows(n: usize) -> Vec<u8> {
    let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::new();
    for i in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let w = words[(x % 8) as usize];
        out.extend_from_slice(
            format!(
                "{i}\t{w}-{}\t{}.{:02}\t2026-12-{:02} {:02}:{:02}:00\n",
                x % 9973,
                x % 100_000,
                x % 100,
                1 + x % 28,
                x % 24,
                x % 60
            )
            .as_bytes(),
        );
    }
    out
}

#[test]
fn group_compression_is_chosen_at_init_and_by_migrate() {
    let data = rows(60_000);
    let fast = Repo::uninit();
    fast.run(&["init", "--group-compression", "1"]);
    assert_eq!(config(&fast)["group_compression"], 1);
    let small = Repo::uninit();
    small.run(&["init", "--group-compression", "19"]);
    let (a, b) = (
        fast.backup_json(&["--stdin-filename", "db.sql"], Some(&data)),
        small.backup_json(&["--stdin-filename", "db.sql"], Some(&data)),
    );
    let stored = |v: &Value| v["data_added"].as_u64().unwrap_or_else(|| panic!("{v}"));
    assert!(stored(&b) < stored(&a) * 95 / 100, "level 19 {} vs level 1 {}", stored(&b), stored(&a));
    assert_eq!(small.dump("latest", "db.sql"), data);
    small.run(&["check", "--read-data"]);
    // migrate: a new level for data stored from now on.
    let said = fast.run(&["migrate", "--group-compression", "9"]);
    assert!(said.contains("groups of small chunks: zstd level 1 -> zstd level 9"), "{said}");
    assert_eq!(config(&fast)["group_compression"], 9);
    assert!(fast.run(&["migrate"]).contains("nothing to change"));
    assert_eq!(fast.dump("latest", "db.sql"), data);
    for bad in ["0", "23", "fast"] {
        let o = fast.out(&["migrate", "--group-compression", bad]);
        assert_eq!(o.code, Some(64), "{bad}: {}", o.stderr);
        assert!(o.stderr.lines().next().unwrap_or("").contains(bad), "{}", o.stderr);
    }
    let o = Repo::uninit().out(&["init", "--group-compression", "23"]);
    assert_eq!(o.code, Some(64), "{}", o.stderr);
}
