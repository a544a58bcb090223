//! What every view counts, defined once: `status`, `status --json` and the report read a journal through
//! [`Tally`], and the results file (hence the summary and the metrics) counts its rows the same way.
//!
//! - A row's status is its result word ([`State::result_name`]); a contact **waiting for a recall** shows its
//!   last call's outcome (`failed`, `made`, `unresolved`) and has a `recall_at`.
//! - **Open** rows are those a rerun has work for: `not_attempted` + `in_progress` + waiting for a recall.
//! - **Requesting** rows (a process sent their request and has no answer yet): while a run holds the journal
//!   they are `in_progress` (that run is waiting for the answer and records it); with no run holding it they
//!   are `unknown`, which is what the next run records them as.

use std::collections::BTreeMap;

use rusqlite::Connection;

use crate::error::Result;
use crate::store::State;
use crate::store::journal;

/// A journal's rows as the views show them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Rows per result status (a contact waiting for a recall under its last outcome).
    pub by_status: BTreeMap<State, u64>,
    /// Contacts waiting for a recall, and the earliest due (ms since the epoch).
    pub waiting: u64,
    pub next_due_ms: Option<i64>,
    /// Requests a running process has recorded and not yet had an answer to (among `unknown`).
    pub requesting: u64,
    /// Reminder touches still to come (a rolling export), and the earliest to fall due.
    pub touches_waiting: u64,
    pub next_touch_ms: Option<i64>,
    /// Keys whose touch is due and waits for its window (a rolling export): work left.
    pub touches_due: u64,
}

impl Tally {
    /// The rows as a finished (or crashed) campaign shows them.
    pub fn read(conn: &Connection) -> Result<Tally> {
        Tally::read_now(conn, false)
    }

    /// The rows as someone looking now sees them: `running` says whether a run holds the journal.
    pub fn read_now(conn: &Connection, running: bool) -> Result<Tally> {
        if crate::store::touches::is_rolling(conn) {
            return Tally::of_rolling(conn, running);
        }
        let mut t = Tally::default();
        for g in journal::status_groups(conn)? {
            let state = match g.shown {
                State::Intent if running => State::Dialed,
                s => s,
            };
            *t.by_status.entry(state.result()).or_insert(0) += g.contacts;
            if g.waiting {
                t.waiting += g.contacts;
                t.next_due_ms = match (t.next_due_ms, g.next_due_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            if g.requesting {
                t.requesting += g.contacts;
            }
        }
        Ok(t)
    }

    /// A rolling export's rows, one per key as the results show them (touches are not rows).
    fn of_rolling(conn: &Connection, running: bool) -> Result<Tally> {
        let view = super::results::View {
            response_keys: Vec::new(),
            zones: false,
            campaign_zone: None,
        };
        let w = super::reminders::rows_to(
            conn,
            std::io::sink(),
            std::path::Path::new("(none)"),
            &view,
        )?;
        let requesting: i64 = conn.query_row(
            "SELECT COUNT(*) FROM contacts WHERE state = 'intent'",
            [],
            |r| r.get(0),
        )?;
        let mut by_status = w.counts;
        if running && requesting > 0 {
            // Shown as in progress while the run that sent them waits for the answer.
            let n = requesting as u64;
            if let Some(u) = by_status.get_mut(&State::Unknown) {
                let moved = (*u).min(n);
                *u -= moved;
                *by_status.entry(State::Dialed).or_insert(0) += moved;
            }
        }
        Ok(Tally {
            by_status,
            waiting: w.recalls_waiting,
            next_due_ms: w.next_recall_ms,
            requesting: requesting.max(0) as u64,
            touches_waiting: w.touches_waiting,
            next_touch_ms: w.next_touch_ms,
            touches_due: w.touches_due,
        })
    }

    pub fn count(&self, s: State) -> u64 {
        self.by_status.get(&s).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.by_status.values().sum()
    }

    pub fn needs_attention(&self) -> u64 {
        open_and_attention(&self.by_status, self.waiting).1
    }

    /// Rows a rerun has work for.
    pub fn open(&self) -> u64 {
        open_and_attention(&self.by_status, self.waiting + self.touches_due).0
    }
}

/// Open rows and rows needing a person, from counts per result status and the rows waiting under a past
/// outcome (recalls, and a rolling export's touches due and waiting for their window): the one definition
/// the summary, the metrics and every view use.
pub fn open_and_attention(by_status: &BTreeMap<State, u64>, waiting: u64) -> (u64, u64) {
    let sum = |f: fn(State) -> bool| -> u64 {
        by_status
            .iter()
            .filter(|(s, _)| f(**s))
            .map(|(_, n)| n)
            .sum()
    };
    (sum(State::is_open) + waiting, sum(State::needs_attention))
}

/// When a recall is next due, for people.
pub fn due_text(ms: Option<i64>) -> Option<String> {
    ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
}
