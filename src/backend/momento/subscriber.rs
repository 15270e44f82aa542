//! Topic subscriptions through the SDK, around two of its habits:
//!
//! - Each `TopicClient` counts the streams it opened and refuses new ones at 400, but never
//!   counts one down: not when it ends, not even when opening it failed. A relay that
//!   resubscribes for days would reach the cap and never subscribe again. So subscriptions
//!   get their own client, replaced by a fresh one well before the cap; streams already open
//!   keep the old one's connections for as long as they last.
//! - After a broken stream the SDK resubscribes by itself at the last item it received,
//!   which then arrives twice. The caller skips it by its sequence number.
//! - When resubscribing fails, the SDK tries again at once, without end and without a word.
//!   [`LoopBreaker`] ends such a stream, so that the relay subscribes again with backoff.

use std::sync::Mutex;

use futures::StreamExt;
use momento::TopicClient;
use momento::topics::{SubscribeRequest, SubscriptionValue, ValueKind};

use super::resubscribe_loop::LoopBreaker;
use crate::backend::{BackendError, ItemStream, ItemValue, Position, TopicItem};

/// Subscriptions opened on one client before it is replaced; the SDK refuses the 401st.
const SUBSCRIBES_PER_CLIENT: usize = 256;

/// Builds a fresh topic client.
pub type BuildClient = Box<dyn Fn() -> anyhow::Result<TopicClient> + Send + Sync>;

/// Opens subscriptions, on a client replaced before the SDK's stream cap.
pub struct Subscriber {
    build: BuildClient,
    current: Mutex<Option<(TopicClient, usize)>>,
}

impl Subscriber {
    /// A subscriber whose clients come from `build`, the first on first use.
    pub fn new(build: BuildClient) -> Self {
        Subscriber { build, current: Mutex::new(None) }
    }

    /// The client for the next subscription, replacing a used-up one.
    fn client(&self) -> Result<TopicClient, BackendError> {
        let mut current = self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if current.as_ref().is_none_or(|(_, opened)| *opened >= SUBSCRIBES_PER_CLIENT) {
            let client = (self.build)().map_err(|error| {
                BackendError::Unavailable(format!("cannot build a topic client: {error:#}"))
            })?;
            if current.is_some() {
                tracing::debug!("a fresh topic client takes over new subscriptions");
            }
            *current = Some((client, 0));
        }
        let (client, opened) = current.as_mut().expect("just filled");
        *opened += 1;
        Ok(client.clone())
    }

    /// Subscribes to `topic` in `cache`, from `resume` when given.
    pub async fn subscribe(
        &self,
        cache: &str,
        topic: &str,
        resume: Option<Position>,
    ) -> Result<ItemStream, BackendError> {
        let client = self.client()?;
        let request = SubscribeRequest::new(
            cache,
            topic,
            resume.map(|position| position.sequence),
            resume.map(|position| position.page),
        );
        let subscription = client.send_request(request).await.map_err(|error| super::classify(&error))?;
        Ok(LoopBreaker::new(subscription).map(topic_item).boxed())
    }

    /// Subscriptions opened on the current client.
    #[cfg(test)]
    fn opened_on_current(&self) -> Option<usize> {
        let current = self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        current.as_ref().map(|(_, opened)| *opened)
    }
}

fn topic_item(value: SubscriptionValue) -> TopicItem {
    TopicItem {
        position: Position { page: value.topic_sequence_page, sequence: value.topic_sequence_number },
        publisher_id: value.publisher_id,
        value: match value.kind {
            ValueKind::Text(text) => ItemValue::Text(text),
            ValueKind::Binary(bytes) => ItemValue::Binary(bytes),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_is_replaced_before_the_sdks_stream_cap() {
        let credentials = momento::CredentialProvider::from_api_key_v2(
            concat!(
                "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9",
                ".eyJ0IjoiZyIsImp0aSI6ImVtdWxhdG9yIn0",
                ".ZW11bGF0b3Itc2lnbmF0dXJl"
            ),
            "emulator.invalid",
        )
        .unwrap()
        .insecure_endpoint_override("http://127.0.0.1:9");
        let built = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = built.clone();
        let subscriber = Subscriber::new(Box::new(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(TopicClient::builder()
                .configuration(momento::topics::configurations::Laptop::latest())
                .credential_provider(credentials.clone())
                .build()?)
        }));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let _guard = runtime.enter();
        for _ in 0..SUBSCRIBES_PER_CLIENT * 2 + 1 {
            subscriber.client().unwrap();
        }
        assert_eq!(built.load(std::sync::atomic::Ordering::Relaxed), 3);
        assert_eq!(subscriber.opened_on_current(), Some(1));
    }
}
