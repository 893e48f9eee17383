//! `mount` (work in progress).

use clap::Args;

use super::Global;
use cairn::{Error, Result};

#[derive(Args)]
pub struct MountArgs {}

pub fn mount(_g: &Global, _a: &MountArgs) -> Result<i32> {
    Err(Error::invalid("mount is not implemented yet"))
}
