//! The coordinator: one loop that owns everything about what happens next.
//!
//! It owns the supply of contacts (calls placed by an earlier run to resume, then the list in input order,
//! then, in wait mode, contacts waiting for their window — read from the journal in batches, so memory is
//! bounded by the lines and a batch, never by the list), the retries, the call-request schedule, and per
//! gateway its free lines, its circuit breaker and its count of unreadable replies, and the reason the run is
//! ending. Each call request goes to the least loaded gateway that may take it; a call stays on the gateway
//! that holds it (its polls and removal go there, in this run and the next). Call tasks ([`super::call`]) report what they see over a bounded channel and return how they ended;
//! signals and the journal's health arrive on watch channels. Nothing is shared to be changed by others, so
//! no wake-up can be lost between a check and a wait.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::breaker::{Breaker, Wait};
use super::call::{self, Ctx, End, Report, Retry};
use super::pacing::{Pacer, Schedule};
use super::{Ending, GatewayStats, Settings, Stage, Stats, UNREADABLE_IN_A_ROW};
use crate::error::Result;
use crate::gateway::Gateway;
use crate::rules::{Candidate, Decision, Rules};
use crate::store::journal::Health;
use crate::store::{ContactRow, Event, Journal, Op};
use crate::types::Dur;

/// Contacts read from the journal at a time.
const BATCH: usize = 512;
/// After the stop, how long past the request timeout tasks get to record what they sent.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The longest sleep without looking around (signals and reports wake the loop anyway).
const IDLE: Duration = Duration::from_secs(3600);

/// Where the next contact comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Calls placed by an earlier run, to be polled (never requested again).
    Resume { after: Option<u64> },
    /// The pending contacts, in input order, each looked at once.
    List { after: Option<u64> },
    /// Contacts waiting for their window to open (wait mode) or for a recall to fall due.
    Waiting,
    /// Nothing more this run.
    Done,
}

/// A retry, by when it is due.
struct Due {
    at: Instant,
    seq: u64,
    retry: Retry,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// One gateway's share of what the coordinator owns.
struct Lane {
    /// Lines not taken. Below zero when a rerun finds more calls open on the gateway than it has lines now:
    /// those are polled, and no new call goes to it until it is below its lines again.
    free: i64,
    lines: u32,
    breaker: Breaker,
    /// Its own cap on call requests handed out, besides the campaign's.
    schedule: Option<Schedule>,
    /// Answers to call requests in a row that left their contact unknown.
    unreadable: u32,
    /// Call requests sent whose answer has not been judged yet. After an answer that left a contact unknown,
    /// the next request to this gateway waits for these: one at a time until an answer can be read again,
    /// so a gateway whose answers are lost cannot take the list down with it.
    awaiting: HashSet<u64>,
    /// Said that it is down past max-outage while others go on.
    written_off: bool,
}

impl Lane {
    /// Share of its lines taken, for choosing the least loaded.
    fn load(&self) -> f64 {
        (f64::from(self.lines) - self.free as f64) / f64::from(self.lines.max(1))
    }
}

/// A row handed out: its task (none while it waits to be retried) and the gateway whose line it holds.
struct Owned {
    task: Option<AbortHandle>,
    gw: Option<usize>,
}

/// What kept the last dispatch from going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blocked {
    Nothing,
    Until(Instant),
}

pub struct Coordinator {
    ctx: Arc<Ctx>,
    rules: Rules,
    signals: watch::Receiver<Stage>,
    stage: watch::Sender<Stage>,
    reports: mpsc::Receiver<Report>,
    health: watch::Receiver<Health>,
    tasks: JoinSet<(u64, End)>,
    /// Which row each task is for, so a task that fails still gives its line back.
    task_rows: HashMap<tokio::task::Id, u64>,
    /// Rows with a task, or waiting in `retries`: never handed out twice.
    owned: HashMap<u64, Owned>,
    retries: BinaryHeap<Reverse<Due>>,
    seq: u64,
    /// The campaign's schedule of call requests, across gateways.
    schedule: Option<Schedule>,
    lanes: Vec<Lane>,
    ending: Ending,
    phase: Phase,
    queue: VecDeque<ContactRow>,
    blocked: Blocked,
    /// When the waiting contacts are next due, while in [`Phase::Waiting`].
    wait_until: Option<Instant>,
    /// Something may have changed who is waiting (a task ended, a contact was deferred): look again now.
    wait_dirty: bool,
    drain_deadline: Option<Instant>,
    now_since: Option<Instant>,
    /// The last wait announced, so the log says it once.
    announced_wait: Option<i64>,
    housekeeping: Option<tokio::task::JoinHandle<()>>,
    /// Whether the signal and health channels are still open (a closed one would wake the loop forever).
    listening: (bool, bool),
    /// Told to stop again while stopping: end now, whatever is still being recorded.
    forced: bool,
    /// The journal file's identity when the run began, and when to look at it again.
    /// The journal file and its write-ahead log: the log holds every write since the last checkpoint, so
    /// losing it loses them as surely as losing the file.
    journal_file: Option<Vec<(std::path::PathBuf, FileId)>>,
    next_file_check: Instant,
    /// Recalls decided in this run, by row: not requested before this monotonic instant, however far the
    /// wall clock (by which the journal says they are due) moves meanwhile.
    not_before: HashMap<u64, Instant>,
}

