//! The journal: the campaign's truth, in SQLite (WAL, `synchronous=FULL`).
//!
//! Every contact's transition is committed here before the runner acts on it: the intent to dial before the
//! call request is sent, the request id as soon as it arrives, the final result before the gateway record is
//! removed. One thread owns the connection and commits whatever has queued up in one transaction (group
//! commit), acknowledging each write only after its commit is on disk. Callers that must not act before a
//! write is durable await its acknowledgement.
//!
//! A run holds an OS lock (`flock`) on `lock` in the state directory for its whole life. The kernel drops it
//! when the process dies, however it dies, so a crash never blocks the next run.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::error::{Error, Result};

/// Journal file inside the state directory.
pub const DB_FILE: &str = "journal.sqlite";
const LOCK_FILE: &str = "lock";
/// Most queued operations applied in one transaction.
const MAX_GROUP: usize = 4096;

/// A contact's state in the journal. Final states never change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// Not yet dialed.
    Pending,
    /// Intent to dial recorded; the call request may be on its way.
    Intent,
    /// The gateway gave a request id; being polled.
    Dialed,
    Made,
    Failed,
    /// No final status before the poll deadline.
    Unresolved,
    /// The request may or may not have been scheduled; never redialed automatically.
    Unknown,
    Error,
    Invalid,
    Duplicate,
    /// On a suppression list.
    Suppressed,
    /// At the cap of calls per number.
    Capped,
}

impl State {
    pub const ALL: [State; 12] = [
        State::Pending,
        State::Intent,
        State::Dialed,
        State::Made,
        State::Failed,
        State::Unresolved,
        State::Unknown,
        State::Error,
        State::Invalid,
        State::Duplicate,
        State::Suppressed,
        State::Capped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Intent => "intent",
            State::Dialed => "dialed",
            State::Made => "made",
            State::Failed => "failed",
            State::Unresolved => "unresolved",
            State::Unknown => "unknown",
            State::Error => "error",
            State::Invalid => "invalid",
            State::Duplicate => "duplicate",
            State::Suppressed => "suppressed",
            State::Capped => "capped",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        !matches!(self, State::Pending | State::Intent | State::Dialed)
    }

    /// Final, but a person should look at it.
    pub fn needs_attention(self) -> bool {
        matches!(self, State::Unresolved | State::Unknown | State::Error)
    }
}

/// A write. Each is applied inside the current group's transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// About to send the call request. Must be durable before it is sent.
    Intent { row: u64, at_ms: i64 },
    /// The gateway did not schedule the call; it may be requested again.
    NotScheduled { row: u64, detail: String },
    /// Not dialed now (outside its calling window); stays pending with the reason.
    Deferred { row: u64, detail: String },
    /// The gateway answered with a request id.
    Dialed {
        row: u64,
        req_id: String,
        sent_at_ms: i64,
    },
    /// A final result.
    Finish(Finish),
    /// The gateway record was removed (or was already gone).
    Removed { row: u64 },
}

#[derive(Debug, Clone)]
pub struct Finish {
    pub row: u64,
    pub state: State,
    pub responses: String,
    pub attempts: u32,
    pub detail: String,
    pub at_ms: i64,
}

type Reader = Box<dyn FnOnce(&Connection) + Send>;
/// Tells a waiting writer whether its group committed.
type Ack = oneshot::Sender<Result<(), String>>;

enum Job {
    Write(Op, Option<Ack>),
    Read(Reader),
    /// Commit what is queued and end the thread.
    Stop,
}

/// A contact read back from the journal.
#[derive(Debug, Clone)]
pub struct ContactRow {
    pub row: u64,
    pub line: u64,
    pub e164: String,
    /// The contact's own zone (from the time zone column); `None` means the campaign's.
    pub tz: Option<String>,
    pub dialed_number: String,
    pub req_id: Option<String>,
    pub dialed_at_ms: Option<i64>,
}

const CONTACT_COLUMNS: &str = "row, line, dialed_number, req_id, dialed_at, e164, tz";

fn contact_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ContactRow> {
    Ok(ContactRow {
        row: r.get::<_, i64>(0)? as u64,
        line: r.get::<_, i64>(1)? as u64,
        dialed_number: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
        req_id: r.get(3)?,
        dialed_at_ms: r.get(4)?,
        e164: r.get::<_, Option<String>>(5)?.unwrap_or_default(),
        tz: r.get(6)?,
    })
}

