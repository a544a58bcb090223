//! The figures the operator reads, on virtual time: the campaign's outage.

use std::time::Duration;

use crate::*;

#[tokio::test(start_paused = true)]
async fn with_one_gateway_up_and_one_refusing_the_campaign_had_no_outage() {
    let up = sim(4, ms(500), ms(1500), ms(10), "").await;
    let down = sim(4, ms(500), ms(1500), ms(10), "").await;
    down.go_away();
    let c = Campaign::new(&contacts(12));
    let mut args = c.args(&up);
    args.gateway.push(down.url());
    args.lines = Some("2".into());
    args.max_outage = Some("10m".into());
    let s = run(args).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let refusing = s
        .gateways
        .iter()
        .find(|g| g.key == down.url())
        .expect("the refusing gateway is in the summary");
    assert!(
        refusing.outage >= Duration::from_secs(5),
        "its own outage is the whole run: {:?}",
        refusing.outage
    );
    assert_eq!(
        s.outage,
        Duration::ZERO,
        "one gateway answered throughout: {}",
        s.line()
    );
}

/// The count a report's outcome table shows for `word`, if it lists it.
fn report_count(html: &str, word: &str) -> Option<u64> {
    let outcomes = html
        .split("<h2>Outcomes</h2>")
        .nth(1)?
        .split("</table>")
        .next()?;
    let at = outcomes.find(&format!("</span>{word}</td><td class=\"n\">"))?;
    let rest = &outcomes[at..];
    let start = rest.find("class=\"n\">")? + "class=\"n\">".len();
    rest[start..].split('<').next()?.parse().ok()
}

