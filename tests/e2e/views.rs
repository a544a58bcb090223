//! What the operator reads agrees with what happened: the exit code, `completed`, the metrics, the counts in
//! every view.

use std::path::Path;

use crate::helpers::*;

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("file written")).expect("json")
}

fn metric(p: &Path, name: &str) -> Option<f64> {
    let text = std::fs::read_to_string(p).expect("metrics file");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_finishes_every_call_is_a_completed_run() {
    let sim = sim(8, ms(400), ms(400), ms(10), "").await;
    let c = Campaign::new(&sim, &contacts(4));
    let summary = c.dir.path().join("summary.json");
    let metrics = c.dir.path().join("m.prom");
    let base = c.base();
    let (s, m) = (summary.display().to_string(), metrics.display().to_string());
    let args = with(
        &base,
        &["--lines", "8", "--summary-json", &s, "--metrics-file", &m],
    );
    let mut child = tokio::process::Command::new(bin())
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    // Every contact is on a line before the signal: the drain has every call to finish, and nothing else.
    wait_while_running(
        &sim,
        &mut child,
        |log| call_requests(log).len() >= 4,
        "four call requests",
    )
    .await;
    let pid = child.id().expect("pid").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("stops")
        .expect("output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stop requested"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(c.results().iter().all(|r| r["status"] == "made"));
    let v = json(&summary);
    assert_eq!(v["completed"], true, "{v:#}");
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["ending"], "interrupted");
    assert_eq!(v["rows"]["open"], 0);
    assert_eq!(
        metric(&metrics, "ivr_campaign_last_run_exit_code"),
        Some(0.0)
    );
    assert!(
        metric(&metrics, "ivr_campaign_last_success_timestamp_seconds").is_some(),
        "a completed night is a success"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_requests_that_never_left_the_process_are_not_counted_as_sent() {
    let sim = sim(100, ms(1000), ms(1000), ms(10), "").await;
    let c = Campaign::new(&sim, &contacts(100));
    let summary = c.dir.path().join("summary.json");
    let s = summary.display().to_string();
    let base = c.base();
    let args = with(&base, &["--lines", "100", "--summary-json", &s]);
    // Far fewer file descriptors than lines: most call requests find no socket at first.
    let out = tokio::time::timeout(
        PATIENCE,
        tokio::process::Command::new("sh")
            .arg("-c")
            .arg("ulimit -n 40 && exec \"$0\" \"$@\"")
            .arg(bin())
            .args(&args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("finished in time")
    .expect("runs");
    let err = stderr(&out);
    let v = json(&summary);
    let received = sim
        .requests()
        .iter()
        .filter(|r| r.path == ivr_campaign::gateway::protocol::CALL_PATH)
        .count() as u64;
    assert_eq!(
        v["gateway"]["call_requests"].as_u64(),
        Some(received),
        "the summary counts what the gateway received: {err}"
    );
    let unsent = v["gateway"]["call_requests_not_sent"]
        .as_u64()
        .expect("a count");
    assert!(unsent > 0, "the limit was not reached: {err}");
    assert!(err.contains("could not leave this process"), "{err}");
    // Waiting for descriptors is this process's own trouble, not the gateway's: no outage.
    assert_eq!(v["gateway"]["outage_seconds"], 0.0, "{err}");
    assert_eq!(dialed_twice(&sim.requests()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_stopped_half_way_leaves_the_previous_decisions_whole() {
    let Files { dir, input, output } = Files::new(&contacts(600));
    let decisions = dir.path().join("r.dry-run.csv");
    let (i, o) = (input.display().to_string(), output.display().to_string());
    let args = [
        "validate",
        "--input",
        &i,
        "--output",
        &o,
        "--gateway",
        "http://127.0.0.1:9",
        "--app",
        "Reminder",
        "--number-format",
        "national",
        "-q",
    ];
    let first = run(&args).await;
    assert_eq!(code(&first), 0, "{}", stderr(&first));
    assert_eq!(results(&decisions).len(), 600);
    // The list saved again, now with a number of another country at row 301: the dry run stops there.
    let mut list = contacts(600);
    list = list.replacen("646-555-1300", "+44 20 7946 0300", 1);
    std::fs::write(&input, list).expect("rewrite list");
    let second = run(&args).await;
    assert_eq!(code(&second), 65, "{}", stderr(&second));
    let kept = results(&decisions);
    assert_eq!(kept.len(), 600, "the previous decisions are whole");
    assert!(kept.iter().all(|r| r["decision"] == "would_call"));
    let stray: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("dry-run") && n != "r.dry-run.csv")
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

fn digest(p: &Path) -> Vec<u8> {
    std::fs::read(p).expect("journal file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_report_read_older_journal_layouts_without_changing_them() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Layout 2: a campaign run by this release, then taken back to the layout before gateways were recorded.
    let input = write(dir.path(), "c.csv", &contacts(3));
    let output = dir.path().join("r.csv");
    let done = run(&with(&base_args(&sim, &input, &output), &[])).await;
    assert_eq!(code(&done), 0, "{}", stderr(&done));
    let two = dir.path().join("r.csv.state");
    {
        let conn = rusqlite::Connection::open(two.join("journal.sqlite")).expect("open");
        conn.execute_batch(
            "PRAGMA journal_mode=DELETE;
             ALTER TABLE contacts DROP COLUMN gateway; ALTER TABLE calls DROP COLUMN gateway;
             UPDATE meta SET value = '2' WHERE key = 'schema';",
        )
        .expect("layout 2");
    }
    // Layout 1, as the first release wrote it: no history of calls, one call made and one in flight.
    let one = dir.path().join("old.state");
    std::fs::create_dir(&one).expect("dir");
    {
        let conn = rusqlite::Connection::open(one.join("journal.sqlite")).expect("db");
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
             CREATE TABLE contacts (
                 row INTEGER PRIMARY KEY, line INTEGER NOT NULL, e164 TEXT, dialed_number TEXT,
                 state TEXT NOT NULL, req_id TEXT, responses TEXT, attempts INTEGER, detail TEXT,
                 intent_at INTEGER, dialed_at INTEGER, finished_at INTEGER,
                 removed INTEGER NOT NULL DEFAULT 0, tz TEXT);
             INSERT INTO meta VALUES ('input_digest', 'sha256:test'), ('input_name', 'test.csv'),
                 ('campaign_id', 'abc'), ('created_at', '2026-11-20T00:00:00Z');
             INSERT INTO contacts (row, line, e164, dialed_number, state, req_id, responses, finished_at, tz)
                 VALUES (0, 1, '+16465551000', '+16465551000', 'made', '11', 'Q=1', 1795000000000, 'America/New_York'),
                        (1, 2, '+16465551001', '+16465551001', 'dialed', '12', NULL, NULL, NULL),
                        (2, 3, '+16465551002', NULL, 'pending', NULL, NULL, NULL, NULL);",
        )
        .expect("layout 1");
    }
    for (state, made, open) in [(&two, 3, 0), (&one, 1, 2)] {
        let db = state.join("journal.sqlite");
        let before = digest(&db);
        let s = state.display().to_string();
        let json = run(&["status", "--state", &s, "--json"]).await;
        assert_eq!(code(&json), 0, "{}", stderr(&json));
        let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
        assert_eq!(v["rows"]["by_status"]["made"], made, "{v:#}");
        assert_eq!(v["rows"]["open"], open, "{v:#}");
        let text = run(&["status", "--state", &s]).await;
        assert_eq!(code(&text), 0, "{}", stderr(&text));
        let html = dir.path().join("report.html");
        let h = html.display().to_string();
        let report = run(&["report", "--state", &s, "--html", &h]).await;
        assert_eq!(code(&report), 0, "{}", stderr(&report));
        assert!(
            std::fs::read_to_string(&html)
                .expect("report")
                .contains("Outcomes")
        );
        assert!(digest(&db) == before, "a view changed the journal in {s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_outside_its_window_says_it_stopped_with_work_left() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let c = Campaign::new(&sim, &contacts(3));
    let summary = c.dir.path().join("summary.json");
    let s = summary.display().to_string();
    // No allowed day today: nobody may be called, and the rows are left for the next run.
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::get("Atlantic/Reykjavik").expect("zone"))
        .weekday();
    let other_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        [((today.to_monday_zero_offset() + 1) % 7) as usize];
    let base = c.base();
    let out = run(&with(
        &base,
        &[
            "--days",
            other_day,
            "--timezone",
            "Atlantic/Reykjavik",
            "--summary-json",
            &s,
        ],
    ))
    .await;
    assert_eq!(code(&out), 75, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stopped with work left"),
        "{}",
        stderr(&out)
    );
    assert!(c.results().iter().all(|r| r["status"] == "not_attempted"));
    let v = json(&summary);
    // The ending word agrees with the exit code: a run that left every row open did not complete.
    assert_eq!(v["exit_code"], 75, "{v:#}");
    assert_eq!(v["completed"], false, "{v:#}");
    assert_eq!(v["ending"], "work-left", "{v:#}");
    assert_eq!(v["rows"]["open"], 3, "{v:#}");
}
