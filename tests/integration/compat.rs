//! Format test vectors: builds every on-disk encoding from fixed inputs with
//! the library's public API and compares it, byte for byte, with
//! `format-spec/vectors.json` (explained in `format-spec/vectors.md`).
//!
//! To regenerate the file after a deliberate format change (which also needs
//! a new format version, see format-spec/README.md):
//!
//! ```text
//! CAIRN_WRITE_VECTORS=1 cargo test --test integration compat
//! ```

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use cairn::chunker::Chunker;
use cairn::crypto::aead::ObjectType;
use cairn::crypto::kdf::{derive_kek, unwrap, wrap_with};
use cairn::crypto::MasterKey;
use cairn::format::config::ChunkerParams;
use cairn::format::index::{self, IndexPack};
use cairn::format::keyfile::{KdfParams, KeyFile};
use cairn::format::pack::{decode_header, decode_trailer, TRAILER_LEN};
use cairn::format::tree::{self, Content, Node, NodeKind};
use cairn::id::{BlobKind, ChunkId};
use cairn::pack::{blob_from_pack_bytes, PackWriter};
use cairn::seal;

const STORED: &str = include_str!("../../format-spec/vectors.json");
const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/format-spec/vectors.json");

const PASSWORD: &str = "cairn test vector";
const KDF: KdfParams = KdfParams { m_cost_kib: 64, t_cost: 1, p_cost: 1 };
const KEY_SALT: [u8; 32] = [0x11; 32];
const KEY_NONCE: [u8; 24] = [0x22; 24];
const KEY_CREATED: i64 = 1_700_000_000;
const KEY_LABEL: &str = "vector@cairn";
const SEAL_NONCE: [u8; 24] = [0x33; 24];
const HEADER_NONCE: [u8; 24] = [0x44; 24];
const HELLO: &[u8] = b"hello, cairn";
const CHUNKER: ChunkerParams =
    ChunkerParams { min_size: 4096, avg_size: 16384, max_size: 65536, seed: 0x0123_4567_89ab_cdef };
const CHUNKER_INPUT_LEN: u32 = 1 << 20;
/// The zstd this crate links (zstd-sys 2.1.2+zstd.1.5.7); only recorded, to
/// explain a failure of the zstd-dependent vectors.
const ZSTD_AT_GENERATION: &str = "1.5.7";

fn master() -> MasterKey {
    let mut b = [0u8; 64];
    for (i, x) in b.iter_mut().enumerate() {
        *x = i as u8;
    }
    MasterKey::from_bytes(&b)
}

/// 4096 bytes of `a`: compresses, so it is stored with zstd.
fn a4096() -> Vec<u8> {
    vec![b'a'; 4096]
}

