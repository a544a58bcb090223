//! The simulation tier's gateway: a pure state machine of a Voicent Gateway, answered in-process
//! ([`crate::gateway::Exchange`]) on tokio's clock, with no socket.
//!
//! It keeps what a gateway keeps — lines with a FIFO queue, each call's attempts (ring, talk, retries,
//! `firstocc` expiry), its records — and what a checker needs to know that no real gateway says: every request
//! it received, which calls were live (the gateway could still dial them) and when. Faults are drawn from a
//! seeded generator: refused and 503 call requests, answers lost or slow or unreadable after a call was
//! scheduled, 500/502/504 after scheduling, pages without an id, status errors and garbage, forgotten records,
//! reused and clashing ids, and outages. The same seed and the same requests give the same answers.
//!
//! Replies are the protocol reference's shapes, built with [`protocol::format_record`], and go through the
//! client's own reading ([`crate::gateway::Wire`]), as replies from a socket do.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::gateway::Wire;
use crate::gateway::protocol::{self, GatewayTime};

/// How often each fault happens, per request of its kind (0.0 to 1.0).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Call request: connection refused (nothing scheduled).
    pub call_not_sent: f64,
    /// Call request: HTTP 503 (nothing scheduled).
    pub call_unavailable: f64,
    /// Call request: HTTP 400 (nothing scheduled).
    pub call_refused: f64,
    /// Call request: scheduled, and the answer lost.
    pub call_lost: f64,
    /// Call request: scheduled, and answered 500, 502 or 504.
    pub call_error: f64,
    /// Call request: scheduled, and answered with a page without `[ReqId=…]`.
    pub call_reworded: f64,
    /// Call request: scheduled under the id of an earlier call (finished or not).
    pub call_reused_id: f64,
    /// Status request: HTTP 500.
    pub status_error: f64,
    /// Status request: a page that is not a status reply.
    pub status_garbage: f64,
    /// Status or remove request: the answer lost.
    pub poll_lost: f64,
    /// Status request: the gateway forgets the call (as in a restart that lost its records).
    pub forget: f64,
    /// Any request: answered slowly, past the client's timeout.
    pub slow: f64,
}

/// What a call does when it is dialed: its attempts, in order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub attempts: Vec<PlannedAttempt>,
}

/// One attempt of a call.
#[derive(Debug, Clone)]
pub struct PlannedAttempt {
    /// `made`, `failed` or `retry` (the gateway dials again by itself).
    pub status: String,
    pub notes: String,
    pub responses: String,
    /// How long it holds a line.
    pub hold: Duration,
}

/// Settings of the model, drawn by the harness from a seed.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    pub lines: u32,
    /// Between a retry and the next attempt.
    pub retry_delay: Duration,
    /// The usual time from request to answer.
    pub latency: Duration,
    /// The client's request timeout: a slower answer is lost.
    pub request_timeout: Duration,
    pub faults: Faults,
    /// Wall-clock intervals (ms) in which the gateway cannot be reached.
    pub outages: Vec<(i64, i64)>,
    pub seed: u64,
}

/// A request as the gateway saw it, for the checkers.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The gateway's (true) time, ms.
    pub at_ms: i64,
    pub path: &'static str,
    pub form: Vec<(String, String)>,
    /// The call it created, for a call request that scheduled one.
    pub created: Option<u64>,
    pub req_id: Option<String>,
    /// What happened, in a word (`scheduled`, `lost`, `not-sent`, `refused`, …).
    pub what: &'static str,
    /// The runner's wall clock then, which may be stepped away from the gateway's.
    pub runner_ms: i64,
    /// The answer never reached the runner as sent: it came after the client's timeout, or the process died
    /// with the request in flight. What the gateway did is then unknown to the runner.
    pub answer_lost: bool,
}

