//! Where passwords come from: `CAIRN_PASSWORD`, `--password-file`,
//! `--password-command`, or a prompt on a terminal (restic's order).

use std::io::IsTerminal;
use std::path::Path;
use std::process::Command;

use zeroize::Zeroizing;

use cairn::{Error, ErrorKind, Result};

pub struct PasswordSource<'a> {
    pub env_var: &'a str,
    pub file: Option<&'a Path>,
    pub command: Option<&'a str>,
    pub prompt: &'a str,
}

fn trim_newline(mut v: Vec<u8>) -> Vec<u8> {
    if v.last() == Some(&b'\n') {
        v.pop();
        if v.last() == Some(&b'\r') {
            v.pop();
        }
    }
    v
}

pub fn read(src: &PasswordSource<'_>) -> Result<Zeroizing<Vec<u8>>> {
    if let Some(f) = src.file {
        let v = Zeroizing::new(std::fs::read(f).map_err(|e| Error::io(format!("password file {}", f.display()), e))?);
        // The first line, as --help says (restic's behaviour).
        let first = v.split(|&b| b == b'\n').next().unwrap_or_default();
        return Ok(Zeroizing::new(trim_newline(first.to_vec())));
    }
    if let Some(cmd) = src.command {
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| Error::new(ErrorKind::Command, format!("password command: {e}")))?;
        if !out.status.success() {
            return Err(Error::new(ErrorKind::Command, format!("password command {cmd:?} failed ({})", out.status)));
        }
        return Ok(Zeroizing::new(trim_newline(out.stdout)));
    }
    if let Some(v) = std::env::var_os(src.env_var) {
        return Ok(Zeroizing::new(std::os::unix::ffi::OsStringExt::into_vec(v)));
    }
    if std::io::stdin().is_terminal() {
        let p = rpassword::prompt_password(src.prompt).map_err(|e| Error::io("reading the password", e))?;
        return Ok(Zeroizing::new(p.into_bytes()));
    }
    let flags = match src.env_var {
        "CAIRN_FROM_PASSWORD" => "--from-password-file or --from-password-command",
        "CAIRN_NEW_PASSWORD" => "--new-password-file",
        _ => "--password-file or --password-command",
    };
    Err(Error::invalid(format!("no password given: set {} or use {flags}", src.env_var)))
}

/// A new password, asked twice on a terminal.
pub fn read_new(file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>> {
    if file.is_none() && std::env::var_os("CAIRN_NEW_PASSWORD").is_none() && std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password("new password: ").map_err(|e| Error::io("reading the password", e))?;
        let b =
            rpassword::prompt_password("repeat new password: ").map_err(|e| Error::io("reading the password", e))?;
        if a != b {
            return Err(Error::invalid("the passwords do not match"));
        }
        return Ok(Zeroizing::new(a.into_bytes()));
    }
    read(&PasswordSource { env_var: "CAIRN_NEW_PASSWORD", file, command: None, prompt: "new password: " })
}
