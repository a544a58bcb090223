//! The checkers. Each returns the first invariant broken, named, with what broke it.
//!
//! What they read is independent of the runner's own account where it can be: the gateway model's ledger of
//! every request and call (what really happened to people), the harness's own knowledge of the list (who each
//! row is and which zones they live in), and the results file (what the operator is told).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use ivr_campaign::gateway::protocol;
use ivr_campaign::output::summary::Summary;
use ivr_campaign::simulator::model::{Call, SimGateway};

use crate::world::Person;

/// What the harness knows the runner must respect.
pub struct Expect {
    pub people: Vec<Person>,
    /// Call requests one number may get in all (the recall policy's attempts, under the cap).
    pub max_per_number: u32,
    pub window: Option<String>,
    pub margin: Duration,
    /// How long after a request a call still not final may be written off (and its record removed).
    pub poll_timeout: Duration,
    /// The recall policy's least time from the end of one call to the next request, if it recalls.
    pub recall_after: Option<Duration>,
}

/// What earlier processes left, to compare the next one with.
#[derive(Default)]
pub struct History {
    /// Rows that were final, with their status and request id.
    pub finals: BTreeMap<u64, (String, String)>,
    /// Numbers opted out so far, with the gateway's time when they were.
    pub suppressed: Vec<(String, i64)>,
}

type Row = HashMap<String, String>;

fn read_results(path: &Path) -> Result<Option<Vec<Row>>, String> {
    if !path.exists() {
        return Ok(None);
    }
    let mut r = csv::Reader::from_path(path).map_err(|e| format!("results unreadable: {e}"))?;
    let headers = r
        .headers()
        .map_err(|e| format!("results header unreadable: {e}"))?
        .clone();
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| format!("results row unreadable: {e}"))?;
        rows.push(
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect(),
        );
    }
    Ok(Some(rows))
}

const STATUSES: [&str; 12] = [
    "made",
    "failed",
    "unresolved",
    "unknown",
    "error",
    "invalid",
    "duplicate",
    "suppressed",
    "capped",
    "not_attempted",
    "in_progress",
    "withdrawn",
];

fn is_open(r: &Row) -> bool {
    let s = r.get("status").map(String::as_str).unwrap_or("");
    matches!(s, "not_attempted" | "in_progress")
        || r.get("recall_at").is_some_and(|v| !v.is_empty())
}

