//! Rate, lines, poll spacing and the forecast, on virtual time.

use std::collections::HashMap;
use std::time::Duration;

use ivr_campaign::gateway::protocol;

use crate::*;

async fn rate_at_the_gateway(per_second: u32, n: usize) {
    // Instant calls and more lines than needed: only the rate paces the requests.
    let sim = sim(4000, ms(0), ms(0), ms(0), "").await;
    let c = Campaign::new(&contacts(n));
    let mut args = c.args(&sim);
    args.rate = Some(format!("{per_second}/s"));
    args.lines = Some("2000".into());
    let s = run(args).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let log = sim.requests();
    let times: Vec<Duration> = call_requests(&log).iter().map(|r| r.arrived).collect();
    assert_eq!(times.len(), n);
    // An operator's trunk limit of N calls per second means at most N (plus the one catch-up slot) in any
    // second, counted where it matters: on arrival at the gateway.
    let most = busiest(&times, Duration::from_secs(1));
    assert!(
        most <= per_second as usize + 1,
        "{most} call requests in one second at {per_second}/s"
    );
    let first = times.iter().min().copied().unwrap_or_default();
    let last = times.iter().max().copied().unwrap_or_default();
    let achieved = (n - 1) as f64 / (last - first).as_secs_f64();
    assert!(
        (achieved / f64::from(per_second) - 1.0).abs() < 0.01,
        "{achieved:.3}/s against {per_second}/s"
    );
}

#[tokio::test(start_paused = true)]
async fn call_requests_reach_the_gateway_at_the_rate_25() {
    rate_at_the_gateway(25, 250).await;
}

#[tokio::test(start_paused = true)]
async fn call_requests_reach_the_gateway_at_the_rate_200() {
    rate_at_the_gateway(200, 1000).await;
}

