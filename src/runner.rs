//! `ivr-campaign run`: validate, open the journal, run the engine, write the results, summarise.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info, warn};

use crate::campaign::{self, Ending, Stats};
use crate::config::{GatewayTarget, RunConfig};
use crate::contacts::{self, Source, Verdict};
use crate::error::{Error, Result, exit};
use crate::gateway::Gateway;
use crate::journal::{self, NewContact};
use crate::ledger::Ledger;
use crate::results::{self, Status};
use crate::simulator::Simulator;
use crate::suppress;

/// What a run did. Also written as JSON by `--summary-json` (see [`Summary::to_json`]).
#[derive(Debug)]
pub struct Summary {
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    pub campaign_id: String,
    pub input: std::path::PathBuf,
    pub state_dir: std::path::PathBuf,
    pub configured_rate: Option<f64>,
    pub outage_stop: bool,
    pub counts: BTreeMap<Status, u64>,
    pub ending: Ending,
    pub elapsed: Duration,
    pub requests: u64,
    pub request_failures: u64,
    pub polls: u64,
    pub poll_errors: u64,
    pub output: std::path::PathBuf,
}

impl Summary {
    /// Rows whose status satisfies `f`.
    pub fn count_where(&self, f: fn(Status) -> bool) -> u64 {
        self.counts
            .iter()
            .filter(|(s, _)| f(**s))
            .map(|(_, n)| n)
            .sum()
    }

    /// 0 when every row is final and none needs a person; 3 when some do; 75 when work is left.
    pub fn exit_code(&self) -> i32 {
        let n = |f| self.count_where(f);
        if self.ending == Ending::Interrupted || n(Status::is_open) > 0 {
            exit::TEMPFAIL
        } else if n(Status::needs_attention) > 0 {
            exit::NEEDS_ATTENTION
        } else {
            exit::OK
        }
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
        let rows: serde_json::Map<String, serde_json::Value> = Status::ALL
            .iter()
            .map(|s| {
                (
                    s.as_str().to_string(),
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
            "completed": self.ending == Ending::Completed && n(Status::is_open) == 0,
            "rows": { "total": self.total(), "needs_attention": n(Status::needs_attention), "open": n(Status::is_open), "by_status": rows },
            "gateway": {
                "call_requests": self.requests,
                "call_request_failures": self.request_failures,
                "polls": self.polls,
                "poll_errors": self.poll_errors,
                "outage_stop": self.outage_stop,
            },
            "rate": { "configured_per_second": self.configured_rate, "achieved_per_second": self.achieved_rate() },
        })
    }
}

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A bar on a terminal, nothing otherwise.
    Auto,
    /// A bar on a terminal, a log line every 10 s otherwise.
    Always,
    Never,
}

impl std::str::FromStr for Progress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Progress::Auto),
            "always" => Ok(Progress::Always),
            "never" => Ok(Progress::Never),
            _ => Err(format!(
                "{s:?} is not a progress mode; use auto, always or never"
            )),
        }
    }
}

/// Shows progress until dropped.
struct ProgressTask(
    Option<tokio::task::JoinHandle<()>>,
    Option<indicatif::ProgressBar>,
);

impl Drop for ProgressTask {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
        if let Some(b) = &self.1 {
            b.finish_and_clear();
        }
    }
}

fn show_progress(mode: Progress, total: u64, stats: Arc<Stats>) -> ProgressTask {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if mode == Progress::Never || total == 0 {
        return ProgressTask(None, None);
    }
    let started = Instant::now();
    let line = move |s: &Stats| {
        let (m, f, o) = (
            s.made.load(Ordering::Relaxed),
            s.failed.load(Ordering::Relaxed),
            s.other_final.load(Ordering::Relaxed),
        );
        let rate =
            s.dialed.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64().max(0.001);
        (
            m + f + o,
            format!(
                "dialed {} · made {m} · failed {f} · other {o} · in flight {} · {rate:.2} calls/s",
                s.dialed.load(Ordering::Relaxed),
                s.in_flight.load(Ordering::Relaxed)
            ),
        )
    };
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(5));
    if !bar.is_hidden() {
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} ETA {eta} · {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        crate::logging::set_bar(bar.clone());
        let b = bar.clone();
        let task = tokio::spawn(async move {
            loop {
                let (done, msg) = line(&stats);
                b.set_position(done);
                b.set_message(msg);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        return ProgressTask(Some(task), Some(bar));
    }
    if mode == Progress::Always {
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let (done, msg) = line(&stats);
                info!("progress {done}/{total} · {msg}");
            }
        });
        return ProgressTask(Some(task), None);
    }
    ProgressTask(None, None)
}

/// Reads every row and judges it, for the journal's creation.
fn judged_rows(
    source: &Source,
    cfg: &RunConfig,
) -> Result<impl Iterator<Item = Result<NewContact>> + use<>> {
    let mut reader = source.reader()?;
    let (region, format) = (cfg.default_region, cfg.number_format);
    let source = source.clone();
    let input = cfg.input.display().to_string();
    let mut record = csv::ByteRecord::new();
    let mut row = 0u64;
    Ok(std::iter::from_fn(move || {
        // Rows are named by their 1-based data row number, which is their row in the results file. (csv-core's
        // line numbers run one low for CRLF files, which is what Excel writes.)
        let line = row + 1;
        match reader.read_byte_record(&mut record) {
            Ok(false) => None,
            Err(e) => Some(Err(Error::Data(format!("contact list {input}: {e}")))),
            Ok(true) => {
                let judged = source.judge(&record, region, format);
                let (e164, dial, invalid) = match judged.verdict {
                    Verdict::Call { e164, dial } => (Some(e164), Some(dial), None),
                    Verdict::Invalid(reason) => (None, None, Some(reason)),
                };
                let c = NewContact {
                    row,
                    line,
                    e164,
                    dial,
                    invalid,
                    tz: judged.tz,
                };
                row += 1;
                Some(Ok(c))
            }
        }
    }))
}

