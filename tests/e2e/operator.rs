//! What operators and monitoring read: the JSON summary, the logs, the HTML report; and a gateway behind a
//! password-protected proxy.

use crate::helpers::*;

const SCENARIO: &str = "[[rule]]\nnumbers = [\"+16465551000\"]\nsteps = [{ status = \"failed\", notes = \"No Answer\" }]\n[[rule]]\nnumbers = [\"+16465551001\"]\nsteps = [\"forget\"]\n[[rule]]\nsteps = [{ status = \"made\", responses = \"Confirm=1\" }]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_json_has_the_documented_fields() {
    let sim = sim(4, ms(5), ms(5), ms(5), SCENARIO).await;
    let c = Campaign::new(&sim, &contacts(5));
    let summary = c.dir.path().join("summary.json");
    let out = c
        .run(&["--summary-json", &summary.display().to_string()])
        .await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary written"))
            .expect("json");
    assert_eq!(v["schema"], "ivr-campaign/summary/v1");
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["rows"]["total"], 5);
    assert_eq!(v["rows"]["by_status"]["made"], 3);
    assert_eq!(v["rows"]["by_status"]["failed"], 1);
    assert_eq!(v["rows"]["by_status"]["error"], 1);
    assert_eq!(v["rows"]["by_status"]["not_attempted"], 0);
    assert_eq!(v["rows"]["needs_attention"], 1);
    assert_eq!(v["gateway"]["call_requests"], 5);
    assert!(v["duration_seconds"].as_f64().is_some_and(|d| d > 0.0));
    assert!(v["started_at"].as_str().is_some_and(|s| s.ends_with('Z')));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_mask_phone_numbers_unless_asked() {
    let sim = sim(4, ms(5), ms(5), ms(5), SCENARIO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = write(dir.path(), "c.csv", &contacts(3));
    for (extra, masked) in [(&[][..], true), (&["--log-full-numbers"][..], false)] {
        let output = dir.path().join(format!("r{masked}.csv"));
        let base = base_args(&sim, &input, &output);
        let mut args: Vec<&str> = with(&base, &["-v", "--log-format", "json"])
            .into_iter()
            .filter(|a| *a != "-q")
            .collect();
        args.extend_from_slice(extra);
        let out = run(&args).await;
        let err = stderr(&out);
        let logs: Vec<&str> = err
            .lines()
            .filter(|l| !l.starts_with("ivr-campaign: "))
            .collect();
        assert!(logs.len() >= 3, "{err}");
        for line in &logs {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(
                v["level"].is_string() && v["timestamp"].is_string(),
                "{line}"
            );
        }
        let requested: Vec<&&str> = logs
            .iter()
            .filter(|l| l.contains("call requested"))
            .collect();
        assert_eq!(requested.len(), 3, "{err}");
        if masked {
            for number in ["6465551000", "6465551001", "6465551002"] {
                assert!(!err.contains(number), "a whole number leaked: {err}");
            }
            assert!(
                requested.iter().any(|l| l.contains("\"+1******1002\"")),
                "the last four digits stay: {requested:?}"
            );
        } else {
            assert!(
                requested.iter().any(|l| l.contains("\"+16465551002\"")),
                "{requested:?}"
            );
        }
        // Not a terminal: no progress bar.
        assert!(!err.contains("ETA"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_behind_basic_auth_and_refused_credentials() {
    let sim = sim_auth(4, ms(5), ms(5), ms(5), "", Some("ivr:s3cret")).await;
    let c = Campaign::new(&sim, &contacts(6));
    let base = c.base();
    let args = with(&base, &["--gateway-user", "ivr", "--lines", "2"]);
    let wrong = tokio::process::Command::new(bin())
        .args(&args)
        .env("IVR_GATEWAY_PASSWORD", "wrong")
        .output()
        .await
        .expect("run");
    let err = String::from_utf8_lossy(&wrong.stderr).into_owned();
    assert_eq!(wrong.status.code(), Some(78), "{err}");
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(
        !err.contains("wrong") && !err.contains("s3cret"),
        "a password was printed: {err}"
    );
    // Stopped at once: nobody scheduled, at most one refused request per line, everyone left for a rerun.
    assert!(call_requests(&sim.requests()).is_empty());
    assert!(c.results().iter().all(|r| r["status"] == "not_attempted"));

    let right = tokio::process::Command::new(bin())
        .args(&args)
        .env("IVR_GATEWAY_PASSWORD", "s3cret")
        .output()
        .await
        .expect("run");
    assert_eq!(
        right.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    assert!(c.results().iter().all(|r| r["status"] == "made"));

    // A password in the URL is refused before anything happens, without echoing it.
    let url = sim.url().replace("http://", "http://ivr:s3cret@");
    let o = run(&with(&on_gateway(&base, &url), &[])).await;
    assert_eq!(code(&o), 64);
    assert!(!stderr(&o).contains("s3cret"));
    // A user without the password variable is a usage error.
    let o = tokio::process::Command::new(bin())
        .args(&args)
        .env_remove("IVR_GATEWAY_PASSWORD")
        .output()
        .await
        .expect("run");
    assert_eq!(o.status.code(), Some(64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_is_self_contained() {
    let sim = sim(4, ms(5), ms(5), ms(5), SCENARIO).await;
    let c = Campaign::new(&sim, &contacts(5));
    assert_eq!(code(&c.run(&[]).await), 3);
    let out = run(&["report", "--output", &c.output.display().to_string()]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let path = c.dir.path().join("r.report.html");
    let html = std::fs::read_to_string(&path).expect("report written");
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<svg"), "inline charts");
    assert!(
        html.contains("Confirm"),
        "the answers section lists the response key"
    );
    assert!(html.contains("Rows that need a person") && html.contains("no record of request"));
    // Calls by the hour where the people were: New York numbers place themselves.
    assert!(
        html.contains("Calls by the recipient's local hour"),
        "{html}"
    );
    assert!(
        html.contains(":00-") && html.contains(":59</title>"),
        "no hour bar"
    );
    for external in ["src=", "href=", "@import", "url("] {
        assert!(!html.contains(external), "external asset: {external}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_gateway_with_an_internal_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A clinic's internal CA and the proxy's certificate for 127.0.0.1.
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Clinic internal CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &issuer).expect("cert");
    let ca_pem = write(dir.path(), "ca.pem", &ca.pem());
    let cert_pem = write(dir.path(), "proxy.pem", &cert.pem());
    let key_pem = write(dir.path(), "proxy.key", &key.serialize_pem());

    let settings = ivr_campaign::simulator::SimSettings {
        ring_delay: ms(5),
        call_duration: ms(5),
        retry_delay: ms(5),
        tls: Some((cert_pem, key_pem)),
        remember: true,
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sim = ivr_campaign::simulator::Simulator::start(listener, settings, Default::default())
        .expect("sim");
    assert!(sim.url().starts_with("https://"));
    let input = write(dir.path(), "c.csv", &contacts(3));
    let output = dir.path().join("r.csv");
    let base = base_args(&sim, &input, &output);

    // Without the CA the certificate is not trusted: nobody is called, and the run stops with work left.
    let untrusted = run(&with(&base, &["--max-outage", "1s"])).await;
    assert_eq!(code(&untrusted), 75, "{}", stderr(&untrusted));
    assert!(
        stderr(&untrusted).to_lowercase().contains("certificate"),
        "{}",
        stderr(&untrusted)
    );
    assert!(call_requests(&sim.requests()).is_empty());

    let trusted = run(&with(&base, &["--ca-cert", &ca_pem.display().to_string()])).await;
    assert_eq!(code(&trusted), 0, "{}", stderr(&trusted));
    assert!(results(&output).iter().all(|r| r["status"] == "made"));
    assert_eq!(call_requests(&sim.requests()).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stderr_never_stops_the_run() {
    use tokio::io::AsyncBufReadExt;
    // `ivr-campaign run … 2>&1 | head -2`: the reader goes away after two lines, the run goes on logging.
    let sim = sim(4, ms(20), ms(20), ms(5), "").await;
    let c = Campaign::new(&sim, &contacts(12));
    let args: Vec<String> = c
        .base()
        .into_iter()
        .filter(|a| a != "-q")
        .chain(["-v".to_string(), "--lines".into(), "2".into()])
        .collect();
    let mut child = tokio::process::Command::new(bin())
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    {
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        for _ in 0..2 {
            let _ = tokio::time::timeout(PATIENCE, lines.next_line()).await;
        }
        // Dropped here: the pipe's read end closes while calls are still being made and logged.
    }
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("finishes")
        .expect("status");
    assert_eq!(status.code(), Some(0));
    let rows = c.results();
    assert_eq!(rows.len(), 12);
    assert!(rows.iter().all(|r| r["status"] == "made"));
    assert_eq!(call_requests(&sim.requests()).len(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_requests_awaiting_their_answer_as_in_progress_while_the_run_holds_the_lock()
{
    // The gateway takes 30 s to answer each call request: the three intents stay unanswered while status reads.
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
    let mut child = spawn(with(&base, &["--request-timeout", "60s"]));
    wait_while_running(
        &sim,
        &mut child,
        |log| call_requests(log).len() >= 3,
        "three call requests sent",
    )
    .await;
    let out = c.output.display().to_string();
    let status_json = || async {
        let st = run(&["status", "--output", &out, "--json"]).await;
        assert_eq!(code(&st), 0, "{}", stderr(&st));
        serde_json::from_slice::<serde_json::Value>(&st.stdout).expect("status JSON")
    };
    let during = status_json().await;
    assert_eq!(during["running"], true);
    assert_eq!(during["rows"]["requesting"], 3, "{during}");
    assert_eq!(during["rows"]["by_status"]["unknown"], 0, "{during}");
    assert_eq!(during["rows"]["by_status"]["in_progress"], 3, "{during}");
    assert_eq!(during["rows"]["needs_attention"], 0, "{during}");
    assert_eq!(during["rows"]["open"], 3, "{during}");
    let plain = run(&["status", "--output", &out]).await;
    let text = String::from_utf8_lossy(&plain.stdout);
    assert!(
        text.contains("3 open") && !text.contains("unknown"),
        "{text}"
    );

    // Killed before the answers came: nobody knows whether those calls were placed. Now they are unknown.
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");
    let after = status_json().await;
    assert_eq!(after["running"], false);
    assert_eq!(after["rows"]["by_status"]["unknown"], 3, "{after}");
    assert_eq!(after["rows"]["by_status"]["in_progress"], 0, "{after}");
    assert_eq!(after["rows"]["needs_attention"], 3, "{after}");
    assert_eq!(after["rows"]["open"], 0, "{after}");
    let plain = run(&["status", "--output", &out]).await;
    let text = String::from_utf8_lossy(&plain.stdout);
    assert!(
        text.contains("unknown") && text.contains("0 open"),
        "{text}"
    );
}
