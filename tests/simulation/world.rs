//! One seed's world: the list, the settings, the gateways, the faults, the crashes and the clock steps, and the
//! processes that run the campaign until it is done.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use ivr_campaign::cli::RunArgs;
use ivr_campaign::commands::run::run_in;
use ivr_campaign::determinism::{self, Point};
use ivr_campaign::engine::{Clock, Stage};
use ivr_campaign::gateway::Exchange;
use ivr_campaign::output::progress::Progress;
use ivr_campaign::settings::RunConfig;
use ivr_campaign::simulator::model::{
    Faults, Model, ModelSettings, Plan, PlannedAttempt, SimGateway,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::check::{self, Expect};
use crate::rolling::Rolling;

/// Area codes and the zones libphonenumber's map gives them (907: two zones, so both must be open).
pub const AREAS: [(&str, &[&str]); 7] = [
    ("212", &["America/New_York"]),
    ("312", &["America/Chicago"]),
    ("303", &["America/Denver"]),
    ("213", &["America/Los_Angeles"]),
    ("808", &["Pacific/Honolulu"]),
    ("602", &["America/Phoenix"]),
    ("907", &["America/Adak", "America/Anchorage"]),
];

/// One row of the list as the harness wrote it, and what the runner must make of it.
#[derive(Debug, Clone)]
pub struct Person {
    pub line: u64,
    /// The number in E.164, if the cell holds a valid one.
    pub e164: Option<String>,
    pub zones: Vec<&'static str>,
}

/// What a seed's run came to.
pub struct Outcome {
    pub crashes: u64,
    pub faults: u64,
    pub violation: Option<String>,
    /// A digest of everything the gateways saw and of the results: the same seed gives the same digest.
    pub digest: u64,
}

/// A crash armed for one process.
#[derive(Debug, Clone, Copy)]
enum Crash {
    Journal(Point, u64),
    /// At the n-th call request from now, before (false) or after (true) the gateway takes it.
    Call(u64, bool),
}

pub fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn scratch_dir() -> tempfile::TempDir {
    // Journals on tmpfs where there is one: an fsync there costs nothing, and the seeds go ten times faster.
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().expect("a temporary directory")
}

fn plan(rng: &mut StdRng) -> Plan {
    let hold = |rng: &mut StdRng| Duration::from_secs(rng.random_range(3..90));
    let made = |rng: &mut StdRng| PlannedAttempt {
        status: "made".into(),
        notes: String::new(),
        responses: pick(
            rng,
            &["", "Confirm=1", "Confirm=2", "Confirm=1|Time=morning"],
        )
        .to_string(),
        hold: hold(rng),
    };
    let failed = |rng: &mut StdRng| PlannedAttempt {
        status: "failed".into(),
        notes: pick(rng, &["busy", "no answer", "Line Error"]).to_string(),
        responses: String::new(),
        hold: Duration::from_secs(rng.random_range(1..30)),
    };
    let retry = |rng: &mut StdRng| PlannedAttempt {
        status: "retry".into(),
        notes: "No answer. Try in 1 minute ".into(),
        responses: String::new(),
        hold: Duration::from_secs(rng.random_range(1..30)),
    };
    let attempts = match rng.random_range(0..10) {
        0..=4 => vec![made(rng)],
        5 | 6 => vec![failed(rng)],
        7 => vec![retry(rng), made(rng)],
        8 => vec![retry(rng), retry(rng), failed(rng)],
        _ => vec![retry(rng), retry(rng), retry(rng), retry(rng), made(rng)],
    };
    Plan { attempts }
}

/// A fixed list: valid numbers in several forms, a few cells that are not numbers, and people listed twice
/// under another spelling. Returns the people and the list's path.
fn draw_list(rng: &mut StdRng, dir: &Path) -> (Vec<Person>, std::path::PathBuf) {
    let n = rng.random_range(3..=30usize);
    let mut people = Vec::new();
    let mut csv = String::from("id,name,phone\n");
    let mut used: Vec<(String, &'static [&'static str])> = Vec::new();
    for i in 0..n {
        let line = i as u64 + 1;
        let roll = rng.random_range(0..100);
        let (cell, e164, zones): (String, Option<String>, Vec<&'static str>) = if roll < 5 {
            (
                pick(rng, &["12345", "call me", ""]).to_string(),
                None,
                vec![],
            )
        } else if roll < 15 && !used.is_empty() {
            // The same person written another way: the runner must call them once.
            let (e, z) = used[rng.random_range(0..used.len())].clone();
            let national = &e[2..];
            (
                format!(
                    "({}) {}-{}",
                    &national[..3],
                    &national[3..6],
                    &national[6..]
                ),
                Some(e),
                z.to_vec(),
            )
        } else {
            let (area, zones) = AREAS[rng.random_range(0..AREAS.len())];
            let sub = 100 + i;
            let e = format!("+1{area}555{sub:04}");
            used.push((e.clone(), zones));
            let cell = match rng.random_range(0..3) {
                0 => format!("{area}-555-{sub:04}"),
                1 => format!("({area}) 555-{sub:04}"),
                _ => format!("+1 {area} 555 {sub:04}"),
            };
            (cell, Some(e), zones.to_vec())
        };
        csv.push_str(&format!("{line},Person {line},\"{cell}\"\n"));
        people.push(Person { line, e164, zones });
    }
    let input = dir.join("contacts.csv");
    std::fs::write(&input, &csv).expect("write the list");

    (people, input)
}

