//! `find`, `diff`, `stats` and `tag` across snapshots, on the local backend
//! and the real S3 server: matches by name, path and time; each kind of
//! change and that identical subtrees are not read; exact counts in each
//! stats mode; tags rewritten without losing a snapshot.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::common::{assert_dir_contents_equal, both_backends, noise, random_bytes, restored, Repo, Where};

both_backends!(
    find_by_name_path_time_and_snapshot,
    diff_shows_each_kind_of_change,
    diff_reads_only_the_trees_along_a_change,
    stats_counts_exactly_in_each_mode,
    tag_rewrites_only_the_snapshots_that_change,
);

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 test path")
}

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// Sets a file's mtime to a UTC date-time (`YYYY-MM-DD HH:MM:SS`).
fn set_mtime(path: &Path, utc: &str) {
    let t = chrono::NaiveDateTime::parse_from_str(utc, "%Y-%m-%d %H:%M:%S").unwrap().and_utc().timestamp();
    filetime::set_symlink_file_times(
        path,
        filetime::FileTime::from_unix_time(t, 0),
        filetime::FileTime::from_unix_time(t, 0),
    )
    .unwrap();
}

/// Backs up `src` as of `time`; returns the snapshot id.
fn backup(repo: &Repo, src: &Path, time: &str, extra: &[&str]) -> String {
    let mut args = vec!["--time", time];
    args.extend_from_slice(extra);
    args.push(p(src));
    repo.backup_json(&args, None)["snapshot_id"].as_str().expect("snapshot_id").to_string()
}

fn snapshot_ids(repo: &Repo) -> BTreeSet<String> {
    repo.snapshots().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect()
}

// ----- find

/// The paths of a `find --json` result, per snapshot id.
fn found(v: &Value) -> Vec<(String, Vec<String>)> {
    v.as_array()
        .expect("find --json is an array")
        .iter()
        .map(|s| {
            let m: Vec<String> =
                s["matches"].as_array().unwrap().iter().map(|m| m["path"].as_str().unwrap().to_string()).collect();
            assert_eq!(s["hits"].as_u64(), Some(m.len() as u64), "{s}");
            (s["snapshot"].as_str().unwrap().to_string(), m)
        })
        .collect()
}

