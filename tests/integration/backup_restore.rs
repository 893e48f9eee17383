//! Backing up and restoring: trees with every kind of entry and metadata,
//! streams, listing, snapshot selection, keys, tags and excludes. Every
//! test runs twice (see `both_backends!`): `NAME::local` on a repository in
//! a directory, `NAME::s3` on one on the S3 server of `CAIRN_TEST_S3`.

use std::collections::BTreeSet;
use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use filetime::FileTime;
use serde_json::Value;

use crate::common::{
    self, assert_dir_contents_equal, assert_trees_equal, both_backends, noise, restored, sha256_hex, Repo, Where,
};

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

both_backends!(
    tree_round_trip_preserves_content_kinds_names_and_metadata,
    restore_include_exclude_subpath_and_dry_run_select_only_what_was_asked,
    stdin_stream_round_trip_records_size_and_sha256,
    stdin_from_command_round_trip_records_the_command,
    ls_lists_every_path_and_json_lines_parse,
    snapshot_id_prefixes_and_latest_resolve_and_bad_ones_fail_clearly,
    key_add_remove_and_passwd_change_which_passwords_open_the_repository,
    tags_host_and_time_are_recorded_and_filter_snapshots,
    excludes_by_pattern_file_and_directory_leave_paths_out_of_the_snapshot,
    restore_never_writes_through_symlinks_already_in_the_target,
);

fn write(path: &Path, data: &[u8]) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).expect("mkdir -p");
    }
    std::fs::write(path, data).expect("write");
}

/// The repository holds `snapshots` snapshots and some packs, where it
/// should: a repository on S3 wrote nothing beside its local cache.
fn assert_stored(repo: &Repo, snapshots: usize) {
    assert_eq!(repo.list("snapshots").len(), snapshots, "snapshots in {}", repo.url());
    assert!(!repo.list("data").is_empty(), "no pack in {}", repo.url());
    if repo.on == Where::S3 {
        let local: Vec<_> = std::fs::read_dir(repo.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "cache")
            .collect();
        assert!(local.is_empty(), "a repository on S3 wrote {local:?} locally");
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path");
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o640) };
    assert_eq!(rc, 0, "mkfifo {}: {}", path.display(), std::io::Error::last_os_error());
}

/// `mknod path c major minor`; false (with the reason printed) if refused.
fn mknod_char(path: &Path, major: u32, minor: u32) -> bool {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path");
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o620, libc::makedev(major, minor)) };
    if rc != 0 {
        eprintln!("skipping the character device: mknod: {}", std::io::Error::last_os_error());
    }
    rc == 0
}

