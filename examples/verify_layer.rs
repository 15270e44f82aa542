//! A Momento webhook receiver of your own, in a few lines of axum, with topic-relay's
//! verification layer in front: forged, malformed and oversized requests never reach the
//! handler, and the handler gets the exact bytes that were signed.
//!
//!     TOPIC_RELAY_WEBHOOK_SECRET=... cargo run --example verify_layer
//!     cargo run -- send --url http://127.0.0.1:3000/webhook --secret "$TOPIC_RELAY_WEBHOOK_SECRET" \
//!         --cache chat --topic "topic 1" --text hello
//!
//! Stale and replayed events are still yours to refuse: topic-relay's own ingest does that
//! after this layer, with `accept::check_freshness` and its replay check.

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use topic_relay::accept;
use topic_relay::verify::{Verified, Verifier, VerifyLayer};

/// Answers 200 with what was published, once the body is known to come from Momento.
async fn receive(verified: Verified) -> Result<String, (StatusCode, String)> {
    let event =
        accept::parse(&verified.body).map_err(|error| (StatusCode::BAD_REQUEST, error.to_string()))?;
    Ok(format!("{} bytes on {}/{}, from {:?}\n", event.text.len(), event.cache, event.topic, event.token_id))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // During a rotation, list both secrets: either one verifies.
    let secrets: Vec<String> = ["TOPIC_RELAY_WEBHOOK_SECRET", "TOPIC_RELAY_WEBHOOK_SECRET_PREVIOUS"]
        .iter()
        .filter_map(|name| std::env::var(name).ok().filter(|secret| !secret.is_empty()))
        .collect();
    if secrets.is_empty() {
        eprintln!("set TOPIC_RELAY_WEBHOOK_SECRET to the webhook's signing secret");
        std::process::exit(2);
    }
    let verify = VerifyLayer::new(Verifier::new(&secrets)).max_body_bytes(16 * 1024);
    let app = Router::new().route("/webhook", post(receive)).layer(verify);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    eprintln!("listening on http://127.0.0.1:3000/webhook");
    axum::serve(listener, app).await
}
