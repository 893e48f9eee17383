//! Format 2 and `cairn migrate`: a format-1 repository adopts format 2 (and
//! a smaller chunk size) without re-uploading anything; what it held before
//! reads, checks, restores and prunes beside what it stores after. Local
//! and S3.

use std::path::Path;

use serde_json::Value;

use crate::common::{both_backends, noise, Repo, Where};

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

both_backends!(
    a_format_1_repository_adopts_format_2_and_keeps_everything,
    format_2_groups_small_chunks_and_restores_them_exactly,
);

fn cat_config(repo: &Repo) -> Value {
    serde_json::from_str(&repo.run(&["cat", "config"])).expect("config JSON")
}

/// Entries of every index object: (grouped, single).
fn grouped_and_single(repo: &Repo) -> (usize, usize) {
    let o = repo.out(&["check"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let (mut grouped, mut single) = (0, 0);
    for id in repo.object_ids("index") {
        let v: Value = serde_json::from_str(&repo.run(&["cat", "index", &id])).expect("index JSON");
        for p in v["packs"].as_array().into_iter().flatten() {
            for b in p["blobs"].as_array().expect("blobs") {
                if b["inner"].is_null() {
                    single += 1;
                } else {
                    grouped += 1;
                }
            }
        }
    }
    (grouped, single)
}

/// Every file under `want` has the same bytes under `got`, and no other.
fn assert_same_contents(want: &Path, got: &Path) {
    fn files(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                files(root, &path, out);
            } else {
                out.push((path.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&path).unwrap()));
            }
        }
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    files(want, want, &mut a);
    files(got, got, &mut b);
    a.sort();
    b.sort();
    assert_eq!(a.len(), b.len(), "file count");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.0, y.0);
        assert!(x.1 == y.1, "{} differs", x.0);
    }
}

fn write_tree(dir: &Path, seed: u64) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..40 {
        // Small files: their chunks are small, and go into groups in format 2.
        std::fs::write(dir.join(format!("small-{i}.txt")), format!("file {i} of round {seed}\n").repeat(50)).unwrap();
    }
    std::fs::write(dir.join("sub/big.bin"), noise(3 << 20, seed)).unwrap();
}

