//! Gateway faults on virtual time: status that cannot be read around the deadline, a window that closes
//! during an outage.

use std::time::Duration;

use ivr_campaign::engine::Ending;
use ivr_campaign::gateway::protocol;
use jiff::Timestamp;

use crate::*;

#[tokio::test(start_paused = true)]
async fn status_that_cannot_be_read_never_writes_a_call_off() {
    // Every status poll is answered 500. The deadline passes, but nothing has said "not final": the call stays
    // open (bounded by max-outage) and its record stays on the gateway for the next run to read.
    let sim = sim(4, ms(50), ms(50), ms(10), "[faults]\nstatus-error = 1.0\n").await;
    let c = Campaign::new(&contacts(2));
    let mut args = c.args(&sim);
    args.poll_timeout = Some("1s".into());
    args.max_outage = Some("30s".into());
    let s = run(args).await;
    assert_eq!(s.exit_code(), 75, "{}", s.line());
    let rows = c.results();
    assert!(
        rows.iter().all(|r| r["status"] == "in_progress"),
        "{rows:?}"
    );
    let log = sim.requests();
    assert!(
        !log.iter().any(|r| r.path == protocol::REMOVE_PATH),
        "a record was removed unread"
    );
    // It kept trying for max-outage, not for the poll timeout.
    let last_poll = log
        .iter()
        .filter(|r| r.path == protocol::STATUS_PATH)
        .map(|r| r.arrived)
        .max()
        .unwrap_or_default();
    assert!(
        last_poll >= Duration::from_secs(25),
        "gave up polling at {last_poll:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_window_that_closes_during_an_outage_is_said_to_have_closed() {
    let sim = sim(4, ms(50), ms(50), ms(10), "").await;
    sim.go_away();
    let c = Campaign::new(&contacts(2));
    let mut args = c.args(&sim);
    // 16:40 in New York: ten minutes left to call, then the window closes with the gateway still down.
    args.window = Some("09:00-17:00".into());
    args.timezone = Some("America/New_York".into());
    args.firstocc = Some("5".into());
    args.call_length = Some("5m".into());
    args.max_outage = Some("2h".into());
    let start: Timestamp = "2026-12-02T21:40:00Z".parse().expect("timestamp");
    let s = run_at(args, start).await;
    assert_eq!(s.exit_code(), 75, "{}", s.line());
    assert_eq!(
        s.ending,
        Ending::Completed,
        "not an outage stop: {:?}",
        s.ending
    );
    for r in c.results() {
        assert_eq!(r["status"], "not_attempted");
        assert!(
            r["detail"].contains("outside the calling window"),
            "{}",
            r["detail"]
        );
    }
}
