//! Tree blobs: one directory's nodes, sorted by name. See format-spec/07-trees.md.

use super::wire::{Reader, Writer};
use crate::error::{Error, Result};
use crate::id::{ChunkId, ListId, TreeId};

pub const VERSION: u8 = 1;
/// The kind byte of a regular file whose content is named by chunk lists
/// (format 3, [`super::list`]); decoded as [`NodeKind::File`] with
/// [`Content::Listed`].
pub const LISTED_FILE: u8 = 8;

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    File = 1,
    Dir = 2,
    Symlink = 3,
    Fifo = 4,
    CharDev = 5,
    BlockDev = 6,
    Socket = 7,
}

impl NodeKind {
    fn from_u8(v: u8) -> Result<Self> {
        Ok(match v {
            1 => Self::File,
            2 => Self::Dir,
            3 => Self::Symlink,
            4 => Self::Fifo,
            5 => Self::CharDev,
            6 => Self::BlockDev,
            7 => Self::Socket,
            _ => return Err(Error::corrupt(format!("tree: unknown node kind {v}"))),
        })
    }
}

/// Kind-specific content of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// Regular file: its chunks in order.
    File(Vec<ChunkId>),
    /// Regular file (format 3): its chunks are those of chunk lists of
    /// `level`, in order ([`super::list`]).
    Listed { level: u8, lists: Vec<ListId> },
    /// Directory: its tree blob.
    Dir(TreeId),
    /// Symbolic link: its target, raw bytes.
    Symlink(Vec<u8>),
    /// Character or block device: `st_rdev`.
    Device(u64),
    /// FIFO or socket: nothing.
    None,
}

/// One directory entry with its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Raw file-name bytes (not necessarily UTF-8); never contains `/` or NUL.
    pub name: Vec<u8>,
    pub kind: NodeKind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub group: String,
    /// Nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    /// Logical size in bytes (files: content length; symlinks: target length).
    pub size: u64,
    pub inode: u64,
    pub device: u64,
    pub nlink: u32,
    pub content: Content,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

#[cfg(test)]
impl Node {
    /// A plain node for unit tests: mode 0644, owner 0, no names, times,
    /// size, inode or xattrs, one link.
    pub fn for_test(name: &str, kind: NodeKind, content: Content) -> Self {
        Node {
            name: name.as_bytes().to_vec(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            user: String::new(),
            group: String::new(),
            mtime_ns: 0,
            ctime_ns: 0,
            size: 0,
            inode: 0,
            device: 0,
            nlink: 1,
            content,
            xattrs: vec![],
        }
    }
}

impl Node {
    /// The chunks a file node holds itself: all of them, or none for a
    /// listed file ([`Content::Listed`]: `Repository::file_chunks` reads
    /// its lists) and for other kinds.
    pub fn inline_chunks(&self) -> &[ChunkId] {
        match &self.content {
            Content::File(c) => c,
            _ => &[],
        }
    }

