//! The job's configuration file (TOML): what `cairn --config FILE …` and
//! `cairn run` read.
//!
//! The file has three kinds of top-level sections:
//!
//! - `[repository]`: the global flags (`repository`, `password-file`,
//!   `cache-dir`, `option`, …), keys named as the long flags;
//! - sections named after a command (`[backup]`, `[forget]`, `[check]`,
//!   `[copy]`, …): that command's flags, used where the command line gives
//!   none. The command line parser (the CLI) checks the names and keys;
//!   this module only separates them;
//! - the job's own sections, typed here: `[[backup.snapshots]]` (the
//!   sources), `[hooks]`, `[notify]`, `[monitor]` and `[drill]`.
//!
//! Unknown keys in the typed sections are errors naming the key and the
//! file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// A parsed configuration file.
#[derive(Debug, Clone, Default)]
pub struct JobConfig {
    /// Where it was read from (messages name it).
    pub path: PathBuf,
    /// `[repository]`: global flags, key = long flag name.
    pub repository: toml::Table,
    /// Sections named after a command: flags of that command. `backup`
    /// holds `[backup]` without its `snapshots` array.
    pub commands: BTreeMap<String, toml::Table>,
    /// `[[backup.snapshots]]`, in file order.
    pub sources: Vec<SourceSpec>,
    pub hooks: Hooks,
    pub notify: Notify,
    pub monitor: Monitor,
    pub drill: Drill,
}

/// One `[[backup.snapshots]]` entry: one snapshot per run.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// Its name in summaries, metrics and `status` (`name = …`, or derived:
    /// the database, the stream's file name, `redis`, or the paths).
    pub name: String,
    pub kind: SourceKind,
    /// The entry's other keys: `backup` flags for this source only
    /// (`exclude`, `one-file-system`, `tags`, …).
    pub flags: toml::Table,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    /// `sources = ["/etc", …]`: a tree snapshot of these absolute paths.
    Paths(Vec<PathBuf>),
    /// `command = [...]` with `stdin-filename`: the command's stdout as a
    /// stream snapshot.
    Command { argv: Vec<String>, filename: String },
    /// `postgres = "db"` or a table: `pg_dump` of the database and
    /// `pg_dumpall --globals-only`, two files in one snapshot.
    Postgres(PostgresSource),
    /// `redis = "redis://…"` or a table: the server's RDB file.
    Redis(RedisSource),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PostgresSource {
    pub database: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub user: Option<String>,
    /// `custom` (default: `pg_dump -Fc -Z0`) or `plain`.
    #[serde(default = "default_pg_format")]
    pub format: String,
    /// The globals without role passwords (`pg_dumpall
    /// --no-role-passwords`), for a user that is not a superuser.
    #[serde(default)]
    pub no_role_passwords: bool,
}

impl PostgresSource {
    /// The files of its snapshot: the dump (`<db>.dump`, custom format, or
    /// `<db>.sql`, plain) and the globals (`<db>-globals.sql`).
    pub fn snapshot_files(&self) -> [String; 2] {
        let ext = if self.format == "plain" { "sql" } else { "dump" };
        [format!("{}.{ext}", self.database), format!("{}-globals.sql", self.database)]
    }
}

fn default_pg_format() -> String {
    "custom".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RedisSource {
    pub url: String,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// `replica` (default: the replication protocol, as `redis-cli --rdb`)
    /// or `bgsave`.
    #[serde(default = "default_redis_method")]
    pub method: String,
    /// The file name in the snapshot (default `redis.rdb`).
    #[serde(default)]
    pub filename: Option<String>,
}

fn default_redis_method() -> String {
    "replica".into()
}

/// `[hooks]`: shell commands (`sh -c`) run around the job.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Hooks {
    /// Before anything; a failing one fails the run (no source is backed up).
    #[serde(default)]
    pub run_before: Vec<String>,
    /// After a run in which everything succeeded.
    #[serde(default)]
    pub run_after: Vec<String>,
    /// After a run in which something failed; `$CAIRN_ERROR` says what.
    #[serde(default)]
    pub run_failed: Vec<String>,
    /// Always, last.
    #[serde(default)]
    pub run_finally: Vec<String>,
}

