//! Randomized soak beside the schedule tests: three writers back up in a
//! loop (each its own host and files, a few files changed each round), one
//! process runs `forget --keep-last 3 --prune` in a loop, one restores and
//! dumps, and any of them is killed with SIGKILL at a random moment. At the
//! end `check --read-data` passes, each writer's newest reported snapshot
//! is there, and every snapshot restores exactly what its round wrote. A
//! backup may fail loudly when its last check before the commit refuses
//! ("nothing was committed", "run it again": about one in 3,000 under
//! this tight prune loop); those are counted apart, any other failure
//! fails the soak.
//!
//! `CAIRN_SOAK_SECONDS` (default 20) sets how long it runs,
//! `CAIRN_SOAK_SEED` replays one; `scripts/soak.sh` runs it long and
//! prints the figures quoted in the README.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::common::{self, both_backends, noise, Repo, Where};
use crate::schedule::hashes;

both_backends!(soak_writers_pruner_readers_and_random_kills);

const WRITERS: u64 = 3;

/// The files of writer `w` at round `r`: file j changes every j+1 rounds,
/// so most of each round dedups against the last.
fn write_round(dir: &Path, w: u64, r: u64) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    for j in 0..6u64 {
        let epoch = r / (j + 1);
        std::fs::write(
            dir.join(format!("f{j}")),
            noise(150_000 + 10_000 * j as usize, w * 1_000_000 + epoch * 100 + j),
        )
        .unwrap();
    }
}

#[derive(Default)]
struct Figures {
    backups_saved: AtomicU64,
    backups_killed: AtomicU64,
    backups_failed: AtomicU64,
    /// Refused to commit by the last check before the snapshot.
    backups_refused: AtomicU64,
    prunes_done: AtomicU64,
    prunes_killed: AtomicU64,
    prunes_failed: AtomicU64,
    reads_verified: AtomicU64,
    reads_killed: AtomicU64,
    reads_gone: AtomicU64,
}

/// Runs `cmd`; kills it with SIGKILL after a random delay with
/// probability `p_kill`. Returns (exit code, stdout, stderr, killed).
fn run_maybe_killed(mut cmd: Command, rng: &mut impl Rng, p_kill: f64) -> (Option<i32>, String, String, bool) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let err = tempfile::NamedTempFile::new().unwrap();
    cmd.stdin(Stdio::null()).stdout(out.reopen().unwrap()).stderr(err.reopen().unwrap());
    let mut child = cmd.spawn().expect("spawn cairn");
    let kill_at = rng.gen_bool(p_kill).then(|| Duration::from_millis(rng.gen_range(0..1500)));
    let t0 = Instant::now();
    let mut killed = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if kill_at.is_some_and(|k| t0.elapsed() >= k) && !killed {
            let _ = child.kill();
            killed = true;
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "a soak command hung");
        std::thread::sleep(Duration::from_millis(5));
    };
    let read = |f: &tempfile::NamedTempFile| std::fs::read_to_string(f.path()).unwrap_or_default();
    let killed = killed && status.code().is_none();
    (status.code(), read(&out), read(&err), killed)
}

