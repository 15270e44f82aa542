//! `docs/openapi.json` is the HTTP API's contract, and the router keeps to it: every path it
//! documents is routed, with exactly the methods it documents; every route the source
//! declares is documented; and every error code the relay answers with is in its `Error`
//! schema.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::spawn_app_with;

const ADMIN_TOKEN: &str = "an-admin-token-for-the-contract";

fn spec() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).unwrap();
    serde_json::from_str(&text).expect("docs/openapi.json is JSON")
}

/// Each documented path, with the methods documented for it (upper case).
fn documented(spec: &Value) -> Vec<(String, BTreeSet<String>)> {
    let paths = spec["paths"].as_object().expect("paths");
    paths
        .iter()
        .map(|(path, operations)| {
            let methods =
                operations.as_object().unwrap().keys().map(|method| method.to_uppercase()).collect();
            (path.clone(), methods)
        })
        .collect()
}

/// The paths `src/http/mod.rs` routes: each `.route("...")`, and the webhooks' own.
fn routed_in_source() -> BTreeSet<String> {
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/mod.rs")).unwrap();
    let mut paths: BTreeSet<String> = source
        .match_indices(".route(\"")
        .map(|(at, _)| {
            let rest = &source[at + ".route(\"".len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect();
    assert!(
        source.contains("format!(\"/webhooks/{}\", webhook.name)"),
        "webhooks are served on /webhooks/<name>"
    );
    paths.insert("/webhooks/{name}".into());
    paths
}

/// A path of the spec with each `{parameter}` filled in.
fn concrete(path: &str) -> String {
    path.replace("{name}", "chat")
        .replace("{cache}", "chat")
        .replace("{topic}", "room-1")
        .replace("{key}", "user:1")
        .replace("{id}", "1")
}

#[test]
fn every_route_in_the_source_is_documented_and_every_documented_path_is_a_route() {
    let documented: BTreeSet<String> = documented(&spec()).into_iter().map(|(path, _)| path).collect();
    assert_eq!(routed_in_source(), documented);
}

#[test]
fn every_error_code_the_relay_answers_with_is_in_the_error_schema() {
    let spec = spec();
    let listed: BTreeSet<&str> = spec["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap())
        .collect();
    let answered: BTreeSet<&str> = topic_relay::http::error::ERROR_CODES.iter().copied().collect();
    assert_eq!(listed, answered);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_running_router_serves_each_documented_path_with_exactly_the_documented_methods() {
    let config = format!(
        r#"
[webhooks.chat]
secrets = ["a-webhook-secret-for-the-contract"]

[admin]
token = "{ADMIN_TOKEN}"

[tokens]
jwt = {{ hs256_secret = "a-test-secret-long-enough-for-hs256!" }}
token_id = "{{sub}}"
permissions = [{{ role = "publish_only", cache = "chat", topic = "room-1" }}]

[[routes]]
name = "shout"
match = {{ cache = "chat" }}
steps = ["uppercase"]
"#
    );
    let app = spawn_app_with(&config).await;
    let client = reqwest::Client::new();
    // The documented GET of a cache item then finds one, rather than answering 404.
    let item = client.put(app.url(&concrete("/v1/cache/{cache}/{key}"))).bearer_auth(ADMIN_TOKEN).body("ada");
    assert!(item.send().await.unwrap().status().is_success());
    let mut wrong = Vec::new();
    for (path, methods) in documented(&spec()) {
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            let request = client
                .request(method.parse().unwrap(), app.url(&concrete(&path)))
                .bearer_auth(ADMIN_TOKEN)
                .timeout(std::time::Duration::from_secs(5));
            let answer = request.send().await.unwrap();
            let status = answer.status().as_u16();
            let body: Value = answer.json().await.unwrap_or_default();
            // A handler may answer 404 for what it does not hold (`no_such_dead_letter`);
            // the router's own 404, for a path it does not serve, is `not_found`.
            let unrouted = status == 405 || status == 404 && body["error"] == "not_found";
            let documented = methods.contains(method);
            // OPTIONS is only checked where it is documented: axum answers it on its own
            // elsewhere.
            if (documented && unrouted) || (!documented && method != "OPTIONS" && status != 405) {
                wrong.push(format!(
                    "{method} {path}: {status} ({})",
                    if documented { "documented" } else { "not documented" }
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "the router and docs/openapi.json disagree:\n{}", wrong.join("\n"));
    app.stop().await.unwrap();
}
