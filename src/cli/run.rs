//! `cairn run`: the nightly job of a config file. Hooks before; each
//! `[[backup.snapshots]]` source backed up (a failing source is reported,
//! the others still run); `[forget]` (with `prune = true`, prune); `[check]`;
//! hooks after, failed and finally; the run state for `status`;
//! notifications.
//!
//! Plan, then execute: every step's command line is built and parsed
//! before anything runs (a bad key fails the run before the first hook),
//! and `--dry-run` prints that plan.

use std::time::Instant;

use chrono::Utc;
use clap::{Args, Parser};
use serde_json::json;

use cairn::job::config::{JobConfig, SourceKind, SourceSpec};
use cairn::job::{hooks, notify::Notifier, state};
use cairn::repo::Repository;
use cairn::{Error, Result};

use super::commands::{BackupArgs, CheckArgs};
use super::forget::ForgetArgs;
use super::output::bytes;
use super::{Cli, Cmd, Global};

#[derive(Args)]
pub struct RunArgs {
    /// Only the sources with these names (may repeat); forget and check still run
    #[arg(long = "source", value_name = "NAME")]
    pub sources: Vec<String>,
    /// Print what would run (hooks, each source's backup, forget, check, notifications), then stop
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Print the run's summary as one JSON object on stdout (everything else goes to stderr)
    #[arg(long)]
    pub json: bool,
}

/// One source's backup, as planned.
struct SourceStep {
    spec: SourceSpec,
    /// The `cairn backup` command line it amounts to (shown by --dry-run).
    argv: Vec<String>,
    args: BackupArgs,
}

struct Plan {
    sources: Vec<SourceStep>,
    forget: Option<(Vec<String>, ForgetArgs)>,
    check: Option<(Vec<String>, CheckArgs)>,
}

/// The outcome of one source.
struct SourceResult {
    name: String,
    outcome: std::result::Result<cairn::ops::backup::BackupOutcome, Error>,
    seconds: f64,
}

pub fn run(g: &Global, a: &RunArgs, job: Option<&JobConfig>) -> Result<i32> {
    let job = job.ok_or_else(|| {
        Error::invalid(
            "`cairn run` needs a config file: --config FILE, -P NAME or CAIRN_CONFIG (see README, \"The nightly job\")",
        )
    })?;
    g.needs_lock("run")?;
    let plan = plan(job, a)?;
    if a.dry_run {
        print_plan(job, &plan);
        return Ok(0);
    }
    let mut log = Log { json: a.json, text: String::new() };
    let sub = Global { quiet: g.quiet || a.json, ..g.clone() };
    let env = vec![("CAIRN_CONFIG".to_string(), job.path.display().to_string())];
    let started = Utc::now();
    let t0 = Instant::now();
    let notifier = Notifier::new(&job.notify);
    for w in notifier.start() {
        log.line(&format!("warning: {w}"));
    }

    let mut errors: Vec<(String, Error)> = Vec::new();
    let mut results: Vec<SourceResult> = Vec::new();
    let mut check_ok = None;
    let mut repo: Option<Repository> = None;
    match hooks::run("run-before", &job.hooks.run_before, &env, a.json) {
        Err(e) => {
            log.line(&format!("run-before: {e}; nothing was backed up"));
            errors.push(("run-before".into(), e));
        }
        Ok(()) => {
            match sub.open() {
                Err(e) => {
                    log.line(&format!("repository: {e}"));
                    errors.push(("repository".into(), e));
                }
                Ok(r) => {
                    for step in &plan.sources {
                        let res = backup_source(&sub, &r, step);
                        log.line(&source_line(&res));
                        results.push(res);
                    }
                    repo = Some(r);
                }
            }
            if let Some((_, f)) = &plan.forget {
                step(&mut log, &mut errors, "forget", super::forget::forget(&sub, f));
            }
            if let Some((_, c)) = &plan.check {
                check_ok = Some(step(&mut log, &mut errors, "check", super::commands::check(&sub, c)));
            }
        }
    }
    for r in &results {
        if let Err(e) = &r.outcome {
            errors.push((r.name.clone(), Error::new(e.kind(), e.to_string())));
        }
    }
    let ok = errors.is_empty();
    let error_text: Vec<String> = errors.iter().map(|(w, e)| format!("{w}: {e}")).collect();
    let mut env_failed = env.clone();
    env_failed.push(("CAIRN_ERROR".into(), error_text.join("; ")));
    let after = if ok {
        hooks::run("run-after", &job.hooks.run_after, &env, a.json)
    } else {
        hooks::run("run-failed", &job.hooks.run_failed, &env_failed, a.json)
    };
    let mut hook_errors = Vec::new();
    if let Err(e) = after {
        log.line(&e.to_string());
        hook_errors.push(e);
    }
    if let Err(e) = hooks::run("run-finally", &job.hooks.run_finally, if ok { &env } else { &env_failed }, a.json) {
        log.line(&e.to_string());
        hook_errors.push(e);
    }
    let ok = ok && hook_errors.is_empty();
    let all_errors: Vec<String> = error_text.iter().cloned().chain(hook_errors.iter().map(|e| e.to_string())).collect();

    let run_state = state::RunState {
        started,
        duration_seconds: t0.elapsed().as_secs_f64(),
        success: ok,
        errors: all_errors.clone(),
        sources: results.iter().map(source_state).collect(),
        check_success: check_ok,
    };
    if let Some(p) = job.monitor.state_file.clone().or_else(|| state::default_path(&job.path)) {
        if let Err(e) = state::write(&p, &run_state) {
            log.line(&format!("warning: {e}"));
        }
    }
    if let Some(w) = super::status::write_job_metrics(job, repo.as_ref(), Some(&run_state), None) {
        log.line(&format!("warning: {w}"));
    }
    let summary = json!({
        "message_type": "run",
        "config": job.path.display().to_string(),
        "success": ok,
        "started": started.to_rfc3339(),
        "duration_seconds": run_state.duration_seconds,
        "sources": results.iter().map(source_json).collect::<Vec<_>>(),
        "check_success": check_ok,
        "errors": all_errors,
    });
    log.line(&format!(
        "run {} in {:.1}s: {} of {} source(s) saved",
        if ok { "succeeded" } else { "FAILED" },
        run_state.duration_seconds,
        results.iter().filter(|r| r.outcome.is_ok()).count(),
        plan.sources.len()
    ));
    for w in notifier.finish(ok, &summary, &log.text) {
        log.line(&format!("warning: {w}"));
    }
    if a.json {
        println!("{summary}");
    }
    Ok(exit_code(&errors, &hook_errors, &results))
}

