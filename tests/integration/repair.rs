//! `repair index` and `repair snapshots`: dry runs change nothing, lost
//! index objects come back from the packs, originals are kept unless
//! `--forget`, and an interrupted repair leaves a usable repository that a
//! second run finishes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::{self, flip_middle, largest, noise, restored, Repo, Where};

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

/// A repository (1 MiB packs) with two backups of a small tree.
fn backed_up(w: Where) -> (Repo, PathBuf) {
    let repo = Repo::uninit_on(w);
    repo.run(&["init", "--pack-size", "1"]);
    let src = repo.dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("big.bin"), noise(2 << 20, 90)).unwrap();
    std::fs::write(src.join("sub/small.txt"), b"small").unwrap();
    repo.run(&["backup", "-q", p(&src)]);
    std::fs::write(src.join("other.bin"), noise(1 << 20, 91)).unwrap();
    repo.run(&["backup", "-q", p(&src)]);
    (repo, src)
}

/// Every object's name and bytes.
fn contents(repo: &Repo) -> BTreeMap<String, Vec<u8>> {
    let b = repo.backend();
    repo.list("").into_iter().map(|(n, _)| (n.clone(), b.get(&n).unwrap().to_vec())).collect()
}

fn check(repo: &Repo) -> (Option<i32>, String) {
    let o = repo.out(&["check", "--read-data"]);
    (o.code, format!("{}{}", o.stdout_str(), o.stderr))
}

