//! The path every event takes: replays refused exactly under concurrency, no log line per
//! event at the default level, and `/metrics` that a real OpenMetrics parser accepts.

use crate::support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use openmetrics_parser::{MetricNumber, OpenMetricsValue};
use support::{SEED_CONFIG, event, spawn_app, spawn_app_with};

/// `/metrics`, parsed by an OpenMetrics parser; a parse failure fails the test.
async fn scrape(
    app: &support::TestApp,
) -> openmetrics_parser::MetricsExposition<openmetrics_parser::OpenMetricsType, OpenMetricsValue> {
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    openmetrics_parser::openmetrics::parse_openmetrics(&text)
        .unwrap_or_else(|error| panic!("/metrics does not parse: {error:?}\n{text}"))
}

fn counter(value: &OpenMetricsValue) -> f64 {
    match value {
        OpenMetricsValue::Counter(counter) => counter.value.as_f64(),
        other => panic!("not a counter: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_signed_request_sent_concurrently_is_processed_exactly_once() {
    const BODIES: usize = 20;
    const COPIES: usize = 24;
    let app = spawn_app().await;
    let mut copies = Vec::new();
    for n in 0..BODIES {
        let body = event("chat", "topic 1", &format!("once {n}"));
        let signature = app.sign(&body);
        copies.extend((0..COPIES).map(|_| (body.clone(), signature.clone())));
    }
    let answers = futures::future::join_all(copies.into_iter().map(|(body, signature)| {
        let (client, url) = (app.client.clone(), app.url("/webhook"));
        async move {
            let request = client.post(url).header("momento-signature", signature).body(body);
            request.send().await.expect("the relay answers").status().as_u16()
        }
    }))
    .await;
    let processed = answers.iter().filter(|status| **status == 200).count();
    let replays = answers.iter().filter(|status| **status == 409).count();
    assert_eq!((processed, replays), (BODIES, BODIES * (COPIES - 1)), "{answers:?}");

    let metrics = scrape(&app).await;
    let publishes = &metrics.families["topic_relay_backend_call_duration_seconds"];
    let publish_count = publishes
        .iter_samples()
        .filter(|sample| sample.get_labelset().unwrap().get_label_value("operation") == Some("publish"))
        .find_map(|sample| match &sample.value {
            OpenMetricsValue::Histogram(histogram) => histogram.count,
            _ => None,
        })
        .expect("publishes were timed");
    assert_eq!(publish_count, BODIES as u64, "each body was published once");
}

#[tokio::test]
async fn metrics_parse_as_openmetrics_with_a_route_whose_name_has_a_quote_and_a_line_break() {
    let config = SEED_CONFIG.replace("name = \"shout\"", "name = \"say \\\"hi\\\"\\nloudly\"");
    let app = spawn_app_with(&config).await;
    assert_eq!(app.post_event("chat", "topic 1", "hello").await.status(), 200);
    let forged = event("chat", "topic 1", "forged");
    assert_eq!(app.post("/webhook", forged, Some(&"00".repeat(32))).await.status(), 401);

    let metrics = scrape(&app).await;
    let routes = &metrics.families["topic_relay_route_events"];
    let taken = routes.iter_samples().map(|sample| counter(&sample.value)).sum::<f64>();
    assert_eq!(taken, 1.0);
    let labelset = routes.iter_samples().next().unwrap().get_labelset().unwrap();
    assert_eq!(labelset.get_label_value("route"), Some("say \"hi\"\nloudly"));

    let refusals = &metrics.families["topic_relay_refusals"];
    let invalid = refusals
        .iter_samples()
        .find(|sample| sample.get_labelset().unwrap().get_label_value("error") == Some("invalid_signature"))
        .expect("a series per error code");
    assert_eq!(counter(&invalid.value), 1.0);
    for family in ["topic_relay_webhook_request_duration_seconds", "topic_relay_step_duration_seconds"] {
        let histogram = metrics.families[family].iter_samples().find_map(|sample| match &sample.value {
            OpenMetricsValue::Histogram(histogram) if histogram.count > Some(0) => Some(histogram.clone()),
            _ => None,
        });
        let histogram = histogram.unwrap_or_else(|| panic!("{family} has observations"));
        assert!(matches!(histogram.sum, Some(MetricNumber::Float(sum)) if sum > 0.0), "{family}");
    }
}

#[test]
fn the_binary_writes_no_log_line_per_event_and_throttles_warnings_at_the_default_level() {
    const EVENTS: usize = 40;
    const FORGED: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let config = support::binary::seed_config_in(dir.path());
    let closed = r#"
[[routes]]
name = "closed"
match = { topic = "closed" }
steps = [{ reject = { reason = "closed" } }]
"#;
    std::fs::write(&config, std::fs::read_to_string(&config).unwrap() + closed).unwrap();
    // At the default log level, whatever the environment asks for.
    let mut child = support::binary::command(&config)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .expect("the relay starts");
    let (port, log) = read_log(child.stderr.take().unwrap());
    let port = port.recv_timeout(Duration::from_secs(60)).expect("the relay reports its port");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/webhook");
        for n in 0..EVENTS {
            let body = event("chat", "topic 1", &format!("private message {n}"));
            let signature = topic_relay::verify::sign(support::SECRET.as_bytes(), body.as_bytes());
            // The second copy is a replay: refused, and counted rather than logged.
            for expected in [200, 409] {
                let request = client.post(&url).header("momento-signature", &signature).body(body.clone());
                assert_eq!(request.send().await.unwrap().status(), expected);
            }
        }
        // A route refusing events on purpose is doing its job: counted, not logged.
        for n in 0..EVENTS {
            let body = event("chat", "closed", &format!("refused {n}"));
            let signature = topic_relay::verify::sign(support::SECRET.as_bytes(), body.as_bytes());
            let request = client.post(&url).header("momento-signature", signature).body(body);
            assert_eq!(request.send().await.unwrap().status(), 403);
        }
        // A flood of forged requests: each is a warning, but at most one a second is written.
        for n in 0..FORGED {
            let body = event("chat", "topic 1", &format!("forged {n}"));
            let request = client.post(&url).header("momento-signature", "ab".repeat(32)).body(body);
            assert_eq!(request.send().await.unwrap().status(), 401);
        }
    });
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
    let log = log.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(!log.contains("private message"), "message text reached the log:\n{log}");
    let lines: Vec<&str> = log.lines().collect();
    let listening = lines.iter().position(|line| line.contains("topic-relay is listening")).unwrap();
    let shutdown = lines.iter().position(|line| line.contains("shutting down")).expect("shutdown line");
    let during = &lines[listening + 1..shutdown];
    let (refusals, others): (Vec<&str>, Vec<&str>) = during
        .iter()
        .partition(|line| line.contains("request refused") && line.contains("invalid_signature"));
    assert!(others.is_empty(), "{} lines for {} events:\n{}", others.len(), EVENTS * 3, others.join("\n"));
    // One a second at most, and the first at once; 200 local requests take far less than the
    // few seconds this allows.
    assert!(
        !refusals.is_empty() && refusals.len() <= 5,
        "{} warnings for {FORGED} forged requests:\n{}",
        refusals.len(),
        refusals.join("\n")
    );
}

