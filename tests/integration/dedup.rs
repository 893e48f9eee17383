//! Deduplication and incremental backups: what is stored twice, and what is
//! read again. Every test runs on a local repository (`NAME::local`) and on
//! S3 (`NAME::s3`), whose stored bytes are summed from the object listing.

use std::path::Path;

use filetime::FileTime;
use serde_json::Value;

use crate::common::{both_backends, noise, Repo, Where};

const MIB: u64 = 1 << 20;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

both_backends!(
    same_20mib_again_as_another_file_or_a_stream_adds_under_one_percent,
    incremental_backup_reads_only_changed_files_including_same_size_and_mtime,
    one_byte_inserted_into_16mib_file_stores_only_a_few_new_chunks,
);

fn same_20mib_again_as_another_file_or_a_stream_adds_under_one_percent(w: Where) {
    let repo = Repo::init_on(w);
    let tmp = tempfile::tempdir().unwrap();
    let data = noise(20 << 20, 10);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    std::fs::create_dir_all(&one).unwrap();
    std::fs::create_dir_all(two.join("elsewhere")).unwrap();
    std::fs::write(one.join("a.bin"), &data).unwrap();
    std::fs::write(two.join("elsewhere/copy.bin"), &data).unwrap();

    let empty = repo.size();
    let first = repo.backup_json(&[p(&one)], None);
    let after_first = repo.size();
    assert!(after_first - empty >= 20 * MIB, "noise was stored in {} bytes", after_first - empty);
    assert_eq!(first["files_new"], 1);

    // Another path: no parent, so the file is read and chunked again.
    let second = repo.backup_json(&[p(&two)], None);
    assert_eq!(second["files_new"], 1, "{second}");
    let after_second = repo.size();
    let grown = after_second - after_first;
    assert!(grown < 20 * MIB / 100, "the same 20 MiB as a second file added {grown} bytes");
    assert!(second["data_added"].as_u64().unwrap() < 20 * MIB / 100, "{second}");

    // As a stream: cut by the chunker for dumps (4 KiB, format-spec/04),
    // so stored once more, at about its size...
    let third = repo.backup_json(&["--stdin-filename", "same.bin"], Some(&data));
    assert_eq!(third["total_bytes_processed"], 20 * MIB);
    let after_third = repo.size();
    let grown = after_third - after_second;
    assert!((20 * MIB..21 * MIB).contains(&grown), "the 20 MiB as a stream in small chunks took {grown} bytes");
    // ...and only once: again as a stream of another name, and as a file
    // cut as a dump (`backup --chunker dump`).
    let fourth = repo.backup_json(&["--stdin-filename", "again.bin"], Some(&data));
    let grown = repo.size() - after_third;
    assert!(grown < 20 * MIB / 100, "the same 20 MiB as a stream again added {grown} bytes");
    assert!(fourth["data_added"].as_u64().unwrap() < 20 * MIB / 100, "{fourth}");
    let before = repo.size();
    let fifth = repo.backup_json(&["--chunker", "dump", "--force", p(&two)], None);
    let grown = repo.size() - before;
    assert!(grown < 20 * MIB / 100, "the same 20 MiB as a file cut as a dump added {grown} bytes");
    assert!(fifth["data_added"].as_u64().unwrap() < 20 * MIB / 100, "{fifth}");
}

fn counts(v: &Value) -> (u64, u64, u64) {
    (v["files_new"].as_u64().unwrap(), v["files_changed"].as_u64().unwrap(), v["files_unchanged"].as_u64().unwrap())
}