    pub fn subtree(&self) -> Option<TreeId> {
        match &self.content {
            Content::Dir(t) => Some(*t),
            _ => None,
        }
    }

    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

fn put_str8(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    let mut n = b.len().min(255);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    out.put_u8(n as u8);
    out.put(&b[..n]);
}

fn encode_node(n: &Node, out: &mut Vec<u8>) {
    out.put_u16(n.name.len() as u16);
    out.put(&n.name);
    out.put_u8(match n.content {
        Content::Listed { .. } => LISTED_FILE,
        _ => n.kind as u8,
    });
    out.put_u32(n.mode);
    out.put_u32(n.uid);
    out.put_u32(n.gid);
    put_str8(out, &n.user);
    put_str8(out, &n.group);
    out.put_i64(n.mtime_ns);
    out.put_i64(n.ctime_ns);
    out.put_u64(n.size);
    out.put_u64(n.inode);
    out.put_u64(n.device);
    out.put_u32(n.nlink);
    match &n.content {
        Content::File(chunks) => {
            out.put_u32(chunks.len() as u32);
            for c in chunks {
                out.put(&c.0);
            }
        }
        Content::Listed { level, lists } => {
            out.put_u8(*level);
            out.put_u32(lists.len() as u32);
            for l in lists {
                out.put(&l.0);
            }
        }
        Content::Dir(t) => out.put(&t.0),
        Content::Symlink(target) => {
            out.put_u32(target.len() as u32);
            out.put(target);
        }
        Content::Device(rdev) => out.put_u64(*rdev),
        Content::None => {}
    }
    out.put_u16(n.xattrs.len() as u16);
    for (k, v) in &n.xattrs {
        out.put_u16(k.len() as u16);
        out.put(k);
        out.put_u32(v.len() as u32);
        out.put(v);
    }
}

/// Whether [`decode_node`] would read `n` back as it is: a valid name, a
/// content that matches the kind, and every length within its field.
fn check_node(n: &Node) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid(format!("tree: refusing to write entry {:?}: {why}", n.name_lossy())));
    if n.name.is_empty() || n.name == b"." || n.name == b".." || n.name.iter().any(|&b| b == b'/' || b == 0) {
        return bad("not a valid file name");
    }
    if n.name.len() > u16::MAX as usize {
        return bad("name longer than 65535 bytes");
    }
    let fits = match (&n.content, n.kind) {
        (Content::File(c), NodeKind::File) => u32::try_from(c.len()).is_ok(),
        (Content::Listed { level, lists }, NodeKind::File) => {
            *level <= super::list::MAX_LEVEL && !lists.is_empty() && lists.len() <= super::list::READ_MAX_IDS
        }
        (Content::Dir(_), NodeKind::Dir) => true,
        (Content::Symlink(t), NodeKind::Symlink) => u32::try_from(t.len()).is_ok(),
        (Content::Device(_), NodeKind::CharDev | NodeKind::BlockDev) => true,
        (Content::None, NodeKind::Fifo | NodeKind::Socket) => true,
        _ => return bad(&format!("its content does not match its kind {:?}", n.kind)),
    };
    if !fits {
        return bad("content longer than its length field");
    }
    if n.xattrs.len() > u16::MAX as usize
        || n.xattrs.iter().any(|(k, v)| k.len() > u16::MAX as usize || u32::try_from(v.len()).is_err())
    {
        return bad("extended attributes too many or too long");
    }
    Ok(())
}

/// Encodes a directory. Refuses (with an error, in every build) what
/// [`decode`] would not read back: names not sorted and unique, invalid
/// names, lengths that do not fit their fields, a content that does not
/// match the node's kind. The walker never produces such nodes, so an error
/// here is a bug, reported instead of stored.
pub fn encode(nodes: &[Node]) -> Result<Vec<u8>> {
    if let Some(w) = nodes.windows(2).find(|w| w[0].name >= w[1].name) {
        return Err(Error::invalid(format!(
            "tree: refusing to write entries out of order or twice ({:?} before {:?})",
            w[0].name_lossy(),
            w[1].name_lossy()
        )));
    }
    let count = u32::try_from(nodes.len()).map_err(|_| Error::invalid("tree: more than 2^32 - 1 entries"))?;
    let mut out = Vec::with_capacity(5 + nodes.len() * 128);
    out.put_u8(VERSION);
    out.put_u32(count);
    for n in nodes {
        check_node(n)?;
        encode_node(n, &mut out);
    }
    Ok(out)
}

fn get_str8(r: &mut Reader<'_>) -> Result<String> {
    let n = r.u8()? as usize;
    String::from_utf8(r.bytes(n)?.to_vec()).map_err(|_| Error::corrupt("tree: owner name is not UTF-8"))
}

