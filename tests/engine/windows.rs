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
async fn after_a_wait_for_the_window_the_rate_holds_from_the_first_request() {
    // The schedule must not restart with a free slot at the opening: the second request leaves a whole
    // interval (3 s at 20/m) after the first, and the first minute holds 20 requests, not 21.
    let sim = sim(30, ms(50), ms(50), ms(10), "").await;
    let c = Campaign::new(&contacts(25));
    let mut args = c.args(&sim);
    args.window = Some("09:00-17:00".into());
    args.timezone = Some("America/New_York".into());
    args.outside_window = Some("wait".into());
    args.call_length = Some("1m".into());
    args.rate = Some("20/m".into());
    args.lines = Some("30".into());
    let s = run_at(args, before_nine_in_new_york()).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let log = sim.requests();
    let times: Vec<Duration> = call_requests(&log).iter().map(|r| r.arrived).collect();
    assert_eq!(times.len(), 25);
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.iter().all(|g| *g >= Duration::from_millis(2_900)),
        "requests closer than the interval: {gaps:?}"
    );
    assert_eq!(busiest(&times, Duration::from_secs(60)), 20, "{times:?}");
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

#[tokio::test(start_paused = true)]
async fn a_zone_missing_from_the_tz_database_is_never_replaced_by_the_campaigns() {
    let sim = sim(4, ms(50), ms(50), ms(10), "").await;
    let mut list = String::from("id,name,phone,tz\n");
    for i in 0..3 {
        list.push_str(&format!(
            "{},P{i},646-555-{:04},America/New_York\n",
            i + 1,
            1000 + i
        ));
    }
    let c = Campaign::new(&list);
    let mut args = c.args(&sim);
    args.window = Some("09:00-17:00".into());
    args.timezone = Some("America/Los_Angeles".into());
    args.timezone_column = Some("tz".into());
    let s = run_at(args.clone(), before_nine_in_new_york()).await;
    assert_eq!(s.exit_code(), 75, "{}", s.line());
    // The first contact's zone is gone from the database (a renamed zone, an older build).
    let journal = rusqlite::Connection::open(c.dir.path().join("r.csv.state/journal.sqlite"))
        .expect("journal");
    journal
        .execute("UPDATE contacts SET tz = 'Mars/Olympus' WHERE row = 0", [])
        .expect("edit");
    drop(journal);
    let ten: Timestamp = "2026-12-02T15:00:00Z".parse().expect("timestamp");
    let s = run_at(args, ten).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let rows = c.results();
    assert_eq!(rows[0]["status"], "invalid");
    assert!(
        rows[0]["detail"].contains("Mars/Olympus"),
        "{}",
        rows[0]["detail"]
    );
    assert!(rows[1..].iter().all(|r| r["status"] == "made"));
    let called: Vec<String> = call_requests(&sim.requests())
        .iter()
        .map(|r| r.params["phoneno"].clone())
        .collect();
    assert!(!called.contains(&"+16465551000".to_string()), "{called:?}");
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_decides_every_row_as_the_run_does() {
    let sim = sim(8, ms(20), ms(20), ms(10), "").await;
    // One earlier campaign on the same ledger called +16465551005 already: it is at its cap.
    let earlier = Campaign::new("id,phone\n1,646-555-1005\n");
    let ledger = earlier.dir.path().join("shared-ledger.sqlite");
    let mut e = earlier.args(&sim);
    e.ledger = Some(ledger.clone());
    e.max_calls_per_number = Some("1".into());
    e.per = Some("24h".into());
    assert_eq!(run(e).await.exit_code(), 0);

    let list = "id,phone,tz\n\
        1,646-555-1000,America/New_York\n\
        2,646-555-1001,America/Los_Angeles\n\
        3,646-555-1000,\n\
        4,12,\n\
        5,646-555-1004,\n\
        6,646-555-1005,\n\
        7,646-555-1006,Asia/Tokyo\n";
    let c = Campaign::new(list);
    let dnc = c.dir.path().join("dnc.txt");
    std::fs::write(&dnc, "646-555-1004\n").expect("dnc");
    let mut args = c.args(&sim);
    args.ledger = Some(ledger);
    args.max_calls_per_number = Some("1".into());
    args.per = Some("24h".into());
    args.suppress = vec![dnc];
    args.window = Some("09:00-17:00".into());
    args.timezone = Some("America/New_York".into());
    args.timezone_column = Some("tz".into());
    // 10:00 in New York: open there, closed in Los Angeles (07:00) and in Tokyo (midnight).
    let ten: Timestamp = "2026-12-02T15:00:00Z".parse().expect("timestamp");
    let cfg = ivr_campaign::settings::RunConfig::from_args(args.clone()).expect("settings");
    let dry = ivr_campaign::commands::validate::run_at(&cfg, ten).expect("dry run");
    let decisions = results(&dry.output);
    let s = run_at(args, ten).await;
    let rows = c.results();
    fn expected(decision: &str) -> &str {
        match decision {
            "would_call" => "made",
            "outside_window" => "not_attempted",
            other => other,
        }
    }
    let got: Vec<(String, String)> = decisions
        .iter()
        .zip(&rows)
        .map(|(d, r)| (expected(&d["decision"]).to_string(), r["status"].clone()))
        .collect();
    for (want, status) in &got {
        assert_eq!(want, status, "{got:?}");
    }
    let statuses: Vec<&str> = rows.iter().map(|r| r["status"].as_str()).collect();
    assert_eq!(
        statuses,
        [
            "made",
            "not_attempted",
            "duplicate",
            "invalid",
            "suppressed",
            "capped",
            "not_attempted"
        ],
        "{}",
        s.line()
    );
}

#[tokio::test(start_paused = true)]
async fn stop_mode_forecast_with_everyone_outside_the_window_says_when_it_opens() {
    let sim = sim(4, ms(50), ms(50), ms(10), "").await;
    let c = Campaign::new(&contacts(3));
    let mut args = c.args(&sim);
    args.window = Some("09:00-17:00".into());
    args.timezone = Some("America/New_York".into());
    // 18:00 in New York: closed for everyone; it opens tomorrow at 09:00 (14:00 UTC).
    let evening: Timestamp = "2026-12-02T23:00:00Z".parse().expect("timestamp");
    let cfg = ivr_campaign::settings::RunConfig::from_args(args).expect("settings");
    let report = ivr_campaign::commands::validate::run_at(&cfg, evening).expect("dry run");
    assert_eq!(report.decisions.get("outside_window"), Some(&3));
    let text = &report.forecast.text;
    assert!(!text.contains("does not open"), "{text}");
    assert!(
        text.contains("3 contacts") && text.contains("Thu 14:00 UTC"),
        "{text}"
    );
    let rows = results(&c.dir.path().join("r.dry-run.csv"));
    assert!(
        rows.iter()
            .all(|r| r["detail"].contains("opens 2026-12-03T14:00:00Z")),
        "{rows:?}"
    );
}
