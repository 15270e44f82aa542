//! Listening to topics on the embedded backend: items published on a subscribed topic go
//! through the routes like webhook events, with their publisher's token_id.

use crate::support;

use std::process::Command;
use std::time::Duration;

use support::{settings, spawn_app_with};
use topic_relay::config::{ConfigSource, load_from_str};
use topic_relay::processors::ProcessorRegistry;
use topic_relay::route::RouteTable;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"

[webhooks.chat]
secrets = ["test-secret"]

[subscriptions.inbox]
cache = "chat"
topics = ["topic 1", "room-1"]

[[routes]]
name = "from-the-webhook"
match = { webhook = "chat", topic = "topic 1" }
steps = [{ template = { text = "webhook: {text}" } }, { publish = { topic = "out" } }]

[[routes]]
name = "from-the-subscription"
match = { subscription = "inbox", topic = "topic 1" }
steps = [{ template = { text = "{token_id} said {text}" } }, "uppercase", { publish = { topic = "out" } }]

# Names no source, so it takes room-1 from the webhook and the subscription alike, as meant.
[[routes]]
name = "either"
match = { cache = "chat", topic = "room-1" }
steps = [{ publish = { topic = "out" } }]
allow_overlap = true
"#;

async fn publish(app: &support::TestApp, topic: &str, text: &str, token_id: &str) -> reqwest::Response {
    let url = app.url(&format!("/v1/publish/chat/{}?token_id={token_id}", topic.replace(' ', "%20")));
    app.client.post(url).body(text.to_owned()).send().await.expect("the relay answers")
}

#[tokio::test]
async fn an_item_on_a_subscribed_topic_takes_the_subscriptions_route_with_its_token_id() {
    let app = spawn_app_with(CONFIG).await;
    let mut out = app.subscribe("chat", "out").await;
    let answer = publish(&app, "topic 1", "hello", "user-42").await;
    assert_eq!(answer.status(), 200);
    let wait = Duration::from_secs(5);
    assert_eq!(out.next_message(wait).await.as_deref(), Some("USER-42 SAID HELLO"));

    assert_eq!(app.post_event("chat", "topic 1", "signed").await.status(), 200);
    assert_eq!(out.next_message(wait).await.as_deref(), Some("webhook: signed"), "the webhook's own route");

    assert_eq!(publish(&app, "room-1", "both", "").await.status(), 200);
    assert_eq!(out.next_message(wait).await.as_deref(), Some("both"), "a route naming no source takes both");
    assert_eq!(publish(&app, "not-subscribed", "nobody listens", "").await.status(), 200);
    assert_eq!(out.next_message(Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn the_publish_endpoint_refuses_what_momento_would() {
    let app = spawn_app_with(CONFIG).await;
    let too_long =
        app.client.post(app.url("/v1/publish/chat/t")).body("x".repeat(4097)).send().await.unwrap();
    assert_eq!(too_long.status(), 413);
    let binary = app.client.post(app.url("/v1/publish/chat/t")).body(vec![0xff, 0xfe]).send().await.unwrap();
    assert_eq!(binary.status(), 400);
    let answer: serde_json::Value = binary.json().await.unwrap();
    assert_eq!(answer["error"], "not_text");
}

#[tokio::test]
async fn topic_relay_publish_reaches_a_subscription_as_in_the_quickstart() {
    let config = std::fs::read_to_string("config/examples/listen.toml").unwrap();
    let spool = tempfile::tempdir().unwrap();
    let config = config
        .replace("listen = \"0.0.0.0:8080\"", "listen = \"127.0.0.1:0\"")
        .replace("spool_dir = \"spool\"", &format!("spool_dir = {:?}", spool.path()));
    let app = support::spawn_settings(settings(&config)).await;
    let mut out = app.subscribe("chat", "topic 2").await;
    let url = app.address.clone();
    // Off the runtime's thread: the relay under test is served on it.
    let output = tokio::task::spawn_blocking(move || {
        let args =
            ["publish", "--url", &url, "--cache", "chat", "--topic", "topic 1", "--text", "hello, momento"];
        Command::new(env!("CARGO_BIN_EXE_topic-relay")).args(args).output().expect("the command runs")
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("200 OK"));
    assert_eq!(out.next_message(Duration::from_secs(5)).await.as_deref(), Some("HELLO, MOMENTO"));
}

fn load(config: &str) -> Result<(), String> {
    let loaded =
        load_from_str(config, ConfigSource::BuiltIn, &|_| None, Vec::new()).map_err(|e| e.to_string())?;
    RouteTable::build(&loaded.settings, &ProcessorRegistry::new())
        .map(drop)
        .map_err(|(key, message)| format!("`{key}`: {message}"))
}

#[test]
fn a_route_that_republishes_into_a_subscribed_topic_is_a_loop() {
    // A route that takes only the subscription's items: only the subscription brings its own
    // publishes back, and only while it listens to the topic published to.
    let route = |topic: &str| {
        CONFIG.replace(
            "match = { cache = \"chat\", topic = \"room-1\" }\nsteps = [{ publish = { topic = \"out\" } }]",
            &format!("match = {{ subscription = \"inbox\", cache = \"chat\", topic = \"room-1\" }}\nsteps = [{{ publish = {{ topic = \"{topic}\" }} }}]"),
        )
    };
    let error = load(&route("room-1")).unwrap_err();
    assert!(error.contains("`either` publishes to chat/room-1") && error.contains("endless loop"), "{error}");
    assert!(load(&route("room-2")).is_ok(), "room-2 is not subscribed to");
    assert!(load(CONFIG).is_ok());
}

#[test]
fn a_route_may_name_a_webhook_or_a_subscription_but_not_both() {
    let both = CONFIG.replace(
        "match = { cache = \"chat\", topic = \"room-1\" }",
        "match = { webhook = \"chat\", subscription = \"inbox\" }",
    );
    let error = load(&both).unwrap_err();
    assert!(error.contains("routes[2].match") && error.contains("not both"), "{error}");
}
