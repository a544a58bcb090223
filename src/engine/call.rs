//! One contact on one line: the cap, the intent, the call request, the polls, the result, the removal of the
//! gateway record. Each step is durable in the journal before the next one acts on it, and every journal
//! write is a life-cycle event ([`crate::store::contact`]).
//!
//! A task never decides anything about the run: it reports what it saw of the gateway over the coordinator's
//! channel, and returns how it ended ([`End`]). Stopping is cooperative: a poll stops at once when told; a
//! call request already sent is always answered and recorded first, so a stop never leaves a contact
//! `unknown` that was not sent.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::breaker::delays;
use super::pacing::Pacer;
use super::{Ending, Settings, Stage, Stats};
use crate::gateway::protocol::{AttemptState, CallRequest, RemoveReply, StatusReply};
use crate::gateway::{Gateway, PlaceError, PollError};
use crate::privacy::{number, personal};
use crate::rules::ledger::Ledger;
use crate::store::journal::{Health, decode_record};
use crate::store::{Answer, Applied, ContactRow, Event, Journal, Op, State, WriteError};
use crate::types::Dur;

/// What a task saw of a gateway (by its index), for the coordinator's breakers and counts of unreadable
/// replies.
#[derive(Debug, Clone)]
pub enum Report {
    /// The gateway answered (anything: it is there).
    Answered { gw: usize },
    /// The gateway could not be reached.
    Unreachable { gw: usize, why: String },
    /// The answer to the call request for `row` came back: readable (`None`), or leaving the contact
    /// `unknown` (`Some(why)`: lost, unreadable, redirected, a request id another contact has).
    CallReply {
        gw: usize,
        row: u64,
        unknown: Option<String>,
    },
}

/// How a task ended.
#[derive(Debug)]
pub enum End {
    /// The contact reached this final state in this run.
    Final(State),
    /// The call ended with an outcome the recall policy calls again: the contact is pending again, due at
    /// `due_ms` on the wall clock (what the journal keeps for the next run) and not before `due` on the
    /// monotonic clock (what this run holds to, whatever the wall clock does meanwhile).
    Recalled {
        contact: ContactRow,
        due_ms: i64,
        due: Instant,
    },
    /// The gateway gave this contact a request id another open contact holds; that one is `unknown` now and
    /// its task must stop.
    Clash { other_row: u64 },
    /// Dialed and still open: polling stopped (a stop, or status unreadable for `max-outage`). The next run
    /// polls it.
    LeftOpen,
    /// Pending again without a request having been sent (stopped first).
    NotSent,
    /// Pending again: the gateway provably did not schedule it. The coordinator requests it again, on any
    /// gateway (nothing was scheduled anywhere).
    Retry(Retry),
    /// The run must stop (the contact is pending again, or still dialed).
    Stop(Ending),
}

/// A contact waiting to be requested again.
#[derive(Debug)]
pub struct Retry {
    pub contact: ContactRow,
    /// Documented refusals so far (outages do not count: they are not this contact's fault).
    pub refusals: u32,
    /// When to try again: `None` means as soon as the breaker lets a request out.
    pub after: Option<Duration>,
    pub why: String,
}

/// What every call task shares.
pub struct Ctx {
    pub settings: Settings,
    /// The latest time this run has written (see [`Ctx::now_ms`]).
    pub written_ms: std::sync::atomic::AtomicI64,
    /// The clients of the gateways, in the order of `settings.gateways`.
    pub gateways: Vec<Gateway>,
    pub journal: Journal,
    pub ledger: Option<Ledger>,
    /// Status polls and removals, one lane per gateway.
    pub polls: Pacer,
    /// Call requests go out on their own slots, taken after the intent is durable: however long each fsync
    /// takes, no gateway sees more than its rate (plus one) in any second, nor the gateways together more
    /// than the campaign's. One lane per gateway.
    pub sends: Pacer,
    pub stage: watch::Receiver<Stage>,
    pub reports: mpsc::Sender<Report>,
    pub stats: Arc<Stats>,
}

