//! `forget`: remove snapshots according to a retention policy, as restic's
//! `forget` does. The policy part ([`plan`]) is a pure function of the
//! snapshots, the policy, a time zone and "now"; [`run`] deletes.
//!
//! Semantics (restic's `ApplyPolicy`, with the choices noted):
//!
//! - Snapshots are split into groups by [`GroupBy`] (default: host and
//!   paths) and the policy applies to each group on its own.
//! - In a group, snapshots are taken newest first. Each count rule (`last`,
//!   `hourly`, `daily`, `weekly`, `monthly`, `yearly`) keeps a snapshot
//!   whose bucket differs from the last bucket that rule kept, while the
//!   rule has count left ([`Keep::Unlimited`] never runs out): so of several
//!   snapshots in one day, the newest is the daily one. Buckets are read in
//!   the given time zone (the CLI passes the machine's local zone, where
//!   restic uses the offset stored in each snapshot): hour = date and hour
//!   (the repeated hour when clocks go back counts as two hours: its two
//!   halves have different UTC offsets), day = date, week = ISO 8601 year
//!   and week (2021-01-03 is in 2020-W53), month, year; `last` is one
//!   bucket per snapshot.
//! - As restic does since 0.16: when a count rule still has count left at
//!   the oldest snapshot of the group, that snapshot is kept too (reason
//!   "oldest daily snapshot" when it shares its bucket with a newer kept
//!   one), so a short history is not cut. The `within-*` rules have no
//!   count and do not do this.
//! - `within D` keeps every snapshot newer than D before the group's newest
//!   snapshot, not before "now": a host that stopped backing up keeps its
//!   last snapshots. A snapshot dated after "now" (a wrong clock) is not
//!   taken as the newest, so it cannot make the others look old; it is
//!   itself always within any window. When every snapshot of a group lies
//!   in the future, "now" is the reference.
//! - `within-daily D` (and hourly, weekly, monthly, yearly) applies the
//!   bucket rule, without a count, to the snapshots within D of the newest.
//! - A tag entry `a,b` keeps every snapshot that has both `a` and `b`.
//! - Durations subtract calendar years and months, then days, on the
//!   wall clock of the time zone, then hours as elapsed time (Go's
//!   `AddDate(-y, -m, -d).Add(-h)`). Where Go rolls 31 March minus one month
//!   over to 3 March, this clamps to the last day of February; a wall-clock
//!   time that falls into a repeated hour takes the earlier instant (the
//!   longer window), one in a skipped hour the offset from before the gap.
//!   "Within" means strictly newer than that instant.
//!
//! A policy that keeps nothing ([`KeepPolicy::is_empty`]) is refused by the
//! CLI; removing everything is the separate [`plan_keep_none`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Days, FixedOffset, Months, NaiveDateTime, Offset, TimeDelta, TimeZone, Timelike, Utc,
};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::SnapshotId;
use crate::repo::Repository;

/// How many buckets a count rule keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    N(u32),
    Unlimited,
}

impl Keep {
    /// Whether the rule can keep anything (`N(0)` cannot).
    pub fn is_active(self) -> bool {
        self != Keep::N(0)
    }
}

impl FromStr for Keep {
    type Err = Error;

    /// A non-negative number or `unlimited`.
    fn from_str(s: &str) -> Result<Self> {
        if s == "unlimited" {
            return Ok(Keep::Unlimited);
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(Keep::N)
                .map_err(|_| Error::invalid(format!("invalid count {s:?}: at most {} (or 'unlimited')", u32::MAX)));
        }
        let negative = s.strip_prefix('-').is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()));
        Err(Error::invalid(format!(
            "invalid count {s:?}: must be a non-negative number or 'unlimited'{}",
            if negative { " (restic's -1 is written 'unlimited' here)" } else { "" }
        )))
    }
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Keep::N(n) => write!(f, "{n}"),
            Keep::Unlimited => f.write_str("unlimited"),
        }
    }
}

/// A calendar duration in restic's syntax: `2y5m7d3h`, `7d`, `12m`, `1y`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Duration {
    pub years: u32,
    pub months: u32,
    pub days: u32,
    pub hours: u32,
}

impl Duration {
    pub fn is_zero(&self) -> bool {
        *self == Duration::default()
    }

