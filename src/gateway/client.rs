//! The HTTP side of the gateway protocol.
//!
//! Call requests are never retried here, and never behind a generic retry layer: whether a failed request may
//! be sent again depends on whether the gateway could have scheduled it, which only the caller can weigh.
//! So every failure of a call request is classified (see [`PlaceError`]) and handed back.

use std::time::Duration;

use reqwest::{Client, Url};

use super::protocol::{self, CallRequest, RemoveReply, StatusReply};

/// Why a call request did not yield a request id.
///
/// The classes are drawn by one question: could the gateway have scheduled the call? Only an answer that
/// proves it did not ([`NotSent`](PlaceError::NotSent), [`Unavailable`](PlaceError::Unavailable),
/// [`Refused`](PlaceError::Refused), and the two configuration stops) lets the contact be requested again;
/// anything else after the request was sent leaves it `unknown`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// The request never reached the gateway (refused, DNS, connect timeout): safe to send again.
    #[error("gateway not reached: {0}")]
    NotSent(String),
    /// The request never left this process: no file descriptor for its socket (`ulimit -n`), or it could not
    /// be built. Safe to send again, and not a call request the gateway could have seen.
    #[error("the call request could not leave this process: {0}")]
    Unsent(String),
    /// HTTP 503: the gateway (or its proxy) is not serving. Nothing was scheduled; back off and send again.
    #[error("gateway unavailable: {0}")]
    Unavailable(String),
    /// A refusal the HTTP status documents (400, 429, 413, …: the request was not processed): safe to send
    /// again, a bounded number of times.
    #[error("the gateway refused the call request: {0}")]
    Refused(String),
    /// HTTP 401/403/407: nothing will work until an operator fixes the credentials, so the run stops.
    #[error("the gateway refused the credentials: {0}")]
    Unauthorized(String),
    /// A 404 or 405 from the handler: the gateway URL is wrong (it ends in a handler path, or points at
    /// another server). Nothing was scheduled; the run stops.
    #[error("the gateway URL does not lead to the call handler: {0}")]
    Misconfigured(String),
    /// A redirect (3xx) without `[ReqId=…]`: something in front of the handler answers, and a redirect after
    /// a POST may follow a request that was taken. The contact is `unknown`; the run stops.
    #[error(
        "the call request was redirected (it may have been taken, so it is not sent again): {0}"
    )]
    Redirected(String),
    /// Sent, and the answer was lost (connection reset or closed, timeout, a body cut short): the call may
    /// have been scheduled.
    #[error("the answer to the call request was lost (the call may have been scheduled): {0}")]
    Lost(String),
    /// Sent, and answered with something that does not say whether the call was scheduled: a 500, 502 or 504
    /// (from the gateway or a proxy in front of it), or a page without `[ReqId=…]`. `down`: the answer says
    /// the gateway behind a proxy cannot be reached (502, 504).
    #[error(
        "the answer to the call request cannot be read (the call may have been scheduled): {reason}"
    )]
    Unreadable { reason: String, down: bool },
}

impl PlaceError {
    /// The gateway's own (or its proxy's) answer came back: it is up, whatever it said.
    pub fn gateway_answered(&self) -> bool {
        !matches!(
            self,
            PlaceError::NotSent(_)
                | PlaceError::Unsent(_)
                | PlaceError::Unavailable(_)
                | PlaceError::Lost(_)
                | PlaceError::Unreadable { down: true, .. }
        )
    }

    /// The answer says the gateway cannot be reached, so requests should pause.
    pub fn gateway_down(&self) -> bool {
        matches!(
            self,
            PlaceError::NotSent(_)
                | PlaceError::Unsent(_)
                | PlaceError::Unavailable(_)
                | PlaceError::Unreadable { down: true, .. }
        )
    }
}