impl Ctx {
    /// How logs and the journal name gateway `gw`.
    fn key(&self, gw: usize) -> &str {
        &self.settings.gateways[gw].key
    }

    async fn report(&self, r: Report) {
        let _ = self.reports.send(r).await;
    }

    fn stage(&self) -> Stage {
        *self.stage.borrow()
    }

    /// The engine's clock, in the journal's unit, never behind a time this run already wrote: a wall clock
    /// stepped back must not record a call as finished before it was dialed.
    pub(super) fn now_ms(&self) -> i64 {
        let wall = self.settings.clock.now().as_millisecond();
        let seen = self
            .written_ms
            .fetch_max(wall, std::sync::atomic::Ordering::Relaxed);
        wall.max(seen)
    }

    async fn write(&self, row: u64, event: Event) -> Result<Applied, WriteError> {
        self.journal
            .write(Op::Apply {
                row,
                event,
                at_ms: self.now_ms(),
            })
            .await
    }

    /// Applies an event durably. A refusal is a bug; a write that cannot be made is a journal failure.
    async fn apply(&self, row: u64, event: Event) -> Result<Applied, End> {
        match self.write(row, event).await {
            Ok(a) => Ok(a),
            Err(WriteError::Refused(r)) => Err(End::Stop(Ending::Internal(r.to_string()))),
            Err(WriteError::Io(e)) => Err(End::Stop(Ending::JournalFailed(e))),
        }
    }
}

/// Requests a call for `contact` (its `refusals` so far), then polls it to the end.
/// Requests a call for `contact` on gateway `gw`, if it can still leave by `send_by` (its calling window).
pub async fn request(
    ctx: Arc<Ctx>,
    contact: ContactRow,
    refusals: u32,
    gw: usize,
    send_by: Option<jiff::Timestamp>,
) -> End {
    match request_inner(&ctx, contact, refusals, gw, send_by).await {
        Ok(end) | Err(end) => end,
    }
}

