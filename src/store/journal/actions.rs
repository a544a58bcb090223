//! The operator's actions on a campaign: `redial-unknown` and `--forget-gateway`. Each is recorded with its
//! time in the journal's `actions`, and moves its contacts through the one apply path ([`super::apply`]),
//! picking them by the start states of its event's rule: what the life-cycle table forbids, no action does.

use std::path::Path;

use rusqlite::{Transaction, params};

use super::apply::{apply_many, rows_for};
use super::open::{lock, open_connection, usable};
use super::schema::meta;
use super::{DB_FILE, Journal, OnJournal};
use crate::error::{Error, Result};
use crate::store::contact::{Event, Kind, Refused};

/// An action the writer applies in its group, all of it or none.
#[derive(Debug)]
pub(super) enum Action {
    /// The calls open on `gateway` (no longer listed) are written off as `unknown`.
    ForgetGateway { gateway: String, at_ms: i64 },
}

impl Action {
    /// Applies the action: how many contacts it moved, or the first refusal (then nothing of it is written).
    pub(super) fn apply(&self, tx: &Transaction<'_>) -> rusqlite::Result<Result<u64, Refused>> {
        // A savepoint of its own: a refusal undoes the action, not the rest of the writer's group.
        tx.execute_batch("SAVEPOINT action")?;
        let done = match self {
            Action::ForgetGateway { gateway, at_ms } => forget(tx, gateway, *at_ms),
        };
        match done {
            Ok(Ok(n)) => {
                tx.execute_batch("RELEASE action")?;
                Ok(Ok(n))
            }
            other => {
                tx.execute_batch("ROLLBACK TO action; RELEASE action")?;
                other
            }
        }
    }
}

/// Records an action in `actions`; returns its number.
fn record(
    tx: &Transaction<'_>,
    at_ms: i64,
    action: &str,
    contacts: usize,
    detail: &str,
) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO actions (at, action, contacts, detail) VALUES (?1, ?2, ?3, ?4)",
        params![at_ms, action, contacts as i64, detail],
    )?;
    Ok(tx.last_insert_rowid())
}

fn forget(
    tx: &Transaction<'_>,
    gateway: &str,
    at_ms: i64,
) -> rusqlite::Result<Result<u64, Refused>> {
    let rows = rows_for(tx, Kind::Forgotten, "gateway = ?1", [gateway])?;
    let action = record(
        tx,
        at_ms,
        "forget-gateway",
        rows.len(),
        &format!("gateway {gateway}"),
    )?;
    let event = Event::Forgotten {
        gateway: gateway.to_string(),
        action,
    };
    let done = apply_many(tx, &rows, at_ms, |_| event.clone())?;
    Ok(match done.refused.into_iter().next() {
        Some(r) => Err(r),
        None => Ok(done.applied.len() as u64),
    })
}

impl Journal {
    /// The operator's `--forget-gateway`: the calls open on `gateway` are written off as `unknown`, recorded as
    /// one action, through the writer like every other write. Returns how many.
    pub async fn forget_gateway(&self, gateway: String) -> Result<u64> {
        self.act(Action::ForgetGateway {
            gateway,
            at_ms: crate::types::now_ms(),
        })
        .await
        .map_err(|e| match e {
            super::WriteError::Refused(r) => Error::Internal(r.to_string()),
            super::WriteError::Io(e) => Error::Journal(e),
        })
    }
}

/// What `redial-unknown` did.
#[derive(Debug, Clone)]
pub struct Redialed {
    pub action: i64,
    /// Data row numbers (as in the results file) to be called again by the next run.
    pub lines: Vec<u64>,
    /// The campaign's `max-attempts`, as its last run had it (none without a recall policy).
    pub max_attempts: Option<u32>,
    /// The rows whose next call goes past `max-attempts`, with which call it is: a redial is the operator's
    /// decision, and the policy does not hold it back, so the operator is told.
    pub beyond: Vec<(u64, u32)>,
}

