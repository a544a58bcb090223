//! Appointment reminders, as pure time arithmetic: reading an appointment cell in the clinic's zone, the
//! touches an appointment has (each due from `appointment − lead` until the next falls due, the last until
//! `appointment − min-notice`), and which touch is due at an instant.
//!
//! Everything here compares instants as "due and not yet ended" (`due <= now < end`), never by equality: a run
//! that starts late, or a night that was missed, still finds every touch that is due, and a touch whose end has
//! passed is never made late. Nothing here reads a clock or a file, so it is tested on its own.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// Formats practice systems write, tried in order when no `--appointment-format` is given.
const FORMATS: [&str; 8] = [
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%m/%d/%Y %I:%M %p",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %H:%M:%S",
];

/// Reads an appointment cell: a local time in the clinic's zone `tz` (in `format`, or one of the common
/// formats), or an RFC 3339 time with its own offset. A local time that a clock change skips (02:30 on a
/// spring-forward night) is taken as the instant after the gap; one that happens twice, as the first.
pub fn read_appointment(
    cell: &str,
    format: Option<&str>,
    tz: &TimeZone,
) -> Result<Timestamp, String> {
    let text = cell.trim();
    if text.is_empty() {
        return Err("no appointment time".into());
    }
    let civil = match format {
        Some(f) => {
            let mismatch =
                || format!("appointment time {text:?} does not match --appointment-format {f:?}");
            let parsed = jiff::fmt::strtime::parse(f, text).map_err(|_| mismatch())?;
            // An offset written in the cell (`%z`) says which instant it is: taken as written, as an RFC 3339
            // cell is without a format, never read again as the clinic's local time.
            if parsed.offset().is_some() {
                return parsed
                    .to_timestamp()
                    .map_err(|e| format!("appointment time {text:?}: {e}"));
            }
            parsed.to_datetime().map_err(|_| mismatch())?
        }
        None => {
            if let Ok(t) = text.parse::<Timestamp>() {
                return Ok(t);
            }
            FORMATS
                .iter()
                .find_map(|f| DateTime::strptime(f, text).ok())
                .ok_or_else(|| {
                    format!(
                        "appointment time {text:?} is not a date and time this reads (like 2027-01-13 10:00 or 01/13/2027 10:00 AM); set --appointment-format"
                    )
                })?
        }
    };
    tz.to_ambiguous_timestamp(civil)
        .compatible()
        .map_err(|e| format!("appointment time {text:?}: {e}"))
}

/// Checks `--appointment-format` before any call. A format that cannot write a known time (an unknown
/// directive), or whose writing cannot be read back as a date and time (`%Q` alone, `%H:%M`, `%Z`), would
/// make every row `invalid` and remind nobody: refused up front, in one line.
pub fn check_format(format: &str, what: &str) -> Result<(), String> {
    let sample = DateTime::constant(2027, 1, 13, 10, 30, 0, 0)
        .to_zoned_datetime(TimeZone::UTC)
        .map_err(|e| format!("{what}: {e}"))?;
    let written = jiff::fmt::strtime::format(format, &sample)
        .map_err(|e| format!("{what}: {format:?} is not a strftime format ({e})"))?;
    match read_appointment(&written, Some(format), &TimeZone::UTC) {
        Ok(t) if t == sample.timestamp() => Ok(()),
        _ => Err(format!(
            "{what}: {format:?} does not read a date and time (2027-01-13 10:30 written in it, {written:?}, reads back as no such time); write it like %d.%m.%Y %H:%M"
        )),
    }
}

/// Reads a span before an appointment (a lead of `--remind-before`, or `--min-notice`): `48h`, `90m`, or whole
/// days `2d`, read alike for both so that what one accepts the other does too.
pub fn read_span(item: &str, what: &str) -> Result<SignedDuration, String> {
    let item = item.trim();
    match item.strip_suffix('d') {
        Some(days) => days
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|d| *d > 0)
            .map(|d| SignedDuration::from_hours(i64::from(d) * 24))
            .ok_or_else(|| format!("{what}: {item:?} is not a number of days")),
        None => crate::types::parse_duration(item)
            .map_err(|e| format!("{what}: {e}"))
            .and_then(|d| {
                SignedDuration::try_from(d).map_err(|_| format!("{what}: {item:?} is out of range"))
            }),
    }
}

