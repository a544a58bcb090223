//! Calling windows on virtual time: wait mode waits for the opening, stop mode leaves contacts for the next
//! run, and an outage that outlasts the window does not stall the run.

use std::time::Duration;

use jiff::Timestamp;

use crate::*;

/// Wednesday 2026-12-02 08:30 in New York.
fn before_nine_in_new_york() -> Timestamp {
    "2026-12-02T13:30:00Z".parse().expect("timestamp")
}

#[tokio::test(start_paused = true)]
async fn wait_mode_calls_when_the_window_opens_and_not_before() {
    let sim = sim(4, ms(50), ms(50), ms(10), "").await;
    let c = Campaign::new(&contacts(6));
    let mut args = c.args(&sim);
    args.window = Some("09:00-17:00".into());
    args.timezone = Some("America/New_York".into());
    args.outside_window = Some("wait".into());
    args.call_length = Some("1m".into());
    let started = tokio::time::Instant::now();
    let s = run_at(args, before_nine_in_new_york()).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let log = sim.requests();
    let calls = call_requests(&log);
    assert_eq!(calls.len(), 6);
    // The simulator started with the run; the window opens 30 minutes in.
    let opens = Duration::from_secs(30 * 60);
    for r in &calls {
        assert!(
            r.arrived >= opens,
            "called {:?} into the run, before 09:00",
            r.arrived
        );
    }
    assert!(started.elapsed() >= opens);
    assert!(c.results().iter().all(|r| r["status"] == "made"));
}

#[tokio::test(start_paused = true)]
async fn stop_mode_leaves_contacts_outside_their_window_for_the_next_run() {
    let sim = sim(4, ms(50), ms(50), ms(10), "").await;
    let c = Campaign::new(&contacts(3));
    let mut args = c.args(&sim);
    args.window = Some("09:00-17:00".into());
    args.timezone = Some("America/New_York".into());
    let s = run_at(args.clone(), before_nine_in_new_york()).await;
    assert_eq!(s.exit_code(), 75, "{}", s.line());
    assert!(call_requests(&sim.requests()).is_empty());
    for r in c.results() {
        assert_eq!(r["status"], "not_attempted");
        assert!(
            r["detail"].contains("outside the calling window"),
            "{}",
            r["detail"]
        );
    }
    // The same command at 10:00 calls them.
    let ten: Timestamp = "2026-12-02T15:00:00Z".parse().expect("timestamp");
    let s = run_at(args, ten).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    assert_eq!(call_requests(&sim.requests()).len(), 3);
}

#[tokio::test(start_paused = true)]
async fn an_outage_that_outlasts_the_window_does_not_stall_the_run() {
    // The gateway is down when the run starts, and comes back after the window has closed. The contact that
    // was probing it is deferred to the next day's window; the run must then call it, not sit on a probe slot
    // nobody releases until max-outage.
    let sim = std::sync::Arc::new(sim(4, ms(50), ms(50), ms(10), "").await);
    sim.go_away();
    let back = sim.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        back.come_back().await.expect("listen again");
    });
    let c = Campaign::new(&contacts(1));
    let mut args = c.args(&sim);
    // 16:40 in New York: the window closes at 17:00, and the 10-minute margin leaves ten minutes to call.
    args.window = Some("09:00-17:00".into());
    args.timezone = Some("America/New_York".into());
    args.outside_window = Some("wait".into());
    args.firstocc = Some("5".into());
    args.call_length = Some("5m".into());
    args.max_outage = Some("20h".into());
    let start: Timestamp = "2026-12-02T21:40:00Z".parse().expect("timestamp");
    let s = run_at(args, start).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let rows = c.results();
    assert_eq!(rows[0]["status"], "made", "{}", rows[0]["detail"]);
    let calls = call_requests(&sim.requests()).len();
    assert_eq!(calls, 1);
}
