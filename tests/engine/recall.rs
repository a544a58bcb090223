//! The recall policy on virtual time: who is called again, how often, when, and never while a call is open.

use std::collections::HashMap;
use std::time::Duration;

use ivr_campaign::gateway::protocol;
use ivr_campaign::store::State;
use jiff::Timestamp;

use crate::*;

const SCENARIO: &str = r#"
[[rule]]  # no answer twice, then answers
numbers = ["+16465551000"]
steps = [{ status = "failed", notes = "No Answer" }]
recalls = [[{ status = "failed", notes = "No Answer" }], [{ status = "made", responses = "Confirm=1" }]]
[[rule]]  # an answering machine, then a person
numbers = ["+16465551001"]
steps = [{ status = "made", notes = "Message left on answering machine" }]
recalls = [[{ status = "made", responses = "Confirm=1" }]]
[[rule]]  # answers and confirms at once
numbers = ["+16465551002"]
steps = [{ status = "made", responses = "Confirm=1" }]
[[rule]]  # never answers
numbers = ["+16465551003"]
steps = [{ status = "failed", notes = "Line Busy" }]
[[rule]]  # answers, and asks to reschedule rather than confirm
numbers = ["+16465551004"]
steps = [{ status = "made", responses = "Confirm=2" }]
"#;

/// Call requests per number, in order, and the arrival of the status poll that found each call final.
fn calls_by_number(
    log: &[ivr_campaign::simulator::Recorded],
) -> HashMap<String, Vec<(Duration, Duration)>> {
    let mut out: HashMap<String, Vec<(Duration, Duration)>> = HashMap::new();
    for req in call_requests(log) {
        let id = req.req_id.clone();
        let ended = log
            .iter()
            .filter(|r| r.path == protocol::STATUS_PATH && r.is_final && r.req_id == id)
            .map(|r| r.arrived)
            .min()
            .unwrap_or(Duration::MAX);
        out.entry(req.params["phoneno"].clone())
            .or_default()
            .push((req.arrived, ended));
    }
    out
}

#[tokio::test(start_paused = true)]
async fn each_contact_is_called_as_often_as_the_policy_says_and_never_sooner() {
    let sim = sim(8, ms(100), ms(100), ms(10), SCENARIO).await;
    let c = Campaign::new(&contacts(5));
    let mut args = c.args(&sim);
    args.recall_on = Some(vec!["failed".into(), "no-response".into()]);
    args.recall_unless = Some(vec!["Confirm=1".into()]);
    args.recall_after = Some("30m".into());
    args.max_attempts = Some("3".into());
    let s = run(args).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let by = calls_by_number(&sim.requests());
    let times = |n: &str| by.get(n).map_or(0, Vec::len);
    assert_eq!(times("+16465551000"), 3, "failed, failed, made");
    assert_eq!(times("+16465551001"), 2, "machine, then made");
    assert_eq!(times("+16465551002"), 1, "confirmed at once");
    assert_eq!(times("+16465551003"), 3, "max attempts");
    assert_eq!(times("+16465551004"), 3, "never confirmed");
    for (number, calls) in &by {
        for w in calls.windows(2) {
            let ((_, ended), (next, _)) = (w[0], w[1]);
            // Never while the earlier call is open, and not before recall-after has passed since it ended.
            assert!(
                next >= ended + Duration::from_secs(30 * 60),
                "{number}: {calls:?}"
            );
        }
    }
    let rows = c.results();
    let row = |i: usize| rows[i].clone();
    assert_eq!(row(0)["status"], "made");
    assert_eq!(row(0)["calls"], "3");
    assert!(
        row(0)["history"].starts_with("failed ")
            && row(0)["history"].contains("; failed ")
            && row(0)["history"].contains("; made "),
        "{}",
        row(0)["history"]
    );
    assert_eq!(row(3)["status"], "failed");
    assert_eq!(row(3)["calls"], "3");
    assert_eq!(row(4)["status"], "made");
    assert_eq!(row(4)["responses"], "Confirm=2");
    assert!(rows.iter().all(|r| r["recall_at"].is_empty()));
}

