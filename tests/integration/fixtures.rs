//! Frozen fixture repositories: `tests/fixtures/repo-vN/`, written once by
//! the cairn of format version N (scripts/make-fixture.sh says how) and
//! never regenerated, with their expected contents in
//! `tests/fixtures/repo-vN.manifest.json`. The current binary must open
//! each with every password, list it, restore every tree snapshot bit for
//! bit (contents, types, modes, times, symlink targets, hard links,
//! extended attributes), dump the stream and pass `check --read-data`.
//! A later format version adds its own fixture beside the others
//! (format-spec/README.md, "Fixture repositories").

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::common::{copy_dir, sha256_hex};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

struct Fixture {
    /// A private copy of the repository (tests may not change the original).
    repo: PathBuf,
    manifest: Value,
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn copy(name: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = tmp.path().join("repo");
        copy_dir(&Path::new(FIXTURES).join(name), &repo);
        let text = std::fs::read_to_string(Path::new(FIXTURES).join(format!("{name}.manifest.json")))
            .unwrap_or_else(|e| panic!("{name}.manifest.json: {e}"));
        let manifest = serde_json::from_str(&text).expect("the manifest is JSON");
        Fixture { repo, manifest, tmp }
    }

    /// `cairn -r REPO ARGS` with `password`, a private cache and nothing
    /// else from the environment (no test KDF: the key files say theirs).
    fn cairn(&self, password: &str, args: &[&str]) -> std::process::Output {
        Command::new(assert_cmd::cargo::cargo_bin("cairn"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.tmp.path())
            .env("CAIRN_PASSWORD", password)
            .env("CAIRN_CACHE_DIR", self.tmp.path().join("cache"))
            .arg("-r")
            .arg(&self.repo)
            .args(args)
            .output()
            .expect("run cairn")
    }

    fn ok(&self, password: &str, args: &[&str]) -> Vec<u8> {
        let o = self.cairn(password, args);
        assert!(o.status.success(), "cairn {args:?} failed ({:?}):\n{}", o.status, String::from_utf8_lossy(&o.stderr));
        o.stdout
    }

    fn passwords(&self) -> Vec<String> {
        let p: Vec<String> = self.manifest["passwords"]
            .as_array()
            .expect("passwords")
            .iter()
            .map(|p| p.as_str().expect("a password").to_string())
            .collect();
        assert_eq!(p.len(), 2, "the fixture has two passwords");
        p
    }
}

/// The entries under `root` as the manifest describes them, sorted by
/// path; a file with several names records the first of them in that
/// order as `hardlink`.
fn describe(root: &Path) -> Vec<Value> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let path = e.expect("entry").path();
            let is_dir = std::fs::symlink_metadata(&path).expect("lstat").is_dir();
            out.push(path.clone());
            if is_dir {
                walk(&path, out);
            }
        }
    }
    let mut paths = Vec::new();
    walk(root, &mut paths);
    let rel = |p: &Path| p.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
    paths.sort_by_key(|p| rel(p));
    let mut first_name: BTreeMap<u64, String> = BTreeMap::new();
    paths
        .iter()
        .map(|path| {
            let rel = rel(path);
            let md = std::fs::symlink_metadata(path).expect("lstat");
            let ft = md.file_type();
            let mode = format!("{:04o}", md.permissions().mode() & 0o7777);
            if ft.is_file() {
                let data = std::fs::read(path).expect("read");
                let mut e = json!({
                    "path": rel, "type": "file", "mode": mode, "size": data.len(),
                    "sha256": sha256_hex(&data),
                    "mtime_ns": md.mtime() * 1_000_000_000 + md.mtime_nsec(),
                });
                if md.nlink() > 1 {
                    e["hardlink"] = json!(first_name.entry(md.ino()).or_insert_with(|| rel.clone()).clone());
                }
                let xattrs: BTreeMap<String, String> = xattr::list(path)
                    .expect("listxattr")
                    .filter(|k| k.to_string_lossy().starts_with("user."))
                    .map(|k| {
                        let v = xattr::get(path, &k).expect("getxattr").unwrap_or_default();
                        (k.to_string_lossy().into_owned(), String::from_utf8_lossy(&v).into_owned())
                    })
                    .collect();
                if !xattrs.is_empty() {
                    e["xattrs"] = json!(xattrs);
                }
                e
            } else if ft.is_dir() {
                json!({ "path": rel, "type": "dir", "mode": mode })
            } else if ft.is_symlink() {
                let target = std::fs::read_link(path).expect("readlink");
                json!({ "path": rel, "type": "symlink", "target": target.to_string_lossy() })
            } else if ft.is_fifo() {
                json!({ "path": rel, "type": "fifo", "mode": mode })
            } else {
                json!({ "path": rel, "type": "other" })
            }
        })
        .collect()
}

