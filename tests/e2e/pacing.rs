//! Lines, asserted from what the gateway saw. (The rate and poll spacing are tested in-process on virtual
//! time: `tests/engine`.)

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_outstanding_never_exceed_lines() {
    // The simulated gateway has more lines than the runner may use, so only the runner limits concurrency.
    let sim = sim(12, ms(30), ms(40), ms(30), "[[rule]]\nweight = 1\nsteps = [\"made\"]\n[[rule]]\nweight = 1\nsteps = [\"retry\", \"made\"]\n").await;
    let c = Campaign::new(&sim, &contacts(36));
    let out = c.run(&["--lines", "3", "--poll-interval", "15ms"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let log = sim.requests();
    assert_eq!(call_requests(&log).len(), 36);
    let most = max_outstanding(&log);
    assert!(most <= 3, "{most} calls outstanding with --lines 3");
    assert_eq!(
        most, 3,
        "the cap was never reached, so this run proves nothing"
    );
}
