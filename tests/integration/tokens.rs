//! Token vending on the embedded backend: who may get a token (JWT checks, each with its
//! documented answer), the rate limit, CORS, and the identity pattern end to end with no
//! account.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{TestApp, spawn_app_with};

const JWT_SECRET: &str = "a-test-secret-long-enough-for-hs256!";
const ADMIN: &str = "test-admin-token";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture key")
}

/// A relay on the embedded backend that vends tokens to callers with `jwt`, listens to
/// `room-1` and `room-2`, and republishes each message with its publisher's user record on
/// `enriched-<room>`.
fn config(jwt: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[tokens]
jwt = {jwt}
token_id = "{{sub}}"
permissions = [
  {{ role = "publish_only", cache = "chat", topic = "room-1" }},
  {{ role = "subscribe_only", cache = "chat", topic = "enriched-room-1" }},
]
{extra}

[subscriptions.rooms]
cache = "chat"
topics = ["room-1", "room-2"]

[[routes]]
name = "who-said-it"
match = {{ subscription = "rooms", token_id = "required" }}
steps = [
  {{ lookup = {{ key = "user:{{token_id}}", into = "user", on_miss = "drop" }} }},
  {{ publish = {{ topic = "enriched-{{topic}}", format = "json" }} }},
]

[admin]
token = "{ADMIN}"
"#
    )
}

fn hs256_config(extra: &str) -> String {
    config(&format!(r#"{{ hs256_secret = "{JWT_SECRET}", issuer = "my-app", audience = "chat" }}"#), extra)
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "iss": "my-app", "aud": "chat", "exp": now() + 600 })
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn rs256(key_file: &str, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(&fixture(key_file)).unwrap()).unwrap()
}

/// The public half of an RSA fixture, as a JWKS entry named `kid`.
fn jwk(key_file: &str, kid: &str) -> Jwk {
    let key = EncodingKey::from_rsa_pem(&fixture(key_file)).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    jwk
}

/// Serves a JWKS the test can rotate; returns its URL.
async fn serve_jwks(keys: Arc<Mutex<JwkSet>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/.well-known/jwks.json", get(move || async move { Json(keys.lock().unwrap().clone()) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn vend(app: &TestApp, jwt: Option<&str>) -> reqwest::Response {
    let mut request = app.client.post(app.url("/v1/tokens"));
    if let Some(jwt) = jwt {
        request = request.bearer_auth(jwt);
    }
    request.send().await.expect("the relay answers")
}

/// The status and error code of an answer.
async fn answer(response: reqwest::Response) -> (StatusCode, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"].as_str().unwrap_or_default().to_owned())
}

