//! The results of a rolling export: one row per key of the latest export, in its order, then the keys it no
//! longer lists; each appointment's touches folded into its row.
//!
//! A row shows the outcome of its appointment's latest call (`history` lists every call, across touches and
//! earlier appointment times), or, with no call yet for its appointment as it now stands, `not_due` (its next
//! touch is to come), `not_attempted` (a touch is due and waits for its window), `too_late` (no touch could be
//! made before the appointment came within its min-notice or passed) or `withdrawn`. Three columns follow the
//! others: `appointment_at` (RFC 3339 with the clinic's offset), `reminders` (touches made of planned) and
//! `next_reminder_at`.

use csv::ByteRecord;
use rusqlite::{Connection, OptionalExtension};

use super::results::{View, Written, clean, neutralise, rfc3339};
use crate::error::{Error, Result};
use crate::gateway::protocol::Responses;
use crate::store::State;
use crate::store::journal::{self, decode_record};

/// The columns a rolling export's results add after all the others.
pub const COLUMNS: [&str; 3] = ["appointment_at", "reminders", "next_reminder_at"];

use crate::store::touches::ZONE_META;

/// One touch of an appointment, with its contact's state.
struct TouchRow {
    row: i64,
    appt_ms: Option<i64>,
    touch: i64,
    due_ms: i64,
    state: State,
    req_id: Option<String>,
    responses: Option<String>,
    attempts: Option<i64>,
    detail: Option<String>,
    dialed_number: Option<String>,
    dialed_at: Option<i64>,
    finished_at: Option<i64>,
    intent_at: Option<i64>,
    tz: Option<String>,
    tz_source: Option<String>,
    last_outcome: Option<State>,
    recall_at: Option<i64>,
    gateway: Option<String>,
}

