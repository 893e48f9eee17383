//! Schedules, not loops: one process is stopped at a named step of its
//! write sequence (`CAIRN_TEST_PAUSE_AT`, src/steps.rs: it stops itself
//! with SIGSTOP there), another runs to completion meanwhile, then the first
//! is resumed. For every pair of operations that may overlap (backup,
//! copy, restore, dump, drill beside prune; repair beside backup), at every named
//! step, on both backends. After each schedule, and again after one more
//! prune (which settles marks a run left pending), `check --read-data`
//! passes and every snapshot restores exactly what was backed up; every
//! command either succeeded or failed with a documented exit code.
//!
//! `CAIRN_SCHEDULE_STEPS=a,b` limits the steps tried (to replay one).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, both_backends, noise, output, sha256_hex, Out, Repo, Where};

both_backends!(
    prune_paused_at_each_step_while_a_backup_runs,
    backup_paused_at_each_step_while_prune_runs,
    prune_paused_while_a_backup_with_stored_packs_commits,
    prune_killed_at_each_step_while_a_backup_with_stored_packs_commits,
    copy_and_prune_paused_at_each_step_of_the_other,
    reads_and_prune_paused_at_each_step_of_the_other,
    repair_and_backup_paused_at_each_step_of_the_other,
    backups_of_the_same_data_paused_at_each_step_of_the_other,
    drill_and_prune_paused_at_each_step_of_the_other
);

/// The steps of one operation, as src/steps.rs names them.
fn steps_of(prefix: &str) -> Vec<&'static str> {
    cairn::steps::ALL.iter().copied().filter(|s| s.starts_with(prefix)).collect()
}

const BACKUP_STEPS: &[&str] = &[
    "backup:opened",
    "backup:locked",
    "store:before-index",
    "backup:data-stored",
    "backup:rechecked",
    "backup:snapshot-written",
];

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

fn selected<'a>(steps: &[&'a str]) -> Vec<&'a str> {
    match std::env::var("CAIRN_SCHEDULE_STEPS") {
        Ok(v) => steps.iter().copied().filter(|s| v.split(',').any(|w| w == *s)).collect(),
        Err(_) => steps.to_vec(),
    }
}

/// A process started with a pause step.
struct Running {
    child: Child,
    what: String,
    out: tempfile::NamedTempFile,
    err: tempfile::NamedTempFile,
}

fn state(pid: u32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?.1.trim_start().chars().next()
}

