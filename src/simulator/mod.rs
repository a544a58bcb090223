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

struct Call {
    records: Vec<String>,
    task: Option<AbortHandle>,
    /// Scripted answers still to give to its status polls, in order.
    polls: std::collections::VecDeque<scenario::PollAnswer>,
    /// Records are shown with eight fields, not ten.
    short_records: bool,
}

struct State {
    calls: HashMap<String, Call>,
    last_id: i64,
    picker: Picker,
    seq: u64,
    log: Vec<Recorded>,
    record_file: Option<BufWriter<File>>,
    /// Separate from the picker's, so adding a fault does not change which outcome each number gets.
    fault_rng: StdRng,
}

impl State {
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.fault_rng.random::<f64>() < p
    }
}

struct Shared {
    /// Woken on every recorded request, so tests wait on what the gateway saw instead of sleeping.
    seen: tokio::sync::Notify,
    started: tokio::time::Instant,
    /// Call requests received and not yet answered (a test can stop a run while requests are in flight).
    calls_in_flight: std::sync::atomic::AtomicU64,
    addr: SocketAddr,
    faults: FaultPlan,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// The accept loop; aborting it closes the listener and every connection (the gateway going away).
    server: Mutex<Option<JoinHandle<()>>>,
    /// An aborted accept loop not yet known to be gone: its listener may still hold the port.
    stopping: Mutex<Option<JoinHandle<()>>>,
    settings: SimSettings,
    lines: Arc<Semaphore>,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
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
struct DroppedReply;

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

fn serve_on(shared: &Arc<Shared>, listener: TcpListener) {
    let task = tokio::spawn(accept_loop(listener, shared.clone()));
    let old = shared
        .server
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .replace(task);
    if let Some(old) = old {
        old.abort();
    }
}

fn go_away(shared: &Shared) {
    let server = shared
        .server
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(server) = server {
        server.abort();
        *shared.stopping.lock().unwrap_or_else(|p| p.into_inner()) = Some(server);
    }
}

async fn come_back(shared: &Arc<Shared>) -> std::io::Result<()> {
    // Abort is asynchronous: wait until the old loop (and its listener) is gone before binding its port.
    let old = shared
        .stopping
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(old) = old {
        let _ = old.await;
    }
    let listener = TcpListener::bind(shared.addr).await?;
    serve_on(shared, listener);
    Ok(())
}

fn forget_all(shared: &Shared) {
    let mut st = shared.state();
    for (_, call) in st.calls.drain() {
        if let Some(t) = call.task {
            t.abort();
        }
    }
}

async fn restart(shared: &Arc<Shared>) -> std::io::Result<()> {
    go_away(shared);
    forget_all(shared);
    come_back(shared).await
}

/// Plays the scenario's timed faults.
async fn fault_controller(shared: Arc<Shared>) {
    let start = tokio::time::Instant::now();
    let mut events: Vec<(Duration, u8)> = Vec::new();
    for (after, lasting) in &shared.faults.outages {
        events.push((*after, 0));
        events.push((*after + *lasting, 1));
    }
    if let Some(at) = shared.faults.restart_after {
        events.push((at, 2));
    }
    events.sort();
    for (at, what) in events {
        tokio::time::sleep_until(start + at).await;
        let done = match what {
            0 => {
                tracing::info!("simulated outage: refusing connections");
                go_away(&shared);
                Ok(())
            }
            1 => {
                tracing::info!("simulated outage over");
                come_back(&shared).await
            }
            _ => {
                tracing::info!("simulated restart: every call record forgotten");
                restart(&shared).await
            }
        };
        if let Err(e) = done {
            tracing::error!(error = %e, "simulator cannot listen again on {}", shared.addr);
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Connections live in this set so that aborting the server also closes them (a gateway going away).
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = shared.clone();
                conns.spawn(async move {
                    match shared.tls.clone() {
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                serve_connection(shared, tls).await;
                            }
                        }
                        None => serve_connection(shared, stream).await,
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve_connection<S>(shared: Arc<Shared>, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// A TLS acceptor from PEM files.
fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &std::path::Path, e: &dyn std::fmt::Display| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{}: {e}", what.display()),
        )
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, &e))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, &e))?;
    crate::gateway::client::install_tls_provider();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| bad(cert, &e))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn gateway_now() -> (GatewayTime, jiff::ZonedDateTime) {
    let z = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::system());
    (
        GatewayTime {
            year: z.year(),
            month: z.month(),
            day: z.day(),
            hour: z.hour(),
            minute: z.minute(),
        },
        z,
    )
}