fn soak_writers_pruner_readers_and_random_kills(w: Where) {
    let seconds: u64 = std::env::var("CAIRN_SOAK_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let seed: u64 = std::env::var("CAIRN_SOAK_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("soak on {w:?}: {seconds} s, CAIRN_SOAK_SEED={seed}");
    let repo = Repo::uninit_on(w);
    repo.run(&["init", "--pack-size", "1"]);
    let src = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let figures = Figures::default();
    // Writer -> (round, snapshot id) of every backup that said it saved.
    let saved: Mutex<BTreeMap<u64, Vec<(u64, String)>>> = Mutex::new(BTreeMap::new());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let cmd = |cache: &str| -> Command {
        let mut c = repo.std_cmd_via(repo.url());
        c.env("CAIRN_CACHE_DIR", repo.dir.path().join(cache));
        c.env("CAIRN_TEST_TRACE", repo.dir.path().join("trace.log"));
        c
    };
    let dir_of = |wr: u64| -> PathBuf { src.path().join(format!("w{wr}")) };
    std::thread::scope(|s| {
        for wr in 0..WRITERS {
            let (stop, figures, saved, cmd, repo) = (&stop, &figures, &saved, &cmd, &repo);
            let dir = dir_of(wr);
            s.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (wr + 1));
                let mut round = 0;
                while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                    round += 1;
                    write_round(&dir, wr, round);
                    let mut c = cmd(&format!("cache-w{wr}"));
                    c.args(["backup", "--host", &format!("w{wr}"), "--tag", &format!("round-{round}")]).arg(&dir);
                    let (code, out, err, killed) = run_maybe_killed(c, &mut rng, 0.3);
                    match code {
                        _ if killed => figures.backups_killed.fetch_add(1, Ordering::Relaxed),
                        Some(0) => {
                            let id = out
                                .lines()
                                .find_map(|l| l.strip_prefix("snapshot ")?.strip_suffix(" saved").map(String::from))
                                .unwrap_or_else(|| panic!("backup said nothing of its snapshot:\n{out}"));
                            saved.lock().unwrap().entry(wr).or_default().push((round, id));
                            figures.backups_saved.fetch_add(1, Ordering::Relaxed)
                        }
                        _ => {
                            assert!(!err.contains("panicked"), "backup panicked:\n{err}");
                            // The second line of rule 11 refusing to commit
                            // (loud, nothing written) is counted apart; any
                            // other failure fails the soak at the end.
                            let refused = err.contains("nothing was committed") || err.contains("run it again");
                            if refused {
                                figures.backups_refused.fetch_add(1, Ordering::Relaxed);
                                // Kept for a post-mortem: the trace of every
                                // process's steps, and (local) the repository.
                                let keep =
                                    std::env::temp_dir().join(format!("cairn-soak-refused-{seed}-w{wr}-{round}"));
                                let _ = std::fs::create_dir_all(&keep);
                                let _ = std::fs::copy(repo.dir.path().join("trace.log"), keep.join("trace.log"));
                                let _ = std::fs::write(keep.join("stderr"), &err);
                                if w == Where::Local {
                                    common::copy_dir(&repo.path(), &keep.join("repo"));
                                }
                                eprintln!("soak: refused round kept in {}", keep.display());
                            } else {
                                figures.backups_failed.fetch_add(1, Ordering::Relaxed);
                            }
                            eprintln!("soak: backup w{wr} round {round} failed ({code:?}): {}", err.trim());
                            0
                        }
                    };
                }
            });
        }
        {
            let (stop, figures, cmd, repo) = (&stop, &figures, &cmd, &repo);
            s.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xf00d);
                while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                    let mut c = cmd("cache-prune");
                    c.args(["forget", "--keep-last", "3", "--prune"]);
                    let (code, _, err, killed) = run_maybe_killed(c, &mut rng, 0.3);
                    match code {
                        _ if killed => figures.prunes_killed.fetch_add(1, Ordering::Relaxed),
                        Some(0) => figures.prunes_done.fetch_add(1, Ordering::Relaxed),
                        // Another maintenance run's lock (a killed one's is
                        // stale at once on this host).
                        Some(11) => 0,
                        _ => {
                            figures.prunes_failed.fetch_add(1, Ordering::Relaxed);
                            // Kept for a post-mortem: the others stopped
                            // first (so the copy is of one moment), the
                            // trace of every process's steps, the
                            // repository (local).
                            stop.store(true, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_secs(5));
                            let keep = std::env::temp_dir().join(format!("cairn-soak-failed-{seed}"));
                            let _ = std::fs::create_dir_all(&keep);
                            let _ = std::fs::copy(repo.dir.path().join("trace.log"), keep.join("trace.log"));
                            let _ = std::fs::write(keep.join("stderr"), &err);
                            if w == Where::Local {
                                common::copy_dir(&repo.path(), &keep.join("repo"));
                            }
                            eprintln!("soak: the repository and the trace are kept in {}", keep.display());
                            panic!("forget --prune failed ({code:?}):\n{err}");
                        }
                    };
                    std::thread::sleep(Duration::from_millis(rng.gen_range(0..300)));
                }
            });
        }
        {
            let (stop, figures, cmd, saved) = (&stop, &figures, &cmd, &saved);
            let dir_of = &dir_of;
            s.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0xbeef);
                while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                    let pick = {
                        let m = saved.lock().unwrap();
                        let all: Vec<(u64, u64, String)> =
                            m.iter().flat_map(|(w, v)| v.iter().map(move |(r, id)| (*w, *r, id.clone()))).collect();
                        (!all.is_empty()).then(|| all[rng.gen_range(0..all.len())].clone())
                    };
                    let Some((wr, round, id)) = pick else {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    };
                    let t = tempfile::tempdir().unwrap();
                    let mut c = cmd("cache-read");
                    c.args(["restore", &id, "--target"]).arg(t.path());
                    let (code, _, err, killed) = run_maybe_killed(c, &mut rng, 0.2);
                    if killed {
                        figures.reads_killed.fetch_add(1, Ordering::Relaxed);
                    } else if code == Some(0) {
                        let want = tempfile::tempdir().unwrap();
                        write_round(want.path(), wr, round);
                        assert_eq!(
                            hashes(&common::restored(t.path(), &dir_of(wr))),
                            hashes(want.path()),
                            "soak (CAIRN_SOAK_SEED={seed}): restore of {id} (w{wr} round {round}) beside prune"
                        );
                        figures.reads_verified.fetch_add(1, Ordering::Relaxed);
                    } else {
                        // Forgotten meanwhile by the retention policy.
                        assert!(
                            err.contains("no snapshot") || err.contains("not found"),
                            "restore of {id} failed:\n{err}"
                        );
                        figures.reads_gone.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let f = &figures;
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "soak figures ({w:?}, {seconds} s, seed {seed}): backups saved {} killed {} refused by the recheck {} failed {}; forget --prune done {} killed {}; restores verified {} killed {} forgotten meanwhile {}",
        g(&f.backups_saved),
        g(&f.backups_killed),
        g(&f.backups_refused),
        g(&f.backups_failed),
        g(&f.prunes_done),
        g(&f.prunes_killed),
        g(&f.reads_verified),
        g(&f.reads_killed),
        g(&f.reads_gone)
    );
    assert!(g(&f.backups_saved) > 0 && g(&f.prunes_done) > 0, "the soak did too little to mean anything");
    // The end state: one last prune, then everything must check and restore.
    let keep_evidence = |what: &str| {
        let keep = std::env::temp_dir().join(format!("cairn-soak-failed-{seed}"));
        let _ = std::fs::create_dir_all(&keep);
        let _ = std::fs::copy(repo.dir.path().join("trace.log"), keep.join("trace.log"));
        let _ = std::fs::write(keep.join("what"), what);
        if w == Where::Local {
            common::copy_dir(&repo.path(), &keep.join("repo"));
        }
        eprintln!("soak: the trace (and a local repository) are kept in {}", keep.display());
    };
    let o = repo.out(&["prune", "-v"]);
    if o.code != Some(0) {
        keep_evidence(&o.stderr);
    }
    assert_eq!(o.code, Some(0), "final prune: {}", o.stderr);
    let final_prune = o.stderr.clone();
    let o = repo.out(&["check", "--read-data"]);
    if o.code != Some(0) {
        keep_evidence(&format!("{}\n{}\nfinal prune:\n{final_prune}", o.stdout_str(), o.stderr));
    }
    assert_eq!(o.code, Some(0), "soak (CAIRN_SOAK_SEED={seed}): check failed:\n{}\n{}", o.stdout_str(), o.stderr);
    let snaps = repo.snapshots();
    for (wr, list) in saved.lock().unwrap().iter() {
        let (_, newest) = list.last().unwrap();
        assert!(
            snaps.iter().any(|s| s["id"].as_str().is_some_and(|id| id.starts_with(newest.as_str()))),
            "soak (CAIRN_SOAK_SEED={seed}): w{wr}'s newest saved snapshot {newest} is gone"
        );
    }
    for s in &snaps {
        let id = s["id"].as_str().unwrap();
        let wr: u64 = s["hostname"].as_str().unwrap()[1..].parse().unwrap();
        let round: u64 = s["tags"][0].as_str().unwrap().strip_prefix("round-").unwrap().parse().unwrap();
        let t = tempfile::tempdir().unwrap();
        repo.run(&["restore", id, "--target", t.path().to_str().unwrap()]);
        let want = tempfile::tempdir().unwrap();
        write_round(want.path(), wr, round);
        assert_eq!(
            hashes(&common::restored(t.path(), &dir_of(wr))),
            hashes(want.path()),
            "soak (CAIRN_SOAK_SEED={seed}): snapshot {id} (w{wr} round {round}) restores wrong"
        );
    }
    assert_eq!(g(&f.backups_failed), 0, "backups failed without being killed (seed {seed})");
}
