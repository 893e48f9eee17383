//! The library's one error type.
//!
//! Every error carries an [`ErrorKind`]; retry policy and the CLI's exit code
//! follow from the kind alone (see [`ErrorKind::exit_code`]).

use std::fmt;

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
    /// Exit code documented in the README.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::NoRepository => 10,
            ErrorKind::Locked => 11,
            ErrorKind::WrongPassword => 12,
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

    /// An I/O error on a local path, naming the path.
    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Self {
        let kind = ErrorKind::Io;
        Self::with_source(kind, format!("{context}: {err}"), err)
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
redb_from!(redb::DatabaseError, redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

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
        assert_eq!(ErrorKind::Corrupt.exit_code(), 1);
        assert!(ErrorKind::Transient.is_transient());
        assert!(!ErrorKind::Corrupt.is_transient());
    }

    #[test]
    fn context_keeps_kind() {
        let e = Error::corrupt("bad header").context("pack 1234");
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert_eq!(e.to_string(), "pack 1234: bad header");
    }
}
