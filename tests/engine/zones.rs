//! Each number's own zone, on virtual time: a list spread over the United States with a window open in some
//! zones and closed in others.

use jiff::Timestamp;

use crate::*;

#[tokio::test(start_paused = true)]
async fn numbers_place_themselves_and_only_those_open_in_every_zone_are_called() {
    let sim = sim(8, ms(20), ms(20), ms(10), "").await;
    // No zone column and no campaign zone: every number has to say where it is.
    let list = "name,phone\n\
        new_york,646-555-1000\n\
        chicago,312-555-1001\n\
        denver,208-201-1002\n\
        los_angeles,213-555-1003\n\
        boise_or_los_angeles,208-555-1004\n\
        toll_free,888-555-1005\n";
    let c = Campaign::new(list);
    let mut args = c.args(&sim);
    args.window = Some("10:00-18:00".into());
    args.firstocc = Some("5".into());
    args.call_length = Some("5m".into());
    // 17:30 UTC: 12:30 in New York, 11:30 in Chicago, 10:30 in Denver and Boise, 09:30 in Los Angeles.
    let at: Timestamp = "2026-12-02T17:30:00Z".parse().expect("timestamp");
    let s = run_at(args, at).await;
    assert_eq!(s.exit_code(), 75, "{}", s.line());
    let rows = c.results();
    let by = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_default()
    };
    for (name, status, zone) in [
        ("new_york", "made", "America/New_York"),
        ("chicago", "made", "America/Chicago"),
        ("denver", "made", "America/Denver"),
        ("los_angeles", "not_attempted", "America/Los_Angeles"),
        // Open in Boise, closed in Los Angeles: not open everywhere, so not called.
        (
            "boise_or_los_angeles",
            "not_attempted",
            "America/Boise&America/Los_Angeles",
        ),
    ] {
        let r = by(name);
        assert_eq!(r["status"], status, "{name}: {}", r["detail"]);
        assert_eq!(r["timezone"], zone, "{name}");
        assert_eq!(r["timezone_source"], "number", "{name}");
    }
    // A number that only says its country (North America spans ten zones), and no campaign zone: not called,
    // and the row says what to add.
    let toll_free = by("toll_free");
    assert_eq!(toll_free["status"], "invalid");
    assert!(
        toll_free["detail"].contains("--timezone-column")
            && toll_free["detail"].contains("--timezone"),
        "{}",
        toll_free["detail"]
    );
    let called: Vec<String> = call_requests(&sim.requests())
        .iter()
        .map(|r| r.params["phoneno"].clone())
        .collect();
    let mut called = called;
    called.sort();
    assert_eq!(called, ["+12082011002", "+13125551001", "+16465551000"]);
}

#[tokio::test(start_paused = true)]
async fn dates_off_are_judged_in_each_recipients_calendar() {
    let sim = sim(8, ms(20), ms(20), ms(10), "").await;
    let c = Campaign::new("name,phone\nnew_york,646-555-1000\ntokyo,+81 3 1234 5678\n");
    let mut args = c.args(&sim);
    args.window = Some("00:00-24:00".into());
    args.firstocc = Some("1".into());
    args.call_length = Some("1m".into());
    args.skip_dates = vec!["2026-12-25".into()];
    // 2026-12-25T03:00Z: still the 24th in New York (22:00), already the 25th in Tokyo (12:00).
    let at: Timestamp = "2026-12-25T03:00:00Z".parse().expect("timestamp");
    let s = run_at(args, at).await;
    assert_eq!(s.exit_code(), 75, "{}", s.line());
    let rows = c.results();
    assert_eq!(rows[0]["status"], "made");
    assert_eq!(rows[1]["status"], "not_attempted");
    assert_eq!(rows[1]["timezone"], "Asia/Tokyo");
}

