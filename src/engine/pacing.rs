//! Pacing on an absolute schedule.
//!
//! Each event gets a slot: the previous slot plus the interval, or, after a stall, the moment the event goes.
//! An event never goes before its slot. A timer that wakes a little late (less than an interval) does not
//! cost rate (the next slot is still one interval after the previous *slot*, so the schedule catches up), and
//! a stall does not turn into a burst: after a wait longer than an interval (a closed calling window, an
//! outage), the schedule restarts at the event that ends it, and the next slot is a whole interval after that
//! event. (Restarting with the next slot at that same moment let a second event follow at once: 21 requests
//! in the first minute of a window at 20/m.) So in any window of one second there are at most `rate + 1`
//! events: of the n events inside
//! a window of length W, every one after the first has its slot inside the window too (a slot is never
//! earlier than the event before it), those n - 1 slots are an interval apart, and so `(n - 2) * interval
//! < W`.
//!
//! This is oha's and vegeta's constant pacer with catch-up limited to one slot, written on `tokio::time` so
//! tests can drive it under paused time.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::determinism::watch;
use tokio::time::Instant;

use crate::types::Rate;

/// The slots of a rate.
#[derive(Debug, Clone)]
pub struct Schedule {
    interval: Duration,
    next: Instant,
}

impl Schedule {
    /// `None` for an unlimited rate.
    pub fn new(rate: Rate, start: Instant) -> Option<Schedule> {
        Some(Schedule {
            interval: rate.interval()?,
            next: start,
        })
    }

    /// The earliest instant the next event may happen.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// Records an event at `now` (at or after [`Schedule::next`]) and sets the next slot.
    pub fn take(&mut self, now: Instant) {
        let slot = if now > self.next + self.interval {
            now
        } else {
            self.next
        };
        self.next = slot + self.interval;
    }
}

/// A schedule shared by many waiters (every call's polls): one task owns it and answers waiters in turn, so
/// thousands of pollers never wake together to race for one slot.
///
/// With lanes (one per gateway), each lane has its own schedule besides the shared one: a waiter goes when
/// both allow it, and a lane held back by its own schedule never holds up the others. The owning task hands
/// out each slot at the moment it is used, so the bound above holds for the total and for every lane.
#[derive(Clone)]
pub struct Pacer {
    tx: Option<mpsc::Sender<(usize, oneshot::Sender<()>)>>,
}

impl Pacer {
    pub fn new(rate: Rate) -> Pacer {
        Pacer::lanes(rate, &[Rate::Unlimited])
    }

    /// A total rate, and one rate per lane.
    pub fn lanes(total: Rate, lanes: &[Rate]) -> Pacer {
        let start = Instant::now();
        let mut total = Schedule::new(total, start);
        let mut own: Vec<Option<Schedule>> =
            lanes.iter().map(|r| Schedule::new(*r, start)).collect();
        if total.is_none() && own.iter().all(Option::is_none) {
            return Pacer { tx: None };
        }
        let (tx, mut rx) = mpsc::channel::<(usize, oneshot::Sender<()>)>(1024);
        tokio::spawn(async move {
            let mut queues: Vec<VecDeque<(u64, oneshot::Sender<()>)>> =
                own.iter().map(|_| VecDeque::new()).collect();
            let mut seq = 0u64;
            let mut open = true;
            loop {
                // A waiter that gave up (its call was stopped) is dropped unseen: it takes no slot.
                for q in &mut queues {
                    while q.front().is_some_and(|(_, w)| w.is_closed()) {
                        q.pop_front();
                    }
                }
                let next = queues
                    .iter()
                    .enumerate()
                    .filter_map(|(lane, q)| {
                        let (seq, _) = q.front()?;
                        let at = [total.as_ref(), own[lane].as_ref()]
                            .into_iter()
                            .flatten()
                            .map(Schedule::next)
                            .max()
                            .unwrap_or(start);
                        Some((at, *seq, lane))
                    })
                    .min();
                let Some((at, _, lane)) = next else {
                    if !open {
                        return;
                    }
                    match rx.recv().await {
                        Some((lane, w)) => {
                            seq += 1;
                            let lane = lane.min(queues.len() - 1);
                            queues[lane].push_back((seq, w));
                        }
                        None => return,
                    }
                    continue;
                };
                tokio::select! {
                    biased;
                    m = rx.recv(), if open => match m {
                        Some((lane, w)) => {
                            seq += 1;
                            let lane = lane.min(queues.len() - 1);
                            queues[lane].push_back((seq, w));
                        }
                        None => open = false,
                    },
                    _ = tokio::time::sleep_until(at) => {
                        if let Some((_, w)) = queues[lane].pop_front()
                            && w.send(()).is_ok()
                        {
                            let now = Instant::now();
                            if let Some(t) = total.as_mut() {
                                t.take(now);
                            }
                            if let Some(o) = own[lane].as_mut() {
                                o.take(now);
                            }
                        }
                    }
                }
            }
        });
        Pacer { tx: Some(tx) }
    }

    /// Waits for a slot. Returns false if `stop` says to stop first.
    pub async fn ready<T>(
        &self,
        stop: &mut watch::Receiver<T>,
        stopping: impl Fn(&T) -> bool,
    ) -> bool {
        self.ready_on(0, stop, stopping).await
    }

