//! The simulation tier: whole campaigns, each drawn from a seed, run by the real engine, rules and journal in
//! one process against a gateway model ([`ivr_campaign::simulator::model`]) on tokio's paused clock, with
//! faults, crashes at journal commits and around call requests, restarts from what is on disk, and steps of
//! the wall clock. Checkers read the gateway's ledger, the journal's results and the summary after every
//! process and at the end, and name the invariant a seed breaks.
//!
//! `cargo test --release --test simulation` runs `SIM_SEEDS` seeds from `SIM_SEED`; the last line printed is
//! `simulation: N seeds from S, 0 violations; C crashes, F faults injected`. `SIM_VERBOSE=1` prints each
//! seed's story and its digest. Every 25th seed is run twice and must replay bit for bit; so is every seed with
//! `SIM_REPLAY=1`, and a single seed (`SIM_SEEDS=1`), which is how a failing seed is looked at.

mod check;
mod rolling;
mod world;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => match v.trim().parse() {
            Ok(n) => n,
            Err(_) => {
                eprintln!("{name}={v:?} is not a whole number");
                std::process::exit(2);
            }
        },
        Err(_) => default,
    }
}

/// Seeds per CI run: a debug build (plain `cargo test`) runs about this many in well under a minute.
const DEFAULT_SEEDS: u64 = 200;
const DEFAULT_FIRST: u64 = 1;
/// One seed in this many is run twice and must replay exactly.
const REPLAY_EVERY: u64 = 25;

/// Real time one seed may take before the run is called stuck. A seed takes well under a second; one that
/// spins without letting simulated time pass (a busy loop, a lost wake-up) never ends on its own, and a
/// hang names no seed. This is the backstop to the budget of simulated time in `world.rs`.
const SEED_REAL_LIMIT: Duration = Duration::from_secs(300);

/// Watches the seed being run: if one seed runs past [`SEED_REAL_LIMIT`], prints the violation with its
/// replay line and ends the run, failed.
fn watchdog() -> Arc<AtomicU64> {
    let current = Arc::new(AtomicU64::new(u64::MAX));
    let watched = current.clone();
    std::thread::spawn(move || {
        let (mut seed, mut since) = (u64::MAX, Instant::now());
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = watched.load(Ordering::Relaxed);
            if now != seed {
                (seed, since) = (now, Instant::now());
            } else if since.elapsed() > SEED_REAL_LIMIT {
                eprintln!(
                    "seed {seed}: violated: stuck: still running after {} s of real time",
                    since.elapsed().as_secs()
                );
                eprintln!(
                    "  replay: SIM_SEED={seed} SIM_SEEDS=1 SIM_VERBOSE=1 cargo test --release --test simulation"
                );
                println!("simulation: stuck at seed {seed}, 1 violation");
                std::process::exit(1);
            }
        }
    });
    current
}

fn main() {
    // `cargo test -- --list` and friends: this binary has one test, the whole simulation.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        println!("simulation: test");
        return;
    }
    let seeds = env_u64("SIM_SEEDS", DEFAULT_SEEDS);
    let first = env_u64("SIM_SEED", DEFAULT_FIRST);
    let verbose = std::env::var("SIM_VERBOSE").is_ok_and(|v| v != "0");
    let replay_all = seeds == 1 || std::env::var("SIM_REPLAY").is_ok_and(|v| v != "0");
    // `SIM_LOG=debug` shows the runner's own log for a seed being replayed.
    if let Ok(filter) = std::env::var("SIM_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let started = Instant::now();
    let current = watchdog();
    let (mut crashes, mut faults, mut violations) = (0u64, 0u64, 0u64);
    let mut failed: Vec<(u64, String)> = Vec::new();
    for seed in first..first.saturating_add(seeds) {
        current.store(seed, Ordering::Relaxed);
        let mut outcome = world::run_seed(seed, verbose);
        crashes += outcome.crashes;
        faults += outcome.faults;
        // Every so often a seed is run again: it must replay bit for bit (what the gateways saw, when, and
        // the results), or a failing seed could not be replayed.
        if verbose {
            eprintln!("[seed {seed}] digest {:016x}", outcome.digest);
        }
        if outcome.violation.is_none() && (replay_all || seed % REPLAY_EVERY == 0) {
            let again = world::run_seed(seed, false);
            if again.digest != outcome.digest {
                outcome.violation = Some(format!(
                    "replay-differs: the seed ran twice gave digests {:016x} and {:016x}",
                    outcome.digest, again.digest
                ));
            }
        }
        if let Some(v) = outcome.violation {
            violations += 1;
            eprintln!("seed {seed}: violated: {v}");
            eprintln!(
                "  replay: SIM_SEED={seed} SIM_SEEDS=1 SIM_VERBOSE=1 cargo test --release --test simulation"
            );
            failed.push((seed, v));
        }
    }
    eprintln!(
        "({:.1} s, {:.1} seeds/s)",
        started.elapsed().as_secs_f64(),
        seeds as f64 / started.elapsed().as_secs_f64().max(1e-9)
    );
    println!(
        "simulation: {seeds} seeds from {first}, {violations} violations; {crashes} crashes, {faults} faults injected"
    );
    if violations > 0 {
        std::process::exit(1);
    }
}
