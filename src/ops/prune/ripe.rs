//! Which prune runs' marks may be acted on: those whose recorded writers
//! have all gone (format-spec/10-write-order.md, rule 11). Pure: the caller
//! lists the locks and reads the records.

use std::collections::{HashMap, HashSet};

use crate::format::index::{RunId, RunRecord};
use crate::format::lock::{Lock, LockKind};
use crate::repo::lock::{session_of, Liveness, STALE_AFTER};

/// A writer's lock that still holds back some marks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocker {
    pub run: RunId,
    pub lock: Lock,
}

/// The runs whose marks are ripe, and the live locks that hold the others.
///
/// A run is ripe when it has a record and none of the sessions in it holds
/// a lock that is alive. A lock counts as dead only by evidence that needs
/// no clock agreement with its holder: `liveness` (in prune,
/// [`crate::repo::lock::liveness`]) judges its holder
/// [`Liveness::Dead`] (on this host, in this boot and PID namespace, no
/// process with its pid and start time), or its very object (a holder replaces its object
/// at every refresh) was already seen by a prune run more than
/// [`STALE_AFTER`] ago by the records' clock.
pub fn ripe_runs(
    records: &HashMap<RunId, RunRecord>,
    locks: &[([u8; 32], Lock)],
    now: i64,
    liveness: impl Fn(&Lock) -> Liveness,
) -> (HashSet<RunId>, Vec<Blocker>) {
    // The earliest time each lock object was seen by any run.
    let mut seen: HashMap<[u8; 32], i64> = HashMap::new();
    for r in records.values() {
        for l in &r.locks {
            let t = seen.entry(l.object).or_insert(r.time);
            *t = (*t).min(r.time);
        }
    }
    let stale = STALE_AFTER.as_secs() as i64;
    let alive: Vec<(&[u8; 32], &Lock)> = locks
        .iter()
        .filter(|(_, l)| l.kind() == LockKind::Shared)
        .filter(|(o, l)| liveness(l) != Liveness::Dead && seen.get(o).is_none_or(|t| now.saturating_sub(*t) <= stale))
        .map(|(o, l)| (o, l))
        .collect();
    let (mut ripe, mut blockers) = (HashSet::new(), Vec::new());
    for r in records.values() {
        let sessions: HashSet<[u8; 16]> = r.locks.iter().map(|l| l.session).collect();
        let holding: Vec<&Lock> =
            alive.iter().filter(|(o, l)| sessions.contains(&session_of(o, l))).map(|(_, l)| *l).collect();
        if holding.is_empty() {
            ripe.insert(r.run);
        } else {
            blockers.extend(holding.into_iter().map(|l| Blocker { run: r.run, lock: l.clone() }));
        }
    }
    (ripe, blockers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::SeenLock;

    fn lock(session: u8, host: &str) -> Lock {
        Lock {
            time: "2026-11-22T00:00:00+00:00".into(),
            exclusive: false,
            hostname: host.into(),
            username: String::new(),
            pid: 1,
            operation: "backup".into(),
            kind: "shared".into(),
            session: hex::encode([session; 16]),
            ..Default::default()
        }
    }

    fn record(run: u8, time: i64, seen: &[(u8, u8)]) -> (RunId, RunRecord) {
        let locks = seen.iter().map(|(s, o)| SeenLock { session: [*s; 16], object: [*o; 32] }).collect();
        ([run; 16], RunRecord { run: [run; 16], time, locks })
    }

    #[test]
    fn table() {
        let t0 = 1_000_000;
        let min = 60;
        // (records, current locks (session, object), now, gone hosts, expected ripe runs)
        #[allow(clippy::type_complexity)]
        let cases: Vec<(Vec<(u8, i64, Vec<(u8, u8)>)>, Vec<(u8, u8)>, i64, &str, Vec<u8>)> = vec![
            // No writers were running: ripe at once.
            (vec![(1, t0, vec![])], vec![(9, 9)], t0, "", vec![1]),
            // The writer seen is still running (refreshed: a new object).
            (vec![(1, t0, vec![(5, 50)])], vec![(5, 51)], t0 + 10 * min, "", vec![]),
            // It finished: its session holds no lock any more.
            (vec![(1, t0, vec![(5, 50)])], vec![(6, 60)], t0 + 10 * min, "", vec![1]),
            // Its lock object has not changed for over 30 minutes: it died.
            (vec![(1, t0, vec![(5, 50)])], vec![(5, 50)], t0 + 31 * min, "", vec![1]),
            // ...but 20 minutes may be one missed refresh: still blocked.
            (vec![(1, t0, vec![(5, 50)])], vec![(5, 50)], t0 + 20 * min, "", vec![]),
            // A later run saw its refreshed object 40 minutes ago: dead now.
            (
                vec![(1, t0, vec![(5, 50)]), (2, t0 + 5 * min, vec![(5, 51)])],
                vec![(5, 51)],
                t0 + 45 * min,
                "",
                vec![1, 2],
            ),
            // A lock on this host whose process is gone does not hold.
            (vec![(1, t0, vec![(5, 50)])], vec![(5, 50)], t0 + min, "here", vec![1]),
            // A clock far ahead on a writer does not matter: nothing compares it.
            (vec![(1, t0, vec![(5, 50)])], vec![(5, 52)], t0 + 100 * min, "", vec![]),
        ];
        for (i, (records, locks, now, gone, want)) in cases.into_iter().enumerate() {
            let records: HashMap<RunId, RunRecord> =
                records.into_iter().map(|(r, t, seen)| record(r, t, &seen)).collect();
            let locks: Vec<([u8; 32], Lock)> = locks
                .into_iter()
                .map(|(s, o)| ([o; 32], lock(s, if gone.is_empty() { "there" } else { gone })))
                .collect();
            let (ripe, blockers) =
                ripe_runs(
                    &records,
                    &locks,
                    now,
                    |l| {
                        if l.hostname == "here" {
                            Liveness::Dead
                        } else {
                            Liveness::Unknown
                        }
                    },
                );
            let mut got: Vec<u8> = ripe.iter().map(|r| r[0]).collect();
            got.sort();
            assert_eq!(got, want, "case {i}");
            assert_eq!(blockers.is_empty(), ripe.len() == records.len(), "case {i}");
        }
    }

    #[test]
    fn maintenance_locks_do_not_hold_marks() {
        let (run, rec) = record(1, 0, &[(5, 50)]);
        let mut l = lock(5, "there");
        l.kind = "maintenance".into();
        let (ripe, _) = ripe_runs(&HashMap::from([(run, rec)]), &[([51; 32], l)], 10, |_| Liveness::Alive);
        assert!(ripe.contains(&run));
    }
}
