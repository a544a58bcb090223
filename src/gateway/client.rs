//! The HTTP side of the gateway protocol.
//!
//! Call requests are never retried here, and never behind a generic retry layer: whether a failed request may
//! be sent again depends on whether the gateway could have scheduled it, which only the caller can weigh.
//! So every failure of a call request is classified (see [`PlaceError`]) and handed back.

use std::time::Duration;

use reqwest::Url;

use super::protocol::{self, CallRequest, RemoveReply, StatusReply};
use super::transport::{Body, BodyError, Transport};
pub use super::transport::{Exchange, MAX_REPLY, Wire, install_tls_provider};

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

/// Requests in flight at once to one gateway, for call requests and for status and remove requests each.
/// Each holds a connection and its buffers: 2,000 lines without a poll budget held 2,000 sockets (88 MiB at
/// 200k contacts), and a servlet container serves about 200 requests at once anyway (Tomcat's default
/// `maxThreads`). A call request takes its slot before its send instant is paced and its window checked
/// again, so a wait here neither bunches requests past the rate nor sends one after its window.
const IN_FLIGHT: usize = 128;

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
        let mut base = base;
        // A user in the URL travels as basic auth, not in every logged URL.
        let _ = base.set_username("");
        Ok(Gateway::with_transport(
            Transport::http(timeout, auth, ca_pem, base.scheme() == "http")?,
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
        self.transport.send(self.url(path), path, form).await
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

#[cfg(test)]
mod tests;
