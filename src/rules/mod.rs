//! The calling rules, as one pipeline used by both `run` and `validate`: whether a callable contact may be
//! called now, and if not, why.
//!
//! The order is fixed: an opt-out first (a suppressed person is never called, whatever the hour), then the
//! recipient's time zone and calling window. The cap per number is checked last and separately
//! ([`Rules::cap`]), because in a run it is claimed in the same transaction that counts it, just before the
//! call request; a dry run only counts.

pub mod answers;
pub mod ledger;
pub mod suppress;
pub mod touches;
pub mod window;

use std::collections::HashMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::error::Result;
use crate::types::humanize;
use ledger::Ledger;
use suppress::Suppressed;
use window::Window;

// Admission is decided where a row is read ([`crate::contacts`]), below both the rules and the store that
// records it: the journal's ingest and the dry run both call it.
pub use crate::contacts::{Admission, admit};

/// What the rules say about one contact at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Call,
    /// On a suppression list (named).
    Suppressed(String),
    /// Not inside its calling window now. `opens`: the next instant it is, if any in the next week.
    OutsideWindow {
        detail: String,
        opens: Option<Timestamp>,
    },
    /// Its time zone cannot be known, so no hour is known to be safe.
    Unplaceable(String),
    /// A reminder touch whose end has passed: skipped, never made late.
    TouchEnded(String),
}

/// The part of a contact the rules look at.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub e164: &'a str,
    /// The contact's own zone or zones (`&`-joined), from its column or its number.
    pub tz: Option<&'a str>,
}

/// The zones a contact's window is judged in, with their names.
#[derive(Debug, Clone)]
pub struct Placed {
    pub zones: Vec<TimeZone>,
    pub names: Vec<String>,
}

/// The campaign's rules, with what they need loaded.
pub struct Rules {
    pub window: Option<Window>,
    /// The campaign's zone and its name, for contacts whose own zone cannot be told.
    pub timezone: Option<(TimeZone, String)>,
    pub suppressed: Suppressed,
    pub ledger: Option<Ledger>,
    /// Zones looked up so far (a list names a few zones many times).
    zones: HashMap<String, Option<TimeZone>>,
    /// Reminder touches that may be called in this run (their contact rows), and the end of each (ms): no
    /// call request for one leaves at or after it.
    pub touch_ends: HashMap<u64, i64>,
}

impl Rules {
    pub fn new(
        window: Option<Window>,
        timezone: Option<(TimeZone, String)>,
        suppressed: Suppressed,
        ledger: Option<Ledger>,
    ) -> Rules {
        Rules {
            window,
            timezone,
            suppressed,
            ledger,
            zones: HashMap::new(),
            touch_ends: HashMap::new(),
        }
    }

    /// A reminder touch (contact `row`) whose end has passed at `now`; `None` for any other contact.
    pub fn touch_ended(&self, row: u64, now: Timestamp) -> Option<Decision> {
        let end = *self.touch_ends.get(&row)?;
        (now.as_millisecond() >= end).then(|| {
            Decision::TouchEnded(format!(
                "the touch ended at {} before it could be made",
                Timestamp::from_millisecond(end).unwrap_or(Timestamp::MAX)
            ))
        })
    }

    /// The last moment a request for contact `row` may leave: the window's (`by`), and for a reminder touch
    /// no later than just before its end.
    pub fn touch_send_by(&self, row: u64, by: Option<Timestamp>) -> Option<Timestamp> {
        let end = self
            .touch_ends
            .get(&row)
            .and_then(|e| Timestamp::from_millisecond(e - 1).ok());
        match (by, end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The zones a contact's window is judged in: its own, else the campaign's. `Err` says why none can be.
    pub fn place(&mut self, c: Candidate<'_>) -> std::result::Result<Placed, String> {
        let Some(joined) = c.tz else {
            return match &self.timezone {
                Some((tz, name)) => Ok(Placed {
                    zones: vec![tz.clone()],
                    names: vec![name.clone()],
                }),
                None => Err(format!(
                    "its time zone cannot be told: {} does not say it (only its country, whose zones keep different clocks) and no timezone is set; add a time zone column (--timezone-column) or set --timezone",
                    c.e164
                )),
            };
        };
        let mut placed = Placed {
            zones: Vec::new(),
            names: Vec::new(),
        };
        for name in joined.split('&') {
            let tz = self
                .zones
                .entry(name.to_string())
                .or_insert_with(|| crate::zones::zone(name).ok())
                .clone();
            // Validated when the list was read. A zone the database no longer has must not fall back to the
            // campaign's: that could be hours off.
            let tz = tz.ok_or_else(|| {
                format!("its time zone {name:?} is not in this build's time zone database, so no hour is known to be safe")
            })?;
            placed.zones.push(tz);
            placed.names.push(name.to_string());
        }
        Ok(placed)
    }

    /// Suppression, then the window in the recipient's zone (in every one of its zones).
    pub fn decide(&mut self, c: Candidate<'_>, now: Timestamp) -> Decision {
        if let Some(list) = self.suppressed.get(c.e164) {
            return Decision::Suppressed(list.clone());
        }
        if self.window.is_none() {
            return Decision::Call;
        }
        let placed = match self.place(c) {
            Ok(p) => p,
            Err(reason) => return Decision::Unplaceable(reason),
        };
        let Some(window) = &self.window else {
            return Decision::Call;
        };
        if window.allows_all(now, &placed.zones) {
            return Decision::Call;
        }
        let local: Vec<String> = placed
            .zones
            .iter()
            .zip(&placed.names)
            .map(|(tz, name)| {
                format!(
                    "{} in {name}",
                    now.to_zoned_datetime(tz.clone()).strftime("%a %H:%M")
                )
            })
            .collect();
        let Some(opens) = window.next_opening_all(now, &placed.zones) else {
            // Not a wait but never: no hour of the window is inside it in every one of the zones (Alaska and
            // Maine for a half-hour window), or dates off cover the next five weeks.
            return Decision::Unplaceable(format!(
                "the calling window ({}) is not open at once in all of its zones ({}) in the next five weeks, so no hour is safe; give the row its own zone (--timezone-column) or widen the window",
                window.describe(),
                placed.names.join(", ")
            ));
        };
        let detail = format!(
            "outside the calling window ({}, ending {} before its close) at {} local time",
            window.describe(),
            humanize(window.margin),
            local.join(", ")
        );
        Decision::OutsideWindow {
            detail,
            opens: Some(opens),
        }
    }

    /// The last moment a call request for a contact [`Rules::decide`] just allowed may still leave: its
    /// window's close less the margin, the earliest over its zones. `None`: no window. A request held up
    /// after the decision (a journal that is slow to write, a full disk, the cap ledger busy) is not sent
    /// after it.
    pub fn send_by(&mut self, c: Candidate<'_>, now: Timestamp) -> Option<Timestamp> {
        self.window.as_ref()?;
        let placed = self.place(c).ok()?;
        let window = self.window.as_ref()?;
        placed
            .zones
            .iter()
            .filter_map(|tz| window.last_request(now, tz))
            .min()
            // A zone with no close today (it cannot be: the window allowed the call): send nothing.
            .or(Some(now))
    }

    /// The cap per number at `now` ([`Ledger::check`]); none without a ledger.
    pub fn cap(
        &self,
        e164: &str,
        campaign: &str,
        (row, attempt): (u64, u32),
        claim: bool,
        now: jiff::Timestamp,
    ) -> Result<Option<String>> {
        match &self.ledger {
            Some(l) => l.check(e164, campaign, (row, attempt), claim, now.as_millisecond()),
            None => Ok(None),
        }
    }
}
