//! The circuit breaker: while the gateway cannot be reached, call requests stop.
//!
//! A gateway restarting, or a network away for five minutes, must not turn a whole list into `error`. So
//! when a request finds the gateway unreachable (refused, timed out, 5xx), the breaker opens: call tasks
//! wait, and one request at a time goes out as a probe, after a capped exponential backoff. The first answer
//! closes it again. If it stays open past `max-outage`, [`Breaker::outage_exceeded`] resolves and the run stops
//! cleanly with work left (exit 75; the next run resumes).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use super::stop;

/// Delays that double from `min`, with up to +100% jitter, never above `max`.
pub fn delays(min: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(min)
        // Jitter adds up to the delay again, so the cap before jitter is half the promised maximum.
        .with_max_delay((max / 2).max(min))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

const PROBE_MIN: Duration = Duration::from_millis(500);
const PROBE_MAX: Duration = Duration::from_secs(30);

struct Inner {
    open_since: Option<Instant>,
    next_probe: Instant,
    probing: bool,
    delays: ExponentialBackoff,
}

pub struct Breaker {
    inner: Mutex<Inner>,
    changed: Notify,
    max_outage: Duration,
}

impl Breaker {
    pub fn new(max_outage: Duration) -> Breaker {
        Breaker {
            inner: Mutex::new(Inner {
                open_since: None,
                next_probe: Instant::now(),
                probing: false,
                delays: delays(PROBE_MIN, PROBE_MAX),
            }),
            changed: Notify::new(),
            max_outage,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_open(&self) -> bool {
        self.lock().open_since.is_some()
    }

    /// Waits until a call request may go out: `Some(waited)`, where `waited` says whether the breaker held the
    /// caller back (its place in the rate schedule is then stale); `None` if the run is stopping instead.
    pub async fn admit(&self, stop_rx: &mut watch::Receiver<u8>) -> Option<bool> {
        let mut waited = false;
        loop {
            let changed = self.changed.notified();
            let wake = {
                let mut s = self.lock();
                if s.open_since.is_none() {
                    return Some(waited);
                }
                if !s.probing && Instant::now() >= s.next_probe {
                    s.probing = true;
                    return Some(true);
                }
                // While a probe is out, wait for its verdict rather than for a time.
                if s.probing {
                    Instant::now() + PROBE_MAX
                } else {
                    s.next_probe
                }
            };
            waited = true;
            tokio::select! {
                biased;
                _ = stop_rx.wait_for(|s| *s != stop::RUN) => return None,
                _ = changed => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// The gateway answered.
    pub fn reached(&self) {
        let mut s = self.lock();
        if let Some(since) = s.open_since.take() {
            info!(after = ?since.elapsed(), "the gateway answers again; resuming call requests");
            s.delays = delays(PROBE_MIN, PROBE_MAX);
        }
        s.probing = false;
        drop(s);
        self.changed.notify_waiters();
    }

    /// The gateway could not be reached (or answered that it is unavailable).
    pub fn unreachable(&self, why: &str) {
        let mut s = self.lock();
        let now = Instant::now();
        if s.open_since.is_none() {
            s.open_since = Some(now);
            warn!(reason = why, max_outage = ?self.max_outage, "the gateway is unreachable; pausing call requests and probing it");
        }
        let wait = s.delays.next().unwrap_or(PROBE_MAX);
        s.next_probe = now + wait;
        s.probing = false;
        drop(s);
        self.changed.notify_waiters();
    }

    /// Resolves once the gateway has been unreachable for longer than `max-outage`.
    pub async fn outage_exceeded(&self) {
        loop {
            let changed = self.changed.notified();
            let since = self.lock().open_since;
            match since {
                None => changed.await,
                Some(since) => {
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(since + self.max_outage) => {
                            if self.lock().open_since == Some(since) {
                                return;
                            }
                        }
                    }
                }
            }
        }
    }
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

    #[tokio::test]
    async fn one_probe_at_a_time_while_open() {
        let b = Breaker::new(Duration::from_secs(60));
        let (_tx, mut rx) = watch::channel(stop::RUN);
        assert_eq!(b.admit(&mut rx).await, Some(false));
        b.unreachable("refused");
        assert!(b.is_open());
        // The probe goes after the backoff; a second caller waits for its verdict.
        assert_eq!(b.admit(&mut rx).await, Some(true));
        let second = tokio::time::timeout(Duration::from_millis(300), b.admit(&mut rx)).await;
        assert!(
            second.is_err(),
            "a second request went out while the probe was pending"
        );
        b.reached();
        assert!(!b.is_open());
        assert_eq!(b.admit(&mut rx).await, Some(false));
    }

    #[tokio::test]
    async fn outage_limit_fires_only_while_open() {
        let b = Breaker::new(Duration::from_millis(50));
        let quiet = tokio::time::timeout(Duration::from_millis(120), b.outage_exceeded()).await;
        assert!(quiet.is_err(), "closed breaker reported an outage");
        b.unreachable("refused");
        tokio::time::timeout(Duration::from_secs(2), b.outage_exceeded())
            .await
            .expect("an outage past the limit is reported");
    }
}
