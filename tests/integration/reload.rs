//! Reloading the configuration while the relay runs: SIGHUP to the real binary, and
//! `POST /v1/admin/reload` to a relay in this process. A reload applies a valid file whole,
//! refuses an invalid one whole, and loses or repeats nothing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use topic_relay::verify::{SIGNATURE_HEADER, sign};

use crate::support::binary::{self, Relay};
use crate::support::emulator::Emulator;
use crate::support::on_emulator::{eventually, listener, republished};
use crate::support::{ADMIN_TOKEN, TestApp, event, spawn_file};

const OLD_SECRET: &str = "the-secret-before-rotation";
const NEW_SECRET: &str = "the-secret-after-rotation";

/// A webhook `chat` with `secrets`, and `route` taking `chat`/`topic 1`.
fn webhook_config(dir: &Path, secrets: &[&str], route: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[delivery]
spool_dir = "{spool}"

[webhooks.chat]
secrets = {secrets:?}

[admin]
token = "{ADMIN_TOKEN}"

[[routes]]
name = "{route}"
match = {{ cache = "chat", topic = "topic 1" }}
steps = ["uppercase", {{ publish = {{ topic = "topic 2" }} }}]
"#,
        spool = dir.join("spool").display(),
    )
}

fn hang_up(relay: &Relay) {
    let sent = Command::new("kill").args(["-HUP", &relay.pid().to_string()]).status().unwrap();
    assert!(sent.success());
}

async fn get_json(client: &reqwest::Client, url: String) -> Value {
    let request = client.get(url).bearer_auth(ADMIN_TOKEN);
    request.send().await.unwrap().json().await.unwrap()
}

