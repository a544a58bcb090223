//! The calling window, in the recipient's local time.
//!
//! A call may be requested only when the recipient's local time is inside the window on an allowed day, and
//! the whole call (the gateway may keep retrying for `firstocc` minutes, and the call itself takes a while)
//! fits before the window closes. Local times are resolved with the IANA database through jiff, and DST gaps
//! and folds are resolved explicitly, always to the safe side: a window *opens* at the later reading of an
//! ambiguous or skipped local time, and *closes* at the earlier one. So a window is never longer than its civil
//! hours say, on any day of the year.
//!
//! A recipient whose number may be in several zones gets all of them: an instant is allowed only if it is
//! allowed in every one ([`Window::allows_all`]), and the next opening is the first instant open everywhere
//! ([`Window::next_opening_all`]). Dates off (`skip-dates`, public holidays) are judged in each zone too.

use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;

/// `09:00-20:00` on `mon-fri`, with room for a call to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub start: Time,
    pub end: Time,
    /// Indexed Monday = 0.
    pub days: [bool; 7],
    /// The time a call needs before the window closes.
    pub margin: Duration,
    /// Dates nobody is called on, in the recipient's own calendar (sorted).
    pub skip: Vec<Date>,
}

/// Parses `2026-12-25,2027-01-01` (a list, in TOML).
pub fn parse_dates(items: &[String]) -> Result<Vec<Date>, String> {
    let mut dates = Vec::new();
    for item in items.iter().flat_map(|i| i.split(',')) {
        let t = item.trim();
        if t.is_empty() {
            continue;
        }
        let d: Date = t
            .parse()
            .map_err(|_| format!("{t:?} is not a date; write it like 2026-12-25"))?;
        dates.push(d);
    }
    dates.sort();
    dates.dedup();
    Ok(dates)
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn parse_time(s: &str) -> Result<Time, String> {
    let (h, m) = s
        .trim()
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not a time; write it like 09:00"))?;
    let h: i8 = h
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a time"))?;
    let m: i8 = m
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a time"))?;
    if h == 24 && m == 0 {
        // `24:00` means the end of the day.
        return Ok(Time::MAX);
    }
    Time::new(h, m, 0, 0).map_err(|_| format!("{s:?} is not a time of day"))
}

fn day_index(s: &str) -> Result<usize, String> {
    const FULL: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let t = s.trim().to_ascii_lowercase();
    // The short name, the full name, or a common abbreviation between them (`tues`, `thur`): never just any
    // word that starts like a day (`monkey`).
    FULL.iter()
        .position(|full| t.len() >= 3 && full.starts_with(t.as_str()))
        .ok_or_else(|| format!("{s:?} is not a day; use mon, tue, wed, thu, fri, sat, sun"))
}

/// Parses `mon-fri`, `mon,wed,fri`, `sat-sun`, `all`.
pub fn parse_days(s: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    if s.trim().eq_ignore_ascii_case("all") || s.trim().eq_ignore_ascii_case("daily") {
        return Ok([true; 7]);
    }
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day_index(a)?, day_index(b)?);
                let mut i = a;
                loop {
                    days[i] = true;
                    if i == b {
                        break;
                    }
                    i = (i + 1) % 7;
                }
            }
            None => days[day_index(part)?] = true,
        }
    }
    if days.iter().all(|d| !d) {
        return Err(format!("{s:?} names no day"));
    }
    Ok(days)
}

fn monday_index(w: Weekday) -> usize {
    w.to_monday_zero_offset() as usize
}

impl Window {
    /// Parses `09:00-20:00`.
    pub fn parse(window: &str, days: [bool; 7], margin: Duration) -> Result<Window, String> {
        let (a, b) = window
            .split_once('-')
            .ok_or_else(|| format!("{window:?} is not a window; write it like 09:00-20:00"))?;
        let (start, end) = (parse_time(a)?, parse_time(b)?);
        if start >= end {
            return Err(format!(
                "{window:?}: the window must start before it ends (windows across midnight are not supported)"
            ));
        }
        Ok(Window {
            start,
            end,
            days,
            margin,
            skip: Vec::new(),
        })
    }

    /// The window's civil length on a day without a clock change (`24:00` is the end of the day).
    pub fn length(&self) -> Duration {
        let secs = |t: Time| {
            if t == Time::MAX {
                86_400
            } else {
                u64::from(t.hour().unsigned_abs()) * 3600
                    + u64::from(t.minute().unsigned_abs()) * 60
                    + u64::from(t.second().unsigned_abs())
            }
        };
        Duration::from_secs(secs(self.end).saturating_sub(secs(self.start)))
    }

