//! When a call is first polled: learned per gateway from the brackets its calls were seen to end in.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// Completed calls a gateway's learned lengths are drawn from: enough to follow a list whose calls change
/// length, few enough that the first poll is a handful of comparisons.
const SAMPLES: usize = 32;

/// What one gateway's calls have taken, from request to final answer, as seen by their polls: each call
/// lasted more than `lo` (its last poll that was not final yet) and at most `hi` (the poll that read it final).
///
/// A call's first poll goes where the shortest recent calls ended: asking before then mostly reads "not yet",
/// and asking at a fixed interval sees a call ending just after a poll a whole interval late. The first poll is
/// placed at the smallest `hi` seen (`A`: some call ended by then), and the bracket of that length is narrowed
/// by probes a quarter of it earlier (`L`, the largest `lo` under `A`: calls lasted at least that long), as TCP
/// narrows its retransmission timeout. A probe too early reads "not yet" and its call is seen a whole interval
/// later, so one call at a time probes and the others are asked at `A`: calls placed together (a round of
/// lines) would otherwise all miss together. Before any call has ended, first polls are spread over one
/// interval, so the first calls' brackets fall at different phases and pin the length down between them. Later
/// polls keep the operator's interval, which is a minimum spacing the gateway's documentation asks for.
#[derive(Debug)]
pub struct Lengths {
    interval: Duration,
    learned: Mutex<Learned>,
    /// Where a first poll goes now, worked out once for each call that ends and published when it moves:
    /// calls still waiting for their first poll move theirs there (so a thousand lines waiting are woken only
    /// when there is somewhere else to go, and none of them works it out again).
    placed: crate::determinism::watch::Sender<Option<(Duration, Duration)>>,
    /// Told when any call ends: a call whose first poll guesses below where calls were seen to end gives the
    /// guess up for what is known now (the length of a call that has just ended is better evidence than a
    /// probe of one not yet asked). With many lines calls end often and little is probed: the first round's
    /// spread phases have told most of it; with few, a probe is left to run and narrow the length.
    pub(super) ended: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Learned {
    samples: VecDeque<(Duration, Duration)>,
    /// First polls placed before any call had ended.
    blind: u32,
    /// A call's first poll is a probe below `A`, and its answer is not in yet.
    probing: bool,
    /// Probes that read "not yet", of calls still running: each of those calls lasted longer than that, which
    /// the next probe starts from rather than trying the same instant again.
    running: Vec<Duration>,
}

/// Where a call's first poll goes (`at`, after the request) and the floor it was placed on (see
/// [`Lengths::record_above`]). A probe holds the gateway's one probe until its answer is in.
#[derive(Debug)]
pub struct FirstPoll<'a> {
    pub at: Duration,
    pub floor: Duration,
    lengths: &'a Lengths,
    /// Placed before any call on the gateway had ended.
    pub blind: bool,
    /// Placed below where some call was seen to end: a probe, or with spread lengths a guess that the shortest
    /// are shorter than seen.
    pub(super) below: bool,
    probe: bool,
    /// This probe read "not yet", and `at` is among the gateway's `running`.
    missed: bool,
}

impl FirstPoll<'_> {
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The first poll read "not final yet": the probe is given back, and what it found is known at once.
    pub fn not_final_yet(&mut self) {
        if !self.probe {
            return;
        }
        self.probe = false;
        if let Ok(mut learned) = self.lengths.learned.lock() {
            learned.probing = false;
            learned.running.push(self.at);
            self.missed = true;
        }
    }
}

impl Drop for FirstPoll<'_> {
    fn drop(&mut self) {
        if !(self.probe || self.missed) {
            return;
        }
        if let Ok(mut learned) = self.lengths.learned.lock() {
            if self.probe {
                learned.probing = false;
            }
            if self.missed
                && let Some(i) = learned.running.iter().position(|r| *r == self.at)
            {
                learned.running.swap_remove(i);
            }
        }
    }
}

impl<'a> FirstPoll<'a> {
    pub(super) fn new(lengths: &'a Lengths, at: Duration, floor: Duration) -> Self {
        FirstPoll {
            at,
            floor,
            lengths,
            blind: false,
            below: false,
            probe: false,
            missed: false,
        }
    }
}

/// The fractional part of the golden ratio: the k-th blind first poll goes at `frac(k * GOLDEN)` of an
/// interval, so any number of them is spread evenly over it, whatever order they are taken in.
const GOLDEN: f64 = 0.618_033_988_749_895;

impl Lengths {
    /// What a gateway's calls teach, for polls at least `interval` apart.
    pub fn new(interval: Duration) -> Self {
        Lengths {
            interval,
            learned: Mutex::default(),
            placed: crate::determinism::watch::Sender::new(None),
            ended: tokio::sync::Notify::new(),
        }
    }

