//! How requests travel to a plain-HTTP gateway: each on a connection of its own, which the gateway closes. A
//! kept-alive connection costs a 40 ms delayed acknowledgement per reply from a gateway that writes head and
//! body separately, and risks a call request on a socket the gateway is closing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::*;

/// A TCP relay in front of `target` that counts the connections it accepts and the requests that asked the
/// gateway to close their connection.
struct Relay {
    url: String,
    connections: Arc<AtomicUsize>,
    closing: Arc<AtomicUsize>,
}

async fn relay(target: String) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let connections = Arc::new(AtomicUsize::new(0));
    let closing = Arc::new(AtomicUsize::new(0));
    let (c, k) = (connections.clone(), closing.clone());
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let k = k.clone();
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(&target).await else {
                    return;
                };
                // The request head arrives first and whole (a few hundred bytes on loopback).
                let mut head = vec![0u8; 8192];
                let Ok(n) = inbound.read(&mut head).await else {
                    return;
                };
                let text = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
                if text.contains("\r\nconnection: close\r\n") {
                    k.fetch_add(1, Ordering::SeqCst);
                }
                if outbound.write_all(&head[..n]).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    Relay {
        url,
        connections,
        closing,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_to_a_plain_http_gateway_has_a_connection_of_its_own() {
    let sim = sim(4, ms(30), ms(30), ms(30), "").await;
    let relay = relay(sim.url().trim_start_matches("http://").to_string()).await;
    let c = Campaign::new(&sim, &contacts(12));
    let args = on_gateway(&c.base(), &relay.url);
    let out = run(&with(&args, &[])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(c.results().iter().all(|r| r["status"] == "made"));
    let requests = sim.requests().len();
    assert!(requests >= 24, "call requests and polls: {requests}");
    assert_eq!(
        relay.connections.load(Ordering::SeqCst),
        requests,
        "every request on a connection of its own"
    );
    assert_eq!(
        relay.closing.load(Ordering::SeqCst),
        requests,
        "every request asks the gateway to close its connection"
    );
}