fn decode_node(r: &mut Reader<'_>) -> Result<Node> {
    let name_len = r.u16()? as usize;
    let name = r.bytes(name_len)?.to_vec();
    if name.is_empty() || name == b"." || name == b".." || name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(Error::corrupt(format!("tree: invalid name {:?}", String::from_utf8_lossy(&name))));
    }
    let raw_kind = r.u8()?;
    let kind = if raw_kind == LISTED_FILE { NodeKind::File } else { NodeKind::from_u8(raw_kind)? };
    let mode = r.u32()?;
    let uid = r.u32()?;
    let gid = r.u32()?;
    let user = get_str8(r)?;
    let group = get_str8(r)?;
    let mtime_ns = r.i64()?;
    let ctime_ns = r.i64()?;
    let size = r.u64()?;
    let inode = r.u64()?;
    let device = r.u64()?;
    let nlink = r.u32()?;
    let content = match kind {
        NodeKind::File if raw_kind == LISTED_FILE => {
            let level = r.u8()?;
            let n = r.count(32)?;
            if level > super::list::MAX_LEVEL || n == 0 || n > super::list::READ_MAX_IDS {
                return Err(Error::corrupt(format!("tree: a listed file with {n} lists of level {level}")));
            }
            let mut lists = Vec::with_capacity(n);
            for _ in 0..n {
                lists.push(ListId(r.array()?));
            }
            Content::Listed { level, lists }
        }
        NodeKind::File => {
            let n = r.count(32)?;
            let mut chunks = Vec::with_capacity(n);
            for _ in 0..n {
                chunks.push(ChunkId(r.array()?));
            }
            Content::File(chunks)
        }
        NodeKind::Dir => Content::Dir(TreeId(r.array()?)),
        NodeKind::Symlink => {
            let n = r.count(1)?;
            Content::Symlink(r.bytes(n)?.to_vec())
        }
        NodeKind::CharDev | NodeKind::BlockDev => Content::Device(r.u64()?),
        NodeKind::Fifo | NodeKind::Socket => Content::None,
    };
    let nx = r.u16()? as usize;
    let mut xattrs = Vec::with_capacity(nx.min(64));
    for _ in 0..nx {
        let kl = r.u16()? as usize;
        let k = r.bytes(kl)?.to_vec();
        let vl = r.u32()? as usize;
        let v = r.bytes(vl)?.to_vec();
        xattrs.push((k, v));
    }
    Ok(Node {
        name,
        kind,
        mode,
        uid,
        gid,
        user,
        group,
        mtime_ns,
        ctime_ns,
        size,
        inode,
        device,
        nlink,
        content,
        xattrs,
    })
}

