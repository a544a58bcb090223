//! Tests of [`super`]: kept beside it, out of the way of reading it.

use super::*;
use proptest::prelude::*;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn w(spec: &str, days: &str, margin_min: u64) -> Window {
    Window::parse(
        spec,
        parse_days(days).expect("days"),
        Duration::from_secs(margin_min * 60),
    )
    .expect("window")
}

#[test]
fn parses_days_and_windows() {
    assert_eq!(
        parse_days("mon-fri"),
        Ok([true, true, true, true, true, false, false])
    );
    assert_eq!(
        parse_days("sat-mon"),
        Ok([true, false, false, false, false, true, true])
    );
    assert_eq!(
        parse_days("tue,thu"),
        Ok([false, true, false, true, false, false, false])
    );
    assert!(parse_days("funday").is_err());
    assert!(parse_days("monkey").is_err());
    assert!(parse_days("mo").is_err());
    assert_eq!(parse_days("tues,thursday").ok(), parse_days("tue,thu").ok());
    assert!(Window::parse("20:00-09:00", [true; 7], Duration::ZERO).is_err());
    assert!(Window::parse("9-5", [true; 7], Duration::ZERO).is_err());
    assert_eq!(
        w("09:00-20:00", "mon-fri", 0).describe(),
        "09:00-20:00 mon,tue,wed,thu,fri"
    );
}

#[test]
fn a_margin_as_long_as_the_window_leaves_no_room() {
    assert!(w("09:00-20:00", "all", 659).leaves_room());
    assert!(!w("09:00-20:00", "all", 660).leaves_room());
    assert!(w("00:00-24:00", "all", 1439).leaves_room());
    assert!(!w("00:00-24:00", "all", 1440).leaves_room());
}

#[test]
fn recipient_time_decides() {
    let win = w("09:00-20:00", "mon-fri", 15);
    let ny = zone("America/New_York").expect("zone");
    let la = zone("America/Los_Angeles").expect("zone");
    // Wednesday 2026-11-25 14:00 UTC = 09:00 in New York, 06:00 in Los Angeles.
    let t = ts("2026-11-25T14:00:00Z");
    assert!(win.allows(t, &ny));
    assert!(!win.allows(t, &la));
    assert_eq!(win.next_opening(t, &la), Some(ts("2026-11-25T17:00:00Z")));
    // 19:50 in New York: a 15-minute margin no longer fits.
    assert!(!win.allows(ts("2026-11-26T00:50:00Z"), &ny));
    // Saturday: the next opening is Monday 09:00.
    assert_eq!(
        win.next_opening(ts("2026-11-28T15:00:00Z"), &ny),
        Some(ts("2026-11-30T14:00:00Z"))
    );
}

#[test]
fn dst_gap_and_fold() {
    let ny = zone("America/New_York").expect("zone");
    // 2026-03-08: 02:00 → 03:00 in New York. A window opening at 02:30 opens at 03:30 EDT (07:30Z).
    let win = w("02:30-05:00", "all", 0);
    assert_eq!(
        win.next_opening(ts("2026-03-08T05:00:00Z"), &ny),
        Some(ts("2026-03-08T07:30:00Z"))
    );
    // 2026-11-01: 02:00 → 01:00. A window ending at 01:30 closes at the first 01:30 (EDT, 05:30Z).
    // A window ending at 02:30 on the spring-forward day, inside the gap, closes at 01:30 EST (06:30Z).
    let gap_end = w("00:00-02:30", "all", 0);
    assert!(gap_end.allows(ts("2026-03-08T06:29:00Z"), &ny));
    assert!(!gap_end.allows(ts("2026-03-08T06:31:00Z"), &ny));
    let win = w("00:00-01:30", "all", 10);
    assert!(win.allows(ts("2026-11-01T05:15:00Z"), &ny));
    assert!(!win.allows(ts("2026-11-01T05:25:00Z"), &ny));
}

const ZONES: [&str; 8] = [
    "America/New_York",
    "Europe/London",
    "Australia/Sydney",
    "America/Santiago",
    "Pacific/Chatham",
    "Asia/Kolkata",
    "America/St_Johns",
    "Europe/Berlin",
];

fn instant_near_a_transition() -> impl Strategy<Value = (usize, Timestamp)> {
    (0..ZONES.len(), 2020i16..2031, 0i64..3, -36i64 * 60..36 * 60).prop_map(
        |(z, year, nth, minutes)| {
            let tz = zone(ZONES[z]).expect("zone");
            let from = jiff::civil::date(year, 1, 1)
                .at(0, 0, 0, 0)
                .to_zoned_datetime(TimeZone::UTC)
                .expect("date")
                .timestamp();
            let base = tz
                .following(from)
                .nth(nth as usize)
                .map(|t| t.timestamp())
                .unwrap_or(from);
            (z, base + jiff::SignedDuration::from_mins(minutes))
        },
    )
}

