//! `ivr-campaign validate` and `run --dry-run`: read everything, apply every rule, write each row's decision,
//! and forecast whether the batch fits in its calling window. No call is placed, and no journal is created
//! (the ledger is only read, when it exists).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::contacts::{self, Verdict};
use crate::error::{Error, Result};
use crate::rules::{Admission, Candidate, Decision, admit};
use crate::settings::RunConfig;
use crate::types::humanize;

/// The decision file: `results.csv` → `results.dry-run.csv`.
pub fn output_path(output: &Path) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = output
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    output.with_file_name(format!("{stem}.dry-run{ext}"))
}

/// The estimate for a batch.
#[derive(Debug, Clone)]
pub struct Forecast {
    pub calls: u64,
    /// Calls per second the batch can sustain: the rate, or the lines divided by a call's line time.
    pub throughput: f64,
    pub limited_by: &'static str,
    /// Time from the first request to the last call's end.
    pub duration: Duration,
    /// The plain-language verdict.
    pub text: String,
}

/// What a dry run found.
#[derive(Debug)]
pub struct Report {
    pub decisions: BTreeMap<&'static str, u64>,
    /// With a window: how many callable rows each zone source placed (`column`, `number`, `campaign`), and how
    /// many could not be placed (`not placed`).
    pub zone_sources: BTreeMap<&'static str, u64>,
    pub forecast: Forecast,
    pub output: PathBuf,
    /// The first three callable rows' extra call fields, as they would be sent (none without fields).
    pub samples: Vec<(u64, crate::fields::Extras)>,
    /// What the dry run read besides the list (the campaign's journal), for the operator.
    pub notes: Vec<String>,
}

/// A campaign in progress, as its journal has it: the rows a run would not judge again.
#[derive(Debug, Default)]
struct Journaled {
    /// 0-based row → its status word and detail, for rows final or on the gateway.
    settled: HashMap<u64, (&'static str, String)>,
    /// 0-based row → when its recall is due (ms), for contacts waiting for one.
    recalls: HashMap<u64, Option<i64>>,
}

/// The journal of this list's campaign, if one exists: final rows keep their status, calls in progress stay
/// with the gateway, and only the rest are judged and forecast, as the next run would.
fn journaled(cfg: &RunConfig, digest: &str, notes: &mut Vec<String>) -> Result<Option<Journaled>> {
    use crate::store::{State, journal};
    let db = cfg.files.state_dir.join(journal::DB_FILE);
    if !journal::usable(&db) {
        return Ok(None);
    }
    let conn = journal::open_read_only(&db)?;
    let bound = journal::meta_on(&conn, "input_digest").ok().flatten();
    if bound.as_deref() != Some(digest) {
        notes.push(format!(
            "The journal in {} belongs to another contact list: a run with these settings would refuse to start (exit 78). The rows below are judged as a new campaign's.",
            cfg.files.state_dir.display()
        ));
        return Ok(None);
    }
    let mut j = Journaled::default();
    for s in journal::settled_rows(&conn)? {
        if s.state == State::Pending {
            if s.waiting {
                j.recalls.insert(s.row, s.recall_at_ms);
            }
            continue;
        }
        let detail = match s.state {
            State::Intent | State::Dialed => {
                "called; the next run polls it (not called again)".to_string()
            }
            _ => s.detail,
        };
        j.settled.insert(s.row, (s.state.result_name(), detail));
    }
    if let Some(was) = crate::store::heard::log(&conn).last() {
        let changes = crate::store::heard::Heard::of(cfg, 0).changes_since(was);
        if !changes.is_empty() {
            notes.push(format!(
                "What people hear changed since this campaign's last run ({}): the people called so far heard the earlier settings; a run warns, and the results name each call's app. A new --output starts a new campaign.",
                changes.join("; ")
            ));
        }
    }
    let (settled, recalls) = (j.settled.len(), j.recalls.len());
    notes.push(format!(
        "Campaign in progress (journal {}): {settled} rows already final or on the gateway keep their status; {recalls} waiting for a recall and the rows not yet called are judged.",
        cfg.files.state_dir.display()
    ));
    Ok(Some(j))
}

/// Time a call holds a line, and where the figure comes from: its length plus a full poll interval (the end of
/// a call is seen at the first poll after it, which in practice is nearly a full interval later; polls of
/// many lines under `poll-rate` come less often than the interval), or what this campaign's calls took so far
/// when that is longer. Never the shorter of the two: the forecast must not be optimistic.
fn line_time(cfg: &RunConfig) -> (Duration, Option<u64>) {
    let lines = cfg.gateways.iter().map(|g| g.lines).max().unwrap_or(1);
    let by_rate = cfg
        .pacing
        .poll_rate
        .per_second()
        .filter(|r| *r > 0.0)
        .map_or(Duration::ZERO, |r| {
            Duration::from_secs_f64(f64::from(lines) / r)
        });
    let modelled = cfg.call.call_length + cfg.pacing.poll_interval.max(by_rate);
    match held_so_far(cfg) {
        Some((held, calls)) if held > modelled => (held, Some(calls)),
        _ => (modelled, None),
    }
}

/// How long this campaign's finished calls held their lines on average (from the intent to the result read),
/// once it has at least 20 of them.
fn held_so_far(cfg: &RunConfig) -> Option<(Duration, u64)> {
    let db = cfg.files.state_dir.join(crate::store::journal::DB_FILE);
    if !crate::store::journal::usable(&db) {
        return None;
    }
    let conn = crate::store::journal::open_read_only(&db).ok()?;
    let held = crate::store::journal::held_time(&conn).ok()?;
    let (n, avg) = (held.calls, held.mean_ms);
    let avg = avg.filter(|a| a.is_finite() && *a >= 0.0)?;
    (n >= 20).then(|| (Duration::from_secs_f64(avg / 1000.0), n))
}

/// Calls to forecast, grouped by the zones their windows are judged in (one group without a window).
#[derive(Debug, Clone, Default)]
pub struct Groups {
    /// Zone names joined with `&` → the zones and the calls.
    pub by_zones: BTreeMap<String, (Vec<jiff::tz::TimeZone>, u64)>,
    /// Contacts outside their window now, left for a later run (stop mode), and the first of their openings.
    pub later: u64,
    pub first_opening: Option<jiff::Timestamp>,
}

impl Groups {
    /// `calls` calls with nothing known of their zones (no window).
    pub fn flat(calls: u64) -> Groups {
        let mut g = Groups::default();
        g.add(String::new(), Vec::new(), calls);
        g
    }