/// `[notify]`: where the run's outcome is sent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Notify {
    /// A healthchecks.io-style check URL: `URL/start` when the run starts,
    /// `URL` on success, `URL/fail` on failure (the log tail as the body).
    #[serde(default)]
    pub healthchecks: Option<String>,
    /// POST the run's JSON summary here.
    #[serde(default)]
    pub webhook: Option<String>,
    /// Seconds each request may take (default 10).
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// `[monitor]`: freshness thresholds and the Prometheus textfile.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Monitor {
    #[serde(default)]
    pub prometheus_textfile: Option<PathBuf>,
    /// Age of a source's newest snapshot that makes `status` WARNING.
    #[serde(default)]
    pub warn: Option<String>,
    /// … and CRITICAL.
    #[serde(default)]
    pub crit: Option<String>,
    /// Where `run` records its last outcome for `status` (default: beside
    /// the cache, per config file).
    #[serde(default)]
    pub state_file: Option<PathBuf>,
}

/// `[drill]`: restore tests.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Drill {
    /// Connection string of a database where scratch databases may be
    /// created and dropped.
    #[serde(default)]
    pub postgres_scratch: Option<String>,
    /// Queries run in the scratch database; each must return true.
    #[serde(default)]
    pub postgres_queries: Vec<String>,
    /// Files compared with the live source per tree snapshot (default 20).
    #[serde(default)]
    pub sample_files: Option<usize>,
}

/// Sections with a type of their own; every other top-level table is a
/// command's flags.
const JOB_SECTIONS: &[&str] = &["hooks", "notify", "monitor", "drill"];

/// Keys of a source entry that say what it backs up; the others are flags.
const SOURCE_KEYS: &[&str] = &["name", "sources", "command", "stdin-filename", "postgres", "redis"];

impl JobConfig {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<JobConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io_sentence(format!("cannot read the config file {}", path.display()), e))?;
        Self::parse(&text, path)
    }

    /// Parses a file's text; `path` names it in messages.
    pub fn parse(text: &str, path: &Path) -> Result<JobConfig> {
        let at = path.display();
        let mut top: toml::Table =
            toml::from_str(text).map_err(|e| Error::invalid(format!("config {at}: {}", one_line(&e.to_string()))))?;
        let mut cfg = JobConfig { path: path.to_path_buf(), ..Default::default() };
        if let Some(v) = top.remove("repository") {
            cfg.repository = table(v, "repository", path)?;
        }
        cfg.hooks = typed(&mut top, "hooks", path)?;
        cfg.notify = typed(&mut top, "notify", path)?;
        cfg.monitor = typed(&mut top, "monitor", path)?;
        cfg.drill = typed(&mut top, "drill", path)?;
        for (name, v) in top {
            debug_assert!(!JOB_SECTIONS.contains(&name.as_str()));
            let mut t = match v {
                toml::Value::Table(t) => t,
                _ => return Err(Error::invalid(format!("config {at}: `{name}` must be a section ([{name}])"))),
            };
            if name == "backup" {
                if let Some(s) = t.remove("snapshots") {
                    cfg.sources = sources(s, path)?;
                }
            }
            cfg.commands.insert(name, t);
        }
        Ok(cfg)
    }

    /// The host a source's snapshots record: the entry's `host`, else
    /// `[backup]`'s, else this machine's name.
    pub fn source_host(&self, spec: &SourceSpec) -> String {
        let host = spec
            .flags
            .get("host")
            .or_else(|| self.commands.get("backup").and_then(|b| b.get("host")))
            .and_then(|h| h.as_str())
            .map(String::from);
        crate::ops::backup::hostname_or(&host)
    }

    /// Flags of the section named after `command` (empty if none).
    pub fn command_flags(&self, command: &str) -> toml::Table {
        self.commands.get(command).cloned().unwrap_or_default()
    }
}

