//! Chunk lists (format 3, format-spec/07-trees.md "Chunk lists"): a large
//! dump's node names its chunks by lists that deduplicate, every reader
//! expands them, prune and check walk them, `copy` and `diff` cross the
//! line between formats, and a lost list is damage that is named.

use serde_json::Value;

use crate::common::{noise, output, Repo};

/// The library's view of a repository made by the binary.
fn open(repo: &Repo) -> cairn::repo::Repository {
    let backend = cairn::backend::Backend::open(repo.url(), false, &Default::default()).expect("backend");
    cairn::repo::Repository::open(backend, repo.password().as_bytes(), cairn::repo::CacheMode::Memory)
        .expect("the library opens the repository")
}

/// The content of `name` in the latest snapshot's root tree.
fn content(repo: &Repo, name: &str) -> cairn::format::tree::Content {
    let r = open(repo);
    let id = repo.snapshots().last().expect("a snapshot")["id"].as_str().expect("id").to_string();
    let snap = r.load_snapshot(&cairn::id::SnapshotId::from_hex(&id).expect("hex")).expect("snapshot");
    let nodes = r.load_tree(&snap.tree).expect("tree");
    nodes.into_iter().find(|n| n.name == name.as_bytes()).expect("the node").content
}

fn listed(c: &cairn::format::tree::Content) -> bool {
    matches!(c, cairn::format::tree::Content::Listed { .. })
}

fn count(v: &Value, field: &str) -> u64 {
    v[field].as_u64().unwrap_or_else(|| panic!("no {field} in {v}"))
}