/// Every path under `root` (root included), deepest first.
fn all_paths_deepest_first(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let d = out[i].clone();
        if std::fs::symlink_metadata(&d).expect("lstat").is_dir() {
            for e in std::fs::read_dir(&d).expect("read_dir") {
                out.push(e.expect("entry").path());
            }
        }
        i += 1;
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

/// Gives every entry distinct access and modification times with non-zero
/// nanoseconds, children before their directories (so nothing changes a
/// directory's mtime afterwards).
fn set_distinct_times(root: &Path) {
    for (i, path) in all_paths_deepest_first(root).iter().enumerate() {
        let i = i as i64;
        let mtime = FileTime::from_unix_time(1_600_000_000 + i * 1_001, 123_456_789 + i as u32 * 7);
        let atime = FileTime::from_unix_time(1_650_000_000 + i * 3, 987_654_321 - i as u32);
        // utimensat(AT_SYMLINK_NOFOLLOW): a symlink's own times, and no
        // open(), which would block on the FIFO.
        filetime::set_symlink_file_times(path, atime, mtime).expect("utimensat");
    }
}

/// Builds the source tree of the round-trip test under `src`.
pub(crate) fn build_odd_tree(src: &Path) {
    std::fs::create_dir_all(src).expect("mkdir");
    // Regular files: empty, small, several chunks of noise.
    write(&src.join("empty"), b"");
    write(&src.join("small.txt"), b"hello, cairn\n");
    write(&src.join("big.bin"), &noise(3 << 20, 1));
    write(&src.join("nested/a/b/c/deep.txt"), b"deep\n");
    std::fs::create_dir_all(src.join("nested/empty-dir")).expect("mkdir");
    // Symlinks: relative, dangling, absolute, to a directory.
    std::os::unix::fs::symlink("small.txt", src.join("rel-link")).expect("symlink");
    std::os::unix::fs::symlink("does/not/exist", src.join("dangling")).expect("symlink");
    std::os::unix::fs::symlink("/nonexistent/absolute/target", src.join("abs-link")).expect("symlink");
    std::os::unix::fs::symlink("../nested/a", src.join("nested/dir-link")).expect("symlink");
    // Special files.
    mkfifo(&src.join("fifo"));
    if common::is_root() {
        mknod_char(&src.join("null-dev"), 1, 3);
    } else {
        eprintln!("skipping the character device and ownership: not root");
    }
    // Odd names.
    write(&src.join("ünïcødé ✓"), "unicode\n".as_bytes());
    write(&src.join("with  spaces in name "), b"spaces\n");
    write(&src.join("new\nline"), b"newline in the name\n");
    write(&src.join(OsStr::from_bytes(b"not-utf8-\xff\xfe")), b"latin-1 name\n");
    let long = "L".repeat(255);
    write(&src.join(&long), b"255-byte name\n");
    let mut deep = src.join("deep");
    for i in 0..6 {
        deep.push(format!("{i}{}", "d".repeat(199)));
    }
    write(&deep.join("leaf.txt"), b"at the end of a long path\n");
    assert!(deep.join("leaf.txt").strip_prefix(src).unwrap().as_os_str().len() > 1000);
    // Permissions.
    write(&src.join("perm/p600"), b"600\n");
    chmod(&src.join("perm/p600"), 0o600);
    write(&src.join("perm/p755"), b"#!/bin/sh\n");
    chmod(&src.join("perm/p755"), 0o755);
    write(&src.join("perm/setuid"), b"setuid\n");
    chmod(&src.join("perm/setuid"), 0o4755);
    write(&src.join("perm/private/inside"), b"private\n");
    chmod(&src.join("perm/private"), 0o700);
    std::fs::create_dir(src.join("perm/sticky")).expect("mkdir");
    chmod(&src.join("perm/sticky"), 0o1777);
    if common::is_root() {
        write(&src.join("perm/owned"), b"owned by 1234:5678\n");
        std::os::unix::fs::lchown(src.join("perm/owned"), Some(1234), Some(5678)).expect("chown");
        std::os::unix::fs::lchown(src.join("abs-link"), Some(4321), Some(8765)).expect("lchown");
    }
    // A hard-linked pair, in different directories.
    write(&src.join("hl-a"), b"one inode, two names\n");
    std::fs::hard_link(src.join("hl-a"), src.join("nested/hl-b")).expect("link");
    // Extended attributes, if the filesystem takes them.
    match xattr::set(src.join("small.txt"), "user.cairn", b"value") {
        Ok(()) => {
            xattr::set(src.join("nested"), "user.cairn.dir", b"on a directory").expect("xattr on a dir");
            xattr::set(src.join("empty"), "user.empty", b"").expect("empty xattr");
        }
        Err(e) => eprintln!("skipping xattrs: {e}"),
    }
    set_distinct_times(src);
}

fn tree_round_trip_preserves_content_kinds_names_and_metadata(w: Where) {
    let repo = Repo::init_on(w);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    build_odd_tree(&src);

    let o = repo.out(&["backup", p(&src)]);
    assert_eq!(o.code, Some(0), "backup failed:\n{}", o.stderr);
    assert_stored(&repo, 1);

    // The whole snapshot: the source appears under its absolute path.
    let t1 = tmp.path().join("t1");
    let o = repo.out(&["restore", "latest", "--target", p(&t1)]);
    assert_eq!(o.code, Some(0), "restore failed:\n{}", o.stderr);
    assert!(!o.stderr.contains("warning"), "restore warned:\n{}", o.stderr);
    assert_trees_equal(&src, &restored(&t1, &src));

    // Restoring again over the first restore gives the same tree.
    let o = repo.out(&["restore", "latest", "--target", p(&t1)]);
    assert_eq!(o.code, Some(0), "second restore into the same target failed:\n{}", o.stderr);
    assert_trees_equal(&src, &restored(&t1, &src));

    // Only the source directory, into the target itself.
    let t2 = tmp.path().join("t2");
    let spec = format!("latest:{}", p(&src));
    let o = repo.out(&["restore", &spec, "--target", p(&t2)]);
    assert_eq!(o.code, Some(0), "restore {spec} failed:\n{}", o.stderr);
    assert_dir_contents_equal(&src, &t2);
}

/// The names of the regular files under `root`, relative to it.
fn files_under(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if !root.exists() {
        return out;
    }
    for path in all_paths_deepest_first(root) {
        if std::fs::symlink_metadata(&path).unwrap().is_file() {
            out.insert(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
        }
    }
    out
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn restore_include_exclude_subpath_and_dry_run_select_only_what_was_asked(w: Where) {
    let repo = Repo::init_on(w);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("docs/a.txt"), b"a");
    write(&src.join("docs/b.md"), b"b");
    write(&src.join("code/main.rs"), b"fn main() {}");
    write(&src.join("code/lib.rs"), b"// lib");
    write(&src.join("code/notes.txt"), b"notes");
    write(&src.join("data/big.bin"), &noise(200_000, 2));
    repo.run(&["backup", p(&src)]);
    let restore = |args: &[&str]| -> PathBuf {
        let t = tmp.path().join(format!("t{}", sha256_hex(args.join(" ").as_bytes())));
        let mut all = vec!["restore"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--target", p(&t)]);
        let o = repo.out(&all);
        assert_eq!(o.code, Some(0), "{all:?} failed:\n{}", o.stderr);
        t
    };
    let under = |t: &Path| files_under(&restored(t, &src));

    // A name pattern selects files at any depth.
    let t = restore(&["latest", "--include", "*.txt"]);
    assert_eq!(under(&t), set(&["code/notes.txt", "docs/a.txt"]));
    // A path pattern selects a directory and all it holds.
    let code = format!("{}/code", p(&src));
    let t = restore(&["latest", "--include", &code]);
    assert_eq!(under(&t), set(&["code/lib.rs", "code/main.rs", "code/notes.txt"]));
    assert!(!restored(&t, &src).join("docs").exists(), "an unselected directory was created");
    // Excludes: a name pattern and a directory by path.
    let data = format!("{}/data", p(&src));
    let t = restore(&["latest", "--exclude", "*.md", "--exclude", &data]);
    assert_eq!(under(&t), set(&["code/lib.rs", "code/main.rs", "code/notes.txt", "docs/a.txt"]));
    assert!(!restored(&t, &src).join("data").exists(), "an excluded directory was created");
    // Include and exclude together.
    let t = restore(&["latest", "--include", &code, "--exclude", "lib.rs"]);
    assert_eq!(under(&t), set(&["code/main.rs", "code/notes.txt"]));
    // SNAPSHOT:SUBPATH restores the contents of the subpath into the target.
    let t = restore(&[&format!("latest:{code}")]);
    assert_eq!(files_under(&t), set(&["lib.rs", "main.rs", "notes.txt"]));
    assert_eq!(std::fs::read(t.join("main.rs")).unwrap(), b"fn main() {}");
    // A single file as the subpath.
    let t = restore(&[&format!("latest:{}/data/big.bin", p(&src))]);
    assert_eq!(files_under(&t), set(&["big.bin"]));
    assert_eq!(std::fs::read(t.join("big.bin")).unwrap(), noise(200_000, 2));

    // --dry-run lists and writes nothing.
    let t = tmp.path().join("dry");
    let o = repo.out(&["restore", "latest", "--target", p(&t), "--dry-run"]);
    assert_eq!(o.code, Some(0), "dry run failed:\n{}", o.stderr);
    assert!(o.stdout_str().contains("main.rs"), "dry run does not list the files:\n{}", o.stdout_str());
    assert!(!t.exists(), "--dry-run created the target");
    std::fs::create_dir(&t).unwrap();
    let o = repo.out(&["restore", "latest", "--target", p(&t), "--dry-run"]);
    assert_eq!(o.code, Some(0), "dry run failed:\n{}", o.stderr);
    assert_eq!(std::fs::read_dir(&t).unwrap().count(), 0, "--dry-run wrote into the target");
}

fn stdin_stream_round_trip_records_size_and_sha256(w: Where) {
    let repo = Repo::init_on(w);
    let data = noise(5 << 20, 3);
    let summary = repo.backup_json(&["--stdin-filename", "db.sql"], Some(&data));
    assert_eq!(summary["partial"], false);
    assert_eq!(summary["total_bytes_processed"], data.len() as u64);
    assert_stored(&repo, 1);

    let dumped = repo.dump("latest", "db.sql");
    assert_eq!(dumped.len(), data.len(), "dump returned another length");
    assert_eq!(sha256_hex(&dumped), sha256_hex(&data), "dump returned other bytes");
    // The absolute form of the path works too.
    assert_eq!(sha256_hex(&repo.dump("latest", "/db.sql")), sha256_hex(&data));

    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1);
    let s = &snaps[0];
    assert_eq!(s["id"], summary["snapshot_id"]);
    assert_eq!(s["paths"], serde_json::json!(["/db.sql"]));
    assert_eq!(s["stream"]["filename"], "db.sql");
    assert_eq!(s["stream"]["size"], data.len() as u64);
    assert_eq!(s["stream"]["sha256"], sha256_hex(&data));
    assert!(s["stream"]["command"].is_null(), "a stdin stream records a command: {}", s["stream"]);

    // A stream snapshot restores as one file.
    let t = repo.dir.path().join("t");
    repo.run(&["restore", "latest", "--target", p(&t)]);
    let names: Vec<_> = std::fs::read_dir(&t).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["db.sql"]);
    assert_eq!(sha256_hex(&std::fs::read(t.join("db.sql")).unwrap()), sha256_hex(&data));
}

fn stdin_from_command_round_trip_records_the_command(w: Where) {
    let repo = Repo::init_on(w);
    let script = "seq 1 200000";
    let expected: Vec<u8> = (1..=200_000).flat_map(|i| format!("{i}\n").into_bytes()).collect();
    let summary =
        repo.backup_json(&["--stdin-filename", "numbers.txt", "--stdin-from-command", "--", "sh", "-c", script], None);
    assert_eq!(summary["total_bytes_processed"], expected.len() as u64);

    let dumped = repo.dump("latest", "numbers.txt");
    assert!(
        dumped == expected,
        "dump differs from the command's output ({} vs {} bytes)",
        dumped.len(),
        expected.len()
    );
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1);
    let st = &snaps[0]["stream"];
    assert_eq!(st["command"], serde_json::json!(["sh", "-c", script]));
    assert_eq!(st["size"], expected.len() as u64);
    assert_eq!(st["sha256"], sha256_hex(&expected));
}