/// One call the gateway scheduled.
#[derive(Debug, Clone)]
pub struct Call {
    pub id: String,
    pub phoneno: String,
    pub info: String,
    pub created_ms: i64,
    pub firstocc: u32,
    pub plan: Plan,
    /// Attempts made so far, as records.
    pub records: Vec<String>,
    /// The final status word, once there is one.
    pub outcome: Option<String>,
    pub responses: String,
    /// Until when it was live: the gateway could still dial it (`None`: still live).
    pub live_until: Option<i64>,
    /// Removed by a remove request, or forgotten.
    pub gone: bool,
    /// A status reply showing its final record reached the runner.
    pub final_read: bool,
    /// When the first such reply reached it (the gateway's time).
    pub final_read_ms: Option<i64>,
    /// When a remove request took its record away (not a record the gateway forgot).
    pub removed_ms: Option<i64>,
    /// When a remove request cancelled it while the gateway could still dial it.
    pub cancelled_live_at: Option<i64>,
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Queued,
    OnLine { until: i64 },
    Waiting { until: i64 },
    Over,
}

/// The gateway's state. Shared by every process the harness starts: the gateway outlives a crash.
#[derive(Debug)]
pub struct Model {
    pub settings: ModelSettings,
    rng: StdRng,
    /// Every call ever scheduled, by creation order.
    pub calls: Vec<Call>,
    /// The record each id names now (an id reused names the newer call).
    by_id: BTreeMap<String, usize>,
    queue: VecDeque<usize>,
    busy_lines: u32,
    last_id: u64,
    now_ms: i64,
    pub seen: Vec<Seen>,
    /// Which call plan the next call request gets: set by the harness per phone number.
    pub plans: BTreeMap<String, Vec<Plan>>,
    /// Crash the process at the `n`-th call request (0-based), before or after the gateway takes it.
    pub crash_at_call: Option<(u64, bool)>,
    calls_asked: u64,
    /// Faults injected, for the report.
    pub faults_injected: u64,
}