/// Objects named by the SHA-256 of their bytes still are, and the set of
/// objects is the one the manifest lists: the fixture was not regenerated
/// or changed.
fn assert_frozen(f: &Fixture) {
    let mut files = Vec::new();
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    walk(&f.repo, &mut files);
    let mut names: Vec<String> = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&f.repo).expect("under repo").to_string_lossy().into_owned();
        let bytes = std::fs::read(file).expect("read object");
        if rel == "config" {
            assert_eq!(json!(sha256_hex(&bytes)), f.manifest["config_sha256"], "the fixture's config changed");
        } else {
            let name = rel.rsplit('/').next().expect("a name");
            assert_eq!(sha256_hex(&bytes), name, "{rel}: its bytes changed");
        }
        names.push(rel);
    }
    names.sort();
    assert_eq!(json!(names), f.manifest["objects"], "the fixture's objects are not the ones its manifest lists");
}

fn fixture_opens_restores_dumps_and_checks(name: &str) {
    let f = Fixture::copy(name);
    assert_frozen(&f);
    let m = &f.manifest;
    let trees = m["snapshots"].as_array().expect("snapshots");
    let stream = &m["stream"];
    let mut want_ids: Vec<&str> = trees.iter().map(|s| s["id"].as_str().expect("id")).collect();
    want_ids.push(stream["id"].as_str().expect("stream id"));
    want_ids.sort();

    for pw in f.passwords() {
        // Listing, with each password.
        let list: Value = serde_json::from_slice(&f.ok(&pw, &["snapshots", "--json"])).expect("snapshots --json");
        let mut ids: Vec<&str> =
            list.as_array().expect("a list").iter().map(|s| s["id"].as_str().expect("id")).collect();
        ids.sort();
        assert_eq!(ids, want_ids, "{name}: the snapshots listed with password {pw:?}");
        let keys: Value = serde_json::from_slice(&f.ok(&pw, &["key", "list", "--json"])).expect("key list --json");
        assert_eq!(keys.as_array().map(Vec::len), Some(2), "{name}: two key files: {keys}");

        // Every tree snapshot, restored bit for bit.
        for s in trees {
            let id = s["id"].as_str().expect("id");
            let target = f.tmp.path().join(format!("restore-{}-{}", &id[..8], pw.len()));
            let spec = format!("{id}:{}", s["path"].as_str().expect("path"));
            f.ok(&pw, &["restore", &spec, "--target", target.to_str().expect("utf-8 path")]);
            let got = describe(&target);
            let want = s["entries"].as_array().expect("entries");
            let paths =
                |v: &[Value]| v.iter().map(|e| e["path"].as_str().unwrap_or("?").to_string()).collect::<Vec<_>>();
            assert_eq!(paths(&got), paths(want), "{name}: snapshot {id} restores other paths");
            for (g, w) in got.iter().zip(want) {
                assert_eq!(g, w, "{name}: snapshot {id}: {} restored differently", w["path"]);
            }
        }

        // The stream, dumped: size and SHA-256 as recorded.
        let sid = stream["id"].as_str().expect("stream id");
        let dumped = f.ok(&pw, &["dump", sid, stream["filename"].as_str().expect("filename")]);
        assert_eq!(json!(dumped.len()), stream["size"], "{name}: the stream's size");
        assert_eq!(json!(sha256_hex(&dumped)), stream["sha256"], "{name}: the stream's SHA-256");
    }

    // A wrong password is one.
    let o = f.cairn("not a fixture password", &["snapshots"]);
    assert_eq!(o.status.code(), Some(12), "{name}: a wrong password:\n{}", String::from_utf8_lossy(&o.stderr));

    // Every pack read and checked.
    let pw = &f.passwords()[0];
    let out = f.ok(pw, &["check", "--read-data"]);
    assert!(!out.is_empty(), "{name}: check --read-data printed nothing");
    assert_marks_and_groups(&f, pw);
}

