//! `ivr-campaign run`: validate, open the journal, run the engine, write the results, summarise.
//!
//! - `list`: the list read and judged, bound to the journal.
//! - `rolling`: a rolling export taken as the campaign's latest version (appointment reminders).
//! - `wiring`: the engine, gateways and rules built from the settings.

mod list;
mod rolling;
mod wiring;

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tracing::{info, warn};

use crate::contacts::{self, Source};
use crate::engine::{self, Clock, Stage, Stats};
use crate::error::{Error, Result};
use crate::fields::Request;
use crate::gateway::Gateway;
use crate::output::progress::{self, Progress};
use crate::output::results;
use crate::output::summary::Summary;
use crate::rules::Rules;
use crate::rules::ledger::Ledger;
use crate::rules::suppress;
use crate::settings::{GatewayTarget, RunConfig};
use crate::simulator::Simulator;
use crate::store::State;
use crate::store::journal::{self, Binding, NewContact, encode_record};
use crate::types::Dur;

pub(crate) use list::admit_fields;
use list::*;
pub use list::{judged_rows, placed, reading, request_for};
use wiring::*;
pub use wiring::{client_for, engine_settings, gateways_for, rules_for};

/// Runs a campaign to its end (or until stopped) and writes the results file.
pub async fn run(
    cfg: RunConfig,
    signals: watch::Receiver<Stage>,
    progress: Progress,
) -> Result<Summary> {
    run_with_clock(cfg, signals, progress, Clock::System).await
}

/// The campaign's steady time line for this run ([`engine::Steady`]): carried on from the last run by the
/// boot clock when both ran on one boot, so that a wall clock stepped or corrected in between moves no due
/// time; from the wall clock otherwise. A wall clock that moved against the boot clock is said once.
async fn steady_line(journal: &crate::store::Journal, clock: &Clock) -> Result<engine::Steady> {
    const KEY: &str = "steady_anchor";
    let wall = clock.now().as_millisecond();
    // A virtual clock (tests) has no machine behind it: only the simulation's boot clock goes with it.
    let boot = match clock {
        Clock::System => crate::determinism::boot_clock(),
        Clock::Virtual { .. } => crate::determinism::simulated_boot_clock(),
    };
    let stored = journal.get_meta(KEY).await?;
    let last = stored.as_deref().and_then(|s| {
        let mut it = s.split_whitespace();
        let id = it.next()?.to_string();
        let up: i64 = it.next()?.parse().ok()?;
        let line: i64 = it.next()?.parse().ok()?;
        Some((id, up, line))
    });
    let base = match (&last, &boot) {
        (Some((id, up, line)), Some((id_now, up_now))) if id == id_now && up_now >= up => {
            let carried = line.saturating_add(up_now - up);
            let moved = wall - carried;
            if moved.abs() > 60_000 {
                warn!(
                    by = %crate::types::Dur(std::time::Duration::from_millis(moved.unsigned_abs())),
                    direction = if moved > 0 { "forward" } else { "backward" },
                    "the wall clock moved since the campaign's last run, by the machine's boot clock; recall waits go by the boot clock"
                );
            }
            carried
        }
        _ => wall,
    };
    if let Some((id, up)) = boot {
        journal.set_meta(KEY, format!("{id} {up} {base}")).await?;
    }
    Ok(engine::Steady::from_ms(base))
}

/// [`run`] on a given clock: tests run campaigns in-process on tokio's paused clock.
pub async fn run_with_clock(
    cfg: RunConfig,
    signals: watch::Receiver<Stage>,
    progress: Progress,
    clock: Clock,
) -> Result<Summary> {
    run_in(cfg, signals, progress, clock, None).await
}