/// Processes a seed may start, and the first that may not crash.
const PROCESSES: u32 = 10;
const LAST_CRASH: u32 = 7;
/// Simulated time one process may run: a campaign of 30 rows, with recalls, outages and windows, ends far
/// sooner; one still running then is stuck.
const PROCESS_BUDGET: Duration = Duration::from_secs(3 * 24 * 3600);

pub fn run_seed(seed: u64, verbose: bool) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = scratch_dir();
    let say = |s: String| {
        if verbose {
            eprintln!("[seed {seed}] {s}");
        }
    };

    // A fixed list, or a practice system's export that changes between runs.
    let rolling_mode = rng.random_bool(0.4);
    let (people, input) = if rolling_mode {
        (Vec::new(), dir.path().join("export.csv"))
    } else {
        draw_list(&mut rng, dir.path())
    };

    // The settings.
    let gateways_n = if rng.random_bool(0.25) { 2 } else { 1 };
    let lines = rng.random_range(1..=6u32);
    let firstocc = *pick(&mut rng, &[10u32, 20, 30]);
    let window = rng
        .random_bool(0.6)
        .then(|| pick(&mut rng, &["08:00-21:00", "09:00-17:00", "10:00-20:00"]).to_string());
    let recall = rng.random_bool(0.5);
    let max_attempts = rng.random_range(2..=3u32);
    let recall_on: Vec<String> = ["failed", "unresolved", "no-response"]
        .iter()
        .filter(|_| rng.random_bool(0.6))
        .map(|s| s.to_string())
        .collect();
    let recall_unless = (recall && rng.random_bool(0.4)).then(|| "Confirm=1".to_string());
    // The cap counts calls per number, across a family's appointments and touches: fixed lists only.
    let cap = (!rolling_mode && rng.random_bool(0.3)).then(|| rng.random_range(1..=2u32));
    let suppress_later = rng.random_bool(0.3);
    let rate = pick(&mut rng, &["unlimited", "5/s", "1/s", "30/m"]).to_string();
    let poll_interval = pick(&mut rng, &["1s", "2s", "5s"]).to_string();
    let steps_on = rng.random_bool(0.25);

    let urls: Vec<String> = (0..gateways_n)
        .map(|g| format!("http://127.0.0.{}:8155", g + 1))
        .collect();
    let mut args = RunArgs {
        input: Some(input.clone()),
        output: Some(dir.path().join("results.csv")),
        gateway: urls.clone(),
        app: Some("Reminder".into()),
        lines: Some(lines.to_string()),
        firstocc: Some(firstocc.to_string()),
        poll_interval: Some(poll_interval.clone()),
        poll_rate: Some("unlimited".into()),
        rate: Some(rate.clone()),
        request_timeout: Some("10s".into()),
        ledger: Some(dir.path().join("ledger.sqlite")),
        ..RunArgs::default()
    };
    if let Some(w) = &window {
        args.window = Some(w.clone());
        args.timezone = Some("America/New_York".into());
        args.call_length = Some("5m".into());
    }
    if recall && (!recall_on.is_empty() || recall_unless.is_some()) {
        args.recall_on = (!recall_on.is_empty()).then(|| recall_on.clone());
        args.recall_unless = recall_unless.clone().map(|u| vec![u]);
        args.recall_after = Some(pick(&mut rng, &["1m", "10m", "30m"]).to_string());
        args.max_attempts = Some(max_attempts.to_string());
    }
    if let Some(c) = cap {
        args.max_calls_per_number = Some(c.to_string());
        args.per = Some("24h".into());
    }
    let allowed_attempts = if args.max_attempts.is_some() {
        max_attempts
    } else {
        1
    };
    // Every row's calls in all; the cap is checked over its own periods.
    let max_per_number = allowed_attempts;

    // The gateways.
    let start_ms = jiff::Timestamp::from_second(1_799_000_000 + rng.random_range(0..86_400 * 7))
        .expect("a start time")
        .as_millisecond();
    let mut rolling =
        rolling_mode.then(|| Rolling::new(&mut rng, start_ms, &mut args, allowed_attempts));
    let people = match &rolling {
        Some(r) => r.people(),
        None => people,
    };
    let mut faults_on = Faults::default();
    if rng.random_bool(0.6) {
        let mut p = |max: f64| {
            if rng.random_bool(0.5) {
                rng.random_range(0.0..max)
            } else {
                0.0
            }
        };
        faults_on = Faults {
            call_not_sent: p(0.1),
            call_unavailable: p(0.1),
            call_refused: p(0.1),
            call_lost: p(0.05),
            call_error: p(0.05),
            call_reworded: p(0.05),
            call_reused_id: p(0.05),
            status_error: p(0.1),
            status_garbage: p(0.1),
            poll_lost: p(0.1),
            forget: p(0.02),
            slow: p(0.03),
        };
    }
    let step = Arc::new(AtomicI64::new(0));
    let mut sims = Vec::new();
    for g in 0..gateways_n {
        let outages = if rng.random_bool(0.2) {
            let a = start_ms + rng.random_range(0..600_000);
            vec![(a, a + rng.random_range(5_000..1_800_000))]
        } else {
            Vec::new()
        };
        let mut model = Model::new(
            ModelSettings {
                lines: lines + rng.random_range(0..2),
                retry_delay: Duration::from_secs(rng.random_range(30..300)),
                latency: Duration::from_millis(rng.random_range(1..200)),
                request_timeout: Duration::from_secs(10),
                faults: faults_on.clone(),
                outages,
                seed: seed.wrapping_mul(31).wrapping_add(g as u64),
            },
            start_ms,
        );
        for p in &people {
            if let Some(e) = &p.e164 {
                let plans = (0..4).map(|_| plan(&mut rng)).collect();
                model.plans.entry(e.clone()).or_insert(plans);
            }
        }
        let mut sim = SimGateway::new(model);
        sim.runner_step_ms = step.clone();
        sims.push(sim);
    }

    let (poll_timeout, rate_interval) = match RunConfig::from_args(args.clone()) {
        Ok(c) => (c.pacing.poll_timeout, c.pacing.rate.interval()),
        Err(_) => (Duration::MAX, None),
    };
    let expect = Expect {
        people: people.clone(),
        max_per_number,
        cap: cap.map(|c| (c, Duration::from_secs(24 * 3600))),
        window: window.clone(),
        // What the program promises: the gateway's retries for `firstocc` minutes, then the call (5m).
        margin: Duration::from_secs(u64::from(firstocc) * 60 + 5 * 60),
        poll_timeout,
        lines,
        rate_interval,
        recall_after: args
            .recall_after
            .as_deref()
            .map(|a| Duration::from_secs(60 * a.trim_end_matches('m').parse::<u64>().unwrap_or(0))),
    };
    let n = people.len();
    say(format!(
        "{} {n} contacts, {gateways_n} gateway(s), {lines} lines, rate {rate}, poll {poll_interval}, firstocc {firstocc}, window {window:?}, recall {:?}/{:?} max {:?}, cap {cap:?}, suppress later {suppress_later}, clock steps {steps_on}",
        if rolling.is_some() {
            "rolling export,"
        } else {
            "list,"
        },
        args.recall_on,
        args.recall_unless,
        args.max_attempts
    ));

    let mut now_ms = start_ms;
    let mut crashes = 0u64;
    let mut history = check::History::default();
    let mut violation = None;
    let mut last_finished = false;
    let mut last_crashed = false;
    for process in 0..PROCESSES {
        if process >= 1 && suppress_later && args.suppress.is_empty() {
            let listed: Vec<&String> = people.iter().filter_map(|p| p.e164.as_ref()).collect();
            if !listed.is_empty() {
                let file = dir.path().join("optout.csv");
                let chosen = listed[rng.random_range(0..listed.len())];
                // Opt-out lists as people keep them: with or without a title line, in ASCII, full-width or
                // Arabic-Indic digits.
                let national: String = chosen[2..].to_string();
                let written: String = match rng.random_range(0..6) {
                    0..=3 => national.clone(),
                    4 => national
                        .chars()
                        .map(|c| char::from_u32(0xFF10 + (c as u32 - 0x30)).unwrap_or(c))
                        .collect(),
                    _ => national
                        .chars()
                        .map(|c| char::from_u32(0x0660 + (c as u32 - 0x30)).unwrap_or(c))
                        .collect(),
                };
                let body = if rng.random_bool(0.5) {
                    format!("phone\n{written}\n")
                } else {
                    format!("{written}\n")
                };
                std::fs::write(&file, body).expect("write opt-outs");
                args.suppress.push(file);
                history.suppressed.push((chosen.clone(), now_ms));
                say(format!("process {process}: {chosen} opted out"));
            }
        }
        if let Some(r) = rolling.as_mut() {
            // The practice system's next export: after a night, changed; after a crash, perhaps changed too
            // (the appointment a crashed run was calling may have moved).
            let change = process > 0 && (!last_crashed || rng.random_bool(0.5));
            r.next_export(&mut rng, now_ms, &input, change);
        }
        // The last processes never crash: the seed ends on a run that wrote its results.
        let crash = if process < LAST_CRASH && rng.random_bool(0.45) {
            Some(if rng.random_bool(0.7) {
                Crash::Journal(
                    if rng.random_bool(0.5) {
                        Point::BeforeCommit
                    } else {
                        Point::AfterCommit
                    },
                    rng.random_range(0..40),
                )
            } else {
                Crash::Call(rng.random_range(0..6), rng.random_bool(0.5))
            })
        } else {
            None
        };
        // A step of the wall clock during this process, and a correction between processes.
        let step_plan = (steps_on && rng.random_bool(0.5)).then(|| {
            (
                Duration::from_millis(rng.random_range(0..120_000)),
                *pick(&mut rng, &[2 * 3_600_000i64, -3_600_000, 20 * 60_000]),
            )
        });
        if steps_on && rng.random_bool(0.3) {
            step.store(0, Ordering::Relaxed);
        }
        // The operator's damage: the journal moved away, and perhaps the results re-saved by a spreadsheet.
        // The run must refuse (a new journal would call everyone again); then the journal is put back.
        let state = dir.path().join("results.csv.state");
        let moved = dir.path().join("journal-moved-away");
        let lost_journal = process >= 1 && state.exists() && rng.random_bool(0.05);
        if lost_journal {
            std::fs::rename(&state, &moved).expect("move the journal away");
            if rng.random_bool(0.5) {
                let output = dir.path().join("results.csv");
                if let Ok(text) = std::fs::read_to_string(&output) {
                    std::fs::write(&output, text.replace(',', ";")).expect("re-save the results");
                }
            }
            say(format!("process {process}: the journal was moved away"));
        }
        let cfg = match RunConfig::from_args(args.clone()) {
            Ok(c) => c,
            Err(e) => {
                say(format!("settings refused: {e}"));
                break;
            }
        };
        let exchanges: Vec<Arc<dyn Exchange>> = sims
            .iter()
            .map(|s| Arc::new(s.clone()) as Arc<dyn Exchange>)
            .collect();
        match crash {
            Some(Crash::Journal(p, k)) => determinism::arm_crash(Some((p, k))),
            Some(Crash::Call(k, after)) => {
                determinism::arm_crash(None);
                if let Ok(mut m) = sims[0].model.lock() {
                    m.crash_at_call = Some((m.calls_asked() + k, after));
                }
            }
            None => determinism::arm_crash(None),
        }
        determinism::pin(
            seed.wrapping_mul(1_000_003)
                .wrapping_add(u64::from(process)),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime");
        let sims_in = sims.clone();
        let step_in = step.clone();
        let started_ms = now_ms;
        let step_at_start = step.load(Ordering::Relaxed);
        let (result, end_ms, stepped) = rt.block_on(async move {
            for s in &sims_in {
                s.rebase(now_ms);
            }
            // The machine's boot clock is the true time, which no wall-clock step moves.
            let boot = sims_in[0].clone();
            determinism::set_boot_clock(Some(Box::new(move || boot.now_ms())));
            let base = jiff::Timestamp::from_millisecond(now_ms).expect("a time");
            let clock = Clock::stepped_from(base, step_in.clone());
            let (_signals, rx) = watch::channel(Stage::Run);
            let stepper = step_plan.map(|(after, by)| {
                let step = step_in.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    step.fetch_add(by, Ordering::Relaxed);
                })
            });
            // A process that runs past its budget of simulated time is stuck, and says so: a seed never hangs.
            let run = tokio::time::timeout(
                PROCESS_BUDGET,
                run_in(cfg, rx, Progress::Never, clock, Some(exchanges)),
            );
            let result = tokio::select! {
                biased;
                _ = determinism::death() => None,
                r = run => Some(r),
            };
            let stepped = stepper.is_some_and(|h| h.is_finished());
            (result, sims_in[0].now_ms(), stepped)
        });
        let result = match result {
            Some(Err(_elapsed)) => {
                violation = Some(format!(
                    "stuck: process {process} was still running after {} h of simulated time",
                    PROCESS_BUDGET.as_secs() / 3600
                ));
                break;
            }
            Some(Ok(r)) => Some(r),
            None => None,
        };
        drop(rt);
        if lost_journal {
            // Whatever the run did, the operator puts the journal back for the next one.
            if state.exists() {
                let _ = std::fs::remove_dir_all(&state);
            }
            std::fs::rename(&moved, &state).expect("put the journal back");
        }
        for s in &sims {
            if let Ok(mut m) = s.model.lock() {
                m.crash_at_call = None;
            }
        }
        now_ms = end_ms;
        let crashed = result.is_none();
        last_crashed = crashed;
        if crashed {
            crashes += 1;
        }
        say(format!(
            "process {process}: {} at +{} s (from {started_ms} to {now_ms}){}",
            match &result {
                None => "crashed".to_string(),
                Some(Ok(s)) => format!("ended {}", s.ending.as_str()),
                Some(Err(e)) => format!("refused: {e}"),
            },
            (now_ms - start_ms) / 1000,
            if stepped { " (wall clock stepped)" } else { "" }
        ));
        let finished = matches!(result, Some(Ok(_)));
        let summary = match result {
            Some(Ok(s)) => Some(s),
            Some(Err(ivr_campaign::error::Error::Internal(e))) => {
                violation = Some(format!("internal error: {e}"));
                break;
            }
            _ => None,
        };
        last_finished = finished;
        let output = dir.path().join("results.csv");
        let step_now = step.load(Ordering::Relaxed);
        history.processes.push((started_ms, now_ms, finished));
        let done = match &summary {
            Some(s) => match ivr_campaign::output::status::json(&state) {
                Ok(status) => Some(check::Finished {
                    summary: s,
                    runner_span_ms: (started_ms + step_at_start, now_ms + step_now),
                    steady_span_ms: (started_ms, now_ms),
                    status,
                }),
                Err(e) => {
                    violation = Some(format!("views: status --json failed after a run: {e}"));
                    break;
                }
            },
            None => None,
        };
        // After a crash the results file is the last finished run's: the journal is the truth until the
        // next run writes it again, so only the gateway's ledger is checked.
        if let Err(v) = check::after_process(
            &expect,
            &sims,
            finished.then_some(output.as_path()),
            done.as_ref(),
            &mut history,
            rolling.as_ref(),
        ) {
            violation = Some(v);
            break;
        }
        let open = check::open_rows(&output);
        if verbose && !crashed {
            say(format!(
                "  open after it: {}",
                check::describe_open(&output)
            ));
        }
        // A fixed list is done when nothing is open; an export goes on night after night.
        if rolling.is_none() && !crashed && summary.is_some() && open == 0 {
            break;
        }
        // The next process starts later: soon after a crash (cron, or an operator), or at the next run.
        let gap = if crashed {
            rng.random_range(1_000..600_000)
        } else {
            rng.random_range(600_000..14 * 3_600_000)
        };
        now_ms += gap;
        for s in &sims {
            if let Ok(mut m) = s.model.lock() {
                m.advance(now_ms);
            }
        }
    }
    if violation.is_none()
        && let Err(v) = check::at_end(
            &expect,
            &sims,
            last_finished
                .then(|| dir.path().join("results.csv"))
                .as_deref(),
            &history,
            rolling.as_ref(),
        )
    {
        violation = Some(v);
    }
    let faults = sims
        .iter()
        .filter_map(|s| s.model.lock().ok().map(|m| m.faults_injected))
        .sum::<u64>();
    let digest = {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        for sim in &sims {
            if let Ok(m) = sim.model.lock() {
                for r in &m.seen {
                    (r.at_ms, r.path, &r.form, &r.req_id, r.what, r.runner_ms).hash(&mut h);
                }
            }
        }
        // The results' keys, statuses, request ids and responses, by column name (their timestamps include
        // the journal's opening, which reads the machine's clock).
        if let Ok(mut r) = csv::Reader::from_path(dir.path().join("results.csv"))
            && let Ok(header) = r.headers().cloned()
        {
            let at: Vec<usize> = ["id", "status", "req_id", "responses"]
                .iter()
                .filter_map(|name| header.iter().position(|h| h == *name))
                .collect();
            for rec in r.records().flatten() {
                for i in &at {
                    rec.get(*i).hash(&mut h);
                }
            }
        }
        h.finish()
    };
    Outcome {
        crashes,
        faults,
        violation,
        digest,
    }
}
