//! Step kinds for tests, registered through the same extension point users have.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use topic_relay::backend::BackendError;
use topic_relay::event::Message;
use topic_relay::pipeline::{Flow, Processor, ProcessorRegistry, StepContext, StepError};

/// `{ sleep = { ms = 500 } }`: waits, then continues.
struct Sleep(Duration);

#[async_trait]
impl Processor for Sleep {
    async fn process(&self, _: &mut Message, _: &StepContext<'_>) -> Result<Flow, StepError> {
        tokio::time::sleep(self.0).await;
        Ok(Flow::Continue)
    }
}

/// `{ fail = { with = "unavailable" | "unauthorized" | "rejected" | "failed" } }`, or with
/// `"unavailable, then failed"` / `"unavailable, then panic"`: an outage on the first call
/// (so the event is spooled), then that on every later one.
struct Fail(String, AtomicUsize);

#[async_trait]
impl Processor for Fail {
    async fn process(&self, _: &mut Message, _: &StepContext<'_>) -> Result<Flow, StepError> {
        let later = self.1.fetch_add(1, Ordering::SeqCst) > 0;
        let with = match self.0.split_once(", then ") {
            Some((first, then)) => {
                if later {
                    then
                } else {
                    first
                }
            }
            None => self.0.as_str(),
        };
        Err(match with {
            "panic" => panic!("a test step panics"),
            "unavailable" => StepError::Backend(BackendError::Unavailable("test outage".into())),
            "unauthorized" => StepError::Backend(BackendError::Unauthorized("test key".into())),
            "rejected" => StepError::Rejected("test refusal".into()),
            _ => StepError::Failed("test failure".into()),
        })
    }
}

/// Registers `sleep` and `fail`.
pub fn register(registry: &mut ProcessorRegistry) {
    registry.register("sleep", |options, _| {
        let ms = options.get("ms").and_then(toml::Value::as_integer).ok_or("sleep needs ms")?;
        Ok(Arc::new(Sleep(Duration::from_millis(ms as u64))) as Arc<dyn Processor>)
    });
    registry.register("fail", |options, _| {
        let with = options.get("with").and_then(toml::Value::as_str).ok_or("fail needs with")?;
        Ok(Arc::new(Fail(with.to_owned(), AtomicUsize::new(0))) as Arc<dyn Processor>)
    });
}
