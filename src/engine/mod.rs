//! The campaign engine: request a call for every pending contact under the rate and the lines, poll each call
//! to a final answer, and record every transition in the journal before acting on it.
//!
//! Shape (nextest's runner is the model):
//! - [`coordinator`]: one loop that owns the scheduling state — the supply of contacts (calls to resume,
//!   the list in input order, contacts waiting for their window), the retries, the lines, the call-request
//!   schedule, the circuit breaker, and why the run is ending. Nothing else decides what happens next.
//! - [`call`]: one task per contact on a line: intent, request, poll, result, removal, in that order, each
//!   durable before the next. Tasks report what they saw over a bounded channel and return how they ended.
//! - [`poll`]: a dialed call from its request id to its end (polls, result, recall, record removal).
//! - [`lengths`]: when each call is first polled, learned per gateway from the lengths its calls were seen to
//!   take, shared by the calls on that gateway.
//! - [`pacing`]: the absolute schedule for call requests (owned by the coordinator) and for polls (shared).
//! - [`breaker`]: the circuit breaker's state, owned by the coordinator.
//!
//! The entry point takes its parts ([`run`]), so tests drive the engine in-process against the simulator.

pub mod breaker;
pub mod call;
pub mod coordinator;
pub mod lengths;
pub mod pacing;
pub mod poll;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::error::{Result, exit};
use crate::gateway::Gateway;
use crate::rules::Rules;
use crate::store::Journal;
use crate::types::Rate;

/// How far the run is told to go, by signals or by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Keep going.
    Run,
    /// No new call requests; keep polling calls already placed until the drain timeout.
    Drain,
    /// Stop polling now. Call requests already sent are answered and recorded first, so no contact is left
    /// `unknown` by the stop itself; placed calls are polled again by the next run.
    Now,
}

/// How the run ended. One value, decided by the coordinator; the exit code follows from it and the counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Nothing left to do in this run. The coordinator ends so; the run makes it [`Ending::WorkLeft`] when rows
    /// are left open ([`Ending::settled`]).
    Completed,
    /// Nothing more could be done in this run, and rows are left for the next (contacts outside their window in
    /// stop mode, recalls not yet due): a run that stopped with work left, exit 75, not a completed one.
    WorkLeft,
    /// A signal: stopped dialing and drained the calls in progress.
    Interrupted,
    /// A signal, and the calls in progress outlasted `drain-timeout` (they are polled by the next run).
    DrainTimeout,
    /// The gateway stayed unreachable past `max-outage`.
    Outage,
    /// The gateway refused the credentials (HTTP 401/403/407).
    CredentialsRefused(String),
    /// The gateway URL does not lead to the handlers (404, 405, a redirect).
    Misconfigured(String),
    /// Several call-request answers in a row left their contacts `unknown`.
    UnreadableGateway(String),
    /// The cap ledger shared by campaigns could not be read or written; `busy`: another process held it past
    /// its timeout (worth a rerun, unlike a broken ledger). The campaign's own journal is fine.
    LedgerFailed { why: String, busy: bool },
    /// The journal could not be written.
    JournalFailed(String),
    /// A bug, such as a transition the life cycle does not allow.
    Internal(String),
}

impl Ending {
    /// Which of two reasons to stop is reported: the one that needs a person more.
    fn severity(&self) -> u8 {
        match self {
            Ending::Completed => 0,
            Ending::WorkLeft => 1,
            Ending::Interrupted => 2,
            Ending::DrainTimeout => 3,
            Ending::Outage => 4,
            Ending::UnreadableGateway(_) => 5,
            Ending::Misconfigured(_) => 6,
            Ending::CredentialsRefused(_) => 7,
            Ending::LedgerFailed { .. } => 8,
            Ending::JournalFailed(_) => 9,
            Ending::Internal(_) => 10,
        }
    }

