//! `ivr-campaign status`: a campaign's progress read from its journal, also while another process runs it.

use std::path::{Path, PathBuf};

use crate::cli::{RunArgs, StatusArgs};
use crate::config::{RunConfig, default_output, default_state_dir};
use crate::error::{Error, Result};
use crate::store::State;
use crate::store::journal;

/// Finds the journal directory the way `run` would.
pub fn locate(args: &StatusArgs) -> Result<PathBuf> {
    if let Some(s) = &args.state {
        return Ok(s.clone());
    }
    if let Some(o) = &args.output {
        return Ok(default_state_dir(o));
    }
    if args.campaign.is_none() {
        if let Some(i) = &args.input {
            return Ok(default_state_dir(&default_output(i)));
        }
        return Err(Error::Usage(
            "status needs a campaign file, --state DIR, --output FILE or --input FILE".into(),
        ));
    }
    // Resolve paths exactly as `run` does; the app name is irrelevant here.
    let cfg = RunConfig::from_args(RunArgs {
        campaign: args.campaign.clone(),
        input: args.input.clone(),
        app: Some("-".into()),
        ..RunArgs::default()
    })?;
    Ok(cfg.state_dir)
}

/// Whether a run currently holds the journal's lock.
fn running(dir: &Path) -> bool {
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join("lock"))
    else {
        return false;
    };
    matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// How a state reads to someone looking now. A request whose answer has not come (`intent`) is in progress
/// while a run holds the journal: that run is waiting for the answer and records it. With no run holding it,
/// the process that sent it is gone, and nobody knows whether the call was placed: it is `unknown`, as the
/// next run will record it.
fn seen(state: State, running: bool) -> State {
    match state {
        State::Intent if running => State::Dialed,
        State::Intent => State::Unknown,
        s => s,
    }
}

/// Counts per state as [`seen`] now; `intent` is kept as such while a run holds the journal (it is counted
/// as `requesting`, and in progress).
fn as_seen(counts: Vec<(State, u64)>, running: bool) -> Vec<(State, u64)> {
    let mut out: std::collections::BTreeMap<State, u64> = Default::default();
    for (s, n) in counts {
        let s = if running { s } else { seen(s, false) };
        *out.entry(s).or_insert(0) += n;
    }
    out.into_iter().collect()
}

