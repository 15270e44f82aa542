//! Step kinds for tests, registered through the same extension point users have.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use topic_relay::backend::BackendError;
use topic_relay::event::Message;
use topic_relay::pipeline::{Flow, Processor, StepContext, StepError};
use topic_relay::processors::ProcessorRegistry;

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

/// Where `hold_thread` steps wait: they block the thread they run on, as heavy work that
/// never yields would, until the gate opens.
pub struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    held: AtomicUsize,
}

/// The gate of every `hold_thread` step.
pub static GATE: Gate = Gate { open: Mutex::new(false), opened: Condvar::new(), held: AtomicUsize::new(0) };

impl Gate {
    fn pass(&self) {
        self.held.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.opened.wait(open).unwrap();
        }
    }

    /// Steps that have reached the gate.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    /// Lets every waiting and later step through.
    pub fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

/// `{ hold_thread = {} }`: blocks its thread at [`GATE`] until the gate opens.
struct HoldThread;

#[async_trait]
impl Processor for HoldThread {
    async fn process(&self, _: &mut Message, _: &StepContext<'_>) -> Result<Flow, StepError> {
        GATE.pass();
        Ok(Flow::Continue)
    }
}

/// Registers `sleep`, `fail` and `hold_thread`.
pub fn register(registry: &mut ProcessorRegistry) {
    registry.register("sleep", |options, _| {
        let ms = options.get("ms").and_then(toml::Value::as_integer).ok_or("sleep needs ms")?;
        Ok(Arc::new(Sleep(Duration::from_millis(ms as u64))) as Arc<dyn Processor>)
    });
    registry.register("fail", |options, _| {
        let with = options.get("with").and_then(toml::Value::as_str).ok_or("fail needs with")?;
        Ok(Arc::new(Fail(with.to_owned(), AtomicUsize::new(0))) as Arc<dyn Processor>)
    });
    registry.register("hold_thread", |_, _| Ok(Arc::new(HoldThread) as Arc<dyn Processor>));
}
