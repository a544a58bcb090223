//! Why and how the run stops: the stage (run, drain, now) moved on by signals, the journal's health, an outage
//! past max-outage, the drain timeout, or the journal file deleted under the run.

use std::cmp::Reverse;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{error, info, warn};

use super::Coordinator;
use crate::engine::{Ending, Stage};
use crate::store::journal::Health;
use crate::types::Dur;

/// Device and inode: a file deleted (or replaced) under an open connection no longer has the same pair at its
/// path.
pub(super) type FileId = (u64, u64);

pub(super) fn file_id(path: &std::path::Path) -> Option<FileId> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path).ok().map(|m| (0, m.len()))
    }
}

/// How often the journal file is checked for being deleted under the run.
pub(super) const FILE_CHECK: Duration = Duration::from_secs(1);

impl Coordinator {
    /// Moves the stage on when a reason to stop has come up.
    pub(super) fn advance_stage(&mut self) {
        let now = Instant::now();
        if now >= self.next_file_check {
            self.next_file_check = now + FILE_CHECK;
            if let Some((path, _)) = self
                .journal_file
                .iter()
                .flatten()
                .find(|(path, id)| file_id(path) != Some(*id))
            {
                if path.as_os_str().to_string_lossy().ends_with("-wal") {
                    self.ctx.journal.rescue_wal();
                }
                let why = format!(
                    "the journal file {} was deleted or replaced while the run held it; nothing more is called, and the results come from the copy still open",
                    path.display()
                );
                self.journal_file = None;
                self.ending = self.ending.clone().worst(Ending::JournalFailed(why));
            }
        }
        if let Some(deadline) = self.outage_deadline()
            && now >= deadline
            && self.stage_now() != Stage::Now
        {
            if self.lanes.len() > 1 {
                error!(
                    max_outage = %Dur(self.ctx.settings.max_outage),
                    "every gateway has been unreachable for longer than max-outage; stopping with work left (rerun to resume)"
                );
            } else {
                error!(
                    max_outage = %Dur(self.ctx.settings.max_outage),
                    "the gateway has been unreachable for longer than max-outage; stopping with work left (rerun to resume)"
                );
            }
            self.ending = self.ending.clone().worst(Ending::Outage);
        }
        if self.lanes.len() > 1 {
            for (gw, lane) in self.lanes.iter_mut().enumerate() {
                let past = lane.breaker.outage_deadline().is_some_and(|d| now >= d);
                if past && !lane.written_off {
                    lane.written_off = true;
                    warn!(
                        gateway = %self.ctx.settings.gateways[gw].key,
                        max_outage = %Dur(self.ctx.settings.max_outage),
                        "this gateway has been unreachable for longer than max-outage; the other gateways go on, and its open calls are polled by the next run"
                    );
                } else if !past {
                    lane.written_off = false;
                }
            }
        }
        if let Some(d) = self.drain_deadline
            && now >= d
            && self.stage_now() == Stage::Drain
        {
            warn!(
                calls = self.tasks.len(),
                "drain timeout reached; calls still in progress are polled again by the next run"
            );
            self.ending = self.ending.clone().worst(Ending::DrainTimeout);
            self.set_stage(Stage::Now);
        }
        let severe = !matches!(
            self.ending,
            Ending::Completed | Ending::WorkLeft | Ending::Interrupted | Ending::DrainTimeout
        );
        if severe && self.stage_now() != Stage::Now {
            if let Some(m) = self.ending.message() {
                error!("{m}");
            }
            self.set_stage(Stage::Now);
        }
    }

    pub(super) fn set_stage(&mut self, to: Stage) {
        let from = self.stage_now();
        if to <= from {
            return;
        }
        self.stage.send_replace(to);
        if from == Stage::Run {
            // Contacts waiting to be requested again are pending in the journal already (they hold no line).
            for Reverse(d) in self.retries.drain() {
                self.owned.remove(&d.retry.contact.row);
            }
            for held in std::mem::take(&mut self.held).into_values().flatten() {
                self.owned.remove(&held.contact.row);
            }
            self.queue.clear();
        }
        match to {
            Stage::Drain => {
                let deadline = Instant::now() + self.ctx.settings.drain_timeout;
                self.drain_deadline = Some(deadline);
                info!(calls = self.tasks.len(), timeout = %Dur(self.ctx.settings.drain_timeout), "stopped dialing; waiting for calls in progress");
            }
            Stage::Now => self.now_since = Some(Instant::now()),
            Stage::Run => {}
        }
    }

    pub(super) fn on_signal(&mut self, s: Stage) {
        if s > Stage::Run {
            self.ending = self.ending.clone().worst(Ending::Interrupted);
        }
        // A journal that cannot be written stops the run by itself, and a signal then gives up on the writes.
        // A signal that arrives before the coordinator has taken the failure in (both can be ready at once)
        // is the same request, or the process would wait for a second one.
        let failing = matches!(*self.health.borrow(), Health::Failing(_));
        if self.stage_now() == Stage::Now || (s > Stage::Run && failing) {
            // Asked again while already stopping: the process must end. Whatever is still recording is left to
            // the next run, and a journal write that keeps failing is given up on (the request ids it held are
            // in the log already).
            self.forced = true;
            self.ctx.journal.give_up();
        }
        self.set_stage(s);
    }

    pub(super) fn on_health(&mut self, h: Health) {
        match h {
            Health::Ok => {}
            Health::Failing(why) => {
                error!(error = %why, "the journal cannot be written; no more calls are placed, and writes are retried until they are saved (signal again to give up on them)");
                self.ending = self.ending.clone().worst(Ending::JournalFailed(why));
            }
            Health::Refused(why) => {
                self.ending = self.ending.clone().worst(Ending::Internal(why));
            }
        }
    }

    /// When the run stops for an outage: once every gateway has been down past max-outage.
    pub(super) fn outage_deadline(&self) -> Option<Instant> {
        self.lanes
            .iter()
            .map(|l| l.breaker.outage_deadline())
            .collect::<Option<Vec<Instant>>>()
            .and_then(|d| d.into_iter().max())
    }
}
