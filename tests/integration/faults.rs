//! Damaged repositories: flipped bytes, truncated and missing packs,
//! damaged metadata objects and key files, deleted or stale caches. Damage
//! must be reported, never turned into wrong bytes or a panic.

use std::path::{Path, PathBuf};

use crate::common::{self, copy_dir, file_name, flip_middle, largest, noise, output, restored, sha256_hex, Out, Repo};

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

/// A repository holding one backup of a 3 MiB noise file and a few small
/// files. Returns the repo, the tempdir and the source directory.
fn backed_up_tree() -> (Repo, tempfile::TempDir, PathBuf) {
    let repo = Repo::init();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("big.bin"), noise(3 << 20, 20)).unwrap();
    std::fs::write(src.join("small-1.txt"), b"small one").unwrap();
    std::fs::write(src.join("sub/small-2.txt"), b"small two").unwrap();
    std::fs::write(src.join("sub/empty"), b"").unwrap();
    let s = repo.backup_json(&[p(&src)], None);
    assert_eq!(s["files_new"], 4);
    (repo, tmp, src)
}

/// The files under `src`, relative.
fn source_files(src: &Path) -> Vec<PathBuf> {
    let files: Vec<PathBuf> = ["big.bin", "small-1.txt", "sub/small-2.txt", "sub/empty"].map(PathBuf::from).into();
    assert!(files.iter().all(|f| src.join(f).is_file()));
    files
}

fn assert_no_panic(o: &Out, what: &str) {
    o.assert_no_panic(what);
}

#[test]
fn restore_from_damaged_pack_reports_the_file_and_never_leaves_wrong_bytes() {
    let (repo, tmp, src) = backed_up_tree();
    let pack = largest(&repo.packs());
    flip_middle(&pack);

    let target = tmp.path().join("target");
    let o = repo.out(&["restore", "latest", "--target", p(&target)]);
    o.assert_failed(None, "restore from a damaged pack");
    let mut reported = 0;
    for f in source_files(&src) {
        let original = src.join(&f);
        let back = restored(&target, &src).join(&f);
        if o.stderr.contains(p(&f)) {
            reported += 1;
            assert!(!back.exists(), "{} was reported damaged but left in the target", back.display());
        } else {
            assert!(back.exists(), "{} was neither restored nor reported:\n{}", f.display(), o.stderr);
            assert_eq!(
                sha256_hex(&std::fs::read(&back).unwrap()),
                sha256_hex(&std::fs::read(&original).unwrap()),
                "{} restored with other bytes",
                f.display()
            );
        }
    }
    assert!(reported >= 1, "no damaged file was named:\n{}", o.stderr);
    assert!(o.stderr.contains("big.bin"), "the file in the damaged region is not named:\n{}", o.stderr);
    assert!(o.stderr.contains(&file_name(&pack)), "the damaged pack is not named:\n{}", o.stderr);
}

#[test]
fn dump_of_damaged_stream_fails_and_writes_only_correct_bytes() {
    let repo = Repo::init();
    let data = noise(5 << 20, 21);
    repo.backup_json(&["--stdin-filename", "db.sql"], Some(&data));
    let pack = largest(&repo.packs());
    flip_middle(&pack);

    let o = repo.out(&["dump", "latest", "db.sql"]);
    o.assert_failed(None, "dump of a damaged stream");
    let line = o.one_error_line("dump of a damaged stream");
    assert!(line.contains("chunk") || line.contains("blob") || line.contains("pack"), "unclear: {line}");
    assert!(line.contains(&file_name(&pack)) || line.contains("chunk"), "names neither pack nor chunk: {line}");
    assert!(o.stdout.len() < data.len(), "dump wrote all {} bytes despite the damage", o.stdout.len());
    assert!(data.starts_with(&o.stdout), "dump wrote wrong bytes before failing");
}

