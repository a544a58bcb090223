//! The campaign engine: dial every pending contact under the rate limit and the line cap, poll each call to a
//! final answer, and record every transition in the journal before acting on it.
//!
//! Shape: one dispatcher task owns the pace (it is the only waiter on the call-request limiter, which keeps
//! GCRA accurate and cheap) and hands each contact, with an owned line permit, to its own task. That task
//! records the intent, sends the request, records the request id, polls until final, records the result,
//! removes the gateway record, and only then gives the line back. Polls from all tasks go through one pacer.

pub mod breaker;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::{Rate, RunConfig};
use crate::error::{Error, Result};
use crate::gateway::PollError;
use crate::gateway::protocol::{AttemptState, CallRequest, RemoveReply, StatusReply};
use crate::gateway::{Gateway, PlaceError};
use crate::journal::{ContactRow, Finish, Journal, Op, State};
use crate::ledger::{Claim, Ledger};
use crate::window::Window;
use breaker::{Breaker, delays};

/// Stop stages, sent through a `watch` channel by the signal handler.
pub mod stop {
    /// Keep going.
    pub const RUN: u8 = 0;
    /// Stop dialing; keep polling calls already placed until the drain timeout.
    pub const DRAIN: u8 = 1;
    /// Stop now. The journal stays consistent; placed calls are polled again by the next run.
    pub const NOW: u8 = 2;
}

/// Counters for the summary.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub request_failures: AtomicU64,
    pub polls: AtomicU64,
    pub poll_errors: AtomicU64,
    pub removes: AtomicU64,
    /// Set when the run stopped because the gateway stayed unreachable past `max-outage`.
    pub outage_stop: std::sync::atomic::AtomicBool,
    /// Set when the gateway refused our credentials (HTTP 401/403/407) and the run stopped.
    pub auth_refused: std::sync::atomic::AtomicBool,
    /// Calls finished in this run, by outcome (for progress).
    pub made: AtomicU64,
    pub failed: AtomicU64,
    pub other_final: AtomicU64,
    /// Call requests answered with a request id in this run.
    pub dialed: AtomicU64,
    /// Calls being polled right now.
    pub in_flight: AtomicU64,
}

/// Counts a call as in flight for as long as it is polled.
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn new(c: &'a AtomicU64) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        InFlight(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How the engine ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every contact was handled.
    Completed,
    /// Stopped by a signal (or the drain timeout) with work left.
    Interrupted,
}

struct Ctx {
    cfg: RunConfig,
    gateway: Gateway,
    journal: Journal,
    campaign_id: String,
    limiter: Option<DefaultDirectRateLimiter>,
    polls: Pacer,
    breaker: Breaker,
    ledger: Option<Ledger>,
    deferred: Deferred,
    zones: std::sync::Mutex<std::collections::HashMap<String, jiff::tz::TimeZone>>,
    /// The run's own stop channel: signals are forwarded into it, and an outage past the limit stops it too.
    stop: watch::Receiver<u8>,
    halt: Arc<watch::Sender<u8>>,
    stats: Arc<Stats>,
}

/// Contacts waiting for their calling window to open (`outside-window = wait`), soonest first.
#[derive(Default)]
struct Deferred {
    queue: std::sync::Mutex<std::collections::BinaryHeap<std::cmp::Reverse<Waiting>>>,
    changed: tokio::sync::Notify,
}

struct Waiting {
    at: jiff::Timestamp,
    contact: ContactRow,
}

impl PartialEq for Waiting {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.contact.row) == (o.at, o.contact.row)
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Waiting {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.contact.row).cmp(&(o.at, o.contact.row))
    }
}

impl Deferred {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BinaryHeap<std::cmp::Reverse<Waiting>>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn push(&self, at: jiff::Timestamp, contact: ContactRow) {
        self.lock().push(std::cmp::Reverse(Waiting { at, contact }));
        self.changed.notify_waiters();
    }
    fn pop_due(&self, now: jiff::Timestamp) -> Option<ContactRow> {
        let mut q = self.lock();
        if q.peek().is_some_and(|w| w.0.at <= now) {
            q.pop().map(|w| w.0.contact)
        } else {
            None
        }
    }
    fn earliest(&self) -> Option<jiff::Timestamp> {
        self.lock().peek().map(|w| w.0.at)
    }
    fn len(&self) -> usize {
        self.lock().len()
    }
}

