//! Token vending on the Momento backend, through the real SDK's `AuthClient`, against the
//! emulator's `Token` service: the disposable token carries the `token_id` and permissions
//! made from the caller's claims, and what is published with it reaches the routes with
//! that `token_id`.

use crate::support;

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use momento::TopicClient;
use momento_protos::permission_messages::permissions::Kind;
use momento_protos::permission_messages::permissions_type::{
    self as pt, cache_permissions, topic_permissions,
};
use momento_protos::permission_messages::{CacheRole, ExplicitPermissions, PermissionsType, TopicRole};
use serde_json::{Value, json};
use support::emulator::Emulator;
use support::on_emulator::{eventually, momento_section};
use support::spawn_app_with;

const JWT_SECRET: &str = "a-test-secret-long-enough-for-hs256!";

fn config(emulator: &Emulator) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[tokens]
jwt = {{ hs256_secret = "{JWT_SECRET}", issuer = "my-app" }}
token_id = "{{sub}}:{{name}}"
expires_in = "20m"
permissions = [
  {{ role = "publish_only", cache = "chat", topic = "room-{{sub}}" }},
  {{ role = "subscribe_only", cache = "chat", topic = "*" }},
  {{ role = "read_only", cache = "chat" }},
]

[subscriptions.rooms]
cache = "chat"
topics = ["room-42"]
reconnect_initial = "10ms"

[[routes]]
name = "who-said-it"
match = {{ subscription = "rooms", token_id = "required" }}
steps = [{{ template = {{ text = "{{token_id}} said {{text}}" }} }}, {{ publish = {{ topic = "out" }} }}]
{momento}"#,
        momento = momento_section(emulator)
    )
}

fn caller_jwt() -> String {
    let claims = json!({
        "sub": "42", "name": "ada", "iss": "my-app", "exp": jsonwebtoken::get_current_timestamp() + 600,
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn selector(name: &str) -> Option<pt::CacheSelector> {
    Some(pt::CacheSelector { kind: Some(pt::cache_selector::Kind::CacheName(name.to_owned())) })
}

#[tokio::test]
async fn the_sdk_vends_a_disposable_token_with_the_claims_token_id_and_permissions() {
    let emulator = Emulator::start().await;
    let app = spawn_app_with(&config(&emulator)).await;
    let response = app.client.post(app.url("/v1/tokens")).bearer_auth(caller_jwt()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let vended: Value = response.json().await.unwrap();
    assert_eq!(
        (vended["token_id"].as_str(), vended["endpoint"].as_str()),
        (Some("42:ada"), Some("emulator.invalid"))
    );

    let recorded = emulator.vended();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].token_id, "42:ada");
    assert_eq!(recorded[0].valid_for_seconds, 20 * 60);
    let topic = |role: TopicRole, topic| PermissionsType {
        kind: Some(pt::Kind::TopicPermissions(pt::TopicPermissions {
            role: role as i32,
            cache: Some(topic_permissions::Cache::CacheSelector(selector("chat").unwrap())),
            topic: Some(topic),
        })),
    };
    let expected = vec![
        topic(
            TopicRole::TopicWriteOnly,
            topic_permissions::Topic::TopicSelector(pt::TopicSelector {
                kind: Some(pt::topic_selector::Kind::TopicName("room-42".into())),
            }),
        ),
        topic(TopicRole::TopicReadOnly, topic_permissions::Topic::AllTopics(pt::All {})),
        PermissionsType {
            kind: Some(pt::Kind::CachePermissions(pt::CachePermissions {
                role: CacheRole::CacheReadOnly as i32,
                cache: Some(cache_permissions::Cache::CacheSelector(selector("chat").unwrap())),
                cache_item: None,
            })),
        },
    ];
    let Some(Kind::Explicit(ExplicitPermissions { permissions })) =
        recorded[0].permissions.clone().and_then(|permissions| permissions.kind)
    else {
        panic!("explicit permissions: {:?}", recorded[0].permissions)
    };
    assert_eq!(permissions, expected);
}

#[tokio::test]
async fn a_message_published_with_the_vended_token_reaches_the_routes_with_its_token_id() {
    let emulator = Emulator::start().await;
    let app = spawn_app_with(&config(&emulator)).await;
    let vended: Value = app
        .client
        .post(app.url("/v1/tokens"))
        .bearer_auth(caller_jwt())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || emulator.subscribe_calls() >= 1).await);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The publisher's side: the SDK reads the disposable token, as a user's app would.
    #[allow(deprecated)]
    let credentials = momento::CredentialProvider::from_string(vended["token"].as_str().unwrap())
        .expect("the SDK reads its own disposable token")
        .insecure_endpoint_override(&emulator.endpoint());
    let publisher = TopicClient::builder()
        .configuration(momento::topics::configurations::Laptop::latest())
        .credential_provider(credentials)
        .build()
        .unwrap();
    publisher.publish("chat", "room-42", "hello").await.expect("published with the disposable token");

    let out = || {
        emulator
            .published()
            .into_iter()
            .filter(|p| p.topic == "out")
            .filter_map(|p| p.text)
            .collect::<Vec<_>>()
    };
    assert!(eventually(Duration::from_secs(5), || !out().is_empty()).await, "the route ran");
    assert_eq!(out(), vec!["42:ada said hello".to_owned()]);
}

#[tokio::test]
async fn momentos_refusals_and_outages_get_their_documented_answers() {
    let emulator = Emulator::start().await;
    let app = spawn_app_with(&config(&emulator)).await;
    let code_for = |failure| {
        emulator.fail_vending(Some(failure));
        let request = app.client.post(app.url("/v1/tokens")).bearer_auth(caller_jwt()).send();
        async move {
            let response = request.await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap()["error"].as_str().unwrap().to_owned())
        }
    };
    assert_eq!(code_for(tonic::Code::PermissionDenied).await, (502, "token_vending_failed".to_owned()));
    assert_eq!(code_for(tonic::Code::Unavailable).await, (503, "token_service_unavailable".to_owned()));
    assert!(emulator.vended().is_empty());
}