/// Device and inode: a file deleted (or replaced) under an open connection no longer has the same pair at its
/// path.
type FileId = (u64, u64);

fn file_id(path: &std::path::Path) -> Option<FileId> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path).ok().map(|m| (0, m.len()))
    }
}

/// How often the journal file is checked for being deleted under the run.
const FILE_CHECK: Duration = Duration::from_secs(1);

impl Coordinator {
    pub fn new(
        settings: Settings,
        rules: Rules,
        gateways: Vec<Gateway>,
        journal: Journal,
        signals: watch::Receiver<Stage>,
        stats: Arc<Stats>,
    ) -> Coordinator {
        let first = *signals.borrow();
        let (stage, stage_rx) = watch::channel(first);
        let (reports_tx, reports) = mpsc::channel(256);
        let now = Instant::now();
        let schedule = Schedule::new(settings.rate, now);
        let named = settings.gateways.len() > 1;
        let lanes: Vec<Lane> = settings
            .gateways
            .iter()
            .map(|g| Lane {
                free: i64::from(g.lines),
                lines: g.lines,
                breaker: Breaker::new(settings.max_outage, named.then(|| g.key.clone())),
                schedule: Schedule::new(g.rate, now),
                unreadable: 0,
                awaiting: HashSet::new(),
                written_off: false,
            })
            .collect();
        if let Ok(mut by) = stats.by_gateway.lock() {
            *by = settings
                .gateways
                .iter()
                .map(|g| GatewayStats {
                    key: g.key.clone(),
                    lines: g.lines,
                    ..GatewayStats::default()
                })
                .collect();
        }
        let poll_lanes: Vec<crate::types::Rate> = settings
            .gateways
            .iter()
            .map(|_| settings.poll_rate)
            .collect();
        let send_lanes: Vec<crate::types::Rate> =
            settings.gateways.iter().map(|g| g.rate).collect();
        let health = journal.health();
        let journal_file = settings.journal_path.clone().and_then(|p| {
            let db = file_id(&p).map(|id| (p.clone(), id))?;
            let mut wal_path = p.into_os_string();
            wal_path.push("-wal");
            let wal_path = std::path::PathBuf::from(wal_path);
            let wal = file_id(&wal_path).map(|id| (wal_path, id));
            Some(std::iter::once(db).chain(wal).collect())
        });
        let ctx = Arc::new(Ctx {
            polls: Pacer::lanes(crate::types::Rate::Unlimited, &poll_lanes),
            sends: Pacer::lanes(settings.rate, &send_lanes),
            ledger: rules.ledger.clone(),
            written_ms: std::sync::atomic::AtomicI64::new(settings.written_floor_ms),
            settings,
            gateways,
            journal,
            stage: stage_rx,
            reports: reports_tx,
            stats,
        });
        Coordinator {
            ctx,
            rules,
            signals,
            stage,
            reports,
            health,
            tasks: JoinSet::new(),
            task_rows: HashMap::new(),
            owned: HashMap::new(),
            retries: BinaryHeap::new(),
            seq: 0,
            schedule,
            lanes,
            ending: Ending::Completed,
            phase: Phase::Resume { after: None },
            queue: VecDeque::new(),
            blocked: Blocked::Nothing,
            wait_until: None,
            wait_dirty: true,
            drain_deadline: None,
            now_since: None,
            announced_wait: None,
            housekeeping: None,
            listening: (true, true),
            forced: false,
            journal_file,
            next_file_check: Instant::now() + FILE_CHECK,
            not_before: HashMap::new(),
        }
    }

