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
use cairn::format::config::Config;
use cairn::format::index::{self, Index, IndexPack, MarkedPack, RunRecord, SeenLock};
use cairn::format::keyfile::{KdfParams, KeyFile};
use cairn::format::lock::Lock;
use cairn::format::pack::{
    decode_header, decode_header_2, decode_trailer, decode_trailer_any, encode_group, PackLayout, TRAILER_LEN,
};
use cairn::format::snapshot::{Snapshot, StreamInfo, Summary};
use cairn::format::tree::{self, Content, Node, NodeKind};
use cairn::format::wal::{ClusterRecord, WalObject};
use cairn::id::{BlobKind, ChunkId, PackId, RepoId, SnapshotId, TreeId};
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

/// Nonce of every sealed metadata object of section 8 (config, snapshots,
/// lock, index objects, the sealed tree and pack header).
const OBJECT_NONCE: [u8; 24] = [0x55; 24];

fn time(s: &str) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(s).expect("an RFC 3339 time")
}

fn vector_config() -> Config {
    Config {
        version: 1,
        id: RepoId([0x66; 32]),
        chunker: CHUNKER,
        pack_size: 16 << 20,
        compression: 3,
        dump_chunker: None,
        group_compression: None,
    }
}

/// A tree snapshot with every optional field that `backup` writes.
fn vector_tree_snapshot(tree: TreeId) -> Snapshot {
    Snapshot {
        version: 1,
        time: time("2023-11-14T22:13:20.5+01:00"),
        hostname: "vector-host".into(),
        username: "alice".into(),
        paths: vec!["/home/alice/docs".into()],
        tags: vec!["daily".into()],
        parent: Some(SnapshotId([0x77; 32])),
        tree,
        partial: false,
        excludes: vec!["*.tmp".into()],
        stream: None,
        streams: vec![],
        summary: Summary {
            files_new: 1,
            files_changed: 0,
            files_unchanged: 0,
            dirs: 1,
            data_blobs: 1,
            tree_blobs: 1,
            data_added: 54,
            total_files_processed: 1,
            total_bytes_processed: HELLO.len() as u64,
            errors: vec![],
        },
        original: None,
        repaired: None,
        backup_start: time("2023-11-14T22:13:20.5+01:00"),
        backup_end: time("2023-11-14T22:13:21+01:00"),
        program_version: "cairn 0.1.0".into(),
        pg: None,
    }
}

/// A stream snapshot: `paths` is `/` + the filename, `stream` records the
/// bytes read.
fn vector_stream_snapshot(tree: TreeId) -> Snapshot {
    Snapshot {
        time: time("2023-11-15T03:00:00Z"),
        paths: vec!["/db.sql".into()],
        tags: vec![],
        parent: None,
        excludes: vec![],
        stream: Some(StreamInfo {
            filename: "db.sql".into(),
            size: HELLO.len() as u64,
            sha256: sha256_hex(HELLO),
            command: Some(vec!["pg_dump".into(), "app".into()]),
        }),
        backup_start: time("2023-11-15T03:00:00Z"),
        backup_end: time("2023-11-15T03:00:01Z"),
        ..vector_tree_snapshot(tree)
    }
}

/// A snapshot of two streams (a PostgreSQL dump source): `paths` holds
/// one `/<filename>` per stream, sorted; `streams` records each in the
/// order read, and `stream` is absent.
fn vector_streams_snapshot(tree: TreeId) -> Snapshot {
    Snapshot {
        time: time("2023-11-16T03:00:00Z"),
        paths: vec!["/app-globals.sql".into(), "/app.dump".into()],
        tags: vec![],
        parent: None,
        excludes: vec![],
        stream: None,
        streams: vec![
            StreamInfo {
                filename: "app.dump".into(),
                size: HELLO.len() as u64,
                sha256: sha256_hex(HELLO),
                command: Some(vec!["pg_dump".into(), "-Fc".into(), "-Z0".into(), "--dbname=app".into()]),
            },
            StreamInfo {
                filename: "app-globals.sql".into(),
                size: 4096,
                sha256: sha256_hex(&a4096()),
                command: Some(vec!["pg_dumpall".into(), "--globals-only".into(), "--database=app".into()]),
            },
        ],
        summary: Summary {
            files_new: 2,
            dirs: 0,
            data_blobs: 2,
            total_files_processed: 2,
            total_bytes_processed: HELLO.len() as u64 + 4096,
            ..vector_tree_snapshot(tree).summary
        },
        backup_start: time("2023-11-16T03:00:00Z"),
        backup_end: time("2023-11-16T03:00:01Z"),
        ..vector_tree_snapshot(tree)
    }
}

