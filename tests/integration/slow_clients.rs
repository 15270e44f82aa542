//! Clients that hold connections open: slow headers and slow bodies on every route, idle
//! connections, and more connections than the relay takes. Each gets its documented answer.

use crate::support;

use std::time::Duration;

use support::{SEED_CONFIG, TestApp, spawn_app_with};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The seed relay with short limits, so that the tests wait little.
async fn relay(server: &str) -> TestApp {
    let config = SEED_CONFIG.replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:0\"\nrequest_timeout = \"500ms\"\nshutdown_grace = \"1s\"\n{server}"),
    );
    spawn_app_with(&config).await
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(("127.0.0.1", app.port)).await.expect("the relay accepts")
}

/// Sends `bytes` one at a time, `every` apart, until they are all sent or the relay closes
/// the connection; returns how many went.
async fn trickle(stream: &mut (impl AsyncWrite + Unpin), bytes: &[u8], every: Duration) -> usize {
    for (sent, byte) in bytes.iter().enumerate() {
        if stream.write_all(&[*byte]).await.is_err() {
            return sent;
        }
        tokio::time::sleep(every).await;
    }
    bytes.len()
}

/// What the relay sent before it closed the connection, waiting at most `wait`.
async fn answer_before_close(stream: &mut (impl AsyncRead + Unpin), wait: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(wait, async {
        let mut buffer = [0u8; 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(count) => answer.extend_from_slice(&buffer[..count]),
            }
        }
    })
    .await;
    read.ok().map(|()| String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn headers_sent_a_byte_at_a_time_are_cut_off_at_the_read_timeout() {
    let app = relay("read_timeout = \"1s\"").await;
    let mut stream = connect(&app).await;
    let request = format!("GET /healthz HTTP/1.1\r\nhost: relay\r\nx-slow: {}\r\n\r\n", "a".repeat(60));

    // 80-odd bytes at 50 ms each would take over 4 s to arrive.
    let sent = trickle(&mut stream, request.as_bytes(), Duration::from_millis(50)).await;
    let answer = answer_before_close(&mut stream, Duration::from_secs(5)).await;

    assert!(sent < request.len(), "the relay stopped reading before the headers ended ({sent} bytes)");
    assert_eq!(answer.as_deref(), Some(""), "closed without an answer");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains(r#"topic_relay_http_connections_closed_total{reason="slow_request"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_body_sent_a_byte_at_a_time_is_answered_503_timeout_at_the_request_timeout() {
    let app = relay("read_timeout = \"5s\"").await;
    let (mut reading, mut writing) = connect(&app).await.into_split();
    let head = "POST /v1/publish/chat/room HTTP/1.1\r\nhost: relay\r\ncontent-length: 100\r\n\r\n";
    writing.write_all(head.as_bytes()).await.unwrap();

    // 100 bytes at 50 ms each would take 5 s to arrive.
    let trickling = trickle(&mut writing, &[b'x'; 100], Duration::from_millis(50));
    let (_, answer) = tokio::join!(trickling, answer_before_close(&mut reading, Duration::from_secs(4)));

    let answer = answer.expect("answered before the body ended");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains(r#""error":"timeout""#), "{answer}");
}

#[tokio::test]
async fn a_connection_with_no_request_is_closed_after_the_idle_timeout() {
    let app = relay("idle_timeout = \"1s\"").await;
    let mut stream = connect(&app).await;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: relay\r\n\r\n").await.unwrap();
    let mut buffer = [0u8; 512];
    let read = stream.read(&mut buffer).await.unwrap();
    assert!(String::from_utf8_lossy(&buffer[..read]).starts_with("HTTP/1.1 200"));

    let closed = answer_before_close(&mut stream, Duration::from_secs(5)).await;

    assert_eq!(closed.as_deref(), Some(""), "kept alive, then closed while idle");
}

#[tokio::test]
async fn connections_past_max_connections_are_answered_503_and_closed() {
    let app = relay("max_connections = 2").await;
    let _first = connect(&app).await;
    let _second = connect(&app).await;
    // The acceptor counts a connection once it has handed it to a thread.
    let mut third = None;
    for _ in 0..50 {
        let mut stream = connect(&app).await;
        if let Some(answer) = answer_before_close(&mut stream, Duration::from_millis(200)).await {
            third = Some(answer);
            break;
        }
    }

    let answer = third.expect("a connection past the limit is closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains(r#""error":"overloaded""#), "{answer}");
}
