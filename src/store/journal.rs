//! The journal: the campaign's truth, in SQLite (WAL, `synchronous=FULL`).
//!
//! Every contact's transition ([`super::contact`]) is committed here before the runner acts on it: the intent
//! before the call request is sent, the request id as soon as it arrives, the final result before the gateway
//! record is removed. One thread owns the connection and commits whatever has queued up in one transaction
//! (group commit), acknowledging each write only after its commit is on disk. Each transition is a
//! compare-and-set against the life-cycle rules; one that does not apply is refused (and reported to the
//! writer, or on the health channel) without touching the rest of its group.
//!
//! The journal also keeps a copy of every input row, so the results are written from what was read when the
//! campaign started, never from a list someone edited since.
//!
//! A run holds an OS lock (`flock`) on `lock` in the state directory for its whole life. The kernel drops it
//! when the process dies, however it dies, so a crash never blocks the next run.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use csv::ByteRecord;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::contact::{Event, Refused, State};
use crate::error::{Error, Result};

pub use crate::settings::paths::{DB_FILE, LOCK_FILE};
/// Most queued operations applied in one transaction.
const MAX_GROUP: usize = 4096;
/// The journal layout this build writes. 1: the first release (no row copies); 2: row copies, wait times,
/// operator actions; 3: the gateway that holds each call.
const SCHEMA_VERSION: i64 = 3;

/// A write. Each is applied inside the current group's transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// A life-cycle event for one contact, at `at_ms`.
    Apply { row: u64, event: Event, at_ms: i64 },
    /// The gateway record of a final contact was removed (or was already gone). Housekeeping, not a state.
    /// Which record: by then the contact may hold a recall's newer one.
    Removed { row: u64, req_id: String },
    /// A contact not yet called is read again under changed settings (a time zone column added, another
    /// number format): its zone and the number sent. Not a state change; contacts called already keep theirs.
    Reread {
        row: u64,
        dial: String,
        tz: Option<(String, crate::zones::Source)>,
    },
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// `Scheduled` found its request id held by another contact: this contact is `unknown` now, and so is the
    /// other one (`other_row`) if it was still open.
    Clash {
        other_row: u64,
        other_open: bool,
    },
}

/// Why a write did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The transition is not allowed from the contact's current state.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// The journal could not be written (and was given up on).
    #[error("journal: {0}")]
    Io(String),
}

type Reader = Box<dyn FnOnce(&Connection) + Send>;
type Ack = oneshot::Sender<std::result::Result<Applied, WriteError>>;

enum Job {
    Write(Op, Option<Ack>),
    Read(Reader),
    /// Commit what is queued and end the writer.
    Stop,
}

/// How the journal is doing, for the engine to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Ok,
    /// A commit failed; the writer keeps retrying it and nothing queued is lost yet.
    Failing(String),
    /// A write nobody waited for was refused by the life-cycle rules: a bug.
    Refused(String),
}

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
    /// The input row as read ([`encode_record`]), which the call's fields are made from.
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

/// What opening found and did.
#[derive(Debug, Clone, Default)]
pub struct Opened {
    /// The journal was created by this open (first run).
    pub created: bool,
    /// Contacts that had an intent and no request id: now `unknown`.
    pub interrupted_intents: u64,
    /// An older journal was brought up to this build's layout.
    pub migrated_from: Option<i64>,
    /// How the list was read when the journal was made ([`Binding::reading`]); `None` for a journal that did
    /// not record it.
    pub reading: Option<String>,
    /// The latest time any contact's intent, request or result was written (ms): a run writes no time before
    /// it, so a wall clock set back between runs never shows a call finished before it was dialed.
    pub latest_ms: i64,
}

/// One row to store when the journal is created.
pub struct NewContact {
    pub row: u64,
    pub line: u64,
    /// The input row's fields as read ([`encode_record`]).
    pub record: Vec<u8>,
    /// The row's own zone or zones, and where they came from (the campaign's zone is not stored: it is the
    /// campaign's, and may change between runs).
    pub tz: Option<(String, crate::zones::Source)>,
    pub verdict: crate::contacts::Verdict,
    /// Kept with the row's result (an extension not dialed).
    pub note: Option<String>,
}

/// What the journal is bound to and told when it is opened.
pub struct Binding<'a> {
    /// SHA-256 of the input file's bytes.
    pub digest: &'a str,
    pub input_name: &'a str,
    /// The input's header row and delimiter, for writing the results from the journal alone.
    pub headers: &'a ByteRecord,
    pub delimiter: u8,
    /// The settings that decide what a row means (phone column, region, …), one `key=value` a line.
    pub reading: &'a str,
}

/// Stores a row's fields exactly: each as a little-endian u32 length and its bytes.
pub fn encode_record(rec: &ByteRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(rec.as_slice().len() + 4 * rec.len());
    for f in rec {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// The inverse of [`encode_record`]; `None` for bytes it did not write.
pub fn decode_record(mut bytes: &[u8]) -> Option<ByteRecord> {
    let mut rec = ByteRecord::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        rec.push_field(&rest[..len]);
        bytes = &rest[len..];
    }
    Some(rec)
}

/// Handle to the journal's writer. Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::UnboundedSender<Job>,
    health: watch::Receiver<Health>,
    give_up: GiveUp,
}

/// Set when the process is ending: a commit that keeps failing is then given up on instead of retried.
type GiveUp = std::sync::Arc<std::sync::atomic::AtomicBool>;

/// Owns the run lock and the writer; [`JournalOwner::close`] ends them after the queued writes.
pub struct JournalOwner {
    pub journal: Journal,
    give_up: GiveUp,
    /// The writer task; it holds the run lock, so the lock outlives every write it commits.
    writer: Option<JoinHandle<()>>,
    pub db_path: PathBuf,
    pub campaign_id: String,
}

impl JournalOwner {
    /// Commits every queued write (a write that keeps failing gets one more try, not an hour of them: the
    /// process is ending), closes the connection, and releases the lock.
    pub async fn close(mut self) {
        self.give_up
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.journal.tx.send(Job::Stop);
        if let Some(w) = self.writer.take() {
            let _ = w.await;
        }
    }
}

impl Drop for JournalOwner {
    fn drop(&mut self) {
        // Not closed (an error path): the writer still commits what is queued, on its own.
        self.give_up
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.journal.tx.send(Job::Stop);
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)
        .map_err(|e| Error::Journal(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Journal(format!(
            "{} cannot use WAL mode (got {mode})",
            path.display()
        )));
    }
    // FULL: a commit is fsynced before it returns, so "intent recorded" survives power loss, not just kill -9.
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")?;
    Ok(conn)
}

