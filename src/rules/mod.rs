//! The calling rules, as one pipeline used by both `run` and `validate`: whether a callable contact may be
//! called now, and if not, why.
//!
//! The order is fixed: an opt-out first (a suppressed person is never called, whatever the hour), then the
//! recipient's time zone and calling window. The cap per number is checked last and separately
//! ([`Rules::cap`]), because in a run it is claimed in the same transaction that counts it, just before the
//! call request; a dry run only counts.

pub mod ledger;
pub mod suppress;
pub mod window;

use std::collections::HashMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::contacts::Verdict;
use crate::error::Result;
use crate::types::humanize;
use ledger::Ledger;
use suppress::Suppressed;
use window::Window;

/// Whether a row read from the list becomes a contact to call: its own verdict first, then whether an
/// earlier row has the same number. Decided once, when the list is read (the journal's ingest and the dry run
/// both call this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Callable,
    Invalid(String),
    /// The same E.164 number as the row numbered `first_line`, which keeps it.
    Duplicate {
        first_line: u64,
    },
}

impl Admission {
    pub fn detail(&self) -> Option<String> {
        match self {
            Admission::Callable => None,
            Admission::Invalid(r) => Some(r.clone()),
            Admission::Duplicate { first_line } => Some(format!("same number as row {first_line}")),
        }
    }
}

/// Admits a row: `first_seen` says which earlier row, if any, had this E.164 number.
pub fn admit<E>(
    verdict: &Verdict,
    first_seen: impl FnOnce(&str) -> std::result::Result<Option<u64>, E>,
) -> std::result::Result<Admission, E> {
    match verdict {
        Verdict::Invalid(reason) => Ok(Admission::Invalid(reason.clone())),
        Verdict::Call { e164, .. } => Ok(match first_seen(e164)? {
            Some(first_line) => Admission::Duplicate { first_line },
            None => Admission::Callable,
        }),
    }
}

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
}

/// The part of a contact the rules look at.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub e164: &'a str,
    /// The contact's own zone, from the list.
    pub tz: Option<&'a str>,
}

/// The campaign's rules, with what they need loaded.
pub struct Rules {
    pub window: Option<Window>,
    /// The campaign's zone, for contacts without their own.
    pub timezone: TimeZone,
    pub timezone_name: String,
    pub suppressed: Suppressed,
    pub ledger: Option<Ledger>,
    /// Zones looked up so far (a list names a few zones many times).
    zones: HashMap<String, Option<TimeZone>>,
}

impl Rules {
    pub fn new(
        window: Option<Window>,
        timezone: TimeZone,
        timezone_name: String,
        suppressed: Suppressed,
        ledger: Option<Ledger>,
    ) -> Rules {
        Rules {
            window,
            timezone,
            timezone_name,
            suppressed,
            ledger,
            zones: HashMap::new(),
        }
    }

    /// The zone a contact's window is judged in, and its name; `Err` when its own zone cannot be loaded.
    pub fn zone(&mut self, c: Candidate<'_>) -> std::result::Result<(TimeZone, String), String> {
        let Some(name) = c.tz else {
            return Ok((self.timezone.clone(), self.timezone_name.clone()));
        };
        let tz = self
            .zones
            .entry(name.to_string())
            .or_insert_with(|| window::zone(name).ok())
            .clone();
        // Validated when the list was read. A zone the tz database no longer has must not fall back to the
        // campaign's: that could be hours off.
        tz.map(|t| (t, name.to_string())).ok_or_else(|| {
            format!("its time zone {name:?} is not in this build's time zone database, so no hour is known to be safe")
        })
    }

    /// Suppression, then the window in the recipient's zone.
    pub fn decide(&mut self, c: Candidate<'_>, now: Timestamp) -> Decision {
        if let Some(list) = self.suppressed.get(c.e164) {
            return Decision::Suppressed(list.clone());
        }
        if self.window.is_none() {
            return Decision::Call;
        }
        let (tz, name) = match self.zone(c) {
            Ok(z) => z,
            Err(reason) => return Decision::Unplaceable(reason),
        };
        let Some(window) = &self.window else {
            return Decision::Call;
        };
        if window.allows(now, &tz) {
            return Decision::Call;
        }
        let local = now.to_zoned_datetime(tz.clone());
        let detail = format!(
            "outside the calling window ({}, ending {} before its close) at {} local time in {name}",
            window.describe(),
            humanize(window.margin),
            local.strftime("%a %H:%M")
        );
        Decision::OutsideWindow {
            detail,
            opens: window.next_opening(now, &tz),
        }
    }

    /// The cap per number ([`Ledger::check`]); none without a ledger.
    pub fn cap(&self, e164: &str, campaign: &str, row: u64, claim: bool) -> Result<Option<String>> {
        match &self.ledger {
            Some(l) => l.check(e164, campaign, row, claim),
            None => Ok(None),
        }
    }
}
