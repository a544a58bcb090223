//! Appointment reminders over a rolling export, on virtual time: three nights of one export (new, cancelled,
//! rescheduled, confirmed and passed appointments), each run under its own clock, make exactly the calls the
//! rules allow, each touch once; a rerun the same evening adds none. And a property test over random
//! appointment sets, export changes and run times.

use std::collections::HashMap;
use std::time::Duration;

use ivr_campaign::cli::RunArgs;
use ivr_campaign::simulator::Simulator;
use jiff::Timestamp;

use crate::*;

const SCENARIO: &str = r#"
[[rule]]  # confirms: the appointment's other touches end
numbers = ["+16465551000"]
steps = [{ status = "made", responses = "Confirm=1" }]
[[rule]]
weight = 1
steps = [{ status = "made", responses = "Confirm=3" }]
"#;

const HEADER: &str = "appt_id,name,phone,appointment,status\n";

fn args_for(c: &Campaign, sim: &Simulator) -> RunArgs {
    let mut args = c.args(sim);
    args.key_column = Some("appt_id".into());
    args.appointment_column = Some("appointment".into());
    args.remind_before = Some(vec!["48h".into(), "24h".into()]);
    args.min_notice = Some("2h".into());
    args.stop_on = Some(vec!["confirm=1".into()]);
    args.skip_if = vec!["status=Cancelled".into()];
    args.timezone = Some("America/New_York".into());
    args.window = Some("08:00-20:00".into());
    args
}

/// New York wall time `YYYY-MM-DDTHH:MM` as an instant.
fn ny(at: &str) -> Timestamp {
    let civil: jiff::civil::DateTime = at.parse().expect("civil time");
    let tz = jiff::tz::TimeZone::get("America/New_York").expect("zone");
    tz.to_ambiguous_timestamp(civil)
        .compatible()
        .expect("a time that exists")
}

/// The numbers called since `from` requests of the simulator's log.
fn called_since(sim: &Simulator, from: usize) -> Vec<String> {
    let log = sim.requests();
    let mut v: Vec<String> = call_requests(&log[from.min(log.len())..])
        .iter()
        .map(|r| r.params["phoneno"].clone())
        .collect();
    v.sort();
    v
}

fn by_key(c: &Campaign) -> HashMap<String, HashMap<String, String>> {
    c.results()
        .into_iter()
        .map(|r| (r["appt_id"].clone(), r))
        .collect()
}

fn write(c: &Campaign, rows: &[&str]) {
    let mut s = String::from(HEADER);
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    std::fs::write(&c.input, s).expect("write export");
}

