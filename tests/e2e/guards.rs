//! What protects a campaign from its operator's mistakes: the run lock, the journal's binding to its input,
//! and bad flags or files stopping before any call.

use crate::helpers::*;

const NEVER_FINAL: &str = "[[rule]]\nsteps = []\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_state_is_refused_and_the_lock_dies_with_its_process() {
    let sim = sim(8, ms(10), ms(10), ms(10), NEVER_FINAL).await;
    let c = Campaign::new(&sim, &contacts(3));
    let base = c.base();
    let args = with(&base, &["--poll-timeout", "60s"]);
    let mut first = spawn(&args);
    // Polled means its request id is in the journal (polling starts only after that write is durable).
    let polled = |log: &[ivr_campaign::simulator::Recorded]| {
        let ids: std::collections::HashSet<_> = log
            .iter()
            .filter(|r| r.path == ivr_campaign::gateway::protocol::STATUS_PATH)
            .filter_map(|r| r.req_id.clone())
            .collect();
        ids.len() >= 3
    };
    wait_while_running(&sim, &mut first, polled, "the first run's calls polled").await;

    // `status` reads the journal while the run holds it.
    let st = run(&["status", "--output", &c.output.display().to_string()]).await;
    assert_eq!(code(&st), 0, "{}", stderr(&st));
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(
        text.contains("a run is in progress") && text.contains("in_progress"),
        "{text}"
    );

    let second = run(&args).await;
    assert_eq!(code(&second), 75, "{}", stderr(&second));
    let msg = stderr(&second);
    assert!(msg.contains("another ivr-campaign run is"), "{msg}");
    assert_eq!(msg.trim().lines().count(), 1, "one line: {msg}");
    assert_eq!(
        call_requests(&sim.requests()).len(),
        3,
        "the refused run placed no call"
    );

    // The lock is the process's: after SIGKILL the next run goes ahead at once, polls the calls already
    // placed (here: reads each once and gives up on it, its timeout having passed) and dials nobody again.
    first.start_kill().expect("SIGKILL");
    first.wait().await.expect("reaped");
    let third = run(&with(&base, &["--poll-timeout", "40ms"])).await;
    assert_eq!(code(&third), 3, "{}", stderr(&third));
    assert!(c.results().iter().all(|r| r["status"] == "unresolved"));
    assert_eq!(call_requests(&sim.requests()).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_refuses_an_input_whose_rows_changed() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let c = Campaign::new(&sim, &contacts(3));
    let base = c.base();
    assert_eq!(code(&run(&with(&base, &[])).await), 0);
    let before = sim.requests().len();
    write(c.dir.path(), "c.csv", &contacts(4));
    let out = run(&with(&base, &[])).await;
    assert_eq!(code(&out), 78, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("different contact list"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sim.requests().len(), before, "no request of any kind");
    assert_eq!(c.results().len(), 3, "the earlier results are untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_and_files_stop_with_one_line_and_no_call() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let good = write(dir.path(), "good.csv", &contacts(2));
    let no_phone = write(
        dir.path(),
        "nophone.csv",
        "id,name,mobile_number\n1,a,6465551000\n",
    );
    let toml_typo = write(
        dir.path(),
        "typo.toml",
        &format!(
            "input = {:?}\napp = \"x\"\nrat = \"5/s\"\ngateway = {:?}\n",
            good.display().to_string(),
            sim.url()
        ),
    );
    let standing_redial = write(
        dir.path(),
        "redial.toml",
        &format!(
            "input = {:?}\napp = \"x\"\nredial-unknown = true\ngateway = {:?}\n",
            good.display().to_string(),
            sim.url()
        ),
    );
    let wrong_type = write(
        dir.path(),
        "type.toml",
        &format!(
            "input = {:?}\napp = \"x\"\n\nlines = \"four\"\n",
            good.display().to_string()
        ),
    );
    let fifo = dir.path().join("fifo.csv");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    let results_fed_back = write(
        dir.path(),
        "yesterday.csv",
        "id,phone,status,req_id\n1,646-555-1000,failed,17\n",
    );
    let out = dir.path().join("out.csv").display().to_string();
    let good_s = good.display().to_string();
    let url = sim.url();
    let common = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "run",
            "--input",
            &good_s,
            "--output",
            &out,
            "--gateway",
            &url,
            "--app",
            "A",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let missing = dir.path().join("missing.csv").display().to_string();
    let no_phone_s = no_phone.display().to_string();
    let toml_s = toml_typo.display().to_string();
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (common(&["--rate", "0/s"]), 64, "rate must be above zero"),
        (common(&["--rate", "-5/s"]), 64, "rate"),
        (common(&["--rate", "fast"]), 64, "not a rate"),
        (common(&["--lines", "0"]), 64, "--lines: must be at least 1"),
        (common(&["--lines", "-2"]), 64, "--lines"),
        (common(&["--poll-interval", "5"]), 64, "no unit"),
        (
            common(&["--gateway", "http://exa mple"]),
            64,
            "not a gateway URL",
        ),
        (common(&["--default-region", "XX"]), 64, "not a region"),
        (common(&["--bogus"]), 64, "--bogus"),
        (
            vec![
                "run".into(),
                "--input".into(),
                good_s.clone(),
                "--gateway".into(),
                url.clone(),
            ],
            64,
            "no IVR app",
        ),
        (
            vec![
                "run".into(),
                "--input".into(),
                missing.clone(),
                "--app".into(),
                "A".into(),
                "--gateway".into(),
                url.clone(),
            ],
            66,
            "does not exist",
        ),
        (
            vec![
                "run".into(),
                "--input".into(),
                no_phone_s,
                "--app".into(),
                "A".into(),
                "--gateway".into(),
                url.clone(),
            ],
            65,
            "no phone column",
        ),
        (vec!["run".into(), toml_s], 78, "unknown field `rat`"),
        // A TOML error names the line and shows it.
        (
            vec!["run".into(), wrong_type.display().to_string()],
            78,
            "line 4 (lines = \"four\")",
        ),
        // A pipe could be read only once; the list is read several times.
        (
            vec![
                "run".into(),
                "--input".into(),
                fifo.display().to_string(),
                "--app".into(),
                "A".into(),
                "--gateway".into(),
                url.clone(),
            ],
            66,
            "not a regular file",
        ),
        // Yesterday's results fed back as a list would carry two status columns.
        (
            vec![
                "run".into(),
                "--input".into(),
                results_fed_back.display().to_string(),
                "--app".into(),
                "A".into(),
                "--gateway".into(),
                url.clone(),
            ],
            65,
            "is a results file (it has the columns status, req_id",
        ),
        // Crash safety cannot be switched off for good by one line of a campaign file.
        (
            vec!["run".into(), standing_redial.display().to_string()],
            78,
            "redial-unknown is not a setting",
        ),
    ];
    for (args, want, says) in cases {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&argv).await;
        let err = stderr(&o);
        assert_eq!(code(&o), want, "{argv:?}: {err}");
        assert!(err.contains(says), "{argv:?}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{argv:?} printed more than one line: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // A results file that cannot be written is found out before any call, not after the campaign.
    let state = dir.path().join("elsewhere.state").display().to_string();
    let nowhere = dir.path().join("no/such/dir/out.csv").display().to_string();
    let o = run(&[
        "run",
        "--input",
        &good_s,
        "--output",
        &nowhere,
        "--state",
        &state,
        "--gateway",
        &url,
        "--app",
        "A",
    ])
    .await;
    assert_eq!(code(&o), 73, "{}", stderr(&o));
    assert!(stderr(&o).contains("no/such/dir"), "{}", stderr(&o));
    assert!(sim.requests().is_empty(), "no request reached the gateway");
    assert!(
        !dir.path().join("out.csv.state").exists(),
        "no journal was made"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_journal_is_refused_instead_of_calling_everyone_again() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let c = Campaign::new(&sim, &contacts(3));
    let args = c.base();
    let args = with(&args, &[]);
    assert_eq!(code(&run(&args).await), 0);
    let done = std::fs::read(&c.output).expect("results");
    let state = c.dir.path().join("r.csv.state");
    let requests = call_requests(&sim.requests()).len();

    // Someone cleans up the state directory, or the journal is truncated to nothing.
    for damage in ["deleted", "emptied"] {
        if damage == "deleted" {
            std::fs::remove_dir_all(&state).expect("rm state");
        } else {
            std::fs::create_dir_all(&state).expect("mkdir");
            std::fs::write(state.join("journal.sqlite"), b"").expect("truncate");
        }
        let o = run(&args).await;
        let err = stderr(&o);
        assert_eq!(code(&o), 78, "{damage}: {err}");
        assert!(
            err.contains("journal") && err.contains("missing or empty"),
            "{err}"
        );
        assert!(err.contains(&c.output.display().to_string()), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert_eq!(
            call_requests(&sim.requests()).len(),
            requests,
            "{damage}: a call was placed"
        );
        assert_eq!(
            std::fs::read(&c.output).expect("results"),
            done,
            "the results were touched"
        );
    }

    // The results re-saved by a spreadsheet (`;` in a European locale, a header changed, UTF-16) are still
    // results: without their journal the run is refused, never a new journal that calls everyone again.
    std::fs::remove_dir_all(&state).expect("rm state");
    let text = String::from_utf8(done.clone()).expect("utf-8 results");
    let utf16: Vec<u8> = [0xff, 0xfe]
        .into_iter()
        .chain(text.encode_utf16().flat_map(u16::to_le_bytes))
        .collect();
    for (resave, bytes) in [
        ("semicolons", text.replace(',', ";").into_bytes()),
        (
            "header renamed",
            text.replacen("phone", "Phone number", 1).into_bytes(),
        ),
        ("utf-16", utf16),
    ] {
        std::fs::write(&c.output, &bytes).expect("re-save");
        let o = run(&args).await;
        let err = stderr(&o);
        assert_eq!(code(&o), 78, "{resave}: {err}");
        assert!(err.contains("missing or empty"), "{resave}: {err}");
        assert_eq!(
            call_requests(&sim.requests()).len(),
            requests,
            "{resave}: a call was placed"
        );
        assert_eq!(
            std::fs::read(&c.output).expect("results"),
            bytes,
            "{resave}: the file was touched"
        );
    }
    // Moved away, as the message says, the campaign starts over.
    std::fs::rename(&c.output, c.dir.path().join("old.csv")).expect("move away");
    assert_eq!(code(&run(&args).await), 0);
    assert_eq!(call_requests(&sim.requests()).len(), requests * 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_deleted_during_the_run_stops_it_with_its_results_written() {
    // Slow answers keep the run going while the state directory is deleted under it.
    let sim = sim(8, ms(5), ms(5), ms(5), "[faults]\nslow = \"400ms\"\n").await;
    let c = Campaign::new(&sim, &contacts(10));
    let args = c.base();
    let args = with(&args, &["--lines", "1"]);
    let mut child = tokio::process::Command::new(bin())
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    wait_while_running(
        &sim,
        &mut child,
        |log| {
            log.iter()
                .any(|r| r.path == ivr_campaign::gateway::protocol::REMOVE_PATH)
        },
        "one call finished",
    )
    .await;
    std::fs::remove_dir_all(c.dir.path().join("r.csv.state")).expect("rm state");
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("stops")
        .expect("output");
    assert_eq!(out.status.code(), Some(74), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("deleted or replaced"),
        "{}",
        stderr(&out)
    );
    // The calls made before it noticed are in the results, from the journal the process still held.
    let rows = c.results();
    assert_eq!(rows.len(), 10);
    let made = rows.iter().filter(|r| r["status"] == "made").count();
    assert!(made >= 1, "{rows:?}");
    let requested = call_requests(&sim.requests()).len();
    assert!(requested < 10, "it kept calling: {requested}");
    assert_eq!(
        made + rows.iter().filter(|r| r["status"] == "in_progress").count(),
        requested,
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_that_would_wreck_a_campaign_are_refused_or_stop_it_at_once() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let c = Campaign::new(&sim, &contacts(5));
    let base = c.base();
    // --output naming the list would overwrite it.
    let input_s = c.input.display().to_string();
    let o = run(&with(&base, &["--output", &input_s])).await;
    assert_eq!(code(&o), 64, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("would be overwritten"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&c.input).expect("list"),
        contacts(5)
    );
    // A poll timeout shorter than the poll interval: every call written off before it is read.
    for t in ["0s", "20ms"] {
        let o = run(&with(&base, &["--poll-timeout", t])).await;
        assert_eq!(code(&o), 64, "{t}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("must be at least the poll interval"),
            "{}",
            stderr(&o)
        );
    }
    assert!(sim.requests().is_empty());
    // A gateway URL that ends in a handler path: the handler answers 404. One request, then a stop.
    let wrong = format!("{}/ocall/callreqHandler.jsp", sim.url());
    let o = run(&with(&on_gateway(&base, &wrong), &["--lines", "1"])).await;
    assert_eq!(code(&o), 78, "{}", stderr(&o));
    assert!(stderr(&o).contains("base URL"), "{}", stderr(&o));
    assert_eq!(sim.requests().len(), 1);
    assert!(c.results().iter().all(|r| r["status"] == "not_attempted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_ahead_log_deleted_during_the_run_loses_nothing_even_to_a_kill() {
    use tokio::io::AsyncBufReadExt;
    let sim = sim(8, ms(5), ms(5), ms(5), "[faults]\nslow = \"300ms\"\n").await;
    let Files { dir, input, output } = Files::new(&contacts(10));
    let mut args = base_args(&sim, &input, &output);
    args.retain(|a| a != "-q");
    let args = with(&args, &["--lines", "1"]);
    let mut child = tokio::process::Command::new(bin())
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    wait_while_running(
        &sim,
        &mut child,
        |log| call_requests(log).len() >= 2,
        "two calls requested",
    )
    .await;
    std::fs::remove_file(dir.path().join("r.csv.state/journal.sqlite-wal")).expect("rm wal");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("a log line")
            .expect("read")
            .unwrap_or_else(|| panic!("the run never said it saved the log: {seen:?}"));
        let saved = line.contains("write-ahead log was deleted");
        seen.push(line);
        if saved {
            break;
        }
    }
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
    let before = call_requests(&sim.requests()).len();
    let again = run(&args).await;
    let c = code(&again);
    assert!(c == 0 || c == 3, "exit {c}: {}", stderr(&again));
    let log = sim.requests();
    assert_eq!(dialed_twice(&log), Vec::<String>::new(), "{seen:?}");
    assert!(call_requests(&log).len() >= before);
    assert_eq!(results(&output).len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_writing_the_same_results_cannot_both_call() {
    let sim = sim(8, ms(5), ms(200), ms(5), "").await;
    let c = Campaign::new(&sim, &contacts(6));
    let base = c.base();
    let first_args = with(&base, &["--lines", "1"]);
    let mut first = spawn(&first_args);
    wait_while_running(
        &sim,
        &mut first,
        |log| !call_requests(log).is_empty(),
        "the first run calls",
    )
    .await;
    // The same results, another journal: refused while the first run writes them.
    let other_state = c.dir.path().join("elsewhere.state").display().to_string();
    let second = run(&with(&base, &["--state", &other_state])).await;
    assert_eq!(code(&second), 75, "{}", stderr(&second));
    assert!(
        stderr(&second).contains("another ivr-campaign run is writing"),
        "{}",
        stderr(&second)
    );
    let status = tokio::time::timeout(PATIENCE, first.wait())
        .await
        .expect("the first run ends")
        .expect("status");
    assert_eq!(status.code(), Some(0));
    assert_eq!(dialed_twice(&sim.requests()), Vec::<String>::new());
    assert_eq!(call_requests(&sim.requests()).len(), 6);
}
