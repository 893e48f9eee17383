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
        if !(1 << 20..=1 << 30).contains(&c.pack_size) || !(-7..=22).contains(&c.compression) {
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
        };
        assert_eq!(Config::decode(&c.encode()).unwrap(), c);
        let mut bad = c.clone();
        bad.chunker.min_size = 1 << 22;
        assert!(Config::decode(&bad.encode()).is_err());
        assert!(Config::decode(b"{").is_err());
    }
}