async fn request_inner(
    ctx: &Ctx,
    contact: ContactRow,
    refusals: u32,
    gw: usize,
    send_by: Option<jiff::Timestamp>,
) -> Result<End, End> {
    let row = contact.row;
    // Made before the cap is claimed and the intent written: a row that cannot be called as configured is `invalid`, never half-sent.
    let record = contact.record.as_deref().and_then(decode_record);
    let extras = match ctx.settings.request.extras(record.as_ref()) {
        Ok(x) => x,
        Err(reason) => {
            warn!(row = contact.line, "{reason}; not called");
            return refused(ctx, &contact, Event::Unplace { reason }, State::Invalid).await;
        }
    };
    if let Some(ledger) = ctx.ledger.clone() {
        let (e164, campaign) = (contact.e164.clone(), ctx.settings.campaign_id.clone());
        let attempt = contact.attempt;
        let capped =
            crate::determinism::unblock(move || ledger.check(&e164, &campaign, row, attempt, true))
                .await
                .map_err(|e| End::Stop(Ending::Internal(format!("the cap check failed: {e}"))))?
                .map_err(|e| {
                    End::Stop(Ending::LedgerFailed {
                        busy: e.exit_code() == crate::error::exit::TEMPFAIL,
                        why: e.to_string(),
                    })
                })?;
        if let Some(detail) = capped {
            return refused(ctx, &contact, Event::Cap { detail }, State::Capped).await;
        }
    }
    if ctx.stage() != Stage::Run {
        return Ok(End::NotSent);
    }
    // Durable before the request leaves: after a crash here the contact is `unknown`, never redialed.
    let gateway = ctx.settings.gateways[gw].key.clone();
    ctx.apply(row, Event::Intent { gateway }).await?;
    let mut stage = ctx.stage.clone();
    // The connection slot first, then the send instant: a request that waited for a slot takes the next
    // paced instant rather than leaving with others that waited.
    let _slot = tokio::select! {
        biased;
        slot = ctx.gateways[gw].call_slot() => slot,
        _ = stage.wait_for(|s| *s != Stage::Run) => None,
    };
    if !ctx
        .sends
        .ready_on(gw, &mut stage, |s| *s != Stage::Run)
        .await
        || ctx.stage() != Stage::Run
    {
        // Nothing left the process: the contact goes back to pending, not to `unknown`.
        ctx.apply(
            row,
            Event::NotScheduled {
                detail: "the run stopped before the call request was sent".into(),
            },
        )
        .await?;
        return Ok(End::NotSent);
    }
    // The window was judged before the intent was written; the write (or the slot) may have taken long
    // enough for it to close. Judged again: nothing leaves after the last moment it allows.
    if let Some(by) = send_by
        && ctx.settings.clock.now() > by
    {
        let detail = format!(
            "the calling window closed (last request at {by}) while the call request waited to be sent; not sent"
        );
        warn!(row = contact.line, "{detail}");
        ctx.apply(
            row,
            Event::NotScheduled {
                detail: detail.clone(),
            },
        )
        .await?;
        return Ok(End::Retry(Retry {
            contact,
            refusals,
            after: None,
            why: detail,
        }));
    }
    if !extras.fields.is_empty() {
        debug!(
            row = contact.line,
            fields = %extras
                .fields
                .iter()
                .map(|(n, v)| format!("{n}={}", personal(v)))
                .collect::<Vec<_>>()
                .join(" "),
            "call request fields"
        );
    }
    let req = CallRequest {
        // Unique per campaign and row, so a gateway record can be traced back to its row.
        info: extras.info.unwrap_or_else(|| {
            format!(
                "ivr-campaign {} row {}",
                ctx.settings.campaign_id, contact.line
            )
        }),
        phoneno: contact.dialed_number.clone(),
        firstocc: ctx.settings.firstocc,
        startapp: ctx.settings.app.clone(),
        extra: extras.fields,
    };
    // Not raced against the stop: once sent, the answer is awaited (bounded by the request timeout) so the
    // contact ends with what the gateway said rather than as `unknown`.
    let placed = ctx.gateways[gw].place_call(&req).await;
    // A request that never left the process is no call request: counted apart, so the figures match the
    // gateway's.
    if matches!(placed, Err(PlaceError::Unsent(_))) {
        Stats::add(&ctx.stats.requests_unsent);
    } else {
        Stats::add(&ctx.stats.requests);
        if let Some(g) = ctx
            .stats
            .by_gateway
            .lock()
            .ok()
            .as_mut()
            .and_then(|v| v.get_mut(gw))
        {
            g.requests += 1;
        }
    }
    let e = match placed {
        Ok(req_id) => {
            ctx.report(Report::Answered { gw }).await;
            return scheduled(ctx, contact, req_id, gw).await;
        }
        Err(e) => e,
    };
    if !matches!(e, PlaceError::Unsent(_)) {
        Stats::add(&ctx.stats.request_failures);
    }
    if e.gateway_down() {
        ctx.report(Report::Unreachable {
            gw,
            why: e.to_string(),
        })
        .await;
    } else if e.gateway_answered() {
        ctx.report(Report::Answered { gw }).await;
    }
    let unknown = match &e {
        // No answer to judge: the request never left.
        PlaceError::NotSent(_) | PlaceError::Unsent(_) => None,
        PlaceError::Unavailable(_)
        | PlaceError::Refused(_)
        | PlaceError::Unauthorized(_)
        | PlaceError::Misconfigured(_) => Some(None),
        PlaceError::Lost(why) | PlaceError::Redirected(why) => Some(Some(why.clone())),
        PlaceError::Unreadable { reason, .. } => Some(Some(reason.clone())),
    };
    if let Some(unknown) = unknown {
        ctx.report(Report::CallReply { gw, row, unknown }).await;
    }
    let not_scheduled = |detail: String| Event::NotScheduled { detail };
    match e {
        PlaceError::NotSent(_) | PlaceError::Unsent(_) | PlaceError::Unavailable(_) => {
            // An outage is not this contact's fault: it waits for the breaker and spends none of its retries.
            ctx.apply(row, not_scheduled(e.to_string())).await?;
            debug!(row = contact.line, error = %e, "call request not scheduled; waiting for the gateway");
            Ok(End::Retry(Retry {
                contact,
                refusals,
                after: None,
                why: e.to_string(),
            }))
        }
        PlaceError::Refused(_) => {
            let refusals = refusals + 1;
            if refusals > ctx.settings.request_retries {
                warn!(row = contact.line, error = %e, "the gateway refused this call {refusals} times; giving up on it");
                let detail = format!("{e} (refused {refusals} times)");
                ctx.apply(row, Event::GaveUp { detail }).await?;
                return Ok(End::Final(State::Error));
            }
            ctx.apply(row, not_scheduled(e.to_string())).await?;
            let wait = delays(Duration::from_secs(1), Duration::from_secs(30))
                .nth(refusals as usize - 1)
                .unwrap_or(Duration::from_secs(30));
            warn!(row = contact.line, error = %e, retry_in = %Dur(wait), "call request refused; will retry");
            Ok(End::Retry(Retry {
                contact,
                refusals,
                after: Some(wait),
                why: e.to_string(),
            }))
        }
        PlaceError::Unauthorized(ref why) => {
            ctx.apply(row, not_scheduled(e.to_string())).await?;
            Ok(End::Stop(Ending::CredentialsRefused(why.clone())))
        }
        PlaceError::Misconfigured(ref why) => {
            ctx.apply(row, not_scheduled(e.to_string())).await?;
            Ok(End::Stop(Ending::Misconfigured(why.clone())))
        }
        PlaceError::Redirected(ref why) => {
            ctx.apply(
                row,
                Event::Ambiguous {
                    detail: e.to_string(),
                },
            )
            .await?;
            Ok(End::Stop(Ending::Misconfigured(why.clone())))
        }
        PlaceError::Lost(_) => {
            warn!(row = contact.line, error = %e, "the answer to one call request was lost; marking it unknown, not redialing");
            ctx.apply(
                row,
                Event::Ambiguous {
                    detail: e.to_string(),
                },
            )
            .await?;
            Ok(End::Final(State::Unknown))
        }
        PlaceError::Unreadable { .. } => {
            warn!(row = contact.line, error = %e, "the answer to a call request cannot be read; marking it unknown, not redialing");
            ctx.apply(
                row,
                Event::Ambiguous {
                    detail: e.to_string(),
                },
            )
            .await?;
            Ok(End::Final(State::Unknown))
        }
    }
}

