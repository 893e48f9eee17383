//! Crash safety: prune and backup killed with SIGKILL before each point of
//! their write sequence, chosen by a seeded sweep (not one lucky timing).
//! `CAIRN_TEST_KILL_BEFORE_WRITE=N` makes cairn kill itself just before its
//! Nth put or delete. After every kill the repository passes
//! `check --read-data`, every snapshot restores exactly, and the next run
//! completes. `CAIRN_CRASH_SEED` replays a sweep; `CAIRN_CRASH_POINTS` sets
//! how many points are tried (all of them when the sequence is shorter).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bytes::Bytes;
use rand::{Rng, SeedableRng};

use crate::common::{self, both_backends, noise, requests, sha256_hex, Repo, Where};

both_backends!(
    killed_prune_at_every_point_leaves_a_repository_that_checks_and_restores,
    killed_backup_at_every_point_leaves_a_repository_that_checks_and_restores
);

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

/// The write points to try out of `total`: all, or a seeded sample that
/// always includes the first and the last.
fn points(total: u64, what: &str) -> Vec<u64> {
    let want: u64 = std::env::var("CAIRN_CRASH_POINTS").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    assert!(total >= 3, "{what}: only {total} writes counted");
    if total <= want {
        eprintln!("{what}: {total} writes; killing before each");
        return (1..=total).collect();
    }
    let seed: u64 = std::env::var("CAIRN_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("{what}: {total} writes; sampling {want} with CAIRN_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = vec![1, total];
    while (v.len() as u64) < want {
        let k = rng.gen_range(1..=total);
        if !v.contains(&k) {
            v.push(k);
        }
    }
    v.sort();
    v
}

struct Expected {
    /// Snapshot id -> (stream file name or "", SHA-256 of each file).
    snapshots: HashMap<String, (String, BTreeMap<String, String>)>,
    src: std::path::PathBuf,
}

impl Expected {
    fn verify(&self, repo: &Repo, context: &str) {
        let out = repo.out(&["check", "--read-data"]);
        assert_eq!(out.code, Some(0), "{context}: check failed:\n{}\n{}", out.stdout_str(), out.stderr);
        for s in repo.snapshots() {
            let id = s["id"].as_str().unwrap();
            let (stream, want) = self.snapshots.get(id).unwrap_or_else(|| panic!("{context}: unknown snapshot {id}"));
            let got = if stream.is_empty() {
                let t = tempfile::tempdir().unwrap();
                repo.run(&["restore", id, "--target", p(t.path())]);
                hashes(&common::restored(t.path(), &self.src))
            } else {
                BTreeMap::from([(stream.clone(), sha256_hex(&repo.dump(id, stream)))])
            };
            assert_eq!(&got, want, "{context}: snapshot {id} restores wrong");
        }
    }
}

fn hashes(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap().path();
        out.insert(e.file_name().unwrap().to_string_lossy().into_owned(), sha256_hex(&std::fs::read(&e).unwrap()));
    }
    out
}

/// Runs `args` on `repo` with a kill before write `k`, which must happen.
fn killed_run(repo: &Repo, args: &[&str], k: u64) {
    let mut c = repo.cmd();
    c.env("CAIRN_TEST_KILL_BEFORE_WRITE", k.to_string()).args(args);
    let out = common::output(c);
    out.assert_no_panic(&format!("{args:?} killed before write {k}"));
    assert_eq!(out.code, None, "{args:?} was to be killed before write {k}, but ended:\n{}", out.stderr);
}

fn killed_prune_at_every_point_leaves_a_repository_that_checks_and_restores(w: Where) {
    let repo = Repo::init_on(w);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut exp = Expected { snapshots: HashMap::new(), src: src.clone() };
    for round in 0..4u64 {
        std::fs::write(src.join(format!("f{}", round % 2)), noise(1 << 20, round + 1)).unwrap();
        std::fs::write(src.join("small"), format!("round {round}")).unwrap();
        let id = repo.backup_json(&[p(&src)], None)["snapshot_id"].as_str().unwrap().to_string();
        exp.snapshots.insert(id, (String::new(), hashes(&src)));
    }
    let dump = noise(600 << 10, 99);
    let id =
        repo.backup_json(&["--stdin-filename", "db.sql"], Some(&dump))["snapshot_id"].as_str().unwrap().to_string();
    exp.snapshots.insert(id, ("db.sql".into(), BTreeMap::from([("db.sql".to_string(), sha256_hex(&dump))])));
    // Marks left pending by an earlier prune (a backup held its lock), so the
    // swept prune both deletes ripe marks and makes and settles its own.
    repo.run(&["forget", "--keep-last", "3", "--group-by", ""]);
    let held = writer(&repo);
    repo.run(&["prune", "--max-unused", "0"]);
    finish_writer(held, &mut exp);
    repo.run(&["forget", "--keep-last", "2", "--group-by", ""]);
    let objects = common::all_objects(&repo);

    // Alone, the swept prune settles its own marks at once; beside a
    // running backup, it leaves them pending with a record.
    sweep_prune(&objects, &repo, w, &mut exp, false);
    sweep_prune(&objects, &repo, w, &mut exp, true);
}

