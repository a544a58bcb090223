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
    let url = Url::parse(&format!("http://{}", listener.local_addr().expect("addr"))).expect("url");
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
            .write_all(b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n")
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
