//! The coordinator's supply of contacts: calls placed by an earlier run to resume, then the list in input
//! order (a rolling export's touches earliest end first), then (wait mode, recalls) contacts whose time has come, read from the journal in batches; and what
//! is recorded of a contact the rules hold back.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info};

use super::Coordinator;
use crate::engine::Stage;
use crate::error::Result;
use crate::rules::{Candidate, Decision};
use crate::store::journal::{ListCursor, Waiting};
use crate::store::{ContactRow, Event, Op};

/// Contacts read from the journal at a time.
pub(super) const BATCH: usize = 512;

/// Where the next contact comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Calls placed by an earlier run, to be polled (never requested again).
    Resume { after: Option<u64> },
    /// The pending contacts, each looked at once: in input order, or a rolling export's touches earliest
    /// end first.
    List { after: Option<ListCursor> },
    /// Contacts waiting for their window to open (wait mode) or for a recall to fall due.
    Waiting,
    /// Nothing more this run.
    Done,
}

impl Coordinator {
    /// A contact the rules said not to call now: recorded, and left for later or for good.
    pub(super) fn decided(&mut self, c: &ContactRow, decision: Decision) {
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
    pub(super) fn postpone_recall(&mut self, c: &ContactRow, due_ms: i64) {
        let Some(window) = self.rules.window.clone() else {
            return;
        };
        // `due_ms` is on the steady line; the window is judged on the wall clock, so the due time is read as
        // the wall clock will show it then (a stepped wall clock otherwise puts a recall due inside the window
        // outside it, and the run ends leaving it).
        let off = self
            .ctx
            .settings
            .clock
            .now()
            .as_millisecond()
            .saturating_sub(self.ctx.settings.steady.now_ms());
        let due = jiff::Timestamp::from_millisecond(due_ms.saturating_add(off))
            .unwrap_or(jiff::Timestamp::MAX);
        let cand = Candidate {
            e164: &c.e164,
            tz: c.tz.as_deref(),
        };
        let until = match self.rules.place(cand) {
            Err(_) => None,
            Ok(p) if window.allows_all(due, &p.zones) => return,
            Ok(p) if self.ctx.settings.wait_for_window => window
                .next_opening_all(due, &p.zones)
                .map(|t| t.as_millisecond().saturating_sub(off)),
            Ok(_) => None,
        };
        debug!(row = c.line, due = %due, "the recall falls due outside the calling window; left for the next run");
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

    /// The next call placed by an earlier run, while there are any.
    pub(super) async fn next_resume(&mut self) -> Result<Option<ContactRow>> {
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
    pub(super) async fn next_fresh(&mut self) -> Result<Option<ContactRow>> {
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
                        Some((last, _)) => {
                            self.phase = Phase::List { after: Some(*last) };
                            self.queue.extend(batch.into_iter().map(|(_, c)| c));
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
                    let now_ms = self.due_now_ms();
                    let wall_ms = self.ctx.settings.clock.now().as_millisecond();
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
                    if let Some(w) = self.ctx.journal.next_wait().await? {
                        self.wait_for(w, now_ms);
                    }
                    return Ok(None);
                }
                Phase::Done => return Ok(None),
            }
        }
    }

    /// Sets when the waiting contacts are looked at again. A window opening is a calendar time, reached by the
    /// wall clock; a recall's due time is on the steady line (`steady_ms` now), reached by the monotonic
    /// clock, so a wall clock stepped back during the run does not delay it.
    fn wait_for(&mut self, w: Waiting, steady_ms: i64) {
        let clock = &self.ctx.settings.clock;
        let now = Instant::now();
        let opens = w.window_ms.map(|at| {
            clock.instant_at(jiff::Timestamp::from_millisecond(at).unwrap_or(clock.now()))
        });
        let recall = w
            .recall_ms
            .map(|at| now + Duration::from_millis(at.saturating_sub(steady_ms).max(0) as u64));
        let Some(next) = opens.into_iter().chain(recall).min() else {
            return;
        };
        // Due but still owned (its intent is on its way): look again shortly.
        self.wait_until = Some(next.max(now + Duration::from_millis(200)));
        if next > now {
            let (at, is_recall) = match (w.recall_ms, recall) {
                (Some(at), Some(r)) if r == next => (at, true),
                _ => (w.window_ms.unwrap_or_default(), false),
            };
            if self.announced_wait != Some(at) {
                self.announced_wait = Some(at);
                let t = jiff::Timestamp::from_millisecond(at).unwrap_or(clock.now());
                if is_recall {
                    info!(contacts = w.contacts, next_due = %t, "waiting for recalls to fall due");
                } else {
                    info!(contacts = w.contacts, opens = %t, "waiting for the calling window to open");
                }
            }
        }
    }

    /// A call an earlier run left live has ended: moves a rolling export's touches along by the clock, as the
    /// run's start did. A touch that was held back only by that call (its appointment moved while it was
    /// live) falls due and is handed out in this run, ahead of the rest of the list, with its end known to
    /// the rules.
    pub(super) async fn advance_touches(&mut self) -> Result<()> {
        self.touches_dirty = false;
        let Some(reminders) = self.ctx.settings.reminders.clone() else {
            return Ok(());
        };
        let min_notice_ms = reminders
            .appointments
            .as_ref()
            .map(|a| a.timing.min_notice.as_millis() as i64);
        let now_ms = self.ctx.settings.clock.now().as_millisecond();
        let (due, ends) = self
            .ctx
            .journal
            .advance_touches(reminders, now_ms, min_notice_ms)
            .await?;
        self.rules.touch_ends.extend(ends);
        for c in due.into_iter().rev() {
            info!(
                row = c.line,
                "a touch held back by a call of an earlier run is due now"
            );
            self.queue.push_front(c);
        }
        Ok(())
    }

    /// Nothing left to hand out in this run.
    pub(super) async fn exhausted(&mut self) -> Result<bool> {
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
    pub(super) async fn start_housekeeping(&mut self) -> Result<()> {
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
                crate::engine::poll::remove_record(&ctx, row, &req_id, gw, false).await;
            }
        }));
        Ok(())
    }
}
