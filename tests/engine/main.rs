//! Fast engine tests: the runner in-process, against the in-process simulator over loopback HTTP, on tokio's
//! paused clock. Time-driven behaviour (pacing, poll spacing, wait mode, the forecast) is asserted on the
//! virtual times the simulator recorded, so it is exact and does not depend on how busy the machine is.
//! What needs a real process (signals, kill -9, the lock, exit codes) is in the end-to-end tests.

mod faults;
mod pacing;
mod recall;
mod reminders;
mod views;
mod windows;
mod zones;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ivr_campaign::cli::RunArgs;
use ivr_campaign::commands::run::run_with_clock;
use ivr_campaign::engine::{Clock, Stage};
use ivr_campaign::gateway::protocol;
use ivr_campaign::output::progress::Progress;
use ivr_campaign::output::summary::Summary;
use ivr_campaign::settings::RunConfig;
use ivr_campaign::simulator::scenario::Scenario;
use ivr_campaign::simulator::{Recorded, SimSettings, Simulator};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub async fn sim(
    lines: u32,
    ring: Duration,
    talk: Duration,
    retry: Duration,
    scenario: &str,
) -> Simulator {
    let scenario: Scenario = toml::from_str(scenario).expect("test scenario parses");
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let settings = SimSettings {
        lines,
        ring_delay: ring,
        call_duration: talk,
        retry_delay: retry,
        remember: true,
        ..SimSettings::default()
    };
    Simulator::start(listener, settings, scenario).expect("simulator starts")
}

/// A contact list of `n` valid, distinct US numbers: columns id,name,phone.
pub fn contacts(n: usize) -> String {
    let mut s = String::from("id,name,phone\n");
    for i in 0..n {
        s.push_str(&format!("{},Person {i},646-555-{:04}\n", i + 1, 1000 + i));
    }
    s
}

pub struct Campaign {
    pub dir: tempfile::TempDir,
    pub input: PathBuf,
    pub output: PathBuf,
}

impl Campaign {
    pub fn new(list: &str) -> Campaign {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("c.csv");
        std::fs::write(&input, list).expect("write list");
        let output = dir.path().join("r.csv");
        Campaign { dir, input, output }
    }

    /// Flags for a run against `sim`, fast and unpaced unless a test says otherwise.
    pub fn args(&self, sim: &Simulator) -> RunArgs {
        RunArgs {
            input: Some(self.input.clone()),
            output: Some(self.output.clone()),
            gateway: vec![sim.url()],
            app: Some("Reminder".into()),
            poll_interval: Some("100ms".into()),
            poll_rate: Some("unlimited".into()),
            rate: Some("unlimited".into()),
            ledger: Some(self.dir.path().join("ledger.sqlite")),
            ..RunArgs::default()
        }
    }

    pub fn results(&self) -> Vec<std::collections::HashMap<String, String>> {
        results(&self.output)
    }
}

/// Runs a campaign in-process on a clock that starts at `start` and follows tokio's.
pub async fn run_at(args: RunArgs, start: jiff::Timestamp) -> Summary {
    let cfg = RunConfig::from_args(args).expect("settings are valid");
    let (_signals, rx) = watch::channel(Stage::Run);
    run_with_clock(cfg, rx, Progress::Never, Clock::virtual_from(start))
        .await
        .expect("the run completes")
}

pub async fn run(args: RunArgs) -> Summary {
    run_at(args, jiff::Timestamp::now()).await
}

pub fn results(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_path(path).expect("results file exists");
    let headers = r.headers().expect("results header").clone();
    r.records()
        .map(|rec| {
            let rec = rec.expect("results row");
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// Call requests that created a call.
pub fn call_requests(log: &[Recorded]) -> Vec<&Recorded> {
    log.iter()
        .filter(|r| r.path == protocol::CALL_PATH && r.outcome.starts_with("scheduled"))
        .collect()
}

/// Most of `times` in any window of `window`.
pub fn busiest(times: &[Duration], window: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    (0..sorted.len())
        .map(|i| {
            sorted[i..]
                .iter()
                .take_while(|t| **t < sorted[i] + window)
                .count()
        })
        .max()
        .unwrap_or(0)
}
