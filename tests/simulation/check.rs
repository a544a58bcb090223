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

use crate::rolling::Rolling;
use crate::world::Person;

/// What the harness knows the runner must respect.
pub struct Expect {
    pub people: Vec<Person>,
    /// Call requests one number may get in all (the recall policy's attempts).
    pub max_per_number: u32,
    /// The cap per number: at most this many requests in any period of this length, by the runner's clock
    /// (the ledger's).
    pub cap: Option<(u32, Duration)>,
    pub window: Option<String>,
    pub margin: Duration,
    /// How long after a request a call still not final may be written off (and its record removed).
    pub poll_timeout: Duration,
    /// The recall policy's least time from the end of one call to the next request, if it recalls.
    pub recall_after: Option<Duration>,
    /// Lines of each gateway, which the runner's calls outstanding never exceed.
    pub lines: u32,
    /// The least time between call requests (the rate), if it is limited.
    pub rate_interval: Option<Duration>,
}

/// What earlier processes left, to compare the next one with.
#[derive(Default)]
pub struct History {
    /// Rows that were final, with their status and request id.
    pub finals: BTreeMap<u64, (String, String)>,
    /// Numbers opted out so far, with the gateway's time when they were.
    pub suppressed: Vec<(String, i64)>,
    /// Each process so far: when it started and ended (the gateway's time), and whether it ended on its own
    /// (a process that crashed may have read an answer it never wrote down).
    pub processes: Vec<(i64, i64, bool)>,
}

impl History {
    /// Whether something at `at_ms` happened in a process that did not crash.
    fn in_finished_process(&self, at_ms: i64) -> bool {
        self.processes
            .iter()
            .any(|(a, b, finished)| *finished && *a <= at_ms && at_ms <= *b)
    }

    /// Whether a process that started after `at_ms` crashed.
    fn crashed_after(&self, at_ms: i64) -> bool {
        self.processes
            .iter()
            .any(|(a, _, finished)| !finished && *a >= at_ms)
    }

