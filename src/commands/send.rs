//! `topic-relay send`: post a signed event the way Momento does, to test a deployment.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use crate::accept::now_ms;
use crate::cli::SendArgs;
use crate::verify::{self, SIGNATURE_HEADER};

/// Momento's user agent, so the request looks like the real thing.
const MOMENTO_USER_AGENT: &str = "Momento/1.0 (Webhooks; +https://docs.momentohq.com/topics/webhooks)";

/// Builds, signs and posts `count` events, printing each answer. Fails unless all are 2xx.
pub async fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder()
        .user_agent(MOMENTO_USER_AGENT)
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let mut all_succeeded = true;
    for sequence in 1..=args.count {
        let now = now_ms();
        let body = json!({
            "cache": args.message.cache,
            "topic": args.message.topic,
            "event_timestamp": now,
            "publish_timestamp": now,
            "topic_sequence_number": sequence,
            "token_id": args.message.token_id,
            "text": args.message.text,
        })
        .to_string();
        let signature = verify::sign(args.secret.as_bytes(), body.as_bytes());
        let response = client
            .post(&args.url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", args.url))?;
        let status = response.status();
        all_succeeded &= status.is_success();
        println!("{status} {}", response.text().await.unwrap_or_default());
    }
    Ok(if all_succeeded { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
