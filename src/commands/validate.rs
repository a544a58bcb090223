//! `ivr-campaign validate` and `run --dry-run`: read everything, apply every rule, write each row's decision,
//! and forecast whether the batch fits in its calling window. No call is placed, and no journal is created
//! (the ledger is only read, when it exists).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::RunConfig;
use crate::contacts::{self, Verdict};
use crate::error::{Error, Result};
use crate::rules::{Admission, Candidate, Decision, admit};
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
    pub forecast: Forecast,
    pub output: PathBuf,
}

/// Time a call holds a line: its length, plus on average half a poll interval before the runner sees it end.
fn line_time(cfg: &RunConfig) -> Duration {
    cfg.call_length + cfg.poll_interval / 2
}

/// Forecasts `calls` calls under `cfg`, starting now.
pub fn forecast(cfg: &RunConfig, calls: u64) -> Forecast {
    let per_call = line_time(cfg).as_secs_f64().max(1e-3);
    let by_lines = f64::from(cfg.lines) / per_call;
    let (throughput, limited_by) = match cfg.rate.per_second() {
        Some(r) if r < by_lines => (r, "the rate limit"),
        _ => (by_lines, "the lines"),
    };
    let seconds = if calls == 0 {
        0.0
    } else {
        calls as f64 / throughput + per_call
    };
    let duration = Duration::from_secs_f64(seconds);
    let mut text = format!(
        "Forecast: {calls} calls at about {:.1} per minute (limited by {limited_by}: rate {}, {} lines, {} per call) take about {}.",
        throughput * 60.0,
        cfg.rate
            .per_second()
            .map_or("unlimited".to_string(), |r| format!("{r:.2}/s")),
        cfg.lines,
        humanize(line_time(cfg)),
        humanize(duration)
    );
    if let Some(window) = &cfg.window {
        let tz = &cfg.timezone;
        let now = jiff::Timestamp::now();
        match window.next_opening(now, tz) {
            None => text.push_str(
                " The calling window never opens in the next week: nobody would be called.",
            ),
            Some(start) => {
                let last = window.last_request(start, tz).unwrap_or(start);
                let available = (last - start).as_secs_f64().max(0.0);
                let local = |t: jiff::Timestamp| {
                    t.to_zoned_datetime(tz.clone())
                        .strftime("%a %H:%M")
                        .to_string()
                };
                let when = if start > now {
                    format!("when the window opens ({})", local(start))
                } else {
                    "now".to_string()
                };
                let requests_needed = (calls as f64 / throughput).max(0.0);
                if requests_needed <= available {
                    let ends = start + jiff::SignedDuration::from_secs_f64(seconds);
                    text.push_str(&format!(
                        " Starting {when}, it finishes at about {} {}, inside the calling window ({}).",
                        local(ends),
                        cfg.timezone_name,
                        window.describe()
                    ));
                } else {
                    let reached = (available * throughput).floor() as u64;
                    text.push_str(&format!(
                        " Starting {when}, it will NOT finish inside the calling window ({}, last request by {} {}): about {} contacts would be left for the next run. Raise --lines or --rate, or start earlier.",
                        window.describe(),
                        local(last),
                        cfg.timezone_name,
                        calls.saturating_sub(reached)
                    ));
                }
                if cfg.timezone_column.is_some() {
                    text.push_str(" (Judged in the campaign's zone; contacts with their own zone open and close with it.)");
                }
            }
        }
    } else {
        text.push_str(" No calling window is set.");
    }
    Forecast {
        calls,
        throughput,
        limited_by,
        duration,
        text,
    }
}

/// Runs the dry run: every row through the same rules a run applies, in the same order.
pub fn run(cfg: &RunConfig) -> Result<Report> {
    run_at(cfg, jiff::Timestamp::now())
}

/// The dry run as of `now` (tests compare it with a run on the same clock).
pub fn run_at(cfg: &RunConfig, now: jiff::Timestamp) -> Result<Report> {
    let source = contacts::inspect(&cfg.input, &cfg.read_options())?;
    crate::output::results::check_columns(&source)?;
    // A run refuses unreadable opt-outs; the dry run lists every one of them, so they can all be fixed at once.
    let (_, unreadable) = crate::rules::suppress::read(&cfg.suppress, cfg.suppress_region)?;
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
    let output = output_path(&cfg.output);
    let out_err = |e: &dyn std::fmt::Display| {
        Error::Output(format!("cannot write {}: {e}", output.display()))
    };
    let file = File::create(&output).map_err(|e| out_err(&e))?;
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .delimiter(source.delimiter)
        .from_writer(BufWriter::new(file));
    let mut header = source.clean_headers();
    for c in ["decision", "detail", "dialed_number"] {
        header.push_field(c.as_bytes());
    }
    if cfg.window.is_some() {
        header.push_field(b"timezone");
        header.push_field(b"timezone_source");
    }
    w.write_byte_record(&header).map_err(|e| out_err(&e))?;

    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut decisions: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut reader = source.reader()?;
    let mut record = csv::ByteRecord::new();
    let mut line = 0u64;
    let mut would_call = 0u64;
    while let Some(read) = reader
        .next(&mut record)
        .map_err(|e| Error::Data(format!("contact list {}: {e}", cfg.input.display())))?
    {
        line += 1;
        let judged = source.judge(&record, read, cfg.default_region, cfg.number_format);
        let admission = admit(&judged.verdict, |e164| {
            Ok::<_, Error>(match seen.get(e164) {
                Some(first) => Some(*first),
                None => {
                    seen.insert(e164.to_string(), line);
                    None
                }
            })
        })?;
        let (e164, dial) = match &judged.verdict {
            Verdict::Call { e164, dial } => (Some(e164.as_str()), dial.clone()),
            Verdict::Invalid(_) => (None, String::new()),
        };
        let (decision, detail, dial) = match (&admission, e164) {
            (Admission::Callable, Some(e164)) => {
                let cand = Candidate {
                    e164,
                    tz: judged.tz.as_deref(),
                };
                match rules.decide(cand, now) {
                    Decision::Call => match rules.cap(e164, "", line - 1, false)? {
                        Some(detail) => ("capped", detail, dial),
                        None => ("would_call", String::new(), dial),
                    },
                    Decision::OutsideWindow { detail, opens } => {
                        let opens =
                            opens.map_or("never in the next week".to_string(), |t| t.to_string());
                        if cfg.wait_for_window {
                            (
                                "would_call",
                                format!("waits for the calling window (opens {opens}): {detail}"),
                                dial,
                            )
                        } else {
                            ("outside_window", format!("{detail}; opens {opens}"), dial)
                        }
                    }
                    Decision::Suppressed(list) => {
                        ("suppressed", format!("on suppression list {list}"), dial)
                    }
                    Decision::Unplaceable(reason) => ("invalid", reason, dial),
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
        if decision == "would_call" {
            would_call += 1;
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
        if cfg.window.is_some() {
            let zone_name = judged
                .tz
                .clone()
                .unwrap_or_else(|| cfg.timezone_name.clone());
            out.push_field(zone_name.as_bytes());
            out.push_field(if judged.tz.is_some() {
                b"column" as &[u8]
            } else {
                b"campaign"
            });
        }
        w.write_byte_record(&out).map_err(|e| out_err(&e))?;
    }
    w.flush().map_err(|e| out_err(&e))?;
    Ok(Report {
        decisions,
        forecast: forecast(cfg, would_call),
        output,
    })
}
