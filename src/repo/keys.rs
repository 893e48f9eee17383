//! Key files: several passwords open one repository.

use bytes::Bytes;

use super::{content_id, user_label, Repository};
use crate::backend::Backend;
use crate::crypto::{kdf, MasterKey};
use crate::error::{Error, ErrorKind, Result};
use crate::format::keyfile::KeyFile;
use crate::id::KeyId;

/// Stores a key file as `keys/<sha256>`.
pub fn store_key(backend: &Backend, kf: &KeyFile) -> Result<KeyId> {
    let bytes = kf.encode();
    let id = KeyId(content_id(&bytes));
    backend.put(&format!("keys/{id}"), Bytes::from(bytes))?;
    Ok(id)
}

/// All key files, with damaged ones reported as errors in place.
pub fn list_key_files(backend: &Backend) -> Result<Vec<(KeyId, Result<KeyFile>)>> {
    let mut out = Vec::new();
    for (name, _) in backend.list("keys")? {
        let Some(id) = super::parse_object_name(name.rsplit('/').next().unwrap_or("")).map(KeyId) else {
            continue;
        };
        let kf = backend.get(&name).and_then(|b| {
            if content_id(&b) != id.0 {
                return Err(Error::corrupt(format!("{name} is damaged: its content does not match its name")));
            }
            KeyFile::decode(&b)
        });
        out.push((id, kf));
    }
    out.sort_by_key(|(id, _)| *id);
    Ok(out)
}

/// Tries every key file with the password; the first whose master key
/// `accept`s (authenticates the config) wins. A key file left behind by an
/// interrupted `init` therefore cannot make a repository unopenable.
pub fn find_key<T>(
    backend: &Backend,
    password: &[u8],
    mut accept: impl FnMut(&MasterKey) -> Result<T>,
) -> Result<(KeyId, MasterKey, T)> {
    let keys = list_key_files(backend)?;
    if keys.is_empty() {
        return Err(Error::new(ErrorKind::NoRepository, format!("no key files in {}", backend.location())));
    }
    let mut last = None;
    // Key files that do not decode, or whose parameters argon2 refuses:
    // damaged, named in the error if the password opens no other one.
    let mut damaged: Vec<String> =
        keys.iter().filter_map(|(id, kf)| kf.as_ref().err().map(|e| format!("keys/{id} ({e})"))).collect();
    for (id, kf) in keys.iter().filter_map(|(id, kf)| kf.as_ref().ok().map(|kf| (id, kf))) {
        match kdf::unwrap(kf, password) {
            Ok(mk) => match accept(&mk) {
                Ok(t) => return Ok((*id, mk, t)),
                Err(e) => last = Some(e),
            },
            Err(e) if e.kind() == ErrorKind::WrongPassword => {}
            Err(e) => damaged.push(format!("keys/{id} ({e})")),
        }
    }
    if let Some(e) = last {
        return Err(e);
    }
    if damaged.is_empty() {
        return Err(Error::new(ErrorKind::WrongPassword, "wrong password: no key file opens with it"));
    }
    // A damaged key file may be the one this password belongs to: report
    // the damage (exit 1), not a wrong password.
    Err(Error::corrupt(format!(
        "no key file opens with this password, and {} is damaged: {}",
        plural(damaged.len()),
        damaged.join("; ")
    )))
}

/// One row of `key list`.
#[derive(Debug, serde::Serialize)]
pub struct KeyInfo {
    pub id: KeyId,
    pub current: bool,
    pub label: String,
    pub created: i64,
    pub kdf: Option<crate::format::keyfile::KdfParams>,
}

impl Repository {
    pub fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        Ok(list_key_files(&self.backend)?
            .into_iter()
            .map(|(id, kf)| match kf {
                Ok(kf) => KeyInfo {
                    id,
                    current: id == self.key_id,
                    label: kf.label,
                    created: kf.created,
                    kdf: Some(kf.params),
                },
                Err(e) => KeyInfo { id, current: false, label: format!("(damaged: {e})"), created: 0, kdf: None },
            })
            .collect())
    }

    /// Adds a key file wrapping this repository's master key.
    pub fn add_key(&self, password: &[u8], label: Option<String>) -> Result<KeyId> {
        if password.is_empty() {
            return Err(Error::invalid("refusing an empty password"));
        }
        if label.as_ref().is_some_and(|l| l.len() > 255) {
            return Err(Error::invalid("a key label is at most 255 bytes"));
        }
        let kf = kdf::wrap(&self.key, password, kdf::params_for_new_keys(), label.unwrap_or_else(user_label))?;
        store_key(&self.backend, &kf)
    }

    /// Removes a key file (by unique id prefix). The key in use cannot be removed.
    pub fn remove_key(&self, prefix: &str) -> Result<KeyId> {
        let prefix = prefix.to_ascii_lowercase();
        let matches: Vec<KeyId> = list_key_files(&self.backend)?
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| !prefix.is_empty() && id.to_hex().starts_with(&prefix))
            .collect();
        let id = match matches.as_slice() {
            [] => return Err(Error::not_found(format!("no key matches {prefix:?}"))),
            [one] => *one,
            _ => return Err(Error::invalid(format!("{prefix:?} matches several keys"))),
        };
        if id == self.key_id {
            return Err(Error::invalid("refusing to remove the key in use; open with another password first"));
        }
        self.backend.delete(&format!("keys/{id}"))?;
        Ok(id)
    }

    /// Changes the password of the key in use: writes the new key file, then
    /// removes the old one.
    pub fn change_password(&mut self, password: &[u8]) -> Result<KeyId> {
        let old = self.key_id;
        let new = self.add_key(password, None)?;
        self.backend.delete(&format!("keys/{old}"))?;
        self.key_id = new;
        Ok(new)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        "a key file"
    } else {
        "more than one key file"
    }
}
