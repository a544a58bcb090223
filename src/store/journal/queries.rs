//! What the engine reads back from the journal, on the writer's connection (after every write queued before
//! it has committed).

use rusqlite::{Connection, params};

use super::schema::meta;
use super::views::counts_on;
use super::{Journal, OnJournal};
use crate::error::Result;
use crate::store::contact::State;

/// A pending contact as [`Journal::pending_records`] reads it: row, line, its copy of the input row, its last
/// call's outcome if it waits for a recall, and its number in E.164 as it was read.
pub type PendingRecord = (u64, u64, Vec<u8>, Option<State>, String);

/// A contact read back from the journal, for the engine.
#[derive(Debug, Clone)]
pub struct ContactRow {
    pub row: u64,
    pub line: u64,
    pub e164: String,
    /// The contact's own zone or zones (`&`-joined), from the list's column or the number's prefix; `None`
    /// means the campaign's.
    pub tz: Option<String>,
    /// Where `tz` came from.
    pub tz_source: Option<crate::zones::Source>,
    pub dialed_number: String,
    pub req_id: Option<String>,
    pub dialed_at_ms: Option<i64>,
    /// Which call to this contact a request now would be: 1, or more after a redial or a recall.
    pub attempt: u32,
    /// A contact to be recalled: its last call's outcome and responses (the policy is checked again).
    pub recall_of: Option<(State, String)>,
    /// The input row as read ([`super::encode_record`]), which the call's fields are made from.
    pub record: Option<Vec<u8>>,
    /// The gateway its last request went to (its key); `None` in a journal from before gateways were recorded,
    /// which had one gateway: the first listed.
    pub gateway: Option<String>,
}

const CONTACT_COLUMNS: &str = "row, line, dialed_number, req_id, dialed_at, e164, tz, attempt, tz_source, last_outcome, responses, record, gateway";

fn contact_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ContactRow> {
    Ok(ContactRow {
        row: r.get::<_, i64>(0)? as u64,
        line: r.get::<_, i64>(1)? as u64,
        dialed_number: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
        req_id: r.get(3)?,
        dialed_at_ms: r.get(4)?,
        e164: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
        tz: r.get(6)?,
        attempt: r.get::<_, i64>(7)?.max(1) as u32,
        tz_source: r
            .get::<_, Option<String>>(8)?
            .as_deref()
            .and_then(crate::zones::Source::parse),
        recall_of: r
            .get::<_, Option<String>>(9)?
            .as_deref()
            .and_then(State::parse)
            .map(|s| (s, String::new())),
        record: r.get(11)?,
        gateway: r.get(12)?,
    })
    .and_then(|mut c| {
        if let Some((_, responses)) = c.recall_of.as_mut() {
            *responses = r.get::<_, Option<String>>(10)?.unwrap_or_default();
        }
        Ok(c)
    })
}

/// Contacts of one query, in order.
fn contacts(
    c: &Connection,
    condition: &str,
    order: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<ContactRow>> {
    let go = || -> rusqlite::Result<Vec<ContactRow>> {
        let mut st = c.prepare_cached(&format!(
            "SELECT {CONTACT_COLUMNS} FROM contacts WHERE {condition} ORDER BY {order}"
        ))?;
        let rows = st.query_map(args, contact_row)?;
        rows.collect()
    };
    go().on_conn(c)
}

/// A place in the order pending contacts are called in ([`Journal::pending_after`]): the end of the
/// contact's touch (`i64::MAX` for a contact that is no touch), then its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListCursor {
    pub end_ms: i64,
    pub row: u64,
}

/// The contacts waiting to be looked at again ([`Journal::next_wait`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    /// The earliest a contact outside its window is looked at again (wall time, ms).
    pub window_ms: Option<i64>,
    /// The earliest a recall falls due (ms on the campaign's steady time line).
    pub recall_ms: Option<i64>,
    pub contacts: u64,
}