    /// Waits for a slot of `lane`. Returns false if `stop` says to stop first.
    pub async fn ready_on<T>(
        &self,
        lane: usize,
        stop: &mut watch::Receiver<T>,
        stopping: impl Fn(&T) -> bool,
    ) -> bool {
        let Some(tx) = &self.tx else {
            return !stopping(&stop.borrow());
        };
        let (go, wait) = oneshot::channel();
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| stopping(s)) => false,
            _ = async {
                if tx.send((lane, go)).await.is_ok() {
                    let _ = wait.await;
                }
            } => true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busiest(times: &[Instant], window: Duration) -> usize {
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| **t < times[i] + window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_rate_plus_one_in_any_second_and_no_rate_lost_to_late_wakeups() {
        for per_second in [1u32, 3, 25, 200] {
            let rate = Rate::Limited {
                count: per_second,
                per: Duration::from_secs(1),
            };
            let start = Instant::now();
            let mut s = Schedule::new(rate, start).expect("limited");
            let mut sent = Vec::new();
            for i in 0..(per_second as usize * 10) {
                // Every third wake-up is late by most of an interval; every tenth stalls for three.
                let interval = Duration::from_secs(1) / per_second;
                let late = match i {
                    i if i % 10 == 9 => interval * 3,
                    i if i % 3 == 2 => interval * 9 / 10,
                    _ => Duration::ZERO,
                };
                tokio::time::sleep_until(s.next() + late).await;
                let now = Instant::now();
                s.take(now);
                sent.push(now);
            }
            let busiest = busiest(&sent, Duration::from_secs(1));
            assert!(
                busiest <= per_second as usize + 1,
                "{per_second}/s: {busiest} in one second"
            );
            // Late wake-ups are caught up: only the stalls (3 intervals every 10 events) cost time. A stall
            // restarts the schedule at the event that ends it, so it also costs the timer's resolution (1 ms).
            let elapsed = sent.last().copied().unwrap_or(start) - start;
            let ideal = Duration::from_secs(10) - Duration::from_secs(1) / per_second;
            let stalls =
                (Duration::from_secs(1) / per_second * 3 + Duration::from_millis(1)) * per_second;
            assert!(elapsed <= ideal + stalls, "{per_second}/s took {elapsed:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_stall_the_next_slot_is_a_whole_interval_away() {
        let rate: Rate = "20/m".parse().expect("rate");
        let start = Instant::now();
        let mut s = Schedule::new(rate, start).expect("limited");
        // A wait for the window: the first event long after the schedule began.
        let opens = start + Duration::from_secs(1800);
        tokio::time::sleep_until(opens).await;
        s.take(Instant::now());
        assert_eq!(s.next() - opens, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn on_time_events_keep_exactly_to_the_rate() {
        let rate: Rate = "25/s".parse().expect("rate");
        let start = Instant::now();
        let mut s = Schedule::new(rate, start).expect("limited");
        let mut sent = Vec::new();
        for _ in 0..250 {
            tokio::time::sleep_until(s.next()).await;
            s.take(Instant::now());
            sent.push(Instant::now());
        }
        assert_eq!(sent[249] - sent[0], Duration::from_millis(40 * 249));
        assert_eq!(busiest(&sent, Duration::from_secs(1)), 25);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_pacer_serves_waiters_one_slot_each() {
        let pacer = Pacer::new("10/s".parse().expect("rate"));
        let (_tx, rx) = watch::channel(false);
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..20 {
            let (p, mut rx) = (pacer.clone(), rx.clone());
            handles.push(tokio::spawn(async move {
                p.ready(&mut rx, |s| *s).await;
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for h in handles {
            times.push(h.await.expect("waiter"));
        }
        times.sort();
        assert_eq!(times[19] - start, Duration::from_millis(1900));
        assert_eq!(busiest(&times, Duration::from_secs(1)), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn lanes_keep_their_own_rates_and_the_total_and_a_slow_lane_holds_up_no_other() {
        // 10/s in all; lane 0 at most 2/s, lane 1 unlimited on its own.
        let pacer = Pacer::lanes(
            "10/s".parse().expect("rate"),
            &["2/s".parse().expect("rate"), Rate::Unlimited],
        );
        let (_tx, rx) = watch::channel(false);
        let mut handles = Vec::new();
        for i in 0..40 {
            let (p, mut rx) = (pacer.clone(), rx.clone());
            handles.push(tokio::spawn(async move {
                p.ready_on(i % 2, &mut rx, |s| *s).await;
                (i % 2, Instant::now())
            }));
        }
        let mut by_lane: [Vec<Instant>; 2] = [Vec::new(), Vec::new()];
        let mut all = Vec::new();
        for h in handles {
            let (lane, t) = h.await.expect("waiter");
            by_lane[lane].push(t);
            all.push(t);
        }
        for v in by_lane.iter_mut().chain(std::iter::once(&mut all)) {
            v.sort();
        }
        assert!(busiest(&by_lane[0], Duration::from_secs(1)) <= 3);
        assert!(busiest(&all, Duration::from_secs(1)) <= 11);
        // Lane 1's twenty go at the total's pace, not lane 0's: all within about 2.5 s.
        let start = all[0];
        assert!(
            by_lane[1][19] - start <= Duration::from_millis(2600),
            "lane 1 finished after {:?}",
            by_lane[1][19] - start
        );
    }
}
