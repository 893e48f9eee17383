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

/// A password file's password: its first line without trailing spaces,
/// tabs and CR (so a file saved with CRLF line ends, or with a space after
/// the password, opens the repository). restic trims white space too.
pub(crate) fn from_file(contents: &[u8]) -> Vec<u8> {
    let first = contents.split(|&b| b == b'\n').next().unwrap_or_default();
    let end = first.iter().rposition(|b| !matches!(b, b' ' | b'\t' | b'\r')).map_or(0, |i| i + 1);
    first[..end].to_vec()
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
        return Ok(Zeroizing::new(from_file(&v)));
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

/// Asks for a new password twice (`ask` shows a prompt and reads a line)
/// and refuses two different answers, or an empty one.
fn ask_twice(prompt: &str, mut ask: impl FnMut(&str) -> Result<String>) -> Result<Zeroizing<Vec<u8>>> {
    let a = Zeroizing::new(ask(prompt)?);
    if a.is_empty() {
        return Err(Error::invalid("an empty password is not accepted"));
    }
    let b = Zeroizing::new(ask("enter the password again: ")?);
    if *a != *b {
        return Err(Error::invalid("the passwords do not match; nothing was changed"));
    }
    Ok(Zeroizing::new(a.as_bytes().to_vec()))
}

fn prompt(p: &str) -> Result<String> {
    rpassword::prompt_password(p).map_err(|e| Error::io("reading the password", e))
}

/// The password of a new repository (`init`): from the usual sources,
/// else asked twice on a terminal.
pub fn read_for_init(src: &PasswordSource<'_>) -> Result<Zeroizing<Vec<u8>>> {
    let given = src.file.is_some() || src.command.is_some() || std::env::var_os(src.env_var).is_some();
    if !given && std::io::stdin().is_terminal() {
        return ask_twice(src.prompt, prompt);
    }
    read(src)
}

/// A new password, asked twice on a terminal.
pub fn read_new(file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>> {
    if file.is_none() && std::env::var_os("CAIRN_NEW_PASSWORD").is_none() && std::io::stdin().is_terminal() {
        return ask_twice("new password: ", prompt);
    }
    read(&PasswordSource { env_var: "CAIRN_NEW_PASSWORD", file, command: None, prompt: "new password: " })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_files_lose_trailing_line_ends_and_spaces() {
        assert_eq!(from_file(b"secret\r\n"), b"secret");
        assert_eq!(from_file(b"secret \t\n"), b"secret");
        assert_eq!(from_file(b"secret"), b"secret");
        assert_eq!(from_file(b"secret\nsecond line\n"), b"secret");
        assert_eq!(from_file(b"  inner space  \r\n"), b"  inner space");
        assert_eq!(from_file(b"\r\n"), b"");
        assert_eq!(from_file(b""), b"");
    }

    fn answers(list: &[&str]) -> impl FnMut(&str) -> Result<String> {
        let mut it = list.iter().map(|s| s.to_string()).collect::<Vec<_>>().into_iter();
        move |_| Ok(it.next().expect("asked once too often"))
    }

    #[test]
    fn a_new_password_is_asked_twice_and_must_match() {
        assert_eq!(*ask_twice("p: ", answers(&["pw", "pw"])).unwrap(), b"pw");
        let e = ask_twice("p: ", answers(&["pw", "pW"])).unwrap_err();
        assert!(e.to_string().contains("do not match"), "{e}");
        assert!(ask_twice("p: ", answers(&["", ""])).is_err());
        let mut asked = Vec::new();
        let _ = ask_twice("first: ", |p| {
            asked.push(p.to_string());
            Ok("x".into())
        });
        assert_eq!(asked, ["first: ", "enter the password again: "]);
    }
}
