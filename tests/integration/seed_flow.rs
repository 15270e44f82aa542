//! Momento's asynchronous-processing pattern on the embedded backend: a signed event on
//! `topic 1` comes out uppercased on `topic 2`, where a subscriber sees it.

use crate::support;

use std::time::Duration;

use support::spawn_app;

#[tokio::test]
async fn a_signed_event_on_topic_1_arrives_uppercased_on_the_topic_2_stream() {
    let app = spawn_app().await;
    let mut topic_2 = app.subscribe("chat", "topic 2").await;
    let mut topic_1 = app.subscribe("chat", "topic 1").await;

    let response = app.post_event("chat", "topic 1", "hello, momento").await;

    assert_eq!(response.status(), 200);
    assert_eq!(topic_2.next_message(Duration::from_secs(5)).await.as_deref(), Some("HELLO, MOMENTO"));
    assert_eq!(
        topic_1.next_message(Duration::from_millis(200)).await,
        None,
        "nothing is published back on topic 1"
    );
}

#[tokio::test]
async fn events_that_fail_verification_publish_nothing() {
    let app = spawn_app().await;
    let mut topic_2 = app.subscribe("chat", "topic 2").await;
    let body = support::event("chat", "topic 1", "forged");

    let response = app.post("/webhook", body, Some(&"ab".repeat(32))).await;

    assert_eq!(response.status(), 401);
    assert_eq!(topic_2.next_message(Duration::from_millis(300)).await, None);
}

#[tokio::test]
async fn any_topic_can_be_watched_on_the_embedded_backend() {
    let app = spawn_app().await;
    let other_topic = app.client.get(app.url("/v1/subscribe/chat/anything")).send().await.unwrap();
    assert_eq!(other_topic.status(), 200, "any topic can be watched");
}

#[tokio::test]
async fn odd_names_and_carriage_returns_do_not_break_the_subscribe_stream() {
    let app = spawn_app().await;
    let odd = app.client.get(app.url("/v1/subscribe/chat/a%0Ab%0Dc")).send().await.unwrap();
    assert_eq!(odd.status(), 200);
    let mut topic_2 = app.subscribe("chat", "topic 2").await;

    assert_eq!(app.post_event("chat", "topic 1", "line one\r\nline two").await.status(), 200);

    assert_eq!(topic_2.next_message(Duration::from_secs(5)).await.as_deref(), Some("LINE ONE\nLINE TWO"));
}