/// The chunker input: byte i = (i * 2654435761 >> 13) as u8, u32 arithmetic.
fn chunker_input() -> Vec<u8> {
    (0..CHUNKER_INPUT_LEN).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

/// A second chunker input that is not periodic: xorshift64 from
/// xorshift64 (13, 7, 17) from 0x9e3779b97f4a7c15, one byte per step,
/// byte = bits 24..32 of the state (vectors.md): `common::noise` with seed 1.
fn chunker_noise() -> Vec<u8> {
    crate::common::noise(CHUNKER_INPUT_LEN as usize, 1)
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The two tree nodes of the tree vector (sorted by name).
fn tree_nodes(mk: &MasterKey) -> Vec<Node> {
    vec![
        Node {
            name: b"hello.txt".to_vec(),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 1000,
            gid: 100,
            user: "alice".into(),
            group: "users".into(),
            mtime_ns: 1_700_000_000_123_456_789,
            ctime_ns: 1_700_000_000_500_000_000,
            size: HELLO.len() as u64,
            inode: 4242,
            device: 0x803,
            nlink: 1,
            content: Content::File(vec![ChunkId(mk.blob_id(HELLO))]),
            xattrs: vec![(b"user.note".to_vec(), b"hi".to_vec())],
        },
        Node {
            name: b"link".to_vec(),
            kind: NodeKind::Symlink,
            mode: 0o777,
            uid: 1000,
            gid: 100,
            user: "alice".into(),
            group: "users".into(),
            mtime_ns: 1_700_000_200_000_000_000,
            ctime_ns: 1_700_000_200_000_000_000,
            size: 9,
            inode: 4243,
            device: 0x803,
            nlink: 1,
            content: Content::Symlink(b"hello.txt".to_vec()),
            xattrs: vec![],
        },
    ]
}

fn node_json(n: &Node) -> Value {
    let content = match &n.content {
        Content::File(c) => json!({ "chunks": c.iter().map(|c| c.to_hex()).collect::<Vec<_>>() }),
        Content::Symlink(t) => json!({ "target": String::from_utf8_lossy(t) }),
        Content::Dir(t) => json!({ "subtree": t.to_hex() }),
        Content::Device(d) => json!({ "rdev": d }),
        Content::None => json!({}),
    };
    json!({
        "name": n.name_lossy(),
        "kind": n.kind,
        "kind_code": n.kind as u8,
        "mode": format!("{:o}", n.mode),
        "uid": n.uid, "gid": n.gid, "user": n.user, "group": n.group,
        "mtime_ns": n.mtime_ns, "ctime_ns": n.ctime_ns,
        "size": n.size, "inode": n.inode, "device": n.device, "nlink": n.nlink,
        "content": content,
        "xattrs": n.xattrs.iter().map(|(k, v)| json!([String::from_utf8_lossy(k), String::from_utf8_lossy(v)])).collect::<Vec<_>>(),
    })
}

/// Builds every vector from the fixed inputs, checking along the way that
/// each one also reads back.
fn build() -> Value {
    let mk = master();

    // 1. Key file.
    let kf = wrap_with(&mk, PASSWORD.as_bytes(), KDF, KEY_SALT, KEY_NONCE, KEY_CREATED, KEY_LABEL.into())
        .expect("wrap_with");
    let kf_bytes = kf.encode();
    let back = KeyFile::decode(&kf_bytes).expect("key file decodes");
    assert_eq!(back, kf, "key file does not round-trip");
    let opened = unwrap(&back, PASSWORD.as_bytes()).expect("unwrap with the password");
    assert_eq!(opened.to_bytes(), mk.to_bytes(), "unwrap returned another master key");
    assert!(unwrap(&back, b"not the password").is_err(), "a wrong password opened the key file");
    let kek = derive_kek(PASSWORD.as_bytes(), &KEY_SALT, &KDF).expect("argon2id");

    // 2. Chunk ids.
    let chunk_ids: Vec<Value> = [&b""[..], HELLO]
        .iter()
        .map(|d| json!({ "input_utf8": String::from_utf8_lossy(d), "id": hex::encode(mk.blob_id(d)) }))
        .collect();

    // 3. Sealed blobs.
    let a = a4096();
    let sealed_hello = seal::seal_with_nonce(&mk.enc, ObjectType::DataBlob, HELLO, None, &SEAL_NONCE);
    let sealed_a = seal::seal_with_nonce(&mk.enc, ObjectType::DataBlob, &a, Some(3), &SEAL_NONCE);
    for (s, plain) in [(&sealed_hello, HELLO), (&sealed_a, &a[..])] {
        let o = seal::open(&mk.enc, ObjectType::DataBlob, s, plain.len()).expect("seal::open");
        assert_eq!(o, plain, "seal::open did not return the input");
    }

    // 4. Chunk boundaries, of a periodic input (the one the brief names)
    // and of a noisy one that exercises the cut-point search.
    let chunker = Chunker::new(&CHUNKER).expect("chunker parameters");
    let chunk_vectors: Vec<Value> = [
        ("periodic", "1048576 bytes; byte i = ((i * 2654435761) mod 2^32) >> 13, low 8 bits", chunker_input()),
        (
            "xorshift",
            "1048576 bytes of xorshift64 (x ^= x << 13; x ^= x >> 7; x ^= x << 17) \
             from x = 0x9e3779b97f4a7c15, stepping before each byte; byte = (x >> 24) & 0xff",
            chunker_noise(),
        ),
    ]
    .into_iter()
    .map(|(name, desc, input)| {
        let lengths: Vec<usize> = chunker.stream(&input[..]).map(|c| c.expect("chunking a slice").len()).collect();
        assert_eq!(lengths.iter().sum::<usize>(), input.len(), "chunks do not cover the input");
        json!({
            "name": name,
            "input_desc": desc,
            "input_len": input.len(),
            "input_sha256": sha256_hex(&input),
            "lengths": lengths,
        })
    })
    .collect();

    // 5. Tree.
    let nodes = tree_nodes(&mk);
    let tree_bytes = tree::encode(&nodes);
    assert_eq!(tree::decode(&tree_bytes).expect("tree decodes"), nodes, "tree does not round-trip");

    // 6. Pack.
    let mut w = PackWriter::new(1024);
    w.add(BlobKind::Data, mk.blob_id(HELLO), &sealed_hello, HELLO.len() as u32);
    w.add(BlobKind::Data, mk.blob_id(&a), &sealed_a, a.len() as u32);
    let pack = w.finish_with_nonce(&mk.enc, &HEADER_NONCE);
    assert_eq!(pack.id.to_hex(), sha256_hex(&pack.bytes), "pack id is not the SHA-256 of its bytes");
    // Read it back the way format-spec/05-packs.md says: trailer, header, blobs.
    let len = pack.bytes.len();
    let hlen = decode_trailer(&pack.bytes[len - TRAILER_LEN..], len as u64).expect("trailer") as usize;
    let header_at = len - TRAILER_LEN - hlen;
    let header = seal::open(&mk.enc, ObjectType::PackHeader, &pack.bytes[header_at..len - TRAILER_LEN], 1 << 20)
        .expect("pack header opens");
    let entries = decode_header(&header).expect("pack header decodes");
    assert_eq!(entries, pack.entries, "pack header does not list what was added");
    assert_eq!(blob_from_pack_bytes(&mk, &pack.bytes, &entries[0]).expect("blob 0"), HELLO);
    assert_eq!(blob_from_pack_bytes(&mk, &pack.bytes, &entries[1]).expect("blob 1"), a);

    // 7. Index.
    let ip = vec![IndexPack { id: pack.id, blobs: pack.entries.clone() }];
    let index_plain = index::encode(&ip);
    assert_eq!(index::decode(&index_plain).expect("index decodes"), ip, "index does not round-trip");

    json!({
        "format_version": cairn::format::FORMAT_VERSION,
        "generated_with": { "zstd": ZSTD_AT_GENERATION },
        "master_key": {
            "enc": hex::encode(mk.enc),
            "id": hex::encode(mk.id),
        },
        "key_file": {
            "password_utf8": PASSWORD,
            "m_cost_kib": KDF.m_cost_kib, "t_cost": KDF.t_cost, "p_cost": KDF.p_cost,
            "salt": hex::encode(KEY_SALT),
            "nonce": hex::encode(KEY_NONCE),
            "created": KEY_CREATED,
            "label": KEY_LABEL,
            "kek": hex::encode(&kek[..]),
            "associated_data": hex::encode(kf.associated_data()),
            "bytes": hex::encode(&kf_bytes),
            "object_name": format!("keys/{}", sha256_hex(&kf_bytes)),
        },
        "chunk_ids": chunk_ids,
        "sealed": [
            {
                "name": "hello-raw",
                "object_type": ObjectType::DataBlob as u8,
                "zstd_level": null,
                "plaintext": hex::encode(HELLO),
                "nonce": hex::encode(SEAL_NONCE),
                "sealed": hex::encode(&sealed_hello),
            },
            {
                "name": "a4096-zstd3",
                "object_type": ObjectType::DataBlob as u8,
                "zstd_level": 3,
                "plaintext_desc": "4096 bytes of 0x61 ('a')",
                "nonce": hex::encode(SEAL_NONCE),
                "sealed": hex::encode(&sealed_a),
            },
        ],
        "chunker": {
            "min_size": CHUNKER.min_size, "avg_size": CHUNKER.avg_size, "max_size": CHUNKER.max_size,
            "seed": format!("{:#018x}", CHUNKER.seed),
            "inputs": chunk_vectors,
        },
        "tree": {
            "nodes": nodes.iter().map(node_json).collect::<Vec<_>>(),
            "encoding": hex::encode(&tree_bytes),
            "tree_id": hex::encode(mk.blob_id(&tree_bytes)),
        },
        "pack": {
            "header_nonce": hex::encode(HEADER_NONCE),
            "entries": pack.entries.iter().map(|e| json!({
                "kind": e.kind as u8, "id": hex::encode(e.id), "offset": e.offset,
                "length": e.length, "raw_length": e.raw_length,
            })).collect::<Vec<_>>(),
            "header_plaintext": hex::encode(&header),
            "bytes": hex::encode(&pack.bytes),
            "id": pack.id.to_hex(),
            "object_name": cairn::pack::object_name(&pack.id),
        },
        "index": {
            "plaintext": hex::encode(&index_plain),
        },
    })
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[k],
    })
}

