//! `check --read-data-subset`: the subsets of a nightly scrub.

use serde_json::Value;

use crate::common::{flip_middle, noise, Repo};

/// A local repository with 1 MiB packs holding ~8 MiB of noise: several packs.
fn repo_with_packs() -> (Repo, tempfile::TempDir) {
    let repo = Repo::uninit();
    repo.run(&["init", "--pack-size", "1"]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..4 {
        std::fs::write(src.join(format!("f{i}")), noise(2 << 20, 40 + i)).unwrap();
    }
    repo.run(&["backup", "-q", src.to_str().unwrap()]);
    (repo, tmp)
}

fn check_json(repo: &Repo, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["check", "--json"];
    all.extend_from_slice(args);
    let o = repo.out(&all);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{all:?}: {e}\n{}", o.stderr));
    (o.code, v)
}

#[test]
fn read_data_subsets_cover_every_pack_once_and_find_damage_in_its_group() {
    let (repo, _tmp) = repo_with_packs();
    let (code, all) = check_json(&repo, &["--read-data"]);
    assert_eq!(code, Some(0), "{all}");
    let total = all["packs_read"].as_u64().unwrap();
    assert!(total >= 6, "expected several packs, got {total}");
    assert_eq!(total, all["packs"].as_u64().unwrap());
    let blobs = all["blobs_read"].as_u64().unwrap();
    let (mut packs_sum, mut blobs_sum) = (0, 0);
    for n in 1..=3 {
        let (code, v) = check_json(&repo, &["--read-data-subset", &format!("{n}/3")]);
        assert_eq!(code, Some(0), "{v}");
        packs_sum += v["packs_read"].as_u64().unwrap();
        blobs_sum += v["blobs_read"].as_u64().unwrap();
    }
    assert_eq!((packs_sum, blobs_sum), (total, blobs), "the three groups together read every pack once");
    let (_, pct) = check_json(&repo, &["--read-data-subset", "25%"]);
    assert_eq!(pct["packs_read"].as_u64().unwrap(), total.div_ceil(4));
    let (_, day) = check_json(&repo, &["--read-data-subset", "day/3"]);
    assert!(day["packs_read"].as_u64().unwrap() <= total);

    // One damaged pack: exactly one group of three finds it; 100% finds it.
    let pack = repo.objects("data").into_iter().max_by_key(|p| p.metadata().unwrap().len()).unwrap();
    flip_middle(&pack);
    let name = pack.file_name().unwrap().to_str().unwrap().to_string();
    let mut found = 0;
    for n in 1..=3 {
        let (code, v) = check_json(&repo, &["--read-data-subset", &format!("{n}/3")]);
        if code != Some(0) {
            found += 1;
            assert!(v["problems"].to_string().contains(&name), "group {n}/3 does not name pack {name}: {v}");
        }
    }
    assert_eq!(found, 1, "exactly one group holds the damaged pack");
    let (code, v) = check_json(&repo, &["--read-data-subset", "100%"]);
    assert_ne!(code, Some(0), "{v}");
}

#[test]
fn bad_read_data_subsets_are_refused_in_one_line() {
    let repo = Repo::init();
    for bad in ["0/3", "4/3", "1/0", "abc", "0%", "150%"] {
        let o = repo.out(&["check", "--read-data-subset", bad]);
        assert_eq!(o.code, Some(1), "{bad}: {}", o.stderr);
        let lines: Vec<&str> = o.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{bad}: {}", o.stderr);
        assert!(lines[0].starts_with("error: --read-data-subset"), "{bad}: {}", o.stderr);
    }
}

/// A pack deleted behind the index's back: check (structure only) names
/// every chunk that was in it, each once, with a file that uses it, and
/// nothing else; the chunks are matched against the index in one pass, and
/// a second walk names their files.
#[test]
fn check_names_every_chunk_of_a_deleted_pack_once_with_its_file() {
    let (repo, _tmp) = repo_with_packs();
    let (code, clean) = check_json(&repo, &[]);
    assert_eq!(code, Some(0), "{clean}");
    let (code, clean) = check_json(&repo, &["--scratch-memory", "0"]);
    assert_eq!(code, Some(0), "{clean}");
    // A pack of data blobs, and its chunks.
    let mut victim = None;
    for (name, _) in repo.list("index") {
        let id = name.rsplit('/').next().unwrap().to_string();
        let ix = repo.json(&["cat", "index", &id]);
        for p in ix["packs"].as_array().unwrap() {
            let blobs = p["blobs"].as_array().unwrap();
            if blobs.iter().all(|b| b["type"] == "data") && victim.is_none() {
                let ids: std::collections::BTreeSet<String> =
                    blobs.iter().map(|b| b["id"].as_str().unwrap().to_string()).collect();
                victim = Some((p["id"].as_str().unwrap().to_string(), ids));
            }
        }
    }
    let (pack, chunks) = victim.expect("a pack of data blobs");
    assert!(!chunks.is_empty());
    repo.backend().delete(&format!("data/{}/{pack}", &pack[..2])).unwrap();
    let (code, v) = check_json(&repo, &[]);
    assert_ne!(code, Some(0), "{v}");
    let problems: Vec<String> = v["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().into()).collect();
    let mut named = std::collections::BTreeSet::new();
    for line in problems.iter().filter(|l| l.starts_with("chunk ")) {
        let id = line.split_whitespace().nth(1).unwrap().to_string();
        assert!(line.contains(&format!("is in pack {pack}, which does not exist")), "{line}");
        assert!(line.contains("/src/f"), "no file named: {line}");
        assert!(named.insert(id.clone()), "chunk {id} reported twice: {problems:?}");
    }
    assert_eq!(named, chunks, "every chunk of the deleted pack, and only those: {problems:?}");
    assert!(problems.iter().any(|l| l.contains(&format!("names pack {pack} which does not exist"))), "{problems:?}");
    assert!(!v["affected"].as_array().unwrap().is_empty(), "{v}");

    // The chunk set on disk (`--scratch-memory 0`) finds the same.
    let (code, on_disk) = check_json(&repo, &["--scratch-memory", "0"]);
    assert_ne!(code, Some(0), "{on_disk}");
    let sorted = |v: &Value| {
        let mut p: Vec<String> =
            v["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
        p.sort();
        p
    };
    assert_eq!(sorted(&on_disk), sorted(&v));
    assert_eq!(on_disk["affected"], v["affected"]);
    let bad = repo.out(&["check", "--scratch-memory", "lots"]);
    assert_eq!(bad.code, Some(1), "{}", bad.stderr);
    assert_eq!(bad.stderr.trim().lines().count(), 1, "{}", bad.stderr);
    assert!(bad.stderr.contains("--scratch-memory"), "{}", bad.stderr);
}
