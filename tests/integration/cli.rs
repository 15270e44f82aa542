//! The `topic-relay` binary, as a user runs it.

use crate::support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use support::{ADMIN_TOKEN, SECRET, SEED_CONFIG, TestApp, spawn_app, spawn_app_with};

fn topic_relay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_topic-relay"))
        .args(args)
        .env_remove("TOPIC_RELAY_CONFIG")
        .env_remove("TOPIC_RELAY_SECRET")
        .env_remove("TOPIC_RELAY_ADMIN_TOKEN")
        .output()
        .expect("the binary runs")
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[tokio::test]
async fn send_posts_a_signed_event_that_the_relay_answers_with_200() {
    let app = spawn_app().await;
    let url = app.url("/webhook");
    let output = tokio::task::spawn_blocking(move || {
        topic_relay(&[
            "send", "--url", &url, "--secret", SECRET, "--cache", "chat", "--topic", "topic 1", "--text",
            "hi", "--count", "2",
        ])
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout.matches("200 OK {\"outcome\":\"processed\"").count(), 2, "{stdout}");
}

#[tokio::test]
async fn send_with_the_wrong_secret_prints_the_401_and_exits_non_zero() {
    let app = spawn_app().await;
    let url = app.url("/webhook");
    let output = tokio::task::spawn_blocking(move || {
        topic_relay(&[
            "send", "--url", &url, "--secret", "wrong", "--cache", "chat", "--topic", "topic 1", "--text",
            "hi",
        ])
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("401 Unauthorized"));
}

#[test]
fn check_config_fails_on_a_route_that_loops_back_into_itself() {
    let file = config_file(
        "[webhooks.chat]\nsecrets = [\"s\"]\n\n[[routes]]\nname = \"echo\"\nmatch = { cache = \"chat\", topic = \"room-*\" }\nsteps = [{ publish = { topic = \"{topic}-again\" } }]\n",
    );
    let output = topic_relay(&["check-config", "--config", file.path().to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("`routes[0]`") && stderr.contains("endless loop"), "{stderr}");
}

#[test]
fn check_config_prints_the_resolved_config_without_secrets() {
    let file = config_file("[webhooks.chat]\nsecrets = [\"super-secret-signing-key\"]\n");
    let output = topic_relay(&["check-config", "--config", file.path().to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("secrets = [\"<redacted>\"]"), "{stdout}");
    assert!(stdout.contains("request_timeout = \"4s\""), "defaults are shown: {stdout}");
    let cpus = std::thread::available_parallelism().unwrap();
    assert!(stdout.contains(&format!("# http threads: {cpus} (one per CPU")), "{stdout}");
    assert!(!stdout.contains("super-secret-signing-key"));
    assert!(!stdout.contains("[subscriptions]"), "no empty table for a feature not configured: {stdout}");
}

#[test]
fn check_config_names_the_file_and_key_of_an_error() {
    let file = config_file("[webhooks.chat]\nsecrets = [\"s\"]\n[server]\nmax_body_bytes = \"big\"\n");
    let path = file.path().to_str().unwrap();
    let output = topic_relay(&["check-config", "--config", path]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains(path) && stderr.contains("`server.max_body_bytes`"), "{stderr}");
}

#[test]
fn sign_prints_the_published_test_vector() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_topic-relay"))
        .args(["sign", "--secret", "1234567890", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"text":"some text", "another_field": "another field" }"#)
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "b43f72787eb66410ff110295b036ef828e5686af21b414ce092f02c05deea3da"
    );
}

#[tokio::test]
async fn healthcheck_exits_0_for_a_live_relay_and_1_when_nothing_answers() {
    let app = spawn_app().await;
    let url = app.url("/healthz");
    let live =
        tokio::task::spawn_blocking(move || topic_relay(&["healthcheck", "--url", &url])).await.unwrap();
    assert!(live.status.success());
    let port = app.port;
    app.stop().await.unwrap();
    let dead_url = format!("http://127.0.0.1:{port}/healthz");
    let dead =
        tokio::task::spawn_blocking(move || topic_relay(&["healthcheck", "--url", &dead_url])).await.unwrap();
    assert_eq!(dead.status.code(), Some(1));
}

/// The seed configuration with the admin API on.
fn seed_config_with_admin() -> String {
    format!("{SEED_CONFIG}\n[admin]\ntoken = {ADMIN_TOKEN:?}\n")
}

/// The configuration file an operator of `app` has: the one it runs on, with its port.
fn config_file_of(app: &TestApp, config: &str) -> tempfile::NamedTempFile {
    config_file(&config.replace("127.0.0.1:0", &format!("127.0.0.1:{}", app.port)))
}

#[tokio::test]
async fn without_url_the_client_commands_find_the_relay_its_secret_and_its_admin_token_in_its_config() {
    let config = seed_config_with_admin();
    let app = spawn_app_with(&config).await;
    let file = config_file_of(&app, &config);
    let path = file.path().to_str().unwrap().to_owned();
    let run = |args: Vec<String>| {
        tokio::task::spawn_blocking(move || topic_relay(&args.iter().map(String::as_str).collect::<Vec<_>>()))
    };
    let with_config = |args: &[&str]| {
        [&["--config", path.as_str()], args].concat().into_iter().map(String::from).collect::<Vec<_>>()
    };

    let health = run(with_config(&["healthcheck"])).await.unwrap();
    assert!(health.status.success(), "{}", String::from_utf8_lossy(&health.stderr));

    // A 200 shows both the webhook's URL and its secret came from the file.
    let sent =
        run(with_config(&["send", "--cache", "chat", "--topic", "topic 1", "--text", "hi"])).await.unwrap();
    let stdout = String::from_utf8_lossy(&sent.stdout);
    assert!(
        stdout.starts_with("200 OK {\"outcome\":\"processed\""),
        "{stdout}{}",
        String::from_utf8_lossy(&sent.stderr)
    );

    let dead_letters = run(with_config(&["spool", "dead-letters"])).await.unwrap();
    assert!(dead_letters.status.success(), "{}", String::from_utf8_lossy(&dead_letters.stderr));

    // The configured admin token goes only where the configuration says the relay is.
    let elsewhere = run(with_config(&["spool", "--url", &app.address, "dead-letters"])).await.unwrap();
    assert!(!elsewhere.status.success());
    assert!(
        String::from_utf8_lossy(&elsewhere.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&elsewhere.stderr)
    );

    app.stop().await.unwrap();
    let dead = run(with_config(&["healthcheck"])).await.unwrap();
    assert_eq!(dead.status.code(), Some(1));
}

#[test]
fn without_url_a_configuration_that_cannot_be_read_is_an_error_that_says_to_pass_one() {
    for command in
        [&["healthcheck"][..], &["spool", "status"], &["send", "--cache", "c", "--topic", "t", "--text", "x"]]
    {
        let output = topic_relay(&[&["--config", "/nonexistent/relay.toml"], command].concat());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(
            stderr.contains("without --url") && stderr.contains("/nonexistent/relay.toml"),
            "{command:?}: {stderr}"
        );
    }
}

#[test]
fn output_to_a_reader_that_has_gone_ends_the_command_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    // As `topic-relay check-config | head -0` does: the reader is gone before anything is written.
    drop(reader);
    let output = Command::new(env!("CARGO_BIN_EXE_topic-relay"))
        .arg("check-config")
        .env_remove("TOPIC_RELAY_CONFIG")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn check_example(file: &str, api_key: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_topic-relay"))
        .args(["check-config", "--config", file])
        .env("WEBHOOK_SECRET", "whsec-example")
        .env("MOMENTO_API_KEY", api_key)
        .env("MOMENTO_ENDPOINT", "cell-1.example.momentohq.com")
        .output()
        .expect("the binary runs")
}

#[test]
fn check_config_accepts_both_example_configs_on_the_momento_backend() {
    for file in ["config/examples/async-processing.toml", "config/examples/identity.toml"] {
        let output = check_example(file, &support::emulator::test_api_key());
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{file}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(stdout.contains("# backend: momento"), "{stdout}");
        assert!(!stdout.contains("whsec-example") && !stdout.contains(&support::emulator::test_api_key()));
    }
}

#[test]
fn check_config_shows_the_local_identity_example_with_its_secrets_redacted() {
    let output = Command::new(env!("CARGO_BIN_EXE_topic-relay"))
        .args(["check-config", "--config", "config/examples/identity-local.toml"])
        .env("APP_JWT_SECRET", "app-jwt-secret-that-must-not-be-printed")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("[tokens.jwt]") && stdout.contains("hs256_secret = \"<redacted>\""), "{stdout}");
    assert!(!stdout.contains("app-jwt-secret-that-must-not-be-printed"), "{stdout}");
}

#[test]
fn check_config_refuses_a_malformed_api_key_without_printing_it() {
    let output = check_example("config/examples/identity.toml", "my-leaked-key-123");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("momento.api_key"), "{stderr}");
    assert!(!stderr.contains("my-leaked-key-123"), "{stderr}");
}

#[test]
fn check_config_refuses_the_local_identity_example_switched_to_momento_with_its_demo_secrets() {
    let example = std::fs::read_to_string("config/examples/identity-local.toml").unwrap();
    let on_momento = config_file(&example.replace(
        "\nbackend = \"memory\"\n",
        "\napi_key = \"${MOMENTO_API_KEY}\"\nendpoint = \"${MOMENTO_ENDPOINT}\"\n",
    ));
    let check = |variables: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_topic-relay"));
        command
            .args(["check-config", "--config", on_momento.path().to_str().unwrap()])
            .env("MOMENTO_API_KEY", support::emulator::test_api_key())
            .env("MOMENTO_ENDPOINT", "cell-1.example.momentohq.com")
            .env_remove("APP_JWT_SECRET")
            .env_remove("ADMIN_TOKEN");
        command.envs(variables.iter().copied());
        command.output().expect("the binary runs")
    };

    let refused = check(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("tokens.jwt.hs256_secret") && stderr.contains("TOPIC_RELAY_JWT_SECRET"),
        "{stderr}"
    );

    let own = [
        ("APP_JWT_SECRET", "our-own-application-secret-of-32-bytes"),
        ("ADMIN_TOKEN", "our-own-admin-token"),
    ];
    let accepted = check(&own);
    assert!(accepted.status.success(), "{}", String::from_utf8_lossy(&accepted.stderr));
}

#[test]
fn check_config_hides_the_query_values_of_urls_that_came_from_the_environment() {
    let config = config_file(&format!(
        "{SEED_CONFIG}\n[[routes]]\nname = \"translate\"\nmatch = {{ cache = \"chat\", topic = \"t\" }}\n\
         steps = [{{ http = {{ url = \"${{TRANSLATE_URL}}&lang={{topic}}\" }} }}]\n"
    ));
    let output = Command::new(env!("CARGO_BIN_EXE_topic-relay"))
        .args(["check-config", "--config", config.path().to_str().unwrap()])
        .env("TRANSLATE_URL", "https://translate.example.com/translate?api_key=sk-query-secret")
        .env_remove("TOPIC_RELAY_CONFIG")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        stdout.contains("https://translate.example.com/translate?api_key=<redacted>&lang=<redacted>"),
        "{stdout}"
    );
    assert!(!stdout.contains("sk-query-secret"), "{stdout}");
}
