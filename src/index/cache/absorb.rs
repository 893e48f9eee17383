//! Absorbing index objects into the cache: one transaction for a whole
//! sync, blob entries inserted in global key order.
//!
//! Blob ids are random, so entries inserted in the order index objects
//! come touch a random leaf of the B-tree each: once the table is larger
//! than a batch, every batch rewrites nearly every leaf, and filling a
//! cache of N entries writes O(N^2 / batch) pages (19 µs an entry at 10^7).
//! Here entries are collected in runs of [`RUN_ENTRIES`], each sorted and,
//! when there is more than one, written to a private temporary file beside
//! the cache; at the end the runs are merged and inserted in key order, so
//! each leaf is written about once whatever the size. Memory stays at one
//! run plus a small read buffer per run, however many entries come.
//!
//! Everything happens in one write transaction: the entries of every
//! object and the rows that say which objects were absorbed are committed
//! together or not at all (format-spec/10-write-order.md, rule 6), as
//! before.

use std::collections::BinaryHeap;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::PathBuf;

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};

use super::{
    encode_loc, filter, key, ordinal_of, IndexCache, Loc, BLOBS, DISPLACED, FILTER_TAG, GONE, INDEX_FILES, MARKED,
    PACKS, PACK_BLOBS, PACK_ORDINALS,
};
use crate::error::{Error, ErrorKind, Result};
use crate::format::index::Index;
use crate::id::{BlobId, IndexId, PackId};

/// Entries sorted in memory at a time (54 bytes each: 7 MiB).
pub const RUN_ENTRIES: usize = 1 << 17;
/// Read buffer per spilled run during the merge.
const RUN_READ_BUFFER: usize = 8 << 10;

/// Key, location, and rank: 0 for a live pack's entry, which replaces what
/// is there, 1 for a marked pack's, which only fills a gap. Sorted by key
/// then rank, so a key's live entries come before its marked ones.
type Item = ([u8; 33], u8, Loc);
const ITEM_BYTES: usize = 33 + 1 + 20;

/// The order of items: key, then rank. The key's first 8 bytes (its kind
/// and 7 bytes of a random id) are compared as one integer first: they
/// nearly always decide, without a call to compare the 33 bytes.
fn item_order(a: &Item, b: &Item) -> std::cmp::Ordering {
    head(&a.0).cmp(&head(&b.0)).then_with(|| a.0[8..].cmp(&b.0[8..])).then(a.1.cmp(&b.1))
}

/// A key's first 8 bytes as a big-endian integer (so that its order is the
/// bytes' order).
fn head(k: &[u8; 33]) -> u64 {
    u64::from_be_bytes(k[..8].try_into().expect("8 bytes"))
}

/// An absorption under way ([`IndexCache::begin_absorb`]).
pub struct Absorber<'c> {
    cache: &'c IndexCache,
    tx: WriteTransaction,
    next_ordinal: u32,
    run: Vec<Item>,
    /// Entries per run ([`RUN_ENTRIES`]; tests use fewer).
    run_limit: usize,
    spilled: Vec<std::fs::File>,
    /// Entries added so far (a bound on the keys the table gains).
    added: u64,
    /// Where spilled runs go: beside the cache file, else the system's
    /// temporary directory.
    spill_dir: Option<PathBuf>,
}

impl IndexCache {
    /// Starts absorbing index objects: [`Absorber::add`] each, then
    /// [`Absorber::finish`] commits them all at once. Dropped unfinished,
    /// nothing is absorbed.
    pub fn begin_absorb(&self) -> Result<Absorber<'_>> {
        self.guard("absorbing index objects", || {
            let tx = self.db.begin_write()?;
            let next_ordinal = tx.open_table(PACKS)?.len()? as u32;
            let spill_dir = self.path.as_ref().and_then(|p| p.parent().map(|d| d.to_path_buf()));
            Ok(Absorber {
                cache: self,
                tx,
                next_ordinal,
                run: Vec::new(),
                run_limit: RUN_ENTRIES,
                spilled: Vec::new(),
                added: 0,
                spill_dir,
            })
        })
    }

    /// Absorbs `items` in one transaction.
    pub fn add_indexes(&self, items: &[(IndexId, Index)]) -> Result<()> {
        let mut a = self.begin_absorb()?;
        for (id, ix) in items {
            a.add(id, ix)?;
        }
        a.finish()
    }
}