impl Running {
    /// Starts `cairn ARGS` that stops itself at `step`; waits until it has
    /// stopped there. Returns `Err(out)` if it ended without reaching it.
    fn start(repo: &Repo, args: &[&str], step: &str, env: &[(&str, &str)]) -> Result<Self, Out> {
        let mut c = repo.std_cmd_via(repo.url());
        let (out, err) = (tempfile::NamedTempFile::new().unwrap(), tempfile::NamedTempFile::new().unwrap());
        c.args(args)
            .env("CAIRN_TEST_PAUSE_AT", step)
            .stdin(Stdio::null())
            .stdout(out.reopen().unwrap())
            .stderr(err.reopen().unwrap());
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c.spawn().expect("spawn cairn");
        let mut r = Running { child, what: format!("{args:?} paused at {step}"), out, err };
        let t0 = Instant::now();
        loop {
            if let Some(_status) = r.child.try_wait().unwrap() {
                return Err(r.collect());
            }
            if state(r.child.id()) == Some('T') {
                let e = std::fs::read_to_string(r.err.path()).unwrap_or_default();
                assert!(e.contains(&format!("paused at {step}")), "{}: stopped, but not at its step:\n{e}", r.what);
                return Ok(r);
            }
            assert!(t0.elapsed() < Duration::from_secs(120), "{}: never reached its step", r.what);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn collect(&mut self) -> Out {
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(300) {
                let _ = self.child.kill();
                panic!("{}: did not finish after being resumed", self.what);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stdout = Vec::new();
        std::fs::File::open(self.out.path()).unwrap().read_to_end(&mut stdout).unwrap();
        Out { code: status.code(), stdout, stderr: std::fs::read_to_string(self.err.path()).unwrap_or_default() }
    }

    /// SIGKILL (it stays stopped until then), then waits for it to end.
    fn kill(mut self) -> Out {
        let _ = self.child.kill();
        self.collect()
    }

    /// SIGCONT, then waits for it to end.
    fn resume(mut self) -> Out {
        // SAFETY: a signal to our own child, which has not been reaped yet
        // (so its pid is not reused).
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGCONT);
        }
        self.collect()
    }
}

/// The repository, the sources and what each snapshot must restore.
pub struct World {
    pub repo: Repo,
    src: tempfile::TempDir,
    /// Source directory (absolute) per version.
    pub versions: BTreeMap<String, PathBuf>,
}

/// Version `n` of a small tree: eight files of 300 kB, files whose number
/// is at most `n` changed in version n+1 (so a forget leaves packs partly
/// used), and one more file per version.
fn write_version(dir: &Path, n: u64) {
    std::fs::create_dir_all(dir).unwrap();
    for f in 0..8u64 {
        let seed = if f < n { 1000 * n + f } else { f };
        std::fs::write(dir.join(format!("f{f}")), noise(300_000, seed)).unwrap();
    }
    std::fs::write(dir.join(format!("new{n}")), noise(200_000, 77 + n)).unwrap();
    if n == 3 {
        // What only the forgotten version 1 held: a backup that read the
        // index before prune deleted it must not reuse it.
        std::fs::write(dir.join("old"), noise(300_000, 1000)).unwrap();
    }
}

impl World {
    /// Two tree snapshots (v1, v2), the first forgotten: a prune then has
    /// partly used packs to repack and unused ones to mark.
    pub fn new(w: Where) -> Self {
        let repo = Repo::uninit_on(w);
        repo.run(&["init", "--pack-size", "1"]);
        let src = tempfile::tempdir().unwrap();
        let mut world = World { repo, src, versions: BTreeMap::new() };
        let v1 = world.version(1);
        let v2 = world.version(2);
        world.repo.run(&["backup", "-q", p(&v1)]);
        world.repo.run(&["backup", "-q", p(&v2)]);
        let first = world.snapshot_of(&v1).expect("v1 snapshot");
        world.repo.run(&["forget", "-q", &first]);
        world
    }

    fn version(&mut self, n: u64) -> PathBuf {
        let dir = self.src.path().join(format!("v{n}"));
        write_version(&dir, n);
        self.versions.insert(p(&dir).to_string(), dir.clone());
        dir
    }

    pub fn snapshot_of(&self, dir: &Path) -> Option<String> {
        self.repo
            .snapshots()
            .into_iter()
            .find(|s| s["paths"][0].as_str() == Some(p(dir)))
            .map(|s| s["id"].as_str().unwrap().to_string())
    }

    /// `check --read-data` passes and every snapshot restores its source
    /// exactly; then once more after a prune that settles pending marks.
    pub fn verify(&self, context: &str) {
        self.verify_once(context);
        let o = self.repo.out(&["prune", "--max-unused", "0"]);
        assert_eq!(o.code, Some(0), "{context}: the settling prune failed:\n{}", o.stderr);
        self.verify_once(&format!("{context}, after one more prune"));
    }

    fn verify_once(&self, context: &str) {
        let o = self.repo.out(&["check", "--read-data"]);
        assert_eq!(o.code, Some(0), "{context}: check failed:\n{}\n{}", o.stdout_str(), o.stderr);
        for s in self.repo.snapshots() {
            let id = s["id"].as_str().unwrap();
            let path = s["paths"][0].as_str().unwrap();
            let src = self.versions.get(path).unwrap_or_else(|| panic!("{context}: unknown snapshot of {path}"));
            let t = tempfile::tempdir().unwrap();
            let o = self.repo.out(&["restore", id, "--target", p(t.path())]);
            assert_eq!(o.code, Some(0), "{context}: restore of {id} failed:\n{}", o.stderr);
            assert_eq!(
                hashes(&common::restored(t.path(), src)),
                hashes(src),
                "{context}: snapshot {id} of {path} restores wrong"
            );
        }
    }
}

pub fn hashes(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let e = e.unwrap().path();
        out.insert(e.file_name().unwrap().to_string_lossy().into_owned(), sha256_hex(&std::fs::read(&e).unwrap()));
    }
    out
}