#[tokio::test(start_paused = true)]
async fn three_nights_of_a_rolling_export_make_exactly_the_calls_the_rules_allow() {
    let sim = sim(8, ms(100), ms(100), ms(10), SCENARIO).await;
    let c = Campaign::new(HEADER);

    // Night 1: Monday 17:05 in the clinic.
    write(
        &c,
        &[
            "A1,Ann,646-555-1000,2027-01-13 10:00,Scheduled", // 48h touch due: called, confirms
            "A2,Bob,646-555-1001,2027-01-13 16:00,Scheduled", // 48h touch due: called
            "A3,Cal,646-555-1002,2027-01-14 10:00,Scheduled", // 48h touch due Tuesday 10:00: not yet
            "A4,Dee,646-555-1003,01/12/2027 09:00 AM,Scheduled", // 48h touch ended; 24h touch due
            "A5,Eve,646-555-1004,2027-01-11 18:00,Scheduled", // within the min-notice: too late
            "A6,Fay,646-555-1005,2027-01-13 11:00,Cancelled", // withdrawn
            ",Gus,646-555-1006,2027-01-13 11:00,Scheduled",   // no key
            "A8,Hal,646-555-1007,someday,Scheduled",          // unreadable time
        ],
    );
    let from = sim.requests().len();
    let s = run_at(args_for(&c, &sim), ny("2027-01-11T17:05")).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    assert_eq!(
        called_since(&sim, from),
        vec!["+16465551000", "+16465551001", "+16465551003"]
    );
    let r = by_key(&c);
    assert_eq!(r["A1"]["status"], "made");
    assert_eq!(r["A1"]["reminders"], "1 of 2");
    assert_eq!(r["A1"]["appointment_at"], "2027-01-13T10:00:00-05:00");
    assert_eq!(r["A3"]["status"], "not_due");
    assert_eq!(r["A3"]["reminders"], "0 of 2");
    assert_eq!(r["A3"]["next_reminder_at"], "2027-01-12T10:00:00-05:00");
    assert_eq!(r["A4"]["reminders"], "1 of 1");
    assert_eq!(r["A5"]["status"], "too_late");
    assert_eq!(r["A6"]["status"], "withdrawn");
    assert_eq!(r[""]["status"], "invalid");
    assert!(r["A8"]["detail"].contains("someday"), "{:?}", r["A8"]);
    assert_eq!(r["A8"]["status"], "invalid");
    let order: Vec<String> = c.results().iter().map(|r| r["appt_id"].clone()).collect();
    assert_eq!(order, ["A1", "A2", "A3", "A4", "A5", "A6", "", "A8"]);

    // A rerun the same evening adds no call.
    let from = sim.requests().len();
    let s = run_at(args_for(&c, &sim), ny("2027-01-11T17:35")).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    assert!(called_since(&sim, from).is_empty());

    // Night 2: Tuesday 17:05. A3 moved to Friday (its Tuesday touch is not made), A6 left the export, A7 is
    // new and its 24h touch is due, A9 is new and cancelled.
    write(
        &c,
        &[
            "A7,Ian,646-555-1008,2027-01-13 12:00,Scheduled",
            "A1,Ann,646-555-1000,2027-01-13 10:00,Scheduled", // confirmed: no 24h touch
            "A2,Bob,646-555-1001,2027-01-13 16:00,Scheduled", // 24h touch due
            "A3,Cal,646-555-1002,2027-01-15 10:00,Scheduled",
            "A4,Dee,646-555-1003,2027-01-12 09:00,Scheduled", // passed
            "A5,Eve,646-555-1004,2027-01-11 18:00,Cancelled",
            "A9,Jon,646-555-1009,2027-01-14 10:00,Cancelled",
        ],
    );
    let from = sim.requests().len();
    let s = run_at(args_for(&c, &sim), ny("2027-01-12T17:05")).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    assert_eq!(
        called_since(&sim, from),
        vec!["+16465551001", "+16465551008"]
    );
    let from = sim.requests().len();
    run_at(args_for(&c, &sim), ny("2027-01-12T17:50")).await;
    assert!(called_since(&sim, from).is_empty());
    let r = by_key(&c);
    assert_eq!(r["A1"]["reminders"], "1 of 2");
    assert!(r["A1"]["status"] == "made", "{:?}", r["A1"]);
    assert_eq!(r["A2"]["reminders"], "2 of 2");
    assert_eq!(r["A2"]["calls"], "2");
    assert_eq!(r["A3"]["status"], "not_due");
    assert_eq!(r["A3"]["appointment_at"], "2027-01-15T10:00:00-05:00");
    assert_eq!(r["A6"]["status"], "withdrawn");
    let order: Vec<String> = c.results().iter().map(|r| r["appt_id"].clone()).collect();
    assert_eq!(
        order,
        ["A7", "A1", "A2", "A3", "A4", "A5", "A9", "A6", "A8"]
    );

    // Night 3: Wednesday 17:05 (after a missed Wednesday morning). A3's number changed: its 48h touch goes to
    // the new one. A10 was booked for this evening, after its touches ended.
    write(
        &c,
        &[
            "A3,Cal,646-555-1012,2027-01-15 10:00,Scheduled",
            "A2,Bob,646-555-1001,2027-01-13 16:00,Scheduled", // passed
            "A10,Kim,646-555-1010,2027-01-13 18:30,Scheduled",
        ],
    );
    let from = sim.requests().len();
    let s = run_at(args_for(&c, &sim), ny("2027-01-13T17:05")).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    assert_eq!(called_since(&sim, from), vec!["+16465551012"]);
    let from = sim.requests().len();
    run_at(args_for(&c, &sim), ny("2027-01-13T17:40")).await;
    assert!(called_since(&sim, from).is_empty());
    let r = by_key(&c);
    assert_eq!(r["A3"]["status"], "made");
    assert_eq!(r["A3"]["reminders"], "1 of 2");
    assert_eq!(r["A10"]["status"], "too_late");
    for gone in ["A1", "A4", "A7"] {
        assert_eq!(r[gone]["status"], "withdrawn", "{gone}");
    }

    // Every number over the three nights: each touch once.
    let mut per: HashMap<String, usize> = HashMap::new();
    for n in called_since(&sim, 0) {
        *per.entry(n).or_default() += 1;
    }
    let want: HashMap<String, usize> = [
        ("+16465551000", 1),
        ("+16465551001", 2),
        ("+16465551003", 1),
        ("+16465551008", 1),
        ("+16465551012", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(per, want);
}

/// One appointment as an export version lists it.
#[derive(Clone, Debug)]
struct Appt {
    /// Hours after the base instant (a whole or half hour).
    at_half_hours: i64,
    listed: bool,
    cancelled: bool,
}

/// Random appointment sets, export changes and run times (a seeded loop, each seed replayable), with and
/// without recalls: every call falls inside a touch of its appointment as the export listed it (never early,
/// never late, a recall included), no touch is made twice (a recall aside, and at most max-attempts calls),
/// none after a stop answer for the same appointment, none for a withdrawn, cancelled or passed appointment.
#[tokio::test(start_paused = true)]
async fn random_exports_and_run_times_never_call_a_touch_twice_late_or_after_a_stop() {
    use ivr_campaign::rules::touches::{Timing, read_leads};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    const SEEDS: u64 = 24;
    const KEYS: usize = 12;
    // Keys 0..6 confirm (a stop answer), 6..9 never answer (recalled under recall-on), the rest answer
    // without confirming.
    const SCENARIO: &str = r#"
[[rule]]
numbers = ["+16465551000", "+16465551001", "+16465551002", "+16465551003", "+16465551004", "+16465551005"]
steps = [{ status = "made", responses = "Confirm=1" }]
[[rule]]
numbers = ["+16465551006", "+16465551007", "+16465551008"]
steps = [{ status = "failed", notes = "No Answer" }]
[[rule]]
weight = 1
steps = [{ status = "made", responses = "Confirm=3" }]
"#;
    let timing = Timing {
        leads: read_leads(&["48h".into(), "24h".into()], "x").expect("leads"),
        min_notice: jiff::SignedDuration::from_hours(2),
    };
    let tz = jiff::tz::TimeZone::get("America/New_York").expect("zone");
    let base = ny("2027-02-01T00:00");
    let half = jiff::SignedDuration::from_mins(30);
    let (mut total_calls, mut recalls) = (0, 0);
    for seed in 0..SEEDS {
        let mut rng = StdRng::seed_from_u64(seed);
        let sim = sim(8, ms(100), ms(100), ms(10), SCENARIO).await;
        // The simulator's `arrived` counts from here (tokio's clock is paused).
        let t0 = tokio::time::Instant::now();
        let recall_after = ["", "20m", "50m", "3h"][(seed % 4) as usize];
        let c = Campaign::new(HEADER);
        let mut appts: Vec<Appt> = (0..KEYS)
            .map(|_| Appt {
                at_half_hours: rng.random_range(0..240),
                listed: rng.random_bool(0.8),
                cancelled: false,
            })
            .collect();
        // Calls per (key, appointment, touch), and the appointments a stop answer ended.
        let mut called: HashMap<(usize, i64, u32), u32> = HashMap::new();
        let mut stopped: std::collections::HashSet<(usize, i64)> = Default::default();
        let mut now =
            base - jiff::SignedDuration::from_hours(72) + jiff::SignedDuration::from_mins(5);
        for night in 0..7 {
            now += half * rng.random_range(1..60);
            if night > 0 {
                for a in appts.iter_mut() {
                    match rng.random_range(0..10) {
                        0 => a.listed = !a.listed,
                        1 => a.cancelled = !a.cancelled,
                        2 => a.at_half_hours = rng.random_range(0..240),
                        _ => {}
                    }
                }
            }
            let mut order: Vec<usize> = (0..KEYS).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.random_range(0..=i));
            }
            let rows: Vec<String> = order
                .iter()
                .filter(|k| appts[**k].listed)
                .map(|k| {
                    let a = &appts[*k];
                    let at = (base + half * a.at_half_hours as i32)
                        .to_zoned_datetime(tz.clone())
                        .strftime("%Y-%m-%d %H:%M")
                        .to_string();
                    let st = if a.cancelled {
                        "Cancelled"
                    } else {
                        "Scheduled"
                    };
                    format!("K{k},P{k},646-555-10{k:02},{at},{st}")
                })
                .collect();
            let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
            write(&c, &rows);
            for rerun in [false, true] {
                let at = if rerun {
                    now + jiff::SignedDuration::from_mins(10)
                } else {
                    now
                };
                let from = sim.requests().len();
                let run_from = t0.elapsed();
                let mut args = args_for_property(&c, &sim);
                if !recall_after.is_empty() {
                    args.recall_on = Some(vec!["failed".into()]);
                    args.recall_after = Some(recall_after.into());
                }
                let s = run_at(args, at).await;
                assert_eq!(s.exit_code(), 0, "seed {seed} night {night}: {}", s.line());
                // The next run starts after this one ended, on the clock the runs share.
                let ran =
                    jiff::SignedDuration::try_from(t0.elapsed() - run_from).expect("duration");
                now = now.max(at + ran);
                let log = sim.requests();
                for req in call_requests(&log[from..]) {
                    total_calls += 1;
                    let number = &req.params["phoneno"];
                    let when = at
                        + jiff::SignedDuration::try_from(req.arrived - run_from).expect("duration");
                    let k: usize = number["+1646555".len() + 2..].parse().expect("key");
                    let a = &appts[k];
                    assert!(
                        a.listed && !a.cancelled,
                        "seed {seed} night {night}: K{k} withdrawn: {a:?}"
                    );
                    let appt = base + half * a.at_half_hours as i32;
                    let touch = timing
                        .touches(appt)
                        .into_iter()
                        .find(|t| t.open_at(when))
                        .unwrap_or_else(|| {
                            panic!("seed {seed} night {night}: K{k} called at {when} outside every touch of {appt}")
                        });
                    assert!(
                        !stopped.contains(&(k, a.at_half_hours)),
                        "seed {seed} night {night}: K{k} called after a stop answer"
                    );
                    let n = called.entry((k, a.at_half_hours, touch.index)).or_default();
                    *n += 1;
                    let allowed = if (6..9).contains(&k) && !recall_after.is_empty() {
                        3
                    } else {
                        1
                    };
                    assert!(
                        *n <= allowed,
                        "seed {seed} night {night}: K{k} touch {} called {n} times",
                        touch.index
                    );
                    if *n > 1 {
                        recalls += 1;
                    }
                    if k < 6 {
                        stopped.insert((k, a.at_half_hours));
                    }
                }
            }
            // Back on the half-hour grid (:05 or :35), so a run's start is never on a touch boundary.
            let mins = (now - base).as_mins();
            let over = (mins - 5).rem_euclid(30);
            if over != 0 {
                now += jiff::SignedDuration::from_mins(30 - over);
            }
        }
    }
    // The loop placed calls and recalls (it would pass vacuously otherwise).
    assert!(total_calls > SEEDS as usize, "{total_calls} calls");
    assert!(recalls > 0, "no recall was made");
}