impl Model {
    pub fn new(settings: ModelSettings, now_ms: i64) -> Model {
        Model {
            rng: StdRng::seed_from_u64(settings.seed),
            settings,
            calls: Vec::new(),
            by_id: BTreeMap::new(),
            queue: VecDeque::new(),
            busy_lines: 0,
            last_id: 1_000_000,
            now_ms,
            seen: Vec::new(),
            plans: BTreeMap::new(),
            crash_at_call: None,
            calls_asked: 0,
            faults_injected: 0,
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Call requests received so far.
    pub fn calls_asked(&self) -> u64 {
        self.calls_asked
    }

    fn chance(&mut self, p: f64) -> bool {
        let hit = p > 0.0 && self.rng.random_bool(p.min(1.0));
        if hit {
            self.faults_injected += 1;
        }
        hit
    }

    fn time(ms: i64) -> GatewayTime {
        let t = jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let z = t.to_zoned_datetime(jiff::tz::TimeZone::UTC);
        GatewayTime {
            year: z.year(),
            month: z.month(),
            day: z.day(),
            hour: z.hour(),
            minute: z.minute(),
        }
    }

    /// Moves the gateway's time to `to_ms`, playing every call's attempts up to then, in time order.
    pub fn advance(&mut self, to_ms: i64) {
        loop {
            self.fill_lines();
            // The earliest thing due by `to_ms`.
            let next = self
                .calls
                .iter()
                .enumerate()
                .filter_map(|(i, c)| match c.phase {
                    Phase::OnLine { until } | Phase::Waiting { until } => Some((until, i)),
                    _ => None,
                })
                .filter(|(t, _)| *t <= to_ms)
                .min();
            let Some((t, i)) = next else { break };
            self.now_ms = self.now_ms.max(t);
            self.step(i, t);
        }
        self.now_ms = self.now_ms.max(to_ms);
        self.fill_lines();
    }

    fn fill_lines(&mut self) {
        while self.busy_lines < self.settings.lines {
            let Some(i) = self.queue.pop_front() else {
                break;
            };
            let c = &mut self.calls[i];
            if c.phase != Phase::Queued {
                continue;
            }
            let attempt = c.records.len().min(c.plan.attempts.len().saturating_sub(1));
            let hold = c.plan.attempts[attempt].hold.as_millis() as i64;
            c.phase = Phase::OnLine {
                until: self.now_ms + hold.max(1),
            };
            self.busy_lines += 1;
        }
    }

    /// The call `i`'s attempt or wait that ends at `t`.
    fn step(&mut self, i: usize, t: i64) {
        let retry = self.settings.retry_delay.as_millis() as i64;
        let c = &mut self.calls[i];
        match c.phase {
            Phase::OnLine { .. } => {
                self.busy_lines -= 1;
                let k = c.records.len().min(c.plan.attempts.len() - 1);
                let a = c.plan.attempts[k].clone();
                c.records.push(protocol::format_record(
                    &a.status,
                    Model::time(t),
                    Model::time(c.created_ms),
                    &a.notes,
                    &a.responses,
                ));
                if a.status == "made" || a.status == "failed" || k + 1 >= c.plan.attempts.len() {
                    c.outcome = Some(a.status.clone());
                    c.responses = a.responses;
                    c.phase = Phase::Over;
                    c.live_until = Some(t);
                } else {
                    c.phase = Phase::Waiting { until: t + retry };
                }
            }
            Phase::Waiting { .. } => {
                let too_late = c.created_ms + i64::from(c.firstocc) * 60_000;
                if t > too_late {
                    c.records.push(protocol::format_record(
                        "failed",
                        Model::time(t),
                        Model::time(c.created_ms),
                        "Too late to call",
                        "",
                    ));
                    c.outcome = Some("failed".into());
                    c.phase = Phase::Over;
                    c.live_until = Some(t);
                } else {
                    c.phase = Phase::Queued;
                    self.queue.push_back(i);
                }
            }
            Phase::Queued | Phase::Over => {}
        }
    }

    fn down(&self, at: i64) -> bool {
        self.settings
            .outages
            .iter()
            .any(|(a, b)| *a <= at && at < *b)
    }

    fn take_plan(&mut self, phoneno: &str) -> Plan {
        let plans = self.plans.get_mut(phoneno);
        match plans {
            Some(p) if p.len() > 1 => p.remove(0),
            Some(p) if p.len() == 1 => p[0].clone(),
            _ => Plan {
                attempts: vec![PlannedAttempt {
                    status: "made".into(),
                    notes: String::new(),
                    responses: String::new(),
                    hold: Duration::from_secs(20),
                }],
            },
        }
    }

    /// Ends a call the gateway no longer holds (removed, forgotten): it cannot be dialed any more.
    fn drop_call(&mut self, i: usize) {
        let now = self.now_ms;
        let c = &mut self.calls[i];
        if let Phase::OnLine { .. } = c.phase {
            self.busy_lines -= 1;
        }
        if c.phase != Phase::Over {
            c.phase = Phase::Over;
            c.live_until = Some(now);
        }
        c.gone = true;
    }

    /// Answers one request at the gateway's time now. `Err(())`: the process is to die here, before the
    /// gateway takes the request (it never arrives).
    fn handle(&mut self, path: &str, form: Vec<(String, String)>) -> Result<(Wire, Duration), ()> {
        let latency = self.settings.latency;
        let slow = self.chance(self.settings.faults.slow);
        let mut seen = Seen {
            at_ms: self.now_ms,
            path: match path {
                protocol::CALL_PATH => protocol::CALL_PATH,
                protocol::STATUS_PATH => protocol::STATUS_PATH,
                _ => protocol::REMOVE_PATH,
            },
            form: form.clone(),
            created: None,
            req_id: None,
            what: "",
            runner_ms: self.now_ms,
            answer_lost: false,
        };
        let get = |k: &str| {
            form.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        let mut final_shown: Option<usize> = None;
        // A call request whose answer must arrive as sent (see `clash` below).
        let mut plain = false;
        let wire = if self.down(self.now_ms) {
            seen.what = "not-sent";
            Wire::NotSent("connection refused".into())
        } else if path == protocol::CALL_PATH {
            let asked = self.calls_asked;
            self.calls_asked += 1;
            let crash_after = match self.crash_at_call {
                Some((n, after)) if n == asked => {
                    if !after {
                        return Err(());
                    }
                    true
                }
                _ => false,
            };
            let f = self.settings.faults.clone();
            if self.chance(f.call_not_sent) {
                seen.what = "not-sent";
                Wire::NotSent("connection refused".into())
            } else if self.chance(f.call_unavailable) {
                seen.what = "unavailable";
                Wire::answer(503, "\r\n\r\n<h1>HTTP Status 503</h1>\r\n")
            } else if self.chance(f.call_refused) {
                seen.what = "refused";
                Wire::answer(400, "\r\n\r\nERROR: the scheduler refused the request\r\n")
            } else {
                let phoneno = get("phoneno");
                let plan = self.take_plan(&phoneno);
                let reuse = self.chance(f.call_reused_id) && !self.by_id.is_empty();
                let id = if reuse {
                    let k = self.rng.random_range(0..self.by_id.len());
                    self.by_id.keys().nth(k).cloned().unwrap_or_default()
                } else {
                    self.last_id += 1 + self.rng.random_range(0..3u64);
                    self.last_id.to_string()
                };
                let firstocc = get("firstocc").parse::<u32>().unwrap_or(10);
                // An id taken from a call the gateway still dials, answered so that the client cannot see the
                // id, would make the old call's polls read the new one's: no client could tell, and no real
                // gateway is known to do it. Such a clash is always answered plainly.
                let clash = self
                    .by_id
                    .get(&id)
                    .is_some_and(|&old| self.calls[old].phase != Phase::Over);
                plain = clash;
                let i = self.calls.len();
                // A reused id names the newer call from now on; the older one, if the gateway still dials
                // it, stays live without a record anyone can reach.
                self.calls.push(Call {
                    id: id.clone(),
                    phoneno,
                    info: get("info"),
                    created_ms: self.now_ms,
                    firstocc,
                    plan,
                    records: Vec::new(),
                    outcome: None,
                    responses: String::new(),
                    live_until: None,
                    gone: false,
                    final_read: false,
                    final_read_ms: None,
                    removed_ms: None,
                    cancelled_live_at: None,
                    phase: Phase::Queued,
                });
                self.by_id.insert(id.clone(), i);
                self.queue.push_back(i);
                seen.created = Some(i as u64);
                seen.req_id = Some(id.clone());
                let wire = if !clash && self.chance(f.call_lost) {
                    seen.what = "lost";
                    Wire::Lost("connection reset".into())
                } else if !clash && self.chance(f.call_error) {
                    seen.what = "error";
                    let code = [500, 502, 504][self.rng.random_range(0..3)];
                    Wire::answer(code, format!("\r\n\r\n<h1>HTTP Status {code}</h1>\r\n"))
                } else if !clash && self.chance(f.call_reworded) {
                    seen.what = "reworded";
                    Wire::answer(200, format!("\r\n\r\nCall request {id} accepted.\r\n"))
                } else {
                    seen.what = "scheduled";
                    Wire::answer(
                        200,
                        format!(
                            "\r\n\r\n<html><body>\r\nYour call is scheduled. [ReqId={id}]\r\n</body></html>\r\n"
                        ),
                    )
                };
                self.fill_lines();
                if crash_after && !clash {
                    seen.answer_lost = true;
                    self.seen.push(seen);
                    crate::determinism::crash();
                    return Ok((wire, latency));
                }
                wire
            }
        } else {
            let id = get("reqid");
            seen.req_id = Some(id.clone());
            let idx = self.by_id.get(&id).copied();
            if self.chance(self.settings.faults.poll_lost) {
                seen.what = "lost";
                Wire::Lost("connection reset".into())
            } else if path == protocol::STATUS_PATH {
                if let Some(i) = idx
                    && !self.calls[i].gone
                    && self.chance(self.settings.faults.forget)
                {
                    self.drop_call(i);
                    self.by_id.remove(&id);
                }
                let idx = self.by_id.get(&id).copied();
                if self.chance(self.settings.faults.status_error) {
                    seen.what = "status-error";
                    Wire::answer(500, "\r\n\r\n<h1>HTTP Status 500</h1>\r\n")
                } else if self.chance(self.settings.faults.status_garbage) {
                    seen.what = "status-garbage";
                    Wire::answer(200, "\r\n\r\n<html>Voicent Gateway is starting</html>\r\n")
                } else {
                    match idx.map(|i| &self.calls[i]) {
                        Some(c) if !c.gone => {
                            seen.what = "status";
                            if c.outcome.is_some() {
                                final_shown = idx;
                            }
                            let body = if c.records.is_empty() {
                                "[]".to_string()
                            } else {
                                format!("[{}\r\n]", c.records.concat())
                            };
                            Wire::answer(200, format!("\r\n\r\n{body}\r\n"))
                        }
                        _ => {
                            seen.what = "no-such-record";
                            Wire::answer(
                                200,
                                format!("\r\n\r\nERROR: no such call record: {id}\r\n"),
                            )
                        }
                    }
                }
            } else {
                match idx {
                    Some(i) if !self.calls[i].gone => {
                        if self.calls[i].phase != Phase::Over {
                            self.calls[i].cancelled_live_at = Some(self.now_ms);
                        }
                        self.drop_call(i);
                        self.calls[i].removed_ms = Some(self.now_ms);
                        self.by_id.remove(&id);
                        seen.what = "removed";
                        Wire::answer(200, "\r\n\r\n[removed]\r\n")
                    }
                    _ => {
                        seen.what = "no-such-record";
                        Wire::answer(200, format!("\r\n\r\nERROR: no such call record: {id}\r\n"))
                    }
                }
            }
        };
        seen.answer_lost = slow && !plain;
        self.seen.push(seen);
        if slow && !plain {
            // Answered after the client gave up: to the client, the answer was lost.
            return Ok((
                Wire::Lost("operation timed out".into()),
                self.settings.request_timeout,
            ));
        }
        if let Some(i) = final_shown {
            let now = self.now_ms;
            let c = &mut self.calls[i];
            c.final_read = true;
            c.final_read_ms.get_or_insert(now);
        }
        Ok((wire, latency))
    }
}

/// One gateway of the simulation: the shared model, on tokio's clock from `origin`.
#[derive(Debug, Clone)]
pub struct SimGateway {
    pub model: Arc<Mutex<Model>>,
    origin: Arc<Mutex<(tokio::time::Instant, i64)>>,
    /// How far the runner's wall clock is off the gateway's, for the record of each request.
    pub runner_step_ms: Arc<std::sync::atomic::AtomicI64>,
}

impl SimGateway {
    pub fn new(model: Model) -> SimGateway {
        let now = model.now_ms;
        SimGateway {
            model: Arc::new(Mutex::new(model)),
            origin: Arc::new(Mutex::new((tokio::time::Instant::now(), now))),
            runner_step_ms: Arc::default(),
        }
    }

    /// Ties the gateway's time to the current runtime's clock, at `now_ms` (a new process starts on a new
    /// runtime; the gateway's time goes on from where it was).
    pub fn rebase(&self, now_ms: i64) {
        if let Ok(mut o) = self.origin.lock() {
            *o = (tokio::time::Instant::now(), now_ms);
        }
        if let Ok(mut m) = self.model.lock() {
            m.advance(now_ms);
        }
    }

    /// The gateway's time now.
    pub fn now_ms(&self) -> i64 {
        match self.origin.lock() {
            Ok(o) => o.1 + o.0.elapsed().as_millis() as i64,
            Err(_) => 0,
        }
    }

    fn answer(&self, path: &str, form: Vec<(String, String)>) -> Result<(Wire, Duration), ()> {
        let now = self.now_ms();
        let mut m = self.model.lock().map_err(|_| ())?;
        m.advance(now);
        let seen = m.seen.len();
        let answer = m.handle(path, form);
        let step = self
            .runner_step_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        for s in m.seen.iter_mut().skip(seen) {
            s.runner_ms = now + step;
        }
        answer
    }
}

impl crate::gateway::Exchange for SimGateway {
    fn exchange<'a>(
        &'a self,
        path: &'a str,
        form: Vec<(String, String)>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Wire> + Send + 'a>> {
        Box::pin(async move {
            if crate::determinism::crashed() {
                std::future::pending::<()>().await;
            }
            match self.answer(path, form) {
                Ok((wire, delay)) => {
                    tokio::time::sleep(delay).await;
                    if crate::determinism::crashed() {
                        std::future::pending::<()>().await;
                    }
                    wire
                }
                Err(()) => {
                    crate::determinism::crash();
                    std::future::pending::<()>().await;
                    Wire::Lost("the process died".into())
                }
            }
        })
    }
}
