//! Streaming pack verification (`check --read-data`): never panics, whatever
//! the pack's bytes, the index's entries and the piece sizes; and it finds
//! exactly the blobs that reading the pack whole finds bad. The input gives
//! the blobs, edits to the pack, edits to the index entries, and the piece
//! size.
#![no_main]
use cairn::crypto::aead::ObjectType;
use cairn::crypto::MasterKey;
use cairn::id::BlobKind;
use cairn::pack::verify::PackVerifier;
use cairn::pack::{blob_from_pack_bytes, PackWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = MasterKey::from_bytes(&[5; 64]);
    let [n, piece_lo, piece_hi, rest @ ..] = data else { return };
    let n = (n % 8) as usize + 1;
    let piece = u16::from_le_bytes([*piece_lo, *piece_hi]) as usize % 5000 + 1;
    let (content, edits) = rest.split_at(rest.len() / 2);
    let mut w = PackWriter::new(1 << 12);
    for (i, c) in content.chunks((content.len() / n).max(1)).take(n).enumerate() {
        let (kind, ty) =
            if i % 2 == 0 { (BlobKind::Data, ObjectType::DataBlob) } else { (BlobKind::Tree, ObjectType::TreeBlob) };
        let sealed = cairn::seal::seal_with_nonce(&key.enc, ty, c, Some(1), &[i as u8; 24]);
        w.add(kind, key.blob_id(c), &sealed, c.len() as u32);
    }
    let p = w.finish_with_nonce(&key.enc, &[9; 24]);
    let (id, mut bytes, mut entries) = (p.id, p.bytes.to_vec(), p.entries.clone());
    let untouched = edits.is_empty();
    for e in edits.chunks(4) {
        let [what, a, b, x] = e else { break };
        let v = u16::from_le_bytes([*a, *b]);
        match what % 4 {
            // a byte of the pack flipped, or the pack cut short
            0 if !bytes.is_empty() => {
                let at = v as usize % bytes.len();
                if *x == 0 {
                    bytes.truncate(at);
                } else {
                    bytes[at] ^= x;
                }
            }
            // an index entry moved, resized, or dropped
            1 if !entries.is_empty() => {
                let i = *x as usize % entries.len();
                entries[i].offset = entries[i].offset.wrapping_add(v as u32 % 64).wrapping_sub(32);
            }
            2 if !entries.is_empty() => {
                let i = *x as usize % entries.len();
                entries[i].length = entries[i].length.wrapping_add(v as u32 % 64).wrapping_sub(32);
            }
            3 if !entries.is_empty() => {
                entries.remove(*x as usize % entries.len());
            }
            _ => {}
        }
    }
    let mut verifier = PackVerifier::new(&key, id, entries.clone());
    for p in bytes.chunks(piece) {
        verifier.feed(p);
    }
    let v = verifier.finish();
    if untouched {
        assert!(v.problems.is_empty(), "a sound pack: {:?}", v.problems);
    }
    let mut got: Vec<[u8; 32]> = v.bad.iter().map(|b| b.id).collect();
    let mut want: Vec<[u8; 32]> =
        entries.iter().filter(|e| blob_from_pack_bytes(&key, &bytes, e).is_err()).map(|e| e.id).collect();
    got.sort();
    want.sort();
    want.dedup();
    got.dedup();
    assert_eq!(got, want, "streamed and whole readings disagree on the bad blobs");
    assert!(v.bad.is_empty() || !v.problems.is_empty(), "bad blobs without a problem line");
});
