//! `server.ops_listen`: the operator's routes move to a port of their own, so that a load
//! balancer in front of the public port never exposes them.

use reqwest::StatusCode;

use crate::support::{SECRET, spawn_app_with};

fn config() -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
ops_listen = "127.0.0.1:0"

[webhooks.chat]
secrets = ["{SECRET}"]

[admin]
token = "an-admin-token-for-the-ops-port"

[[routes]]
name = "shout"
match = {{ cache = "chat", topic = "topic 1" }}
steps = ["uppercase", {{ publish = {{ topic = "topic 2" }} }}]
"#
    )
}

async fn status_of(client: &reqwest::Client, url: String) -> StatusCode {
    client.get(url).bearer_auth("an-admin-token-for-the-ops-port").send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread")]
async fn with_ops_listen_set_metrics_status_and_admin_answer_only_on_the_ops_port() {
    let app = spawn_app_with(&config()).await;
    let ops_port = app.ops_port.expect("the ops listener is bound");
    assert_ne!(ops_port, app.port);
    let ops = |path: &str| format!("http://127.0.0.1:{ops_port}{path}");
    let client = reqwest::Client::new();
    for path in ["/metrics", "/v1/status", "/v1/admin/spool", "/v1/admin/dead-letters"] {
        assert_eq!(status_of(&client, app.url(path)).await, StatusCode::NOT_FOUND, "public {path}");
        assert_eq!(status_of(&client, ops(path)).await, StatusCode::OK, "ops {path}");
    }
    for path in ["/healthz", "/readyz"] {
        assert_eq!(status_of(&client, app.url(path)).await, StatusCode::OK, "public {path}");
        assert_eq!(status_of(&client, ops(path)).await, StatusCode::OK, "ops {path}");
    }
    // Webhooks stay on the public port, and are not served on the operator's.
    let signed = app.post_event("chat", "topic 1", "hello").await;
    assert_eq!(signed.status(), StatusCode::OK);
    let on_ops = client.post(ops("/webhooks/chat")).body("{}").send().await.unwrap();
    assert_eq!(on_ops.status(), StatusCode::NOT_FOUND);
    let metrics = client.get(ops("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("topic_relay_events_total{outcome=\"processed\"} 1"), "{metrics}");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_ops_listen_the_operator_routes_stay_on_the_public_port() {
    let app = spawn_app_with(&config().replace("ops_listen = \"127.0.0.1:0\"\n", "")).await;
    assert_eq!(app.ops_port, None);
    let client = reqwest::Client::new();
    for path in ["/metrics", "/v1/status", "/v1/admin/spool"] {
        assert_eq!(status_of(&client, app.url(path)).await, StatusCode::OK, "public {path}");
    }
    app.stop().await.unwrap();
}
