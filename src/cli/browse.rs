//! `find`, `diff`, `stats` and `tag` (work in progress).

use clap::Args;

use super::Global;
use cairn::{Error, Result};

#[derive(Args)]
pub struct FindArgs {}

#[derive(Args)]
pub struct DiffArgs {}

#[derive(Args)]
pub struct StatsArgs {}

#[derive(Args)]
pub struct TagArgs {}

pub fn find(_g: &Global, _a: &FindArgs) -> Result<i32> {
    Err(Error::invalid("find is not implemented yet"))
}

pub fn diff(_g: &Global, _a: &DiffArgs) -> Result<i32> {
    Err(Error::invalid("diff is not implemented yet"))
}

pub fn stats(_g: &Global, _a: &StatsArgs) -> Result<i32> {
    Err(Error::invalid("stats is not implemented yet"))
}

pub fn tag(_g: &Global, _a: &TagArgs) -> Result<i32> {
    Err(Error::invalid("tag is not implemented yet"))
}
