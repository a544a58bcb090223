//! `ivr-campaign run`: validate, open the journal, run the engine, write the results, summarise.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{GatewayTarget, RunConfig};
use crate::contacts::{self, Source};
use crate::engine::{self, Clock, Stage, Stats};
use crate::error::{Error, Result};
use crate::gateway::Gateway;
use crate::output::progress::{self, Progress};
use crate::output::results;
use crate::output::summary::Summary;
use crate::rules::Rules;
use crate::rules::ledger::Ledger;
use crate::rules::suppress;
use crate::simulator::Simulator;
use crate::store::State;
use crate::store::journal::{self, Binding, NewContact, encode_record};
use crate::types::Dur;

/// Reads every row and judges it, for the journal's creation.
pub fn judged_rows(
    source: &Source,
    cfg: &RunConfig,
) -> Result<impl Iterator<Item = Result<NewContact>> + use<>> {
    let mut reader = source.reader()?;
    let (region, format) = (cfg.default_region, cfg.number_format);
    let source = source.clone();
    let input = cfg.input.display().to_string();
    let mut record = csv::ByteRecord::new();
    let mut row = 0u64;
    let mut one_country = contacts::OneCountry::default();
    Ok(std::iter::from_fn(move || {
        // Rows are named by their 1-based data row number, which is their row in the results file. (csv-core's
        // line numbers run one low for CRLF files, which is what Excel writes.)
        let line = row + 1;
        match reader.next(&mut record) {
            Ok(None) => None,
            Err(e) => Some(Err(Error::Data(format!("contact list {input}: {e}")))),
            Ok(Some(read)) => {
                let judged = source.judge(&record, read, region, format);
                if let Err(e) = one_country.check(&judged.verdict, line, format) {
                    return Some(Err(e));
                }
                let c = NewContact {
                    row,
                    line,
                    record: encode_record(&record),
                    tz: placed(&judged),
                    verdict: judged.verdict,
                    note: judged.note,
                };
                row += 1;
                Some(Ok(c))
            }
        }
    }))
}

/// A row's own zone: its column's, else its number's prefix's (the campaign's is applied when it is called).
pub fn placed(judged: &contacts::Judged) -> Option<(String, crate::zones::Source)> {
    use crate::zones::{self, Source};
    if let Some(tz) = &judged.tz {
        return Some((tz.clone(), Source::Column));
    }
    match &judged.verdict {
        contacts::Verdict::Call { e164, .. } => {
            zones::of_number(e164).map(|z| (zones::join(z), Source::Number))
        }
        contacts::Verdict::Invalid(_) => None,
    }
}

/// The engine's slice of the settings.
pub fn engine_settings(
    cfg: &RunConfig,
    campaign_id: String,
    clock: Clock,
    journal_path: Option<std::path::PathBuf>,
) -> engine::Settings {
    engine::Settings {
        app: cfg.app.clone(),
        campaign_id,
        firstocc: cfg.firstocc,
        rate: cfg.rate,
        lines: cfg.lines,
        poll_interval: cfg.poll_interval,
        poll_rate: cfg.poll_rate,
        poll_timeout: cfg.poll_timeout,
        keep_records: cfg.keep_records,
        request_retries: cfg.request_retries,
        drain_timeout: cfg.drain_timeout,
        max_outage: cfg.max_outage,
        request_timeout: cfg.request_timeout,
        wait_for_window: cfg.wait_for_window,
        clock,
        journal_path,
    }
}

/// The gateway client for the settings, and the simulator behind it when the gateway is `sim`.
pub async fn gateway_for(cfg: &RunConfig) -> Result<(Gateway, Option<Simulator>)> {
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
    Ok((gateway, simulator))
}

/// The rules of the settings, with the suppression lists and the ledger loaded.
pub fn rules_for(cfg: &RunConfig, ledger_must_exist: bool) -> Result<Rules> {
    let suppressed = suppress::load(&cfg.suppress, cfg.suppress_region)?;
    let ledger = match cfg.cap {
        Some((cap, per)) if !ledger_must_exist || cfg.ledger.exists() => {
            Some(Ledger::open(&cfg.ledger, cap, per)?)
        }
        _ => None,
    };
    Ok(Rules::new(
        cfg.window.clone(),
        cfg.timezone.clone().zip(cfg.timezone_name.clone()),
        suppressed,
        ledger,
    ))
}

/// A results file this list's campaign wrote, with no usable journal beside it: the journal was deleted or
/// emptied, and a new one would call everyone again and overwrite the results. Refused before anything.
fn refuse_a_lost_journal(cfg: &RunConfig, source: &Source) -> Result<()> {
    let db = cfg.state_dir.join(journal::DB_FILE);
    if journal::usable(&db) {
        return Ok(());
    }
    if !results::written_for(&cfg.output, &source.clean_headers(), source.delimiter) {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{} holds results of this list, but its journal {} is missing or empty: a new run would call everyone again. Restore the journal, or move {} away to start the campaign over",
        cfg.output.display(),
        db.display(),
        cfg.output.display()
    )))
}

