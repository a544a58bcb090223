//! A campaign with every outcome, read back from the results file and from what the gateway saw.

use ivr_campaign::gateway::protocol;

use crate::helpers::*;

const SCENARIO: &str = r#"
[[rule]]
numbers = ["+12125550101"]
steps = ["retry", "retry", { status = "made", responses = "Confirm=1|Time=2" }]
[[rule]]
numbers = ["+12125550102"]
steps = ["retry", { status = "failed", notes = "Line Busy" }]
[[rule]]
numbers = ["+12125550103"]
steps = ["retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry", "retry"]
[[rule]]
numbers = ["+12125550104"]
steps = ["made"]
reply = "drop"
[[rule]]
numbers = ["+12125550105"]
steps = ["forget"]
[[rule]]
numbers = ["+12125550107"]
steps = ["waitagent", { status = "made", responses = "7" }]
"#;

const CONTACTS: &str = "\
id,name,phone,note
1,Ada,212-555-0101,retry then made
2,Ben,212-555-0102,busy
3,Cleo,212-555-0103,never final
4,Dev,212-555-0104,reply lost
5,Eli,212-555-0105,record lost
6,Fay,12,bad number
7,Gus,(212) 555-0101,duplicate of Ada
8,Hana,212-555-0106,plain made
9,Ivo,212-555-0107,unknown word then made
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_outcome_lands_in_the_results() {
    let sim = sim(8, ms(20), ms(20), ms(60), SCENARIO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = write(dir.path(), "contacts.csv", CONTACTS);
    let output = dir.path().join("results.csv");
    let base = base_args(&sim, &input, &output);
    let out = run(&with(
        &base,
        &[
            "--poll-timeout",
            "1500ms",
            "--response-keys",
            "Confirm,Time",
        ],
    ))
    .await;
    assert_eq!(
        code(&out),
        3,
        "rows need attention, so exit 3; stderr: {}",
        stderr(&out)
    );

    let rows = results(&output);
    let statuses: Vec<&str> = rows.iter().map(|r| r["status"].as_str()).collect();
    assert_eq!(
        statuses,
        [
            "made",
            "failed",
            "unresolved",
            "unknown",
            "error",
            "invalid",
            "duplicate",
            "made",
            "made"
        ]
    );
    // Input columns come back unchanged and in order.
    let original: Vec<&str> = CONTACTS.lines().skip(1).collect();
    for (r, line) in rows.iter().zip(original) {
        assert_eq!(
            format!("{},{},{},{}", r["id"], r["name"], r["phone"], r["note"]),
            line
        );
    }
    // Responses come from the final attempt of a retry history.
    assert_eq!(rows[0]["responses"], "Confirm=1|Time=2");
    assert_eq!(rows[0]["attempts"], "3");
    assert_eq!(rows[0]["response.Confirm"], "1");
    assert_eq!(rows[0]["response.Time"], "2");
    assert_eq!(rows[0]["dialed_number"], "+12125550101");
    assert_eq!(rows[1]["detail"], "Line Busy");
    assert_eq!(rows[1]["attempts"], "2");
    assert!(
        rows[2]["detail"].contains("no final status"),
        "{}",
        rows[2]["detail"]
    );
    assert!(
        rows[3]["detail"].contains("may have been scheduled"),
        "{}",
        rows[3]["detail"]
    );
    assert!(
        rows[4]["detail"].contains("no record"),
        "{}",
        rows[4]["detail"]
    );
    assert!(
        rows[5]["detail"].contains("\"12\" is not a valid number"),
        "{}",
        rows[5]["detail"]
    );
    assert_eq!(rows[6]["detail"], "same number as row 1");
    assert_eq!(rows[8]["responses"], "__response___=7");
    assert_eq!(rows[8]["attempts"], "2");
    for r in rows
        .iter()
        .filter(|r| r["status"] == "made" || r["status"] == "failed")
    {
        assert!(
            !r["req_id"].is_empty() && !r["dialed_at"].is_empty() && !r["finished_at"].is_empty()
        );
    }

    let log = sim.requests();
    // Nobody was asked for twice: not the retrying ones, not the duplicate, not the lost reply.
    assert_eq!(dialed_twice(&log), Vec::<String>::new());
    let requested: Vec<&str> = call_requests(&log)
        .iter()
        .map(|r| r.params["phoneno"].as_str())
        .collect();
    assert_eq!(requested.len(), 7, "{requested:?}");
    for r in call_requests(&log) {
        assert_eq!(r.params["startapp"], "Reminder");
        assert_eq!(r.params["selfdelete"], "0");
        assert_eq!(r.params["firstocc"], "10");
        assert!(
            r.params["info"].starts_with("ivr-campaign "),
            "{}",
            r.params["info"]
        );
    }
    // The retrying call was polled while the gateway reported `retry`, and never requested again.
    let ada_id = &rows[0]["req_id"];
    assert!(
        log.iter()
            .any(|r| r.req_id.as_deref() == Some(ada_id.as_str())
                && r.status.as_deref() == Some("retry"))
    );
    // Final calls were removed after their final status was read; the unresolved one was removed to cancel it.
    for i in [0usize, 1, 2, 7, 8] {
        let id = rows[i]["req_id"].as_str();
        let removed = log
            .iter()
            .find(|r| r.path == protocol::REMOVE_PATH && r.req_id.as_deref() == Some(id));
        let removed = removed.unwrap_or_else(|| panic!("row {} ({id}) was not removed", i + 1));
        if i != 2 {
            let final_seen = log
                .iter()
                .find(|r| r.req_id.as_deref() == Some(id) && r.is_final)
                .map(|r| r.seq);
            assert!(final_seen.is_some_and(|s| s < removed.seq));
        }
    }

    // Running the same command again changes nothing and calls nobody.
    let before = sim.requests().len();
    let again = run(&with(
        &base,
        &[
            "--poll-timeout",
            "1500ms",
            "--response-keys",
            "Confirm,Time",
        ],
    ))
    .await;
    assert_eq!(code(&again), 3, "{}", stderr(&again));
    assert_eq!(call_requests(&sim.requests()).len(), 7);
    assert!(sim.requests().len() >= before);
    let rows_again = results(&output);
    assert_eq!(rows_again, rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_campaign_exits_zero_and_status_reports_it() {
    let sim = sim(4, ms(10), ms(10), ms(10), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = write(dir.path(), "list.csv", &contacts(5));
    let output = dir.path().join("out.csv");
    let out = run(&with(&base_args(&sim, &input, &output), &[])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(results(&output).iter().all(|r| r["status"] == "made"));
    // The journal sits next to the output by default, and `status` reads it.
    assert!(
        dir.path()
            .join("out.csv.state")
            .join("journal.sqlite")
            .exists()
    );
    let st = run(&["status", "--output", &output.display().to_string()]).await;
    assert_eq!(code(&st), 0, "{}", stderr(&st));
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(text.contains("5 rows, 0 open, 0 need a person"), "{text}");
    assert!(text.contains("made"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn number_formats_reach_the_gateway_as_configured() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = write(
        dir.path(),
        "uk.csv",
        "Phone,who\n020 7946 0018,a\n+1 646 555 1000,b\n",
    );
    for (format, want) in [
        ("e164", ["+442079460018", "+16465551000"]),
        ("digits", ["442079460018", "16465551000"]),
    ] {
        let output = dir.path().join(format!("{format}.csv"));
        let out = run(&with(
            &base_args(&sim, &input, &output),
            &["--default-region", "GB", "--number-format", format],
        ))
        .await;
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let log = sim.requests();
        let mut sent: Vec<&str> = call_requests(&log)
            .iter()
            .rev()
            .take(2)
            .map(|r| r.params["phoneno"].as_str())
            .collect();
        sent.sort();
        let mut want = want.to_vec();
        want.sort();
        assert_eq!(sent, want, "{format}");
    }
    // National numbers drop the country code: two countries' numbers could come out as the same digits, so
    // a list with two countries is refused, and a list of one is dialed as its country dials.
    let before = sim.requests().len();
    let national = dir.path().join("national.csv");
    let o = run(&with(
        &base_args(&sim, &input, &national),
        &["--default-region", "GB", "--number-format", "national"],
    ))
    .await;
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("+44 (row 1) and +1 (row 2)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(sim.requests().len(), before);
    let uk_only = write(
        dir.path(),
        "uk-only.csv",
        "Phone,who\n020 7946 0018,a\n020 7946 0019,b\n",
    );
    let o = run(&with(
        &base_args(&sim, &uk_only, &national),
        &["--default-region", "GB", "--number-format", "national"],
    ))
    .await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let log = sim.requests();
    let mut sent: Vec<&str> = call_requests(&log)
        .iter()
        .rev()
        .take(2)
        .map(|r| r.params["phoneno"].as_str())
        .collect();
    sent.sort();
    assert_eq!(sent, ["02079460018", "02079460019"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_kept_on_request_and_a_later_run_cleans_them_up() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let c = Campaign::new(&sim, &contacts(3));
    let base = c.base();
    let removes = |sim: &ivr_campaign::simulator::Simulator| {
        sim.requests()
            .iter()
            .filter(|r| r.path == ivr_campaign::gateway::protocol::REMOVE_PATH)
            .count()
    };
    let kept = run(&with(&base, &["--keep-records"])).await;
    assert_eq!(code(&kept), 0, "{}", stderr(&kept));
    assert_eq!(
        removes(&sim),
        0,
        "--keep-records leaves the gateway's records alone"
    );
    // The journal knows which records are still on the gateway: a later run without the flag removes them,
    // and calls nobody.
    let later = run(&with(&base, &[])).await;
    assert_eq!(code(&later), 0, "{}", stderr(&later));
    assert_eq!(removes(&sim), 3);
    assert_eq!(call_requests(&sim.requests()).len(), 3);
    let again = run(&with(&base, &[])).await;
    assert_eq!(code(&again), 0);
    assert_eq!(removes(&sim), 3, "each record is removed once");
}