/// A backup that succeeded said so and left its snapshot; one that failed
/// did so with a documented code and one clear line.
fn assert_backup_outcome(world: &World, o: &Out, dir: &Path, context: &str) {
    o.assert_no_panic(context);
    match o.code {
        Some(0) => assert!(world.snapshot_of(dir).is_some(), "{context}: backup exited 0 but left no snapshot"),
        Some(11) => assert!(world.snapshot_of(dir).is_none(), "{context}: a locked-out backup left a snapshot"),
        c => panic!("{context}: backup exited {c:?}:\n{}", o.stderr),
    }
}

fn prune_paused_at_each_step_while_a_backup_runs(w: Where) {
    for step in selected(&steps_of("prune:")) {
        let mut world = World::new(w);
        let v3 = world.version(3);
        let prune = Running::start(&world.repo, &["prune", "--max-unused", "0"], step, &[])
            .unwrap_or_else(|o| panic!("prune never reached {step}:\n{}", o.stderr));
        let b = world.repo.out(&["backup", p(&v3)]);
        assert_eq!(b.code, Some(0), "backup beside prune paused at {step}:\n{}", b.stderr);
        let o = prune.resume();
        assert_eq!(o.code, Some(0), "prune resumed at {step}:\n{}", o.stderr);
        world.verify(&format!("prune paused at {step}, backup ran"));
    }
}

fn backup_paused_at_each_step_while_prune_runs(w: Where) {
    for step in selected(BACKUP_STEPS) {
        let mut world = World::new(w);
        let v3 = world.version(3);
        let backup = Running::start(&world.repo, &["backup", p(&v3)], step, &[])
            .unwrap_or_else(|o| panic!("backup never reached {step}:\n{}", o.stderr));
        let o = world.repo.out(&["prune", "--max-unused", "0"]);
        assert_eq!(o.code, Some(0), "prune beside backup paused at {step}:\n{}", o.stderr);
        let b = backup.resume();
        assert_backup_outcome(&world, &b, &v3, &format!("backup paused at {step}"));
        assert_eq!(b.code, Some(0), "backup paused at {step}, prune ran:\n{}", b.stderr);
        world.verify(&format!("backup paused at {step}, prune ran"));
    }
}

/// The schedule: a backup has stored its packs but not the index
/// naming them; prune plans (those packs are in no index) and stops at a
/// step; the backup commits; prune goes on.
fn prune_paused_while_a_backup_with_stored_packs_commits(w: Where) {
    for step in selected(&steps_of("prune:")[..6]) {
        let mut world = World::new(w);
        let v3 = world.version(3);
        let backup = Running::start(&world.repo, &["backup", p(&v3)], "store:before-index", &[])
            .unwrap_or_else(|o| panic!("backup never stored its packs:\n{}", o.stderr));
        let prune = Running::start(&world.repo, &["prune", "--max-unused", "0"], step, &[])
            .unwrap_or_else(|o| panic!("prune never reached {step}:\n{}", o.stderr));
        let b = backup.resume();
        assert_eq!(b.code, Some(0), "backup resumed beside prune paused at {step}:\n{}", b.stderr);
        let o = prune.resume();
        assert_eq!(o.code, Some(0), "prune resumed at {step}:\n{}", o.stderr);
        world.verify(&format!("backup with stored packs committed while prune was paused at {step}"));
    }
}

/// A prune killed at each of its steps while a backup had stored packs
/// that no index object named yet (so the prune marked them with no
/// entries, and left no run record); the backup then commits. The next
/// prune adopts the killed run's marks: it must find the packs named live
/// by the backup's index object and used by its snapshot, and keep them.
/// (Found by the soak: the live record claimed the blobs as if the pack
/// were kept, and the settlement then deleted the pack as unused.)
fn prune_killed_at_each_step_while_a_backup_with_stored_packs_commits(w: Where) {
    for step in selected(&steps_of("prune:")) {
        let mut world = World::new(w);
        let v3 = world.version(3);
        let backup = Running::start(&world.repo, &["backup", p(&v3)], "store:before-index", &[])
            .unwrap_or_else(|o| panic!("backup never stored its packs:\n{}", o.stderr));
        // With the backup running, prune does not settle: the steps after
        // `prune:writers-listed` are not reached, and it ends whole.
        match Running::start(&world.repo, &["prune", "--max-unused", "0"], step, &[]) {
            Ok(prune) => drop(prune.kill()),
            Err(o) => assert_eq!(o.code, Some(0), "prune before {step}:\n{}", o.stderr),
        }
        let b = backup.resume();
        assert_eq!(b.code, Some(0), "backup resumed after prune was killed at {step}:\n{}", b.stderr);
        world.verify(&format!("backup with stored packs committed after prune was killed at {step}"));
    }
}