#[tokio::test(start_paused = true)]
async fn a_recall_due_after_the_window_closes_is_left_for_the_next_run() {
    let sim = sim(8, ms(100), ms(100), ms(10), SCENARIO).await;
    let c = Campaign::new(&contacts(1));
    let mut args = c.args(&sim);
    args.window = Some("09:00-17:00".into());
    args.timezone_column = None;
    args.firstocc = Some("5".into());
    args.call_length = Some("5m".into());
    args.recall_on = Some(vec!["failed".into()]);
    args.recall_after = Some("1h".into());
    // 16:30 in New York: the first call fails; its recall would be due at 17:30, after the close.
    let late: Timestamp = "2026-12-02T21:30:00Z".parse().expect("timestamp");
    let s = run_at(args.clone(), late).await;
    assert_eq!(s.exit_code(), 75, "{}", s.line());
    assert_eq!(s.recalls_waiting, 1);
    let rows = c.results();
    assert_eq!(rows[0]["status"], "failed");
    assert!(
        rows[0]["recall_at"].starts_with("2026-12-02T22:30"),
        "{}",
        rows[0]["recall_at"]
    );
    assert_eq!(call_requests(&sim.requests()).len(), 1);
    // The next morning, the same command calls again.
    let morning: Timestamp = "2026-12-03T15:00:00Z".parse().expect("timestamp");
    let s = run_at(args, morning).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    assert_eq!(
        call_requests(&sim.requests()).len(),
        3,
        "the second and third calls"
    );
    assert_eq!(c.results()[0]["status"], "made");
}

#[tokio::test(start_paused = true)]
async fn wait_mode_waits_for_the_next_opening_of_a_recall() {
    let sim = sim(8, ms(100), ms(100), ms(10), SCENARIO).await;
    let c = Campaign::new(&contacts(1));
    let mut args = c.args(&sim);
    args.window = Some("09:00-17:00".into());
    args.firstocc = Some("5".into());
    args.call_length = Some("5m".into());
    args.outside_window = Some("wait".into());
    args.recall_on = Some(vec!["failed".into()]);
    args.recall_after = Some("1h".into());
    args.max_attempts = Some("2".into());
    let late: Timestamp = "2026-12-02T21:30:00Z".parse().expect("timestamp");
    let s = run_at(args, late).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let calls = call_requests(&sim.requests())
        .iter()
        .map(|r| r.arrived)
        .collect::<Vec<_>>();
    assert_eq!(calls.len(), 2);
    // The recall went at the next opening: 09:00 the next day, 16.5 hours after the run began.
    assert!(
        calls[1] >= Duration::from_secs(16 * 3600 + 1800),
        "{calls:?}"
    );
    assert_eq!(
        c.results()[0]["status"],
        "failed",
        "the second call failed too (max attempts 2)"
    );
}