/// A rule refused the call: the contact ends `state`, or, waiting for a recall, with its last call's outcome
/// ([`Event::refusing`]).
async fn refused(ctx: &Ctx, contact: &ContactRow, event: Event, state: State) -> Result<End, End> {
    let last = contact.recall_of.as_ref().map(|(o, _)| *o);
    ctx.apply(contact.row, event.refusing(last)).await?;
    Ok(End::Final(last.unwrap_or(state)))
}

/// Records the request id, then polls.
async fn scheduled(ctx: &Ctx, contact: ContactRow, req_id: String, gw: usize) -> Result<End, End> {
    let row = contact.row;
    let dialed_at = ctx.now_ms();
    // Durations from here (the poll deadline, the wait before a recall) are measured on the monotonic clock:
    // a step of the wall clock (NTP, a resumed VM) must not write off a call the gateway still holds.
    let dialed_mono = Instant::now();
    let write = ctx.journal.write(Op::Apply {
        row,
        event: Event::Scheduled {
            req_id: req_id.clone(),
        },
        at_ms: dialed_at,
    });
    tokio::pin!(write);
    // The gateway holds a call now. If the journal cannot save its id (a full disk), say at once where to find
    // the call, and keep waiting: the writer retries until it is saved or the process must end.
    let mut health = ctx.journal.health();
    let mut said = false;
    let written = loop {
        let failing = matches!(*health.borrow_and_update(), Health::Failing(_));
        if failing && !said {
            said = true;
            tracing::error!(row = contact.line, number = %number(&contact.dialed_number), %req_id, gateway = ctx.key(gw), "the gateway scheduled this call, and the journal cannot save its request id yet; retrying (if the run ends first, find the call on the gateway by this id)");
        }
        tokio::select! {
            biased;
            r = &mut write => break r,
            changed = health.changed(), if !said => {
                if changed.is_err() {
                    said = true;
                }
            }
        }
    };
    match written {
        Ok(Applied::Done) => {
            ctx.report(Report::CallReply {
                gw,
                row,
                unknown: None,
            })
            .await
        }
        Ok(Applied::Clash {
            other_row,
            other_open,
        }) => {
            warn!(row = contact.line, %req_id, "the gateway gave a request id another contact already has; both are unknown now");
            ctx.report(Report::CallReply {
                gw,
                row,
                unknown: Some(format!(
                    "request id {req_id}, which another contact already has"
                )),
            })
            .await;
            return Ok(if other_open {
                End::Clash { other_row }
            } else {
                End::Final(State::Unknown)
            });
        }
        Err(WriteError::Refused(r)) => return Err(End::Stop(Ending::Internal(r.to_string()))),
        Err(WriteError::Io(e)) => {
            // The gateway holds a call the journal could not record: say where to find it.
            tracing::error!(row = contact.line, number = %number(&contact.dialed_number), %req_id, gateway = ctx.key(gw), error = %e, "the request id of a scheduled call could not be saved");
            return Err(End::Stop(Ending::JournalFailed(e)));
        }
    }
    Stats::add(&ctx.stats.dialed);
    debug!(row = contact.line, number = %number(&contact.dialed_number), %req_id, gateway = ctx.key(gw), "call requested");
    poll_inner(ctx, &contact, &req_id, dialed_mono, false, gw).await
}