impl Absorber<'_> {
    /// Adds one index object: its packs get ordinals, its entries go into
    /// the run, and it is recorded as absorbed (when the whole is committed).
    pub fn add(&mut self, id: &IndexId, ix: &Index) -> Result<()> {
        let cache = self.cache;
        cache.guard("absorbing index objects", || {
            {
                let mut packs = self.tx.open_table(PACKS)?;
                let mut ordinals = self.tx.open_table(PACK_ORDINALS)?;
                let next = &mut self.next_ordinal;
                let mut ordinal = |id: &PackId| -> Result<u32> {
                    if let Some(o) = ordinals.get(id.0)? {
                        return Ok(o.value());
                    }
                    let o = *next;
                    *next = next
                        .checked_add(1)
                        .ok_or_else(|| Error::new(ErrorKind::Io, "index cache: too many packs (delete the cache)"))?;
                    ordinals.insert(id.0, o)?;
                    packs.insert(o, id.0)?;
                    Ok(o)
                };
                let mut marked = self.tx.open_table(MARKED)?;
                let mut gone = self.tx.open_table(GONE)?;
                let mut pack_blobs = self.tx.open_table(PACK_BLOBS)?;
                let mut keys = Vec::new();
                let all = ix.packs.iter().map(|p| (p, 0u8)).chain(ix.marked.iter().map(|m| (&m.pack, 1u8)));
                self.run.reserve(all.clone().map(|(p, _)| p.blobs.len()).sum());
                for (p, rank) in all {
                    let o = ordinal(&p.id)?;
                    gone.remove(p.id.0)?;
                    keys.clear();
                    for e in &p.blobs {
                        keys.extend_from_slice(&key(&BlobId { kind: e.kind, id: e.id }));
                    }
                    super::put_pack_keys(&mut pack_blobs, o, &keys)?;
                    self.added += p.blobs.len() as u64;
                    self.run.extend(
                        p.blobs.iter().map(|e| (key(&BlobId { kind: e.kind, id: e.id }), rank, encode_loc(o, e))),
                    );
                }
                for m in &ix.marked {
                    marked.insert(m.pack.id.0, m.run)?;
                }
                let n: u64 =
                    ix.packs.iter().chain(ix.marked.iter().map(|m| &m.pack)).map(|p| p.blobs.len() as u64).sum();
                self.tx.open_table(INDEX_FILES)?.insert(id.0, n)?;
            }
            if self.run.len() >= self.run_limit {
                self.spill()?;
            }
            Ok(())
        })
    }

    /// Sorts runs of `n` entries (tests: to spill small syncs).
    #[cfg(test)]
    pub fn set_run_limit(&mut self, n: usize) {
        self.run_limit = n.max(1);
    }

    /// Spilled runs so far.
    pub fn runs_spilled(&self) -> usize {
        self.spilled.len()
    }

    /// Sorts the run and writes it to a temporary file.
    fn spill(&mut self) -> Result<()> {
        self.run.sort_unstable_by(item_order);
        let io = |e: std::io::Error| Error::new(ErrorKind::Io, format!("index cache: a scratch file for a sync: {e}"));
        let file = match &self.spill_dir {
            Some(d) => tempfile::tempfile_in(d),
            None => tempfile::tempfile(),
        }
        .map_err(io)?;
        let mut w = BufWriter::with_capacity(64 << 10, file);
        for (k, rank, v) in self.run.drain(..) {
            w.write_all(&k).map_err(io)?;
            w.write_all(&[rank]).map_err(io)?;
            w.write_all(&v).map_err(io)?;
        }
        let mut file = w.into_inner().map_err(|e| io(e.into_error()))?;
        file.rewind().map_err(io)?;
        self.spilled.push(file);
        // Give the run's memory back: the next one may be far smaller.
        self.run = Vec::new();
        Ok(())
    }

    /// Inserts every entry, in key order, sets their bits in the filter
    /// (made durable first: a crash may leave bits without keys, never
    /// keys without bits), and commits.
    pub fn finish(mut self) -> Result<()> {
        let cache = self.cache;
        cache.guard("absorbing index objects", || {
            if !self.spilled.is_empty() && !self.run.is_empty() {
                self.spill()?;
            }
            let path = cache.filter_path();
            let current = cache.current_filter();
            let had = self.tx.open_table(BLOBS)?.len()?;
            let needed = had + self.added;
            // The filter the keys go to: the current one while it has room,
            // else a new one twice the size (filled here from the keys
            // when the table was empty, else from the whole table below).
            // A failure of the filter's file (disk full, say) does not fail
            // the sync: the filter is dropped instead, and built again when
            // the cache is next opened.
            let mut filter_err: Option<Error> = None;
            let mut built = None;
            let target = match (&path, &current) {
                (None, _) => None,
                (Some(_), Some(f)) if needed <= f.capacity() => Some(f.clone()),
                (Some(p), _) => {
                    let tmp = p.with_extension("filter.new");
                    match filter::Filter::create(&tmp, 2 * needed) {
                        Ok(f) => {
                            let f = std::sync::Arc::new(f);
                            built = Some((f.clone(), tmp));
                            Some(f)
                        }
                        Err(e) => {
                            filter_err = Some(e);
                            None
                        }
                    }
                }
            };
            {
                let mut writer = target.as_ref().filter(|_| built.is_none() || had == 0).map(|f| f.writer());
                let mut blobs = self.tx.open_table(BLOBS)?;
                let mut displaced = self.tx.open_table(DISPLACED)?;
                let mut put = |k: &[u8; 33], rank: u8, v: &Loc| -> Result<()> {
                    if let Some(w) = writer.as_mut().filter(|_| filter_err.is_none()) {
                        if let Err(e) = w.add(k) {
                            filter_err = Some(e);
                        }
                    }
                    // Live entries replace what is there; a marked pack's
                    // only fill gaps (so a blob with a live copy is read
                    // from it). The pack whose entry is not the one kept
                    // is displaced.
                    let new = ordinal_of(v);
                    let loser = if rank == 0 {
                        blobs.insert(k, v)?.map(|old| ordinal_of(&old.value())).filter(|o| *o != new)
                    } else {
                        let there = blobs.get(k)?.map(|cur| ordinal_of(&cur.value()));
                        match there {
                            None => {
                                blobs.insert(k, v)?;
                                None
                            }
                            Some(o) if o == new => None,
                            Some(_) => Some(new),
                        }
                    };
                    if let Some(o) = loser {
                        displaced.insert(o, ())?;
                    }
                    Ok(())
                };
                if self.spilled.is_empty() {
                    self.run.sort_unstable_by(item_order);
                    for (k, rank, v) in &self.run {
                        put(k, *rank, v)?;
                    }
                } else {
                    merge(std::mem::take(&mut self.spilled), &mut put)?;
                }
                if let Some(w) = writer {
                    if let Err(e) = w.finish() {
                        filter_err.get_or_insert(e);
                    }
                } else if let (Some((f, _)), None) = (&built, &filter_err) {
                    let mut w = f.writer();
                    for r in blobs.iter()? {
                        if let Err(e) = w.add(&r?.0.value()) {
                            filter_err = Some(e);
                            break;
                        }
                    }
                    if let Err(e) = w.finish() {
                        filter_err.get_or_insert(e);
                    }
                }
            }
            if let (Some(f), None) = (&target, &filter_err) {
                if let Err(e) = f.sync() {
                    filter_err = Some(e);
                }
            }
            if let (Some((f, tmp)), Some(p), None) = (&built, &path, &filter_err) {
                match filter::install(tmp, p) {
                    Ok(()) => {
                        self.tx.open_table(FILTER_TAG)?.insert("tag", f.tag())?;
                    }
                    Err(e) => filter_err = Some(e),
                }
            }
            if filter_err.is_some() {
                // No filter names this cache's keys any more.
                self.tx.open_table(FILTER_TAG)?.remove("tag")?;
            }
            self.tx.commit()?;
            if let Some(e) = filter_err {
                eprintln!("warning: {e}; the index cache goes without its filter until it is next opened");
                *cache.filter.lock().unwrap_or_else(|p| p.into_inner()) = None;
            } else if let Some((f, _)) = built {
                *cache.filter.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
            }
            Ok(())
        })
    }
}

