//! Salvage of a damaged pack: never panics, and recovers only blobs that
//! were really in the pack (authenticated, hashing to their ids), whatever
//! the damage. The input gives the blobs, then byte edits to the pack.
#![no_main]
use std::collections::HashSet;

use cairn::crypto::aead::ObjectType;
use cairn::crypto::MasterKey;
use cairn::id::BlobKind;
use cairn::pack::{salvage, PackWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = MasterKey::from_bytes(&[5; 64]);
    let Some((&n, rest)) = data.split_first() else { return };
    let n = (n % 8) as usize + 1;
    let (content, edits) = rest.split_at(rest.len() / 2);
    let mut w = PackWriter::new(1 << 12);
    let mut ids = HashSet::new();
    for (i, c) in content.chunks((content.len() / n).max(1)).take(n).enumerate() {
        let (kind, ty) =
            if i % 2 == 0 { (BlobKind::Data, ObjectType::DataBlob) } else { (BlobKind::Tree, ObjectType::TreeBlob) };
        let sealed = cairn::seal::seal_with_nonce(&key.enc, ty, c, Some(1), &[i as u8; 24]);
        w.add(kind, key.blob_id(c), &sealed, c.len() as u32);
        ids.insert(key.blob_id(c));
    }
    let mut bytes = w.finish_with_nonce(&key.enc, &[9; 24]).bytes.to_vec();
    for e in edits.chunks(3) {
        match e {
            [a, b, x] => {
                let at = u16::from_le_bytes([*a, *b]) as usize % bytes.len();
                if *x == 0 {
                    bytes.truncate(at);
                    break;
                }
                bytes[at] ^= x;
            }
            _ => break,
        }
    }
    salvage::salvage(&key, &bytes, |b| {
        assert!(ids.contains(&b.id), "salvage invented a blob");
        assert_eq!(key.blob_id(&b.plain), b.id);
        Ok(())
    })
    .expect("the callback never fails");
});
