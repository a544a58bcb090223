//! What a run did: the line on stderr at the end, and `--summary-json`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::engine::Ending;
use crate::store::State;

/// What a run did. Also written as JSON by `--summary-json` (see [`Summary::to_json`]).
#[derive(Debug)]
pub struct Summary {
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    pub campaign_id: String,
    pub input: std::path::PathBuf,
    pub state_dir: std::path::PathBuf,
    pub configured_rate: Option<f64>,
    /// Rows per status as the results show it ([`State::result`]; a contact waiting for a recall shows its
    /// last outcome).
    pub counts: BTreeMap<State, u64>,
    /// Contacts waiting for a recall, and when the first is due.
    pub recalls_waiting: u64,
    pub next_recall_ms: Option<i64>,
    /// Reminder touches still to come (a rolling export: not work left), and when the first falls due.
    pub touches_waiting: u64,
    pub next_touch_ms: Option<i64>,
    /// Keys whose touch is due and waits for its window: work left, counted under their last outcome.
    pub touches_due: u64,
    pub ending: Ending,
    pub elapsed: Duration,
    pub requests: u64,
    pub request_failures: u64,
    /// Call requests that could not leave this process (out of file descriptors): not among `requests`.
    pub requests_unsent: u64,
    pub polls: u64,
    pub poll_errors: u64,
    pub outage: Duration,
    pub output: std::path::PathBuf,
    /// Each gateway: what this run sent it and how long it was down, and the campaign's calls on it.
    pub gateways: Vec<GatewaySummary>,
    /// Why the results file could not be written (exit 73); the counts come from the journal all the same.
    pub results_error: Option<String>,
    /// Why the list was unusable though the run went on (exit 65): no appointment time of a rolling export
    /// could be read. Its rows are in the results, each `invalid` with its reason.
    pub input_error: Option<String>,
}

/// One gateway in the summary.
#[derive(Debug, Clone, Default)]
pub struct GatewaySummary {
    pub key: String,
    pub lines: u32,
    /// This run's call requests to it, and how long it was unreachable.
    pub requests: u64,
    pub outage: Duration,
    /// Over the campaign (every run): its calls, and how they ended.
    pub share: crate::store::journal::GatewayShare,
}

impl Summary {
    /// Rows whose status satisfies `f`.
    pub fn count_where(&self, f: fn(State) -> bool) -> u64 {
        self.counts
            .iter()
            .filter(|(s, _)| f(**s))
            .map(|(_, n)| n)
            .sum()
    }

    /// From the ending and the counts: 0 when every row is final and none needs a person; 3 when some do;
    /// 75 when work is left; the ending's own code when it stopped the run.
    pub fn exit_code(&self) -> i32 {
        if self.results_error.is_some() {
            return crate::error::exit::CANTCREAT;
        }
        if self.input_error.is_some() {
            return crate::error::exit::DATAERR;
        }
        self.ending.exit_code(
            self.open() > 0,
            self.count_where(State::needs_attention) > 0,
        )
    }

    /// Rows a rerun has work for: calls to poll, contacts to call, recalls waiting.
    pub fn open(&self) -> u64 {
        crate::output::tally::open_and_attention(
            &self.counts,
            self.recalls_waiting + self.touches_due,
        )
        .0
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// Call requests per second over the run.
    pub fn achieved_rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }

    /// The `--summary-json` document. Schema `ivr-campaign/summary/v1`: fields are only ever added within v1.
    pub fn to_json(&self) -> serde_json::Value {
        let rows: serde_json::Map<String, serde_json::Value> = State::RESULTS
            .iter()
            .map(|s| {
                (
                    s.result_name().to_string(),
                    self.counts.get(s).copied().unwrap_or(0).into(),
                )
            })
            .collect();
        let n = |f| self.count_where(f);
        serde_json::json!({
            "schema": "ivr-campaign/summary/v1",
            "campaign_id": self.campaign_id,
            "input": self.input.display().to_string(),
            "output": self.output.display().to_string(),
            "state": self.state_dir.display().to_string(),
            "started_at": self.started_at.to_string(),
            "finished_at": self.finished_at.to_string(),
            "duration_seconds": self.elapsed.as_secs_f64(),
            "exit_code": self.exit_code(),
            "ending": self.ending.as_str(),
            "results_error": self.results_error,
            "input_error": self.input_error,
            "completed": self.ending.completed(self.open() > 0),
            "rows": { "total": self.total(), "needs_attention": n(State::needs_attention), "open": self.open(), "by_status": rows },
            "recalls": {
                "waiting": self.recalls_waiting,
                "next_due": self.next_recall_ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok()).map(|t| t.to_string()),
            },
            "reminders": {
                "touches_waiting": self.touches_waiting,
                "touches_due": self.touches_due,
                "next_due": self.next_touch_ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok()).map(|t| t.to_string()),
            },
            "gateway": {
                "call_requests": self.requests,
                "call_request_failures": self.request_failures,
                "call_requests_not_sent": self.requests_unsent,
                "polls": self.polls,
                "poll_errors": self.poll_errors,
                "outage_stop": self.ending == Ending::Outage,
                "outage_seconds": self.outage.as_secs_f64(),
            },
            "rate": { "configured_per_second": self.configured_rate, "achieved_per_second": self.achieved_rate() },
            "gateways": self.gateways.iter().map(|g| serde_json::json!({
                "url": g.key,
                "lines": g.lines,
                "call_requests": g.requests,
                "outage_seconds": g.outage.as_secs_f64(),
                "campaign": {
                    "calls": g.share.calls,
                    "open": g.share.open,
                    "outcomes": g.share.outcomes,
                    "outage_seconds": g.share.outage_ms as f64 / 1000.0,
                },
            })).collect::<Vec<_>>(),
        })
    }

    /// The one line printed at the end of a run.
    pub fn line(&self) -> String {
        let parts: Vec<String> = State::RESULTS
            .iter()
            .filter_map(|s| {
                self.counts
                    .get(s)
                    .filter(|n| **n > 0)
                    .map(|n| format!("{} {n}", s.result_name()))
            })
            .collect();
        let recalls = match (self.recalls_waiting, self.next_recall_ms) {
            (0, _) => String::new(),
            (n, Some(at)) => format!(
                " {n} recall(s) waiting, the next due {}.",
                jiff::Timestamp::from_millisecond(at)
                    .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default()
            ),
            (n, None) => format!(" {n} recall(s) waiting."),
        };
        let touches = match (self.touches_waiting, self.next_touch_ms) {
            (0, _) => String::new(),
            (n, at) => format!(
                " {n} reminder touch(es) to come{}.",
                at.and_then(|m| jiff::Timestamp::from_millisecond(m).ok())
                    .map(|t| format!(", the next due {}", t.strftime("%Y-%m-%d %H:%M UTC")))
                    .unwrap_or_default()
            ),
        };
        let recalls = format!("{recalls}{touches}");
        let what = match self.exit_code() {
            crate::error::exit::OK => "done".to_string(),
            crate::error::exit::NEEDS_ATTENTION => {
                "done; some rows need a person (see their detail)".to_string()
            }
            crate::error::exit::TEMPFAIL => {
                "stopped with work left; run the same command again to resume".to_string()
            }
            crate::error::exit::CANTCREAT => "not written".to_string(),
            crate::error::exit::DATAERR => "nobody reminded: the list is unusable".to_string(),
            _ => format!("stopped: {}", self.ending.as_str()),
        };
        let gateways = if self.gateways.len() > 1 {
            let parts: Vec<String> = self
                .gateways
                .iter()
                .map(|g| {
                    let down = if g.outage.is_zero() {
                        String::new()
                    } else {
                        format!(", unreachable {}", crate::types::Dur(g.outage))
                    };
                    format!("{} {} requests{down}", g.key, g.requests)
                })
                .collect();
            format!(" Gateways: {}.", parts.join("; "))
        } else {
            String::new()
        };
        let unsent = if self.requests_unsent > 0 {
            format!(
                "; {} more could not leave this process (out of file descriptors?) and are not counted",
                self.requests_unsent
            )
        } else {
            String::new()
        };
        format!(
            "{} rows: {}.{recalls}{gateways} {} call requests ({} failed{unsent}), {} polls ({} failed) in {:.1}s ({:.2} requests/s{}). Results: {} ({what})",
            self.total(),
            parts.join(", "),
            self.requests,
            self.request_failures,
            self.polls,
            self.poll_errors,
            self.elapsed.as_secs_f64(),
            self.achieved_rate(),
            self.configured_rate
                .map_or(String::new(), |r| format!(", limit {r:.2}/s")),
            self.output.display()
        )
    }
}