/// A multi-zone set from the map, and an instant within a day and a half of one of its zones' transitions.
fn multi_zone_instant() -> impl Strategy<Value = (Vec<TimeZone>, Timestamp)> {
    let sets = crate::zones::nanp_multi_zone_sets();
    (
        0..sets.len(),
        2024i16..2031,
        0usize..3,
        -36i64 * 60..36 * 60,
    )
        .prop_map(move |(i, year, nth, minutes)| {
            let zones: Vec<TimeZone> = sets[i].iter().map(|z| zone(z).expect("zone")).collect();
            let from = jiff::civil::date(year, 1, 1)
                .at(0, 0, 0, 0)
                .to_zoned_datetime(TimeZone::UTC)
                .expect("date")
                .timestamp();
            let base = zones[nth % zones.len()]
                .following(from)
                .nth(nth)
                .map(|t| t.timestamp())
                .unwrap_or(from);
            (zones, base + jiff::SignedDuration::from_mins(minutes))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn a_number_in_several_zones_is_called_only_when_every_one_allows_it(
        (zones, t) in multi_zone_instant(),
        start_h in 6i8..12, len_h in 6i64..14,
        margin in 0u64..60,
    ) {
        let start = Time::new(start_h, 0, 0, 0).expect("time");
        let end_min = (i64::from(start_h) * 60 + len_h * 60).min(24 * 60 - 1);
        let end = Time::new((end_min / 60) as i8, (end_min % 60) as i8, 0, 0).expect("time");
        let win = Window { start, end, days: [true; 7], margin: Duration::from_secs(margin * 60), skip: Vec::new() };
        if win.allows_all(t, &zones) {
            for tz in &zones {
                let local = t.to_zoned_datetime(tz.clone());
                prop_assert!(local.time() >= start && local.time() < end, "{local} outside {start}-{end}");
                let finish = (t + jiff::SignedDuration::from_mins(margin as i64)).to_zoned_datetime(tz.clone());
                prop_assert!(finish.date() == local.date() && finish.time() <= end, "runs to {finish}");
            }
        }
        if let Some(open) = win.next_opening_all(t, &zones) {
            prop_assert!(open >= t);
            prop_assert!(win.allows_all(open, &zones));
            let mut s = t;
            while s < open && s < t + jiff::SignedDuration::from_hours(30) {
                prop_assert!(!win.allows_all(s, &zones), "{s} open everywhere before the opening {open}");
                s += jiff::SignedDuration::from_mins(7);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn never_allows_outside_the_window_and_opens_at_the_first_allowed_minute(
        (z, t) in instant_near_a_transition(),
        start_h in 0i8..23, start_m in prop_oneof![Just(0i8), Just(30i8)],
        len_min in 30i64..600,
        margin in 0u64..90,
        days in proptest::array::uniform7(proptest::bool::ANY),
    ) {
        prop_assume!(days.iter().any(|d| *d));
        let tz = zone(ZONES[z]).expect("zone");
        let start = Time::new(start_h, start_m, 0, 0).expect("time");
        let end_min = (i64::from(start_h) * 60 + i64::from(start_m) + len_min).min(24 * 60 - 1);
        let end = Time::new((end_min / 60) as i8, (end_min % 60) as i8, 0, 0).expect("time");
        prop_assume!(start < end);
        let win = Window { start, end, days, margin: Duration::from_secs(margin * 60), skip: Vec::new() };

        if win.allows(t, &tz) {
            // Every instant of the call, from its request to the end of its margin, is inside the civil
            // window on the recipient's day.
            let local = t.to_zoned_datetime(tz.clone());
            prop_assert!(days[monday_index(local.weekday())]);
            prop_assert!(local.time() >= start && local.time() < end, "{local} outside {start}-{end}");
            let finish = (t + jiff::SignedDuration::from_mins(margin as i64)).to_zoned_datetime(tz.clone());
            prop_assert_eq!(finish.date(), local.date(), "a call requested at {} runs past midnight", local);
            prop_assert!(finish.time() <= end, "a call requested at {} would run to {}, past {}", local, finish, end);
        }
        if let Some(open) = win.next_opening(t, &tz) {
            prop_assert!(open >= t);
            prop_assert!(win.allows(open, &tz));
            // No allowed minute was skipped between t and the opening.
            let mut s = t;
            while s < open && s < t + jiff::SignedDuration::from_hours(30) {
                prop_assert!(!win.allows(s, &tz), "{s} allowed before the opening {open}");
                s += jiff::SignedDuration::from_mins(7);
            }
        }
    }
}
