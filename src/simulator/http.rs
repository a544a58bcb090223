//! The simulator's HTTP side: accepting connections (plain or TLS), outages and restarts from the fault
//! plan, reading parameters as a servlet does, and recording every request.

use super::*;

pub(super) fn serve_on(shared: &Arc<Shared>, listener: TcpListener) {
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

pub(super) fn go_away(shared: &Shared) {
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

pub(super) async fn come_back(shared: &Arc<Shared>) -> std::io::Result<()> {
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

pub(super) fn forget_all(shared: &Shared) {
    let mut st = shared.state();
    for (_, call) in st.calls.drain() {
        if let Some(t) = call.task {
            t.abort();
        }
    }
}

pub(super) async fn restart(shared: &Arc<Shared>) -> std::io::Result<()> {
    go_away(shared);
    forget_all(shared);
    come_back(shared).await
}

/// Plays the scenario's timed faults.
pub(super) async fn fault_controller(shared: Arc<Shared>) {
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

pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
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

pub(super) async fn serve_connection<S>(shared: Arc<Shared>, stream: S)
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
pub(super) fn tls_acceptor(
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

pub(super) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

pub(super) fn gateway_now() -> (GatewayTime, jiff::ZonedDateTime) {
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

pub(super) fn params_of(query: Option<&str>, body: &[u8]) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let query_pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes());
    for (k, v) in query_pairs.chain(form_urlencoded::parse(body)) {
        params
            .entry(k.into_owned())
            .or_insert_with(|| v.into_owned());
    }
    params
}

pub(super) fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/html;charset=UTF-8"),
    );
    r
}

/// JSP pages start with the blank lines their directives leave behind.
pub(super) fn jsp(body: &str) -> String {
    format!("\r\n\r\n{body}\r\n")
}

pub(super) async fn handle(
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
pub(super) struct InFlight<'a>(&'a Shared);

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

pub(super) fn log_request(shared: &Shared, mut rec: Recorded) {
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