fn vector_lock() -> Lock {
    Lock {
        time: "2023-11-14T22:13:20+00:00".into(),
        exclusive: false,
        hostname: "vector-host".into(),
        username: "alice".into(),
        pid: 4242,
        operation: "backup".into(),
        kind: "shared".into(),
        session: hex::encode([0x88u8; 16]),
        machine_id: Some(hex::encode([0x99u8; 16])),
        boot_id: Some("87da67fc-0351-4f0d-9455-bc51a8e64213".into()),
        pid_ns: Some(4_026_531_836),
        start_time: Some(123_456),
    }
}

/// An index object of version 2: one live pack, two marked packs (one with
/// its entries, one that no index named: no entries), one run record.
fn vector_index_v2(live: &IndexPack) -> Index {
    Index {
        packs: vec![live.clone()],
        marked: vec![
            MarkedPack { run: [0xaa; 16], pack: IndexPack { id: PackId([0xbb; 32]), blobs: live.blobs[..1].to_vec() } },
            MarkedPack { run: [0xaa; 16], pack: IndexPack { id: PackId([0xcc; 32]), blobs: vec![] } },
        ],
        runs: vec![RunRecord {
            run: [0xaa; 16],
            time: 1_700_000_000,
            locks: vec![SeenLock { session: [0x88; 16], object: [0xdd; 32] }],
        }],
    }
}

/// One sealed object (stored raw: no zstd, so these vectors do not depend
/// on the zstd version), checked to open again; its object name is the
/// SHA-256 of the sealed bytes (`config` excepted).
fn sealed_object(mk: &MasterKey, ty: ObjectType, plain: &[u8], folder: &str) -> Value {
    let sealed = seal::seal_with_nonce(&mk.enc, ty, plain, None, &OBJECT_NONCE);
    assert_eq!(seal::open(&mk.enc, ty, &sealed, 1 << 20).expect("opens"), plain, "{folder}: does not open");
    let name = if folder == "config" || folder.starts_with("wal/") {
        folder.to_string()
    } else {
        format!("{folder}/{}", sha256_hex(&sealed))
    };
    json!({ "object_type": ty as u8, "sealed": hex::encode(&sealed), "object_name": name })
}

