//! The circuit breaker: while the gateway cannot be reached, call requests stop.
//!
//! A gateway restarting, or a network away for five minutes, must not turn a whole list into `error`. So
//! when a request finds the gateway unreachable (refused, connect timeout, 503, a proxy's 502/504), the
//! breaker opens: no call request goes out but one probe at a time, after a capped exponential backoff. The
//! first answer closes it again. If it stays open past `max-outage`, the run stops cleanly with work left
//! (exit 75; the next run resumes).
//!
//! The coordinator owns it outright (no lock, no shared wake-ups): it asks [`Breaker::may_send`] before each
//! call request, and tells it every verdict, including a probe whose task ended without asking the gateway
//! anything (capped, stopped), so the probe slot can never be left taken.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::types::Dur;

/// Delays that double from `min`, with up to +100% jitter, never above `max`.
pub fn delays(min: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(min)
        // Jitter adds up to the delay again, so the cap before jitter is half the promised maximum.
        .with_max_delay((max / 2).max(min))
        .with_factor(2.0)
        .with_jitter()
        // Drawn where the simulation tier can pin it (a seed must replay exactly).
        .with_jitter_seed(crate::determinism::random_u64())
        .without_max_times()
        .build()
}

const PROBE_MIN: Duration = Duration::from_millis(500);
const PROBE_MAX: Duration = Duration::from_secs(30);

pub struct Breaker {
    open_since: Option<Instant>,
    next_probe: Instant,
    /// The row whose request is the probe now out, if any.
    probe: Option<u64>,
    delays: ExponentialBackoff,
    max_outage: Duration,
    /// Time spent open, over the run (for the summary).
    pub outage_total: Duration,
    /// The outages that ended, in order: the campaign's outage is the time every gateway was down at once.
    spans: Vec<(Instant, Instant)>,
    /// The pause going on is this process's own (no file descriptor for a socket), not the gateway's: it
    /// pauses requests like an outage, and is not counted as one.
    local: bool,
    /// The gateway's key, in logs, when the campaign has several.
    label: Option<String>,
}

/// Why a call request may not go out yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The next probe may go at this instant.
    Until(Instant),
    /// A probe is out: wait for its verdict.
    Verdict,
}

impl Breaker {
    pub fn new(max_outage: Duration, label: Option<String>) -> Breaker {
        Breaker {
            open_since: None,
            next_probe: Instant::now(),
            probe: None,
            delays: delays(PROBE_MIN, PROBE_MAX),
            max_outage,
            outage_total: Duration::ZERO,
            spans: Vec::new(),
            local: false,
            label,
        }
    }

    pub fn is_open(&self) -> bool {
        self.open_since.is_some()
    }

    /// Whether a call request may go out at `now`.
    pub fn may_send(&self, now: Instant) -> Result<(), Wait> {
        if self.open_since.is_none() {
            return Ok(());
        }
        if self.probe.is_some() {
            return Err(Wait::Verdict);
        }
        if now < self.next_probe {
            return Err(Wait::Until(self.next_probe));
        }
        Ok(())
    }

    /// A call request for `row` went out (after [`Breaker::may_send`] allowed it).
    pub fn sent(&mut self, row: u64) {
        if self.open_since.is_some() {
            self.probe = Some(row);
        }
    }

    /// The gateway answered (anything, even an error page: it is there).
    pub fn answered(&mut self, now: Instant) {
        if let Some(since) = self.open_since.take() {
            let down = now.saturating_duration_since(since);
            if !std::mem::take(&mut self.local) {
                self.outage_total += down;
                self.spans.push((since, now.max(since)));
            }
            match &self.label {
                Some(gateway) => info!(
                    %gateway,
                    after = %Dur(down),
                    "the gateway answers again; resuming call requests to it"
                ),
                None => info!(
                    after = %Dur(down),
                    "the gateway answers again; resuming call requests"
                ),
            }
            self.delays = delays(PROBE_MIN, PROBE_MAX);
        }
        self.probe = None;
    }

    /// The gateway could not be reached.
    pub fn unreachable(&mut self, now: Instant, why: &str) {
        let local = why.contains("os error 24") || why.contains("Too many open files");
        if self.local && !local {
            // The gateway itself is now out of reach: its outage starts here.
            self.local = false;
            self.open_since = Some(now);
        }
        if self.open_since.is_none() {
            self.open_since = Some(now);
            self.local = local;
            if local {
                // Not the gateway's fault: this process has no file descriptor left for a connection.
                warn!(
                    reason = why,
                    "out of file descriptors for connections (raise `ulimit -n`, or lower --lines); pausing call requests until some are free"
                );
            } else if let Some(gateway) = &self.label {
                warn!(
                    %gateway,
                    reason = why,
                    max_outage = %Dur(self.max_outage),
                    "the gateway cannot be reached; its share goes to the other gateways while it is probed"
                );
            } else {
                warn!(
                    reason = why,
                    max_outage = %Dur(self.max_outage),
                    "the gateway cannot be reached; pausing call requests and probing it"
                );
            }
        }
        let wait = self.delays.next().unwrap_or(PROBE_MAX);
        self.next_probe = now + wait;
        self.probe = None;
    }

    /// The task for `row` ended. If it was the probe and gave no verdict (it never asked the gateway), the
    /// next probe may go at once.
    pub fn task_ended(&mut self, row: u64) {
        if self.probe == Some(row) {
            self.probe = None;
        }
    }

    /// When the outage, if one is going on, passes `max-outage`.
    pub fn outage_deadline(&self) -> Option<Instant> {
        self.open_since.map(|s| s + self.max_outage)
    }

    /// Time spent open so far, including an outage still going on.
    pub fn outage_so_far(&self, now: Instant) -> Duration {
        self.outage_total
            + self
                .open_since
                .filter(|_| !self.local)
                .map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }
}

