//! The HTTP server's threads: each serves the connections it accepted, so one held up by a
//! request does not hold up the others.

use crate::support;

use std::time::Duration;

use support::steps::GATE;
use support::{SEED_CONFIG, event, spawn_app_with};

#[tokio::test]
async fn a_request_holding_its_thread_does_not_hold_up_other_connections() {
    let config = format!(
        "{}\n[[routes]]\nname = \"held\"\nmatch = {{ topic = \"held\" }}\nsteps = [{{ hold_thread = {{}} }}]\n",
        SEED_CONFIG.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nthreads = 2")
    );
    let app = spawn_app_with(&config).await;
    let meanwhile = async {
        for _ in 0..200 {
            if GATE.held() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(GATE.held(), 1, "the held request reached its step");
        // A new connection, so that it cannot be one the held thread owns.
        let body = event("chat", "topic 1", "meanwhile");
        let sent = reqwest::Client::new()
            .post(app.url("/webhook"))
            .header("momento-signature", app.sign(&body))
            .body(body)
            .send();
        let answered = tokio::time::timeout(Duration::from_secs(10), sent).await;
        GATE.open();
        answered
    };
    let (held, answered) = tokio::join!(app.post_event("chat", "held", "hold on"), meanwhile);
    let answered = answered.expect("another connection is served while one thread is held");
    assert_eq!(answered.unwrap().status(), 200);
    assert_eq!(held.status(), 200, "the held request finishes once let go");
    app.stop().await.unwrap();
}
