//! The HTTP side of the gateway protocol.
//!
//! Call requests are never retried here, and never behind a generic retry layer: whether a failed request may
//! be sent again depends on whether the gateway could have scheduled it, which only the caller can weigh.
//! So every failure of a call request is classified (see [`PlaceError`]) and handed back.

use std::time::Duration;

use reqwest::{Client, StatusCode, Url};

use super::protocol::{self, CallRequest, RemoveReply, StatusReply};

/// Why a call request did not yield a request id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    /// The request never reached the gateway (refused, DNS, connect timeout): safe to send again.
    #[error("gateway not reached: {0}")]
    NotSent(String),
    /// The gateway answered with a server error (5xx: overloaded, restarting): not scheduled, safe to send
    /// again, and a sign to back off.
    #[error("gateway unavailable: {0}")]
    Unavailable(String),
    /// The gateway (or the proxy in front of it) refused our credentials (HTTP 401/403): nothing will work
    /// until an operator fixes them, so the run stops.
    #[error("the gateway refused the credentials: {0}")]
    Unauthorized(String),
    /// The gateway answered without scheduling (HTTP 4xx, or a page without `[ReqId=…]`): safe to send again.
    #[error("gateway did not schedule the call: {0}")]
    Rejected(String),
    /// The request was sent and the answer was lost (reset, read timeout): the call may be scheduled.
    #[error("no answer to the call request (the call may have been scheduled): {0}")]
    Ambiguous(String),
}

/// Why a status or remove request gave no usable answer. Always safe to ask again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    #[error("gateway not reached: {0}")]
    Transport(String),
    #[error("gateway answered HTTP {0}")]
    Http(u16, String),
    #[error("not a status reply: {0}")]
    Malformed(String),
    #[error("the gateway refused the credentials: HTTP {0}")]
    Unauthorized(u16),
}

/// Connect timeout: a LAN gateway that has not answered a SYN in this long is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle keep-alive connections are dropped before Tomcat's shipped 20 s keep-alive timeout closes them under
/// us; reusing a socket the server is closing turns a call request into an ambiguous one.
const POOL_IDLE: Duration = Duration::from_secs(15);

/// Installs the process-wide TLS provider (ring) that HTTP clients need; later calls do nothing.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A gateway at a base URL.
#[derive(Clone, Debug)]
pub struct Gateway {
    http: Client,
    base: Url,
    auth: Option<(String, crate::config::Secret)>,
}

impl Gateway {
    /// `timeout` bounds each request from connect to last body byte; `auth` is sent as basic auth.
    pub fn new(
        base: Url,
        timeout: Duration,
        auth: Option<(String, crate::config::Secret)>,
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
        Ok(Gateway { http, base, auth })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.auth {
            Some((user, password)) => req.basic_auth(user, Some(&password.0)),
            None => req,
        }
    }

    fn url(&self, path: &str) -> Url {
        // Keep a path prefix the operator gave (a gateway behind a reverse proxy at /voicent/).
        let mut url = self.base.clone();
        let prefix = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{prefix}{path}"));
        url
    }