/// Reads `--remind-before`: leads like `48h`, `90m` or `7d`, longest first, distinct.
pub fn read_leads(items: &[String], what: &str) -> Result<Vec<SignedDuration>, String> {
    let mut leads = Vec::new();
    for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let lead = read_span(item, what)?;
        if lead.is_zero() {
            return Err(format!(
                "{what}: {item:?} is no lead; write it like 48h or 2d"
            ));
        }
        if leads.contains(&lead) {
            return Err(format!("{what}: {item:?} is given twice"));
        }
        leads.push(lead);
    }
    if leads.is_empty() {
        return Err(format!("{what}: no lead; write it like 48h,24h"));
    }
    leads.sort_by(|a, b| b.cmp(a));
    Ok(leads)
}

/// One reminder call's time span for one appointment: due from `due`, not made at or after `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    /// 0 for the longest lead.
    pub index: u32,
    pub due: Timestamp,
    pub end: Timestamp,
}

impl Touch {
    /// Due and not yet ended at `now`.
    pub fn open_at(&self, now: Timestamp) -> bool {
        self.due <= now && now < self.end
    }
}

/// The timing rules of a reminder campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    /// Longest first.
    pub leads: Vec<SignedDuration>,
    /// No call closer to the appointment than this.
    pub min_notice: SignedDuration,
}

impl Timing {
    /// Every touch of an appointment at `at`, longest lead first. A touch whose span is empty (its lead no
    /// longer than the min-notice, refused when the settings are read) is left out.
    pub fn touches(&self, at: Timestamp) -> Vec<Touch> {
        let last_end = at.saturating_sub(self.min_notice).unwrap_or(Timestamp::MIN);
        let dues: Vec<Timestamp> = self
            .leads
            .iter()
            .map(|l| at.saturating_sub(*l).unwrap_or(Timestamp::MIN))
            .collect();
        dues.iter()
            .enumerate()
            .map(|(i, due)| Touch {
                index: i as u32,
                due: *due,
                end: dues.get(i + 1).copied().unwrap_or(last_end).min(last_end),
            })
            .filter(|t| t.due < t.end)
            .collect()
    }

