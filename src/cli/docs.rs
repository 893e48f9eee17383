//! `cairn completions SHELL` and `cairn man [--dir DIR]`: generated from
//! the command line's definition (clap_complete, clap_mangen).

use std::io::Write as _;
use std::path::PathBuf;

use clap::{Args, CommandFactory, ValueEnum};

use cairn::{Error, Result};

use super::Cli;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// Write one page per command into DIR (cairn.1, cairn-backup.1, ...) instead of cairn.1 to stdout
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

fn stdout_error(e: std::io::Error) -> Error {
    Error::io_sentence("cannot write to stdout", e)
}

pub fn completions(a: &CompletionsArgs) -> Result<i32> {
    use clap_complete::Shell as S;
    let shell = match a.shell {
        Shell::Bash => S::Bash,
        Shell::Zsh => S::Zsh,
        Shell::Fish => S::Fish,
        Shell::Elvish => S::Elvish,
        Shell::Powershell => S::PowerShell,
    };
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "cairn", &mut buf);
    std::io::stdout().write_all(&buf).map_err(stdout_error)?;
    Ok(0)
}

pub fn man(a: &ManArgs) -> Result<i32> {
    let mut cmd = Cli::command();
    cmd.build();
    let Some(dir) = &a.dir else {
        let mut buf = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut buf).map_err(stdout_error)?;
        std::io::stdout().write_all(&buf).map_err(stdout_error)?;
        return Ok(0);
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display(), e))?;
    clap_mangen::generate_to(Cli::command(), dir).map_err(|e| Error::io(dir.display(), e))?;
    Ok(0)
}
