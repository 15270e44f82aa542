//! Graceful shutdown: in-flight events finish, `/readyz` turns 503 while draining.

use crate::support;

use std::time::Duration;

use support::{SEED_CONFIG, spawn_app_with};

fn config(drain_delay: &str) -> String {
    format!(
        "{}\n[[routes]]\nname = \"slow\"\nmatch = {{ topic = \"slow\" }}\nsteps = [{{ sleep = {{ ms = 800 }} }}, {{ publish = {{ topic = \"done\" }} }}]\n",
        SEED_CONFIG.replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:0\"\ndrain_delay = \"{drain_delay}\"")
        )
    )
}

#[tokio::test]
async fn an_event_in_flight_when_shutdown_begins_still_gets_its_2xx() {
    let app = spawn_app_with(&config("0s")).await;
    let in_flight = app.post_event("chat", "slow", "finish me");
    let shutdown = async {
        app.wait_for_in_flight(1).await;
        app.begin_shutdown();
    };
    let (response, ()) = tokio::join!(in_flight, shutdown);
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["outcome"], "processed");
    app.stop().await.expect("the relay stops cleanly");
}

#[tokio::test]
async fn readyz_turns_503_while_draining_and_liveness_stays_200() {
    let app = spawn_app_with(&config("3s")).await;
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), 200);

    app.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "draining");
    assert_eq!(app.client.get(app.url("/healthz")).send().await.unwrap().status(), 200);
    let during_drain = app.post_event("chat", "topic 1", "still accepted").await;
    assert_eq!(during_drain.status(), 200, "events keep being taken during the drain delay");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_listener_closes_after_the_drain_and_the_relay_stops() {
    let app = spawn_app_with(&config("0s")).await;
    let port = app.port;
    app.stop().await.unwrap();
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
    assert!(refused.is_err(), "nothing listens after shutdown");
}

#[tokio::test]
async fn open_subscribe_streams_do_not_hold_shutdown_up() {
    let app = spawn_app_with(&config("0s")).await;
    let _subscription = app.subscribe("chat", "topic 2").await;
    let stopped = tokio::time::timeout(Duration::from_secs(3), app.stop()).await;
    assert!(matches!(stopped, Ok(Ok(()))), "shutdown finished with a stream open");
}

#[tokio::test]
async fn shutdown_ends_within_the_grace_period_even_with_redelivery_still_running() {
    let config = format!(
        "{}\n[delivery]\nretry_initial = \"50ms\"\n\n[[routes]]\nname = \"stuck\"\nmatch = {{ topic = \"stuck\" }}\nsteps = [{{ sleep = {{ ms = 20000 }} }}]\n",
        SEED_CONFIG.replace(
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:0\"\nrequest_timeout = \"1s\"\nshutdown_grace = \"1s\""
        )
    );
    let app = spawn_app_with(&config).await;
    assert_eq!(app.post_event("chat", "stuck", "zzz").await.status(), 202, "too slow inline, so spooled");
    let metrics_url = app.url("/metrics");
    let attempt_started = async {
        loop {
            let metrics = app.client.get(&metrics_url).send().await.unwrap().text().await.unwrap();
            // The retry is under way once the spooled event is claimed: it is still counted,
            // and no longer due; give the worker a moment to pick it up.
            if metrics.contains("topic_relay_spooled_events 1\n") {
                tokio::time::sleep(Duration::from_millis(300)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), attempt_started).await.expect("the event is spooled");

    let started = std::time::Instant::now();
    app.stop().await.unwrap();

    assert!(started.elapsed() < Duration::from_millis(2500), "stopped after {:?}", started.elapsed());
}

#[tokio::test]
async fn a_connection_still_open_when_the_grace_runs_out_does_not_hold_shutdown_up() {
    let config = SEED_CONFIG.replace(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nrequest_timeout = \"1s\"\nshutdown_grace = \"1s\"",
    );
    let app = spawn_app_with(&config).await;
    // A client that never finishes its request's headers.
    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", app.port)).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stalled, b"POST /webhook HTTP/1.1\r\nhost: relay\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let stopped = tokio::time::timeout(Duration::from_secs(10), app.stop()).await;
    assert!(matches!(stopped, Ok(Ok(()))), "the relay stopped with the connection still open");
}

/// A SIGTERM sent the moment the relay says it is listening, as an orchestrator that gives up
/// on a new replica might, gets the relay's own clean shutdown, never the default action that
/// ends the process at once. Sent from the thread that reads the log, within microseconds of
/// the line, and several times over, since the gap it guards is short.
#[cfg(target_os = "linux")]
#[test]
fn a_sigterm_sent_as_soon_as_the_relay_is_listening_shuts_it_down_cleanly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    use rustix::process::{Pid, Signal, kill_process};

    let dir = tempfile::tempdir().unwrap();
    let config = support::binary::seed_config_in(dir.path());
    for attempt in 1..=5 {
        let mut relay =
            support::binary::command(&config).stderr(Stdio::piped()).spawn().expect("the relay starts");
        let pid = Pid::from_raw(relay.id() as i32).unwrap();
        let mut log = Vec::new();
        for line in BufReader::new(relay.stderr.take().unwrap()).lines().map_while(Result::ok) {
            if line.contains("topic-relay is listening") {
                kill_process(pid, Signal::TERM).unwrap();
            }
            log.push(line);
        }
        let status = relay.wait().unwrap();
        assert!(status.success(), "attempt {attempt}: the relay ended with {status}\n{}", log.join("\n"));
        assert!(log.iter().any(|line| line.contains("\"stopped\"")), "attempt {attempt}: {}", log.join("\n"));
    }
}
