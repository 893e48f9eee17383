//! The recovery settings a restore writes: `restore_command`, the target,
//! and `recovery.signal` (PostgreSQL 12 and later).
//!
//! They go into `postgresql.auto.conf`, between marker lines, as
//! pgBackRest does; recovery settings already there (from the cluster the
//! backup was taken of, or an earlier restore) are commented out, so the
//! file states one target.

use std::path::Path;

use crate::error::{Error, Result};

/// Where recovery stops.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum Target {
    /// Replay all archived WAL.
    Latest,
    /// Stop as soon as the backup is consistent.
    Immediate,
    Time(String),
    Lsn(String),
    Xid(String),
    Name(String),
}

/// What happens once the target is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Pause,
    Promote,
    Shutdown,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Promote => "promote",
            Action::Shutdown => "shutdown",
        }
    }
}

/// The settings written into a restored data directory.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Settings {
    pub restore_command: String,
    pub target: Target,
    pub action: Action,
    /// Stop just after the target (true, PostgreSQL's default) or just
    /// before it.
    pub inclusive: bool,
    /// `recovery_target_timeline`: a number, `current` or `latest`.
    pub timeline: String,
    /// Whether the restored cluster keeps the backed-up `archive_mode`
    /// (false writes `archive_mode = off`).
    pub archive: bool,
}

const BEGIN: &str = "# --- recovery settings written by cairn pg restore";
const END: &str = "# --- end of cairn's recovery settings";
/// Settings that conflict with the ones cairn writes.
const RECOVERY_KEYS: &[&str] = &[
    "restore_command",
    "recovery_target",
    "recovery_target_time",
    "recovery_target_lsn",
    "recovery_target_xid",
    "recovery_target_name",
    "recovery_target_action",
    "recovery_target_inclusive",
    "recovery_target_timeline",
    "archive_mode",
];

/// A configuration-file string literal.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

impl Settings {
    /// The lines of the block, without the markers.
    pub fn lines(&self) -> Vec<String> {
        let mut v = vec![format!("restore_command = {}", quote(&self.restore_command))];
        let target = match &self.target {
            Target::Latest => None,
            Target::Immediate => Some(("recovery_target", "immediate".to_string())),
            Target::Time(t) => Some(("recovery_target_time", t.clone())),
            Target::Lsn(l) => Some(("recovery_target_lsn", l.clone())),
            Target::Xid(x) => Some(("recovery_target_xid", x.clone())),
            Target::Name(n) => Some(("recovery_target_name", n.clone())),
        };
        v.push(format!("recovery_target_timeline = {}", quote(&self.timeline)));
        if !self.archive {
            v.push("archive_mode = off".into());
        }
        if let Some((k, val)) = target {
            v.push(format!("{k} = {}", quote(&val)));
            v.push(format!("recovery_target_action = '{}'", self.action.as_str()));
            if !self.inclusive && !matches!(self.target, Target::Immediate) {
                v.push("recovery_target_inclusive = off".into());
            }
        }
        v
    }

    /// Rewrites `postgresql.auto.conf` with these settings and creates
    /// `recovery.signal`.
    pub fn apply(&self, pgdata: &Path) -> Result<()> {
        let conf = pgdata.join("postgresql.auto.conf");
        let old = match std::fs::read_to_string(&conf) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(conf.display(), e)),
        };
        let text = rewrite(&old, &self.lines());
        std::fs::write(&conf, text).map_err(|e| Error::io(conf.display(), e))?;
        let signal = pgdata.join("recovery.signal");
        std::fs::write(&signal, b"").map_err(|e| Error::io(signal.display(), e))?;
        Ok(())
    }
}

/// `old` without an earlier cairn block, its other recovery settings
/// commented out, then the new block.
fn rewrite(old: &str, lines: &[String]) -> String {
    let mut out = String::new();
    let mut in_block = false;
    for l in old.lines() {
        if l == BEGIN {
            in_block = true;
            continue;
        }
        if l == END {
            in_block = false;
            continue;
        }
        if in_block {
            continue;
        }
        let key = l.trim_start().split(|c: char| c == '=' || c.is_whitespace()).next().unwrap_or("");
        if RECOVERY_KEYS.contains(&key) {
            out.push_str("# commented out by cairn pg restore: ");
        }
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(BEGIN);
    out.push('\n');
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(END);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_replace_earlier_ones() {
        let s = Settings {
            restore_command: "/usr/bin/cairn -r '/srv/repo' pg wal-fetch %f %p".into(),
            target: Target::Time("2026-12-05 08:00:00+00".into()),
            action: Action::Promote,
            inclusive: true,
            timeline: "latest".into(),
            archive: true,
        };
        let old = "# Do not edit\nwork_mem = '8MB'\nrestore_command = 'cp /x/%f %p'\n";
        let once = rewrite(old, &s.lines());
        assert!(once.contains("# commented out by cairn pg restore: restore_command = 'cp /x/%f %p'"));
        assert!(once.contains("restore_command = '/usr/bin/cairn -r ''/srv/repo'' pg wal-fetch %f %p'"));
        assert!(once.contains("recovery_target_time = '2026-12-05 08:00:00+00'"));
        assert!(once.contains("recovery_target_action = 'promote'"));
        let s2 = Settings { target: Target::Latest, ..s };
        let twice = rewrite(&once, &s2.lines());
        assert_eq!(twice.matches(BEGIN).count(), 1);
        assert!(!twice.contains("recovery_target_time ="), "{twice}");
        assert!(twice.contains("work_mem = '8MB'"));
        assert_eq!(quote(r"a\b'c"), r"'a\\b''c'");
    }
}
