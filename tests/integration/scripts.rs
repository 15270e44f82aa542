//! `script` steps in a running relay: an endless script is cut off while the relay keeps
//! answering, and a script with a syntax error stops the config at load, naming the step and
//! the line.

use crate::support;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use support::{ADMIN_TOKEN, spawn_app_with};

#[tokio::test]
async fn an_endless_script_is_cut_off_while_the_relay_keeps_answering() {
    let app = spawn_app_with(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
request_timeout = "4900ms"

[webhooks.chat]
secrets = ["test-secret"]

[delivery]
inline_budget = "4500ms"

[admin]
token = "{ADMIN_TOKEN}"

[[routes]]
name = "spin"
match = {{ cache = "chat", topic = "spin" }}
steps = [{{ script = {{ code = "for (;;) {{}}", time_limit = "2500ms", engines = 1 }} }}]

[[routes]]
name = "shout"
match = {{ cache = "chat", topic = "topic 1" }}
steps = ["uppercase", {{ publish = {{ topic = "topic 2" }} }}]
"#
    ))
    .await;
    let app = std::sync::Arc::new(app);
    let spinning = {
        let app = app.clone();
        tokio::spawn(async move { app.post_event("chat", "spin", "loop").await.status() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    for n in 0..10 {
        let response = app.post_event("chat", "topic 1", &format!("meanwhile {n}")).await;
        assert_eq!(response.status(), 200);
    }
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(!spinning.is_finished(), "the script is still running while the relay answers others");

    assert_eq!(spinning.await.unwrap(), 202, "a script cut off is kept as a dead letter");
    let letters = app.admin_get("/v1/admin/dead-letters").await;
    let reason = letters["dead_letters"][0]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("time limit"), "{letters}");
}

#[test]
fn a_syntax_error_in_a_script_file_is_a_config_error_naming_the_step_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("tag.js");
    std::fs::write(&script, "export default function (event) {\n  const tag = 'x';\n  return tag +;\n}\n")
        .unwrap();
    let config = dir.path().join("relay.toml");
    let mut file = std::fs::File::create(&config).unwrap();
    write!(
        file,
        "[webhooks.chat]\nsecrets = [\"s\"]\n\n[[routes]]\nname = \"tag\"\nsteps = [{{ script = {{ file = {script:?} }} }}]\n"
    )
    .unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_topic-relay"))
        .args(["check-config", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("routes[0].steps[0].script"), "{stderr}");
    assert!(stderr.contains("tag.js:3"), "{stderr}");
}
