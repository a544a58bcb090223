//! The coordinator: one loop that owns everything about what happens next.
//!
//! It owns the supply of contacts (calls placed by an earlier run to resume, then the list in input order,
//! then, in wait mode, contacts waiting for their window — read from the journal in batches, so memory is
//! bounded by the lines and a batch, never by the list), the retries, the count of free lines, the
//! call-request schedule, the circuit breaker, the count of unreadable replies, and the reason the run is
//! ending. Call tasks ([`super::call`]) report what they see over a bounded channel and return how they ended;
//! signals and the journal's health arrive on watch channels. Nothing is shared to be changed by others, so
//! no wake-up can be lost between a check and a wait.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::breaker::{Breaker, Wait};
use super::call::{self, Ctx, End, Report, Retry};
use super::pacing::{Pacer, Schedule};
use super::{Ending, Settings, Stage, Stats, UNREADABLE_IN_A_ROW};
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
    /// Rows with a task, or waiting in `retries`: never handed out twice.
    owned: HashMap<u64, Option<AbortHandle>>,
    retries: BinaryHeap<Reverse<Due>>,
    /// Call requests sent whose answer has not been judged yet. After an answer that left a contact unknown,
    /// the next request waits for these: one at a time until an answer can be read again, so a gateway whose
    /// answers are lost cannot take the list down with it.
    awaiting: std::collections::HashSet<u64>,
    seq: u64,
    lines_free: u32,
    schedule: Option<Schedule>,
    breaker: Breaker,
    ending: Ending,
    unreadable: u32,
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
    journal_file: Option<(std::path::PathBuf, FileId)>,
    next_file_check: Instant,
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
        gateway: Gateway,
        journal: Journal,
        signals: watch::Receiver<Stage>,
        stats: Arc<Stats>,
    ) -> Coordinator {
        let first = *signals.borrow();
        let (stage, stage_rx) = watch::channel(first);
        let (reports_tx, reports) = mpsc::channel(256);
        let schedule = Schedule::new(settings.rate, Instant::now());
        let breaker = Breaker::new(settings.max_outage);
        let lines_free = settings.lines;
        let health = journal.health();
        let journal_file = settings
            .journal_path
            .clone()
            .and_then(|p| file_id(&p).map(|id| (p, id)));
        let ctx = Arc::new(Ctx {
            polls: Pacer::new(settings.poll_rate),
            sends: Pacer::new(settings.rate),
            ledger: rules.ledger.clone(),
            settings,
            gateway,
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
            owned: HashMap::new(),
            retries: BinaryHeap::new(),
            awaiting: Default::default(),
            seq: 0,
            lines_free,
            schedule,
            breaker,
            ending: Ending::Completed,
            unreadable: 0,
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
        }
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
        self.ctx.stats.outage_ms.store(
            self.breaker.outage_so_far(now).as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
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
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
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
            if let Some((path, id)) = &self.journal_file
                && file_id(path) != Some(*id)
            {
                let why = format!(
                    "the journal {} was deleted or replaced while the run held it; nothing more is called, and the results come from the copy still open",
                    path.display()
                );
                self.journal_file = None;
                self.ending = self.ending.clone().worst(Ending::JournalFailed(why));
            }
        }
        if let Some(deadline) = self.breaker.outage_deadline()
            && now >= deadline
            && self.stage_now() != Stage::Now
        {
            error!(
                max_outage = %Dur(self.ctx.settings.max_outage),
                "the gateway has been unreachable for longer than max-outage; stopping with work left (rerun to resume)"
            );
            self.ending = self.ending.clone().worst(Ending::Outage);
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
            // Contacts waiting to be requested again are pending in the journal already: let their lines go.
            let n = self.retries.len() as u32;
            for Reverse(d) in self.retries.drain() {
                self.owned.remove(&d.retry.contact.row);
            }
            self.lines_free += n;
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
        if self.stage_now() == Stage::Now {
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
            Report::Answered => self.breaker.answered(now),
            Report::Unreachable(why) => self.breaker.unreachable(now, &why),
            Report::CallReply { row, unknown: None } => {
                self.awaiting.remove(&row);
                self.unreadable = 0;
            }
            Report::CallReply {
                row,
                unknown: Some(why),
            } => {
                self.awaiting.remove(&row);
                self.unreadable += 1;
                if self.unreadable >= UNREADABLE_IN_A_ROW {
                    self.ending = self.ending.clone().worst(Ending::UnreadableGateway(why));
                }
            }
        }
    }

    fn on_joined(&mut self, joined: std::result::Result<(u64, End), tokio::task::JoinError>) {
        let (row, end) = match joined {
            Ok(x) => x,
            // Aborted by us (its line was given back then).
            Err(e) if e.is_cancelled() => return,
            Err(e) => {
                self.lines_free += 1;
                self.ending = self
                    .ending
                    .clone()
                    .worst(Ending::Internal(format!("a call task failed: {e}")));
                return;
            }
        };
        self.owned.remove(&row);
        self.awaiting.remove(&row);
        self.breaker.task_ended(row);
        self.wait_dirty = true;
        match end {
            End::Final(_) | End::LeftOpen | End::NotSent => self.lines_free += 1,
            End::Recalled { contact, due_ms } => {
                self.lines_free += 1;
                self.postpone_recall(&contact, due_ms);
            }
            End::Clash { other_row } => {
                self.lines_free += 1;
                if let Some(Some(h)) = self.owned.remove(&other_row) {
                    h.abort();
                    self.lines_free += 1;
                    self.breaker.task_ended(other_row);
                }
            }
            End::Retry(r) => {
                if self.stage_now() == Stage::Run {
                    // It keeps its line while it waits, so retries never crowd out the calls in progress.
                    let at = Instant::now() + r.after.unwrap_or(Duration::ZERO);
                    self.owned.insert(r.contact.row, None);
                    self.seq += 1;
                    self.retries.push(Reverse(Due {
                        at,
                        seq: self.seq,
                        retry: r,
                    }));
                } else {
                    self.lines_free += 1;
                }
            }
            End::Stop(e) => {
                self.lines_free += 1;
                self.ending = self.ending.clone().worst(e);
            }
        }
    }

    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let mut wake = now + IDLE;
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
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
            consider(self.wait_until);
        }
        consider(self.drain_deadline);
        consider(self.breaker.outage_deadline());
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
            // A due retry owns its line already.
            let due_retry = self.retries.peek().is_some_and(|Reverse(d)| d.at <= now);
            let (contact, refusals, is_retry) = if due_retry {
                let Some(Reverse(d)) = self.retries.pop() else {
                    return Ok(());
                };
                (d.retry.contact, d.retry.refusals, true)
            } else {
                if self.lines_free == 0 {
                    return Ok(());
                }
                if let Some(c) = self.next_resume().await? {
                    self.spawn_resume(c);
                    continue;
                }
                match self.next_fresh().await? {
                    Some(c) => (c, 0, false),
                    None => return Ok(()),
                }
            };
            // A recall the policy no longer wants (it changed between runs, or the attempts are used up):
            // its last outcome stands.
            if let Some((outcome, responses)) = &contact.recall_of {
                let wanted = self.ctx.settings.recall.as_ref().is_some_and(|r| {
                    r.wants(*outcome, responses, contact.attempt.saturating_sub(1))
                });
                if !wanted {
                    self.ctx.journal.write_later(Op::Apply {
                        row: contact.row,
                        event: Event::Settle { outcome: *outcome },
                        at_ms: self.ctx.settings.clock.now().as_millisecond(),
                    });
                    if is_retry {
                        self.owned.remove(&contact.row);
                        self.lines_free += 1;
                    }
                    continue;
                }
            }
            let cand = Candidate {
                e164: &contact.e164,
                tz: contact.tz.as_deref(),
            };
            let decision = self.rules.decide(cand, self.ctx.settings.clock.now());
            if decision != Decision::Call {
                self.decided(&contact, decision);
                if is_retry {
                    self.owned.remove(&contact.row);
                    self.lines_free += 1;
                }
                continue;
            }
            let suspect = self.unreadable > 0 && !self.awaiting.is_empty();
            let blocked = match self.breaker.may_send(now) {
                Err(Wait::Until(t)) => Some(Blocked::Until(t)),
                Err(Wait::Verdict) => Some(Blocked::Nothing),
                Ok(()) if suspect => Some(Blocked::Nothing),
                Ok(()) => self
                    .schedule
                    .as_ref()
                    .map(Schedule::next)
                    .filter(|next| *next > now)
                    .map(Blocked::Until),
            };
            if let Some(b) = blocked {
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
            if let Some(s) = self.schedule.as_mut() {
                s.take(now);
            }
            self.breaker.sent(contact.row);
            if !is_retry {
                self.lines_free -= 1;
            }
            let (ctx, row) = (self.ctx.clone(), contact.row);
            let h = self
                .tasks
                .spawn(async move { (row, call::request(ctx, contact, refusals).await) });
            self.owned.insert(row, Some(h));
            self.awaiting.insert(row);
        }
    }

    /// A contact the rules said not to call now: recorded, and left for later or for good.
    fn decided(&mut self, c: &ContactRow, decision: Decision) {
        let event = match decision {
            Decision::Call => return,
            Decision::Suppressed(list) => Event::Suppress { list },
            Decision::Unplaceable(reason) => Event::Unplace { reason },
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
            event,
            at_ms: self.ctx.settings.clock.now().as_millisecond(),
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
            at_ms: self.ctx.settings.clock.now().as_millisecond(),
        });
    }

    fn spawn_resume(&mut self, c: ContactRow) {
        self.lines_free -= 1;
        let (ctx, row) = (self.ctx.clone(), c.row);
        let h = self
            .tasks
            .spawn(async move { (row, call::resume(ctx, c).await) });
        self.owned.insert(row, Some(h));
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
                    let now_ms = self.ctx.settings.clock.now().as_millisecond();
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
                    let now_ms = clock.now().as_millisecond();
                    let batch = self.ctx.journal.due(now_ms, BATCH).await?;
                    let fresh: Vec<ContactRow> = batch
                        .into_iter()
                        .filter(|c| !self.owned.contains_key(&c.row))
                        .collect();
                    if !fresh.is_empty() {
                        self.queue.extend(fresh);
                        continue;
                    }
                    if let Some((at, n)) = self.ctx.journal.next_wait().await? {
                        let t = jiff::Timestamp::from_millisecond(at).unwrap_or(clock.now());
                        let soon = Instant::now() + Duration::from_millis(200);
                        // Due but still owned (its intent is on its way): look again shortly.
                        self.wait_until = Some(clock.instant_at(t).max(soon));
                        if self.announced_wait != Some(at) && at > now_ms {
                            self.announced_wait = Some(at);
                            info!(contacts = n, opens = %t, "waiting for the calling window to open");
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
        self.housekeeping = Some(tokio::spawn(async move {
            let mut stage = ctx.stage.clone();
            for (row, req_id) in leftovers {
                if !ctx.polls.ready(&mut stage, |s| *s == Stage::Now).await {
                    return;
                }
                call::remove_record(&ctx, row, &req_id).await;
            }
        }));
        Ok(())
    }
}
