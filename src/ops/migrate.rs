//! `cairn migrate`: a repository adopts format 2, or another average chunk
//! size, without re-uploading what it holds (format-spec/04-config.md,
//! "Adopting format 2").
//!
//! Nothing stored changes: packs of layout 1 and index objects of versions 1
//! and 2 stay as they are, and format 2 reads them. Only `config` is written
//! again, whole (one put: the old or the new one is there, never a mix),
//! under the exclusive lock, so no other cairn process has the old config
//! open. From then on backups write layout-2 packs (and, with a new chunk
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
    /// The config as it will be.
    #[serde(skip)]
    pub config: Config,
}

impl MigratePlan {
    /// Whether the config stays as it is.
    pub fn is_noop(&self) -> bool {
        self.from_version == self.to_version && self.chunker_from == self.chunker_to
    }
}

/// Plans the move to `to_version` and, if given, an average chunk size of
/// `chunk_kib` KiB (a quarter to four times it, the chunker's secret seed
/// kept). A version older than the repository's is refused: format 2 may
/// already have written packs that format 1 cannot read.
pub fn plan(repo: &Repository, to_version: u32, chunk_kib: Option<u32>) -> Result<MigratePlan> {
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
    let mut chunker = from.chunker;
    if let Some(kib) = chunk_kib {
        let avg = kib.checked_mul(1024).ok_or_else(|| Error::invalid("chunk size too large"))?;
        let fresh = crate::repo::chunker_for_average(avg);
        chunker = ChunkerParams { seed: from.chunker.seed, ..fresh };
        chunker.validate()?;
    }
    let config = Config { version: to_version, chunker, ..from.clone() };
    Ok(MigratePlan { from_version: from.version, to_version, chunker_from: from.chunker, chunker_to: chunker, config })
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
        let p = plan(&r, 2, Some(4)).unwrap();
        assert_eq!((p.from_version, p.to_version), (1, 2));
        assert_eq!(p.chunker_to.avg_size, 4096);
        assert_eq!((p.chunker_to.min_size, p.chunker_to.max_size), (1024, 16384));
        assert_eq!(p.chunker_to.seed, r.config.chunker.seed, "the chunker's secret stays");
        run(&r, &p).unwrap();
        let again = Repository::open(r.backend.clone(), b"pw", CacheMode::Memory).unwrap();
        assert_eq!(again.config.version, 2);
        assert_eq!(again.config.id, r.config.id, "the same repository");
        assert_eq!(again.config.chunker, p.chunker_to);
        assert!(plan(&again, 2, None).unwrap().is_noop());
    }

    #[test]
    fn no_way_back_to_format_1() {
        let r = repo(2);
        let e = plan(&r, 1, None).unwrap_err();
        assert!(e.to_string().contains("cannot go back"), "{e}");
        assert!(plan(&r, 3, None).is_err());
    }
}
