//! Typed rows for the views (`status`, `report`, the results file, the dry run): every query they need on the
//! journal's tables, here, so no view knows a column name. Each takes a connection: a read-only one
//! ([`super::open_read_only`]) or the writer's own (inside [`super::Journal::read`]).

mod dry_run;
mod results;

use std::collections::BTreeMap;
use std::path::Path;

use csv::ByteRecord;
use rusqlite::{Connection, OptionalExtension};

use super::open::open_read_only;
use super::schema::meta;
use super::{OnJournal, decode_record, unknown_state};
use crate::error::{Error, Result};
use crate::store::contact::State;

pub use dry_run::{FinalCall, HeldTime, Settled, final_calls, held_time, settled_rows};
pub use results::{HistoryCall, ResultRow, result_rows};

/// A fact recorded about the campaign (`input_name`, `campaign_id`, `created_at`, `campaign_zone`, …).
pub fn meta_on(conn: &Connection, key: &str) -> Result<Option<String>> {
    meta(conn, key).on_conn(conn)
}

fn state(text: &str) -> Result<State> {
    State::parse(text).ok_or_else(|| unknown_state(text))
}

/// Counts per state on a connection.
pub fn counts_on(conn: &Connection) -> Result<Vec<(State, u64)>> {
    let go = || -> rusqlite::Result<Vec<(String, i64)>> {
        let mut st = conn.prepare("SELECT state, COUNT(*) FROM contacts GROUP BY state")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    };
    let mut out = Vec::new();
    for (s, n) in go().on_conn(conn)? {
        out.push((state(&s)?, n as u64));
    }
    out.sort();
    Ok(out)
}

/// Counts per state, read with a separate read-only connection (works while another process runs the
/// campaign: WAL readers do not block the writer).
pub fn counts(db_path: &Path) -> Result<Vec<(State, u64)>> {
    counts_on(&open_read_only(db_path)?)
}

/// One gateway's share of a campaign, over all its runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayShare {
    pub key: String,
    /// Calls requested of it (every attempt; those whose answer was lost too).
    pub calls: u64,
    /// Attempts that ended, by outcome (`made`, `failed`, `unknown`, …).
    pub outcomes: BTreeMap<String, u64>,
    /// Calls on it still open (being requested, or polled).
    pub open: u64,
    /// Time it was unreachable, over every run.
    pub outage_ms: u64,
}

/// Each gateway's calls, outcomes and outage time (empty for a journal from before gateways were recorded).
pub fn gateways_on(conn: &Connection) -> Result<Vec<GatewayShare>> {
    gateways(conn).on_conn(conn)
}

fn gateways(conn: &Connection) -> rusqlite::Result<Vec<GatewayShare>> {
    let has = |table: &str| -> rusqlite::Result<bool> {
        conn.prepare(&format!(
            "SELECT 1 FROM pragma_table_info('{table}') WHERE name = 'gateway'"
        ))?
        .exists([])
    };
    if !has("contacts")? || !has("calls")? {
        return Ok(Vec::new());
    }
    let mut by: BTreeMap<String, GatewayShare> = BTreeMap::new();
    fn entry(by: &mut BTreeMap<String, GatewayShare>, key: String) -> &mut GatewayShare {
        let e = by.entry(key.clone()).or_default();
        e.key = key;
        e
    }
    let mut st = conn.prepare(
        "SELECT gateway, outcome, COUNT(*) FROM calls WHERE gateway IS NOT NULL GROUP BY gateway, outcome",
    )?;
    for r in st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let (key, outcome, n) = r?;
        let e = entry(&mut by, key);
        e.calls += n as u64;
        *e.outcomes.entry(outcome).or_insert(0) += n as u64;
    }
    let mut st = conn.prepare(
        "SELECT gateway, COUNT(*) FROM contacts WHERE gateway IS NOT NULL AND state IN ('intent', 'dialed') GROUP BY gateway",
    )?;
    for r in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (key, n) = r?;
        let e = entry(&mut by, key);
        e.calls += n as u64;
        e.open += n as u64;
    }
    let mut st = conn.prepare(
        "SELECT substr(key, 11), value FROM meta WHERE substr(key, 1, 10) = 'outage_ms:'",
    )?;
    for r in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (key, ms) = r?;
        entry(&mut by, key).outage_ms = ms.max(0) as u64;
    }
    Ok(by.into_values().collect())
}

/// What a journal is bound to, read back from it (to finish a campaign whose list is gone).
#[derive(Debug, Clone)]
pub struct StoredBinding {
    pub digest: String,
    pub headers: ByteRecord,
    pub delimiter: u8,
    pub reading: Option<String>,
}

pub fn stored_binding(db_path: &Path) -> Result<StoredBinding> {
    let conn = open_read_only(db_path)?;
    let (headers, delimiter) = layout(&conn)?;
    Ok(StoredBinding {
        digest: meta(&conn, "input_digest")
            .on(db_path)?
            .ok_or_else(|| Error::Journal(format!("{} is bound to no list", db_path.display())))?,
        headers,
        delimiter,
        reading: meta(&conn, "reading").on(db_path)?,
    })
}

/// The input's header row and delimiter as the journal stored them. (A journal of the first release keeps
/// `meta` values with text affinity, so either storage class is read.)
pub fn layout(conn: &Connection) -> Result<(ByteRecord, u8)> {
    use rusqlite::types::Value;
    let value = |key: &str| -> Result<Option<Value>> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .on_conn(conn)
    };
    let headers = match value("headers")? {
        Some(Value::Blob(b)) => decode_record(&b),
        Some(Value::Text(t)) => decode_record(t.as_bytes()),
        _ => None,
    }
    .ok_or_else(|| Error::Journal("the journal holds no header row".into()))?;
    let delimiter = match value("delimiter")? {
        Some(Value::Integer(d)) => u8::try_from(d).ok(),
        Some(Value::Text(t)) => t.parse().ok(),
        _ => None,
    }
    .unwrap_or(b',');
    Ok((headers, delimiter))
}