fn params_of(query: Option<&str>, body: &[u8]) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let query_pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes());
    for (k, v) in query_pairs.chain(form_urlencoded::parse(body)) {
        params
            .entry(k.into_owned())
            .or_insert_with(|| v.into_owned());
    }
    params
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/html;charset=UTF-8"),
    );
    r
}

/// JSP pages start with the blank lines their directives leave behind.
fn jsp(body: &str) -> String {
    format!("\r\n\r\n{body}\r\n")
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DroppedReply> {
    if let Some(expected) = &shared.settings.basic_auth {
        use base64::Engine as _;
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(expected)
        );
        let given = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(want.as_str()) {
            let mut r = reply(
                StatusCode::UNAUTHORIZED,
                jsp("<html><body>401 Unauthorized</body></html>"),
            );
            r.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                hyper::header::HeaderValue::from_static("Basic realm=\"gateway\""),
            );
            return Ok(r);
        }
    }
    let arrived = shared.started.elapsed();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let form_body: &[u8] = if method == Method::POST { &body } else { b"" };
    let params = params_of(query.as_deref(), form_body);
    let _in_flight = (path == protocol::CALL_PATH).then(|| InFlight::new(&shared));
    // A slow gateway acts on the request at once and answers late, as a loaded Tomcat does: a call request the
    // runner stops waiting for has still been scheduled.
    let slow = shared
        .faults
        .slow
        .and_then(|(delay, rate)| shared.state().chance(rate).then_some(delay));

    let mut rec = Recorded {
        seq: 0,
        at_ms: now_ms(),
        arrived,
        method: method.to_string(),
        path: path.clone(),
        params: params.clone(),
        outcome: String::new(),
        req_id: None,
        status: None,
        is_final: false,
    };
    let result = if method != Method::GET && method != Method::POST {
        rec.outcome = "not-found".into();
        Ok(reply(StatusCode::METHOD_NOT_ALLOWED, String::new()))
    } else {
        match path.as_str() {
            protocol::CALL_PATH => call_request(&shared, &params, &mut rec),
            protocol::STATUS_PATH => Ok(status_request(&shared, &params, &mut rec)),
            protocol::REMOVE_PATH => Ok(remove_request(&shared, &params, &mut rec)),
            _ => {
                rec.outcome = "not-found".into();
                Ok(reply(
                    StatusCode::NOT_FOUND,
                    jsp("<html><body>404 Not Found</body></html>"),
                ))
            }
        }
    };
    log_request(&shared, rec);
    if let Some(delay) = slow {
        tokio::time::sleep(delay).await;
    }
    result
}

/// Counts a call request as being answered, and wakes waiters both ways.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared
            .calls_in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        shared.seen.notify_waiters();
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .calls_in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.0.seen.notify_waiters();
    }
}

fn log_request(shared: &Shared, mut rec: Recorded) {
    let mut st = shared.state();
    st.seq += 1;
    rec.seq = st.seq;
    if st.record_file.is_some() {
        let line = serde_json::to_string(&rec).unwrap_or_default();
        if let Some(f) = st.record_file.as_mut() {
            // Flushed per line: a test or an operator reading the file mid-run sees every request so far.
            let _ = writeln!(f, "{line}").and_then(|_| f.flush());
        }
    }
    if shared.settings.remember {
        st.log.push(rec);
    }
    drop(st);
    shared.seen.notify_waiters();
}

const CONTENT_PARAMS: [&str; 6] = [
    "startapp",
    "txt",
    "audiofile",
    "startexec",
    "startvxml",
    "starturl",
];

