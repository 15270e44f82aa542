//! What the relay sees of each topic's stream on the Momento backend, over Momento's own
//! gRPC stream against the emulator: heartbeats, discontinuities, new pages, stalls, and the
//! streams each channel carries.

use crate::support;

use std::time::Duration;

use futures::StreamExt;
use support::emulator::Emulator;
use support::on_emulator::{eventually, inbox_metric, listener, momento_settings, republished};
use support::{TestApp, spawn_app_with};
use topic_relay::backend::Backend;
use topic_relay::backend::momento::MomentoBackend;

/// The `topic 1` stream as `/v1/status` shows it.
async fn stream_status(app: &TestApp) -> serde_json::Value {
    let status: serde_json::Value =
        app.client.get(app.url("/v1/status")).send().await.unwrap().json().await.unwrap();
    status["subscriptions"][0].clone()
}

async fn listening_relay(emulator: &Emulator, extra: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(&listener(emulator, dir.path(), extra)).await;
    let subscribed =
        eventually(Duration::from_secs(20), || emulator.subscribers("chat", "topic 1") > 0).await;
    assert!(subscribed, "the relay subscribes to the topic");
    (app, dir)
}

async fn processed(emulator: &Emulator, count: usize) -> bool {
    eventually(Duration::from_secs(10), || republished(emulator).len() >= count).await
}

#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_discontinuities_and_new_pages_are_counted_and_shown() {
    let emulator = Emulator::start().await;
    let (app, _dir) = listening_relay(&emulator, "").await;
    emulator.publish_as("chat", "topic 1", "first", "user-1");
    assert!(processed(&emulator, 1).await);

    emulator.heartbeat("chat", "topic 1");
    emulator.skip_with_discontinuity("chat", "topic 1", 7);
    emulator.publish_as("chat", "topic 1", "after the gap", "user-2");
    assert!(processed(&emulator, 2).await);
    emulator.start_new_page("chat", "topic 1");
    emulator.publish_as("chat", "topic 1", "on a new page", "user-3");
    assert!(processed(&emulator, 3).await);

    // One heartbeat as the stream opened, one sent.
    assert!(inbox_metric(&app, "topic_relay_subscription_heartbeats_total").await >= 2.0);
    assert_eq!(inbox_metric(&app, "topic_relay_subscription_discontinuities_total").await, 1.0);
    assert_eq!(inbox_metric(&app, "topic_relay_subscription_skipped_items_total").await, 7.0);
    assert_eq!(
        inbox_metric(&app, "topic_relay_subscription_missed_total").await,
        0.0,
        "explained, not missed"
    );
    assert_eq!(inbox_metric(&app, "topic_relay_subscription_new_pages_total").await, 1.0);
    let stream = stream_status(&app).await;
    assert_eq!((stream["discontinuities"].as_u64(), stream["items_skipped"].as_u64()), (Some(1), Some(7)));
    assert_eq!(stream["page_changes"], 1);
    assert!(stream["last_heartbeat_ms"].as_u64().is_some(), "{stream}");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_stream_is_counted_shown_and_opened_again_until_items_flow() {
    let emulator = Emulator::start().await;
    let (app, _dir) = listening_relay(&emulator, "stall_after = \"300ms\"").await;
    let before = emulator.subscribe_calls();

    emulator.stall_streams();
    let reopened = eventually(Duration::from_secs(10), || emulator.subscribe_calls() >= before + 2).await;
    assert!(reopened, "a silent stream is opened again");
    let stream = stream_status(&app).await;
    assert!(stream["stalls"].as_u64().unwrap() >= 1, "{stream}");
    assert!(stream["failed_attempts"].as_u64().unwrap() >= 1, "{stream}");
    assert!(stream["last_error"].as_str().unwrap().contains("neither item nor heartbeat"), "{stream}");
    assert!(inbox_metric(&app, "topic_relay_subscription_stalls_total").await >= 1.0);

    emulator.heal();
    let subscribed =
        eventually(Duration::from_secs(10), || emulator.subscribers("chat", "topic 1") > 0).await;
    assert!(subscribed);
    emulator.publish_as("chat", "topic 1", "flowing again", "user-1");
    assert!(processed(&emulator, 1).await);
    let stream = stream_status(&app).await;
    assert_eq!((stream["failed_attempts"].as_u64(), stream["last_error"].as_str()), (Some(0), None));
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reopened_stream_resumes_after_the_last_item_done_and_repeats_nothing() {
    let emulator = Emulator::start().await;
    let (app, _dir) = listening_relay(&emulator, "").await;
    for round in 0..5u64 {
        let sequence = emulator.publish_as("chat", "topic 1", &format!("item {round}"), "user-1");
        // Done, not only republished: the relay resumes after the last item done.
        let mut done = false;
        for _ in 0..500 {
            done = stream_status(&app).await["resume_at"]["sequence"] == sequence + 1;
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(done, "item {sequence} is done");
        assert_eq!(emulator.cut_streams(), 1);
        let back = eventually(Duration::from_secs(10), || emulator.subscribers("chat", "topic 1") > 0).await;
        assert!(back);
    }
    assert!(republished(&emulator).values().all(|times| *times == 1));
    assert_eq!(inbox_metric(&app, "topic_relay_subscription_repeats_total").await, 0.0, "asked for last + 1");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_subscriptions_opened_and_closed_leave_no_stream_slot_taken() {
    let emulator = Emulator::start().await;
    let backend = MomentoBackend::connect(&momento_settings(&emulator), "chat").unwrap();
    for round in 0..1_000 {
        let mut stream = backend.subscribe("chat", "topic 1", None).await.unwrap();
        if round % 100 == 0 {
            // The opening heartbeat: the stream is really open on the service.
            assert!(stream.next().await.is_some());
            assert_eq!(backend.open_streams(), 1);
        }
        drop(stream);
    }
    assert_eq!(backend.open_streams(), 0);
    assert_eq!(backend.stream_channels(), 1, "one channel carried them all, one at a time");
    let closed = eventually(Duration::from_secs(10), || emulator.subscribers("chat", "topic 1") == 0).await;
    assert!(closed, "the service saw every stream close");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_concurrency_a_topics_items_run_side_by_side_and_each_is_done_once() {
    let emulator = Emulator::start().await;
    let (app, _dir) = listening_relay(&emulator, "concurrency = 8").await;
    for n in 0..200 {
        emulator.publish_as("chat", "topic 1", &format!("item {n}"), &format!("user-{n}"));
    }
    assert!(processed(&emulator, 200).await, "{} of 200", republished(&emulator).len());
    emulator.cut_streams();
    let back = eventually(Duration::from_secs(10), || emulator.subscribers("chat", "topic 1") > 0).await;
    assert!(back);
    for n in 200..250 {
        emulator.publish_as("chat", "topic 1", &format!("item {n}"), &format!("user-{n}"));
    }
    assert!(processed(&emulator, 250).await, "{} of 250", republished(&emulator).len());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let done = republished(&emulator);
    assert_eq!(done.len(), 250);
    assert!(done.values().all(|times| *times == 1), "an item ran twice");
    app.stop().await.unwrap();
}
