//! `ivr-campaign run`: validate, open the journal, run the engine, write the results, summarise.

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

/// Reads every row and judges it, for the journal's creation.
pub fn judged_rows(
    source: &Source,
    cfg: &RunConfig,
    request: &Arc<Request>,
) -> Result<impl Iterator<Item = Result<NewContact>> + use<>> {
    let mut reader = source.reader()?;
    let request = request.clone();
    let (region, format) = (cfg.list.default_region, cfg.call.number_format);
    let source = source.clone();
    let input = cfg.files.input.display().to_string();
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
            Ok(Some(contacts::Row::Runaway { from, lines })) => {
                Some(Err(source.runaway(line, from, lines)))
            }
            Ok(Some(read)) => {
                let mut judged = source.judge(&record, read, region, format);
                if let Err(e) = one_country.check(&judged.verdict, line, format) {
                    return Some(Err(e));
                }
                admit_fields(&mut judged, &request, &record);
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

/// Takes the export as the rolling campaign's latest version and moves its touches along by the clock.
async fn take_version(
    journal: &crate::store::Journal,
    cfg: &RunConfig,
    request: &Arc<Request>,
    source: &Source,
    reminders: &crate::settings::reminders::Reminders,
    clock: &Clock,
) -> Result<()> {
    use crate::store::touches;
    let rows = touches::listed_rows(
        judged_rows(source, cfg, request)?,
        &source.headers,
        reminders,
    )?;
    let (reminders, headers) = (reminders.clone(), source.headers.clone());
    let now_ms = clock.now().as_millisecond();
    let taken = journal
        .read(move |conn| {
            touches::check_headers(conn, &headers)?;
            touches::take_version(conn, rows, &reminders, now_ms)
        })
        .await?;
    info!(
        new = taken.new_keys,
        rescheduled = taken.rescheduled,
        withdrawn = taken.withdrawn,
        invalid = taken.invalid,
        due = taken.due,
        lapsed = taken.lapsed,
        stopped = taken.stopped,
        "took the export as its latest version"
    );
    Ok(())
}

/// A callable row whose call fields cannot be made as configured (a required field empty, a line break in a
/// value, a caller ID that is not a number) is `invalid`, with the reason.
pub(crate) fn admit_fields(
    judged: &mut contacts::Judged,
    request: &Request,
    record: &csv::ByteRecord,
) {
    if matches!(judged.verdict, contacts::Verdict::Call { .. })
        && let Err(reason) = request.extras(Some(record))
    {
        judged.verdict = contacts::Verdict::Invalid(reason);
    }
}

/// The call fields bound to the list's columns (the journal's copy of the header row when the list is gone).
pub fn request_for(cfg: &RunConfig, headers: &csv::ByteRecord) -> Result<Arc<Request>> {
    Request::bind(&cfg.call.request, headers)
        .map(Arc::new)
        .map_err(|e| Error::Data(format!("contact list {}: {e}", cfg.files.input.display())))
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

/// The settings that decide what a row of the list means, as the journal records them: `key=value` lines.
pub fn reading(source: &Source, cfg: &RunConfig) -> String {
    let header = |i: usize| {
        source
            .clean_headers()
            .get(i)
            .map(|h| String::from_utf8_lossy(h).trim().to_string())
            .unwrap_or_default()
    };
    [
        ("phone-column", header(source.phone_index)),
        ("default-region", cfg.list.default_region.to_string()),
        ("encoding", format!("{:?}", source.encoding)),
        ("delimiter", (source.delimiter as char).to_string()),
        (
            "timezone-column",
            source.timezone_index.map_or("(none)".to_string(), header),
        ),
        ("number-format", format!("{:?}", cfg.call.number_format)),
        // Newer number data may read a cell as another number: the contacts not yet called are read again.
        ("number-data", contacts::NUMBER_DATA_RELEASE.to_string()),
        ("fields", cfg.call.request.reading()),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={v}"))
    .collect::<Vec<_>>()
    .join("\n")
}

/// Settings that say how rows are *identified* (which number a row is) cannot change under a campaign: its
/// duplicates and its calls were judged by them. Those that say how a row not yet called is *treated* (its
/// zone, how its number is sent) can: the contacts not yet called are read again from the journal's copy.
const FIXED_READING: [&str; 4] = ["phone-column", "default-region", "encoding", "delimiter"];

async fn reread(
    journal: &crate::store::Journal,
    cfg: &RunConfig,
    request: &Request,
    source: &Source,
    was: &str,
    now: &str,
) -> Result<()> {
    let parse = |text: &str| -> std::collections::BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let (was_map, now_map) = (parse(was), parse(now));
    let changed: Vec<String> = now_map
        .iter()
        .filter(|(k, v)| was_map.get(*k).is_none_or(|w| w != *v))
        .map(|(k, v)| {
            let was = was_map.get(k).map_or("(not recorded)", String::as_str);
            format!("{k} {was} → {v}")
        })
        .collect();
    // A setting the journal does not record (written by an older release) is not a change of it.
    if let Some(fixed) =
        FIXED_READING
            .iter()
            .find_map(|k| match (was_map.get(*k), now_map.get(*k)) {
                (Some(w), Some(n)) if w != n => Some(format!("{k} {w} → {n}")),
                _ => None,
            })
    {
        return Err(Error::Config(format!(
            "the journal in {} read the list another way ({fixed}): the contacts were told apart that way, so it cannot change under the campaign. Finish it with the settings it started with; another --output starts a new campaign, which calls everyone on the list again",
            cfg.files.state_dir.display()
        )));
    }
    // A zone column the campaign started with and a rerun leaves out is almost always a flag forgotten in a
    // cron line: without it, everyone not yet called would be placed by their number instead of their row.
    if let (Some(was), Some(now)) = (
        was_map.get("timezone-column"),
        now_map.get("timezone-column"),
    ) && was != "(none)"
        && now == "(none)"
    {
        return Err(Error::Config(format!(
            "the campaign in {} places its contacts by the time zone column {was:?}, and this run gives none: give --timezone-column {was} again (without it the contacts not yet called would be placed by their numbers)",
            cfg.files.state_dir.display()
        )));
    }
    // First every row is judged, and nothing written: a list the new settings cannot take (numbers of two
    // countries sent without their country code) is refused as a first run would refuse it.
    let mut one_country = contacts::OneCountry::default();
    let mut after = None;
    loop {
        let batch = journal.pending_records(after, 1024).await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.0);
        for (_, line, record, _, _) in batch {
            let Some(rec) = journal::decode_record(&record) else {
                continue;
            };
            let judged = source.judge(
                &rec,
                contacts::Row::Whole,
                cfg.list.default_region,
                cfg.call.number_format,
            );
            one_country.check(&judged.verdict, line, cfg.call.number_format)?;
        }
    }
    let mut after = None;
    let mut reread = 0u64;
    let mut unplaced = 0u64;
    loop {
        let batch = journal.pending_records(after, 1024).await?;
        let Some(last) = batch.last() else { break };
        after = Some(last.0);
        for (row, _line, record, last_outcome, was_e164) in batch {
            let Some(rec) = journal::decode_record(&record) else {
                continue;
            };
            let mut judged = source.judge(
                &rec,
                contacts::Row::Whole,
                cfg.list.default_region,
                cfg.call.number_format,
            );
            admit_fields(&mut judged, request, &rec);
            // Newer number data can read a cell as another number (phonenumber 0.3 cut a leading 1 or 0 from
            // foreign numbers). Its duplicates, opt-outs and cap were judged by the old one, so it is not
            // called under either: the operator checks it and calls it in a new campaign.
            if let contacts::Verdict::Call { e164, .. } = &judged.verdict
                && *e164 != was_e164
            {
                judged.verdict = contacts::Verdict::Invalid(format!(
                    "read as {was_e164} when the campaign started and as {e164} now (libphonenumber {}): check the number, and call it in a new campaign if it is right",
                    contacts::NUMBER_DATA_RELEASE
                ));
            }
            match &judged.verdict {
                contacts::Verdict::Call { dial, .. } => {
                    journal.write_later(crate::store::Op::Reread {
                        row,
                        dial: dial.clone(),
                        tz: placed(&judged),
                    });
                    reread += 1;
                }
                contacts::Verdict::Invalid(reason) => {
                    let event = crate::store::Event::Unplace {
                        reason: reason.clone(),
                    }
                    .refusing(last_outcome);
                    if let Err(e) = journal.apply(row, event).await {
                        return Err(Error::Internal(e.to_string()));
                    }
                    unplaced += 1;
                }
            }
        }
    }
    journal.set_meta("reading", now.to_string()).await?;
    info!(
        changed = %changed.join(", "),
        contacts = reread,
        now_invalid = unplaced,
        "the list is read another way than when the campaign started; the contacts not yet called were read again"
    );
    Ok(())
}

/// Logs what people hear from this run's calls when it differs from the campaign's last run (or it is the
/// first), warning about a change: the people already called heard something else.
async fn note_what_people_hear(
    journal: &crate::store::Journal,
    cfg: &RunConfig,
    now_ms: i64,
) -> Result<()> {
    use crate::store::heard::{self, Heard};
    let mut log = journal.read(|conn| Ok(heard::log(conn))).await?;
    let now = Heard::of(cfg, now_ms);
    if let Some(was) = log.last() {
        let changes = now.changes_since(was);
        if changes.is_empty() {
            return Ok(());
        }
        let called: u64 = journal
            .read(|conn| {
                Ok(conn.query_row(
                    "SELECT (SELECT COUNT(*) FROM calls) + (SELECT COUNT(*) FROM contacts WHERE state IN ('intent', 'dialed'))",
                    [],
                    |r| r.get::<_, i64>(0),
                )?)
            })
            .await?
            .max(0) as u64;
        warn!(
            changed = %changes.join("; "),
            calls_before = called,
            "what people hear changed since this campaign's last run: the {called} calls made so far used the earlier settings, the calls from now on use these (the results' history names each call's app); use another --output for a new campaign"
        );
    }
    log.push(now);
    let text = serde_json::to_string(&log).map_err(|e| Error::Internal(e.to_string()))?;
    journal.set_meta("heard", text).await
}

/// The engine's slice of the settings.
pub fn engine_settings(
    cfg: &RunConfig,
    campaign_id: String,
    clock: Clock,
    journal_path: Option<std::path::PathBuf>,
    request: Arc<Request>,
) -> engine::Settings {
    engine::Settings {
        app: cfg.call.app.clone(),
        campaign_id,
        firstocc: cfg.call.firstocc,
        rate: cfg.pacing.rate,
        gateways: cfg
            .gateways
            .iter()
            .map(|g| engine::GatewayPlan {
                key: g.key.clone(),
                lines: g.lines,
                rate: g.rate.unwrap_or(crate::types::Rate::Unlimited),
            })
            .collect(),
        poll_interval: cfg.pacing.poll_interval,
        poll_rate: cfg.pacing.poll_rate,
        poll_timeout: cfg.pacing.poll_timeout,
        keep_records: cfg.call.keep_records,
        request_retries: cfg.pacing.request_retries,
        drain_timeout: cfg.pacing.drain_timeout,
        max_outage: cfg.pacing.max_outage,
        request_timeout: cfg.pacing.request_timeout,
        wait_for_window: cfg.rules.wait_for_window,
        steady: engine::Steady::from_wall(&clock),
        written_floor_ms: i64::MIN,
        clock,
        journal_path,
        recall: cfg.recall.clone(),
        request,
    }
}

/// The clients of the campaign's gateways, and the simulators behind those that are `sim`.
pub async fn gateways_for(cfg: &RunConfig) -> Result<(Vec<Gateway>, Vec<Simulator>)> {
    let mut clients = Vec::with_capacity(cfg.gateways.len());
    let mut simulators = Vec::new();
    let mut reached: Vec<(String, String, Vec<std::net::SocketAddr>)> = Vec::new();
    for g in &cfg.gateways {
        let base = match &g.target {
            GatewayTarget::Simulator(settings) => {
                let sim = Simulator::start_with("127.0.0.1:0", (**settings).clone())
                    .await
                    .map_err(Error::Config)?;
                let url =
                    reqwest::Url::parse(&sim.url()).map_err(|e| Error::Internal(e.to_string()))?;
                info!(gateway = %g.key, url = %url, "using the built-in gateway simulator");
                simulators.push(sim);
                url
            }
            GatewayTarget::Url(u) => {
                let addrs = resolve(u).await;
                if let Some(other) = reached
                    .iter()
                    .find(|(_, path, a)| *path == u.path() && a.iter().any(|x| addrs.contains(x)))
                {
                    // Not refused: two names on one address may be two virtual hosts behind one proxy.
                    warn!(
                        "gateways {} and {} reach the same address and path; if they are one gateway, list it once (its lines are counted for each listing)",
                        other.0, g.key
                    );
                }
                reached.push((g.key.clone(), u.path().to_string(), addrs));
                u.clone()
            }
        };
        clients.push(client_for(cfg, g, base)?);
    }
    Ok((clients, simulators))
}

/// The client for one gateway, its CA certificate read and checked (the dry run builds one too, so a
/// missing certificate fails there first).
pub fn client_for(
    cfg: &RunConfig,
    g: &crate::settings::GatewaySpec,
    base: reqwest::Url,
) -> Result<Gateway> {
    let ca_pem = match &g.ca_cert {
        Some(p) => Some(std::fs::read(p).map_err(|e| {
            Error::NoInput(format!("cannot read CA certificate {}: {e}", p.display()))
        })?),
        None => None,
    };
    Gateway::new(
        base,
        cfg.pacing.request_timeout,
        g.auth.clone(),
        ca_pem.as_deref(),
    )
    .map_err(Error::Config)
}

/// The addresses a gateway URL reaches, saying plainly, once at the start, when its name does not resolve:
/// otherwise the first sign is a stream of generic "not reached" warnings until `max-outage`. Only a warning:
/// the name may come back (a DNS server restarting), and the breaker then carries on as for any outage.
async fn resolve(url: &reqwest::Url) -> Vec<std::net::SocketAddr> {
    let port = url.port_or_known_default().unwrap_or(80);
    let Some(host) = url.domain() else {
        let ip = url
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
            .and_then(|h| h.parse::<std::net::IpAddr>().ok());
        return ip
            .map(|ip| std::net::SocketAddr::new(ip, port))
            .into_iter()
            .collect();
    };
    // Through a proxy the proxy resolves the name; a local lookup says nothing.
    let proxied = ["http_proxy", "https_proxy", "all_proxy"].iter().any(|v| {
        std::env::var_os(v).is_some() || std::env::var_os(v.to_ascii_uppercase()).is_some()
    });
    if proxied {
        return Vec::new();
    }
    let lookup = tokio::net::lookup_host((host, port));
    let why = match tokio::time::timeout(std::time::Duration::from_secs(5), lookup).await {
        Ok(Ok(addrs)) => {
            let addrs: Vec<std::net::SocketAddr> = addrs.map(unmapped).collect();
            if !addrs.is_empty() {
                return addrs;
            }
            "no address".to_string()
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer from the resolver in 5s".to_string(),
    };
    warn!(
        gateway = %url,
        "cannot resolve gateway host {host} ({why}); call requests wait for it, up to max-outage"
    );
    Vec::new()
}

/// `[::ffff:127.0.0.1]:80` as `127.0.0.1:80`, so one address compares equal however it was reached.
fn unmapped(a: std::net::SocketAddr) -> std::net::SocketAddr {
    match a.ip() {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, |v4| {
            std::net::SocketAddr::new(std::net::IpAddr::V4(v4), a.port())
        }),
        _ => a,
    }
}

/// Calls open on a gateway the campaign no longer lists are refused, unless the operator forgets that
/// gateway: asking another gateway about them is meaningless, and calling them again could call someone twice.
async fn settle_unlisted_gateways(journal: &crate::store::Journal, cfg: &RunConfig) -> Result<()> {
    let listed = |k: &str| cfg.gateways.iter().any(|g| g.key == k);
    if let Some(k) = cfg.forget_gateways.iter().find(|k| listed(k)) {
        return Err(Error::Usage(format!(
            "--forget-gateway {k}: this run lists that gateway, and its calls are polled there; forget only a gateway you no longer list"
        )));
    }
    let mut forgotten_keys: Vec<String> = Vec::new();
    for (gateway, n) in journal.open_by_gateway().await? {
        // Journals from before gateways were recorded had one: the first listed now.
        let Some(key) = gateway else { continue };
        if listed(&key) {
            continue;
        }
        if cfg.forget_gateways.contains(&key) {
            forgotten_keys.push(key.clone());
            let forgotten = journal.forget_gateway(key.clone()).await?;
            warn!(
                gateway = %key,
                contacts = forgotten,
                "calls open on a gateway no longer listed were written off as unknown (--forget-gateway); check that gateway before calling any of them again"
            );
            continue;
        }
        return Err(Error::Config(format!(
            "{n} calls are still open on gateway {key}, which this run does not list: list it again to finish them, or give --forget-gateway {key} to write them off as unknown (check that gateway first: they may have been called)"
        )));
    }
    for k in cfg
        .forget_gateways
        .iter()
        .filter(|k| !forgotten_keys.contains(k))
    {
        warn!(gateway = %k, "--forget-gateway {k}: this journal has no open calls on it; nothing was forgotten (check the spelling)");
    }
    Ok(())
}

/// The rules of the settings, with the suppression lists and the ledger loaded.
pub fn rules_for(cfg: &RunConfig, ledger_must_exist: bool) -> Result<Rules> {
    let suppressed = suppress::load(&cfg.rules.suppress, cfg.rules.suppress_region)?;
    let ledger = match cfg.rules.cap {
        Some((cap, per)) if !ledger_must_exist || cfg.files.ledger.exists() => {
            Some(Ledger::open(&cfg.files.ledger, cap, per)?)
        }
        _ => None,
    };
    Ok(Rules::new(
        cfg.rules.window.clone(),
        cfg.rules
            .timezone
            .clone()
            .zip(cfg.rules.timezone_name.clone()),
        suppressed,
        ledger,
    ))
}

/// A results file with no usable journal beside it: the journal was deleted or emptied, and a new one would
/// call everyone again and overwrite the results. Refused before anything, whatever the file looks like now: a
/// spreadsheet that re-saved it (another delimiter, a renamed column, another encoding) changed its bytes, not
/// the calls it records. Moving the file away (or another `--output`) is how an operator starts over.
fn refuse_a_lost_journal(cfg: &RunConfig) -> Result<()> {
    let db = cfg.files.state_dir.join(journal::DB_FILE);
    if journal::usable(&db) {
        return Ok(());
    }
    let holds_something =
        std::fs::metadata(&cfg.files.output).is_ok_and(|m| m.is_file() && m.len() > 0);
    if !holds_something {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{} exists (results of an earlier run, perhaps re-saved), but its journal {} is missing or empty: a new run would call everyone again. Restore the journal, or move {} away to start the campaign over",
        cfg.files.output.display(),
        db.display(),
        cfg.files.output.display()
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
    let started_at = jiff::Timestamp::now();
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
        results::check_columns(source, cfg.rules.window.is_some())?;
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
            take_version(&owner.journal, &cfg, &request, source, reminders, &clock).await?;
        } else if let (Some(source), Some(was)) = (&source, opened.reading.as_deref())
            && was != read_as
        {
            reread(&owner.journal, &cfg, &request, source, was, &read_as).await?;
        }
        settle_unlisted_gateways(&owner.journal, &cfg).await
    }
    .await;
    if let Err(e) = checked {
        // Refused: the journal is closed (and its lock let go) before saying so.
        owner.close().await;
        return Err(e);
    }
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

    rules.touch_ends = owner
        .journal
        .read(crate::store::touches::open_ends)
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
    Ok(Summary {
        started_at,
        finished_at: jiff::Timestamp::now(),
        campaign_id,
        input: cfg.files.input.clone(),
        state_dir: cfg.files.state_dir.clone(),
        configured_rate: cfg.pacing.rate.per_second(),
        counts: counts.counts,
        recalls_waiting: counts.recalls_waiting,
        next_recall_ms: counts.next_recall_ms,
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
    })
}
