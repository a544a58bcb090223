//! The results file's rows: every contact in input order, with its history of calls.

use rusqlite::Connection;

use super::{OnJournal, state};
use crate::error::{Error, Result};
use crate::store::contact::State;

/// One past call (an attempt that ended) of a contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryCall {
    /// Its outcome as stored (`made`, `failed`, `unknown`, …).
    pub outcome: String,
    /// When it ended, or was dialed or requested if that is all there is (ms since the epoch).
    pub at_ms: Option<i64>,
    /// When it was requested.
    pub intent_at_ms: Option<i64>,
}

/// A contact as the results file shows it.
#[derive(Debug, Clone)]
pub struct ResultRow {
    /// 0-based data row.
    pub row: u64,
    pub state: State,
    pub req_id: Option<String>,
    pub responses: String,
    pub attempts: Option<i64>,
    pub detail: Option<String>,
    pub dialed_number: Option<String>,
    pub dialed_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    pub intent_at_ms: Option<i64>,
    pub tz: Option<String>,
    /// Where `tz` came from (`column`, `number`).
    pub tz_source: Option<String>,
    /// The input row as read ([`crate::store::journal::encode_record`]).
    pub record: Option<Vec<u8>>,
    pub note: Option<String>,
    /// For a contact waiting for a recall: its last call's outcome and when the recall is due.
    pub last_outcome: Option<State>,
    pub recall_at_ms: Option<i64>,
    pub gateway: Option<String>,
    /// Its past calls, oldest first.
    pub history: Vec<HistoryCall>,
}

/// Every contact in input order with its history, handed to `each`. A journal missing a row is an error
/// (the results would put one person's result on another's row).
pub fn result_rows(conn: &Connection, mut each: impl FnMut(ResultRow) -> Result<()>) -> Result<()> {
    let mut stmt = conn
        .prepare(
            // A contact waiting for its recall after a request that provably never left has no request id
            // of its own (the intent cleared it), and is shown with its last call's outcome: so with that
            // call's id too.
            "SELECT row, state,
                    COALESCE(req_id, CASE WHEN last_outcome IS NOT NULL THEN
                        (SELECT k.req_id FROM calls k WHERE k.row = contacts.row ORDER BY k.attempt DESC LIMIT 1) END),
                    responses, attempts, detail, dialed_number, dialed_at, finished_at, intent_at, tz, record, note, tz_source, last_outcome, recall_at, gateway
             FROM contacts ORDER BY row",
        )
        .on_conn(conn)?;
    let mut rows = stmt.query([]).on_conn(conn)?;
    // Every attempt, in the same row order: stepped alongside the contacts.
    let mut history_stmt = conn
        .prepare(
            "SELECT row, outcome, COALESCE(finished_at, dialed_at, intent_at), intent_at FROM calls ORDER BY row, attempt",
        )
        .on_conn(conn)?;
    let mut history_rows = history_stmt.query([]).on_conn(conn)?;
    let mut next_call: Option<(i64, HistoryCall)> = None;
    let mut expected: i64 = 0;
    while let Some(r) = rows.next().on_conn(conn)? {
        let index: i64 = r.get(0).on_conn(conn)?;
        if index != expected {
            return Err(Error::Journal(format!(
                "journal row {index} where row {expected} was expected"
            )));
        }
        expected += 1;
        let mut history = Vec::new();
        loop {
            if next_call.is_none() {
                next_call = history_rows
                    .next()
                    .on_conn(conn)?
                    .map(|h| {
                        Ok::<_, rusqlite::Error>((
                            h.get(0)?,
                            HistoryCall {
                                outcome: h.get(1)?,
                                at_ms: h.get(2)?,
                                intent_at_ms: h.get(3)?,
                            },
                        ))
                    })
                    .transpose()
                    .on_conn(conn)?;
            }
            match next_call.take() {
                Some((row, call)) if row == index => history.push(call),
                other => {
                    next_call = other;
                    break;
                }
            }
        }
        let text: String = r.get(1).on_conn(conn)?;
        let state = state(&text)
            .map_err(|_| Error::Journal(format!("unknown state {text:?} in row {index}")))?;
        let read = || -> rusqlite::Result<ResultRow> {
            Ok(ResultRow {
                row: index as u64,
                state,
                req_id: r.get(2)?,
                responses: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                attempts: r.get(4)?,
                detail: r.get(5)?,
                dialed_number: r.get(6)?,
                dialed_at_ms: r.get(7)?,
                finished_at_ms: r.get(8)?,
                intent_at_ms: r.get(9)?,
                tz: r.get(10)?,
                record: r.get(11)?,
                note: r.get(12)?,
                tz_source: r.get(13)?,
                last_outcome: r
                    .get::<_, Option<String>>(14)?
                    .as_deref()
                    .and_then(State::parse),
                recall_at_ms: r.get(15)?,
                gateway: r.get(16)?,
                history: Vec::new(),
            })
        };
        let mut row = read().on_conn(conn)?;
        row.history = history;
        each(row)?;
    }
    Ok(())
}