    /// The more severe of the two.
    pub fn worst(self, other: Ending) -> Ending {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// The ending as reported, given whether rows are left open: the coordinator's `completed` only says it ran
    /// out of things to do now, and with rows left for a later run the summary, the story and the exit code
    /// must all say the run stopped with work left.
    pub fn settled(self, open_rows: bool) -> Ending {
        match self {
            Ending::Completed if open_rows => Ending::WorkLeft,
            other => other,
        }
    }

    /// Whether the run did all the work it had: it ran out of work, or a signal's drain finished every call
    /// and left no row open (a stop that found nothing left to stop is a completed night).
    pub fn completed(&self, open_rows: bool) -> bool {
        !open_rows && matches!(self, Ending::Completed | Ending::Interrupted)
    }

    /// The exit code for this ending, given whether rows are left open and whether some need a person.
    pub fn exit_code(&self, open_rows: bool, attention: bool) -> i32 {
        match self {
            _ if self.completed(open_rows) && attention => exit::NEEDS_ATTENTION,
            _ if self.completed(open_rows) => exit::OK,
            Ending::Completed
            | Ending::WorkLeft
            | Ending::Interrupted
            | Ending::DrainTimeout
            | Ending::Outage => exit::TEMPFAIL,
            Ending::CredentialsRefused(_) | Ending::Misconfigured(_) => exit::CONFIG,
            Ending::UnreadableGateway(_) => exit::PROTOCOL,
            Ending::LedgerFailed { busy: true, .. } => exit::TEMPFAIL,
            Ending::LedgerFailed { busy: false, .. } => exit::IOERR,
            Ending::JournalFailed(_) => exit::IOERR,
            Ending::Internal(_) => exit::SOFTWARE,
        }
    }

    /// A short name for logs and the summary.
    pub fn as_str(&self) -> &'static str {
        match self {
            Ending::Completed => "completed",
            Ending::WorkLeft => "work-left",
            Ending::Interrupted => "interrupted",
            Ending::DrainTimeout => "drain-timeout",
            Ending::Outage => "outage",
            Ending::CredentialsRefused(_) => "credentials-refused",
            Ending::Misconfigured(_) => "misconfigured",
            Ending::UnreadableGateway(_) => "unreadable-gateway",
            Ending::LedgerFailed { .. } => "ledger-failed",
            Ending::JournalFailed(_) => "journal-failed",
            Ending::Internal(_) => "internal-error",
        }
    }

    /// What an operator is told about it, if anything beyond the counts.
    pub fn message(&self) -> Option<String> {
        match self {
            // The summary line says it stopped with work left and to rerun.
            Ending::Completed | Ending::WorkLeft | Ending::Interrupted => None,
            Ending::DrainTimeout => Some(
                "calls still in progress outlasted the drain timeout; the next run polls them".into(),
            ),
            Ending::Outage => Some(
                "the gateway stayed unreachable longer than max-outage; rerun the same command to resume"
                    .into(),
            ),
            Ending::CredentialsRefused(why) => Some(format!(
                "the gateway refused the credentials ({why}); check --gateway-user and the password variable"
            )),
            Ending::Misconfigured(why) => Some(format!(
                "{why}: the gateway URL must be the gateway's base URL (like http://host:8155), with nothing in front of it answering for the handlers"
            )),
            Ending::UnreadableGateway(why) => Some(format!(
                "the answers to {UNREADABLE_IN_A_ROW} call requests in a row left their contacts unknown (lost, unreadable, or another call's request id; last: {why}); stopped placing calls. Check the gateway (its version, its log, anything in front of it) before rerunning"
            )),
            Ending::LedgerFailed { why, busy: true } => Some(format!(
                "{why}: another campaign held the cap ledger too long; the journal is fine, rerun the same command"
            )),
            Ending::LedgerFailed { why, busy: false } => Some(format!(
                "{why}: check the cap ledger file (--ledger); the journal is fine, rerun once it is readable"
            )),
            Ending::JournalFailed(why) => Some(format!(
                "the journal could not be written ({why}); check the disk, then rerun"
            )),
            Ending::Internal(why) => Some(format!("internal error: {why}")),
        }
    }
}

/// Call-request answers in a row that leave their contacts `unknown` before the run stops.
pub const UNREADABLE_IN_A_ROW: u32 = 3;

/// The current time, from the system (a run) or from tokio's clock (tests under paused time).
///
/// This is the wall clock: it answers calendar questions (the window, the days, what to write in the journal).
/// Durations within a run are measured on tokio's monotonic [`tokio::time::Instant`] instead, which a step of
/// the wall clock (NTP, a resumed VM) does not move.
#[derive(Debug, Clone)]
pub enum Clock {
    System,
    /// Wall time that follows tokio's (possibly paused) clock from a starting point, plus a step the
    /// simulation tier moves to imitate a wall clock that jumps.
    Virtual {
        base: jiff::Timestamp,
        at: tokio::time::Instant,
        step_ms: Arc<std::sync::atomic::AtomicI64>,
    },
}

