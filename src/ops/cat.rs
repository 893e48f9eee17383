//! `cat`: decrypted objects as JSON, for debugging.

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::id::{IndexId, PackId};
use crate::repo::Repository;

/// The config, decrypted.
pub fn config(repo: &Repository) -> Result<Value> {
    serde_json::to_value(&repo.config).map_err(|e| Error::corrupt(e.to_string()))
}

fn pack_json(p: &crate::format::index::IndexPack) -> Value {
    json!({
        "id": p.id,
        "blobs": p.blobs.iter().map(|b| json!({
            "type": b.kind,
            "id": hex::encode(b.id),
            "offset": b.offset,
            "length": b.length,
            "inner": b.inner,
            "raw_length": b.raw_length,
        })).collect::<Vec<_>>(),
    })
}

/// An index object (by unique id prefix), decoded: its live packs, and
/// (version 2) the packs a prune marked for deletion and its run records.
pub fn index(repo: &Repository, prefix: &str) -> Result<Value> {
    let id = IndexId(unique(repo, "index", prefix)?);
    let ix = repo.load_index_full(&id)?;
    let mut v = json!({
        "id": id,
        "packs": ix.packs.iter().map(pack_json).collect::<Vec<_>>(),
    });
    if !ix.marked.is_empty() || !ix.runs.is_empty() {
        v["marked"] =
            ix.marked.iter().map(|m| json!({"run": hex::encode(m.run), "pack": pack_json(&m.pack)})).collect();
        v["runs"] = ix
            .runs
            .iter()
            .map(|r| {
                json!({
                    "run": hex::encode(r.run),
                    "time": r.time,
                    "locks": r.locks.iter().map(|l| json!({
                        "session": hex::encode(l.session),
                        "object": hex::encode(l.object),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
    }
    Ok(v)
}

/// A pack's header, read from the pack itself.
pub fn pack(repo: &Repository, prefix: &str) -> Result<Value> {
    let id = PackId(unique(repo, "data", prefix)?);
    let entries = crate::pack::read_header(&repo.backend, &repo.key.enc, &id)?;
    Ok(json!({
        "id": id,
        "blobs": entries.iter().map(|b| json!({
            "type": b.kind, "id": hex::encode(b.id), "offset": b.offset, "length": b.length, "inner": b.inner,
            "raw_length": b.raw_length,
        })).collect::<Vec<_>>(),
    }))
}

fn unique(repo: &Repository, folder: &str, prefix: &str) -> Result<[u8; 32]> {
    let p = prefix.to_ascii_lowercase();
    if p.is_empty() {
        return Err(Error::invalid(format!("give an id from {folder}/")));
    }
    let m: Vec<[u8; 32]> = repo.list_ids(folder)?.into_iter().filter(|id| hex::encode(id).starts_with(&p)).collect();
    match m.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::not_found(format!("no object in {folder}/ matches {prefix:?}"))),
        _ => Err(Error::invalid(format!("{prefix:?} matches several objects in {folder}/"))),
    }
}