#[test]
fn check_passes_when_intact_and_read_data_names_the_damaged_pack_and_file() {
    let (repo, _tmp, src) = backed_up_tree();
    let ok = repo.out(&["check"]);
    assert_eq!(ok.code, Some(0), "check of an intact repository:\n{}{}", ok.stdout_str(), ok.stderr);
    let ok = repo.out(&["check", "--read-data"]);
    assert_eq!(ok.code, Some(0), "check --read-data of an intact repository:\n{}{}", ok.stdout_str(), ok.stderr);

    let pack = largest(&repo.packs());
    flip_middle(&pack);
    let snap = repo.snapshots()[0]["short_id"].as_str().unwrap().to_string();
    let o = repo.out(&["check", "--read-data"]);
    o.assert_failed(None, "check --read-data");
    let all = format!("{}{}", o.stdout_str(), o.stderr);
    assert!(all.contains(&file_name(&pack)), "check does not name the damaged pack:\n{all}");
    let big = format!("{}/big.bin", p(&src));
    let affected = all
        .lines()
        .find(|l| l.starts_with("affected:") && l.contains(&big))
        .unwrap_or_else(|| panic!("no `affected:` line names {big}:\n{all}"));
    assert!(affected.contains(&format!("snapshot {snap}")), "the affected line does not name the snapshot: {affected}");
    // A small file may share the damaged group with a chunk of big.bin
    // (format 2 compresses consecutive new chunks together, in the order
    // the parallel readers hand them over): then it is damaged too, and
    // restore must fail it as well. A small file check does not blame must
    // restore exactly.
    let target = src.parent().unwrap().join("target");
    let r = repo.out(&["restore", "latest", "--target", p(&target)]);
    for small in ["small-1.txt", "sub/small-2.txt"] {
        let blamed = all.lines().any(|l| l.starts_with("affected:") && l.contains(small));
        let back = restored(&target, &src).join(small);
        if blamed {
            assert!(!back.exists(), "check blames {small}, restore wrote it:\n{all}\n{}", r.stderr);
        } else {
            assert_eq!(
                std::fs::read(&back).ok(),
                std::fs::read(src.join(small)).ok(),
                "{small}: check passed it:\n{all}"
            );
        }
    }
    // The structure itself is intact: without --read-data, nothing is read.
    let o = repo.out(&["check"]);
    assert_eq!(o.code, Some(0), "check without --read-data read pack data:\n{}{}", o.stdout_str(), o.stderr);
}

#[test]
fn check_reports_a_pack_truncated_to_half() {
    let (repo, _tmp, _src) = backed_up_tree();
    let pack = largest(&repo.packs());
    let len = std::fs::metadata(&pack).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&pack).unwrap().set_len(len / 2).unwrap();
    let o = repo.out(&["check"]);
    o.assert_failed(None, "check of a truncated pack");
    let all = format!("{}{}", o.stdout_str(), o.stderr);
    assert!(
        all.lines().any(|l| l.starts_with("error:") && l.contains(&file_name(&pack))),
        "check does not name the truncated pack:\n{all}"
    );
}

#[test]
fn check_names_a_deleted_pack() {
    let (repo, tmp, src) = backed_up_tree();
    let packs = repo.packs();
    assert!(packs.len() >= 2, "expected a data pack and a tree pack, got {packs:?}");
    let pack = largest(&packs);
    std::fs::remove_file(&pack).unwrap();
    let o = repo.out(&["check"]);
    o.assert_failed(None, "check with a missing pack");
    let all = format!("{}{}", o.stdout_str(), o.stderr);
    assert!(
        all.lines().any(|l| l.starts_with("error:") && l.contains(&file_name(&pack))),
        "check does not name the missing pack:\n{all}"
    );
    assert!(all.contains("big.bin"), "check does not say which file lost data:\n{all}");

    // A restore reports it too, and restores what it can.
    let target = tmp.path().join("t");
    let o = repo.out(&["restore", "latest", "--target", p(&target)]);
    o.assert_failed(None, "restore with a missing pack");
    assert!(o.stderr.contains("big.bin"), "{}", o.stderr);
    assert!(!restored(&target, &src).join("big.bin").exists(), "a file with a missing pack was restored");

    // The tree pack: now nothing can be listed.
    let trees = largest(&repo.packs());
    std::fs::remove_file(&trees).unwrap();
    let o = repo.out(&["check"]);
    o.assert_failed(None, "check with the tree pack missing");
    let all = format!("{}{}", o.stdout_str(), o.stderr);
    assert!(all.contains(&file_name(&trees)), "check does not name the missing tree pack:\n{all}");
    // (The local cache may still hold the trees; the repository alone does not.)
    let o = repo.out(&["--no-cache", "ls", "latest"]);
    o.assert_failed(None, "ls with the tree pack missing");
    let line = o.one_error_line("ls with the tree pack missing");
    assert!(line.contains(&file_name(&trees)) || line.contains("tree"), "unclear: {line}");
    repo.out(&["ls", "latest"]).assert_no_panic("ls from the cache with the tree pack missing");
}

