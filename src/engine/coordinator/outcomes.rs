//! What the coordinator learns from its call tasks: their reports (the gateway answered, or not; a call
//! request's answer judged; a line free) and how each ended (final, recalled, to be retried, a stop).

use std::cmp::Reverse;
use std::time::Duration;

use tokio::time::Instant;

use super::Coordinator;
use crate::engine::call::{End, Report, Retry};
use crate::engine::{Ending, Stage, UNREADABLE_IN_A_ROW};
use crate::store::State;

/// A retry, by when it is due.
pub(super) struct Due {
    pub(super) at: Instant,
    pub(super) seq: u64,
    pub(super) retry: Retry,
}

impl Eq for Due {}
impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
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

impl Coordinator {
    pub(super) fn on_report(&mut self, r: Report) {
        let now = Instant::now();
        match r {
            Report::Answered { gw } => self.lanes[gw].breaker.answered(now),
            Report::LineFree { row } => {
                if let Some(owned) = self.owned.get_mut(&row)
                    && let Some(gw) = owned.gw
                    && std::mem::take(&mut owned.line)
                {
                    self.lanes[gw].free += 1;
                    tracing::trace!(target: "turnover", row, "line free");
                }
            }
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
    pub(super) fn release(&mut self, row: u64) {
        self.free_number(row);
        let Some(owned) = self.owned.remove(&row) else {
            return;
        };
        if let Some(gw) = owned.gw {
            let lane = &mut self.lanes[gw];
            if owned.line {
                lane.free += 1;
            }
            lane.awaiting.remove(&row);
            lane.breaker.task_ended(row);
        }
    }

    /// `row`'s call is over (its task ended): the contacts held for its number go to the retries, due now,
    /// so the next one is requested (the rules and its touch checked again then). While stopping they are
    /// left pending in the journal, as retries are.
    fn free_number(&mut self, row: u64) {
        let Some(number) = self.live.remove(&row) else {
            return;
        };
        let Some(held) = self.held.remove(&number) else {
            return;
        };
        let now = Instant::now();
        for retry in held {
            if self.stage_now() != Stage::Run {
                self.owned.remove(&retry.contact.row);
                continue;
            }
            self.seq += 1;
            self.retries.push(Reverse(Due {
                at: now,
                seq: self.seq,
                retry,
            }));
        }
    }

    pub(super) fn on_joined(
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
        if matches!(end, End::Final(State::Unknown) | End::Clash { .. }) {
            self.lost_sight(row);
        }
        self.release(row);
        tracing::trace!(target: "turnover", row, "line free");
        self.wait_dirty = true;
        if self.resumed.remove(&row) && self.ctx.settings.reminders.is_some() {
            self.touches_dirty = true;
        }
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
                    self.lost_sight(other_row);
                    h.abort();
                    self.release(other_row);
                }
            }
            End::Retry(r) => {
                if self.stage_now() == Stage::Run {
                    // Nothing was scheduled: it may go to any gateway when it is due, before new contacts.
                    let at = Instant::now() + r.after.unwrap_or(Duration::ZERO);
                    self.own_waiting(r.contact.row);
                    self.queue_retry(at, r);
                }
            }
            End::Stop(e) => {
                self.ending = self.ending.clone().worst(e);
            }
        }
    }
}