/// `/v1/status`'s `config` once `done` holds of it, or as it is after 10 s.
async fn config_once(client: &reqwest::Client, relay: &Relay, done: impl Fn(&Value) -> bool) -> Value {
    let mut config = Value::Null;
    for _ in 0..500 {
        config = get_json(client, relay.url("/v1/status")).await["config"].clone();
        if done(&config) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    config
}

async fn post_signed(client: &reqwest::Client, relay: &Relay, secret: &str, text: &str) -> u16 {
    let body = event("chat", "topic 1", text);
    let signature = sign(secret.as_bytes(), body.as_bytes());
    let request = client.post(relay.url("/webhooks/chat")).header(SIGNATURE_HEADER, signature).body(body);
    request.send().await.unwrap().status().as_u16()
}

fn sha256_of(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap()).iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_rotates_a_webhook_secret_with_both_accepted_and_then_only_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, webhook_config(dir.path(), &[OLD_SECRET], "shout")).unwrap();
    let relay = Relay::start(&path);
    let client = reqwest::Client::new();
    let started = config_once(&client, &relay, |_| true).await;
    assert_eq!(started["sha256"], sha256_of(&path));
    assert_eq!(started["reloads"], 0);
    assert_eq!(post_signed(&client, &relay, OLD_SECRET, "one").await, 200);
    assert_eq!(post_signed(&client, &relay, NEW_SECRET, "two").await, 401);

    // The rotation begins: the new secret first, the old one still accepted.
    std::fs::write(&path, webhook_config(dir.path(), &[NEW_SECRET, OLD_SECRET], "shout v2")).unwrap();
    hang_up(&relay);
    let config = config_once(&client, &relay, |config| config["reloads"] == 1).await;
    assert_eq!(config["reloads"], 1, "{config}");
    assert_eq!(config["sha256"], sha256_of(&path));
    assert_eq!(post_signed(&client, &relay, OLD_SECRET, "three").await, 200);
    assert_eq!(post_signed(&client, &relay, NEW_SECRET, "four").await, 200);

    // The rotation ends: only the new secret.
    std::fs::write(&path, webhook_config(dir.path(), &[NEW_SECRET], "shout v2")).unwrap();
    hang_up(&relay);
    let config = config_once(&client, &relay, |config| config["reloads"] == 2).await;
    assert_eq!(config["reloads"], 2, "{config}");
    assert_eq!(post_signed(&client, &relay, OLD_SECRET, "five").await, 401);
    assert_eq!(post_signed(&client, &relay, NEW_SECRET, "six").await, 200);

    // `topic-relay reload` asks through the admin API and says what it did.
    let command = binary::command(&path)
        .args(["reload", "--url", &relay.url("")])
        .env("TOPIC_RELAY_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&command.stdout);
    assert!(command.status.success(), "{said} {}", String::from_utf8_lossy(&command.stderr));
    assert!(said.contains(&format!("sha256 {}); reload 3 since start", sha256_of(&path))), "{said}");

    // The renamed route took the events after the first reload; the old one kept its count.
    let metrics = client.get(relay.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for line in [
        "topic_relay_config_reloads_total{result=\"applied\"} 3",
        "topic_relay_config_reloads_total{result=\"refused\"} 0",
        "topic_relay_route_events_total{route=\"shout\"} 1",
        "topic_relay_route_events_total{route=\"shout v2\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    assert!(relay.terminate(), "the relay stops cleanly after reloads");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_file_or_a_change_that_needs_a_restart_is_refused_and_the_old_config_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    let good = webhook_config(dir.path(), &[OLD_SECRET], "shout");
    std::fs::write(&path, &good).unwrap();
    let relay = Relay::start(&path);
    let client = reqwest::Client::new();
    let started = config_once(&client, &relay, |_| true).await;

    // Not TOML at all.
    std::fs::write(&path, good.replace("[webhooks.chat]", "[webhooks.chat")).unwrap();
    hang_up(&relay);
    let config = config_once(&client, &relay, |config| !config["last_refused"].is_null()).await;
    let error = config["last_refused"]["error"].as_str().expect("the refusal is shown").to_owned();
    assert!(error.contains("not valid TOML"), "{error}");
    assert_eq!((&config["reloads"], &config["sha256"]), (&started["reloads"], &started["sha256"]));
    // The same words `check-config` prints for that file.
    let checked = binary::command(&path).arg("check-config").output().unwrap();
    let said = String::from_utf8_lossy(&checked.stderr);
    assert!(!checked.status.success());
    assert!(said.contains(&error), "check-config said {said:?}, the reload {error:?}");
    assert_eq!(post_signed(&client, &relay, OLD_SECRET, "still served").await, 200);

    // Valid, but it moves the listener and the spool, which only a restart can do: refused
    // by the admin route, naming both keys.
    let moved = good.replace("127.0.0.1:0", "127.0.0.1:1").replace("spool\"", "elsewhere\"");
    std::fs::write(&path, moved).unwrap();
    let answer = client.post(relay.url("/v1/admin/reload")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(answer.status(), 422);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"], "config_refused");
    let message = body["detail"].as_str().unwrap();
    assert!(message.contains("delivery.spool_dir, server.listen cannot change"), "{message}");
    assert_eq!(post_signed(&client, &relay, OLD_SECRET, "served again").await, 200);

    let metrics = client.get(relay.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("topic_relay_config_reloads_total{result=\"refused\"} 2"), "{metrics}");
    assert!(metrics.contains("topic_relay_config_reloads_total{result=\"applied\"} 0"), "{metrics}");

    // Put right, the file is taken, and the refusal is cleared.
    std::fs::write(&path, webhook_config(dir.path(), &[NEW_SECRET], "shout")).unwrap();
    let answer = client.post(relay.url("/v1/admin/reload")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["config"]["reloads"], 1);
    assert!(body["config"]["last_refused"].is_null());
    assert_eq!(post_signed(&client, &relay, NEW_SECRET, "after the fix").await, 200);
    assert!(relay.terminate());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_under_way_finishes_under_the_config_it_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    let slow = webhook_config(dir.path(), &[OLD_SECRET], "slow")
        .replace("steps = [\"uppercase\",", "steps = [{ sleep = { ms = 700 } }, \"uppercase\",");
    std::fs::write(&path, &slow).unwrap();
    let app = spawn_file(&path).await;
    let body = event("chat", "topic 1", "under way");
    let signature = sign(OLD_SECRET.as_bytes(), body.as_bytes());
    let request = app.client.post(app.url("/webhooks/chat")).header(SIGNATURE_HEADER, signature).body(body);
    let under_way = tokio::spawn(request.send());
    app.wait_for_in_flight(1).await;

    // The new file drops the route and rotates the secret away while the event runs.
    let without_route = webhook_config(dir.path(), &[NEW_SECRET], "slow").replace("topic 1", "elsewhere");
    std::fs::write(&path, without_route).unwrap();
    let reloaded = reload(&app).await;
    assert_eq!(reloaded.status(), 200);

    let answer = under_way.await.unwrap().unwrap();
    assert_eq!(answer.status(), 200);
    let outcome: Value = answer.json().await.unwrap();
    assert_eq!((&outcome["outcome"], &outcome["route"]), (&Value::from("processed"), &Value::from("slow")));
    app.stop().await.unwrap();
}

/// `POST /v1/admin/reload`.
async fn reload(app: &TestApp) -> reqwest::Response {
    app.client.post(app.url("/v1/admin/reload")).bearer_auth(ADMIN_TOKEN).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_adds_and_removes_topics_while_items_flow_losing_and_repeating_none() {
    let emulator = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    let config = |topics: &str| {
        let config = listener(&emulator, &dir.path().join("spool"), "")
            .replace("topics = [\"topic 1\"]", &format!("topics = {topics}"));
        format!("[admin]\ntoken = \"{ADMIN_TOKEN}\"\n{config}")
    };
    std::fs::write(&path, config(r#"["topic 1", "topic 3"]"#)).unwrap();
    let app = spawn_file(&path).await;
    let subscribed =
        |topic: &'static str| eventually(Duration::from_secs(20), || emulator.subscribers("chat", topic) > 0);
    assert!(subscribed("topic 1").await && subscribed("topic 3").await, "both topics are listened to");
    let subscribes_before = emulator.subscribe_calls();

    // Items keep coming on topic 1 throughout, the reload included; topic 3's come up to
    // the moment it is asked for, and may still be queued or running when it stops.
    std::fs::write(&path, config(r#"["topic 1", "topic 4"]"#)).unwrap();
    let mut reloading = None;
    for n in 0..300 {
        emulator.publish_as("chat", "topic 1", &format!("one {n}"), "user-1");
        if n < 100 {
            emulator.publish_as("chat", "topic 3", &format!("three {n}"), "user-3");
        }
        if n == 100 {
            let request = app.client.post(app.url("/v1/admin/reload")).bearer_auth(ADMIN_TOKEN);
            reloading = Some(tokio::spawn(request.send()));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let answer = reloading.unwrap().await.unwrap().unwrap();
    assert_eq!(answer.status(), 200);
    let changes: Value = answer.json().await.unwrap();
    assert_eq!(changes["topics_started"], serde_json::json!(["inbox/topic 4"]));
    assert_eq!(changes["topics_stopped"], serde_json::json!(["inbox/topic 3"]));

    assert!(subscribed("topic 4").await, "the added topic is listened to");
    let released = eventually(Duration::from_secs(5), || emulator.subscribers("chat", "topic 3") == 0).await;
    assert!(released, "the removed topic's stream is closed");
    for n in 0..50 {
        emulator.publish_as("chat", "topic 4", &format!("four {n}"), "user-4");
    }

    let expected: Vec<String> = (0..300)
        .map(|n| format!("USER-1: ONE {n}"))
        .chain((0..100).map(|n| format!("USER-3: THREE {n}")))
        .chain((0..50).map(|n| format!("USER-4: FOUR {n}")))
        .collect();
    let all_arrived = eventually(Duration::from_secs(20), || {
        let counts = republished(&emulator);
        expected.iter().all(|text| counts.contains_key(text))
    })
    .await;
    let counts = republished(&emulator);
    let missing: Vec<&String> = expected.iter().filter(|text| !counts.contains_key(*text)).collect();
    assert!(all_arrived, "never processed: {missing:?}");
    let twice: Vec<(&String, &usize)> = counts.iter().filter(|(_, times)| **times > 1).collect();
    assert!(twice.is_empty(), "processed more than once: {twice:?}");
    assert_eq!(counts.len(), expected.len(), "nothing else was published");
    // Topic 1 kept its stream: the only new subscription is topic 4's.
    assert_eq!(emulator.subscribe_calls(), subscribes_before + 1, "topic 1 was not subscribed again");
    app.stop().await.unwrap();
    emulator.stop().await;
}

/// Token vending on the embedded backend, with publishers' tokens scoped to `room` and JWTs
/// checked against `jwt_secret`.
fn vending_config(dir: &Path, jwt_secret: &str, room: &str) -> String {
    let webhook = webhook_config(dir, &[OLD_SECRET], "shout");
    format!(
        r#"{webhook}
[tokens]
jwt = {{ hs256_secret = "{jwt_secret}", issuer = "my-app", audience = "chat" }}
token_id = "{{sub}}"
permissions = [{{ role = "publish_only", cache = "chat", topic = "{room}" }}]
"#
    )
}

fn jwt(secret: &str) -> String {
    let claims = serde_json::json!({
        "sub": "user-1", "iss": "my-app", "aud": "chat", "exp": jsonwebtoken::get_current_timestamp() + 600
    });
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

/// A publisher token vended for `jwt`, or the refusal's status.
async fn vend(app: &TestApp, jwt: &str) -> Result<String, u16> {
    let answer = app.client.post(app.url("/v1/tokens")).bearer_auth(jwt).send().await.unwrap();
    if answer.status() != 200 {
        return Err(answer.status().as_u16());
    }
    let body: Value = answer.json().await.unwrap();
    Ok(body["token"].as_str().unwrap().to_owned())
}

async fn publish_status(app: &TestApp, token: &str, topic: &str) -> u16 {
    let request =
        app.client.post(app.url(&format!("/v1/publish/chat/{topic}"))).bearer_auth(token).body("hi");
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_changes_what_tokens_are_vended_for_and_which_jwts_are_taken() {
    const FIRST: &str = "the-first-hs256-secret-of-the-app!";
    const SECOND: &str = "the-second-hs256-secret-of-the-app";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.toml");
    std::fs::write(&path, vending_config(dir.path(), FIRST, "room-1")).unwrap();
    let app = spawn_file(&path).await;
    let before = vend(&app, &jwt(FIRST)).await.expect("vended");
    assert_eq!(publish_status(&app, &before, "room-1").await, 200);
    assert_eq!(publish_status(&app, &before, "room-2").await, 403);

    std::fs::write(&path, vending_config(dir.path(), SECOND, "room-2")).unwrap();
    assert_eq!(reload(&app).await.status(), 200);
    assert_eq!(vend(&app, &jwt(FIRST)).await, Err(401), "a JWT signed with the old secret");
    let after = vend(&app, &jwt(SECOND)).await.expect("vended");
    assert_eq!(publish_status(&app, &after, "room-2").await, 200);
    assert_eq!(publish_status(&app, &after, "room-1").await, 403);
    // A token vended before keeps the scope it was vended with, as Momento's would.
    assert_eq!(publish_status(&app, &before, "room-1").await, 200);
    app.stop().await.unwrap();
}
