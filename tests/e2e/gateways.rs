//! One campaign over several gateways: each call on one gateway, never requested again on another, lines held
//! per gateway, a gateway lost mid-run finished by a rerun.

use std::collections::HashMap;

use ivr_campaign::simulator::Recorded;

use crate::helpers::*;

/// Numbers requested more than once, counted over every gateway's log.
fn requested_twice(logs: &[&[Recorded]]) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for log in logs {
        for r in call_requests(log) {
            *seen.entry(r.params["phoneno"].clone()).or_default() += 1;
        }
    }
    let mut twice: Vec<String> = seen
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(p, _)| p)
        .collect();
    twice.sort();
    twice
}

fn two_gateways<'a>(base: &'a [String], second: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = with(base, &["--gateway", second]);
    v.extend_from_slice(extra);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_lost_mid_run_leaves_its_calls_to_a_rerun_and_the_rest_goes_to_the_other() {
    // Gateway A's calls ring for a while (three attempts a second apart), so some are open on it when it
    // goes away; gateway B's are quick.
    let a = sim(
        8,
        ms(20),
        ms(20),
        ms(1000),
        "[[rule]]\nsteps = [\"retry\", \"retry\", \"made\"]\n",
    )
    .await;
    let b = sim(8, ms(10), ms(10), ms(10), "[[rule]]\nsteps = [\"made\"]\n").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 30;
    let input = write(dir.path(), "c.csv", &contacts(n));
    let output = dir.path().join("r.csv");
    let base = base_args(&a, &input, &output);
    let b_url = b.url();
    let args = two_gateways(&base, &b_url, &["--lines", "3", "--max-outage", "2s"]);
    let mut child = spawn(&args);
    wait_while_running(
        &a,
        &mut child,
        |log| call_requests(log).len() >= 3,
        "three calls on gateway A",
    )
    .await;
    a.go_away();
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the run ends")
        .expect("status");
    // Work is left (A's calls), so 75: but not an outage stop, since B answered throughout.
    assert_eq!(status.code(), Some(75));

    let (a_log, b_log) = (a.requests(), b.requests());
    assert_eq!(requested_twice(&[&a_log, &b_log]), Vec::<String>::new());
    assert!(
        max_outstanding(&a_log) <= 3,
        "A: {}",
        max_outstanding(&a_log)
    );
    assert!(
        max_outstanding(&b_log) <= 3,
        "B: {}",
        max_outstanding(&b_log)
    );
    let on_a: Vec<String> = call_requests(&a_log)
        .iter()
        .map(|r| r.params["phoneno"].clone())
        .collect();
    assert!((3..=6).contains(&on_a.len()), "{} calls on A", on_a.len());
    assert_eq!(
        on_a.len() + call_requests(&b_log).len(),
        n,
        "every contact requested once"
    );

    let a_key = a.url();
    let rows = results(&output);
    for r in &rows {
        if on_a.contains(&r["dialed_number"]) {
            assert_eq!(r["gateway"], a_key);
            // Made before A went away, or left open for the rerun.
            assert!(
                ["in_progress", "made"].contains(&r["status"].as_str()),
                "{r:?}"
            );
        } else {
            assert_eq!(r["gateway"], b_url);
            assert_eq!(r["status"], "made", "{r:?}");
        }
    }
    let left: usize = rows.iter().filter(|r| r["status"] == "in_progress").count();
    assert!(left >= 1, "some calls were open on A when it went away");

    // Without A, the rerun is refused: its calls would never be read.
    let b_only = on_gateway(&base, &b_url);
    let without_a = with(&b_only, &["--lines", "3"]);
    let refused = run(&without_a).await;
    assert_eq!(code(&refused), 78, "{}", stderr(&refused));
    assert!(stderr(&refused).contains(&a_key), "{}", stderr(&refused));

    // A is back: the rerun polls its calls there, and requests nobody again.
    a.come_back().await.expect("A listens again");
    let requests_before = (
        call_requests(&a.requests()).len(),
        call_requests(&b.requests()).len(),
    );
    let again = run(&args).await;
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    let (a_log, b_log) = (a.requests(), b.requests());
    assert_eq!(
        (call_requests(&a_log).len(), call_requests(&b_log).len()),
        requests_before,
        "the rerun requested a call"
    );
    let rows = results(&output);
    assert!(rows.iter().all(|r| r["status"] == "made"), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_gateways_by_load_and_lines_hold_on_each() {
    let a = sim(8, ms(30), ms(60), ms(10), "[[rule]]\nsteps = [\"made\"]\n").await;
    let b = sim(8, ms(30), ms(60), ms(10), "[[rule]]\nsteps = [\"made\"]\n").await;
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "c.csv", &contacts(40));
    let output = dir.path().join("r.csv");
    let campaign = write(
        dir.path(),
        "campaign.toml",
        &format!(
            r#"
input = "c.csv"
output = "r.csv"
app = "Reminder"
rate = "unlimited"
poll-interval = "20ms"
poll-rate = "unlimited"
lines = 2
[[gateways]]
url = "{}"
[[gateways]]
url = "{}"
lines = 4
"#,
            a.url(),
            b.url()
        ),
    );
    let summary = dir.path().join("summary.json");
    let out = run(&[
        "run",
        &campaign.display().to_string(),
        "-q",
        "--summary-json",
        &summary.display().to_string(),
    ])
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let (a_log, b_log) = (a.requests(), b.requests());
    assert_eq!(requested_twice(&[&a_log, &b_log]), Vec::<String>::new());
    let (on_a, on_b) = (call_requests(&a_log).len(), call_requests(&b_log).len());
    assert_eq!(on_a + on_b, 40);
    assert!(
        max_outstanding(&a_log) <= 2,
        "A: {}",
        max_outstanding(&a_log)
    );
    assert!(
        max_outstanding(&b_log) <= 4,
        "B: {}",
        max_outstanding(&b_log)
    );
    // Both carry the campaign; B, with twice the lines, carries more of it.
    assert!(on_a >= 5 && on_b > on_a, "A {on_a}, B {on_b}");
    // Each gateway was asked only about calls it holds (ids are each gateway's own: they may coincide).
    for log in [&a_log, &b_log] {
        let issued: Vec<&str> = call_requests(log)
            .iter()
            .filter_map(|c| c.req_id.as_deref())
            .collect();
        for r in log
            .iter()
            .filter(|r| r.path != ivr_campaign::gateway::protocol::CALL_PATH)
        {
            let id = r.params.get("reqid").map(String::as_str).unwrap_or("");
            assert!(
                issued.contains(&id),
                "asked about {id}, which it never gave"
            );
        }
    }
    // The summary names each gateway with its share.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary")).expect("json");
    let gateways = json["gateways"].as_array().expect("gateways");
    assert_eq!(gateways.len(), 2);
    assert_eq!(gateways[0]["url"], a.url());
    assert_eq!(gateways[0]["lines"], 2);
    assert_eq!(gateways[1]["lines"], 4);
    assert_eq!(gateways[0]["call_requests"], on_a as u64);
    assert_eq!(gateways[1]["campaign"]["outcomes"]["made"], on_b as u64);
    // So does `status`.
    let status = run(&["status", "--output", &output.display().to_string()]).await;
    let said = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        said.contains(&format!("{}: {on_a} calls", a.url())),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_gateway_writes_its_open_calls_off_as_unknown_and_names_them() {
    // Calls on A never finish; A goes away for good.
    let a = sim(8, ms(10), ms(10), ms(10), "[[rule]]\nsteps = []\n").await;
    let b = sim(8, ms(10), ms(10), ms(10), "[[rule]]\nsteps = [\"made\"]\n").await;
    let Files {
        dir: _dir,
        input,
        output,
    } = Files::new(&contacts(4));
    let base = base_args(&a, &input, &output);
    let mut child = tokio::process::Command::new(bin())
        .args(with(&base, &["--max-outage", "1s", "--lines", "4"]))
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    wait_while_running(
        &a,
        &mut child,
        |log| call_requests(log).len() >= 4,
        "four calls on A",
    )
    .await;
    a.go_away();
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the run ends")
        .expect("status");
    assert_eq!(status.code(), Some(75));
    assert!(
        results(&output)
            .iter()
            .all(|r| r["status"] == "in_progress")
    );

    let a_key = a.url();
    let b_url = b.url();
    let b_only = on_gateway(&base, &b_url);
    let forget = with(&b_only, &["--forget-gateway", &a_key]);
    let out = run(&forget).await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let rows = results(&output);
    for r in &rows {
        assert_eq!(r["status"], "unknown");
        assert!(
            r["detail"].contains(&a_key) && r["detail"].contains("--forget-gateway"),
            "{}",
            r["detail"]
        );
    }
    assert!(
        call_requests(&b.requests()).is_empty(),
        "nobody was called again"
    );
}
