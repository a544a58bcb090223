//! Fast engine tests: the runner in-process, against the in-process simulator over loopback HTTP, on tokio's
//! paused clock. Time-driven behaviour (pacing, poll spacing, wait mode, the forecast) is asserted on the
//! virtual times the simulator recorded, so it is exact and does not depend on how busy the machine is.
//! What needs a real process (signals, kill -9, the lock, exit codes) is in the end-to-end tests.

#[path = "../kit/mod.rs"]
pub mod kit;

mod faults;
mod pacing;
mod recall;
mod reminders;
mod views;
mod windows;
mod zones;

use ivr_campaign::cli::RunArgs;
use ivr_campaign::commands::run::run_with_clock;
use ivr_campaign::engine::{Clock, Stage};
use ivr_campaign::output::progress::Progress;
use ivr_campaign::output::summary::Summary;
use ivr_campaign::settings::RunConfig;
use ivr_campaign::simulator::Simulator;
pub use kit::*;
use tokio::sync::watch;

/// A campaign's files (the kit's), with the flags of an in-process run against a simulator.
pub type Campaign = Files;

pub trait RunFlags {
    /// Flags for a run against `sim`, fast and unpaced unless a test says otherwise.
    fn args(&self, sim: &Simulator) -> RunArgs;
}

impl RunFlags for Files {
    fn args(&self, sim: &Simulator) -> RunArgs {
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
}

/// A simulator that dials every call again and again, each attempt a minute after the last: no call is final
/// within a test's poll timeout.
pub async fn sim_retrying() -> Simulator {
    const RETRYING: &str = r#"
[[rule]]
steps = ["retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry"]
"#;
    sim(
        8,
        ms(100),
        ms(100),
        std::time::Duration::from_secs(60),
        RETRYING,
    )
    .await
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
