//! Verified streams: the SHA-256 a stream snapshot records is compared by
//! `dump` and `restore` at the end of what they write, and by `check
//! --read-data` (the newest snapshot of each stream) and `check
//! --verify-streams` (every stream snapshot). A snapshot is re-sealed with
//! a wrong hash through the library, so each check must fail on it.

use cairn::id::SnapshotId;
use cairn::repo::{CacheMode, Repository};

use crate::common::{both_backends, noise, sha256_hex, Repo, Where};

both_backends!(a_wrong_stream_hash_fails_dump_restore_and_check,);

/// Replaces snapshot `id` by a copy whose stream records `sha256`; returns
/// the new id.
fn rewrite_hash(repo: &Repo, id: &str, sha256: &str) -> String {
    let r = Repository::open(repo.backend(), repo.password().as_bytes(), CacheMode::Memory).expect("open repository");
    let old = r.find_snapshot(id).expect("snapshot").0;
    let mut s = r.load_snapshot(&old).expect("load snapshot");
    s.stream.as_mut().expect("a stream snapshot").sha256 = sha256.to_string();
    let new: SnapshotId = r.save_snapshot(&s).expect("save snapshot");
    r.backend.delete(&format!("snapshots/{old}")).expect("delete the old snapshot");
    new.to_string()
}

fn backup(repo: &Repo, data: &[u8], time: &str) -> String {
    let v = repo.backup_json(&["--stdin-filename", "app.sql", "--time", time], Some(data));
    assert_eq!(v["stream"]["sha256"], sha256_hex(data).as_str());
    v["snapshot_id"].as_str().expect("snapshot_id").to_string()
}

fn a_wrong_stream_hash_fails_dump_restore_and_check(w: Where) {
    let repo = Repo::init_on(w);
    let old_data = noise(3 << 20, 7);
    let new_data = noise(2 << 20, 8);
    let old = backup(&repo, &old_data, "2026-03-01 02:00:00");
    let new = backup(&repo, &new_data, "2026-03-02 02:00:00");

    // Intact: everything verifies.
    assert_eq!(repo.dump("latest", "app.sql"), new_data);
    let target = repo.dir.path().join("ok");
    repo.run(&["restore", &old, "--target", target.to_str().unwrap()]);
    assert_eq!(std::fs::read(target.join("app.sql")).unwrap(), old_data);
    let out = repo.run(&["check", "--read-data"]);
    assert!(out.contains("note: 1 stream snapshot(s) verified"), "{out}");
    let out = repo.run(&["check", "--verify-streams"]);
    assert!(out.contains("note: 2 stream snapshot(s) verified"), "{out}");

    // The newest snapshot records a wrong hash (that of other bytes).
    let wrong = sha256_hex(b"not the dump");
    let right = sha256_hex(&new_data);
    let new = rewrite_hash(&repo, &new, &wrong);
    let short = &new[..8];

    let o = repo.out(&["dump", "latest", "app.sql"]);
    o.assert_failed(Some(4), "dump of a stream with a wrong hash");
    let e = o.one_error_line("dump");
    assert!(e.contains(short) && e.contains(&format!("expected SHA-256 {wrong}, got {right}")), "{e}");
    assert_eq!(o.stdout.len(), new_data.len(), "dump writes the stream, then fails");

    let target = repo.dir.path().join("bad");
    let o = repo.out(&["restore", "latest", "--target", target.to_str().unwrap()]);
    o.assert_failed(Some(4), "restore of a stream with a wrong hash");
    let e = o.one_error_line("restore");
    assert!(e.contains(short) && e.contains(&wrong) && e.contains(&right), "{e}");
    assert!(e.contains("app.sql.sha256-mismatch"), "{e}");
    assert!(!target.join("app.sql").exists(), "the restored file is left under its own name");
    assert_eq!(std::fs::read(target.join("app.sql.sha256-mismatch")).unwrap(), new_data);

    let o = repo.out(&["check", "--read-data"]);
    o.assert_failed(Some(4), "check --read-data");
    let out = o.stdout_str();
    assert!(out.contains(&format!("error: stream app.sql of snapshot {short}")) && out.contains(&wrong), "{out}");
    // The structure alone is fine: check without reading data passes.
    repo.run(&["check"]);

    // An older snapshot with a wrong hash: --read-data verifies the newest
    // of each stream only; --verify-streams all of them.
    let new = rewrite_hash(&repo, &new, &right);
    let old = rewrite_hash(&repo, &old, &wrong);
    repo.run(&["check", "--read-data"]);
    let o = repo.out(&["check", "--verify-streams"]);
    o.assert_failed(Some(4), "check --verify-streams");
    assert!(o.stdout_str().contains(&format!("error: stream app.sql of snapshot {}", &old[..8])), "{}", o.stdout_str());
    assert!(!o.stdout_str().contains(&new[..8]), "{}", o.stdout_str());
    assert_eq!(repo.dump("latest", "app.sql"), new_data);
}
