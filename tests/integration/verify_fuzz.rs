//! Property tests over the way in: arbitrary bodies and headers never panic the relay, and
//! nothing unverified reaches a processor.

use crate::support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::Request;
use proptest::prelude::*;
use topic_relay::event::Message;
use topic_relay::pipeline::{Flow, Processor, StepContext, StepError};
use topic_relay::processors::ProcessorRegistry;
use topic_relay::startup::App;
use topic_relay::verify::sign;
use tower::ServiceExt;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"

[webhooks.chat]
secrets = ["test-secret"]

[[routes]]
name = "everything"
steps = ["count"]
"#;

/// Counts the messages that reach it.
struct Count(Arc<AtomicUsize>);

#[async_trait]
impl Processor for Count {
    async fn process(&self, _: &mut Message, _: &StepContext<'_>) -> Result<Flow, StepError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Flow::Continue)
    }
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: topic_relay::http::FrontDoor,
    reached: Arc<AtomicUsize>,
    _spool: tempfile::TempDir,
}

fn harness() -> Harness {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let reached = Arc::new(AtomicUsize::new(0));
    let mut registry = ProcessorRegistry::new();
    let counter = reached.clone();
    registry.register("count", move |_, _| Ok(Arc::new(Count(counter.clone())) as Arc<dyn Processor>));
    let spool = tempfile::tempdir().unwrap();
    let mut settings = support::settings(CONFIG);
    settings.delivery.spool_dir = spool.path().to_owned();
    let app = runtime.block_on(App::build_with(settings, registry)).unwrap();
    Harness { router: app.service(), runtime, reached, _spool: spool }
}

impl Harness {
    fn post(&self, body: Vec<u8>, signature: Option<String>) -> u16 {
        let mut request = Request::post("/webhook");
        if let Some(signature) = signature {
            request = request.header("momento-signature", signature);
        }
        let request = request.body(Body::from(body)).unwrap();
        self.runtime.block_on(self.router.clone().oneshot(request)).unwrap().status().as_u16()
    }
}

/// Headers of every shape: absent, any string, any 32 bytes as hex in either case.
fn header() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        "[ -~]{0,80}".prop_map(Some),
        proptest::array::uniform32(any::<u8>()).prop_map(|bytes| Some(const_hex::encode(bytes))),
        proptest::array::uniform32(any::<u8>()).prop_map(|bytes| Some(const_hex::encode_upper(bytes))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn unsigned_or_wrongly_signed_bytes_are_refused_401_and_reach_no_processor(
        body in proptest::collection::vec(any::<u8>(), 0..600),
        header in header(),
    ) {
        let harness = harness();
        let correct = sign(b"test-secret", &body);
        prop_assume!(header.as_deref().map(str::to_lowercase) != Some(correct));
        let status = harness.post(body, header);
        prop_assert_eq!(status, 401);
        prop_assert_eq!(harness.reached.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn correctly_signed_arbitrary_bytes_never_panic_and_only_events_reach_a_processor(
        body in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let harness = harness();
        let signature = sign(b"test-secret", &body);
        let status = harness.post(body, Some(signature));
        prop_assert!([400, 422].contains(&status), "status {}", status);
        prop_assert_eq!(harness.reached.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn correctly_signed_events_with_any_field_values_never_panic(
        cache in "\\PC{0,20}", topic in "\\PC{0,20}", text in "\\PC{0,200}", token_id in "\\PC{0,20}",
        publish_timestamp in any::<u64>(), fresh in any::<bool>(), sequence in any::<u64>(),
    ) {
        let harness = harness();
        let publish_timestamp = if fresh { topic_relay::accept::now_ms() } else { publish_timestamp };
        let body = serde_json::json!({
            "cache": cache, "topic": topic, "text": text, "token_id": token_id,
            "event_timestamp": publish_timestamp, "publish_timestamp": publish_timestamp,
            "topic_sequence_number": sequence,
        }).to_string().into_bytes();
        let signature = sign(b"test-secret", &body);
        let status = harness.post(body, Some(signature));
        prop_assert!([200, 422].contains(&status), "status {}", status);
        prop_assert_eq!(harness.reached.load(Ordering::SeqCst), usize::from(status == 200));
    }
}
