//! Appointment reminders over real HTTP, by the binary, on the machine's clock: the touches due now are
//! called once, the rest wait, and a rerun the same evening calls nobody. (The same rules under chosen clocks,
//! three nights of a rolling export and random ones, are in the engine tests.)

use crate::helpers::*;

const SCENARIO: &str = r#"
[[rule]]
numbers = ["+12125550101"]
steps = [{ status = "made", responses = "Confirm=1" }]
[[rule]]
weight = 1
steps = [{ status = "made", responses = "Confirm=3" }]
"#;

/// An appointment `hours` from now, written with its offset (the export's own form is read in the clinic's
/// zone; an offset is taken as written).
fn at(hours: i64) -> String {
    (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(hours))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_touches_due_now_are_called_once_and_a_rerun_adds_none() {
    let sim = sim(4, ms(20), ms(20), ms(60), SCENARIO).await;
    let list = format!(
        "appt_id,name,phone,appointment,status\n\
         A1,Ada,212-555-0101,{},Scheduled\n\
         A2,Ben,212-555-0102,{},Scheduled\n\
         A3,Cleo,212-555-0103,{},Scheduled\n\
         A4,Dev,212-555-0104,{},Scheduled\n\
         A5,Eli,212-555-0105,{},Cancelled\n\
         A6,Fay,212-555-0106,next week,Scheduled\n",
        at(30),  // the 48h touch is due
        at(12),  // the 24h touch is due
        at(100), // nothing due yet
        at(1),   // within the min-notice: too late
        at(30),  // cancelled
    );
    let c = Campaign::new(&sim, &list);
    let flags = [
        "--key-column",
        "appt_id",
        "--appointment-column",
        "appointment",
        "--appointment-timezone",
        "America/New_York",
        "--remind-before",
        "48h,24h",
        "--stop-on",
        "confirm=1",
        "--skip-if",
        "status=Cancelled",
    ];
    let out = c.run(&flags).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut called: Vec<String> = call_requests(&sim.requests())
        .iter()
        .map(|r| r.params["phoneno"].clone())
        .collect();
    called.sort();
    assert_eq!(called, ["+12125550101", "+12125550102"]);
    let rows = c.results();
    let status: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["appt_id"].as_str(), r["status"].as_str()))
        .collect();
    assert_eq!(
        status,
        [
            ("A1", "made"),
            ("A2", "made"),
            ("A3", "not_due"),
            ("A4", "too_late"),
            ("A5", "withdrawn"),
            ("A6", "invalid"),
        ]
    );
    // The export's own `status` column is kept, renamed beside ours.
    assert_eq!(rows[4]["list_status"], "Cancelled");
    // A1 confirmed: its 24h touch will not be made. A2's was its last.
    assert_eq!(rows[0]["reminders"], "1 of 2");
    assert_eq!(rows[0]["next_reminder_at"], "");
    assert_eq!(rows[1]["reminders"], "1 of 1");
    assert!(!rows[2]["next_reminder_at"].is_empty());
    assert!(
        rows[2]["appointment_at"].ends_with("-05:00")
            || rows[2]["appointment_at"].ends_with("-04:00")
    );

    // `status` counts keys as the results show them, not touches: the same total and statuses.
    let st = run(&[
        "status",
        "--output",
        &c.output.display().to_string(),
        "--json",
    ])
    .await;
    assert_eq!(code(&st), 0, "{}", stderr(&st));
    let status: serde_json::Value = serde_json::from_slice(&st.stdout).expect("status JSON");
    assert_eq!(status["rows"]["total"], rows.len());
    let mut by_status = std::collections::BTreeMap::<String, u64>::new();
    for r in &rows {
        *by_status.entry(r["status"].clone()).or_default() += 1;
    }
    for (name, n) in status["rows"]["by_status"].as_object().expect("by_status") {
        assert_eq!(
            n.as_u64().unwrap_or(0),
            by_status.get(name).copied().unwrap_or(0),
            "status {name}"
        );
    }

    let again = c.run(&flags).await;
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_eq!(
        call_requests(&sim.requests()).len(),
        2,
        "a rerun calls nobody"
    );
}