    /// The instant `self` before `t`, on the calendar of `tz`: years and
    /// months (clamped to the end of a shorter month), then days, on the
    /// wall clock; then hours as elapsed time.
    pub fn before<Tz: TimeZone>(&self, t: DateTime<Utc>, tz: &Tz) -> DateTime<Utc> {
        let months = u64::from(self.years) * 12 + u64::from(self.months);
        let mut at = t;
        if months > 0 || self.days > 0 {
            let local = t.with_timezone(tz).naive_local();
            let shifted = u32::try_from(months)
                .ok()
                .and_then(|m| local.checked_sub_months(Months::new(m)))
                .and_then(|n| n.checked_sub_days(Days::new(u64::from(self.days))));
            at = match shifted {
                Some(n) => resolve_local(tz, n),
                None => return DateTime::<Utc>::MIN_UTC,
            };
        }
        at.checked_sub_signed(TimeDelta::hours(i64::from(self.hours))).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

/// A wall-clock time of `tz` as an instant: in a repeated hour the earlier
/// one; in a skipped hour, read with the offset from before the gap.
fn resolve_local<Tz: TimeZone>(tz: &Tz, n: NaiveDateTime) -> DateTime<Utc> {
    if let Some(t) = tz.from_local_datetime(&n).earliest() {
        return t.with_timezone(&Utc);
    }
    for back in 1..=96 {
        let Some(p) = n.checked_sub_signed(TimeDelta::minutes(15 * back)) else { break };
        if let Some(t) = tz.from_local_datetime(&p).earliest() {
            let off = i64::from(t.offset().fix().local_minus_utc());
            return n.checked_sub_signed(TimeDelta::seconds(off)).unwrap_or(n).and_utc();
        }
    }
    n.and_utc()
}

impl FromStr for Duration {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: String| {
            Error::invalid(format!(
                "invalid duration {s:?}: {why} (write numbers with units y, m, d, h: 7d, 12m, 2y5m7d3h)"
            ))
        };
        if s.is_empty() {
            return Err(bad("it is empty".into()));
        }
        if s.starts_with('-') {
            return Err(bad("it must not be negative".into()));
        }
        let mut d = Duration::default();
        let mut seen = [false; 4];
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (num, after) = rest.split_at(digits);
            if digits == 0 {
                let c = after.chars().next().unwrap_or(' ');
                return Err(bad(format!("expected a number before {c:?}")));
            }
            let n: u32 = num.parse().map_err(|_| bad(format!("{num} is too large")))?;
            let Some(unit) = after.chars().next() else {
                return Err(bad(format!("{num} has no unit")));
            };
            let (slot, field) = match unit {
                'y' => (0, &mut d.years),
                'm' => (1, &mut d.months),
                'd' => (2, &mut d.days),
                'h' => (3, &mut d.hours),
                c => return Err(bad(format!("unknown unit {c:?}"))),
            };
            if std::mem::replace(&mut seen[slot], true) {
                return Err(bad(format!("the unit {unit:?} appears twice")));
            }
            *field = n;
            rest = &after[unit.len_utf8()..];
        }
        Ok(d)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0h");
        }
        for (n, unit) in [(self.years, 'y'), (self.months, 'm'), (self.days, 'd'), (self.hours, 'h')] {
            if n > 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Which snapshots to keep. Every field `None` (or empty) keeps nothing:
/// see [`KeepPolicy::is_empty`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeepPolicy {
    pub last: Option<Keep>,
    pub hourly: Option<Keep>,
    pub daily: Option<Keep>,
    pub weekly: Option<Keep>,
    pub monthly: Option<Keep>,
    pub yearly: Option<Keep>,
    pub within: Option<Duration>,
    pub within_hourly: Option<Duration>,
    pub within_daily: Option<Duration>,
    pub within_weekly: Option<Duration>,
    pub within_monthly: Option<Duration>,
    pub within_yearly: Option<Duration>,
    /// Each entry is a comma-separated set: a snapshot with all tags of one
    /// entry is kept.
    pub tags: Vec<String>,
}

/// The bucket rules, finest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Last,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Last => "last",
            Unit::Hour => "hourly",
            Unit::Day => "daily",
            Unit::Week => "weekly",
            Unit::Month => "monthly",
            Unit::Year => "yearly",
        }
    }
}

/// A bucket: a number of the calendar unit and, for hours, the UTC offset
/// (so that the two halves of a repeated hour are two buckets).
type Bucket = (i64, i32);