/// A stream backup of `x\n` that holds its lock for a few seconds.
fn writer(repo: &Repo) -> std::process::Child {
    let c = repo
        .std_cmd_via(repo.url())
        .args([
            "backup",
            "--json",
            "--stdin-filename",
            "x",
            "--stdin-from-command",
            "--",
            "sh",
            "-c",
            "sleep 2.5; echo x",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    c
}

fn finish_writer(c: std::process::Child, exp: &mut Expected) {
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "the backup beside prune failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["snapshot_id"].as_str().unwrap().to_string();
    exp.snapshots.insert(id, ("x".into(), BTreeMap::from([("x".to_string(), sha256_hex(b"x\n"))])));
}

fn sweep_prune(objects: &BTreeMap<String, Bytes>, template: &Repo, w: Where, exp: &mut Expected, beside_backup: bool) {
    let what = if beside_backup { "prune beside a backup" } else { "prune" };
    // How many writes a whole prune makes.
    let full = common::repo_with_objects(objects, template, w);
    let held = beside_backup.then(|| writer(&full));
    let out = full.out(&["-v", "prune", "--max-unused", "0"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    if beside_backup {
        assert!(out.stdout_str().contains("stay marked"), "{what}: no marks were left pending:\n{}", out.stdout_str());
    }
    if let Some(c) = held {
        finish_writer(c, exp);
    }
    let r = requests(&out.stderr, "");
    exp.verify(&full, &format!("uninterrupted {what}"));
    for k in points(r.put + r.delete, what) {
        let copy = common::repo_with_objects(objects, template, w);
        let held = beside_backup.then(|| writer(&copy));
        killed_run(&copy, &["prune", "--max-unused", "0"], k);
        if let Some(c) = held {
            finish_writer(c, exp);
        }
        exp.verify(&copy, &format!("{what} killed before write {k}"));
        copy.run(&["prune", "--max-unused", "0"]);
        exp.verify(&copy, &format!("prune after a {what} killed before write {k}"));
        let again = copy.json(&["prune", "--json"]);
        assert_eq!(
            again["report"]["index_objects_written"], 0,
            "after kill {k}, a second prune still had work: {again}"
        );
        assert_eq!(again["report"]["packs_pending"], 0, "after kill {k}: {again}");
    }
}

fn killed_backup_at_every_point_leaves_a_repository_that_checks_and_restores(w: Where) {
    let repo = Repo::init_on(w);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut exp = Expected { snapshots: HashMap::new(), src: src.clone() };
    std::fs::write(src.join("a"), noise(1 << 20, 1)).unwrap();
    let id = repo.backup_json(&[p(&src)], None)["snapshot_id"].as_str().unwrap().to_string();
    exp.snapshots.insert(id, (String::new(), hashes(&src)));
    let objects = common::all_objects(&repo);
    // The next backup: a changed file, a new one, several packs.
    std::fs::write(src.join("a"), noise(1 << 20, 2)).unwrap();
    std::fs::write(src.join("b"), noise(3 << 20, 3)).unwrap();
    let full = common::repo_with_objects(&objects, &repo, w);
    let out = full.out(&["-v", "backup", p(&src)]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let r = requests(&out.stderr, "");
    let after = hashes(&src);
    for k in points(r.put + r.delete, "backup") {
        let copy = common::repo_with_objects(&objects, &repo, w);
        killed_run(&copy, &["backup", p(&src)], k);
        // A killed backup leaves no snapshot, or (killed after it) a whole one.
        for s in copy.snapshots() {
            exp.snapshots
                .entry(s["id"].as_str().unwrap().to_string())
                .or_insert_with(|| (String::new(), after.clone()));
        }
        exp.verify(&copy, &format!("backup killed before write {k}"));
        let id = copy.backup_json(&[p(&src)], None)["snapshot_id"].as_str().unwrap().to_string();
        exp.snapshots.insert(id, (String::new(), after.clone()));
        exp.verify(&copy, &format!("backup after a backup killed before write {k}"));
    }
}