/// Four nights of a 3 MiB dump (about 750 chunks at 4 KiB): its node is
/// listed; a night that changes a few bytes stores its chunk, a few lists
/// and the tree; an unchanged night stores only the tree; restore, dump
/// and check --read-data give it back exactly, across a forget and prune.
#[test]
fn a_large_dump_is_listed_and_a_small_change_stores_a_few_lists() {
    let repo = Repo::init();
    assert_eq!(repo.json(&["cat", "config"])["version"], 3);
    let mut night = noise(3 << 20, 81);
    let first = repo.backup_json(&["--stdin-filename", "db.sql"], Some(&night));
    assert!(count(&first, "data_blobs") > 256, "{first}");
    let c1 = content(&repo, "db.sql");
    assert!(listed(&c1), "a dump of {} chunks is listed: {c1:?}", count(&first, "data_blobs"));
    // The lists are tree blobs: about one per 256 chunks, and the tree.
    let lists1 = count(&first, "tree_blobs") - 1;
    assert!((1..=12).contains(&lists1), "{first}");

    // A change of a few bytes in the middle.
    night[1_500_000..1_500_010].copy_from_slice(b"0123456789");
    let second = repo.backup_json(&["--stdin-filename", "db.sql"], Some(&night));
    assert!(count(&second, "data_blobs") <= 3, "{second}");
    assert!((2..=4).contains(&count(&second, "tree_blobs")), "the tree and one or two lists: {second}");
    assert_ne!(content(&repo, "db.sql"), c1);

    // The same dump again: its lists are those of the night before.
    let third = repo.backup_json(&["--stdin-filename", "db.sql"], Some(&night));
    assert_eq!(count(&third, "data_blobs"), 0, "{third}");
    assert_eq!(count(&third, "tree_blobs"), 1, "only the root tree (its node's times): {third}");

    assert_eq!(repo.dump("latest", "db.sql"), night);
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("t");
    repo.run(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(std::fs::read(target.join("db.sql")).unwrap(), night);
    let out = repo.run(&["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
    assert!(out.contains("chunk lists"), "check says how many lists it walked: {out}");

    // The first night forgotten and pruned: the lists it shared stay.
    let first_id = repo.snapshots()[0]["id"].as_str().unwrap().to_string();
    repo.run(&["forget", &first_id]);
    repo.run(&["prune", "--max-unused", "0"]);
    assert_eq!(repo.dump("latest", "db.sql"), night);
    let out = repo.run(&["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
    // raw-data counts each list once, as a tree blob, with its chunks.
    let stats = repo.json(&["stats", "--mode", "raw-data", "--json"]);
    let trees = count(&stats, "tree_blob_count");
    assert!(trees > lists1, "the root tree and the lists: {stats}");
    assert_eq!(count(&stats, "missing_blobs"), 0, "{stats}");
    // (The change replaced a few chunks: how many, and whether it moved a
    // cut, depends on the repository's secret chunker seed.)
    let n = count(&first, "data_blobs");
    assert!((n - 3..=n + 3).contains(&count(&stats, "data_blob_count")), "{n} chunks at first: {stats}");

    // diff sees the content change between the listed nights.
    let snaps = repo.snapshots();
    let v = repo.json(&["diff", snaps[0]["id"].as_str().unwrap(), snaps[1]["id"].as_str().unwrap(), "--json"]);
    let st = &v["statistics"];
    assert_eq!(st["changed_files"], 0, "the second and third nights hold the same content: {v}");
}

/// A format-2 repository adopts lists with `migrate`; a dump backed up
/// before (inline) and after (listed) compares equal in `diff`, and
/// `copy` into a format-2 repository rebuilds the trees with inline chunks.
#[test]
fn migrate_to_lists_and_copy_back_to_format_2() {
    let repo = Repo::uninit();
    repo.run(&["init", "--format-version", "2"]);
    let data = noise(2 << 20, 82);
    repo.backup_json(&["--stdin-filename", "db.sql"], Some(&data));
    assert!(!listed(&content(&repo, "db.sql")), "format 2 holds chunks inline");
    repo.run(&["migrate", "--format-version", "3"]);
    assert_eq!(repo.json(&["cat", "config"])["version"], 3);
    let after = repo.backup_json(&["--stdin-filename", "db.sql"], Some(&data));
    assert_eq!(count(&after, "data_blobs"), 0, "{after}");
    assert!(listed(&content(&repo, "db.sql")));
    let snaps = repo.snapshots();
    let v = repo.json(&["diff", snaps[0]["id"].as_str().unwrap(), snaps[1]["id"].as_str().unwrap(), "--json"]);
    assert_eq!(v["statistics"]["changed_files"], 0, "inline and listed, the same chunks: {v}");

    // Into a format-2 repository with the same chunkers: trees rebuilt.
    let old = Repo::uninit();
    let mut c = old.cmd();
    c.env("CAIRN_FROM_PASSWORD", repo.password()).args([
        "init",
        "--format-version",
        "2",
        "--copy-chunker-params",
        "--from-repo",
        repo.url(),
    ]);
    let o = output(c);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let mut c = old.cmd();
    c.env("CAIRN_FROM_PASSWORD", repo.password()).args(["copy", "--from-repo", repo.url()]);
    let o = output(c);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(old.dump("latest", "db.sql"), data);
    assert!(!listed(&content(&old, "db.sql")), "a format-2 repository gets no lists");
    let out = old.run(&["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");

    // And into a format-3 one: ids and lists kept.
    let new = Repo::uninit();
    let mut c = new.cmd();
    c.env("CAIRN_FROM_PASSWORD", repo.password()).args(["init", "--copy-chunker-params", "--from-repo", repo.url()]);
    assert_eq!(output(c).code, Some(0));
    let mut c = new.cmd();
    c.env("CAIRN_FROM_PASSWORD", repo.password()).args(["copy", "--from-repo", repo.url()]);
    let o = output(c);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(content(&new, "db.sql"), content(&repo, "db.sql"));
    assert_eq!(new.dump("latest", "db.sql"), data);
    let out = new.run(&["check", "--read-data"]);
    assert!(out.contains("no errors"), "{out}");
}

/// A chunk list whose pack is gone, under a tree that is still there:
/// check names the list and the file, and dump and restore fail instead of
/// writing a short file.
#[test]
fn a_lost_list_is_damage_that_check_and_restore_name() {
    let repo = Repo::init();
    let data = noise(2 << 20, 83);
    repo.backup_json(&["--stdin-filename", "db.sql"], Some(&data));
    let cairn::format::tree::Content::Listed { lists, .. } = content(&repo, "db.sql") else { panic!("not listed") };
    // The same dump under another name: a new tree (in a pack of its
    // own) naming the first night's lists.
    let again = repo.backup_json(&["--stdin-filename", "db2.sql"], Some(&data));
    assert_eq!(count(&again, "tree_blobs"), 1, "{again}");
    let r = open(&repo);
    let loc = r.locate(&cairn::id::BlobId::list(lists[0])).expect("locate").expect("the list is indexed");
    drop(r);
    std::fs::remove_file(repo.path().join(cairn::pack::object_name(&loc.pack))).unwrap();
    std::fs::remove_dir_all(repo.cache()).ok();

    let o = repo.out(&["check"]);
    assert_ne!(o.code, Some(0), "check passed without a list:\n{}{}", o.stdout_str(), o.stderr);
    let all = format!("{}{}", o.stdout_str(), o.stderr);
    assert!(all.contains(&format!("chunk list {} of /db2.sql", lists[0])), "{all}");
    let o = repo.out(&["dump", "latest", "db2.sql"]);
    assert_ne!(o.code, Some(0), "dump without a list");
    o.assert_no_panic("dump without a list");
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("t");
    let o = repo.out(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_ne!(o.code, Some(0), "restore without a list");
    o.assert_no_panic("restore without a list");
    assert!(std::fs::read(target.join("db2.sql")).map_or(true, |b| b != data), "restored as if whole");
}

/// Restore writes a listed file by walking its lists (its chunks are never
/// all in the plan): every byte exact, and a damaged chunk in one listed
/// file fails that file alone, named, with nothing of it left behind, while
/// the files beside it, listed or not, restore exactly.
#[test]
fn restore_streams_listed_files_and_fails_only_the_damaged_one() {
    let repo = Repo::init();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let (a, b) = (noise(3 << 20, 84), noise(2 << 20, 85));
    std::fs::write(src.join("a.bin"), &a).unwrap();
    std::fs::write(src.join("b.bin"), &b).unwrap();
    std::fs::write(src.join("small.txt"), b"beside them\n").unwrap();
    repo.backup_json(&["--chunker", "dump", src.to_str().unwrap()], None);

    let t1 = tmp.path().join("t1");
    repo.run(&["restore", "latest", "--target", t1.to_str().unwrap()]);
    let back = crate::common::restored(&t1, &src);
    assert!(std::fs::read(back.join("a.bin")).unwrap() == a, "a.bin restored with other bytes");
    assert!(std::fs::read(back.join("b.bin")).unwrap() == b, "b.bin restored with other bytes");

    // Damage one chunk in the middle of a.bin: its group no longer opens.
    let r = open(&repo);
    let id = repo.snapshots().last().expect("a snapshot")["id"].as_str().expect("id").to_string();
    let snap = r.load_snapshot(&cairn::id::SnapshotId::from_hex(&id).expect("hex")).expect("snapshot");
    let (node, _) = cairn::ops::restore::resolve(&r, snap.tree, &src.join("a.bin")).expect("resolve");
    let node = node.expect("a.bin is in the snapshot");
    assert!(listed(&node.content), "a 3 MiB file cut as a dump is listed");
    // The plan reads the small file's chunk through its pack and holds
    // none of the listed files' chunks.
    let plan = cairn::ops::restore::RestorePlan::build(
        &r,
        snap.tree,
        std::path::Path::new("/"),
        &tmp.path().join("planned"),
        &cairn::ops::restore::Filter::default(),
    )
    .expect("plan");
    assert_eq!(plan.blob_count(), 1, "{:?}", plan.files.iter().map(|f| (&f.path, f.streamed)).collect::<Vec<_>>());
    assert_eq!(plan.files.iter().filter(|f| f.streamed).count(), 2);
    let chunks = r.file_chunks(&node.content).expect("chunks").into_owned();
    let loc = r.locate(&cairn::id::BlobId::data(chunks[chunks.len() / 2])).expect("locate").expect("indexed");
    drop(r);
    let pack = repo.path().join(cairn::pack::object_name(&loc.pack));
    crate::common::flip_byte(&pack, loc.offset as u64 + loc.length as u64 / 2);
    std::fs::remove_dir_all(repo.cache()).ok();

    let t2 = tmp.path().join("t2");
    let o = repo.out(&["restore", "latest", "--target", t2.to_str().unwrap()]);
    o.assert_failed(None, "restore with a damaged chunk of a listed file");
    assert!(o.stderr.contains("a.bin"), "the damaged file is not named:\n{}", o.stderr);
    let back = crate::common::restored(&t2, &src);
    assert!(!back.join("a.bin").exists(), "a.bin was left in the target:\n{}", o.stderr);
    assert!(std::fs::read(back.join("b.bin")).unwrap() == b, "b.bin restored with other bytes");
    assert_eq!(std::fs::read(back.join("small.txt")).unwrap(), b"beside them\n");
}