impl Ctx {
    fn refuse_credentials(&self, why: &str) {
        if !self.stats.auth_refused.swap(true, Ordering::Relaxed) {
            tracing::error!(
                reason = why,
                "the gateway refused the credentials; stopping (check --gateway-user and the password variable)"
            );
        }
        self.halt.send_replace(stop::NOW);
    }

    fn zone(&self, contact: &ContactRow) -> jiff::tz::TimeZone {
        let Some(name) = &contact.tz else {
            return self.cfg.timezone.clone();
        };
        let mut zones = self.zones.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tz) = zones.get(name) {
            return tz.clone();
        }
        // Validated at ingest; a zone that vanished from the system database falls back to the campaign's.
        let tz = crate::window::zone(name).unwrap_or_else(|_| self.cfg.timezone.clone());
        zones.insert(name.clone(), tz.clone());
        tz
    }

    /// Whether `contact` may be called at `now`. When not, records why and, in wait mode, queues the contact
    /// for its next opening; in stop mode it stays pending for the next run.
    fn inside_window(&self, contact: &ContactRow, now: jiff::Timestamp) -> bool {
        let Some(window) = &self.cfg.window else {
            return true;
        };
        let tz = self.zone(contact);
        if window.allows(now, &tz) {
            return true;
        }
        let local = now.to_zoned_datetime(tz.clone());
        let zone_name = contact
            .tz
            .clone()
            .unwrap_or_else(|| self.cfg.timezone_name.clone());
        let detail = outside_detail(window, &local, &zone_name);
        self.journal.write_later(Op::Deferred {
            row: contact.row,
            detail,
        });
        if let Some(at) = window
            .next_opening(now, &tz)
            .filter(|_| self.cfg.wait_for_window)
        {
            self.deferred.push(at, contact.clone());
        }
        false
    }
}

fn outside_detail(window: &Window, local: &jiff::ZonedDateTime, zone: &str) -> String {
    format!(
        "outside the calling window ({}, ending {} before its close) at {} local time in {zone}",
        window.describe(),
        humanize(window.margin),
        local.strftime("%a %H:%M")
    )
}

/// A rate limiter for call requests or polls.
///
/// governor's default burst equals the rate, which lets a whole second's worth of calls out at once at start
/// and after every pause. The burst here is about 50 ms worth of cells (at least 1, at most 50): enough slack
/// for timers that wake a little late (with burst 1 every late wake-up is lost rate: −3% at 200/s), and
/// small enough that the busiest second stays within rate + burst.
pub fn limiter(rate: Rate) -> Option<DefaultDirectRateLimiter> {
    let interval = rate.interval()?;
    let per_second = rate.per_second().unwrap_or(1.0);
    let burst = ((per_second / 20.0).ceil() as u32).clamp(1, 50);
    let quota = Quota::with_period(interval)?.allow_burst(NonZeroU32::new(burst)?);
    Some(RateLimiter::direct(quota))
}

/// Serialises waiters on one limiter: every poller asks the pacer task, which alone sleeps on the limiter.
/// Thousands of pollers waiting on a governor limiter directly would all wake at the same instant and all but
/// one would lose (a thundering herd that burns a core at high rates).
#[derive(Clone)]
struct Pacer {
    tx: Option<mpsc::Sender<oneshot::Sender<()>>>,
}

impl Pacer {
    fn new(rate: Rate) -> Pacer {
        let Some(limiter) = limiter(rate) else {
            return Pacer { tx: None };
        };
        let (tx, mut rx) = mpsc::channel::<oneshot::Sender<()>>(1024);
        tokio::spawn(async move {
            while let Some(waiter) = rx.recv().await {
                limiter.until_ready().await;
                let _ = waiter.send(());
            }
        });
        Pacer { tx: Some(tx) }
    }

