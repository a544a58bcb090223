//! The cap per number across runs and campaigns: a small SQLite ledger shared by every campaign on the host.
//!
//! Each call request claims its number in the ledger first, in one immediate transaction with the count, so
//! two overlapping campaigns (or a rerun of tonight's list under another name) cannot both call the same person
//! past the cap. A retry of a request the gateway did not schedule is the same call, not a second one; a redial
//! (or, later, a recall) of the same row is another attempt, and counts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::error::{Error, Result};

/// The default ledger: `$XDG_STATE_HOME/ivr-campaign/ledger.sqlite` (or `~/.local/state/...`).
pub fn default_path() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("ivr-campaign").join("ledger.sqlite")
}

/// What the ledger says about a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Granted,
    /// The number has had `calls` calls within the period.
    Capped {
        calls: u32,
    },
}

#[derive(Clone)]
pub struct Ledger {
    conn: Arc<Mutex<Connection>>,
    pub path: PathBuf,
    pub cap: u32,
    pub per: Duration,
}

impl Ledger {
    pub fn open(path: &Path, cap: u32, per: Duration) -> Result<Ledger> {
        let fail = |source: rusqlite::Error| Error::Ledger {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::Output(format!(
                    "cannot create the cap ledger's directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let conn = Connection::open(path).map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(fail)?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))
            .map_err(fail)?;
        // `claims` replaced the first release's `calls` (one claim per campaign row): its claims are carried
        // over as first attempts, once.
        conn.execute_batch(
            "PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS claims (
                 e164 TEXT NOT NULL, at_ms INTEGER NOT NULL, campaign TEXT NOT NULL, row INTEGER NOT NULL,
                 attempt INTEGER NOT NULL,
                 PRIMARY KEY (campaign, row, attempt)
             );
             CREATE INDEX IF NOT EXISTS claims_by_number ON claims(e164, at_ms);",
        )
        .map_err(fail)?;
        let old: bool = conn
            .query_row(
                "SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = 'calls'",
                [],
                |r| r.get(0),
            )
            .map_err(fail)?;
        if old {
            conn.execute_batch(
                "BEGIN IMMEDIATE;
                 INSERT OR IGNORE INTO claims (e164, at_ms, campaign, row, attempt)
                     SELECT e164, at_ms, campaign, row, 1 FROM calls;
                 DROP TABLE calls;
                 COMMIT;",
            )
            .map_err(fail)?;
        }
        Ok(Ledger {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
            cap,
            per,
        })
    }

    /// The start of the period that ends at `now_ms`.
    fn since_ms(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(i64::try_from(self.per.as_millis()).unwrap_or(i64::MAX / 2))
    }

    /// Claims attempt `attempt` of a call to `e164` for a campaign row at `now_ms` (the run's clock, so that
    /// a simulated campaign's days pass for its cap too), unless the number is at its cap. Claiming the same
    /// attempt again (a retry of a request that was not scheduled) is granted without counting twice.
    /// Blocking: call it from `spawn_blocking`.
    pub fn claim(
        &self,
        e164: &str,
        campaign: &str,
        row: u64,
        attempt: u32,
        now_ms: i64,
    ) -> Result<Claim> {
        self.claim_inner(e164, campaign, (row, attempt), now_ms)
            .map_err(|source| self.failed(source))
    }

    fn claim_inner(
        &self,
        e164: &str,
        campaign: &str,
        (row, attempt): (u64, u32),
        now_ms: i64,
    ) -> rusqlite::Result<Claim> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mine: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM claims WHERE campaign = ?1 AND row = ?2 AND attempt = ?3",
                params![campaign, row as i64, attempt],
                |r| r.get(0),
            )
            .optional()?;
        if mine.is_some() {
            return Ok(Claim::Granted);
        }
        let calls: i64 = tx.query_row(
            "SELECT COUNT(*) FROM claims WHERE e164 = ?1 AND at_ms > ?2",
            params![e164, self.since_ms(now_ms)],
            |r| r.get(0),
        )?;
        if calls >= i64::from(self.cap) {
            return Ok(Claim::Capped {
                calls: calls as u32,
            });
        }
        tx.execute(
            "INSERT INTO claims (e164, at_ms, campaign, row, attempt) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![e164, now_ms, campaign, row as i64, attempt],
        )?;
        tx.commit()?;
        Ok(Claim::Granted)
    }

    /// The cap for one call. With `claim` (a run, just before the request) the call is counted and recorded in
    /// one transaction; without (a dry run) it is only counted. `Some(detail)`: at the cap, not called.
    /// Blocking: call it off the async threads.
    pub fn check(
        &self,
        e164: &str,
        campaign: &str,
        (row, attempt): (u64, u32),
        claim: bool,
        now_ms: i64,
    ) -> Result<Option<String>> {
        let calls = if claim {
            match self.claim(e164, campaign, row, attempt, now_ms)? {
                Claim::Granted => return Ok(None),
                Claim::Capped { calls } => calls,
            }
        } else {
            let calls = self.count(e164, now_ms)?;
            if calls < self.cap {
                return Ok(None);
            }
            calls
        };
        Ok(Some(format!(
            "{calls} call(s) to this number in the last {} (cap {}, ledger {})",
            crate::types::humanize(self.per),
            self.cap,
            self.path.display()
        )))
    }

    /// Calls to `e164` within the period ending at `now_ms`, without claiming (dry runs).
    pub fn count(&self, e164: &str, now_ms: i64) -> Result<u32> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let n: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM claims WHERE e164 = ?1 AND at_ms > ?2",
                params![e164, self.since_ms(now_ms)],
                |r| r.get(0),
            )
            .map_err(|source| self.failed(source))?;
        Ok(n as u32)
    }

    /// A failure of the ledger, named as the ledger (not the journal), with its path.
    fn failed(&self, source: rusqlite::Error) -> Error {
        Error::Ledger {
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A time on the run's clock, far from the machine's.
    const T: i64 = 1_900_000_000_000;

    #[test]
    fn caps_across_campaigns_and_counts_a_retry_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = Ledger::open(&dir.path().join("l.sqlite"), 1, Duration::from_secs(3600))
            .expect("ledger");
        assert_eq!(
            l.claim("+14155550100", "a", 1, 1, T).expect("claim"),
            Claim::Granted
        );
        assert_eq!(
            l.claim("+14155550100", "a", 1, 1, T + 1).expect("retry"),
            Claim::Granted
        );
        assert_eq!(
            l.claim("+14155550100", "b", 7, 1, T + 2).expect("other"),
            Claim::Capped { calls: 1 }
        );
        // A second attempt of the same row is a second call.
        assert_eq!(
            l.claim("+14155550100", "a", 1, 2, T + 3).expect("redial"),
            Claim::Capped { calls: 1 }
        );
        assert_eq!(
            l.claim("+14155550101", "b", 8, 1, T + 4)
                .expect("other number"),
            Claim::Granted
        );
        assert_eq!(l.count("+14155550100", T + 5).expect("count"), 1);
        // The period is the clock's, not the machine's: an hour later by the run's clock, the call is out of it.
        assert_eq!(l.count("+14155550100", T + 3_600_000).expect("count"), 0);
        assert_eq!(
            l.claim("+14155550100", "b", 7, 1, T + 3_600_000)
                .expect("an hour later"),
            Claim::Granted
        );
        let short = Ledger::open(&dir.path().join("l.sqlite"), 1, Duration::ZERO).expect("ledger");
        assert_eq!(
            short
                .claim("+14155550100", "c", 1, 1, T + 7_200_000)
                .expect("expired"),
            Claim::Granted
        );
    }
}
