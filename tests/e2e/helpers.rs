//! Shared test helpers: a simulator on 127.0.0.1:0 in the test process, the real binary spawned against it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

pub use crate::kit::*;
use ivr_campaign::simulator::SimSettings;
use ivr_campaign::simulator::{Recorded, Simulator};

/// The binary under test: this build's, or another one named by `IVR_CAMPAIGN_TEST_BIN` (to check that a test
/// fails on an older release).
pub fn bin() -> String {
    std::env::var("IVR_CAMPAIGN_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ivr-campaign").to_string())
}

/// Outer bound for anything a test waits on; reaching it is a failure, not a synchronisation.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A simulator that demands basic auth (`user:password`), as a gateway behind a protected proxy.
pub async fn sim_auth(
    lines: u32,
    ring: Duration,
    talk: Duration,
    retry: Duration,
    scenario: &str,
    basic_auth: Option<&str>,
) -> Simulator {
    let settings = SimSettings {
        lines,
        ring_delay: ring,
        call_duration: talk,
        retry_delay: retry,
        basic_auth: basic_auth.map(str::to_string),
        ..SimSettings::default()
    };
    sim_with(settings, scenario).await
}

/// Starts the binary with `args`; it is killed if the test ends first.
pub fn spawn<I, S>(args: I) -> tokio::process::Child
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    tokio::process::Command::new(bin())
        .args(args)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn")
}

/// Runs the binary to completion.
pub async fn run(args: &[&str]) -> Output {
    tokio::time::timeout(
        PATIENCE,
        tokio::process::Command::new(bin())
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("ivr-campaign finished in time")
    .expect("ivr-campaign runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// A campaign of the binary against one simulator: its files, and its standard flags.
pub struct Campaign {
    pub dir: tempfile::TempDir,
    pub input: PathBuf,
    pub output: PathBuf,
    base: Vec<String>,
}

impl Campaign {
    /// The list `list` in a directory of its own, run against `sim` with [`base_args`].
    pub fn new(sim: &Simulator, list: &str) -> Campaign {
        let Files { dir, input, output } = Files::new(list);
        let base = base_args(sim, &input, &output);
        Campaign {
            dir,
            input,
            output,
            base,
        }
    }

    /// The standard flags of a run of this campaign.
    pub fn base(&self) -> Vec<String> {
        self.base.clone()
    }

    /// Runs it to completion with `extra` flags.
    pub async fn run(&self, extra: &[&str]) -> Output {
        run(&with(&self.base, extra)).await
    }

    pub fn results(&self) -> Vec<HashMap<String, String>> {
        results(&self.output)
    }
}

/// Standard flags for a run against `sim`.
pub fn base_args(sim: &Simulator, input: &Path, output: &Path) -> Vec<String> {
    vec![
        "run".into(),
        "--input".into(),
        input.display().to_string(),
        "--output".into(),
        output.display().to_string(),
        "--gateway".into(),
        sim.url(),
        "--app".into(),
        "Reminder".into(),
        "--poll-interval".into(),
        "40ms".into(),
        "--poll-rate".into(),
        "unlimited".into(),
        "--rate".into(),
        "unlimited".into(),
        "-q".into(),
    ]
}

/// `base` sent to another gateway (`--gateway` is repeatable: a second one would add a gateway).
pub fn on_gateway(base: &[String], url: &str) -> Vec<String> {
    let mut v = base.to_vec();
    if let Some(i) = v.iter().position(|a| a == "--gateway") {
        v[i + 1] = url.to_string();
    }
    v
}

pub fn with<'a>(base: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
        .collect()
}

/// Waits until what the gateway saw satisfies `done`, while `child` (a run) is still going. A run that exits
/// first, or a wait past [`PATIENCE`], fails the test with `what`.
pub async fn wait_while_running(
    sim: &Simulator,
    child: &mut tokio::process::Child,
    done: impl Fn(&[Recorded]) -> bool,
    what: &str,
) {
    tokio::select! {
        _ = sim.wait_for(done) => {}
        st = child.wait() => panic!("{what}: the run ended first ({st:?})"),
        _ = tokio::time::sleep(PATIENCE) => panic!("{what}: not seen in time"),
    }
}

/// Sends SIGTERM to a run started with piped stderr, waits until it says it is draining, and sends another,
/// which stops it at once. Returns the stderr lines read so far.
pub async fn stop_twice(child: &mut tokio::process::Child) -> Vec<String> {
    use tokio::io::AsyncBufReadExt;
    let pid = child.id().expect("pid").to_string();
    let term = || {
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
    };
    let mut lines =
        tokio::io::BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
    assert!(term().success());
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("a log line")
            .expect("read")
            .expect("the runner logs the first stop before exiting");
        let draining = line.contains("stop requested");
        seen.push(line);
        if draining {
            break;
        }
    }
    assert!(term().success());
    // Keep reading so the runner never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    seen
}
