//! Shared test helpers: a simulator on 127.0.0.1:0 in the test process, the real binary spawned against it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use ivr_campaign::gateway::protocol;
use ivr_campaign::simulator::SimSettings;
use ivr_campaign::simulator::scenario::Scenario;
use ivr_campaign::simulator::{Recorded, Simulator};
use tokio::net::TcpListener;

/// The binary under test: this build's, or another one named by `IVR_CAMPAIGN_TEST_BIN` (to check that a test
/// fails on an older release).
pub fn bin() -> String {
    std::env::var("IVR_CAMPAIGN_TEST_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ivr-campaign").to_string())
}

/// Outer bound for anything a test waits on; reaching it is a failure, not a synchronisation.
pub const PATIENCE: Duration = Duration::from_secs(60);

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
    sim_auth(lines, ring, talk, retry, scenario, None).await
}

/// A simulator that demands basic auth (`user:password`), as a gateway behind a protected proxy.
pub async fn sim_auth(
    lines: u32,
    ring: Duration,
    talk: Duration,
    retry: Duration,
    scenario: &str,
    basic_auth: Option<&str>,
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
        scenario: None,
        record: None,
        faults: Default::default(),
        basic_auth: basic_auth.map(str::to_string),
        tls: None,
        remember: true,
    };
    Simulator::start(listener, settings, scenario).expect("simulator starts")
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test file");
    p
}

/// A contact list of `n` valid, distinct US numbers: columns id,name,phone.
pub fn contacts(n: usize) -> String {
    let mut s = String::from("id,name,phone\n");
    for i in 0..n {
        s.push_str(&format!("{},Person {i},646-555-{:04}\n", i + 1, 1000 + i));
    }
    s
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

/// The results file as header-keyed rows.
pub fn results(path: &Path) -> Vec<HashMap<String, String>> {
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

/// Call requests the gateway received that created a call (answered or not).
pub fn call_requests(log: &[Recorded]) -> Vec<&Recorded> {
    log.iter()
        .filter(|r| {
            r.path == protocol::CALL_PATH
                && (r.outcome.starts_with("scheduled") || r.outcome == "dropped")
        })
        .collect()
}

/// Numbers the gateway was asked to call more than once.
pub fn dialed_twice(log: &[Recorded]) -> Vec<String> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for r in call_requests(log) {
        *seen
            .entry(r.params.get("phoneno").map(String::as_str).unwrap_or(""))
            .or_default() += 1;
    }
    let mut twice: Vec<String> = seen
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(p, _)| p.to_string())
        .collect();
    twice.sort();
    twice
}

/// Most calls outstanding at once, as the gateway saw them: from a call request to the first status reply that
/// reported it final (or its removal, for calls given up on).
pub fn max_outstanding(log: &[Recorded]) -> usize {
    let mut events: Vec<(i64, i32)> = Vec::new();
    for c in call_requests(log) {
        let Some(id) = &c.req_id else { continue };
        let end = log
            .iter()
            .filter(|r| r.req_id.as_deref() == Some(id) && r.seq > c.seq)
            .find(|r| {
                (r.path == protocol::STATUS_PATH && r.is_final) || r.path == protocol::REMOVE_PATH
            })
            .map_or(i64::MAX, |r| r.seq as i64);
        events.push((c.seq as i64, 1));
        events.push((end, -1));
    }
    // Ordered by sequence number: an end and a start never share one.
    events.sort();
    let (mut now, mut max) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        max = max.max(now);
    }
    max as usize
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