fn copy_and_prune_paused_at_each_step_of_the_other(w: Where) {
    let copy_steps = ["copy:locked", "store:before-index", "copy:verified", "copy:snapshot-written"];
    // The copy's source: one snapshot of version 4, local.
    let make_source = |world: &mut World| -> Repo {
        let src = Repo::init();
        let v4 = world.version(4);
        src.run(&["backup", "-q", p(&v4)]);
        src
    };
    let copy_args = |src: &Repo| -> Vec<String> { vec!["copy".into(), "--from-repo".into(), src.url().into()] };
    for step in selected(&copy_steps) {
        let mut world = World::new(w);
        let src = make_source(&mut world);
        let args = copy_args(&src);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let copy = Running::start(&world.repo, &args, step, &[("CAIRN_FROM_PASSWORD", src.password())])
            .unwrap_or_else(|o| panic!("copy never reached {step}:\n{}", o.stderr));
        let o = world.repo.out(&["prune", "--max-unused", "0"]);
        assert_eq!(o.code, Some(0), "prune beside copy paused at {step}:\n{}", o.stderr);
        let c = copy.resume();
        assert_eq!(c.code, Some(0), "copy paused at {step}, prune ran:\n{}", c.stderr);
        world.verify(&format!("copy paused at {step}, prune ran"));
    }
    for step in selected(&steps_of("prune:")) {
        let mut world = World::new(w);
        let src = make_source(&mut world);
        let prune = Running::start(&world.repo, &["prune", "--max-unused", "0"], step, &[])
            .unwrap_or_else(|o| panic!("prune never reached {step}:\n{}", o.stderr));
        let mut c = world.repo.cmd();
        c.args(copy_args(&src)).env("CAIRN_FROM_PASSWORD", src.password());
        let c = output(c);
        assert_eq!(c.code, Some(0), "copy beside prune paused at {step}:\n{}", c.stderr);
        let o = prune.resume();
        assert_eq!(o.code, Some(0), "prune resumed at {step}:\n{}", o.stderr);
        world.verify(&format!("prune paused at {step}, copy ran"));
    }
}

