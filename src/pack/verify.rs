//! Verifies a pack as its bytes stream past, holding one blob at a time.
//!
//! `check --read-data` reads every pack. Holding each whole in memory
//! would cost a pack (tens of MiB) per reader; [`PackVerifier`] instead
//! takes the pack's bytes in order, in pieces of any size, and checks:
//! - the SHA-256 of all the bytes against the pack's name;
//! - the magic;
//! - each blob the index expects there: it opens (authenticates,
//!   decompresses) and hashes to its id;
//! - the sealed header at the end, and that it lists exactly the entries
//!   the index expects.
//!
//! Memory: the largest expected blob, plus the bytes after the last expected
//! blob (the header and trailer). With no expected entries (a pack no index
//! names) that is the whole pack: such packs are rare (left by an
//! interrupted backup) and their header is all there is to check.
//! No I/O happens here; the caller feeds the bytes.

use sha2::{Digest, Sha256};

use crate::crypto::MasterKey;
use crate::error::ResultExt;
use crate::format::pack::{self as fmt, PackEntry};
use crate::id::{BlobId, BlobKind, PackId};

/// What one pack's verification found.
#[derive(Debug, Default)]
pub struct Verdict {
    /// One line per problem, each naming the pack.
    pub problems: Vec<String>,
    /// Expected blobs that did not read back intact.
    pub bad: Vec<BlobId>,
    /// Expected blobs opened (intact or not).
    pub blobs_read: u64,
}

pub struct PackVerifier<'k> {
    key: &'k MasterKey,
    id: PackId,
    /// Sorted by offset, without duplicates.
    expected: Vec<PackEntry>,
    /// The next entry of `expected` to verify.
    next: usize,
    /// Bytes from here on are kept for the header: the end of the last
    /// expected blob.
    tail_start: u64,
    /// Bytes consumed so far.
    pos: u64,
    /// Bytes `[buf_start, pos)` still needed.
    buf: Vec<u8>,
    buf_start: u64,
    magic: Vec<u8>,
    hasher: Sha256,
    verdict: Verdict,
    /// The unit opened last (its offset, its plaintext or why not): the
    /// blobs of a group are verified one after another from one opening.
    unit: Option<(fmt::UnitKey, std::result::Result<Vec<u8>, crate::error::Error>)>,
}

impl<'k> PackVerifier<'k> {
    /// `expected`: the entries the index lists for this pack (any order,
    /// duplicates allowed).
    pub fn new(key: &'k MasterKey, id: PackId, mut expected: Vec<PackEntry>) -> Self {
        expected.sort_by_key(|e| (e.offset, e.length, e.inner, e.kind as u8, e.id));
        expected.dedup();
        let tail_start = expected.iter().map(|e| e.end()).max().unwrap_or(fmt::MAGIC.len() as u64);
        PackVerifier {
            key,
            id,
            expected,
            next: 0,
            tail_start,
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
            magic: Vec::with_capacity(fmt::MAGIC.len()),
            hasher: Sha256::new(),
            verdict: Verdict::default(),
            unit: None,
        }
    }

    /// The first byte still needed: the next expected blob's, or the tail's.
    fn keep_from(&self) -> u64 {
        match self.expected.get(self.next) {
            Some(e) => (e.offset as u64).min(self.tail_start),
            None => self.tail_start,
        }
    }

    /// Takes the next piece of the pack.
    pub fn feed(&mut self, piece: &[u8]) {
        self.hasher.update(piece);
        if self.magic.len() < fmt::MAGIC.len() {
            let k = (fmt::MAGIC.len() - self.magic.len()).min(piece.len());
            self.magic.extend_from_slice(&piece[..k]);
        }
        let keep = self.keep_from();
        let end = self.pos + piece.len() as u64;
        if end > keep {
            let skip = keep.saturating_sub(self.pos) as usize;
            if self.buf.is_empty() {
                self.buf_start = self.pos + skip as u64;
            }
            self.buf.extend_from_slice(&piece[skip..]);
        }
        self.pos = end;
        while let Some(e) = self.expected.get(self.next).copied() {
            if e.end() > self.pos {
                break;
            }
            self.verify_blob(&e);
            self.next += 1;
        }
        let keep = self.keep_from();
        if keep > self.buf_start {
            let k = ((keep - self.buf_start) as usize).min(self.buf.len());
            self.buf.drain(..k);
            self.buf_start += k as u64;
        }
    }