fn node_json(n: &Node) -> Value {
    let content = match &n.content {
        Content::File(c) => json!({ "chunks": c.iter().map(|c| c.to_hex()).collect::<Vec<_>>() }),
        Content::Symlink(t) => json!({ "target": String::from_utf8_lossy(t) }),
        Content::Dir(t) => json!({ "subtree": t.to_hex() }),
        Content::Device(d) => json!({ "rdev": d }),
        Content::None => json!({}),
        Content::Listed { level, lists } => {
            json!({ "level": level, "lists": lists.iter().map(|l| l.to_hex()).collect::<Vec<_>>() })
        }
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
    let tree_bytes = tree::encode(&nodes).expect("tree encodes");
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

    // 8. Metadata objects: JSON (config, snapshots, lock), index v2, and
    // every sealed object type.
    let config = vector_config();
    let config_json = config.encode();
    assert_eq!(Config::decode(&config_json).expect("config decodes"), config);
    let tree_id = TreeId(mk.blob_id(&tree_bytes));
    let snap_tree = vector_tree_snapshot(tree_id);
    let snap_stream = vector_stream_snapshot(tree_id);
    let snap_streams = vector_streams_snapshot(tree_id);
    assert_eq!(snap_streams.streams().len(), 2);
    for s in [&snap_tree, &snap_stream, &snap_streams] {
        assert_eq!(&Snapshot::decode(&s.encode()).expect("snapshot decodes"), s, "snapshot does not round-trip");
    }
    let lock = vector_lock();
    assert_eq!(Lock::decode(&lock.encode()).expect("lock decodes"), lock, "lock does not round-trip");
    let ix2 = vector_index_v2(&ip[0]);
    let ix2_plain = index::encode_index(&ix2);
    assert_eq!(index::decode_index(&ix2_plain).expect("index v2 decodes"), ix2, "index v2 does not round-trip");
    assert_eq!(ix2_plain[0], index::VERSION_MARKS);
    // 8b. Format 2 (format-spec/05-packs.md, layout 2): a pack with a
    // group of two data blobs and a tree blob alone, its header, and an
    // index object of version 3 naming it live and marked. Sealed raw
    // (no zstd), so these bytes do not depend on the zstd library.
    let world: Vec<u8> = (0u8..100).collect();
    let group_plain = encode_group(&[HELLO, &world[..]]);
    let sealed_group = seal::seal_with_nonce(&mk.enc, ObjectType::DataGroup, &group_plain, None, &SEAL_NONCE);
    let sealed_tree = seal::seal_with_nonce(&mk.enc, ObjectType::TreeBlob, &tree_bytes, None, &SEAL_NONCE);
    let mut w2 = PackWriter::with_layout(PackLayout::V2, 1024);
    let group_ids = [(mk.blob_id(HELLO), HELLO.len() as u32), (mk.blob_id(&world), world.len() as u32)];
    w2.add_group(BlobKind::Data, &group_ids, &sealed_group);
    w2.add(BlobKind::Tree, mk.blob_id(&tree_bytes), &sealed_tree, tree_bytes.len() as u32);
    let pack2 = w2.finish_with_nonce(&mk.enc, &HEADER_NONCE);
    let len2 = pack2.bytes.len();
    let (hlen2, layout2) = decode_trailer_any(&pack2.bytes[len2 - TRAILER_LEN..], len2 as u64).expect("trailer 2");
    assert_eq!(layout2, PackLayout::V2);
    let header2_at = len2 - TRAILER_LEN - hlen2 as usize;
    let header2 = seal::open(&mk.enc, ObjectType::PackHeader, &pack2.bytes[header2_at..len2 - TRAILER_LEN], 1 << 20)
        .expect("layout-2 header opens");
    let entries2 = decode_header_2(&header2).expect("layout-2 header decodes");
    assert_eq!(entries2, pack2.entries, "layout-2 header does not list what was added");
    for (e, want) in entries2.iter().zip([HELLO, &world[..], &tree_bytes[..]]) {
        assert_eq!(blob_from_pack_bytes(&mk, &pack2.bytes, e).expect("a layout-2 blob"), want);
    }
    let live2 = IndexPack { id: pack2.id, blobs: pack2.entries.clone() };
    let ix3 = Index {
        packs: vec![live2.clone()],
        marked: vec![MarkedPack { run: [0x55; 16], pack: live2 }],
        runs: vec![RunRecord { run: [0x55; 16], time: 1_765_000_000, locks: Vec::new() }],
    };
    let ix3_plain = index::encode_index_3(&ix3);
    assert_eq!(index::decode_index(&ix3_plain).expect("index v3 decodes"), ix3, "index v3 does not round-trip");
    let config2 = Config { version: 2, ..vector_config() };
    let config2_json = config2.encode();
    assert_eq!(Config::decode(&config2_json).expect("config v2 decodes"), config2);
    // The optional chunker for dumps and level for groups (format-spec/04):
    // what `init` writes.
    let dump = ChunkerParams { min_size: 1024, avg_size: 4096, max_size: 16384, ..CHUNKER };
    let config2d = Config { dump_chunker: Some(dump), group_compression: Some(6), ..config2.clone() };
    let config2d_json = config2d.encode();
    let back = Config::decode(&config2d_json).expect("config with a dump chunker decodes");
    assert_eq!(back, config2d);
    assert_eq!(back.chunker_for(cairn::format::config::DataKind::Dump), dump);
    assert_eq!(back.group_level(), 6);

    // 9. The WAL archive (format-spec/13-wal.md): a timeline history file
    // (a segment would make the vector 16 MiB) and a system's record.
    let wal_file = WalObject {
        name: "00000002.history".into(),
        system_id: 7_318_000_000_000_000_001,
        content: b"1\t0/3000158\tno recovery target specified\n".to_vec(),
    };
    let wal_name = cairn::ops::pg::archive::object_name(
        wal_file.system_id,
        &cairn::pg::wal::WalFile::parse(&wal_file.name).expect("a WAL file name"),
    );
    let cluster_record = ClusterRecord {
        system_id: wal_file.system_id,
        segment_size: 16 << 20,
        version: 150000,
        created: time("2026-12-05T08:00:00+00:00"),
        hostname: "db1".into(),
    };
    let objects = json!({
        "nonce": hex::encode(OBJECT_NONCE),
        "data_blob": sealed_object(&mk, ObjectType::DataBlob, HELLO, "data"),
        "tree_blob": sealed_object(&mk, ObjectType::TreeBlob, &tree_bytes, "data"),
        "pack_header": sealed_object(&mk, ObjectType::PackHeader, &header, "data"),
        "index_v1": sealed_object(&mk, ObjectType::Index, &index_plain, "index"),
        "index_v2": sealed_object(&mk, ObjectType::Index, &ix2_plain, "index"),
        "snapshot_tree": sealed_object(&mk, ObjectType::Snapshot, &snap_tree.encode(), "snapshots"),
        "snapshot_stream": sealed_object(&mk, ObjectType::Snapshot, &snap_stream.encode(), "snapshots"),
        "snapshot_streams": sealed_object(&mk, ObjectType::Snapshot, &snap_streams.encode(), "snapshots"),
        "config": sealed_object(&mk, ObjectType::Config, &config_json, "config"),
        "lock": sealed_object(&mk, ObjectType::Lock, &lock.encode(), "locks"),
        "wal_file": sealed_object(&mk, ObjectType::WalFile, &wal_file.encode(), &wal_name),
        "cluster_record": sealed_object(
            &mk,
            ObjectType::ClusterRecord,
            &cluster_record.encode(),
            &cairn::ops::pg::archive::record_name(cluster_record.system_id),
        ),
        "data_group": sealed_object(&mk, ObjectType::DataGroup, &group_plain, "data"),
        "tree_group": sealed_object(&mk, ObjectType::TreeGroup, &encode_group(&[&tree_bytes[..]]), "data"),
        "index_v3": sealed_object(&mk, ObjectType::Index, &ix3_plain, "index"),
        "config_v2": sealed_object(&mk, ObjectType::Config, &config2_json, "config"),
    });

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
        "format_2": {
            "group_plaintext": hex::encode(&group_plain),
            "pack": {
                "entries": pack2.entries.iter().map(|e| json!({
                    "kind": e.kind as u8, "id": hex::encode(e.id), "offset": e.offset,
                    "length": e.length, "inner": e.inner, "raw_length": e.raw_length,
                })).collect::<Vec<_>>(),
                "header_plaintext": hex::encode(&header2),
                "bytes": hex::encode(&pack2.bytes),
                "id": pack2.id.to_hex(),
            },
            "index_v3_plaintext": hex::encode(&ix3_plain),
            "config": String::from_utf8(config2_json).expect("utf-8"),
            "config_as_init_writes": String::from_utf8(config2d_json).expect("utf-8"),
        },
        "format_3": format_3(&mk),
        "index": {
            "plaintext": hex::encode(&index_plain),
            "v2": {
                "marked": ix2.marked.iter().map(|m| json!({
                    "run": hex::encode(m.run), "pack_id": m.pack.id.to_hex(), "entries": m.pack.blobs.len(),
                })).collect::<Vec<_>>(),
                "runs": ix2.runs.iter().map(|r| json!({
                    "run": hex::encode(r.run), "time": r.time,
                    "locks": r.locks.iter().map(|l| json!({
                        "session": hex::encode(l.session), "object": hex::encode(l.object),
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "plaintext": hex::encode(&ix2_plain),
            },
        },
        "json": {
            "config": String::from_utf8(config_json).expect("utf-8"),
            "snapshot_tree": String::from_utf8(snap_tree.encode()).expect("utf-8"),
            "snapshot_stream": String::from_utf8(snap_stream.encode()).expect("utf-8"),
            "snapshot_streams": String::from_utf8(snap_streams.encode()).expect("utf-8"),
            "lock": String::from_utf8(lock.encode()).expect("utf-8"),
            "cluster_record": String::from_utf8(cluster_record.encode()).expect("utf-8"),
        },
        "wal_file": {
            "plaintext": hex::encode(wal_file.encode()),
            "object_name": wal_name,
        },
        "objects": objects,
    })
}

/// Format 3: a chunk list, how ids are cut into lists, and a tree whose
/// file names its chunks by lists.
fn format_3(mk: &MasterKey) -> Value {
    use cairn::format::list::{self, ChunkList};
    // Ten ids; those at 3 and 9 end in a zero byte, so cuts follow them.
    let ids: Vec<[u8; 32]> = (0u8..10)
        .map(|i| {
            let mut id = mk.blob_id(&[b'c', i]);
            id[31] = if i == 3 || i == 9 { 0 } else { id[31].max(1) };
            id
        })
        .collect();
    let cut: Vec<usize> = list::cut(&ids).iter().map(|p| p.len()).collect();
    assert_eq!(cut, vec![4, 6]);
    let l0 = ChunkList { level: 0, ids: ids[..4].to_vec() };
    let l0_bytes = list::encode(&l0);
    let l0_id = mk.blob_id(&l0_bytes);
    let l1 = ChunkList { level: 0, ids: ids[4..].to_vec() };
    let l1_id = mk.blob_id(&list::encode(&l1));
    let node = Node {
        name: b"big.dump".to_vec(),
        kind: NodeKind::File,
        mode: 0o644,
        uid: 1000,
        gid: 100,
        user: String::new(),
        group: String::new(),
        mtime_ns: 1_700_000_000_000_000_000,
        ctime_ns: 1_700_000_000_000_000_000,
        size: 40_960,
        inode: 0,
        device: 0,
        nlink: 1,
        content: Content::Listed { level: 0, lists: vec![cairn::id::ListId(l0_id), cairn::id::ListId(l1_id)] },
        xattrs: vec![],
    };
    let tree_bytes = tree::encode(std::slice::from_ref(&node)).expect("tree encodes");
    let back = tree::decode(&tree_bytes).expect("tree decodes");
    assert_eq!(back, vec![node]);
    let config3 = Config {
        version: 3,
        dump_chunker: Some(ChunkerParams { min_size: 1024, avg_size: 4096, max_size: 16384, seed: CHUNKER.seed }),
        group_compression: Some(6),
        ..vector_config()
    };
    json!({
        "ids": ids.iter().map(hex::encode).collect::<Vec<_>>(),
        "cut_lengths": cut,
        "list_plaintext": hex::encode(&l0_bytes),
        "list_id": hex::encode(l0_id),
        "tree_with_listed_file": hex::encode(&tree_bytes),
        "tree_id": hex::encode(mk.blob_id(&tree_bytes)),
        "config_as_init_writes": String::from_utf8(config3.encode()).expect("utf-8"),
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
        "index.v2.marked",
        "index.v2.runs",
        "index.v2.plaintext",
        "json.config",
        "json.snapshot_tree",
        "json.snapshot_stream",
        "json.snapshot_streams",
        "json.lock",
        "json.cluster_record",
        "wal_file.plaintext",
        "wal_file.object_name",
        "objects.nonce",
        "format_2.group_plaintext",
        "format_2.pack.entries",
        "format_2.pack.header_plaintext",
        "format_2.pack.bytes",
        "format_2.pack.id",
        "format_2.index_v3_plaintext",
        "format_2.config",
        "format_3.ids",
        "format_3.cut_lengths",
        "format_3.list_plaintext",
        "format_3.list_id",
        "format_3.tree_with_listed_file",
        "format_3.tree_id",
        "format_3.config_as_init_writes",
    ] {
        check(&stored, &built, p, FORMAT_CHANGED);
    }
    // Every sealed object type (1 to 11), stored raw: no zstd involved.
    let objects = get(&stored, "objects").as_object().expect("`objects` is a map");
    let mut types: Vec<u64> = objects.values().filter_map(|o| o["object_type"].as_u64()).collect();
    types.sort_unstable();
    types.dedup();
    assert_eq!(types, (1..=11).collect::<Vec<_>>(), "vectors.json lacks a sealed object of some type");
    let built_names: Vec<&String> = get(&built, "objects").as_object().expect("built objects").keys().collect();
    assert_eq!(
        objects.keys().collect::<Vec<_>>(),
        built_names,
        "vectors.json lists other sealed objects than the test builds"
    );
    for name in objects.keys().filter(|k| *k != "nonce") {
        check(&stored, &built, &format!("objects.{name}"), FORMAT_CHANGED);
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