    /// The process `at_ms` fell in, by its index.
    fn process_of(&self, at_ms: i64) -> Option<usize> {
        self.processes
            .iter()
            .position(|(a, b, _)| *a <= at_ms && at_ms <= *b)
    }
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

/// The gateway's ledger: who was called and how often.
fn gateways(expect: &Expect, calls: &[Call]) -> Result<(), String> {
    // The right person: each call dials the number of the row it was made for.
    for c in calls {
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
    // Never more often than the policy allows, nor sooner after a call than the recall delay.
    for (number, list) in by_number(calls) {
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
        }
    }
    Ok(())
}

/// Calls by number, in the order they were requested.
fn by_number(calls: &[Call]) -> BTreeMap<String, Vec<&Call>> {
    let mut by: BTreeMap<String, Vec<&Call>> = BTreeMap::new();
    for c in calls {
        by.entry(digits(&c.phoneno)).or_default().push(c);
    }
    for list in by.values_mut() {
        list.sort_by_key(|c| c.created_ms);
    }
    by
}

/// One number never has two live calls (a family's two appointments included), and no live call is
/// written off before the poll timeout.
fn live_calls(expect: &Expect, calls: &[Call]) -> Result<(), String> {
    for (number, list) in by_number(calls) {
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
            if a.live_until.is_none_or(|t| t > b.created_ms) {
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
    // Never outside the calling window, in any of the person's zones, with the margin the program promises
    // (the gateway's own retries for `firstocc` minutes, then the call itself).
    let Some(w) = &expect.window else {
        return Ok(());
    };
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
        if !open_in_window(expect, &person.zones, at)? {
            return Err(format!(
                "outside-window: a call request for {phone} reached the gateway at {at} (zones {:?}), outside {w} with a {}-minute margin",
                person.zones,
                expect.margin.as_secs() / 60
            ));
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

/// Whether a call request for the same row as `c` came after it, created no call, and its answer never
/// reached the runner as sent.
fn later_request_lost(sims: &[SimGateway], c: &Call) -> Result<bool, String> {
    for s in sims {
        let m = s.model.lock().map_err(|_| "model poisoned".to_string())?;
        if m.seen.iter().any(|r| {
            r.path == protocol::CALL_PATH
                && r.at_ms > c.created_ms
                && r.created.is_none()
                && r.answer_lost
                && r.form.iter().any(|(k, v)| k == "info" && *v == c.info)
        }) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn ids(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .map(|r| r.get("id").cloned().unwrap_or_default())
        .collect()
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

/// What the gateway's ledger alone must show, at any time.
fn ledger(
    expect: &Expect,
    sims: &[SimGateway],
    history: &History,
    rolling: Option<&Rolling>,
) -> Result<(), String> {
    let calls: Vec<Call> = all_calls(sims)?.into_iter().map(|(_, c)| c).collect();
    live_calls(expect, &calls)?;
    windows(expect, sims)?;
    opt_outs(history, sims)?;
    lines(expect, sims, history)?;
    rate(expect, sims, history)?;
    cap(expect, sims)?;
    match rolling {
        Some(r) => crate::rolling::check(r, sims, &|t| history.process_of(t)),
        None => {
            gateways(expect, &calls)?;
            re_requests(&calls)
        }
    }
}

/// A process that ran to its end: how it ended, when it started and ended by its own clock, and the
/// journal's `status --json`.
pub struct Finished<'a> {
    pub summary: &'a Summary,
    pub runner_span_ms: (i64, i64),
    /// The same span on the steady line, on which recall times are written (the gateway's time here).
    pub steady_span_ms: (i64, i64),
    pub status: serde_json::Value,
}

/// After each process, crashed or not.
pub fn after_process(
    expect: &Expect,
    sims: &[SimGateway],
    output: Option<&Path>,
    finished: Option<&Finished>,
    history: &mut History,
    rolling: Option<&Rolling>,
) -> Result<(), String> {
    ledger(expect, sims, history, rolling)?;
    let summary = finished.map(|f| f.summary);
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
    match rolling {
        Some(r) => crate::rolling::results(r, &ids(&rows))?,
        None => results(expect, sims, &rows, history)?,
    }
    results_match(sims, &rows, history, rolling)?;
    if let Some(f) = finished {
        summary_agrees(f.summary, &rows)?;
        views_agree(&f.status, &rows)?;
        liveness(expect, &rows, f, rolling.is_some())?;
    }
    Ok(())
}

/// When the seed is over.
pub fn at_end(
    expect: &Expect,
    sims: &[SimGateway],
    output: Option<&Path>,
    history: &History,
    rolling: Option<&Rolling>,
) -> Result<(), String> {
    ledger(expect, sims, history, rolling)?;
    let mut h = History {
        finals: history.finals.clone(),
        suppressed: history.suppressed.clone(),
        processes: history.processes.clone(),
    };
    if let Some(output) = output
        && let Some(rows) = read_results(output)?
    {
        match rolling {
            Some(r) => crate::rolling::results(r, &ids(&rows))?,
            None => results(expect, sims, &rows, &mut h)?,
        }
        results_match(sims, &rows, &h, rolling)?;
    }
    Ok(())
}

fn all_calls(sims: &[SimGateway]) -> Result<Vec<(usize, Call)>, String> {
    let mut calls = Vec::new();
    for (g, s) in sims.iter().enumerate() {
        let m = s.model.lock().map_err(|_| "model poisoned".to_string())?;
        calls.extend(m.calls.iter().cloned().map(|c| (g, c)));
    }
    Ok(calls)
}

/// A row is requested again only once the runner knows how its earlier call ended: it read the final record,
/// or it removed the record itself (written off `unresolved` at the poll timeout). A request whose answer was
/// lost, unreadable or an error, or that a crash left without an answer, is never requested again: the
/// gateway may be dialing it.
fn re_requests(calls: &[Call]) -> Result<(), String> {
    let mut by_line: BTreeMap<u64, Vec<&Call>> = BTreeMap::new();
    for c in calls {
        if let Some(line) = line_of(c) {
            by_line.entry(line).or_default().push(c);
        }
    }
    for (line, mut list) in by_line {
        list.sort_by_key(|c| c.created_ms);
        for (k, b) in list.iter().enumerate() {
            for a in &list[..k] {
                let known = a.final_read_ms.is_some_and(|t| t <= b.created_ms)
                    || a.removed_ms.is_some_and(|t| t <= b.created_ms);
                if !known {
                    return Err(format!(
                        "re-requested: row {line} was requested again (id {} at {}) though the runner never learned how call {} (requested at {}) ended",
                        b.id, b.created_ms, a.id, a.created_ms
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The cap per number, across campaigns and runs: in no period of its length (by the runner's clock, which
/// the ledger stamps its claims with) more requests to one number than the cap.
fn cap(expect: &Expect, sims: &[SimGateway]) -> Result<(), String> {
    let Some((cap, per)) = expect.cap else {
        return Ok(());
    };
    let mut at: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for s in sims {
        let m = s.model.lock().map_err(|_| "model poisoned".to_string())?;
        for r in m.seen.iter().filter(|r| r.created.is_some()) {
            if let Some((_, phone)) = r.form.iter().find(|(k, _)| k == "phoneno") {
                at.entry(digits(phone)).or_default().push(r.runner_ms);
            }
        }
    }
    let per = per.as_millis() as i64;
    for (number, mut times) in at {
        times.sort_unstable();
        for (j, t) in times.iter().enumerate() {
            // A claim is stamped a moment before its request leaves: a second of slack.
            let within = times[..=j].iter().filter(|s| **s > t - per + 1_000).count();
            if within as u32 > cap {
                return Err(format!(
                    "capped-exceeded: {number} was requested {within} times within {} s (cap {cap})",
                    per / 1000
                ));
            }
        }
    }
    Ok(())
}

/// Lines: on no gateway does the runner hold more calls than its lines. From the gateway's side, a call the
/// runner holds is one it requested and knows the id of, still live, and not yet removed.
fn lines(expect: &Expect, sims: &[SimGateway], history: &History) -> Result<(), String> {
    for (g, s) in sims.iter().enumerate() {
        let m = s.model.lock().map_err(|_| "model poisoned".to_string())?;
        let answered: std::collections::BTreeSet<u64> = m
            .seen
            .iter()
            .filter(|r| r.what == "scheduled" && !r.answer_lost)
            .filter_map(|r| r.created)
            .collect();
        for (i, b) in m.calls.iter().enumerate() {
            let t = b.created_ms;
            let process = history.process_of(t);
            // The runner holds a call it requested in this process and read the answer of, or one it has
            // polled in this process (a call an earlier process left). A call whose answer never reached it
            // is `unknown` to it: that the gateway may still dial it is the price of not requesting it again.
            let polled = |a: &Call| {
                m.seen.iter().any(|r| {
                    r.path == protocol::STATUS_PATH
                        && r.req_id.as_deref() == Some(a.id.as_str())
                        && r.at_ms <= t
                        && history.process_of(r.at_ms) == process
                })
            };
            // An id the gateway gave again hides the older call from everyone: the runner cannot hold it.
            let reused = |a: &Call| m.calls.iter().filter(|o| o.id == a.id).count() > 1;
            let held: Vec<String> = m
                .calls
                .iter()
                .enumerate()
                .filter(|(j, a)| {
                    *j <= i
                        && !reused(a)
                        && a.live_until.is_none_or(|u| u > t)
                        && a.removed_ms.is_none_or(|r| r > t)
                        && ((answered.contains(&(*j as u64))
                            && history.process_of(a.created_ms) == process)
                            || polled(a))
                })
                .map(|(_, a)| {
                    format!(
                        "{} (requested {}, live until {:?})",
                        a.id, a.created_ms, a.live_until
                    )
                })
                .collect();
            if held.len() as u32 > expect.lines {
                return Err(format!(
                    "lines-exceeded: gateway {g} held {} calls of the runner when call {} was requested at {t} (lines {}): {}",
                    held.len(),
                    b.id,
                    expect.lines,
                    held.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// The rate, within one process (each process paces from its own start): of the call requests inside any
/// span, every one after the first has its own slot, an interval apart, so `(n - 2) × interval` never
/// exceeds the span (the pacer's promise, `engine/pacing.rs`).
fn rate(expect: &Expect, sims: &[SimGateway], history: &History) -> Result<(), String> {
    let Some(interval) = expect.rate_interval else {
        return Ok(());
    };
    let mut at: Vec<i64> = Vec::new();
    for s in sims {
        let m = s.model.lock().map_err(|_| "model poisoned".to_string())?;
        at.extend(
            m.seen
                .iter()
                .filter(|r| r.path == protocol::CALL_PATH)
                .map(|r| r.at_ms),
        );
    }
    at.sort_unstable();
    let gap = interval.as_millis() as i64;
    for j in 0..at.len() {
        for i in (0..j).rev() {
            if history.process_of(at[i]) != history.process_of(at[j]) {
                break;
            }
            let n = (j - i + 1) as i64;
            // One millisecond of slack: the model's clock is read in whole milliseconds.
            if (n - 2) * gap > at[j] - at[i] + 1 {
                return Err(format!(
                    "rate-exceeded: {n} call requests within {} ms (one per {} ms allowed)",
                    at[j] - at[i],
                    gap
                ));
            }
        }
    }
    Ok(())
}

/// Each row that shows a call's outcome shows the gateway's record of that very call: status, request id and
/// the keypad responses the IVR collected. And the last call of a row whose final record the runner read (in
/// a process that lived to write it down) is the one the row shows.
fn results_match(
    sims: &[SimGateway],
    rows: &[Row],
    history: &History,
    rolling: Option<&Rolling>,
) -> Result<(), String> {
    let calls = all_calls(sims)?;
    // The row a call was made for, by the results' `id` column: the list's row number, or the export's key.
    let key_of = |c: &Call| -> Option<String> {
        if let Some(r) = rolling {
            // A key's row shows the calls of the appointment the latest export lists: a call made for an
            // earlier time, or for a key since withdrawn, is in its `history`.
            crate::rolling::appointment_of(c)
                .filter(|(k, cell)| r.is_current(k, cell))
                .map(|(k, _)| k)
        } else {
            line_of(c).map(|l| l.to_string())
        }
    };
    let mut last: BTreeMap<String, (usize, &Call)> = BTreeMap::new();
    for (g, c) in &calls {
        if let Some(key) = key_of(c)
            && last
                .get(&key)
                .is_none_or(|(_, l)| l.created_ms <= c.created_ms)
        {
            last.insert(key, (*g, c));
        }
    }
    for (line, (g, c)) in last {
        // An id the gateway gave twice: a poll of it reads the newer call, whoever asked, so which call's
        // record the runner read cannot be told from the ledger.
        let reused = calls
            .iter()
            .filter(|(h, o)| *h == g && o.id == c.id)
            .count()
            > 1;
        if reused {
            continue;
        }
        let Some(read) = c.final_read_ms.filter(|t| history.in_finished_process(*t)) else {
            continue;
        };
        let Some(r) = rows
            .iter()
            .find(|r| r.get("id").is_some_and(|id| *id == line))
        else {
            continue;
        };
        let get = |k: &str| r.get(k).map(String::as_str).unwrap_or("");
        let outcome = c.outcome.as_deref().unwrap_or("");
        let status = get("status");
        // `unresolved`/`error` are the runner's words for a record it could not settle; a read final is never
        // shown as one of those, nor as not called.
        let shown = match outcome {
            "made" => status == "made",
            "failed" => status == "failed",
            _ => true,
        };
        // A key's row may show a later touch's decision (suppressed, capped, too late) with no call of its
        // own; a row that names a call or an outcome names this one.
        let later_touch = rolling.is_some()
            && get("req_id").is_empty()
            && !matches!(status, "made" | "failed" | "unknown" | "unresolved");
        // A later request whose answer was lost (it created no call the ledger could name, or a crash took it
        // before it reached the gateway) leaves the row `unknown` with no id: rightly.
        let later_unknown = status == "unknown"
            && get("req_id").is_empty()
            && (later_request_lost(sims, c)? || history.crashed_after(read));
        if later_touch || later_unknown {
            continue;
        }
        if !shown || get("req_id") != c.id {
            return Err(format!(
                "result-differs: row {line}'s last call {} ended {outcome} (read at {read}) and the results say {status} ({})",
                c.id,
                get("req_id")
            ));
        }
        if get("responses") != c.responses {
            return Err(format!(
                "responses-differ: row {line}'s call {} collected {:?} and the results say {:?}",
                c.id,
                c.responses,
                get("responses")
            ));
        }
    }
    Ok(())
}

/// Liveness: a run that ended `completed` left nothing it could have done: no recall already due at its
/// start, no contact not attempted while its window (with the margin) was open.
pub fn liveness(expect: &Expect, rows: &[Row], f: &Finished, rolling: bool) -> Result<(), String> {
    let (runner_start_ms, runner_end_ms) = f.runner_span_ms;
    if f.summary.ending.as_str() != "completed" {
        return Ok(());
    }
    if rolling {
        // A rolling export's rows are keys, whose touches the reminder checker follows. A call still
        // `in_progress` is one whose status stayed unreadable past max-outage: the next run polls it.
        return Ok(());
    }
    let end = jiff::Timestamp::from_millisecond(runner_end_ms).map_err(|e| e.to_string())?;
    let start = jiff::Timestamp::from_millisecond(runner_start_ms).map_err(|e| e.to_string())?;
    for (r, p) in rows.iter().zip(&expect.people) {
        let status = r.get("status").map(String::as_str).unwrap_or("");
        let recall = r
            .get("recall_at")
            .filter(|v| !v.is_empty())
            .and_then(|v| v.parse::<jiff::Timestamp>().ok());
        // Callable all through the run: its window open (with the margin) when the run started and when it
        // ended. A row whose window opened during the run may be left to the next one, with exit 75.
        let callable = p.e164.is_some()
            && open_in_window(expect, &p.zones, start)?
            && open_in_window(expect, &p.zones, end)?;
        // A call still `in_progress` is one whose status stayed unreadable past max-outage: the next run
        // polls it, by design.
        let left = match (status, recall) {
            (_, Some(t)) if t.as_millisecond() <= f.steady_span_ms.0 && callable => {
                Some(format!("a recall due at {t}"))
            }
            ("not_attempted", _) if callable => Some("not attempted".to_string()),
            _ => None,
        };
        if let Some(what) = left {
            return Err(format!(
                "stuck: the run ended completed at {end} and left row {} ({:?}, zones {:?}) with {what}, inside its window",
                p.line, p.e164, p.zones
            ));
        }
    }
    Ok(())
}

/// Whether a request at `at` would be inside the window in every zone of the person, with the margin.
fn open_in_window(expect: &Expect, zones: &[&str], at: jiff::Timestamp) -> Result<bool, String> {
    let Some(w) = &expect.window else {
        return Ok(true);
    };
    let (start, end) = parse_window(w)?;
    for zone in zones {
        let tz = jiff::tz::TimeZone::get(zone).map_err(|e| e.to_string())?;
        let local = at.to_zoned_datetime(tz.clone());
        let finish = (at + jiff::SignedDuration::try_from(expect.margin).unwrap_or_default())
            .to_zoned_datetime(tz);
        let minute = |z: &jiff::ZonedDateTime| i32::from(z.hour()) * 60 + i32::from(z.minute());
        let inside = minute(&local) >= start
            && finish.date() == local.date()
            && minute(&finish) * 60 + i32::from(finish.second()) <= end * 60;
        if !inside {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The journal's own views (`status --json`, counted by SQL) agree with the results file row for row.
pub fn views_agree(status: &serde_json::Value, rows: &[Row]) -> Result<(), String> {
    let mut from_rows: BTreeMap<String, u64> = BTreeMap::new();
    for r in rows {
        *from_rows
            .entry(r.get("status").cloned().unwrap_or_default())
            .or_default() += 1;
    }
    let from_status: BTreeMap<String, u64> = status["rows"]["by_status"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_u64().filter(|n| *n > 0).map(|n| (k.clone(), n)))
                .collect()
        })
        .unwrap_or_default();
    if from_rows != from_status {
        return Err(format!(
            "views-disagree: status --json counts {from_status:?}, the results {from_rows:?}"
        ));
    }
    let recalls = rows
        .iter()
        .filter(|r| r.get("recall_at").is_some_and(|v| !v.is_empty()))
        .count() as u64;
    let waiting = status["recalls"]["waiting"].as_u64().unwrap_or(u64::MAX);
    if recalls != waiting {
        return Err(format!(
            "views-disagree: status --json has {waiting} recalls waiting, the results show {recalls}"
        ));
    }
    Ok(())
}
