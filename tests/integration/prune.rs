//! forget + prune: what is freed, what is kept, and safety beside backups
//! running at the same time (format-spec/10-write-order.md, rule 11).

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;

use crate::common::{both_backends, noise, sha256_hex, Repo, Where};

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

both_backends!(
    prune_frees_forgotten_data_and_keeps_what_snapshots_use,
    prune_beside_a_running_backup_defers_deletion_until_it_ends,
    concurrent_backups_from_two_hosts_survive_forget_and_prune_rounds,
);

/// Every file name under `dir` with the SHA-256 of its content.
fn tree_hashes(dir: &Path) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for e in walk(dir) {
        let rel = e.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        out.insert(rel, sha256_hex(&std::fs::read(&e).unwrap()));
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap().path();
        if e.is_dir() {
            out.extend(walk(&e));
        } else {
            out.push(e);
        }
    }
    out
}

fn restore_hashes(repo: &Repo, id: &str, source: &Path) -> HashMap<String, String> {
    let target = tempfile::tempdir().unwrap();
    repo.run(&["restore", id, "--target", p(target.path())]);
    tree_hashes(&crate::common::restored(target.path(), source))
}

fn check_passes(repo: &Repo) {
    let out = repo.out(&["check", "--read-data"]);
    assert_eq!(out.code, Some(0), "check failed:\n{}\n{}", out.stdout_str(), out.stderr);
}

fn prune_frees_forgotten_data_and_keeps_what_snapshots_use(w: Where) {
    let repo = Repo::init_on(w);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("gone.bin"), noise(3 << 20, 1)).unwrap();
    std::fs::write(src.join("kept.bin"), noise(2 << 20, 2)).unwrap();
    let first = repo.backup_json(&[p(&src)], None)["snapshot_id"].as_str().unwrap().to_string();
    std::fs::remove_file(src.join("gone.bin")).unwrap();
    std::fs::write(src.join("new.bin"), noise(1 << 20, 3)).unwrap();
    let second = repo.backup_json(&[p(&src)], None)["snapshot_id"].as_str().unwrap().to_string();
    let before = repo.size();

    repo.run(&["forget", &first]);
    let listing = |r: &Repo| {
        let mut v = r.list("");
        v.retain(|(n, _)| !n.starts_with("locks/"));
        v
    };
    let untouched = listing(&repo);
    let dry = repo.json(&["prune", "--dry-run", "--json"]);
    assert_eq!(dry["dry_run"], true);
    assert!(
        dry["plan"]["totals"]["repack"][0].as_u64().unwrap() + dry["plan"]["totals"]["mark"][0].as_u64().unwrap() >= 1,
        "{dry}"
    );
    assert_eq!(listing(&repo), untouched, "a dry run changed the repository");

    let out = repo.json(&["prune", "--json"]);
    let freed = out["report"]["bytes_freed"].as_u64().unwrap();
    assert!(freed >= 2 << 20, "freed only {freed} bytes: {out}");
    let after = repo.size();
    assert!(before - after >= 2 << 20, "the repository shrank from {before} to {after} only");
    assert!(after >= 3 << 20, "the kept data ({after} bytes left) cannot be there");
    check_passes(&repo);
    assert_eq!(restore_hashes(&repo, &second, &src), tree_hashes(&src));

    // Nothing left to do: a second prune writes and deletes nothing.
    let again = repo.json(&["prune", "--json"]);
    assert_eq!(again["report"]["index_objects_written"], 0, "{again}");
    assert_eq!(again["report"]["packs_deleted"], 0, "{again}");

    // forget --prune --json: one document, the prune's under "prune".
    std::fs::write(src.join("kept.bin"), noise(1 << 20, 4)).unwrap();
    repo.backup_json(&[p(&src)], None);
    let both = repo.json(&["forget", "--keep-last", "1", "--prune", "--json"]);
    assert_eq!(both["report"]["removed"], 1, "{both}");
    assert!(both["prune"]["report"]["bytes_freed"].as_u64().unwrap() > 0, "{both}");
    check_passes(&repo);
}