/// Contacts waiting for a recall, and the earliest due (ms).
pub fn recalls(db: &Path) -> Result<(u64, Option<i64>)> {
    let conn = journal::open_read_only(db)?;
    let (n, next): (i64, Option<i64>) = conn.query_row(
        "SELECT COUNT(*), MIN(recall_at) FROM contacts WHERE state = 'pending' AND last_outcome IS NOT NULL",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((n as u64, next))
}

/// One gateway's calls, open calls, outcomes and outage time, on one line.
pub fn gateway_line(g: &journal::GatewayShare) -> String {
    let outcomes: Vec<String> = g.outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
    let mut line = format!("{}: {} calls", g.key, g.calls);
    if g.open > 0 {
        line.push_str(&format!(", {} open", g.open));
    }
    if !outcomes.is_empty() {
        line.push_str(&format!(" ({})", outcomes.join(", ")));
    }
    if g.outage_ms > 0 {
        line.push_str(&format!(
            ", unreachable {} in all",
            crate::types::Dur(std::time::Duration::from_millis(g.outage_ms))
        ));
    }
    line
}

/// `status --json`: the journal's side of the summary (`rows`, `recalls`, `gateways[].campaign` have the
/// summary's shapes and names), versioned with it.
pub fn json(dir: &Path) -> Result<serde_json::Value> {
    let db = dir.join(journal::DB_FILE);
    let running = running(dir);
    let counts = as_seen(journal::counts(&db)?, running);
    let (waiting, next_recall) = recalls(&db)?;
    let requesting = counts
        .iter()
        .filter(|(s, _)| *s == State::Intent)
        .map(|(_, n)| n)
        .sum::<u64>();
    let count = |f: fn(State) -> bool| -> u64 {
        counts
            .iter()
            .filter(|(s, _)| f(seen(*s, running)))
            .map(|(_, n)| n)
            .sum()
    };
    let conn = journal::open_read_only(&db)?;
    // Shown as the results show them: a contact waiting for a recall with its last call's outcome.
    let mut shown: std::collections::BTreeMap<State, u64> = Default::default();
    let mut stmt = conn.prepare(
        "SELECT COALESCE(CASE WHEN state = 'pending' THEN last_outcome END, state), COUNT(*) FROM contacts GROUP BY 1",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let text: String = row.get(0)?;
        let state = State::parse(&text)
            .ok_or_else(|| Error::Journal(format!("unknown state {text:?} in the journal")))?;
        *shown.entry(seen(state, running).result()).or_insert(0) += row.get::<_, i64>(1)? as u64;
    }
    let by_status: serde_json::Map<String, serde_json::Value> = State::RESULTS
        .iter()
        .map(|r| {
            (
                r.result_name().to_string(),
                shown.get(r).copied().unwrap_or(0).into(),
            )
        })
        .collect();
    let gateways = journal::gateways_on(&conn)?;
    Ok(serde_json::json!({
        "schema": "ivr-campaign/status/v1",
        "state": dir.display().to_string(),
        "running": running,
        "rows": {
            "total": count(|_| true),
            "needs_attention": count(State::needs_attention),
            // As in the summary: a contact waiting for a recall is open.
            "open": count(State::is_open),
            // Requests a running process has recorded but not yet had an answer to.
            "requesting": requesting,
            "by_status": by_status,
        },
        "recalls": {
            "waiting": waiting,
            "next_due": next_recall.and_then(|m| jiff::Timestamp::from_millisecond(m).ok()).map(|t| t.to_string()),
        },
        "gateways": gateways.iter().map(|g| serde_json::json!({
            "url": g.key,
            "campaign": {
                "calls": g.calls,
                "open": g.open,
                "outcomes": g.outcomes,
                "outage_seconds": g.outage_ms as f64 / 1000.0,
            },
        })).collect::<Vec<_>>(),
    }))
}

/// The report printed by `status`.
pub fn report(dir: &Path) -> Result<String> {
    let db = dir.join(journal::DB_FILE);
    let running = running(dir);
    let counts = as_seen(journal::counts(&db)?, running);
    let (waiting, next_recall) = recalls(&db)?;
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let open: u64 = counts
        .iter()
        .filter(|(s, _)| !s.is_final())
        .map(|(_, n)| n)
        .sum();
    let mut out = format!(
        "journal {}: {} contacts, {} final, {} open; {}\n",
        dir.display(),
        total,
        total - open,
        open,
        if running {
            "a run is in progress"
        } else {
            "no run in progress"
        }
    );
    for state in State::ALL {
        let n = counts
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n);
        let n = if state == State::Pending {
            n - waiting
        } else {
            n
        };
        if n > 0 {
            let label = match state {
                State::Pending => "pending (not yet called)",
                State::Intent => "requesting (in progress)",
                State::Dialed => "dialed (polling)",
                s => s.as_str(),
            };
            out.push_str(&format!("  {label:<26}{n:>9}\n"));
        }
    }
    let gateways = journal::gateways_on(&journal::open_read_only(&db)?)?;
    if !gateways.is_empty() {
        out.push_str("gateways:\n");
        for g in &gateways {
            out.push_str(&format!("  {}\n", gateway_line(g)));
        }
    }
    if waiting > 0 {
        let when = next_recall
            .and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
            .map(|t| format!(" (next due {})", t.strftime("%Y-%m-%d %H:%M UTC")))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {:<26}{waiting:>9}{when}\n",
            "waiting for a recall"
        ));
    }
    Ok(out)
}