#[tokio::test(start_paused = true)]
async fn a_number_suppressed_between_runs_is_not_recalled_and_max_attempts_holds_across_reruns() {
    let sim = sim(8, ms(100), ms(100), ms(10), SCENARIO).await;
    // Rows 1 and 4 never answer.
    let c = Campaign::new("id,phone\n1,646-555-1003\n2,646-555-1000\n");
    let dnc = c.dir.path().join("dnc.txt");
    std::fs::write(&dnc, "").expect("dnc");
    let mut args = c.args(&sim);
    args.window = Some("09:00-17:00".into());
    args.timezone = Some("America/New_York".into());
    args.firstocc = Some("5".into());
    args.call_length = Some("5m".into());
    args.recall_on = Some(vec!["failed".into()]);
    args.recall_after = Some("1h".into());
    args.max_attempts = Some("2".into());
    args.suppress = vec![dnc.clone()];
    let late: Timestamp = "2026-12-02T21:30:00Z".parse().expect("timestamp");
    assert_eq!(run_at(args.clone(), late).await.exit_code(), 75);
    // An opt-out arrives overnight for the second contact.
    std::fs::write(&dnc, "646-555-1000\n").expect("dnc");
    let mut day = "2026-12-03T15:00:00Z"
        .parse::<Timestamp>()
        .expect("timestamp");
    for _ in 0..3 {
        run_at(args.clone(), day).await;
        day += jiff::SignedDuration::from_hours(24);
    }
    let by = calls_by_number(&sim.requests());
    assert_eq!(
        by["+16465551003"].len(),
        2,
        "max attempts 2, whatever the reruns"
    );
    assert_eq!(by["+16465551000"].len(), 1, "suppressed before its recall");
    let rows = c.results();
    assert_eq!(rows[0]["status"], "failed");
    // Its one call failed, and that stays visible: the opt-out refused the recall, not the call.
    assert_eq!(rows[1]["status"], "failed");
    assert!(
        rows[1]["detail"].contains("recall not placed: on suppression list"),
        "{}",
        rows[1]["detail"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_recall_whose_fields_cannot_be_made_keeps_the_last_outcome() {
    let sim = sim(8, ms(100), ms(100), ms(10), SCENARIO).await;
    let c = Campaign::new("id,name,phone\n1,Ann,646-555-1003\n");
    let mut args = c.args(&sim);
    args.window = Some("09:00-17:00".into());
    args.timezone = Some("America/New_York".into());
    args.firstocc = Some("5".into());
    args.call_length = Some("5m".into());
    args.recall_on = Some(vec!["failed".into()]);
    args.recall_after = Some("1h".into());
    let late: Timestamp = "2026-12-02T21:30:00Z".parse().expect("timestamp");
    assert_eq!(run_at(args.clone(), late).await.exit_code(), 75);
    // The next morning's run sends a caller id made from a column that holds no number.
    args.field = vec!["callerid={name}".into()];
    let morning: Timestamp = "2026-12-03T15:00:00Z".parse().expect("timestamp");
    let s = run_at(args, morning).await;
    assert_eq!(call_requests(&sim.requests()).len(), 1, "not recalled");
    let rows = c.results();
    assert_eq!(rows[0]["status"], "failed", "{:?}", rows[0]);
    assert!(
        rows[0]["detail"].contains("Line Busy") && rows[0]["detail"].contains("recall not placed"),
        "{}",
        rows[0]["detail"]
    );
    assert_eq!(
        s.counts.get(&State::Failed).copied(),
        Some(1),
        "{}",
        s.line()
    );
}

#[tokio::test(start_paused = true)]
async fn responses_that_cannot_be_read_for_certain_are_no_reason_to_call_again() {
    const UNSURE: &str = r#"
[[rule]]  # made, but the gateway's records have eight fields: responses uncertain
numbers = ["+16465551000"]
short-records = true
steps = [{ status = "made", responses = "Confirm=1" }]
[[rule]]  # the IVR app spells the answer's name in lower case
numbers = ["+16465551001"]
steps = [{ status = "made", responses = "confirm=1" }]
"#;
    let sim = sim(8, ms(100), ms(100), ms(10), UNSURE).await;
    let c = Campaign::new(&contacts(2));
    let mut args = c.args(&sim);
    args.recall_on = Some(vec!["no-response".into()]);
    args.recall_unless = Some(vec!["Confirm=1".into()]);
    args.recall_after = Some("1m".into());
    args.max_attempts = Some("3".into());
    let s = run(args).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let by = calls_by_number(&sim.requests());
    assert_eq!(
        by["+16465551000"].len(),
        1,
        "an irregular record: no recall"
    );
    assert_eq!(by["+16465551001"].len(), 1, "confirm=1 is Confirm=1");
    let rows = c.results();
    assert_eq!(rows[0]["status"], "made");
    assert!(
        rows[0]["detail"].contains("fields, not 10"),
        "{:?}",
        rows[0]
    );
    assert_eq!(rows[1]["status"], "made");
}

#[tokio::test(start_paused = true)]
async fn an_unresolved_call_is_recalled_only_once_the_gateway_has_stopped_dialing_it() {
    // The gateway keeps retrying the first record; its removal can fail, or the run die before it, so the
    // recall must not count on it.
    let sim = sim_retrying().await;
    let c = Campaign::new(&contacts(1));
    let mut args = c.args(&sim);
    args.firstocc = Some("10".into());
    args.poll_timeout = Some("1m".into());
    args.recall_on = Some(vec!["unresolved".into()]);
    args.recall_after = Some("1m".into());
    args.max_attempts = Some("2".into());
    let s = run(args).await;
    assert_eq!(s.exit_code(), 3, "{}", s.line());
    let requests = call_requests(&sim.requests())
        .into_iter()
        .map(|r| r.arrived)
        .collect::<Vec<_>>();
    assert_eq!(requests.len(), 2, "{requests:?}");
    // firstocc (10 min) + 5 min after the first request, not recall-after (1 min) after it was written off.
    assert!(
        requests[1] >= requests[0] + Duration::from_secs(15 * 60),
        "{requests:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_gateway_that_reuses_the_id_of_a_call_waiting_for_its_recall_is_no_internal_error() {
    const REUSE: &str = r#"
[[rule]]
numbers = ["+16465551000"]
steps = [{ status = "failed", notes = "No Answer" }]
recalls = [[{ status = "made", responses = "Confirm=1" }]]
[[rule]]  # its request id is the previous request's: the first contact's, which waits for a recall
numbers = ["+16465551001"]
reply = "reuse-id"
steps = [{ status = "made", responses = "Confirm=1" }]
"#;
    let sim = sim(8, ms(100), ms(100), ms(10), REUSE).await;
    let c = Campaign::new(&contacts(2));
    let mut args = c.args(&sim);
    args.lines = Some("1".into());
    args.recall_on = Some(vec!["failed".into()]);
    args.recall_after = Some("10m".into());
    args.max_attempts = Some("2".into());
    let s = run(args).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let rows = c.results();
    assert_eq!(rows[0]["status"], "made", "{:?}", rows[0]);
    assert_eq!(rows[0]["calls"], "2");
    assert_eq!(rows[1]["status"], "made", "{:?}", rows[1]);
    assert_eq!(call_requests(&sim.requests()).len(), 3);
}

const ANSWERS: &str = r#"
[[rule]]  # answers, and says no to the appointment
numbers = ["+16465551000", "+16465551001", "+16465551002"]
steps = [{ status = "made", responses = "Confirm=1" }]
[[rule]]  # an answering machine
numbers = ["+16465551003", "+16465551004"]
steps = [{ status = "made", notes = "Message left on answering machine" }]
"#;

#[tokio::test(start_paused = true)]
async fn a_call_whose_recall_is_capped_keeps_its_outcome() {
    let sim = sim(8, ms(100), ms(100), ms(10), ANSWERS).await;
    let c = Campaign::new(&contacts(5));
    let mut args = c.args(&sim);
    args.recall_on = Some(vec!["no-response".into()]);
    args.recall_unless = Some(vec!["Confirm=2".into()]);
    args.recall_after = Some("1m".into());
    args.max_attempts = Some("2".into());
    args.max_calls_per_number = Some("1".into());
    args.per = Some("24h".into());
    let s = run(args).await;
    assert_eq!(call_requests(&sim.requests()).len(), 5, "one call each");
    assert_eq!(s.counts.get(&State::Made).copied(), Some(5), "{}", s.line());
    assert_eq!(s.counts.get(&State::Capped).copied().unwrap_or(0), 0);
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let rows = c.results();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["status"], "made", "row {i}: {r:?}");
        assert_eq!(r["calls"], "1", "row {i}");
        assert!(
            r["detail"].contains("recall") && r["detail"].contains("cap"),
            "row {i}: {}",
            r["detail"]
        );
        assert!(r["recall_at"].is_empty(), "row {i}");
    }
    assert_eq!(rows[0]["responses"], "Confirm=1");
    assert!(
        rows[3]["detail"].contains("answering machine"),
        "{}",
        rows[3]["detail"]
    );
    // `status --json` reads the journal the same way.
    let state = ivr_campaign::settings::default_state_dir(&c.output);
    let status = ivr_campaign::output::status::json(&state).expect("status");
    assert_eq!(status["rows"]["by_status"]["made"], 5, "{status}");
    assert_eq!(status["rows"]["by_status"]["capped"], 0, "{status}");
    // And so does the report.
    let html = ivr_campaign::output::report::build(&state).expect("report");
    assert!(html.contains("Reached<b class=\"ok\">5</b>"), "{html}");
}

#[tokio::test(start_paused = true)]
async fn redialing_an_unknown_recall_says_it_goes_past_max_attempts() {
    let busy = sim(8, ms(100), ms(100), ms(10), SCENARIO).await;
    let c = Campaign::new("id,phone\n1,646-555-1003\n2,646-555-1002\n");
    let mut args = c.args(&busy);
    args.window = Some("09:00-17:00".into());
    args.timezone = Some("America/New_York".into());
    args.firstocc = Some("5".into());
    args.call_length = Some("5m".into());
    args.recall_on = Some(vec!["failed".into()]);
    args.recall_after = Some("1h".into());
    args.max_attempts = Some("2".into());
    let late: Timestamp = "2026-12-02T21:30:00Z".parse().expect("timestamp");
    assert_eq!(run_at(args.clone(), late).await.exit_code(), 75);
    // The next morning the answer to the recall (the second and last call the policy allows) is lost.
    let dropping = sim(
        8,
        ms(100),
        ms(100),
        ms(10),
        "[[rule]]\nreply = \"drop\"\nsteps = [\"made\"]\n",
    )
    .await;
    args.gateway = vec![dropping.url()];
    let morning: Timestamp = "2026-12-03T15:00:00Z".parse().expect("timestamp");
    run_at(args, morning).await;
    assert_eq!(c.results()[0]["status"], "unknown");
    let state = ivr_campaign::settings::default_state_dir(&c.output);
    let done = ivr_campaign::store::journal::redial_unknown(&state, None).expect("redial");
    assert_eq!(done.lines, vec![1]);
    let said = done.message(&state);
    assert!(
        said.contains("row 1 gets call 3") && said.contains("max-attempts (2)"),
        "{said}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_wall_clock_stepped_back_during_the_run_does_not_delay_a_recall() {
    let sim = sim(8, ms(100), ms(100), ms(10), SCENARIO).await;
    let c = Campaign::new(&contacts(1));
    let mut args = c.args(&sim);
    args.recall_on = Some(vec!["failed".into()]);
    args.recall_after = Some("10s".into());
    args.max_attempts = Some("2".into());
    let cfg = ivr_campaign::settings::RunConfig::from_args(args).expect("settings are valid");
    let step = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let clock = ivr_campaign::engine::Clock::stepped_from(Timestamp::now(), step.clone());
    // Two seconds in (the first call has ended and its recall is waiting), the wall clock goes back 10 minutes.
    let stepper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        step.store(-10 * 60 * 1000, std::sync::atomic::Ordering::Relaxed);
    });
    let (_signals, rx) = tokio::sync::watch::channel(ivr_campaign::engine::Stage::Run);
    let s = ivr_campaign::commands::run::run_with_clock(
        cfg,
        rx,
        ivr_campaign::output::progress::Progress::Never,
        clock,
    )
    .await
    .expect("the run completes");
    stepper.await.expect("the step is taken");
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let by = calls_by_number(&sim.requests());
    let calls = &by["+16465551000"];
    assert_eq!(calls.len(), 2, "{calls:?}");
    let ((_, ended), (recalled, _)) = (calls[0], calls[1]);
    assert!(
        ended < Duration::from_secs(2),
        "the step comes while the recall waits: {calls:?}"
    );
    // Recall-after is measured on the monotonic clock: 10 s after the call ended (and a poll interval),
    // not 10 s plus the 10 minutes the wall clock went back.
    assert!(
        recalled >= ended + Duration::from_secs(10) && recalled < ended + Duration::from_secs(12),
        "{calls:?}"
    );
}