/// Runs a campaign to its end (or until stopped) and writes the results file.
pub async fn run(cfg: RunConfig, stop: watch::Receiver<u8>, progress: Progress) -> Result<Summary> {
    let started = Instant::now();
    let started_at = jiff::Timestamp::now();
    // Validate the input and the output before anything else happens: no call for a list we cannot read or
    // whose results we could not write.
    let source = contacts::inspect(&cfg.input, &cfg.read_options())?;
    results::check_writable(&cfg.output)?;
    for note in &source.notes {
        info!("{note}");
    }
    for warning in &source.warnings {
        warn!("{warning}");
    }
    let (suppressed, unreadable) = suppress::load(&cfg.suppress, cfg.default_region)?;
    if unreadable > 0 {
        warn!(
            entries = unreadable,
            "suppression list entries that are not phone numbers were ignored"
        );
    }
    let ledger = match cfg.cap {
        Some((cap, per)) => Some(Ledger::open(&cfg.ledger, cap, per)?),
        None => None,
    };

    let simulator = match &cfg.gateway {
        GatewayTarget::Simulator(settings) => Some(
            Simulator::start_with("127.0.0.1:0", (**settings).clone())
                .await
                .map_err(Error::Config)?,
        ),
        GatewayTarget::Url(_) => None,
    };
    let base = match (&cfg.gateway, &simulator) {
        (_, Some(sim)) => {
            reqwest::Url::parse(&sim.url()).map_err(|e| Error::Internal(e.to_string()))?
        }
        (GatewayTarget::Url(u), None) => u.clone(),
        (GatewayTarget::Simulator(_), None) => {
            return Err(Error::Internal("simulator not started".into()));
        }
    };
    if simulator.is_some() {
        info!(url = %base, "using the built-in gateway simulator");
    }
    let ca_pem = match &cfg.ca_cert {
        Some(p) => Some(std::fs::read(p).map_err(|e| {
            Error::NoInput(format!("cannot read CA certificate {}: {e}", p.display()))
        })?),
        None => None,
    };
    let gateway = Gateway::new(
        base,
        cfg.request_timeout,
        cfg.gateway_auth.clone(),
        ca_pem.as_deref(),
    )
    .map_err(Error::Config)?;

    let (owner, opened) = journal::open(
        &cfg.state_dir,
        &source.digest,
        &cfg.input.display().to_string(),
        cfg.redial_unknown,
        &suppressed,
        || judged_rows(&source, &cfg),
    )?;
    if opened.created {
        info!(journal = %cfg.state_dir.display(), "new campaign journal");
    } else {
        info!(journal = %cfg.state_dir.display(), "resuming campaign from its journal");
    }
    if opened.interrupted_intents > 0 {
        warn!(
            contacts = opened.interrupted_intents,
            "an earlier run stopped between deciding to call and hearing back; those contacts are marked unknown and not redialed"
        );
    }
    if opened.suppressed > 0 {
        info!(
            contacts = opened.suppressed,
            "contacts on a suppression list will not be called"
        );
    }
    if opened.redialing_unknown > 0 {
        warn!(
            contacts = opened.redialing_unknown,
            "--redial-unknown: contacts whose earlier call request may have been scheduled will be dialed again"
        );
    }
    info!(
        app = %cfg.app,
        rate = ?cfg.rate,
        lines = cfg.lines,
        region = ?cfg.default_region,
        "campaign starting"
    );

    let stats = Arc::new(Stats::default());
    let to_do: u64 = owner
        .journal
        .read(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM contacts WHERE state IN ('pending', 'dialed')",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .await? as u64;
    let shown = show_progress(progress, to_do, stats.clone());
    let ran = campaign::run(
        cfg.clone(),
        gateway,
        owner.journal.clone(),
        owner.campaign_id.clone(),
        stop,
        stats.clone(),
        ledger,
    )
    .await;
    drop(shown);
    let db_path = owner.db_path.clone();
    let campaign_id = owner.campaign_id.clone();
    // A barrier: every write queued so far is committed before the results are read from another connection.
    owner.journal.read(|_| Ok(())).await?;
    // The lock is held until the results are written.
    let lock_holder = owner;
    let zone = cfg.window.as_ref().map(|_| cfg.timezone_name.as_str());
    let written = results::write(&source, &db_path, &cfg.output, &cfg.response_keys, zone);
    drop(lock_holder);
    if let Some(sim) = simulator {
        sim.stop();
    }
    let ending = ran?;
    let counts = written?;
    if stats.auth_refused.load(Ordering::Relaxed) {
        return Err(Error::Config(format!(
            "the gateway refused the credentials (HTTP 401/403); check --gateway-user and the password variable. Results so far are in {}",
            cfg.output.display()
        )));
    }
    Ok(Summary {
        started_at,
        finished_at: jiff::Timestamp::now(),
        campaign_id,
        input: cfg.input.clone(),
        state_dir: cfg.state_dir.clone(),
        configured_rate: cfg.rate.per_second(),
        outage_stop: stats.outage_stop.load(Ordering::Relaxed),
        counts,
        ending,
        elapsed: started.elapsed(),
        requests: stats.requests.load(Ordering::Relaxed),
        request_failures: stats.request_failures.load(Ordering::Relaxed),
        polls: stats.polls.load(Ordering::Relaxed),
        poll_errors: stats.poll_errors.load(Ordering::Relaxed),
        output: cfg.output.clone(),
    })
}