fn ls_lists_every_path_and_json_lines_parse(w: Where) {
    let repo = Repo::init_on(w);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("a.txt"), b"a");
    write(&src.join("sub/b.bin"), &noise(1000, 4));
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    repo.run(&["backup", p(&src)]);

    let mut expected: BTreeSet<String> =
        src.ancestors().filter(|a| *a != Path::new("/")).map(|a| p(a).to_string()).collect();
    for rel in ["a.txt", "sub", "sub/b.bin", "link"] {
        expected.insert(format!("{}/{rel}", p(&src)));
    }
    let listed: BTreeSet<String> = repo.run(&["ls", "latest"]).lines().map(String::from).collect();
    assert_eq!(listed, expected);

    // A path inside the snapshot lists only that subtree.
    let sub = format!("{}/sub", p(&src));
    let listed: BTreeSet<String> = repo.run(&["ls", "latest", &sub]).lines().map(String::from).collect();
    assert_eq!(listed, set(&[&sub, &format!("{sub}/b.bin")]));

    let out = repo.run(&["ls", "--json", "latest"]);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("ls --json line is not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines[0]["message_type"], "snapshot", "first line: {}", lines[0]);
    let nodes: Vec<&Value> = lines.iter().filter(|v| v["message_type"] == "node").collect();
    assert_eq!(nodes.len(), expected.len());
    let by_path = |path: &str| -> &Value {
        nodes.iter().find(|n| n["path"] == path).unwrap_or_else(|| panic!("{path} not in ls --json"))
    };
    let b = by_path(&format!("{}/sub/b.bin", p(&src)));
    assert_eq!(b["type"], "file");
    assert_eq!(b["size"], 1000);
    assert_eq!(b["name"], "b.bin");
    let l = by_path(&format!("{}/link", p(&src)));
    assert_eq!(l["type"], "symlink");
    assert_eq!(l["link_target"], "a.txt");
    assert_eq!(by_path(&format!("{}/sub", p(&src)))["type"], "dir");
}

