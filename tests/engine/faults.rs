//! Gateway faults on virtual time: status that cannot be read around the deadline, a window that closes
//! during an outage, slow answers, the rate across an outage. (Virtual time: what a loaded machine does to
//! wall-clock spacing cannot change what is asserted.)

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
        Ending::WorkLeft,
        "not an outage stop, and not a completed run: {:?}",
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

#[tokio::test(start_paused = true)]
async fn slow_answers_past_the_timeout_are_unknown_for_calls_and_retried_for_polls() {
    let sim = sim(
        8,
        ms(10),
        ms(10),
        ms(10),
        "seed = 9\n[faults]\nslow = \"900ms\"\nslow-rate = 0.2\n",
    )
    .await;
    let c = Campaign::new(&contacts(20));
    let mut args = c.args(&sim);
    args.request_timeout = Some("300ms".into());
    let s = run(args).await;
    let rows = c.results();
    let log = sim.requests();
    // A call request answered too late to read is `unknown`, never requested again.
    let mut numbers: Vec<&str> = log
        .iter()
        .filter(|r| r.path == protocol::CALL_PATH)
        .map(|r| r.params["phoneno"].as_str())
        .collect();
    let requested = numbers.len();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), requested, "a number was requested twice");
    let answered = call_requests(&log).len();
    let stopped = s.exit_code() == 76;
    for r in &rows {
        let ok = match r["status"].as_str() {
            "made" | "unknown" => true,
            // Three unreadable answers in a row stop the run (exit 76); the rest are left for a person, and a
            // call still on the gateway then is polled by the next run.
            "not_attempted" | "in_progress" => stopped,
            _ => false,
        };
        assert!(ok, "{}: {} ({})", r["status"], r["detail"], s.line());
    }
    let unknown = rows.iter().filter(|r| r["status"] == "unknown").count();
    assert!(unknown >= 1, "a slow call request timed out: {}", s.line());
    // Each request was acted on (a slow gateway answers late, it does not forget): those answered too late
    // are `unknown`, and slow polls are retried until every call answered in time is made.
    let made = rows.iter().filter(|r| r["status"] == "made").count();
    let open = rows.iter().filter(|r| r["status"] == "in_progress").count();
    assert_eq!(answered, requested);
    assert_eq!(made + unknown + open, requested, "{}", s.line());
    let slow_polls = s.poll_errors;
    assert!(
        slow_polls >= 1,
        "a slow poll timed out and was retried: {}",
        s.line()
    );
    assert!([3, 76].contains(&s.exit_code()), "{}", s.line());
}

#[tokio::test(start_paused = true)]
async fn requests_held_back_by_an_outage_still_keep_to_the_rate() {
    let sim = std::sync::Arc::new(sim(8, ms(5), ms(5), ms(5), "").await);
    let c = Campaign::new(&contacts(10));
    let mut args = c.args(&sim);
    args.rate = Some("2/s".into());
    args.lines = Some("8".into());
    let outage = sim.clone();
    let run = tokio::spawn(run(args));
    tokio::time::timeout(
        Duration::from_secs(600),
        outage.wait_for(|log| call_requests(log).len() >= 2),
    )
    .await
    .expect("calls before the outage");
    // While the gateway is away, contacts keep being handed out at 2/s and wait for it.
    outage.go_away();
    tokio::time::sleep(Duration::from_secs(3)).await;
    outage.come_back().await.expect("listen again");
    let s = run.await.expect("the run completes");
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let times: Vec<Duration> = call_requests(&sim.requests())
        .iter()
        .map(|r| r.arrived)
        .collect();
    assert_eq!(times.len(), 10);
    // At 2/s with a burst of 1, never more than 3 call requests in any second, outage or not.
    let most = busiest(&times, Duration::from_secs(1));
    assert!(most <= 3, "{most} requests in one second: {times:?}");
}

#[tokio::test(start_paused = true)]
async fn no_such_record_between_unreadable_answers_is_not_in_a_row() {
    // A gateway restarting: "no such record", then a 500 or its "starting" page, several times over, then the
    // record is back. Three "no such record" answers are not three in a row: the made call is kept.
    let scenario = r#"
[[rule]]
numbers = ["+16465551000"]
polls = ["missing", "error", "missing", "garbage", "missing", "error", "missing"]
steps = [{ status = "made", responses = "Confirm=1" }]
[[rule]]
numbers = ["+16465551001"]
polls = ["missing", "missing", "missing"]
steps = ["made"]
"#;
    let sim = sim(4, ms(50), ms(50), ms(10), scenario).await;
    let c = Campaign::new(&contacts(2));
    let s = run(c.args(&sim)).await;
    let rows = c.results();
    assert_eq!(rows[0]["status"], "made", "{}", rows[0]["detail"]);
    assert_eq!(rows[0]["responses"], "Confirm=1");
    // Three in a row still mean the record is gone.
    assert_eq!(rows[1]["status"], "error", "{}", rows[1]["detail"]);
    assert_eq!(s.exit_code(), 3, "{}", s.line());
}

#[tokio::test(start_paused = true)]
async fn three_lost_answers_in_a_row_stop_the_run_for_a_person_to_look() {
    // The gateway schedules every call and the connection closes before its answer: each contact may have
    // been called. A rerun would only add more such people, so the run stops with exit 76, not 75.
    let sim = sim(8, ms(5), ms(5), ms(5), "[faults]\ncall-drop = 1.0\n").await;
    let c = Campaign::new(&contacts(6));
    let mut args = c.args(&sim);
    args.lines = Some("1".into());
    let s = run(args).await;
    assert_eq!(s.exit_code(), 76, "{}", s.line());
    assert!(
        s.ending
            .message()
            .is_some_and(|m| m.contains("3 call requests in a row")),
        "{:?}",
        s.ending
    );
    let rows = c.results();
    assert!(
        rows[..3].iter().all(|r| r["status"] == "unknown"),
        "{rows:?}"
    );
    assert!(rows[3..].iter().all(|r| r["status"] == "not_attempted"));
    assert_eq!(sim.requests().len(), 3, "no request after the third");
}
