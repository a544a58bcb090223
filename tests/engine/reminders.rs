//! Appointment reminders over a rolling export, on virtual time: three nights of one export (new, cancelled,
//! rescheduled, confirmed and passed appointments), each run under its own clock, make exactly the calls the
//! rules allow, each touch once; a rerun the same evening adds none. And a property test over random
//! appointment sets, export changes and run times.

use std::collections::HashMap;

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

const HEADER: &str = "appt_id,name,phone,appointment,appt_status\n";

fn args_for(c: &Campaign, sim: &Simulator) -> RunArgs {
    let mut args = c.args(sim);
    args.key_column = Some("appt_id".into());
    args.appointment_column = Some("appointment".into());
    args.remind_before = Some(vec!["48h".into(), "24h".into()]);
    args.min_notice = Some("2h".into());
    args.stop_on = Some(vec!["confirm=1".into()]);
    args.skip_if = vec!["appt_status=Cancelled".into()];
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
    assert_eq!(order, ["A7", "A1", "A2", "A3", "A4", "A5", "A9", "A6", "A8"]);

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
