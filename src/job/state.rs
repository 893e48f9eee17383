//! The outcome of the last `cairn run` of a config file, kept on the
//! machine that ran it, so that `cairn status` can report "the last run
//! failed" without the repository (which records only what succeeded).
//!
//! Default place: `$XDG_STATE_HOME/cairn/<config stem>.json`, else
//! `~/.local/state/cairn/<config stem>.json`; `[monitor] state-file`
//! overrides it. Written atomically (temporary file, fsync, rename).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    /// When the run started.
    pub started: DateTime<Utc>,
    pub duration_seconds: f64,
    pub success: bool,
    /// What failed, one line each.
    #[serde(default)]
    pub errors: Vec<String>,
    pub sources: Vec<SourceState>,
    /// Whether `check` ran, and passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_success: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceState {
    pub name: String,
    pub success: bool,
    #[serde(default)]
    pub partial: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(default)]
    pub bytes_added: u64,
    pub duration_seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The outcome of the last `cairn drill` of a config file (kept beside the
/// run state, as `<config stem>.drill.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DrillState {
    pub started: DateTime<Utc>,
    pub duration_seconds: f64,
    pub success: bool,
    pub sources: Vec<DrillSourceState>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DrillSourceState {
    pub name: String,
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(default)]
    pub problems: Vec<String>,
}

/// Where the drill state of the config at `config` is kept, given where
/// its run state is.
pub fn drill_path(run_state: &Path) -> PathBuf {
    let stem = run_state.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    run_state.with_file_name(format!("{stem}.drill.json"))
}

/// Where the run state of the config at `config` is kept by default.
pub fn default_path(config: &Path) -> Option<PathBuf> {
    let stem = config.file_stem()?.to_string_lossy().into_owned();
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("cairn").join(format!("{stem}.json")))
}

pub fn write<T: Serialize>(path: &Path, state: &T) -> Result<()> {
    let json = serde_json::to_vec_pretty(state).map_err(|e| Error::invalid(e.to_string()))?;
    write_atomically(path, &json, 0o600)
}

/// The last state, or None when there is none yet.
pub fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| Error::invalid(format!("the run state {} cannot be read: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io_sentence(format!("cannot read the run state {}", path.display()), e)),
    }
}

/// Writes `bytes` to `path` whole or not at all: a temporary file in the
/// same directory, fsynced, renamed over `path`, the directory fsynced.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let ctx = |what: &str, e| Error::io_sentence(format!("cannot {what} {}", path.display()), e);
    std::fs::create_dir_all(dir).map_err(|e| ctx("create the directory of", e))?;
    let mut tmp =
        tempfile::Builder::new().prefix(".cairn-").suffix(".tmp").tempfile_in(dir).map_err(|e| ctx("write", e))?;
    tmp.write_all(bytes).map_err(|e| ctx("write", e))?;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(mode)).map_err(|e| ctx("write", e))?;
    tmp.as_file().sync_all().map_err(|e| ctx("write", e))?;
    tmp.persist(path).map_err(|e| ctx("replace", e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/db1.json");
        assert_eq!(read::<RunState>(&p).unwrap(), None);
        let s = RunState {
            started: Utc::now(),
            duration_seconds: 1.5,
            success: false,
            errors: vec!["app: pg_dump failed".into()],
            sources: vec![SourceState {
                name: "app".into(),
                success: false,
                partial: false,
                snapshot: None,
                bytes_added: 0,
                duration_seconds: 0.2,
                error: Some("pg_dump failed".into()),
            }],
            check_success: None,
        };
        write(&p, &s).unwrap();
        assert_eq!(read(&p).unwrap(), Some(s));
        let names: Vec<_> = std::fs::read_dir(d.path().join("sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["db1.json"]);
        std::fs::write(&p, b"{").unwrap();
        assert!(read::<RunState>(&p).unwrap_err().to_string().contains("db1.json"));
    }
}
