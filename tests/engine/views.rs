//! The figures the operator reads, on virtual time: the campaign's outage.

use std::time::Duration;

use crate::*;

#[tokio::test(start_paused = true)]
async fn with_one_gateway_up_and_one_refusing_the_campaign_had_no_outage() {
    let up = sim(4, ms(500), ms(1500), ms(10), "").await;
    let down = sim(4, ms(500), ms(1500), ms(10), "").await;
    down.go_away();
    let c = Campaign::new(&contacts(12));
    let mut args = c.args(&up);
    args.gateway.push(down.url());
    args.lines = Some("2".into());
    args.max_outage = Some("10m".into());
    let s = run(args).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let refusing = s
        .gateways
        .iter()
        .find(|g| g.key == down.url())
        .expect("the refusing gateway is in the summary");
    assert!(
        refusing.outage >= Duration::from_secs(5),
        "its own outage is the whole run: {:?}",
        refusing.outage
    );
    assert_eq!(
        s.outage,
        Duration::ZERO,
        "one gateway answered throughout: {}",
        s.line()
    );
}
