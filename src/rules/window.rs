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
mod tests;