    async fn ready(&self) {
        if let Some(tx) = &self.tx {
            let (go, wait) = oneshot::channel();
            if tx.send(go).await.is_ok() {
                let _ = wait.await;
            }
        }
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Sleeps, unless the run is told to stop first. Returns false when stopping.
async fn sleep_unless_stopping(stop: &mut watch::Receiver<u8>, d: Duration) -> bool {
    if *stop.borrow() != stop::RUN {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.wait_for(|s| *s != stop::RUN) => false,
    }
}

/// Runs the campaign until every contact is final or the run is stopped.
pub async fn run(
    cfg: RunConfig,
    gateway: Gateway,
    journal: Journal,
    campaign_id: String,
    mut signals: watch::Receiver<u8>,
    stats: Arc<Stats>,
    ledger: Option<Ledger>,
) -> Result<Ending> {
    let (halt, stop) = watch::channel(*signals.borrow());
    let halt = Arc::new(halt);
    let forward = {
        let halt = halt.clone();
        tokio::spawn(async move {
            while signals.changed().await.is_ok() {
                let v = *signals.borrow();
                // Stages only move forward: a late DRAIN never undoes a NOW.
                halt.send_if_modified(|cur| {
                    let raise = v > *cur;
                    if raise {
                        *cur = v;
                    }
                    raise
                });
            }
        })
    };
    let ctx = Arc::new(Ctx {
        limiter: limiter(cfg.rate),
        polls: Pacer::new(cfg.poll_rate),
        breaker: Breaker::new(cfg.max_outage),
        ledger,
        deferred: Deferred::default(),
        zones: Default::default(),
        cfg,
        gateway,
        journal,
        campaign_id,
        stop,
        halt: halt.clone(),
        stats,
    });
    let watchdog = {
        let (ctx, halt) = (ctx.clone(), halt.clone());
        tokio::spawn(async move {
            ctx.breaker.outage_exceeded().await;
            tracing::error!(
                max_outage = ?ctx.cfg.max_outage,
                "the gateway has been unreachable for longer than max-outage; stopping with work left (rerun to resume)"
            );
            ctx.stats.outage_stop.store(true, Ordering::Relaxed);
            halt.send_replace(stop::NOW);
        })
    };
    let ended = drive(&ctx).await;
    forward.abort();
    watchdog.abort();
    ended
}

async fn drive(ctx: &Arc<Ctx>) -> Result<Ending> {
    let lines = Arc::new(Semaphore::new(ctx.cfg.lines as usize));
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();
    let mut stop_rx = ctx.stop.clone();

    // Records left on the gateway by a run that stopped between saving a result and removing the record.
    if !ctx.cfg.keep_records {
        let leftovers = ctx.journal.unremoved().await?;
        if !leftovers.is_empty() {
            let c = ctx.clone();
            tasks.spawn(async move {
                for (row, req_id) in leftovers {
                    c.polls.ready().await;
                    remove_record(&c, row, &req_id).await;
                }
                Ok(())
            });
        }
    }

    // Calls placed by an earlier run: poll them, never dial them again.
    let resumed = ctx.journal.dialed().await?;
    if !resumed.is_empty() {
        info!(
            calls = resumed.len(),
            "resuming calls placed by an earlier run"
        );
    }
    for c in resumed {
        let permit = tokio::select! {
            p = lines.clone().acquire_owned() => p.map_err(|e| Error::Internal(e.to_string()))?,
            _ = stop_rx.wait_for(|s| *s != stop::RUN) => break,
        };
        let c2 = ctx.clone();
        tasks.spawn(async move {
            let Some(req_id) = c.req_id.clone() else {
                return Ok(());
            };
            poll(
                &c2,
                &c,
                &req_id,
                c.dialed_at_ms.unwrap_or_else(now_ms),
                permit,
            )
            .await
        });
    }

    let dispatched = dispatch(ctx, &lines, &mut tasks).await;
    if let Err(e) = dispatched {
        tasks.abort_all();
        return Err(e);
    }

    // Wait for the calls in flight; on the first stop signal give them until the drain timeout.
    let mut drain_deadline: Option<Instant> = None;
    loop {
        if drain_deadline.is_none() && *stop_rx.borrow() == stop::DRAIN {
            drain_deadline = Some(Instant::now() + ctx.cfg.drain_timeout);
            info!(calls = tasks.len(), timeout = ?ctx.cfg.drain_timeout, "stopped dialing; waiting for calls in progress");
        }
        let stopped_now = *stop_rx.borrow() == stop::NOW;
        if stopped_now {
            break;
        }
        let deadline =
            drain_deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(r) => {
                    if let Err(e) = flatten(r) {
                        tasks.abort_all();
                        return Err(e);
                    }
                }
            },
            _ = stop_rx.changed() => {}
            _ = tokio::time::sleep_until(deadline) => {
                warn!(calls = tasks.len(), "drain timeout reached; calls still in progress are polled again by the next run");
                break;
            }
        }
    }
    let left = tasks.len();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let interrupted = *stop_rx.borrow() != stop::RUN || left > 0;
    Ok(if interrupted {
        Ending::Interrupted
    } else {
        Ending::Completed
    })
}

