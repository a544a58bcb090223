//! kill -9 in the middle of a campaign, several times: nobody called twice, nothing lost.

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_rerun_never_calls_twice_and_loses_nothing() {
    let scenario = "[[rule]]\nweight = 2\nsteps = [\"made\"]\n[[rule]]\nweight = 1\nsteps = [\"retry\", { status = \"made\", responses = \"Q=1\" }]\n";
    let sim = sim(6, ms(60), ms(60), ms(80), scenario).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 48;
    let input = write(dir.path(), "c.csv", &contacts(n));
    let output = dir.path().join("r.csv");
    let base = base_args(&sim, &input, &output);
    let args = with(&base, &["--lines", "4", "--poll-interval", "25ms"]);

    let mut kills = 0;
    for round in 1..=4 {
        let mut child = spawn(&args);
        // Kill once this run has placed a few calls of its own, while others are still in flight.
        let target = 8 * round;
        wait_while_running(
            &sim,
            &mut child,
            |log| call_requests(log).len() >= target,
            &format!("round {round}: calls placed before the kill"),
        )
        .await;
        child.start_kill().expect("SIGKILL");
        let status = child.wait().await.expect("reaped");
        assert!(!status.success(), "the run was killed, not finished");
        kills += 1;
    }
    let out = run(&args).await;
    let c = code(&out);
    assert!(c == 0 || c == 3, "exit {c}: {}", stderr(&out));

    let log = sim.requests();
    assert_eq!(
        dialed_twice(&log),
        Vec::<String>::new(),
        "a number was requested twice across kills"
    );
    let rows = results(&output);
    assert_eq!(rows.len(), n);
    for r in &rows {
        assert!(
            ["made", "unknown"].contains(&r["status"].as_str()),
            "row {} ended {:?}: {}",
            r["id"],
            r["status"],
            r["detail"]
        );
    }
    // Every call the gateway scheduled has its row: made with the request id the gateway gave, or unknown
    // because the kill came between the request and the journal's record of its id.
    for req in call_requests(&log) {
        let phone = &req.params["phoneno"];
        let row = rows
            .iter()
            .find(|r| r["dialed_number"] == *phone)
            .expect("a row for every dialed number");
        if row["status"] == "made" {
            assert_eq!(Some(row["req_id"].as_str()), req.req_id.as_deref());
        }
    }
    let unknown = rows.iter().filter(|r| r["status"] == "unknown").count();
    assert!(
        unknown <= kills * 4,
        "{unknown} unknown after {kills} kills with 4 lines"
    );
    // Everyone not left unknown was requested exactly once (an unknown may never have reached the gateway).
    let requested = call_requests(&log).len();
    assert!(
        requested <= n && requested >= n - unknown,
        "{requested} requests for {n} contacts, {unknown} unknown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_rerun_reads_every_call_before_writing_it_off() {
    // The calls are made 2.5 s after their request, with their keypad answers. The first run is killed once
    // it has recorded their request ids (it has polled each once), before their 2 s deadline; the rerun comes
    // after the deadline, when the results are on the gateway: they must be read, not written off unread.
    let scenario = "[[rule]]\nsteps = [{ status = \"made\", responses = \"Confirm=1\" }]\n";
    let sim = sim(8, ms(2500), ms(0), ms(10), scenario).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 4;
    let input = write(dir.path(), "c.csv", &contacts(n));
    let output = dir.path().join("r.csv");
    let base = base_args(&sim, &input, &output);
    let args = with(
        &base,
        &[
            "--lines",
            "8",
            "--poll-interval",
            "500ms",
            "--poll-timeout",
            "2s",
        ],
    );
    let mut child = spawn(&args);
    wait_while_running(
        &sim,
        &mut child,
        |log| {
            let polled: std::collections::HashSet<_> = log
                .iter()
                .filter(|r| r.outcome == "no-attempt")
                .map(|r| r.req_id.clone())
                .collect();
            polled.len() >= n
        },
        "every call polled once",
    )
    .await;
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");
    let killed_at = sim.requests().len();
    // The gateway makes the calls (2.5 s after their requests), and the poll deadline passes meanwhile.
    tokio::time::timeout(PATIENCE, async {
        while sim.calls_final() < n {
            tokio::time::sleep(ms(50)).await;
        }
    })
    .await
    .expect("the gateway made the calls");
    let out = run(&args).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rows = results(&output);
    for r in &rows {
        assert_eq!(r["status"], "made", "row {}: {}", r["id"], r["detail"]);
        assert_eq!(r["responses"], "Confirm=1");
    }
    // Every record was read as final before it was removed.
    let log = sim.requests();
    for req in call_requests(&log) {
        let id = req.req_id.as_deref();
        let later: Vec<_> = log[killed_at..]
            .iter()
            .filter(|r| r.req_id.as_deref() == id)
            .collect();
        let read = later
            .iter()
            .position(|r| r.path == ivr_campaign::gateway::protocol::STATUS_PATH && r.is_final);
        let removed = later
            .iter()
            .position(|r| r.path == ivr_campaign::gateway::protocol::REMOVE_PATH);
        assert!(
            matches!((read, removed), (Some(a), Some(b)) if a < b),
            "{id:?}: read {read:?}, removed {removed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_attempts_never_adds_a_call() {
    // Everyone fails the first call and answers the recall. Killed three times, then run to the end.
    let scenario = "[[rule]]\nsteps = [{ status = \"failed\", notes = \"No Answer\" }]\nrecalls = [[{ status = \"made\", responses = \"Q=1\" }]]\n";
    let sim = sim(8, ms(40), ms(40), ms(10), scenario).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 16;
    let input = write(dir.path(), "c.csv", &contacts(n));
    let output = dir.path().join("r.csv");
    let base = base_args(&sim, &input, &output);
    let args = with(
        &base,
        &[
            "--lines",
            "4",
            "--poll-interval",
            "25ms",
            "--recall-on",
            "failed",
            "--recall-after",
            "300ms",
            "--max-attempts",
            "3",
        ],
    );
    for round in 1..=3 {
        let mut child = spawn(&args);
        let target = 7 * round;
        wait_while_running(
            &sim,
            &mut child,
            |log| call_requests(log).len() >= target,
            &format!("round {round}: calls placed before the kill"),
        )
        .await;
        child.start_kill().expect("SIGKILL");
        child.wait().await.expect("reaped");
    }
    let out = run(&args).await;
    assert!([0, 3].contains(&code(&out)), "{}", stderr(&out));
    let log = sim.requests();
    let mut by_number: std::collections::HashMap<String, Vec<&ivr_campaign::simulator::Recorded>> =
        Default::default();
    for r in call_requests(&log) {
        by_number
            .entry(r.params["phoneno"].clone())
            .or_default()
            .push(r);
    }
    for (number, calls) in &by_number {
        assert!(calls.len() <= 2, "{number} called {} times", calls.len());
        // A second call only after the first was read as final: never two calls open for one person, and
        // never a recall of a call whose fate is unknown.
        if let [first, second] = calls.as_slice() {
            let read_final = log.iter().any(|r| {
                r.path == ivr_campaign::gateway::protocol::STATUS_PATH
                    && r.req_id == first.req_id
                    && r.is_final
                    && r.seq < second.seq
            });
            assert!(
                read_final,
                "{number}: recalled before its first call was read as final"
            );
        }
    }
    for r in results(&output) {
        assert!(
            ["made", "unknown"].contains(&r["status"].as_str()),
            "row {}: {} ({})",
            r["id"],
            r["status"],
            r["detail"]
        );
    }
}