/// Decodes a tree blob; checks that names are sorted and unique.
pub fn decode(bytes: &[u8]) -> Result<Vec<Node>> {
    let mut r = Reader::new(bytes, "tree");
    let v = r.u8()?;
    if v != VERSION {
        return Err(Error::corrupt(format!("tree: unsupported version {v}")));
    }
    let n = r.count(60)?;
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        let node = decode_node(&mut r)?;
        if let Some(prev) = nodes.last() {
            let prev: &Node = prev;
            if prev.name >= node.name {
                return Err(Error::corrupt("tree: names are not sorted and unique"));
            }
        }
        nodes.push(node);
    }
    r.finish()?;
    Ok(nodes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub fn arb_node() -> impl Strategy<Value = Node> {
        let name = proptest::collection::vec(any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0), 1..40)
            .prop_filter("not . or ..", |n| n != b"." && n != b"..");
        let content = prop_oneof![
            proptest::collection::vec(proptest::array::uniform32(any::<u8>()), 0..5)
                .prop_map(|v| (NodeKind::File, Content::File(v.into_iter().map(ChunkId).collect()))),
            (0u8..=7, proptest::collection::vec(proptest::array::uniform32(any::<u8>()), 1..5)).prop_map(
                |(level, v)| (NodeKind::File, Content::Listed { level, lists: v.into_iter().map(ListId).collect() })
            ),
            proptest::array::uniform32(any::<u8>()).prop_map(|t| (NodeKind::Dir, Content::Dir(TreeId(t)))),
            proptest::collection::vec(any::<u8>(), 1..100).prop_map(|t| (NodeKind::Symlink, Content::Symlink(t))),
            any::<u64>().prop_map(|d| (NodeKind::CharDev, Content::Device(d))),
            any::<u64>().prop_map(|d| (NodeKind::BlockDev, Content::Device(d))),
            Just((NodeKind::Fifo, Content::None)),
            Just((NodeKind::Socket, Content::None)),
        ];
        let xattrs = proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 1..20), proptest::collection::vec(any::<u8>(), 0..50)),
            0..3,
        );
        (name, content, any::<(u32, u32, u32, i64, i64, u64, u64, u64, u32)>(), "[a-z]{0,8}", xattrs).prop_map(
            |(name, (kind, content), (mode, uid, gid, m, c, size, inode, device, nlink), user, xattrs)| Node {
                name,
                kind,
                mode,
                uid,
                gid,
                group: user.clone(),
                user,
                mtime_ns: m,
                ctime_ns: c,
                size,
                inode,
                device,
                nlink,
                content,
                xattrs,
            },
        )
    }

    proptest! {
        #[test]
        fn round_trip(mut nodes in proptest::collection::vec(arb_node(), 0..20)) {
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            nodes.dedup_by(|a, b| a.name == b.name);
            prop_assert_eq!(decode(&encode(&nodes).unwrap()).unwrap(), nodes);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn rejects_unsorted_and_bad_names() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let mut a = arb_node().new_tree(&mut runner).unwrap().current();
        a.name = b"b".to_vec();
        let mut b = a.clone();
        b.name = b"a".to_vec();
        let mut enc = vec![VERSION];
        enc.extend_from_slice(&2u32.to_le_bytes());
        encode_node(&a, &mut enc);
        encode_node(&b, &mut enc);
        assert!(decode(&enc).is_err());
        a.name = b"x/y".to_vec();
        let mut enc = vec![VERSION];
        enc.extend_from_slice(&1u32.to_le_bytes());
        encode_node(&a, &mut enc);
        assert!(decode(&enc).is_err());
    }

    /// A listed file is kind byte 8 on disk and a regular file in memory;
    /// a bad level or an empty list count is damage.
    #[test]
    fn listed_files_are_kind_8() {
        let n = Node::for_test("big", NodeKind::File, Content::Listed { level: 2, lists: vec![ListId([7; 32])] });
        let enc = encode(std::slice::from_ref(&n)).unwrap();
        // version, count, name length + "big", then the kind byte.
        assert_eq!(enc[5 + 2 + 3], LISTED_FILE);
        assert_eq!(decode(&enc).unwrap(), vec![n]);
        let at = enc.len() - 2 - 32 - 4 - 1; // level, count, one id, xattr count
        for (off, byte) in [(at, 8u8), (at + 1, 0)] {
            let mut bad = enc.clone();
            bad[off] = byte;
            if off == at + 1 {
                bad[off..off + 4].copy_from_slice(&0u32.to_le_bytes());
            }
            assert!(decode(&bad).is_err(), "byte {off} = {byte}");
        }
    }

    /// What `decode` would refuse, `encode` refuses too, in every build
    /// (it used to check the order with `debug_assert!` only).
    #[test]
    fn encode_refuses_what_decode_would_not_read() {
        let file = |name: &str| Node::for_test(name, NodeKind::File, Content::File(vec![]));
        let ok = encode(&[file("a"), file("b")]).unwrap();
        assert_eq!(decode(&ok).unwrap().len(), 2);
        for (what, nodes) in [
            ("unsorted", vec![file("b"), file("a")]),
            ("duplicate", vec![file("a"), file("a")]),
            ("empty name", vec![file("")]),
            ("dot", vec![file(".")]),
            ("dot-dot", vec![file("..")]),
            ("slash", vec![file("x/y")]),
            ("NUL", vec![file("x\0y")]),
            ("long name", vec![file(&"n".repeat(65536))]),
            ("kind and content disagree", vec![Node::for_test("d", NodeKind::Dir, Content::File(vec![]))]),
            ("fifo with a target", vec![Node::for_test("f", NodeKind::Fifo, Content::Symlink(b"t".to_vec()))]),
            (
                "dir with lists",
                vec![Node::for_test("d", NodeKind::Dir, Content::Listed { level: 0, lists: vec![ListId([1; 32])] })],
            ),
            ("no lists", vec![Node::for_test("f", NodeKind::File, Content::Listed { level: 0, lists: vec![] })]),
            (
                "level 8",
                vec![Node::for_test("f", NodeKind::File, Content::Listed { level: 8, lists: vec![ListId([1; 32])] })],
            ),
        ] {
            let err = encode(&nodes).expect_err(what);
            assert_eq!(err.kind(), crate::error::ErrorKind::InvalidInput, "{what}: {err}");
        }
        let mut x = file("x");
        x.xattrs = vec![(vec![b'k'; 65536], vec![])];
        assert!(encode(&[x]).is_err(), "xattr name too long");
    }
}