/// The exit code: the first failure's, else 3 when a snapshot is partial.
fn exit_code(errors: &[(String, Error)], hook_errors: &[Error], results: &[SourceResult]) -> i32 {
    if let Some((_, e)) = errors.first() {
        return e.kind().exit_code().max(1);
    }
    if let Some(e) = hook_errors.first() {
        return e.kind().exit_code().max(1);
    }
    if results.iter().any(|r| matches!(&r.outcome, Ok(o) if o.snapshot.partial)) {
        return super::EXIT_PARTIAL;
    }
    0
}

/// Runs a step that returns an exit code; a non-zero code or an error is a
/// failure. Returns whether it succeeded.
fn step(log: &mut Log, errors: &mut Vec<(String, Error)>, what: &str, r: Result<i32>) -> bool {
    match r {
        Ok(0) => {
            log.line(&format!("{what}: done"));
            true
        }
        Ok(code) => {
            let e = Error::new(exit_kind(code), format!("{what} exited with status {code}"));
            log.line(&format!("{what}: FAILED (exit {code})"));
            errors.push((what.into(), e));
            false
        }
        Err(e) => {
            log.line(&format!("{what}: FAILED: {e}"));
            errors.push((what.into(), e));
            false
        }
    }
}

/// The error kind whose exit code is `code` (a step's code passes through).
fn exit_kind(code: i32) -> cairn::ErrorKind {
    use cairn::ErrorKind as K;
    [K::Corrupt, K::NoRepository, K::Locked, K::WrongPassword, K::Transient]
        .into_iter()
        .find(|k| k.exit_code() == code)
        .unwrap_or(K::Command)
}

fn backup_source(g: &Global, repo: &Repository, step: &SourceStep) -> SourceResult {
    let t = Instant::now();
    let outcome = match &step.spec.kind {
        SourceKind::Paths(_) | SourceKind::Command { .. } => {
            let prefetch = super::commands::prefetch_for(&step.args);
            super::commands::backup_in(g, repo, &step.args, prefetch)
        }
        SourceKind::Postgres(p) => {
            postgres_streams(p).and_then(|inputs| super::commands::backup_streams_in(g, repo, &step.args, inputs))
        }
        SourceKind::Redis(r) => {
            redis_stream(r).and_then(|input| super::commands::backup_streams_in(g, repo, &step.args, vec![input]))
        }
    };
    SourceResult { name: step.spec.name.clone(), outcome, seconds: t.elapsed().as_secs_f64() }
}

