//! Reading a file's chunk lists (format 3, format-spec/07-trees.md "Chunk
//! lists"): list blobs are blobs of kind tree, read (and cached) like trees.

use std::borrow::Cow;

use crate::error::{Result, ResultExt};
use crate::format::list::{self, ChunkList};
use crate::format::tree::Content;
use crate::id::{BlobId, ChunkId, ListId};
use crate::repo::Repository;

impl Repository {
    /// Loads the list blob `id`, which its parent says is of `level`.
    pub fn load_list(&self, id: &ListId, level: u8) -> Result<ChunkList> {
        let plain = self.read_tree_blob(&crate::id::TreeId(id.0))?;
        list::decode(&plain, level).context(format!("chunk list {id}"))
    }

    /// A file's chunks, in order: those its node holds, or those of its
    /// lists. Empty for a node that is not a file.
    pub fn file_chunks<'a>(&self, content: &'a Content) -> Result<Cow<'a, [ChunkId]>> {
        match content {
            Content::File(c) => Ok(Cow::Borrowed(c)),
            Content::Listed { level, lists } => {
                let mut out = Vec::new();
                self.walk_lists(*level, lists, &mut |item| {
                    if let ListItem::Chunks(c) = item {
                        out.extend_from_slice(c);
                    }
                    Ok(true)
                })?;
                Ok(Cow::Owned(out))
            }
            _ => Ok(Cow::Borrowed(&[])),
        }
    }

    /// Every blob a file's content names, in order: its list blobs (each
    /// before the blobs below it) and its chunks. Empty for other nodes.
    pub fn content_blobs(&self, content: &Content) -> Result<Vec<BlobId>> {
        match content {
            Content::File(c) => Ok(c.iter().map(|c| BlobId::data(*c)).collect()),
            Content::Listed { level, lists } => {
                let mut out = Vec::new();
                self.walk_lists(*level, lists, &mut |item| {
                    match item {
                        ListItem::List(l, _) => out.push(BlobId::list(*l)),
                        ListItem::Chunks(c) => out.extend(c.iter().map(|c| BlobId::data(*c))),
                    }
                    Ok(true)
                })?;
                Ok(out)
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Walks the lists of `level` named by `lists`, depth first and in
    /// order. `on` is told of each list before it is read, and says whether
    /// to read it (prune and check skip a list they have walked already);
    /// then of each level-0 list's chunks.
    pub fn walk_lists(
        &self,
        level: u8,
        lists: &[ListId],
        on: &mut dyn FnMut(ListItem<'_>) -> Result<bool>,
    ) -> Result<()> {
        for id in lists {
            if !on(ListItem::List(id, level))? {
                continue;
            }
            let l = self.load_list(id, level)?;
            if level == 0 {
                let chunks: Vec<ChunkId> = l.ids.into_iter().map(ChunkId).collect();
                on(ListItem::Chunks(&chunks))?;
            } else {
                let below: Vec<ListId> = l.ids.into_iter().map(ListId).collect();
                self.walk_lists(level - 1, &below, on)?;
            }
        }
        Ok(())
    }
}

/// What [`Repository::walk_lists`] reports.
pub enum ListItem<'a> {
    /// A list blob and its level, before it is read.
    List(&'a ListId, u8),
    /// The chunks of a level-0 list.
    Chunks(&'a [ChunkId]),
}