fn args_for_property(c: &Campaign, sim: &Simulator) -> RunArgs {
    let mut args = args_for(c, sim);
    // The window is the night test's; here every instant is one a touch may be made in.
    args.window = None;
    args
}

/// A recall stays within its touch: one that would fall due after the touch's end is not placed (the call's
/// outcome stands, and the run has no work left), one that falls due before it is made.
#[tokio::test(start_paused = true)]
async fn a_recall_is_made_within_its_touch_and_never_past_its_end() {
    const BUSY: &str = r#"
[[rule]]
weight = 1
steps = [{ status = "failed", notes = "Line Busy" }]
"#;
    let now = ny("2027-01-13T08:00");
    // Up to three calls (the default max-attempts): 08:00, then each recall-after later while before 09:30.
    for (after, calls) in [("3h", 1), ("20m", 3), ("50m", 2)] {
        let sim = sim(4, ms(100), ms(100), ms(10), BUSY).await;
        let c = Campaign::new(HEADER);
        // Its only touch (24h) ends at 09:30, two hours before the appointment.
        write(&c, &["A1,Ann,646-555-1000,2027-01-13 11:30,Scheduled"]);
        let mut args = args_for_property(&c, &sim);
        args.remind_before = Some(vec!["24h".into()]);
        args.recall_on = Some(vec!["failed".into()]);
        args.recall_after = Some(after.into());
        let s = run_at(args, now).await;
        assert_eq!(s.exit_code(), 0, "recall after {after}: {}", s.line());
        assert_eq!(called_since(&sim, 0).len(), calls, "recall after {after}");
        let r = by_key(&c);
        assert_eq!(r["A1"]["status"], "failed", "{:?}", r["A1"]);
        assert_eq!(r["A1"]["calls"], calls.to_string());
    }
}

