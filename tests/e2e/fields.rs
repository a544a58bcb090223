//! What each call request carries besides the number: the caller ID, answer detection, and fields made
//! from the contact's own row, as the gateway received them.

use std::collections::BTreeMap;

use crate::helpers::*;

const CONTACTS: &str = "\
Name,phone,date,time,clinic_line
Zoë Ünal,212-555-0101,2026-12-02,09:30,
Ben,212-555-0102,2026-12-03,10:15,(718) 555-0199
,212-555-0103,2026-12-04,11:00,
";

/// Picks the outcome by a field's value: only the call that carries Zoë's name is confirmed.
const BY_FIELD: &str = r#"
[[rule]]
fields = { attendee = "Zoë*", detection = "3" }
steps = [{ status = "made", responses = "Confirm=1" }]
[[rule]]
weight = 1
steps = [{ status = "failed", notes = "Line Busy" }]
"#;

fn requests_by_number(
    sim: &ivr_campaign::simulator::Simulator,
) -> BTreeMap<String, BTreeMap<String, String>> {
    call_requests(&sim.requests())
        .into_iter()
        .map(|r| (r.params["phoneno"].clone(), r.params.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_carries_the_caller_id_the_detection_level_and_its_rows_own_values() {
    let sim = sim(4, ms(10), ms(10), ms(30), BY_FIELD).await;
    let c = Campaign::new(&sim, CONTACTS);
    let base = c.base();
    let out = run(&with(
        &base,
        &[
            "--caller-id",
            "(646) 555-0100",
            "--detection",
            "3",
            "--field",
            "attendee={name}",
            "--field",
            "appt={DATE} {time} {{local}}",
            "--field",
            "callerid={clinic_line}",
            "--info",
            "reminder for {name}",
            "--response-keys",
            "Confirm",
        ],
    ))
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let sent = requests_by_number(&sim);
    assert_eq!(sent.len(), 3, "{sent:?}");
    let zoe = &sent["+12125550101"];
    assert_eq!(zoe["attendee"], "Zoë Ünal", "UTF-8 arrives intact");
    assert_eq!(zoe["appt"], "2026-12-02 09:30 {local}");
    assert_eq!(zoe["detection"], "3");
    assert_eq!(
        zoe["callerid"], "6465550100",
        "an empty row caller ID falls back to --caller-id"
    );
    assert_eq!(zoe["info"], "reminder for Zoë Ünal");
    // The row's own caller ID wins over --caller-id.
    assert_eq!(sent["+12125550102"]["callerid"], "7185550199");
    // An empty value is sent empty (no --require-fields).
    let nameless = &sent["+12125550103"];
    assert_eq!(nameless["attendee"], "");
    assert_eq!(nameless["info"], "reminder for ");
    for params in sent.values() {
        for p in ["phoneno", "startapp", "firstocc", "selfdelete"] {
            assert!(params.contains_key(p), "{p} still sent: {params:?}");
        }
        assert_eq!(params["selfdelete"], "0");
    }

    // The simulator chose the outcome by the field: only the call naming Zoë was confirmed.
    let rows = c.results();
    let status: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r["status"].as_str(), r["response.Confirm"].as_str()))
        .collect();
    assert_eq!(status, [("made", "1"), ("failed", ""), ("failed", "")]);
    // The results do not repeat the values: they are in the list's columns.
    let header = std::fs::read_to_string(&c.output).expect("results");
    let header = header.lines().next().expect("header");
    assert!(
        !header.contains("attendee") && !header.contains("appt"),
        "{header}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_field_left_empty_makes_the_row_invalid_and_it_is_not_called() {
    let sim = sim(4, ms(10), ms(10), ms(30), "[[rule]]\nsteps = [\"made\"]\n").await;
    let c = Campaign::new(&sim, CONTACTS);
    let base = c.base();
    let out = run(&with(
        &base,
        &["--field", "attendee={name}", "--require-fields", "attendee"],
    ))
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let sent = requests_by_number(&sim);
    assert!(
        !sent.contains_key("+12125550103"),
        "the nameless row was called"
    );
    assert_eq!(sent.len(), 2);
    let rows = c.results();
    assert_eq!(rows[2]["status"], "invalid");
    assert!(
        rows[2]["detail"].contains("attendee") && rows[2]["detail"].contains("empty"),
        "{}",
        rows[2]["detail"]
    );
    assert_eq!(rows[0]["status"], "made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_naming_a_column_the_list_lacks_is_refused_before_any_call() {
    let sim = sim(4, ms(10), ms(10), ms(30), "[[rule]]\nsteps = [\"made\"]\n").await;
    let c = Campaign::new(&sim, CONTACTS);
    let base = c.base();
    for (extra, exit, says) in [
        (vec!["--field", "attendee={nmae}"], 65, "\"nmae\""),
        (vec!["--info", "{appointment}"], 65, "\"appointment\""),
        (vec!["--field", "startapp=Other"], 64, "startapp"),
        (vec!["--field", "=x"], 64, "empty"),
        (vec!["--caller-id", "555-0100"], 64, "caller ID"),
        (vec!["--detection", "5"], 64, "--detection"),
        (vec!["--field", "a={name"], 64, "without its"),
    ] {
        let out = run(&with(&base, &extra)).await;
        let err = stderr(&out);
        assert_eq!(code(&out), exit, "{extra:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{extra:?}: one line: {err}");
        assert!(err.contains(says), "{extra:?}: {err}");
    }
    assert!(sim.requests().is_empty(), "a request reached the gateway");
    assert!(!c.output.exists(), "no results for a refused campaign");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_campaign_files_fields_table_and_the_flags_send_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = write(dir.path(), "c.csv", CONTACTS);
    let by_file = {
        let sim = sim(4, ms(10), ms(10), ms(30), "[[rule]]\nsteps = [\"made\"]\n").await;
        let campaign = write(
            dir.path(),
            "campaign.toml",
            &format!(
                r#"
input = "c.csv"
output = "file.csv"
gateway = "{}"
app = "Reminder"
rate = "unlimited"
poll-interval = "40ms"
caller-id = "+1 646 555 0100"
detection = 2
info = "{{name}} at {{time}}"
require-fields = ["appt"]
[fields]
attendee = "{{name}}"
appt = "{{date}} {{time}}"
"#,
                sim.url()
            ),
        );
        let out = run(&["run", &campaign.display().to_string(), "-q"]).await;
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        requests_by_number(&sim)
    };
    let by_flags = {
        let sim = sim(4, ms(10), ms(10), ms(30), "[[rule]]\nsteps = [\"made\"]\n").await;
        let output = dir.path().join("flags.csv");
        let base = base_args(&sim, &input, &output);
        let out = run(&with(
            &base,
            &[
                "--caller-id",
                "+1 646 555 0100",
                "--detection",
                "2",
                "--info",
                "{name} at {time}",
                "--require-fields",
                "appt",
                "--field",
                "attendee={name}",
                "--field",
                "appt={date} {time}",
            ],
        ))
        .await;
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        requests_by_number(&sim)
    };
    assert_eq!(by_file.len(), 3);
    assert_eq!(by_file, by_flags);
    assert_eq!(by_file["+12125550102"]["callerid"], "+16465550100");
    assert_eq!(by_file["+12125550102"]["info"], "Ben at 10:15");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_show_field_values_only_with_full_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = write(dir.path(), "c.csv", CONTACTS);
    for (full, shown) in [(false, false), (true, true)] {
        let sim = sim(4, ms(10), ms(10), ms(30), "[[rule]]\nsteps = [\"made\"]\n").await;
        let output = dir.path().join(format!("r{full}.csv"));
        let mut base = base_args(&sim, &input, &output);
        base.retain(|a| a != "-q");
        let mut extra = vec!["-v", "--log-format", "json", "--field", "attendee={name}"];
        if full {
            extra.push("--log-full-numbers");
        }
        let out = run(&with(&base, &extra)).await;
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("call request fields"),
            "fields are logged at debug: {err}"
        );
        assert_eq!(err.contains("Zoë Ünal"), shown, "full={full}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_corrected_between_runs_applies_to_everyone_not_yet_called() {
    // One line and long calls: the first stop leaves most of the list pending.
    let sim = sim(1, ms(10), ms(400), ms(30), "[[rule]]\nsteps = [\"made\"]\n").await;
    let c = Campaign::new(&sim, &contacts(6));
    let base = c.base();
    let mut child = tokio::process::Command::new(bin())
        .args(with(&base, &["--lines", "1", "--field", "who=Person"]))
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    wait_while_running(
        &sim,
        &mut child,
        |log| !call_requests(log).is_empty(),
        "the first call",
    )
    .await;
    let pid = child.id().expect("pid").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the run drains and exits")
        .expect("reaped");
    assert!(!status.success(), "stopped before the end: {status:?}");
    let first = call_requests(&sim.requests()).len();
    assert!(first < 6, "{first} calls before the stop");

    let out = run(&with(
        &base,
        &["--field", "who={name}", "--require-fields", "who"],
    ))
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let log = sim.requests();
    assert!(dialed_twice(&log).is_empty(), "{:?}", dialed_twice(&log));
    let calls = call_requests(&log);
    assert_eq!(calls.len(), 6);
    for (i, c) in calls.iter().enumerate() {
        let who = &c.params["who"];
        if i < first {
            assert_eq!(who, "Person", "call {i} was sent before the change");
        } else {
            assert!(
                who.starts_with("Person ") && who.len() > 7,
                "call {i}: {who:?}"
            );
        }
    }
    assert!(c.results().iter().all(|r| r["status"] == "made"));
}