fn bucket<Tz: TimeZone>(unit: Unit, t: &DateTime<Tz>, nr: usize) -> Bucket {
    let (y, m, d) = (i64::from(t.year()), i64::from(t.month()), i64::from(t.day()));
    match unit {
        Unit::Last => (nr as i64, 0),
        Unit::Hour => ((y * 10_000 + m * 100 + d) * 100 + i64::from(t.hour()), t.offset().fix().local_minus_utc()),
        Unit::Day => (y * 10_000 + m * 100 + d, 0),
        Unit::Week => {
            let w = t.iso_week();
            (i64::from(w.year()) * 100 + i64::from(w.week()), 0)
        }
        Unit::Month => (y * 100 + m, 0),
        Unit::Year => (y, 0),
    }
}

/// The tags of one `--keep-tag` entry (empty ones dropped).
fn tag_set(entry: &str) -> Vec<&str> {
    entry.split(',').filter(|t| !t.is_empty()).collect()
}

impl KeepPolicy {
    fn counts(&self) -> [(Unit, Option<Keep>); 6] {
        [
            (Unit::Last, self.last),
            (Unit::Hour, self.hourly),
            (Unit::Day, self.daily),
            (Unit::Week, self.weekly),
            (Unit::Month, self.monthly),
            (Unit::Year, self.yearly),
        ]
    }

    fn withins(&self) -> [(Unit, Option<Duration>); 5] {
        [
            (Unit::Hour, self.within_hourly),
            (Unit::Day, self.within_daily),
            (Unit::Week, self.within_weekly),
            (Unit::Month, self.within_monthly),
            (Unit::Year, self.within_yearly),
        ]
    }

    /// Whether the policy keeps nothing: no count above 0, no non-zero
    /// duration, no tag. [`plan`] must not be given such a policy (the CLI
    /// refuses it; [`plan_keep_none`] removes everything on purpose).
    pub fn is_empty(&self) -> bool {
        self.counts().iter().all(|(_, k)| !k.is_some_and(Keep::is_active))
            && self.within.is_none_or(|d| d.is_zero())
            && self.withins().iter().all(|(_, d)| d.is_none_or(|d| d.is_zero()))
            && self.tags.iter().all(|t| tag_set(t).is_empty())
    }
}

impl fmt::Display for KeepPolicy {
    /// "keep last 3, 7 daily, all monthly, daily within 30d, within 7d of the newest, tag 'db'".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (unit, k) in self.counts() {
            match k {
                Some(Keep::N(n)) if n > 0 => parts.push(format!("{} {n}", unit.name())),
                Some(Keep::Unlimited) => parts.push(format!("{} all", unit.name())),
                _ => {}
            }
        }
        for (unit, d) in self.withins() {
            if let Some(d) = d.filter(|d| !d.is_zero()) {
                parts.push(format!("{} within {d}", unit.name()));
            }
        }
        if let Some(d) = self.within.filter(|d| !d.is_zero()) {
            parts.push(format!("all within {d} of the newest"));
        }
        for t in &self.tags {
            let set = tag_set(t);
            if !set.is_empty() {
                parts.push(format!("tag '{}'", set.join(",")));
            }
        }
        if parts.is_empty() {
            f.write_str("empty policy: keep everything")
        } else {
            write!(f, "keep {}", parts.join(", "))
        }
    }
}

/// What groups snapshots: `host,paths,tags`, any subset (`""`: one group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBy {
    pub host: bool,
    pub paths: bool,
    pub tags: bool,
}

impl GroupBy {
    /// One group for all snapshots.
    pub const NONE: GroupBy = GroupBy { host: false, paths: false, tags: false };

    pub fn key(&self, s: &Snapshot) -> GroupKey {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            v
        };
        GroupKey {
            host: self.host.then(|| s.hostname.clone()),
            paths: self.paths.then(|| sorted(&s.paths)),
            tags: self.tags.then(|| sorted(&s.tags)),
        }
    }
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy { host: true, paths: true, tags: false }
    }
}