/// Whether a failed request never left this process: it could not be built, or the system refused a socket
/// for it (EMFILE, ENFILE: out of file descriptors).
fn never_left(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && matches!(io.raw_os_error(), Some(23 | 24))
        {
            return true;
        }
        source = s.source();
    }
    e.is_builder()
}

/// Why a status or remove request gave no usable answer. Always safe to ask again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    /// The gateway could not be reached at all (refused, DNS, connect timeout).
    #[error("gateway not reached: {0}")]
    Unreachable(String),
    /// Reached, and the answer was lost (reset, timeout, a body cut short).
    #[error("no answer: {0}")]
    Lost(String),
    #[error("gateway answered HTTP {0}: {1}")]
    Http(u16, String),
    #[error("not a status reply: {0}")]
    Malformed(String),
    #[error("the gateway refused the credentials: HTTP {0}")]
    Unauthorized(u16),
    /// A 404, 405 or redirect: the gateway URL does not lead to the handler.
    #[error("the gateway URL does not lead to the status handler: HTTP {0}")]
    Misconfigured(u16),
}

/// Most bytes read from any gateway reply. Real replies are a few hundred bytes; a page this large is not a
/// reply (and an unbounded read lets a broken proxy exhaust memory).
pub const MAX_REPLY: usize = 1 << 20;

/// Connect timeout: a LAN gateway that has not answered a SYN in this long is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle keep-alive connections are dropped before Tomcat's shipped 20 s keep-alive timeout closes them under
/// us; reusing a socket the server is closing turns a call request into an ambiguous one.
const POOL_IDLE: Duration = Duration::from_secs(15);

/// Installs the process-wide TLS provider (ring) that HTTP clients need; later calls do nothing.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Requests in flight at once to one gateway, for call requests and for status and remove requests each.
/// Each holds a connection and its buffers: 2,000 lines without a poll budget held 2,000 sockets (88 MiB at
/// 200k contacts), and a servlet container serves about 200 requests at once anyway (Tomcat's default
/// `maxThreads`). A call request takes its slot before its send instant is paced and its window checked
/// again, so a wait here neither bunches requests past the rate nor sends one after its window.
const IN_FLIGHT: usize = 128;

/// What came back on the wire for one request, before the protocol reads it. The HTTP client makes one from a
/// socket; the simulation tier's gateway model makes one directly, so both go through the same reading of
/// replies ([`Gateway::place_call`], [`Gateway::status`], [`Gateway::remove`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wire {
    /// The request never reached the gateway (refused, DNS, connect timeout).
    NotSent(String),
    /// Sent, and no answer came back (reset, closed, timeout).
    Lost(String),
    /// The request could not leave this process (no file descriptor for a socket).
    Unsent(String),
    /// An answer: its HTTP status, the text of its body as far as it could be read, and whether it was read
    /// whole.
    Answer {
        code: u16,
        text: String,
        whole: Result<(), BodyError>,
    },
}

impl Wire {
    /// A whole answer.
    pub fn answer(code: u16, text: impl Into<String>) -> Wire {
        Wire::Answer {
            code,
            text: text.into(),
            whole: Ok(()),
        }
    }
}

/// A gateway reached without sockets: one request to a handler `path` with its form, answered on the wire.
/// The simulation tier's gateway model implements it; nothing in a real run does.
pub trait Exchange: Send + Sync + std::fmt::Debug {
    fn exchange<'a>(
        &'a self,
        path: &'a str,
        form: Vec<(String, String)>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Wire> + Send + 'a>>;
}

/// How requests reach a gateway.
#[derive(Clone, Debug)]
enum Transport {
    Http {
        http: Client,
        auth: Option<(String, crate::types::Secret)>,
    },
    Exchange(std::sync::Arc<dyn Exchange>),
}