    /// Whether a call fits in the window at all: its margin must be shorter than the window, or no instant of
    /// any day, in any zone, allows a request, and every row of every list would be uncallable.
    pub fn leaves_room(&self) -> bool {
        self.margin < self.length()
    }

    /// Whether calls are allowed on this day at all: an allowed weekday, and not a date off.
    fn day_on(&self, date: Date) -> bool {
        self.days[monday_index(date.weekday())] && self.skip.binary_search(&date).is_err()
    }

    /// When the window opens on `date`: the later reading of a local time in a gap or a fold.
    fn opens(&self, date: Date, tz: &TimeZone) -> Option<Timestamp> {
        tz.to_ambiguous_zoned_datetime(date.to_datetime(self.start))
            .later()
            .ok()
            .map(|z| z.timestamp())
    }

    /// When the window closes on `date`: the earlier reading.
    fn closes(&self, date: Date, tz: &TimeZone) -> Option<Timestamp> {
        tz.to_ambiguous_zoned_datetime(date.to_datetime(self.end))
            .earlier()
            .ok()
            .map(|z| z.timestamp())
    }

    /// Whether a call may be requested at `now` for a recipient in `tz`.
    pub fn allows(&self, now: Timestamp, tz: &TimeZone) -> bool {
        let local = now.to_zoned_datetime(tz.clone());
        if !self.day_on(local.date()) {
            return false;
        }
        let (Some(opens), Some(closes)) =
            (self.opens(local.date(), tz), self.closes(local.date(), tz))
        else {
            return false;
        };
        // At its close the window is shut, whatever the margin.
        if now < opens || now >= closes {
            return false;
        }
        let Ok(margin) = jiff::SignedDuration::try_from(self.margin) else {
            return false;
        };
        now.checked_add(margin).is_ok_and(|done| done <= closes)
    }

    /// Whether a call may be requested at `now` for a recipient who may be in any of `zones`.
    pub fn allows_all(&self, now: Timestamp, zones: &[TimeZone]) -> bool {
        !zones.is_empty() && zones.iter().all(|tz| self.allows(now, tz))
    }

    /// The first instant at or after `now` at which [`Window::allows_all`] holds, if one comes within a few
    /// weeks. Each zone's next opening moves the candidate forward; it can only move to an instant no later
    /// than the answer (the answer is open in that zone too), so when every zone allows the candidate it is
    /// the first instant open everywhere.
    pub fn next_opening_all(&self, now: Timestamp, zones: &[TimeZone]) -> Option<Timestamp> {
        let horizon = now
            .checked_add(jiff::SignedDuration::from_hours(24 * 40))
            .ok()?;
        let mut t = now;
        while t <= horizon {
            let mut moved = false;
            for tz in zones {
                let open = self.next_opening(t, tz)?;
                if open > t {
                    t = open;
                    moved = true;
                }
            }
            if !moved {
                return (!zones.is_empty()).then_some(t);
            }
        }
        None
    }

    /// The first instant at or after `now` at which [`Window::allows`] holds (within the next five weeks, so
    /// that a run of dates off around the holidays is crossed).
    pub fn next_opening(&self, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        if self.allows(now, tz) {
            return Some(now);
        }
        let mut date = now.to_zoned_datetime(tz.clone()).date();
        for _ in 0..36 {
            let opens = self.opens(date, tz).filter(|_| self.day_on(date));
            if let Some(opens) = opens {
                let candidate = if opens > now { opens } else { now };
                if self.allows(candidate, tz) {
                    return Some(candidate);
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// The last instant today (recipient's date) at which a call may still be requested, if any.
    pub fn last_request(&self, now: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let local = now.to_zoned_datetime(tz.clone());
        let closes = self.closes(local.date(), tz)?;
        closes
            .checked_sub(jiff::SignedDuration::try_from(self.margin).ok()?)
            .ok()
    }

    /// `09:00-20:00 mon-fri`, for messages.
    pub fn describe(&self) -> String {
        let days: Vec<&str> = DAY_NAMES
            .iter()
            .zip(self.days)
            .filter(|(_, on)| *on)
            .map(|(d, _)| *d)
            .collect();
        format!(
            "{}-{} {}",
            self.start.strftime("%H:%M"),
            if self.end == Time::MAX {
                "24:00".to_string()
            } else {
                self.end.strftime("%H:%M").to_string()
            },
            days.join(",")
        )
    }
}

/// Looks up an IANA zone name in the built-in database ([`crate::zones::zone`]).
pub fn zone(name: &str) -> Result<TimeZone, String> {
    crate::zones::zone(name)
}

#[cfg(test)]
mod tests {
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
}
