//! `cairn forget`: remove snapshots by a retention policy (restic's flags),
//! or the snapshots named.

use chrono::{Local, Utc};
use clap::Args;
use serde_json::json;

use cairn::format::lock::LockKind;
use cairn::ops::forget::{self, Duration, ForgetPlan, GroupBy, Keep, KeepPolicy};
use cairn::ops::snapshots;
use cairn::{Error, Result};

use super::commands::FilterArgs;
use super::{output, Global};

/// The refusal of a policy that keeps nothing.
pub const EMPTY_POLICY: &str =
    "refusing to forget every snapshot: give a --keep-* option, or --keep-none to remove all";

fn keep(s: &str) -> std::result::Result<Keep, String> {
    s.parse::<Keep>().map_err(|e| e.message().to_string())
}

fn duration(s: &str) -> std::result::Result<Duration, String> {
    s.parse::<Duration>().map_err(|e| e.message().to_string())
}

fn group_by(s: &str) -> std::result::Result<GroupBy, String> {
    s.parse::<GroupBy>().map_err(|e| e.message().to_string())
}

#[derive(Args)]
pub struct ForgetArgs {
    /// Snapshots to remove (ids, unique prefixes or "latest"), instead of a policy
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Keep the N newest snapshots (N or "unlimited")
    #[arg(help_heading = "Retention policy", short = 'l', long, value_name = "N", value_parser = keep, allow_negative_numbers = true)]
    pub keep_last: Option<Keep>,
    /// Keep the newest snapshot of each of the N newest hours that have one
    #[arg(help_heading = "Retention policy", short = 'H', long, value_name = "N", value_parser = keep, allow_negative_numbers = true)]
    pub keep_hourly: Option<Keep>,
    /// Keep the newest snapshot of each of the N newest days that have one
    #[arg(help_heading = "Retention policy", short = 'd', long, value_name = "N", value_parser = keep, allow_negative_numbers = true)]
    pub keep_daily: Option<Keep>,
    /// Keep the newest snapshot of each of the N newest ISO weeks that have one
    #[arg(help_heading = "Retention policy", short = 'w', long, value_name = "N", value_parser = keep, allow_negative_numbers = true)]
    pub keep_weekly: Option<Keep>,
    /// Keep the newest snapshot of each of the N newest months that have one
    #[arg(help_heading = "Retention policy", short = 'm', long, value_name = "N", value_parser = keep, allow_negative_numbers = true)]
    pub keep_monthly: Option<Keep>,
    /// Keep the newest snapshot of each of the N newest years that have one
    #[arg(help_heading = "Retention policy", short = 'y', long, value_name = "N", value_parser = keep, allow_negative_numbers = true)]
    pub keep_yearly: Option<Keep>,
    /// Keep every snapshot within DURATION of the group's newest (e.g. 7d, 12m, 2y5m7d3h)
    #[arg(help_heading = "Retention policy", long, value_name = "DURATION", value_parser = duration, allow_hyphen_values = true)]
    pub keep_within: Option<Duration>,
    /// Keep the newest snapshot of each hour within DURATION of the newest
    #[arg(help_heading = "Retention policy", long, value_name = "DURATION", value_parser = duration, allow_hyphen_values = true)]
    pub keep_within_hourly: Option<Duration>,
    /// Keep the newest snapshot of each day within DURATION of the newest
    #[arg(help_heading = "Retention policy", long, value_name = "DURATION", value_parser = duration, allow_hyphen_values = true)]
    pub keep_within_daily: Option<Duration>,
    /// Keep the newest snapshot of each ISO week within DURATION of the newest
    #[arg(help_heading = "Retention policy", long, value_name = "DURATION", value_parser = duration, allow_hyphen_values = true)]
    pub keep_within_weekly: Option<Duration>,
    /// Keep the newest snapshot of each month within DURATION of the newest
    #[arg(help_heading = "Retention policy", long, value_name = "DURATION", value_parser = duration, allow_hyphen_values = true)]
    pub keep_within_monthly: Option<Duration>,
    /// Keep the newest snapshot of each year within DURATION of the newest
    #[arg(help_heading = "Retention policy", long, value_name = "DURATION", value_parser = duration, allow_hyphen_values = true)]
    pub keep_within_yearly: Option<Duration>,
    /// Keep snapshots with these tags (a,b = both; may repeat for either)
    #[arg(help_heading = "Retention policy", long, value_name = "TAGS")]
    pub keep_tag: Vec<String>,
    /// Remove every snapshot the filters select (no --keep-* option)
    #[arg(help_heading = "Retention policy", long)]
    pub keep_none: bool,
    /// Apply the policy to each group of snapshots sharing these fields: host, paths, tags ("" = one group)
    #[arg(help_heading = "Retention policy", short = 'g', long, value_name = "FIELDS", default_value = "host,paths", value_parser = group_by)]
    pub group_by: GroupBy,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Show what would be removed, and remove nothing
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print the plan (and the result) as JSON
    #[arg(long)]
    pub json: bool,
    /// Then remove the data that no snapshot uses any more
    #[arg(long)]
    pub prune: bool,
}