/// Compares one field; `why` says what a mismatch most likely means.
fn check(stored: &Value, built: &Value, path: &str, why: &str) {
    let s = get(stored, path);
    let b = get(built, path);
    assert!(!s.is_null(), "format-spec/vectors.json has no `{path}`");
    assert_eq!(
        s, b,
        "test vector `{path}` differs from format-spec/vectors.json \
         (left: stored, right: built now): {why}"
    );
}

const FORMAT_CHANGED: &str = "the on-disk format changed; that needs a new format version and \
     a format-spec update, not just regenerated vectors";

#[test]
fn format_vectors() {
    let built = build();
    if std::env::var_os("CAIRN_WRITE_VECTORS").is_some_and(|v| v == "1") {
        let text = serde_json::to_string_pretty(&built).expect("json") + "\n";
        std::fs::write(PATH, text).expect("write format-spec/vectors.json");
        eprintln!("wrote {PATH}");
        return;
    }
    let stored: Value = serde_json::from_str(STORED).expect("format-spec/vectors.json is JSON");
    let mk = master();

    // Inputs, so the file stays a faithful description of this test.
    for p in [
        "format_version",
        "master_key",
        "key_file.password_utf8",
        "key_file.m_cost_kib",
        "key_file.t_cost",
        "key_file.p_cost",
        "key_file.salt",
        "key_file.nonce",
        "key_file.created",
        "key_file.label",
        "sealed.0.plaintext",
        "sealed.0.nonce",
        "sealed.1.nonce",
        "chunker.min_size",
        "chunker.avg_size",
        "chunker.max_size",
        "chunker.seed",
        "chunker.inputs.0.input_len",
        "chunker.inputs.0.input_sha256",
        "chunker.inputs.1.input_len",
        "chunker.inputs.1.input_sha256",
        "tree.nodes",
        "pack.header_nonce",
    ] {
        check(&stored, &built, p, "the test's fixed inputs no longer match the file");
    }

    // Outputs that do not involve zstd.
    for p in [
        "key_file.kek",
        "key_file.associated_data",
        "key_file.bytes",
        "key_file.object_name",
        "chunk_ids",
        "sealed.0.sealed",
        "chunker.inputs.0.lengths",
        "chunker.inputs.1.lengths",
        "tree.encoding",
        "tree.tree_id",
    ] {
        check(&stored, &built, p, FORMAT_CHANGED);
    }

    // The zstd-compressed blob. zstd's output is deterministic for one zstd
    // version but may change between versions, which is not a format change:
    // any zstd frame that decompresses is valid.
    let stored_a = hex::decode(get(&stored, "sealed.1.sealed").as_str().expect("hex string")).expect("hex");
    let still_opens = seal::open(&mk.enc, ObjectType::DataBlob, &stored_a, 4096).is_ok_and(|p| p == a4096());
    assert!(still_opens, "the stored zstd vector `sealed.1.sealed` no longer opens to its input: {FORMAT_CHANGED}");
    let zstd_note = format!(
        "the stored vector still opens to the same 4096 bytes, so this is most likely a zstd \
         library version change (vectors were generated with zstd {ZSTD_AT_GENERATION}), not a \
         format change: zstd's compressed bytes differ between versions. Check Cargo.lock's \
         zstd-sys, then regenerate with CAIRN_WRITE_VECTORS=1 and review the diff"
    );
    check(&stored, &built, "sealed.1.sealed", &zstd_note);

    // The pack holds the zstd blob and a header sealed with zstd level 1;
    // the index names the pack by its hash.
    let pack_note = format!("if `sealed.1.sealed` matched, {FORMAT_CHANGED}; a zstd change would have failed earlier");
    for p in ["pack.entries", "pack.header_plaintext", "pack.bytes", "pack.id", "pack.object_name", "index.plaintext"] {
        check(&stored, &built, p, &pack_note);
    }
}
