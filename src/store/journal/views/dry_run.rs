//! What the dry run (`validate`) reads of a campaign in progress: the rows it would not judge again, and what
//! this campaign's calls so far say about the ones to come.

use rusqlite::Connection;

use super::{OnJournal, state};
use crate::error::Result;
use crate::store::contact::State;

/// A contact the next run would not judge again: final, on the gateway, or waiting for a recall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// 0-based data row.
    pub row: u64,
    pub state: State,
    pub detail: String,
    /// Waiting for a recall (then `state` is `pending`), due at `recall_at_ms`.
    pub waiting: bool,
    pub recall_at_ms: Option<i64>,
}

/// Every contact not simply waiting for its first call.
pub fn settled_rows(conn: &Connection) -> Result<Vec<Settled>> {
    // The state's text is read beside the row, and checked once out of SQLite's hands.
    let go = || -> rusqlite::Result<Vec<(String, Settled)>> {
        let mut st = conn.prepare(
            "SELECT row, state, COALESCE(detail, ''), last_outcome IS NOT NULL, recall_at FROM contacts
             WHERE state <> 'pending' OR last_outcome IS NOT NULL",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get(1)?,
                Settled {
                    row: r.get::<_, i64>(0)?.max(0) as u64,
                    state: State::Pending,
                    detail: r.get(2)?,
                    waiting: r.get(3)?,
                    recall_at_ms: r.get(4)?,
                },
            ))
        })?;
        rows.collect()
    };
    go().on_conn(conn)?
        .into_iter()
        .map(|(text, s)| {
            Ok(Settled {
                state: state(&text)?,
                ..s
            })
        })
        .collect()
}

/// How long this campaign's finished calls held their lines, from the intent to the result read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldTime {
    /// Calls made or failed with both times.
    pub calls: u64,
    /// Their mean (ms), if any.
    pub mean_ms: Option<f64>,
}

pub fn held_time(conn: &Connection) -> Result<HeldTime> {
    conn.query_row(
        "SELECT COUNT(*), AVG(finished_at - intent_at) FROM calls
         WHERE outcome IN ('made', 'failed') AND intent_at IS NOT NULL AND finished_at >= intent_at",
        [],
        |r| {
            Ok(HeldTime {
                calls: r.get::<_, i64>(0)?.max(0) as u64,
                mean_ms: r.get(1)?,
            })
        },
    )
    .on_conn(conn)
}

/// A call that ended with an answer the recall policy judges: its outcome and responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalCall {
    pub outcome: State,
    pub responses: String,
}

/// Every call so far that ended `made`, `failed` or `unresolved`.
pub fn final_calls(conn: &Connection) -> Result<Vec<FinalCall>> {
    let go = || -> rusqlite::Result<Vec<(String, String)>> {
        let mut st = conn.prepare(
            "SELECT outcome, COALESCE(responses, '') FROM calls WHERE outcome IN ('made', 'failed', 'unresolved')",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    };
    Ok(go()
        .on_conn(conn)?
        .into_iter()
        .filter_map(|(outcome, responses)| {
            State::parse(&outcome).map(|outcome| FinalCall { outcome, responses })
        })
        .collect())
}