impl ForgetArgs {
    pub fn policy(&self) -> KeepPolicy {
        KeepPolicy {
            last: self.keep_last,
            hourly: self.keep_hourly,
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
            yearly: self.keep_yearly,
            within: self.keep_within,
            within_hourly: self.keep_within_hourly,
            within_daily: self.keep_within_daily,
            within_weekly: self.keep_within_weekly,
            within_monthly: self.keep_within_monthly,
            within_yearly: self.keep_within_yearly,
            tags: self.keep_tag.clone(),
        }
    }

    /// What the options ask for, checked before the repository is opened.
    fn mode(&self) -> Result<Mode> {
        let policy = self.policy();
        let any_keep = policy != KeepPolicy::default();
        if let Some(t) = self.keep_tag.iter().find(|t| t.split(',').all(str::is_empty)) {
            return Err(Error::invalid(format!("--keep-tag {t:?}: give a tag (a,b for both)")));
        }
        if !self.snapshots.is_empty() {
            if any_keep || self.keep_none {
                return Err(Error::invalid("give snapshot ids or a --keep-* policy (or --keep-none), not both"));
            }
            let f = &self.filter;
            if !f.hosts.is_empty() || !f.tags.is_empty() || !f.paths.is_empty() {
                return Err(Error::invalid(
                    "--host, --tag and --path select the snapshots a policy applies to; they do not combine with snapshot ids",
                ));
            }
            return Ok(Mode::Named);
        }
        if self.keep_none {
            if any_keep {
                return Err(Error::invalid("--keep-none does not combine with --keep-* options"));
            }
            return Ok(Mode::KeepNone);
        }
        if policy.is_empty() {
            return Err(Error::invalid(EMPTY_POLICY));
        }
        Ok(Mode::Policy(policy))
    }
}

enum Mode {
    Policy(KeepPolicy),
    KeepNone,
    Named,
}

fn json(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::invalid(e.to_string()))
}

pub fn forget(g: &Global, a: &ForgetArgs) -> Result<i32> {
    let mode = a.mode()?;
    g.needs_lock("forget")?;
    let repo = g.open()?;
    let lock = if a.dry_run { None } else { Some(g.lock(&repo, LockKind::Maintenance, "forget")?) };
    // Named snapshots whose object is damaged: removed all the same (there
    // is nothing to show of them but their id).
    let mut unreadable: Vec<(cairn::id::SnapshotId, String)> = Vec::new();
    let mut plan = match &mode {
        Mode::Named => {
            let mut named = Vec::new();
            for spec in &a.snapshots {
                let id = repo.find_snapshot_id(spec)?;
                match repo.load_snapshot(&id) {
                    Ok(s) => named.push((id, s)),
                    Err(e) if matches!(e.kind(), cairn::ErrorKind::Corrupt | cairn::ErrorKind::Crypto) => {
                        unreadable.push((id, e.to_string()))
                    }
                    Err(e) => return Err(e),
                }
            }
            forget::plan_explicit(&named)
        }
        Mode::KeepNone => forget::plan_keep_none(&snapshots::list(&repo, &a.filter.filter())?, a.group_by),
        Mode::Policy(p) => {
            forget::plan(&snapshots::list(&repo, &a.filter.filter())?, p, a.group_by, &Local, Utc::now())
        }
    };
    let say = !a.json && !g.quiet;
    if say {
        print_plan(&plan, matches!(mode, Mode::Named));
        for (id, why) in &unreadable {
            println!("snapshot {} cannot be read ({why}): its object is removed", id.short());
        }
    }
    plan.remove.extend(unreadable.iter().map(|(id, _)| *id));
    if a.dry_run {
        if a.json {
            println!("{}", json(&json!({ "dry_run": true, "plan": plan }))?);
        } else if say {
            println!(
                "would remove {} snapshot(s), keep {} (dry run: nothing changed)",
                plan.remove.len(),
                plan.keep.len()
            );
        }
        return Ok(0);
    }
    let report = forget::run(&repo, &plan)?;
    if say {
        println!("removed {} snapshot(s), kept {}", report.removed, report.kept);
        if report.removed > 0 && !a.prune {
            println!("their data stays in the repository until `cairn prune`");
        }
    }
    drop(lock);
    // One JSON document, with the prune's under "prune".
    let pruned = if a.prune { super::prune::after_forget(g, &repo, a.json)? } else { None };
    if a.json {
        let mut doc = json!({ "dry_run": false, "plan": plan, "report": report });
        if let Some(p) = pruned {
            doc["prune"] = p;
        }
        println!("{}", json(&doc)?);
    }
    g.report_stats(&repo);
    Ok(0)
}

