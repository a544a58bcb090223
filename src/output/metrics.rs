//! `--metrics-file`: the run's figures in the Prometheus text format, for node_exporter's textfile collector.
//!
//! Written at the end of every run that got as far as reading its settings, whatever its exit code, and
//! replaced atomically (the collector may read it at any moment; a half-written file would be a scrape error).
//! Every sample carries a `campaign` label (the campaign file, or the results file when there is none), so
//! several campaigns can share a collector directory and one alert rule.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result, exit};
use crate::output::summary::Summary;
use crate::store::State;

/// The sample whose value a failed run carries over from the previous file.
const LAST_SUCCESS: &str = "ivr_campaign_last_success_timestamp_seconds";

/// What one run ended with. `summary` is `None` for a run stopped by an error before it had one.
pub struct RunEnd<'a> {
    pub campaign: &'a Path,
    pub summary: Option<&'a Summary>,
    pub exit_code: i32,
    pub duration: Duration,
    pub finished_at: jiff::Timestamp,
}

/// A run succeeded when every row it could settle is settled: exit 0, or 3 (done, with rows a person must
/// read, which `ivr_campaign_rows_needing_attention` reports on its own).
pub fn succeeded(exit_code: i32) -> bool {
    exit_code == exit::OK || exit_code == exit::NEEDS_ATTENTION
}

/// Writes the metrics file for `end`, keeping the previous file's last success time when this run failed.
pub fn write(path: &Path, end: &RunEnd<'_>) -> Result<()> {
    // Only a file of ours is read back: never a device or pipe (endless, or blocking), nor something huge.
    let previous = std::fs::metadata(path)
        .ok()
        .filter(|m| m.is_file() && m.len() <= 1 << 20)
        .and_then(|_| std::fs::read_to_string(path).ok());
    let text = render(end, previous.as_deref());
    crate::output::results::write_atomically(path, |w| {
        w.write_all(text.as_bytes())
            .map_err(|e| Error::Output(format!("cannot write metrics {}: {e}", path.display())))
    })
}