fn call_request(
    shared: &Arc<Shared>,
    params: &BTreeMap<String, String>,
    rec: &mut Recorded,
) -> Result<Response<Full<Bytes>>, DroppedReply> {
    let phoneno = params.get("phoneno").map(|s| s.trim()).unwrap_or("");
    let firstocc = params
        .get("firstocc")
        .and_then(|s| s.trim().parse::<u32>().ok());
    let problem = if phoneno.is_empty() {
        Some("missing parameter phoneno")
    } else if firstocc.is_none() {
        Some("missing or invalid parameter firstocc")
    } else if !CONTENT_PARAMS
        .iter()
        .any(|p| params.get(*p).is_some_and(|v| !v.trim().is_empty()))
    {
        Some("no call content (startapp, txt, audiofile, startexec, startvxml or starturl)")
    } else {
        None
    };
    if let Some(p) = problem {
        rec.outcome = "rejected".into();
        return Ok(reply(StatusCode::BAD_REQUEST, jsp(&format!("ERROR: {p}"))));
    }
    let firstocc = firstocc.unwrap_or(10);
    let selfdelete = params.get("selfdelete").is_some_and(|v| v.trim() == "1");

    let (id, script, fault_reply) = {
        let mut st = shared.state();
        if st.chance(shared.faults.call_unavailable) {
            rec.outcome = "unavailable".into();
            return Ok(reply(
                StatusCode::SERVICE_UNAVAILABLE,
                jsp("<html><body><h1>HTTP Status 503 - Service Unavailable</h1></body></html>"),
            ));
        }
        if st.chance(shared.faults.call_refused) {
            rec.outcome = "rejected".into();
            return Ok(reply(
                StatusCode::BAD_REQUEST,
                jsp("ERROR: the scheduler refused the request"),
            ));
        }
        // Faults that come after the record is created, the dangerous kind: the call goes ahead either way.
        let fault_reply = if st.chance(shared.faults.call_drop) {
            Some(Reply::Drop)
        } else if st.chance(shared.faults.call_error) {
            Some(Reply::Error)
        } else if st.chance(shared.faults.call_reworded) {
            Some(Reply::Reworded)
        } else {
            None
        };
        let script = st.picker.pick(phoneno, params);
        let id = if script.reply == Reply::ReuseId && st.last_id > 0 {
            st.last_id
        } else {
            now_ms().max(st.last_id + 1)
        };
        st.last_id = id;
        let id = id.to_string();
        let replaced = st.calls.insert(
            id.clone(),
            Call {
                records: Vec::new(),
                task: None,
                polls: script.polls.iter().copied().collect(),
                short_records: script.short_records,
            },
        );
        if let Some(task) = replaced.and_then(|c| c.task) {
            task.abort();
        }
        (id, script, fault_reply)
    };
    let reply_kind = fault_reply.unwrap_or(script.reply);
    let task = tokio::spawn(run_call(
        shared.clone(),
        id.clone(),
        script,
        firstocc,
        selfdelete,
    ));
    if let Some(call) = shared.state().calls.get_mut(&id) {
        call.task = Some(task.abort_handle());
    }
    rec.req_id = Some(id.clone());
    let (_, z) = gateway_now();
    let when = z.strftime("%a %b %d %H:%M:%S %Z %Y").to_string();
    match reply_kind {
        Reply::Drop => {
            rec.outcome = "dropped".into();
            Err(DroppedReply)
        }
        Reply::Error => {
            rec.outcome = "scheduled-error".into();
            Ok(reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                jsp(
                    "<html><body><h1>HTTP Status 500 - java.lang.NullPointerException</h1></body></html>",
                ),
            ))
        }
        Reply::BadGateway => {
            rec.outcome = "scheduled-error".into();
            Ok(reply(
                StatusCode::BAD_GATEWAY,
                jsp("<html><body><h1>502 Bad Gateway</h1></body></html>"),
            ))
        }
        Reply::Reworded => {
            rec.outcome = "scheduled-reworded".into();
            Ok(reply(
                StatusCode::OK,
                jsp(&format!(
                    "<html><head><title>Voicent Gateway</title></head><body>\r\nCall request {id} accepted for {when}.\r\n</body></html>"
                )),
            ))
        }
        Reply::Normal | Reply::ReuseId => {
            rec.outcome = "scheduled".into();
            Ok(reply(
                StatusCode::OK,
                jsp(&format!(
                    "<html><head><title>Voicent Gateway</title></head><body>\r\nYour call is scheduled for {when}. [ReqId={id}]\r\n</body></html>"
                )),
            ))
        }
    }
}

