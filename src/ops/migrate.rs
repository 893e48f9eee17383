//! `cairn migrate`: a repository adopts format 2 or 3, another average
//! chunk size, or a chunker for database dumps (4 KiB by default), without
//! re-uploading what it holds (format-spec/04-config.md, "Adopting format 2
//! or 3").
//!
//! Nothing stored changes: packs of layout 1 and index objects of versions 1
//! and 2 stay as they are, and format 2 reads them. Only `config` is written
//! again, whole (one put: the old or the new one is there, never a mix),
//! under the exclusive lock, so no other cairn process has the old config
//! open. From then on backups write layout-2 packs, name a large file's
//! chunks by chunk lists (format 3; files backed up before keep their
//! inline chunk ids until they are read again), and, with a new chunk
//! size, cut new data at that size: the first backup after it stores its
//! data once more, later ones only what changed).

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::config::{ChunkerParams, Config};
use crate::repo::Repository;

/// What `migrate` will write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigratePlan {
    pub from_version: u32,
    pub to_version: u32,
    pub chunker_from: ChunkerParams,
    pub chunker_to: ChunkerParams,
    /// The chunker for dumps before and after (absent: dumps are cut by
    /// `chunker`).
    pub dump_chunker_from: Option<ChunkerParams>,
    pub dump_chunker_to: Option<ChunkerParams>,
    /// The zstd level for groups before and after (absent: `compression`).
    pub group_compression_from: Option<i32>,
    pub group_compression_to: Option<i32>,
    /// The config as it will be.
    #[serde(skip)]
    pub config: Config,
}

impl MigratePlan {
    /// Whether the config stays as it is.
    pub fn is_noop(&self) -> bool {
        self.from_version == self.to_version
            && self.chunker_from == self.chunker_to
            && self.dump_chunker_from == self.dump_chunker_to
            && self.group_compression_from == self.group_compression_to
    }
}

/// Plans the move to `to_version` and, if given, an average chunk size of
/// `chunk_kib` KiB (a quarter to four times it, the chunker's secret seed
/// kept) and one of `dump_kib` KiB for dumps; a repository without a
/// chunker for dumps gets the default one ([`crate::repo::DEFAULT_DUMP_CHUNK`]).
/// A version older than the repository's is refused: format 2 may
/// already have written packs that format 1 cannot read.
/// `group_level`: a new zstd level for groups of small chunks (else the
/// repository's, or the default for one without).
pub fn plan(
    repo: &Repository,
    to_version: u32,
    chunk_kib: Option<u32>,
    dump_kib: Option<u32>,
    group_level: Option<i32>,
) -> Result<MigratePlan> {
    let from = &repo.config;
    if !crate::format::FORMAT_VERSIONS.contains(&to_version) {
        return Err(Error::invalid(format!("format version {to_version} is not one this cairn writes")));
    }
    if to_version < from.version {
        return Err(Error::invalid(format!(
            "the repository is of format {}: it cannot go back to {to_version} (its packs may need format {})",
            from.version, from.version
        )));
    }
    let sized = |kib: u32| -> Result<ChunkerParams> {
        let avg = kib.checked_mul(1024).ok_or_else(|| Error::invalid("chunk size too large"))?;
        let p = ChunkerParams { seed: from.chunker.seed, ..crate::repo::chunker_for_average(avg) };
        p.validate()?;
        Ok(p)
    };
    let chunker = match chunk_kib {
        Some(kib) => sized(kib)?,
        None => from.chunker,
    };
    let dump_chunker = match (dump_kib, from.dump_chunker) {
        (Some(kib), _) => sized(kib)?,
        (None, Some(d)) => d,
        (None, None) => crate::repo::default_dump_chunker(&chunker),
    };
    if let Some(l) = group_level {
        if !(1..=22).contains(&l) {
            return Err(Error::invalid(format!("zstd level {l}: a level for groups is 1 to 22")));
        }
    }
    let group_compression = group_level.or(from.group_compression).or(Some(crate::repo::DEFAULT_GROUP_COMPRESSION));
    let config =
        Config { version: to_version, chunker, dump_chunker: Some(dump_chunker), group_compression, ..from.clone() };
    Ok(MigratePlan {
        from_version: from.version,
        to_version,
        chunker_from: from.chunker,
        chunker_to: chunker,
        dump_chunker_from: from.dump_chunker,
        dump_chunker_to: Some(dump_chunker),
        group_compression_from: from.group_compression,
        group_compression_to: group_compression,
        config,
    })
}