fn flatten(r: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    match r {
        Ok(r) => r,
        Err(e) if e.is_cancelled() => Ok(()),
        Err(e) => Err(Error::Internal(format!("a call task failed: {e}"))),
    }
}

/// Hands pending contacts to call tasks, in input order, one line permit and one rate cell each.
async fn dispatch(
    ctx: &Arc<Ctx>,
    lines: &Arc<Semaphore>,
    tasks: &mut JoinSet<Result<()>>,
) -> Result<()> {
    const BATCH: usize = 512;
    let mut stop_rx = ctx.stop.clone();
    let mut after: Option<u64> = None;
    let mut buffer: std::collections::VecDeque<ContactRow> = std::collections::VecDeque::new();
    let mut exhausted = false;
    loop {
        if *stop_rx.borrow() != stop::RUN {
            return Ok(());
        }
        let now = jiff::Timestamp::now();
        let contact = if let Some(c) = ctx.deferred.pop_due(now) {
            c
        } else if let Some(c) = buffer.pop_front() {
            c
        } else if !exhausted {
            let batch = ctx.journal.pending_after(after, BATCH).await?;
            match batch.last() {
                Some(last) => after = Some(last.row),
                None => exhausted = true,
            }
            buffer.extend(batch);
            continue;
        } else if let Some(at) = ctx.deferred.earliest() {
            // Everyone left is waiting for their window to open.
            let wait = (at - now).unsigned_abs().min(Duration::from_secs(3600));
            info!(contacts = ctx.deferred.len(), opens = %at, "waiting for the calling window to open");
            tokio::select! {
                _ = stop_rx.wait_for(|s| *s != stop::RUN) => return Ok(()),
                _ = tokio::time::sleep(wait) => {}
                _ = ctx.deferred.changed.notified() => {}
            }
            continue;
        } else {
            return Ok(());
        };
        // Checked before taking a line, so contacts outside their window never hold one.
        if !ctx.inside_window(&contact, now) {
            continue;
        }
        let permit = tokio::select! {
            biased;
            _ = stop_rx.wait_for(|s| *s != stop::RUN) => return Ok(()),
            p = lines.clone().acquire_owned() => p.map_err(|e| Error::Internal(e.to_string()))?,
        };
        if let Some(l) = &ctx.limiter {
            tokio::select! {
                biased;
                _ = stop_rx.wait_for(|s| *s != stop::RUN) => return Ok(()),
                _ = l.until_ready() => {}
            }
        }
        // Surface a journal failure from a finished task before placing more calls.
        while let Some(r) = tasks.try_join_next() {
            flatten(r)?;
        }
        let c = ctx.clone();
        tasks.spawn(async move { call(&c, contact, permit).await });
    }
}

