//! `cat`: decrypted objects as JSON, for debugging.

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::id::{IndexId, PackId};
use crate::repo::Repository;

/// The config, decrypted.
pub fn config(repo: &Repository) -> Result<Value> {
    serde_json::to_value(&repo.config).map_err(|e| Error::corrupt(e.to_string()))
}

/// An index object (by unique id prefix), decoded.
pub fn index(repo: &Repository, prefix: &str) -> Result<Value> {
    let id = IndexId(unique(repo, "index", prefix)?);
    let packs = repo.load_index(&id)?;
    Ok(json!({
        "id": id,
        "packs": packs.iter().map(|p| json!({
            "id": p.id,
            "blobs": p.blobs.iter().map(|b| json!({
                "type": b.kind,
                "id": hex::encode(b.id),
                "offset": b.offset,
                "length": b.length,
                "raw_length": b.raw_length,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    }))
}

/// A pack's header, read from the pack itself.
pub fn pack(repo: &Repository, prefix: &str) -> Result<Value> {
    let id = PackId(unique(repo, "data", prefix)?);
    let entries = crate::pack::read_header(&repo.backend, &repo.key.enc, &id)?;
    Ok(json!({
        "id": id,
        "blobs": entries.iter().map(|b| json!({
            "type": b.kind, "id": hex::encode(b.id), "offset": b.offset, "length": b.length, "raw_length": b.raw_length,
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
