//! Usage errors and the exit-code table of `cairn --help`.

use clap::CommandFactory;

use super::Cli;

/// The `--help` epilogue: every exit code (the README's table says the same).
pub const EXIT_CODES: &str = "\
Exit codes:
  0    success
  1    error (one line on stderr): bad input, a failed or empty stream, local I/O, ...
  3    backup saved, but partial: some paths or files could not be read
  4    the repository holds damaged data: check found problems, or data a command needed failed verification
  10   no repository at the given location
  11   the repository is locked by another process
  12   wrong password
  64   the command line is not valid (unknown option, missing argument)
  75   the storage stayed unreachable or kept failing after the retries: try again later
  129, 130, 143  ended by SIGHUP, SIGINT, SIGTERM
  141  stdout was closed by its reader
  255  pg wal-fetch: a failure other than \"not archived\" (PostgreSQL then stops recovery instead of ending it)

cairn status exits as a Nagios plugin: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (see cairn status --help)";

/// The `status --help` epilogue: its own exit codes.
pub const STATUS_EXIT_CODES: &str = "\
Exit codes (a Nagios/Icinga plugin's):
  0    OK: the newest snapshot of every source is younger than --warn
  1    WARNING: one is older than --warn, or partial; a snapshot is unreadable; the WAL archive has a gap or
       its newest WAL is older than --warn; the config file's last run or drill failed
  2    CRITICAL: one is older than --crit, or there is no snapshot (under the filter)
  3    UNKNOWN: the repository could not be read (unreachable, wrong password, no repository), one line";

/// The subcommand path a command line names ("cairn key add"), for the
/// hint after a usage error.
fn command_path(args: &[String]) -> String {
    let mut cmd = Cli::command();
    let mut path = vec!["cairn".to_string()];
    for a in args.iter().skip(1) {
        if a == "--" {
            break;
        }
        let Some(sub) = cmd.find_subcommand(a).cloned() else { continue };
        path.push(a.clone());
        cmd = sub;
    }
    path.join(" ")
}

/// A usage error as clap renders it, made short: the error in one line,
/// clap's tip if it has one (a similar option's name), and where the help
/// is. At most three lines.
pub fn short_error(rendered: &str, args: &[String]) -> String {
    let paragraphs: Vec<&str> = rendered.split("\n\n").map(str::trim).filter(|p| !p.is_empty()).collect();
    let mut first = String::new();
    if let Some(p) = paragraphs.first() {
        let mut lines = p.lines().map(str::trim).filter(|l| !l.is_empty());
        first.push_str(lines.next().unwrap_or_default());
        let rest: Vec<&str> = lines.collect();
        if !rest.is_empty() {
            first.push(' ');
            first.push_str(&rest.join(", "));
        }
    }
    if !first.starts_with("error:") {
        first = format!("error: {first}");
    }
    let mut out = vec![first];
    if let Some(tip) = paragraphs.iter().skip(1).find(|p| p.starts_with("tip:")) {
        out.push(format!("  {}", tip.lines().map(str::trim).collect::<Vec<_>>().join(" ")));
    }
    out.push(format!("For more information, try '{} --help'.", command_path(args)));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn parse_error(line: &str) -> String {
        let a = args(line);
        match Cli::try_parse_from(&a) {
            Ok(_) => panic!("{line:?} parsed"),
            Err(e) => short_error(&e.render().to_string(), &a),
        }
    }

    #[test]
    fn usage_errors_are_one_line_and_a_hint() {
        let e = parse_error("cairn backup --bogus");
        let lines: Vec<&str> = e.lines().collect();
        assert!(lines.len() <= 3, "{e}");
        assert_eq!(lines[0], "error: unexpected argument '--bogus' found", "{e}");
        assert_eq!(lines.last().copied(), Some("For more information, try 'cairn backup --help'."), "{e}");

        // A list of missing arguments joins the first line.
        let e = parse_error("cairn restore latest");
        assert!(e.lines().next().is_some_and(|l| l.contains("--target")), "{e}");
        assert!(e.lines().count() <= 3, "{e}");

        // A typo gets clap's tip, and nested commands are named.
        let e = parse_error("cairn key add --lable x");
        assert!(e.contains("tip:") && e.contains("--label"), "{e}");
        assert!(e.ends_with("try 'cairn key add --help'."), "{e}");
        assert_eq!(e.lines().count(), 3, "{e}");
    }

    /// Every argument of every command has a description.
    #[test]
    fn every_option_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        let mut cmd = Cli::command();
        cmd.build();
        walk(&cmd, "cairn", &mut missing);
        assert!(missing.is_empty(), "arguments without a description: {missing:#?}");
    }

    /// A command's own options come before the global ones in its help,
    /// and `cairn --help` lists every exit code.
    #[test]
    fn own_options_come_first_and_exit_codes_are_listed() {
        let mut cmd = Cli::command();
        cmd.build();
        let help = cmd.find_subcommand_mut("backup").expect("backup").render_help().to_string();
        let own = help.find("--stdin-filename").expect("backup's own option");
        let heading = help.find("Global options:").expect("a Global options heading");
        assert!(own < heading, "{help}");
        assert!(help[heading..].contains("--repo"), "{help}");
        assert!(!help[..heading].contains("--repo"), "{help}");
        let top = Cli::command().render_long_help().to_string();
        for code in ["0 ", "1 ", "3 ", "4 ", "10 ", "11 ", "12 ", "64 ", "75 ", "141 "] {
            assert!(top.contains(&format!("\n  {code}")), "exit code {code} missing from --help:\n{top}");
        }
        for kind in [cairn::ErrorKind::Corrupt, cairn::ErrorKind::Transient, cairn::ErrorKind::Locked] {
            let code = kind.exit_code();
            assert!(EXIT_CODES.contains(&format!("\n  {code} ")), "{kind:?} exits {code}, which --help does not list");
        }
        assert!(EXIT_CODES.contains(&format!("\n  {} ", cairn::error::EXIT_USAGE)));
    }
}
