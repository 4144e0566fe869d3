//! What every listener does for itself: 413 in the service's envelope for oversized bodies
//! (HTTP/1.1 and HTTP/2, declared or chunked), an end to stalled headers and bodies, a 500
//! with the request id instead of a dropped connection when a handler panics, and a `Date`
//! header that reads the simulated clock.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use serde_json::Value;
use sim_core::SimClock;
use sim_core::server::{RunningServer, ServeConfig, serve};

const LIMIT: usize = 1024;

async fn start(clock: SimClock) -> RunningServer {
    sim_core::server::set_read_timeout(Duration::from_secs(1));
    let router = Router::new()
        .route(
            "/echo",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/tenant/oauth2/v2.0/token",
            post(|body: Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/panic",
            get(|| async {
                let text = "aé€x";
                // A deliberate out-of-bounds slice inside a multi-byte character.
                let cut: usize = std::hint::black_box(2);
                text[..cut].to_string()
            }),
        );
    let config = ServeConfig::new("test", IpAddr::V4(Ipv4Addr::LOCALHOST), 0, None, clock)
        .max_body(Some(LIMIT));
    serve(router, config).await.unwrap()
}

fn client(http2: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder();
    let builder = if http2 {
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    };
    builder.build().unwrap()
}

#[tokio::test]
async fn oversized_bodies_get_413_in_the_envelope_over_http1_and_http2() {
    let server = start(SimClock::in_memory()).await;
    let base = format!("http://127.0.0.1:{}", server.addr.port());
    for http2 in [false, true] {
        let http = client(http2);
        let small = http
            .post(format!("{base}/echo"))
            .body(vec![b'x'; 10])
            .send()
            .await
            .unwrap();
        assert_eq!(small.status(), 200);
        for size in [LIMIT + 1, 3 * 1024 * 1024] {
            let response = http
                .post(format!("{base}/echo"))
                .body(vec![b'x'; size])
                .send()
                .await
                .unwrap_or_else(|e| panic!("http2={http2} size={size}: {e:?}"));
            assert_eq!(response.status(), 413, "http2={http2} size={size}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "RequestEntityTooLarge", "{body}");
        }
        let response = http
            .post(format!("{base}/tenant/oauth2/v2.0/token"))
            .body(vec![b'x'; 3 * 1024 * 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body["error"], "invalid_request",
            "the OAuth envelope: {body}"
        );
    }
    server.shutdown().await;
}

/// Sends `request` on a raw connection and returns what comes back before the server
/// closes it (or after `wait`).
fn raw(port: u16, request: &[u8], wait: Duration) -> (String, Duration) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    stream.write_all(request).unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(_) => break,
        }
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_over_the_limit_and_stalled_requests_end() {
    let server = start(SimClock::in_memory()).await;
    let port = server.addr.port();
    let chunk = "x".repeat(600);
    let chunked = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let (answer, _) =
        tokio::task::spawn_blocking(move || raw(port, chunked.as_bytes(), Duration::from_secs(10)))
            .await
            .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // A body that stops after 2 of 100 bytes, and headers that never finish.
    let (answer, took) = tokio::task::spawn_blocking(move || {
        raw(
            port,
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nab",
            Duration::from_secs(20),
        )
    })
    .await
    .unwrap();
    assert!(
        took < Duration::from_secs(10),
        "ended after {took:?}: {answer}"
    );
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
        "{answer}"
    );
    let (answer, took) = tokio::task::spawn_blocking(move || {
        raw(
            port,
            b"GET /echo HTTP/1.1\r\nHost:",
            Duration::from_secs(20),
        )
    })
    .await
    .unwrap();
    assert!(
        took < Duration::from_secs(10),
        "ended after {took:?}: {answer}"
    );
    let (_, took) = tokio::task::spawn_blocking(move || raw(port, b"", Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(
        took < Duration::from_secs(10),
        "an idle connection is closed"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_with_the_request_id() {
    let server = start(SimClock::in_memory()).await;
    let base = format!("http://127.0.0.1:{}", server.addr.port());
    let http = client(false);
    let response = http.get(format!("{base}/panic")).send().await.unwrap();
    assert_eq!(response.status(), 500);
    assert!(response.headers().contains_key("x-ms-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InternalServerError", "{body}");
    let after = http
        .post(format!("{base}/echo"))
        .body("still serving")
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn the_date_header_reads_the_simulated_clock() {
    let clock = SimClock::in_memory();
    clock.advance(2 * 3600).unwrap();
    let server = start(clock).await;
    let response = client(false)
        .post(format!("http://127.0.0.1:{}/echo", server.addr.port()))
        .body("x")
        .send()
        .await
        .unwrap();
    let date = response.headers()["date"].to_str().unwrap().to_string();
    let at = chrono::DateTime::parse_from_rfc2822(&date).unwrap();
    let ahead = at.timestamp() - chrono::Utc::now().timestamp();
    assert!((7190..=7210).contains(&ahead), "{date} is {ahead} s ahead");
    server.shutdown().await;
}