/// Polls a call placed by an earlier run.
pub async fn resume(ctx: Arc<Ctx>, contact: ContactRow, gw: usize) -> End {
    let Some(req_id) = contact.req_id.clone() else {
        return End::Stop(Ending::Internal(format!(
            "row {} is dialed without a request id",
            contact.line
        )));
    };
    // Placed by an earlier run: only the wall clock spans the two runs, and it may have been stepped or
    // corrected in between, so it cannot say how long ago the request was. The call is taken as placed now:
    // it is written off (or recalled as unresolved) only after a full poll timeout of this run, unless the
    // gateway gives its final answer first, as it does within `firstocc` for every call it still holds.
    let dialed = Instant::now();
    match poll_inner(&ctx, &contact, &req_id, dialed, true, gw).await {
        Ok(end) | Err(end) => end,
    }
}

/// Answers of "no such call record" in a row before a call is taken as lost.
const MISSING_IN_A_ROW: u32 = 3;

/// Counts a call as in flight for as long as it is polled.
struct InFlight<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> InFlight<'a> {
    fn new(c: &'a std::sync::atomic::AtomicU64) -> Self {
        Stats::add(c);
        InFlight(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Polls one call until its last record is final, the gateway forgets it, or it is read at or after its
/// deadline and still not final.
///
/// The deadline applies only to answers that say "not final yet". While the status cannot be read (the
/// gateway unreachable, errors, pages that are not status replies) the call stays open, because its result
/// may be sitting on the gateway; after `max-outage` of that, polling stops and the next run polls it again.
async fn poll_inner(
    ctx: &Ctx,
    contact: &ContactRow,
    req_id: &str,
    dialed: Instant,
    resumed: bool,
    gw: usize,
) -> Result<End, End> {
    let _in_flight = InFlight::new(&ctx.stats.in_flight);
    let row = contact.row;
    let s = &ctx.settings;
    let deadline = dialed + s.poll_timeout;
    let interval = s.poll_interval;
    let mut stage = ctx.stage.clone();
    // A resumed call is read at once: its deadline may be long past, and it is written off only after a read.
    let mut delay = if resumed { Duration::ZERO } else { interval };
    let mut failing: Option<backon::ExponentialBackoff> = None;
    let mut unreadable_since: Option<Instant> = None;
    let mut reported_words: Vec<String> = Vec::new();
    // "No such record" must be said several times in a row before the call is given up as lost: one such
    // answer from a gateway that is restarting, or a proxy in a bad moment, must not lose a made call.
    let mut missing = 0u32;
    loop {
        let to_deadline = deadline.saturating_duration_since(Instant::now());
        // Never sleep past the deadline: the read that may write the call off happens on time.
        let wait = if to_deadline.is_zero() {
            delay
        } else {
            delay.min(to_deadline)
        };
        let wake = Instant::now() + wait;
        tokio::select! {
            biased;
            _ = stage.wait_for(|s| *s == Stage::Now) => return Ok(End::LeftOpen),
            _ = tokio::time::sleep_until(wake) => {}
        }
        if !ctx
            .polls
            .ready_on(gw, &mut stage, |s| *s == Stage::Now)
            .await
        {
            return Ok(End::LeftOpen);
        }
        Stats::add(&ctx.stats.polls);
        // When the poll was sent, not when its answer came: a slow answer may describe the call as it was
        // before the deadline, and only an answer asked for at or after it may write the call off.
        let asked_at = Instant::now();
        let reply = tokio::select! {
            biased;
            _ = stage.wait_for(|s| *s == Stage::Now) => return Ok(End::LeftOpen),
            r = ctx.gateways[gw].status(req_id) => r,
        };
        match &reply {
            Err(PollError::Unreachable(e)) => {
                ctx.report(Report::Unreachable { gw, why: e.clone() }).await
            }
            Err(PollError::Lost(_)) => {}
            Ok(_) | Err(_) => ctx.report(Report::Answered { gw }).await,
        }
        let attempts = match reply {
            Err(PollError::Unauthorized(code)) => {
                // The call stays `dialed`: the next run, with working credentials, polls it again.
                return Ok(End::Stop(Ending::CredentialsRefused(format!(
                    "HTTP {code}"
                ))));
            }
            Err(PollError::Misconfigured(code)) => {
                return Ok(End::Stop(Ending::Misconfigured(format!(
                    "HTTP {code} from the status handler"
                ))));
            }
            Err(e) => {
                Stats::add(&ctx.stats.poll_errors);
                // "No such record" counts only in a row: an answer that cannot be read between two of them is
                // what a restarting gateway gives, and its records may be back once it has started.
                missing = 0;
                let since = *unreadable_since.get_or_insert_with(Instant::now);
                if since.elapsed() > s.max_outage {
                    warn!(row = contact.line, %req_id, gateway = ctx.key(gw), error = %e, "status unreadable for longer than max-outage; the next run polls this call again");
                    return Ok(End::LeftOpen);
                }
                let waits = failing
                    .get_or_insert_with(|| delays(interval, Duration::from_secs(60).max(interval)));
                delay = waits.next().unwrap_or(interval);
                warn!(row = contact.line, %req_id, gateway = ctx.key(gw), error = %e, retry_in = %Dur(delay), "status poll failed; will keep polling");
                continue;
            }
            Ok(StatusReply::NoSuchRecord) => {
                missing += 1;
                if missing < MISSING_IN_A_ROW {
                    warn!(row = contact.line, %req_id, "gateway says it has no such call record; asking again");
                    delay = interval;
                    continue;
                }
                let detail = format!(
                    "the gateway has no record of request {req_id} ({missing} answers in a row: deleted on the gateway, or lost in a restart)"
                );
                warn!(row = contact.line, %req_id, "gateway has no such call record");
                return finish(ctx, row, Event::RecordLost { detail }, State::Error).await;
            }
            Ok(StatusReply::NoAttemptYet) => Vec::new(),
            Ok(StatusReply::Attempts(a)) => a,
        };
        failing = None;
        unreadable_since = None;
        missing = 0;
        delay = interval;
        let n = attempts.len() as u32;
        let last_seen = match attempts.last() {
            None => "no attempt recorded".to_string(),
            Some(last) => match last.state() {
                state @ (AttemptState::Made | AttemptState::Failed) => {
                    let notes = match &last.irregular {
                        Some(what) => format!("{} ({what})", last.notes),
                        None => last.notes.clone(),
                    };
                    let answer = Answer {
                        responses: last.responses.to_string(),
                        attempts: n,
                        notes,
                    };
                    let st = if state == AttemptState::Made {
                        State::Made
                    } else {
                        State::Failed
                    };
                    let certain = last.irregular.is_none();
                    if let Some(end) = recall(ctx, contact, st, &answer, certain, dialed).await? {
                        if !s.keep_records {
                            remove_record(ctx, row, req_id, gw).await;
                        }
                        return Ok(end);
                    }
                    let event = if st == State::Made {
                        Event::Made(answer)
                    } else {
                        Event::Failed(answer)
                    };
                    let end = finish(ctx, row, event, st).await?;
                    if matches!(end, End::Final(State::Unknown)) {
                        // A request-id clash made it unknown meanwhile: whose record this is, nobody knows.
                        return Ok(end);
                    }
                    debug!(
                        row = contact.line,
                        number = %number(&contact.dialed_number),
                        %req_id,
                        status = st.as_str(),
                        "call finished"
                    );
                    if !s.keep_records {
                        remove_record(ctx, row, req_id, gw).await;
                    }
                    return Ok(end);
                }
                AttemptState::Other(word) => {
                    if !reported_words.contains(&word) {
                        warn!(row = contact.line, %req_id, status = %word, notes = %last.notes, "unknown status word; still polling");
                        reported_words.push(word.clone());
                    }
                    format!("{n} attempt(s), last status {word:?}")
                }
                AttemptState::Retry | AttemptState::Pending => {
                    format!("{n} attempt(s), last {:?}: {}", last.status, last.notes)
                }
            },
        };
        if asked_at >= deadline {
            // Read at or after the deadline and still not final: written off, and the record removed so the
            // gateway makes no further attempt.
            warn!(row = contact.line, %req_id, "giving up polling: {last_seen}");
            let detail = format!(
                "no final status {} after the request ({last_seen})",
                Dur(s.poll_timeout)
            );
            let answer = Answer {
                responses: String::new(),
                attempts: n,
                notes: detail.clone(),
            };
            if let Some(end) =
                recall(ctx, contact, State::Unresolved, &answer, true, dialed).await?
            {
                if !s.keep_records {
                    remove_record(ctx, row, req_id, gw).await;
                }
                return Ok(end);
            }
            let end = finish(
                ctx,
                row,
                Event::WrittenOff {
                    detail,
                    attempts: n,
                },
                State::Unresolved,
            )
            .await?;
            // Removed to cancel any attempt the gateway would still make, unless the operator keeps records (the
            // window's margin covers the gateway's retries either way).
            if matches!(end, End::Final(State::Unresolved)) && !s.keep_records {
                remove_record(ctx, row, req_id, gw).await;
            }
            return Ok(end);
        }
    }
}

/// When the recall policy calls this outcome again, records the call as ended and the contact as pending
/// again, due after `recall-after`; `None` when it does not.
async fn recall(
    ctx: &Ctx,
    contact: &ContactRow,
    outcome: State,
    answer: &Answer,
    certain: bool,
    dialed: Instant,
) -> Result<Option<End>, End> {
    let Some(policy) = &ctx.settings.recall else {
        return Ok(None);
    };
    if !policy.wants(outcome, &answer.responses, contact.attempt, certain) {
        return Ok(None);
    }
    let now = Instant::now();
    let mut due = now + policy.after;
    if outcome == State::Unresolved {
        // The gateway may still be dialing the old record (its removal can fail, or the run can die before
        // it): the recall waits until the gateway's own attempts are over, `firstocc` minutes after the
        // request, plus the 5 minutes the default poll timeout allows for the last of them. Two calls are
        // never open for one person at once.
        let gateway_done =
            dialed + Duration::from_secs(u64::from(ctx.settings.firstocc) * 60 + 5 * 60);
        due = due.max(gateway_done);
    }
    let ahead = i64::try_from((due - now).as_millis()).unwrap_or(i64::MAX);
    // On the campaign's time line, not the wall clock: the next run compares it with the same line.
    let due_ms = ctx.settings.steady.now_ms().saturating_add(ahead);
    let event = Event::Recall {
        outcome,
        answer: answer.clone(),
        due_ms,
        not_before_ms: Some(due_ms),
    };
    match ctx.write(contact.row, event).await {
        Ok(_) => {
            debug!(
                row = contact.line,
                outcome = outcome.as_str(),
                attempt = contact.attempt,
                "call ended; recalled"
            );
            Ok(Some(End::Recalled {
                contact: contact.clone(),
                due_ms,
                due,
            }))
        }
        // A request-id clash made it unknown meanwhile.
        Err(WriteError::Refused(r)) if r.from == State::Unknown => {
            Ok(Some(End::Final(State::Unknown)))
        }
        Err(WriteError::Refused(r)) => Err(End::Stop(Ending::Internal(r.to_string()))),
        Err(WriteError::Io(e)) => Err(End::Stop(Ending::JournalFailed(e))),
    }
}

/// Records a final result of a dialed call. A contact a request-id clash made `unknown` meanwhile ends so.
async fn finish(ctx: &Ctx, row: u64, event: Event, state: State) -> Result<End, End> {
    let counter = match state {
        State::Made => &ctx.stats.made,
        State::Failed => &ctx.stats.failed,
        _ => &ctx.stats.other_final,
    };
    match ctx.write(row, event).await {
        Ok(_) => {
            Stats::add(counter);
            Ok(End::Final(state))
        }
        Err(WriteError::Refused(r)) if r.from == State::Unknown => Ok(End::Final(State::Unknown)),
        Err(WriteError::Refused(r)) => Err(End::Stop(Ending::Internal(r.to_string()))),
        Err(WriteError::Io(e)) => Err(End::Stop(Ending::JournalFailed(e))),
    }
}

/// Removes a final call's record; a failure only leaves a record behind, which the next run retries.
pub async fn remove_record(ctx: &Ctx, row: u64, req_id: &str, gw: usize) {
    // A gateway that reused this id for another contact's call would cancel that call: a remove names a
    // record only by its id. The record is left on the gateway instead (clutter, not a lost call).
    let id = req_id.to_string();
    let shared = ctx
        .journal
        .read(move |c| {
            Ok(c.query_row(
                "SELECT EXISTS (SELECT 1 FROM contacts WHERE req_id = ?1 AND row != ?2)",
                rusqlite::params![id, row as i64],
                |r| r.get::<_, bool>(0),
            )?)
        })
        .await;
    if !matches!(shared, Ok(false)) {
        warn!(%req_id, gateway = ctx.key(gw), "request id now names another contact's call too; its record is left on the gateway rather than risk cancelling that call");
        return;
    }
    Stats::add(&ctx.stats.removes);
    match ctx.gateways[gw].remove(req_id).await {
        Ok(RemoveReply::Removed | RemoveReply::NoSuchRecord) => {
            ctx.journal.write_later(Op::Removed {
                row,
                req_id: req_id.to_string(),
            })
        }
        Ok(RemoveReply::Unexpected(body)) => {
            warn!(%req_id, gateway = ctx.key(gw), reply = %body, "unexpected reply to remove; record left on the gateway")
        }
        Err(e) => {
            warn!(%req_id, gateway = ctx.key(gw), error = %e, "could not remove the gateway record; the next run retries")
        }
    }
}
