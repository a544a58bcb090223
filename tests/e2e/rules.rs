//! Calling rules: suppression, the window in each recipient's zone, the cap per number across campaigns,
//! safe output, and the dry run's forecast against a real run.

use jiff::tz::TimeZone;

use crate::helpers::*;

/// A zone where it is now between 02:00 and 20:59, and a window around its current hour.
fn open_zone() -> (&'static str, String, &'static str) {
    let zones = [
        "Asia/Kolkata",
        "America/Los_Angeles",
        "Europe/London",
        "Asia/Tokyo",
        "America/New_York",
    ];
    let hour = |z: &str| {
        jiff::Timestamp::now()
            .to_zoned_datetime(TimeZone::get(z).expect("zone"))
            .hour()
    };
    let open = zones
        .iter()
        .find(|z| (2..=20).contains(&hour(z)))
        .expect("some zone is in daytime");
    let h = hour(open);
    let window = format!("{:02}:00-{:02}:00", h - 1, h + 3);
    // A zone whose local hour is at least 5 hours away from the window, either way round the clock.
    let closed = zones
        .iter()
        .find(|z| {
            let k = i32::from(hour(z));
            let d = (k - i32::from(h)).rem_euclid(24);
            (5..=19).contains(&d)
        })
        .expect("some zone is far from it");
    (open, window, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_is_judged_in_each_recipients_zone() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (open, window, closed) = open_zone();
    let text = format!(
        "name,phone,tz\nopen,646-555-1000,{open}\nclosed,646-555-1001,{closed}\ncampaign,888-555-0102,\nbad,646-555-1003,Mars/Olympus\n"
    );
    let input = write(dir.path(), "c.csv", &text);
    let output = dir.path().join("r.csv");
    let out = run(&with(
        &base_args(&sim, &input, &output),
        &[
            "--window",
            &window,
            "--timezone-column",
            "tz",
            "--timezone",
            open,
            "--firstocc",
            "1",
            "--call-length",
            "1s",
        ],
    ))
    .await;
    assert_eq!(
        code(&out),
        75,
        "a contact is left for the next run: {}",
        stderr(&out)
    );
    let rows = results(&output);
    assert_eq!(rows[0]["status"], "made");
    assert_eq!(
        (
            rows[0]["timezone"].as_str(),
            rows[0]["timezone_source"].as_str()
        ),
        (open, "column")
    );
    assert_eq!(rows[1]["status"], "not_attempted");
    assert!(
        rows[1]["detail"].contains("outside the calling window"),
        "{}",
        rows[1]["detail"]
    );
    assert!(rows[1]["detail"].contains(closed), "{}", rows[1]["detail"]);
    assert_eq!(rows[2]["status"], "made");
    assert_eq!(
        (
            rows[2]["timezone"].as_str(),
            rows[2]["timezone_source"].as_str()
        ),
        (open, "campaign")
    );
    assert_eq!(rows[3]["status"], "invalid");
    assert!(rows[3]["detail"].contains("time zone"));
    let sent: Vec<String> = call_requests(&sim.requests())
        .iter()
        .map(|r| r.params["phoneno"].clone())
        .collect();
    assert!(
        !sent.contains(&"+16465551001".to_string()),
        "the closed zone was called: {sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suppressed_numbers_are_never_called_even_when_listed_between_runs() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let c = Campaign::new(&sim, &contacts(4));
    let base = c.base();
    let optout = write(c.dir.path(), "optout.txt", "# opt-outs\n(646) 555-1000\n");
    // Night one: the window is closed (no allowed day today), so nobody is called yet.
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(TimeZone::get("Atlantic/Reykjavik").expect("zone"))
        .weekday();
    let other_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        [((today.to_monday_zero_offset() + 1) % 7) as usize];
    let first = run(&with(
        &base,
        &[
            "--suppress",
            &optout.display().to_string(),
            "--days",
            other_day,
            "--timezone",
            "Atlantic/Reykjavik",
        ],
    ))
    .await;
    assert_eq!(code(&first), 75, "{}", stderr(&first));
    let rows = c.results();
    assert_eq!(rows[0]["status"], "suppressed");
    assert!(rows[1..].iter().all(|r| r["status"] == "not_attempted"));
    // Night two: another opt-out arrived meanwhile.
    let later = write(c.dir.path(), "dnc.csv", "name;Phone\nx;+1 646 555 1002\n");
    let second = run(&with(
        &base,
        &[
            "--suppress",
            &optout.display().to_string(),
            "--suppress",
            &later.display().to_string(),
        ],
    ))
    .await;
    assert_eq!(code(&second), 0, "{}", stderr(&second));
    let rows = c.results();
    let statuses: Vec<&str> = rows.iter().map(|r| r["status"].as_str()).collect();
    assert_eq!(statuses, ["suppressed", "made", "suppressed", "made"]);
    assert!(rows[2]["detail"].contains("dnc.csv"));
    let mut sent: Vec<String> = call_requests(&sim.requests())
        .iter()
        .map(|r| r.params["phoneno"].clone())
        .collect();
    sent.sort();
    assert_eq!(sent, ["+16465551001", "+16465551003"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_per_number_holds_across_campaigns() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger = dir.path().join("ledger.sqlite").display().to_string();
    let cap = [
        "--max-calls-per-number",
        "1",
        "--per",
        "24h",
        "--ledger",
        ledger.as_str(),
    ];
    let a = write(dir.path(), "a.csv", "phone\n646-555-1000\n646-555-1001\n");
    let b = write(
        dir.path(),
        "b.csv",
        "phone,note\n(646) 555-1000,again\n646-555-1002,new\n",
    );
    let out_a = run(&with(
        &base_args(&sim, &a, &dir.path().join("ra.csv")),
        &cap,
    ))
    .await;
    assert_eq!(code(&out_a), 0, "{}", stderr(&out_a));
    let out_b = run(&with(
        &base_args(&sim, &b, &dir.path().join("rb.csv")),
        &cap,
    ))
    .await;
    assert_eq!(code(&out_b), 0, "{}", stderr(&out_b));
    let rows = results(&dir.path().join("rb.csv"));
    assert_eq!(rows[0]["status"], "capped");
    assert!(
        rows[0]["detail"].contains("1 call(s)"),
        "{}",
        rows[0]["detail"]
    );
    assert_eq!(rows[1]["status"], "made");
    assert_eq!(dialed_twice(&sim.requests()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_text_is_neutralised_and_input_cells_are_not() {
    let scenario = "[[rule]]\nsteps = [{ status = \"made\", notes = \"=HYPERLINK(\\\"http://x\\\")\", responses = \"Q=-1+1\" }]\n";
    let sim = sim(4, ms(5), ms(5), ms(5), scenario).await;
    let c = Campaign::new(&sim, "phone,formula\n646-555-1000,=1+2\n");
    let out = c.run(&["--response-keys", "Q"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rows = c.results();
    assert_eq!(
        rows[0]["formula"], "=1+2",
        "input cells are written back unchanged"
    );
    assert_eq!(rows[0]["detail"], "'=HYPERLINK(\"http://x\")");
    assert_eq!(rows[0]["response.Q"], "'-1+1");
    assert_eq!(rows[0]["responses"], "Q=-1+1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_calls_nobody_leaves_no_journal_and_its_forecast_matches_a_real_run() {
    let sim = sim(8, ms(150), ms(150), ms(10), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = write(
        dir.path(),
        "c.csv",
        &format!("{}25,dup,646-555-1000\n26,bad,12\n", contacts(24)),
    );
    let output = dir.path().join("r.csv");
    let base = base_args(&sim, &input, &output);
    let tuning = [
        "--lines",
        "4",
        "--rate",
        "20/s",
        "--poll-interval",
        "30ms",
        "--call-length",
        "320ms",
    ];
    let dry = run(&with(&base, &[&["--dry-run"][..], &tuning[..]].concat())).await;
    assert_eq!(code(&dry), 0, "{}", stderr(&dry));
    let said = String::from_utf8_lossy(&dry.stdout);
    assert!(
        said.contains("would_call 24")
            && said.contains("duplicate 1")
            && said.contains("invalid 1"),
        "{said}"
    );
    assert!(said.contains("Forecast: 24 calls"), "{said}");
    assert!(sim.requests().is_empty(), "a dry run places no call");
    assert!(
        !dir.path().join("r.csv.state").exists(),
        "a dry run leaves no journal"
    );
    // `validate` is the same dry run.
    let validate: Vec<&str> = with(&base, &tuning)
        .into_iter()
        .map(|a| if a == "run" { "validate" } else { a })
        .collect();
    let v = run(&validate).await;
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    assert_eq!(String::from_utf8_lossy(&v.stdout), said);
    let decisions = results(&dir.path().join("r.dry-run.csv"));
    assert_eq!(decisions.len(), 26);
    assert_eq!(decisions[24]["decision"], "duplicate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_that_cannot_be_read_refuses_the_run() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let c = Campaign::new(&sim, &contacts(3));
    let optout = write(
        c.dir.path(),
        "optout.txt",
        "Opt-outs\n# front desk\n646-555-1000\n\n646-555-10O1\n+44 20 7946 0018\n",
    );
    let uk = write(c.dir.path(), "uk.txt", "020 7946 0019\n");
    let optout_s = optout.display().to_string();
    let base = c.base();
    let args = with(&base, &["--suppress", &optout_s]);
    let o = run(&args).await;
    let err = stderr(&o);
    assert_eq!(code(&o), 65, "{err}");
    assert!(
        err.contains("optout.txt line 5") && err.contains("646-555-10O1"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(sim.requests().is_empty(), "a call was placed");
    // `validate` lists every entry it cannot read.
    let v: Vec<&str> = args
        .iter()
        .map(|a| if *a == "run" { "validate" } else { a })
        .collect();
    let o = run(&v).await;
    assert_eq!(code(&o), 65);
    assert!(
        stderr(&o).contains("1 suppression list entries"),
        "{}",
        stderr(&o)
    );
    // Fixed, it runs; a list of UK numbers is read with its own region.
    std::fs::write(&optout, "+1 646-555-1000\n+44 20 7946 0018\n").expect("fix");
    let uk_s = uk.display().to_string();
    let o = run(&with(
        &base,
        &[
            "--suppress",
            &optout_s,
            "--suppress",
            &uk_s,
            "--suppress-region",
            "GB",
        ],
    ))
    .await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let rows = c.results();
    assert_eq!(rows[0]["status"], "suppressed");
    assert!(rows[1..].iter().all(|r| r["status"] == "made"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_in_other_digits_on_the_first_line_is_judged_like_any_line() {
    // Full-width and Arabic-Indic digits are digits (libphonenumber reads them as their ASCII ones): such a
    // first line is an entry, not a title, so its person is not called, as on any other line.
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = write(dir.path(), "c.csv", &contacts(3));
    for (name, entry) in [
        (
            "full-width",
            "\u{ff16}\u{ff14}\u{ff16}\u{ff15}\u{ff15}\u{ff15}\u{ff11}\u{ff10}\u{ff10}\u{ff10}",
        ),
        (
            "arabic-indic",
            "\u{0666}\u{0664}\u{0666}\u{0665}\u{0665}\u{0665}\u{0661}\u{0660}\u{0660}\u{0660}",
        ),
    ] {
        for (k, text) in [format!("{entry}\n"), format!("Opt-outs\n{entry}\n")]
            .into_iter()
            .enumerate()
        {
            let output = dir.path().join(format!("r-{name}-{k}.csv"));
            let base = base_args(&sim, &input, &output);
            let optout = write(dir.path(), "optout.txt", &text);
            let optout_s = optout.display().to_string();
            let before = call_requests(&sim.requests()).len();
            let o = run(&with(&base, &["--suppress", &optout_s])).await;
            assert_eq!(code(&o), 0, "{name} {text:?}: {}", stderr(&o));
            let rows = results(&output);
            assert_eq!(rows[0]["status"], "suppressed", "{name} {text:?}");
            assert!(rows[1..].iter().all(|r| r["status"] == "made"), "{name}");
            let log = sim.requests();
            let calls = call_requests(&log);
            assert_eq!(calls.len() - before, 2, "{name} {text:?}");
            assert!(
                calls[before..]
                    .iter()
                    .all(|r| r.params.get("phoneno").map(String::as_str) != Some("+16465551000")),
                "{name}: the opted-out person was called"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_held_up_past_its_window_is_not_sent() {
    // The window closes two to three minutes from now; the margin (firstocc + call length) is set so that the
    // last moment a request may leave is ten seconds from now. The cap ledger is locked by another process
    // until after that moment, so the call task, which passed the window check, waits on it.
    // The window must close on the day it opened: take a zone where closing time is not past midnight (of
    // two zones nine hours apart, at most one is within minutes of midnight).
    let now = jiff::Timestamp::now();
    let (zone, _, close) = ["Atlantic/Reykjavik", "Asia/Tokyo"]
        .into_iter()
        .map(|zone| {
            let local = now.to_zoned_datetime(TimeZone::get(zone).expect("zone"));
            let close = local
                .with()
                .second(0)
                .subsec_nanosecond(0)
                .build()
                .expect("minute")
                .checked_add(jiff::SignedDuration::from_mins(3))
                .expect("close");
            (zone, local, close)
        })
        .find(|(_, local, close)| close.date() == local.date())
        .expect("one of two zones nine hours apart is not near midnight");
    let last = now + jiff::SignedDuration::from_secs(10);
    let margin = close.timestamp().duration_since(last);
    let call_length = margin - jiff::SignedDuration::from_mins(1);
    let window = format!("00:00-{}", close.strftime("%H:%M"));

    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = write(
        dir.path(),
        "c.csv",
        &format!("id,name,phone,tz\n1,Ada,646-555-1000,{zone}\n"),
    );
    let output = dir.path().join("r.csv");
    let ledger = dir.path().join("ledger.sqlite");
    drop(
        ivr_campaign::rules::ledger::Ledger::open(
            &ledger,
            5,
            std::time::Duration::from_secs(86400),
        )
        .expect("ledger"),
    );
    let lock = rusqlite::Connection::open(&ledger).expect("open ledger");
    lock.execute_batch("BEGIN EXCLUSIVE")
        .expect("lock the ledger");
    let base = base_args(&sim, &input, &output);
    let length = format!("{}ms", call_length.as_millis());
    let ledger_s = ledger.display().to_string();
    let mut base = base;
    base.retain(|a| a != "-q");
    let child = tokio::process::Command::new(bin())
        .args(with(
            &base,
            &[
                "--window",
                &window,
                "--timezone-column",
                "tz",
                "--firstocc",
                "1",
                "--call-length",
                &length,
                "--max-calls-per-number",
                "5",
                "--per",
                "24h",
                "--ledger",
                &ledger_s,
            ],
        ))
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let until = last + jiff::SignedDuration::from_secs(1);
    let wait = until.duration_since(jiff::Timestamp::now());
    if wait.is_positive() {
        tokio::time::sleep(wait.unsigned_abs()).await;
    }
    lock.execute_batch("ROLLBACK").expect("unlock");
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("the run ends")
        .expect("output");
    let err = stderr(&out);
    assert!(
        call_requests(&sim.requests()).is_empty(),
        "a request left after the window: {err}"
    );
    assert!(
        err.contains("calling window closed"),
        "the late request was caught where it waited: {err}"
    );
    assert_eq!(code(&out), 75, "{err}");
    assert_eq!(results(&output)[0]["status"], "not_attempted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_under_which_nobody_can_ever_be_called_are_a_configuration_error() {
    // The whole call (firstocc minutes of gateway retries, then the call) must fit before the window closes:
    // a margin as long as the window leaves no moment at which any row could be called.
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let c = Campaign::new(&sim, &contacts(3));
    let base = c.base();
    let cases: [(&[&str], &str); 2] = [
        (
            &[
                "--window",
                "09:00-20:00",
                "--timezone",
                "America/New_York",
                "--call-length",
                "11h",
            ],
            "--call-length",
        ),
        (
            &[
                "--window",
                "09:00-20:00",
                "--timezone",
                "America/New_York",
                "--firstocc",
                "100000",
            ],
            "--firstocc",
        ),
    ];
    for (extra, named) in cases {
        let args = with(&base, extra);
        let validate: Vec<&str> = args
            .iter()
            .map(|a| if *a == "run" { "validate" } else { a })
            .collect();
        for a in [args.clone(), validate] {
            let o = run(&a).await;
            let err = stderr(&o);
            assert_eq!(code(&o), 78, "{extra:?}: {err}");
            assert!(err.contains(named) && err.contains("09:00-20:00"), "{err}");
            assert_eq!(err.trim().lines().count(), 1, "{err}");
        }
        assert!(sim.requests().is_empty(), "{extra:?}: a call was placed");
        assert!(!c.output.exists(), "{extra:?}: results written");
    }
}