    pub fn add(&mut self, key: String, zones: Vec<jiff::tz::TimeZone>, calls: u64) {
        self.by_zones.entry(key).or_insert((zones, 0)).1 += calls;
    }

    /// A contact outside its window now, whose window opens at `opens`: not called by this run (stop mode).
    pub fn left_for_later(&mut self, opens: Option<jiff::Timestamp>) {
        self.later += 1;
        self.first_opening = match (self.first_opening, opens) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    pub fn calls(&self) -> u64 {
        self.by_zones.values().map(|(_, n)| n).sum()
    }
}

/// Forecasts the calls of `groups` under `cfg`, starting at `now`. Each group's window opens and closes in
/// its own zones (all of them at once, for numbers that may be in several): the batch fits when every group's
/// calls fit in its own window at the batch's throughput, and all of them in the span from the first opening
/// to the last close.
pub fn forecast(cfg: &RunConfig, groups: &Groups, now: jiff::Timestamp) -> Forecast {
    let calls = groups.calls();
    let (held, learned) = line_time(cfg);
    let per_call = held.as_secs_f64().max(1e-3);
    // Each gateway takes calls as fast as its lines (or its own rate) allow; the campaign's rate caps the sum.
    let mut gateways_own_rate = false;
    let by_gateways: f64 = cfg
        .gateways
        .iter()
        .map(|g| {
            let by_lines = f64::from(g.lines) / per_call;
            match g.rate.and_then(|r| r.per_second()) {
                Some(r) if r < by_lines => {
                    gateways_own_rate = true;
                    r
                }
                _ => by_lines,
            }
        })
        .sum();
    let lines: u32 = cfg.gateways.iter().map(|g| g.lines).sum();
    let (throughput, limited_by) = match cfg.pacing.rate.per_second() {
        Some(r) if r < by_gateways => (r, "the rate limit"),
        _ if gateways_own_rate => (by_gateways, "the gateways' lines and own rates"),
        _ => (by_gateways, "the lines"),
    };
    let lines_text = if cfg.gateways.len() > 1 {
        format!("{} gateways, {lines} lines in all", cfg.gateways.len())
    } else {
        format!("{lines} lines")
    };
    let seconds = if calls == 0 {
        0.0
    } else {
        calls as f64 / throughput + per_call
    };
    let duration = Duration::from_secs_f64(seconds);
    let basis = match learned {
        Some(n) => format!("as this campaign's {n} calls so far held them"),
        None => "the call length and a poll interval".to_string(),
    };
    let mut text = format!(
        "Forecast: {calls} calls at about {:.1} per minute (limited by {limited_by}: rate {}, {lines_text}, each line held {} per call: {basis}) take about {}.",
        throughput * 60.0,
        cfg.pacing.rate,
        humanize(held),
        humanize(duration)
    );
    let Some(window) = &cfg.rules.window else {
        text.push_str(" No calling window is set.");
        recall_forecast(cfg, calls, &mut text);
        return Forecast {
            calls,
            throughput,
            limited_by,
            duration,
            text,
        };
    };
    // Each group's next opening and the last moment a request may go that day (the earliest close of its
    // zones, less the margin).
    let mut spans = Vec::new();
    let mut never = 0u64;
    for (key, (zones, n)) in &groups.by_zones {
        match window.next_opening_all(now, zones) {
            None => never += n,
            Some(open) => {
                let last = zones
                    .iter()
                    .filter_map(|tz| window.last_request(open, tz))
                    .min()
                    .unwrap_or(open);
                spans.push((key.clone(), open, last.max(open), *n));
            }
        }
    }
    let utc = |t: jiff::Timestamp| t.strftime("%a %H:%M UTC").to_string();
    // Contacts outside their window now are not in the calls (stop mode leaves them for a later run): said
    // apart, with when their window opens, so the forecast agrees with the rows' own `opens`.
    let later = match (groups.later, groups.first_opening) {
        (0, _) => String::new(),
        (n, Some(t)) => format!(
            " {n} contacts are outside their calling window now and left for a later run (the first window opens {}; --outside-window wait waits for it).",
            utc(t)
        ),
        (n, None) => {
            format!(" {n} contacts are outside their calling window now and left for a later run.")
        }
    };
    if spans.is_empty() && calls == 0 {
        text.push_str(" Nobody would be called now.");
    } else if spans.is_empty() {
        text.push_str(" The calling window does not open for any of them in the next weeks: nobody would be called.");
    } else {
        let first = spans.iter().map(|s| s.1).min().unwrap_or(now);
        let end = spans.iter().map(|s| s.2).max().unwrap_or(first);
        let span = (end - first).as_secs_f64().max(0.0);
        let mut left = 0u64;
        let mut short: Vec<String> = Vec::new();
        for (key, open, last, n) in &spans {
            let fits =
                ((last.as_second() - open.as_second()).max(0) as f64 * throughput).floor() as u64;
            if *n > fits {
                left += n - fits;
                short.push(if key.is_empty() {
                    format!("{} of {n}", n - fits)
                } else {
                    format!("{} of {n} in {key}", n - fits)
                });
            }
        }
        let overall = (span * throughput).floor() as u64;
        left = left.max(calls.saturating_sub(never).saturating_sub(overall));
        let when = if first > now {
            format!("when the first window opens ({})", utc(first))
        } else {
            "now".to_string()
        };
        if left == 0 {
            let ends = first + jiff::SignedDuration::from_secs_f64(seconds);
            text.push_str(&format!(
                " Starting {when}, it finishes at about {}, inside every recipient's calling window ({}).",
                utc(ends.max(first)),
                window.describe()
            ));
        } else {
            text.push_str(&format!(
                " Starting {when}, it will NOT finish inside the calling windows ({}): about {left} contacts would be left for the next run ({}). Raise --lines or --rate, or start earlier.",
                window.describe(),
                short.join("; ")
            ));
        }
        if spans.len() > 1 {
            text.push_str(&format!(
                " The recipients' windows open and close in {} different zone groups.",
                spans.len()
            ));
        }
    }
    if never > 0 {
        text.push_str(&format!(
            " {never} contacts' windows do not open in the next weeks."
        ));
    }
    text.push_str(&later);
    recall_forecast(cfg, calls, &mut text);
    Forecast {
        calls,
        throughput,
        limited_by,
        duration,
        text,
    }
}

/// Share of calls the recall policy is assumed to call again when nothing has been seen yet: roughly the
/// unanswered share of appointment-reminder calls.
const ASSUMED_RECALL_SHARE: f64 = 0.3;

/// The share of this campaign's calls so far that the policy would recall, from its journal's history.
fn recall_share_seen(cfg: &RunConfig) -> Option<(f64, u64)> {
    let policy = cfg.recall.as_ref()?;
    let db = cfg.files.state_dir.join(crate::store::journal::DB_FILE);
    let conn = crate::store::journal::open_read_only(&db).ok()?;
    let calls = crate::store::journal::final_calls(&conn).ok()?;
    let (mut seen, mut recalled) = (0u64, 0u64);
    for crate::store::journal::FinalCall {
        outcome: state,
        responses,
    } in calls
    {
        seen += 1;
        // As a first call: would the policy call it again?
        if policy.wants(state, &responses, 1, true) {
            recalled += 1;
        }
    }
    (seen >= 20).then(|| (recalled as f64 / seen as f64, seen))
}

/// What the recall policy adds: expected further calls, and the time its delays take.
fn recall_forecast(cfg: &RunConfig, calls: u64, text: &mut String) {
    let Some(policy) = &cfg.recall else {
        return;
    };
    let (share, basis) = match recall_share_seen(cfg) {
        Some((p, seen)) => (p, format!("as seen in this campaign's {seen} calls so far")),
        None => (
            ASSUMED_RECALL_SHARE,
            format!(
                "assumed: {:.0}% of calls, until the campaign has seen more",
                ASSUMED_RECALL_SHARE * 100.0
            ),
        ),
    };
    // Each call is recalled with this chance, up to max-attempts calls in all.
    let extra: f64 = (1..policy.max_attempts)
        .map(|k| calls as f64 * share.powi(k as i32))
        .sum();
    text.push_str(&format!(
        " Recalls (up to {} calls each, {} after the last): about {:.0} more call requests ({:.0}% recalled, {basis}); the last of them come about {} after the first calls, so some may fall in a later window.",
        policy.max_attempts,
        humanize(policy.after),
        extra,
        share * 100.0,
        humanize((policy.after + cfg.call.call_length) * (policy.max_attempts.saturating_sub(1)))
    ));
}

/// Runs the dry run: every row through the same rules a run applies, in the same order.
pub fn run(cfg: &RunConfig) -> Result<Report> {
    run_at(cfg, jiff::Timestamp::now())
}

/// The dry run as of `now` (tests compare it with a run on the same clock).
pub fn run_at(cfg: &RunConfig, now: jiff::Timestamp) -> Result<Report> {
    let source = contacts::inspect(&cfg.files.input, &cfg.read_options())?;
    if cfg.reminders.is_none() {
        crate::output::results::check_columns(&source, cfg.rules.window.is_some())?;
    }
    // What `run` reads before its first call, read here too: a dry run that passes is a run that starts.
    for g in &cfg.gateways {
        if let crate::settings::GatewayTarget::Url(url) = &g.target {
            super::run::client_for(cfg, g, url.clone())?;
        }
    }
    // A run refuses unreadable opt-outs; the dry run lists every one of them, so they can all be fixed at once.
    let (_, unreadable) =
        crate::rules::suppress::read(&cfg.rules.suppress, cfg.rules.suppress_region)?;
    if !unreadable.is_empty() {
        let lines: Vec<String> = unreadable.iter().map(|u| format!("  {u}")).collect();
        return Err(Error::Data(format!(
            "{} suppression list entries are not phone numbers; a run refuses them until they are fixed:\n{}",
            unreadable.len(),
            lines.join("\n")
        )));
    }
    // The ledger is only read, and only if it exists: a dry run leaves nothing behind.
    let mut rules = super::run::rules_for(cfg, true)?;
    let mut notes = Vec::new();
    // A rolling export's journal holds touches, not rows: each row is judged from the export and the clock.
    let journal = match &cfg.reminders {
        Some(_) => {
            notes.push("A rolling export: each row says which touch is due now and when the next falls due, as a run starting now would take it; touches already made are in the results file.".into());
            Journaled::default()
        }
        None => journaled(cfg, &source.digest, &mut notes)?.unwrap_or_default(),
    };
    let mut rolling = match &cfg.reminders {
        Some(r) => Some((
            r,
            super::validate_rolling::Columns::of(&source.clean_headers(), r)?,
        )),
        None => None,
    };
    let output = output_path(&cfg.files.output);
    let out_err = |e: &dyn std::fmt::Display| {
        Error::Output(format!("cannot write {}: {e}", output.display()))
    };
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut decisions: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut groups = Groups::default();
    let mut sources: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut samples = Vec::new();
    // Written beside and renamed over, as the results are: a dry run stopped half-way (Ctrl-C on a large
    // list) leaves the previous decisions whole, never a truncated file.
    crate::output::results::write_atomically(&output, |file| {
        let mut w = csv::WriterBuilder::new()
            .flexible(true)
            .delimiter(source.delimiter)
            .from_writer(file);
        let mut header = source.clean_headers();
        for c in ["decision", "detail", "dialed_number"] {
            header.push_field(c.as_bytes());
        }
        if cfg.rules.window.is_some() {
            header.push_field(b"timezone");
            header.push_field(b"timezone_source");
        }
        if rolling.is_some() {
            for c in super::validate_rolling::COLUMNS {
                header.push_field(c.as_bytes());
            }
        }
        w.write_byte_record(&header).map_err(|e| out_err(&e))?;

        let mut reader = source.reader()?;
        let mut record = csv::ByteRecord::new();
        let mut line = 0u64;
        let mut one_country = contacts::OneCountry::default();
        let request = super::run::request_for(cfg, &source.clean_headers())?;
        while let Some(read) = reader
            .next(&mut record)
            .map_err(|e| Error::Data(format!("contact list {}: {e}", cfg.files.input.display())))?
        {
            line += 1;
            if let contacts::Row::Runaway { from, lines } = read {
                return Err(source.runaway(line, from, lines));
            }
            let mut judged = source.judge(
                &record,
                read,
                cfg.list.default_region,
                cfg.call.number_format,
            );
            one_country.check(&judged.verdict, line, cfg.call.number_format)?;
            super::run::admit_fields(&mut judged, &request, &record);
            if samples.len() < 3
                && matches!(judged.verdict, Verdict::Call { .. })
                && let Ok(x) = request.extras(Some(&record))
                && (!x.fields.is_empty() || x.info.is_some())
            {
                samples.push((line, x));
            }
            let touch = rolling
                .as_mut()
                .map(|(r, cols)| super::validate_rolling::judge(r, cols, &record, line, now));
            let admission = admit(&judged.verdict, |e164| {
                // Two appointments of one number are two reminders, not a duplicate.
                if touch.is_some() {
                    return Ok::<_, Error>(None);
                }
                Ok::<_, Error>(match seen.get(e164) {
                    Some(first) => Some(*first),
                    None => {
                        seen.insert(e164.to_string(), line);
                        None
                    }
                })
            })?;
            let (e164, dial) = match &judged.verdict {
                Verdict::Call { e164, dial, .. } => (Some(e164.as_str()), dial.clone()),
                Verdict::Invalid(_) => (None, String::new()),
            };
            // The same placement the run stores: the column's zone, else the number's, else the campaign's.
            let own = super::run::placed(&judged);
            let mut zone_cells: (String, &'static str) = (String::new(), "");
            let settled = journal.settled.get(&(line - 1));
            let (decision, detail, dial) = match (&admission, e164) {
                (Admission::Callable, _)
                    if touch.as_ref().is_some_and(|t| t.decision.is_some()) =>
                {
                    let (word, detail) = touch
                        .as_ref()
                        .and_then(|t| t.decision.clone())
                        .unwrap_or_default();
                    (word, detail, dial)
                }
                // Final, or on the gateway: a run does not judge it again.
                _ if settled.is_some() => {
                    let (word, detail) = settled.cloned().unwrap_or_default();
                    (word, detail, dial)
                }
                (Admission::Callable, Some(e164)) => {
                    let cand = Candidate {
                        e164,
                        tz: own.as_ref().map(|(z, _)| z.as_str()),
                    };
                    let placed = rules.place(cand);
                    if cfg.rules.window.is_some() {
                        let source = match (&own, &placed) {
                            (Some((_, src)), _) => src.as_str(),
                            (None, Ok(_)) => crate::zones::Source::Campaign.as_str(),
                            (None, Err(_)) => "not placed",
                        };
                        *sources.entry(source).or_insert(0) += 1;
                        if let Ok(p) = &placed {
                            zone_cells = (p.names.join("&"), source);
                        }
                    }
                    let recall = journal.recalls.get(&(line - 1)).map(|due| {
                        let due = due
                            .and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
                            .map_or(String::new(), |t| format!(", due {t}"));
                        format!("a recall{due}")
                    });
                    match rules.decide(cand, now) {
                        Decision::Call => match rules.cap(e164, "", (line - 1, 1), false, now)? {
                            Some(detail) => ("capped", detail, dial),
                            None => ("would_call", recall.unwrap_or_default(), dial),
                        },
                        Decision::OutsideWindow { detail, opens } => {
                            let decision_opens = opens;
                            let opens = opens
                                .map_or("never in the next week".to_string(), |t| t.to_string());
                            if cfg.rules.wait_for_window {
                                (
                                    "would_call",
                                    format!(
                                        "waits for the calling window (opens {opens}): {detail}"
                                    ),
                                    dial,
                                )
                            } else {
                                groups.left_for_later(decision_opens);
                                ("outside_window", format!("{detail}; opens {opens}"), dial)
                            }
                        }
                        Decision::Suppressed(list) => {
                            ("suppressed", format!("on suppression list {list}"), dial)
                        }
                        Decision::Unplaceable(reason) => ("invalid", reason, dial),
                        Decision::TouchEnded(reason) => ("too_late", reason, dial),
                    }
                }
                (a, _) => (
                    if matches!(a, Admission::Duplicate { .. }) {
                        "duplicate"
                    } else {
                        "invalid"
                    },
                    a.detail().unwrap_or_default(),
                    String::new(),
                ),
            };
            let detail = match touch.as_ref().and_then(|t| t.touch_note.as_ref()) {
                Some(note) if decision == "would_call" && detail.is_empty() => note.clone(),
                Some(note) if decision != "invalid" => format!("{detail}; {note}"),
                _ => detail,
            };
            if decision == "would_call" {
                let cand = Candidate {
                    e164: e164.unwrap_or(""),
                    tz: own.as_ref().map(|(z, _)| z.as_str()),
                };
                match (cfg.rules.window.is_some(), rules.place(cand)) {
                    (true, Ok(p)) => groups.add(p.names.join("&"), p.zones, 1),
                    _ => groups.add(String::new(), Vec::new(), 1),
                }
            }
            *decisions.entry(decision).or_insert(0) += 1;
            let mut out = record.clone();
            out.truncate(source.headers.len());
            for _ in out.len()..source.headers.len() {
                out.push_field(b"");
            }
            out.push_field(decision.as_bytes());
            out.push_field(detail.as_bytes());
            out.push_field(dial.as_bytes());
            if cfg.rules.window.is_some() {
                out.push_field(zone_cells.0.as_bytes());
                out.push_field(zone_cells.1.as_bytes());
            }
            if let Some(t) = &touch {
                for c in &t.cells {
                    out.push_field(c.as_bytes());
                }
            }
            w.write_byte_record(&out).map_err(|e| out_err(&e))?;
        }
        w.flush().map_err(|e| out_err(&e))
    })?;
    Ok(Report {
        decisions,
        forecast: forecast(cfg, &groups, now),
        zone_sources: sources,
        output,
        samples,
        notes,
    })
}