/// Where `-P NAME` looks: `/etc/cairn/NAME.toml`, then
/// `~/.config/cairn/NAME.toml` (`$XDG_CONFIG_HOME` if set).
pub fn profile_paths(name: &str) -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from(format!("/etc/cairn/{name}.toml"))];
    let home_cfg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(d) = home_cfg {
        v.push(d.join("cairn").join(format!("{name}.toml")));
    }
    v
}

/// The file `-P NAME` names: the first of [`profile_paths`] that exists.
pub fn find_profile(name: &str) -> Result<PathBuf> {
    if name.is_empty() || name.contains('/') {
        return Err(Error::invalid(format!("-P {name:?}: a profile is a plain name (for /etc/cairn/NAME.toml)")));
    }
    let paths = profile_paths(name);
    paths.iter().find(|p| p.exists()).cloned().ok_or_else(|| {
        let tried: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        Error::not_found(format!("profile {name:?} not found (looked for {})", tried.join(" and ")))
    })
}

/// A duration such as `25h`, `90m`, `2d`, `1d12h` or `30s`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}: use a number with s, m, h or d, such as 90m, 25h or 2d");
    let (mut total, mut num) = (0u64, String::new());
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        total = total.checked_add(n.checked_mul(unit).ok_or_else(bad)?).ok_or_else(bad)?;
        num.clear();
    }
    if !num.is_empty() || s.trim().is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn table(v: toml::Value, name: &str, path: &Path) -> Result<toml::Table> {
    match v {
        toml::Value::Table(t) => Ok(t),
        _ => Err(Error::invalid(format!("config {}: `{name}` must be a section ([{name}])", path.display()))),
    }
}

fn typed<T: Default + serde::de::DeserializeOwned>(top: &mut toml::Table, name: &str, path: &Path) -> Result<T> {
    match top.remove(name) {
        None => Ok(T::default()),
        Some(v) => {
            let t = table(v, name, path)?;
            toml::Value::Table(t).try_into().map_err(|e| {
                Error::invalid(format!("config {}: [{name}]: {}", path.display(), one_line(&e.to_string())))
            })
        }
    }
}

fn sources(v: toml::Value, path: &Path) -> Result<Vec<SourceSpec>> {
    let at = path.display();
    let toml::Value::Array(entries) = v else {
        return Err(Error::invalid(format!("config {at}: `backup.snapshots` must be a list ([[backup.snapshots]])")));
    };
    let mut out: Vec<SourceSpec> = Vec::new();
    for (i, e) in entries.into_iter().enumerate() {
        let here = format!("config {at}: [[backup.snapshots]] entry {}", i + 1);
        let toml::Value::Table(mut t) = e else {
            return Err(Error::invalid(format!("{here} must be a table")));
        };
        let spec = source(&mut t, &here)?;
        if let Some(dup) = out.iter().find(|s| s.name == spec.name) {
            return Err(Error::invalid(format!(
                "{here}: the name {:?} is taken by another entry: give each a different `name`",
                dup.name
            )));
        }
        out.push(SourceSpec { flags: t, ..spec });
    }
    Ok(out)
}