async fn publish(app: &TestApp, topic: &str, token: Option<&str>, text: &str) -> reqwest::Response {
    let mut request = app.client.post(app.url(&format!("/v1/publish/chat/{topic}"))).body(text.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("the relay answers")
}

#[tokio::test]
async fn the_identity_pattern_runs_end_to_end_with_no_account() {
    let app = spawn_app_with(&hs256_config("")).await;
    let stored = app
        .client
        .put(app.url("/v1/cache/chat/user:user-42"))
        .bearer_auth(ADMIN)
        .body(r#"{"name":"Ada","role":"teacher"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(stored.status(), StatusCode::NO_CONTENT);

    let vended: Value = vend(&app, Some(&hs256(&claims("user-42")))).await.json().await.unwrap();
    let mut enriched = app.subscribe_with("chat", "enriched-room-1", vended["token"].as_str()).await;
    assert_eq!(vended["token_id"], "user-42");
    assert_eq!(vended["endpoint"], "embedded");
    let expires_in = vended["expires_at"].as_u64().unwrap() - now();
    assert!((1795..=1800).contains(&expires_in), "the default life is 30 minutes: {expires_in}s");
    let token = vended["token"].as_str().unwrap();

    let published = publish(&app, "room-1", Some(token), "hello class").await;
    assert_eq!(published.status(), StatusCode::OK);
    let message: Value =
        serde_json::from_str(&enriched.next_message(Duration::from_secs(5)).await.expect("enriched"))
            .unwrap();
    assert_eq!(message["text"], "hello class");
    assert_eq!(message["token_id"], "user-42");
    assert_eq!(message["user"], json!({"name": "Ada", "role": "teacher"}));

    assert_eq!(
        answer(publish(&app, "room-1", None, "anonymous").await).await,
        (StatusCode::UNAUTHORIZED, "missing_token".into())
    );
    assert_eq!(
        answer(publish(&app, "room-2", Some(token), "elsewhere").await).await,
        (StatusCode::FORBIDDEN, "forbidden".into())
    );
    assert_eq!(
        answer(publish(&app, "room-1", Some("not-a-token"), "x").await).await,
        (StatusCode::UNAUTHORIZED, "invalid_token".into())
    );
    let forged = app
        .client
        .post(app.url("/v1/publish/chat/room-1?token_id=user-42"))
        .bearer_auth(token)
        .body("forged")
        .send()
        .await
        .unwrap();
    assert_eq!(answer(forged).await, (StatusCode::BAD_REQUEST, "invalid_query".into()));
    assert_eq!(
        enriched.next_message(Duration::from_millis(300)).await,
        None,
        "nothing refused was published"
    );
}

#[tokio::test]
async fn bad_callers_get_their_documented_answers_and_no_token() {
    let app = spawn_app_with(&hs256_config("")).await;
    let mut expired = claims("user-42");
    expired["exp"] = json!(now() - 120);
    let mut other_issuer = claims("user-42");
    other_issuer["iss"] = json!("someone-else");
    let mut other_audience = claims("user-42");
    other_audience["aud"] = json!("billing");
    let mut no_issuer = claims("user-42");
    no_issuer.as_object_mut().unwrap().remove("iss");
    let wrong_secret = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("user-42"),
        &EncodingKey::from_secret(b"another-secret-just-as-long-as-the-first"),
    )
    .unwrap();
    let unsigned =
        format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&claims("user-42").to_string()));
    let cases = [
        ("no token", None, StatusCode::UNAUTHORIZED, "missing_token"),
        ("garbage", Some("garbage".to_owned()), StatusCode::UNAUTHORIZED, "invalid_token"),
        ("wrong secret", Some(wrong_secret), StatusCode::UNAUTHORIZED, "invalid_token"),
        ("alg none", Some(unsigned), StatusCode::UNAUTHORIZED, "invalid_token"),
        ("expired", Some(hs256(&expired)), StatusCode::UNAUTHORIZED, "invalid_token"),
        ("wrong issuer", Some(hs256(&other_issuer)), StatusCode::FORBIDDEN, "forbidden"),
        ("no issuer", Some(hs256(&no_issuer)), StatusCode::FORBIDDEN, "forbidden"),
        ("wrong audience", Some(hs256(&other_audience)), StatusCode::FORBIDDEN, "forbidden"),
        ("token_id too long", Some(hs256(&claims(&"x".repeat(65)))), StatusCode::FORBIDDEN, "forbidden"),
        ("empty token_id", Some(hs256(&claims(""))), StatusCode::FORBIDDEN, "forbidden"),
        ("token_id with spaces", Some(hs256(&claims(" user-42"))), StatusCode::FORBIDDEN, "forbidden"),
        (
            "token_id with a line break",
            Some(hs256(&claims("user-42\nuser-1"))),
            StatusCode::FORBIDDEN,
            "invalid_claim",
        ),
    ];
    for (case, jwt, status, code) in cases {
        let response = vend(&app, jwt.as_deref()).await;
        let seen_status = response.status();
        let body = response.text().await.unwrap();
        let parsed: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((seen_status, parsed["error"].as_str().unwrap()), (status, code), "{case}: {body}");
        if let Some(jwt) = &jwt {
            assert!(!body.contains(jwt.as_str()), "{case}: the token is not echoed");
        }
    }
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("topic_relay_tokens_vended_total 0"), "{metrics}");
    assert!(metrics.contains(r#"topic_relay_tokens_refused_total{reason="wrong_issuer"} 2"#), "{metrics}");
    assert!(
        metrics.contains(r#"topic_relay_tokens_refused_total{reason="token_id_too_long"} 1"#),
        "{metrics}"
    );
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn rs256_callers_are_checked_against_a_jwks_that_rotates() {
    let keys = Arc::new(Mutex::new(JwkSet { keys: vec![jwk("rsa-a.pem", "a")] }));
    let url = serve_jwks(keys.clone()).await;
    let app = spawn_app_with(&config(
        &format!(r#"{{ jwks_url = "{url}", issuer = "my-app", audience = "chat" }}"#),
        "",
    ))
    .await;

    let vended = vend(&app, Some(&rs256("rsa-a.pem", "a", &claims("user-7")))).await;
    assert_eq!(vended.status(), StatusCode::OK);
    assert_eq!(vended.json::<Value>().await.unwrap()["token_id"], "user-7");

    // Signed by a key the JWKS does not (yet) hold: refused even after fetching it again.
    let rotated = rs256("rsa-b.pem", "b", &claims("user-7"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        answer(vend(&app, Some(&rotated)).await).await,
        (StatusCode::UNAUTHORIZED, "invalid_token".into())
    );

    // The identity provider rotates; the relay fetches the JWKS again for the unknown kid.
    keys.lock().unwrap().keys.push(jwk("rsa-b.pem", "b"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(vend(&app, Some(&rotated)).await.status(), StatusCode::OK);

    // HS256 signed with the published RSA key as the secret: the classic algorithm confusion.
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("user-7"),
        &EncodingKey::from_secret(&fixture("rsa-a.pub.pem")),
    )
    .unwrap();
    assert_eq!(
        answer(vend(&app, Some(&confused)).await).await,
        (StatusCode::UNAUTHORIZED, "invalid_token".into())
    );
}

#[tokio::test]
async fn es256_callers_are_checked_against_a_public_key_file() {
    let path = format!("{FIXTURES}/ec.pub.pem");
    let app = spawn_app_with(&config(&format!(r#"{{ public_key_file = "{path}" }}"#), "")).await;
    let jwt = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &json!({ "sub": "user-9", "exp": now() + 60 }),
        &EncodingKey::from_ec_pem(&fixture("ec.pem")).unwrap(),
    )
    .unwrap();
    assert_eq!(vend(&app, Some(&jwt)).await.status(), StatusCode::OK);
    let hs = hs256(&json!({ "sub": "user-9", "exp": now() + 60 }));
    assert_eq!(answer(vend(&app, Some(&hs)).await).await, (StatusCode::UNAUTHORIZED, "invalid_token".into()));
}

#[tokio::test]
async fn an_identity_past_its_rate_gets_429_with_retry_after() {
    let app = spawn_app_with(&hs256_config(r#"rate_limit = "2/min""#)).await;
    let jwt = hs256(&claims("user-42"));
    assert_eq!(vend(&app, Some(&jwt)).await.status(), StatusCode::OK);
    assert_eq!(vend(&app, Some(&jwt)).await.status(), StatusCode::OK);
    let limited = vend(&app, Some(&jwt)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    assert_eq!(
        vend(&app, Some(&hs256(&claims("user-43")))).await.status(),
        StatusCode::OK,
        "others are not held back"
    );
}

#[tokio::test]
async fn browsers_from_configured_origins_may_call_the_token_endpoint() {
    let app = spawn_app_with(&hs256_config(r#"cors_origins = ["https://chat.example.com"]"#)).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/v1/tokens"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = preflight("https://chat.example.com").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://chat.example.com");
    let other = preflight("https://evil.example.com").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_caller_may_ask_for_a_shorter_token_but_not_a_longer_one() {
    let app = spawn_app_with(&hs256_config(r#"expires_in = "10m""#)).await;
    let jwt = hs256(&claims("user-42"));
    let ask = |expires_in: &'static str| {
        app.client
            .post(app.url("/v1/tokens"))
            .bearer_auth(&jwt)
            .json(&json!({ "expires_in": expires_in }))
            .send()
    };
    let short: Value = ask("1m").await.unwrap().json().await.unwrap();
    let long: Value = ask("5h").await.unwrap().json().await.unwrap();
    let life = |answer: &Value| answer["expires_at"].as_u64().unwrap() - now();
    assert!((55..=60).contains(&life(&short)), "{short}");
    assert!((595..=600).contains(&life(&long)), "{long}");
    let bad =
        app.client.post(app.url("/v1/tokens")).bearer_auth(&jwt).body("{\"ttl\": 5}").send().await.unwrap();
    assert_eq!(answer(bad).await, (StatusCode::BAD_REQUEST, "invalid_request".into()));
}

#[tokio::test]
async fn the_cache_admin_api_needs_the_admin_token() {
    let app = spawn_app_with(&hs256_config("")).await;
    let put = app.client.put(app.url("/v1/cache/chat/user:x")).body("{}").send().await.unwrap();
    assert_eq!(put.status(), StatusCode::UNAUTHORIZED);
    let missing = app.client.get(app.url("/v1/cache/chat/user:x")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND, "the refused write changed nothing");
}

#[tokio::test]
async fn a_claim_of_star_cannot_widen_a_token_to_every_topic() {
    let relay = hs256_config("").replacen(r#"topic = "room-1" }"#, r#"topic = "{room}" }"#, 1);
    assert!(relay.contains(r#"topic = "{room}""#), "the permission's topic comes from a claim");
    let app = spawn_app_with(&relay).await;
    let with_room = |room: &str| {
        let mut claims = claims("user-42");
        claims["room"] = json!(room);
        hs256(&claims)
    };

    for room in ["*", "", "room-*", "room\n1"] {
        let refused = vend(&app, Some(&with_room(room))).await;
        assert_eq!(answer(refused).await, (StatusCode::FORBIDDEN, "invalid_claim".into()), "{room:?}");
    }

    let vended: Value = vend(&app, Some(&with_room("room-1"))).await.json().await.unwrap();
    let token = vended["token"].as_str().unwrap();
    assert_eq!(publish(&app, "room-1", Some(token), "hi").await.status(), StatusCode::OK);
    assert_eq!(
        answer(publish(&app, "room-2", Some(token), "hi").await).await,
        (StatusCode::FORBIDDEN, "forbidden".into())
    );
}

/// The status and error code of `GET /v1/subscribe/chat/{topic}` with `token`, sent as
/// `header` or `?token=`.
async fn subscribe_answer(
    app: &TestApp,
    topic: &str,
    token: Option<&str>,
    in_query: bool,
) -> (StatusCode, String) {
    let mut url = app.url(&format!("/v1/subscribe/chat/{topic}"));
    let mut request = app.client.get(&url);
    if let Some(token) = token {
        if in_query {
            url.push_str(&format!("?token={token}"));
            request = app.client.get(&url);
        } else {
            request = request.bearer_auth(token);
        }
    }
    let response = request.send().await.expect("the relay answers");
    let status = response.status();
    if status == StatusCode::OK {
        return (status, String::new());
    }
    answer(response).await
}

#[tokio::test]
async fn subscribing_on_the_embedded_bus_needs_a_token_that_may_subscribe_to_the_topic() {
    let app = spawn_app_with(&hs256_config("")).await;
    let vended: Value = vend(&app, Some(&hs256(&claims("user-42")))).await.json().await.unwrap();
    let token = vended["token"].as_str().unwrap();

    assert_eq!(
        subscribe_answer(&app, "enriched-room-1", None, false).await,
        (StatusCode::UNAUTHORIZED, "missing_token".into())
    );
    assert_eq!(
        subscribe_answer(&app, "enriched-room-1", Some("not-a-token"), false).await,
        (StatusCode::UNAUTHORIZED, "invalid_token".into())
    );
    assert_eq!(
        subscribe_answer(&app, "room-1", Some(token), false).await,
        (StatusCode::FORBIDDEN, "forbidden".into()),
        "a publish_only permission does not let its holder read the room"
    );
    assert_eq!(subscribe_answer(&app, "enriched-room-1", Some(token), false).await.0, StatusCode::OK);
    assert_eq!(subscribe_answer(&app, "enriched-room-1", Some(token), true).await.0, StatusCode::OK);
}

#[tokio::test]
async fn without_tokens_configured_anyone_may_subscribe_as_in_the_quickstart() {
    let app = support::spawn_app().await;
    assert_eq!(subscribe_answer(&app, "topic%202", None, false).await.0, StatusCode::OK);
}

/// A JWKS server that answers its first request at once and holds every later one until
/// `release` is notified; `asked` counts the requests.
async fn serve_jwks_held_after_the_first(
    keys: JwkSet,
    release: Arc<tokio::sync::Notify>,
    asked: Arc<std::sync::atomic::AtomicUsize>,
) -> String {
    use std::sync::atomic::Ordering;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/jwks.json",
        get(move || {
            let (keys, release, asked) = (keys.clone(), release.clone(), asked.clone());
            async move {
                if asked.fetch_add(1, Ordering::SeqCst) > 0 {
                    release.notified().await;
                }
                Json(keys)
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn a_slow_identity_provider_does_not_hold_up_callers_whose_key_is_known() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let release = Arc::new(tokio::sync::Notify::new());
    let asked = Arc::new(AtomicUsize::new(0));
    let keys = JwkSet { keys: vec![jwk("rsa-a.pem", "a")] };
    let url = serve_jwks_held_after_the_first(keys, release.clone(), asked.clone()).await;
    let jwt = format!(r#"{{ jwks_url = "{url}", issuer = "my-app", audience = "chat" }}"#);
    let app = Arc::new(spawn_app_with(&config(&jwt, "")).await);

    // A caller whose key is unknown makes the relay fetch the JWKS again (at most once a
    // second); that fetch hangs.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let unknown = rs256("rsa-b.pem", "b", &claims("user-8"));
    let waiting = tokio::spawn({
        let app = app.clone();
        async move { answer(vend(&app, Some(&unknown)).await).await }
    });
    assert!(
        support::on_emulator::eventually(Duration::from_secs(5), || asked.load(Ordering::SeqCst) == 2).await
    );

    // A caller whose key is held is served while that fetch is still in flight.
    let known = rs256("rsa-a.pem", "a", &claims("user-7"));
    let served = tokio::time::timeout(Duration::from_secs(10), vend(&app, Some(&known))).await;
    assert_eq!(served.expect("not held up by the fetch in flight").status(), StatusCode::OK);

    release.notify_waiters();
    assert_eq!(waiting.await.unwrap(), (StatusCode::UNAUTHORIZED, "invalid_token".into()));
}

#[tokio::test]
async fn a_jwks_url_that_redirects_or_answers_too_much_gives_no_keys() {
    let keys = Arc::new(Mutex::new(JwkSet { keys: vec![jwk("rsa-a.pem", "a")] }));
    let real = serve_jwks(keys).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let huge = format!(r#"{{"keys": [], "padding": "{}"}}"#, "x".repeat(2 << 20));
    let app = axum::Router::new()
        .route("/redirect", get(move || async move { axum::response::Redirect::temporary(&real) }))
        .route("/huge", get(move || async move { huge }));
    tokio::spawn(async move { axum::serve(listener, app).await });

    for path in ["/redirect", "/huge"] {
        let jwt = format!(r#"{{ jwks_url = "{base}{path}", issuer = "my-app", audience = "chat" }}"#);
        let app = spawn_app_with(&config(&jwt, "")).await;
        let refused = vend(&app, Some(&rs256("rsa-a.pem", "a", &claims("user-7")))).await;
        assert_eq!(
            answer(refused).await,
            (StatusCode::SERVICE_UNAVAILABLE, "token_service_unavailable".into()),
            "{path}"
        );
    }
}
