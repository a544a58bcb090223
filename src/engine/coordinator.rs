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
//!
//! The one `select!` loop and the dispatch are here; the supply of contacts ([`supply`]), what the tasks
//! report and how they end ([`outcomes`]), and the reasons to stop ([`stops`]) are `impl` blocks of the same
//! coordinator in their own files.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

// The stage and the journal's health are heard by every task: their waiters wake in one order.
use crate::determinism::watch as ordered;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;
use tracing::warn;

mod numbers;
mod outcomes;
mod stops;
mod supply;

use self::outcomes::Due;
use self::stops::{FILE_CHECK, FileId, file_id};
use self::supply::Phase;
use super::breaker::{Breaker, Wait};
use super::call::{self, Ctx, End, Report, Retry};
use super::pacing::{Pacer, Schedule};
use super::{Ending, GatewayStats, Settings, Stage, Stats};
use crate::error::Result;
use crate::gateway::Gateway;
use crate::rules::{Candidate, Decision, Rules};
use crate::store::journal::Health;
use crate::store::{ContactRow, Event, Journal, Op};

/// After the stop, how long past the request timeout tasks get to record what they sent.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The longest sleep without looking around (signals and reports wake the loop anyway).
const IDLE: Duration = Duration::from_secs(3600);

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

/// A row handed out: its task (none while it waits to be retried) and the gateway it is on.
struct Owned {
    task: Option<AbortHandle>,
    gw: Option<usize>,
    /// Whether it still holds one of that gateway's lines: a call whose result is durable gives its line back
    /// ([`Report::LineFree`]) while its task removes the gateway record.
    line: bool,
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
    stage: ordered::Sender<Stage>,
    reports: mpsc::Receiver<Report>,
    health: ordered::Receiver<Health>,
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
    /// The number each live call (a task's) is to, by row. A family on one number (two appointments of a
    /// rolling export) must never have two calls ringing at once: a contact whose number is here waits.
    live: HashMap<u64, String>,
    /// Contacts waiting for their number's live call to be final, by number: owned, so never read again,
    /// and given to the retries (due at once) when that call's task ends.
    held: HashMap<String, Vec<Retry>>,
    /// Numbers whose last call may be live on the gateway though no task watches it (its request's answer
    /// was lost, in this run or an earlier one), with when it can no longer be ([`numbers`]).
    busy: HashMap<String, Instant>,
    /// Calls an earlier run left live, resumed in this one.
    resumed: std::collections::HashSet<u64>,
    /// One of them has ended: a rolling export's touches it held back may be due now.
    touches_dirty: bool,
}

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
        let (stage, stage_rx) = ordered::channel(first);
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
        let lengths = settings
            .gateways
            .iter()
            .map(|_| super::lengths::Lengths::new(settings.poll_interval))
            .collect();
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
            lengths,
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
            live: HashMap::new(),
            held: HashMap::new(),
            busy: HashMap::new(),
            resumed: Default::default(),
            touches_dirty: false,
        }
    }

    /// The time by which recalls fall due: the campaign's steady time line ([`super::Steady`]), on which
    /// their due times are written. A wall clock stepped forward, during the run or between runs, brings no
    /// recall forward, and one stepped back delays none; the window is judged on the wall clock at the
    /// request anyway.
    fn due_now_ms(&self) -> i64 {
        self.ctx.settings.steady.now_ms()
    }

    fn stage_now(&self) -> Stage {
        *self.stage.borrow()
    }

    pub async fn run(mut self) -> Result<Ending> {
        self.start_housekeeping().await?;
        self.load_unseen().await?;
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
        // Not while calls to resume are still handed out: the queue holds those then.
        if self.touches_dirty && !matches!(self.phase, Phase::Resume { .. }) {
            self.advance_touches().await?;
        }
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
            if self.live.values().any(|n| *n == contact.e164) {
                self.hold_for_number(contact, refusals);
                continue;
            }
            if let Some(until) = self.busy_until(&contact.e164, now) {
                self.defer_for_number(contact, refusals, until);
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
            self.live.insert(row, contact.e164.clone());
            tracing::trace!(target: "turnover", row, gw, "handed out");
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
                    line: true,
                },
            );
        }
    }

    /// Marks `row` owned by the coordinator with no task and no line (a retry or a contact held back), so
    /// the list and the waiting contacts do not hand it out again.
    pub(super) fn own_waiting(&mut self, row: u64) {
        self.owned.insert(
            row,
            Owned {
                task: None,
                gw: None,
                line: false,
            },
        );
    }

    /// Queues `retry` to be handed out at `at`, in the order retries were queued among equals.
    pub(super) fn queue_retry(&mut self, at: Instant, retry: Retry) {
        self.seq += 1;
        self.retries.push(Reverse(Due {
            at,
            seq: self.seq,
            retry,
        }));
    }

    /// Keeps `contact` back while a call to its number is live: owned (so the list and the waiting contacts do
    /// not hand it out again) until that call's task ends ([`Coordinator::release`]).
    fn hold_for_number(&mut self, contact: ContactRow, refusals: u32) {
        self.own_waiting(contact.row);
        self.held
            .entry(contact.e164.clone())
            .or_default()
            .push(Retry {
                contact,
                refusals,
                after: None,
                why: String::new(),
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
        self.live.insert(row, c.e164.clone());
        self.resumed.insert(row);
        let h = self
            .tasks
            .spawn(async move { (row, super::poll::resume(ctx, c, gw).await) });
        self.task_rows.insert(h.id(), row);
        self.owned.insert(
            row,
            Owned {
                task: Some(h),
                gw: Some(gw),
                line: true,
            },
        );
    }
}