impl Journal {
    /// Whether another contact's call holds `req_id` (a gateway that reused an id): a remove names a record only
    /// by its id, so that record must not be removed for this contact.
    pub async fn id_held_by_another(&self, req_id: &str, row: u64) -> Result<bool> {
        let id = req_id.to_string();
        self.read(move |c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM contacts WHERE req_id = ?1 AND row != ?2)",
                params![id, row as i64],
                |r| r.get::<_, bool>(0),
            )
            .on_conn(c)
        })
        .await
    }

    /// Up to `limit` pending contacts after `after` (recalls only once they are due), in the order they are to
    /// be called, each with its place in that order. For a rolling export that is earliest deadline first:
    /// by the end of each touch, then by row, so a touch about to end is not left behind touches with a day
    /// left. Otherwise, and for contacts that are no touch, input order.
    pub async fn pending_after(
        &self,
        after: Option<ListCursor>,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<(ListCursor, ContactRow)>> {
        let (after_end, after_row) = after.map_or((i64::MIN, -1), |c| (c.end_ms, c.row as i64));
        self.read(move |c| {
            let end = if crate::store::touches::is_rolling(c) {
                "COALESCE((SELECT t.end_ms FROM touches t WHERE t.row = contacts.row), 9223372036854775807)"
            } else {
                "9223372036854775807"
            };
            let go = || -> rusqlite::Result<Vec<(ListCursor, ContactRow)>> {
                let mut st = c.prepare_cached(&format!(
                    "SELECT {CONTACT_COLUMNS}, {end} AS list_end FROM contacts
                     WHERE state = 'pending' AND (list_end, row) > (?1, ?2)
                       AND (recall_at IS NULL OR recall_at <= ?4)
                     ORDER BY list_end, row LIMIT ?3"
                ))?;
                let rows = st.query_map(
                    params![after_end, after_row, limit as i64, now_ms],
                    |r| {
                        let contact = contact_row(r)?;
                        let cursor = ListCursor {
                            end_ms: r.get(13)?,
                            row: contact.row,
                        };
                        Ok((cursor, contact))
                    },
                )?;
                rows.collect()
            };
            go().on_conn(c)
        })
        .await
    }

    /// A rolling export's touches moved along by the clock at `now_ms` during a run
    /// ([`crate::store::touches::advance_in_run`]): the touches that fell due, in the order they are to be
    /// called (earliest end first), and the end of every touch that may now be called in this run (held to
    /// the appointment less `min_notice_ms`, as at the start of the run).
    pub async fn advance_touches(
        &self,
        settings: std::sync::Arc<crate::settings::reminders::Reminders>,
        now_ms: i64,
        min_notice_ms: Option<i64>,
    ) -> Result<(Vec<ContactRow>, std::collections::HashMap<u64, i64>)> {
        use crate::store::touches;
        self.read(move |c| {
            let due = touches::advance_in_run(c, &settings, now_ms)?;
            let ends = touches::open_ends(c, min_notice_ms)?;
            let mut fresh = Vec::with_capacity(due.len());
            for row in due {
                fresh.extend(contacts(
                    c,
                    "state = 'pending' AND row = ?1",
                    "row",
                    [row as i64],
                )?);
            }
            fresh.sort_by_key(|r| (ends.get(&r.row).copied().unwrap_or(i64::MAX), r.row));
            Ok((fresh, ends))
        })
        .await
    }

    /// Pending contacts told to wait whose time has come, soonest first: a contact waiting for its window by
    /// the wall clock (`wall_ms`), one waiting for a recall by the campaign's steady time line (`steady_ms`,
    /// see `engine::Steady`), on which its due time was written.
    pub async fn due(&self, wall_ms: i64, steady_ms: i64, limit: usize) -> Result<Vec<ContactRow>> {
        self.read(move |c| {
            contacts(
                c,
                "state = 'pending' AND not_before IS NOT NULL AND not_before <= CASE WHEN last_outcome IS NULL THEN ?1 ELSE ?3 END",
                "not_before, row LIMIT ?2",
                params![wall_ms, limit as i64, steady_ms],
            )
        })
        .await
    }

    /// What the waiting contacts wait for: the earliest window opening (wall time), the earliest recall due
    /// time (on the campaign's steady time line, see `engine::Steady`), and how many wait. The two are kept
    /// apart because they are measured on different clocks: a wall clock stepped back must not delay a recall.
    pub async fn next_wait(&self) -> Result<Option<Waiting>> {
        self.read(|c| {
            c.query_row(
                "SELECT MIN(CASE WHEN last_outcome IS NULL THEN not_before END),
                        MIN(CASE WHEN last_outcome IS NOT NULL THEN not_before END), COUNT(*)
                 FROM contacts WHERE state = 'pending' AND not_before IS NOT NULL",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?)),
            )
            .map(|(window_ms, recall_ms, n)| {
                (n > 0).then_some(Waiting {
                    window_ms,
                    recall_ms,
                    contacts: n as u64,
                })
            })
            .on_conn(c)
        })
        .await
    }

    /// Up to `limit` contacts with a request id and no final result after `after_row`: to be polled, never
    /// redialed.
    pub async fn dialed_after(
        &self,
        after_row: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ContactRow>> {
        let after = after_row.map_or(-1, |r| r as i64);
        self.read(move |c| {
            contacts(
                c,
                "state = 'dialed' AND row > ?1",
                "row LIMIT ?2",
                params![after, limit as i64],
            )
        })
        .await
    }

    /// Final contacts whose gateway record was never removed (a run stopped between the two): row, request
    /// id, gateway.
    pub async fn unremoved(&self) -> Result<Vec<(u64, String, Option<String>)>> {
        self.read(|c| {
            let go = || -> rusqlite::Result<Vec<(u64, String, Option<String>)>> {
                // An id two contacts hold on one gateway (a gateway that gave it twice) is never removed:
                // whose record it is now, nobody knows.
                let mut st = c.prepare(
                    "SELECT row, req_id, gateway FROM contacts AS c
                     WHERE removed = 0 AND req_id IS NOT NULL
                       AND (state IN ('made', 'failed', 'unresolved')
                            OR (state = 'pending' AND last_outcome IS NOT NULL))
                       AND (SELECT COUNT(*) FROM contacts AS o
                            WHERE o.req_id = c.req_id AND o.gateway IS c.gateway) = 1",
                )?;
                let rows = st.query_map([], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))
                })?;
                rows.collect()
            };
            go().on_conn(c)
        })
        .await
    }

    /// Numbers whose last call request's answer was lost (`unknown`) at or after `since_ms`, each with the
    /// latest such intent: the gateway may still be dialing them, though no run can see it.
    pub async fn unknown_since(&self, since_ms: i64) -> Result<Vec<(String, i64)>> {
        self.read(move |c| {
            let go = || -> rusqlite::Result<Vec<(String, i64)>> {
                let mut st = c.prepare(
                    "SELECT e164, MAX(intent_at) FROM contacts
                     WHERE state = 'unknown' AND e164 IS NOT NULL AND intent_at >= ?1
                     GROUP BY e164 ORDER BY e164",
                )?;
                let rows = st.query_map([since_ms], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect()
            };
            go().on_conn(c)
        })
        .await
    }

    /// Calls still open (a request id, no final result) per gateway they are on.
    pub async fn open_by_gateway(&self) -> Result<Vec<(Option<String>, u64)>> {
        self.read(|c| {
            let go = || -> rusqlite::Result<Vec<(Option<String>, u64)>> {
                let mut st = c.prepare(
                    "SELECT gateway, COUNT(*) FROM contacts WHERE state = 'dialed' GROUP BY gateway ORDER BY gateway",
                )?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
                rows.collect()
            };
            go().on_conn(c)
        })
        .await
    }

    /// Up to `limit` pending contacts after `after_row`: row, line, their copy of the row, for one waiting
    /// for a recall its last call's outcome, and the number as it was read.
    pub async fn pending_records(
        &self,
        after_row: Option<u64>,
        limit: usize,
    ) -> Result<Vec<PendingRecord>> {
        let after = after_row.map_or(-1, |r| r as i64);
        self.read(move |c| {
            let go = || -> rusqlite::Result<Vec<PendingRecord>> {
                let mut st = c.prepare_cached(
                    "SELECT row, line, record, last_outcome, e164 FROM contacts WHERE state = 'pending' AND row > ?1 ORDER BY row LIMIT ?2",
                )?;
                let rows = st.query_map(params![after, limit as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, i64>(1)? as u64,
                        r.get::<_, Option<Vec<u8>>>(2)?.unwrap_or_default(),
                        r.get::<_, Option<String>>(3)?
                            .as_deref()
                            .and_then(State::parse),
                        r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    ))
                })?;
                rows.collect()
            };
            go().on_conn(c)
        })
        .await
    }

    /// Calls placed so far: every attempt that ended, and those still open.
    pub async fn calls_placed(&self) -> Result<u64> {
        self.read(|c| {
            c.query_row(
                "SELECT (SELECT COUNT(*) FROM calls) + (SELECT COUNT(*) FROM contacts WHERE state IN ('intent', 'dialed'))",
                [],
                |r| r.get::<_, i64>(0),
            )
            .on_conn(c)
            .map(|n| n.max(0) as u64)
        })
        .await
    }

    /// A fact recorded about the campaign, if any.
    pub async fn get_meta(&self, key: &'static str) -> Result<Option<String>> {
        self.read(move |c| meta(c, key).on_conn(c)).await
    }

    /// Records a fact about the campaign (how the list is read, the campaign's zone) for later runs and views.
    /// Not a contact's state: kept on the writer's connection, in order with its writes.
    pub async fn set_meta(&self, key: &'static str, value: String) -> Result<()> {
        self.read(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .on_conn(c)
            .map(drop)
        })
        .await
    }

    /// Adds a run's outage time of each gateway to the campaign's.
    pub async fn add_outages(&self, by_gateway: Vec<(String, u64)>) -> Result<()> {
        self.read(move |c| {
            for (key, ms) in by_gateway.into_iter().filter(|(_, ms)| *ms > 0) {
                c.execute(
                    "INSERT INTO meta (key, value) VALUES ('outage_ms:' || ?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
                    params![key, ms as i64],
                )
                .on_conn(c)?;
            }
            Ok(())
        })
        .await
    }

    /// Contacts per state.
    pub async fn counts(&self) -> Result<Vec<(State, u64)>> {
        self.read(counts_on).await
    }
}
