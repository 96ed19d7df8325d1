//! The error type of every fallible call.

use std::fmt;
use std::path::PathBuf;

use crate::policy::PolicyError;

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 65_535;

/// What went wrong, with enough detail to act on.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The policy text does not parse (line, column and what was expected).
    Policy(PolicyError),
    /// The policy parses but cannot be laid out as a table.
    PolicyTooLarge(String),
    /// A category name that the policy does not define.
    UnknownCategory {
        name: String,
        known: Vec<String>,
    },
    /// A category id that does not belong to this limiter.
    InvalidCategory(usize),
    /// `failure`/`success` on a category without a lockout.
    NoLockout {
        category: String,
    },
    /// Keys are 1..=65535 bytes.
    EmptyKey,
    KeyTooLong(usize),
    /// `now_ms` outside 0..=MAX_TIME_MS.
    TimeOutOfRange(i64),
    /// Request `index` of a batch is invalid (`error` says how); nothing of the batch was
    /// recorded.
    InBatch {
        index: usize,
        error: Box<Error>,
    },
    /// The operating system refused memory.
    Io(std::io::Error),
    /// The operating system refused an operation on a table file (`action` is what was tried:
    /// "open", "create", "size", "map", "read", "stat").
    File {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    /// A private table needs a policy.
    NoPolicy,
    /// No table file at `path`, and no policy was given to create one.
    NoTable {
        path: PathBuf,
    },
    /// The file at `path` is not a usable sluice table (`why` says what is wrong). It was not
    /// changed.
    NotATable {
        path: PathBuf,
        why: String,
    },
    /// The table at `path` has another format version. It was not changed.
    FormatVersion {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    /// The table at `path` was made for another policy (`difference` names the rules that
    /// differ). It was not changed.
    PolicyMismatch {
        path: PathBuf,
        difference: String,
    },
    /// The table was attached read-only ([`crate::LimiterBuilder::read_only`]): this call
    /// would record something. Nothing was recorded.
    ReadOnly {
        path: PathBuf,
    },
    /// A key state handed to [`crate::KeyEngine::restore`] does not fit the policy (`why`
    /// says how). Nothing was made.
    InvalidState(String),
    /// A migration from the table at `from` to `to` cannot be made (`why` says what was
    /// wrong). Nothing was created, and `from` was not changed.
    Migration {
        from: PathBuf,
        to: PathBuf,
        why: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Policy(e) => write!(f, "invalid policy: {e}"),
            Error::PolicyTooLarge(why) => write!(f, "policy cannot be laid out: {why}"),
            Error::UnknownCategory { name, known } => write!(
                f,
                "unknown category {name:?}: the policy defines {}",
                known.join(", ")
            ),
            Error::InvalidCategory(id) => {
                write!(f, "category id {id} does not belong to this limiter")
            }
            Error::NoLockout { category } => write!(
                f,
                "category {category:?} has no lockout: add a line such as `{category} lockout 5/15m for 15m` to the policy"
            ),
            Error::InBatch { index, error } => write!(f, "request {index} of the batch: {error}"),
            Error::EmptyKey => write!(f, "empty key: keys are 1 to {MAX_KEY_LEN} bytes"),
            Error::KeyTooLong(n) => {
                write!(f, "key of {n} bytes is too long: keys are 1 to {MAX_KEY_LEN} bytes")
            }
            Error::TimeOutOfRange(t) => write!(
                f,
                "time {t} ms is out of range: expected Unix milliseconds from 0 to {}",
                crate::time::MAX_TIME_MS
            ),
            Error::Io(e) => write!(f, "{e}"),
            Error::File {
                path,
                action,
                source,
            } => {
                write!(f, "cannot {action} table file {}: {source}", path.display())?;
                match source.kind() {
                    std::io::ErrorKind::NotFound if *action == "create" => {
                        write!(f, " (does the directory exist?)")
                    }
                    std::io::ErrorKind::PermissionDenied => write!(
                        f,
                        " (open it as a user its mode lets read and write; a read-only attach, as `sluice stat` and `peek` make, needs read permission only)"
                    ),
                    _ => Ok(()),
                }
            }
            Error::NoPolicy => write!(f, "no policy given (a table in private memory needs one)"),
            Error::InvalidState(why) => {
                write!(f, "the key state does not fit the policy: {why}")
            }
            Error::ReadOnly { path } => write!(
                f,
                "the table {} was opened read-only: only peek and stats are possible; nothing was recorded",
                path.display()
            ),
            Error::NoTable { path } => write!(
                f,
                "no table file at {}, and no policy was given to create one (a read-only attach never creates one)",
                path.display()
            ),
            Error::NotATable { path, why } => write!(
                f,
                "{} is not a usable sluice table: {why}; the file was not changed",
                path.display()
            ),
            Error::FormatVersion {
                path,
                found,
                supported,
            } => write!(
                f,
                "{} is a sluice table of format version {found}, but this sluice reads version {supported}; the file was not changed",
                path.display()
            ),
            Error::Migration { from, to, why } => write!(
                f,
                "cannot migrate {} to {}: {why}; nothing was created, and {} was not changed",
                from.display(),
                to.display(),
                from.display()
            ),
            Error::PolicyMismatch { path, difference } => write!(
                f,
                "{} was made for another policy: {difference}; the file was not changed (open it without a policy to use its own, or use another path)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Policy(e) => Some(e),
            Error::InBatch { error, .. } => Some(&**error),
            Error::Io(e) => Some(e),
            Error::File { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<PolicyError> for Error {
    fn from(e: PolicyError) -> Error {
        Error::Policy(e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Io(e)
    }
}
