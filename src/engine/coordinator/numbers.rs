//! Numbers the coordinator keeps from a second call: one with a live call a task watches ([`Coordinator::live`],
//! whose contacts wait in [`Coordinator::held`]), and one whose last call may still be live on the gateway
//! though nobody watches it ([`Coordinator::busy`]): its request's answer was lost (`unknown`), in this run
//! or an earlier one. The runner cannot see how such a call goes, so the number is busy until the call can no
//! longer be live: its request, then `firstocc` minutes of the gateway's retries, then the call itself.

use std::time::Duration;

use tokio::time::Instant;

use super::Coordinator;
use crate::engine::call::Retry;
use crate::error::Result;
use crate::store::ContactRow;

impl Coordinator {
    /// How long after its request a call may still be live: the gateway's retries, then the call.
    fn live_span(&self) -> Duration {
        Duration::from_secs(u64::from(self.ctx.settings.firstocc) * 60)
            + self.ctx.settings.call_length
    }

    /// No call to `number` before `until` (the later of two such times stands).
    fn mark_busy(&mut self, number: String, until: Instant) {
        let at = self.busy.entry(number).or_insert(until);
        *at = (*at).max(until);
    }

    /// When `number` may be called again, if not now.
    pub(super) fn busy_until(&mut self, number: &str, now: Instant) -> Option<Instant> {
        match self.busy.get(number) {
            Some(t) if *t > now => Some(*t),
            Some(_) => {
                self.busy.remove(number);
                None
            }
            None => None,
        }
    }

    /// The answer to `row`'s call request was lost (or its id clashed): the call may be live with no task
    /// watching it. Measured from now, not from the request: later, so never too short.
    pub(super) fn lost_sight(&mut self, row: u64) {
        if let Some(number) = self.live.get(&row).cloned() {
            let until = Instant::now() + self.live_span();
            self.mark_busy(number, until);
        }
    }

    /// Keeps `contact` back until its number's unwatched call can no longer be live: owned, so the list and
    /// the waiting contacts do not hand it out again, and a retry due then (its rules and touch are judged
    /// again at that time).
    pub(super) fn defer_for_number(&mut self, contact: ContactRow, refusals: u32, until: Instant) {
        tracing::debug!(
            row = contact.line,
            "a call to this number may still be live; waiting until it cannot be"
        );
        self.own_waiting(contact.row);
        self.queue_retry(
            until,
            Retry {
                contact,
                refusals,
                after: None,
                why: String::new(),
            },
        );
    }

    /// Numbers an earlier run lost sight of (`unknown` requests) recently enough that their calls may still
    /// be live: busy until the request's time plus the span, by the wall clock the journal recorded it on. A
    /// clock stepped back since cannot stretch the wait past one span from now.
    pub(super) async fn load_unseen(&mut self) -> Result<()> {
        let span = self.live_span();
        let span_ms = i64::try_from(span.as_millis()).unwrap_or(i64::MAX);
        let now_ms = self.ctx.settings.clock.now().as_millisecond();
        let unseen = self
            .ctx
            .journal
            .unknown_since(now_ms.saturating_sub(span_ms))
            .await?;
        let now = Instant::now();
        for (number, intent_ms) in unseen {
            let left = intent_ms.saturating_add(span_ms).saturating_sub(now_ms);
            let left = Duration::from_millis(u64::try_from(left).unwrap_or(0)).min(span);
            self.mark_busy(number, now + left);
        }
        Ok(())
    }
}