fn touches_of(conn: &Connection, key: &str) -> Result<Vec<TouchRow>> {
    let mut st = conn.prepare_cached(
        // As the fixed list's view: a touch waiting for its recall shows its last call's id.
        "SELECT t.row, t.appt_ms, t.due_ms, c.state,
                COALESCE(c.req_id, CASE WHEN c.last_outcome IS NOT NULL THEN
                    (SELECT k.req_id FROM calls k WHERE k.row = c.row ORDER BY k.attempt DESC LIMIT 1) END),
                c.responses, c.attempts, c.detail, c.dialed_number,
                c.dialed_at, c.finished_at, c.intent_at, c.tz, c.tz_source, c.last_outcome, c.recall_at, c.gateway,
                t.touch
         FROM touches t JOIN contacts c ON c.row = t.row WHERE t.key = ?1 ORDER BY t.row",
    )?;
    let rows = st.query_map([key], |r| {
        let state: String = r.get(3)?;
        Ok(TouchRow {
            row: r.get(0)?,
            appt_ms: r.get(1)?,
            due_ms: r.get(2)?,
            state: State::parse(&state).unwrap_or(State::Error),
            req_id: r.get(4)?,
            responses: r.get(5)?,
            attempts: r.get(6)?,
            detail: r.get(7)?,
            dialed_number: r.get(8)?,
            dialed_at: r.get(9)?,
            finished_at: r.get(10)?,
            intent_at: r.get(11)?,
            tz: r.get(12)?,
            tz_source: r.get(13)?,
            last_outcome: r
                .get::<_, Option<String>>(14)?
                .as_deref()
                .and_then(State::parse),
            recall_at: r.get(15)?,
            gateway: r.get(16)?,
            touch: r.get(17)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every call of these touches, as `outcome time`, oldest first.
fn history_of(conn: &Connection, rows: &[i64]) -> Result<Vec<(i64, String)>> {
    let mut st = conn.prepare_cached(
        "SELECT outcome, COALESCE(finished_at, dialed_at, intent_at) FROM calls WHERE row = ?1 ORDER BY attempt",
    )?;
    let mut out = Vec::new();
    for row in rows {
        let calls = st.query_map([row], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
        })?;
        for c in calls {
            let (outcome, at) = c?;
            out.push((at.unwrap_or(0), format!("{outcome} {}", rfc3339(at))));
        }
    }
    out.sort_by_key(|(at, _)| *at);
    Ok(out)
}

fn local(zone: Option<&jiff::tz::TimeZone>, ms: Option<i64>) -> String {
    let Some(t) = ms.and_then(|m| jiff::Timestamp::from_millisecond(m).ok()) else {
        return String::new();
    };
    match zone {
        Some(z) => t
            .to_zoned_datetime(z.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        None => rfc3339(ms),
    }
}

/// What one results row says, before it is laid out.
#[derive(Default)]
struct Shown<'a> {
    status: String,
    touch: Option<&'a TouchRow>,
    detail: Option<String>,
    appt_ms: Option<i64>,
    reminders: String,
    next_ms: Option<i64>,
    history: Vec<String>,
    calls: usize,
}

/// Folds an appointment's touches into what its row shows. `withdrawn`: why the key is withdrawn, if it is.
fn fold<'a>(
    conn: &Connection,
    touches: &'a [TouchRow],
    appt_ms: Option<i64>,
    withdrawn: Option<String>,
    written: &mut Written,
) -> Result<Shown<'a>> {
    let rows: Vec<i64> = touches.iter().map(|t| t.row).collect();
    let history: Vec<String> = history_of(conn, &rows)?
        .into_iter()
        .map(|(_, h)| h)
        .collect();
    let in_flight = touches
        .iter()
        .filter(|t| matches!(t.state, State::Intent | State::Dialed))
        .count();
    let current: Vec<&TouchRow> = touches.iter().filter(|t| t.appt_ms == appt_ms).collect();
    let called = |t: &TouchRow| {
        matches!(t.state, State::Intent | State::Dialed)
            || t.last_outcome.is_some()
            || (t.state.is_final()
                && !matches!(t.state, State::TooLate | State::Withdrawn)
                && (t.intent_at.is_some() || t.dialed_at.is_some()))
    };
    // Touches by their lead: one withdrawn and planned anew (cancelled, then reinstated) is one touch.
    let planned = current
        .iter()
        .map(|t| t.touch)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let made = current
        .iter()
        .filter(|t| called(t))
        .map(|t| t.touch)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let next_ms = current
        .iter()
        .filter(|t| t.state == State::NotDue)
        .map(|t| t.due_ms)
        .min()
        .filter(|_| withdrawn.is_none());
    if next_ms.is_some() {
        written.touches_waiting +=
            current.iter().filter(|t| t.state == State::NotDue).count() as u64;
        written.next_touch_ms = match (written.next_touch_ms, next_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    // The latest touch of this appointment that was called, or is due, or was refused by a rule; a call in
    // flight on any of its touches (an earlier time's included) shows before a withdrawal.
    // A touch that is due and waits (for its window) says nothing yet: the last call's outcome shows, and
    // the row still counts as work left (a touch due, not a recall: its row shows no `recall_at`).
    let latest = current
        .iter()
        .rev()
        .find(|t| !matches!(t.state, State::NotDue | State::TooLate | State::Withdrawn))
        .copied();
    let acted = match latest {
        Some(t) if t.state == State::Pending && !called(t) && withdrawn.is_none() => {
            match current.iter().rev().find(|c| called(c)).copied() {
                Some(earlier) => {
                    written.touches_due += 1;
                    Some(earlier)
                }
                None => Some(t),
            }
        }
        other => other,
    };
    let flight = touches
        .iter()
        .rev()
        .find(|t| matches!(t.state, State::Intent | State::Dialed));
    let (state, touch, detail) = match (&withdrawn, flight, acted) {
        (Some(_), Some(t), _) => (t.last_outcome.unwrap_or(t.state), Some(t), t.detail.clone()),
        (Some(why), None, _) => (State::Withdrawn, None, Some(why.clone())),
        (None, _, Some(t)) => (t.last_outcome.unwrap_or(t.state), Some(t), t.detail.clone()),
        (None, _, None) if next_ms.is_some() => (State::NotDue, None, None),
        (None, _, None) => {
            let why = current
                .iter()
                .rev()
                .find_map(|t| t.detail.clone())
                .unwrap_or_else(|| {
                    "the appointment was within its min-notice, or had passed, when it was listed"
                        .into()
                });
            let state = if current.iter().any(|t| t.state == State::Withdrawn) {
                State::Withdrawn
            } else {
                State::TooLate
            };
            (state, None, Some(why))
        }
    };
    if let Some(t) = touch
        && t.state == State::Pending
        && t.last_outcome.is_some()
    {
        written.recalls_waiting += 1;
        written.next_recall_ms = match (written.next_recall_ms, t.recall_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    *written.counts.entry(state.result()).or_insert(0) += 1;
    let calls = history.len() + in_flight;
    Ok(Shown {
        status: state.result_name().to_string(),
        touch,
        detail,
        appt_ms,
        reminders: if current.is_empty() {
            String::new()
        } else {
            format!("{made} of {planned}")
        },
        next_ms,
        history,
        calls,
    })
}

/// Writes a rolling export's results into `w`.
pub fn rows_to(
    conn: &Connection,
    file: impl std::io::Write,
    output: &std::path::Path,
    view: &View,
) -> Result<Written> {
    let (headers, delimiter) = journal::layout(conn)?;
    let width = headers.len();
    let out_err = |e: &dyn std::fmt::Display| {
        Error::Output(format!("cannot write results {}: {e}", output.display()))
    };
    let zone: Option<jiff::tz::TimeZone> = conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [ZONE_META], |r| {
            r.get::<_, String>(0)
        })
        .optional()?
        .and_then(|z| crate::zones::zone(&z).ok());
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .delimiter(delimiter)
        .from_writer(file);
    // An export's own column named like one the results add (a practice system's `status`) is shown as
    // `list_<name>`: the export is not ours to rename, and the results must not hold two columns of one name.
    let ours = |h: &str| {
        let l = h.trim().to_ascii_lowercase();
        super::results::COLUMNS.contains(&l.as_str())
            || COLUMNS.contains(&l.as_str())
            || (view.zones && (l == "timezone" || l == "timezone_source"))
            || l.starts_with("response.")
    };
    let mut header: ByteRecord = headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let h = if i == 0 {
                h.strip_prefix("\u{feff}".as_bytes()).unwrap_or(h)
            } else {
                h
            };
            let text = String::from_utf8_lossy(h);
            if ours(&text) {
                format!("list_{}", text.trim()).into_bytes()
            } else {
                h.to_vec()
            }
        })
        .collect();
    for c in super::results::COLUMNS {
        header.push_field(c.as_bytes());
    }
    for k in &view.response_keys {
        header.push_field(format!("response.{k}").as_bytes());
    }
    if view.zones {
        header.push_field(b"timezone");
        header.push_field(b"timezone_source");
    }
    for c in COLUMNS {
        header.push_field(c.as_bytes());
    }
    w.write_byte_record(&header).map_err(|e| out_err(&e))?;
    let mut written = Written::default();
    // The latest export's rows in its order, then the keys it no longer lists.
    let mut items: Vec<(Vec<u8>, Option<String>, Option<String>)> = conn
        .prepare("SELECT record, key, invalid FROM listing ORDER BY line")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let gone: Vec<(Vec<u8>, Option<String>, Option<String>)> = conn
        .prepare("SELECT record, key, NULL FROM appointments WHERE listed = 0 ORDER BY seq")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    items.extend(gone);
    let mut appointment =
        conn.prepare("SELECT appt_ms, withdrawn, listed FROM appointments WHERE key = ?1")?;
    // Keys shown so far: a later row of the same key (a repeated key) shows none of that key's calls, which
    // are its first row's.
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    for (record, key, invalid) in items {
        let touches;
        let repeated = key.as_ref().is_some_and(|k| !seen.insert(k.clone()));
        let shown = match (invalid, key) {
            (Some(why), key) => {
                *written.counts.entry(State::Invalid).or_insert(0) += 1;
                // A row whose key holds touches (listed validly before) still shows their calls.
                let history = match key.filter(|_| !repeated) {
                    Some(k) => {
                        let rows: Vec<i64> = touches_of(conn, &k)?.iter().map(|t| t.row).collect();
                        history_of(conn, &rows)?
                            .into_iter()
                            .map(|(_, h)| h)
                            .collect()
                    }
                    None => Vec::new(),
                };
                Shown {
                    status: State::Invalid.result_name().into(),
                    detail: Some(why),
                    calls: history.len(),
                    history,
                    ..Shown::default()
                }
            }
            (None, None) => {
                *written.counts.entry(State::Invalid).or_insert(0) += 1;
                Shown {
                    status: State::Invalid.result_name().into(),
                    ..Shown::default()
                }
            }
            (None, Some(key)) => {
                let (appt_ms, withdrawn, listed): (Option<i64>, Option<String>, bool) = appointment
                    .query_row([&key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?
                    .unwrap_or((None, None, true));
                let withdrawn = withdrawn.or_else(|| {
                    (!listed).then(|| "withdrawn: no longer in the export".to_string())
                });
                touches = touches_of(conn, &key)?;
                fold(conn, &touches, appt_ms, withdrawn, &mut written)?
            }
        };
        let mut out = decode_record(&record).ok_or_else(|| {
            Error::Journal("the journal has no readable copy of an export row".into())
        })?;
        for _ in out.len()..width {
            out.push_field(b"");
        }
        out.truncate(width);
        let t = shown.touch;
        let dialed_at = t.and_then(|t| {
            t.dialed_at.or(t
                .intent_at
                .filter(|_| matches!(t.state, State::Unknown | State::Intent)))
        });
        let responses = t.and_then(|t| t.responses.clone()).unwrap_or_default();
        out.push_field(shown.status.as_bytes());
        out.push_field(
            t.and_then(|t| t.req_id.clone())
                .unwrap_or_default()
                .as_bytes(),
        );
        out.push_field(
            t.filter(|t| t.intent_at.is_some() || t.dialed_at.is_some())
                .and_then(|t| t.gateway.clone())
                .unwrap_or_default()
                .as_bytes(),
        );
        out.push_field(clean(&neutralise(&responses)).as_bytes());
        out.push_field(
            t.and_then(|t| t.attempts)
                .filter(|a| *a > 0)
                .map(|a| a.to_string())
                .unwrap_or_default()
                .as_bytes(),
        );
        out.push_field(clean(&neutralise(&shown.detail.unwrap_or_default())).as_bytes());
        out.push_field(
            t.filter(|_| dialed_at.is_some())
                .and_then(|t| t.dialed_number.clone())
                .unwrap_or_default()
                .as_bytes(),
        );
        out.push_field(rfc3339(dialed_at).as_bytes());
        out.push_field(
            rfc3339(t.filter(|t| t.state.is_final()).and_then(|t| t.finished_at)).as_bytes(),
        );
        out.push_field(
            (if shown.calls > 0 {
                shown.calls.to_string()
            } else {
                String::new()
            })
            .as_bytes(),
        );
        out.push_field(shown.history.join("; ").as_bytes());
        out.push_field(
            rfc3339(
                t.filter(|t| t.state == State::Pending)
                    .and_then(|t| t.recall_at),
            )
            .as_bytes(),
        );
        if !view.response_keys.is_empty() {
            let parsed = Responses::parse(&responses);
            for k in &view.response_keys {
                out.push_field(clean(&neutralise(parsed.get(k).unwrap_or(""))).as_bytes());
            }
        }
        if view.zones {
            let (zone_name, source) = match (t.and_then(|t| t.tz.as_deref()), &view.campaign_zone) {
                (Some(own), _) => (
                    own.to_string(),
                    t.and_then(|t| t.tz_source.clone())
                        .unwrap_or_else(|| "column".into()),
                ),
                (None, Some(c)) if t.is_some() => (c.clone(), "campaign".into()),
                _ => (String::new(), String::new()),
            };
            out.push_field(zone_name.as_bytes());
            out.push_field(source.as_bytes());
        }
        out.push_field(local(zone.as_ref(), shown.appt_ms).as_bytes());
        out.push_field(shown.reminders.as_bytes());
        out.push_field(local(zone.as_ref(), shown.next_ms).as_bytes());
        w.write_byte_record(&out).map_err(|e| out_err(&e))?;
    }
    w.flush().map_err(|e| out_err(&e))?;
    Ok(written)
}