/// A backup that reads its stream from a command sleeping `secs` first, so
/// that it holds its lock while the test runs prune.
fn slow_stream_backup(repo: &Repo, file: &Path, host: &str, secs: f32) -> std::process::Child {
    repo.std_cmd_via(repo.url())
        .args(["backup", "--json", "--host", host, "--stdin-filename", "dump.bin", "--stdin-from-command", "--"])
        .args(["sh", "-c", &format!("sleep {secs}; cat '{}'", p(file))])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn snapshot_id_of(child: std::process::Child) -> String {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "backup failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["snapshot_id"].as_str().unwrap().to_string()
}

fn prune_beside_a_running_backup_defers_deletion_until_it_ends(w: Where) {
    let repo = Repo::init_on(w);
    let tmp = tempfile::tempdir().unwrap();
    let (old, fresh) = (tmp.path().join("old.bin"), tmp.path().join("fresh.bin"));
    // (512 KiB: ~128 chunks, held in its node. A listed dump's lists
    // would be reused by the backup of the same data below, which unmarks
    // the tree pack too, and this test wants a pack that is deleted.)
    std::fs::write(&old, noise(512 << 10, 7)).unwrap();
    std::fs::write(&fresh, noise(1 << 20, 8)).unwrap();
    let first = repo.backup_json(&["--stdin-filename", "old.bin"], Some(&std::fs::read(&old).unwrap()));
    repo.run(&["forget", first["snapshot_id"].as_str().unwrap()]);
    let packs_before = repo.list("data").len();

    // A backup runs (it holds its lock) while prune marks the old data.
    let child = slow_stream_backup(&repo, &fresh, "busy", 6.0);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let out = repo.json(&["prune", "--json"]);
    assert_eq!(out["report"]["packs_deleted"], 0, "deleted beside a running backup: {out}");
    assert!(out["report"]["packs_pending"].as_u64().unwrap() >= 1, "{out}");
    let waiting = out["report"]["waiting_for"].to_string();
    assert!(waiting.contains("backup") && waiting.contains("pid"), "{out}");
    assert_eq!(repo.list("data").len(), packs_before, "a pack was deleted beside a running backup");
    // check passes, and says what waits.
    let c = repo.json(&["check", "--json"]);
    assert!(c["marked_packs"].as_u64().unwrap() >= 1, "{c}");
    assert!(c["notes"].to_string().contains("marked for deletion"), "{c}");
    // `cat index` shows the marks and the run record apart from live packs.
    let (mut marked, mut runs) = (0, 0);
    for id in repo.object_ids("index") {
        let ix = repo.json(&["cat", "index", &id]);
        marked += ix["marked"].as_array().map_or(0, Vec::len);
        runs += ix["runs"].as_array().map_or(0, Vec::len);
        assert!(ix["packs"].is_array(), "{ix}");
    }
    assert!(marked >= 1 && runs >= 1, "cat index shows {marked} marked packs and {runs} run records");

    // While the marks wait, a new backup of the same data stores it again:
    // it must not reuse a pack marked for deletion.
    let again = repo.backup_json(&["--stdin-filename", "old.bin"], Some(&std::fs::read(&old).unwrap()));
    assert!(again["data_added"].as_u64().unwrap() >= 512 << 10, "reused marked data: {again}");
    let again_id = again["snapshot_id"].as_str().unwrap().to_string();

    let busy = snapshot_id_of(child);
    // The writer is gone: the next prune deletes what it marked.
    let out = repo.json(&["prune", "--json"]);
    assert!(out["report"]["packs_deleted"].as_u64().unwrap() >= 1, "{out}");
    assert_eq!(out["report"]["packs_pending"], 0, "{out}");
    check_passes(&repo);
    assert_eq!(repo.json(&["check", "--json"])["marked_packs"], 0);
    assert_eq!(sha256_hex(&repo.dump(&busy, "dump.bin")), sha256_hex(&std::fs::read(&fresh).unwrap()));
    assert_eq!(sha256_hex(&repo.dump(&again_id, "old.bin")), sha256_hex(&std::fs::read(&old).unwrap()));
}

/// Two hosts back up in a loop while forget --prune runs; after every round
/// every kept snapshot restores byte for byte and check --read-data passes.
fn concurrent_backups_from_two_hosts_survive_forget_and_prune_rounds(w: Where) {
    let rounds: usize = std::env::var("CAIRN_PRUNE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if w == Where::S3 { 3 } else { 5 });
    let repo = Repo::init_on(w);
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let stream = tmp.path().join("stream.bin");
    // Expected content of every snapshot ever written.
    let mut trees: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut streams: HashMap<String, String> = HashMap::new();
    // Rounds where prune found a backup running and left its marks pending.
    let mut deferred = 0;
    for round in 0..rounds {
        // Change part of the data each round, so every round has garbage.
        let seed = round as u64 * 10;
        std::fs::write(tree.join(format!("r{}.bin", round % 3)), noise(1 << 20, seed + 1)).unwrap();
        std::fs::write(tree.join("small.txt"), format!("round {round}")).unwrap();
        let mut s = noise(1 << 20, 5);
        s.extend(noise(512 << 10, seed + 2));
        std::fs::write(&stream, &s).unwrap();

        let slow = slow_stream_backup(&repo, &stream, "db-host", 1.5);
        let mut c = repo.std_cmd_via(repo.url());
        c.args(["backup", "--json", "--host", "file-host", p(&tree)]).stdout(Stdio::piped()).stderr(Stdio::piped());
        let files = c.spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300 + 200 * (round as u64 % 4)));
        let out = repo.run(&["--retry-lock", "60s", "forget", "--keep-last", "2", "--prune"]);
        deferred += usize::from(out.contains("stay marked until these writers finish"));
        trees.insert(snapshot_id_of(files), tree_hashes(&tree));
        streams.insert(snapshot_id_of(slow), sha256_hex(&s));

        check_passes(&repo);
        let present: Vec<String> = repo.snapshots().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
        for id in &present {
            if let Some(want) = trees.get(id) {
                assert_eq!(&restore_hashes(&repo, id, &tree), want, "round {round}: snapshot {id} restores wrong");
            } else if let Some(want) = streams.get(id) {
                assert_eq!(&sha256_hex(&repo.dump(id, "dump.bin")), want, "round {round}: stream {id} dumps wrong");
            } else {
                panic!("unknown snapshot {id}");
            }
        }
    }
    assert!(deferred > 0, "no round ran prune while a backup held its lock");
    // Once nothing runs, a prune settles every mark: nothing stays pending.
    let out = repo.json(&["prune", "--json"]);
    assert_eq!(out["report"]["packs_pending"], 0, "{out}");
    check_passes(&repo);
}