#[tokio::test(start_paused = true)]
async fn every_view_of_a_campaign_with_recalls_waiting_says_the_same() {
    // Two numbers fail and are to be recalled after the window closes; three are made; one row is invalid.
    let scenario = "[[rule]]\nnumbers = [\"+16465551000\", \"+16465551001\"]\nsteps = [{ status = \"failed\", notes = \"No Answer\" }]\n[[rule]]\nsteps = [{ status = \"made\", responses = \"Confirm=1\" }]\n";
    let sim = sim(8, ms(100), ms(100), ms(10), scenario).await;
    let mut list = contacts(5);
    list.push_str("6,Nobody,not a number\n");
    let c = Campaign::new(&list);
    let mut args = c.args(&sim);
    args.window = Some("09:00-17:00".into());
    args.firstocc = Some("5".into());
    args.call_length = Some("5m".into());
    args.recall_on = Some(vec!["failed".into()]);
    args.recall_after = Some("1h".into());
    let late: jiff::Timestamp = "2026-12-02T21:30:00Z".parse().expect("timestamp");
    let s = run_at(args, late).await;
    assert_eq!(s.exit_code(), 75, "{}", s.line());

    let state = c.dir.path().join("r.csv.state");
    let summary = s.to_json();
    let status = ivr_campaign::output::status::json(&state).expect("status --json");
    let text = ivr_campaign::output::status::report(&state).expect("status");
    let html = ivr_campaign::output::report::build(&state).expect("report");
    let metrics = ivr_campaign::output::metrics::render(
        &ivr_campaign::output::metrics::RunEnd {
            campaign: &c.output,
            summary: Some(&s),
            exit_code: s.exit_code(),
            duration: Duration::from_secs(1),
            finished_at: late,
        },
        None,
    );
    let metric = |name: &str, label: Option<&str>| -> Option<u64> {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .find(|l| label.is_none_or(|x| l.contains(&format!("status=\"{x}\""))))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
    };
    let rows = c.results();

    let words = [
        "made",
        "failed",
        "unresolved",
        "unknown",
        "error",
        "invalid",
        "duplicate",
        "suppressed",
        "capped",
        "in_progress",
        "not_attempted",
    ];
    for w in words {
        let in_results = rows.iter().filter(|r| r["status"] == w).count() as u64;
        assert_eq!(summary["rows"]["by_status"][w], in_results, "summary {w}");
        assert_eq!(
            status["rows"]["by_status"][w], in_results,
            "status --json {w}"
        );
        assert_eq!(
            metric("ivr_campaign_rows", Some(w)),
            Some(in_results),
            "metrics {w}"
        );
        let in_report = report_count(&html, w).unwrap_or(0);
        assert_eq!(in_report, in_results, "report {w}");
        let in_text = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(w))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0);
        assert_eq!(in_text, in_results, "status {w}:\n{text}");
    }
    assert_eq!(rows.iter().filter(|r| r["status"] == "failed").count(), 2);

    // Waiting: the rows with a recall_at, in every view.
    let waiting = rows.iter().filter(|r| !r["recall_at"].is_empty()).count() as u64;
    assert_eq!(waiting, 2);
    assert_eq!(summary["recalls"]["waiting"], waiting);
    assert_eq!(status["recalls"]["waiting"], waiting);
    assert_eq!(metric("ivr_campaign_recalls_waiting", None), Some(waiting));
    assert!(
        text.contains(&format!(
            "waiting for a recall {:>w$}",
            waiting,
            w = 9 + 26 - 21
        )),
        "{text}"
    );
    assert!(
        html.contains(&format!("waiting for a recall {waiting}")),
        "{html}"
    );

    // Open, as docs/runbook.md defines it: not_attempted + in_progress + waiting for a recall.
    let open = rows
        .iter()
        .filter(|r| ["not_attempted", "in_progress"].contains(&r["status"].as_str()))
        .count() as u64
        + waiting;
    assert_eq!(summary["rows"]["open"], open);
    assert_eq!(status["rows"]["open"], open);
    assert_eq!(metric("ivr_campaign_rows_open", None), Some(open));
    assert!(text.contains(&format!("{open} open")), "{text}");
    assert!(
        html.contains(&format!("Left for a rerun<b>{open}</b>")),
        "{html}"
    );
    assert_eq!(
        summary["rows"]["needs_attention"],
        status["rows"]["needs_attention"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_in_the_middle_of_a_campaign_judges_only_what_is_left() {
    // Two quick calls are made; four slow ones are still on the gateway when the run is stopped; four contacts
    // were never called.
    let scenario = "[[rule]]\nnumbers = [\"+16465551000\", \"+16465551001\"]\nsteps = [\"made\"]\n[[rule]]\nsteps = [\"retry\", \"retry\", \"made\"]\n";
    let sim = sim(8, ms(100), ms(100), Duration::from_secs(30), scenario).await;
    let c = Campaign::new(&contacts(10));
    let mut args = c.args(&sim);
    args.lines = Some("4".into());
    let cfg = RunConfig::from_args(args.clone()).expect("settings");
    let (stop, rx) = watch::channel(Stage::Run);
    let start = jiff::Timestamp::now();
    let running = tokio::spawn(run_with_clock(
        cfg,
        rx,
        Progress::Never,
        Clock::virtual_from(start),
    ));
    sim.wait_for(|log| call_requests(log).len() >= 6).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.send_replace(Stage::Now);
    let s = running.await.expect("joins").expect("the run ends");
    assert_eq!(s.exit_code(), 75, "{}", s.line());
    let count = |w: &str| c.results().iter().filter(|r| r["status"] == w).count() as u64;
    assert_eq!(
        (count("made"), count("in_progress"), count("not_attempted")),
        (2, 4, 4)
    );

    let mut dry = args;
    dry.dry_run = true;
    let cfg = RunConfig::from_args(dry).expect("settings");
    let report = ivr_campaign::commands::validate::run_at(&cfg, start).expect("dry run");
    let d = |w: &str| report.decisions.get(w).copied().unwrap_or(0);
    assert_eq!(
        (d("made"), d("in_progress"), d("would_call")),
        (2, 4, 4),
        "{:?}",
        report.decisions
    );
    assert_eq!(report.forecast.calls, 4, "{}", report.forecast.text);
    let decisions = results(&report.output);
    for r in &decisions {
        let status = c
            .results()
            .into_iter()
            .find(|x| x["id"] == r["id"])
            .map(|x| x["status"].clone())
            .unwrap_or_default();
        match status.as_str() {
            "not_attempted" => assert_eq!(r["decision"], "would_call"),
            other => assert_eq!(r["decision"], other, "{r:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_the_forecast_says_fits_is_finished_inside_the_window() {
    // 20-second calls polled every 6.6 s, on 2 lines: a call's end is seen 6.4 s after it (at 26.4 s), nearly a
    // full interval. The last request may leave at 16:58:40 in New York (the window closes at 17:00, less
    // firstocc and the call length), and the batch starts 1522.5 s before.
    let sim = sim(
        8,
        Duration::from_secs(5),
        Duration::from_secs(15),
        ms(10),
        "",
    )
    .await;
    let start: jiff::Timestamp = "2026-12-02T21:33:17.5Z".parse().expect("timestamp");
    let settings = |c: &Campaign| {
        let mut args = c.args(&sim);
        args.lines = Some("2".into());
        args.poll_interval = Some("6600ms".into());
        args.call_length = Some("20s".into());
        args.firstocc = Some("1".into());
        args.window = Some("09:00-17:00".into());
        args
    };
    let probe = Campaign::new(&contacts(1));
    let cfg = RunConfig::from_args(settings(&probe)).expect("settings");
    let ny = jiff::tz::TimeZone::get("America/New_York").expect("zone");
    let says_fits = |n: u64| {
        let mut g = ivr_campaign::commands::validate::Groups::default();
        g.add("America/New_York".into(), vec![ny.clone()], n);
        let f = ivr_campaign::commands::validate::forecast(&cfg, &g, start);
        !f.text.contains("NOT")
    };
    // The largest batch the forecast says fits.
    let edge = (1..400u64)
        .take_while(|n| says_fits(*n))
        .last()
        .expect("some batch fits");
    assert!(!says_fits(edge + 1));
    let c = Campaign::new(&contacts(edge as usize));
    let s = run_at(settings(&c), start).await;
    let left = c.results().iter().filter(|r| r["status"] != "made").count();
    assert_eq!(
        left,
        0,
        "the forecast said {edge} calls fit; the run left {left}: {}",
        s.line()
    );
    assert_eq!(s.exit_code(), 0, "{}", s.line());
}

/// The calls the report's "calls over time" chart shows, summed over its columns.
fn charted_calls(html: &str) -> u64 {
    let chart = html
        .split("<h2>Calls over time</h2>")
        .nth(1)
        .and_then(|c| c.split("</svg>").next())
        .unwrap_or("");
    chart
        .split("<title>")
        .skip(1)
        .filter_map(|t| t.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(start_paused = true)]
async fn the_reports_chart_counts_calls_not_rows() {
    // One contact is recalled twice (three calls), one once (two calls), one is suppressed (no call).
    let scenario = r#"
[[rule]]
numbers = ["+16465551000"]
steps = [{ status = "failed", notes = "No Answer" }]
recalls = [[{ status = "failed", notes = "No Answer" }], [{ status = "made", responses = "Confirm=1" }]]
[[rule]]
numbers = ["+16465551001"]
steps = [{ status = "failed", notes = "No Answer" }]
recalls = [[{ status = "made", responses = "Confirm=1" }]]
[[rule]]
steps = [{ status = "made", responses = "Confirm=1" }]
"#;
    let sim = sim(8, ms(100), ms(100), ms(10), scenario).await;
    let c = Campaign::new(&contacts(4));
    let dnc = c.dir.path().join("dnc.txt");
    std::fs::write(&dnc, "646-555-1003\n").expect("dnc");
    let mut args = c.args(&sim);
    args.suppress = vec![dnc];
    args.recall_on = Some(vec!["failed".into()]);
    args.recall_after = Some("1m".into());
    args.max_attempts = Some("3".into());
    let s = run(args).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let requests = call_requests(&sim.requests()).len() as u64;
    assert_eq!(requests, 6);
    let html =
        ivr_campaign::output::report::build(&c.dir.path().join("r.csv.state")).expect("report");
    assert_eq!(charted_calls(&html), requests, "calls over time");
}

/// Log lines, captured while a test's run goes on this thread.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_changed_app_is_warned_about_and_each_call_names_the_app_it_used() {
    let scenario = r#"
[[rule]]
numbers = ["+16465551000"]
steps = [{ status = "failed", notes = "No Answer" }]
recalls = [[{ status = "made", responses = "Confirm=1" }]]
[[rule]]
steps = [{ status = "made", responses = "Confirm=1" }]
"#;
    let sim = sim(8, ms(100), ms(100), ms(10), scenario).await;
    let c = Campaign::new(&contacts(2));
    let mut args = c.args(&sim);
    args.window = Some("09:00-17:00".into());
    args.firstocc = Some("5".into());
    args.call_length = Some("5m".into());
    args.recall_on = Some(vec!["failed".into()]);
    args.recall_after = Some("1h".into());
    // 16:30 in New York: the first call fails, and its recall is left for the next morning.
    let late: jiff::Timestamp = "2026-12-02T21:30:00Z".parse().expect("timestamp");
    let s = run_at(args.clone(), late).await;
    assert_eq!(s.exit_code(), 75, "{}", s.line());
    // The results name no app while the campaign has used one.
    assert!(
        c.results().iter().all(|r| !r["history"].contains("(app ")),
        "{:?}",
        c.results()
    );

    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    args.app = Some("Survey".into());
    let morning: jiff::Timestamp = "2026-12-03T15:00:00Z".parse().expect("timestamp");
    // The dry run before it says so too.
    let mut dry = args.clone();
    dry.dry_run = true;
    let cfg = RunConfig::from_args(dry).expect("settings");
    let report = ivr_campaign::commands::validate::run_at(&cfg, morning).expect("dry run");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("What people hear changed") && n.contains("\"Survey\"")),
        "{:?}",
        report.notes
    );
    let s = run_at(args, morning).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let said = logs.text();
    assert!(
        said.contains("what people hear changed") && said.contains("\"Reminder\" → \"Survey\""),
        "{said}"
    );
    let apps: Vec<String> = call_requests(&sim.requests())
        .iter()
        .map(|r| r.params["startapp"].clone())
        .collect();
    assert_eq!(apps, ["Reminder", "Reminder", "Survey"]);
    let rows = c.results();
    assert!(
        rows[0]["history"].starts_with("failed ")
            && rows[0]["history"].contains(" (app Reminder); made ")
            && rows[0]["history"].ends_with(" (app Survey)"),
        "{}",
        rows[0]["history"]
    );
    assert!(
        rows[1]["history"].ends_with(" (app Reminder)"),
        "{}",
        rows[1]["history"]
    );
}