#[test]
fn damaged_snapshot_or_index_object_fails_with_one_clear_line() {
    // A snapshot object.
    let (repo, _tmp, _src) = backed_up_tree();
    let snap = repo.objects("snapshots").pop().unwrap();
    flip_middle(&snap);
    // The local cache holds a verified copy of the snapshot (it matches its
    // name and authenticates), so listing from it stays correct; `check`
    // reads the repository's object and names the damage.
    for args in [&["snapshots"][..], &["ls", "latest"]] {
        let o = repo.out(args);
        assert_eq!(o.code, Some(0), "{args:?} from the verified cached copy:\n{}", o.stderr);
    }
    // Without the cache: listing goes on without it, with one warning line
    // naming it; `latest` then finds nothing, and says so after naming it.
    let o = repo.out(&["--no-cache", "snapshots"]);
    assert_eq!(o.code, Some(0), "snapshots with a damaged snapshot:\n{}", o.stderr);
    let lines = o.stderr_lines();
    assert_eq!(lines.len(), 1, "{}", o.stderr);
    assert!(lines[0].starts_with("warning: ") && lines[0].contains(&file_name(&snap)), "{}", o.stderr);
    let o = repo.out(&["--no-cache", "ls", "latest"]);
    o.assert_failed(None, "ls latest with its only snapshot damaged");
    assert!(o.stderr.contains(&file_name(&snap)), "ls latest does not name the damaged snapshot:\n{}", o.stderr);
    let o = repo.out(&["check"]);
    o.assert_failed(None, "check with a damaged snapshot");
    let last = o.one_error_line("check with a damaged snapshot");
    assert!(
        format!("{}{last}", o.stdout_str()).contains(&file_name(&snap)),
        "check does not name the damaged snapshot:\n{}{}",
        o.stdout_str(),
        o.stderr
    );

    // An index object, with and without the local cache that absorbed it.
    let (repo, _tmp, _src) = backed_up_tree();
    let index = repo.objects("index").pop().unwrap();
    flip_middle(&index);
    let o = repo.out(&["check"]);
    o.assert_failed(None, "check with a damaged index");
    o.one_error_line("check with a damaged index");
    let all = format!("{}{}", o.stdout_str(), o.stderr);
    assert!(all.contains(&file_name(&index)), "check does not name the damaged index:\n{all}");
    // Without the cache, the damaged index object is skipped (with a
    // warning that names it) rather than stopping every command; what it
    // held is missing until `repair index` rebuilds it from the packs.
    for args in [&["--no-cache", "snapshots"][..], &["--no-cache", "ls", "latest"]] {
        let o = repo.out(args);
        assert_no_panic(&o, &format!("{args:?}"));
        let lines = o.stderr_lines();
        assert!(
            lines[0].starts_with("warning: ") && lines[0].contains(&file_name(&index)),
            "{args:?}: no warning names the damaged index:\n{}",
            o.stderr
        );
        let errors = lines.iter().filter(|l| l.starts_with("error: ")).count();
        assert_eq!(errors, usize::from(o.code != Some(0)), "{args:?}: {}", o.stderr);
    }
    let o = repo.out(&["--no-cache", "check"]);
    o.assert_failed(None, "check without the cache, with a damaged index");
    o.one_error_line("check without the cache, with a damaged index");
    assert!(o.stdout_str().contains(&file_name(&index)), "check does not name the damaged index:\n{}", o.stdout_str());
    // repair index rebuilds it from the pack headers; then all is well.
    repo.run(&["repair", "index"]);
    let o = repo.out(&["--no-cache", "check", "--read-data"]);
    assert_eq!(o.code, Some(0), "check after repair index:\n{}{}", o.stdout_str(), o.stderr);
}