/// The used-blob set moved to disk (`--scratch-memory 0`) gives the same
/// plan as the set in memory, and its prune leaves a repository that
/// checks and restores.
#[test]
fn prune_plans_the_same_with_the_used_set_on_disk() {
    let repo = Repo::init_on(Where::Local);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    for i in 0..40 {
        std::fs::write(src.join("d").join(format!("f{i}")), noise(3000 + i * 7, i as u64)).unwrap();
    }
    std::fs::write(src.join("big.bin"), noise(3 << 20, 99)).unwrap();
    let first = repo.backup_json(&[p(&src)], None)["snapshot_id"].as_str().unwrap().to_string();
    for i in 0..20 {
        std::fs::remove_file(src.join("d").join(format!("f{i}"))).unwrap();
    }
    std::fs::write(src.join("new.bin"), noise(1 << 20, 100)).unwrap();
    let second = repo.backup_json(&[p(&src)], None)["snapshot_id"].as_str().unwrap().to_string();
    repo.run(&["forget", &first]);

    let plan = |extra: &[&str]| {
        let mut args = vec!["prune", "--dry-run", "--json", "--max-unused", "0"];
        args.extend_from_slice(extra);
        let mut v = repo.json(&args)["plan"].clone();
        v.as_object_mut().unwrap().remove("run");
        v.as_object_mut().unwrap().remove("timings");
        v
    };
    let in_memory = plan(&[]);
    assert!(in_memory["totals"]["repack"][0].as_u64().unwrap() >= 1, "{in_memory}");
    assert_eq!(plan(&["--scratch-memory", "0"]), in_memory);

    let out = repo.json(&["prune", "--json", "--max-unused", "0", "--scratch-memory", "0"]);
    assert!(out["report"]["repacked_blobs"].as_u64().unwrap() >= 1, "{out}");
    check_passes(&repo);
    assert_eq!(restore_hashes(&repo, &second, &src), tree_hashes(&src));

    let bad = repo.out(&["prune", "--scratch-memory", "lots"]);
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    assert_eq!(bad.stderr.trim().lines().count(), 1, "{}", bad.stderr);
    assert!(bad.stderr.contains("--scratch-memory"), "{}", bad.stderr);
}
