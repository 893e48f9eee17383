//! `[hooks]`: shell commands run around the job, as borgmatic's
//! `before_backup`/`after_backup`/`on_error` are.
//!
//! Each runs with `sh -c`, stdin from /dev/null, stdout and stderr those of
//! cairn, and the environment plus what the job adds (`CAIRN_CONFIG`,
//! `CAIRN_HOOK`, and `CAIRN_ERROR` for `run-failed`). They run in order; the
//! first that fails stops the list.

use std::process::{Command, Stdio};

use crate::error::{Error, ErrorKind, Result};

/// Runs `commands` of the stage `stage` (`run-before`, …) in order. With
/// `stdout_to_stderr` their output goes to cairn's stderr (when stdout
/// carries JSON).
pub fn run(stage: &str, commands: &[String], env: &[(String, String)], stdout_to_stderr: bool) -> Result<()> {
    for c in commands {
        tracing_note(stage, c);
        let mut cmd = Command::new("sh");
        if stdout_to_stderr {
            use std::os::fd::AsFd;
            let fd = std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::io_sentence(format!("cannot run the {stage} hook `{c}`"), e))?;
            cmd.stdout(Stdio::from(fd));
        }
        let status = cmd
            .arg("-c")
            .arg(c)
            .stdin(Stdio::null())
            .env("CAIRN_HOOK", stage)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .status()
            .map_err(|e| Error::io_sentence(format!("cannot run the {stage} hook `{c}`"), e))?;
        if !status.success() {
            let how = match (status.code(), std::os::unix::process::ExitStatusExt::signal(&status)) {
                (Some(code), _) => format!("exited with status {code}"),
                (None, Some(sig)) => format!("was killed by signal {sig}"),
                (None, None) => "failed".to_string(),
            };
            return Err(Error::new(ErrorKind::Command, format!("the {stage} hook `{c}` {how}")));
        }
    }
    Ok(())
}

fn tracing_note(stage: &str, c: &str) {
    crate::steps::note(|| format!("hook {stage}: {c}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_in_order_with_env_and_stops_at_the_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let l = log.display();
        let cmds =
            vec![format!("echo \"one $CAIRN_HOOK $X\" >> {l}"), "exit 7".to_string(), format!("echo never >> {l}")];
        let e = run("run-before", &cmds, &[("X".into(), "y".into())], false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Command);
        assert!(e.to_string().contains("run-before hook `exit 7` exited with status 7"), "{e}");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "one run-before y\n");
        run("run-after", &[], &[], true).unwrap();
    }
}