#[test]
fn damaged_key_file_gives_wrong_password_or_a_clear_error() {
    let repo = Repo::init();
    let key = repo.objects("keys").pop().unwrap();
    flip_middle(&key);
    let o = repo.out(&["snapshots"]);
    o.assert_failed(None, "snapshots with a damaged key file");
    let line = o.one_error_line("damaged key file");
    assert!(o.code == Some(12) || line.contains("key"), "neither exit 12 nor a key error: {:?} {line}", o.code);

    // Truncated to a few bytes, and emptied.
    for len in [10, 0] {
        std::fs::OpenOptions::new().write(true).open(&key).unwrap().set_len(len).unwrap();
        let o = repo.out(&["snapshots"]);
        o.assert_failed(None, &format!("key file of {len} bytes"));
        let line = o.one_error_line(&format!("key file of {len} bytes"));
        assert!(o.code == Some(12) || line.contains("key"), "neither exit 12 nor a key error: {:?} {line}", o.code);
    }
}

#[test]
fn deleted_or_stale_cache_changes_nothing() {
    let repo = Repo::init();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("one.bin"), noise(300_000, 30)).unwrap();
    repo.backup_json(&[p(&src)], None);
    assert!(repo.cache().exists(), "the backup wrote no cache at {}", repo.cache().display());

    // Deleted between commands.
    std::fs::remove_dir_all(repo.cache()).unwrap();
    let t = tmp.path().join("t1");
    repo.run(&["restore", "latest", "--target", p(&t)]);
    common::assert_trees_equal(&src, &restored(&t, &src));

    // Damaged: garbage in, or nothing left of, the cache database.
    let db = find_file(&repo.cache(), "index-5.redb").expect("the cache has an index-5.redb");
    for garbage in [noise(5000, 33), Vec::new()] {
        std::fs::write(&db, &garbage).unwrap();
        let t = tmp.path().join(format!("damaged-cache-{}", garbage.len()));
        let o = repo.out(&["restore", "latest", "--target", p(&t)]);
        assert_eq!(o.code, Some(0), "restore with a damaged cache:\n{}", o.stderr);
        common::assert_trees_equal(&src, &restored(&t, &src));
        // Garbage is named in one warning; an empty file is a new cache.
        let warned = o.stderr.contains("warning: index cache") && o.stderr.contains("is damaged");
        assert_eq!(warned, !garbage.is_empty(), "{}", o.stderr);
        assert!(!o.stderr.contains("internal error"), "{}", o.stderr);
    }

    // Stale: a copy of the cache from before another client's backup.
    let old_cache = tmp.path().join("old-cache");
    copy_dir(&repo.cache(), &old_cache);
    std::fs::write(src.join("two.bin"), noise(400_000, 31)).unwrap();
    let mut c = repo.cmd();
    c.env("CAIRN_CACHE_DIR", tmp.path().join("other-client-cache")).args(["backup", "--json", p(&src)]);
    let o = output(c);
    assert_eq!(o.code, Some(0), "backup with another cache:\n{}", o.stderr);
    let with_cache = |cache: &Path, args: &[&str]| {
        let mut c = repo.cmd();
        c.env("CAIRN_CACHE_DIR", cache).args(args);
        output(c)
    };
    let t = tmp.path().join("t2");
    let o = with_cache(&old_cache, &["restore", "latest", "--target", p(&t)]);
    assert_eq!(o.code, Some(0), "restore with a stale cache:\n{}", o.stderr);
    common::assert_trees_equal(&src, &restored(&t, &src));
    let o = with_cache(&old_cache, &["check", "--read-data"]);
    assert_eq!(o.code, Some(0), "check with a stale cache:\n{}{}", o.stdout_str(), o.stderr);

    // A cache ahead of the repository (the repository was put back from an
    // older copy): the cache must not point into packs that are gone.
    let repo_copy = tmp.path().join("repo-copy");
    copy_dir(&repo.path(), &repo_copy);
    let src_mtime = filetime::FileTime::from_last_modification_time(&std::fs::metadata(&src).unwrap());
    std::fs::write(src.join("three.bin"), noise(500_000, 32)).unwrap();
    repo.backup_json(&[p(&src)], None);
    std::fs::remove_dir_all(repo.path()).unwrap();
    copy_dir(&repo_copy, &repo.path());
    std::fs::remove_file(src.join("three.bin")).unwrap();
    filetime::set_file_mtime(&src, src_mtime).unwrap();
    let t = tmp.path().join("t3");
    let o = repo.out(&["restore", "latest", "--target", p(&t)]);
    assert_eq!(o.code, Some(0), "restore of a rolled-back repository with a newer cache:\n{}", o.stderr);
    common::assert_trees_equal(&src, &restored(&t, &src));
    // A backup after the rollback must store three.bin's data again, not
    // trust the cache's memory of a pack that no longer exists.
    std::fs::write(src.join("three.bin"), noise(500_000, 32)).unwrap();
    repo.backup_json(&[p(&src)], None);
    let o = repo.out(&["check", "--read-data"]);
    assert_eq!(
        o.code,
        Some(0),
        "check after backing up with a cache ahead of the repository:\n{}{}",
        o.stdout_str(),
        o.stderr
    );
    let t = tmp.path().join("t4");
    repo.run(&["restore", "latest", "--target", p(&t)]);
    common::assert_trees_equal(&src, &restored(&t, &src));
}

