//! The only path by which a contact's state changes: an event's effects ([`effects`]) written as a
//! compare-and-set against its rule ([`Kind::rule`]), exactly one row changed or the event refused, and the
//! attempt it ends added to the contact's history of calls.
//!
//! The writer's groups, crash recovery at open and the operator's actions all come through here.

use rusqlite::{OptionalExtension, Transaction, params};

use super::{Applied, Op, WriteError};
use crate::store::contact::{Event, Refused, State, Value, effects, ends_attempt};

/// What one write did, or why the rules refused it; `Err` from SQLite fails the whole group.
pub(crate) type Outcome = rusqlite::Result<Result<Applied, Refused>>;

fn current_state(tx: &Transaction<'_>, row: u64) -> rusqlite::Result<(State, u64)> {
    let (s, line): (String, i64) = tx
        .prepare_cached("SELECT state, line FROM contacts WHERE row = ?1")?
        .query_row([row as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok((State::parse(&s).unwrap_or(State::Error), line as u64))
}

/// `col = ` what [`Value::Append`] makes of `v` (a bound parameter).
fn appended(col: &str, v: &str) -> String {
    format!("{col} = CASE WHEN {col} IS NULL OR {col} = '' THEN {v} ELSE {col} || '; ' || {v} END")
}

/// Applies one event to one contact as a compare-and-set: exactly one row must change, or the event is
/// refused and nothing is written.
pub(crate) fn apply_event(tx: &Transaction<'_>, row: u64, event: &Event, at_ms: i64) -> Outcome {
    let kind = event.kind();
    if let Event::Scheduled { req_id } = event
        && let Some(clash) = clash(tx, row, req_id, at_ms)?
    {
        return Ok(clash);
    }
    // Bound, not inlined: one cached statement per event kind, whatever the values.
    let mut bound = vec![rusqlite::types::Value::Integer(row as i64)];
    let mut set: Vec<String> = Vec::new();
    for (c, v) in effects(event, at_ms) {
        use rusqlite::types::Value as Sql;
        let mut bind = |v: Sql| {
            bound.push(v);
            format!("?{}", bound.len())
        };
        set.push(match v {
            Value::Null => format!("{c} = {}", bind(Sql::Null)),
            Value::Int(i) => format!("{c} = {}", bind(Sql::Integer(i))),
            Value::Text(t) => format!("{c} = {}", bind(Sql::Text(t))),
            Value::Increment => format!("{c} = {c} + 1"),
            Value::Append(t) => appended(c, &bind(Sql::Text(t))),
        });
    }
    let sql = format!(
        "UPDATE contacts SET {} WHERE row = ?1 AND {}",
        set.join(", "),
        kind.from_sql()
    );
    let changed = tx
        .prepare_cached(&sql)?
        .execute(rusqlite::params_from_iter(bound))?;
    if changed != 1 {
        let (from, line) = current_state(tx, row)?;
        return Ok(Err(Refused {
            line,
            from,
            kind: kind.as_str(),
        }));
    }
    if let Some(outcome) = ends_attempt(event) {
        record_call(tx, row, outcome, matches!(event, Event::Recall { .. }))?;
    }
    // A reminder touch is recalled only as the export in force lists it (a call an earlier run left live
    // outlives the version this run took).
    if let Event::Recall { outcome, .. } = event
        && crate::store::touches::recall_as_listed(tx, row, *outcome, at_ms)?
    {
        return Ok(Ok(Applied::RecallWithdrawn));
    }
    Ok(Ok(Applied::Done))
}

/// A request id the gateway gave `row` that another contact of the journal already holds: this contact is
/// `unknown`, and so is the other if it was still open. `None`: no clash.
fn clash(
    tx: &Transaction<'_>,
    row: u64,
    req_id: &str,
    at_ms: i64,
) -> rusqlite::Result<Option<Result<Applied, Refused>>> {
    let holder: Option<(i64, String, i64)> = tx
        .prepare_cached(
            // Ids are the gateway's own: two gateways may well give the same one.
            // A contact waiting for a recall keeps its last call's id, but that call is over and is not
            // polled: a gateway that gives the id again has reused it, which is no clash.
            "SELECT row, state, line FROM contacts WHERE req_id = ?1 AND row != ?2 AND state != 'pending'
               AND gateway IS (SELECT gateway FROM contacts WHERE row = ?2) LIMIT 1",
        )?
        .query_row(params![req_id, row as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((other, other_state, other_line)) = holder else {
        return Ok(None);
    };
    let (_, line) = current_state(tx, row)?;
    let other_open = State::parse(&other_state).is_some_and(|s| !s.is_final());
    let mine = Event::IdClash {
        detail: format!(
            "the gateway answered with request id {req_id}, which row {other_line} already has: a gateway fault. The call may have been placed; check the gateway before calling again"
        ),
        req_id: Some(req_id.to_string()),
    };
    if let Err(e) = apply_event(tx, row, &mine, at_ms)? {
        return Ok(Some(Err(e)));
    }
    if other_open {
        let theirs = Event::IdClash {
            detail: format!(
                "the gateway gave this call's request id {req_id} to row {line} too, so its status can no longer be told apart; check the gateway"
            ),
            req_id: None,
        };
        if let Err(e) = apply_event(tx, other as u64, &theirs, at_ms)? {
            return Ok(Some(Err(e)));
        }
    }
    Ok(Some(Ok(Applied::Clash {
        other_row: other as u64,
        other_open,
    })))
}

/// Adds the attempt that just ended to the contact's history (`recalled`: the contact's attempt counter has
/// already moved on to the next call).
fn record_call(
    tx: &Transaction<'_>,
    row: u64,
    outcome: State,
    recalled: bool,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO calls (row, attempt, intent_at, req_id, dialed_at, finished_at, outcome, detail, responses, gateway)
         SELECT row, attempt - ?3, intent_at, req_id, dialed_at, finished_at, ?2, detail, responses, gateway
         FROM contacts WHERE row = ?1",
    )?
    .execute(params![row as i64, outcome.as_str(), i64::from(recalled)])?;
    Ok(())
}

/// What applying one event to many contacts did.
#[derive(Debug, Default)]
pub(super) struct Many {
    /// The rows it moved.
    pub applied: Vec<u64>,
    /// The rows the rules refused it for, left as they were.
    pub refused: Vec<Refused>,
}

/// Applies `event(row)` to each of `rows`, each through [`apply_event`]: a row the rules refuse is counted
/// and left as it is. Used by crash recovery and the operator's actions, which pick their rows by the rule's
/// own start states, so a refusal there is a bug the caller reports.
pub(super) fn apply_many(
    tx: &Transaction<'_>,
    rows: &[u64],
    at_ms: i64,
    event: impl Fn(u64) -> Event,
) -> rusqlite::Result<Many> {
    let mut done = Many::default();
    for &row in rows {
        match apply_event(tx, row, &event(row), at_ms)? {
            Ok(_) => done.applied.push(row),
            Err(r) => done.refused.push(r),
        }
    }
    Ok(done)
}

/// The rows an event of this kind may start from now, in row order (those `filter` admits too: an SQL
/// condition on `args`, or `TRUE`).
pub(super) fn rows_for(
    tx: &Transaction<'_>,
    kind: crate::store::Kind,
    filter: &str,
    args: impl rusqlite::Params,
) -> rusqlite::Result<Vec<u64>> {
    let mut st = tx.prepare(&format!(
        "SELECT row FROM contacts WHERE {} AND ({filter}) ORDER BY row",
        kind.from_sql()
    ))?;
    let rows = st.query_map(args, |r| r.get::<_, i64>(0))?;
    rows.map(|r| r.map(|r| r as u64)).collect()
}

/// Applies one queued write.
pub(super) fn apply_op(
    tx: &Transaction<'_>,
    op: &Op,
) -> rusqlite::Result<Result<Applied, WriteError>> {
    match op {
        Op::Apply { row, event, at_ms } => {
            Ok(apply_event(tx, *row, event, *at_ms)?.map_err(WriteError::from))
        }
        Op::Removed { row, req_id } => {
            tx.prepare_cached("UPDATE contacts SET removed = 1 WHERE row = ?1 AND req_id = ?2")?
                .execute(params![*row as i64, req_id])?;
            Ok(Ok(Applied::Done))
        }
        Op::Reread { row, dial, tz } => {
            tx.prepare_cached(
                "UPDATE contacts SET dialed_number = ?2, tz = ?3, tz_source = ?4 WHERE row = ?1 AND state = 'pending'",
            )?
            .execute(params![
                *row as i64,
                dial,
                tz.as_ref().map(|(z, _)| z.as_str()),
                tz.as_ref().map(|(_, s)| s.as_str())
            ])?;
            Ok(Ok(Applied::Done))
        }
    }
}