/// The settings that give appointments and touches their meaning cannot change under a campaign: its
/// touches are matched by position and were timed by them. Each change is refused before any call; the
/// settings that only remove calls may change, and an unchanged rerun still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_plan_is_refused_before_any_call() {
    let sim = sim(4, ms(20), ms(20), ms(60), SCENARIO).await;
    let list = format!(
        "appt_id,name,phone,appointment\n\
         A1,Ada,212-555-0102,{}\n\
         A2,Ben,212-555-0103,{}\n",
        at(30),
        at(60),
    );
    let c = Campaign::new(&sim, &list);
    let flags = |before: &'static str, zone: &'static str, notice: &'static str| {
        vec![
            "--key-column",
            "appt_id",
            "--appointment-column",
            "appointment",
            "--appointment-timezone",
            zone,
            "--remind-before",
            before,
            "--min-notice",
            notice,
        ]
    };
    let base = flags("48h,24h", "America/New_York", "2h");
    let out = c.run(&base).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(call_requests(&sim.requests()).len(), 1);
    for (changed, setting) in [
        (
            flags("72h,48h,24h", "America/New_York", "2h"),
            "remind-before",
        ),
        (flags("24h", "America/New_York", "2h"), "remind-before"),
        (
            flags("48h,24h", "Europe/Paris", "2h"),
            "appointment-timezone",
        ),
        (flags("48h,24h", "America/New_York", "12h"), "min-notice"),
    ] {
        let out = c.run(&changed).await;
        assert_eq!(code(&out), 78, "{setting}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(setting), "{setting}: {err}");
        assert_eq!(
            call_requests(&sim.requests()).len(),
            1,
            "{setting}: no call"
        );
    }
    // Which number a row is cannot change either: under another region 212-555-0103 is somebody else.
    let mut region = base.clone();
    region.extend(["--default-region", "GB"]);
    let out = c.run(&region).await;
    assert_eq!(code(&out), 78, "{}", stderr(&out));
    assert!(stderr(&out).contains("default-region"), "{}", stderr(&out));
    assert_eq!(call_requests(&sim.requests()).len(), 1, "region: no call");
    let mut stop = base.clone();
    stop.extend(["--stop-on", "confirm=1"]);
    let again = c.run(&stop).await;
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    let again = c.run(&base).await;
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_eq!(
        call_requests(&sim.requests()).len(),
        1,
        "a rerun calls nobody"
    );
}

/// An export re-saved with another delimiter is the same campaign; its results use the latest one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_results_use_the_latest_exports_delimiter() {
    let sim = sim(4, ms(20), ms(20), ms(60), SCENARIO).await;
    let list = format!(
        "appt_id,name,phone,appointment\nA1,Ada,212-555-0102,{}\n",
        at(30)
    );
    let c = Campaign::new(&sim, &list);
    let flags = [
        "--key-column",
        "appt_id",
        "--appointment-column",
        "appointment",
        "--appointment-timezone",
        "America/New_York",
        "--remind-before",
        "48h,24h",
    ];
    let out = c.run(&flags).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    std::fs::write(&c.input, list.replace(',', ";")).expect("re-save");
    let out = c.run(&flags).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = std::fs::read_to_string(&c.output).expect("results");
    assert!(text.starts_with("appt_id;name;phone;"), "{text}");
    assert_eq!(
        call_requests(&sim.requests()).len(),
        1,
        "a rerun calls nobody"
    );
}

/// A wrong `--appointment-format` reminds nobody: a format that is no strftime format is refused before any
/// call (64); one that is a format but reads none of the export's times ends the run 65, saying so, with every
/// row in the results as `invalid` and its reason, not as a green night.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appointment_format_that_reads_no_row_is_no_green_run() {
    let sim = sim(4, ms(20), ms(20), ms(60), SCENARIO).await;
    let list = "appt_id,name,phone,appointment\n\
                A1,Ada,212-555-0102,2099-12-01 10:00\n\
                A2,Ben,212-555-0103,2099-12-02 11:00\n";
    let c = Campaign::new(&sim, list);
    let flags = |format: &'static str| {
        vec![
            "--key-column",
            "appt_id",
            "--appointment-column",
            "appointment",
            "--appointment-timezone",
            "America/New_York",
            "--remind-before",
            "48h,24h",
            "--appointment-format",
            format,
        ]
    };
    let out = c.run(&flags("%Q")).await;
    assert_eq!(code(&out), 64, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--appointment-format"),
        "{}",
        stderr(&out)
    );
    let out = c.run(&flags("%d.%m.%Y %H:%M")).await;
    assert_eq!(code(&out), 65, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("no appointment time could be read"), "{err}");
    assert!(call_requests(&sim.requests()).is_empty());
    let rows = c.results();
    assert_eq!(rows.len(), 2, "the rows are in the results");
    for r in &rows {
        assert_eq!(r["status"], "invalid", "{r:?}");
        assert!(r["detail"].contains("--appointment-format"), "{r:?}");
    }
    // The right format: the same campaign goes on, green.
    let out = c.run(&flags("%Y-%m-%d %H:%M")).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}
