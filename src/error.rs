//! Run-level failures and the exit codes they map to.
//!
//! Per-row problems are never errors: a bad number or a failed call is a result row with a reason. Only what
//! stops the whole run lands here, and each kind has a sysexits code so cron and systemd can tell "fix the
//! input" from "try again later".

/// Exit codes, documented in docs/runbook.md. Values follow sysexits.h where one fits.
pub mod exit {
    /// Every row has a final result and none needs a person.
    pub const OK: i32 = 0;
    /// Every row has a final result, but some are `error`, `unknown` or `unresolved` and need a person.
    pub const NEEDS_ATTENTION: i32 = 3;
    /// Bad command line or campaign setting value.
    pub const USAGE: i32 = 64;
    /// The input is unusable as a contact list (no header, no phone column).
    pub const DATAERR: i32 = 65;
    /// The input file does not exist or cannot be opened.
    pub const NOINPUT: i32 = 66;
    /// An internal failure (a bug).
    pub const SOFTWARE: i32 = 70;
    /// The results file cannot be written.
    pub const CANTCREAT: i32 = 73;
    /// The journal cannot be read or written.
    pub const IOERR: i32 = 74;
    /// The gateway's answers are lost or cannot be read (several call-request replies in a row): its
    /// interface changed, or something in front of it answers instead or drops its answers. Not TEMPFAIL:
    /// each such contact may have been called, and a rerun would only add more of them.
    pub const PROTOCOL: i32 = 76;
    /// Stopped with work left (signal, another run holds the journal): rerun the same command to resume.
    pub const TEMPFAIL: i32 = 75;
    /// The campaign file is unreadable or holds an unknown key, or the journal belongs to another input.
    pub const CONFIG: i32 = 78;
}

/// A failure that stops the run. Messages are lower-case, one line, and name the thing at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    NoInput(String),
    #[error("{0}")]
    Data(String),
    #[error("{0}")]
    Output(String),
    #[error("journal: {0}")]
    Journal(String),
    /// SQLite failed on a journal: which file, and what SQLite said.
    #[error("journal {}: {source}", path.display())]
    Store {
        path: std::path::PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{0}")]
    Busy(String),
    /// The cap ledger shared by campaigns failed: busy past its timeout (another campaign holds it: try
    /// again) or unreadable. Never the journal: the campaign's own record is fine.
    #[error("cap ledger {}: {source}", path.display())]
    Ledger {
        path: std::path::PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A flag or campaign key whose value cannot be used, named as the operator wrote it (`--rate`,
    /// `campaign key rate`).
    #[error("{setting}: {problem}")]
    Setting { setting: String, problem: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Config(_) => exit::CONFIG,
            Error::NoInput(_) => exit::NOINPUT,
            Error::Data(_) => exit::DATAERR,
            Error::Output(_) => exit::CANTCREAT,
            Error::Journal(_) | Error::Store { .. } => exit::IOERR,
            Error::Busy(_) => exit::TEMPFAIL,
            Error::Ledger { source, .. } if is_busy(source) => exit::TEMPFAIL,
            Error::Ledger { .. } => exit::IOERR,
            Error::Setting { .. } => exit::USAGE,
            Error::Internal(_) => exit::SOFTWARE,
        }
    }
}

impl Error {
    /// A setting's value refused: `what` names it as given (`--rate`, `campaign key rate`).
    pub fn setting(what: impl Into<String>, problem: impl std::fmt::Display) -> Error {
        Error::Setting {
            setting: what.into(),
            problem: problem.to_string(),
        }
    }
}

/// SQLite could not take a lock in time: another process holds the database.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// An SQLite error from a query that does not name its file: the reminder views and the rolling export's steps
/// still read the journal with their own SQL. The store and the ledger name their file instead
/// ([`Error::Store`], [`Error::Ledger`]).
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Journal(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn a_busy_cap_ledger_is_named_as_the_ledger_and_is_worth_a_retry() {
        let busy = Error::Ledger {
            path: "/var/lib/ledger.sqlite".into(),
            source: sqlite(rusqlite::ffi::SQLITE_BUSY),
        };
        assert_eq!(busy.exit_code(), exit::TEMPFAIL);
        let text = busy.to_string();
        assert!(
            text.starts_with("cap ledger /var/lib/ledger.sqlite: "),
            "{text}"
        );
        assert!(!text.contains("journal"), "{text}");
        let broken = Error::Ledger {
            path: "/var/lib/ledger.sqlite".into(),
            source: sqlite(rusqlite::ffi::SQLITE_CORRUPT),
        };
        assert_eq!(broken.exit_code(), exit::IOERR);
    }

    #[test]
    fn a_refused_setting_names_it_as_given() {
        let e = Error::setting("campaign key rate", "\"fast\" is not a rate");
        assert_eq!(e.to_string(), "campaign key rate: \"fast\" is not a rate");
        assert_eq!(e.exit_code(), exit::USAGE);
    }
}