/// A key whose earlier touch was made and whose next touch waits for the window shows that call's outcome
/// and is still work left (75); a repeated key's row shows none of the first row's calls.
#[tokio::test(start_paused = true)]
async fn a_touch_waiting_for_its_window_shows_the_last_call_and_a_repeated_key_none() {
    let sim = sim(8, ms(100), ms(100), ms(10), SCENARIO).await;
    let c = Campaign::new(HEADER);
    // 646 is New York, 415 San Francisco: at 17:05 in New York both are inside 08:00-20:00.
    write(
        &c,
        &[
            "B1,Ann,646-555-1001,2027-01-13 10:00,Scheduled",
            "B2,Lee,415-555-0132,2027-01-13 10:00,Scheduled",
        ],
    );
    let s = run_at(args_for(&c, &sim), ny("2027-01-11T17:05")).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    assert!(!sim.requests().is_empty());
    // Tuesday 10:30 in New York (07:30 in San Francisco): both 24h touches are due, B2's waits.
    write(
        &c,
        &[
            "B1,Ann,646-555-1001,2027-01-13 10:00,Scheduled",
            "B2,Lee,415-555-0132,2027-01-13 10:00,Scheduled",
            "B1,Ann again,646-555-1001,2027-01-13 10:00,Scheduled",
        ],
    );
    let from = sim.requests().len();
    let s = run_at(args_for(&c, &sim), ny("2027-01-12T10:30")).await;
    assert_eq!(s.exit_code(), 75, "{}", s.line());
    assert_eq!(called_since(&sim, from), vec!["+16465551001"]);
    let rows = c.results();
    assert_eq!(rows[1]["appt_id"], "B2");
    assert_eq!(rows[1]["status"], "made", "{:?}", rows[1]);
    assert_eq!(rows[1]["reminders"], "1 of 2");
    assert_eq!(rows[1]["calls"], "1");
    assert_eq!(rows[2]["status"], "invalid");
    assert_eq!(rows[2]["calls"], "");
    assert_eq!(rows[2]["history"], "");
    assert_eq!(rows[0]["calls"], "2");
}