const SCHEMA: &str = "
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

/// Takes the run lock on a state directory (creating it), or says who holds it.
fn lock(dir: &Path) -> Result<File> {
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::Journal(format!(
            "cannot create state directory {}: {e}",
            dir.display()
        ))
    })?;
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Journal(format!("cannot open lock file {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            let who = if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
            };
            return Err(Error::Busy(format!(
                "another ivr-campaign run is using {}{who}; wait for it to finish",
                dir.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(Error::Journal(format!(
                "cannot lock {}: {e}",
                path.display()
            )));
        }
    }
    // The pid is information for the message above; the flock is the lock.
    let _ = file.set_len(0);
    let _ = writeln!(file, "{}", std::process::id());
    let _ = file.sync_data();
    Ok(file)
}

fn meta(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

/// Opens (or creates) the journal in `dir`, bound to the input whose digest is in `binding`.
///
/// On creation, `contacts` is drained into the journal in the same transaction as the binding, so a crash
/// mid-creation leaves no half-made journal. On reopen, contacts caught between intent and request id become
/// `unknown` (the request may have been scheduled; calling again could call a person twice).
pub fn open<I>(
    dir: &Path,
    binding: &Binding<'_>,
    contacts: impl FnOnce() -> Result<I>,
) -> Result<(JournalOwner, Opened)>
where
    I: Iterator<Item = Result<NewContact>>,
{
    let lock = lock(dir)?;
    let db_path = dir.join(DB_FILE);
    let mut conn = open_connection(&db_path)?;
    // A journal exists once it is bound to its list; tables left by a creation that failed (the list was
    // refused mid-way) are not one.
    let bound: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = 'meta'",
        [],
        |r| r.get(0),
    )? && meta(&conn, "input_digest")?.is_some();
    let old_version: Option<i64> = if bound {
        match meta(&conn, "schema")? {
            Some(v) => v.parse().ok(),
            None => Some(1),
        }
    } else {
        conn.execute_batch("DROP TABLE IF EXISTS contacts;")?;
        None
    };
    if let Some(v) = old_version.filter(|v| *v > SCHEMA_VERSION) {
        return Err(Error::Config(format!(
            "the journal in {} was written by a newer ivr-campaign (layout {v}); run that version",
            dir.display()
        )));
    }
    if old_version == Some(1) {
        // Columns the first release did not have. The row copies are filled in below, once the input is
        // known to be the one the journal was made from.
        conn.execute_batch(
            "ALTER TABLE contacts ADD COLUMN record BLOB; ALTER TABLE contacts ADD COLUMN not_before INTEGER; ALTER TABLE contacts ADD COLUMN note TEXT; ALTER TABLE contacts ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1; ALTER TABLE contacts ADD COLUMN tz_source TEXT; UPDATE contacts SET tz_source = 'column' WHERE tz IS NOT NULL; ALTER TABLE contacts ADD COLUMN last_outcome TEXT; ALTER TABLE contacts ADD COLUMN recall_at INTEGER; ALTER TABLE contacts ADD COLUMN gateway TEXT;",
        )?;
    }
    if old_version == Some(2) {
        conn.execute_batch(
            "ALTER TABLE contacts ADD COLUMN gateway TEXT; ALTER TABLE calls ADD COLUMN gateway TEXT;",
        )?;
    }
    conn.execute_batch(SCHEMA)?;
    let stored = meta(&conn, "input_digest")?;
    let mut opened = Opened {
        migrated_from: old_version.filter(|v| *v < SCHEMA_VERSION),
        ..Opened::default()
    };
    match stored {
        Some(d) if d == binding.digest => {
            if old_version == Some(1) {
                let tx = conn.transaction()?;
                {
                    let mut set = tx.prepare("UPDATE contacts SET record = ?2 WHERE row = ?1")?;
                    for c in contacts()? {
                        let c = c?;
                        set.execute(params![c.row as i64, c.record])?;
                    }
                }
                store_layout(&tx, binding)?;
                tx.commit()?;
            }
        }
        Some(_) => {
            let was = meta(&conn, "input_name")?;
            return Err(Error::Config(format!(
                "the journal in {} belongs to a different contact list (made from {}): the rows of {} have changed since. To finish that campaign, put its list back as it was; another --output starts a new campaign, which calls everyone on this list",
                dir.display(),
                was.unwrap_or_else(|| "another file".into()),
                binding.input_name
            )));
        }
        None => {
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM contacts", [])?;
            ingest(&tx, contacts()?)?;
            let campaign_id = new_campaign_id();
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('input_digest', ?1), ('input_name', ?2), ('campaign_id', ?3), ('created_at', ?4)",
                params![binding.digest, binding.input_name, campaign_id, jiff::Timestamp::now().to_string()],
            )?;
            store_layout(&tx, binding)?;
            tx.commit()?;
            opened.created = true;
        }
    }
    opened.latest_ms = conn.query_row(
        "SELECT COALESCE(MAX(MAX(COALESCE(intent_at, 0), COALESCE(dialed_at, 0), COALESCE(finished_at, 0))), 0) FROM contacts",
        [],
        |r| r.get(0),
    )?;
    let now = crate::types::now_ms().max(opened.latest_ms);
    let tx = conn.transaction()?;
    opened.interrupted_intents = bulk(&tx, &Event::Interrupted, now)?;
    // Their attempts end there: into the history, as unknown.
    tx.execute(
        "INSERT OR REPLACE INTO calls (row, attempt, intent_at, req_id, dialed_at, finished_at, outcome, detail, responses, gateway)
         SELECT row, attempt, intent_at, req_id, dialed_at, finished_at, 'unknown', detail, responses, gateway
         FROM contacts WHERE state = 'unknown' AND finished_at = ?1",
        [now],
    )?;
    tx.commit()?;
    opened.reading = meta(&conn, "reading")?;
    let campaign_id: String = meta(&conn, "campaign_id")?
        .ok_or_else(|| Error::Journal(format!("{} has no campaign id", db_path.display())))?;

    let (tx, rx) = mpsc::unbounded_channel::<Job>();
    let (health_tx, health) = watch::channel(Health::Ok);
    let give_up = GiveUp::default();
    let writer = tokio::spawn(writer(conn, rx, health_tx, give_up.clone(), lock));
    Ok((
        JournalOwner {
            journal: Journal {
                tx,
                health,
                give_up: give_up.clone(),
            },
            give_up,
            writer: Some(writer),
            db_path,
            campaign_id,
        },
        opened,
    ))
}

