//! `--config FILE` and `-P NAME`: the config file's flags, added to the
//! command line where it gives none.
//!
//! Keys are the long flags without `--` (`keep-daily = 7` is
//! `--keep-daily=7`; `prune = true` is `--prune`; a list repeats the flag).
//! `[repository]` holds the global flags, a section named after a command
//! that command's flags. Precedence: the command line, then the
//! environment (`CAIRN_REPOSITORY`, …), then the file. Every key of every
//! section is checked against the flags of its command, so a typo is an
//! error naming the key and the file, whatever the command run.

use std::ffi::OsString;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command, CommandFactory};

use cairn::job::config::{find_profile, JobConfig};
use cairn::{Error, Result};

use super::Cli;

/// Plural key names accepted for a flag (`tags = [...]` for `--tag`), and
/// `repository` for `--repo`.
const ALIASES: &[(&str, &str)] = &[
    ("repository", "repo"),
    ("tags", "tag"),
    ("hosts", "host"),
    ("paths", "path"),
    ("excludes", "exclude"),
    ("exclude-files", "exclude-file"),
    ("options", "option"),
];

/// The config named by `--config` or `-P` on a parsed command line, if any.
pub fn named(m: &ArgMatches) -> Result<Option<JobConfig>> {
    let leaf = leaf(m);
    let file = leaf.get_one::<std::path::PathBuf>("config").cloned();
    let profile = leaf.get_one::<String>("profile").cloned();
    let path = match (file, profile) {
        (Some(f), None) => f,
        (None, Some(p)) => find_profile(&p)?,
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => return Err(Error::invalid("give --config or -P, not both")),
    };
    let cfg = JobConfig::load(&path)?;
    check_keys(&cfg)?;
    Ok(Some(cfg))
}

/// The arguments `cfg` adds to `argv` (already parsed as `m`): global flags
/// from `[repository]`, and the flags of the section named after the
/// command, each only where neither the command line nor the environment
/// gave it. They go before a `--` (after which a command's own arguments
/// follow).
pub fn augment(argv: &[OsString], m: &ArgMatches, cfg: &JobConfig) -> Result<Vec<OsString>> {
    let root = Cli::command();
    let leaf_m = leaf(m);
    let mut extra = flags_for(&root, leaf_m, &cfg.repository, "repository", cfg)?;
    if let Some((name, _)) = m.subcommand() {
        if let (Some(section), Some(cmd)) = (cfg.commands.get(name), root.find_subcommand(name)) {
            extra.extend(flags_for(cmd, leaf_m, section, name, cfg)?);
        }
    }
    let mut out = argv.to_vec();
    let at = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    out.splice(at..at, extra);
    Ok(out)
}

/// Every section's keys name flags of its command (`[repository]`: the
/// global ones).
pub fn check_keys(cfg: &JobConfig) -> Result<()> {
    let root = Cli::command();
    for key in cfg.repository.keys() {
        find_arg(&root, key).ok_or_else(|| unknown(cfg, "repository", key, true))?;
    }
    flags_for(&root, &ArgMatches::default(), &cfg.repository, "repository", cfg)?;
    for (name, section) in &cfg.commands {
        let Some(cmd) = root.find_subcommand(name) else {
            return Err(Error::invalid(format!(
                "config {}: unknown section [{name}] (sections: [repository], a command's name such as [backup] or \
                 [forget], [hooks], [notify], [monitor], [drill])",
                cfg.path.display()
            )));
        };
        for key in section.keys() {
            find_arg(cmd, key).ok_or_else(|| unknown(cfg, name, key, false))?;
        }
        // Switches get true or false, options a value.
        flags_for(cmd, &ArgMatches::default(), section, name, cfg)?;
    }
    if let Some(backup) = root.find_subcommand("backup") {
        for s in &cfg.sources {
            for key in s.flags.keys() {
                find_arg(backup, key).ok_or_else(|| unknown(cfg, "[backup.snapshots]", key, false))?;
            }
            flags_for(backup, &ArgMatches::default(), &s.flags, "backup.snapshots", cfg)?;
        }
    }
    Ok(())
}

fn unknown(cfg: &JobConfig, section: &str, key: &str, global: bool) -> Error {
    let section = if section.starts_with('[') { section.to_string() } else { format!("[{section}]") };
    Error::invalid(format!(
        "config {}: unknown key `{key}` in {section} (keys are the {} long flags, such as `{}`)",
        cfg.path.display(),
        if global { "global" } else { "command's" },
        if global { "password-file" } else { "keep-daily" }
    ))
}

/// The non-positional argument of `cmd` whose long name is `key` (or an
/// alias of it).
fn find_arg<'a>(cmd: &'a Command, key: &str) -> Option<&'a clap::Arg> {
    let key = ALIASES.iter().find(|(a, _)| *a == key).map(|(_, k)| *k).unwrap_or(key);
    if key == "config" || key == "profile" {
        return None;
    }
    cmd.get_arguments().find(|a| a.get_long() == Some(key) && !a.is_positional())
}

/// Flags (as `--key=value` arguments) for the keys of `section` that `m`
/// did not get from the command line or the environment.
pub fn flags_for(
    cmd: &Command,
    m: &ArgMatches,
    section: &toml::Table,
    name: &str,
    cfg: &JobConfig,
) -> Result<Vec<OsString>> {
    let mut out = Vec::new();
    for (key, value) in section {
        let Some(arg) = find_arg(cmd, key) else { continue };
        let id = arg.get_id().as_str();
        // (value_source panics on an id the matches do not know.)
        let given = match m.try_get_raw(id) {
            Ok(Some(_)) => matches!(m.value_source(id), Some(ValueSource::CommandLine | ValueSource::EnvVariable)),
            _ => false,
        };
        if given {
            continue;
        }
        let long = arg.get_long().unwrap_or(key);
        let bad = |what: &str| Error::invalid(format!("config {}: [{name}] `{key}` {what}", cfg.path.display()));
        let takes_value = !matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count);
        let values: Vec<&toml::Value> = match value {
            toml::Value::Array(a) => a.iter().collect(),
            v => vec![v],
        };
        for v in values {
            if !takes_value {
                match v {
                    toml::Value::Boolean(true) => out.push(OsString::from(format!("--{long}"))),
                    toml::Value::Boolean(false) => {}
                    _ => return Err(bad("is a switch: use true or false")),
                }
                continue;
            }
            let s = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(_) => return Err(bad("takes a value, not true or false")),
                toml::Value::Datetime(d) => d.to_string(),
                _ => return Err(bad("must be a string, a number or a list of them")),
            };
            out.push(OsString::from(format!("--{long}={s}")));
        }
    }
    Ok(out)
}

/// The matches of the innermost subcommand (global flags are propagated
/// there).
fn leaf(m: &ArgMatches) -> &ArgMatches {
    let mut m = m;
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    m
}