/// The file's text. `previous` is the file this one replaces, if any.
pub fn render(end: &RunEnd<'_>, previous: Option<&str>) -> String {
    let campaign = escape(&end.campaign.display().to_string());
    let finished = end.finished_at.as_millisecond() as f64 / 1000.0;
    let last_success = if succeeded(end.exit_code) {
        Some(finished)
    } else {
        previous.and_then(carried_success)
    };
    let mut out = String::new();
    let mut family = |name: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, value) in samples {
            let sep = if labels.is_empty() { "" } else { "," };
            let _ = writeln!(
                out,
                "{name}{{campaign=\"{campaign}\"{sep}{labels}}} {value}"
            );
        }
    };
    let one = |v: f64| vec![(String::new(), v)];
    family(
        "ivr_campaign_last_run_exit_code",
        "Exit code of the last run (0 done, 3 done with rows that need a person, 75 work left; see docs/runbook.md).",
        &one(f64::from(end.exit_code)),
    );
    family(
        "ivr_campaign_last_run_timestamp_seconds",
        "When the last run ended, in seconds since the Unix epoch.",
        &one(finished),
    );
    if let Some(t) = last_success {
        family(
            LAST_SUCCESS,
            "When a run last ended with exit code 0 or 3, in seconds since the Unix epoch.",
            &one(t),
        );
    }
    family(
        "ivr_campaign_last_run_duration_seconds",
        "How long the last run took.",
        &one(end.duration.as_secs_f64()),
    );
    let Some(s) = end.summary else {
        return out;
    };
    let rows: Vec<(String, f64)> = State::RESULTS
        .iter()
        .map(|state| {
            (
                format!("status=\"{}\"", state.result_name()),
                s.counts.get(state).copied().unwrap_or(0) as f64,
            )
        })
        .collect();
    family(
        "ivr_campaign_rows",
        "Rows of the campaign by result status after the last run, as in the results file.",
        &rows,
    );
    family(
        "ivr_campaign_rows_needing_attention",
        "Rows that need a person (error, unknown, unresolved).",
        &one(s.count_where(State::needs_attention) as f64),
    );
    family(
        "ivr_campaign_rows_open",
        "Rows a rerun still has work for (not yet called, being polled, waiting for a recall).",
        &one(s.open() as f64),
    );
    family(
        "ivr_campaign_recalls_waiting",
        "Contacts waiting for a recall.",
        &one(s.recalls_waiting as f64),
    );
    family(
        "ivr_campaign_touches_due",
        "Reminder touches due and waiting for their window (a rolling export): work left.",
        &one(s.touches_due as f64),
    );
    family(
        "ivr_campaign_touches_waiting",
        "Reminder touches still to come (a rolling export); not work left.",
        &one(s.touches_waiting as f64),
    );
    if let Some(at) = s.next_touch_ms {
        family(
            "ivr_campaign_next_touch_due_timestamp_seconds",
            "When the next reminder touch falls due.",
            &one(at as f64 / 1000.0),
        );
    }
    family(
        "ivr_campaign_last_run_call_requests",
        "Call requests the last run sent.",
        &one(s.requests as f64),
    );
    family(
        "ivr_campaign_last_run_call_request_failures",
        "Call requests of the last run that the gateway did not take.",
        &one(s.request_failures as f64),
    );
    family(
        "ivr_campaign_last_run_call_requests_not_sent",
        "Call requests of the last run that could not leave the process (out of file descriptors); not counted as call requests.",
        &one(s.requests_unsent as f64),
    );
    family(
        "ivr_campaign_last_run_polls",
        "Status polls the last run sent.",
        &one(s.polls as f64),
    );
    family(
        "ivr_campaign_last_run_poll_errors",
        "Status polls of the last run that got no usable answer.",
        &one(s.poll_errors as f64),
    );
    family(
        "ivr_campaign_last_run_outage_seconds",
        "How long the gateway was unreachable during the last run (with several, while all were).",
        &one(s.outage.as_secs_f64()),
    );
    let gateway = |f: fn(&crate::output::summary::GatewaySummary) -> f64| -> Vec<(String, f64)> {
        s.gateways
            .iter()
            .map(|g| (format!("gateway=\"{}\"", escape(&g.key)), f(g)))
            .collect()
    };
    family(
        "ivr_campaign_gateway_last_run_call_requests",
        "Call requests the last run sent to each gateway.",
        &gateway(|g| g.requests as f64),
    );
    family(
        "ivr_campaign_gateway_last_run_outage_seconds",
        "How long each gateway was unreachable during the last run.",
        &gateway(|g| g.outage.as_secs_f64()),
    );
    out
}

/// The last success time a previous file recorded.
fn carried_success(previous: &str) -> Option<f64> {
    previous
        .lines()
        .filter(|l| l.starts_with(LAST_SUCCESS))
        .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .filter(|v| v.is_finite())
}

/// A label value as the text format wants it: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(code: i32) -> RunEnd<'static> {
        RunEnd {
            campaign: Path::new("/srv/a \"b\"\\c.csv"),
            summary: None,
            exit_code: code,
            duration: Duration::from_millis(1500),
            finished_at: jiff::Timestamp::from_second(1_800_000_000).expect("valid"),
        }
    }

    #[test]
    fn a_failed_run_keeps_the_last_success_and_labels_are_escaped() {
        let ok = render(&end(0), None);
        assert!(ok.contains(r#"campaign="/srv/a \"b\"\\c.csv""#), "{ok}");
        assert!(ok.contains(&format!("{LAST_SUCCESS}{{")), "{ok}");
        let failed = RunEnd {
            finished_at: jiff::Timestamp::from_second(1_800_090_000).expect("valid"),
            ..end(75)
        };
        let text = render(&failed, Some(&ok));
        let line = text
            .lines()
            .find(|l| l.starts_with(LAST_SUCCESS))
            .expect("carried over");
        assert!(line.ends_with(" 1800000000"), "{line}");
        assert!(!render(&end(78), None).contains(LAST_SUCCESS));
    }
}
