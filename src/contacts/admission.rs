//! Whether a row read from the list enters the life cycle as a contact to call, or as `invalid` or
//! `duplicate` at once: decided here, below both the rules and the store, so the journal's ingest and the dry
//! run share it without the store depending on the rules.

use super::Verdict;

/// Whether a row read from the list becomes a contact to call: its own verdict first, then whether an
/// earlier row has the same number. Decided once, when the list is read (the journal's ingest and the dry run
/// both call this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Callable,
    Invalid(String),
    /// The same E.164 number as the row numbered `first_line`, which keeps it.
    Duplicate {
        first_line: u64,
    },
}

impl Admission {
    pub fn detail(&self) -> Option<String> {
        match self {
            Admission::Callable => None,
            Admission::Invalid(r) => Some(r.clone()),
            Admission::Duplicate { first_line } => Some(format!("same number as row {first_line}")),
        }
    }
}

/// Admits a row: `first_seen` says which earlier row, if any, had this E.164 number.
pub fn admit<E>(
    verdict: &Verdict,
    first_seen: impl FnOnce(&str) -> std::result::Result<Option<u64>, E>,
) -> std::result::Result<Admission, E> {
    match verdict {
        Verdict::Invalid(reason) => Ok(Admission::Invalid(reason.clone())),
        Verdict::Call { e164, .. } => Ok(match first_seen(e164)? {
            Some(first_line) => Admission::Duplicate { first_line },
            None => Admission::Callable,
        }),
    }
}
