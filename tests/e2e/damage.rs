//! Damage from outside the runner and the gateway: a full disk under the journal.

use std::path::{Path, PathBuf};

use crate::helpers::*;

/// A small tmpfs, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// Mounting needs root: the tests that use it are ignored by default and run as root by CI
    /// (`cargo test --test e2e -- --ignored`). Asked to run without root, they fail rather than pass unrun.
    fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot mount a tmpfs at {} (this test needs root)",
            at.display()
        );
        SmallDisk(at.to_path_buf())
    }

    /// Fills what is left of it; returns the filler's path.
    fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.flush();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to mount a small disk; CI runs it as root with --ignored"]
async fn a_request_id_that_arrives_on_a_full_disk_is_never_lost() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = SmallDisk::mount(&dir.path().join("small"), "4m");
    // Answers take a second, so the disk fills while the call request waits for its answer.
    let sim = sim(4, ms(5), ms(5), ms(5), "[faults]\nslow = \"1s\"\n").await;
    let input = write(dir.path(), "c.csv", &contacts(1));
    let output = dir.path().join("r.csv");
    let state = disk.0.join("state").display().to_string();
    let base = base_args(&sim, &input, &output);
    let args = with(&base, &["--state", &state]);
    let mut child = tokio::process::Command::new(bin())
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    tokio::select! {
        _ = sim.wait_for_calls_in_flight(1) => {}
        _ = tokio::time::sleep(PATIENCE) => panic!("the call request never arrived"),
    }
    let filler = disk.fill();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut log = Vec::new();
    loop {
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("a log line")
            .expect("read")
            .expect("the run says the id could not be saved before it ends");
        let said = line.contains("cannot save its request id");
        log.push(line);
        if said {
            break;
        }
    }
    // The operator frees space; the id goes in, and the run stops (74) rather than call more people.
    std::fs::remove_file(&filler).expect("free space");
    while let Ok(Some(line)) = lines.next_line().await {
        log.push(line);
    }
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("stops")
        .expect("status");
    let log = log.join("\n");
    assert_eq!(status.code(), Some(74), "{log}");
    let req_id = call_requests(&sim.requests())[0]
        .req_id
        .clone()
        .expect("an id");
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains(&req_id) && l.contains("row=1")),
        "the id is not in an error line: {log}"
    );
    // The id was saved: the next run polls the call instead of calling again or calling it unknown.
    let again = run(&args).await;
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert_eq!(results(&output)[0]["status"], "made");
    assert_eq!(results(&output)[0]["req_id"], req_id);
    assert_eq!(call_requests(&sim.requests()).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to mount a small disk; CI runs it as root with --ignored"]
async fn results_that_cannot_be_written_leave_no_temporary_file_and_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = SmallDisk::mount(&dir.path().join("out"), "1m");
    let sim = sim(4, ms(5), ms(5), ms(5), "[faults]\nslow = \"300ms\"\n").await;
    let input = write(dir.path(), "c.csv", &contacts(4));
    let output = disk.0.join("r.csv");
    let state = dir.path().join("state").display().to_string();
    let base = base_args(&sim, &input, &output);
    let args = with(&base, &["--state", &state, "--lines", "1"]);
    let mut child = spawn(&args);
    wait_while_running(
        &sim,
        &mut child,
        |log| !call_requests(log).is_empty(),
        "a call",
    )
    .await;
    // The results' disk fills up before the run writes them.
    let filler = disk.fill();
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("stops")
        .expect("status");
    assert_eq!(status.code(), Some(73));
    let left: Vec<_> = std::fs::read_dir(&disk.0)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // Nothing was lost: with room again, the same command writes every result from the journal.
    std::fs::remove_file(&filler).expect("free");
    let again = run(&args).await;
    assert_eq!(code(&again), 0, "{}", stderr(&again));
    assert!(results(&output).iter().all(|r| r["status"] == "made"));
    assert_eq!(call_requests(&sim.requests()).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root to mount a small disk; CI runs it as root with --ignored"]
async fn a_disk_that_stays_full_ends_on_a_signal_with_the_request_id_logged() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = SmallDisk::mount(&dir.path().join("small"), "4m");
    let sim = sim(4, ms(5), ms(5), ms(5), "[faults]\nslow = \"1s\"\n").await;
    let input = write(dir.path(), "c.csv", &contacts(1));
    let output = dir.path().join("r.csv");
    let state = disk.0.join("state").display().to_string();
    let base = base_args(&sim, &input, &output);
    let args = with(&base, &["--state", &state]);
    let mut child = tokio::process::Command::new(bin())
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    tokio::select! {
        _ = sim.wait_for_calls_in_flight(1) => {}
        _ = tokio::time::sleep(PATIENCE) => panic!("the call request never arrived"),
    }
    let _filler = disk.fill();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut log = Vec::new();
    loop {
        let line = tokio::time::timeout(PATIENCE, lines.next_line())
            .await
            .expect("a log line")
            .expect("read")
            .expect("the run says the id could not be saved");
        let said = line.contains("cannot save its request id");
        log.push(line);
        if said {
            break;
        }
    }
    // Nobody frees space. The operator stops it: the process ends, it does not retry for an hour.
    let pid = child.id().expect("pid").to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    while let Ok(Some(line)) = lines.next_line().await {
        log.push(line);
    }
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("ends on the signal")
        .expect("status");
    let log = log.join("\n");
    assert_eq!(status.code(), Some(74), "{log}");
    let req_id = call_requests(&sim.requests())[0]
        .req_id
        .clone()
        .expect("an id");
    assert!(log.contains(&req_id), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_is_written_when_the_results_cannot_be() {
    // The results' directory disappears during the run (an unmounted share, a cleanup job); the summary's
    // own directory is fine, and monitoring still learns how the rows stand.
    let sim = sim(4, ms(5), ms(5), ms(5), "[faults]\nslow = \"300ms\"\n").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let input = write(dir.path(), "c.csv", &contacts(3));
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let output = out_dir.join("r.csv");
    let summary = dir.path().join("summary.json");
    let metrics = dir.path().join("run.prom");
    let state = dir.path().join("state").display().to_string();
    let base = base_args(&sim, &input, &output);
    let (summary_s, metrics_s) = (summary.display().to_string(), metrics.display().to_string());
    let args = with(
        &base,
        &[
            "--state",
            &state,
            "--lines",
            "1",
            "--summary-json",
            &summary_s,
            "--metrics-file",
            &metrics_s,
        ],
    );
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
        "a call",
    )
    .await;
    std::fs::remove_dir_all(&out_dir).expect("rm the results' directory");
    let done = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("stops")
        .expect("output");
    let err = String::from_utf8_lossy(&done.stderr).into_owned();
    assert_eq!(done.status.code(), Some(73), "{err}");
    assert!(
        err.contains("cannot write") && err.contains("r.csv"),
        "{err}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary written"))
            .expect("summary JSON");
    assert_eq!(json["exit_code"], 73, "{json}");
    assert_eq!(json["rows"]["total"], 3, "{json}");
    assert_eq!(json["rows"]["by_status"]["made"], 3, "{json}");
    assert!(
        json["results_error"]
            .as_str()
            .is_some_and(|e| e.contains("r.csv")),
        "{json}"
    );
    let prom = std::fs::read_to_string(&metrics).expect("metrics written");
    assert!(
        prom.lines().any(|l| l.starts_with("ivr_campaign_rows{")
            && l.contains("status=\"made\"")
            && l.ends_with(" 3")),
        "{prom}"
    );
}