/// With one line, the touch whose end comes first is dialed first (earliest deadline first), whatever its
/// place in the export; touches ending together go in export order.
#[tokio::test(start_paused = true)]
async fn with_one_line_the_touch_that_ends_first_is_dialed_first() {
    // Each call holds the one line for about six seconds.
    let sim = sim(1, ms(1000), ms(5000), ms(10), SCENARIO).await;
    let c = Campaign::new(HEADER);
    let mut rows: Vec<String> = (0..10)
        .map(|i| {
            format!(
                "D{i},P{i},646-555-{:04},2027-01-14 10:00,Scheduled",
                1100 + i
            )
        })
        .collect();
    // Its only touch ends at 10:00:20 (two hours before the appointment), 20 s after the run starts.
    rows.push("U1,Urgent,646-555-1200,2027-01-13T12:00:20,Scheduled".into());
    write(&c, &rows.iter().map(String::as_str).collect::<Vec<_>>());
    let mut args = args_for(&c, &sim);
    args.remind_before = Some(vec!["48h".into()]);
    args.window = None;
    let s = run_at(args, ny("2027-01-13T10:00")).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let dialed: Vec<String> = call_requests(&sim.requests())
        .iter()
        .map(|r| r.params["phoneno"].clone())
        .collect();
    let mut expected = vec!["+16465551200".to_string()];
    expected.extend((0..10).map(|i| format!("+1646555{:04}", 1100 + i)));
    assert_eq!(dialed, expected);
    let r = by_key(&c);
    assert_eq!(r["U1"]["status"], "made", "{:?}", r["U1"]);
}