impl FromStr for GroupBy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut g = GroupBy::NONE;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" | "hosts" => g.host = true,
                "path" | "paths" => g.paths = true,
                "tag" | "tags" => g.tags = true,
                other => {
                    return Err(Error::invalid(format!(
                        "invalid group-by {s:?}: unknown field {other:?} (use host, paths, tags, \
                         comma-separated, or \"\" for a single group)"
                    )))
                }
            }
        }
        Ok(g)
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<&str> = [(self.host, "host"), (self.paths, "paths"), (self.tags, "tags")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// The values a group shares: the fields of [`GroupBy`] that are set.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GroupKey {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl fmt::Display for GroupKey {
    /// `host db1, paths [/etc /srv], tags []`, or `all snapshots`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {h}"));
        }
        if let Some(p) = &self.paths {
            parts.push(format!("paths [{}]", p.join(" ")));
        }
        if let Some(t) = &self.tags {
            parts.push(format!("tags [{}]", t.join(",")));
        }
        if parts.is_empty() {
            f.write_str("all snapshots")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// One snapshot of a group and what happens to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForgetEntry {
    pub id: SnapshotId,
    pub short_id: String,
    pub time: DateTime<FixedOffset>,
    pub host: String,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    pub keep: bool,
    /// The rules that keep it ("daily snapshot", "within 7d", "tag 'x'"…);
    /// empty when it is removed.
    pub reasons: Vec<String>,
}

/// A group's snapshots, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForgetGroup {
    pub key: GroupKey,
    pub snapshots: Vec<ForgetEntry>,
}

impl ForgetGroup {
    pub fn kept(&self) -> usize {
        self.snapshots.iter().filter(|e| e.keep).count()
    }

    pub fn removed(&self) -> usize {
        self.snapshots.len() - self.kept()
    }
}

/// What `forget` will do. Groups are ordered by key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForgetPlan {
    /// The policy in words ("keep daily 7, weekly 4").
    pub policy: String,
    pub group_by: String,
    pub groups: Vec<ForgetGroup>,
    /// Every snapshot kept, and every one to remove (in group order).
    pub keep: Vec<SnapshotId>,
    pub remove: Vec<SnapshotId>,
}

/// What was done.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ForgetReport {
    /// Snapshot objects deleted (or found already gone).
    pub removed: usize,
    pub kept: usize,
}

type Item<'a> = &'a (SnapshotId, Snapshot);