/// Restores and dumps beside prune: paused while prune repacks what they
/// read, and prune paused while they run. What they write is exact.
fn reads_and_prune_paused_at_each_step_of_the_other(w: Where) {
    // Every world's version 2 has the same content (under its own path).
    let v2_of = |world: &World| world.versions.values().find(|d| d.ends_with("v2")).unwrap().clone();
    let probe = tempfile::tempdir().unwrap();
    write_version(&probe.path().join("v1"), 1);
    write_version(&probe.path().join("v2"), 2);
    let want = hashes(&probe.path().join("v2"));
    let want_f3 = want["f3"].clone();
    for step in selected(&["read:locked", "restore:planned"]) {
        let world = World::new(w);
        let v2 = v2_of(&world);
        let id = world.snapshot_of(&v2).unwrap();
        let t = tempfile::tempdir().unwrap();
        let r = Running::start(&world.repo, &["restore", &id, "--target", p(t.path())], step, &[])
            .unwrap_or_else(|o| panic!("restore never reached {step}:\n{}", o.stderr));
        let o = world.repo.out(&["prune", "--max-unused", "0"]);
        assert_eq!(o.code, Some(0), "prune beside restore paused at {step}:\n{}", o.stderr);
        let r = r.resume();
        assert_eq!(r.code, Some(0), "restore paused at {step}, prune ran:\n{}", r.stderr);
        assert_eq!(hashes(&common::restored(t.path(), &v2)), want, "restore paused at {step}");
        world.verify(&format!("restore paused at {step}, prune ran"));
    }
    for step in selected(&["read:locked", "dump:started"]) {
        let world = World::new(w);
        let v2 = v2_of(&world);
        let id = world.snapshot_of(&v2).unwrap();
        let f3 = format!("{}/f3", p(&v2));
        let r = Running::start(&world.repo, &["dump", &id, &f3], step, &[])
            .unwrap_or_else(|o| panic!("dump never reached {step}:\n{}", o.stderr));
        let o = world.repo.out(&["prune", "--max-unused", "0"]);
        assert_eq!(o.code, Some(0), "prune beside dump paused at {step}:\n{}", o.stderr);
        let r = r.resume();
        assert_eq!(r.code, Some(0), "dump paused at {step}, prune ran:\n{}", r.stderr);
        assert_eq!(sha256_hex(&r.stdout), want_f3, "dump paused at {step}");
    }
    // A restore without a lock (--no-lock: nothing holds prune back) paused
    // while prune repacks and deletes what it planned to read: it finds the
    // data moved, reads the index again, and restores exactly.
    {
        let world = World::new(w);
        let v2 = v2_of(&world);
        let id = world.snapshot_of(&v2).unwrap();
        let t = tempfile::tempdir().unwrap();
        let r = Running::start(
            &world.repo,
            &["--no-lock", "restore", &id, "--target", p(t.path())],
            "restore:planned",
            &[],
        )
        .unwrap_or_else(|o| panic!("restore never reached its plan:\n{}", o.stderr));
        let o = world.repo.out(&["prune", "--max-unused", "0"]);
        assert_eq!(o.code, Some(0), "prune beside an unlocked restore:\n{}", o.stderr);
        assert!(!o.stdout_str().contains("deleted 0 pack(s)"), "prune deleted nothing:\n{}", o.stdout_str());
        let r = r.resume();
        assert_eq!(r.code, Some(0), "unlocked restore after its packs were repacked:\n{}", r.stderr);
        assert_eq!(hashes(&common::restored(t.path(), &v2)), want, "unlocked restore");
    }
    for step in selected(&["prune:index-written", "prune:old-index-deleted", "prune:packs-deleted"]) {
        let world = World::new(w);
        let v2 = v2_of(&world);
        let id = world.snapshot_of(&v2).unwrap();
        let f3 = format!("{}/f3", p(&v2));
        let prune = Running::start(&world.repo, &["prune", "--max-unused", "0"], step, &[])
            .unwrap_or_else(|o| panic!("prune never reached {step}:\n{}", o.stderr));
        let t = tempfile::tempdir().unwrap();
        let r = world.repo.out(&["restore", &id, "--target", p(t.path())]);
        assert_eq!(r.code, Some(0), "restore beside prune paused at {step}:\n{}", r.stderr);
        assert_eq!(hashes(&common::restored(t.path(), &v2)), want, "restore beside prune paused at {step}");
        let d = world.repo.out(&["dump", &id, &f3]);
        assert_eq!(sha256_hex(&d.stdout), want_f3, "dump beside prune paused at {step}");
        let o = prune.resume();
        assert_eq!(o.code, Some(0), "prune resumed at {step}:\n{}", o.stderr);
        world.verify(&format!("prune paused at {step}, restore and dump ran"));
    }
}

/// Repair takes the exclusive lock: a backup beside it is refused (exit
/// 11) and a repair beside a backup is refused; nothing is half done.
fn repair_and_backup_paused_at_each_step_of_the_other(w: Where) {
    for step in selected(&["repair:locked", "repair:replacements-stored"]) {
        let mut world = World::new(w);
        let v3 = world.version(3);
        // One index object lost: repair has packs to index again.
        let lost = world.repo.object_ids("index").into_iter().next().unwrap();
        world.repo.backend().delete(&format!("index/{lost}")).unwrap();
        let r = Running::start(&world.repo, &["repair", "index"], step, &[])
            .unwrap_or_else(|o| panic!("repair never reached {step}:\n{}", o.stderr));
        let b = world.repo.out(&["backup", p(&v3)]);
        assert_backup_outcome(&world, &b, &v3, &format!("backup beside repair paused at {step}"));
        assert_eq!(b.code, Some(11), "backup beside repair paused at {step}:\n{}", b.stderr);
        let o = r.resume();
        assert_eq!(o.code, Some(0), "repair resumed at {step}:\n{}", o.stderr);
        world.verify(&format!("repair paused at {step}, backup ran"));
    }
    for step in selected(&["backup:locked", "backup:data-stored"]) {
        let mut world = World::new(w);
        let v3 = world.version(3);
        let b = Running::start(&world.repo, &["backup", p(&v3)], step, &[])
            .unwrap_or_else(|o| panic!("backup never reached {step}:\n{}", o.stderr));
        let o = world.repo.out(&["repair", "index"]);
        o.assert_failed(Some(11), &format!("repair beside backup paused at {step}"));
        let b = b.resume();
        assert_eq!(b.code, Some(0), "backup paused at {step}, repair refused:\n{}", b.stderr);
        world.verify(&format!("backup paused at {step}, repair refused"));
    }
}

