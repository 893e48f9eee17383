//! `cairn migrate`: adopt format 2 or 3 (and, optionally, another chunk size).

use clap::Args;

use cairn::format::lock::LockKind;
use cairn::ops::migrate;
use cairn::{Error, Result};

use super::Global;

#[derive(Args)]
pub struct MigrateArgs {
    /// The format version to adopt (3: a large file's chunks named by chunk lists that deduplicate; 2: runs of small chunks compressed together)
    #[arg(long, value_name = "N", default_value_t = cairn::format::FORMAT_VERSION,
          value_parser = clap::value_parser!(u32).range(1..=3))]
    pub format_version: u32,
    /// A new average chunk size in KiB for data stored from now on (a power of two, 1..=4096): the next backup stores its data once more at that size
    #[arg(long, value_name = "KIB", value_parser = super::commands::parse_chunk_size)]
    pub chunk_size: Option<u32>,
    /// A new average chunk size in KiB for database dumps (streams, PostgreSQL base backups); a repository without one gets 4 KiB
    #[arg(long, value_name = "KIB", value_parser = super::commands::parse_chunk_size)]
    pub dump_chunk_size: Option<u32>,
    /// A new zstd level for runs of small chunks compressed together (1..=22), for data stored from now on
    #[arg(long, value_name = "LEVEL", value_parser = clap::value_parser!(i32).range(1..=22))]
    pub group_compression: Option<i32>,
    /// Show what would change, and change nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print the plan as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn migrate(g: &Global, a: &MigrateArgs) -> Result<i32> {
    g.needs_lock("migrate")?;
    let repo = g.open_quietly()?;
    let _lock = if a.dry_run { None } else { Some(g.lock(&repo, LockKind::Exclusive, "migrate")?) };
    let plan = migrate::plan(&repo, a.format_version, a.chunk_size, a.dump_chunk_size, a.group_compression)?;
    if a.json {
        println!("{}", serde_json::to_string(&plan).map_err(|e| Error::invalid(e.to_string()))?);
    } else if !g.quiet {
        let c = |p: &cairn::format::config::ChunkerParams| {
            format!("chunks {}-{} KiB, average {} KiB", p.min_size >> 10, p.max_size >> 10, p.avg_size >> 10)
        };
        let d = |p: &Option<cairn::format::config::ChunkerParams>| match p {
            Some(p) => format!("dumps: {}", c(p)),
            None => "dumps: cut as files".to_string(),
        };
        if plan.is_noop() {
            println!(
                "format {}, {}, {}: nothing to change",
                plan.to_version,
                c(&plan.chunker_to),
                d(&plan.dump_chunker_to)
            );
        } else {
            let verb = if a.dry_run { "would change" } else { "changes" };
            println!(
                "{verb} format {} -> {}, {} -> {}, {} -> {}",
                plan.from_version,
                plan.to_version,
                c(&plan.chunker_from),
                c(&plan.chunker_to),
                d(&plan.dump_chunker_from),
                d(&plan.dump_chunker_to)
            );
        }
        if plan.group_compression_from != plan.group_compression_to {
            let l = |v: Option<i32>| v.map_or("the level of single chunks".to_string(), |l| format!("zstd level {l}"));
            println!("groups of small chunks: {} -> {}", l(plan.group_compression_from), l(plan.group_compression_to));
        }
    }
    if !a.dry_run {
        migrate::run(&repo, &plan)?;
        if !g.quiet && !a.json && !plan.is_noop() {
            println!("done: stored data stays as it is; new backups use the new format");
        }
    }
    Ok(0)
}
