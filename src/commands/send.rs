//! `topic-relay send`: post a signed event the way Momento does, to test a deployment.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::locate::{ADDRESS, ConfiguredRelay};
use crate::cli::{ConfigArgs, SendArgs};
use crate::common::now_ms;
use crate::verify::{self, SIGNATURE_HEADER};

/// Momento's user agent, so the request looks like the real thing.
const MOMENTO_USER_AGENT: &str = "Momento/1.0 (Webhooks; +https://docs.momentohq.com/topics/webhooks)";

/// Builds, signs and posts `count` events, printing each answer. Fails unless all are 2xx.
pub async fn run(args: SendArgs, config: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let (url, secret) = webhook_and_secret(args.url, args.secret, config)?;
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
        let signature = verify::sign(secret.as_bytes(), body.as_bytes());
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        all_succeeded &= status.is_success();
        say!("{status} {}", response.text().await.unwrap_or_default())?;
    }
    Ok(if all_succeeded { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `--url` and `--secret` as given. Without `--url`, the configured relay's only webhook;
/// without `--secret`, the first secret of the configured webhook the URL names
/// (`.../webhooks/<name>`), or of the only one.
fn webhook_and_secret(
    url: Option<String>,
    secret: Option<String>,
    config: &ConfigArgs,
) -> anyhow::Result<(String, String)> {
    match (url, secret) {
        (Some(url), Some(secret)) => Ok((url, secret)),
        (None, secret) => {
            let relay = ConfiguredRelay::load(config, ADDRESS)?;
            let webhook = relay.webhook(None)?;
            Ok((relay.webhook_url(&webhook)?, secret.unwrap_or(webhook.secret)))
        }
        (Some(url), None) => {
            let name = webhook_named_in(&url);
            let webhook = ConfiguredRelay::load(config, "without --secret, the webhook's secret")?
                .webhook(name.as_deref())?;
            Ok((url, webhook.secret))
        }
    }
}

/// `<name>` of a URL ending in `/webhooks/<name>`.
fn webhook_named_in(url: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    let mut segments = url.path_segments()?.rev().skip_while(|segment| segment.is_empty());
    let name = segments.next()?;
    let named = segments.next() == Some("webhooks");
    // Webhook names are letters, digits, '-' and '_', so a name needs no decoding.
    named.then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_is_named_by_the_last_segment_after_webhooks() {
        assert_eq!(webhook_named_in("https://relay.example.com/webhooks/chat").as_deref(), Some("chat"));
        assert_eq!(webhook_named_in("http://127.0.0.1:8080/webhooks/chat/").as_deref(), Some("chat"));
    }

    #[test]
    fn the_default_webhook_path_names_none() {
        assert_eq!(webhook_named_in("http://127.0.0.1:8080/webhook"), None);
        assert_eq!(webhook_named_in("http://127.0.0.1:8080/"), None);
        assert_eq!(webhook_named_in("not a url"), None);
    }
}
