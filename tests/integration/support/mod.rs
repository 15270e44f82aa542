//! Shared by the integration tests: start the relay on port 0 and talk to it like Momento.
#![allow(dead_code)]

pub mod binary;
pub mod emulator;
pub mod on_emulator;
pub mod service;
pub mod steps;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use topic_relay::accept::now_ms;
use topic_relay::config::{ConfigSource, Settings, load_from_str};
use topic_relay::processors::ProcessorRegistry;
use topic_relay::startup::App;
use topic_relay::verify::{SIGNATURE_HEADER, sign};

/// The signing secret of the test configurations' `chat` webhook.
pub const SECRET: &str = "test-secret";

/// The `[admin] token` of the test configurations that enable the admin routes.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The seed configuration: `chat`/`topic 1` uppercased and republished on `topic 2`.
pub const SEED_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"

[webhooks.chat]
secrets = ["test-secret"]

[[routes]]
name = "shout"
match = { cache = "chat", topic = "topic 1" }
steps = ["uppercase", { publish = { topic = "topic 2" } }]
"#;

/// The sections the delivery tests share: a 2 s request timeout, the `chat` webhook, the
/// admin routes, and a `[delivery]` retrying after `retry_initial` up to `retry_max`, with
/// `delivery_extra` appended to it.
pub fn delivery_preamble(retry_initial: &str, retry_max: &str, delivery_extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
request_timeout = "2s"

[webhooks.chat]
secrets = ["{SECRET}"]

[delivery]
retry_initial = "{retry_initial}"
retry_max = "{retry_max}"
{delivery_extra}

[admin]
token = "{ADMIN_TOKEN}"
"#
    )
}

/// Parses a test configuration, with no environment.
pub fn settings(config: &str) -> Settings {
    load_from_str(config, ConfigSource::BuiltIn, &|_| None, Vec::new())
        .expect("test configuration is valid")
        .settings
}

/// A relay running in this process.
pub struct TestApp {
    /// The spool directory, removed when the test ends (unless the test chose its own).
    pub spool_dir: Option<tempfile::TempDir>,
    /// `http://127.0.0.1:<port>`
    pub address: String,
    /// Its port.
    pub port: u16,
    /// The port of `server.ops_listen`, when it is set.
    pub ops_port: Option<u16>,
    /// A client for talking to it.
    pub client: reqwest::Client,
    stop: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
}

/// Starts the seed configuration.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(SEED_CONFIG).await
}

/// Starts `config` with the test step kinds (`sleep`, `fail`) registered.
pub async fn spawn_app_with(config: &str) -> TestApp {
    spawn_settings(settings(config)).await
}

/// Starts already-loaded settings with the test step kinds registered.
pub async fn spawn_settings(mut settings: Settings) -> TestApp {
    let spool_dir = (settings.delivery.spool_dir == Settings::default().delivery.spool_dir).then(|| {
        let dir = tempfile::tempdir().expect("temporary spool directory");
        settings.delivery.spool_dir = dir.path().to_owned();
        dir
    });
    let app = App::build_with(settings, test_registry()).await.expect("relay starts");
    run(app, spool_dir)
}

/// Starts the configuration file at `path`, as `serve` does (so that it can be reloaded),
/// with the test step kinds registered. The file sets its own spool directory.
pub async fn spawn_file(path: &std::path::Path) -> TestApp {
    let loaded = topic_relay::config::load(Some(path)).expect("test configuration is valid");
    let app = App::build_loaded(loaded, test_registry()).await.expect("relay starts");
    run(app, None)
}

/// Runs `app` in the background, keeping `spool_dir` until the test ends.
fn run(app: App, spool_dir: Option<tempfile::TempDir>) -> TestApp {
    let (port, ops_port, stop) = (app.port(), app.ops_port(), app.stop_token());
    let server = tokio::spawn(app.run_until_stopped());
    TestApp {
        spool_dir,
        address: format!("http://127.0.0.1:{port}"),
        port,
        ops_port,
        client: reqwest::Client::new(),
        stop,
        server,
    }
}

/// The step kinds tests use besides the built-ins.
pub fn test_registry() -> ProcessorRegistry {
    let mut registry = ProcessorRegistry::new();
    steps::register(&mut registry);
    registry
}

