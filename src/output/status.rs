//! `ivr-campaign status`: a campaign's progress read from its journal, also while another process runs it.

use std::path::Path;

use crate::error::Result;
use crate::output::tally::{Tally, due_text};
use crate::store::State;
use crate::store::journal;

/// Whether a run currently holds the journal's lock.
fn running(dir: &Path) -> bool {
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dir.join(crate::settings::paths::LOCK_FILE))
    else {
        return false;
    };
    matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock))
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
/// summary's shapes, names and meanings: see [`Tally`]), versioned with it.
pub fn json(dir: &Path) -> Result<serde_json::Value> {
    let db = dir.join(journal::DB_FILE);
    let conn = journal::open_read_only(&db)?;
    let running = running(dir);
    let t = Tally::read_now(&conn, running)?;
    let by_status: serde_json::Map<String, serde_json::Value> = State::RESULTS
        .iter()
        .map(|r| (r.result_name().to_string(), t.count(*r).into()))
        .collect();
    let gateways = journal::gateways_on(&conn)?;
    Ok(serde_json::json!({
        "schema": "ivr-campaign/status/v1",
        "state": dir.display().to_string(),
        "running": running,
        "rows": {
            "total": t.total(),
            "needs_attention": t.needs_attention(),
            "open": t.open(),
            "requesting": t.requesting,
            "by_status": by_status,
        },
        "recalls": {
            "waiting": t.waiting,
            "next_due": t.next_due_ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok()).map(|t| t.to_string()),
        },
        "reminders": {
            "touches_waiting": t.touches_waiting,
            "touches_due": t.touches_due,
            "next_due": t.next_touch_ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok()).map(|t| t.to_string()),
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

/// The report printed by `status`, in the results' words (see [`Tally`]).
pub fn report(dir: &Path) -> Result<String> {
    let db = dir.join(journal::DB_FILE);
    let conn = journal::open_read_only(&db)?;
    let running = running(dir);
    let t = Tally::read_now(&conn, running)?;
    let mut out = format!(
        "journal {}: {} rows, {} open, {} need a person; {}\n",
        dir.display(),
        t.total(),
        t.open(),
        t.needs_attention(),
        if running {
            "a run is in progress"
        } else {
            "no run in progress"
        }
    );
    for state in State::RESULTS {
        let n = t.count(state);
        if n > 0 {
            out.push_str(&format!("  {:<26}{n:>9}\n", state.result_name()));
        }
    }
    if t.waiting > 0 {
        let when = due_text(t.next_due_ms)
            .map(|d| format!(", the next due {d}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {:<26}{:>9} (counted above under their last call's outcome{when})\n",
            "waiting for a recall", t.waiting
        ));
    }
    if t.touches_due > 0 {
        out.push_str(&format!(
            "  {:<26}{:>9} (counted above under their last call's outcome; due, waiting for the window)\n",
            "touches due", t.touches_due
        ));
    }
    if t.touches_waiting > 0 {
        let when = due_text(t.next_touch_ms)
            .map(|d| format!(", the next due {d}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {:<26}{:>9} (reminder touches still to come{when}; not work left)\n",
            "touches to come", t.touches_waiting
        ));
    }
    if t.requesting > 0 {
        out.push_str(&format!(
            "  {:<26}{:>9} (counted above as {})\n",
            "requesting",
            t.requesting,
            if running {
                "in progress: the run is waiting for the gateway's answer"
            } else {
                "unknown: the process that sent them is gone"
            }
        ));
    }
    let gateways = journal::gateways_on(&conn)?;
    if !gateways.is_empty() {
        out.push_str("gateways:\n");
        for g in &gateways {
            out.push_str(&format!("  {}\n", gateway_line(g)));
        }
    }
    Ok(out)
}