#[tokio::test(start_paused = true)]
async fn a_time_zone_column_added_on_a_rerun_places_the_contacts_not_yet_called() {
    let sim = sim(8, ms(20), ms(20), ms(10), "").await;
    let mut list = String::from("name,phone,tz\n");
    for i in 0..4 {
        list.push_str(&format!("p{i},888-555-{:04},Asia/Tokyo\n", 1000 + i));
    }
    let c = Campaign::new(&list);
    let mut args = c.args(&sim);
    args.window = Some("09:00-17:00".into());
    args.timezone = Some("America/New_York".into());
    args.firstocc = Some("5".into());
    args.call_length = Some("5m".into());
    // 06:00 in New York: closed. Nobody is called; the journal is made without the zone column.
    let early: Timestamp = "2026-12-02T11:00:00Z".parse().expect("timestamp");
    assert_eq!(run_at(args.clone(), early).await.exit_code(), 75);
    // 10:00 in New York, midnight in Tokyo. The operator adds the column: the contacts are in Tokyo.
    args.timezone_column = Some("tz".into());
    let ten: Timestamp = "2026-12-02T15:00:00Z".parse().expect("timestamp");
    let s = run_at(args.clone(), ten).await;
    assert_eq!(s.exit_code(), 75, "{}", s.line());
    assert!(
        call_requests(&sim.requests()).is_empty(),
        "called at midnight in Tokyo"
    );
    for r in c.results() {
        assert_eq!(
            (r["timezone"].as_str(), r["timezone_source"].as_str()),
            ("Asia/Tokyo", "column")
        );
    }
    // Left out on a later run (a cron line without the flag), the column is not quietly dropped.
    let mut forgot = args.clone();
    forgot.timezone_column = None;
    let cfg = ivr_campaign::settings::RunConfig::from_args(forgot).expect("settings");
    let (_signals, rx) = tokio::sync::watch::channel(ivr_campaign::engine::Stage::Run);
    let refused = ivr_campaign::commands::run::run_with_clock(
        cfg,
        rx,
        ivr_campaign::output::progress::Progress::Never,
        ivr_campaign::engine::Clock::virtual_from(ten),
    )
    .await;
    match refused {
        Err(e) => assert!(e.to_string().contains("--timezone-column tz"), "{e}"),
        Ok(s) => panic!("the zone column was dropped: {}", s.line()),
    }
    assert!(call_requests(&sim.requests()).is_empty());
    // What identifies a contact cannot change under a campaign.
    args.default_region = Some("GB".into());
    let cfg = ivr_campaign::settings::RunConfig::from_args(args).expect("settings");
    let (_signals, rx) = tokio::sync::watch::channel(ivr_campaign::engine::Stage::Run);
    let refused = ivr_campaign::commands::run::run_with_clock(
        cfg,
        rx,
        ivr_campaign::output::progress::Progress::Never,
        ivr_campaign::engine::Clock::virtual_from(ten),
    )
    .await;
    match refused {
        Err(e) => assert!(e.to_string().contains("default-region US → GB"), "{e}"),
        Ok(s) => panic!("a changed default region was accepted: {}", s.line()),
    }
}

#[tokio::test(start_paused = true)]
async fn national_format_chosen_on_a_rerun_is_refused_for_two_countries_as_on_a_first_run() {
    let sim = sim(8, ms(20), ms(20), ms(10), "").await;
    let c = Campaign::new("name,phone\nfr,+33 2 12 34 56 78\nit,+39 02 1234 5678\n");
    let mut args = c.args(&sim);
    args.window = Some("09:00-17:00".into());
    args.timezone = Some("Europe/Paris".into());
    args.firstocc = Some("5".into());
    args.call_length = Some("5m".into());
    // 05:00 in Paris: closed, so the journal is made and nobody called.
    let early: Timestamp = "2026-12-02T04:00:00Z".parse().expect("timestamp");
    assert_eq!(run_at(args.clone(), early).await.exit_code(), 75);
    args.number_format = Some("national".into());
    let ten: Timestamp = "2026-12-02T09:00:00Z".parse().expect("timestamp");
    let cfg = ivr_campaign::settings::RunConfig::from_args(args).expect("settings");
    let (_signals, rx) = tokio::sync::watch::channel(ivr_campaign::engine::Stage::Run);
    let refused = ivr_campaign::commands::run::run_with_clock(
        cfg,
        rx,
        ivr_campaign::output::progress::Progress::Never,
        ivr_campaign::engine::Clock::virtual_from(ten),
    )
    .await;
    match refused {
        Err(e) => assert!(e.to_string().contains("without their country code"), "{e}"),
        Ok(s) => panic!("two countries dialed nationally: {}", s.line()),
    }
    assert!(call_requests(&sim.requests()).is_empty());
    assert!(c.results().iter().all(|r| r["status"] == "not_attempted"));
}