/// A realistic event body, published now.
pub fn event(cache: &str, topic: &str, text: &str) -> String {
    event_at(cache, topic, text, "", now_ms())
}

/// Sequence numbers for test events, so that no two bodies are ever the same (the relay
/// refuses a repeated signed body as a replay).
static SEQUENCE: AtomicU64 = AtomicU64::new(1);

/// An event body with a token id and a publish time of your choosing.
pub fn event_at(cache: &str, topic: &str, text: &str, token_id: &str, publish_timestamp: u64) -> String {
    json!({
        "cache": cache,
        "topic": topic,
        "event_timestamp": publish_timestamp,
        "publish_timestamp": publish_timestamp,
        "topic_sequence_number": SEQUENCE.fetch_add(1, Ordering::Relaxed),
        "token_id": token_id,
        "text": text,
    })
    .to_string()
}

impl TestApp {
    /// `GET path` with [`ADMIN_TOKEN`]: asserts a 200 and returns the JSON body.
    pub async fn admin_get(&self, path: &str) -> serde_json::Value {
        let response = self.client.get(self.url(path)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    /// A URL on the relay.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// The signature Momento would send for `body`.
    pub fn sign(&self, body: &str) -> String {
        sign(SECRET.as_bytes(), body.as_bytes())
    }

    /// Posts a signed event to `/webhook`.
    pub async fn post_event(&self, cache: &str, topic: &str, text: &str) -> reqwest::Response {
        let body = event(cache, topic, text);
        let signature = self.sign(&body);
        self.post("/webhook", body, Some(&signature)).await
    }

    /// Posts `body` to `path` with the given signature header, if any.
    pub async fn post(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        signature: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).header("content-type", "application/json");
        if let Some(signature) = signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        request.body(body).send().await.expect("the relay answers")
    }

    /// Opens the embedded backend's subscribe stream for `cache`/`topic`.
    pub async fn subscribe(&self, cache: &str, topic: &str) -> Subscription {
        self.subscribe_with(cache, topic, None).await
    }

    /// Opens the embedded backend's subscribe stream for `cache`/`topic` with `token` from
    /// `/v1/tokens`, as `Authorization: Bearer`.
    pub async fn subscribe_with(&self, cache: &str, topic: &str, token: Option<&str>) -> Subscription {
        let url = self.url(&format!("/v1/subscribe/{cache}/{}", topic.replace(' ', "%20")));
        let mut request = self.client.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("subscribe answers");
        assert_eq!(response.status(), 200, "subscribe stream opens");
        let mut subscription =
            Subscription { stream: Box::pin(response.bytes_stream()), buffer: String::new() };
        subscription.next_block(Duration::from_secs(5)).await.expect("the greeting comment arrives");
        subscription
    }

    /// Waits until the relay reports `count` webhook requests in flight.
    pub async fn wait_for_in_flight(&self, count: usize) {
        let line = format!("topic_relay_in_flight {count}\n");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            let metrics = self.client.get(self.url("/metrics")).send().await.unwrap().text().await.unwrap();
            if metrics.contains(&line) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never saw {count} request(s) in flight");
    }

    /// Starts a shutdown, as SIGTERM would.
    pub fn begin_shutdown(&self) {
        self.stop.cancel();
    }

    /// Shuts down and waits for the relay to stop.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.server.await.expect("server task completes")
    }
}

type ByteStream = std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// An open SSE stream from `/v1/subscribe`.
pub struct Subscription {
    stream: ByteStream,
    buffer: String,
}

impl Subscription {
    /// The data of the next `message` event, or `None` if none comes within `wait`.
    pub async fn next_message(&mut self, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let block = self.next_block(deadline - tokio::time::Instant::now()).await?;
            if block.lines().any(|line| line == "event: message") {
                let data: Vec<&str> = block.lines().filter_map(|line| line.strip_prefix("data: ")).collect();
                return Some(data.join("\n"));
            }
        }
    }

    async fn next_block(&mut self, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block = self.buffer[..end].to_owned();
                self.buffer.drain(..end + 2);
                return Some(block);
            }
            let chunk = tokio::time::timeout_at(deadline, self.stream.next()).await.ok()??.ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
