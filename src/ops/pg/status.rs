//! `pg status`: per system and timeline, the base backups, the archived
//! WAL range and its gaps, the newest point a restore can reach, and how
//! long ago the newest WAL arrived.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::archive::Archive;
use super::restore::base_backups;
use crate::error::Result;
use crate::pg::wal::WalFile;
use crate::repo::Repository;

#[derive(Debug, Serialize)]
pub struct Timeline {
    pub timeline: u32,
    pub first: String,
    pub last: String,
    pub segments: u64,
    /// Missing segments: (first missing, last missing).
    pub gaps: Vec<(String, String)>,
    pub partial: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct BaseBackup {
    pub snapshot: String,
    pub timeline: u32,
    pub start_wal: String,
    pub stop_wal: String,
    pub stop_lsn: String,
    pub stop_time: String,
}

#[derive(Debug, Serialize)]
pub struct SystemStatus {
    pub system_id: u64,
    pub segment_size: u64,
    pub base_backups: Vec<BaseBackup>,
    pub timelines: Vec<Timeline>,
    pub history_files: Vec<String>,
    /// The last segment a restore of the newest base backup can replay
    /// without a gap.
    pub reachable: Option<String>,
    pub newest_wal: Option<String>,
    pub newest_wal_time: Option<DateTime<Utc>>,
    /// Seconds since the newest WAL file arrived.
    pub lag_seconds: Option<i64>,
    pub problems: Vec<String>,
}

/// The last segment a restore of `pg` replays without a gap, or `None` if
/// its first segment is missing.
fn reachable_from(
    archive: &Archive,
    sys: u64,
    pg: &crate::format::snapshot::PgInfo,
    per_tli: &BTreeMap<u32, Vec<u64>>,
) -> Result<Option<String>> {
    let seg = pg.segment_size;
    let Some(start) = WalFile::parse(&pg.start_wal).and_then(|f| f.segno(seg)) else { return Ok(None) };
    let target = super::restore::descendant_timeline(archive, sys, pg)?;
    // (timeline, first segment on it), oldest first.
    let mut lineage = vec![(pg.timeline, 0u64)];
    if target != pg.timeline {
        if let Some(text) = archive.fetch(sys, &WalFile::History { tli: target })? {
            let history = crate::pg::wal::parse_history(&String::from_utf8_lossy(&text))?;
            lineage.clear();
            let mut begin = 0;
            for (tli, switch) in history {
                lineage.push((tli, begin));
                begin = switch.segment(seg);
            }
            lineage.push((target, begin));
        }
    }
    let tli_for = |n: u64| lineage.iter().rev().find(|(_, b)| *b <= n).map(|(t, _)| *t);
    let have = |n: u64| tli_for(n).is_some_and(|t| per_tli.get(&t).is_some_and(|v| v.binary_search(&n).is_ok()));
    if !have(start) {
        return Ok(None);
    }
    let mut n = start;
    while have(n + 1) {
        n += 1;
    }
    Ok(tli_for(n).map(|t| WalFile::segment(t, n, seg).to_string()))
}

/// The status of every system in the repository.
pub fn status(repo: &Repository) -> Result<Vec<SystemStatus>> {
    let archive = Archive { backend: &repo.backend, key: &repo.key, level: repo.config.compression };
    let backups = base_backups(repo)?;
    let mut systems: BTreeSet<u64> = archive.systems()?.into_iter().collect();
    systems.extend(backups.iter().map(|(_, _, pg)| pg.system_id));
    let now = Utc::now();
    let mut out = Vec::new();
    for sys in systems {
        let record = archive.record(sys)?;
        let seg = record
            .as_ref()
            .map(|r| r.segment_size)
            .or_else(|| backups.iter().find(|b| b.2.system_id == sys).map(|b| b.2.segment_size))
            .unwrap_or(16 << 20);
        let listed = archive.list(sys)?;
        let mut per_tli: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        let mut partial: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        let mut history = Vec::new();
        let mut newest: Option<(DateTime<Utc>, String)> = None;
        for l in &listed {
            match l.file {
                WalFile::Segment { tli, .. } => per_tli.entry(tli).or_default().push(l.file.segno(seg).unwrap_or(0)),
                WalFile::Partial { tli, .. } => partial.entry(tli).or_default().push(l.file.to_string()),
                WalFile::History { .. } => history.push(l.file.to_string()),
                WalFile::BackupHistory { .. } => {}
            }
            if let Some(m) = l.modified {
                if newest.as_ref().is_none_or(|(t, _)| m > *t) {
                    newest = Some((m, l.file.to_string()));
                }
            }
        }
        for v in per_tli.values_mut() {
            v.sort_unstable();
        }
        let mut problems = Vec::new();
        let mut timelines = Vec::new();
        for (tli, mut segs) in per_tli.clone() {
            segs.sort_unstable();
            let mut gaps = Vec::new();
            for w in segs.windows(2) {
                if w[1] > w[0] + 1 {
                    let (a, b) = (WalFile::segment(tli, w[0] + 1, seg), WalFile::segment(tli, w[1] - 1, seg));
                    problems.push(if a == b {
                        format!("timeline {tli}: segment {a} is missing")
                    } else {
                        format!("timeline {tli}: segments {a} to {b} are missing")
                    });
                    gaps.push((a.to_string(), b.to_string()));
                }
            }
            timelines.push(Timeline {
                timeline: tli,
                first: WalFile::segment(tli, segs[0], seg).to_string(),
                last: WalFile::segment(tli, *segs.last().expect("non-empty"), seg).to_string(),
                segments: segs.len() as u64,
                gaps,
                partial: partial.remove(&tli).unwrap_or_default(),
            });
        }
        let mine: Vec<_> = backups.iter().filter(|b| b.2.system_id == sys).collect();
        // From the newest base backup, forward without a gap, along the
        // timelines a restore follows (R5): each segment on the timeline
        // that holds it in the target timeline's history.
        let reachable = match mine.last() {
            Some((_, _, pg)) => reachable_from(&archive, sys, pg, &per_tli)?,
            None => None,
        };
        if let Some((_, _, pg)) = mine.last() {
            if reachable.is_none() {
                problems
                    .push(format!("the newest base backup's first WAL segment {} is not in the archive", pg.start_wal));
            }
        }
        out.push(SystemStatus {
            system_id: sys,
            segment_size: seg,
            base_backups: mine
                .iter()
                .map(|(id, _, pg)| BaseBackup {
                    snapshot: id.short(),
                    timeline: pg.timeline,
                    start_wal: pg.start_wal.clone(),
                    stop_wal: pg.stop_wal.clone(),
                    stop_lsn: pg.stop_lsn.clone(),
                    stop_time: pg.stop_time.to_rfc3339(),
                })
                .collect(),
            timelines,
            history_files: history,
            reachable,
            lag_seconds: newest.as_ref().map(|(t, _)| (now - *t).num_seconds().max(0)),
            newest_wal_time: newest.as_ref().map(|(t, _)| *t),
            newest_wal: newest.map(|(_, n)| n),
            problems,
        });
    }
    Ok(out)
}