#[test]
fn dry_runs_change_nothing_and_a_sound_repository_needs_nothing() {
    let (repo, _src) = backed_up(Where::Local);
    let plan = repo.json(&["repair", "index", "--read-data", "--dry-run", "--json"]);
    assert_eq!(plan["dry_run"], true);
    for k in ["damaged", "missing", "unindexed", "damaged_indexes"] {
        assert_eq!(plan["plan"][k].as_array().map(Vec::len), Some(0), "{k} in a sound repository: {plan}");
    }
    let before = contents(&repo);
    let o = repo.out(&["repair", "index"]);
    assert!(o.stdout_str().contains("the index is sound: nothing to do"), "{}", o.stdout_str());
    assert_eq!(contents(&repo), before, "repair index rewrote a sound index");
    let snaps = repo.json(&["repair", "snapshots", "--dry-run", "--json"]);
    assert_eq!(snaps["plan"]["rewrite"].as_array().map(Vec::len), Some(0), "{snaps}");
    assert_eq!(snaps["plan"]["intact"], 2);

    let pack = largest(&repo.packs());
    flip_middle(&pack);
    let before = contents(&repo);
    let o = repo.out(&["repair", "index", "--read-data", "--dry-run"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let name = common::file_name(&pack);
    assert!(o.stdout_str().contains(&format!("damaged pack {name}")), "{}", o.stdout_str());
    assert!(o.stdout_str().contains("dry run: nothing changed"));
    let o = repo.out(&["repair", "snapshots", "--dry-run"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(contents(&repo), before, "a dry run changed the repository");
}

#[test]
fn lost_index_objects_are_rebuilt_from_the_pack_headers() {
    let (repo, src) = backed_up(Where::Local);
    for (name, _) in repo.list("index") {
        repo.backend().delete(&name).unwrap();
    }
    let (code, out) = check(&repo);
    assert_ne!(code, Some(0), "check passed with no index:\n{out}");
    assert!(out.contains("is not in any index"), "{out}");
    let o = repo.out(&["repair", "index"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout_str().contains("unindexed pack"), "{}", o.stdout_str());
    let (code, out) = check(&repo);
    assert_eq!(code, Some(0), "{out}");
    let target = repo.dir.path().join("t");
    repo.run(&["restore", "latest", "--target", p(&target)]);
    common::assert_dir_contents_equal(&src, &restored(&target, &src));
}

#[test]
fn originals_stay_without_forget_and_go_once_replaced() {
    let (repo, src) = backed_up(Where::Local);
    let snaps = repo.snapshots();
    let pack = largest(&repo.packs());
    flip_middle(&pack);
    repo.run(&["repair", "index", "--read-data"]);
    let o = repo.out(&["repair", "snapshots"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout_str().contains("the originals are kept"), "{}", o.stdout_str());
    let after = repo.snapshots();
    let repaired: Vec<&Value> = after.iter().filter(|s| s["tags"].to_string().contains("repaired")).collect();
    assert!(!repaired.is_empty(), "no snapshot was rewritten: {after:?}");
    assert_eq!(after.len(), snaps.len() + repaired.len(), "originals must stay without --forget");
    for r in &repaired {
        let full = repo.json(&["cat", "snapshot", r["id"].as_str().unwrap()]);
        let rec = &full["repaired"];
        assert!(snaps.iter().any(|s| s["id"] == rec["from"]), "`from` names no original: {rec}");
        assert!(rec["dropped"].to_string().contains("big.bin"), "the damaged file is not named: {rec}");
    }
    let (code, _) = check(&repo);
    assert_ne!(code, Some(0), "the originals still reference lost data");
    // A second run rewrites nothing again; with --forget it deletes the originals.
    let plan = repo.json(&["repair", "snapshots", "--dry-run", "--json"]);
    assert_eq!(plan["plan"]["rewrite"].as_array().map(Vec::len), Some(0), "{plan}");
    assert_eq!(plan["plan"]["already_replaced"].as_array().map(Vec::len), Some(repaired.len()), "{plan}");
    repo.run(&["repair", "snapshots", "--forget"]);
    let last = repo.snapshots();
    assert_eq!(last.len(), snaps.len(), "{last:?}");
    assert!(last.iter().all(|s| s["tags"].to_string().contains("repaired")), "{last:?}");
    let (code, out) = check(&repo);
    assert_eq!(code, Some(0), "{out}");
    // What survived restores exactly.
    let target = repo.dir.path().join("t");
    repo.run(&["restore", "latest", "--target", p(&target)]);
    let back = restored(&target, &src);
    assert_eq!(std::fs::read(back.join("sub/small.txt")).unwrap(), b"small");
    assert!(!back.join("big.bin").exists());
}

crate::common::both_backends!(interrupted_repair_leaves_a_usable_repository_and_a_second_run_finishes);

/// A repair stopped after storing its replacements, before its deletions
/// finished. On S3 every DELETE fails (through the fault proxy), so `repair
/// index` stops at its first deletion; locally the repair runs and its
/// deletions are then undone, which leaves the same state.
fn interrupted_repair_leaves_a_usable_repository_and_a_second_run_finishes(w: Where) {
    let (repo, src) = backed_up(w);
    let b = repo.backend();
    let packs = repo.list("data");
    let (pack, _) = packs.iter().max_by_key(|(_, s)| *s).unwrap().clone();
    let mut bytes = b.get(&pack).unwrap().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    b.put(&pack, bytes.into()).unwrap();
    let snapshots_before = repo.snapshots().len();

    if w == Where::S3 {
        let proxy = crate::s3::Proxy::start(&["--only", "DELETE", "--fail-first", "1000000", "--status", "500"]);
        let o = common::output({
            let mut c = repo.cmd_via(&proxy.url(repo.url()));
            c.args(["-o", "s3.max-retries=0", "repair", "index", "--read-data"]);
            c
        });
        o.assert_no_panic("interrupted repair");
        assert_ne!(o.code, Some(0), "repair index succeeded with every DELETE failing:\n{}", o.stderr);
        // Stale lock of the failed run (its release failed too).
        repo.run(&["unlock", "--remove-all"]);
    } else {
        // Run it, then put the deleted objects back: the state of a run
        // killed between storing its replacements and its first delete.
        let before = contents(&repo);
        repo.run(&["repair", "index", "--read-data"]);
        for (name, bytes) in &before {
            if !name.starts_with("locks/") && b.get(name).is_err() {
                b.put(name, bytes.clone().into()).unwrap();
            }
        }
    }
    // Old and new index objects side by side, the damaged pack still there:
    // nothing is lost, listing and restoring what is intact work.
    assert_eq!(repo.snapshots().len(), snapshots_before);
    let target = repo.dir.path().join("t1");
    let o = repo.out(&["restore", "latest", "--target", p(&target)]);
    o.assert_no_panic("restore after the interrupted repair");
    assert_eq!(std::fs::read(restored(&target, &src).join("sub/small.txt")).unwrap(), b"small");

    repo.run(&["repair", "index", "--read-data"]);
    repo.run(&["repair", "snapshots", "--forget"]);
    let (code, out) = check(&repo);
    assert_eq!(code, Some(0), "check after the second run:\n{out}");
    assert_eq!(repo.snapshots().len(), snapshots_before);
}

crate::common::both_backends!(a_damaged_snapshot_object_stops_nothing_but_prune_and_can_be_removed);

/// Garbage in two snapshot objects, on a host whose cache never saw them:
/// listing, browsing and backups go on with a warning naming each object;
/// prune refuses (it must see every snapshot); `forget ID` removes one and
/// `repair snapshots --forget` the other; then everything checks.
fn a_damaged_snapshot_object_stops_nothing_but_prune_and_can_be_removed(w: Where) {
    let repo = Repo::init_on(w);
    let src = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for n in 0..3 {
        let d = src.path().join(format!("d{n}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("f"), format!("content {n}\n")).unwrap();
        let s = repo.backup_json(&[d.to_str().unwrap()], None);
        ids.push(s["snapshot_id"].as_str().unwrap().to_string());
    }
    let b = repo.backend();
    for id in &ids[..2] {
        b.put(&format!("snapshots/{id}"), bytes::Bytes::from_static(b"garbage, not a sealed snapshot")).unwrap();
    }
    std::fs::remove_dir_all(repo.cache()).unwrap();

    let o = repo.out(&["snapshots", "--json"]);
    assert_eq!(o.code, Some(0), "snapshots: {}", o.stderr);
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    for id in &ids[..2] {
        assert!(o.stderr.contains(&format!("warning: snapshots/{id}")), "warning names {id}:\n{}", o.stderr);
    }
    let o = repo.out(&["ls", "latest"]);
    assert_eq!(o.code, Some(0), "ls latest: {}", o.stderr);
    let d0 = src.path().join("d0");
    let o = repo.out(&["backup", d0.to_str().unwrap()]);
    assert_eq!(o.code, Some(0), "backup beside a damaged snapshot: {}", o.stderr);

    let o = repo.out(&["prune"]);
    o.assert_failed(Some(4), "prune with a damaged snapshot");
    assert!(o.stderr.contains("snapshots/"), "prune names the object:\n{}", o.stderr);
    let o = repo.out(&["check"]);
    o.assert_failed(Some(4), "check with a damaged snapshot");

    let o = repo.out(&["forget", &ids[0][..8]]);
    assert_eq!(o.code, Some(0), "forget of a damaged snapshot: {}", o.stderr);
    let o = repo.out(&["repair", "snapshots"]);
    o.assert_failed(Some(4), "repair snapshots without --forget");
    assert!(o.stderr.contains("--forget"), "{}", o.stderr);
    let o = repo.out(&["repair", "snapshots", "--forget"]);
    assert_eq!(o.code, Some(0), "repair snapshots --forget: {}\n{}", o.stdout_str(), o.stderr);
    let left: Vec<String> = repo.object_ids("snapshots");
    assert!(!left.contains(&ids[0]) && !left.contains(&ids[1]), "{left:?}");
    assert_eq!(left.len(), 2, "{left:?}");
    repo.run(&["prune"]);
    let o = repo.out(&["check", "--read-data"]);
    assert_eq!(o.code, Some(0), "check after removal: {}\n{}", o.stdout_str(), o.stderr);
}
