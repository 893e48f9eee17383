//! `ls`: the entries of a snapshot, depth first, in name order.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::format::tree::{Node, NodeKind};
use crate::id::TreeId;
use crate::ops::restore::resolve;
use crate::repo::Repository;

/// One listed entry (field names follow restic's `ls --json`).
#[derive(Debug, Serialize)]
pub struct Entry {
    pub path: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: NodeKind,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_target: Option<String>,
}

fn entry(path: &Path, n: &Node) -> Entry {
    let mtime = chrono::DateTime::from_timestamp(
        n.mtime_ns.div_euclid(1_000_000_000),
        n.mtime_ns.rem_euclid(1_000_000_000) as u32,
    )
    .map(|t| t.to_rfc3339())
    .unwrap_or_default();
    Entry {
        path: path.to_string_lossy().into_owned(),
        name: n.name_lossy(),
        kind: n.kind,
        size: n.size,
        mode: n.mode,
        uid: n.uid,
        gid: n.gid,
        mtime,
        link_target: match &n.content {
            crate::format::tree::Content::Symlink(t) => Some(String::from_utf8_lossy(t).into_owned()),
            _ => None,
        },
    }
}

/// Calls `f` for every entry under `sub` (the whole snapshot for `/`).
pub fn walk(repo: &Repository, root: TreeId, sub: &Path, f: &mut dyn FnMut(Entry) -> Result<()>) -> Result<()> {
    let (node, tree) = resolve(repo, root, sub)?;
    if let Some(n) = &node {
        f(entry(sub, n))?;
        if n.kind != NodeKind::Dir {
            return Ok(());
        }
    }
    list_dir(repo, &PathBuf::from("/").join(sub), tree, f)
}

fn list_dir(repo: &Repository, dir: &Path, tree: TreeId, f: &mut dyn FnMut(Entry) -> Result<()>) -> Result<()> {
    for n in repo.load_tree(&tree)? {
        let p = dir.join(OsStr::from_bytes(&n.name));
        f(entry(&p, &n))?;
        if let Some(st) = n.subtree() {
            list_dir(repo, &p, st, f)?;
        }
    }
    Ok(())
}