/// The cache's filter of known chunks (`index-5.filter`) is only a
/// shortcut: missing or garbage, it is built again from the cache and a
/// backup of the same stream stores nothing; with its bits emptied under a
/// valid header, every chunk looks new and is stored once more (a second
/// copy, never a lost one): `check --read-data` passes and every snapshot
/// reads back exact.
#[test]
fn a_damaged_cache_filter_costs_at_most_a_second_copy() {
    let repo = Repo::init();
    let data = noise(3 << 20, 41);
    let backup = || repo.backup_json(&["--stdin-filename", "db.sql"], Some(&data));
    let first = backup();
    assert!(first["data_blobs"].as_u64().unwrap() > 100, "{first}");
    let filter = find_file(&repo.cache(), "index-5.filter").expect("the cache has an index-5.filter");
    std::fs::remove_file(&filter).unwrap();
    let again = backup();
    assert_eq!(again["data_blobs"].as_u64(), Some(0), "filter missing: {again}");
    assert!(filter.exists(), "the filter was not built again");
    std::fs::write(&filter, noise(5000, 42)).unwrap();
    let again = backup();
    assert_eq!(again["data_blobs"].as_u64(), Some(0), "filter of garbage: {again}");
    let mut bytes = std::fs::read(&filter).unwrap();
    assert!(bytes.len() > 64 && bytes[64..].iter().any(|b| *b != 0), "the rebuilt filter has no bits");
    bytes[64..].fill(0);
    std::fs::write(&filter, &bytes).unwrap();
    let again = backup();
    assert!(again["data_blobs"].as_u64().unwrap() > 100, "an empty filter called nothing new: {again}");
    let o = repo.out(&["check", "--read-data"]);
    assert_eq!(o.code, Some(0), "check after a second copy:\n{}{}", o.stdout_str(), o.stderr);
    let snapshots = repo.snapshots();
    assert_eq!(snapshots.len(), 4);
    for s in snapshots {
        let id = s["id"].as_str().unwrap();
        let o = repo.out(&["dump", id, "db.sql"]);
        assert_eq!(o.code, Some(0), "dump {id}: {}", o.stderr);
        assert!(o.stdout == data, "snapshot {id} does not read back exact");
    }
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()? {
        let e = e.ok()?;
        if e.file_type().ok()?.is_dir() {
            if let Some(f) = find_file(&e.path(), name) {
                return Some(f);
            }
        } else if e.file_name() == name {
            return Some(e.path());
        }
    }
    None
}
