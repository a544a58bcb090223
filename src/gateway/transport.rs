//! How requests reach a gateway: over HTTP (reqwest, with the reading of bodies and the classing of socket
//! errors the protocol needs), or in-process through an [`Exchange`] (the simulation tier). Either way a
//! request comes back as a [`Wire`], which [`super::client`] reads.

use std::time::Duration;

use reqwest::{Client, Url};

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
pub(super) enum Transport {
    Http {
        http: Client,
        auth: Option<(String, crate::types::Secret)>,
        /// A connection per request, closed by the gateway (see [`Transport::http`]).
        fresh: bool,
    },
    Exchange(std::sync::Arc<dyn Exchange>),
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
pub(super) struct Body {
    pub(super) text: String,
    pub(super) whole: Result<(), BodyError>,
}

impl Body {
    /// The body, or why it could not be had whole.
    pub(super) fn into_result(self) -> Result<String, BodyError> {
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

impl Transport {
    /// An HTTP client for one gateway: `timeout` bounds each request from connect to last body byte.
    ///
    /// `fresh`: each request on a connection of its own, which the gateway closes (`Connection: close`), for a
    /// plain-HTTP gateway on the LAN, where a connection costs a round trip of well under a millisecond. Two
    /// reasons. A server that writes a reply's head and body separately (with Nagle's algorithm on) holds the
    /// body until the head is acknowledged, and on a reused connection this kernel delays that acknowledgement
    /// by 40 ms: every answer, a final one included, arrives 40 ms late and the freed line waits (measured in
    /// BENCHMARKS.md section 9: turnover p50 44 ms reused, 4 ms fresh). And a call request never goes out on a
    /// kept-alive socket the gateway is closing, which would make its answer lost and its contact `unknown`.
    /// The gateway closes first, so the closed connections wait out TIME_WAIT on its side, not in this host's
    /// ports. Over https (a proxy in front) connections are kept: a TLS handshake per request costs more, and
    /// TLS records carry a reply whole.
    pub(super) fn http(
        timeout: Duration,
        auth: Option<(String, crate::types::Secret)>,
        ca_pem: Option<&[u8]>,
        fresh: bool,
    ) -> Result<Transport, String> {
        install_tls_provider();
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
            .pool_max_idle_per_host(if fresh { 0 } else { 64 })
            .http1_only()
            // A redirected POST becomes a GET elsewhere; a gateway handler never redirects, so treat it as an
            // answer that did not schedule anything.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ivr-campaign/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Transport::Http { http, auth, fresh })
    }

    /// Sends one request to `path` (at `url` over HTTP) and returns what came back on the wire.
    pub(super) async fn send(&self, url: Url, path: &str, form: Vec<(String, String)>) -> Wire {
        let (http, auth, fresh) = match self {
            Transport::Exchange(x) => return x.exchange(path, form).await,
            Transport::Http { http, auth, fresh } => (http, auth, *fresh),
        };
        let mut req = http.post(url).form(&form);
        if fresh {
            req = req.header(reqwest::header::CONNECTION, "close");
        }
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
}