    /// The time by which waiting contacts fall due: the wall clock, but never ahead of the campaign's steady
    /// time line ([`super::Steady`]). A wall clock stepped forward, during the run or between runs, brings no
    /// recall (nor any deferred contact) forward; one stepped back only delays them, and the window is judged
    /// on the wall clock at the request anyway.
    fn due_now_ms(&self) -> i64 {
        self.ctx
            .settings
            .clock
            .now()
            .as_millisecond()
            .min(self.ctx.settings.steady.now_ms())
    }

    fn stage_now(&self) -> Stage {
        *self.stage.borrow()
    }

    pub async fn run(mut self) -> Result<Ending> {
        self.start_housekeeping().await?;
        let result = self.run_loop().await;
        if let Some(h) = self.housekeeping.take() {
            if self.stage_now() == Stage::Now {
                h.abort();
            }
            let _ = h.await;
        }
        let now = Instant::now();
        let outages: Vec<u64> = self
            .lanes
            .iter()
            .map(|l| l.breaker.outage_so_far(now).as_millis() as u64)
            .collect();
        // The summary's outage is the time every gateway was down at once; each one's is in `by_gateway`.
        let spans: Vec<_> = self.lanes.iter().map(|l| l.breaker.outages(now)).collect();
        self.ctx.stats.outage_ms.store(
            super::breaker::all_down(&spans).as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        if let Ok(mut by) = self.ctx.stats.by_gateway.lock() {
            for (g, ms) in by.iter_mut().zip(outages) {
                g.outage_ms = ms;
            }
        }
        result.map(|()| self.ending)
    }

    async fn run_loop(&mut self) -> Result<()> {
        loop {
            self.advance_stage();
            if self.stage_now() == Stage::Run {
                self.dispatch().await?;
            }
            if self.tasks.is_empty() && (self.stage_now() != Stage::Run || self.exhausted().await?)
            {
                return Ok(());
            }
            let overdue = self
                .now_since
                .is_some_and(|t| t.elapsed() > self.ctx.settings.request_timeout + STOP_GRACE)
                && !matches!(*self.health.borrow(), Health::Failing(_));
            if self.stage_now() == Stage::Now && (self.forced || overdue) {
                warn!(
                    tasks = self.tasks.len(),
                    "calls still recording after the stop; leaving them to the next run"
                );
                self.tasks.abort_all();
                while self.tasks.join_next().await.is_some() {}
                return Ok(());
            }
            let wake = self.next_wake();
            tokio::select! {
                biased;
                Some(r) = self.reports.recv() => self.on_report(r),
                Some(joined) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    // What a task reported before it ended comes first.
                    while let Ok(r) = self.reports.try_recv() {
                        self.on_report(r);
                    }
                    self.on_joined(joined);
                }
                changed = self.signals.changed(), if self.listening.0 => match changed {
                    Ok(()) => {
                        let s = *self.signals.borrow();
                        self.on_signal(s);
                    }
                    Err(_) => self.listening.0 = false,
                },
                changed = self.health.changed(), if self.listening.1 => match changed {
                    Ok(()) => {
                        let h = self.health.borrow().clone();
                        self.on_health(h);
                    }
                    Err(_) => self.listening.1 = false,
                },
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Moves the stage on when a reason to stop has come up.
    fn advance_stage(&mut self) {
        let now = Instant::now();
        if now >= self.next_file_check {
            self.next_file_check = now + FILE_CHECK;
            if let Some((path, _)) = self
                .journal_file
                .iter()
                .flatten()
                .find(|(path, id)| file_id(path) != Some(*id))
            {
                if path.as_os_str().to_string_lossy().ends_with("-wal") {
                    self.ctx.journal.rescue_wal();
                }
                let why = format!(
                    "the journal file {} was deleted or replaced while the run held it; nothing more is called, and the results come from the copy still open",
                    path.display()
                );
                self.journal_file = None;
                self.ending = self.ending.clone().worst(Ending::JournalFailed(why));
            }
        }
        if let Some(deadline) = self.outage_deadline()
            && now >= deadline
            && self.stage_now() != Stage::Now
        {
            if self.lanes.len() > 1 {
                error!(
                    max_outage = %Dur(self.ctx.settings.max_outage),
                    "every gateway has been unreachable for longer than max-outage; stopping with work left (rerun to resume)"
                );
            } else {
                error!(
                    max_outage = %Dur(self.ctx.settings.max_outage),
                    "the gateway has been unreachable for longer than max-outage; stopping with work left (rerun to resume)"
                );
            }
            self.ending = self.ending.clone().worst(Ending::Outage);
        }
        if self.lanes.len() > 1 {
            for (gw, lane) in self.lanes.iter_mut().enumerate() {
                let past = lane.breaker.outage_deadline().is_some_and(|d| now >= d);
                if past && !lane.written_off {
                    lane.written_off = true;
                    warn!(
                        gateway = %self.ctx.settings.gateways[gw].key,
                        max_outage = %Dur(self.ctx.settings.max_outage),
                        "this gateway has been unreachable for longer than max-outage; the other gateways go on, and its open calls are polled by the next run"
                    );
                } else if !past {
                    lane.written_off = false;
                }
            }
        }
        if let Some(d) = self.drain_deadline
            && now >= d
            && self.stage_now() == Stage::Drain
        {
            warn!(
                calls = self.tasks.len(),
                "drain timeout reached; calls still in progress are polled again by the next run"
            );
            self.ending = self.ending.clone().worst(Ending::DrainTimeout);
            self.set_stage(Stage::Now);
        }
        let severe = !matches!(
            self.ending,
            Ending::Completed | Ending::Interrupted | Ending::DrainTimeout
        );
        if severe && self.stage_now() != Stage::Now {
            if let Some(m) = self.ending.message() {
                error!("{m}");
            }
            self.set_stage(Stage::Now);
        }
    }

    fn set_stage(&mut self, to: Stage) {
        let from = self.stage_now();
        if to <= from {
            return;
        }
        self.stage.send_replace(to);
        if from == Stage::Run {
            // Contacts waiting to be requested again are pending in the journal already (they hold no line).
            for Reverse(d) in self.retries.drain() {
                self.owned.remove(&d.retry.contact.row);
            }
            self.queue.clear();
        }
        match to {
            Stage::Drain => {
                let deadline = Instant::now() + self.ctx.settings.drain_timeout;
                self.drain_deadline = Some(deadline);
                info!(calls = self.tasks.len(), timeout = %Dur(self.ctx.settings.drain_timeout), "stopped dialing; waiting for calls in progress");
            }
            Stage::Now => self.now_since = Some(Instant::now()),
            Stage::Run => {}
        }
    }

    fn on_signal(&mut self, s: Stage) {
        if s > Stage::Run {
            self.ending = self.ending.clone().worst(Ending::Interrupted);
        }
        // A journal that cannot be written stops the run by itself, and a signal then gives up on the writes.
        // A signal that arrives before the coordinator has taken the failure in (both can be ready at once)
        // is the same request, or the process would wait for a second one.
        let failing = matches!(*self.health.borrow(), Health::Failing(_));
        if self.stage_now() == Stage::Now || (s > Stage::Run && failing) {
            // Asked again while already stopping: the process must end. Whatever is still recording is left to
            // the next run, and a journal write that keeps failing is given up on (the request ids it held are
            // in the log already).
            self.forced = true;
            self.ctx.journal.give_up();
        }
        self.set_stage(s);
    }

    fn on_health(&mut self, h: Health) {
        match h {
            Health::Ok => {}
            Health::Failing(why) => {
                error!(error = %why, "the journal cannot be written; no more calls are placed, and writes are retried until they are saved (signal again to give up on them)");
                self.ending = self.ending.clone().worst(Ending::JournalFailed(why));
            }
            Health::Refused(why) => {
                self.ending = self.ending.clone().worst(Ending::Internal(why));
            }
        }
    }

    fn on_report(&mut self, r: Report) {
        let now = Instant::now();
        match r {
            Report::Answered { gw } => self.lanes[gw].breaker.answered(now),
            Report::Unreachable { gw, why } => self.lanes[gw].breaker.unreachable(now, &why),
            Report::CallReply {
                gw,
                row,
                unknown: None,
            } => {
                self.lanes[gw].awaiting.remove(&row);
                self.lanes[gw].unreadable = 0;
            }
            Report::CallReply {
                gw,
                row,
                unknown: Some(why),
            } => {
                let lane = &mut self.lanes[gw];
                lane.awaiting.remove(&row);
                lane.unreadable += 1;
                if lane.unreadable >= UNREADABLE_IN_A_ROW {
                    let why = if self.lanes.len() > 1 {
                        format!("gateway {}: {why}", self.ctx.settings.gateways[gw].key)
                    } else {
                        why
                    };
                    self.ending = self.ending.clone().worst(Ending::UnreadableGateway(why));
                }
            }
        }
    }

    /// Takes `row` off the books: its line (if it holds one) is free again, and its gateway stops waiting for
    /// its answer.
    fn release(&mut self, row: u64) {
        let Some(owned) = self.owned.remove(&row) else {
            return;
        };
        if let Some(gw) = owned.gw {
            let lane = &mut self.lanes[gw];
            lane.free += 1;
            lane.awaiting.remove(&row);
            lane.breaker.task_ended(row);
        }
    }

    fn on_joined(
        &mut self,
        joined: std::result::Result<(tokio::task::Id, (u64, End)), tokio::task::JoinError>,
    ) {
        let (row, end) = match joined {
            Ok((id, x)) => {
                self.task_rows.remove(&id);
                x
            }
            // Aborted by us (its line was given back then).
            Err(e) if e.is_cancelled() => {
                self.task_rows.remove(&e.id());
                return;
            }
            Err(e) => {
                if let Some(row) = self.task_rows.remove(&e.id()) {
                    self.release(row);
                }
                self.ending = self
                    .ending
                    .clone()
                    .worst(Ending::Internal(format!("a call task failed: {e}")));
                return;
            }
        };
        self.release(row);
        self.wait_dirty = true;
        match end {
            End::Final(_) | End::LeftOpen | End::NotSent => {}
            End::Recalled {
                contact,
                due_ms,
                due,
            } => {
                self.not_before.insert(contact.row, due);
                self.postpone_recall(&contact, due_ms)
            }
            End::Clash { other_row } => {
                if let Some(h) = self.owned.get(&other_row).and_then(|o| o.task.clone()) {
                    h.abort();
                    self.release(other_row);
                }
            }
            End::Retry(r) => {
                if self.stage_now() == Stage::Run {
                    // Nothing was scheduled: it may go to any gateway when it is due, before new contacts.
                    let at = Instant::now() + r.after.unwrap_or(Duration::ZERO);
                    self.owned.insert(
                        r.contact.row,
                        Owned {
                            task: None,
                            gw: None,
                        },
                    );
                    self.seq += 1;
                    self.retries.push(Reverse(Due {
                        at,
                        seq: self.seq,
                        retry: r,
                    }));
                }
            }
            End::Stop(e) => {
                self.ending = self.ending.clone().worst(e);
            }
        }
    }

    /// When the run stops for an outage: once every gateway has been down past max-outage.
    fn outage_deadline(&self) -> Option<Instant> {
        self.lanes
            .iter()
            .map(|l| l.breaker.outage_deadline())
            .collect::<Option<Vec<Instant>>>()
            .and_then(|d| d.into_iter().max())
    }

    /// The gateway the next call request goes to: of those with a free line that may take a request now, the
    /// least loaded one that answers; a gateway that is down gets a probe only when no other can take the
    /// call. `Err`: what to wait for.
    fn pick_gateway(&self, now: Instant) -> std::result::Result<usize, Blocked> {
        let mut best: Option<(f64, usize)> = None;
        let mut probe: Option<usize> = None;
        let mut until: Option<Instant> = None;
        for (gw, lane) in self.lanes.iter().enumerate() {
            if lane.free <= 0 || (lane.unreadable > 0 && !lane.awaiting.is_empty()) {
                continue;
            }
            match lane.breaker.may_send(now) {
                Err(Wait::Until(t)) => {
                    until = Some(until.map_or(t, |u| u.min(t)));
                    continue;
                }
                Err(Wait::Verdict) => continue,
                Ok(()) => {}
            }
            if let Some(t) = lane
                .schedule
                .as_ref()
                .map(Schedule::next)
                .filter(|t| *t > now)
            {
                until = Some(until.map_or(t, |u| u.min(t)));
                continue;
            }
            if lane.breaker.is_open() {
                probe.get_or_insert(gw);
                continue;
            }
            let load = lane.load();
            if best.is_none_or(|(b, _)| load < b) {
                best = Some((load, gw));
            }
        }
        best.map(|(_, gw)| gw)
            .or(probe)
            .ok_or_else(|| until.map_or(Blocked::Nothing, Blocked::Until))
    }

    /// The gateway a contact's call is on (a journal from before gateways were recorded had one: the first).
    fn gateway_of(&self, c: &ContactRow) -> Option<usize> {
        match &c.gateway {
            None => Some(0),
            Some(key) => self
                .ctx
                .settings
                .gateways
                .iter()
                .position(|g| g.key == *key),
        }
    }

    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let mut wake = now + IDLE;
        // Only times ahead: whatever was due by now was looked at in this turn of the loop (a deadline already
        // acted on, such as max-outage once the stop is under way, would otherwise wake the loop at once,
        // forever: a busy loop, and on a paused clock one that time never leaves).
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t.filter(|t| *t > now) {
                wake = wake.min(t);
            }
        };
        if let Blocked::Until(t) = self.blocked {
            consider(Some(t));
        }
        if self.stage_now() == Stage::Run {
            // A due retry that is blocked (rate, breaker) is covered by `blocked`.
            consider(
                self.retries
                    .peek()
                    .map(|Reverse(d)| d.at)
                    .filter(|at| *at > now),
            );
            // A wait already over is looked at by the next dispatch (which a due retry held back by the
            // breaker can end before it gets there).
            consider(self.wait_until);
        }
        consider(self.drain_deadline);
        consider(self.outage_deadline());
        if self.lanes.len() > 1 {
            for lane in &self.lanes {
                consider(lane.breaker.outage_deadline().filter(|_| !lane.written_off));
            }
        }
        if self.journal_file.is_some() {
            consider(Some(self.next_file_check));
        }
        consider(
            self.now_since
                .map(|t| t + self.ctx.settings.request_timeout + STOP_GRACE),
        );
        wake.max(now)
    }

    /// Hands out as many contacts as can go now.
    async fn dispatch(&mut self) -> Result<()> {
        self.blocked = Blocked::Nothing;
        loop {
            let now = Instant::now();
            let due_retry = self.retries.peek().is_some_and(|Reverse(d)| d.at <= now);
            if !due_retry && let Some(c) = self.next_resume().await? {
                // Already on its gateway: it is polled there whatever the free lines (it holds one).
                self.spawn_resume(c);
                continue;
            }
            if !self.lanes.iter().any(|l| l.free > 0) {
                return Ok(());
            }
            let (contact, refusals, is_retry) = if due_retry {
                let Some(Reverse(d)) = self.retries.pop() else {
                    return Ok(());
                };
                (d.retry.contact, d.retry.refusals, true)
            } else {
                match self.next_fresh().await? {
                    Some(c) => (c, 0, false),
                    None => return Ok(()),
                }
            };
            // A recall the policy no longer wants (it changed between runs, or the attempts are used up):
            // its last outcome stands.
            if let Some((outcome, responses)) = &contact.recall_of {
                let wanted = self.ctx.settings.recall.as_ref().is_some_and(|r| {
                    // Recorded only when its responses were certain.
                    r.wants(*outcome, responses, contact.attempt.saturating_sub(1), true)
                });
                if !wanted {
                    self.ctx.journal.write_later(Op::Apply {
                        row: contact.row,
                        event: Event::Settle {
                            outcome: *outcome,
                            detail: None,
                        },
                        at_ms: self.ctx.now_ms(),
                    });
                    if is_retry {
                        self.owned.remove(&contact.row);
                    }
                    continue;
                }
            }
            let cand = Candidate {
                e164: &contact.e164,
                tz: contact.tz.as_deref(),
            };
            let wall = self.ctx.settings.clock.now();
            let decision = match self.rules.touch_ended(contact.row, wall) {
                Some(ended) => ended,
                None => self.rules.decide(cand, wall),
            };
            if decision != Decision::Call {
                self.decided(&contact, decision);
                if is_retry {
                    self.owned.remove(&contact.row);
                }
                continue;
            }
            let send_by = self.rules.send_by(cand, self.ctx.settings.clock.now());
            let send_by = self.rules.touch_send_by(contact.row, send_by);
            let picked = self.pick_gateway(now).and_then(|gw| {
                match self.schedule.as_ref().map(Schedule::next) {
                    Some(next) if next > now => Err(Blocked::Until(next)),
                    _ => Ok(gw),
                }
            });
            let gw = match picked {
                Ok(gw) => gw,
                Err(b) => {
                    self.blocked = b;
                    if is_retry {
                        self.seq += 1;
                        self.retries.push(Reverse(Due {
                            at: now,
                            seq: self.seq,
                            retry: Retry {
                                contact,
                                refusals,
                                after: None,
                                why: String::new(),
                            },
                        }));
                    } else {
                        self.queue.push_front(contact);
                    }
                    return Ok(());
                }
            };
            if let Some(s) = self.schedule.as_mut() {
                s.take(now);
            }
            let lane = &mut self.lanes[gw];
            if let Some(s) = lane.schedule.as_mut() {
                s.take(now);
            }
            lane.breaker.sent(contact.row);
            lane.free -= 1;
            lane.awaiting.insert(contact.row);
            let (ctx, row) = (self.ctx.clone(), contact.row);
            let h = self.tasks.spawn(async move {
                (
                    row,
                    call::request(ctx, contact, refusals, gw, send_by).await,
                )
            });
            self.task_rows.insert(h.id(), row);
            self.owned.insert(
                row,
                Owned {
                    task: Some(h),
                    gw: Some(gw),
                },
            );
        }
    }

    /// A contact the rules said not to call now: recorded, and left for later or for good.
    fn decided(&mut self, c: &ContactRow, decision: Decision) {
        let event = match decision {
            Decision::Call => return,
            Decision::Suppressed(list) => Event::Suppress { list },
            Decision::Unplaceable(reason) => Event::Unplace { reason },
            Decision::TouchEnded(detail) => Event::Lapse { detail },
            Decision::OutsideWindow { detail, opens } => {
                self.wait_dirty = true;
                Event::Defer {
                    detail: Some(detail),
                    until_ms: opens
                        .filter(|_| self.ctx.settings.wait_for_window)
                        .map(|t| t.as_millisecond()),
                }
            }
        };
        self.ctx.journal.write_later(Op::Apply {
            row: c.row,
            event: event.refusing(c.recall_of.as_ref().map(|(o, _)| *o)),
            at_ms: self.ctx.now_ms(),
        });
    }

    /// A recall is due at `due_ms`. This run waits for it if a call could go then (no window, or inside the
    /// window in every one of the recipient's zones); in wait mode it waits for the next opening after it;
    /// otherwise it is left, with its due time, for the next run.
    fn postpone_recall(&mut self, c: &ContactRow, due_ms: i64) {
        let Some(window) = self.rules.window.clone() else {
            return;
        };
        let due = jiff::Timestamp::from_millisecond(due_ms).unwrap_or(jiff::Timestamp::MAX);
        let cand = Candidate {
            e164: &c.e164,
            tz: c.tz.as_deref(),
        };
        let until = match self.rules.place(cand) {
            Err(_) => None,
            Ok(p) if window.allows_all(due, &p.zones) => return,
            Ok(p) if self.ctx.settings.wait_for_window => window
                .next_opening_all(due, &p.zones)
                .map(|t| t.as_millisecond()),
            Ok(_) => None,
        };
        self.wait_dirty = true;
        self.ctx.journal.write_later(Op::Apply {
            row: c.row,
            event: Event::Defer {
                detail: None,
                until_ms: until,
            },
            at_ms: self.ctx.now_ms(),
        });
    }

    fn spawn_resume(&mut self, c: ContactRow) {
        let Some(gw) = self.gateway_of(&c) else {
            // A gateway no longer listed: the run refused to start unless it was forgotten, so this is only a
            // call forgotten meanwhile. It stays as it is.
            return;
        };
        self.lanes[gw].free -= 1;
        let (ctx, row) = (self.ctx.clone(), c.row);
        let h = self
            .tasks
            .spawn(async move { (row, call::resume(ctx, c, gw).await) });
        self.task_rows.insert(h.id(), row);
        self.owned.insert(
            row,
            Owned {
                task: Some(h),
                gw: Some(gw),
            },
        );
    }

    /// The next call placed by an earlier run, while there are any.
    async fn next_resume(&mut self) -> Result<Option<ContactRow>> {
        while let Phase::Resume { after } = self.phase {
            if let Some(c) = self.queue.pop_front() {
                return Ok(Some(c));
            }
            let batch = self.ctx.journal.dialed_after(after, BATCH).await?;
            match batch.last() {
                Some(last) => {
                    if after.is_none() {
                        info!("resuming calls placed by an earlier run");
                    }
                    self.phase = Phase::Resume {
                        after: Some(last.row),
                    };
                    self.queue.extend(batch);
                }
                None => self.phase = Phase::List { after: None },
            }
        }
        Ok(None)
    }

    /// The next contact to request: the list in order, then (wait mode) those whose window has opened.
    async fn next_fresh(&mut self) -> Result<Option<ContactRow>> {
        loop {
            while let Some(c) = self.queue.pop_front() {
                if !self.owned.contains_key(&c.row) {
                    return Ok(Some(c));
                }
            }
            match self.phase {
                Phase::Resume { .. } => return Ok(None),
                Phase::List { after } => {
                    let now_ms = self.due_now_ms();
                    let batch = self.ctx.journal.pending_after(after, BATCH, now_ms).await?;
                    match batch.last() {
                        Some(last) => {
                            self.phase = Phase::List {
                                after: Some(last.row),
                            };
                            self.queue.extend(batch);
                        }
                        None => {
                            // Wait mode waits for windows to open; a recall policy waits for recalls that
                            // fall due while their window is open (or, without a window, for all of them).
                            self.phase = if self.ctx.settings.wait_for_window
                                || self.ctx.settings.recall.is_some()
                            {
                                Phase::Waiting
                            } else {
                                Phase::Done
                            };
                        }
                    }
                }
                Phase::Waiting => {
                    if self.wait_until.is_some_and(|t| Instant::now() < t) && !self.wait_dirty {
                        return Ok(None);
                    }
                    self.wait_dirty = false;
                    self.wait_until = None;
                    let clock = &self.ctx.settings.clock;
                    let now_ms = self.due_now_ms();
                    let wall_ms = clock.now().as_millisecond();
                    let batch = self.ctx.journal.due(wall_ms, now_ms, BATCH).await?;
                    let now = Instant::now();
                    let mut held: Option<Instant> = None;
                    let fresh: Vec<ContactRow> = batch
                        .into_iter()
                        .filter(|c| !self.owned.contains_key(&c.row))
                        .filter(|c| match self.not_before.get(&c.row) {
                            Some(t) if *t > now => {
                                held = Some(held.map_or(*t, |h| h.min(*t)));
                                false
                            }
                            _ => true,
                        })
                        .collect();
                    if !fresh.is_empty() {
                        self.queue.extend(fresh);
                        continue;
                    }
                    if let Some(t) = held {
                        // Due by the wall clock, and not yet by the time measured since the call ended.
                        self.wait_until = Some(t);
                        return Ok(None);
                    }
                    if let Some((at, n, recall)) = self.ctx.journal.next_wait().await? {
                        let t = jiff::Timestamp::from_millisecond(at).unwrap_or(clock.now());
                        let soon = Instant::now() + Duration::from_millis(200);
                        // Due but still owned (its intent is on its way): look again shortly.
                        let by_run = Instant::now()
                            + Duration::from_millis(at.saturating_sub(now_ms).max(0) as u64);
                        self.wait_until = Some(clock.instant_at(t).max(by_run).max(soon));
                        if self.announced_wait != Some(at) && at > now_ms {
                            self.announced_wait = Some(at);
                            if recall {
                                info!(contacts = n, next_due = %t, "waiting for recalls to fall due");
                            } else {
                                info!(contacts = n, opens = %t, "waiting for the calling window to open");
                            }
                        }
                    }
                    return Ok(None);
                }
                Phase::Done => return Ok(None),
            }
        }
    }

    /// Nothing left to hand out in this run.
    async fn exhausted(&mut self) -> Result<bool> {
        if !self.retries.is_empty() || !self.queue.is_empty() {
            return Ok(false);
        }
        Ok(match self.phase {
            Phase::Done => true,
            Phase::Waiting => self.wait_until.is_none(),
            _ => false,
        })
    }

    /// Removes records left on the gateway by a run that stopped between saving a result and removing it.
    async fn start_housekeeping(&mut self) -> Result<()> {
        if self.ctx.settings.keep_records {
            return Ok(());
        }
        let leftovers = self.ctx.journal.unremoved().await?;
        if leftovers.is_empty() {
            return Ok(());
        }
        let ctx = self.ctx.clone();
        let keys: Vec<String> = ctx
            .settings
            .gateways
            .iter()
            .map(|g| g.key.clone())
            .collect();
        self.housekeeping = Some(tokio::spawn(async move {
            let mut stage = ctx.stage.clone();
            for (row, req_id, gateway) in leftovers {
                // A record on a gateway no longer listed cannot be reached: it stays there.
                let Some(gw) = gateway.map_or(Some(0), |k| keys.iter().position(|g| *g == k))
                else {
                    continue;
                };
                if !ctx
                    .polls
                    .ready_on(gw, &mut stage, |s| *s == Stage::Now)
                    .await
                {
                    return;
                }
                call::remove_record(&ctx, row, &req_id, gw).await;
            }
        }));
        Ok(())
    }
}
