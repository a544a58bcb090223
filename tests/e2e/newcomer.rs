//! A newcomer's first minutes and an operator's daily tools: the README's demo, `--help`, completions and
//! the manual, the metrics file for node_exporter, `status --json`, and gateway URLs that cannot work.

use std::path::Path;

use crate::helpers::*;

/// The example campaigns, copied without anything a local run left in them.
fn campaigns_copy(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("campaigns");
    for entry in std::fs::read_dir(&from).expect("campaigns/") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().expect("type").is_file();
        let left_by_a_run = name.contains("results") || name.contains("dry-run");
        if is_file && !left_by_a_run {
            std::fs::copy(entry.path(), to.join(&name)).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_start_demo_exits_0_and_the_fault_rehearsal_exits_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    campaigns_copy(dir.path());
    let demo = dir.path().join("demo.toml").display().to_string();
    let faults = dir
        .path()
        .join("rehearsal-faults.toml")
        .display()
        .to_string();
    let (demo_args, faults_args) = (["run", &demo, "-q"], ["run", &faults, "-q"]);
    let (d, f) = tokio::join!(run(&demo_args), run(&faults_args));

    assert_eq!(code(&d), 0, "the demo: {}", stderr(&d));
    let rows = results(&dir.path().join("demo-results.csv"));
    let has = |status: &str| rows.iter().any(|r| r["status"] == status);
    // The demo is a rolling export of appointments: passed ones are too late, a cancelled one is withdrawn.
    for status in [
        "made",
        "failed",
        "invalid",
        "suppressed",
        "too_late",
        "withdrawn",
    ] {
        assert!(has(status), "the demo shows {status}: {rows:?}");
    }
    for status in ["unknown", "error", "unresolved"] {
        assert!(!has(status), "the demo has no row that needs a person");
    }
    assert!(
        rows.iter()
            .any(|r| r["status"] == "made" && r["attempts"] == "3" && !r["responses"].is_empty()),
        "a call the gateway retried, with responses: {rows:?}"
    );
    assert!(rows.iter().any(|r| r["calls"] == "2"), "a recall: {rows:?}");

    assert_eq!(code(&f), 3, "the fault rehearsal: {}", stderr(&f));
    let rows = results(&dir.path().join("rehearsal-faults-results.csv"));
    for status in ["unknown", "error", "unresolved", "made"] {
        assert!(
            rows.iter().any(|r| r["status"] == status),
            "the rehearsal shows {status}: {rows:?}"
        );
    }
}

/// Headings of `run --help`, in order.
const HEADINGS: [&str; 9] = [
    "Contacts:",
    "Gateway:",
    "Call request:",
    "Pacing:",
    "Calling rules:",
    "Recall:",
    "Reminders:",
    "Results:",
    "Logging (every command):",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_help_groups_every_flag_under_a_heading() {
    let o = run(&["run", "--help"]).await;
    assert_eq!(code(&o), 0);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let mut section = String::new();
    let mut seen_headings = Vec::new();
    let mut flags: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line.to_string();
            seen_headings.push(section.clone());
            continue;
        }
        let t = line.trim_start();
        if line.starts_with("  ") && t.starts_with('-') {
            let flag = t
                .split_whitespace()
                .find(|w| w.starts_with("--"))
                .unwrap_or(t)
                .trim_end_matches(',')
                .to_string();
            flags.push((flag, section.clone()));
        }
    }
    let positions: Vec<usize> = HEADINGS
        .iter()
        .map(|h| {
            seen_headings
                .iter()
                .position(|s| s == h)
                .unwrap_or_else(|| panic!("heading {h} in:\n{text}"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "headings in order: {seen_headings:?}"
    );
    assert!(flags.len() > 55, "every run flag listed: {flags:?}");
    for (flag, section) in &flags {
        let under_heading = HEADINGS.contains(&section.as_str());
        assert!(
            under_heading || flag == "--help",
            "{flag} is under {section:?}, not a heading"
        );
    }
    let logging: Vec<&str> = flags
        .iter()
        .filter(|(_, s)| s == "Logging (every command):")
        .map(|(f, _)| f.as_str())
        .collect();
    assert_eq!(
        logging,
        [
            "--verbose...",
            "--quiet",
            "--log-format",
            "--log-full-numbers",
            "--progress"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_manual_pages_are_generated() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let o = run(&["completions", shell]).await;
        assert_eq!(code(&o), 0, "{shell}: {}", stderr(&o));
        let script = String::from_utf8_lossy(&o.stdout);
        assert!(
            script.contains("ivr-campaign") && script.contains("metrics-file"),
            "{shell} completes the run flags"
        );
    }
    let o = run(&["completions", "tcsh"]).await;
    assert_eq!(code(&o), 64, "an unknown shell: {}", stderr(&o));

    let o = run(&["man"]).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let page = String::from_utf8_lossy(&o.stdout);
    assert!(page.contains(".TH ivr-campaign 1"), "{page}");
    let dir = tempfile::tempdir().expect("tempdir");
    let o = run(&["man", "--dir", &dir.path().display().to_string()]).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let run_page =
        std::fs::read_to_string(dir.path().join("ivr-campaign-run.1")).expect("the run page");
    assert!(run_page.contains(r"\-\-metrics\-file"), "{run_page}");
    assert!(dir.path().join("ivr-campaign.1").exists());
}

const SCENARIO: &str = "[[rule]]\nnumbers = [\"+16465551000\"]\nsteps = [{ status = \"failed\", notes = \"No Answer\" }]\n[[rule]]\nnumbers = [\"+16465551001\"]\nsteps = [\"forget\"]\n[[rule]]\nsteps = [{ status = \"made\", responses = \"Confirm=1\" }]\n";

fn inode(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).expect("metrics file").ino()
}

fn scrape(p: &Path) -> prometheus_parse::Scrape {
    let text = std::fs::read_to_string(p).expect("metrics file");
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"))
}

fn gauge(s: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| label.is_none_or(|(k, v)| x.labels.get(k) == Some(v)))
        .find_map(|x| match x.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_file_is_prometheus_text_replaced_whole_and_keeps_the_last_success() {
    let sim = sim(4, ms(5), ms(5), ms(5), SCENARIO).await;
    let c = Campaign::new(&sim, &contacts(5));
    let metrics_dir = c.dir.path().join("textfile");
    std::fs::create_dir(&metrics_dir).expect("mkdir");
    let metrics = metrics_dir.join("reminders.prom");
    let summary = c.dir.path().join("summary.json");
    let base = c.base();
    let args = with(
        &base,
        &[
            "--metrics-file",
            metrics.to_str().expect("utf-8"),
            "--summary-json",
            summary.to_str().expect("utf-8"),
        ],
    );
    let first = run(&args).await;
    assert_eq!(code(&first), 3, "{}", stderr(&first));
    let s = scrape(&metrics);
    let campaign = c.output.display().to_string();
    assert!(
        s.samples
            .iter()
            .all(|x| x.labels.get("campaign") == Some(campaign.as_str())),
        "every sample names the campaign"
    );
    let rows = |st: &str| gauge(&s, "ivr_campaign_rows", Some(("status", st)));
    assert_eq!(rows("made"), Some(3.0));
    assert_eq!(rows("failed"), Some(1.0));
    assert_eq!(rows("error"), Some(1.0));
    assert_eq!(rows("not_attempted"), Some(0.0));
    assert_eq!(
        gauge(&s, "ivr_campaign_last_run_exit_code", None),
        Some(3.0)
    );
    assert_eq!(
        gauge(&s, "ivr_campaign_rows_needing_attention", None),
        Some(1.0)
    );
    assert_eq!(
        gauge(&s, "ivr_campaign_last_run_call_requests", None),
        Some(5.0)
    );
    assert!(gauge(&s, "ivr_campaign_last_run_polls", None).is_some_and(|p| p >= 5.0));
    assert!(gauge(&s, "ivr_campaign_last_run_poll_errors", None).is_some());
    assert!(gauge(&s, "ivr_campaign_last_run_outage_seconds", None).is_some());
    assert!(gauge(&s, "ivr_campaign_last_run_duration_seconds", None).is_some_and(|d| d > 0.0));
    let success = gauge(&s, "ivr_campaign_last_success_timestamp_seconds", None)
        .expect("a run that ended 3 succeeded");
    let now = jiff::Timestamp::now().as_second() as f64;
    assert!((now - success).abs() < 600.0, "{success} is about now");

    // `status --json` agrees with the summary on every row.
    let st = run(&["status", "--output", &campaign, "--json"]).await;
    assert_eq!(code(&st), 0, "{}", stderr(&st));
    let status: serde_json::Value = serde_json::from_slice(&st.stdout).expect("status JSON");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary")).expect("json");
    assert_eq!(status["schema"], "ivr-campaign/status/v1");
    assert_eq!(status["running"], false);
    for key in ["total", "needs_attention", "open", "by_status"] {
        assert_eq!(status["rows"][key], summary["rows"][key], "rows.{key}");
    }
    assert_eq!(status["gateways"][0]["campaign"]["calls"], 5);

    // A run refused on a changed list still replaces the file: its exit code, the first run's success.
    let before = inode(&metrics);
    write(c.dir.path(), "c.csv", &contacts(6));
    let refused = run(&args).await;
    assert_eq!(code(&refused), 78, "{}", stderr(&refused));
    assert_ne!(
        inode(&metrics),
        before,
        "a new file renamed over the old one"
    );
    let s = scrape(&metrics);
    assert_eq!(
        gauge(&s, "ivr_campaign_last_run_exit_code", None),
        Some(78.0)
    );
    assert_eq!(
        gauge(&s, "ivr_campaign_last_success_timestamp_seconds", None),
        Some(success),
        "the last success is kept"
    );
    assert_eq!(
        gauge(&s, "ivr_campaign_rows", Some(("status", "made"))),
        None,
        "no row figures from a run that read none"
    );
    let names: Vec<String> = std::fs::read_dir(&metrics_dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["reminders.prom"],
        "nothing else for the collector to read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_url_without_a_real_host_is_refused_before_any_work() {
    let Files { dir, input, output } = Files::new(&contacts(3));
    for url in [
        "ht!tp:/x y",
        "ht!tp:/x",
        "http://gw..clinic.lan:8155",
        "http://-gw:8155",
    ] {
        let o = run(&[
            "run",
            "--input",
            input.to_str().expect("utf-8"),
            "--output",
            output.to_str().expect("utf-8"),
            "--app",
            "A",
            "--gateway",
            url,
        ])
        .await;
        let err = stderr(&o);
        assert_eq!(code(&o), 64, "{url}: {err}");
        assert!(err.contains("not a gateway URL"), "{url}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{url}: {err}");
        assert!(!output.exists() && !dir.path().join("r.csv.state").exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_name_that_does_not_resolve_is_said_plainly_first() {
    let Files {
        dir: _dir,
        input,
        output,
    } = Files::new(&contacts(2));
    // `.invalid` never resolves (RFC 6761).
    let o = tokio::process::Command::new(bin())
        .args([
            "run",
            "--input",
            input.to_str().expect("utf-8"),
            "--output",
            output.to_str().expect("utf-8"),
            "--app",
            "A",
            "--gateway",
            "http://gateway.no-such-clinic.invalid:8155",
            "--max-outage",
            "1s",
        ])
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .output()
        .await
        .expect("runs");
    let err = stderr(&o);
    assert_eq!(code(&o), 75, "{err}");
    let first_warning = err.lines().find(|l| l.contains("WARN")).expect("a warning");
    assert!(
        first_warning.contains("cannot resolve gateway host gateway.no-such-clinic.invalid"),
        "{first_warning}"
    );
    assert!(
        results(&output)
            .iter()
            .all(|r| r["status"] == "not_attempted")
    );
}