/// One contact: intent, request, poll. Holds its line permit until the result is saved.
async fn call(ctx: &Ctx, contact: ContactRow, permit: OwnedSemaphorePermit) -> Result<()> {
    let row = contact.row;
    let req = CallRequest {
        // Unique per campaign and row, so a gateway record can be traced back to its row.
        info: format!("ivr-campaign {} row {}", ctx.campaign_id, row + 1),
        phoneno: contact.dialed_number.clone(),
        firstocc: ctx.cfg.firstocc,
        startapp: ctx.cfg.app.clone(),
    };
    let mut stop_rx = ctx.stop.clone();
    let mut refusals = 0u32;
    let mut attempt = 0u32;
    let mut waits = delays(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        // While the gateway is unreachable, wait here; leave the contact pending if the run stops meanwhile.
        let Some(held_back) = ctx.breaker.admit(&mut stop_rx).await else {
            return Ok(());
        };
        // The dispatcher's rate cell covers the first attempt only if it goes out now. A retry, or an attempt
        // the breaker held back (with every other line's, all released at once when the gateway returns),
        // takes a fresh one: requests never exceed the rate, outage or not.
        if let Some(l) = ctx.limiter.as_ref().filter(|_| held_back || attempt > 0) {
            tokio::select! {
                _ = l.until_ready() => {}
                _ = stop_rx.wait_for(|s| *s != stop::RUN) => return Ok(()),
            }
        }
        attempt += 1;
        // The authoritative window check: the last moment before the intent (waiting for a line, the rate or
        // the gateway may have taken a while).
        if !ctx.inside_window(&contact, jiff::Timestamp::now()) {
            return Ok(());
        }
        if let Some(ledger) = &ctx.ledger {
            let (l, e164, campaign) = (
                ledger.clone(),
                contact.e164.clone(),
                ctx.campaign_id.clone(),
            );
            let claim = tokio::task::spawn_blocking(move || l.claim(&e164, &campaign, row))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??;
            if let Claim::Capped { calls } = claim {
                let detail = format!(
                    "{calls} call(s) to this number in the last {} (cap {}, ledger {})",
                    humanize(ledger.per),
                    ledger.cap,
                    ledger.path.display()
                );
                return finish(ctx, row, State::Capped, String::new(), 0, detail).await;
            }
        }
        // Durable before the request leaves: after a crash here the contact is `unknown`, never redialed.
        ctx.journal
            .write(Op::Intent {
                row,
                at_ms: now_ms(),
            })
            .await?;
        let sent_at = now_ms();
        ctx.stats.requests.fetch_add(1, Ordering::Relaxed);
        let placed = ctx.gateway.place_call(&req).await;
        match &placed {
            Ok(_) | Err(PlaceError::Rejected(_) | PlaceError::Unauthorized(_)) => {
                ctx.breaker.reached()
            }
            Err(e) => ctx.breaker.unreachable(&e.to_string()),
        }
        let e = match placed {
            Ok(req_id) => {
                ctx.journal
                    .write(Op::Dialed {
                        row,
                        req_id: req_id.clone(),
                        sent_at_ms: sent_at,
                    })
                    .await?;
                ctx.stats.dialed.fetch_add(1, Ordering::Relaxed);
                debug!(row = contact.line, number = %crate::logging::number(&contact.dialed_number), %req_id, "call requested");
                return poll(ctx, &contact, &req_id, sent_at, permit).await;
            }
            Err(e) => e,
        };
        ctx.stats.request_failures.fetch_add(1, Ordering::Relaxed);
        if let PlaceError::Unauthorized(_) = e {
            // Every request would be refused the same way: stop the run rather than burn through the list.
            ctx.journal
                .write(Op::NotScheduled {
                    row,
                    detail: e.to_string(),
                })
                .await?;
            ctx.refuse_credentials(&e.to_string());
            return Ok(());
        }
        if let PlaceError::Ambiguous(_) = e {
            warn!(row = contact.line, error = %e, "call request answer lost; marking unknown, not redialing");
            return finish(ctx, row, State::Unknown, String::new(), 0, e.to_string()).await;
        }
        // Not scheduled: the contact is pending again until the next attempt's intent is recorded.
        ctx.journal
            .write(Op::NotScheduled {
                row,
                detail: e.to_string(),
            })
            .await?;
        if let PlaceError::NotSent(_) = e {
            // An outage is not this contact's fault: it waits on the breaker and spends none of its retries.
            debug!(row = contact.line, error = %e, "call request not sent; waiting for the gateway");
            continue;
        }
        refusals += 1;
        if refusals > ctx.cfg.request_retries {
            warn!(row = contact.line, error = %e, "the gateway refused this call {refusals} times; giving up on it");
            let detail = format!("{e} (refused {refusals} times)");
            return finish(ctx, row, State::Error, String::new(), 0, detail).await;
        }
        let wait = waits.next().unwrap_or(Duration::from_secs(30));
        warn!(row = contact.line, error = %e, retry_in = ?wait, "call request not scheduled; will retry");
        if !sleep_unless_stopping(&mut stop_rx, wait).await {
            return Ok(()); // stays pending: `not_attempted`, dialed by the next run
        }
    }
}