/// A gateway at a base URL.
#[derive(Clone, Debug)]
pub struct Gateway {
    transport: Transport,
    base: Url,
    polls: std::sync::Arc<tokio::sync::Semaphore>,
    calls: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Gateway {
    /// `timeout` bounds each request from connect to last body byte; `auth` is sent as basic auth.
    pub fn new(
        base: Url,
        timeout: Duration,
        auth: Option<(String, crate::types::Secret)>,
        ca_pem: Option<&[u8]>,
    ) -> Result<Gateway, String> {
        install_tls_provider();
        let mut base = base;
        // A user in the URL travels as basic auth, not in every logged URL.
        let _ = base.set_username("");
        let mut builder = Client::builder();
        if let Some(pem) = ca_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| format!("the CA certificate is not PEM: {e}"))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(64)
            .http1_only()
            // A redirected POST becomes a GET elsewhere; a gateway handler never redirects, so treat it as an
            // answer that did not schedule anything.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ivr-campaign/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Gateway::with_transport(
            Transport::Http { http, auth },
            base,
        ))
    }

    /// A gateway answered by `exchange` in-process, named by `base` (the simulation tier).
    pub fn in_process(base: Url, exchange: std::sync::Arc<dyn Exchange>) -> Gateway {
        Gateway::with_transport(Transport::Exchange(exchange), base)
    }

    fn with_transport(transport: Transport, base: Url) -> Gateway {
        Gateway {
            transport,
            base,
            polls: std::sync::Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)),
            calls: std::sync::Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)),
        }
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> Url {
        // Keep a path prefix the operator gave (a gateway behind a reverse proxy at /voicent/).
        let mut url = self.base.clone();
        let prefix = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{prefix}{path}"));
        url
    }

    /// A slot for one call request, held until its answer is read (see [`IN_FLIGHT`]).
    pub async fn call_slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.calls.clone().acquire_owned().await.ok()
    }

    /// Sends one request and returns what came back on the wire.
    async fn send(&self, path: &str, form: Vec<(String, String)>) -> Wire {
        let (http, auth) = match &self.transport {
            Transport::Exchange(x) => return x.exchange(path, form).await,
            Transport::Http { http, auth } => (http, auth),
        };
        let mut req = http.post(self.url(path)).form(&form);
        if let Some((user, password)) = auth {
            req = req.basic_auth(user, Some(&password.0));
        }
        match req.send().await {
            Ok(resp) => {
                let code = resp.status().as_u16();
                let body = read_body(resp).await;
                Wire::Answer {
                    code,
                    text: body.text,
                    whole: body.whole,
                }
            }
            Err(e) if never_left(&e) => Wire::Unsent(describe(&e)),
            Err(e) if e.is_connect() => Wire::NotSent(describe(&e)),
            Err(e) => Wire::Lost(describe(&e)),
        }
    }

    /// Sends a call request; returns the request id.
    pub async fn place_call(&self, req: &CallRequest) -> Result<String, PlaceError> {
        let wire = self.send(protocol::CALL_PATH, req.form()).await;
        read_call_reply(wire, &self.url(protocol::CALL_PATH))
    }

    /// Asks for a call's status.
    pub async fn status(&self, req_id: &str) -> Result<StatusReply, PollError> {
        let body = self.post(protocol::STATUS_PATH, req_id).await?;
        protocol::parse_status_reply(&body).map_err(|m| PollError::Malformed(m.to_string()))
    }

    /// Removes a call record (cancelling the call if it has not been made).
    pub async fn remove(&self, req_id: &str) -> Result<RemoveReply, PollError> {
        let body = self.post(protocol::REMOVE_PATH, req_id).await?;
        Ok(protocol::parse_remove_reply(&body))
    }

    async fn post(&self, path: &str, req_id: &str) -> Result<String, PollError> {
        // Never closed, so the wait always ends with a permit.
        let _slot = self.polls.acquire().await.ok();
        let wire = self
            .send(path, vec![("reqid".to_string(), req_id.to_string())])
            .await;
        read_poll_reply(wire)
    }
}