fn snapshot_id_prefixes_and_latest_resolve_and_bad_ones_fail_clearly(w: Where) {
    let repo = Repo::init_on(w);
    // 17 snapshots: two of them must share their first hex digit.
    let mut ids = Vec::new();
    for i in 0..17 {
        let content = format!("snapshot number {i}\n");
        let s = repo.backup_json(&["--stdin-filename", "f"], Some(content.as_bytes()));
        ids.push((s["snapshot_id"].as_str().unwrap().to_string(), content));
    }
    let (last_id, last_content) = ids.last().unwrap();
    assert_eq!(repo.dump("latest", "f"), last_content.as_bytes());
    let cat = repo.json(&["cat", "snapshot", "latest"]);
    let snaps = repo.snapshots();
    assert_eq!(snaps.last().unwrap()["id"], last_id.as_str());
    assert_eq!(cat["tree"], snaps.last().unwrap()["tree"]);

    // Full ids, short ids and the shortest unique prefixes pick the right one.
    for (id, content) in &ids {
        let unique = (1..=64)
            .map(|n| &id[..n])
            .find(|pre| ids.iter().filter(|(other, _)| other.starts_with(pre)).count() == 1)
            .unwrap();
        for spec in [id.as_str(), &id[..8], unique, &id[..8].to_uppercase()] {
            assert_eq!(repo.dump(spec, "f"), content.as_bytes(), "snapshot {spec} resolved to another snapshot");
        }
    }

    // An ambiguous prefix.
    let first: Vec<char> = ids.iter().map(|(id, _)| id.chars().next().unwrap()).collect();
    let shared = first.iter().find(|c| first.iter().filter(|d| d == c).count() > 1).unwrap().to_string();
    let o = repo.out(&["dump", &shared, "f"]);
    o.assert_failed(Some(1), "ambiguous prefix");
    let line = o.one_error_line("ambiguous prefix");
    assert!(line.contains(&format!("\"{shared}\"")), "the error does not quote the prefix: {line}");
    assert!(line.contains("matches") || line.contains("ambiguous"), "unclear error: {line}");
    assert!(o.stdout.is_empty());

    // A prefix that matches nothing, and something that is not an id.
    let unknown = (0..=u32::MAX)
        .map(|n| format!("{n:08x}"))
        .find(|pre| !ids.iter().any(|(id, _)| id.starts_with(pre.as_str())))
        .unwrap();
    for spec in [unknown.as_str(), "not-an-id"] {
        let o = repo.out(&["restore", spec, "--target", p(&repo.dir.path().join("t"))]);
        o.assert_failed(Some(1), spec);
        let line = o.one_error_line(spec);
        assert!(line.contains(spec), "the error does not name {spec:?}: {line}");
        assert!(!repo.dir.path().join("t").exists(), "a failed restore created the target");
    }
}