/// Polls one call until its last record is final, the gateway forgets it, or the deadline passes.
///
/// The deadline is not applied while the gateway is unreachable: the call's result may be sitting on the
/// gateway, and marking it `unresolved` would lose it. An outage is bounded by `max-outage` instead, after which
/// the run stops and the next run polls the call again.
async fn poll(
    ctx: &Ctx,
    contact: &ContactRow,
    req_id: &str,
    sent_at_ms: i64,
    permit: OwnedSemaphorePermit,
) -> Result<()> {
    let _in_flight = InFlight::new(&ctx.stats.in_flight);
    let row = contact.row;
    let timeout_ms = i64::try_from(ctx.cfg.poll_timeout.as_millis()).unwrap_or(i64::MAX);
    let left_ms = sent_at_ms
        .saturating_add(timeout_ms)
        .saturating_sub(now_ms())
        .max(0);
    let deadline = Instant::now() + Duration::from_millis(left_ms as u64);
    let interval = ctx.cfg.poll_interval;
    let mut delay = interval;
    let mut failing: Option<backon::ExponentialBackoff> = None;
    let mut unreachable = false;
    let mut last_seen = String::from("no status read yet");
    let mut reported_words: Vec<String> = Vec::new();
    loop {
        let wake = Instant::now() + delay;
        if wake >= deadline && !unreachable {
            tokio::time::sleep_until(deadline).await;
            let detail = format!(
                "no final status {} after the request ({last_seen}); the gateway record was removed to cancel further attempts",
                humanize(ctx.cfg.poll_timeout)
            );
            warn!(row = contact.line, %req_id, "giving up polling: {last_seen}");
            finish(ctx, row, State::Unresolved, String::new(), 0, detail).await?;
            drop(permit);
            remove_record(ctx, row, req_id).await;
            return Ok(());
        }
        tokio::time::sleep_until(wake).await;
        ctx.polls.ready().await;
        ctx.stats.polls.fetch_add(1, Ordering::Relaxed);
        let reply = ctx.gateway.status(req_id).await;
        match &reply {
            Ok(_) => ctx.breaker.reached(),
            Err(PollError::Transport(e)) => ctx.breaker.unreachable(e),
            Err(_) => {}
        }
        unreachable = matches!(reply, Err(PollError::Transport(_)));
        if let Err(PollError::Unauthorized(code)) = reply {
            // The call stays `dialed`: the next run, with working credentials, polls it again.
            ctx.refuse_credentials(&format!("HTTP {code}"));
            return Ok(());
        }
        let attempts = match reply {
            Err(e) => {
                ctx.stats.poll_errors.fetch_add(1, Ordering::Relaxed);
                let waits = failing
                    .get_or_insert_with(|| delays(interval, Duration::from_secs(60).max(interval)));
                delay = waits.next().unwrap_or(interval);
                last_seen = format!("last poll failed: {e}");
                warn!(row = contact.line, %req_id, error = %e, retry_in = ?delay, "status poll failed; will keep polling");
                continue;
            }
            Ok(StatusReply::NoSuchRecord) => {
                let detail = format!(
                    "the gateway has no record of request {req_id} (deleted on the gateway, or lost in a restart)"
                );
                warn!(row = contact.line, %req_id, "gateway has no such call record");
                return finish(ctx, row, State::Error, String::new(), 0, detail).await;
            }
            Ok(StatusReply::NoAttemptYet) => Vec::new(),
            Ok(StatusReply::Attempts(a)) => a,
        };
        failing = None;
        delay = interval;
        let Some(last) = attempts.last() else {
            last_seen = "no attempt recorded".into();
            continue;
        };
        let n = attempts.len() as u32;
        match last.state() {
            state @ (AttemptState::Made | AttemptState::Failed) => {
                let st = if state == AttemptState::Made {
                    State::Made
                } else {
                    State::Failed
                };
                finish(
                    ctx,
                    row,
                    st,
                    last.responses.to_string(),
                    n,
                    last.notes.clone(),
                )
                .await?;
                debug!(
                    row = contact.line,
                    number = %crate::logging::number(&contact.dialed_number),
                    %req_id,
                    status = st.as_str(),
                    "call finished"
                );
                // The line is free once the result is durable; removal is housekeeping.
                drop(permit);
                if !ctx.cfg.keep_records {
                    remove_record(ctx, row, req_id).await;
                }
                return Ok(());
            }
            AttemptState::Other(word) => {
                if !reported_words.contains(&word) {
                    warn!(row = contact.line, %req_id, status = %word, notes = %last.notes, "unknown status word; still polling");
                    reported_words.push(word.clone());
                }
                last_seen = format!("{n} attempt(s), last status {word:?}");
            }
            AttemptState::Retry | AttemptState::Pending => {
                last_seen = format!("{n} attempt(s), last {:?}: {}", last.status, last.notes);
            }
        }
    }
}

