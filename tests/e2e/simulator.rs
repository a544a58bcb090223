//! The simulator as operators use it: the handlers over GET (as the captured browser session drove them), the
//! request record, and `gateway = "sim"` from a campaign file.

use ivr_campaign::gateway::protocol::{self, StatusReply};
use ivr_campaign::simulator::SimSettings;
use ivr_campaign::simulator::Simulator;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_answer_get_with_the_gateways_shapes_and_are_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let record = dir.path().join("requests.jsonl");
    let settings = SimSettings {
        ring_delay: ms(20),
        call_duration: ms(20),
        retry_delay: ms(20),
        record: Some(record.clone()),
        remember: true,
        ..Default::default()
    };
    let scenario = toml::from_str(
        "[[rule]]\nsteps = [\"retry\", { status = \"made\", responses = \"Q1=2|7\" }]\n",
    )
    .expect("scenario");
    let sim = Simulator::start(
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind"),
        settings,
        scenario,
    )
    .expect("sim");
    ivr_campaign::gateway::client::install_tls_provider();
    let http = reqwest::Client::new();
    let get = |path: &str, query: &str| {
        let url = format!("{}{path}?{query}", sim.url());
        let http = http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .expect("answer")
                .text()
                .await
                .expect("body")
        }
    };
    // The capture's call request, as a browser sent it.
    let page = get(
        protocol::CALL_PATH,
        "info=Test&phoneno=4155550100&firstocc=10&selfdelete=0&txt=Test",
    )
    .await;
    let id = protocol::parse_call_reply(&page).expect("a [ReqId=…] page");
    assert!(page.contains("Your call is scheduled for"), "{page}");
    assert_eq!(
        protocol::parse_status_reply(&get(protocol::STATUS_PATH, &format!("reqid={id}")).await),
        Ok(StatusReply::NoAttemptYet)
    );
    // The retry history ends made; poll for it the way a client does (the status handler is what is tested).
    let history = async {
        loop {
            let body = get(protocol::STATUS_PATH, &format!("reqid={id}")).await;
            match protocol::parse_status_reply(&body) {
                Ok(StatusReply::Attempts(a)) if a.len() == 2 => break a,
                _ => {}
            }
            tokio::time::sleep(ms(20)).await;
        }
    };
    let attempts = tokio::time::timeout(PATIENCE, history)
        .await
        .expect("the call ends within the test's patience");
    assert_eq!(attempts[0].status, "retry");
    assert_eq!(attempts[1].status, "made");
    assert_eq!(attempts[1].responses.to_string(), "Q1=2|__response___=7");
    assert!(attempts[1].attempted.is_some() && attempts[0].created == attempts[1].created);
    assert_eq!(
        get(protocol::REMOVE_PATH, &format!("reqid={id}"))
            .await
            .trim(),
        "[removed]"
    );
    assert!(
        get(protocol::REMOVE_PATH, &format!("reqid={id}"))
            .await
            .contains("ERROR: no such call record")
    );
    assert!(
        get(protocol::CALL_PATH, "info=x&firstocc=10&startapp=A")
            .await
            .contains("ERROR: missing parameter phoneno")
    );
    // Every request is in the record file, one JSON object per line.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&record)
        .expect("record file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), sim.requests().len());
    assert_eq!(lines[0]["method"], "GET");
    assert_eq!(lines[0]["outcome"], "scheduled");
    assert_eq!(lines[0]["params"]["phoneno"], "4155550100");
    assert!(lines.iter().any(|l| l["outcome"] == "removed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_file_with_gateway_sim_runs_without_any_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "list.csv", &contacts(4));
    write(
        dir.path(),
        "scenario.toml",
        "[[rule]]\nnumbers = [\"+16465551000\"]\nsteps = [\"failed\"]\n",
    );
    let campaign = write(
        dir.path(),
        "c.toml",
        "input = \"list.csv\"\ngateway = \"sim\"\napp = \"A\"\nrate = \"unlimited\"\npoll-interval = \"20ms\"\n\n[simulator]\nring-delay = \"10ms\"\ncall-duration = \"10ms\"\nscenario = \"scenario.toml\"\n",
    );
    let out = run(&["-q", "run", &campaign.display().to_string()]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rows = results(&dir.path().join("list.results.csv"));
    let statuses: Vec<&str> = rows.iter().map(|r| r["status"].as_str()).collect();
    assert_eq!(statuses, ["failed", "made", "made", "made"]);
}
