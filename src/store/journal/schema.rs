//! The journal's tables, the layouts of earlier releases, and how `run` brings an older journal up to date.
//! (The read-only views read every layout without changing it: [`crate::store::compat`].)

use rusqlite::{Connection, OptionalExtension, params};

use super::{Binding, encode_record};

/// The journal layout this build writes. 1: the first release (no row copies); 2: row copies, wait times,
/// operator actions; 3: the gateway that holds each call.
pub(super) const SCHEMA_VERSION: i64 = 3;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS contacts (
    row           INTEGER PRIMARY KEY,   -- 0-based data row of the input
    line          INTEGER NOT NULL,      -- 1-based data row number, as operators and the results file count
    e164          TEXT,
    dialed_number TEXT,
    state         TEXT NOT NULL,
    req_id        TEXT,
    responses     TEXT,
    attempts      INTEGER,
    detail        TEXT,
    intent_at     INTEGER,               -- ms since the epoch
    dialed_at     INTEGER,
    finished_at   INTEGER,
    removed       INTEGER NOT NULL DEFAULT 0,
    tz            TEXT,                  -- the contact's IANA zone from the input; NULL: the campaign's
    record        BLOB,                  -- the input row as read (encode_record)
    not_before    INTEGER,               -- a pending contact outside its window is looked at again from then
    note          TEXT,                  -- about the row, shown with its result whatever happens (an extension)
    attempt       INTEGER NOT NULL DEFAULT 1, -- which call to this contact the next request is (a redial is the 2nd)
    tz_source     TEXT,                  -- where tz came from: column or number
    last_outcome  TEXT,                  -- a contact to be recalled: its last call's outcome (made, failed, …)
    recall_at     INTEGER,               -- …and the earliest time its recall may be requested
    gateway       TEXT                   -- the gateway its last request went to (its key); NULL before layout 3
);
CREATE TABLE IF NOT EXISTS calls (       -- every attempt, as it ended: the contact's history
    row         INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    intent_at   INTEGER,
    req_id      TEXT,
    dialed_at   INTEGER,
    finished_at INTEGER,
    outcome     TEXT NOT NULL,
    detail      TEXT,
    responses   TEXT,
    gateway     TEXT,
    PRIMARY KEY (row, attempt)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS actions (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,           -- ms since the epoch
    action   TEXT NOT NULL,
    contacts INTEGER NOT NULL,
    detail   TEXT
);
CREATE INDEX IF NOT EXISTS contacts_e164 ON contacts(e164) WHERE e164 IS NOT NULL;
CREATE INDEX IF NOT EXISTS contacts_req_id ON contacts(req_id) WHERE req_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS contacts_open ON contacts(state, row) WHERE state IN ('pending', 'intent', 'dialed');
CREATE INDEX IF NOT EXISTS contacts_waiting ON contacts(not_before, row) WHERE state = 'pending' AND not_before IS NOT NULL;
";

/// A fact recorded about the campaign in `meta`, if any.
pub(super) fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

/// The layout of the journal on `conn`: `None` for no journal yet (or tables left by a creation that failed:
/// a journal exists once it is bound to its list, and those tables are dropped); 1 for a journal of the first
/// release, which did not record its layout.
pub(super) fn layout_of(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let bound: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = 'meta'",
        [],
        |r| r.get(0),
    )? && meta(conn, "input_digest")?.is_some();
    if !bound {
        conn.execute_batch("DROP TABLE IF EXISTS contacts;")?;
        return Ok(None);
    }
    Ok(match meta(conn, "schema")? {
        Some(v) => v.parse().ok(),
        None => Some(1),
    })
}

/// Adds the columns a journal of layout `from` lacks, then creates whatever is missing. The row copies of a
/// first-release journal are filled in later, once the input is known to be the one it was made from.
pub(super) fn migrate(conn: &Connection, from: Option<i64>) -> rusqlite::Result<()> {
    if from == Some(1) {
        conn.execute_batch(
            "ALTER TABLE contacts ADD COLUMN record BLOB; ALTER TABLE contacts ADD COLUMN not_before INTEGER; ALTER TABLE contacts ADD COLUMN note TEXT; ALTER TABLE contacts ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1; ALTER TABLE contacts ADD COLUMN tz_source TEXT; UPDATE contacts SET tz_source = 'column' WHERE tz IS NOT NULL; ALTER TABLE contacts ADD COLUMN last_outcome TEXT; ALTER TABLE contacts ADD COLUMN recall_at INTEGER; ALTER TABLE contacts ADD COLUMN gateway TEXT;",
        )?;
    }
    if from == Some(2) {
        conn.execute_batch(
            "ALTER TABLE contacts ADD COLUMN gateway TEXT; ALTER TABLE calls ADD COLUMN gateway TEXT;",
        )?;
    }
    conn.execute_batch(SCHEMA)
}

/// Records this build's layout and how the list is laid out and read, for writing the results from the
/// journal alone.
pub(super) fn store_layout(
    tx: &rusqlite::Transaction<'_>,
    binding: &Binding<'_>,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?1), ('headers', ?2), ('delimiter', ?3), ('reading', ?4)",
        params![
            SCHEMA_VERSION.to_string(),
            encode_record(binding.headers),
            i64::from(binding.delimiter),
            binding.reading
        ],
    )?;
    Ok(())
}