#[tokio::test(start_paused = true)]
async fn each_call_waits_the_poll_interval_between_polls() {
    let sim = sim(8, ms(400), ms(200), ms(10), "").await;
    let c = Campaign::new(&contacts(4));
    let s = run(c.args(&sim)).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let mut polls: HashMap<String, Vec<Duration>> = HashMap::new();
    for r in sim
        .requests()
        .iter()
        .filter(|r| r.path == protocol::STATUS_PATH)
    {
        polls
            .entry(r.req_id.clone().unwrap_or_default())
            .or_default()
            .push(r.arrived);
    }
    assert_eq!(polls.len(), 4);
    for (id, times) in polls {
        // A 600 ms call polled every 100 ms: six polls, none sooner than the interval after the last.
        assert!(times.len() >= 6, "{id}: {times:?}");
        for w in times.windows(2) {
            assert!(
                w[1] - w[0] >= ms(100),
                "{id}: polls {:?} apart",
                w[1] - w[0]
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_read_at_the_deadline_keeps_the_poll_interval() {
    // The gateway dials these calls again and again, past the poll timeout. First polls fall anywhere in an
    // interval, so a read taken at the deadline as is would come at any time after the poll before it.
    let sim = sim_retrying().await;
    let c = Campaign::new(&contacts(6));
    let mut args = c.args(&sim);
    args.poll_interval = Some("200ms".into());
    args.poll_timeout = Some("1s".into());
    let s = run(args).await;
    let rows = c.results();
    assert!(
        rows.iter().all(|r| r["status"] == "unresolved"),
        "{}: {rows:?}",
        s.line()
    );
    let log = sim.requests();
    let requested: HashMap<String, Duration> = call_requests(&log)
        .iter()
        .filter_map(|r| Some((r.req_id.clone()?, r.arrived)))
        .collect();
    assert_eq!(requested.len(), 6, "{requested:?}");
    let mut polls: HashMap<String, Vec<Duration>> = HashMap::new();
    for r in log.iter().filter(|r| r.path == protocol::STATUS_PATH) {
        polls
            .entry(r.req_id.clone().unwrap_or_default())
            .or_default()
            .push(r.arrived);
    }
    let mut late = Vec::new();
    for (id, times) in &polls {
        for w in times.windows(2) {
            assert!(w[1] - w[0] >= ms(200), "{id}: polls at {times:?}");
        }
        let (Some(last), Some(asked)) = (times.last(), requested.get(id)) else {
            panic!("{id}: no poll or no request");
        };
        // Written off only by a read at or after the deadline, and by the first one that keeps the interval.
        assert!(*last >= *asked + ms(1000), "{id}: polls at {times:?}");
        late.push(*last - *asked - ms(1000));
    }
    assert!(late.iter().all(|l| *l < ms(200)), "{late:?}");
}

#[tokio::test(start_paused = true)]
async fn the_poll_rate_caps_polls_across_all_calls() {
    let sim = sim(40, ms(2000), ms(0), ms(10), "").await;
    let c = Campaign::new(&contacts(40));
    let mut args = c.args(&sim);
    args.lines = Some("40".into());
    args.poll_interval = Some("50ms".into());
    args.poll_rate = Some("20/s".into());
    let s = run(args).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let times: Vec<Duration> = sim
        .requests()
        .iter()
        .filter(|r| r.path == protocol::STATUS_PATH)
        .map(|r| r.arrived)
        .collect();
    assert!(times.len() >= 40);
    let most = busiest(&times, Duration::from_secs(1));
    assert!(most <= 21, "{most} polls in one second at poll-rate 20/s");
}

#[tokio::test(start_paused = true)]
async fn the_forecast_matches_a_run() {
    let sim = sim(8, ms(150), ms(150), ms(10), "").await;
    let c = Campaign::new(&format!("{}25,dup,646-555-1000\n26,bad,12\n", contacts(24)));
    let mut args = c.args(&sim);
    args.lines = Some("4".into());
    args.rate = Some("20/s".into());
    args.poll_interval = Some("30ms".into());
    // The simulator's ring and talk.
    args.call_length = Some("300ms".into());
    let cfg = ivr_campaign::settings::RunConfig::from_args(args.clone()).expect("settings");
    let forecast = ivr_campaign::commands::validate::forecast(
        &cfg,
        &ivr_campaign::commands::validate::Groups::flat(24),
        jiff::Timestamp::now(),
    );
    let started = tokio::time::Instant::now();
    let s = run(args).await;
    let took = started.elapsed();
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let ratio = took.as_secs_f64() / forecast.duration.as_secs_f64();
    assert!(
        (0.8..1.25).contains(&ratio),
        "forecast {:?}, the run took {took:?}",
        forecast.duration
    );
}

#[tokio::test(start_paused = true)]
async fn a_gateways_own_rate_holds_on_it_and_the_total_across_them() {
    let a = sim(100, ms(0), ms(0), ms(0), "").await;
    let b = sim(100, ms(0), ms(0), ms(0), "").await;
    let c = Campaign::new(&contacts(120));
    let campaign = c.dir.path().join("campaign.toml");
    std::fs::write(
        &campaign,
        format!(
            "app = \"Reminder\"\nrate = \"10/s\"\nlines = 50\npoll-interval = \"100ms\"\npoll-rate = \"unlimited\"\n[[gateways]]\nurl = \"{}\"\nrate = \"2/s\"\n[[gateways]]\nurl = \"{}\"\n",
            a.url(),
            b.url()
        ),
    )
    .expect("campaign file");
    let mut args = c.args(&a);
    args.campaign = Some(campaign);
    args.gateway = Vec::new();
    args.rate = None;
    let s = run(args).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let (a_log, b_log) = (a.requests(), b.requests());
    let at = |log: &[ivr_campaign::simulator::Recorded]| -> Vec<Duration> {
        call_requests(log).iter().map(|r| r.arrived).collect()
    };
    let (on_a, on_b) = (at(&a_log), at(&b_log));
    assert_eq!(on_a.len() + on_b.len(), 120);
    let a_most = busiest(&on_a, Duration::from_secs(1));
    assert!(
        a_most <= 3,
        "{a_most} requests in one second on the 2/s gateway"
    );
    let all: Vec<Duration> = on_a.iter().chain(&on_b).copied().collect();
    let most = busiest(&all, Duration::from_secs(1));
    assert!(most <= 11, "{most} requests in one second at 10/s in all");
    // The fast gateway took what the slow one could not: about 8 of every 10.
    assert!(on_b.len() >= 90, "B took {}", on_b.len());
}

#[tokio::test(start_paused = true)]
async fn requests_in_flight_to_one_gateway_are_bounded_whatever_the_lines() {
    // Every answer takes 1 s, and 400 lines would each hold a request (and a socket) at once.
    let sim = sim(4000, ms(0), ms(0), ms(0), "[faults]\nslow = \"1s\"\n").await;
    let c = Campaign::new(&contacts(400));
    let mut args = c.args(&sim);
    args.lines = Some("400".into());
    let s = run(args).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let log = sim.requests();
    let arrivals = |path: &str| -> Vec<Duration> {
        log.iter()
            .filter(|r| r.path == path)
            .map(|r| r.arrived)
            .collect()
    };
    // A request holds its slot until its answer, 1 s later: no more than the slots arrive in less than that.
    for path in [protocol::CALL_PATH, protocol::STATUS_PATH] {
        let most = busiest(&arrivals(path), Duration::from_millis(900));
        assert!(most <= 128, "{most} requests to {path} in flight at once");
        assert!(most >= 64, "{most}: the slots are used");
    }
}

#[tokio::test(start_paused = true)]
async fn every_line_given_is_used_past_the_cap_on_requests_in_flight() {
    // 6 s calls and more lines than requests may be in flight at once (128): the cap bounds HTTP requests,
    // so once each call request is answered its slot is free, and `--lines` alone bounds the calls.
    let sim = sim(4000, ms(0), ms(6000), ms(0), "").await;
    let c = Campaign::new(&contacts(400));
    let mut args = c.args(&sim);
    args.lines = Some("300".into());
    let s = run(args).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let log = sim.requests();
    let times: Vec<Duration> = call_requests(&log).iter().map(|r| r.arrived).collect();
    assert_eq!(times.len(), 400);
    // No call ends before 6 s after its request: every request inside a window shorter than that is a call
    // outstanding at its end. All 300 lines were taken at once, and never more.
    let most = busiest(&times, ms(5900));
    assert_eq!(most, 300, "calls outstanding at once");
}

/// A campaign of `n` calls of one length (300 ms), 8 lines on both sides, 50 requests a second, polls at
/// least 200 ms apart: (campaign time over the in-order bound, polls per call, the most first polls that read
/// "not yet" among any 8 calls placed in a row after the first 8). The bound is a runner that sees each final answer the
/// instant it exists: calls in input order on the lines, each request 20 ms or more after the one before.
async fn against_the_in_order_bound(n: usize) -> (f64, f64, usize) {
    let sim = sim(8, ms(100), ms(200), ms(0), "").await;
    let c = Campaign::new(&contacts(n));
    let mut args = c.args(&sim);
    args.lines = Some("8".into());
    args.rate = Some("50/s".into());
    args.poll_interval = Some("200ms".into());
    let s = run(args).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let log = sim.requests();
    let requests = call_requests(&log);
    assert_eq!(requests.len(), n);
    let first = requests.iter().map(|r| r.arrived).min().unwrap_or_default();
    let status: Vec<_> = log
        .iter()
        .filter(|r| r.path == protocol::STATUS_PATH)
        .collect();
    let last_final = status
        .iter()
        .filter(|r| r.is_final)
        .map(|r| r.arrived)
        .max()
        .unwrap_or_default();
    let mut free = [0u128; 8];
    let mut last: Option<u128> = None;
    let mut end = 0u128;
    for _ in 0..n {
        let line = (0..8).min_by_key(|i| free[*i]).unwrap_or(0);
        let start = last.map_or(free[line], |l| free[line].max(l + 20));
        last = Some(start);
        free[line] = start + 300;
        end = end.max(free[line]);
    }
    let ratio = (last_final - first).as_millis() as f64 / end as f64;
    // Each call's first poll, in the order the calls were requested: did it read "not yet"?
    let mut first_poll: HashMap<&str, bool> = HashMap::new();
    for r in &status {
        if let Some(id) = r.req_id.as_deref() {
            first_poll.entry(id).or_insert(!r.is_final);
        }
    }
    let missed: Vec<bool> = requests
        .iter()
        .filter_map(|r| {
            r.req_id
                .as_deref()
                .and_then(|id| first_poll.get(id).copied())
        })
        .collect();
    let worst_round = missed
        .get(8..)
        .unwrap_or_default()
        .windows(8)
        .map(|w| w.iter().filter(|m| **m).count())
        .max()
        .unwrap_or(0);
    (ratio, status.len() as f64 / n as f64, worst_round)
}

#[tokio::test(start_paused = true)]
async fn calls_of_one_length_are_seen_ending_soon_after_they_end() {
    // 200 calls: the first poll learns the length, one probe at a time, and then reads each call final at once.
    let (ratio, polls, worst) = against_the_in_order_bound(200).await;
    assert!(ratio <= 1.05, "{ratio:.3}x the in-order bound");
    assert!(polls <= 1.1, "{polls:.2} polls per call");
    // After the first round (placed blind, at spread phases), no round of calls misses together: one call at
    // a time probes below the length learned.
    assert!(
        worst <= 2,
        "{worst} first polls too early among 8 calls in a row"
    );
    // 30 calls, four rounds: the first is placed blind, and the calls still waiting for their first poll when
    // the first call ends are placed again on its length. Here every length is exact, so every probe below it
    // reads "not yet" (the worst case for probing; against a gateway on real sockets this list takes 1.05x).
    let (ratio, polls, _) = against_the_in_order_bound(30).await;
    assert!(ratio <= 1.15, "{ratio:.3}x the in-order bound");
    assert!(polls <= 1.3, "{polls:.2} polls per call");
}