/// What the answer to a call request says: the request id, or why there is none (see [`PlaceError`]).
fn read_call_reply(wire: Wire, url: &Url) -> Result<String, PlaceError> {
    let (code, text, whole) = match wire {
        Wire::Unsent(e) => return Err(PlaceError::Unsent(e)),
        Wire::NotSent(e) => return Err(PlaceError::NotSent(e)),
        Wire::Lost(e) => return Err(PlaceError::Lost(e)),
        Wire::Answer { code, text, whole } => (code, text, whole),
    };
    // A page with an id says the call was scheduled, whatever its status line says (and however much of
    // it could be read): a front end that answers 302 or 400 around the gateway's own page must not get
    // the person called again.
    if let Some(id) = protocol::parse_call_reply(&text) {
        if code != 200 {
            tracing::warn!(status = code, req_id = %id, "the call request's answer carries a request id under HTTP {code}; taking the id");
        }
        return Ok(id);
    }
    // A refusal or a 503 says nothing was scheduled only if its page was read whole: the id might be in
    // the part that never arrived.
    if let (Err(e), 400..=499 | 503) = (&whole, code)
        && !matches!(code, 401 | 403 | 404 | 405 | 407)
    {
        return Err(PlaceError::Lost(format!(
            "HTTP {code} whose page could not be read whole ({e}): it may carry a request id"
        )));
    }
    let body = Body { text, whole }.into_result();
    let text = |b: &Result<String, BodyError>| match b {
        Ok(t) => protocol::excerpt(t),
        Err(e) => e.to_string(),
    };
    match code {
        401 | 403 | 407 => Err(PlaceError::Unauthorized(format!("HTTP {code}"))),
        404 | 405 => Err(PlaceError::Misconfigured(format!(
            "HTTP {code} from {url}: {}",
            text(&body)
        ))),
        300..=399 => Err(PlaceError::Redirected(format!(
            "HTTP {code} from {url}: {}",
            text(&body)
        ))),
        503 => Err(PlaceError::Unavailable(format!(
            "HTTP 503: {}",
            text(&body)
        ))),
        400..=499 => Err(PlaceError::Refused(format!("HTTP {code}: {}", text(&body)))),
        200 => match body {
            Err(BodyError::Read(e)) => Err(PlaceError::Lost(e)),
            Err(e @ BodyError::TooLarge) => Err(PlaceError::Unreadable {
                reason: e.to_string(),
                down: false,
            }),
            Ok(body) => protocol::parse_call_reply(&body).ok_or_else(|| PlaceError::Unreadable {
                reason: format!("no [ReqId=…] in the reply: {}", protocol::excerpt(&body)),
                down: false,
            }),
        },
        _ => Err(PlaceError::Unreadable {
            reason: format!("HTTP {code}: {}", text(&body)),
            down: matches!(code, 502 | 504),
        }),
    }
}

/// The body of the answer to a status or remove request, or why there is none to read.
fn read_poll_reply(wire: Wire) -> Result<String, PollError> {
    let (code, text, whole) = match wire {
        Wire::NotSent(e) | Wire::Unsent(e) => return Err(PollError::Unreachable(e)),
        Wire::Lost(e) => return Err(PollError::Lost(e)),
        Wire::Answer { code, text, whole } => (code, text, whole),
    };
    let body = Body { text, whole }.into_result();
    match code {
        401 | 403 | 407 => Err(PollError::Unauthorized(code)),
        300..=399 | 404 | 405 => Err(PollError::Misconfigured(code)),
        200 => body.map_err(|e| match e {
            BodyError::Read(e) => PollError::Lost(e),
            e @ BodyError::TooLarge => PollError::Malformed(e.to_string()),
        }),
        _ => Err(PollError::Http(
            code,
            body.map(|b| protocol::excerpt(&b))
                .unwrap_or_else(|e| e.to_string()),
        )),
    }
}

/// Why a reply body could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("{0}")]
    Read(String),
    #[error("the reply is larger than {} KiB", MAX_REPLY / 1024)]
    TooLarge,
}

