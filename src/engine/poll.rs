//! A dialed call, from its request id to its end: the polls (spaced by what the campaign has learned of its
//! calls' lengths, see [`super::lengths`]), the result, a recall, the removal of the gateway record.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, trace, warn};

use super::breaker::delays;
use super::call::{Ctx, End, Report};
use super::lengths::FirstPoll;
use super::{Ending, Stage, Stats};
use crate::gateway::PollError;
use crate::gateway::protocol::{AttemptState, RemoveReply, StatusReply};
use crate::privacy::number;
use crate::store::{Answer, Applied, ContactRow, Event, Op, State, WriteError};
use crate::types::Dur;

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
    match poll_call(&ctx, &contact, &req_id, dialed, true, gw).await {
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
pub(super) async fn poll_call(
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
    // A probe's plan is held until the call's length is recorded: the next probe then starts from it.
    // Told before the plan is made, so that no change between the two is missed.
    let mut placed = ctx.lengths[gw].placed();
    let mut plan = (!resumed).then(|| ctx.lengths[gw].first_poll());
    let mut floor = plan.as_ref().map_or(Duration::ZERO, |p| p.floor);
    // A resumed call is read at once (its deadline may be long past, and it is written off only after a
    // read); a new call's first poll is at `first_at`, below.
    let mut delay = Duration::ZERO;
    if let Some(p) = &plan {
        trace!(target: "turnover", row, first_poll = %Dur(p.at), probe = p.is_probe(), "first poll planned");
    }
    // The first poll is timed from the request, not from when its id was saved (a commit of varying length).
    let mut first_at = plan.as_ref().map(|p| dialed + p.at);
    // The last readable answer that said "not final yet", as an offset from the request: the call lasted
    // longer than that.
    let mut not_final_after: Option<Duration> = None;
    let mut failing: Option<backon::ExponentialBackoff> = None;
    let mut unreadable_since: Option<Instant> = None;
    let mut reported_words: Vec<String> = Vec::new();
    // "No such record" must be said several times in a row before the call is given up as lost: one such
    // answer from a gateway that is restarting, or a proxy in a bad moment, must not lose a made call.
    let mut missing = 0u32;
    loop {
        let to_deadline = deadline.saturating_duration_since(Instant::now());
        // The read that may write the call off happens at the deadline, unless that is less than an interval
        // after this call's last poll: then at the next poll after it. A first poll falls anywhere in an
        // interval, so a deadline taken as is would come at any time after the poll before it.
        let wait = if to_deadline >= interval {
            delay.min(to_deadline)
        } else {
            delay
        };
        let wake = match first_at {
            Some(at) => at.min(deadline),
            None => Instant::now() + wait,
        };
        tokio::select! {
            biased;
            _ = stage.wait_for(|s| *s == Stage::Now) => return Ok(End::LeftOpen),
            _ = tokio::time::sleep_until(wake) => {}
            // A call ended, and a first poll now goes elsewhere: this call's moves there, as if it had been
            // placed now (a probe gives its probe back; the next call placed probes from what is known then).
            // At the start of a campaign the first calls to end tell the others when to ask, and a probe that
            // finds a shorter length brings the calls placed meanwhile forward with it. Moving every waiting
            // call only to an earlier place would follow the lowest of a noisy estimate down, into misses.
            Ok(()) = placed.changed(), if first_at.is_some() => {}
            _ = ctx.lengths[gw].ended.notified(), if first_at.is_some() && plan.as_ref().is_some_and(|p| p.below) => {}
        }
        if Instant::now() < wake {
            // Woken to move: the wait starts again from the new place.
            if let Some((at, to)) = *placed.borrow_and_update() {
                drop(plan.take());
                let p = FirstPoll::new(&ctx.lengths[gw], at, to);
                trace!(target: "turnover", row, first_poll = %Dur(p.at), "first poll placed again");
                first_at = Some(dialed + p.at);
                floor = p.floor;
                plan = Some(p);
            }
            continue;
        }
        first_at = None;
        // A timer fires up to a tick late. What a poll teaches is taken as of when it was due: otherwise the
        // shortest length seen would creep up by that lateness, call after call, each first poll being placed
        // on the last one's offset. A wait for the poll budget still counts.
        let woke_late = Instant::now().saturating_duration_since(wake);
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
        let offset = asked_at
            .saturating_duration_since(dialed)
            .saturating_sub(woke_late);
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
                    trace!(target: "turnover", row, "final answer read");
                    // A resumed call's request time is not known to this run: it teaches nothing.
                    if !resumed {
                        let lo = not_final_after.unwrap_or(Duration::ZERO);
                        ctx.lengths[gw].record_above(lo, offset, floor);
                    }
                    drop(plan.take());
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
                            remove_record(ctx, row, req_id, gw, true).await;
                        }
                        return Ok(end);
                    }
                    let event = if st == State::Made {
                        Event::Made(answer)
                    } else {
                        Event::Failed(answer)
                    };
                    let end = finish(ctx, row, event, st).await?;
                    trace!(target: "turnover", row, "result durable");
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
                        remove_record(ctx, row, req_id, gw, true).await;
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
        not_final_after = Some(offset);
        if let Some(p) = plan.as_mut() {
            p.not_final_yet();
        }
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
                    remove_record(ctx, row, req_id, gw, false).await;
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
                remove_record(ctx, row, req_id, gw, false).await;
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
        Ok(Applied::RecallWithdrawn) => {
            debug!(
                row = contact.line,
                outcome = outcome.as_str(),
                "call ended; its touch is withdrawn, so no recall"
            );
            Stats::add(final_counter(ctx, outcome));
            Ok(Some(End::Final(outcome)))
        }
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

/// The run's count of calls that ended `state`.
fn final_counter(ctx: &Ctx, state: State) -> &std::sync::atomic::AtomicU64 {
    match state {
        State::Made => &ctx.stats.made,
        State::Failed => &ctx.stats.failed,
        _ => &ctx.stats.other_final,
    }
}

/// Records a final result of a dialed call. A contact a request-id clash made `unknown` meanwhile ends so.
async fn finish(ctx: &Ctx, row: u64, event: Event, state: State) -> Result<End, End> {
    let counter = final_counter(ctx, state);
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
///
/// `frees_line`: the call's final answer was read and its result is durable, so its line is given back before
/// the removal is sent rather than after it is answered. The removal's round trip is then off the path from
/// a final answer to the next call request (against a gateway whose replies come in two TCP segments it was
/// a delayed ACK, 40 ms, on every turnover).
pub async fn remove_record(ctx: &Ctx, row: u64, req_id: &str, gw: usize, frees_line: bool) {
    // A gateway that reused this id for another contact's call would cancel that call: a remove names a
    // record only by its id. The record is left on the gateway instead (clutter, not a lost call).
    let shared = ctx.journal.id_held_by_another(req_id, row).await;
    if frees_line {
        // After the check: it runs before any write the next call's task queues (its intent), and the removal
        // leaves now, while that intent is still being committed.
        ctx.report(Report::LineFree { row }).await;
    }
    if !matches!(shared, Ok(false)) {
        warn!(%req_id, gateway = ctx.key(gw), "request id now names another contact's call too; its record is left on the gateway rather than risk cancelling that call");
        return;
    }
    Stats::add(&ctx.stats.removes);
    trace!(target: "turnover", row, "remove sent");
    let removed = ctx.gateways[gw].remove(req_id).await;
    trace!(target: "turnover", row, "remove answered");
    match removed {
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
