//! `config/examples/moderated-chat.toml` end to end, as shipped: the relay listens on the
//! emulator, a fake LibreTranslate translates, and each language's room gets each message.

use crate::support;

use std::time::Duration;

use serde_json::Value;
use support::emulator::Emulator;
use support::on_emulator::{eventually, momento_section};
use support::service::{FakeService, Reply};
use support::{TestApp, spawn_settings};
use topic_relay::config::{ConfigSource, load_from_str};

const LANGUAGES: [&str; 8] = ["en", "es", "fr", "de", "it", "pt", "ja", "zh"];

/// A LibreTranslate stand-in: "translates" by prefixing the target language.
async fn translator() -> FakeService {
    FakeService::answering(|request| {
        let asked: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let translated =
            format!("{}:{}", asked["target"].as_str().unwrap_or("?"), asked["q"].as_str().unwrap_or("?"));
        Reply::new(200, &serde_json::json!({ "translatedText": translated }).to_string())
    })
    .await
}

async fn start(emulator: &Emulator, translator: &FakeService) -> TestApp {
    let example = std::fs::read_to_string("config/examples/moderated-chat.toml").unwrap();
    let config = format!("{}\n{}", example.replace("0.0.0.0:8080", "127.0.0.1:0"), momento_section(emulator));
    let url = translator.url.clone();
    let lookup = move |name: &str| match name {
        "TRANSLATE_URL" => Some(url.clone()),
        "TRANSLATE_DESTINATION" => Some("127.0.0.1".to_owned()),
        _ => None,
    };
    let loaded =
        load_from_str(&config, ConfigSource::BuiltIn, &lookup, Vec::new()).expect("the example loads");
    let app = spawn_settings(loaded.settings).await;
    let subscribed =
        eventually(Duration::from_secs(20), || emulator.subscribers("moderator", "chat-publish") > 0).await;
    assert!(subscribed, "the relay listens to chat-publish");
    app
}

/// What was published on `chat-<lang>`, parsed.
fn room(emulator: &Emulator, language: &str) -> Vec<Value> {
    let topic = format!("chat-{language}");
    emulator
        .published()
        .into_iter()
        .filter(|published| published.cache == "moderator" && published.topic == topic)
        .map(|published| serde_json::from_str(&published.text.unwrap_or_default()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_is_moderated_translated_and_broadcast_to_every_language_once() {
    let emulator = Emulator::start().await;
    let translator = translator().await;
    let app = start(&emulator, &translator).await;

    let chat = |text: &str| serde_json::json!({ "message": text, "sourceLanguage": "en" }).to_string();
    emulator.publish_as("moderator", "chat-publish", &chat("what the Heck"), "42:ada");
    emulator.publish_as("moderator", "chat-publish", &chat("/me waves"), "42:ada");
    emulator.publish_as("moderator", "chat-publish", &chat("/bogus command"), "42:ada");
    emulator.publish_as("moderator", "chat-publish", &chat("who am I?"), "");
    emulator.publish_as("moderator", "chat-publish", "not json", "7:bob");

    let arrived =
        eventually(Duration::from_secs(10), || LANGUAGES.iter().all(|l| room(&emulator, l).len() == 2)).await;
    assert!(arrived, "{:?}", emulator.published());
    tokio::time::sleep(Duration::from_millis(300)).await;
    for language in LANGUAGES {
        let messages = room(&emulator, language);
        let texts: Vec<&str> = messages.iter().map(|m| m["message"].as_str().unwrap()).collect();
        assert_eq!(texts, vec![format!("{language}:what the ****"), format!("{language}:* ada waves")]);
        assert_eq!(messages[0]["username"], "ada");
        let history = emulator.list("moderator", &format!("history-{language}"));
        assert_eq!(history.len(), 2, "history-{language}");
        let ttl = emulator.ttl_ms("moderator", &format!("history-{language}")).unwrap();
        assert!(ttl <= 4 * 3600 * 1000 && ttl > 3 * 3600 * 1000, "{ttl}");
    }
    assert_eq!(translator.received().len(), 16, "one translation per language per broadcast message");
    // Before the emulator goes: a subscription whose server vanishes while the runtime shuts
    // down can leave the SDK retrying in a loop that never yields.
    app.stop().await.unwrap();
}
