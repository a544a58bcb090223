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

use tokio::sync::mpsc;

use crate::determinism::watch;
use tokio::time::Instant;
use tracing::{debug, trace, warn};

use super::breaker::delays;
use super::pacing::Pacer;
use super::{Ending, Settings, Stage, Stats};
use crate::gateway::protocol::CallRequest;
use crate::gateway::{Gateway, PlaceError};
use crate::privacy::{number, personal};
use crate::rules::ledger::Ledger;
use crate::store::journal::{Health, decode_record};
use crate::store::{Applied, ContactRow, Event, Journal, Op, State, WriteError};
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
    /// The call for `row` is over on the gateway and its result is durable: its line is free for the next
    /// call while this task removes the record ([`super::poll::remove_record`]).
    LineFree { row: u64 },
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
    /// What each gateway's calls have taken so far, to place first polls (one per gateway).
    pub lengths: Vec<super::lengths::Lengths>,
}

impl Ctx {
    /// How logs and the journal name gateway `gw`.
    pub(super) fn key(&self, gw: usize) -> &str {
        &self.settings.gateways[gw].key
    }

    pub(super) async fn report(&self, r: Report) {
        let _ = self.reports.send(r).await;
    }

    pub(super) fn stage(&self) -> Stage {
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

    pub(super) async fn write(&self, row: u64, event: Event) -> Result<Applied, WriteError> {
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
        let (attempt, now_ms) = (contact.attempt, ctx.now_ms());
        let capped = crate::determinism::unblock(move || {
            ledger.check(&e164, &campaign, (row, attempt), true, now_ms)
        })
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
    trace!(target: "turnover", row, "intent durable");
    let mut stage = ctx.stage.clone();
    // The connection slot first, then the send instant: a request that waited for a slot takes the next
    // paced instant rather than leaving with others that waited.
    let slot = tokio::select! {
        biased;
        slot = ctx.gateways[gw].call_slot() => slot,
        _ = stage.wait_for(|s| *s != Stage::Run) => None,
    };
    trace!(target: "turnover", row, "connection slot taken");
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
    trace!(target: "turnover", row, "call request sent");
    let placed = ctx.gateways[gw].place_call(&req).await;
    // The slot bounds HTTP requests in flight, not calls: the answer is read, so the connection is free.
    // What bounds the calls outstanding on the gateway is its lines, which the coordinator counts.
    drop(slot);
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
        // Only a recall can be withdrawn; a request id saved is `Done`.
        Ok(Applied::Done | Applied::RecallWithdrawn) => {
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
    super::poll::poll_call(ctx, &contact, &req_id, dialed_mono, false, gw).await
}
