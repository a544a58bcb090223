//! Opening a journal: the run lock, creation (every row of the list stored, with how the rules admit it),
//! binding to its list, migration of an older layout, and the recovery of requests a crash interrupted.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use csv::ByteRecord;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::apply::{apply_many, rows_for};
use super::schema::{SCHEMA_VERSION, layout_of, meta, migrate, store_layout};
use super::writer::{JournalOwner, spawn};
use super::{DB_FILE, LOCK_FILE, OnJournal};
use crate::contacts::{Admission, admit};
use crate::error::{Error, Result};
use crate::store::contact::{Event, Kind, State};

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

/// Takes the run lock on a state directory (creating it), or says who holds it.
pub(super) fn lock(dir: &Path) -> Result<File> {
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

/// Opens the journal's file for writing, in WAL mode with every commit fsynced.
pub(super) fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).on(path)?;
    conn.busy_timeout(Duration::from_secs(10)).on(path)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .on(path)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Journal(format!(
            "{} cannot use WAL mode (got {mode})",
            path.display()
        )));
    }
    // FULL: a commit is fsynced before it returns, so "intent recorded" survives power loss, not just kill -9.
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        .on(path)?;
    Ok(conn)
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
    let at = db_path.as_path();
    let mut conn = open_connection(at)?;
    let old_version = layout_of(&conn).on(at)?;
    if let Some(v) = old_version.filter(|v| *v > SCHEMA_VERSION) {
        return Err(Error::Config(format!(
            "the journal in {} was written by a newer ivr-campaign (layout {v}); run that version",
            dir.display()
        )));
    }
    migrate(&conn, old_version).on(at)?;
    let mut opened = Opened {
        migrated_from: old_version.filter(|v| *v < SCHEMA_VERSION),
        ..Opened::default()
    };
    match meta(&conn, "input_digest").on(at)? {
        Some(d) if d == binding.digest => {
            if old_version == Some(1) {
                // The first release kept no row copies: taken now, from the same list.
                let tx = conn.transaction().on(at)?;
                {
                    let mut set = tx
                        .prepare("UPDATE contacts SET record = ?2 WHERE row = ?1")
                        .on(at)?;
                    for c in contacts()? {
                        let c = c?;
                        set.execute(params![c.row as i64, c.record]).on(at)?;
                    }
                }
                store_layout(&tx, binding).on(at)?;
                tx.commit().on(at)?;
            }
        }
        Some(_) => {
            let was = meta(&conn, "input_name").on(at)?;
            return Err(Error::Config(format!(
                "the journal in {} belongs to a different contact list (made from {}): the rows of {} have changed since. To finish that campaign, put its list back as it was; another --output starts a new campaign, which calls everyone on this list",
                dir.display(),
                was.unwrap_or_else(|| "another file".into()),
                binding.input_name
            )));
        }
        None => {
            let tx = conn.transaction().on(at)?;
            tx.execute("DELETE FROM contacts", []).on(at)?;
            ingest(&tx, contacts()?, at)?;
            let campaign_id = new_campaign_id();
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('input_digest', ?1), ('input_name', ?2), ('campaign_id', ?3), ('created_at', ?4)",
                params![binding.digest, binding.input_name, campaign_id, jiff::Timestamp::now().to_string()],
            )
            .on(at)?;
            store_layout(&tx, binding).on(at)?;
            tx.commit().on(at)?;
            opened.created = true;
        }
    }
    opened.latest_ms = conn
        .query_row(
            "SELECT COALESCE(MAX(MAX(COALESCE(intent_at, 0), COALESCE(dialed_at, 0), COALESCE(finished_at, 0))), 0) FROM contacts",
            [],
            |r| r.get(0),
        )
        .on(at)?;
    let now = crate::types::now_ms().max(opened.latest_ms);
    opened.interrupted_intents = recover(&mut conn, now, at)?;
    opened.reading = meta(&conn, "reading").on(at)?;
    let campaign_id: String = meta(&conn, "campaign_id")
        .on(at)?
        .ok_or_else(|| Error::Journal(format!("{} has no campaign id", db_path.display())))?;
    Ok((spawn(conn, lock, db_path, campaign_id), opened))
}

/// Crash recovery: every contact caught between its intent and the gateway's answer takes the `Interrupted`
/// event through the one apply path (its attempt ends in the history as `unknown`). Returns how many.
fn recover(conn: &mut Connection, now: i64, at: &Path) -> Result<u64> {
    let tx = conn.transaction().on(at)?;
    let rows = rows_for(&tx, Kind::Interrupted, "TRUE", []).on(at)?;
    let done = apply_many(&tx, &rows, now, |_| Event::Interrupted).on(at)?;
    if let Some(r) = done.refused.first() {
        // The rows were picked by the rule's own start states in this transaction: nothing is written.
        return Err(Error::Internal(format!("crash recovery: {r}")));
    }
    tx.commit().on(at)?;
    Ok(done.applied.len() as u64)
}

/// Stores every row, admitted by [`admit`]: a duplicate is judged against the rows stored before it, so the
/// first row with a number keeps it.
fn ingest<I>(tx: &rusqlite::Transaction<'_>, contacts: I, at: &Path) -> Result<()>
where
    I: Iterator<Item = Result<NewContact>>,
{
    use crate::contacts::Verdict;
    let mut insert = tx.prepare(
        "INSERT INTO contacts (row, line, e164, dialed_number, state, detail, tz, record, note, tz_source) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    ).on(at)?;
    let mut first_seen = tx
        .prepare("SELECT line FROM contacts WHERE e164 = ?1 ORDER BY row LIMIT 1")
        .on(at)?;
    for c in contacts {
        let c = c?;
        let admission = admit(&c.verdict, |e164| {
            first_seen
                .query_row([e164], |r| r.get::<_, i64>(0))
                .optional()
                .map(|l| l.map(|l| l as u64))
        })
        .on(at)?;
        let state = match admission {
            Admission::Callable => State::Pending,
            Admission::Invalid(_) => State::Invalid,
            Admission::Duplicate { .. } => State::Duplicate,
        };
        let (e164, dial) = match &c.verdict {
            Verdict::Call { e164, dial, .. } => (Some(e164.as_str()), Some(dial.as_str())),
            Verdict::Invalid(_) => (None, None),
        };
        insert
            .execute(params![
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
            ])
            .on(at)?;
    }
    Ok(())
}

fn new_campaign_id() -> String {
    let n = crate::determinism::random_u64();
    format!("{:012x}", n & 0xffff_ffff_ffff)
}

/// Whether `db_path` is a journal this program made (it exists, is not empty, and has its binding).
pub fn usable(db_path: &Path) -> bool {
    if std::fs::metadata(db_path).map_or(true, |m| m.len() == 0) {
        return false;
    }
    open_read_only(db_path)
        .and_then(|c| meta(&c, "input_digest").on(db_path))
        .is_ok_and(|d| d.is_some())
}

/// Opens the journal for reading only: the views' connection, which reads every layout `run` migrates
/// without migrating it, and never blocks a run's writer (WAL).
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
    .on(db_path)?;
    conn.busy_timeout(Duration::from_secs(10)).on(db_path)?;
    crate::store::compat::read_as_current(&conn)?;
    Ok(conn)
}