/// Reads the relay's JSON log: the port from its startup line as soon as it shows, and the
/// whole log once the relay exits.
fn read_log(stderr: impl Read + Send + 'static) -> (Receiver<u16>, Receiver<String>) {
    let (port_sender, port) = std::sync::mpsc::channel();
    let (log_sender, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("topic-relay is listening")
                && let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line)
            {
                let _ = port_sender.send(entry["fields"]["port"].as_u64().unwrap_or_default() as u16);
            }
            all.push_str(&line);
            all.push('\n');
        }
        let _ = log_sender.send(all);
    });
    (port, log)
}

#[tokio::test]
async fn a_full_replay_memory_takes_new_events_unremembered_or_refuses_them_as_configured() {
    for (when_full, expected) in [("accept", 200), ("refuse", 503)] {
        let config =
            format!("{SEED_CONFIG}\n[delivery]\ndedup_capacity = 1\ndedup_when_full = \"{when_full}\"\n");
        let app = spawn_app_with(&config).await;
        let first = event("chat", "topic 1", "remembered");
        let signature = app.sign(&first);
        assert_eq!(app.post("/webhook", first.clone(), Some(&signature)).await.status(), 200);
        let second = app.post_event("chat", "topic 1", "past the capacity").await;
        assert_eq!(second.status(), expected, "dedup_when_full = {when_full}");
        if expected == 503 {
            let answer: serde_json::Value = second.json().await.unwrap();
            assert_eq!(answer["error"], "replay_memory_full");
        }
        let replay = app.post("/webhook", first, Some(&signature)).await;
        assert_eq!(replay.status(), 409, "what was remembered is still refused as a replay");

        let metrics = scrape(&app).await;
        let count =
            |family: &str| metrics.families[family].iter_samples().map(|s| counter(&s.value)).sum::<f64>();
        let (unremembered, refused) = if when_full == "accept" { (1.0, 0.0) } else { (0.0, 1.0) };
        assert_eq!(count("topic_relay_replay_unremembered"), unremembered);
        assert_eq!(count("topic_relay_replay_refused"), refused);
    }
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_a_callers_own_is_kept() {
    let app = spawn_app().await;
    let body = event("chat", "topic 1", "with an id");
    let signature = app.sign(&body);
    let request = app.client.post(app.url("/webhook")).header("momento-signature", &signature);
    let answer = request.header("x-request-id", "from-the-load-balancer").body(body).send().await.unwrap();
    assert_eq!(answer.headers()["x-request-id"], "from-the-load-balancer");
    let refused = app.post("/webhook", event("chat", "topic 1", "unsigned"), None).await;
    let made = refused.headers()["x-request-id"].to_str().unwrap().to_owned();
    let next = app.client.get(app.url("/healthz")).send().await.unwrap();
    let following = next.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(made, following, "each request gets an id of its own");
    assert_eq!(made.split('-').next(), following.split('-').next(), "from the same process");
}

/// Transparent huge pages stall the request that first touches one while 2 MiB are zeroed;
/// the binary turns them off for itself.
#[cfg(target_os = "linux")]
#[test]
fn the_binary_runs_without_transparent_huge_pages() {
    let dir = tempfile::tempdir().unwrap();
    let relay = support::binary::Relay::start(&support::binary::seed_config_in(dir.path()));
    let status = std::fs::read_to_string(format!("/proc/{}/status", relay.pid())).unwrap();
    let thp = status.lines().find(|line| line.starts_with("THP_enabled:"));
    assert_eq!(thp.map(|line| line.split_whitespace().last()), Some(Some("0")), "{status}");
    assert!(relay.terminate(), "the relay stops cleanly");
}