/// Contacts counted together by the views: those shown under one status, split by whether they wait for a
/// recall and whether their request is in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusGroup {
    /// The state the contacts show: a contact waiting for a recall shows its last call's outcome.
    pub shown: State,
    /// Waiting for a recall.
    pub waiting: bool,
    /// Their request is in flight (`intent`).
    pub requesting: bool,
    pub contacts: u64,
    /// The earliest recall due among them (ms since the epoch).
    pub next_due_ms: Option<i64>,
}

/// The contacts in groups, as the views count them (`output::tally`).
pub fn status_groups(conn: &Connection) -> Result<Vec<StatusGroup>> {
    // The state's text is read beside the group, and checked once out of SQLite's hands.
    let go = || -> rusqlite::Result<Vec<(String, StatusGroup)>> {
        let mut st = conn.prepare(
            "SELECT COALESCE(CASE WHEN state = 'pending' THEN last_outcome END, state),
                    state = 'pending' AND last_outcome IS NOT NULL, state = 'intent', COUNT(*),
                    MIN(CASE WHEN state = 'pending' AND last_outcome IS NOT NULL THEN recall_at END)
             FROM contacts GROUP BY 1, 2, 3",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get(0)?,
                StatusGroup {
                    shown: State::Pending,
                    waiting: r.get(1)?,
                    requesting: r.get(2)?,
                    contacts: r.get::<_, i64>(3)?.max(0) as u64,
                    next_due_ms: r.get(4)?,
                },
            ))
        })?;
        rows.collect()
    };
    go().on_conn(conn)?
        .into_iter()
        .map(|(text, g)| {
            Ok(StatusGroup {
                shown: state(&text)?,
                ..g
            })
        })
        .collect()
}

/// A contact as the report shows it.
#[derive(Debug, Clone)]
pub struct ContactView {
    pub line: u64,
    /// The state it shows: a contact waiting for a recall shows its last call's outcome.
    pub shown: State,
    pub dialed_number: String,
    pub detail: String,
    pub responses: String,
    /// When its last call was requested or dialed (ms since the epoch), if it was.
    pub called_at_ms: Option<i64>,
    /// Its own zone or zones (`&`-joined); `None`: the campaign's.
    pub tz: Option<String>,
}

/// Every contact in input order, as the report shows it, handed to `each`.
pub fn report_rows(
    conn: &Connection,
    mut each: impl FnMut(ContactView) -> Result<()>,
) -> Result<()> {
    let mut st = conn
        .prepare(
            "SELECT line, COALESCE(CASE WHEN state = 'pending' THEN last_outcome END, state),
                    dialed_number, detail, responses, COALESCE(dialed_at, intent_at), tz
             FROM contacts ORDER BY row",
        )
        .on_conn(conn)?;
    let mut rows = st.query([]).on_conn(conn)?;
    while let Some(r) = rows.next().on_conn(conn)? {
        let get = || -> rusqlite::Result<(i64, String, ContactView)> {
            Ok((
                r.get(0)?,
                r.get(1)?,
                ContactView {
                    line: 0,
                    shown: State::Pending,
                    dialed_number: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    detail: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    responses: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    called_at_ms: r.get(5)?,
                    tz: r.get(6)?,
                },
            ))
        };
        let (line, shown, mut view) = get().on_conn(conn)?;
        view.line = line as u64;
        view.shown = state(&shown)?;
        each(view)?;
    }
    Ok(())
}

/// One ended call request (an attempt), by when it ended and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallEnd {
    pub at_ms: i64,
    pub outcome: State,
}

/// Every call request that ended (each attempt of a recalled contact is one), with its time.
pub fn call_ends(conn: &Connection) -> Result<Vec<CallEnd>> {
    let go = || -> rusqlite::Result<Vec<(i64, String)>> {
        let mut q = conn.prepare(
            "SELECT COALESCE(finished_at, dialed_at, intent_at), outcome FROM calls
             WHERE COALESCE(finished_at, dialed_at, intent_at) IS NOT NULL",
        )?;
        let rows = q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect()
    };
    Ok(go()
        .on_conn(conn)?
        .into_iter()
        .filter_map(|(at_ms, outcome)| {
            State::parse(&outcome).map(|outcome| CallEnd { at_ms, outcome })
        })
        .collect())
}

/// How many contacts were reached (made) by their 1st, 2nd, 3rd … call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReachedOn {
    pub attempt: i64,
    pub contacts: u64,
}

/// Contacts reached by the call that reached them, by attempt.
pub fn reached_on(conn: &Connection) -> Result<Vec<ReachedOn>> {
    let go = || -> rusqlite::Result<Vec<ReachedOn>> {
        let mut q = conn.prepare(
            "SELECT c.attempt, COUNT(*) FROM calls c JOIN contacts k ON k.row = c.row
             WHERE c.outcome = 'made' AND k.state = 'made'
               AND c.attempt = (SELECT MAX(attempt) FROM calls WHERE row = c.row)
             GROUP BY c.attempt",
        )?;
        let rows = q.query_map([], |r| {
            Ok(ReachedOn {
                attempt: r.get(0)?,
                contacts: r.get::<_, i64>(1)?.max(0) as u64,
            })
        })?;
        rows.collect()
    };
    go().on_conn(conn)
}
