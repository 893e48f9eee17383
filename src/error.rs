//! The library's one error type.
//!
//! Every error carries an [`ErrorKind`]; retry policy and the CLI's exit code
//! follow from the kind alone (see [`ErrorKind::exit_code`]).

use std::fmt;

/// Exit code when the repository holds damaged data: `check` found
/// problems, or data a command needed failed its verification.
pub const EXIT_DAMAGED: i32 = 4;
/// Exit code when the storage stayed unreachable, or kept failing, after
/// the retries (sysexits' `EX_TEMPFAIL`): worth running again later.
pub const EXIT_TEMPFAIL: i32 = 75;
/// Exit code of a command line that does not parse (sysexits' `EX_USAGE`).
pub const EXIT_USAGE: i32 = 64;

/// What went wrong, coarsely: enough to decide whether to retry and which exit
/// code to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Stored bytes are damaged or inconsistent: a hash mismatch, a bad
    /// encoding, a missing object that something references.
    Corrupt,
    /// Authentication of sealed data failed (tampering, or the wrong key).
    Crypto,
    /// No key file opens with the given password.
    WrongPassword,
    /// There is no repository at the given location.
    NoRepository,
    /// Local I/O failed (source files, restore target, cache, local backend).
    Io,
    /// The backend failed in a way that may succeed on retry.
    Transient,
    /// The user's input is invalid (bad argument, bad id, empty stream...).
    InvalidInput,
    /// The repository is locked by another process.
    Locked,
    /// A named object (snapshot, path) does not exist.
    NotFound,
    /// An external command (e.g. `--stdin-from-command`) failed.
    Command,
}

impl ErrorKind {
    /// Exit code documented in the README ("Exit codes") and in `cairn
    /// --help`: restic's codes, plus [`EXIT_DAMAGED`] and [`EXIT_TEMPFAIL`].
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::NoRepository => 10,
            ErrorKind::Locked => 11,
            ErrorKind::WrongPassword => 12,
            ErrorKind::Corrupt | ErrorKind::Crypto => EXIT_DAMAGED,
            ErrorKind::Transient => EXIT_TEMPFAIL,
            _ => 1,
        }
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Transient)
    }
}

/// A cairn error: a kind and one human-readable line.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), source: None }
    }

    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self { kind, message: message.into(), source: Some(Box::new(source)) }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn crypto(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Crypto, message)
    }

    /// An I/O error on a local path, naming the path; the reason in words
    /// ("/srv/x: permission denied").
    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Self {
        let kind = ErrorKind::Io;
        Self::with_source(kind, format!("{context}: {}", io_reason(&err)), err)
    }

    /// An I/O error on a local path as one sentence: `{action} {what}:
    /// {reason}`, the reason in words without the OS error number ("cannot
    /// write to stdout: no space left on device"). Errors that may go away
    /// by themselves (a network filesystem timing out) are
    /// [`ErrorKind::Transient`].
    pub fn io_sentence(action: impl fmt::Display, err: std::io::Error) -> Self {
        let kind = if io_is_transient(&err) { ErrorKind::Transient } else { ErrorKind::Io };
        Self::with_source(kind, format!("{action}: {}", io_reason(&err)), err)
    }

    /// Whether this is a write to a closed pipe (`cairn ls | head`): the
    /// reader has all it wanted, so the CLI ends quietly.
    pub fn is_broken_pipe(&self) -> bool {
        self.source
            .as_deref()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// Prefixes the message with more context, keeping the kind.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

/// Why an I/O operation failed, in lower-case words without the OS error
/// number: "no space left on device", "permission denied".
pub fn io_reason(e: &std::io::Error) -> String {
    let text = match e.raw_os_error() {
        Some(code) => {
            let t = e.to_string();
            let suffix = format!(" (os error {code})");
            t.strip_suffix(&suffix).map(str::to_string).unwrap_or(t)
        }
        None => e.to_string(),
    };
    // "No space left on device" -> "no space left on device", but "I/O
    // error" and other acronyms stay.
    let first_word = text.split(' ').next().unwrap_or_default();
    let mut c = text.chars();
    match c.next() {
        Some(f) if f.is_uppercase() && first_word.chars().skip(1).all(char::is_lowercase) => {
            f.to_lowercase().chain(c).collect()
        }
        _ => text,
    }
}

/// Whether an I/O error may go away by itself if the same thing is tried
/// later: a network filesystem or peer that timed out or is unreachable.
pub fn io_is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    if matches!(
        e.kind(),
        K::TimedOut | K::ConnectionRefused | K::ConnectionReset | K::ConnectionAborted | K::NotConnected
    ) {
        return true;
    }
    matches!(
        e.raw_os_error(),
        Some(
            libc::ETIMEDOUT | libc::EHOSTDOWN | libc::EHOSTUNREACH | libc::ENETDOWN | libc::ENETUNREACH | libc::ESTALE
        )
    )
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<redb::Error> for Error {
    fn from(e: redb::Error) -> Self {
        Error::with_source(ErrorKind::Io, format!("cache: {e}"), e)
    }
}

macro_rules! redb_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::from(redb::Error::from(e))
            }
        }
    )*};
}
redb_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError,
    redb::CompactionError
);

/// Adds context to results, keeping the error's kind.
pub trait ResultExt<T> {
    fn context(self, context: impl fmt::Display) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.context(context))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_kinds() {
        assert_eq!(ErrorKind::NoRepository.exit_code(), 10);
        assert_eq!(ErrorKind::Locked.exit_code(), 11);
        assert_eq!(ErrorKind::WrongPassword.exit_code(), 12);
        assert_eq!(ErrorKind::Corrupt.exit_code(), 4);
        assert_eq!(ErrorKind::Crypto.exit_code(), 4);
        assert_eq!(ErrorKind::Transient.exit_code(), 75);
        assert_eq!(ErrorKind::Io.exit_code(), 1);
        assert_eq!(ErrorKind::InvalidInput.exit_code(), 1);
        assert!(ErrorKind::Transient.is_transient());
        assert!(!ErrorKind::Corrupt.is_transient());
    }

    #[test]
    fn io_errors_read_as_words() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(io_reason(&full), "no space left on device");
        let e = Error::io_sentence("cannot write data/ab/x on /srv/repo", full);
        assert_eq!(e.to_string(), "cannot write data/ab/x on /srv/repo: no space left on device");
        assert_eq!(e.kind(), ErrorKind::Io);
        let t = Error::io_sentence("cannot read x", std::io::Error::from_raw_os_error(libc::ETIMEDOUT));
        assert_eq!(t.kind(), ErrorKind::Transient);
        assert_eq!(t.kind().exit_code(), EXIT_TEMPFAIL);
        let custom = std::io::Error::other("Something odd");
        assert_eq!(io_reason(&custom), "something odd");
        assert_eq!(io_reason(&std::io::Error::other("I/O trouble")), "I/O trouble");
    }

    #[test]
    fn context_keeps_kind() {
        let e = Error::corrupt("bad header").context("pack 1234");
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert_eq!(e.to_string(), "pack 1234: bad header");
    }
}