/// Takes the keys that say what an entry backs up out of `t`.
fn source(t: &mut toml::Table, here: &str) -> Result<SourceSpec> {
    let string = |t: &mut toml::Table, k: &str| -> Result<Option<String>> {
        match t.remove(k) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Error::invalid(format!("{here}: `{k}` must be a string"))),
        }
    };
    let strings = |t: &mut toml::Table, k: &str| -> Result<Option<Vec<String>>> {
        match t.remove(k) {
            None => Ok(None),
            Some(v) => v.try_into::<Vec<String>>().map(Some).map_err(|_| {
                Error::invalid(format!("{here}: `{k}` must be a list of strings, such as [\"/etc\", \"/srv\"]"))
            }),
        }
    };
    let name = string(t, "name")?;
    let paths = strings(t, "sources")?;
    let command = strings(t, "command")?;
    let filename = string(t, "stdin-filename")?;
    let postgres = t.remove("postgres");
    let redis = t.remove("redis");
    let given: Vec<&str> = [
        paths.as_ref().map(|_| "sources"),
        command.as_ref().map(|_| "command"),
        postgres.as_ref().map(|_| "postgres"),
        redis.as_ref().map(|_| "redis"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() != 1 {
        return Err(Error::invalid(format!(
            "{here} needs exactly one of `sources`, `command`, `postgres` or `redis`{}",
            if given.is_empty() { String::new() } else { format!(" (it has {})", given.join(" and ")) }
        )));
    }
    if filename.is_some() && command.is_none() {
        return Err(Error::invalid(format!("{here}: `stdin-filename` goes with `command`")));
    }
    let (kind, derived) = if let Some(paths) = paths {
        if paths.is_empty() {
            return Err(Error::invalid(format!("{here}: `sources` is empty")));
        }
        let mut v = Vec::new();
        for p in &paths {
            let pb = PathBuf::from(p);
            if !pb.is_absolute() {
                return Err(Error::invalid(format!(
                    "{here}: {p:?} is not an absolute path (a scheduled job has no useful working directory)"
                )));
            }
            v.push(pb);
        }
        (SourceKind::Paths(v), paths.join(","))
    } else if let Some(argv) = command {
        if argv.is_empty() {
            return Err(Error::invalid(format!("{here}: `command` is empty")));
        }
        let Some(filename) = filename else {
            return Err(Error::invalid(format!(
                "{here}: a `command` needs `stdin-filename` (the file name its output gets in the snapshot)"
            )));
        };
        (SourceKind::Command { argv, filename: filename.clone() }, filename)
    } else if let Some(v) = postgres {
        let pg = match v {
            toml::Value::String(db) => PostgresSource {
                database: db,
                host: None,
                port: None,
                user: None,
                format: default_pg_format(),
                no_role_passwords: false,
            },
            other => other
                .try_into::<PostgresSource>()
                .map_err(|e| Error::invalid(format!("{here}: `postgres`: {}", one_line(&e.to_string()))))?,
        };
        if pg.database.is_empty() || pg.database.contains('/') {
            return Err(Error::invalid(format!("{here}: `postgres` needs a database name")));
        }
        if pg.format != "custom" && pg.format != "plain" {
            return Err(Error::invalid(format!(
                "{here}: postgres format {:?}: use \"custom\" or \"plain\"",
                pg.format
            )));
        }
        let name = pg.database.clone();
        (SourceKind::Postgres(pg), name)
    } else if let Some(v) = redis {
        let r = match v {
            toml::Value::String(url) => {
                RedisSource { url, password_file: None, method: default_redis_method(), filename: None }
            }
            other => other
                .try_into::<RedisSource>()
                .map_err(|e| Error::invalid(format!("{here}: `redis`: {}", one_line(&e.to_string()))))?,
        };
        if r.method != "replica" && r.method != "bgsave" {
            return Err(Error::invalid(format!("{here}: redis method {:?}: use \"replica\" or \"bgsave\"", r.method)));
        }
        let name = r.filename.as_deref().and_then(|f| f.strip_suffix(".rdb")).unwrap_or("redis").to_string();
        (SourceKind::Redis(r), name)
    } else {
        unreachable!("exactly one kind was checked above")
    };
    let name = name.unwrap_or(derived);
    if name.is_empty() {
        return Err(Error::invalid(format!("{here}: `name` is empty")));
    }
    debug_assert!(SOURCE_KEYS.iter().all(|k| !t.contains_key(*k)));
    Ok(SourceSpec { name, kind, flags: toml::Table::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<JobConfig> {
        JobConfig::parse(s, Path::new("/etc/cairn/t.toml"))
    }

    #[test]
    fn the_issue_example_parses() {
        let c = parse(
            r#"
[repository]
repository = "s3:https://s3.example.net/backups/db1"
password-file = "/etc/cairn/pw"

[backup]
host = "db1"
tags = ["nightly"]

[[backup.snapshots]]
sources = ["/etc", "/srv/www"]
exclude = ["*.tmp"]

[[backup.snapshots]]
postgres = "app"

[[backup.snapshots]]
redis = "redis://127.0.0.1:6379"

[[backup.snapshots]]
command = ["mysqldump", "--all-databases"]
stdin-filename = "mysql.sql"

[forget]
keep-daily = 7
prune = true

[check]
read-data-subset = "day/7"

[hooks]
run-before = ["true"]
run-failed = ["echo $CAIRN_ERROR"]

[notify]
healthchecks = "https://hc-ping.com/UUID"

[monitor]
prometheus-textfile = "/var/lib/prometheus/node-exporter/cairn.prom"
warn = "25h"
crit = "30h"

[drill]
postgres-scratch = "postgres://localhost/postgres"
postgres-queries = ["select count(*) > 0 from orders"]
"#,
        )
        .unwrap();
        assert_eq!(c.repository["password-file"].as_str(), Some("/etc/cairn/pw"));
        assert_eq!(c.commands["backup"]["host"].as_str(), Some("db1"));
        assert!(!c.commands["backup"].contains_key("snapshots"));
        assert_eq!(c.commands["forget"]["keep-daily"].as_integer(), Some(7));
        let names: Vec<&str> = c.sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["/etc,/srv/www", "app", "redis", "mysql.sql"]);
        assert_eq!(c.sources[0].flags["exclude"].as_array().map(|a| a.len()), Some(1));
        assert!(matches!(&c.sources[1].kind, SourceKind::Postgres(p) if p.database == "app" && p.format == "custom"));
        assert!(matches!(&c.sources[2].kind, SourceKind::Redis(r) if r.method == "replica"));
        assert_eq!(c.hooks.run_failed, ["echo $CAIRN_ERROR"]);
        assert_eq!(c.monitor.warn.as_deref(), Some("25h"));
        assert_eq!(c.drill.postgres_queries.len(), 1);
    }

    #[test]
    fn unknown_keys_in_typed_sections_name_key_and_file() {
        let e = parse("[hooks]\nrun-befor = [\"x\"]\n").unwrap_err().to_string();
        assert!(e.contains("/etc/cairn/t.toml") && e.contains("run-befor"), "{e}");
        let e = parse("[[backup.snapshots]]\npostgres = { database = \"a\", hots = \"x\" }\n").unwrap_err().to_string();
        assert!(e.contains("hots") && e.contains("entry 1"), "{e}");
    }

    #[test]
    fn entries_need_exactly_one_kind_and_distinct_names() {
        let e = parse("[[backup.snapshots]]\nexclude = [\"x\"]\n").unwrap_err().to_string();
        assert!(e.contains("exactly one"), "{e}");
        let e = parse("[[backup.snapshots]]\nsources = [\"/a\"]\npostgres = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("sources and postgres"), "{e}");
        let e = parse("[[backup.snapshots]]\npostgres = \"x\"\n[[backup.snapshots]]\npostgres = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("give each a different `name`"), "{e}");
        let e = parse("[[backup.snapshots]]\nsources = [\"rel\"]\n").unwrap_err().to_string();
        assert!(e.contains("not an absolute path"), "{e}");
        let e = parse("[[backup.snapshots]]\ncommand = [\"x\"]\n").unwrap_err().to_string();
        assert!(e.contains("stdin-filename"), "{e}");
        let ok =
            parse("[[backup.snapshots]]\nname = \"a\"\npostgres = \"x\"\n[[backup.snapshots]]\npostgres = \"x\"\n");
        assert!(ok.is_ok());
    }

    #[test]
    fn syntax_errors_are_one_line() {
        let e = parse("[repository\n").unwrap_err().to_string();
        assert!(!e.contains('\n') && e.contains("t.toml"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("25h"), Ok(Duration::from_secs(25 * 3600)));
        assert_eq!(parse_duration("1d12h"), Ok(Duration::from_secs(36 * 3600)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5x").is_err());
    }
}
