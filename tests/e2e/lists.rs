//! Contact lists as operators have them: Excel's BOM and semicolons, Windows-1252, ragged rows, odd column
//! names, header-only files.

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excel_utf8_with_bom_and_semicolons() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "\u{feff}Nom;Téléphone;Mobile\r\nRenée Dupont;x;06 12 34 56 78\r\nJoël Martin;y;+33 6 98 76 54 32\r\n";
    let input = write(dir.path(), "excel.csv", text);
    let output = dir.path().join("r.csv");
    let out = run(&with(
        &base_args(&sim, &input, &output),
        &["--default-region", "FR"],
    ))
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut sent: Vec<String> = call_requests(&sim.requests())
        .iter()
        .map(|r| r.params["phoneno"].clone())
        .collect();
    sent.sort();
    assert_eq!(sent, ["+33612345678", "+33698765432"]);
    // Results: UTF-8 (no BOM carried into a column name), same delimiter, input cells unchanged.
    let raw = std::fs::read_to_string(&output).expect("results are UTF-8");
    assert!(raw.starts_with("Nom;Téléphone;Mobile;status;"), "{raw}");
    assert!(raw.contains("Renée Dupont;x;06 12 34 56 78;made;"), "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_1252_is_detected_said_and_decoded_without_loss() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    // "Zoë Müller" and "Café" in Windows-1252 bytes: not valid UTF-8.
    let mut bytes = b"name,phone,note\r\nZo\xeb M\xfcller,646-555-1000,Caf\xe9 \x80 5\r\n".to_vec();
    bytes.extend_from_slice(b"Bob,646-555-1001,ok\r\n");
    let input = dir.path().join("legacy.csv");
    std::fs::write(&input, &bytes).expect("write");
    let output = dir.path().join("r.csv");
    let base = base_args(&sim, &input, &output);
    let out = run(&with(&base, &[])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Windows-1252"),
        "the guess is said: {}",
        stderr(&out)
    );
    let rows = results(&output);
    assert_eq!(rows[0]["name"], "Zoë Müller");
    assert_eq!(rows[0]["note"], "Café € 5");

    // Forcing UTF-8 on it is a one-line error, exit 65, no call.
    let before = sim.requests().len();
    let forced = run(&with(
        &base,
        &[
            "--encoding",
            "utf-8",
            "--output",
            &dir.path().join("x.csv").display().to_string(),
        ],
    ))
    .await;
    assert_eq!(code(&forced), 65, "{}", stderr(&forced));
    assert!(stderr(&forced).contains("not valid UTF-8"));
    assert_eq!(sim.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ragged_rows_and_spreadsheet_numbers_are_result_rows_with_reasons() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "id\tMobile Number\tname\n1\t646-555-1000\tA\n2\t646-555-1001\n3\t4.15555E+09\tC\n4\t646-555-1002\tD\textra\n5\t646-555-1003\tE\n";
    let input = write(dir.path(), "tabs.tsv", text);
    let output = dir.path().join("r.csv");
    let out = run(&with(&base_args(&sim, &input, &output), &[])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut r = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .flexible(true)
        .from_path(&output)
        .expect("results");
    let statuses: Vec<(String, String)> = r
        .records()
        .map(|x| {
            let x = x.expect("row");
            (x[3].to_string(), x[8].to_string())
        })
        .collect();
    assert_eq!(statuses[0].0, "made");
    assert_eq!(statuses[1].0, "invalid");
    assert!(
        statuses[1].1.contains("2 fields, the header has 3"),
        "{:?}",
        statuses[1]
    );
    assert_eq!(statuses[2].0, "invalid");
    assert!(statuses[2].1.contains("scientific notation"));
    assert_eq!(statuses[3].0, "invalid");
    assert!(statuses[3].1.contains("4 fields"));
    assert_eq!(statuses[4].0, "made");
    assert_eq!(call_requests(&sim.requests()).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_column_is_found_by_common_names_and_named() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = write(
        dir.path(),
        "c.csv",
        "Name, TEL ,zip\nAl,0044 20 7946 0018,02134\n",
    );
    let output = dir.path().join("r.csv");
    let base = base_args(&sim, &input, &output);
    let args: Vec<&str> = with(&base, &["--default-region", "GB"])
        .into_iter()
        .filter(|a| *a != "-q")
        .collect();
    let out = run(&args).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("column \"TEL\""), "{}", stderr(&out));
    let rows = results(&output);
    // Numbers are text: the leading zeros of the zip and the phone are kept.
    assert_eq!(rows[0]["zip"], "02134");
    assert_eq!(rows[0][" TEL "], "0044 20 7946 0018");
    assert_eq!(rows[0]["dialed_number"], "+442079460018");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_only_and_empty_files_are_bad_data() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text, says) in [
        ("h.csv", "name,phone\n", "no contacts"),
        ("e.csv", "", "is empty"),
    ] {
        let input = write(dir.path(), name, text);
        let output = dir.path().join(format!("{name}.out"));
        let out = run(&with(&base_args(&sim, &input, &output), &[])).await;
        assert_eq!(code(&out), 65, "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{name}: {}", stderr(&out));
        assert_eq!(stderr(&out).trim().lines().count(), 1);
    }
    assert!(sim.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_edited_during_the_run_does_not_move_results_between_people() {
    // Answers take a while, so the run is still going when someone rewrites the list in reverse order.
    let sim = sim(8, ms(5), ms(5), ms(5), "[faults]\nslow = \"300ms\"\n").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 6;
    let list = contacts(n);
    let input = write(dir.path(), "c.csv", &list);
    let output = dir.path().join("r.csv");
    let args = base_args(&sim, &input, &output);
    let args = with(&args, &["--lines", "2"]);
    let mut child = tokio::process::Command::new(bin())
        .args(&args)
        .stderr(std::process::Stdio::piped())
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
    let mut lines: Vec<&str> = list.lines().collect();
    lines[1..].reverse();
    std::fs::write(&input, lines.join("\n") + "\n").expect("rewrite the list");
    let out = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("finishes")
        .expect("output");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("changed while the campaign ran"),
        "{}",
        stderr(&out)
    );
    // Each result is on the row of the person called, as the list was when the run read it.
    let rows = results(&output);
    assert_eq!(rows.len(), n);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["name"], format!("Person {i}"));
        assert_eq!(r["dialed_number"], format!("+1646555{:04}", 1000 + i));
        assert_eq!(r["status"], "made");
    }
    // The same command again refuses the edited list rather than mixing two campaigns.
    let before = std::fs::read(&output).expect("results");
    let again = run(&args).await;
    assert_eq!(code(&again), 78, "{}", stderr(&again));
    assert_eq!(std::fs::read(&output).expect("results"), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excel_unicode_text_is_read_from_its_byte_order_mark() {
    // Excel's "Unicode Text": UTF-16LE with a BOM, tab-separated.
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = "name\tphone\r\nZoë\t646-555-1000\r\nRenée\t646-555-1001\r\n";
    let mut bytes = vec![0xff, 0xfe];
    for unit in text.encode_utf16() {
        bytes.extend_from_slice(&unit.to_le_bytes());
    }
    let input = dir.path().join("unicode.txt");
    std::fs::write(&input, bytes).expect("write");
    let output = dir.path().join("r.csv");
    let out = run(&with(&base_args(&sim, &input, &output), &[])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let mut r = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .from_path(&output)
        .expect("results");
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.expect("row")).collect();
    assert_eq!(&rows[0][0], "Zoë");
    assert_eq!(&rows[1][0], "Renée");
    assert_eq!(&rows[1][2], "made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extensions_are_noted_and_control_bytes_from_the_gateway_never_reach_the_results() {
    let scenario = r#"
[[rule]]
numbers = ["+16465551001"]
steps = [{ status = "made", notes = "Call\u0000 succeeded", responses = "Q=1\u0000" }]
"#;
    let sim = sim(4, ms(5), ms(5), ms(5), scenario).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = write(
        dir.path(),
        "c.csv",
        "id,phone\n1,646-555-1000 x123\n2,646-555-1001\n3,646-555-10O2\n",
    );
    let output = dir.path().join("r.csv");
    let out = run(&with(
        &base_args(&sim, &input, &output),
        &["--response-keys", "Q"],
    ))
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rows = results(&output);
    // The extension is not dialed, and the row says so next to its result.
    assert_eq!(rows[0]["status"], "made");
    assert_eq!(rows[0]["dialed_number"], "+16465551000");
    assert!(
        rows[0]["detail"].contains("extension 123 is not dialed"),
        "{}",
        rows[0]["detail"]
    );
    // A NUL from the gateway would end the row for many CSV readers.
    let raw = std::fs::read(&output).expect("results");
    assert!(!raw.contains(&0), "a NUL byte in the results");
    assert_eq!(rows[1]["response.Q"], "1");
    // A letter in a number is a typo, not a keypad digit: nobody is called in its place.
    assert_eq!(rows[2]["status"], "invalid");
    assert!(
        rows[2]["detail"].contains("letters"),
        "{}",
        rows[2]["detail"]
    );
    assert_eq!(call_requests(&sim.requests()).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_gone_after_a_crash_is_finished_from_the_journals_copy() {
    let sim = sim(8, ms(5), ms(5), ms(5), "[faults]\nslow = \"200ms\"\n").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 8;
    let input = write(dir.path(), "c.csv", &contacts(n));
    let output = dir.path().join("r.csv");
    let args = base_args(&sim, &input, &output);
    let args = with(&args, &["--lines", "2"]);
    let mut child = spawn(&args);
    wait_while_running(
        &sim,
        &mut child,
        |log| call_requests(log).len() >= 2,
        "two calls",
    )
    .await;
    // The results file is there from the campaign's first minute: a deleted journal is noticed later.
    assert!(output.exists(), "no results file while the run goes");
    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");
    // The nightly wrapper rotates the list away before the rerun.
    std::fs::remove_file(&input).expect("rm list");
    let out = run(&args).await;
    assert!([0, 3].contains(&code(&out)), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("from the journal's copy"),
        "{}",
        stderr(&out)
    );
    let rows = results(&output);
    assert_eq!(rows.len(), n);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["name"], format!("Person {i}"));
        assert!(["made", "unknown"].contains(&r["status"].as_str()), "{r:?}");
    }
    assert_eq!(dialed_twice(&sim.requests()), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stray_quote_refuses_the_list_instead_of_swallowing_it() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::from("name,phone\nAda,646-555-1000\n\"Ben,646-555-1001\n");
    for i in 0..80 {
        text.push_str(&format!("P{i},646-555-{:04}\n", 2000 + i));
    }
    let input = write(dir.path(), "c.csv", &text);
    let output = dir.path().join("r.csv");
    let o = run(&with(&base_args(&sim, &input, &output), &[])).await;
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    assert!(stderr(&o).contains("row 2 (from line 3"), "{}", stderr(&o));
    assert!(sim.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stray_quote_closed_by_another_row_is_refused_but_a_multi_line_cell_is_kept() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Row 2's name opens a quote; row 6's closes one: rows 3 to 5 would become part of Ben's name.
    let text = "name,phone,note\nAda,646-555-1000,x\n\"Ben,646-555-1001,x\nCy,646-555-1002,x\nDi,646-555-1003,x\nEd,646-555-1004,x\nFay\",646-555-1005,x\nGus,646-555-1006,x\n";
    let input = write(dir.path(), "c.csv", text);
    let output = dir.path().join("r.csv");
    let o = run(&with(&base_args(&sim, &input, &output), &[])).await;
    assert_eq!(code(&o), 65, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("takes other rows with it"),
        "{}",
        stderr(&o)
    );
    assert!(sim.requests().is_empty());
    // A real multi-line cell (an address) is a cell, not a stray quote.
    let text = "name,phone,address\nAda,646-555-1000,\"1 Main St\nApt 4, Springfield\"\nBen,646-555-1001,x\n";
    let input = write(dir.path(), "d.csv", text);
    let output = dir.path().join("d.results.csv");
    let o = run(&with(&base_args(&sim, &input, &output), &[])).await;
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let rows = results(&output);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["address"], "1 Main St\nApt 4, Springfield");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_numbers_are_dialed_as_written_and_numbers_not_tied_to_a_place_are_not_placed() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Under the default region US, the old reader dropped the leading 1 of these national parts (US's trunk
    // prefix): +49 574 833 7887 and +86 312 3456 786 are other people.
    let input = write(
        dir.path(),
        "c.csv",
        "name,phone\nde,+49 157 4833 7887\ncn,+86 131 2345 6786\nru,+7 800 555 3535\nuk,+44 20 7946 0018\nde2,011 49 157 48337887\n",
    );
    let optout = write(dir.path(), "optout.txt", "+86 131 2345 6786\n");
    let output = dir.path().join("r.csv");
    let input_s = input.display().to_string();
    let output_s = output.display().to_string();
    let optout_s = optout.display().to_string();
    let out = tokio::process::Command::new(bin())
        .args([
            "validate",
            "--input",
            &input_s,
            "--output",
            &output_s,
            "--app",
            "Reminder",
            "--default-region",
            "US",
            "--suppress",
            &optout_s,
            "--window",
            "00:00-23:59",
            "--timezone",
            "America/New_York",
        ])
        // Everything the process can log, numbers masked.
        .env("IVR_CAMPAIGN_LOG", "trace")
        .output()
        .await
        .expect("ivr-campaign runs");
    let err = stderr(&out);
    assert_eq!(code(&out), 0, "{err}");
    let rows = results(&dir.path().join("r.dry-run.csv"));
    // The window is all day, less its margin before midnight (the gateway's retries and a call's length):
    // a row whose zone is in those last minutes now waits for the window. That is the window's business, not
    // this test's, so such a row counts as called here.
    let got: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                match r["decision"].as_str() {
                    "outside_window" => "would_call",
                    decision => decision,
                },
                r["dialed_number"].as_str(),
                r["timezone"].as_str(),
                r["timezone_source"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("would_call", "+4915748337887", "Europe/Berlin", "number"),
            ("suppressed", "+8613123456786", "Asia/Shanghai", "number"),
            // A Russian toll-free number says nothing of where anyone is: the campaign's zone.
            ("would_call", "+78005553535", "America/New_York", "campaign"),
            ("would_call", "+442079460018", "Europe/London", "number"),
            // The same number dialed from the United States (011, its international prefix).
            ("duplicate", "", "", ""),
        ],
        "{rows:?}"
    );
    assert_eq!(rows[4]["detail"], "same number as row 1");
    assert!(
        !err.contains("15748337887") && !err.contains("13123456786"),
        "a whole number reached the logs: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_resumed_with_newer_number_data_never_dials_a_number_read_another_way() {
    let sim = sim(4, ms(5), ms(5), ms(5), "").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = write(
        dir.path(),
        "c.csv",
        "name,phone\nde,+49 157 4833 7887\nus,646-555-1000\n",
    );
    let output = dir.path().join("r.csv");
    let base = base_args(&sim, &input, &output);
    let args = with(&base, &["--max-outage", "1s"]);
    // The first night: the gateway is down, nobody is called, the journal keeps both contacts pending.
    sim.go_away();
    let first = run(&args).await;
    assert_eq!(code(&first), 75, "{}", stderr(&first));
    // As the release before libphonenumber 9.0.42 left it: the German mobile read as +49 574 833 7887 (a
    // stranger's landline), and no number data recorded in how the list is read.
    let journal =
        rusqlite::Connection::open(dir.path().join("r.csv.state/journal.sqlite")).expect("journal");
    let changed = journal
        .execute(
            "UPDATE contacts SET e164 = '+495748337887', dialed_number = '+495748337887' WHERE e164 = '+4915748337887' AND state = 'pending'",
            [],
        )
        .expect("old reading");
    assert_eq!(changed, 1);
    journal
        .execute(
            "UPDATE meta SET value = replace(value, char(10) || 'number-data=9.0.42', '') WHERE key = 'reading'",
            [],
        )
        .expect("old reading");
    drop(journal);

    sim.come_back().await.expect("listen again");
    let again = run(&args).await;
    let err = stderr(&again);
    assert_eq!(code(&again), 0, "{err}");
    let dialed: Vec<String> = call_requests(&sim.requests())
        .iter()
        .map(|r| r.params["phoneno"].clone())
        .collect();
    assert_eq!(
        dialed,
        ["+16465551000"],
        "neither reading of the German number is dialed"
    );
    let rows = results(&output);
    assert_eq!(rows[0]["status"], "invalid");
    assert!(
        rows[0]["detail"]
            .contains("read as +495748337887 when the campaign started and as +4915748337887 now"),
        "{}",
        rows[0]["detail"]
    );
    assert_eq!(rows[1]["status"], "made");
}