fn key_ids(repo: &Repo, password: &str) -> Vec<(String, bool)> {
    let mut c = repo.cmd();
    c.env("CAIRN_PASSWORD", password).args(["key", "list", "--json"]);
    let o = common::output(c);
    assert_eq!(o.code, Some(0), "key list with {password:?} failed:\n{}", o.stderr);
    let v: Value = serde_json::from_slice(&o.stdout).expect("key list --json");
    v.as_array()
        .expect("array")
        .iter()
        .map(|k| (k["id"].as_str().unwrap().to_string(), k["current"].as_bool().unwrap()))
        .collect()
}

fn with_password(repo: &Repo, password: &str, args: &[&str]) -> common::Out {
    let mut c = repo.cmd();
    c.env("CAIRN_PASSWORD", password).args(args);
    common::output(c)
}

fn key_add_remove_and_passwd_change_which_passwords_open_the_repository(w: Where) {
    let repo = Repo::init_on(w);
    repo.backup_json(&["--stdin-filename", "f"], Some(b"payload"));
    let first = common::PASSWORD;
    let second = "second password";
    let third = "third password";
    let f2 = repo.dir.path().join("pw2");
    std::fs::write(&f2, format!("{second}\n")).unwrap();

    let original = key_ids(&repo, first);
    assert_eq!(original.len(), 1);
    let o = repo.out(&["key", "add", "--new-password-file", p(&f2)]);
    assert_eq!(o.code, Some(0), "key add failed:\n{}", o.stderr);

    // Both passwords open the repository and see the same data.
    for pw in [first, second] {
        let o = with_password(&repo, pw, &["dump", "latest", "f"]);
        assert_eq!(o.code, Some(0), "password {pw:?} does not open the repository:\n{}", o.stderr);
        assert_eq!(o.stdout, b"payload");
    }
    let keys = key_ids(&repo, second);
    assert_eq!(keys.len(), 2);
    let (old_id, _) = keys.iter().find(|(id, _)| *id == original[0].0).expect("the first key is still there");
    let (new_id, current) = keys.iter().find(|(id, _)| *id != original[0].0).unwrap();
    assert!(current, "key list does not mark the key in use");

    // The key in use cannot be removed.
    let o = with_password(&repo, second, &["key", "remove", &new_id[..12]]);
    o.assert_failed(Some(1), "removing the key in use");
    o.one_error_line("removing the key in use");
    assert_eq!(key_ids(&repo, second).len(), 2);

    // The other key can; its password stops working.
    let o = with_password(&repo, second, &["key", "remove", &old_id[..12]]);
    assert_eq!(o.code, Some(0), "key remove failed:\n{}", o.stderr);
    let o = with_password(&repo, first, &["snapshots"]);
    o.assert_failed(Some(12), "removed password");
    assert_eq!(key_ids(&repo, second).len(), 1);

    // passwd replaces the password of the key in use.
    let f3 = repo.dir.path().join("pw3");
    std::fs::write(&f3, format!("{third}\n")).unwrap();
    let o = with_password(&repo, second, &["key", "passwd", "--new-password-file", p(&f3)]);
    assert_eq!(o.code, Some(0), "key passwd failed:\n{}", o.stderr);
    with_password(&repo, second, &["snapshots"]).assert_failed(Some(12), "password after passwd");
    let o = with_password(&repo, third, &["dump", "latest", "f"]);
    assert_eq!(o.code, Some(0), "the new password does not open the repository:\n{}", o.stderr);
    assert_eq!(o.stdout, b"payload");
    let keys = key_ids(&repo, third);
    assert_eq!(keys.len(), 1, "passwd left {keys:?}");
    assert!(keys[0].1);
}