impl Breaker {
    /// Its outages so far, in order, one still going on counted up to `now`.
    pub fn outages(&self, now: Instant) -> Vec<(Instant, Instant)> {
        let mut v = self.spans.clone();
        if let Some(s) = self.open_since.filter(|_| !self.local) {
            v.push((s, now.max(s)));
        }
        v
    }
}

/// How long every one of the gateways was down at once, from each one's outages (each list in order, not
/// overlapping). No gateway: no outage.
pub fn all_down(gateways: &[Vec<(Instant, Instant)>]) -> Duration {
    if gateways.is_empty() {
        return Duration::ZERO;
    }
    // A sweep over every start (+1) and end (-1): the time during which all of them are down.
    let mut edges: Vec<(Instant, i32)> = gateways
        .iter()
        .flatten()
        .filter(|(a, b)| b > a)
        .flat_map(|(a, b)| [(*a, 1), (*b, -1)])
        .collect();
    // At one instant, ends before starts: two outages that only touch do not overlap.
    edges.sort();
    let (mut down, mut since, mut total) = (0usize, None, Duration::ZERO);
    for (t, d) in edges {
        if d > 0 {
            down += 1;
            if down == gateways.len() {
                since = Some(t);
            }
        } else {
            if let Some(s) = since.take() {
                total += t.saturating_duration_since(s);
            }
            down = down.saturating_sub(1);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_and_stay_under_the_cap() {
        let d: Vec<Duration> = delays(Duration::from_millis(100), Duration::from_secs(1))
            .take(12)
            .collect();
        assert!(d[0] >= Duration::from_millis(100) && d[0] < Duration::from_millis(200));
        assert!(d[1] >= Duration::from_millis(200));
        assert!(d.iter().all(|x| *x <= Duration::from_secs(1)));
        assert!(d[11] >= Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn one_probe_at_a_time_and_a_probe_that_gives_no_verdict_frees_the_slot() {
        let mut b = Breaker::new(Duration::from_secs(60), None);
        let t0 = Instant::now();
        assert_eq!(b.may_send(t0), Ok(()));
        b.unreachable(t0, "refused");
        assert!(b.is_open());
        let Err(Wait::Until(at)) = b.may_send(t0) else {
            panic!("a request went out at once while open");
        };
        assert!(at > t0);
        assert_eq!(b.may_send(at), Ok(()));
        b.sent(7);
        assert_eq!(b.may_send(at), Err(Wait::Verdict));
        // The probe's task ended without asking the gateway (say it was capped): the slot is free again.
        b.task_ended(7);
        assert_eq!(b.may_send(at), Ok(()));
        b.sent(8);
        b.answered(at + Duration::from_secs(1));
        assert!(!b.is_open());
        assert_eq!(b.may_send(at), Ok(()));
        assert_eq!(
            b.outage_so_far(at + Duration::from_secs(5)),
            at + Duration::from_secs(1) - t0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_campaign_outage_is_the_time_every_gateway_was_down_at_once() {
        let t0 = Instant::now();
        let s = |a: u64, b: u64| (t0 + Duration::from_secs(a), t0 + Duration::from_secs(b));
        // One refusing all along, the other up: no campaign outage.
        assert_eq!(all_down(&[vec![s(0, 22)], vec![]]), Duration::ZERO);
        // Both down from 5 to 8 and from 15 to 16.
        let both = all_down(&[vec![s(0, 8), s(15, 30)], vec![s(5, 10), s(12, 16)]]);
        assert_eq!(both, Duration::from_secs(4));
        // Alone, a gateway's outage is the campaign's; outages that only touch do not overlap.
        assert_eq!(all_down(&[vec![s(1, 3), s(4, 6)]]), Duration::from_secs(4));
        assert_eq!(all_down(&[vec![s(0, 2)], vec![s(2, 4)]]), Duration::ZERO);
        assert_eq!(all_down(&[vec![s(3, 3), s(4, 5)]]), Duration::from_secs(1));
        let mut b = Breaker::new(Duration::from_secs(60), None);
        b.unreachable(t0, "refused");
        b.answered(t0 + Duration::from_secs(2));
        b.unreachable(t0 + Duration::from_secs(5), "refused");
        assert_eq!(
            b.outages(t0 + Duration::from_secs(6)),
            vec![s(0, 2), s(5, 6)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn running_out_of_file_descriptors_pauses_requests_and_is_no_outage() {
        let t0 = Instant::now();
        let at = |n: u64| t0 + Duration::from_secs(n);
        let mut b = Breaker::new(Duration::from_secs(60), None);
        b.unreachable(t0, "tcp open error: Too many open files (os error 24)");
        assert!(b.is_open() && b.may_send(t0).is_err());
        b.answered(at(3));
        assert_eq!(b.outage_so_far(at(4)), Duration::ZERO);
        // Out of descriptors, then the gateway itself refuses: its outage counts from the refusal.
        b.unreachable(at(5), "Too many open files (os error 24)");
        b.unreachable(at(6), "Connection refused (os error 111)");
        b.answered(at(9));
        assert_eq!(b.outages(at(10)), vec![(at(6), at(9))]);
        assert_eq!(b.outage_so_far(at(10)), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn the_outage_deadline_is_max_outage_after_it_began() {
        let mut b = Breaker::new(Duration::from_secs(50), None);
        assert_eq!(b.outage_deadline(), None);
        let t0 = Instant::now();
        b.unreachable(t0, "refused");
        b.unreachable(t0 + Duration::from_secs(3), "refused again");
        assert_eq!(b.outage_deadline(), Some(t0 + Duration::from_secs(50)));
    }
}
