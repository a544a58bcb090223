//! Damage from outside the runner and the gateway: a full disk under the journal.

use std::path::{Path, PathBuf};

use crate::helpers::*;

/// A small tmpfs, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    /// `None` where mounting is not permitted (not root): the test then has nothing to run on.
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).expect("mount point");
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(at.to_path_buf()))
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
async fn a_request_id_that_arrives_on_a_full_disk_is_never_lost() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(disk) = SmallDisk::mount(&dir.path().join("small"), "4m") else {
        // Mounting needs root; without it this machine cannot make a disk full on purpose.
        eprintln!("skipped: cannot mount a tmpfs here (not root)");
        return;
    };
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