/// What opening found.
#[derive(Debug, Clone, Default)]
pub struct Opened {
    /// The journal was created by this open (first run).
    pub created: bool,
    /// Contacts that had an intent and no request id: now `unknown`.
    pub interrupted_intents: u64,
    /// `unknown` contacts put back to pending because the operator asked for it.
    pub redialing_unknown: u64,
    /// Pending contacts newly found on a suppression list.
    pub suppressed: u64,
}

/// Marks pending contacts whose number is on a suppression list. Runs on every open, so an opt-out that
/// arrived since the last run is honoured for the contacts not yet dialed.
fn suppress_pending(
    conn: &mut Connection,
    suppressed: &crate::suppress::Suppressed,
) -> Result<u64> {
    let tx = conn.transaction()?;
    tx.execute_batch("CREATE TEMP TABLE IF NOT EXISTS suppress (e164 TEXT PRIMARY KEY, source TEXT); DELETE FROM suppress;")?;
    {
        let mut ins =
            tx.prepare("INSERT OR IGNORE INTO suppress (e164, source) VALUES (?1, ?2)")?;
        for (e164, source) in suppressed {
            ins.execute(params![e164, source])?;
        }
    }
    let n = tx.execute(
        "UPDATE contacts SET state = 'suppressed',
             detail = 'on suppression list ' || (SELECT source FROM suppress s WHERE s.e164 = contacts.e164)
         WHERE state = 'pending' AND e164 IN (SELECT e164 FROM suppress)",
        [],
    )?;
    tx.commit()?;
    Ok(n as u64)
}

/// Handle to the journal's writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::Sender<Job>,
}

/// Owns the run lock and the writer thread; dropping it closes the journal (after the queued writes).
pub struct JournalOwner {
    pub journal: Journal,
    thread: Option<JoinHandle<()>>,
    _lock: File,
    pub db_path: PathBuf,
    pub campaign_id: String,
}

impl JournalOwner {
    /// Waits for every queued write to be committed and closes the connection.
    /// Later writes through any clone of the handle fail.
    pub fn close(self) {
        drop(self);
    }
}