/// The two streams of a PostgreSQL source: the database's dump and the
/// globals (`cairn::source::postgres`).
fn postgres_streams(p: &cairn::job::config::PostgresSource) -> Result<Vec<cairn::ops::backup::NamedStream>> {
    let spec = cairn::source::postgres::PgDumpSpec {
        database: p.database.clone(),
        host: p.host.clone(),
        port: p.port,
        user: p.user.clone(),
        format: p.format.parse()?,
        pg_dump: None,
        no_role_passwords: p.no_role_passwords,
    };
    cairn::source::postgres::dump_streams(&spec)
}

/// The RDB stream of a Redis source (`cairn::source::redis`).
fn redis_stream(r: &cairn::job::config::RedisSource) -> Result<cairn::ops::backup::NamedStream> {
    use cairn::source::redis::{open_rdb, RedisMethod, RedisSpec};
    let password = match &r.password_file {
        None => None,
        Some(f) => {
            let bytes = std::fs::read(f)
                .map_err(|e| Error::io_sentence(format!("cannot read the Redis password file {}", f.display()), e))?;
            // Trimmed as the repository's password file is.
            let pw = super::password::from_file(&bytes);
            Some(
                String::from_utf8(pw)
                    .map_err(|_| Error::invalid(format!("the Redis password file {} is not UTF-8", f.display())))?,
            )
        }
    };
    let spec = RedisSpec { password, method: r.method.parse::<RedisMethod>()?, ..RedisSpec::new(r.url.clone()) };
    let filename = r.filename.clone().unwrap_or_else(|| "redis.rdb".to_string());
    Ok(cairn::ops::backup::NamedStream::new(filename, cairn::ops::backup::StreamInput::Reader(open_rdb(&spec)?)))
}

fn source_line(r: &SourceResult) -> String {
    match &r.outcome {
        Ok(o) => format!(
            "{}: snapshot {} saved{}, {} added ({} processed), {:.1}s",
            r.name,
            o.id.short(),
            if o.snapshot.partial { " (partial: some files could not be read)" } else { "" },
            bytes(o.snapshot.summary.data_added),
            bytes(o.snapshot.summary.total_bytes_processed),
            r.seconds
        ),
        Err(e) => format!("{}: FAILED: {e}", r.name),
    }
}

fn source_state(r: &SourceResult) -> state::SourceState {
    state::SourceState {
        name: r.name.clone(),
        success: r.outcome.is_ok(),
        partial: matches!(&r.outcome, Ok(o) if o.snapshot.partial),
        snapshot: r.outcome.as_ref().ok().map(|o| o.id.to_string()),
        bytes_added: r.outcome.as_ref().map_or(0, |o| o.snapshot.summary.data_added),
        duration_seconds: r.seconds,
        error: r.outcome.as_ref().err().map(|e| e.to_string()),
    }
}

fn source_json(r: &SourceResult) -> serde_json::Value {
    match &r.outcome {
        Ok(o) => json!({
            "name": r.name,
            "success": true,
            "snapshot_id": o.id.to_string(),
            "partial": o.snapshot.partial,
            "data_added": o.snapshot.summary.data_added,
            "total_bytes_processed": o.snapshot.summary.total_bytes_processed,
            "duration_seconds": r.seconds,
        }),
        Err(e) => json!({
            "name": r.name,
            "success": false,
            "error": e.to_string(),
            "exit_code": e.kind().exit_code(),
            "duration_seconds": r.seconds,
        }),
    }
}

/// The run's own lines: printed (to stderr under --json) and kept for the
/// failure notification's body.
struct Log {
    json: bool,
    text: String,
}