/// Runs a campaign to its end (or until stopped) and writes the results file.
pub async fn run(
    cfg: RunConfig,
    signals: watch::Receiver<Stage>,
    progress: Progress,
) -> Result<Summary> {
    run_with_clock(cfg, signals, progress, Clock::System).await
}

/// [`run`] on a given clock: tests run campaigns in-process on tokio's paused clock.
pub async fn run_with_clock(
    cfg: RunConfig,
    signals: watch::Receiver<Stage>,
    progress: Progress,
    clock: Clock,
) -> Result<Summary> {
    let started = Instant::now();
    let started_at = jiff::Timestamp::now();
    // Validate the input and the output before anything else happens: no call for a list we cannot read or
    // whose results we could not write.
    let source = contacts::inspect(&cfg.input, &cfg.read_options())?;
    results::check_columns(&source)?;
    results::check_writable(&cfg.output)?;
    for note in &source.notes {
        info!("{note}");
    }
    for warning in &source.warnings {
        warn!("{warning}");
    }
    let rules = rules_for(&cfg, false)?;
    let (gateway, simulator) = gateway_for(&cfg).await?;

    refuse_a_lost_journal(&cfg, &source)?;
    let input_name = cfg.input.display().to_string();
    let binding = Binding {
        digest: &source.digest,
        input_name: &input_name,
        headers: &source.headers,
        delimiter: source.delimiter,
    };
    let (owner, opened) = journal::open(&cfg.state_dir, &binding, || judged_rows(&source, &cfg))?;
    if opened.created {
        info!(journal = %cfg.state_dir.display(), "new campaign journal");
    } else {
        info!(journal = %cfg.state_dir.display(), "resuming campaign from its journal");
    }
    if let Some(v) = opened.migrated_from {
        info!(
            from = v,
            "the journal was brought up to this version's layout"
        );
    }
    if opened.interrupted_intents > 0 {
        warn!(
            contacts = opened.interrupted_intents,
            "an earlier run stopped between deciding to call and hearing back; those contacts are marked unknown and not redialed"
        );
    }
    info!(
        app = %cfg.app,
        rate = %cfg.rate,
        lines = cfg.lines,
        poll_interval = %Dur(cfg.poll_interval),
        region = ?cfg.default_region,
        "campaign starting"
    );

    let stats = Arc::new(Stats::default());
    let to_do: u64 = owner
        .journal
        .counts()
        .await?
        .iter()
        .filter(|(s, _)| matches!(s, State::Pending | State::Dialed))
        .map(|(_, n)| n)
        .sum();
    let shown = progress::show(progress, to_do, stats.clone());
    let ended = engine::run(
        engine_settings(
            &cfg,
            owner.campaign_id.clone(),
            clock,
            Some(owner.db_path.clone()),
        ),
        rules,
        gateway,
        owner.journal.clone(),
        signals,
        stats.clone(),
    )
    .await;
    drop(shown);
    match contacts::digest(&cfg.input) {
        Ok(d) if d == source.digest => {}
        // Gone or unreadable now (deleted, or no file descriptor left): it cannot have moved a result.
        Err(_) => {}
        Ok(_) => warn!(
            input = %cfg.input.display(),
            "the contact list changed while the campaign ran; the results follow the list as it was read when the campaign started"
        ),
    }
    let campaign_id = owner.campaign_id.clone();
    // Written from the journal's own connection, after every write queued so far: the results come out even
    // when the state directory was deleted under the run. The lock is held until they are written.
    let view = results::View {
        response_keys: cfg.response_keys.clone(),
        zones: cfg.window.is_some(),
        campaign_zone: cfg.timezone_name.clone(),
    };
    let output = cfg.output.clone();
    let written = owner
        .journal
        .read(move |conn| results::write(conn, &output, &view))
        .await;
    owner.close().await;
    if let Some(sim) = simulator {
        sim.stop();
    }
    let ending = ended?;
    let counts = written?;
    Ok(Summary {
        started_at,
        finished_at: jiff::Timestamp::now(),
        campaign_id,
        input: cfg.input.clone(),
        state_dir: cfg.state_dir.clone(),
        configured_rate: cfg.rate.per_second(),
        counts,
        ending,
        elapsed: started.elapsed(),
        requests: Stats::get(&stats.requests),
        request_failures: Stats::get(&stats.request_failures),
        polls: Stats::get(&stats.polls),
        poll_errors: Stats::get(&stats.poll_errors),
        outage: std::time::Duration::from_millis(Stats::get(&stats.outage_ms)),
        output: cfg.output.clone(),
    })
}