impl Clock {
    pub fn virtual_from(base: jiff::Timestamp) -> Clock {
        Clock::stepped_from(base, Arc::default())
    }

    /// A virtual clock whose wall time is off by whatever `step_ms` holds when it is read.
    pub fn stepped_from(
        base: jiff::Timestamp,
        step_ms: Arc<std::sync::atomic::AtomicI64>,
    ) -> Clock {
        Clock::Virtual {
            base,
            at: tokio::time::Instant::now(),
            step_ms,
        }
    }

    pub fn now(&self) -> jiff::Timestamp {
        match self {
            Clock::System => jiff::Timestamp::now(),
            Clock::Virtual { base, at, step_ms } => {
                let elapsed = jiff::SignedDuration::try_from(at.elapsed())
                    .unwrap_or(jiff::SignedDuration::MAX)
                    .saturating_add(jiff::SignedDuration::from_millis(
                        step_ms.load(Ordering::Relaxed),
                    ));
                base.saturating_add(elapsed).unwrap_or(*base)
            }
        }
    }

    /// The monotonic instant at which wall time reaches `t` (now, if it already has).
    pub fn instant_at(&self, t: jiff::Timestamp) -> tokio::time::Instant {
        let ahead = Duration::try_from(t - self.now()).unwrap_or(Duration::ZERO);
        tokio::time::Instant::now() + ahead
    }
}

/// The campaign's own time line for durations (recall waits, due times): the wall time a run started from,
/// carried forward on the monotonic clock. Across runs on one boot it continues from the last run by the boot
/// clock ([`crate::determinism::boot_clock`]), so a wall clock stepped or corrected between runs brings no
/// recall forward; otherwise it starts from the wall clock.
#[derive(Debug, Clone, Copy)]
pub struct Steady {
    pub base_ms: i64,
    pub at: tokio::time::Instant,
}

impl Steady {
    /// Starting from the wall clock now.
    pub fn from_wall(clock: &Clock) -> Steady {
        Steady::from_ms(clock.now().as_millisecond())
    }