fn find_by_name_path_time_and_snapshot(w: Where) {
    let repo = Repo::init_on(w);
    let src = repo.dir.path().join("src");
    let f = |rel: &str| src.join(rel);
    write(&f("docs/report.txt"), b"report");
    write(&f("docs/notes.md"), b"notes");
    write(&f("etc/app.conf"), b"conf");
    write(&f("deep/a/b/report.txt"), b"another report");
    set_mtime(&f("docs/report.txt"), "2020-01-01 12:00:00");
    set_mtime(&f("docs/notes.md"), "2022-06-01 12:00:00");
    let s1 = backup(&repo, &src, "2026-01-01 12:00:00", &[]);
    std::fs::remove_file(f("etc/app.conf")).unwrap();
    write(&f("docs/new.txt"), b"new");
    set_mtime(&f("docs/new.txt"), "2024-03-01 12:00:00");
    let s2 = backup(&repo, &src, "2026-01-02 12:00:00", &["--host", "other"]);
    let s = |rel: &str| p(&f(rel)).to_string();

    // A name pattern, in the text form: grouped by snapshot, oldest first.
    let out = repo.run(&["find", "*.txt"]);
    let h1 = out.find(&format!("Found matching entries in snapshot {}", &s1[..8])).expect(&out);
    let h2 = out.find(&format!("Found matching entries in snapshot {}", &s2[..8])).expect(&out);
    assert!(h1 < h2, "{out}");
    assert!(out[h2..].contains(&s("docs/new.txt")) && !out[..h2].contains(&s("docs/new.txt")), "{out}");
    let line = out.lines().find(|l| l.ends_with(&s("docs/report.txt"))).expect(&out);
    assert!(line.starts_with("-rw") && line.contains(" 6 ") && line.contains("2020-01-0"), "{line}");
    assert!(!out.contains("notes.md") && !out.contains("app.conf"), "{out}");

    // The JSON form: one document, restic's names.
    let v = repo.json(&["find", "*.txt", "--json"]);
    assert_eq!(
        found(&v),
        vec![
            (s1.clone(), vec![s("deep/a/b/report.txt"), s("docs/report.txt")]),
            (s2.clone(), vec![s("deep/a/b/report.txt"), s("docs/new.txt"), s("docs/report.txt")]),
        ]
    );
    let m = &v[0]["matches"][1];
    assert_eq!(
        (m["type"].as_str(), m["size"].as_u64(), m["name"].as_str()),
        (Some("file"), Some(6), Some("report.txt"))
    );
    assert_eq!(m["permissions"].as_str().map(|x| &x[..1]), Some("-"), "{m}");
    assert!(m["mtime"].as_str().unwrap().starts_with("2020-01-01T12:00:00"), "{m}");
    for k in ["mode", "uid", "gid", "user", "group", "ctime", "inode", "links"] {
        assert!(m.get(k).is_some(), "no {k} in {m}");
    }

    // Path patterns: absolute, or relative (matching at any depth); a
    // directory matches too; -i ignores case.
    let v = repo.json(&["find", &format!("{}/docs/*.txt", p(&src)), "--json"]);
    assert_eq!(found(&v)[1].1, vec![s("docs/new.txt"), s("docs/report.txt")]);
    let v = repo.json(&["find", "a/b/*.txt", "--json"]);
    assert_eq!(
        found(&v),
        vec![(s1.clone(), vec![s("deep/a/b/report.txt")]), (s2.clone(), vec![s("deep/a/b/report.txt")])]
    );
    let v = repo.json(&["find", "etc", "--json"]);
    assert_eq!(found(&v), vec![(s1.clone(), vec![s("etc")]), (s2.clone(), vec![s("etc")])]);
    assert_eq!(v[0]["matches"][0]["type"], "dir");
    assert_eq!(found(&repo.json(&["find", "*.TXT", "--json"])), vec![]);
    assert_eq!(found(&repo.json(&["find", "-i", "*.TXT", "--json"])).len(), 2);

    // Modification times: a date is its local midnight; RFC 3339 works.
    let v = repo.json(&["find", "*", "--oldest", "2021-01-01", "--newest", "2023-01-01", "--json"]);
    assert_eq!(found(&v), vec![(s1.clone(), vec![s("docs/notes.md")]), (s2.clone(), vec![s("docs/notes.md")])]);
    let v = repo.json(&["find", "*", "--newest", "2020-01-01T12:00:00Z", "-s", &s2, "--json"]);
    assert_eq!(found(&v), vec![(s2.clone(), vec![s("docs/report.txt")])]);
    let v = repo.json(&["find", "*.txt", "--oldest", "2024-03-01 12:00", "--newest", "2024-03-02", "--json"]);
    assert_eq!(found(&v), vec![(s2.clone(), vec![s("docs/new.txt")])], "local time of a UTC mtime");
    let o = repo.out(&["find", "*", "--newest", "yesterday"]);
    o.assert_failed(Some(1), "bad time");
    assert!(o.one_error_line("bad time").contains("--newest \"yesterday\""), "{}", o.stderr);

    // Snapshot selection: ids (prefixes, latest) and filters.
    let v = repo.json(&["find", "app.conf", "-s", &s1[..8], "-s", "latest", "--json"]);
    assert_eq!(found(&v), vec![(s1.clone(), vec![s("etc/app.conf")])]);
    let v = repo.json(&["find", "*.txt", "--host", "other", "--json"]);
    assert_eq!(found(&v).iter().map(|x| x.0.clone()).collect::<Vec<_>>(), vec![s2.clone()]);

    // No match: exit 0, nothing on stdout, a note on stderr; `[]` as JSON.
    let o = repo.out(&["find", "nothing-like-this"]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(o.stdout.is_empty(), "{}", o.stdout_str());
    assert!(o.stderr.contains("no matching entries in 2 snapshot(s)"), "{}", o.stderr);
    assert_eq!(repo.json(&["find", "nothing-like-this", "--json"]), serde_json::json!([]));
    let o = repo.out(&["find", "x", "-s", "zzzz"]);
    o.assert_failed(Some(1), "bad snapshot id");
    o.one_error_line("bad snapshot id");
}

// ----- diff

/// The `(modifier, path)` lines of a text diff.
fn diff_lines(out: &str) -> BTreeSet<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let (m, path) = l.split_once(' ')?;
            ["+", "-", "M", "U", "T"].contains(&m).then(|| (m.to_string(), path.trim_start().to_string()))
        })
        .collect()
}