async fn finish(
    ctx: &Ctx,
    row: u64,
    state: State,
    responses: String,
    attempts: u32,
    detail: String,
) -> Result<()> {
    let counter = match state {
        State::Made => &ctx.stats.made,
        State::Failed => &ctx.stats.failed,
        _ => &ctx.stats.other_final,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    ctx.journal
        .write(Op::Finish(Finish {
            row,
            state,
            responses,
            attempts,
            detail,
            at_ms: now_ms(),
        }))
        .await
}

/// Removes a finished call's record; failures only leave a record behind, which the next run retries.
async fn remove_record(ctx: &Ctx, row: u64, req_id: &str) {
    ctx.stats.removes.fetch_add(1, Ordering::Relaxed);
    match ctx.gateway.remove(req_id).await {
        Ok(RemoveReply::Removed | RemoveReply::NoSuchRecord) => {
            ctx.journal.write_later(Op::Removed { row })
        }
        Ok(RemoveReply::Unexpected(body)) => {
            warn!(%req_id, reply = %body, "unexpected reply to remove; record left on the gateway")
        }
        Err(e) => {
            warn!(%req_id, error = %e, "could not remove the gateway record; the next run retries")
        }
    }
}

/// `90s` → `1m30s`, for messages.
pub fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanized() {
        assert_eq!(humanize(Duration::from_secs(90)), "1m30s");
        assert_eq!(humanize(Duration::from_secs(15 * 60)), "15m");
        assert_eq!(humanize(Duration::from_millis(200)), "200ms");
    }

    #[test]
    fn burst_is_small() {
        // At 1/s the first two requests must not go out together.
        let l = limiter("1/s".parse().expect("rate")).expect("limited");
        assert!(l.check().is_ok());
        assert!(l.check().is_err());
        let l = limiter("200/s".parse().expect("rate")).expect("limited");
        let allowed = (0..100).filter(|_| l.check().is_ok()).count();
        assert_eq!(allowed, 10);
    }
}
