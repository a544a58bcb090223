//! A stand-in Voicent Gateway: the three JSP handlers over GET and POST, with the reply shapes of the protocol
//! reference, a finite number of lines with a FIFO queue, retry histories, IVR responses, and scripted
//! outcomes. Operators rehearse campaigns on it; tests assert against the requests it records.
//!
//! Decisions where the protocol reference leaves things open (its §8):
//! - replies are `text/html;charset=UTF-8`, HTTP 200 for every protocol outcome (including errors), with the
//!   blank lines JSP output carries before the body and CRLF line ends;
//! - a call request without `phoneno`, a numeric `firstocc` or a content parameter gets HTTP 400 with an
//!   `ERROR:` line and no `[ReqId=…]` (a refusal the status code documents: nothing was scheduled);
//! - request ids are epoch milliseconds, bumped by one when two requests share a millisecond;
//! - no record is written while an attempt is ringing: the body stays `[]` (or the earlier attempts) until the
//!   attempt ends; IVR responses sit in the attempt that collected them;
//! - once `firstocc` minutes have passed, the next attempt becomes `failed` with `Too late to call`;
//! - `selfdelete=1` deletes the record after a final attempt (made or failed);
//! - removing a call that is queued or ringing cancels it; a second remove gets the ERROR body;
//! - parameter names are case-sensitive (lower case, as every SDK sends them); for a repeated name the first
//!   value wins, query string before body, as a servlet's `getParameter` does;
//! - timestamps are the gateway host's local time, month 0-based.

mod calls;
mod http;
pub mod model;
pub mod scenario;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::{AbortHandle, JoinHandle, JoinSet};

use crate::gateway::protocol::{self, GatewayTime};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scenario::{FaultPlan, Picker, Reply, Scenario, Script};

use calls::*;
use http::*;

/// Settings of the built-in simulator (`simulate`, or `run --gateway sim`).
#[derive(Debug, Clone)]
pub struct SimSettings {
    pub lines: u32,
    pub ring_delay: Duration,
    pub call_duration: Duration,
    pub retry_delay: Duration,
    pub scenario: Option<std::path::PathBuf>,
    pub record: Option<std::path::PathBuf>,
    /// Faults from `simulate` flags, applied over the scenario's.
    pub faults: scenario::FaultFlags,
    /// `USER:PASSWORD` the simulator demands as basic auth.
    pub basic_auth: Option<String>,
    /// Serve https with this certificate chain and key (PEM files).
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Keep every request in memory for [`Simulator::requests`] (tests). Off for long rehearsals and
    /// benchmarks, where it would grow without bound.
    pub remember: bool,
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings {
            lines: 4,
            ring_delay: Duration::from_secs(2),
            call_duration: Duration::from_secs(5),
            retry_delay: Duration::from_secs(60),
            scenario: None,
            record: None,
            faults: Default::default(),
            basic_auth: None,
            tls: None,
            remember: false,
        }
    }
}

/// One request as the simulator saw it, and what it answered.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub seq: u64,
    /// Milliseconds since the epoch when the request was handled.
    pub at_ms: i64,
    /// When the request arrived, since the simulator started, on tokio's clock (exact virtual time in tests
    /// that pause it).
    #[serde(skip)]
    pub arrived: Duration,
    pub method: String,
    pub path: String,
    pub params: BTreeMap<String, String>,
    /// `scheduled`, `dropped` (scheduled, then no answer), `scheduled-error` (scheduled, then a 500 or 502),
    /// `scheduled-reworded` (scheduled, answered without `[ReqId=…]`), `rejected`, `unavailable`, `no-attempt`,
    /// `attempts`, `no-such-record`, `removed`, `not-found`.
    pub outcome: String,
    /// The request id this request created or asked about.
    pub req_id: Option<String>,
    /// For status replies: the last record's status word.
    pub status: Option<String>,
    /// For status replies: whether that word is final.
    #[serde(rename = "final")]
    pub is_final: bool,
}

pub(super) struct Call {
    pub(super) records: Vec<String>,
    pub(super) task: Option<AbortHandle>,
    /// Scripted answers still to give to its status polls, in order.
    pub(super) polls: std::collections::VecDeque<scenario::PollAnswer>,
    /// Records are shown with eight fields, not ten.
    pub(super) short_records: bool,
}

pub(super) struct State {
    pub(super) calls: HashMap<String, Call>,
    pub(super) last_id: i64,
    pub(super) picker: Picker,
    pub(super) seq: u64,
    pub(super) log: Vec<Recorded>,
    pub(super) record_file: Option<BufWriter<File>>,
    /// Separate from the picker's, so adding a fault does not change which outcome each number gets.
    pub(super) fault_rng: StdRng,
}

impl State {
    pub(super) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.fault_rng.random::<f64>() < p
    }
}

pub(super) struct Shared {
    /// Woken on every recorded request, so tests wait on what the gateway saw instead of sleeping.
    pub(super) seen: tokio::sync::Notify,
    pub(super) started: tokio::time::Instant,
    /// Call requests received and not yet answered (a test can stop a run while requests are in flight).
    pub(super) calls_in_flight: std::sync::atomic::AtomicU64,
    pub(super) addr: SocketAddr,
    pub(super) faults: FaultPlan,
    pub(super) tls: Option<tokio_rustls::TlsAcceptor>,
    /// The accept loop; aborting it closes the listener and every connection (the gateway going away).
    pub(super) server: Mutex<Option<JoinHandle<()>>>,
    /// An aborted accept loop not yet known to be gone: its listener may still hold the port.
    pub(super) stopping: Mutex<Option<JoinHandle<()>>>,
    pub(super) settings: SimSettings,
    pub(super) lines: Arc<Semaphore>,
    pub(super) state: Mutex<State>,
}