    fn verify_blob(&mut self, e: &PackEntry) {
        self.verdict.blobs_read += 1;
        let sealed = (e.offset as u64)
            .checked_sub(self.buf_start)
            .and_then(|from| self.buf.get(from as usize..from as usize + e.length as usize));
        if self.unit.as_ref().is_none_or(|(at, _)| *at != e.unit_key()) {
            let opened = match sealed {
                Some(sealed) => super::open_unit(self.key, e, sealed),
                None => Err(crate::error::Error::corrupt("blob lies outside the pack")),
            };
            self.unit = Some((e.unit_key(), opened));
        }
        let result = match &self.unit {
            Some((_, Ok(unit))) => super::blob_in_unit(self.key, e, unit).map(drop),
            Some((_, Err(err))) => Err(crate::error::Error::new(err.kind(), err.to_string())),
            None => Err(crate::error::Error::corrupt("blob lies outside the pack")),
        };
        if let Err(err) = result {
            let kind = if e.kind == BlobKind::Tree { "tree" } else { "chunk" };
            self.verdict.problems.push(format!("pack {}: {kind} {}: {err}", self.id, hex::encode(e.id)));
            self.verdict.bad.push(BlobId { kind: e.kind, id: e.id });
        }
    }

    /// The header in `tail` (the pack's bytes from `tail_from` to its end),
    /// or `None` if it does not lie wholly there.
    fn header(&self, tail: &[u8], tail_from: u64) -> Option<crate::error::Result<Vec<PackEntry>>> {
        let tlen = fmt::TRAILER_LEN;
        if tail.len() < tlen {
            return None;
        }
        let (hlen, layout) = match fmt::decode_trailer_any(&tail[tail.len() - tlen..], self.pos) {
            Ok((h, layout)) => (h as u64, layout),
            Err(e) => return Some(Err(e).context(format!("pack {}", self.id))),
        };
        if fmt::PackLayout::from_magic(&self.magic) != Some(layout) {
            let msg = format!("pack {}: its magic and its trailer name different layouts", self.id);
            return Some(Err(crate::error::Error::corrupt(msg)));
        }
        let start = (self.pos - tlen as u64).checked_sub(hlen)?;
        let from = start.checked_sub(tail_from)? as usize;
        Some(super::open_header(&self.key.enc, &self.id, layout, &tail[from..tail.len() - tlen], start))
    }