    pub fn from_ms(base_ms: i64) -> Steady {
        Steady {
            base_ms,
            at: tokio::time::Instant::now(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.base_ms
            .saturating_add(i64::try_from(self.at.elapsed().as_millis()).unwrap_or(i64::MAX))
    }
}

/// What the engine needs to know, validated (a slice of the run settings).
#[derive(Debug, Clone)]
pub struct Settings {
    pub app: String,
    pub campaign_id: String,
    pub firstocc: u32,
    /// The longest a call is expected to take once answered: with `firstocc`, how long after its request
    /// a call the runner lost sight of may still be live on the gateway.
    pub call_length: Duration,
    /// Call requests per second or minute across all gateways.
    pub rate: Rate,
    /// The gateways, in the order calls prefer them when equally loaded.
    pub gateways: Vec<GatewayPlan>,
    pub poll_interval: Duration,
    pub poll_rate: Rate,
    pub poll_timeout: Duration,
    pub keep_records: bool,
    pub request_retries: u32,
    pub drain_timeout: Duration,
    pub max_outage: Duration,
    pub request_timeout: Duration,
    /// Wait for a closed window to open instead of leaving its contacts for the next run.
    pub wait_for_window: bool,
    pub clock: Clock,
    /// The time line due times are kept on (see [`Steady`]).
    pub steady: Steady,
    /// No time written by this run is earlier than this (ms): the latest the journal holds.
    pub written_floor_ms: i64,
    /// The journal file: if it is deleted or replaced under the run, the run stops (its results are still
    /// written, from the connection the run holds).
    pub journal_path: Option<std::path::PathBuf>,
    /// Which outcomes are called again, when, and how often.
    pub recall: Option<Recall>,
    /// What each call request carries besides the number, bound to the list's columns.
    pub request: Arc<crate::fields::Request>,
    /// A rolling export's reminder settings: once a call an earlier run left live has ended, the touches it
    /// held back are moved along in this run.
    pub reminders: Option<Arc<crate::settings::reminders::Reminders>>,
}

/// One gateway as the engine sees it.
#[derive(Debug, Clone)]
pub struct GatewayPlan {
    /// How the journal, the results and the logs name it.
    pub key: String,
    /// The most calls outstanding on it.
    pub lines: u32,
    /// Its own cap on call requests, besides the campaign's rate.
    pub rate: Rate,
}

pub use crate::settings::Recall;

impl Recall {
    /// Whether a call that ended with `outcome` (and `responses`) as attempt `attempt` is called again.
    /// `responses_certain` is false when the gateway's record was irregular: a made call whose responses may
    /// be cut short is never recalled for them (a reply that cannot be fully read is no reason to call again).
    pub fn wants(
        &self,
        outcome: crate::store::State,
        responses: &str,
        attempt: u32,
        responses_certain: bool,
    ) -> bool {
        use crate::store::State;
        if attempt >= self.max_attempts {
            return false;
        }
        match outcome {
            State::Failed => self.on_failed,
            State::Unresolved => self.on_unresolved,
            State::Made if !responses_certain => false,
            State::Made => {
                let parsed = crate::gateway::protocol::Responses::parse(responses);
                (self.on_no_response && parsed.is_empty())
                    || (!self.unless.is_empty() && self.unless.found_in(responses).is_none())
            }
            _ => false,
        }
    }
}

/// Counters, for the progress display and the summary. Only counts: how the run ended is [`Ending`].
#[derive(Debug, Default)]
pub struct Stats {
    /// Call requests sent (answered or not).
    pub requests: AtomicU64,
    pub request_failures: AtomicU64,
    /// Call requests that never left the process (no file descriptor for a socket): not call requests.
    pub requests_unsent: AtomicU64,
    pub polls: AtomicU64,
    pub poll_errors: AtomicU64,
    pub removes: AtomicU64,
    /// Calls finished in this run, by outcome.
    pub made: AtomicU64,
    pub failed: AtomicU64,
    pub other_final: AtomicU64,
    /// Call requests answered with a request id in this run.
    pub dialed: AtomicU64,
    /// Calls being polled right now.
    pub in_flight: AtomicU64,
    /// Milliseconds every gateway was unreachable at once, over the run.
    pub outage_ms: AtomicU64,
    /// Per gateway (by index): call requests sent, and milliseconds it was unreachable.
    pub by_gateway: std::sync::Mutex<Vec<GatewayStats>>,
}

/// What one gateway saw in a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayStats {
    pub key: String,
    pub lines: u32,
    pub requests: u64,
    pub outage_ms: u64,
}

impl Stats {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    fn add(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the campaign until nothing is left to do in this run, or it is stopped.
pub async fn run(
    settings: Settings,
    rules: Rules,
    gateways: Vec<Gateway>,
    journal: Journal,
    signals: watch::Receiver<Stage>,
    stats: Arc<Stats>,
) -> Result<Ending> {
    coordinator::Coordinator::new(settings, rules, gateways, journal, signals, stats)
        .run()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_ran_out_of_work_with_rows_left_is_not_completed() {
        let left = Ending::Completed.settled(true);
        assert_eq!(left, Ending::WorkLeft);
        assert_eq!(left.as_str(), "work-left");
        assert!(!left.completed(true));
        assert_eq!(left.exit_code(true, false), exit::TEMPFAIL);
        assert_eq!(Ending::Completed.settled(false).as_str(), "completed");
        // Only the coordinator's `completed` is reworded: a stop keeps its own reason.
        assert_eq!(Ending::Outage.settled(true), Ending::Outage);
        assert_eq!(Ending::Interrupted.settled(true), Ending::Interrupted);
    }

    #[test]
    fn a_ledger_held_by_another_campaign_is_work_left_and_never_blamed_on_the_journal() {
        let busy = Ending::LedgerFailed {
            why: "cap ledger /l.sqlite: database is locked".into(),
            busy: true,
        };
        assert_eq!(busy.exit_code(true, false), exit::TEMPFAIL);
        let text = busy.message().unwrap_or_default();
        assert!(text.contains("the journal is fine"), "{text}");
        assert!(!text.contains("check the disk"), "{text}");
        let broken = Ending::LedgerFailed {
            why: "cap ledger /l.sqlite: file is not a database".into(),
            busy: false,
        };
        assert_eq!(broken.exit_code(true, false), exit::IOERR);
        assert_eq!(broken.as_str(), "ledger-failed");
        // A journal that fails at the same time is the worse news.
        assert_eq!(
            broken
                .worst(Ending::JournalFailed("disk full".into()))
                .as_str(),
            "journal-failed"
        );
    }
}