/// A reply body as read: its text (at most [`MAX_REPLY`] bytes of it), and whether it was read whole.
struct Body {
    text: String,
    whole: Result<(), BodyError>,
}

impl Body {
    /// The body, or why it could not be had whole.
    fn into_result(self) -> Result<String, BodyError> {
        self.whole.map(|()| self.text)
    }
}

/// Reads a body as text, at most [`MAX_REPLY`] bytes, keeping what was read when the rest cannot be (a
/// connection cut mid-page, a page too large): a request id near its top is still seen. UTF-8 when it is
/// UTF-8; otherwise Windows-1252, what a Windows gateway's servlet container sends by default (every protocol
/// token is ASCII either way, and no byte is ever replaced: 0x93 is a left quote, not a control character).
async fn read_body(mut resp: reqwest::Response) -> Body {
    let mut bytes: Vec<u8> = Vec::new();
    let whole = loop {
        match resp.chunk().await {
            Ok(None) => break Ok(()),
            Ok(Some(chunk)) => {
                let room = MAX_REPLY - bytes.len();
                if chunk.len() > room {
                    bytes.extend_from_slice(&chunk[..room]);
                    break Err(BodyError::TooLarge);
                }
                bytes.extend_from_slice(&chunk);
            }
            Err(e) => break Err(BodyError::Read(describe(&e))),
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => encoding_rs::WINDOWS_1252
            .decode_without_bom_handling(e.as_bytes())
            .0
            .into_owned(),
    };
    Body { text, whole }
}

/// The error and its causes on one line (reqwest's Display omits the cause, which is the useful part).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    // hyper's connector words a failed lookup "dns error", which reads like an outage; say what it is.
    if text.contains("dns error")
        && let Some(host) = e.url().and_then(|u| u.host_str())
    {
        return format!("cannot resolve gateway host {host} ({text})");
    }
    text
}

#[cfg(test)]
mod tests {
    //! Each failure class against a real socket that misbehaves in exactly that way.

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn request() -> CallRequest {
        CallRequest {
            info: "t".into(),
            phoneno: "+14155550100".into(),
            firstocc: 10,
            startapp: "App".into(),
            extra: Vec::new(),
        }
    }