fn tags_host_and_time_are_recorded_and_filter_snapshots(w: Where) {
    let repo = Repo::init_on(w);
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("f"), b"x");
    let src = p(tmp.path());
    let a =
        repo.backup_json(&["--tag", "a", "--tag", "b,c", "--host", "h", "--time", "2020-01-02 03:04:05", src], None);
    let b = repo.backup_json(&["--tag", "b", "--host", "other", src], None);

    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 2);
    // Oldest first: the one dated 2020.
    let s = &snaps[0];
    assert_eq!(s["id"], a["snapshot_id"]);
    assert_eq!(s["tags"], serde_json::json!(["a", "b", "c"]));
    assert_eq!(s["hostname"], "h");
    assert_eq!(s["paths"], serde_json::json!([src]));
    let time = s["time"].as_str().unwrap();
    assert!(time.starts_with("2020-01-02T03:04:05"), "time {time}");
    assert_eq!(snaps[1]["id"], b["snapshot_id"]);
    assert_eq!(snaps[1]["hostname"], "other");

    let ids = |args: &[&str]| -> Vec<Value> {
        let mut all = vec!["snapshots", "--json"];
        all.extend_from_slice(args);
        repo.json(&all).as_array().unwrap().iter().map(|s| s["id"].clone()).collect()
    };
    let (ia, ib) = (a["snapshot_id"].clone(), b["snapshot_id"].clone());
    assert_eq!(ids(&["--host", "h", "--tag", "a"]), vec![ia.clone()]);
    assert_eq!(ids(&["--host", "h"]), vec![ia.clone()]);
    assert_eq!(ids(&["--tag", "b"]), vec![ia.clone(), ib.clone()]);
    assert_eq!(ids(&["--tag", "a,c"]), vec![ia.clone()]);
    assert_eq!(ids(&["--tag", "a,x"]), Vec::<Value>::new());
    assert_eq!(ids(&["--tag", "x", "--tag", "b"]), vec![ia.clone(), ib.clone()]);
    assert_eq!(ids(&["--host", "other", "--tag", "a"]), Vec::<Value>::new());
    assert_eq!(ids(&["--host", "nobody-here"]), Vec::<Value>::new());
    assert_eq!(ids(&["--path", src]), vec![ia, ib]);
}