    /// The touches still to come or due at `now` (ended ones are gone for good: never made late).
    pub fn remaining(&self, at: Timestamp, now: Timestamp) -> Vec<Touch> {
        self.touches(at)
            .into_iter()
            .filter(|t| now < t.end)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ny() -> TimeZone {
        crate::zones::zone("America/New_York").expect("zone")
    }

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn timing(leads: &[&str], min_notice_h: i64) -> Timing {
        let leads: Vec<String> = leads.iter().map(|s| s.to_string()).collect();
        Timing {
            leads: read_leads(&leads, "--remind-before").expect("leads"),
            min_notice: SignedDuration::from_hours(min_notice_h),
        }
    }

    #[test]
    fn appointment_cells_are_read_in_the_clinics_zone() {
        let tz = ny();
        let want = t("2027-01-13T15:00:00Z");
        for cell in [
            "2027-01-13 10:00",
            "2027-01-13T10:00:00",
            "01/13/2027 10:00 AM",
            " 2027-01-13 10:00:00 ",
            "2027-01-13T10:00:00-05:00",
        ] {
            assert_eq!(read_appointment(cell, None, &tz), Ok(want), "{cell}");
        }
        assert_eq!(
            read_appointment("13.01.2027 10:00", Some("%d.%m.%Y %H:%M"), &tz),
            Ok(want)
        );
        // The same wall time in another clinic is another instant.
        let la = crate::zones::zone("America/Los_Angeles").expect("zone");
        assert_eq!(
            read_appointment("2027-01-13 10:00", None, &la),
            Ok(t("2027-01-13T18:00:00Z"))
        );
        for bad in ["", "tomorrow", "2027-13-45 10:00", "13/01/2027 10:00"] {
            assert!(read_appointment(bad, None, &tz).is_err(), "{bad}");
        }
        assert!(read_appointment("2027-01-13 10:00", Some("%d.%m.%Y"), &tz).is_err());
    }

    #[test]
    fn an_offset_read_by_the_appointment_format_is_taken_as_written() {
        let f = Some("%Y-%m-%dT%H:%M:%S%z");
        // 10:00 at +01:00 is 09:00Z, not 10:00 in New York.
        assert_eq!(
            read_appointment("2027-01-13T10:00:00+0100", f, &ny()),
            Ok(t("2027-01-13T09:00:00Z"))
        );
        assert_eq!(
            read_appointment("2027-01-13T10:00:00-0500", f, &ny()),
            Ok(t("2027-01-13T15:00:00Z"))
        );
        // Without an offset in the format, the clinic's zone as before.
        assert_eq!(
            read_appointment("2027-01-13T10:00:00", Some("%Y-%m-%dT%H:%M:%S"), &ny()),
            Ok(t("2027-01-13T15:00:00Z"))
        );
    }

    #[test]
    fn a_time_skipped_by_the_clock_change_is_taken_after_the_gap() {
        // 2027-03-14 02:30 does not exist in New York.
        assert_eq!(
            read_appointment("2027-03-14 02:30", None, &ny()),
            Ok(t("2027-03-14T07:30:00Z"))
        );
    }

    #[test]
    fn leads_are_sorted_distinct_and_read_in_days_too() {
        let l = read_leads(&["24h".into(), "2d".into(), " 90m ".into()], "x").expect("leads");
        assert_eq!(
            l,
            vec![
                SignedDuration::from_hours(48),
                SignedDuration::from_hours(24),
                SignedDuration::from_mins(90)
            ]
        );
        assert!(read_leads(&["24h".into(), "1d".into()], "x").is_err());
        assert!(read_leads(&[], "x").is_err());
        assert!(read_leads(&["0h".into()], "x").is_err());
        assert!(read_leads(&["soon".into()], "x").is_err());
    }

    #[test]
    fn each_touch_runs_until_the_next_falls_due_and_the_last_until_the_min_notice() {
        let at = t("2027-01-13T15:00:00Z");
        let touches = timing(&["48h", "24h"], 2).touches(at);
        assert_eq!(
            touches,
            vec![
                Touch {
                    index: 0,
                    due: t("2027-01-11T15:00:00Z"),
                    end: t("2027-01-12T15:00:00Z")
                },
                Touch {
                    index: 1,
                    due: t("2027-01-12T15:00:00Z"),
                    end: t("2027-01-13T13:00:00Z")
                },
            ]
        );
        // A run at any instant finds at most one touch open, and spans never overlap.
        for h in -60..2 {
            let now = at + SignedDuration::from_hours(h);
            let open = touches.iter().filter(|x| x.open_at(now)).count();
            assert!(open <= 1, "{now}");
            assert_eq!(open == 1, (-48..-2).contains(&h), "{now}");
        }
    }

    #[test]
    fn a_late_booking_keeps_only_the_touches_still_to_come() {
        let at = t("2027-01-13T15:00:00Z");
        let tm = timing(&["48h", "24h"], 2);
        // Booked 30 hours ahead: the 48-hour touch is open (due, not ended).
        let r = tm.remaining(at, at - SignedDuration::from_hours(30));
        assert_eq!(r.len(), 2);
        assert!(r[0].open_at(at - SignedDuration::from_hours(30)));
        // Booked 10 hours ahead: only the last.
        assert_eq!(
            tm.remaining(at, at - SignedDuration::from_hours(10))
                .iter()
                .map(|t| t.index)
                .collect::<Vec<_>>(),
            vec![1]
        );
        // Within the min-notice, or passed: nothing.
        assert!(
            tm.remaining(at, at - SignedDuration::from_hours(1))
                .is_empty()
        );
        assert!(
            tm.remaining(at, at + SignedDuration::from_hours(1))
                .is_empty()
        );
    }

    #[test]
    fn a_lead_within_the_min_notice_has_no_touch() {
        let at = t("2027-01-13T15:00:00Z");
        let touches = timing(&["24h", "1h"], 2).touches(at);
        assert_eq!(touches.len(), 1);
        assert_eq!(touches[0].end, t("2027-01-13T13:00:00Z"));
    }
}
