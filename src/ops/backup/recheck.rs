//! The last check before a backup commits its snapshot
//! (format-spec/10-write-order.md, rule 11).
//!
//! A prune may mark packs while this backup runs. Its lock protects what it
//! reused: the prune records the running writers, and waits for them before
//! it deletes. As a second line (a lock removed by hand, a process
//! suspended past its refreshes), the backup looks again just before it
//! commits: if packs were marked meanwhile, every blob the new snapshot uses
//! must still have a live copy, or it is stored again from the marked pack,
//! which still exists.

use std::collections::HashSet;

use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::Content;
use crate::id::{BlobId, PackId, TreeId};
use crate::repo::Repository;
use crate::saver::Saver;

pub struct Recheck {
    marked: HashSet<PackId>,
    /// The index objects read when the backup started.
    known: HashSet<crate::id::IndexId>,
}

impl Recheck {
    /// Remembers the packs marked when the backup starts (it never reuses
    /// those).
    pub fn start(repo: &Repository) -> Result<Self> {
        crate::steps::note(|| {
            let marked: Vec<String> = repo.cache.marked_packs().unwrap_or_default().iter().map(|p| p.short()).collect();
            format!("recheck start: marked [{}]", marked.join(","))
        });
        Ok(Self { marked: repo.cache.marked_packs()?, known: repo.cache.known_index_files()? })
    }

    /// Makes sure every blob under `roots` has a live copy; `own` are the
    /// packs this backup stored. Returns how many blobs were stored again.
    pub fn finish(mut self, repo: &Repository, roots: &[TreeId], own: &[PackId]) -> Result<u64> {
        let own: HashSet<PackId> = own.iter().copied().collect();
        let mut rescued = 0;
        for _ in 0..3 {
            repo.sync_cache()?;
            let now = repo.cache.marked_packs()?;
            // An index object read at the start is gone: a prune rewrote the
            // index meanwhile (and may have settled its marks at once, which
            // leaves no mark to see), so every blob is looked at.
            let rewritten = !self.known.is_subset(&repo.cache.known_index_files()?);
            crate::steps::note(|| {
                let m: Vec<String> = now.iter().map(|p| p.short()).collect();
                format!("recheck: rewritten {rewritten} marked now [{}]", m.join(","))
            });
            if !rewritten && now.iter().all(|p| self.marked.contains(p) || own.contains(p)) {
                return Ok(rescued);
            }
            let lost = orphans(repo, roots, &own)?;
            if lost.is_empty() {
                return Ok(rescued);
            }
            std::thread::scope(|scope| -> Result<()> {
                let mut saver = Saver::start_fresh(scope, repo)?;
                for b in &lost {
                    saver.save(b.kind, b.id, repo.read_blob(b)?)?;
                }
                saver.finish().map(|_| ())
            })?;
            rescued += lost.len() as u64;
            self.marked = now;
            self.known = repo.cache.known_index_files()?;
        }
        Err(Error::new(
            ErrorKind::Transient,
            "packs kept being marked for deletion while this backup finished; run it again",
        ))
    }
}

/// Blobs under `roots` whose only copies are in marked packs not our own.
fn orphans(repo: &Repository, roots: &[TreeId], own: &HashSet<PackId>) -> Result<Vec<BlobId>> {
    let reader = repo.cache.reader()?;
    let mut lost = Vec::new();
    let mut check = |b: BlobId| -> Result<()> {
        if reader.get_live(&b)?.is_some() {
            return Ok(());
        }
        match reader.get(&b)? {
            Some(loc) if own.contains(&loc.pack) => Ok(()),
            Some(_) => {
                lost.push(b);
                Ok(())
            }
            None => {
                crate::steps::note(|| format!("recheck: blob {} gone", hex::encode(&b.id[..4])));
                Err(Error::corrupt(format!(
                "blob {} that this backup reuses is gone from the index (removed by a prune that did not see this backup's lock?); nothing was committed",
                hex::encode(b.id)
            )))
            }
        }
    };
    let mut seen = HashSet::new();
    let mut stack = roots.to_vec();
    while let Some(t) = stack.pop() {
        if !seen.insert(t) {
            continue;
        }
        check(BlobId::tree(t))?;
        for n in repo.load_tree(&t)? {
            match &n.content {
                Content::Dir(sub) => stack.push(*sub),
                c => {
                    for b in repo.content_blobs(c)? {
                        check(b)?;
                    }
                }
            }
        }
    }
    Ok(lost)
}