/// The fixture holds what it is for: an index object with a marked pack
/// and a run record (version 2 in format 1, version 3 in format 2), and in
/// format 2 blobs in groups.
fn assert_marks_and_groups(f: &Fixture, password: &str) {
    use cairn::crypto::aead::ObjectType;
    let backend = cairn::backend::Backend::open(f.repo.to_str().expect("utf-8"), false, &Default::default())
        .expect("open the fixture's backend");
    let repo = cairn::repo::Repository::open(backend, password.as_bytes(), cairn::repo::CacheMode::Memory)
        .expect("the library opens the fixture");
    let format = f.manifest["format_version"].as_u64().expect("format_version");
    assert_eq!(u64::from(repo.config.version), format, "the fixture's config");
    let want_version =
        if format == 1 { cairn::format::index::VERSION_MARKS } else { cairn::format::index::VERSION_UNITS };
    let (mut marked, mut runs, mut versioned, mut grouped) = (0, 0, 0, 0);
    for id in repo.list_ids("index").expect("list index/") {
        let plain = repo.load_object("index", &id, ObjectType::Index).expect("an index object opens");
        let ix = cairn::format::index::decode_index(&plain).expect("an index object decodes");
        versioned += usize::from(plain[0] == want_version);
        marked += ix.marked.len();
        runs += ix.runs.len();
        grouped += ix.packs.iter().flat_map(|p| &p.blobs).filter(|e| e.inner.is_some()).count();
    }
    assert!(
        versioned > 0 && marked > 0 && runs > 0,
        "the fixture has no index v{want_version} with marks ({versioned} v{want_version}, {marked} marks, {runs} runs)"
    );
    assert_eq!(grouped > 0, format >= 2, "format {format}: {grouped} blob(s) in groups");
    // Format 3: the stream's node names its chunks by lists.
    let sid = cairn::id::SnapshotId::from_hex(f.manifest["stream"]["id"].as_str().expect("stream id")).expect("hex");
    let snap = repo.load_snapshot(&sid).expect("the stream snapshot loads");
    let nodes = repo.load_tree(&snap.tree).expect("the stream's tree loads");
    let listed = nodes.iter().any(|n| matches!(n.content, cairn::format::tree::Content::Listed { .. }));
    assert_eq!(listed, format >= 3, "format {format}: the stream's node is listed: {listed}");
}

#[test]
fn repo_v1() {
    fixture_opens_restores_dumps_and_checks("repo-v1");
}

#[test]
fn repo_v2() {
    fixture_opens_restores_dumps_and_checks("repo-v2");
}

#[test]
fn repo_v3() {
    fixture_opens_restores_dumps_and_checks("repo-v3");
}

/// A key file whose argon2 parameters argon2 refuses (here t_cost 0,
/// renamed to its new hash) is reported as a damaged key file, naming it,
/// with exit 1, not as a wrong password; the other password still opens.
#[test]
fn invalid_argon2_parameters_are_a_damaged_key_file() {
    let f = Fixture::copy("repo-v1");
    let keys: Vec<PathBuf> =
        std::fs::read_dir(f.repo.join("keys")).expect("keys/").map(|e| e.expect("entry").path()).collect();
    assert_eq!(keys.len(), 2);
    let mut bytes = std::fs::read(&keys[0]).expect("read key file");
    // t_cost: bytes 14..18 (format-spec/02-keys.md).
    bytes[14..18].copy_from_slice(&0u32.to_le_bytes());
    let bad = sha256_hex(&bytes);
    std::fs::write(f.repo.join("keys").join(&bad), &bytes).expect("write key file");
    std::fs::remove_file(&keys[0]).expect("remove the original");
    let mut opened = 0;
    for pw in f.passwords() {
        let o = f.cairn(&pw, &["snapshots"]);
        let err = String::from_utf8_lossy(&o.stderr);
        if o.status.success() {
            opened += 1;
            continue;
        }
        assert_eq!(o.status.code(), Some(4), "exit code:\n{err}");
        assert!(err.contains(&format!("keys/{bad}")) && err.contains("invalid argon2 parameters"), "{err}");
        assert!(!err.contains("wrong password"), "{err}");
        assert_eq!(err.lines().filter(|l| l.starts_with("error: ")).count(), 1, "one error line:\n{err}");
    }
    assert_eq!(opened, 1, "the other password opens");
}