/// A family on one number, two appointments due in one run: never two live calls to the number (the second
/// rang a phone already ringing, on another line, 12 ms later). The second waits until the first call is
/// final, then is made: both appointments are reminded, one after the other.
#[tokio::test(start_paused = true)]
async fn two_appointments_on_one_number_are_called_one_after_the_other() {
    let sim = sim(4, ms(100), ms(2_000), ms(10), SCENARIO).await;
    let c = Campaign::new(HEADER);
    write(
        &c,
        &[
            "F1,Ann,312-555-0183,2027-01-13 10:00,Scheduled",
            "F2,Bob,312-555-0183,2027-01-13 10:30,Scheduled",
            "F3,Cal,646-555-1002,2027-01-13 10:00,Scheduled",
        ],
    );
    let s = run_at(args_for(&c, &sim), ny("2027-01-11T17:05")).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let log = sim.requests();
    assert_eq!(
        most_live_to_one_number(&log),
        1,
        "two live calls to one number"
    );
    assert_eq!(
        called_since(&sim, 0),
        vec!["+13125550183", "+13125550183", "+16465551002"]
    );
    let r = by_key(&c);
    for key in ["F1", "F2", "F3"] {
        assert_eq!(r[key]["status"], "made", "{key}: {:?}", r[key]);
        assert_eq!(r[key]["reminders"], "1 of 2", "{key}");
    }
}

/// With the nightly example's cap (one call per number per 20h), a family's second appointment on the same
/// number is not called in that span: the cap counts calls to a number, not appointments. Its row says so
/// (`capped`, naming the cap), as docs/reminders.md and the example's comment do.
#[tokio::test(start_paused = true)]
async fn a_familys_second_appointment_under_a_cap_of_one_is_capped_with_its_reason() {
    let sim = sim(4, ms(100), ms(2_000), ms(10), SCENARIO).await;
    let c = Campaign::new(HEADER);
    write(
        &c,
        &[
            "F1,Ann,312-555-0183,2027-01-13 10:00,Scheduled",
            "F2,Bob,312-555-0183,2027-01-13 10:30,Scheduled",
        ],
    );
    let mut args = args_for(&c, &sim);
    args.max_calls_per_number = Some("1".into());
    args.per = Some("20h".into());
    let s = run_at(args, ny("2027-01-11T17:05")).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    let r = by_key(&c);
    assert_eq!(called_since(&sim, 0), vec!["+13125550183"]);
    assert_eq!(r["F1"]["status"], "made");
    assert_eq!(r["F2"]["status"], "capped", "{:?}", r["F2"]);
    assert!(r["F2"]["detail"].contains("cap 1"), "{:?}", r["F2"]);
}