/// Writes the planned config. The caller holds the exclusive lock.
pub fn run(repo: &Repository, plan: &MigratePlan) -> Result<()> {
    if plan.is_noop() {
        return Ok(());
    }
    repo.replace_config(&plan.config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::repo::{CacheMode, InitOptions};

    fn repo(format_version: u32) -> Repository {
        std::env::set_var("CAIRN_INSECURE_TEST_KDF", "1");
        let opts = InitOptions { format_version, ..Default::default() };
        Repository::init(Backend::memory().unwrap(), b"pw", &opts, CacheMode::Memory).unwrap()
    }

    #[test]
    fn format_1_adopts_format_2_and_keeps_its_seed() {
        let r = repo(1);
        let p = plan(&r, 2, Some(4), None, None).unwrap();
        assert_eq!((p.from_version, p.to_version), (1, 2));
        assert_eq!(p.chunker_to.avg_size, 4096);
        assert_eq!((p.chunker_to.min_size, p.chunker_to.max_size), (1024, 16384));
        assert_eq!(p.chunker_to.seed, r.config.chunker.seed, "the chunker's secret stays");
        run(&r, &p).unwrap();
        let again = Repository::open(r.backend.clone(), b"pw", CacheMode::Memory).unwrap();
        assert_eq!(again.config.version, 2);
        assert_eq!(again.config.id, r.config.id, "the same repository");
        assert_eq!(again.config.chunker, p.chunker_to);
        assert!(plan(&again, 2, None, None, None).unwrap().is_noop());
    }

    #[test]
    fn a_repository_without_a_dump_chunker_gets_the_default_one() {
        let r = repo(2);
        let mut old = r.config.clone();
        old.dump_chunker = None; // as made before the fields existed
        old.group_compression = None;
        r.replace_config(&old).unwrap();
        let r = Repository::open(r.backend.clone(), b"pw", CacheMode::Memory).unwrap();
        let p = plan(&r, 2, None, None, None).unwrap();
        assert!(!p.is_noop());
        let d = p.dump_chunker_to.unwrap();
        assert_eq!((d.min_size, d.avg_size, d.max_size, d.seed), (1024, 4096, 16384, r.config.chunker.seed));
        assert_eq!(p.chunker_to, r.config.chunker, "files keep their chunker");
        assert_eq!((p.group_compression_from, p.group_compression_to), (None, Some(6)));
        run(&r, &p).unwrap();
        let again = Repository::open(r.backend.clone(), b"pw", CacheMode::Memory).unwrap();
        assert_eq!(again.config.dump_chunker, Some(d));
        assert!(plan(&again, 2, None, None, None).unwrap().is_noop());
        let p = plan(&again, 2, None, Some(8), None).unwrap();
        assert_eq!(p.dump_chunker_to.unwrap().avg_size, 8192);
        assert!(plan(&again, 2, None, Some(8192), None).is_err(), "out of the chunker's range");
    }

    #[test]
    fn no_way_back_to_format_1() {
        let r = repo(2);
        let e = plan(&r, 1, None, None, None).unwrap_err();
        assert!(e.to_string().contains("cannot go back"), "{e}");
        assert!(plan(&r, 4, None, None, None).is_err());
        let r = repo(3);
        assert!(plan(&r, 2, None, None, None).unwrap_err().to_string().contains("cannot go back"));
    }

    #[test]
    fn format_2_adopts_chunk_lists() {
        let r = repo(2);
        assert!(!r.config.has_lists());
        let p = plan(&r, 3, None, None, None).unwrap();
        assert_eq!((p.from_version, p.to_version), (2, 3));
        assert_eq!(p.chunker_to, r.config.chunker);
        run(&r, &p).unwrap();
        let again = Repository::open(r.backend.clone(), b"pw", CacheMode::Memory).unwrap();
        assert!(again.config.has_lists());
        assert!(plan(&again, 3, None, None, None).unwrap().is_noop());
    }

    #[test]
    fn a_new_level_for_groups_is_written_and_checked() {
        let r = repo(crate::format::FORMAT_VERSION);
        let p = plan(&r, crate::format::FORMAT_VERSION, None, None, Some(3)).unwrap();
        assert_eq!(p.group_compression_to, Some(3));
        assert!(!p.is_noop());
        run(&r, &p).unwrap();
        let again = Repository::open(r.backend.clone(), b"pw", CacheMode::Memory).unwrap();
        assert_eq!(again.config.group_compression, Some(3));
        assert!(plan(&again, crate::format::FORMAT_VERSION, None, None, Some(3)).unwrap().is_noop());
        assert!(plan(&again, crate::format::FORMAT_VERSION, None, None, None).unwrap().is_noop(), "kept");
        for bad in [0, 23, -1] {
            assert!(plan(&again, crate::format::FORMAT_VERSION, None, None, Some(bad)).is_err(), "{bad}");
        }
    }
}
