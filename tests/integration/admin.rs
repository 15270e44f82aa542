//! The admin API and `topic-relay spool`, on the embedded backend: errors for bad ids, and
//! every CLI subcommand against a running relay.

use crate::support;

use std::process::Command;

use serde_json::Value;
use support::{TestApp, spawn_app_with};

const TOKEN: &str = "admin-token-for-tests-0123";

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"

[webhooks.chat]
secrets = ["test-secret"]

[delivery]
retry_initial = "1h"
retry_max = "1h"

[admin]
token = "admin-token-for-tests-0123"

[[routes]]
name = "revoked"
match = { topic = "revoked" }
steps = [{ fail = { with = "unauthorized" } }]

[[routes]]
name = "outage"
match = { topic = "outage" }
steps = [{ fail = { with = "unavailable" } }]
"#;

fn spool_cli(app: &TestApp, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_topic-relay"))
        .args(["spool", "--url", &app.address, "--token", TOKEN])
        .args(args)
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app.client.get(app.url(path)).bearer_auth(TOKEN).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn bad_and_unknown_ids_get_400_and_404() {
    let app = spawn_app_with(CONFIG).await;
    let (status, answer) = get(&app, "/v1/admin/dead-letters/abc").await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_id")));
    let (status, answer) = get(&app, "/v1/admin/dead-letters?limit=lots").await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_query")));
    let (status, answer) = get(&app, "/v1/admin/dead-letters/987654").await;
    assert_eq!((status, answer["error"].as_str()), (404, Some("no_such_dead_letter")));
    let replay = app.client.post(app.url("/v1/admin/dead-letters/987654/replay")).bearer_auth(TOKEN).send();
    assert_eq!(replay.await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_spool_cli_shows_pending_events_and_shows_and_purges_dead_letters() {
    let app = spawn_app_with(CONFIG).await;
    assert_eq!(app.post_event("chat", "outage", "waiting").await.status(), 202);
    assert_eq!(app.post_event("chat", "revoked", "refused for good").await.status(), 202);

    let (ok, pending) = tokio::task::block_in_place(|| spool_cli(&app, &["pending"]));
    assert!(ok && pending.contains("outage") && pending.contains("test outage"), "{pending}");

    let (_, letters) = get(&app, "/v1/admin/dead-letters").await;
    let id = letters["dead_letters"][0]["id"].as_u64().expect("one dead letter").to_string();
    let (ok, shown) = tokio::task::block_in_place(|| spool_cli(&app, &["show", &id]));
    assert!(ok && shown.contains("refused for good") && shown.contains("not authorized"), "{shown}");

    let (ok, status) = tokio::task::block_in_place(|| spool_cli(&app, &["status"]));
    assert!(ok && status.contains("spooled:      1") && status.contains("dead letters: 1"), "{status}");

    let (ok, purged) = tokio::task::block_in_place(|| spool_cli(&app, &["purge", &id]));
    assert!(ok && purged.contains("purged 1"), "{purged}");
    let (ok, missing) = tokio::task::block_in_place(|| spool_cli(&app, &["show", &id]));
    assert!(!ok && missing.contains("no dead letter has id"), "{missing}");

    let (ok, unauthorized) = tokio::task::block_in_place(|| {
        let output = Command::new(env!("CARGO_BIN_EXE_topic-relay"))
            .args(["spool", "--url", &app.address, "--token", "wrong-token-wrong-token", "dead-letters"])
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
    });
    assert!(!ok && unauthorized.contains("401"), "{unauthorized}");
}