/// A run stopped while a touch's call is live, then an export that moves the appointment earlier so that its
/// one remaining touch is due now: the rerun collects the live call, then makes the touch for the new time.
#[tokio::test(start_paused = true)]
async fn a_touch_due_after_a_live_call_of_the_old_time_is_collected_is_made_in_that_run() {
    // Each call is talked through for 30 s: the first is still live when the first run stops.
    let sim = sim(4, ms(100), ms(30_000), ms(10), SCENARIO).await;
    let c = Campaign::new(HEADER);
    write(&c, &["A2,Bob,646-555-1001,2027-01-14 10:00,Scheduled"]);
    let mut args = args_for(&c, &sim);
    args.remind_before = Some(vec!["48h".into()]);
    args.window = None;
    let cfg = ivr_campaign::settings::RunConfig::from_args(args.clone()).expect("valid");
    let (stop, rx) = tokio::sync::watch::channel(ivr_campaign::engine::Stage::Run);
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        stop.send_replace(ivr_campaign::engine::Stage::Now);
        stop
    });
    let clock = ivr_campaign::engine::Clock::virtual_from(ny("2027-01-12T10:00"));
    let s = ivr_campaign::commands::run::run_with_clock(
        cfg,
        rx,
        ivr_campaign::output::progress::Progress::Never,
        clock,
    )
    .await
    .expect("the run stops");
    let _stop = stopper.await.expect("the stop is sent");
    assert_eq!(s.exit_code(), 75, "{}", s.line());
    assert_eq!(by_key(&c)["A2"]["status"], "in_progress");
    // The appointment moves a day earlier: its 48h touch is due at once, until 07:00 tomorrow.
    write(&c, &["A2,Bob,646-555-1001,2027-01-13 09:00,Scheduled"]);
    let s = run_at(args, ny("2027-01-12T10:01")).await;
    assert_eq!(s.exit_code(), 0, "{}", s.line());
    assert_eq!(called_since(&sim, 0), vec!["+16465551001"; 2]);
    let r = by_key(&c);
    assert_eq!(r["A2"]["status"], "made", "{:?}", r["A2"]);
    assert_eq!(r["A2"]["reminders"], "1 of 1", "{:?}", r["A2"]);
    assert_eq!(r["A2"]["next_reminder_at"], "", "{:?}", r["A2"]);
}

/// A family's first appointment is requested and the answer is lost: the gateway may be dialing that number
/// with nobody watching. The second appointment on the number waits until that call can no longer be live
/// (`firstocc` minutes of the gateway's retries, then the call), not just until its task ends.
#[tokio::test(start_paused = true)]
async fn a_lost_answer_keeps_the_familys_number_busy_until_its_call_cannot_be_live() {
    let sim = sim(4, ms(100), ms(2_000), ms(10), "[faults]\ncall-drop = 1.0\n").await;
    let c = Campaign::new(HEADER);
    write(
        &c,
        &[
            "F1,Ann,312-555-0183,2027-01-13 10:00,Scheduled",
            "F2,Bob,312-555-0183,2027-01-13 10:30,Scheduled",
        ],
    );
    let mut args = args_for(&c, &sim);
    args.remind_before = Some(vec!["48h".into()]);
    args.window = None;
    args.firstocc = Some("10".into());
    args.call_length = Some("5m".into());
    let s = run_at(args, ny("2027-01-11T17:05")).await;
    assert!(!s.line().is_empty());
    let log = sim.requests();
    let asked: Vec<Duration> = call_requests(&log).iter().map(|r| r.arrived).collect();
    assert_eq!(asked.len(), 2, "each appointment requested once: {asked:?}");
    assert!(
        asked[1] - asked[0] >= Duration::from_secs(15 * 60),
        "the second call went {:?} after the first, whose answer was lost",
        asked[1] - asked[0]
    );
}

