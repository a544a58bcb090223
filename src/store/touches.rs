//! Reminder touches in the journal: a rolling export taken as a new version on every run, each appointment's
//! touches as contacts of their own, and the step that, at the start of a run, moves each touch along the
//! life cycle ([`super::contact`]) by the clock: due, ended before it could be made, or no longer wanted.
//!
//! Layout (its own tables beside `contacts`, created on first use):
//! - `listing`: the latest export, row by row, in its order: what the results show (a row is `invalid` here
//!   with its reason, or skipped by `--skip-if`).
//! - `appointments`: every key ever listed, with its latest row and appointment time; `listed = 0` once it
//!   left the export (its results row then follows the export's rows).
//! - `touches`: one per reminder call an appointment is to get, each the `contacts` row that carries it,
//!   with the appointment time it was computed from, its due time and its end.
//!
//! A touch is a contact like any other from `pending` on: its intent is durable before its request, its
//! answer is never re-requested, the cap and the window apply. Every state change here is one of the life
//! cycle's events, applied by the journal's compare-and-set.

use std::collections::{HashMap, HashSet};

use csv::ByteRecord;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::contact::{Event, State};
use super::journal::{NewContact, apply_event, decode_record, encode_record};
use crate::contacts::Verdict;
use crate::error::{Error, Result};
use crate::rules::touches::Touch;
use crate::settings::reminders::Reminders;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS listing (
    line    INTEGER PRIMARY KEY,     -- 1-based data row of the latest export
    key     TEXT,                    -- NULL: the row has no usable key
    record  BLOB NOT NULL,
    invalid TEXT,                    -- why the row cannot be reminded
    skipped TEXT                     -- the --skip-if that withdrew it
);
CREATE TABLE IF NOT EXISTS appointments (
    key       TEXT PRIMARY KEY,
    seq       INTEGER NOT NULL,      -- order of first appearance, for withdrawn keys in the results
    listed    INTEGER NOT NULL,      -- 1 while the latest export lists it
    record    BLOB NOT NULL,         -- its latest row
    appt_ms   INTEGER,               -- its appointment, as last read; NULL without --appointment-column
    withdrawn TEXT                   -- why its touches ended, while it is withdrawn
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS touches (
    row     INTEGER PRIMARY KEY,     -- the contacts row that carries this touch
    key     TEXT NOT NULL,
    appt_ms INTEGER,                 -- the appointment time it was computed from
    touch   INTEGER NOT NULL,        -- 0 for the longest lead
    due_ms  INTEGER NOT NULL,
    end_ms  INTEGER NOT NULL         -- not made at or after this
);
CREATE INDEX IF NOT EXISTS touches_key ON touches(key, row);
CREATE TABLE IF NOT EXISTS reach (
    key           TEXT PRIMARY KEY,  -- a callable key of the latest export
    e164          TEXT NOT NULL,
    dialed_number TEXT NOT NULL,
    tz            TEXT,
    tz_source     TEXT,
    record        BLOB NOT NULL,
    note          TEXT,
    line          INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The meta key holding the clinic's zone name, for showing appointment times.
pub const ZONE_META: &str = "appointment_timezone";

/// The digest a rolling campaign's journal is bound to instead of its list's: every run brings a new version
/// of the list, and the campaign is the same as long as rows are matched by the same key column.
pub fn binding_digest(key_column: &str) -> String {
    format!("rolling export keyed by column {key_column}")
}

/// The meta key holding the plan settings the campaign's touches were computed by ([`plan`]).
pub const PLAN_META: &str = "reminder_plan";

/// The settings that give appointments and touches their meaning, as the journal records them: `key=value`
/// lines. Touches are matched to their appointment by position and were timed by these; under other ones a
/// touch already made would be taken for another (called again, or too close to the appointment).
/// `--stop-on` and `--skip-if` are not among them: a change of those only removes calls.
pub fn plan(settings: &Reminders) -> String {
    let dur = |d: jiff::SignedDuration| crate::types::Dur(d.unsigned_abs()).to_string();
    let none = || "(none)".to_string();
    let a = settings.appointments.as_ref();
    [
        ("key-column", settings.key_column.clone()),
        (
            "appointment-column",
            a.map_or_else(none, |a| a.column.clone()),
        ),
        (
            "appointment-format",
            a.and_then(|a| a.format.clone())
                .unwrap_or_else(|| "(the common formats)".into()),
        ),
        (
            "appointment-timezone",
            a.map_or_else(none, |a| a.timezone_name.clone()),
        ),
        (
            "remind-before",
            a.map_or_else(none, |a| {
                a.timing
                    .leads
                    .iter()
                    .map(|l| dur(*l))
                    .collect::<Vec<_>>()
                    .join(",")
            }),
        ),
        (
            "min-notice",
            a.map_or_else(none, |a| dur(a.timing.min_notice)),
        ),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={v}"))
    .collect::<Vec<_>>()
    .join("\n")
}

/// Refuses a run whose plan settings differ from those the journal recorded. A journal that recorded none
/// (an older release) takes this run's.
pub fn check_plan(
    conn: &Connection,
    settings: &Reminders,
    state_dir: &std::path::Path,
) -> Result<()> {
    let stored: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [PLAN_META], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(stored) = stored else { return Ok(()) };
    // Nothing was timed by the stored plan while no touch exists (no appointment time could be read, as under
    // a wrong --appointment-format): it binds nothing yet, and the operator's fix must not be refused.
    let timed: bool = conn.query_row("SELECT EXISTS (SELECT 1 FROM touches)", [], |r| r.get(0))?;
    if !timed {
        return Ok(());
    }
    let now = plan(settings);
    let parse = |t: &str| -> Vec<(String, String)> {
        t.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let was = parse(&stored);
    for (k, v) in parse(&now) {
        if let Some((_, w)) = was.iter().find(|(wk, _)| *wk == k)
            && *w != v
        {
            return Err(Error::Config(format!(
                "the campaign in {} plans its reminders with {k} {w}, and this run gives {v}: its touches were computed and made by the first, so it cannot change under the campaign. Give --{k} {w} again, or start a new campaign by moving the results file and its .state directory away (the people already reminded may then be reminded again)",
                state_dir.display()
            )));
        }
    }
    Ok(())
}

/// Whether the journal on `conn` holds a rolling export.
pub fn is_rolling(conn: &Connection) -> bool {
    conn.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'listing'",
        [],
        |r| r.get(0),
    )
    .unwrap_or(false)
}

/// One row of an export version, judged.
#[derive(Debug)]
pub struct Listed {
    pub line: u64,
    /// Trimmed; empty when the cell was.
    pub key: String,
    pub record: Vec<u8>,
    pub verdict: Verdict,
    pub tz: Option<(String, crate::zones::Source)>,
    pub note: Option<String>,
    /// The appointment (`None` without an appointment column), or why its cell cannot be read.
    pub appointment: std::result::Result<Option<Timestamp>, String>,
    /// The `--skip-if` it matches.
    pub skipped: Option<String>,
}

fn column(headers: &ByteRecord, name: &str, what: &str) -> Result<usize> {
    headers
        .iter()
        .position(|h| {
            String::from_utf8_lossy(h)
                .trim()
                .trim_start_matches('\u{feff}')
                .eq_ignore_ascii_case(name.trim())
        })
        .ok_or_else(|| Error::Data(format!("the contact list has no column {name:?} ({what})")))
}

/// Reads an export's judged rows for [`take_version`]: each row's key, appointment and `--skip-if`.
pub fn listed_rows(
    rows: impl Iterator<Item = Result<NewContact>>,
    headers: &ByteRecord,
    settings: &Reminders,
) -> Result<Vec<Listed>> {
    let key_at = column(headers, &settings.key_column, "--key-column")?;
    let appt_at = match &settings.appointments {
        Some(a) => Some((column(headers, &a.column, "--appointment-column")?, a)),
        None => None,
    };
    let skips = settings
        .skip_if
        .iter()
        .map(|(c, v)| {
            Ok((
                column(headers, c, "--skip-if")?,
                format!("{c}={v}"),
                v.clone(),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut out = Vec::new();
    for c in rows {
        let c = c?;
        let rec = decode_record(&c.record).unwrap_or_default();
        let cell = |i: usize| {
            String::from_utf8_lossy(rec.get(i).unwrap_or(b""))
                .trim()
                .to_string()
        };
        let appointment = match appt_at {
            None => Ok(None),
            Some((i, a)) => {
                crate::rules::touches::read_appointment(&cell(i), a.format.as_deref(), &a.timezone)
                    .map(Some)
            }
        };
        let skipped = skips
            .iter()
            .find(|(i, _, v)| cell(*i) == *v)
            .map(|(_, s, _)| s.clone());
        out.push(Listed {
            line: c.line,
            key: cell(key_at),
            record: c.record,
            verdict: c.verdict,
            tz: c.tz,
            note: c.note,
            appointment,
            skipped,
        });
    }
    Ok(out)
}

/// What taking a version did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Taken {
    pub new_keys: u64,
    pub rescheduled: u64,
    pub withdrawn: u64,
    pub invalid: u64,
    /// Touches that fell due, ended unmade, or were stopped by an answer, at the start of this run.
    pub due: u64,
    pub lapsed: u64,
    pub stopped: u64,
    /// Rows of this version, and those whose appointment cell could not be read (with the first reason).
    pub rows: u64,
    pub unreadable_times: u64,
    pub first_unreadable: Option<String>,
}

impl Taken {
    /// Why this version is no reminder list at all: no row's appointment could be read (a wrong
    /// `--appointment-format` or column). Each row stays `invalid` with its reason; the run says so instead
    /// of ending green with nobody reminded.
    pub fn no_time_read(&self) -> Option<String> {
        (self.rows > 0 && self.unreadable_times == self.rows).then(|| {
            format!(
                "no appointment time could be read in any of the export's {} rows ({}); check --appointment-column and --appointment-format",
                self.rows,
                self.first_unreadable.as_deref().unwrap_or("unreadable")
            )
        })
    }
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn clinic_time(settings: &Reminders, at_ms: i64) -> String {
    let Ok(t) = Timestamp::from_millisecond(at_ms) else {
        return at_ms.to_string();
    };
    match &settings.appointments {
        Some(a) => t
            .to_zoned_datetime(a.timezone.clone())
            .strftime("%Y-%m-%d %H:%M %Z")
            .to_string(),
        None => t.to_string(),
    }
}

/// Applies `event` to every touch of `key` (optionally only those of appointment time `appt`) that is still
/// to be made; a touch waiting for a recall keeps its last call's outcome instead.
fn end_open_touches(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    event: &Event,
    now_ms: i64,
) -> Result<u64> {
    let open: Vec<(i64, Option<String>)> = tx
        .prepare_cached(
            "SELECT c.row, c.last_outcome FROM touches t JOIN contacts c ON c.row = t.row
             WHERE t.key = ?1 AND c.state IN ('not_due', 'pending') ORDER BY c.row",
        )?
        .query_map([key], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let n = open.len() as u64;
    for (row, last) in open {
        let ev = event
            .clone()
            .refusing(last.as_deref().and_then(State::parse));
        apply(tx, row as u64, &ev, now_ms)?;
    }
    Ok(n)
}

/// As [`end_open_touches`], for the touches of `key` computed from another appointment time than `appt`.
fn end_touches_not_at(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    appt: Option<i64>,
    event: &Event,
    now_ms: i64,
) -> Result<u64> {
    let open: Vec<(i64, Option<String>)> = tx
        .prepare_cached(
            "SELECT c.row, c.last_outcome FROM touches t JOIN contacts c ON c.row = t.row
             WHERE t.key = ?1 AND t.appt_ms IS NOT ?2 AND c.state IN ('not_due', 'pending') ORDER BY c.row",
        )?
        .query_map(params![key, appt], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let n = open.len() as u64;
    for (row, last) in open {
        let ev = event
            .clone()
            .refusing(last.as_deref().and_then(State::parse));
        apply(tx, row as u64, &ev, now_ms)?;
    }
    Ok(n)
}

fn apply(tx: &rusqlite::Transaction<'_>, row: u64, event: &Event, now_ms: i64) -> Result<()> {
    match apply_event(tx, row, event, now_ms)? {
        Ok(_) => Ok(()),
        Err(e) => Err(Error::Internal(e.to_string())),
    }
}

/// Takes `rows` as the campaign's latest export, then moves every touch along by the clock at `now_ms`
/// ([`advance`]). One transaction: a crash leaves the previous version whole.
pub fn take_version(
    conn: &Connection,
    rows: Vec<Listed>,
    settings: &Reminders,
    now_ms: i64,
) -> Result<Taken> {
    conn.execute_batch(SCHEMA)?;
    let tx = conn.unchecked_transaction()?;
    let mut taken = Taken::default();
    if let Some(a) = &settings.appointments {
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![ZONE_META, a.timezone_name],
        )?;
    }
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
        params![PLAN_META, plan(settings)],
    )?;
    tx.execute("DELETE FROM listing", [])?;
    tx.execute("DELETE FROM reach", [])?;
    tx.execute("UPDATE appointments SET listed = 0", [])?;
    let now = Timestamp::from_millisecond(now_ms).unwrap_or(Timestamp::MIN);
    let mut first_line: HashMap<String, u64> = HashMap::new();
    let mut listed_keys: HashSet<String> = HashSet::new();
    for r in rows {
        taken.rows += 1;
        if let Err(why) = &r.appointment {
            taken.unreadable_times += 1;
            taken.first_unreadable.get_or_insert_with(|| why.clone());
        }
        let invalid = if r.key.is_empty() {
            Some(format!("no key: its {} cell is empty", settings.key_column))
        } else if let Some(first) = first_line.get(&r.key) {
            Some(format!(
                "the same key {} as row {first}: an appointment is listed once",
                r.key
            ))
        } else {
            match (&r.verdict, &r.appointment) {
                (Verdict::Invalid(why), _) => Some(why.clone()),
                (_, Err(why)) => Some(why.clone()),
                _ => None,
            }
        };
        first_line.entry(r.key.clone()).or_insert(r.line);
        tx.execute(
            "INSERT INTO listing (line, key, record, invalid, skipped) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                r.line as i64,
                (!r.key.is_empty()).then_some(r.key.as_str()),
                r.record,
                invalid,
                r.skipped
            ],
        )?;
        if r.key.is_empty() || !listed_keys.insert(r.key.clone()) {
            // No key, or a repeated one: this row says nothing about the appointment of that key.
            if !r.key.is_empty() {
                taken.invalid += 1;
            }
            continue;
        }
        let known: Option<Option<i64>> = tx
            .query_row(
                "SELECT appt_ms FROM appointments WHERE key = ?1",
                [&r.key],
                |x| x.get(0),
            )
            .optional()?;
        let appt = match &r.appointment {
            Ok(a) => a.map(ms),
            Err(_) => None,
        };
        tx.execute(
            "INSERT INTO appointments (key, seq, listed, record, appt_ms, withdrawn)
             VALUES (?1, (SELECT COALESCE(MAX(seq) + 1, 0) FROM appointments), 1, ?2, ?3, NULL)
             ON CONFLICT (key) DO UPDATE SET listed = 1, record = excluded.record,
               appt_ms = CASE WHEN ?4 THEN appointments.appt_ms ELSE excluded.appt_ms END",
            params![r.key, r.record, appt, invalid.is_some()],
        )?;
        if let Some(why) = &invalid {
            taken.invalid += 1;
            // No call at a time nobody can read, nor to a number that is not one.
            taken.withdrawn += end_open_touches(
                &tx,
                &r.key,
                &Event::Withdraw {
                    detail: format!("withdrawn: the row is invalid now ({why})"),
                },
                now_ms,
            )?
            .min(1);
            continue;
        }
        if let Some(skip) = &r.skipped {
            let why = format!("withdrawn: {skip}");
            tx.execute(
                "UPDATE appointments SET withdrawn = ?2 WHERE key = ?1",
                params![r.key, why],
            )?;
            taken.withdrawn +=
                end_open_touches(&tx, &r.key, &Event::Withdraw { detail: why }, now_ms)?.min(1);
            continue;
        }
        tx.execute(
            "UPDATE appointments SET withdrawn = NULL WHERE key = ?1",
            [&r.key],
        )?;
        let (e164, dial) = match &r.verdict {
            Verdict::Call { e164, dial, .. } => (e164.clone(), dial.clone()),
            Verdict::Invalid(_) => continue,
        };
        // A key whose appointment moved: the old time's touches end, the new time's are made below. A touch
        // made for the old time does not count for the new one.
        let moved = end_touches_not_at(
            &tx,
            &r.key,
            appt,
            &Event::Withdraw {
                detail: format!(
                    "withdrawn: the appointment moved to {}",
                    appt.map_or_else(String::new, |a| clinic_time(settings, a))
                ),
            },
            now_ms,
        )?;
        match known {
            None => taken.new_keys += 1,
            Some(prior) if moved > 0 || (prior.is_some() && prior != appt) => {
                taken.rescheduled += 1;
            }
            Some(_) => {}
        }
        {
            let planned: Vec<Touch> = match (&settings.appointments, r.appointment) {
                (Some(a), Ok(Some(at))) => a.timing.remaining(at, now),
                // A rolling list without appointments: one call, due as soon as the key appears.
                _ => vec![Touch {
                    index: 0,
                    due: now,
                    end: Timestamp::MAX,
                }],
            };
            // A touch of this appointment time that exists (made, skipped, or still to be made) is not made
            // again; one only withdrawn (cancelled, then reinstated; moved away, then back) is planned anew.
            let planned: Vec<Touch> = planned
                .into_iter()
                .filter(|t| {
                    !tx.query_row(
                        "SELECT EXISTS (SELECT 1 FROM touches t JOIN contacts c ON c.row = t.row
                         WHERE t.key = ?1 AND t.appt_ms IS ?2 AND t.touch = ?3
                           AND (c.state != 'withdrawn' OR c.detail LIKE 'stopped:%'))",
                        params![r.key, appt, i64::from(t.index)],
                        |x| x.get::<_, bool>(0),
                    )
                    .unwrap_or(true)
                })
                .collect();
            for t in planned {
                let row: i64 =
                    tx.query_row("SELECT COALESCE(MAX(row) + 1, 0) FROM contacts", [], |x| {
                        x.get(0)
                    })?;
                tx.execute(
                    "INSERT INTO contacts (row, line, e164, dialed_number, state, tz, record, note, tz_source)
                     VALUES (?1, ?2, ?3, ?4, 'not_due', ?5, ?6, ?7, ?8)",
                    params![
                        row,
                        r.line as i64,
                        e164,
                        dial,
                        r.tz.as_ref().map(|(z, _)| z.as_str()),
                        r.record,
                        r.note,
                        r.tz.as_ref().map(|(_, s)| s.as_str())
                    ],
                )?;
                tx.execute(
                    "INSERT INTO touches (row, key, appt_ms, touch, due_ms, end_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![row, r.key, appt, i64::from(t.index), ms(t.due), ms(t.end)],
                )?;
            }
        }
        // The row as it is now (its number, zone and fields), kept for a recall that follows a call still
        // live at this point ([`recall_as_listed`]); touches still to be made take it at once.
        tx.execute(
            "INSERT OR REPLACE INTO reach (key, e164, dialed_number, tz, tz_source, record, note, line)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                r.key,
                e164,
                dial,
                r.tz.as_ref().map(|(z, _)| z.as_str()),
                r.tz.as_ref().map(|(_, s)| s.as_str()),
                r.record,
                r.note,
                r.line as i64
            ],
        )?;
        tx.execute(
            &format!("{FROM_REACH} WHERE state IN ('not_due', 'pending') AND row IN (SELECT row FROM touches WHERE key = ?1)"),
            [&r.key],
        )?;
    }
    // Keys the export no longer lists.
    let gone: Vec<String> = tx
        .prepare("SELECT key FROM appointments WHERE listed = 0 ORDER BY seq")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for key in gone {
        let why = "withdrawn: no longer in the export".to_string();
        tx.execute(
            "UPDATE appointments SET withdrawn = COALESCE(withdrawn, ?2) WHERE key = ?1",
            params![key, why],
        )?;
        taken.withdrawn +=
            end_open_touches(&tx, &key, &Event::Withdraw { detail: why }, now_ms)?.min(1);
    }
    advance(&tx, settings, now_ms, &mut taken)?;
    tx.commit()?;
    Ok(taken)
}

/// Sets a touch contact's number, zone and fields to its key's row in the latest export (`?1`: the key).
const FROM_REACH: &str =
    "UPDATE contacts SET (e164, dialed_number, tz, tz_source, record, note, line) =
     (SELECT e164, dialed_number, tz, tz_source, record, note, line FROM reach WHERE key = ?1)";

/// A touch's call has just ended in a recall (`outcome`: how it ended). The recall is for the touch as the
/// export in force lists it: a call an earlier run left live may have outlived the version taken since,
/// which moved only the touches still to be made. If that version withdrew the appointment (unlisted,
/// `--skip-if`, invalid) or moved it, the recall is not placed and the call's outcome stands; otherwise the
/// recall goes to the number and row the version lists. Returns whether the recall was not placed.
pub(crate) fn recall_as_listed(
    tx: &rusqlite::Transaction<'_>,
    row: u64,
    outcome: State,
    at_ms: i64,
) -> rusqlite::Result<bool> {
    if !is_rolling(tx) {
        return Ok(false);
    }
    let Some((key, unwanted)) = recall_unwanted(tx, row)? else {
        return Ok(false);
    };
    if let Some(detail) = unwanted {
        let ev = Event::Withdraw { detail }.refusing(Some(outcome));
        return Ok(apply_event(tx, row, &ev, at_ms)?.is_ok());
    }
    tx.execute(
        &format!(
            "{FROM_REACH} WHERE row = ?2 AND state = 'pending' AND EXISTS (SELECT 1 FROM reach WHERE key = ?1)"
        ),
        params![key, row as i64],
    )?;
    Ok(false)
}

/// The key of touch `row` and why the latest export no longer wants it called (`None` inside: it does);
/// `None`: `row` is no touch.
fn recall_unwanted(
    tx: &rusqlite::Transaction<'_>,
    row: u64,
) -> rusqlite::Result<Option<(String, Option<String>)>> {
    type Found = (String, bool, bool, Option<String>, Option<String>);
    // The first row of a key is the one that stands; a repeat of it is invalid on its own account.
    let found: Option<Found> = tx
        .query_row(
            "SELECT t.key, l.line IS NULL, t.appt_ms IS NOT a.appt_ms, l.invalid, l.skipped
             FROM touches t JOIN appointments a ON a.key = t.key
             LEFT JOIN listing l ON l.line = (SELECT MIN(line) FROM listing WHERE key = t.key)
             WHERE t.row = ?1",
            [row as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    Ok(found.map(|(key, gone, moved, invalid, skipped)| {
        let why = if gone {
            Some("withdrawn: no longer in the export".to_string())
        } else if let Some(why) = invalid {
            Some(format!("withdrawn: the row is invalid now ({why})"))
        } else if let Some(skip) = skipped {
            Some(format!("withdrawn: {skip}"))
        } else {
            moved.then(|| "withdrawn: the appointment moved".to_string())
        };
        (key, why)
    }))
}

/// Moves every touch along by the clock at `now_ms`: one whose end has passed is skipped (a recall it waited
/// for is not placed), a made call with a stop answer ends its appointment's other touches, and a touch
/// whose span holds `now` falls due. Due means `due <= now < end`: never equality, so a late run finds it.
fn advance(
    tx: &rusqlite::Transaction<'_>,
    settings: &Reminders,
    now_ms: i64,
    taken: &mut Taken,
) -> Result<Vec<u64>> {
    end_unmakeable(tx, now_ms, taken)?;
    taken.stopped += stop_answered(tx, settings, now_ms)?;
    // One touch of an appointment at a time: none falls due while another of its calls is in flight.
    let due: Vec<i64> = tx
        .prepare(
            "SELECT t.row FROM touches t JOIN contacts c ON c.row = t.row
             WHERE c.state = 'not_due' AND t.due_ms <= ?1 AND ?1 < t.end_ms
               AND NOT EXISTS (SELECT 1 FROM touches o JOIN contacts oc ON oc.row = o.row
                               WHERE o.key = t.key AND oc.state IN ('intent', 'dialed'))
             ORDER BY t.row",
        )?
        .query_map([now_ms], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for &row in &due {
        apply(tx, row as u64, &Event::Due, now_ms)?;
        taken.due += 1;
    }
    Ok(due.into_iter().map(|r| r as u64).collect())
}

/// During a run, once a call an earlier run left live has ended: moves the touches along by the clock at
/// `now_ms` as a run's start does ([`advance`]). A touch held back only because that call was in flight (its
/// appointment moved meanwhile) falls due now, in this run, instead of being left `not_due` past its due
/// time. Returns the touches that fell due.
pub fn advance_in_run(conn: &Connection, settings: &Reminders, now_ms: i64) -> Result<Vec<u64>> {
    if !is_rolling(conn) {
        return Ok(Vec::new());
    }
    let tx = conn.unchecked_transaction()?;
    let due = advance(&tx, settings, now_ms, &mut Taken::default())?;
    tx.commit()?;
    Ok(due)
}

/// Ends the touches that can no longer be made: their end has passed, or the recall they wait for falls due
/// only at or after their end (a recall within a touch is never placed past its end). Such a touch waiting
/// for a recall keeps its last call's outcome; one never called is `too_late`.
fn end_unmakeable(tx: &rusqlite::Transaction<'_>, now_ms: i64, taken: &mut Taken) -> Result<()> {
    let ended: Vec<(i64, Option<String>, bool)> = tx
        .prepare(
            "SELECT c.row, c.last_outcome, t.end_ms <= ?1 FROM touches t JOIN contacts c ON c.row = t.row
             WHERE c.state IN ('not_due', 'pending')
               AND (t.end_ms <= ?1 OR (c.state = 'pending' AND c.last_outcome IS NOT NULL AND c.recall_at >= t.end_ms))
             ORDER BY c.row",
        )?
        .query_map([now_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (row, last, ended) in ended {
        let detail = if ended {
            "the touch ended before it could be made"
        } else {
            "the touch ends before its recall would be due"
        };
        let ev = Event::Lapse {
            detail: detail.into(),
        }
        .refusing(last.as_deref().and_then(State::parse));
        apply(tx, row as u64, &ev, now_ms)?;
        taken.lapsed += 1;
    }
    Ok(())
}

/// Ends the remaining touches of every appointment whose made call (as it now stands) gave a stop answer.
fn stop_answered(tx: &rusqlite::Transaction<'_>, settings: &Reminders, now_ms: i64) -> Result<u64> {
    let mut stopped = 0;
    if !settings.stop_on.is_empty() {
        // A stop answer on any made touch of the appointment as it now stands.
        let answered: Vec<(String, String)> = tx
            .prepare(
                "SELECT t.key, COALESCE(c.responses, '') FROM touches t JOIN contacts c ON c.row = t.row
                 JOIN appointments a ON a.key = t.key AND a.appt_ms IS t.appt_ms
                 WHERE c.state = 'made' OR (c.state = 'pending' AND c.last_outcome = 'made')
                 UNION ALL
                 SELECT t.key, COALESCE(k.responses, '') FROM touches t JOIN calls k ON k.row = t.row
                 JOIN appointments a ON a.key = t.key AND a.appt_ms IS t.appt_ms
                 WHERE k.outcome = 'made'",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut done: HashSet<String> = HashSet::new();
        for (key, responses) in answered {
            if done.contains(&key) {
                continue;
            }
            if let Some(answer) = settings.stop_on.found_in(&responses) {
                done.insert(key.clone());
                stopped += end_open_touches(
                    tx,
                    &key,
                    &Event::Withdraw {
                        detail: format!("stopped: answered {answer}"),
                    },
                    now_ms,
                )?;
            }
        }
    }
    Ok(stopped)
}

/// After a run: the stop answers it heard end their appointments' remaining touches at once, so the results
/// (and the summary) do not show a next reminder that will never be made.
pub fn after_run(conn: &Connection, settings: &Reminders, now_ms: i64) -> Result<u64> {
    if !is_rolling(conn) {
        return Ok(0);
    }
    let tx = conn.unchecked_transaction()?;
    let n = stop_answered(&tx, settings, now_ms)?;
    let mut taken = Taken::default();
    end_unmakeable(&tx, now_ms, &mut taken)?;
    tx.commit()?;
    Ok(n + taken.lapsed)
}

/// The end of every touch that may be called in this run: no call request leaves at or after it.
///
/// `min_notice_ms`: this run's `--min-notice`. Each end is also held to its appointment less it, a last guard
/// whatever the journal recorded: no request leaves closer to the appointment than the run allows.
pub fn open_ends(conn: &Connection, min_notice_ms: Option<i64>) -> Result<HashMap<u64, i64>> {
    if !is_rolling(conn) {
        return Ok(HashMap::new());
    }
    let mut st = conn.prepare(
        "SELECT t.row, t.end_ms, t.appt_ms FROM touches t JOIN contacts c ON c.row = t.row WHERE c.state IN ('pending', 'intent', 'dialed')",
    )?;
    let rows = st.query_map([], |r| {
        let (row, end, appt): (i64, i64, Option<i64>) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let end = match (appt, min_notice_ms) {
            (Some(a), Some(n)) => end.min(a.saturating_sub(n)),
            _ => end,
        };
        Ok((row as u64, end))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Stored header row check: a version whose columns differ would put its cells under the wrong headers.
pub fn check_headers(conn: &Connection, headers: &ByteRecord) -> Result<()> {
    let stored: Option<Vec<u8>> = conn
        .query_row("SELECT value FROM meta WHERE key = 'headers'", [], |r| {
            r.get(0)
        })
        .optional()?;
    match stored {
        Some(s) if s != encode_record(headers) => Err(Error::Data(format!(
            "the export's columns changed since the campaign started (now: {}); the results keep one header row, so start a new campaign (another --output) for the new layout",
            headers
                .iter()
                .map(|h| String::from_utf8_lossy(h).into_owned())
                .collect::<Vec<_>>()
                .join(",")
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