/// What the merge hands each entry to, in order.
type Put<'p> = dyn FnMut(&[u8; 33], u8, &Loc) -> Result<()> + 'p;

/// Reads the spilled runs back in key order (then rank), each entry once.
fn merge(runs: Vec<std::fs::File>, put: &mut Put<'_>) -> Result<()> {
    let io = |e: std::io::Error| Error::new(ErrorKind::Io, format!("index cache: reading a sync's scratch file: {e}"));
    let mut readers: Vec<BufReader<std::fs::File>> =
        runs.into_iter().map(|f| BufReader::with_capacity(RUN_READ_BUFFER, f)).collect();
    let next = |r: &mut BufReader<std::fs::File>| -> Result<Option<Item>> {
        let mut b = [0u8; ITEM_BYTES];
        match r.read_exact(&mut b) {
            Ok(()) => {
                let k: [u8; 33] = b[..33].try_into().expect("33 bytes");
                let v: Loc = b[34..].try_into().expect("20 bytes");
                Ok(Some((k, b[33], v)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(io(e)),
        }
    };
    // A min-heap of each run's next entry.
    let mut heap = BinaryHeap::new();
    for (i, r) in readers.iter_mut().enumerate() {
        if let Some(item) = next(r)? {
            heap.push(Head { item, run: i });
        }
    }
    while let Some(Head { item: (k, rank, v), run }) = heap.pop() {
        put(&k, rank, &v)?;
        if let Some(item) = next(&mut readers[run])? {
            heap.push(Head { item, run });
        }
    }
    Ok(())
}

/// A run's next entry in the merge's heap, which pops the smallest
/// ([`item_order`], then the run's number).
struct Head {
    item: Item,
    run: usize,
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        item_order(&other.item, &self.item).then(other.run.cmp(&self.run))
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Head {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn items() -> impl Strategy<Value = Vec<Item>> {
        // Few byte values, so that keys often share their first 8 bytes
        // and differ only after them.
        let key = proptest::collection::vec(0u8..3, 33).prop_map(|v| <[u8; 33]>::try_from(v).unwrap());
        proptest::collection::vec((key, 0u8..2, any::<[u8; 20]>()), 0..200)
    }

    proptest! {
        /// The order used to sort and merge runs is (key, rank)'s.
        #[test]
        fn item_order_is_key_then_rank(mut a in items()) {
            let mut b = a.clone();
            a.sort_by(item_order);
            b.sort_by_key(|e| (e.0, e.1));
            let ka: Vec<_> = a.iter().map(|e| (e.0, e.1)).collect();
            let kb: Vec<_> = b.iter().map(|e| (e.0, e.1)).collect();
            prop_assert_eq!(ka, kb);
        }

        /// The heap pops runs' heads in that order.
        #[test]
        fn heads_pop_smallest_first(a in items()) {
            let mut heap: BinaryHeap<Head> = a.iter().enumerate().map(|(run, item)| Head { item: *item, run }).collect();
            let mut popped = Vec::new();
            while let Some(h) = heap.pop() {
                popped.push((h.item.0, h.item.1, h.run));
            }
            let mut want: Vec<_> = a.iter().enumerate().map(|(run, e)| (e.0, e.1, run)).collect();
            want.sort();
            prop_assert_eq!(popped, want);
        }
    }
}