impl Log {
    fn line(&mut self, s: &str) {
        if self.json {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
        self.text.push_str(s);
        self.text.push('\n');
    }
}

/// A command line parsed as `cairn` would parse it.
fn parse(argv: &[String], job: &JobConfig, what: &str) -> Result<Cmd> {
    let full: Vec<&str> = std::iter::once("cairn").chain(argv.iter().map(String::as_str)).collect();
    Cli::try_parse_from(&full).map(|c| c.command).map_err(|e| {
        let text = e.render().to_string();
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid").trim();
        let first = first.strip_prefix("error: ").unwrap_or(first);
        Error::invalid(format!("config {}: {what}: {first}", job.path.display()))
    })
}

/// `--key=value` arguments for a config section's keys.
fn flag_args(job: &JobConfig, command: &str, section: &toml::Table, name: &str) -> Result<Vec<String>> {
    use clap::CommandFactory;
    let root = Cli::command();
    let cmd = root.find_subcommand(command).ok_or_else(|| Error::invalid(format!("no command {command}")))?;
    let v = super::config::flags_for(cmd, &clap::ArgMatches::default(), section, name, job)?;
    Ok(v.into_iter().map(|s| s.to_string_lossy().into_owned()).collect())
}

fn plan(job: &JobConfig, a: &RunArgs) -> Result<Plan> {
    for n in &a.sources {
        if !job.sources.iter().any(|s| &s.name == n) {
            let names: Vec<&str> = job.sources.iter().map(|s| s.name.as_str()).collect();
            return Err(Error::invalid(format!(
                "no source named {n:?} in {} (sources: {})",
                job.path.display(),
                names.join(", ")
            )));
        }
    }
    if job.sources.is_empty() {
        return Err(Error::invalid(format!(
            "config {}: no sources: add [[backup.snapshots]] entries",
            job.path.display()
        )));
    }
    let backup_section = job.command_flags("backup");
    let mut sources = Vec::new();
    for s in job.sources.iter().filter(|s| a.sources.is_empty() || a.sources.contains(&s.name)) {
        let mut argv = vec!["backup".to_string()];
        // The entry's own keys first, then [backup]'s where the entry has none.
        argv.extend(flag_args(job, "backup", &s.flags, "backup.snapshots")?);
        let rest: toml::Table = backup_section
            .iter()
            .filter(|(k, _)| !s.flags.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        argv.extend(flag_args(job, "backup", &rest, "backup")?);
        match &s.kind {
            SourceKind::Paths(p) => {
                // Absolute paths: none starts with `-`.
                argv.extend(p.iter().map(|p| p.display().to_string()));
            }
            SourceKind::Command { argv: cmd, filename } => {
                argv.push(format!("--stdin-filename={filename}"));
                argv.push("--stdin-from-command".into());
                argv.push("--".into());
                argv.extend(cmd.iter().cloned());
            }
            SourceKind::Postgres(_) | SourceKind::Redis(_) => {}
        }
        let Cmd::Backup(args) = parse(&argv, job, &format!("source {:?}", s.name))? else {
            unreachable!("parsed a backup command line")
        };
        sources.push(SourceStep { spec: s.clone(), argv, args });
    }
    let forget = match job.commands.get("forget") {
        None => None,
        Some(section) => {
            let mut argv = vec!["forget".to_string()];
            argv.extend(flag_args(job, "forget", section, "forget")?);
            // Only this job's host, unless [forget] names hosts itself: a
            // shared repository's other hosts keep their own policies.
            if !section.contains_key("host") && !section.contains_key("hosts") {
                let host = backup_section.get("host").and_then(|h| h.as_str()).map(String::from);
                argv.push(format!("--host={}", cairn::ops::backup::hostname_or(&host)));
            }
            let Cmd::Forget(f) = parse(&argv, job, "[forget]")? else { unreachable!("parsed a forget command line") };
            Some((argv, f))
        }
    };
    let check = match job.commands.get("check") {
        None => None,
        Some(section) => {
            let mut argv = vec!["check".to_string()];
            argv.extend(flag_args(job, "check", section, "check")?);
            let Cmd::Check(c) = parse(&argv, job, "[check]")? else { unreachable!("parsed a check command line") };
            Some((argv, c))
        }
    };
    Ok(Plan { sources, forget, check })
}

fn print_plan(job: &JobConfig, plan: &Plan) {
    let h = &job.hooks;
    println!("plan of {}:", job.path.display());
    let hooks = |stage: &str, v: &[String]| {
        for c in v {
            println!("  hook {stage}: {c}");
        }
    };
    hooks("run-before", &h.run_before);
    for s in &plan.sources {
        let what = match &s.spec.kind {
            SourceKind::Postgres(p) => format!(" [pg_dump {} + pg_dumpall --globals-only]", p.database),
            SourceKind::Redis(r) => format!(" [redis {} by {}]", redact_url(&r.url), r.method),
            _ => String::new(),
        };
        println!("  source {}: cairn {}{what}", s.spec.name, shell_words(&s.argv));
    }
    if let Some((argv, _)) = &plan.forget {
        println!("  cairn {}", shell_words(argv));
    }
    if let Some((argv, _)) = &plan.check {
        println!("  cairn {}", shell_words(argv));
    }
    hooks("run-after", &h.run_after);
    hooks("run-failed", &h.run_failed);
    hooks("run-finally", &h.run_finally);
    if let Some(u) = &job.notify.healthchecks {
        println!("  notify healthchecks: {}", redact_url(u));
    }
    if let Some(u) = &job.notify.webhook {
        println!("  notify webhook: {}", redact_url(u));
    }
}

/// A URL without its password.
fn redact_url(u: &str) -> String {
    match (u.find("://"), u.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***@{}", &u[..s + 3], &u[at + 1..]),
        _ => u.to_string(),
    }
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_=/.,:@%+".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