fn excludes_by_pattern_file_and_directory_leave_paths_out_of_the_snapshot(w: Where) {
    let repo = Repo::init_on(w);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for f in ["keep.txt", "app.log", "sub/deeper.log", "sub/keep.rs", "cache/blob", "cache/inner/x", "skip-me"] {
        write(&src.join(f), f.as_bytes());
    }
    write(&src.join("logs.d/kept"), b"a directory whose name only looks like a log");
    let list = tmp.path().join("excludes");
    std::fs::write(&list, "# comment line\n\ncache\nskip-*\n").unwrap();
    let s = repo.backup_json(&["--exclude", "*.log", "--exclude-file", p(&list), p(&src)], None);
    assert_eq!(s["files_new"], 3, "{s}");

    let listed: BTreeSet<String> = repo
        .run(&["ls", "latest", p(&src)])
        .lines()
        .map(|l| l.strip_prefix(p(&src)).unwrap_or(l).to_string())
        .collect();
    assert_eq!(listed, set(&["", "/keep.txt", "/sub", "/sub/keep.rs", "/logs.d", "/logs.d/kept"]));

    // A path pattern excludes one directory and what it holds.
    let sub = format!("{}/sub", p(&src));
    repo.backup_json(&["--exclude", &sub, p(&src)], None);
    let listed = repo.run(&["ls", "latest", p(&src)]);
    assert!(!listed.contains("/sub"), "excluded directory listed:\n{listed}");
    assert!(listed.contains("/cache/inner/x"), "the earlier exclude file still applies:\n{listed}");
    assert!(listed.contains("/app.log"));
}

fn restore_never_writes_through_symlinks_already_in_the_target(w: Where) {
    let repo = Repo::init_on(w);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src.join("x"), b"snapshot content\n");
    write(&src.join("d/y"), b"inner\n");
    repo.run(&["backup", p(&src)]);

    // The target holds symlinks with the snapshot's names, pointing outside.
    let outside = tmp.path().join("outside");
    std::fs::write(&outside, b"precious\n").unwrap();
    let outdir = tmp.path().join("outdir");
    std::fs::create_dir(&outdir).unwrap();
    let t = tmp.path().join("t");
    std::fs::create_dir(&t).unwrap();
    std::os::unix::fs::symlink(&outside, t.join("x")).unwrap();
    std::os::unix::fs::symlink(&outdir, t.join("d")).unwrap();

    let o = repo.out(&["restore", &format!("latest:{}", p(&src)), "--target", p(&t)]);
    o.assert_no_panic("restore over symlinks");
    assert_eq!(
        std::fs::read(&outside).unwrap(),
        b"precious\n",
        "restore wrote through t/x into a file outside the target"
    );
    assert_eq!(
        std::fs::read_dir(&outdir).unwrap().count(),
        0,
        "restore wrote through t/d into a directory outside the target"
    );
    if o.code == Some(0) {
        assert_dir_contents_equal(&src, &t);
    }
}