fn incremental_backup_reads_only_changed_files_including_same_size_and_mtime(w: Where) {
    let repo = Repo::init_on(w);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for i in 0..50 {
        let dir = src.join(format!("d{}", i % 5));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i:02}")), noise(2000 + i * 37, i as u64)).unwrap();
    }
    let s1 = repo.backup_json(&[p(&src)], None);
    assert_eq!(counts(&s1), (50, 0, 0), "{s1}");

    // Append to one file.
    let changed = src.join("d3/f13");
    let mut content = std::fs::read(&changed).unwrap();
    content.extend_from_slice(b"appended");
    std::fs::write(&changed, &content).unwrap();
    let s2 = repo.backup_json(&[p(&src)], None);
    assert_eq!(counts(&s2), (0, 1, 49), "{s2}");
    let snaps = repo.snapshots();
    assert_eq!(snaps[1]["parent"], s1["snapshot_id"], "the second backup does not name the first as its parent");
    assert_eq!(repo.dump("latest", &format!("{}/d3/f13", p(&src))), content);

    // Nothing changed.
    let s3 = repo.backup_json(&[p(&src)], None);
    assert_eq!(counts(&s3), (0, 0, 50), "{s3}");
    let added = s3["data_added"].as_u64().unwrap();
    assert!(added < 10 << 10, "an unchanged tree added {added} bytes");

    // Same size, same mtime, other bytes: the ctime (and inode metadata)
    // change gives it away.
    let sneaky = src.join("d1/f21");
    let meta = std::fs::metadata(&sneaky).unwrap();
    let mtime = FileTime::from_last_modification_time(&meta);
    let mut bytes = std::fs::read(&sneaky).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&sneaky, &bytes).unwrap();
    filetime::set_file_mtime(&sneaky, mtime).unwrap();
    let again = std::fs::metadata(&sneaky).unwrap();
    assert_eq!((again.len(), FileTime::from_last_modification_time(&again)), (meta.len(), mtime));
    let s4 = repo.backup_json(&[p(&src)], None);
    assert_eq!(counts(&s4), (0, 1, 49), "{s4}");
    assert_eq!(repo.dump("latest", &format!("{}/d1/f21", p(&src))), bytes, "the snapshot kept the old content");
}

fn one_byte_inserted_into_16mib_file_stores_only_a_few_new_chunks(w: Where) {
    let repo = Repo::init_on(w);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("big.bin");
    let mut data = noise(16 << 20, 11);
    std::fs::write(&file, &data).unwrap();
    repo.backup_json(&[p(tmp.path())], None);
    let before = repo.size();

    data.insert(data.len() / 2, 0x42);
    std::fs::write(&file, &data).unwrap();
    let s = repo.backup_json(&[p(tmp.path())], None);
    assert_eq!(s["files_changed"], 1, "{s}");
    let grown = repo.size() - before;
    assert!(grown < 16 * MIB / 4, "inserting one byte added {grown} bytes (of a 16 MiB file)");
    assert!(grown > 0, "the changed chunk was not stored");
    assert!(repo.dump("latest", p(&file)) == data, "dump of the changed file differs");
}

/// `init --chunk-size`: 64 scattered one-byte changes in a 16 MiB file
/// touch every 512 KiB chunk of a default repository, but few of the
/// 8 KiB chunks of a repository made with `--chunk-size 8`.
#[test]
fn smaller_chunks_store_less_of_a_scattered_change() {
    let grow = |args: &[&str]| -> u64 {
        let repo = Repo::uninit();
        let o = repo.out(&[&["init"], args].concat());
        assert_eq!(o.code, Some(0), "{}", o.stderr);
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("big.bin");
        let mut data = noise(16 << 20, 12);
        std::fs::write(&file, &data).unwrap();
        repo.backup_json(&[p(tmp.path())], None);
        let before = repo.size();
        for i in 0..64 {
            let at = (i * 262_139 + 77) % data.len();
            data[at] ^= 0x5a;
        }
        std::fs::write(&file, &data).unwrap();
        repo.backup_json(&[p(tmp.path())], None);
        assert!(repo.dump("latest", p(&file)) == data, "dump of the changed file differs");
        repo.size() - before
    };
    let default = grow(&[]);
    let small = grow(&["--chunk-size", "8"]);
    assert!(default > 12 * MIB, "the default chunks stored only {default} bytes of the change");
    assert!(small < 2 * MIB, "8 KiB chunks stored {small} bytes of 64 scattered changes");
    let o = Repo::uninit().out(&["init", "--chunk-size", "3"]);
    assert_eq!(o.code, Some(64), "{}", o.stderr);
    assert!(o.stderr.contains("power of two"), "{}", o.stderr);
}