impl Redialed {
    /// What the command tells the operator.
    pub fn message(&self, dir: &Path) -> String {
        if self.lines.is_empty() {
            return format!("no unknown contact to call again in {}", dir.display());
        }
        let rows: Vec<String> = self.lines.iter().map(u64::to_string).collect();
        let mut out = format!(
            "{} contact(s) will be called again by the next run (rows {}); recorded as action {} in {}.",
            self.lines.len(),
            rows.join(", "),
            self.action,
            dir.display()
        );
        if let (Some(max), false) = (self.max_attempts, self.beyond.is_empty()) {
            let each: Vec<String> = self
                .beyond
                .iter()
                .map(|(line, call)| format!("row {line} gets call {call}"))
                .collect();
            out.push_str(&format!(
                " Past max-attempts ({max}), which a redial does not stop: {}.",
                each.join(", ")
            ));
        }
        out.push_str(" The results file still shows them unknown until that run");
        out
    }
}

/// Where a run records its `max-attempts` for `redial-unknown` (empty without a recall policy).
pub const MAX_ATTEMPTS_META: &str = "max_attempts";

/// The operator's one-off action: the contacts `unknown` now (all, or those of the given rows) are called
/// again by the next run, accepting that some may be called a second time. Recorded with its time in the
/// journal's `actions`. Contacts whose request was interrupted by a crash are not among them until a run has
/// reported them `unknown` (they are `intent` until then, and the operator has not seen them).
pub fn redial_unknown(dir: &Path, only_lines: Option<&[u64]>) -> Result<Redialed> {
    let _lock = lock(dir)?;
    let db_path = dir.join(DB_FILE);
    let at = db_path.as_path();
    if !usable(at) {
        return Err(Error::NoInput(format!(
            "no journal at {}",
            db_path.display()
        )));
    }
    let mut conn = open_connection(at)?;
    let tx = conn.transaction().on(at)?;
    // Every contact the rule lets a redial start from: row, line, and which call the next would be.
    let unknown: Vec<(u64, u64, u32)> = {
        let mut st = tx
            .prepare(&format!(
                "SELECT row, line, attempt FROM contacts WHERE {} ORDER BY row",
                Kind::Redial.from_sql()
            ))
            .on(at)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)?.max(1) as u32 + 1,
                ))
            })
            .on(at)?;
        rows.collect::<rusqlite::Result<_>>().on(at)?
    };
    let max_attempts = meta(&tx, MAX_ATTEMPTS_META)
        .on(at)?
        .and_then(|m| m.parse::<u32>().ok());
    if let Some(only) = only_lines {
        let missing: Vec<String> = only
            .iter()
            .filter(|l| !unknown.iter().any(|(_, line, _)| line == *l))
            .map(|l| l.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(Error::Usage(format!(
                "row(s) {} are not unknown; only unknown contacts can be called again",
                missing.join(", ")
            )));
        }
    }
    let chosen: Vec<&(u64, u64, u32)> = unknown
        .iter()
        .filter(|(_, line, _)| only_lines.is_none_or(|only| only.contains(line)))
        .collect();
    let lines: Vec<u64> = chosen.iter().map(|(_, line, _)| *line).collect();
    if lines.is_empty() {
        // Nothing done, nothing recorded.
        return Ok(Redialed {
            action: 0,
            lines,
            max_attempts,
            beyond: Vec::new(),
        });
    }
    let beyond: Vec<(u64, u32)> = chosen
        .iter()
        .filter(|(_, _, call)| max_attempts.is_some_and(|m| *call > m))
        .map(|(_, line, call)| (*line, *call))
        .collect();
    let now = crate::types::now_ms();
    let shown: Vec<String> = lines.iter().map(u64::to_string).collect();
    let action = record(
        &tx,
        now,
        "redial-unknown",
        lines.len(),
        &format!("rows {}", shown.join(",")),
    )
    .on(at)?;
    let rows: Vec<u64> = chosen.iter().map(|(row, _, _)| *row).collect();
    let done = apply_many(&tx, &rows, now, |_| Event::Redial { action }).on(at)?;
    if let Some(r) = done.refused.first() {
        // Picked by the rule's own start states in this transaction: a refusal is a bug, and nothing is written.
        return Err(Error::Internal(format!("redial-unknown: {r}")));
    }
    tx.commit().on(at)?;
    Ok(Redialed {
        action,
        lines,
        max_attempts,
        beyond,
    })
}