fn set(items: &[(&str, String)]) -> BTreeSet<(String, String)> {
    items.iter().map(|(m, p)| (m.to_string(), p.clone())).collect()
}

fn diff_shows_each_kind_of_change(w: Where) {
    use std::os::unix::fs::PermissionsExt;
    let repo = Repo::init_on(w);
    let src = repo.dir.path().join("src");
    let f = |rel: &str| src.join(rel);
    let s = |rel: &str| p(&f(rel)).to_string();
    for name in ["keep.txt", "meta.txt", "touch.txt", "gone.txt", "tofile", "sub/deep.txt", "olddir/a", "olddir/b"] {
        write(&f(name), name.as_bytes());
    }
    write(&f("mod.txt"), &noise(50_000, 1));
    let a = backup(&repo, &src, "2026-01-01 12:00:00", &[]);

    write(&f("mod.txt"), &noise(60_000, 2));
    std::fs::set_permissions(f("meta.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    set_mtime(&f("touch.txt"), "2021-05-05 05:05:05");
    std::fs::remove_file(f("gone.txt")).unwrap();
    std::fs::remove_dir_all(f("olddir")).unwrap();
    write(&f("new.txt"), &noise(30_000, 3));
    std::fs::remove_file(f("tofile")).unwrap();
    std::os::unix::fs::symlink("keep.txt", f("tofile")).unwrap();
    let b = backup(&repo, &src, "2026-01-02 12:00:00", &[]);

    let out = repo.run(&["diff", &a[..8], &b]);
    assert!(out.starts_with(&format!("comparing snapshot {} to {}:", &a[..8], &b[..8])), "{out}");
    // The source's parents are shared temporary directories, whose
    // metadata other tests change.
    let mut lines = diff_lines(&out);
    lines.retain(|(_, path)| path.starts_with(p(&src)));
    // The source directory's mtime changed (entries came and went).
    assert!(lines.remove(&("U".to_string(), format!("{}/", p(&src)))), "{out}");
    let want = set(&[
        ("M", s("mod.txt")),
        ("U", s("meta.txt")),
        ("U", s("touch.txt")),
        ("-", s("gone.txt")),
        ("-", format!("{}/", s("olddir"))),
        ("-", s("olddir/a")),
        ("-", s("olddir/b")),
        ("+", s("new.txt")),
        ("T", s("tofile")),
    ]);
    assert_eq!(lines, want, "{out}");
    assert!(out.contains("Files:") && out.contains("1 changed") && out.contains("Added:"), "{out}");

    // (Restricted to the source: its parents may change meanwhile.)
    let v = repo.json(&["diff", &a, &b, p(&src), "--json"]);
    assert_eq!(v["source_snapshot"].as_str(), Some(a.as_str()));
    assert_eq!(v["target_snapshot"].as_str(), Some(b.as_str()));
    let change = |path: String| {
        v["changes"].as_array().unwrap().iter().find(|c| c["path"] == path.as_str()).cloned().expect(&path)
    };
    assert_eq!(change(s("meta.txt"))["what"], serde_json::json!(["mode"]));
    assert_eq!(change(s("touch.txt"))["what"], serde_json::json!(["mtime"]));
    assert_eq!(change(s("tofile"))["modifier"], "T");
    assert_eq!(change(s("mod.txt"))["what"][0], "content");
    assert!(change(s("new.txt")).get("what").is_none());
    let st = &v["statistics"];
    assert_eq!(st["changed_files"], 1, "{st}");
    assert_eq!(st["metadata_changed"], 3, "{st}");
    assert_eq!(st["type_changed"], 1, "{st}");
    // Added: new.txt and the symlink; removed: gone.txt, olddir with its
    // two files, and the file that became a symlink.
    assert_eq!((st["added"]["files"].as_u64(), st["added"]["others"].as_u64()), (Some(1), Some(1)), "{st}");
    assert_eq!((st["removed"]["files"].as_u64(), st["removed"]["dirs"].as_u64()), (Some(4), Some(1)), "{st}");
    // Data: the new content of mod.txt and new.txt (90 000 bytes) plus
    // the new trees; removed: mod.txt's old content and the small files.
    let added = st["added"]["bytes"].as_u64().unwrap();
    assert!((90_000..100_000).contains(&added), "{st}");
    let removed = st["removed"]["bytes"].as_u64().unwrap();
    assert!((50_000..60_000).contains(&removed), "{st}");
    assert!(st["added"]["data_blobs"].as_u64().unwrap() >= 2, "{st}");

    // PATH restricts the diff to a subtree (or one entry) of both.
    let o = repo.run(&["diff", &a, &b, &s("sub")]);
    assert!(diff_lines(&o).is_empty(), "{o}");
    assert_eq!(diff_lines(&repo.run(&["diff", &a, &b, &s("new.txt")])), set(&[("+", s("new.txt"))]));
    let o = repo.run(&["diff", &a, &b, &s("olddir")]);
    assert_eq!(diff_lines(&o).len(), 3, "{o}");
    assert_eq!(
        diff_lines(&repo.run(&["-q", "diff", &format!("{a}:{}", s("mod.txt")), &b])),
        set(&[("M", s("mod.txt"))])
    );
    let o = repo.out(&["diff", &a, &b, "/not/there"]);
    o.assert_failed(Some(1), "path in neither");
    assert!(o.one_error_line("path in neither").contains("/not/there is in neither snapshot"), "{}", o.stderr);

    // The same snapshot: no change.
    let v = repo.json(&["diff", &b, "latest", "--json"]);
    assert_eq!(v["changes"], serde_json::json!([]));
    assert_eq!(v["statistics"]["trees_loaded"], 0);

    // Bad ids: one line, exit 1; no repository: exit 10.
    for bad in ["zz", "ffffffffff", ""] {
        let o = repo.out(&["diff", bad, &b]);
        o.assert_failed(Some(1), &format!("diff {bad:?}"));
        o.one_error_line(&format!("diff {bad:?}"));
    }
    let mut c = crate::common::bare_cmd(repo.dir.path());
    c.args(["-r", p(&repo.dir.path().join("nothing-here")), "diff", &a, &b]);
    let o = crate::common::output(c);
    o.assert_failed(Some(10), "no repository");
}

fn diff_reads_only_the_trees_along_a_change(w: Where) {
    let repo = Repo::init_on(w);
    let src = repo.dir.path().join("src");
    for d in 0..20 {
        for s in 0..10 {
            write(&src.join(format!("d{d:02}/s{s}/f.txt")), format!("{d} {s}").as_bytes());
        }
    }
    let a = backup(&repo, &src, "2026-01-01 12:00:00", &[]);
    write(&src.join("d07/s3/f.txt"), b"changed deep down");
    let b = backup(&repo, &src, "2026-01-02 12:00:00", &[]);

    let total = repo.json(&["stats", "--json", &b])["trees_loaded"].as_u64().unwrap();
    assert!(total > 220, "the snapshot has {total} trees");

    let o = repo.out(&["--no-cache", "-v", "diff", "--json", &a, &b]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let changes: Vec<(&str, &str)> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["modifier"].as_str().unwrap(), c["path"].as_str().unwrap()))
        .filter(|(_, path)| path.starts_with(p(&src)))
        .collect();
    assert_eq!(changes, vec![("M", p(&src.join("d07/s3/f.txt")))]);
    // Two trees (one per side) for each directory from the root down to
    // d07/s3; the 200-odd others are never read.
    let depth = src.join("d07/s3").components().count() as u64; // with the root
    let loaded = v["statistics"]["trees_loaded"].as_u64().unwrap();
    assert_eq!(loaded, 2 * depth, "{}", v["statistics"]);
    let r = crate::common::requests(&o.stderr, "");
    // Its shared lock only (released after the counts are printed).
    assert_eq!((r.put, r.delete), (1, 0), "a diff wrote to the repository: {r:?}");
    assert!(r.written < 1000, "a diff wrote more than its lock: {r:?}");
}

// ----- stats

fn stats_counts_exactly_in_each_mode(w: Where) {
    let repo = Repo::init_on(w);
    let src = repo.dir.path().join("src");
    let a = random_bytes(300_000);
    let b = random_bytes(200_000);
    let text: Vec<u8> = (0..400_000).map(|i| b"cairn stats compresses this text. "[i % 34]).collect();
    write(&src.join("a.bin"), &a);
    write(&src.join("sub/copy-of-a.bin"), &a);
    write(&src.join("b.bin"), &b);
    write(&src.join("text.txt"), &text);
    std::fs::hard_link(src.join("b.bin"), src.join("sub/link-to-b.bin")).unwrap();
    let logical = (2 * a.len() + b.len() + text.len()) as u64;
    let distinct = (a.len() + b.len() + text.len()) as u64;
    backup(&repo, &src, "2026-01-01 12:00:00", &[]);
    backup(&repo, &src, "2026-01-02 12:00:00", &["--force"]);

    // restore-size: per snapshot, the hard link once; two snapshots.
    let v = repo.json(&["stats", "--json"]);
    assert_eq!(v["mode"], "restore-size");
    assert_eq!(v["snapshots_count"], 2);
    assert_eq!(v["total_file_count"], 8, "{v}");
    assert_eq!(v["total_size"].as_u64(), Some(2 * logical), "{v}");
    let one = repo.json(&["stats", "latest", "--json"]);
    assert_eq!((one["snapshots_count"].as_u64(), one["total_size"].as_u64()), (Some(1), Some(logical)));

    // files-by-contents: the copy and the hard link are one content each.
    for mode in ["files", "files-by-contents"] {
        let v = repo.json(&["stats", "--mode", mode, "--json"]);
        assert_eq!(v["mode"], "files-by-contents");
        assert_eq!(v["total_file_count"], 3, "{v}");
        assert_eq!(v["total_size"].as_u64(), Some(distinct), "{v}");
    }

    // raw-data: distinct data once; dedup = 2 snapshots x (a twice) over
    // the distinct bytes; the text compresses.
    let v = repo.json(&["stats", "--mode", "raw-data", "--json"]);
    assert_eq!(v["data_uncompressed_size"].as_u64(), Some(distinct), "{v}");
    assert_eq!(v["restore_size"].as_u64(), Some(2 * logical), "{v}");
    let dedup = v["dedup_ratio"].as_f64().unwrap();
    assert!((dedup - 2.0 * logical as f64 / distinct as f64).abs() < 1e-9, "{v}");
    assert!(v["compression_ratio"].as_f64().unwrap() > 1.3, "{v}");
    assert!(v["total_size"].as_u64().unwrap() < v["total_uncompressed_size"].as_u64().unwrap(), "{v}");
    let blobs = v["total_blob_count"].as_u64().unwrap();
    assert_eq!(blobs, v["data_blob_count"].as_u64().unwrap() + v["tree_blob_count"].as_u64().unwrap());
    assert!(v["tree_blob_count"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(v["missing_blobs"], 0);
    let out = repo.run(&["stats", "--mode", "raw-data"]);
    assert!(out.contains("Stats in raw-data mode:") && out.contains("Deduplication Ratio:"), "{out}");

    // Filters that match nothing: zeros. A bad mode: one clear error.
    let v = repo.json(&["stats", "--host", "nobody", "--json"]);
    assert_eq!((v["snapshots_count"].as_u64(), v["total_size"].as_u64()), (Some(0), Some(0)));
    let o = repo.out(&["stats", "--mode", "blobs"]);
    o.assert_failed(Some(cairn::error::EXIT_USAGE), "bad mode");
    assert!(o.stderr_lines()[0].contains("restore-size, raw-data or files-by-contents"), "{}", o.stderr);

    // Random data backed up twice: dedup exactly 2, no compression gain.
    let repo2 = Repo::init_on(w);
    let src2 = repo2.dir.path().join("src");
    write(&src2.join("random.bin"), &random_bytes(1 << 20));
    backup(&repo2, &src2, "2026-01-01 12:00:00", &[]);
    backup(&repo2, &src2, "2026-01-02 12:00:00", &[]);
    let v = repo2.json(&["stats", "--mode", "raw-data", "--json"]);
    assert_eq!(v["dedup_ratio"].as_f64(), Some(2.0), "{v}");
    let c = v["compression_ratio"].as_f64().unwrap();
    assert!((0.97..=1.0).contains(&c), "{v}");
}

// ----- tag

/// A snapshot's JSON (`cat snapshot ID`).
fn snapshot_json(repo: &Repo, id: &str) -> Value {
    repo.json(&["cat", "snapshot", id])
}

fn tags_of(repo: &Repo, id: &str) -> Vec<String> {
    let v = snapshot_json(repo, id);
    v["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
}

fn tag_rewrites_only_the_snapshots_that_change(w: Where) {
    let repo = Repo::init_on(w);
    let src = repo.dir.path().join("src");
    write(&src.join("data.bin"), &noise(100_000, 7));
    write(&src.join("dir/x.txt"), b"x");
    let s1 = backup(&repo, &src, "2026-01-01 12:00:00", &["--tag", "daily"]);
    let s2 = backup(&repo, &src, "2026-01-02 12:00:00", &["--tag", "daily,db"]);
    let s3 = backup(&repo, &src, "2026-01-03 12:00:00", &[]);

    // Refusals change nothing: --set with --add; no ids and no filters.
    let before = repo.list("snapshots");
    for args in [&["tag", "--set", "a", "--add", "b", &s1][..], &["tag", "--add", "x"], &["tag", &s1]] {
        let o = repo.out(args);
        o.assert_failed(Some(1), &format!("{args:?}"));
        o.one_error_line(&format!("{args:?}"));
    }
    assert_eq!(repo.list("snapshots"), before);

    // --tag selects; s2 already has `db`, only s1 changes.
    let s1_json = snapshot_json(&repo, &s1);
    let v = repo.json(&["tag", "--tag", "daily", "--add", "db", "--json"]);
    assert_eq!((v["changed_snapshots"].as_u64(), v["unchanged_snapshots"].as_u64()), (Some(1), Some(1)), "{v}");
    let c = &v["changes"][0];
    assert_eq!(c["old_snapshot_id"].as_str(), Some(s1.as_str()));
    let n1 = c["new_snapshot_id"].as_str().unwrap().to_string();
    assert_eq!(snapshot_ids(&repo), BTreeSet::from([n1.clone(), s2.clone(), s3.clone()]));
    let j = snapshot_json(&repo, &n1);
    assert_eq!(j["original"].as_str(), Some(s1.as_str()));
    assert_eq!(j["tags"], serde_json::json!(["daily", "db"]));
    // Everything else is as it was.
    let mut same = j.clone();
    same["tags"] = s1_json["tags"].clone();
    same.as_object_mut().unwrap().remove("original");
    assert_eq!(same, s1_json);
    assert!(snapshot_json(&repo, &s2).get("original").is_none());

    // The same again: nothing to rewrite, no object touched.
    let before = repo.list("snapshots");
    let out = repo.run(&["tag", "--tag", "daily", "--add", "db"]);
    assert!(out.contains("modified 0 snapshot(s)"), "{out}");
    assert_eq!(repo.list("snapshots"), before);

    // Remove, then set; `original` stays the first id through the chain.
    let out = repo.run(&["tag", &n1[..8], "--remove", "daily"]);
    assert!(out.contains("modified 1 snapshot(s)") && out.contains(&n1[..8]), "{out}");
    let n1b = repo
        .snapshots()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .find(|id| *id != s2 && *id != s3)
        .unwrap();
    assert_eq!(tags_of(&repo, &n1b), vec!["db"]);
    assert_eq!(snapshot_json(&repo, &n1b)["original"].as_str(), Some(s1.as_str()));
    repo.run(&["tag", "latest", "--set", "weekly,keep"]);
    let v = repo.json(&["snapshots", "--json", "--tag", "weekly"]);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    let n3 = v[0]["id"].as_str().unwrap().to_string();
    assert_eq!(v[0]["tags"], serde_json::json!(["weekly", "keep"]));
    assert!(!snapshot_ids(&repo).contains(&s3));
    repo.run(&["tag", &n3, "--set", ""]);
    assert_eq!(repo.json(&["snapshots", "--json", "--tag", "weekly"]), serde_json::json!([]));

    // Everything still restores and checks.
    assert_eq!(snapshot_ids(&repo).len(), 3);
    let target = tempfile::tempdir().unwrap();
    repo.run(&["restore", &n1b, "--target", p(target.path())]);
    assert_dir_contents_equal(&src, &restored(target.path(), &src));
    let o = repo.out(&["check", "--read-data"]);
    assert_eq!(o.code, Some(0), "check after tag:\n{}\n{}", o.stdout_str(), o.stderr);

    // --all changes every snapshot.
    let out = repo.run(&["tag", "--all", "--add", "all"]);
    assert!(out.contains("modified 3 snapshot(s)"), "{out}");
    assert_eq!(repo.json(&["snapshots", "--json", "--tag", "all"]).as_array().unwrap().len(), 3);
}

#[test]
fn a_retagged_snapshot_is_not_copied_again() {
    let src_repo = Repo::init();
    let dst = Repo::init();
    let src = src_repo.dir.path().join("src");
    write(&src.join("f.txt"), b"payload");
    let id = backup(&src_repo, &src, "2026-01-01 12:00:00", &[]);
    let copy = |args: &[&str]| {
        let mut c = dst.cmd();
        c.env("CAIRN_FROM_PASSWORD", src_repo.password()).arg("copy").args(args).args(["--from-repo", src_repo.url()]);
        let o = crate::common::output(c);
        assert_eq!(o.code, Some(0), "copy failed:\n{}", o.stderr);
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    let first = copy(&["--json"]);
    assert_eq!(snapshot_ids(&dst).len(), 1, "{first}");
    src_repo.run(&["tag", &id, "--add", "offsite"]);
    let again = copy(&["--json"]);
    assert_eq!(snapshot_ids(&dst).len(), 1, "the re-tagged snapshot was copied again: {again}");
    // Tagging the copy keeps its `original`, so it is still recognised.
    let copied = snapshot_ids(&dst).into_iter().next().unwrap();
    dst.run(&["tag", &copied, "--add", "copied"]);
    let new = snapshot_ids(&dst).into_iter().next().unwrap();
    assert_eq!(snapshot_json(&dst, &new)["original"].as_str(), Some(id.as_str()));
    copy(&["--json"]);
    assert_eq!(snapshot_ids(&dst).len(), 1);
}