/// The open rows, for the story of a seed.
pub fn describe_open(path: &Path) -> String {
    match read_results(path) {
        Ok(Some(rows)) => rows
            .iter()
            .filter(|r| is_open(r))
            .map(|r| {
                format!(
                    "{}:{}{}",
                    r.get("id").map(String::as_str).unwrap_or("?"),
                    r.get("status").map(String::as_str).unwrap_or("?"),
                    r.get("recall_at")
                        .filter(|v| !v.is_empty())
                        .map(|v| format!(" recall {v}"))
                        .unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        Ok(None) => "no results".into(),
        Err(e) => e,
    }
}

/// Rows still to be worked on by a later run.
pub fn open_rows(path: &Path) -> usize {
    match read_results(path) {
        Ok(Some(rows)) => rows.iter().filter(|r| is_open(r)).count(),
        _ => usize::MAX,
    }
}

fn digits(s: &str) -> String {
    let d: String = s.chars().filter(char::is_ascii_digit).collect();
    d.strip_prefix('1').map(str::to_string).unwrap_or(d)
}

/// The line a call was made for, from the `info` the runner gives every request.
fn line_of(call: &Call) -> Option<u64> {
    call.info.rsplit(" row ").next()?.trim().parse().ok()
}

/// The gateway's ledger: who was called, how often, when, and never twice at once.
fn gateways(expect: &Expect, sims: &[SimGateway]) -> Result<(), String> {
    let mut calls: Vec<Call> = Vec::new();
    for s in sims {
        let m = s.model.lock().map_err(|_| "model poisoned".to_string())?;
        calls.extend(m.calls.iter().cloned());
    }
    // The right person: each call dials the number of the row it was made for.
    for c in &calls {
        let line =
            line_of(c).ok_or_else(|| format!("call {} carries no row: {:?}", c.id, c.info))?;
        let person = expect
            .people
            .iter()
            .find(|p| p.line == line)
            .ok_or_else(|| format!("call {} names row {line}, which the list has not", c.id))?;
        match &person.e164 {
            Some(e) if digits(e) == digits(&c.phoneno) => {}
            other => {
                return Err(format!(
                    "wrong-person: call {} for row {line} dialed {} (the row's number: {other:?})",
                    c.id, c.phoneno
                ));
            }
        }
    }
    // Never more often than the policy allows; never while an earlier call of the same person may be live.
    let mut by_number: BTreeMap<String, Vec<&Call>> = BTreeMap::new();
    for c in &calls {
        by_number.entry(digits(&c.phoneno)).or_default().push(c);
    }
    for (number, mut list) in by_number {
        list.sort_by_key(|c| c.created_ms);
        if list.len() as u32 > expect.max_per_number {
            return Err(format!(
                "called-too-often: {number} was requested {} times (at most {} allowed): ids {}",
                list.len(),
                expect.max_per_number,
                list.iter()
                    .map(|c| c.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for c in &list {
            if let Some(at) = c.cancelled_live_at {
                let held = Duration::from_millis((at - c.created_ms).max(0) as u64);
                if held < expect.poll_timeout {
                    return Err(format!(
                        "written-off-early: call {} for {number} was cancelled on the gateway {} s after its request, while still live (poll timeout {} s)",
                        c.id,
                        held.as_secs(),
                        expect.poll_timeout.as_secs()
                    ));
                }
            }
        }
        for pair in list.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if let (Some(after), Some(end)) = (expect.recall_after, a.live_until) {
                let gap = b.created_ms - end;
                if gap < after.as_millis() as i64 {
                    return Err(format!(
                        "recalled-too-soon: {number} requested again (id {}) {} s after call {} ended (recall-after {} s)",
                        b.id,
                        gap / 1000,
                        a.id,
                        after.as_secs()
                    ));
                }
            }
            let live = a.live_until.is_none_or(|t| t > b.created_ms);
            if live {
                return Err(format!(
                    "called-while-live: {number} requested again (id {}) at {} while call {} was still live (until {:?})",
                    b.id, b.created_ms, a.id, a.live_until
                ));
            }
        }
    }
    Ok(())
}

/// Nobody is called after opting out.
fn opt_outs(history: &History, sims: &[SimGateway]) -> Result<(), String> {
    for s in sims {
        let m = s.model.lock().map_err(|_| "model poisoned".to_string())?;
        for c in &m.calls {
            if let Some((n, at)) = history
                .suppressed
                .iter()
                .find(|(n, at)| digits(n) == digits(&c.phoneno) && c.created_ms > *at)
            {
                return Err(format!(
                    "opted-out-called: {n} opted out at {at} and was requested at {} (id {})",
                    c.created_ms, c.id
                ));
            }
        }
    }
    Ok(())
}

fn windows(expect: &Expect, sims: &[SimGateway]) -> Result<(), String> {
    let mut seen = Vec::new();
    for s in sims {
        let m = s.model.lock().map_err(|_| "model poisoned".to_string())?;
        seen.extend(m.seen.iter().cloned());
    }
    // Never outside the calling window, in any of the person's zones, with the margin for the call.
    if let Some(w) = &expect.window {
        let (start, end) = parse_window(w)?;
        for s in seen
            .iter()
            .filter(|s| s.path == protocol::CALL_PATH && s.what != "not-sent")
        {
            let phone = s
                .form
                .iter()
                .find(|(k, _)| k == "phoneno")
                .map(|(_, v)| digits(v))
                .unwrap_or_default();
            let Some(person) = expect
                .people
                .iter()
                .find(|p| p.e164.as_deref().is_some_and(|e| digits(e) == phone))
            else {
                continue;
            };
            let at = jiff::Timestamp::from_millisecond(s.runner_ms).map_err(|e| e.to_string())?;
            for zone in &person.zones {
                let tz = jiff::tz::TimeZone::get(zone).map_err(|e| e.to_string())?;
                let local = at.to_zoned_datetime(tz.clone());
                let finish = (at
                    + jiff::SignedDuration::try_from(expect.margin).unwrap_or_default())
                .to_zoned_datetime(tz);
                let minute =
                    |z: &jiff::ZonedDateTime| i32::from(z.hour()) * 60 + i32::from(z.minute());
                let inside = minute(&local) >= start
                    && finish.date() == local.date()
                    && minute(&finish) * 60 + i32::from(finish.second()) <= end * 60;
                if !inside {
                    return Err(format!(
                        "outside-window: a call request for {phone} reached the gateway at {local} ({zone}), outside {w} with a {}-minute margin",
                        expect.margin.as_secs() / 60
                    ));
                }
            }
        }
    }
    Ok(())
}

fn parse_window(w: &str) -> Result<(i32, i32), String> {
    let (a, b) = w.split_once('-').ok_or("window")?;
    let m = |s: &str| -> Result<i32, String> {
        let (h, mi) = s.split_once(':').ok_or("window")?;
        Ok(h.parse::<i32>().map_err(|e| e.to_string())? * 60
            + mi.parse::<i32>().map_err(|e| e.to_string())?)
    };
    Ok((m(a)?, m(b)?))
}

/// The results: every row, in order, in the vocabulary; finals never change; made calls stay visible; the
/// summary agrees.
fn results(
    expect: &Expect,
    sims: &[SimGateway],
    rows: &[Row],
    history: &mut History,
) -> Result<(), String> {
    if rows.len() != expect.people.len() {
        return Err(format!(
            "row-lost: the results have {} rows for a list of {}",
            rows.len(),
            expect.people.len()
        ));
    }
    for (r, p) in rows.iter().zip(&expect.people) {
        let id = r.get("id").map(String::as_str).unwrap_or("");
        if id != p.line.to_string() {
            return Err(format!(
                "row-lost: results row {} is list row {id:?}",
                p.line
            ));
        }
        let status = r.get("status").map(String::as_str).unwrap_or("");
        if !STATUSES.contains(&status) {
            return Err(format!(
                "row {}: status {status:?} is not in the vocabulary",
                p.line
            ));
        }
        let stamp = |k: &str| {
            r.get(k)
                .filter(|v| !v.is_empty())
                .and_then(|v| v.parse::<jiff::Timestamp>().ok())
        };
        if let (Some(d), Some(f)) = (stamp("dialed_at"), stamp("finished_at"))
            && f < d
        {
            return Err(format!(
                "time-backwards: row {} finished at {f}, before it was dialed at {d}",
                p.line
            ));
        }
        let req_id = r.get("req_id").cloned().unwrap_or_default();
        if !is_open(r) && status != "not_attempted" {
            match history.finals.get(&p.line) {
                Some((s, id)) if (s.as_str(), id.as_str()) != (status, req_id.as_str()) => {
                    return Err(format!(
                        "final-changed: row {} was {s} ({id}) and is now {status} ({req_id}) with no operator action",
                        p.line
                    ));
                }
                _ => {
                    history
                        .finals
                        .insert(p.line, (status.to_string(), req_id.clone()));
                }
            }
        } else if let Some((s, id)) = history.finals.get(&p.line) {
            return Err(format!(
                "final-changed: row {} was final {s} ({id}) and is open again ({status})",
                p.line
            ));
        }
    }
    // A call the gateway made, whose answer the runner read, is never reported as not called.
    for s in sims {
        let m = s.model.lock().map_err(|_| "model poisoned".to_string())?;
        for c in m
            .calls
            .iter()
            .filter(|c| c.final_read && c.outcome.as_deref() == Some("made"))
        {
            let Some(line) = line_of(c) else { continue };
            let Some(r) = rows.get(line as usize - 1) else {
                continue;
            };
            let status = r.get("status").map(String::as_str).unwrap_or("");
            if matches!(
                status,
                "capped" | "suppressed" | "invalid" | "duplicate" | "not_attempted"
            ) {
                return Err(format!(
                    "made-hidden: row {line} was reached (call {} made, its answer read) and the results say {status}",
                    c.id
                ));
            }
        }
    }
    Ok(())
}

fn summary_agrees(summary: &Summary, rows: &[Row]) -> Result<(), String> {
    let mut from_rows: BTreeMap<String, u64> = BTreeMap::new();
    for r in rows {
        *from_rows
            .entry(r.get("status").cloned().unwrap_or_default())
            .or_default() += 1;
    }
    let from_summary: BTreeMap<String, u64> = summary
        .counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(s, n)| (s.result_name().to_string(), *n))
        .collect();
    if from_rows != from_summary {
        return Err(format!(
            "views-disagree: the summary counts {from_summary:?}, the results {from_rows:?}"
        ));
    }
    Ok(())
}

/// After each process, crashed or not.
pub fn after_process(
    expect: &Expect,
    sims: &[SimGateway],
    output: Option<&Path>,
    summary: Option<&Summary>,
    history: &mut History,
    _step_ms: i64,
) -> Result<(), String> {
    gateways(expect, sims)?;
    windows(expect, sims)?;
    opt_outs(history, sims)?;
    let Some(output) = output else {
        return Ok(());
    };
    let Some(rows) = read_results(output)? else {
        // No results yet: the first process died before writing them; then it placed no call either.
        let placed: usize = sims
            .iter()
            .filter_map(|s| s.model.lock().ok().map(|m| m.calls.len()))
            .sum();
        if placed > 0 && summary.is_some() {
            return Err("row-lost: a run ended without a results file".into());
        }
        return Ok(());
    };
    results(expect, sims, &rows, history)?;
    if let Some(s) = summary {
        summary_agrees(s, &rows)?;
    }
    Ok(())
}

/// When the seed is over.
pub fn at_end(
    expect: &Expect,
    sims: &[SimGateway],
    output: Option<&Path>,
    history: &History,
) -> Result<(), String> {
    gateways(expect, sims)?;
    windows(expect, sims)?;
    opt_outs(history, sims)?;
    let mut h = History {
        finals: history.finals.clone(),
        suppressed: history.suppressed.clone(),
    };
    if let Some(output) = output
        && let Some(rows) = read_results(output)?
    {
        results(expect, sims, &rows, &mut h)?;
    }
    Ok(())
}