/// [`run_with_clock`], with the gateways answered in-process by `exchanges` (one per configured gateway, in
/// order) instead of over HTTP: the simulation tier runs whole campaigns so, with no socket.
pub async fn run_in(
    cfg: RunConfig,
    signals: watch::Receiver<Stage>,
    progress: Progress,
    clock: Clock,
    exchanges: Option<Vec<Arc<dyn crate::gateway::Exchange>>>,
) -> Result<Summary> {
    let started = Instant::now();
    // The run's clock, not the machine's: under the simulation's virtual clock the summary's times follow the
    // seed.
    let started_at = clock.now();
    // Validate the input and the output before anything else happens: no call for a list we cannot read or
    // whose results we could not write.
    let db = cfg.files.state_dir.join(journal::DB_FILE);
    let source = match contacts::inspect(&cfg.files.input, &cfg.read_options()) {
        Ok(s) => Some(s),
        // The list is gone (rotated away by a nightly wrapper, say) but its campaign's journal holds a copy of
        // every row: the campaign can be finished from that copy.
        Err(Error::NoInput(why)) if !cfg.files.input.exists() && journal::usable(&db) => {
            warn!(
                input = %cfg.files.input.display(),
                "{why}; finishing the campaign from the journal's copy of the list"
            );
            None
        }
        Err(e) => return Err(e),
    };
    if let Some(source) = &source {
        // A rolling export's results rename a clashing column instead (a practice system's `status`).
        if cfg.reminders.is_none() {
            results::check_columns(source, cfg.rules.window.is_some())?;
        }
    }
    results::check_writable(&cfg.files.output)?;
    // Held until the process ends: released by the OS however it ends.
    let _results_lock = results::lock(&cfg.files.output)?;
    for note in source.iter().flat_map(|s| &s.notes) {
        info!("{note}");
    }
    for warning in source.iter().flat_map(|s| &s.warnings) {
        warn!("{warning}");
    }
    let mut rules = rules_for(&cfg, false)?;
    let (gateways, simulators) = match exchanges {
        Some(x) if x.len() == cfg.gateways.len() => (
            cfg.gateways
                .iter()
                .zip(x)
                .map(|(g, x)| {
                    let base = match &g.target {
                        GatewayTarget::Url(u) => u.clone(),
                        GatewayTarget::Simulator(_) => {
                            reqwest::Url::parse("http://sim.invalid/")
                                .map_err(|e| Error::Internal(e.to_string()))?
                        }
                    };
                    Ok(Gateway::in_process(base, x))
                })
                .collect::<Result<Vec<_>>>()?,
            Vec::new(),
        ),
        Some(_) => {
            return Err(Error::Internal(
                "one in-process gateway is needed for each configured gateway".into(),
            ));
        }
        None => gateways_for(&cfg).await?,
    };

    refuse_a_lost_journal(&cfg)?;
    if cfg.reminders.is_some() && source.is_none() {
        return Err(Error::NoInput(format!(
            "{} is missing: a rolling export is read on every run (its rows say which appointments are still on)",
            cfg.files.input.display()
        )));
    }
    // A rolling export is bound by its key column, not its bytes: each run brings a new version of it.
    let rolling_digest = cfg
        .reminders
        .as_ref()
        .map(|r| crate::store::touches::binding_digest(&r.key_column));
    let input_name = cfg.files.input.display().to_string();
    let stored = match &source {
        Some(_) => None,
        None => Some(journal::stored_binding(&db)?),
    };
    let read_as = match (&source, &stored) {
        (Some(source), _) => reading(source, &cfg),
        (None, Some(b)) => b.reading.clone().unwrap_or_default(),
        (None, None) => String::new(),
    };
    let request = match (&source, &stored) {
        (Some(source), _) => request_for(&cfg, &source.clean_headers())?,
        (None, Some(b)) => request_for(&cfg, &b.headers)?,
        (None, None) => return Err(Error::Internal("no list and no journal".into())),
    };
    let binding = match (&source, &stored) {
        (Some(source), _) => Binding {
            digest: rolling_digest.as_deref().unwrap_or(&source.digest),
            input_name: &input_name,
            headers: &source.headers,
            delimiter: source.delimiter,
            reading: &read_as,
        },
        (None, Some(b)) => Binding {
            digest: &b.digest,
            input_name: &input_name,
            headers: &b.headers,
            delimiter: b.delimiter,
            reading: &read_as,
        },
        (None, None) => return Err(Error::Internal("no list and no journal".into())),
    };
    let (owner, opened) = journal::open(&cfg.files.state_dir, &binding, || match &source {
        // A rolling export's rows are taken below, as a version, once the journal is open.
        Some(_) if cfg.reminders.is_some() => {
            Ok(Box::new(std::iter::empty()) as Box<dyn Iterator<Item = _>>)
        }
        Some(source) => {
            judged_rows(source, &cfg, &request).map(|i| Box::new(i) as Box<dyn Iterator<Item = _>>)
        }
        None => Err(Error::Internal(
            "the journal has to be made from the list, which is gone".into(),
        )),
    })?;
    let checked = async {
        if let (Some(source), Some(reminders)) = (&source, &cfg.reminders) {
            // A rolling export is read anew on every run, in whatever encoding and delimiter it was saved
            // with; which number each row is must not change under the campaign.
            if let Some(was) = opened.reading.as_deref() {
                refuse_another_identity(
                    &cfg,
                    &reading_map(was),
                    &reading_map(&read_as),
                    &["phone-column", "default-region"],
                )?;
            }
            let taken =
                rolling::take_version(&owner.journal, &cfg, &request, source, reminders, &clock)
                    .await?;
            settle_unlisted_gateways(&owner.journal, &cfg).await?;
            return Ok(taken.no_time_read());
        } else if let (Some(source), Some(was)) = (&source, opened.reading.as_deref())
            && was != read_as
        {
            reread(&owner.journal, &cfg, &request, source, was, &read_as).await?;
        }
        settle_unlisted_gateways(&owner.journal, &cfg).await?;
        Ok(None)
    }
    .await;
    let input_error = match checked {
        Ok(no_time_read) => no_time_read,
        Err(e) => {
            // Refused: the journal is closed (and its lock let go) before saying so.
            owner.close().await;
            return Err(e);
        }
    };
    // `input_error`: every row stays `invalid` with its reason and the results are written as always; the
    // summary's exit code (65) and its line say the list was unusable.
    // The results file's layout; written at once for a new campaign, so that from its first minute the
    // campaign leaves results beside its journal (and a journal deleted later is noticed, not recreated).
    let view = results::View {
        response_keys: cfg.call.response_keys.clone(),
        zones: cfg.rules.window.is_some(),
        campaign_zone: cfg.rules.timezone_name.clone(),
    };
    // For `redial-unknown`, which says when a redial goes past it.
    owner
        .journal
        .set_meta(
            journal::MAX_ATTEMPTS_META,
            cfg.recall
                .as_ref()
                .map(|r| r.max_attempts.to_string())
                .unwrap_or_default(),
        )
        .await?;
    // For the report: the zone rows without their own were judged in, this run.
    owner
        .journal
        .set_meta(
            "campaign_zone",
            cfg.rules.timezone_name.clone().unwrap_or_default(),
        )
        .await?;
    note_what_people_hear(&owner.journal, &cfg, clock.now().as_millisecond()).await?;
    if opened.created {
        let (output, first) = (cfg.files.output.clone(), view.clone());
        owner
            .journal
            .read(move |conn| results::write(conn, &output, &first))
            .await?;
        info!(journal = %cfg.files.state_dir.display(), "new campaign journal");
    } else {
        info!(journal = %cfg.files.state_dir.display(), "resuming campaign from its journal");
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
        app = %cfg.call.app,
        rate = %cfg.pacing.rate,
        gateways = %cfg
            .gateways
            .iter()
            .map(|g| format!("{} ({} lines)", g.key, g.lines))
            .collect::<Vec<_>>()
            .join(", "),
        poll_interval = %Dur(cfg.pacing.poll_interval),
        region = %cfg.list.default_region,
        "campaign starting"
    );

    let min_notice_ms = cfg
        .reminders
        .as_ref()
        .and_then(|r| r.appointments.as_ref())
        .map(|a| a.timing.min_notice.as_millis() as i64);
    rules.touch_ends = owner
        .journal
        .read(move |c| crate::store::touches::open_ends(c, min_notice_ms))
        .await?;
    let stats = Arc::new(Stats::default());
    let to_do: u64 = owner
        .journal
        .counts()
        .await?
        .iter()
        .filter(|(s, _)| matches!(s, State::Pending | State::Dialed))
        .map(|(_, n)| n)
        .sum();
    let steady = steady_line(&owner.journal, &clock).await?;
    let settings_clock = clock.clone();
    let mut settings = engine_settings(
        &cfg,
        owner.campaign_id.clone(),
        clock,
        Some(owner.db_path.clone()),
        request,
    );
    settings.steady = steady;
    settings.written_floor_ms = opened.latest_ms;
    let shown = progress::show(progress, to_do, stats.clone());
    let ended = engine::run(
        settings,
        rules,
        gateways,
        owner.journal.clone(),
        signals,
        stats.clone(),
    )
    .await;
    drop(shown);
    if let Some(reminders) = cfg.reminders.clone() {
        let now_ms = settings_clock.now().as_millisecond();
        if let Err(e) = owner
            .journal
            .read(move |conn| crate::store::touches::after_run(conn, &reminders, now_ms))
            .await
        {
            warn!(error = %e, "could not end the touches of appointments confirmed in this run; the next run does");
        }
    }
    match (contacts::digest(&cfg.files.input), &source) {
        (Ok(d), Some(s)) if d != s.digest => warn!(
            input = %cfg.files.input.display(),
            "the contact list changed while the campaign ran; the results follow the list as it was read when the campaign started"
        ),
        // Unchanged, or gone or unreadable now (deleted, no file descriptor left): no result has moved.
        _ => {}
    }
    let by_gateway: Vec<engine::GatewayStats> = stats
        .by_gateway
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    let outages = by_gateway
        .iter()
        .map(|g| (g.key.clone(), g.outage_ms))
        .collect();
    if let Err(e) = owner.journal.add_outages(outages).await {
        warn!(error = %e, "could not record the gateways' outage time");
    }
    let shares = owner
        .journal
        .read(journal::gateways_on)
        .await
        .unwrap_or_default();
    let gateways = by_gateway
        .into_iter()
        .map(|g| crate::output::summary::GatewaySummary {
            share: shares
                .iter()
                .find(|s| s.key == g.key)
                .cloned()
                .unwrap_or_default(),
            key: g.key,
            lines: g.lines,
            requests: g.requests,
            outage: std::time::Duration::from_millis(g.outage_ms),
        })
        .collect();
    let campaign_id = owner.campaign_id.clone();
    // Written from the journal's own connection, after every write queued so far: the results come out even
    // when the state directory was deleted under the run. The lock is held until they are written.
    let output = cfg.files.output.clone();
    let tally_view = view.clone();
    let written = owner
        .journal
        .read(move |conn| results::write(conn, &output, &view))
        .await;
    // A results file that cannot be written (its disk full, its directory gone) still leaves the summary
    // and the metrics to write, on their own disks: they say how the rows stand, from the journal.
    let (written, results_error) = match written {
        Err(Error::Output(why)) => {
            match owner
                .journal
                .read(move |conn| results::tally(conn, &tally_view))
                .await
            {
                Ok(tally) => (Ok(tally), Some(why)),
                Err(_) => (Err(Error::Output(why)), None),
            }
        }
        other => (other, None),
    };
    owner.close().await;
    for sim in simulators {
        sim.stop();
    }
    let ending = ended?;
    let counts = written?;
    let open = crate::output::tally::open_and_attention(
        &counts.counts,
        counts.recalls_waiting + counts.touches_due,
    )
    .0;
    let ending = ending.settled(open > 0);
    Ok(Summary {
        started_at,
        finished_at: settings_clock.now(),
        campaign_id,
        input: cfg.files.input.clone(),
        state_dir: cfg.files.state_dir.clone(),
        configured_rate: cfg.pacing.rate.per_second(),
        counts: counts.counts,
        recalls_waiting: counts.recalls_waiting,
        next_recall_ms: counts.next_recall_ms,
        touches_waiting: counts.touches_waiting,
        touches_due: counts.touches_due,
        next_touch_ms: counts.next_touch_ms,
        ending,
        elapsed: started.elapsed(),
        requests: Stats::get(&stats.requests),
        request_failures: Stats::get(&stats.request_failures),
        requests_unsent: Stats::get(&stats.requests_unsent),
        polls: Stats::get(&stats.polls),
        poll_errors: Stats::get(&stats.poll_errors),
        outage: std::time::Duration::from_millis(Stats::get(&stats.outage_ms)),
        output: cfg.files.output.clone(),
        gateways,
        results_error,
        input_error,
    })
}
