//! The repository config (`config`): sealed JSON. See format-spec/04-config.md.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::RepoId;

/// FastCDC parameters. Secret: they live only in the sealed config, so chunk
/// sizes do not fingerprint content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
    /// XORed into the gear table (fastcdc v2020 `with_level_and_seed`).
    pub seed: u64,
}

impl ChunkerParams {
    /// Limits accepted by the FastCDC implementation.
    pub fn validate(&self) -> Result<()> {
        let ok = (64..=1_048_576).contains(&self.min_size)
            && (256..=4_194_304).contains(&self.avg_size)
            && (1024..=16_777_216).contains(&self.max_size)
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size;
        if ok {
            Ok(())
        } else {
            Err(Error::corrupt(format!("config: chunker parameters out of range: {self:?}")))
        }
    }
}

/// The decoded config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    pub version: u32,
    pub id: RepoId,
    pub chunker: ChunkerParams,
    /// Target size of a data pack, in bytes.
    pub pack_size: u32,
    /// zstd level for new blobs.
    pub compression: i32,
    /// The chunker for database dumps: streams (stdin, a command's output,
    /// PostgreSQL and Redis sources) and PostgreSQL base backups. Absent:
    /// `chunker` cuts them too (repositories made before this field). Only
    /// writers read it; a reader that does not know it ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_chunker: Option<ChunkerParams>,
    /// zstd level for groups of small chunks (format 2). Absent:
    /// `compression`. Only writers read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_compression: Option<i32>,
}

/// What a backup stores, which decides the chunker that cuts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DataKind {
    /// Files of a directory tree.
    #[default]
    Files,
    /// A database dump: a stream, or a PostgreSQL base backup.
    Dump,
}

impl Config {
    /// How this repository's packs (and index objects) are laid out.
    pub fn layout(&self) -> super::pack::PackLayout {
        if self.version >= 2 {
            super::pack::PackLayout::V2
        } else {
            super::pack::PackLayout::V1
        }
    }

    /// Whether writers name a large file's chunks by chunk lists (format 3,
    /// [`super::list`]).
    pub fn has_lists(&self) -> bool {
        self.version >= 3
    }

    /// The chunker parameters for data of `kind`.
    pub fn chunker_for(&self, kind: DataKind) -> ChunkerParams {
        match kind {
            DataKind::Files => self.chunker,
            DataKind::Dump => self.dump_chunker.unwrap_or(self.chunker),
        }
    }

    /// The zstd level for a group of small chunks.
    pub fn group_level(&self) -> i32 {
        self.group_compression.unwrap_or(self.compression)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("config serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let c: Config =
            serde_json::from_slice(bytes).map_err(|e| Error::corrupt(format!("config does not decode: {e}")))?;
        if !super::FORMAT_VERSIONS.contains(&c.version) {
            return Err(Error::corrupt(format!(
                "repository format version {} is not supported (this cairn reads {} to {})",
                c.version,
                super::FORMAT_VERSIONS.start(),
                super::FORMAT_VERSIONS.end()
            )));
        }
        c.chunker.validate()?;
        if let Some(d) = &c.dump_chunker {
            d.validate()?;
        }
        if !(1 << 20..=1 << 30).contains(&c.pack_size)
            || !(-7..=22).contains(&c.compression)
            || !(-7..=22).contains(&c.group_level())
        {
            return Err(Error::corrupt("config: pack size or compression level out of range"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_validation() {
        let c = Config {
            version: 1,
            id: RepoId([3; 32]),
            chunker: ChunkerParams { min_size: 1 << 17, avg_size: 1 << 19, max_size: 1 << 21, seed: 5 },
            pack_size: 16 << 20,
            compression: 3,
            dump_chunker: None,
            group_compression: None,
        };
        assert_eq!(Config::decode(&c.encode()).unwrap(), c);
        assert!(!String::from_utf8(c.encode()).unwrap().contains("dump_chunker"), "absent, not null");
        assert_eq!(c.chunker_for(DataKind::Dump), c.chunker);
        assert_eq!(c.group_level(), 3);
        let g = Config { group_compression: Some(5), ..c.clone() };
        assert_eq!(Config::decode(&g.encode()).unwrap().group_level(), 5);
        assert!(Config::decode(&Config { group_compression: Some(23), ..c.clone() }.encode()).is_err());
        let mut bad = c.clone();
        bad.chunker.min_size = 1 << 22;
        assert!(Config::decode(&bad.encode()).is_err());
        assert!(Config::decode(b"{").is_err());
    }

    #[test]
    fn dump_chunker_is_optional_and_checked() {
        let small = ChunkerParams { min_size: 1024, avg_size: 4096, max_size: 16384, seed: 5 };
        let mut c = Config {
            version: 2,
            id: RepoId([3; 32]),
            chunker: ChunkerParams { min_size: 1 << 17, avg_size: 1 << 19, max_size: 1 << 21, seed: 5 },
            pack_size: 16 << 20,
            compression: 3,
            dump_chunker: Some(small),
            group_compression: None,
        };
        let back = Config::decode(&c.encode()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.chunker_for(DataKind::Dump), small);
        assert_eq!(back.chunker_for(DataKind::Files), c.chunker);
        c.dump_chunker = Some(ChunkerParams { max_size: 1 << 30, ..small });
        let e = Config::decode(&c.encode()).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        // Unknown fields are ignored (format-spec/04): what a reader that
        // predates `dump_chunker` does with it.
        let mut v: serde_json::Value = serde_json::from_slice(&back.encode()).unwrap();
        v["later_field"] = serde_json::json!({"x": 1});
        assert_eq!(Config::decode(&serde_json::to_vec(&v).unwrap()).unwrap(), back);
    }
}