impl Shared {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the call table half-updated in a way that matters more
        // than stopping the simulator would, so keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running simulator.
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    controller: Option<JoinHandle<()>>,
}

/// A reply the simulator refuses to send: hyper closes the connection without answering.
#[derive(Debug)]
pub(super) struct DroppedReply;

impl std::fmt::Display for DroppedReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reply dropped on purpose")
    }
}

impl std::error::Error for DroppedReply {}

impl Simulator {
    /// Starts serving on `listener` (bind `127.0.0.1:0` in tests).
    pub fn start(
        listener: TcpListener,
        settings: SimSettings,
        scenario: Scenario,
    ) -> std::io::Result<Simulator> {
        let addr = listener.local_addr()?;
        let faults = scenario
            .faults
            .plan()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let record_file = match &settings.record {
            Some(p) => Some(BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            )),
            None => None,
        };
        let seed = scenario.seed;
        let tls = match &settings.tls {
            Some((cert, key)) => Some(tls_acceptor(cert, key)?),
            None => None,
        };
        let shared = Arc::new(Shared {
            seen: tokio::sync::Notify::new(),
            started: tokio::time::Instant::now(),
            calls_in_flight: Default::default(),
            addr,
            faults,
            tls,
            server: Mutex::new(None),
            stopping: Mutex::new(None),
            lines: Arc::new(Semaphore::new(settings.lines as usize)),
            settings,
            state: Mutex::new(State {
                calls: HashMap::new(),
                last_id: 0,
                picker: Picker::new(scenario),
                seq: 0,
                log: Vec::new(),
                record_file,
                fault_rng: StdRng::seed_from_u64(seed ^ 0x5eed_fa17),
            }),
        });
        serve_on(&shared, listener);
        let controller = (!shared.faults.outages.is_empty()
            || shared.faults.restart_after.is_some())
        .then(|| tokio::spawn(fault_controller(shared.clone())));
        Ok(Simulator {
            addr,
            shared,
            controller,
        })
    }

    /// Loads the scenario named in `settings` (if any) and starts.
    pub async fn start_with(listen: &str, settings: SimSettings) -> Result<Simulator, String> {
        let mut scenario = match &settings.scenario {
            Some(p) => scenario::load(p)?,
            None => Scenario::default(),
        };
        scenario.apply(&settings.faults)?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        Simulator::start(listener, settings, scenario)
            .map_err(|e| format!("cannot start the simulator: {e}"))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL for clients.
    pub fn url(&self) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.state().log.clone()
    }

    /// Calls whose last attempt record is final (made or failed), whether or not anyone has asked.
    pub fn calls_final(&self) -> usize {
        self.shared
            .state()
            .calls
            .values()
            .filter(|c| {
                c.records
                    .last()
                    .and_then(|r| r.split('^').nth(2))
                    .is_some_and(|w| w == "made" || w == "failed")
            })
            .count()
    }

    /// Call requests received whose answer has not gone out yet.
    pub fn calls_in_flight(&self) -> u64 {
        self.shared
            .calls_in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until at least `n` call requests are being answered at once.
    pub async fn wait_for_calls_in_flight(&self, n: u64) {
        loop {
            let seen = self.shared.seen.notified();
            if self.calls_in_flight() >= n {
                return;
            }
            seen.await;
        }
    }

    /// Waits until the requests received so far satisfy `done`.
    pub async fn wait_for(&self, done: impl Fn(&[Recorded]) -> bool) {
        loop {
            // Registered before the check, so a request logged in between still wakes us.
            let seen = self.shared.seen.notified();
            if done(&self.shared.state().log) {
                return;
            }
            seen.await;
        }
    }

    /// The gateway host goes away: the listener and every open connection close, so new connections are
    /// refused. Scheduled calls go on (the scheduler is still running behind a dead web front).
    pub fn go_away(&self) {
        go_away(&self.shared);
    }

    /// The gateway answers again on the same address.
    pub async fn come_back(&self) -> std::io::Result<()> {
        come_back(&self.shared).await
    }

    /// A gateway restart: connections drop and every call record is forgotten.
    pub async fn restart(&self) -> std::io::Result<()> {
        restart(&self.shared).await
    }

    /// Stops accepting and closes every open connection; scheduled calls are forgotten.
    pub fn stop(self) {
        if let Some(c) = &self.controller {
            c.abort();
        }
        go_away(&self.shared);
        forget_all(&self.shared);
    }
}

/// `ivr-campaign simulate`: serve until interrupted.
pub async fn serve(listen: &str, settings: SimSettings) -> Result<(), String> {
    let sim = Simulator::start_with(listen, settings.clone()).await?;
    tracing::info!(
        url = %sim.url(),
        lines = settings.lines,
        ring_delay = %crate::types::Dur(settings.ring_delay),
        call_duration = %crate::types::Dur(settings.call_duration),
        retry_delay = %crate::types::Dur(settings.retry_delay),
        "simulated gateway listening"
    );
    let _ = tokio::signal::ctrl_c().await;
    sim.stop();
    Ok(())
}