impl Drop for JournalOwner {
    fn drop(&mut self) {
        let _ = self.journal.tx.send(Job::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One row to store when the journal is created.
pub struct NewContact {
    pub row: u64,
    pub line: u64,
    pub tz: Option<String>,
    pub e164: Option<String>,
    pub dial: Option<String>,
    pub invalid: Option<String>,
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)
        .map_err(|e| Error::Journal(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
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
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
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
    tz            TEXT                   -- the contact's IANA zone from the input; NULL: the campaign's
);
CREATE INDEX IF NOT EXISTS contacts_e164 ON contacts(e164) WHERE e164 IS NOT NULL;
CREATE INDEX IF NOT EXISTS contacts_pending ON contacts(row) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS contacts_open ON contacts(state) WHERE state IN ('intent', 'dialed');
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

/// Opens (or creates) the journal in `dir`, bound to the input whose digest is `input_digest`.
///
/// On creation, `contacts` is drained into the journal in the same transaction as the binding, so a crash
/// mid-creation leaves no half-made journal. On reopen, contacts caught between intent and request id become
/// `unknown` (the request may have been scheduled; calling again could call a person twice).
pub fn open<I>(
    dir: &Path,
    input_digest: &str,
    input_name: &str,
    redial_unknown: bool,
    suppressed: &crate::suppress::Suppressed,
    contacts: impl FnOnce() -> Result<I>,
) -> Result<(JournalOwner, Opened)>
where
    I: Iterator<Item = Result<NewContact>>,
{
    let lock = lock(dir)?;
    let db_path = dir.join(DB_FILE);
    let mut conn = open_connection(&db_path)?;
    conn.execute_batch(SCHEMA)?;
    let stored: Option<String> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'input_digest'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let mut opened = Opened::default();
    match stored {
        Some(d) if d == input_digest => {}
        Some(_) => {
            let was: Option<String> = conn
                .query_row("SELECT value FROM meta WHERE key = 'input_name'", [], |r| {
                    r.get(0)
                })
                .optional()?;
            return Err(Error::Config(format!(
                "the journal in {} belongs to a different contact list (made from {}); the rows of {input_name} have changed since. Use another --state or --output for a new campaign",
                dir.display(),
                was.unwrap_or_else(|| "another file".into())
            )));
        }
        None => {
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM contacts", [])?;
            {
                let mut insert = tx.prepare(
                    "INSERT INTO contacts (row, line, e164, dialed_number, state, detail, tz) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                let mut first_seen =
                    tx.prepare("SELECT line FROM contacts WHERE e164 = ?1 ORDER BY row LIMIT 1")?;
                for c in contacts()? {
                    let c = c?;
                    let (state, detail) = match (&c.e164, &c.invalid) {
                        (_, Some(reason)) => (State::Invalid, Some(reason.clone())),
                        (Some(e164), None) => {
                            let first: Option<i64> =
                                first_seen.query_row([e164], |r| r.get(0)).optional()?;
                            match first {
                                Some(line) => {
                                    (State::Duplicate, Some(format!("same number as row {line}")))
                                }
                                None => (State::Pending, None),
                            }
                        }
                        (None, None) => (State::Invalid, Some("no phone number".to_string())),
                    };
                    insert.execute(params![
                        c.row as i64,
                        c.line as i64,
                        c.e164,
                        c.dial,
                        state.as_str(),
                        detail,
                        c.tz
                    ])?;
                }
            }
            let campaign_id = new_campaign_id();
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('input_digest', ?1), ('input_name', ?2), ('campaign_id', ?3), ('created_at', ?4)",
                params![input_digest, input_name, campaign_id, jiff::Timestamp::now().to_string()],
            )?;
            tx.commit()?;
            opened.created = true;
        }
    }
    opened.interrupted_intents = conn.execute(
        "UPDATE contacts SET state = 'unknown', finished_at = ?1,
             detail = 'the run stopped after deciding to call and before the gateway answered; the call may have been scheduled, so it is not redialed'
         WHERE state = 'intent'",
        [jiff::Timestamp::now().as_millisecond()],
    )? as u64;
    if redial_unknown {
        // The operator accepts that these may be called a second time.
        opened.redialing_unknown = conn.execute(
            "UPDATE contacts SET state = 'pending', detail = NULL, finished_at = NULL WHERE state = 'unknown'",
            [],
        )? as u64;
    }
    if !suppressed.is_empty() {
        opened.suppressed = suppress_pending(&mut conn, suppressed)?;
    }
    let campaign_id: String = conn.query_row(
        "SELECT value FROM meta WHERE key = 'campaign_id'",
        [],
        |r| r.get(0),
    )?;

    let (tx, rx) = mpsc::channel::<Job>();
    let thread = std::thread::Builder::new()
        .name("journal".into())
        .spawn(move || writer(conn, rx))
        .map_err(|e| Error::Internal(format!("cannot start the journal thread: {e}")))?;
    Ok((
        JournalOwner {
            journal: Journal { tx },
            thread: Some(thread),
            _lock: lock,
            db_path,
            campaign_id,
        },
        opened,
    ))
}

fn new_campaign_id() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("{:012x}", n & 0xffff_ffff_ffff)
}

/// The writer loop: take everything queued, apply the writes in one transaction, commit (fsync), acknowledge,
/// then run the reads (so a read never reports a write that could still roll back).
fn writer(mut conn: Connection, rx: mpsc::Receiver<Job>) {
    let mut failed: Option<String> = None;
    let mut stop = false;
    while !stop {
        let Ok(first) = rx.recv() else { break };
        let mut writes = Vec::new();
        let mut reads = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Write(op, ack) => writes.push((op, ack)),
                Job::Read(f) => reads.push(f),
                Job::Stop => stop = true,
            }
            if !stop && writes.len() < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        if !writes.is_empty() {
            let result = match &failed {
                Some(e) => Err(e.clone()),
                None => commit(&mut conn, &writes).map_err(|e| e.to_string()),
            };
            if let Err(e) = &result {
                // After a failed commit nothing later can be trusted to be durable: fail every later write too.
                failed.get_or_insert_with(|| e.clone());
            }
            for (_, ack) in writes {
                if let Some(ack) = ack {
                    let _ = ack.send(result.clone());
                }
            }
        }
        for f in reads {
            f(&conn);
        }
    }
}

fn commit(conn: &mut Connection, writes: &[(Op, Option<Ack>)]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for (op, _) in writes {
        apply_op(&tx, op)?;
    }
    tx.commit()
}

fn apply_op(tx: &rusqlite::Transaction<'_>, op: &Op) -> rusqlite::Result<()> {
    match op {
        Op::Intent { row, at_ms } => {
            tx.prepare_cached(
                "UPDATE contacts SET state = 'intent', intent_at = ?2 WHERE row = ?1",
            )?
            .execute(params![*row as i64, at_ms])?;
        }
        Op::Deferred { row, detail } => {
            tx.prepare_cached(
                "UPDATE contacts SET detail = ?2 WHERE row = ?1 AND state = 'pending'",
            )?
            .execute(params![*row as i64, detail])?;
        }
        Op::NotScheduled { row, detail } => {
            tx.prepare_cached("UPDATE contacts SET state = 'pending', detail = ?2 WHERE row = ?1 AND state = 'intent'")?
                .execute(params![*row as i64, detail])?;
        }
        Op::Dialed {
            row,
            req_id,
            sent_at_ms,
        } => {
            tx.prepare_cached("UPDATE contacts SET state = 'dialed', req_id = ?2, dialed_at = ?3, detail = NULL WHERE row = ?1")?
                .execute(params![*row as i64, req_id, sent_at_ms])?;
        }
        Op::Finish(f) => {
            tx.prepare_cached(
                "UPDATE contacts SET state = ?2, responses = ?3, attempts = ?4, detail = ?5, finished_at = ?6 WHERE row = ?1",
            )?
            .execute(params![f.row as i64, f.state.as_str(), f.responses, f.attempts, f.detail, f.at_ms])?;
        }
        Op::Removed { row } => {
            tx.prepare_cached("UPDATE contacts SET removed = 1 WHERE row = ?1")?
                .execute(params![*row as i64])?;
        }
    }
    Ok(())
}

impl Journal {
    /// Queues a write and waits until it is committed to disk.
    pub async fn write(&self, op: Op) -> Result<()> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Job::Write(op, Some(ack)))
            .map_err(|_| Error::Journal("the journal writer has stopped".into()))?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Journal(e)),
            Err(_) => Err(Error::Journal("the journal writer has stopped".into())),
        }
    }

    /// Queues a write whose durability nobody waits for (it still commits with its group, in order).
    pub fn write_later(&self, op: Op) {
        let _ = self.tx.send(Job::Write(op, None));
    }

    /// Runs a query on the writer's connection, after every write queued before it has committed.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job::Read(Box::new(move |c| {
                let _ = tx.send(f(c));
            })))
            .map_err(|_| Error::Journal("the journal writer has stopped".into()))?;
        rx.await
            .map_err(|_| Error::Journal("the journal writer has stopped".into()))?
            .map_err(Error::from)
    }

    /// Up to `limit` pending contacts after `after_row`, in input order.
    pub async fn pending_after(
        &self,
        after_row: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ContactRow>> {
        let after = after_row.map_or(-1, |r| r as i64);
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {CONTACT_COLUMNS} FROM contacts WHERE state = 'pending' AND row > ?1 ORDER BY row LIMIT ?2"
            ))?;
            let rows = st.query_map(params![after, limit as i64], contact_row)?;
            rows.collect()
        })
        .await
    }

    /// Contacts with a request id and no final result: to be polled, never redialed.
    pub async fn dialed(&self) -> Result<Vec<ContactRow>> {
        self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {CONTACT_COLUMNS} FROM contacts WHERE state = 'dialed' ORDER BY row"
            ))?;
            let rows = st.query_map([], contact_row)?;
            rows.collect()
        })
        .await
    }

    /// Final contacts whose gateway record was never removed (a run stopped between the two).
    pub async fn unremoved(&self) -> Result<Vec<(u64, String)>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT row, req_id FROM contacts
                 WHERE removed = 0 AND req_id IS NOT NULL AND state IN ('made', 'failed', 'unresolved')",
            )?;
            let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?)))?;
            rows.collect()
        })
        .await
    }
}

/// Counts per state, read with a separate read-only connection (works while another process runs the
/// campaign: WAL readers do not block the writer).
pub fn counts(db_path: &Path) -> Result<Vec<(State, u64)>> {
    let conn = open_read_only(db_path)?;
    let mut st = conn.prepare("SELECT state, COUNT(*) FROM contacts GROUP BY state")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = Vec::new();
    for r in rows {
        let (s, n) = r?;
        if let Some(state) = State::parse(&s) {
            out.push((state, n as u64));
        }
    }
    out.sort();
    Ok(out)
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
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}