    /// When to ask a call first, after its request, with later polls every `interval`.
    pub fn first_poll(&self) -> FirstPoll<'_> {
        let Ok(mut learned) = self.learned.lock() else {
            return FirstPoll::new(self, self.interval, Duration::ZERO);
        };
        self.place(&mut learned, true)
    }

    /// Calls still waiting for their first poll are told here where a first poll goes, when that moves.
    pub fn placed(&self) -> crate::determinism::watch::Receiver<Option<(Duration, Duration)>> {
        self.placed.subscribe()
    }

    /// `may_probe`: with calls of one length, the plan may probe below `A` when no other call is. Without it,
    /// and with a call on this gateway ended, nothing is changed.
    fn place(&self, learned: &mut Learned, may_probe: bool) -> FirstPoll<'_> {
        let interval = self.interval;
        let Some(shortest) = learned.samples.iter().map(|(_, hi)| *hi).min() else {
            // Nothing has ended yet: between half an interval and one and a half, a fixed interval on average.
            let k = learned.blind;
            learned.blind = learned.blind.wrapping_add(1);
            let phase = (f64::from(k) * GOLDEN).fract();
            return FirstPoll {
                blind: true,
                ..FirstPoll::new(self, interval / 2 + interval.mul_f64(phase), Duration::ZERO)
            };
        };
        let samples = &learned.samples;
        // Calls of one length, as far as the polls tell (some instant lies in every call's bracket): the
        // bracket of that length is narrowed down, below. Calls of many lengths: the first poll that would have
        // seen the recent calls soonest in all, with no more polls than the fixed interval would have taken; a
        // poll at the shortest of spread lengths reads most calls "not yet" and sees them an interval late.
        let running = &learned.running;
        let one_length =
            samples.iter().all(|(lo, _)| *lo < shortest) && running.iter().all(|lo| *lo < shortest);
        // A zero `poll-interval` (polls back to back) is taken as the smallest step, so that a poll after
        // `first` is never before it.
        let step = interval.as_nanos().max(1);
        let cost = |first: Duration| {
            samples
                .iter()
                .fold((0u128, 0u128), |(late, polls), (_, hi)| {
                    let more = hi.saturating_sub(first).as_nanos().div_ceil(step);
                    let seen = first.as_nanos() + more * step;
                    (late + (seen - hi.as_nanos()), polls + 1 + more)
                })
        };
        let (_, fixed_polls) = cost(interval);
        let best = samples
            .iter()
            .map(|(_, hi)| *hi)
            .filter(|c| cost(*c).1 <= fixed_polls)
            .min_by_key(|c| (cost(*c).0, *c));
        if let Some(best) = best.filter(|b| !one_length && *b > shortest) {
            return FirstPoll::new(self, best, Duration::ZERO);
        }
        let floor = samples
            .iter()
            .map(|(lo, _)| *lo)
            .chain(running.iter().copied())
            .filter(|lo| *lo < shortest)
            .max()
            .unwrap_or(Duration::ZERO);
        let width = shortest - floor;
        // Tight: within 2% of the length or 2 ms, whichever is more (timer and loopback jitter).
        let tight = (shortest / 50).max(Duration::from_millis(2));
        // Calls of one length would all miss a probe placed too early together: one probes at a time. Calls of spread lengths are not lost by a probe (most
        // need more polls anyway; it shifts their phase), and each may probe, so the shortest calls' bracket
        // narrows while the long ones run.
        if width <= tight || (one_length && (learned.probing || !may_probe)) {
            return FirstPoll::new(self, shortest, floor);
        }
        learned.probing |= one_length;
        FirstPoll {
            below: true,
            probe: one_length,
            ..FirstPoll::new(self, shortest - width / 4, floor)
        }
    }

    /// A call on this gateway was read final at `hi` after its request, and was not yet at `lo`. `floor` is
    /// the floor its first poll was placed on: a call that ended above it carries it on, or the floor would
    /// leave with the last sample that showed it, and the next first poll would probe a quarter early again.
    pub fn record_above(&self, lo: Duration, hi: Duration, floor: Duration) {
        self.record(if hi > floor { lo.max(floor) } else { lo }, hi);
    }

    /// A call on this gateway was read final at `hi` after its request, and was not yet at `lo`.
    pub fn record(&self, lo: Duration, hi: Duration) {
        let Ok(mut learned) = self.learned.lock() else {
            return;
        };
        if learned.samples.len() == SAMPLES {
            learned.samples.pop_front();
        }
        learned.samples.push_back((lo, hi));
        let now = self.place(&mut learned, false);
        let (at, floor) = (now.at, now.floor);
        drop(now);
        drop(learned);
        self.placed.send_if_modified(|placed| {
            let changed = *placed != Some((at, floor));
            *placed = Some((at, floor));
            changed
        });
        self.ended.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Calls of one length, each polled where `first_poll` says and then every `interval`: the first poll
    /// closes in on the length from above, and once there each call is read final at its first poll.
    #[test]
    fn the_first_poll_closes_in_on_the_length_of_the_calls() {
        let lengths = Lengths::new(ms(200));
        let (length, interval) = (ms(300), ms(200));
        let mut late = Vec::new();
        for _ in 0..100 {
            let plan = lengths.first_poll();
            let (mut lo, mut at) = (Duration::ZERO, plan.at);
            while at < length {
                lo = at;
                at += interval;
            }
            lengths.record_above(lo, at, plan.floor);
            late.push(at - length);
        }
        // The first calls are seen up to an interval late; the last ones within the tight bracket (2%).
        assert!(late[..3].iter().any(|l| *l >= ms(50)), "{late:?}");
        assert!(late[30..].iter().all(|l| *l <= ms(6)), "{late:?}");
        // And the first poll is never before the shortest length some call was still running at.
        let first = lengths.first_poll().at;
        assert!(first >= ms(300) && first <= ms(306), "{first:?}");
    }

    /// Before any call has ended, first polls are spread over an interval around it, so that the first calls
    /// are read at different phases of their length.
    #[test]
    fn blind_first_polls_are_spread_over_an_interval() {
        let lengths = Lengths::new(ms(200));
        let mut at: Vec<Duration> = (0..8).map(|_| lengths.first_poll().at).collect();
        at.sort();
        assert!(at[0] >= ms(100) && at[7] < ms(300), "{at:?}");
        // No two within a sixteenth of the interval of each other: eight calls, eight phases.
        assert!(at.windows(2).all(|w| w[1] - w[0] >= ms(12)), "{at:?}");
    }

    /// A round of calls placed together while the bracket is wide: one probes below the shortest length
    /// seen, the others are asked at it, so a probe too early costs one call an interval, not the round.
    #[test]
    fn one_call_at_a_time_probes() {
        let lengths = Lengths::new(ms(200));
        lengths.record(ms(200), ms(400));
        let round: Vec<FirstPoll<'_>> = (0..8).map(|_| lengths.first_poll()).collect();
        let probes: Vec<&FirstPoll<'_>> = round.iter().filter(|p| p.is_probe()).collect();
        assert_eq!(probes.len(), 1, "{round:?}");
        assert!(
            probes[0].at < ms(400) && probes[0].at > ms(200),
            "{round:?}"
        );
        assert!(
            round
                .iter()
                .filter(|p| !p.is_probe())
                .all(|p| p.at == ms(400)),
            "{round:?}"
        );
        // The probe is given back with its plan.
        drop(round);
        assert!(lengths.first_poll().is_probe());
    }

    /// Calls waiting for their first poll are told when the first poll moves, and not at every call that ends.
    #[tokio::test]
    async fn waiting_calls_are_told_only_when_the_first_poll_moves() {
        let lengths = Lengths::new(ms(200));
        let mut placed = lengths.placed();
        lengths.record(ms(100), ms(400));
        assert!(
            placed.has_changed().unwrap_or(false),
            "the first length is told"
        );
        assert_eq!(placed.borrow_and_update().map(|(at, _)| at), Some(ms(400)));
        lengths.record(ms(100), ms(450));
        assert!(
            !placed.has_changed().unwrap_or(true),
            "a longer call changes nothing"
        );
        lengths.record(ms(100), ms(320));
        assert!(
            placed.has_changed().unwrap_or(false),
            "a shorter one is told"
        );
        assert_eq!(placed.borrow_and_update().map(|(at, _)| at), Some(ms(320)));
    }

    #[test]
    fn a_shorter_call_than_any_seen_brings_the_first_poll_forward() {
        let lengths = Lengths::new(ms(200));
        for _ in 0..5 {
            lengths.record(Duration::ZERO, ms(1010));
        }
        lengths.record(Duration::ZERO, ms(400));
        let first = lengths.first_poll().at;
        assert!(first <= ms(400), "{first:?}");
    }

    /// A zero `poll-interval`: no arithmetic overflows (a debug build would panic), and the first poll is no
    /// later than the longest call seen.
    #[test]
    fn a_zero_interval_learns_without_overflow() {
        // Polls back to back: spread lengths are still placed, at one of them.
        let l = Lengths::new(Duration::ZERO);
        for hi in [300, 700, 1500] {
            l.record(ms(hi - 1), ms(hi));
        }
        let at = l.first_poll().at;
        assert!(at <= ms(1500), "{at:?}");
    }

    /// Lengths spread over a range: the first poll goes where the fewest calls are seen late, not at the
    /// shortest (where most would read "not yet" and wait a whole interval more).
    #[test]
    fn spread_lengths_are_first_polled_where_most_have_ended() {
        let lengths = Lengths::new(ms(200));
        // Brackets that no one length fits: each call was still running 5 ms before it was read final.
        for i in 0..=10 {
            lengths.record(ms(245 + i * 10), ms(250 + i * 10));
        }
        let first = lengths.first_poll().at;
        assert!(first >= ms(300), "{first:?}");
    }
}