/// Per group: a header line and a table, newest first.
fn print_plan(plan: &ForgetPlan, named: bool) {
    if !named {
        println!(
            "policy: {} (grouped by {})",
            plan.policy,
            if plan.group_by.is_empty() { "nothing" } else { &plan.group_by }
        );
    }
    for (i, group) in plan.groups.iter().enumerate() {
        if i > 0 || !named {
            println!();
        }
        let what = if named { "snapshots named".to_string() } else { format!("snapshots of {}", group.key) };
        println!("{what}: keep {}, remove {}", group.kept(), group.removed());
        let rows: Vec<Vec<String>> = group
            .snapshots
            .iter()
            .map(|e| {
                vec![
                    e.short_id.clone(),
                    e.time.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S").to_string(),
                    e.host.clone(),
                    e.tags.join(","),
                    e.paths.join(" "),
                    if e.keep { "keep".into() } else { "remove".into() },
                    e.reasons.join(", "),
                ]
            })
            .collect();
        output::table(&["ID", "Time", "Host", "Tags", "Paths", "Action", "Reasons"], &rows);
    }
    if !plan.groups.is_empty() {
        println!();
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Cli, Cmd};
    use super::*;

    fn parse(args: &[&str]) -> std::result::Result<ForgetArgs, String> {
        let mut v = vec!["cairn", "forget"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v) {
            Ok(Cli { command: Cmd::Forget(a), .. }) => Ok(a),
            Ok(_) => panic!("not forget"),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn bad_values_give_clear_errors() {
        for (args, want) in [
            (&["--keep-daily", "-1"][..], "must be a non-negative number or 'unlimited'"),
            (&["--keep-daily", "x"], "must be a non-negative number or 'unlimited'"),
            (&["--keep-last=-3"], "must be a non-negative number or 'unlimited'"),
            (&["--keep-within", "5q"], "unknown unit 'q'"),
            (&["--keep-within", "3x"], "unknown unit 'x'"),
            (&["--keep-within", ""], "it is empty"),
            (&["--keep-within", "-7d"], "must not be negative"),
            (&["--group-by", "hostname"], "unknown field \"hostname\""),
        ] {
            let e = parse(args).err().unwrap_or_else(|| panic!("{args:?} parsed"));
            assert!(e.contains(want), "{args:?}: {e}");
            assert!(
                e.contains(args.last().unwrap().trim_start_matches("--keep-last=")),
                "{args:?} does not name the value: {e}"
            );
        }
    }

    #[test]
    fn options_parse() {
        let a = parse(&["-d", "7", "--keep-weekly", "4", "--keep-monthly", "unlimited", "--keep-within-daily", "30d"])
            .unwrap();
        let p = a.policy();
        assert_eq!((p.daily, p.weekly, p.monthly), (Some(Keep::N(7)), Some(Keep::N(4)), Some(Keep::Unlimited)));
        assert_eq!(p.within_daily, Some(Duration { days: 30, ..Default::default() }));
        assert_eq!(a.group_by, GroupBy::default());
        assert!(matches!(a.mode(), Ok(Mode::Policy(_))));
        assert_eq!(parse(&["--group-by", "", "-l", "1"]).unwrap().group_by, GroupBy::NONE);
    }

    #[test]
    fn policies_that_keep_nothing_are_refused() {
        for args in [&[][..], &["--keep-daily", "0"], &["--keep-last", "0", "--keep-within", "0d"]] {
            let e = parse(args).unwrap().mode().err().unwrap_or_else(|| panic!("{args:?} accepted"));
            assert_eq!(e.message(), EMPTY_POLICY);
        }
        assert!(matches!(parse(&["--keep-none"]).unwrap().mode(), Ok(Mode::KeepNone)));
        assert!(parse(&["--keep-none", "-l", "1"]).unwrap().mode().is_err());
        assert!(parse(&["abcd", "-l", "1"]).unwrap().mode().is_err());
        assert!(parse(&["abcd", "--host", "h"]).unwrap().mode().is_err());
        assert!(parse(&["--keep-tag", ",", "-l", "1"]).unwrap().mode().is_err());
        assert!(matches!(parse(&["abcd", "ef01"]).unwrap().mode(), Ok(Mode::Named)));
    }
}