    /// Sends a call request; returns the request id.
    pub async fn place_call(&self, req: &CallRequest) -> Result<String, PlaceError> {
        let sent = self
            .authed(self.http.post(self.url(protocol::CALL_PATH)))
            .form(&req.form())
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() || e.is_builder() => {
                return Err(PlaceError::NotSent(describe(&e)));
            }
            Err(e) => return Err(PlaceError::Ambiguous(describe(&e))),
        };
        let status = resp.status();
        let body = match read_body(resp).await {
            Ok(b) => b,
            Err(e) if status.is_success() => return Err(PlaceError::Ambiguous(e)),
            Err(e) => {
                return Err(PlaceError::Rejected(format!(
                    "HTTP {}: {e}",
                    status.as_u16()
                )));
            }
        };
        if matches!(status.as_u16(), 401 | 403 | 407) {
            return Err(PlaceError::Unauthorized(format!(
                "HTTP {}",
                status.as_u16()
            )));
        }
        if status.is_server_error() {
            return Err(PlaceError::Unavailable(format!(
                "HTTP {}: {}",
                status.as_u16(),
                protocol::excerpt(&body)
            )));
        }
        if !status.is_success() {
            return Err(PlaceError::Rejected(format!(
                "HTTP {}: {}",
                status.as_u16(),
                protocol::excerpt(&body)
            )));
        }
        protocol::parse_call_reply(&body).ok_or_else(|| {
            PlaceError::Rejected(format!(
                "no [ReqId=…] in the reply: {}",
                protocol::excerpt(&body)
            ))
        })
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
        let resp = self
            .authed(self.http.post(self.url(path)))
            .form(&[("reqid", req_id)])
            .send()
            .await
            .map_err(|e| PollError::Transport(describe(&e)))?;
        let status = resp.status();
        let body = read_body(resp).await.map_err(PollError::Transport)?;
        if matches!(status.as_u16(), 401 | 403 | 407) {
            return Err(PollError::Unauthorized(status.as_u16()));
        }
        if status != StatusCode::OK {
            return Err(PollError::Http(status.as_u16(), protocol::excerpt(&body)));
        }
        Ok(body)
    }
}

/// Reads a body as text. Servlet containers default to ISO-8859-1; every protocol token is ASCII, so a body
/// that is not declared UTF-8 is decoded byte for byte as Latin-1 and nothing is ever replaced.
async fn read_body(resp: reqwest::Response) -> Result<String, String> {
    let utf8 = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("charset=utf-8"));
    let bytes = resp.bytes().await.map_err(|e| describe(&e))?;
    Ok(if utf8 {
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        bytes.iter().map(|&b| char::from(b)).collect()
    })
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
        assert!(matches!(
            gw.place_call(&request()).await,
            Err(PlaceError::NotSent(_))
        ));
        assert!(matches!(gw.status("1").await, Err(PollError::Transport(_))));
    }

    #[tokio::test]
    async fn closed_after_the_request_is_ambiguous() {
        let gw = one_shot(|sock| async move { drop(sock) }).await;
        assert!(matches!(
            gw.place_call(&request()).await,
            Err(PlaceError::Ambiguous(_))
        ));
    }

    #[tokio::test]
    async fn no_answer_in_time_is_ambiguous() {
        let gw = one_shot(|sock| async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(sock);
        })
        .await;
        assert!(matches!(
            gw.place_call(&request()).await,
            Err(PlaceError::Ambiguous(_))
        ));
    }

    #[tokio::test]
    async fn server_error_is_unavailable() {
        let gw = one_shot(|mut sock| async move {
            let _ = sock
                .write_all(&http("503 Service Unavailable", "busy"))
                .await;
        })
        .await;
        assert!(matches!(
            gw.place_call(&request()).await,
            Err(PlaceError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn client_error_and_pages_without_an_id_are_rejected() {
        let gw = one_shot(|mut sock| async move {
            let _ = sock.write_all(&http("404 Not Found", "nope")).await;
        })
        .await;
        assert!(matches!(
            gw.place_call(&request()).await,
            Err(PlaceError::Rejected(_))
        ));
        let gw = one_shot(|mut sock| async move {
            let _ = sock
                .write_all(&http("200 OK", "ERROR: missing parameter phoneno"))
                .await;
        })
        .await;
        match gw.place_call(&request()).await {
            Err(PlaceError::Rejected(text)) => {
                assert!(text.contains("missing parameter phoneno"), "{text}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_page_with_an_id_is_scheduled() {
        let gw = one_shot(|mut sock| async move {
            let _ = sock
                .write_all(&http(
                    "200 OK",
                    "\r\n\r\nscheduled [ReqId=1208775078314]\r\n",
                ))
                .await;
        })
        .await;
        assert_eq!(
            gw.place_call(&request()).await,
            Ok("1208775078314".to_string())
        );
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
    }
}
