//! The gateway misbehaving in each way a real one does, asserted from what it saw: nobody is scheduled twice,
//! refused requests are retried, lost answers end `unknown`, and an outage is survived or stopped cleanly.

use std::time::Duration;

use crate::helpers::*;

fn made_all(rows: &[std::collections::HashMap<String, String>]) -> bool {
    rows.iter().all(|r| r["status"] == "made")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_survives_the_gateway_going_away_and_coming_back() {
    let sim = sim(8, ms(20), ms(20), ms(20), "").await;
    let c = Campaign::new(&sim, &contacts(30));
    let base = c.base();
    let args = with(&base, &["--lines", "4", "--rate", "40/s"]);
    let mut child = spawn(&args);
    wait_while_running(
        &sim,
        &mut child,
        |log| call_requests(log).len() >= 8,
        "calls placed before the outage",
    )
    .await;
    sim.go_away();
    // The outage itself lasts a while; this is the fault, not a synchronisation.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = sim.requests().len();
    sim.come_back().await.expect("listen again");
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("finishes")
        .expect("status");
    assert_eq!(status.code(), Some(0));
    let log = sim.requests();
    assert!(log.len() > during, "requests resumed after the outage");
    assert_eq!(dialed_twice(&log), Vec::<String>::new());
    assert_eq!(call_requests(&log).len(), 30);
    assert!(
        made_all(&c.results()),
        "nobody was marked failed or error by the outage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_past_max_outage_stops_cleanly_and_a_rerun_finishes() {
    let sim = sim(8, ms(20), ms(20), ms(20), "").await;
    let c = Campaign::new(&sim, &contacts(20));
    let base = c.base();
    let args = with(
        &base,
        &["--lines", "2", "--rate", "20/s", "--max-outage", "1s"],
    );
    let mut child = tokio::process::Command::new(bin())
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    wait_while_running(
        &sim,
        &mut child,
        |log| call_requests(log).len() >= 5,
        "calls placed before the outage",
    )
    .await;
    sim.go_away();
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("stops")
        .expect("output");
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unreachable for longer than max-outage")
    );
    let rows = c.results();
    assert_eq!(rows.len(), 20);
    assert!(rows.iter().any(|r| r["status"] == "not_attempted"));
    for r in &rows {
        assert!(
            ["made", "in_progress", "not_attempted"].contains(&r["status"].as_str()),
            "row {}: {} ({})",
            r["id"],
            r["status"],
            r["detail"]
        );
    }

    sim.come_back().await.expect("listen again");
    let again = run(&args).await;
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(made_all(&c.results()));
    assert_eq!(dialed_twice(&sim.requests()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_answered_503_are_retried_and_scheduled_once() {
    let sim = sim(
        8,
        ms(10),
        ms(10),
        ms(10),
        "seed = 11\n[faults]\ncall-unavailable = 0.3\n",
    )
    .await;
    let c = Campaign::new(&sim, &contacts(30));
    let out = c.run(&["--request-retries", "8"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let log = sim.requests();
    let refused: Vec<&str> = log
        .iter()
        .filter(|r| r.outcome == "unavailable")
        .map(|r| r.params["phoneno"].as_str())
        .collect();
    assert!(refused.len() >= 5, "the fault fired: {}", refused.len());
    let scheduled = call_requests(&log);
    for number in refused {
        assert_eq!(
            scheduled
                .iter()
                .filter(|r| r.params["phoneno"] == number)
                .count(),
            1,
            "{number}"
        );
    }
    assert_eq!(dialed_twice(&log), Vec::<String>::new());
    assert!(made_all(&c.results()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_beyond_the_retry_budget_end_error_with_the_gateways_words() {
    let sim = sim(8, ms(10), ms(10), ms(10), "[faults]\ncall-refused = 1.0\n").await;
    let c = Campaign::new(&sim, &contacts(1));
    let out = c.run(&["--request-retries", "2"]).await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let rows = c.results();
    assert_eq!(rows[0]["status"], "error");
    assert!(rows[0]["detail"].contains("400"), "{}", rows[0]["detail"]);
    assert!(
        rows[0]["detail"].contains("the scheduler refused"),
        "{}",
        rows[0]["detail"]
    );
    let tries = sim
        .requests()
        .iter()
        .filter(|r| r.outcome == "rejected")
        .count();
    assert_eq!(tries, 3, "one request and two retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_end_unknown_and_are_never_redialed_unless_asked() {
    // Every fourth call is scheduled and its answer lost: never three in a row, so the run goes on.
    let dropped_numbers: Vec<String> = (3..30)
        .step_by(4)
        .map(|i| format!("\"+1646555{:04}\"", 1000 + i))
        .collect();
    let scenario = format!(
        "[[rule]]\nnumbers = [{}]\nsteps = [\"made\"]\nreply = \"drop\"\n",
        dropped_numbers.join(", ")
    );
    let sim = sim(8, ms(10), ms(10), ms(10), &scenario).await;
    let c = Campaign::new(&sim, &contacts(30));
    let base = c.base();
    let out = run(&with(&base, &[])).await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let log = sim.requests();
    let dropped: Vec<String> = log
        .iter()
        .filter(|r| r.outcome == "dropped")
        .map(|r| r.params["phoneno"].clone())
        .collect();
    assert!(dropped.len() >= 4, "the fault fired: {}", dropped.len());
    let rows = c.results();
    for r in &rows {
        let lost = dropped.contains(&r["dialed_number"]);
        assert_eq!(
            r["status"] == "unknown",
            lost,
            "row {}: {} / dropped {lost}",
            r["id"],
            r["status"]
        );
    }
    assert_eq!(dialed_twice(&log), Vec::<String>::new());

    // A rerun leaves them alone.
    let before = call_requests(&sim.requests()).len();
    assert_eq!(code(&run(&with(&base, &[])).await), 3);
    assert_eq!(call_requests(&sim.requests()).len(), before);

    // The old flag on `run` is refused, so a cron line that keeps it can never redial by itself.
    let old = run(&with(&base, &["--redial-unknown"])).await;
    assert_eq!(code(&old), 64, "{}", stderr(&old));
    assert!(stderr(&old).contains("redial-unknown"), "{}", stderr(&old));
    assert_eq!(call_requests(&sim.requests()).len(), before);
    // Only the explicit one-off command marks them; the next run calls them, and nobody else. (The gateway
    // is a healthy one this time.)
    let output_s = c.output.display().to_string();
    let mark = run(&["redial-unknown", "--output", &output_s]).await;
    assert_eq!(code(&mark), 0, "{}", stderr(&mark));
    let said = String::from_utf8_lossy(&mark.stdout).into_owned();
    assert!(
        said.contains(&format!(
            "{} contact(s) will be called again",
            dropped.len()
        )),
        "{said}"
    );
    let healthy = crate::helpers::sim(8, ms(10), ms(10), ms(10), "").await;
    let url = healthy.url();
    let healthy_base = on_gateway(&base, &url);
    let again = run(&with(&healthy_base, &[])).await;
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    // Running the same command again does not repeat the redial.
    let later = run(&with(&healthy_base, &[])).await;
    assert_eq!(code(&later), 0, "{}", stderr(&later));
    let after = healthy.requests();
    let redialed: Vec<&str> = call_requests(&after)
        .iter()
        .map(|r| r.params["phoneno"].as_str())
        .collect();
    let mut want: Vec<&str> = dropped.iter().map(String::as_str).collect();
    let mut got = redialed.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    // The action is in the journal, with its time and how many contacts it moved.
    let journal = rusqlite::Connection::open(c.dir.path().join("r.csv.state/journal.sqlite"))
        .expect("journal");
    let (action, moved, at): (String, i64, i64) = journal
        .query_row("SELECT action, contacts, at FROM actions", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("one journaled action");
    assert_eq!(
        (action.as_str(), moved),
        ("redial-unknown", dropped.len() as i64)
    );
    assert!(at > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_errors_and_garbage_are_polled_through_and_counted() {
    let sim = sim(
        8,
        ms(30),
        ms(30),
        ms(30),
        "seed = 3\n[faults]\nstatus-error = 0.25\nstatus-garbage = 0.25\n",
    )
    .await;
    let c = Campaign::new(&sim, &contacts(20));
    let out = c.run(&["--poll-interval", "10ms"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(made_all(&c.results()));
    let log = sim.requests();
    let bad = log
        .iter()
        .filter(|r| r.outcome == "status-error" || r.outcome == "status-garbage")
        .count();
    assert!(bad >= 5, "the faults fired: {bad}");
    // The summary counts them.
    let err = stderr(&out);
    assert!(err.contains(&format!("({bad} failed)")), "{err}");
    assert_eq!(dialed_twice(&log), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restart_that_forgets_records_ends_those_calls_error() {
    // Calls never finish on their own, so every call placed before the restart is forgotten by it.
    let sim = sim(
        8,
        ms(10),
        ms(10),
        ms(10),
        "[[rule]]\nnumbers = [\"+1646555100?\"]\nsteps = []\n",
    )
    .await;
    let c = Campaign::new(&sim, &contacts(14));
    let args = c.base();
    let mut child = spawn(with(&args, &["--lines", "20"]));
    // The first ten numbers hang: wait until all ten are placed and polled, and the other four are finished
    // and removed.
    wait_while_running(
        &sim,
        &mut child,
        |log| {
            call_requests(log).len() >= 14
                && log.iter().filter(|r| r.outcome == "no-attempt").count() >= 10
                && log.iter().filter(|r| r.outcome == "removed").count() >= 4
        },
        "the hanging calls polled and the others removed",
    )
    .await;
    sim.restart().await.expect("restart");
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("finishes")
        .expect("status");
    assert_eq!(status.code(), Some(3));
    let rows = c.results();
    for r in &rows[..10] {
        assert_eq!(r["status"], "error", "{}", r["detail"]);
        assert!(r["detail"].contains("no record"));
    }
    assert!(made_all(&rows[10..]));
    assert_eq!(dialed_twice(&sim.requests()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_calls_in_progress_and_a_rerun_completes() {
    let sim = sim(8, ms(400), ms(400), ms(10), "").await;
    let c = Campaign::new(&sim, &contacts(12));
    let base = c.base();
    let args = with(&base, &["--lines", "3", "--poll-interval", "50ms"]);
    let child = tokio::process::Command::new(bin())
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let pid = child.id().expect("pid");
    sim.wait_for(|log| call_requests(log).len() >= 3).await;
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("stops")
        .expect("output");
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = c.results();
    let made = rows.iter().filter(|r| r["status"] == "made").count();
    let requested = call_requests(&sim.requests()).len();
    // Every call placed before the signal was followed to its end; nothing new was dialed after it.
    assert_eq!(made, requested, "drained calls are final");
    assert!(
        rows.iter()
            .all(|r| r["status"] == "made" || r["status"] == "not_attempted")
    );
    assert!(requested < 12);

    let again = run(&args).await;
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(made_all(&c.results()));
    assert_eq!(dialed_twice(&sim.requests()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_at_once_and_the_rerun_polls_what_was_placed() {
    use tokio::io::AsyncBufReadExt;
    // Six-second calls: a drain would wait for them; the second signal must not.
    let sim = sim(8, ms(3000), ms(3000), ms(10), "").await;
    let c = Campaign::new(&sim, &contacts(6));
    let base = c.base();
    let args = with(
        &base,
        &[
            "--lines",
            "3",
            "--poll-interval",
            "50ms",
            "--drain-timeout",
            "60s",
        ],
    );
    let mut child = tokio::process::Command::new(bin())
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let pid = child.id().expect("pid").to_string();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    // Polled means the request id is durable.
    sim.wait_for(|log| log.iter().filter(|r| r.outcome == "no-attempt").count() >= 3)
        .await;
    let term = || {
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
    };
    assert!(term().success());
    // Wait for the runner to say it is draining, then signal again.
    loop {
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("a log line")
            .expect("read");
        let line = line.expect("the runner logs the first stop before exiting");
        if line.contains("stop requested") {
            break;
        }
    }
    assert!(term().success());
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("stops")
        .expect("status");
    assert_eq!(status.code(), Some(75));
    // It stopped while the calls were still going on the gateway: it did not drain them.
    assert_eq!(sim.calls_final(), 0, "it drained instead of stopping");
    let rows = c.results();
    let statuses: Vec<&str> = rows.iter().map(|r| r["status"].as_str()).collect();
    assert_eq!(
        statuses,
        [
            "in_progress",
            "in_progress",
            "in_progress",
            "not_attempted",
            "not_attempted",
            "not_attempted"
        ]
    );

    // The rerun polls the three calls already placed (never requesting them again) and dials the rest.
    let again = run(&args).await;
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(made_all(&c.results()));
    assert_eq!(dialed_twice(&sim.requests()), Vec::<String>::new());
    assert_eq!(call_requests(&sim.requests()).len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_do_not_prove_nothing_was_scheduled_are_never_redialed() {
    // Each of these calls was scheduled; its answer says so only in a way the runner cannot read.
    let scenario = r#"
[[rule]]
numbers = ["+16465551000"]
steps = ["made"]
reply = "error"
[[rule]]
numbers = ["+16465551002"]
steps = ["made"]
reply = "bad-gateway"
[[rule]]
numbers = ["+16465551004"]
steps = ["made"]
reply = "reworded"
"#;
    let sim = sim(8, ms(5), ms(5), ms(5), scenario).await;
    let c = Campaign::new(&sim, &contacts(6));
    let out = c.run(&["--lines", "1"]).await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(dialed_twice(&sim.requests()), Vec::<String>::new());
    let rows = c.results();
    // Readable answers in between: three unreadable ones, but not in a row, so the run goes on.
    for (i, why) in [(0, "HTTP 500"), (2, "HTTP 502"), (4, "no [ReqId=")] {
        assert_eq!(rows[i]["status"], "unknown", "row {}", i + 1);
        assert!(rows[i]["detail"].contains(why), "{}", rows[i]["detail"]);
        assert!(rows[i]["detail"].contains("may have been scheduled"));
    }
    for i in [1, 3, 5] {
        assert_eq!(rows[i]["status"], "made", "row {}", i + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_answers_cannot_be_read_stops_the_run_after_three() {
    // A gateway release that words its page differently: every call is scheduled, no answer has an id.
    let sim = sim(8, ms(5), ms(5), ms(5), "[faults]\ncall-reworded = 1.0\n").await;
    let c = Campaign::new(&sim, &contacts(10));
    let out = c.run(&["--lines", "1"]).await;
    assert_eq!(code(&out), 76, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("3 call requests in a row left their contacts unknown"),
        "{}",
        stderr(&out)
    );
    assert_eq!(call_requests(&sim.requests()).len(), 3);
    let rows = c.results();
    assert!(rows[..3].iter().all(|r| r["status"] == "unknown"));
    assert!(rows[3..].iter().all(|r| r["status"] == "not_attempted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_requests_are_in_flight_leaves_nobody_unknown() {
    // Every answer takes 1.5 s. The run is stopped at once while four requests wait for theirs: it records
    // what the gateway answered instead of calling them unknown.
    let sim = sim(8, ms(5), ms(5), ms(5), "[faults]\nslow = \"1500ms\"\n").await;
    let c = Campaign::new(&sim, &contacts(8));
    let args = c.base();
    let mut child = tokio::process::Command::new(bin())
        .args(with(&args, &["--lines", "4"]))
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    tokio::select! {
        _ = sim.wait_for_calls_in_flight(4) => {}
        _ = tokio::time::sleep(PATIENCE) => panic!("four requests in flight"),
    }
    stop_twice(&mut child).await;
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("stops")
        .expect("status");
    assert_eq!(status.code(), Some(75));
    let rows = c.results();
    let by = |s: &str| rows.iter().filter(|r| r["status"] == s).count();
    assert_eq!(by("unknown"), 0, "{rows:?}");
    assert_eq!(by("in_progress") + by("made"), 4, "{rows:?}");
    assert_eq!(by("not_attempted"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_given_twice_makes_both_contacts_unknown() {
    // The first call rings for a while; the second request (half a second later) gets its id back.
    let scenario = r#"
[[rule]]
numbers = ["+16465551000"]
steps = ["retry", "retry", "made"]
[[rule]]
numbers = ["+16465551001"]
steps = ["made"]
reply = "reuse-id"
"#;
    let sim = sim(8, ms(200), ms(5), ms(300), scenario).await;
    let c = Campaign::new(&sim, &contacts(3));
    let out = c.run(&["--lines", "2", "--rate", "2/s"]).await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("request id another contact already has"),
        "{}",
        stderr(&out)
    );
    let rows = c.results();
    assert_eq!(rows[0]["status"], "unknown", "{}", rows[0]["detail"]);
    assert!(
        rows[0]["detail"].contains("row 2 too"),
        "{}",
        rows[0]["detail"]
    );
    assert_eq!(rows[1]["status"], "unknown", "{}", rows[1]["detail"]);
    assert!(
        rows[1]["detail"].contains("gateway fault"),
        "{}",
        rows[1]["detail"]
    );
    assert_eq!(rows[2]["status"], "made");
    assert_eq!(dialed_twice(&sim.requests()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_pauses_instead_of_burning_the_list() {
    // 40 lines and only 30 file descriptors: some connections cannot be opened. Nothing was sent, so those
    // contacts wait for the breaker, and the run finishes with everyone called once.
    let sim = sim(100, ms(100), ms(50), ms(5), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 80;
    let input = write(dir.path(), "c.csv", &contacts(n));
    let output = dir.path().join("r.csv");
    let args = base_args(&sim, &input, &output);
    let mut argv = vec!["--nofile=30".to_string(), bin()];
    argv.extend(
        with(&args, &["--lines", "40"])
            .iter()
            .map(|s| s.to_string()),
    );
    let out = tokio::time::timeout(
        PATIENCE,
        tokio::process::Command::new("prlimit")
            .args(&argv)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("finishes")
    .expect("prlimit runs");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(results(&output).iter().all(|r| r["status"] == "made"));
    assert_eq!(dialed_twice(&sim.requests()), Vec::<String>::new());
    assert_eq!(call_requests(&sim.requests()).len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_signal_says_what_it_does() {
    use tokio::io::AsyncBufReadExt;
    // The gateway takes 30 s to answer call requests: after the second signal the run waits for those
    // answers; the third leaves them, and the contacts become unknown.
    let sim = sim(
        8,
        ms(5),
        ms(5),
        ms(5),
        "[faults]\nslow = \"30s\"\nslow-rate = 1.0\n",
    )
    .await;
    let c = Campaign::new(&sim, &contacts(3));
    let base = c.base();
    let mut child = tokio::process::Command::new(bin())
        .args(with(&base, &["--request-timeout", "60s"]))
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let pid = child.id().expect("pid").to_string();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    sim.wait_for(|log| call_requests(log).len() >= 3).await;
    let mut said = Vec::new();
    for _ in 0..3 {
        assert!(
            std::process::Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill")
                .success()
        );
        // Each signal's own line, before the next signal.
        loop {
            let line = tokio::time::timeout(PATIENCE, lines.next_line())
                .await
                .expect("a log line")
                .expect("read")
                .expect("the runner logs each signal before exiting");
            if line.contains("signal") {
                said.push(line);
                break;
            }
        }
    }
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("stops")
        .expect("status");
    // Nothing is left for a rerun (every contact is unknown now, for a person to look at): exit 3.
    assert_eq!(status.code(), Some(3));
    assert!(
        said[0].contains("first signal") && said[0].contains("no new calls"),
        "{said:?}"
    );
    assert!(
        said[1].contains("second signal") && said[1].contains("answered"),
        "{said:?}"
    );
    assert!(
        said[2].contains("third signal") && said[2].contains("unknown"),
        "{said:?}"
    );
    let rows = c.results();
    assert!(rows.iter().all(|r| r["status"] == "unknown"), "{rows:?}");
}