fn a_format_1_repository_adopts_format_2_and_keeps_everything(w: Where) {
    let repo = Repo::uninit_on(w);
    let o = repo.out(&["init", "--format-version", "1"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(String::from_utf8_lossy(&o.stdout).contains("(format 1)"), "{}", String::from_utf8_lossy(&o.stdout));
    assert_eq!(cat_config(&repo)["version"], 1);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write_tree(&src, 1);
    repo.run(&["backup", p(&src)]);
    let dump = noise(2 << 20, 7);
    repo.backup_json(&["--stdin-filename", "db.sql"], Some(&dump));
    let (grouped, single) = grouped_and_single(&repo);
    assert_eq!(grouped, 0, "format 1 never groups");
    assert!(single > 40, "{single} entries");
    let before = repo.size();

    // A dry run changes nothing; the plan says what would.
    let o = repo.out(&["migrate", "--chunk-size", "16", "--dry-run"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout_str().contains("would change format 1 -> 3"), "the default is format 3: {}", o.stdout_str());
    let o = repo.out(&["migrate", "--format-version", "2", "--chunk-size", "16", "--dry-run"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout_str().contains("would change format 1 -> 2"), "{}", o.stdout_str());
    assert_eq!(cat_config(&repo)["version"], 1);
    let plan: Value = serde_json::from_str(&repo.run(&[
        "migrate",
        "--format-version",
        "2",
        "--chunk-size",
        "16",
        "--dry-run",
        "--json",
    ]))
    .expect("plan JSON");
    assert_eq!((plan["from_version"].clone(), plan["to_version"].clone()), (1.into(), 2.into()));
    assert_eq!(plan["chunker_to"]["avg_size"], 16384);
    assert_eq!(plan["chunker_to"]["seed"], plan["chunker_from"]["seed"], "the chunker's secret stays");

    // Migrate: only the config changes, nothing is uploaded again.
    let config_before = cat_config(&repo);
    let o = repo.out(&["migrate", "--format-version", "2", "--chunk-size", "16"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let config = cat_config(&repo);
    assert_eq!(config["version"], 2);
    assert_eq!(config["id"], config_before["id"]);
    assert_eq!(config["chunker"]["avg_size"], 16384);
    let grown = repo.size() as i64 - before as i64;
    assert!(grown.abs() < 1024, "migrate wrote {grown} bytes beyond the config");
    // Again: nothing to do. Back to format 1: refused, one line, exit 1.
    assert!(repo.run(&["migrate", "--format-version", "2"]).contains("nothing to change"));
    let o = repo.out(&["migrate", "--format-version", "1"]);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert!(o.stderr.contains("cannot go back"), "{}", o.stderr);

    // New backups group; old and new restore, check and prune together.
    write_tree(&src, 2);
    repo.run(&["backup", p(&src)]);
    let (grouped, _) = grouped_and_single(&repo);
    assert!(grouped > 0, "format 2 grouped nothing");
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 3);
    let first = snaps[0]["id"].as_str().unwrap().to_string();
    let t = tmp.path().join("restored-1");
    repo.run(&["restore", &first, "--target", p(&t)]);
    let want = tmp.path().join("want-1");
    write_tree(&want, 1);
    assert_same_contents(&want, &crate::common::restored(&t, &src));
    let got = repo.out(&["dump", snaps[1]["id"].as_str().unwrap(), "db.sql"]);
    assert!(got.stdout == dump, "the format-1 stream dumps exactly");
    repo.run(&["forget", &first]);
    let o = repo.out(&["prune", "--max-unused", "0"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let o = repo.out(&["check", "--read-data"]);
    assert_eq!(o.code, Some(0), "{}\n{}", o.stdout_str(), o.stderr);
    let t = tmp.path().join("restored-2");
    repo.run(&["restore", "latest", "--target", p(&t)]);
    crate::common::assert_trees_equal(&src, &crate::common::restored(&t, &src));
}

fn format_2_groups_small_chunks_and_restores_them_exactly(w: Where) {
    let repo = Repo::uninit_on(w);
    let o = repo.out(&["init", "--chunk-size", "4"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(cat_config(&repo)["version"], 3, "format 3 groups as format 2 does");
    // A 6 MiB "dump" of text that compresses, in ~4 KiB chunks: ~1,500
    // chunks in ~24 groups.
    let dump: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("{:08} row {} value {}\n", i, i * 7919 % 10007, i % 13).into_bytes())
        .collect();
    let first = repo.backup_json(&["--stdin-filename", "dump.sql"], Some(&dump));
    let (grouped, single) = grouped_and_single(&repo);
    assert!(grouped > 500 && single < 20, "grouped {grouped}, alone {single}");
    // Compressed together, the stored data is far smaller than the dump.
    let stored = repo.size();
    assert!(stored < dump.len() as u64 / 3, "{stored} bytes stored for a {} byte dump", dump.len());
    // A changed night: a few rows in the middle change.
    let mut night2 = dump.clone();
    for at in [1_000_000usize, 3_000_000, 5_000_000] {
        night2[at..at + 5].copy_from_slice(b"XXXXX");
    }
    let second = repo.backup_json(&["--stdin-filename", "dump.sql"], Some(&night2));
    assert!(
        second["data_added"].as_u64().unwrap() < 64 << 10,
        "three changed rows added {} bytes (first night {})",
        second["data_added"],
        first["data_added"]
    );
    for (i, want) in [&dump, &night2].iter().enumerate() {
        let id = repo.snapshots()[i]["id"].as_str().unwrap().to_string();
        let got = repo.out(&["dump", &id, "dump.sql"]);
        assert_eq!(got.code, Some(0), "{}", got.stderr);
        assert!(&got.stdout == *want, "night {} dumps exactly", i + 1);
    }
    // Stats count each group once.
    let stats: Value = serde_json::from_str(&repo.run(&["stats", "--mode", "raw-data", "--json"])).unwrap();
    assert!(stats["total_size"].as_u64().unwrap() <= repo.size(), "{stats}");
    // Forget night 1 and prune: the groups night 2 still uses partly are
    // repacked; everything checks and night 2 restores exactly.
    let id1 = repo.snapshots()[0]["id"].as_str().unwrap().to_string();
    repo.run(&["forget", &id1]);
    let o = repo.out(&["prune", "--max-unused", "0"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let o = repo.out(&["check", "--read-data"]);
    assert_eq!(o.code, Some(0), "{}\n{}", o.stdout_str(), o.stderr);
    let got = repo.out(&["dump", "latest", "dump.sql"]);
    assert!(got.stdout == night2, "night 2 dumps exactly after prune");
}
