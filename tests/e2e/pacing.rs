//! Lines, rate and poll pacing, asserted from what the gateway saw.

use std::collections::HashMap;

use ivr_campaign::gateway::protocol;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_outstanding_never_exceed_lines() {
    // The simulated gateway has more lines than the runner may use, so only the runner limits concurrency.
    let sim = sim(12, ms(30), ms(40), ms(30), "[[rule]]\nweight = 1\nsteps = [\"made\"]\n[[rule]]\nweight = 1\nsteps = [\"retry\", \"made\"]\n").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = write(dir.path(), "c.csv", &contacts(36));
    let output = dir.path().join("r.csv");
    let out = run(&with(
        &base_args(&sim, &input, &output),
        &["--lines", "3", "--poll-interval", "15ms"],
    ))
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let log = sim.requests();
    assert_eq!(call_requests(&log).len(), 36);
    let most = max_outstanding(&log);
    assert!(most <= 3, "{most} calls outstanding with --lines 3");
    assert_eq!(
        most, 3,
        "the cap was never reached, so this run proves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_requests_keep_to_the_rate() {
    // Instant calls and many lines: only the rate limit paces the requests.
    let sim = sim(100, ms(0), ms(0), ms(0), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = write(dir.path(), "c.csv", &contacts(30));
    let output = dir.path().join("r.csv");
    let base = base_args(&sim, &input, &output);
    let out = run(&with(&base, &["--lines", "50", "--rate", "20/s"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let times: Vec<i64> = call_requests(&sim.requests())
        .iter()
        .map(|r| r.at_ms)
        .collect();
    assert_eq!(times.len(), 30);
    // GCRA with burst 1 at 20/s releases at most 20 + 1 requests in any one-second window. They are counted
    // on arrival at the gateway, so allow one more for network jitter on a loaded machine; an unpaced run
    // would put all 30 into the first few milliseconds.
    let busiest = busiest_second(&times);
    assert!(busiest <= 22, "{busiest} requests in one second");
    let span = times[times.len() - 1] - times[0];
    assert!(
        span >= 29 * 50 - 100,
        "30 requests at 20/s took only {span} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_waits_the_poll_interval_between_polls() {
    let sim = sim(8, ms(400), ms(200), ms(10), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = write(dir.path(), "c.csv", &contacts(4));
    let output = dir.path().join("r.csv");
    let out = run(&with(
        &base_args(&sim, &input, &output),
        &["--poll-interval", "100ms"],
    ))
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut polls: HashMap<String, Vec<i64>> = HashMap::new();
    for r in sim
        .requests()
        .iter()
        .filter(|r| r.path == protocol::STATUS_PATH)
    {
        polls
            .entry(r.req_id.clone().unwrap_or_default())
            .or_default()
            .push(r.at_ms);
    }
    assert_eq!(polls.len(), 4);
    for (id, times) in polls {
        // A 600 ms call polled every 100 ms: several polls, none sooner than the interval after the last.
        assert!(times.len() >= 3, "{id}: {times:?}");
        for w in times.windows(2) {
            assert!(w[1] - w[0] >= 95, "{id}: polls {} ms apart", w[1] - w[0]);
        }
    }
}