/// Two hosts back up the same data at once: one is paused at each step
/// while the other stores (or reuses) the same chunks and commits; both
/// snapshots restore exactly, also after a prune.
fn backups_of_the_same_data_paused_at_each_step_of_the_other(w: Where) {
    for step in selected(BACKUP_STEPS) {
        let mut world = World::new(w);
        let v3 = world.version(3);
        let a = Running::start(&world.repo, &["backup", "--host", "a", p(&v3)], step, &[])
            .unwrap_or_else(|o| panic!("backup never reached {step}:\n{}", o.stderr));
        let b = world.repo.out(&["backup", "--host", "b", p(&v3)]);
        assert_eq!(b.code, Some(0), "backup beside a backup paused at {step}:\n{}", b.stderr);
        let a = a.resume();
        assert_eq!(a.code, Some(0), "backup paused at {step}, another ran:\n{}", a.stderr);
        let of_v3 = world.repo.snapshots().iter().filter(|s| s["paths"][0].as_str() == Some(p(&v3))).count();
        assert_eq!(of_v3, 2, "two backups of the same data at {step}");
        world.verify(&format!("backup paused at {step}, another backup of the same data ran"));
    }
}

/// `cairn drill` (a restore into scratch space) and prune, each paused at
/// the other's steps: the drill passes, nothing is lost.
fn drill_and_prune_paused_at_each_step_of_the_other(w: Where) {
    let config = |world: &World, v2: &Path| {
        let f = world.repo.dir.path().join("job.toml");
        std::fs::write(&f, format!("[[backup.snapshots]]\nname = \"v2\"\nsources = [\"{}\"]\n", p(v2))).unwrap();
        f
    };
    let v2_of = |world: &World| world.versions.values().find(|d| d.ends_with("v2")).unwrap().clone();
    for step in selected(&["read:locked", "restore:planned"]) {
        let world = World::new(w);
        let cfg = config(&world, &v2_of(&world));
        let d = Running::start(&world.repo, &["--config", p(&cfg), "drill"], step, &[])
            .unwrap_or_else(|o| panic!("drill never reached {step}:\n{}", o.stderr));
        let o = world.repo.out(&["prune", "--max-unused", "0"]);
        assert_eq!(o.code, Some(0), "prune beside drill paused at {step}:\n{}", o.stderr);
        let d = d.resume();
        assert_eq!(d.code, Some(0), "drill paused at {step}, prune ran:\n{}{}", d.stdout_str(), d.stderr);
        assert!(d.stdout_str().contains("v2: ok"), "{}", d.stdout_str());
        world.verify(&format!("drill paused at {step}, prune ran"));
    }
    for step in selected(&["prune:index-written", "prune:old-index-deleted", "prune:packs-deleted"]) {
        let world = World::new(w);
        let cfg = config(&world, &v2_of(&world));
        let prune = Running::start(&world.repo, &["prune", "--max-unused", "0"], step, &[])
            .unwrap_or_else(|o| panic!("prune never reached {step}:\n{}", o.stderr));
        let d = world.repo.out(&["--config", p(&cfg), "drill"]);
        assert_eq!(d.code, Some(0), "drill beside prune paused at {step}:\n{}{}", d.stdout_str(), d.stderr);
        let o = prune.resume();
        assert_eq!(o.code, Some(0), "prune resumed at {step}:\n{}", o.stderr);
        world.verify(&format!("prune paused at {step}, drill ran"));
    }
}