    /// Ends the pack: checks its name, magic, header, and any expected blob
    /// the bytes did not reach.
    pub fn finish(mut self) -> Verdict {
        let id = self.id;
        let digest: [u8; 32] = self.hasher.finalize_reset().into();
        if digest != id.0 {
            self.verdict.problems.push(format!("pack {id} is damaged: its content does not match its name"));
        }
        while let Some(e) = self.expected.get(self.next).copied() {
            self.verify_blob(&e);
            self.next += 1;
        }
        if fmt::PackLayout::from_magic(&self.magic).is_none() {
            self.verdict.problems.push(format!("pack {id} does not start with the pack magic"));
        } else {
            let tail_from = self.tail_start.max(self.buf_start);
            let tail = tail_from.checked_sub(self.buf_start).and_then(|k| self.buf.get(k as usize..)).unwrap_or(&[]);
            match self.header(tail, tail_from) {
                Some(Ok(header)) => {
                    let key = |e: &PackEntry| (e.kind as u8, e.id, e.offset, e.inner);
                    let mut h: Vec<_> = header.iter().map(key).collect();
                    let mut x: Vec<_> = self.expected.iter().map(key).collect();
                    h.sort();
                    x.sort();
                    x.dedup();
                    if !x.is_empty() && h != x {
                        self.verdict.problems.push(format!("pack {id}: header does not agree with the index"));
                    }
                }
                Some(Err(e)) => self.verdict.problems.push(e.to_string()),
                None => self.verdict.problems.push(format!(
                    "pack {id}: no header follows the last blob the index lists (the pack is cut short, or the index is wrong)"
                )),
            }
        }
        self.verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::aead::ObjectType;
    use crate::pack::{blob_from_pack_bytes, header_from_bytes, PackWriter};
    use crate::seal;
    use proptest::prelude::*;

    fn pack(mk: &MasterKey, blobs: &[Vec<u8>]) -> crate::pack::FinishedPack {
        let mut w = PackWriter::new(1 << 16);
        for b in blobs {
            let sealed = seal::seal(&mk.enc, ObjectType::DataBlob, b, Some(3));
            w.add(BlobKind::Data, mk.blob_id(b), &sealed, b.len() as u32);
        }
        w.finish(&mk.enc)
    }

    /// A layout-2 pack: the blobs in groups of up to three, every fourth
    /// group's first blob alone.
    fn pack_2(mk: &MasterKey, blobs: &[Vec<u8>]) -> crate::pack::FinishedPack {
        let mut w = PackWriter::with_layout(fmt::PackLayout::V2, 1 << 16);
        for (i, g) in blobs.chunks(3).enumerate() {
            if i % 4 == 3 {
                let sealed = seal::seal(&mk.enc, ObjectType::DataBlob, &g[0], Some(3));
                w.add(BlobKind::Data, mk.blob_id(&g[0]), &sealed, g[0].len() as u32);
                continue;
            }
            let plain = fmt::encode_group(g);
            let sealed = seal::seal(&mk.enc, ObjectType::DataGroup, &plain, Some(3));
            let list: Vec<([u8; 32], u32)> = g.iter().map(|b| (mk.blob_id(b), b.len() as u32)).collect();
            w.add_group(BlobKind::Data, &list, &sealed);
        }
        w.finish(&mk.enc)
    }

    fn verify_in_pieces(mk: &MasterKey, id: PackId, bytes: &[u8], expected: &[PackEntry], piece: usize) -> Verdict {
        let mut v = PackVerifier::new(mk, id, expected.to_vec());
        for p in bytes.chunks(piece.max(1)) {
            v.feed(p);
        }
        v.finish()
    }

    /// What reading the pack whole finds, for comparison.
    fn whole(mk: &MasterKey, id: PackId, bytes: &[u8], expected: &[PackEntry]) -> (bool, Vec<[u8; 32]>) {
        let header_ok = match header_from_bytes(&mk.enc, &id, bytes) {
            Ok(h) => {
                let mut a: Vec<_> = h.iter().map(|e| (e.id, e.offset)).collect();
                let mut b: Vec<_> = expected.iter().map(|e| (e.id, e.offset)).collect();
                a.sort();
                b.sort();
                b.dedup();
                a == b
            }
            Err(_) => false,
        };
        let bad = expected.iter().filter(|e| blob_from_pack_bytes(mk, bytes, e).is_err()).map(|e| e.id).collect();
        (header_ok, bad)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// In any piece size, a streamed pack gets the verdict of the
        /// whole-pack reading: clean packs pass, and a flipped byte is
        /// found and pinned to the blob (or header) that holds it.
        #[test]
        fn streamed_verdict_matches_whole_reading(
            blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..4000), 1..12),
            piece in 1usize..9000,
            flip in proptest::option::of(any::<proptest::sample::Index>()),
            layout_2 in any::<bool>(),
        ) {
            let mk = MasterKey::generate();
            let p = if layout_2 { pack_2(&mk, &blobs) } else { pack(&mk, &blobs) };
            let mut bytes = p.bytes.to_vec();
            let v = verify_in_pieces(&mk, p.id, &bytes, &p.entries, piece);
            prop_assert!(v.problems.is_empty(), "{:?}", v.problems);
            prop_assert_eq!(v.blobs_read, p.entries.len() as u64);
            if let Some(i) = flip {
                let at = i.index(bytes.len());
                bytes[at] ^= 0x40;
                let v = verify_in_pieces(&mk, p.id, &bytes, &p.entries, piece);
                prop_assert!(v.problems.iter().any(|l| l.contains("does not match its name")));
                let (header_ok, bad) = whole(&mk, p.id, &bytes, &p.entries);
                let got: Vec<[u8; 32]> = v.bad.iter().map(|b| b.id).collect();
                prop_assert_eq!(got, bad);
                let header_problem = v.problems.iter().any(|l| !l.contains("does not match its name") && !l.contains(": chunk "));
                prop_assert_eq!(header_problem, !header_ok, "{:?}", v.problems);
            }
        }
    }

    /// Found by the fuzz target: an index that gives one offset two
    /// lengths. The unit opened for one entry is not reused for the other:
    /// the wrong one is bad, as reading the pack whole finds.
    #[test]
    fn one_offset_with_two_lengths_is_two_readings() {
        let mk = MasterKey::generate();
        let p = pack(&mk, &[vec![1; 500], vec![2; 700]]);
        let mut wrong = p.entries[0];
        wrong.length += 1;
        let expected = vec![p.entries[0], wrong, p.entries[1]];
        let v = verify_in_pieces(&mk, p.id, &p.bytes, &expected, 97);
        let (_, bad) = whole(&mk, p.id, &p.bytes, &expected);
        assert_eq!(bad, vec![wrong.id]);
        assert_eq!(v.bad.iter().map(|b| b.id).collect::<Vec<_>>(), bad);
    }

    #[test]
    fn memory_holds_a_blob_not_the_pack() {
        let mk = MasterKey::generate();
        let blobs: Vec<Vec<u8>> =
            (0..40u32).map(|i| (0..50_000u32).map(|j| (i * 7 + j * 13) as u8).collect()).collect();
        let p = pack(&mk, &blobs);
        let mut v = PackVerifier::new(&mk, p.id, p.entries.clone());
        let mut most = 0;
        for piece in p.bytes.chunks(4096) {
            v.feed(piece);
            most = most.max(v.buf.len());
        }
        let largest = p.entries.iter().map(|e| e.length as usize).max().unwrap();
        assert!(most <= largest + 4096, "held {most} bytes; largest blob {largest}, pack {}", p.bytes.len());
        assert!(v.finish().problems.is_empty());
    }

    #[test]
    fn truncated_pack_names_the_missing_blobs() {
        let mk = MasterKey::generate();
        let blobs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 3000]).collect();
        let p = pack(&mk, &blobs);
        let cut = p.entries[3].offset as usize + 10;
        let v = verify_in_pieces(&mk, p.id, &p.bytes[..cut], &p.entries, 1000);
        let bad: Vec<[u8; 32]> = v.bad.iter().map(|b| b.id).collect();
        assert_eq!(bad, vec![p.entries[3].id, p.entries[4].id]);
        assert!(v.problems.iter().any(|l| l.contains("does not match its name")), "{:?}", v.problems);
    }

    #[test]
    fn index_that_disagrees_with_the_header_is_named() {
        let mk = MasterKey::generate();
        let blobs: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 2000]).collect();
        let p = pack(&mk, &blobs);
        // The index forgets one blob: the header lists more.
        let v = verify_in_pieces(&mk, p.id, &p.bytes, &p.entries[..3], 777);
        assert_eq!(v.problems, vec![format!("pack {}: header does not agree with the index", p.id)]);
        // A pack no index names: its header alone is checked.
        let v = verify_in_pieces(&mk, p.id, &p.bytes, &[], 777);
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.blobs_read, 0);
    }
}