/// Plays one call's script: each attempt waits for a free line, rings, and appends its record.
async fn run_call(
    shared: Arc<Shared>,
    id: String,
    script: Script,
    firstocc: u32,
    selfdelete: bool,
) {
    let s = &shared.settings;
    let (created, _) = gateway_now();
    let started = tokio::time::Instant::now();
    let too_late = Duration::from_secs(u64::from(firstocc) * 60);
    for (i, attempt) in script.attempts.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(s.retry_delay).await;
        }
        if attempt.is_forget() {
            shared.state().calls.remove(&id);
            return;
        }
        let late = started.elapsed() > too_late;
        let (status, notes, responses) = if late {
            ("failed", "Too late to call", "")
        } else {
            let Ok(line) = shared.lines.clone().acquire_owned().await else {
                return;
            };
            let talk = if attempt.status == "made" {
                s.call_duration
            } else {
                Duration::ZERO
            };
            tokio::time::sleep(s.ring_delay + talk).await;
            drop(line);
            (
                attempt.status.as_str(),
                attempt.notes.as_str(),
                attempt.responses.as_str(),
            )
        };
        let (at, _) = gateway_now();
        let record = protocol::format_record(status, at, created, notes, responses);
        let is_final = late || attempt.is_final();
        let mut st = shared.state();
        let Some(call) = st.calls.get_mut(&id) else {
            return; // removed meanwhile
        };
        call.records.push(record);
        if is_final {
            call.task = None;
            if selfdelete {
                st.calls.remove(&id);
            }
            return;
        }
    }
    if let Some(call) = shared.state().calls.get_mut(&id) {
        call.task = None;
    }
}

fn req_id_param(params: &BTreeMap<String, String>) -> String {
    params
        .get("reqid")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn status_request(
    shared: &Shared,
    params: &BTreeMap<String, String>,
    rec: &mut Recorded,
) -> Response<Full<Bytes>> {
    let id = req_id_param(params);
    rec.req_id = Some(id.clone());
    let mut st = shared.state();
    let scripted = st.calls.get_mut(&id).and_then(|c| c.polls.pop_front());
    match scripted {
        Some(scenario::PollAnswer::Missing) => {
            rec.outcome = "no-such-record".into();
            return reply(
                StatusCode::OK,
                jsp(&format!("ERROR: no such call record: {id}")),
            );
        }
        Some(scenario::PollAnswer::Error) => {
            rec.outcome = "status-error".into();
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                jsp(
                    "<html><body><h1>HTTP Status 500 - java.lang.NullPointerException</h1></body></html>",
                ),
            );
        }
        Some(scenario::PollAnswer::Garbage) => {
            rec.outcome = "status-garbage".into();
            return reply(
                StatusCode::OK,
                jsp("<html><body>Voicent Gateway is starting, please wait...</body></html>"),
            );
        }
        Some(scenario::PollAnswer::Normal) | None => {}
    }
    if st.chance(shared.faults.status_error) {
        rec.outcome = "status-error".into();
        return reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            jsp(
                "<html><body><h1>HTTP Status 500 - java.lang.NullPointerException</h1></body></html>",
            ),
        );
    }
    if st.chance(shared.faults.status_garbage) {
        rec.outcome = "status-garbage".into();
        return reply(
            StatusCode::OK,
            jsp("<html><body>Voicent Gateway is starting, please wait...</body></html>"),
        );
    }
    let body = match st.calls.get(&id) {
        None => {
            rec.outcome = "no-such-record".into();
            format!("ERROR: no such call record: {id}")
        }
        Some(call) if call.records.is_empty() => {
            rec.outcome = "no-attempt".into();
            "[]".to_string()
        }
        Some(call) => {
            rec.outcome = "attempts".into();
            let last = call
                .records
                .last()
                .and_then(|r| r.split('^').nth(2))
                .unwrap_or("")
                .to_string();
            rec.is_final = last == "made" || last == "failed";
            rec.status = Some(last);
            let records: String = if call.short_records {
                // Each record is ten `^`-terminated fields; keep the first eight.
                call.records
                    .iter()
                    .map(|r| {
                        let f: Vec<&str> = r.split('^').take(8).collect();
                        format!("{}^", f.join("^"))
                    })
                    .collect()
            } else {
                call.records.concat()
            };
            format!("[{records}\r\n]")
        }
    };
    reply(StatusCode::OK, jsp(&body))
}

fn remove_request(
    shared: &Shared,
    params: &BTreeMap<String, String>,
    rec: &mut Recorded,
) -> Response<Full<Bytes>> {
    let id = req_id_param(params);
    rec.req_id = Some(id.clone());
    let removed = shared.state().calls.remove(&id);
    let body = match removed {
        Some(call) => {
            if let Some(t) = call.task {
                t.abort(); // cancels a queued or ringing call; its line is released with the task
            }
            rec.outcome = "removed".into();
            "[removed]".to_string()
        }
        None => {
            rec.outcome = "no-such-record".into();
            format!("ERROR: no such call record: {id}")
        }
    };
    reply(StatusCode::OK, jsp(&body))
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
