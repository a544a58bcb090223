//! The test kit shared by the test binaries (`#[path = "../kit/mod.rs"] mod kit;` in each): a simulator on
//! 127.0.0.1:0, contact lists, a campaign's files in a temporary directory, the results read back, and the
//! questions every test asks of what the gateway saw. One meaning each: "call requests" are the requests that
//! created a call, in every binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ivr_campaign::gateway::protocol;
use ivr_campaign::simulator::scenario::Scenario;
use ivr_campaign::simulator::{Recorded, SimSettings, Simulator};
use tokio::net::TcpListener;

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A simulator with `lines`, calls that ring `ring` and talk `talk`, retries after `retry`, scripted by
/// `scenario` (TOML), remembering every request it saw.
pub async fn sim(
    lines: u32,
    ring: Duration,
    talk: Duration,
    retry: Duration,
    scenario: &str,
) -> Simulator {
    sim_with(
        SimSettings {
            lines,
            ring_delay: ring,
            call_duration: talk,
            retry_delay: retry,
            ..SimSettings::default()
        },
        scenario,
    )
    .await
}

/// A simulator on a free loopback port with `settings` (it always remembers what it saw).
pub async fn sim_with(settings: SimSettings, scenario: &str) -> Simulator {
    let scenario: Scenario = toml::from_str(scenario).expect("test scenario parses");
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let settings = SimSettings {
        remember: true,
        ..settings
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

/// A campaign's files: the list `c.csv` and the results `r.csv` in a temporary directory of their own.
pub struct Files {
    pub dir: tempfile::TempDir,
    pub input: PathBuf,
    pub output: PathBuf,
}

impl Files {
    pub fn new(list: &str) -> Files {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = write(dir.path(), "c.csv", list);
        let output = dir.path().join("r.csv");
        Files { dir, input, output }
    }

    pub fn results(&self) -> Vec<HashMap<String, String>> {
        results(&self.output)
    }
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

/// Call requests the gateway received that created a call, whether or not its answer reached the runner
/// (a reply the simulator dropped still scheduled a call).
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

/// Most calls outstanding at once to any one number, as the gateway saw them ([`max_outstanding`] per number):
/// more than 1 rings a phone that is already ringing.
pub fn most_live_to_one_number(log: &[Recorded]) -> usize {
    let mut numbers: Vec<&str> = call_requests(log)
        .iter()
        .filter_map(|r| r.params.get("phoneno").map(String::as_str))
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    numbers
        .iter()
        .map(|n| {
            let theirs: Vec<Recorded> = log
                .iter()
                .filter(|r| {
                    r.path != protocol::CALL_PATH
                        || r.params.get("phoneno").map(String::as_str) == Some(*n)
                })
                .cloned()
                .collect();
            max_outstanding(&theirs)
        })
        .max()
        .unwrap_or(0)
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