/// Runs `args` on the virtual clock from `at`, stopped 5 s in (a call still live), as a crash leaves it.
async fn run_stopped_at(args: RunArgs, at: Timestamp) -> ivr_campaign::output::summary::Summary {
    let cfg = ivr_campaign::settings::RunConfig::from_args(args).expect("valid");
    let (stop, rx) = tokio::sync::watch::channel(ivr_campaign::engine::Stage::Run);
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        stop.send_replace(ivr_campaign::engine::Stage::Now);
        stop
    });
    let clock = ivr_campaign::engine::Clock::virtual_from(at);
    let s = ivr_campaign::commands::run::run_with_clock(
        cfg,
        rx,
        ivr_campaign::output::progress::Progress::Never,
        clock,
    )
    .await
    .expect("the run stops");
    let _stop = stopper.await.expect("the stop is sent");
    s
}

/// A run stopped while a touch's call is live; the next export cancels, unlists, moves or renumbers the
/// appointment; the call ends `failed` in the rerun, an outcome the recall policy calls again. The recall is
/// for the appointment as the new export lists it: none for a withdrawn or moved one (the failed call's
/// outcome stands), and for a renumbered one the recalls (two: max-attempts 3) go to the new number, never the
/// old.
#[tokio::test(start_paused = true)]
async fn a_recall_after_a_call_left_live_follows_the_export_in_force() {
    const BUSY: &str = r#"
[[rule]]
weight = 1
steps = [{ status = "failed", notes = "Line Busy" }]
"#;
    let row = "A3,Cy,646-555-1002,2027-01-14 10:00,Scheduled";
    let cases: [(&str, Option<&str>, &[&str]); 4] = [
        (
            "cancelled",
            Some("A3,Cy,646-555-1002,2027-01-14 10:00,Cancelled"),
            &[],
        ),
        ("unlisted", None, &[]),
        (
            "moved",
            Some("A3,Cy,646-555-1002,2027-01-15 10:00,Scheduled"),
            &[],
        ),
        (
            "renumbered",
            Some("A3,Cy,646-555-1009,2027-01-14 10:00,Scheduled"),
            &["+16465551009", "+16465551009"],
        ),
    ];
    for (case, next, recalled) in cases {
        // Each call rings for 30 s, then fails: the first is still live when the first run stops.
        let sim = sim(4, ms(30_000), ms(100), ms(10), BUSY).await;
        let c = Campaign::new(HEADER);
        write(&c, &[row, "B1,Di,646-555-1003,2027-01-20 10:00,Scheduled"]);
        let mut args = args_for(&c, &sim);
        args.remind_before = Some(vec!["48h".into()]);
        args.window = None;
        args.recall_on = Some(vec!["failed".into()]);
        args.recall_after = Some("1m".into());
        let s = run_stopped_at(args.clone(), ny("2027-01-12T10:00")).await;
        assert_eq!(s.exit_code(), 75, "{case}: {}", s.line());
        assert_eq!(by_key(&c)["A3"]["status"], "in_progress", "{case}");
        write(
            &c,
            &[next.unwrap_or("B1,Di,646-555-1003,2027-01-20 10:00,Scheduled")],
        );
        let s = run_at(args, ny("2027-01-12T10:01")).await;
        assert_eq!(s.exit_code(), 0, "{case}: {}", s.line());
        let mut want = vec!["+16465551002"];
        want.extend(recalled);
        want.sort();
        assert_eq!(called_since(&sim, 0), want, "{case}");
    }
}