fn store_layout(tx: &rusqlite::Transaction<'_>, binding: &Binding<'_>) -> rusqlite::Result<()> {
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

/// Stores every row, admitted by the rules ([`crate::rules::admit`]): a duplicate is judged against the rows
/// stored before it, so the first row with a number keeps it.
fn ingest<I>(tx: &rusqlite::Transaction<'_>, contacts: I) -> Result<()>
where
    I: Iterator<Item = Result<NewContact>>,
{
    use crate::contacts::Verdict;
    use crate::rules::{Admission, admit};
    let mut insert = tx.prepare(
        "INSERT INTO contacts (row, line, e164, dialed_number, state, detail, tz, record, note, tz_source) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut first_seen =
        tx.prepare("SELECT line FROM contacts WHERE e164 = ?1 ORDER BY row LIMIT 1")?;
    for c in contacts {
        let c = c?;
        let admission = admit(&c.verdict, |e164| {
            first_seen
                .query_row([e164], |r| r.get::<_, i64>(0))
                .optional()
                .map(|l| l.map(|l| l as u64))
        })?;
        let state = match admission {
            Admission::Callable => State::Pending,
            Admission::Invalid(_) => State::Invalid,
            Admission::Duplicate { .. } => State::Duplicate,
        };
        let (e164, dial) = match &c.verdict {
            Verdict::Call { e164, dial, .. } => (Some(e164.as_str()), Some(dial.as_str())),
            Verdict::Invalid(_) => (None, None),
        };
        insert.execute(params![
            c.row as i64,
            c.line as i64,
            e164,
            dial,
            state.as_str(),
            admission.detail(),
            c.tz.as_ref().map(|(z, _)| z.as_str()),
            c.record,
            c.note,
            c.tz.as_ref().map(|(_, s)| s.as_str())
        ])?;
    }
    Ok(())
}

/// Applies `event` to every contact it can apply to.
fn bulk(tx: &rusqlite::Transaction<'_>, event: &Event, at_ms: i64) -> rusqlite::Result<u64> {
    // Bulk events carry no operator text, so their values can be inlined as SQL literals.
    let set = columns(event, at_ms)
        .iter()
        .map(|(c, v)| v.assign_literal(c))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "UPDATE contacts SET {set} WHERE {}",
        event.kind().from_sql()
    );
    Ok(tx.execute(&sql, [])? as u64)
}

/// A column's new value: bound, an SQL expression of the row's own columns, or text added to what the column
/// holds (after `; `).
enum Val {
    V(rusqlite::types::Value),
    Sql(&'static str),
    Append(rusqlite::types::Value),
}

impl Val {
    /// `col = value`, the value inlined as an SQL literal (for events that carry no operator text).
    fn assign_literal(&self, c: &str) -> String {
        match self {
            Val::V(v) => format!("{c} = {}", literal(v)),
            Val::Sql(e) => format!("{c} = {e}"),
            Val::Append(v) => appended(c, &literal(v)),
        }
    }
}

/// `col = ` what [`Val::Append`] makes of `v` (an SQL literal or a bound parameter).
fn appended(col: &str, v: &str) -> String {
    format!("{col} = CASE WHEN {col} IS NULL OR {col} = '' THEN {v} ELSE {col} || '; ' || {v} END")
}

impl From<rusqlite::types::Value> for Val {
    fn from(v: rusqlite::types::Value) -> Val {
        Val::V(v)
    }
}

/// The columns an event sets, and their values.
fn columns(event: &Event, at_ms: i64) -> Vec<(&'static str, Val)> {
    let cols = values(event, at_ms);
    let mut out: Vec<(&'static str, Val)> = cols.into_iter().map(|(c, v)| (c, v.into())).collect();
    if let Event::Redial { .. } | Event::Recall { .. } = event {
        // Another call to the same person: the cap ledger counts it as one more.
        out.push(("attempt", Val::Sql("attempt + 1")));
    }
    if let Event::Settle {
        detail: Some(why), ..
    } = event
    {
        // The last call's own detail (its notes) stays: why its recall was not placed follows it.
        out.push((
            "detail",
            Val::Append(rusqlite::types::Value::Text(why.clone())),
        ));
    }
    out
}

fn values(event: &Event, at_ms: i64) -> Vec<(&'static str, rusqlite::types::Value)> {
    use rusqlite::types::Value as V;
    let to = event.kind().rule().1;
    let text = |s: &str| V::Text(s.to_string());
    let mut cols: Vec<(&str, V)> = vec![("state", text(to.as_str()))];
    match event {
        Event::Defer { detail, until_ms } => {
            if let Some(detail) = detail {
                cols.push(("detail", text(detail)));
            }
            cols.push(("not_before", until_ms.map_or(V::Null, V::Integer)));
        }
        Event::Suppress { list } => {
            cols.push(("detail", text(&format!("on suppression list {list}"))));
            cols.push(("finished_at", V::Integer(at_ms)));
        }
        Event::Cap { detail }
        | Event::Unplace { reason: detail }
        | Event::Lapse { detail }
        | Event::Withdraw { detail } => {
            cols.push(("detail", text(detail)));
            cols.push(("finished_at", V::Integer(at_ms)));
        }
        Event::Due => cols.push(("not_before", V::Null)),
        Event::Intent { gateway } => {
            cols.push(("gateway", text(gateway)));
            cols.push(("intent_at", V::Integer(at_ms)));
            cols.push(("not_before", V::Null));
            cols.push(("req_id", V::Null));
            // The new attempt has no record on the gateway yet (the last one's removal is behind us).
            cols.push(("removed", V::Integer(0)));
            cols.push(("dialed_at", V::Null));
            // What the last call said (a recall's `last_outcome`, `recall_at`, responses) stays until this
            // attempt is placed: a request that provably never left puts the contact back to waiting for its
            // recall, still shown with the outcome of the call that reached them.
        }
        Event::Scheduled { req_id } => {
            cols.push(("req_id", text(req_id)));
            cols.push(("dialed_at", V::Integer(at_ms)));
            cols.push(("detail", V::Null));
            // A new call: what the last one said is in the history of calls now.
            cols.push(("recall_at", V::Null));
            cols.push(("last_outcome", V::Null));
            cols.push(("finished_at", V::Null));
            cols.push(("responses", V::Null));
            cols.push(("attempts", V::Null));
        }
        Event::NotScheduled { detail } => cols.push(("detail", text(detail))),
        Event::GaveUp { detail } | Event::Ambiguous { detail } | Event::RecordLost { detail } => {
            cols.push(("detail", text(detail)));
            cols.push(("finished_at", V::Integer(at_ms)));
        }
        Event::IdClash { detail, req_id } => {
            cols.push(("detail", text(detail)));
            cols.push(("finished_at", V::Integer(at_ms)));
            if let Some(id) = req_id {
                cols.push(("req_id", text(id)));
            }
        }
        Event::Interrupted => {
            cols.push((
                "detail",
                text(
                    "the run stopped after deciding to call and before the gateway answered; the call may have been scheduled, so it is not redialed",
                ),
            ));
            cols.push(("finished_at", V::Integer(at_ms)));
        }
        Event::Made(a) | Event::Failed(a) => {
            cols.push(("responses", text(&a.responses)));
            cols.push(("attempts", V::Integer(i64::from(a.attempts))));
            cols.push(("detail", text(&a.notes)));
            cols.push(("finished_at", V::Integer(at_ms)));
        }
        Event::WrittenOff { detail, attempts } => {
            cols.push(("detail", text(detail)));
            cols.push(("attempts", V::Integer(i64::from(*attempts))));
            cols.push(("finished_at", V::Integer(at_ms)));
        }
        Event::Forgotten { gateway, action } => {
            cols.push((
                "detail",
                text(&format!(
                    "its call was open on gateway {gateway}, which the campaign no longer lists; written off by operator action {action} (--forget-gateway). The person may have been called: check that gateway before calling again"
                )),
            ));
            cols.push(("finished_at", V::Integer(at_ms)));
        }
        Event::Redial { action } => {
            cols.push((
                "detail",
                text(&format!(
                    "to be called again: operator action {action} (ivr-campaign redial-unknown)"
                )),
            ));
            cols.push(("finished_at", V::Null));
            cols.push(("req_id", V::Null));
            // The new attempt has no record on the gateway yet (the last one's removal is behind us).
            cols.push(("removed", V::Integer(0)));
            cols.push(("dialed_at", V::Null));
        }
        Event::Recall {
            outcome,
            answer,
            due_ms,
            not_before_ms,
        } => {
            cols.push(("last_outcome", text(outcome.as_str())));
            cols.push(("responses", text(&answer.responses)));
            cols.push(("attempts", V::Integer(i64::from(answer.attempts))));
            cols.push(("detail", text(&answer.notes)));
            cols.push(("finished_at", V::Integer(at_ms)));
            cols.push(("recall_at", V::Integer(*due_ms)));
            cols.push(("not_before", not_before_ms.map_or(V::Null, V::Integer)));
        }
        Event::Settle { .. } => {
            cols.push(("recall_at", V::Null));
            cols.push(("not_before", V::Null));
        }
    }
    cols
}

fn literal(v: &rusqlite::types::Value) -> String {
    use rusqlite::types::Value as V;
    match v {
        V::Null => "NULL".into(),
        V::Integer(i) => i.to_string(),
        V::Real(f) => f.to_string(),
        V::Text(t) => format!("'{}'", t.replace('\'', "''")),
        V::Blob(_) => "NULL".into(),
    }
}

fn new_campaign_id() -> String {
    let n = crate::determinism::random_u64();
    format!("{:012x}", n & 0xffff_ffff_ffff)
}

/// The writer loop: take everything queued, apply the writes in one transaction, commit (fsync), acknowledge,
/// then run the reads (so a read never reports a write that could still roll back).
///
/// The SQLite work of each group runs on tokio's blocking pool, with the connection moved in and back out:
/// async tasks never block on a disk, and (in tests on tokio's paused clock) virtual time stands still while a
/// group is being written, as it would for an instant fsync.
async fn writer(
    mut conn: Connection,
    mut rx: mpsc::UnboundedReceiver<Job>,
    health: watch::Sender<Health>,
    give_up: GiveUp,
    _lock: File,
) {
    let mut stop = false;
    while !stop {
        let Some(first) = rx.recv().await else { break };
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let (health, give_up) = (health.clone(), give_up.clone());
        let done = crate::determinism::unblock(move || {
            let stop = process(&mut conn, jobs, &health, &give_up);
            (conn, stop)
        })
        .await;
        match done {
            Ok((_, Next::Dead(unanswered))) => {
                std::future::pending::<()>().await;
                drop(unanswered);
                return;
            }
            Ok((c, s)) => {
                conn = c;
                stop = matches!(s, Next::Stop);
            }
            // The connection went with the panicking group; later writes fail with "the writer has stopped".
            Err(e) => {
                tracing::error!(error = %e, "the journal writer failed");
                return;
            }
        }
    }
}

/// One group: the writes in one transaction, their acknowledgements, then the reads. Returns whether to stop.
fn process(
    conn: &mut Connection,
    jobs: Vec<Job>,
    health: &watch::Sender<Health>,
    give_up: &GiveUp,
) -> Next {
    let mut stop = false;
    let mut writes = Vec::new();
    let mut reads = Vec::new();
    for job in jobs {
        match job {
            Job::Write(op, ack) => writes.push((op, ack)),
            Job::Read(f) => reads.push(f),
            Job::Stop => stop = true,
        }
    }
    if !writes.is_empty() {
        // The simulation tier's crash points: the group never committed, or committed and never acknowledged.
        if crate::determinism::fail_point(crate::determinism::Point::BeforeCommit) {
            return Next::Dead(writes);
        }
        let results = commit_retrying(conn, &writes, health, give_up);
        if crate::determinism::fail_point(crate::determinism::Point::AfterCommit) {
            return Next::Dead(writes);
        }
        for ((op, ack), result) in writes.into_iter().zip(results) {
            match ack {
                Some(ack) => {
                    let _ = ack.send(result);
                }
                None => {
                    if let Err(e) = result {
                        tracing::error!(op = ?op, error = %e, "journal write refused");
                        health.send_replace(Health::Refused(e.to_string()));
                    }
                }
            }
        }
    }
    for f in reads {
        f(conn);
    }
    if stop { Next::Stop } else { Next::Go }
}

/// What the writer does after a group.
enum Next {
    Go,
    Stop,
    /// The simulation tier crashed the process here: nothing more is committed or acknowledged (the writes
    /// are kept, unanswered, until the runtime is dropped).
    Dead(Vec<(Op, Option<Ack>)>),
}

/// Commits a group, retrying a failed commit (a full disk, a locked file) with a growing pause, so that no
/// acknowledged write is ever lost and no request id is dropped while the disk has no room. The engine sees
/// [`Health::Failing`] meanwhile and stops placing calls.
fn commit_retrying(
    conn: &mut Connection,
    writes: &[(Op, Option<Ack>)],
    health: &watch::Sender<Health>,
    give_up: &GiveUp,
) -> Vec<std::result::Result<Applied, WriteError>> {
    let mut pause = Duration::from_millis(100);
    let mut failures = 0u32;
    loop {
        match commit(conn, writes) {
            Ok(results) => {
                if failures > 0 {
                    tracing::warn!(
                        attempts = failures + 1,
                        "the journal write went through after failing"
                    );
                    health.send_if_modified(|h| {
                        let failing = matches!(h, Health::Failing(_));
                        if failing {
                            *h = Health::Ok;
                        }
                        failing
                    });
                }
                return results;
            }
            Err(e) => {
                failures += 1;
                let reason = e.to_string();
                if failures == 1 {
                    tracing::error!(error = %reason, "the journal cannot be written; retrying");
                }
                // Said once per spell of failures: the engine logs each change it is told of.
                health.send_if_modified(|h| {
                    let news = !matches!(h, Health::Failing(_));
                    if news {
                        *h = Health::Failing(reason.clone());
                    }
                    news
                });
                if give_up.load(std::sync::atomic::Ordering::Relaxed) || failures > MAX_COMMIT_TRIES
                {
                    return writes
                        .iter()
                        .map(|_| Err(WriteError::Io(reason.clone())))
                        .collect();
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// About an hour of retries at the 5 s cap: long enough for an operator to free disk space.
const MAX_COMMIT_TRIES: u32 = 720;

fn commit(
    conn: &mut Connection,
    writes: &[(Op, Option<Ack>)],
) -> rusqlite::Result<Vec<std::result::Result<Applied, WriteError>>> {
    let tx = conn.transaction()?;
    let mut results = Vec::with_capacity(writes.len());
    for (op, _) in writes {
        results.push(apply_op(&tx, op)?);
    }
    tx.commit()?;
    Ok(results)
}

fn current_state(tx: &rusqlite::Transaction<'_>, row: u64) -> rusqlite::Result<(State, u64)> {
    let (s, line): (String, i64) = tx
        .prepare_cached("SELECT state, line FROM contacts WHERE row = ?1")?
        .query_row([row as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok((State::parse(&s).unwrap_or(State::Error), line as u64))
}

/// Applies one event as a compare-and-set: exactly one row must change, or the event is refused.
pub(crate) fn apply_event(
    tx: &rusqlite::Transaction<'_>,
    row: u64,
    event: &Event,
    at_ms: i64,
) -> rusqlite::Result<std::result::Result<Applied, WriteError>> {
    let kind = event.kind();
    let refused = |tx: &rusqlite::Transaction<'_>| -> rusqlite::Result<_> {
        let (from, line) = current_state(tx, row)?;
        Ok(Err(WriteError::Refused(Refused {
            line,
            from,
            kind: kind.as_str(),
        })))
    };
    if let Event::Scheduled { req_id } = event {
        let holder: Option<(i64, String, i64)> = tx
            .prepare_cached(
                // Ids are the gateway's own: two gateways may well give the same one.
                // A contact waiting for a recall keeps its last call's id, but that call is over and is not
                // polled: a gateway that gives the id again has reused it, which is no clash.
                "SELECT row, state, line FROM contacts WHERE req_id = ?1 AND row != ?2 AND state != 'pending'
                   AND gateway IS (SELECT gateway FROM contacts WHERE row = ?2) LIMIT 1",
            )?
            .query_row(params![req_id, row as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        if let Some((other, other_state, other_line)) = holder {
            let (_, line) = current_state(tx, row)?;
            let other_open = State::parse(&other_state).is_some_and(|s| !s.is_final());
            let mine = Event::IdClash {
                detail: format!(
                    "the gateway answered with request id {req_id}, which row {other_line} already has: a gateway fault. The call may have been placed; check the gateway before calling again"
                ),
                req_id: Some(req_id.clone()),
            };
            if let Err(e) = apply_event(tx, row, &mine, at_ms)? {
                return Ok(Err(e));
            }
            if other_open {
                let theirs = Event::IdClash {
                    detail: format!(
                        "the gateway gave this call's request id {req_id} to row {line} too, so its status can no longer be told apart; check the gateway"
                    ),
                    req_id: None,
                };
                if let Err(e) = apply_event(tx, other as u64, &theirs, at_ms)? {
                    return Ok(Err(e));
                }
            }
            return Ok(Ok(Applied::Clash {
                other_row: other as u64,
                other_open,
            }));
        }
    }
    let cols = columns(event, at_ms);
    // Bound, not inlined: one cached statement per event kind, whatever the values.
    let mut bound = vec![rusqlite::types::Value::Integer(row as i64)];
    let mut set: Vec<String> = Vec::with_capacity(cols.len());
    for (c, v) in cols {
        match v {
            Val::V(v) => {
                bound.push(v);
                set.push(format!("{c} = ?{}", bound.len()));
            }
            Val::Sql(e) => set.push(format!("{c} = {e}")),
            Val::Append(v) => {
                bound.push(v);
                set.push(appended(c, &format!("?{}", bound.len())));
            }
        }
    }
    let sql = format!(
        "UPDATE contacts SET {} WHERE row = ?1 AND {}",
        set.join(", "),
        kind.from_sql()
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let changed = stmt.execute(rusqlite::params_from_iter(bound))?;
    if changed != 1 {
        return refused(tx);
    }
    if let Some(outcome) = ends_attempt(event) {
        record_call(tx, row, outcome, matches!(event, Event::Recall { .. }))?;
    }
    Ok(Ok(Applied::Done))
}

/// The outcome an event gives the attempt it ends, for the history of calls.
fn ends_attempt(event: &Event) -> Option<&'static str> {
    Some(match event {
        Event::Made(_) => "made",
        Event::Failed(_) => "failed",
        Event::WrittenOff { .. } => "unresolved",
        Event::RecordLost { .. } | Event::GaveUp { .. } => "error",
        Event::Ambiguous { .. }
        | Event::IdClash { .. }
        | Event::Interrupted
        | Event::Forgotten { .. } => "unknown",
        Event::Recall { outcome, .. } => outcome.as_str(),
        _ => return None,
    })
}

/// Adds the attempt that just ended to the contact's history (`recalled`: the contact's attempt counter has
/// already moved on to the next call).
fn record_call(
    tx: &rusqlite::Transaction<'_>,
    row: u64,
    outcome: &str,
    recalled: bool,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR REPLACE INTO calls (row, attempt, intent_at, req_id, dialed_at, finished_at, outcome, detail, responses, gateway)
         SELECT row, attempt - ?3, intent_at, req_id, dialed_at, finished_at, ?2, detail, responses, gateway
         FROM contacts WHERE row = ?1",
    )?
    .execute(params![row as i64, outcome, i64::from(recalled)])?;
    Ok(())
}

fn apply_op(
    tx: &rusqlite::Transaction<'_>,
    op: &Op,
) -> rusqlite::Result<std::result::Result<Applied, WriteError>> {
    match op {
        Op::Apply { row, event, at_ms } => apply_event(tx, *row, event, *at_ms),
        Op::Removed { row, req_id } => {
            tx.prepare_cached("UPDATE contacts SET removed = 1 WHERE row = ?1 AND req_id = ?2")?
                .execute(params![*row as i64, req_id])?;
            Ok(Ok(Applied::Done))
        }
        Op::Reread { row, dial, tz } => {
            tx.prepare_cached(
                "UPDATE contacts SET dialed_number = ?2, tz = ?3, tz_source = ?4 WHERE row = ?1 AND state = 'pending'",
            )?
            .execute(params![
                *row as i64,
                dial,
                tz.as_ref().map(|(z, _)| z.as_str()),
                tz.as_ref().map(|(_, s)| s.as_str())
            ])?;
            Ok(Ok(Applied::Done))
        }
    }
}

fn stopped() -> Error {
    Error::Journal("the journal writer has stopped".into())
}

impl Journal {
    /// Queues a write and waits until it is committed to disk.
    pub async fn write(&self, op: Op) -> std::result::Result<Applied, WriteError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Job::Write(op, Some(ack)))
            .map_err(|_| WriteError::Io("the journal writer has stopped".into()))?;
        done.await
            .map_err(|_| WriteError::Io("the journal writer has stopped".into()))?
    }

    /// Applies an event to a contact, durably, now.
    pub async fn apply(&self, row: u64, event: Event) -> std::result::Result<Applied, WriteError> {
        self.write(Op::Apply {
            row,
            event,
            at_ms: crate::types::now_ms(),
        })
        .await
    }

    /// Queues a write whose durability nobody waits for (it still commits with its group, in order). A
    /// refusal shows on the health channel.
    pub fn write_later(&self, op: Op) {
        let _ = self.tx.send(Job::Write(op, None));
    }

    /// How the journal is doing.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.health.clone()
    }

    /// The process must end: a commit that keeps failing is given up on (its writers get an error) instead
    /// of being retried for up to an hour.
    pub fn give_up(&self) {
        self.give_up
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The write-ahead log was deleted under the run: what it holds is copied into the journal file now, and
    /// every later commit is copied at once, so that a crash from here on loses nothing the file had. (The
    /// connection still reads and writes the deleted log through its open handle.)
    pub fn rescue_wal(&self) {
        let _ = self.tx.send(Job::Read(Box::new(|c| {
            let done = c
                .execute_batch("PRAGMA wal_autocheckpoint=1;")
                .and_then(|()| c.query_row("PRAGMA wal_checkpoint(FULL)", [], |r| r.get::<_, i64>(0)));
            match done {
                Ok(0) => tracing::warn!("the journal's write-ahead log was deleted; its writes were saved into the journal file, and later ones are saved there at once"),
                Ok(_) | Err(_) => tracing::error!("the journal's write-ahead log was deleted and its writes could not all be saved into the journal file: a rerun may not see the last ones"),
            }
        })));
    }

    /// Runs a query on the writer's connection, after every write queued before it has committed.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job::Read(Box::new(move |c| {
                let _ = tx.send(f(c));
            })))
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Up to `limit` pending contacts after `after_row`, in input order (recalls only once they are due).
    pub async fn pending_after(
        &self,
        after_row: Option<u64>,
        limit: usize,
        now_ms: i64,
    ) -> Result<Vec<ContactRow>> {
        let after = after_row.map_or(-1, |r| r as i64);
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {CONTACT_COLUMNS} FROM contacts WHERE state = 'pending' AND row > ?1 AND (recall_at IS NULL OR recall_at <= ?3) ORDER BY row LIMIT ?2"
            ))?;
            let rows = st.query_map(params![after, limit as i64, now_ms], contact_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Pending contacts told to wait whose time has come, soonest first: a contact waiting for its window by
    /// the wall clock (`wall_ms`), one waiting for a recall by the campaign's steady time line (`steady_ms`,
    /// see [`crate::engine::Steady`]), on which its due time was written.
    pub async fn due(&self, wall_ms: i64, steady_ms: i64, limit: usize) -> Result<Vec<ContactRow>> {
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {CONTACT_COLUMNS} FROM contacts WHERE state = 'pending' AND not_before IS NOT NULL AND not_before <= CASE WHEN last_outcome IS NULL THEN ?1 ELSE ?3 END ORDER BY not_before, row LIMIT ?2"
            ))?;
            let rows = st.query_map(params![wall_ms, limit as i64, steady_ms], contact_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// The earliest time a waiting contact is to be looked at again, how many are waiting, and whether the
    /// first to fall due is a recall.
    pub async fn next_wait(&self) -> Result<Option<(i64, u64, bool)>> {
        self.read(|c| {
            let (at, n): (Option<i64>, i64) = c.query_row(
                "SELECT MIN(not_before), COUNT(*) FROM contacts WHERE state = 'pending' AND not_before IS NOT NULL",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let Some(at) = at else { return Ok(None) };
            // Whether the first to fall due is a recall (its wait is the recall delay, not a window).
            let recall: bool = c.query_row(
                "SELECT EXISTS (SELECT 1 FROM contacts WHERE state = 'pending' AND not_before = ?1 AND last_outcome IS NOT NULL)",
                [at],
                |r| r.get(0),
            )?;
            Ok(Some((at, n as u64, recall)))
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
            let mut st = c.prepare_cached(&format!(
                "SELECT {CONTACT_COLUMNS} FROM contacts WHERE state = 'dialed' AND row > ?1 ORDER BY row LIMIT ?2"
            ))?;
            let rows = st.query_map(params![after, limit as i64], contact_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Final contacts whose gateway record was never removed (a run stopped between the two): row, request
    /// id, gateway.
    pub async fn unremoved(&self) -> Result<Vec<(u64, String, Option<String>)>> {
        self.read(|c| {
            // An id two contacts hold on one gateway (a gateway that gave it twice) is never removed: whose
            // record it is now, nobody knows.
            let mut st = c.prepare(
                "SELECT row, req_id, gateway FROM contacts AS c
                 WHERE removed = 0 AND req_id IS NOT NULL
                   AND (state IN ('made', 'failed', 'unresolved')
                        OR (state = 'pending' AND last_outcome IS NOT NULL))
                   AND (SELECT COUNT(*) FROM contacts AS o
                        WHERE o.req_id = c.req_id AND o.gateway IS c.gateway) = 1",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, String>(1)?,
                    r.get(2)?,
                ))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// Calls still open (a request id, no final result) per gateway they are on.
    pub async fn open_by_gateway(&self) -> Result<Vec<(Option<String>, u64)>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT gateway, COUNT(*) FROM contacts WHERE state = 'dialed' GROUP BY gateway ORDER BY gateway",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// The operator's `--forget-gateway`: the calls open on `gateway` are written off as `unknown`, recorded as
    /// one action. Returns how many.
    pub async fn forget_gateway(&self, gateway: String) -> Result<u64> {
        self.read(move |c| {
            let tx = c.unchecked_transaction()?;
            let rows: Vec<i64> = {
                let mut st = tx.prepare(
                    "SELECT row FROM contacts WHERE state = 'dialed' AND gateway = ?1 ORDER BY row",
                )?;
                let rows = st.query_map([&gateway], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let now = crate::types::now_ms();
            tx.execute(
                "INSERT INTO actions (at, action, contacts, detail) VALUES (?1, 'forget-gateway', ?2, ?3)",
                params![now, rows.len() as i64, format!("gateway {gateway}")],
            )?;
            let action = tx.last_insert_rowid();
            let event = Event::Forgotten {
                gateway: gateway.clone(),
                action,
            };
            for row in &rows {
                if let Err(e) = apply_event(&tx, *row as u64, &event, now)? {
                    return Err(Error::Internal(e.to_string()));
                }
            }
            tx.commit()?;
            Ok(rows.len() as u64)
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
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    /// A fact recorded about the campaign, if any.
    pub async fn get_meta(&self, key: &'static str) -> Result<Option<String>> {
        self.read(move |c| Ok(meta(c, key)?)).await
    }

    /// Records a fact about the campaign (how the list is read, the campaign's zone) for later runs and views.
    pub async fn set_meta(&self, key: &'static str, value: String) -> Result<()> {
        self.read(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )?;
            Ok(())
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
                )?;
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

/// What `redial-unknown` did.
#[derive(Debug, Clone)]
pub struct Redialed {
    pub action: i64,
    /// Data row numbers (as in the results file) to be called again by the next run.
    pub lines: Vec<u64>,
    /// The campaign's `max-attempts`, as its last run had it (none without a recall policy).
    pub max_attempts: Option<u32>,
    /// The rows whose next call goes past `max-attempts`, with which call it is: a redial is the operator's
    /// decision, and the policy does not hold it back, so the operator is told.
    pub beyond: Vec<(u64, u32)>,
}

impl Redialed {
    /// What the command tells the operator.
    pub fn message(&self, dir: &Path) -> String {
        if self.lines.is_empty() {
            return format!("no unknown contact to call again in {}", dir.display());
        }
        let rows: Vec<String> = self.lines.iter().map(u64::to_string).collect();
        let mut out = format!(
            "{} contact(s) will be called again by the next run (rows {}); recorded as action {} in {}.",
            self.lines.len(),
            rows.join(", "),
            self.action,
            dir.display()
        );
        if let (Some(max), false) = (self.max_attempts, self.beyond.is_empty()) {
            let each: Vec<String> = self
                .beyond
                .iter()
                .map(|(line, call)| format!("row {line} gets call {call}"))
                .collect();
            out.push_str(&format!(
                " Past max-attempts ({max}), which a redial does not stop: {}.",
                each.join(", ")
            ));
        }
        out.push_str(" The results file still shows them unknown until that run");
        out
    }
}

/// Where a run records its `max-attempts` for `redial-unknown` (empty without a recall policy).
pub const MAX_ATTEMPTS_META: &str = "max_attempts";

/// The operator's one-off action: the contacts `unknown` now (all, or those of the given rows) are called
/// again by the next run, accepting that some may be called a second time. Recorded with its time in the
/// journal's `actions`. Contacts whose request was interrupted by a crash are not among them until a run has
/// reported them `unknown` (they are `intent` until then, and the operator has not seen them).
pub fn redial_unknown(dir: &Path, only_lines: Option<&[u64]>) -> Result<Redialed> {
    let _lock = lock(dir)?;
    let db_path = dir.join(DB_FILE);
    if !usable(&db_path) {
        return Err(Error::NoInput(format!(
            "no journal at {}",
            db_path.display()
        )));
    }
    let mut conn = open_connection(&db_path)?;
    let tx = conn.transaction()?;
    let unknown: Vec<(u64, u32)> = {
        let mut st =
            tx.prepare("SELECT line, attempt FROM contacts WHERE state = 'unknown' ORDER BY row")?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)?))
        })?;
        rows.map(|l| l.map(|(line, attempt)| (line, attempt.max(1) as u32 + 1)))
            .collect::<rusqlite::Result<_>>()?
    };
    let mut lines: Vec<u64> = unknown.iter().map(|(l, _)| *l).collect();
    let max_attempts = meta(&tx, MAX_ATTEMPTS_META)?.and_then(|m| m.parse::<u32>().ok());
    if let Some(only) = only_lines {
        let missing: Vec<String> = only
            .iter()
            .filter(|l| !lines.contains(l))
            .map(|l| l.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(Error::Usage(format!(
                "row(s) {} are not unknown; only unknown contacts can be called again",
                missing.join(", ")
            )));
        }
        lines.retain(|l| only.contains(l));
    }
    if lines.is_empty() {
        // Nothing done, nothing recorded.
        return Ok(Redialed {
            action: 0,
            lines,
            max_attempts,
            beyond: Vec::new(),
        });
    }
    let beyond: Vec<(u64, u32)> = unknown
        .into_iter()
        .filter(|(l, call)| lines.contains(l) && max_attempts.is_some_and(|m| *call > m))
        .collect();
    let now = crate::types::now_ms();
    let shown: Vec<String> = lines.iter().map(u64::to_string).collect();
    tx.execute(
        "INSERT INTO actions (at, action, contacts, detail) VALUES (?1, 'redial-unknown', ?2, ?3)",
        params![now, lines.len() as i64, format!("rows {}", shown.join(","))],
    )?;
    let action = tx.last_insert_rowid();
    {
        let event = Event::Redial { action };
        let set = columns(&event, now)
            .iter()
            .map(|(c, v)| v.assign_literal(c))
            .collect::<Vec<_>>()
            .join(", ");
        let mut st = tx.prepare(&format!(
            "UPDATE contacts SET {set} WHERE line = ?1 AND {}",
            event.kind().from_sql()
        ))?;
        for l in &lines {
            st.execute([*l as i64])?;
        }
    }
    tx.commit()?;
    Ok(Redialed {
        action,
        lines,
        max_attempts,
        beyond,
    })
}

/// Counts per state on a connection.
pub fn counts_on(conn: &Connection) -> Result<Vec<(State, u64)>> {
    let mut st = conn.prepare("SELECT state, COUNT(*) FROM contacts GROUP BY state")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = Vec::new();
    for r in rows {
        let (s, n) = r?;
        let state = State::parse(&s)
            .ok_or_else(|| Error::Journal(format!("unknown state {s:?} in the journal")))?;
        out.push((state, n as u64));
    }
    out.sort();
    Ok(out)
}

/// Counts per state, read with a separate read-only connection (works while another process runs the
/// campaign: WAL readers do not block the writer).
/// One gateway's share of a campaign, over all its runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayShare {
    pub key: String,
    /// Calls requested of it (every attempt; those whose answer was lost too).
    pub calls: u64,
    /// Attempts that ended, by outcome (`made`, `failed`, `unknown`, …).
    pub outcomes: BTreeMap<String, u64>,
    /// Calls on it still open (being requested, or polled).
    pub open: u64,
    /// Time it was unreachable, over every run.
    pub outage_ms: u64,
}

/// Each gateway's calls, outcomes and outage time (empty for a journal from before gateways were recorded).
pub fn gateways_on(conn: &Connection) -> Result<Vec<GatewayShare>> {
    let has = |table: &str| -> Result<bool> {
        Ok(conn
            .prepare(&format!(
                "SELECT 1 FROM pragma_table_info('{table}') WHERE name = 'gateway'"
            ))?
            .exists([])?)
    };
    if !has("contacts")? || !has("calls")? {
        return Ok(Vec::new());
    }
    let mut by: BTreeMap<String, GatewayShare> = BTreeMap::new();
    fn entry(by: &mut BTreeMap<String, GatewayShare>, key: String) -> &mut GatewayShare {
        let e = by.entry(key.clone()).or_default();
        e.key = key;
        e
    }
    let mut st = conn.prepare(
        "SELECT gateway, outcome, COUNT(*) FROM calls WHERE gateway IS NOT NULL GROUP BY gateway, outcome",
    )?;
    for r in st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })? {
        let (key, outcome, n) = r?;
        let e = entry(&mut by, key);
        e.calls += n as u64;
        *e.outcomes.entry(outcome).or_insert(0) += n as u64;
    }
    let mut st = conn.prepare(
        "SELECT gateway, COUNT(*) FROM contacts WHERE gateway IS NOT NULL AND state IN ('intent', 'dialed') GROUP BY gateway",
    )?;
    for r in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (key, n) = r?;
        let e = entry(&mut by, key);
        e.calls += n as u64;
        e.open += n as u64;
    }
    let mut st = conn.prepare(
        "SELECT substr(key, 11), value FROM meta WHERE substr(key, 1, 10) = 'outage_ms:'",
    )?;
    for r in st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
        let (key, ms) = r?;
        entry(&mut by, key).outage_ms = ms.max(0) as u64;
    }
    Ok(by.into_values().collect())
}

pub fn counts(db_path: &Path) -> Result<Vec<(State, u64)>> {
    counts_on(&open_read_only(db_path)?)
}

/// What a journal is bound to, read back from it (to finish a campaign whose list is gone).
#[derive(Debug, Clone)]
pub struct StoredBinding {
    pub digest: String,
    pub headers: ByteRecord,
    pub delimiter: u8,
    pub reading: Option<String>,
}

pub fn stored_binding(db_path: &Path) -> Result<StoredBinding> {
    let conn = open_read_only(db_path)?;
    let (headers, delimiter) = layout(&conn)?;
    Ok(StoredBinding {
        digest: meta(&conn, "input_digest")?
            .ok_or_else(|| Error::Journal(format!("{} is bound to no list", db_path.display())))?,
        headers,
        delimiter,
        reading: meta(&conn, "reading")?,
    })
}

/// Whether `db_path` is a journal this program made (it exists, is not empty, and has its binding).
pub fn usable(db_path: &Path) -> bool {
    if std::fs::metadata(db_path).map_or(true, |m| m.len() == 0) {
        return false;
    }
    open_read_only(db_path)
        .and_then(|c| Ok(meta(&c, "input_digest")?))
        .is_ok_and(|d| d.is_some())
}

/// Opens the journal for reading only.
pub fn open_read_only(db_path: &Path) -> Result<Connection> {
    if !db_path.exists() {
        return Err(Error::NoInput(format!(
            "no journal at {}",
            db_path.display()
        )));
    }
    let conn = Connection::open_with_flags(
        db_path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::Journal(format!("cannot open {}: {e}", db_path.display())))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // Views read every layout `run` migrates, without migrating it.
    super::compat::read_as_current(&conn)?;
    Ok(conn)
}

/// The input's header row and delimiter as the journal stored them. (A journal of the first release keeps
/// `meta` values with text affinity, so either storage class is read.)
pub fn layout(conn: &Connection) -> Result<(ByteRecord, u8)> {
    use rusqlite::types::Value;
    let value = |key: &str| -> Result<Option<Value>> {
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    };
    let headers = match value("headers")? {
        Some(Value::Blob(b)) => decode_record(&b),
        Some(Value::Text(t)) => decode_record(t.as_bytes()),
        _ => None,
    }
    .ok_or_else(|| Error::Journal("the journal holds no header row".into()))?;
    let delimiter = match value("delimiter")? {
        Some(Value::Integer(d)) => u8::try_from(d).ok(),
        Some(Value::Text(t)) => t.parse().ok(),
        _ => None,
    }
    .unwrap_or(b',');
    Ok((headers, delimiter))
}

#[cfg(test)]
mod tests;
