//! The journal: the campaign's truth, in SQLite (WAL, `synchronous=FULL`).
//!
//! Every contact's transition ([`super::contact`]) is committed here before the runner acts on it: the intent
//! before the call request is sent, the request id as soon as it arrives, the final result before the gateway
//! record is removed. One thread owns the connection and commits whatever has queued up in one transaction
//! (group commit), acknowledging each write only after its commit is on disk. Each transition is a
//! compare-and-set against the life-cycle rules; one that does not apply is refused (and reported to the
//! writer, or on the health channel) without touching the rest of its group.
//!
//! The journal also keeps a copy of every input row, so the results are written from what was read when the
//! campaign started, never from a list someone edited since.
//!
//! A run holds an OS lock (`flock`) on `lock` in the state directory for its whole life. The kernel drops it
//! when the process dies, however it dies, so a crash never blocks the next run.
//!
//! Where each part lives:
//! - [`schema`]: the tables, the layouts of earlier releases and their migration;
//! - [`open`]: the run lock, opening (creating, binding to its list, migrating), crash recovery;
//! - [`writer`]: the single writer (group commit, acknowledged after fsync) and the [`Journal`] handle;
//! - [`apply`]: the only path by which a contact's state changes (compare-and-set, row count checked,
//!   history recorded);
//! - [`queries`]: what the engine reads back;
//! - [`actions`]: the operator's actions (`redial-unknown`, `--forget-gateway`), through [`apply`];
//! - [`views`]: typed rows for the read-only views (`status`, `report`, results, the dry run).

mod actions;
mod apply;
mod open;
mod queries;
mod schema;
mod views;
mod writer;

use std::path::Path;

use csv::ByteRecord;
use rusqlite::Connection;

use super::contact::{Event, Refused};
use crate::error::{Error, Result};

pub use actions::{MAX_ATTEMPTS_META, Redialed, redial_unknown};
// Reminder touches move along the life cycle through the same checked path (store::touches).
pub(crate) use apply::apply_event;
pub use open::{Binding, NewContact, Opened, open, open_read_only, usable};
pub use queries::{ContactRow, ListCursor, PendingRecord, Waiting};
pub use views::{
    CallEnd, ContactView, FinalCall, GatewayShare, HeldTime, HistoryCall, ReachedOn, ResultRow,
    Settled, StatusGroup, StoredBinding, call_ends, counts, counts_on, final_calls, gateways_on,
    held_time, layout, meta_on, reached_on, report_rows, result_rows, settled_rows, status_groups,
    stored_binding,
};
pub use writer::{Health, Journal, JournalOwner};

pub use crate::settings::paths::{DB_FILE, LOCK_FILE};

/// A write. Each is applied inside the current group's transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// A life-cycle event for one contact, at `at_ms`.
    Apply { row: u64, event: Event, at_ms: i64 },
    /// The gateway record of a final contact was removed (or was already gone). Housekeeping, not a state.
    /// Which record: by then the contact may hold a recall's newer one.
    Removed { row: u64, req_id: String },
    /// A contact not yet called is read again under changed settings (a time zone column added, another
    /// number format): its zone and the number sent. Not a state change; contacts called already keep theirs.
    Reread {
        row: u64,
        dial: String,
        tz: Option<(String, crate::zones::Source)>,
    },
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// `Scheduled` found its request id held by another contact: this contact is `unknown` now, and so is the
    /// other one (`other_row`) if it was still open.
    Clash {
        other_row: u64,
        other_open: bool,
    },
    /// `Recall` recorded the call's end, and its recall is not placed: the reminder touch it was for is no
    /// longer wanted by the export in force. The call's outcome stands (`Settle`).
    RecallWithdrawn,
}

/// Why a write did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The transition is not allowed from the contact's current state.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The journal could not be written (and was given up on).
    #[error("journal: {0}")]
    Io(String),
}

/// Stores a row's fields exactly: each as a little-endian u32 length and its bytes.
pub fn encode_record(rec: &ByteRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(rec.as_slice().len() + 4 * rec.len());
    for f in rec {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// The inverse of [`encode_record`]; `None` for bytes it did not write.
pub fn decode_record(mut bytes: &[u8]) -> Option<ByteRecord> {
    let mut rec = ByteRecord::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        rec.push_field(&rest[..len]);
        bytes = &rest[len..];
    }
    Some(rec)
}

/// SQLite's errors on a journal, named by the journal's file ([`Error::Store`]).
pub(crate) trait OnJournal<T> {
    /// On the journal at `path`.
    fn on(self, path: &Path) -> Result<T>;
    /// On the journal `conn` has open.
    fn on_conn(self, conn: &Connection) -> Result<T>;
}

impl<T> OnJournal<T> for rusqlite::Result<T> {
    fn on(self, path: &Path) -> Result<T> {
        self.map_err(|source| Error::Store {
            path: path.to_path_buf(),
            source,
        })
    }

    fn on_conn(self, conn: &Connection) -> Result<T> {
        self.map_err(|source| Error::Store {
            path: conn.path().unwrap_or_default().into(),
            source,
        })
    }
}

/// A state name the journal does not know: a journal written by something else, or damaged.
fn unknown_state(text: &str) -> Error {
    Error::Journal(format!("unknown state {text:?} in the journal"))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_actions;
