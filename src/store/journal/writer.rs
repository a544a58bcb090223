//! The single writer: one task owns the journal's connection, takes everything queued, applies the writes in
//! one transaction, commits (fsync), acknowledges, then runs the reads (so a read never reports a write that
//! could still roll back). [`Journal`] is the handle every other part of the program holds.

use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::determinism::watch;
use tokio::task::JoinHandle;

use super::actions::Action;
use super::apply::apply_op;
use super::{Applied, Op, WriteError};
use crate::error::{Error, Result};
use crate::store::contact::Event;

/// Most queued operations applied in one transaction.
const MAX_GROUP: usize = 4096;
/// About an hour of retries at the 5 s cap: long enough for an operator to free disk space.
const MAX_COMMIT_TRIES: u32 = 720;

type Reader = Box<dyn FnOnce(&Connection) + Send>;
type Ack = oneshot::Sender<std::result::Result<Applied, WriteError>>;
type ActAck = oneshot::Sender<std::result::Result<u64, WriteError>>;

/// A write, applied in its group's transaction, and who waits for it.
enum Write {
    Op(Op, Option<Ack>),
    /// An operator's action on many contacts: all of it or none (a savepoint of its own in the group).
    Act(Action, ActAck),
}

/// What a write did.
enum Done {
    Op(std::result::Result<Applied, WriteError>),
    Act(std::result::Result<u64, WriteError>),
}

enum Job {
    Write(Write),
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

/// Starts the writer on an open journal; it holds `lock` until it ends.
pub(super) fn spawn(
    conn: Connection,
    lock: File,
    db_path: PathBuf,
    campaign_id: String,
) -> JournalOwner {
    let (tx, rx) = mpsc::unbounded_channel::<Job>();
    let (health_tx, health) = watch::channel(Health::Ok);
    let give_up = GiveUp::default();
    let writer = tokio::spawn(writer(conn, rx, health_tx, give_up.clone(), lock));
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
    }
}

/// The writer loop.
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
            Job::Write(w) => writes.push(w),
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
        for (write, result) in writes.into_iter().zip(results) {
            match (write, result) {
                (Write::Op(_, Some(ack)), Done::Op(result)) => {
                    let _ = ack.send(result);
                }
                (Write::Op(op, None), Done::Op(Err(e))) => {
                    tracing::error!(op = ?op, error = %e, "journal write refused");
                    health.send_replace(Health::Refused(e.to_string()));
                }
                (Write::Act(_, ack), Done::Act(result)) => {
                    let _ = ack.send(result);
                }
                // Done, and nobody waits for it.
                _ => {}
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
    Dead(Vec<Write>),
}

/// Commits a group, retrying a failed commit (a full disk, a locked file) with a growing pause, so that no
/// acknowledged write is ever lost and no request id is dropped while the disk has no room. The engine sees
/// [`Health::Failing`] meanwhile and stops placing calls.
fn commit_retrying(
    conn: &mut Connection,
    writes: &[Write],
    health: &watch::Sender<Health>,
    give_up: &GiveUp,
) -> Vec<Done> {
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
                        .map(|w| match w {
                            Write::Op(..) => Done::Op(Err(WriteError::Io(reason.clone()))),
                            Write::Act(..) => Done::Act(Err(WriteError::Io(reason.clone()))),
                        })
                        .collect();
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn commit(conn: &mut Connection, writes: &[Write]) -> rusqlite::Result<Vec<Done>> {
    let tx = conn.transaction()?;
    let mut results = Vec::with_capacity(writes.len());
    for write in writes {
        results.push(match write {
            Write::Op(op, _) => Done::Op(apply_op(&tx, op)?),
            Write::Act(action, _) => Done::Act(action.apply(&tx)?.map_err(WriteError::from)),
        });
    }
    tx.commit()?;
    Ok(results)
}

fn stopped() -> Error {
    Error::Journal("the journal writer has stopped".into())
}

fn stopped_write() -> WriteError {
    WriteError::Io("the journal writer has stopped".into())
}

impl Journal {
    /// Queues a write and waits until it is committed to disk.
    pub async fn write(&self, op: Op) -> std::result::Result<Applied, WriteError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Job::Write(Write::Op(op, Some(ack))))
            .map_err(|_| stopped_write())?;
        done.await.map_err(|_| stopped_write())?
    }

    /// Queues an operator's action and waits until it is committed: how many contacts it moved.
    pub(super) async fn act(&self, action: Action) -> std::result::Result<u64, WriteError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Job::Write(Write::Act(action, ack)))
            .map_err(|_| stopped_write())?;
        done.await.map_err(|_| stopped_write())?
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
        let _ = self.tx.send(Job::Write(Write::Op(op, None)));
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
}