    /// Serves one connection: reads the request until `marker` (a form field) has arrived, then does `answer`
    /// with the socket.
    async fn one_shot_for<F, Fut>(marker: &'static str, answer: F) -> Gateway
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url =
            Url::parse(&format!("http://{}", listener.local_addr().expect("addr"))).expect("url");
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            // Read until the form body has arrived, so the request was fully sent.
            while !String::from_utf8_lossy(&got).contains(marker) {
                let n = sock.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            answer(sock).await;
        });
        Gateway::new(url, Duration::from_millis(800), None, None).expect("client")
    }

    async fn one_shot<F, Fut>(answer: F) -> Gateway
    where
        F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        one_shot_for("startapp=", answer).await
    }

    fn http(status: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn refused_connection_is_not_sent() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let gw = Gateway::new(
            Url::parse(&format!("http://{addr}")).expect("url"),
            Duration::from_secs(2),
            None,
            None,
        )
        .expect("client");
        let e = gw.place_call(&request()).await.expect_err("refused");
        assert!(matches!(e, PlaceError::NotSent(_)), "{e:?}");
        assert!(e.gateway_down() && !e.gateway_answered());
        assert!(matches!(
            gw.status("1").await,
            Err(PollError::Unreachable(_))
        ));
    }

    #[tokio::test]
    async fn closed_after_the_request_is_lost_and_does_not_say_the_gateway_is_down() {
        let gw = one_shot(|sock| async move { drop(sock) }).await;
        let e = gw.place_call(&request()).await.expect_err("closed");
        assert!(matches!(e, PlaceError::Lost(_)), "{e:?}");
        assert!(!e.gateway_down());
    }

    #[tokio::test]
    async fn no_answer_in_time_is_lost() {
        let gw = one_shot(|sock| async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(sock);
        })
        .await;
        assert!(matches!(
            gw.place_call(&request()).await,
            Err(PlaceError::Lost(_))
        ));
    }

    async fn answer_call(status: &'static str, body: &'static str) -> Result<String, PlaceError> {
        let gw = one_shot(move |mut sock| async move {
            let _ = sock.write_all(&http(status, body)).await;
        })
        .await;
        gw.place_call(&request()).await
    }

    #[tokio::test]
    async fn only_answers_that_prove_nothing_was_scheduled_may_be_retried() {
        // 503: not serving. Retried after a pause, and the breaker opens.
        let e = answer_call("503 Service Unavailable", "busy")
            .await
            .expect_err("503");
        assert!(
            matches!(e, PlaceError::Unavailable(_)) && e.gateway_down(),
            "{e:?}"
        );
        // 4xx: the request was refused, so nothing was scheduled.
        for status in [
            "400 Bad Request",
            "429 Too Many Requests",
            "413 Payload Too Large",
        ] {
            let e = answer_call(status, "no").await.expect_err(status);
            assert!(matches!(e, PlaceError::Refused(_)), "{status}: {e:?}");
        }
        // A 500 may come after the record was created; a proxy's 502/504 too, and they say the gateway is down.
        let e = answer_call("500 Internal Server Error", "NPE")
            .await
            .expect_err("500");
        assert!(
            matches!(e, PlaceError::Unreadable { down: false, .. }),
            "{e:?}"
        );
        for status in ["502 Bad Gateway", "504 Gateway Timeout"] {
            let e = answer_call(status, "proxy").await.expect_err(status);
            assert!(
                matches!(e, PlaceError::Unreadable { down: true, .. }),
                "{status}: {e:?}"
            );
        }
        // A page without an id: a gateway that words its page differently must not get everyone called again.
        match answer_call("200 OK", "Your call is queued as number 17").await {
            Err(PlaceError::Unreadable {
                reason,
                down: false,
            }) => {
                assert!(reason.contains("queued as number 17"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        // A wrong URL is a configuration error, never a retry.
        for status in ["404 Not Found", "405 Method Not Allowed"] {
            let e = answer_call(status, "x").await.expect_err(status);
            assert!(matches!(e, PlaceError::Misconfigured(_)), "{status}: {e:?}");
        }
        // A redirect after a POST may follow a request that was taken.
        let e = answer_call("302 Found", "moved").await.expect_err("302");
        assert!(matches!(e, PlaceError::Redirected(_)), "{e:?}");
        // Any answer with an id proves the call was scheduled.
        for status in ["302 Found", "400 Bad Request", "500 Internal Server Error"] {
            assert_eq!(
                answer_call(status, "scheduled [ReqId=77]").await,
                Ok("77".to_string()),
                "{status}"
            );
        }
        let e = answer_call("401 Unauthorized", "x").await.expect_err("401");
        assert!(matches!(e, PlaceError::Unauthorized(_)));
    }

    #[tokio::test]
    async fn a_page_with_an_id_is_scheduled() {
        assert_eq!(
            answer_call("200 OK", "\r\n\r\nscheduled [ReqId=1208775078314]\r\n").await,
            Ok("1208775078314".to_string())
        );
    }

    #[tokio::test]
    async fn a_huge_reply_is_unreadable_without_being_held_in_memory() {
        let gw = one_shot(|mut sock| async move {
            // Chunked, so no Content-Length gives it away: the cap must hold while reading.
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .await;
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..(MAX_REPLY / chunk.len() + 4) {
                let head = format!("{:x}\r\n", chunk.len());
                if sock.write_all(head.as_bytes()).await.is_err()
                    || sock.write_all(&chunk).await.is_err()
                    || sock.write_all(b"\r\n").await.is_err()
                {
                    return;
                }
            }
        })
        .await;
        match gw.place_call(&request()).await {
            Err(PlaceError::Unreadable { reason, .. }) => {
                assert!(reason.contains("larger"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    /// Answers `status` with a page that promises `promised` more bytes than it sends, then closes.
    async fn cut_short(status: &'static str, body: &'static str) -> Result<String, PlaceError> {
        let gw = one_shot(move |mut sock| async move {
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n",
                body.len() + 500
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
        })
        .await;
        gw.place_call(&request()).await
    }

    #[tokio::test]
    async fn a_refusal_or_503_read_only_in_part_is_never_taken_as_nothing_scheduled() {
        // The id arrived before the cut: scheduled, whatever the status.
        for status in ["503 Service Unavailable", "400 Bad Request", "200 OK"] {
            assert_eq!(
                cut_short(status, "<html>scheduled [ReqId=77] and then").await,
                Ok("77".to_string()),
                "{status}"
            );
        }
        // The cut came first: the id may be in what never arrived, so it is not a refusal nor an outage.
        for status in [
            "503 Service Unavailable",
            "400 Bad Request",
            "429 Too Many Requests",
        ] {
            match cut_short(status, "<html><body>").await {
                Err(PlaceError::Lost(why)) => assert!(why.contains("read whole"), "{why}"),
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn an_oversized_503_with_its_id_on_top_is_scheduled() {
        let gw = one_shot(|mut sock| async move {
            let _ = sock
                .write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n",
                )
                .await;
            let top = b"[ReqId=4242] ";
            let _ = sock
                .write_all(format!("{:x}\r\n", top.len()).as_bytes())
                .await;
            let _ = sock.write_all(top).await;
            let _ = sock.write_all(b"\r\n").await;
            let chunk = vec![b'x'; 64 * 1024];
            for _ in 0..(MAX_REPLY / chunk.len() + 4) {
                let head = format!("{:x}\r\n", chunk.len());
                if sock.write_all(head.as_bytes()).await.is_err()
                    || sock.write_all(&chunk).await.is_err()
                    || sock.write_all(b"\r\n").await.is_err()
                {
                    return;
                }
            }
        })
        .await;
        assert_eq!(gw.place_call(&request()).await, Ok("4242".to_string()));
    }

    #[tokio::test]
    async fn status_http_errors_and_garbage_are_poll_errors() {
        let gw = one_shot_for("reqid=", |mut sock| async move {
            let _ = sock
                .write_all(&http("500 Internal Server Error", "NPE"))
                .await;
        })
        .await;
        assert!(matches!(gw.status("1").await, Err(PollError::Http(500, _))));
        let gw = one_shot_for("reqid=", |mut sock| async move {
            let _ = sock
                .write_all(&http("200 OK", "<html>starting up</html>"))
                .await;
        })
        .await;
        assert!(matches!(gw.status("1").await, Err(PollError::Malformed(_))));
        let gw = one_shot_for("reqid=", |mut sock| async move {
            let _ = sock.write_all(&http("404 Not Found", "no")).await;
        })
        .await;
        assert!(matches!(
            gw.status("1").await,
            Err(PollError::Misconfigured(404))
        ));
    }

    #[tokio::test]
    async fn bytes_that_are_not_utf8_are_read_as_windows_1252() {
        let gw = one_shot_for("reqid=", |mut sock| async move {
            let body = b"[0^null^made^2026 10 1 9 0^2026 10 1 9 0^\x93Call succeeded\x94^^^^^\r\n]";
            let mut reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            reply.extend_from_slice(body);
            let _ = sock.write_all(&reply).await;
        })
        .await;
        match gw.status("1").await {
            Ok(StatusReply::Attempts(a)) => {
                assert_eq!(a[0].notes, "\u{201c}Call succeeded\u{201d}")
            }
            other => panic!("{other:?}"),
        }
    }
}