/// Groups, orders each group newest first, and lets `decide` give each
/// snapshot its reasons to be kept (none: removed).
fn build(
    snapshots: &[(SnapshotId, Snapshot)],
    group_by: GroupBy,
    policy: String,
    mut decide: impl FnMut(&[Item<'_>]) -> Vec<Vec<String>>,
) -> ForgetPlan {
    let mut by_key: BTreeMap<GroupKey, Vec<Item<'_>>> = BTreeMap::new();
    for item in snapshots {
        by_key.entry(group_by.key(&item.1)).or_default().push(item);
    }
    let mut plan =
        ForgetPlan { policy, group_by: group_by.to_string(), groups: Vec::new(), keep: Vec::new(), remove: Vec::new() };
    for (key, mut list) in by_key {
        list.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(b.0.cmp(&a.0)));
        list.dedup_by_key(|item| item.0);
        let reasons = decide(&list);
        let mut entries = Vec::with_capacity(list.len());
        for ((id, s), reasons) in list.into_iter().zip(reasons) {
            let keep = !reasons.is_empty();
            if keep { &mut plan.keep } else { &mut plan.remove }.push(*id);
            entries.push(ForgetEntry {
                id: *id,
                short_id: id.short(),
                time: s.time,
                host: s.hostname.clone(),
                paths: s.paths.clone(),
                tags: s.tags.clone(),
                keep,
                reasons,
            });
        }
        plan.groups.push(ForgetGroup { key, snapshots: entries });
    }
    plan
}

/// Applies `policy` to the snapshots, group by group (see the module
/// documentation). Buckets are read in `tz`; `now` only serves to ignore
/// snapshots dated in the future as the reference of the `within` rules.
/// Writes nothing. With an empty policy (which callers refuse first) every
/// snapshot is kept, as restic does.
pub fn plan<Tz: TimeZone>(
    snapshots: &[(SnapshotId, Snapshot)],
    policy: &KeepPolicy,
    group_by: GroupBy,
    tz: &Tz,
    now: DateTime<Utc>,
) -> ForgetPlan {
    build(snapshots, group_by, policy.to_string(), |list| {
        if policy.is_empty() {
            vec![vec!["policy is empty".to_string()]; list.len()]
        } else {
            apply(list, policy, tz, now)
        }
    })
}

/// `--keep-none`: every snapshot is removed (grouped as for a policy, for
/// the listing).
pub fn plan_keep_none(snapshots: &[(SnapshotId, Snapshot)], group_by: GroupBy) -> ForgetPlan {
    build(snapshots, group_by, "keep none: remove every snapshot".into(), |list| vec![Vec::new(); list.len()])
}

/// `forget ID...`: exactly these snapshots are removed (one group).
pub fn plan_explicit(named: &[(SnapshotId, Snapshot)]) -> ForgetPlan {
    build(named, GroupBy::NONE, "remove the snapshots named".into(), |list| vec![Vec::new(); list.len()])
}

struct CountRule {
    unit: Unit,
    /// `None`: unlimited.
    left: Option<u32>,
    last: Option<Bucket>,
}

struct WithinRule {
    unit: Unit,
    duration: Duration,
    cutoff: DateTime<Utc>,
    last: Option<Bucket>,
}

/// The reasons to keep each snapshot of one group (newest first).
fn apply<Tz: TimeZone>(list: &[Item<'_>], p: &KeepPolicy, tz: &Tz, now: DateTime<Utc>) -> Vec<Vec<String>> {
    let latest = list.iter().map(|(_, s)| s.time.with_timezone(&Utc)).filter(|t| *t <= now).max().unwrap_or(now);
    let mut counts: Vec<CountRule> = p
        .counts()
        .into_iter()
        .filter_map(|(unit, k)| match k {
            Some(Keep::N(n)) if n > 0 => Some(CountRule { unit, left: Some(n), last: None }),
            Some(Keep::Unlimited) => Some(CountRule { unit, left: None, last: None }),
            _ => None,
        })
        .collect();
    let mut withins: Vec<WithinRule> = p
        .withins()
        .into_iter()
        .filter_map(|(unit, d)| {
            let d = d.filter(|d| !d.is_zero())?;
            Some(WithinRule { unit, duration: d, cutoff: d.before(latest, tz), last: None })
        })
        .collect();
    let within = p.within.filter(|d| !d.is_zero()).map(|d| (d, d.before(latest, tz)));
    let tag_sets: Vec<Vec<&str>> = p.tags.iter().map(|t| tag_set(t)).filter(|s| !s.is_empty()).collect();

    let oldest = list.len().saturating_sub(1);
    let mut out = Vec::with_capacity(list.len());
    for (nr, (_, s)) in list.iter().enumerate() {
        let t = s.time.with_timezone(&Utc);
        let local = s.time.with_timezone(tz);
        let mut reasons = Vec::new();
        for set in &tag_sets {
            if set.iter().all(|t| s.tags.iter().any(|x| x == t)) {
                reasons.push(format!("tag '{}'", set.join(",")));
            }
        }
        if let Some((d, cutoff)) = within {
            if t > cutoff {
                reasons.push(format!("within {d}"));
            }
        }
        for r in &mut counts {
            if r.left == Some(0) {
                continue;
            }
            let b = bucket(r.unit, &local, nr);
            let same = r.last == Some(b);
            if !same || nr == oldest {
                let name = r.unit.name();
                reasons.push(if same { format!("oldest {name} snapshot") } else { format!("{name} snapshot") });
                r.last = Some(b);
                if let Some(left) = &mut r.left {
                    *left -= 1;
                }
            }
        }
        for r in &mut withins {
            if t > r.cutoff {
                let b = bucket(r.unit, &local, nr);
                if r.last != Some(b) {
                    reasons.push(format!("{} within {}", r.unit.name(), r.duration));
                    r.last = Some(b);
                }
            }
        }
        out.push(reasons);
    }
    out
}

/// Deletes `snapshots/<id>` of every snapshot the plan removes. The caller
/// holds the lock. Data stays until `prune`.
pub fn run(repo: &Repository, plan: &ForgetPlan) -> Result<ForgetReport> {
    for id in &plan.remove {
        super::repair::snapshots::delete_snapshot(repo, id)?;
    }
    // Durable before a prune decides what these snapshots no longer use.
    if !plan.remove.is_empty() {
        repo.backend.sync_deletes("snapshots")?;
    }
    Ok(ForgetReport { removed: plan.remove.len(), kept: plan.keep.len() })
}

#[cfg(test)]
mod tests;
