//! Checkpoints: for each (subscription, topic), the first item not yet done. Kept in two
//! places: a file beside the spool, so a restarted relay resumes where it stopped, and the
//! subscription's cache, so a replica taking over a topic resumes where the last owner
//! stopped. Each stream writes its own on a timer and when it stops, never per item.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::progress::{Progress, lock};
use super::report::StreamReport;

use crate::backend::{Backend, BackendError, Position};

/// How long a checkpoint stays in the cache without being rewritten: far longer than
/// Momento keeps a topic's items, so it outlives any item it can point at.
const CACHE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The file's name, in the spool directory.
const FILE_NAME: &str = "subscription-checkpoints.json";

/// The checkpoints of every stream in this relay.
#[derive(Clone)]
pub struct Checkpoints {
    backend: Arc<dyn Backend>,
    file: PathBuf,
    local: Arc<Mutex<BTreeMap<String, Position>>>,
    /// Held while the file is written, so that two streams' writes never interleave and an
    /// older snapshot never lands after a newer one.
    writing: Arc<Mutex<()>>,
}

/// Where one stream's checkpoint lives.
#[derive(Clone, Debug)]
pub struct CheckpointKey {
    /// The subscription's cache, which holds the shared copy.
    pub cache: String,
    /// The subscription's name.
    pub subscription: String,
    /// The topic.
    pub topic: String,
}

impl CheckpointKey {
    fn cache_key(&self) -> String {
        format!("topic-relay:checkpoint:{}:{}", self.subscription, self.topic)
    }

    fn file_key(&self) -> String {
        format!("{}/{}", self.subscription, self.topic)
    }
}

impl Checkpoints {
    /// Reads the file in `dir`, if there is one.
    pub fn open(dir: &Path, backend: Arc<dyn Backend>) -> anyhow::Result<Self> {
        let file = dir.join(FILE_NAME);
        let local = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("cannot read the checkpoints in {}", file.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(error) => return Err(error).with_context(|| format!("cannot read {}", file.display())),
        };
        Ok(Checkpoints { backend, file, local: Arc::new(Mutex::new(local)), writing: Arc::default() })
    }

    /// The furthest of the local and the shared checkpoint. The shared one is ahead when
    /// another replica owned the topic since; the local one when the last shared write failed.
    pub async fn load(&self, key: &CheckpointKey) -> Option<Position> {
        let local = self.lock().get(&key.file_key()).copied();
        let shared = match self.backend.get(&key.cache, &key.cache_key()).await {
            Ok(value) => value.and_then(|bytes| parse(&bytes)),
            Err(error) => {
                tracing::warn!(subscription = key.subscription, topic = key.topic, %error,
                    "cannot read the shared checkpoint; resuming from the local one");
                None
            }
        };
        local.max(shared)
    }

    /// Writes `position` to both places; the file is flushed to disk on a blocking thread.
    pub async fn store(&self, key: &CheckpointKey, position: Position) -> Result<(), BackendError> {
        let (this, owned_key) = (self.clone(), key.clone());
        let stored = tokio::task::spawn_blocking(move || this.store_locally(&owned_key, position))
            .await
            .unwrap_or_else(|joined| Err(anyhow::anyhow!("the checkpoint writer failed: {joined}")));
        if let Err(error) = stored {
            tracing::warn!(
                subscription = key.subscription,
                topic = key.topic,
                error = format!("{error:#}"),
                "cannot write the local checkpoint"
            );
        }
        let value = format!("{}:{}", position.page, position.sequence);
        self.backend.set(&key.cache, &key.cache_key(), value.as_bytes(), Some(CACHE_TTL)).await
    }

    fn store_locally(&self, key: &CheckpointKey, position: Position) -> anyhow::Result<()> {
        let _writing = self.writing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let snapshot = {
            let mut local = self.lock();
            local.insert(key.file_key(), position);
            serde_json::to_vec_pretty(&*local)?
        };
        write_durably(&self.file, &snapshot)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Position>> {
        self.local.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Replaces `file` with `bytes` so that a crash or a power cut leaves the old file or the
/// new, never half of one, and the new one is on disk before this returns: written aside,
/// flushed, renamed over the old one, and the folder flushed, so that the rename is too.
fn write_durably(file: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let folder = file.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder)?;
    let partial = file.with_extension("json.partial");
    let mut written = std::fs::File::create(&partial)?;
    written.write_all(bytes)?;
    written.sync_all().with_context(|| format!("cannot flush {}", partial.display()))?;
    drop(written);
    std::fs::rename(&partial, file)?;
    std::fs::File::open(folder)
        .and_then(|folder| folder.sync_all())
        .with_context(|| format!("cannot flush the folder {}", folder.display()))?;
    Ok(())
}

fn parse(bytes: &[u8]) -> Option<Position> {
    let (page, sequence) = std::str::from_utf8(bytes).ok()?.split_once(':')?;
    Some(Position { page: page.parse().ok()?, sequence: sequence.parse().ok()? })
}

/// Writes the checkpoint every `interval` when it moved.
pub async fn write_checkpoints(
    checkpoints: Checkpoints,
    key: CheckpointKey,
    progress: Arc<Mutex<Progress>>,
    interval: std::time::Duration,
    report: Arc<Mutex<StreamReport>>,
    stop: CancellationToken,
) {
    let mut written = None;
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let resume_at = lock(&progress).resume_at();
        report.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).resume_at = resume_at;
        if resume_at == written {
            continue;
        }
        if let Some(position) = resume_at {
            match checkpoints.store(&key, position).await {
                Ok(()) => written = resume_at,
                Err(error) => {
                    tracing::debug!(topic = key.topic, %error, "cannot write the shared checkpoint; retrying")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    fn key() -> CheckpointKey {
        CheckpointKey { cache: "chat".into(), subscription: "inbox".into(), topic: "topic 1".into() }
    }

    #[tokio::test]
    async fn a_checkpoint_is_read_back_from_the_file_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path(), Arc::new(MemoryBackend::new())).unwrap();
        checkpoints.store(&key(), Position { page: 1, sequence: 7 }).await.unwrap();
        // A new process: the file survives, the embedded cache does not.
        let reopened = Checkpoints::open(dir.path(), Arc::new(MemoryBackend::new())).unwrap();
        assert_eq!(reopened.load(&key()).await, Some(Position { page: 1, sequence: 7 }));
    }

    #[test]
    fn a_durable_write_replaces_the_file_whole_and_leaves_nothing_aside() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nested").join(FILE_NAME);
        write_durably(&file, b"{\"a\": 1}").unwrap();
        write_durably(&file, b"{}").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"{}");
        let left: Vec<_> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(left, [std::ffi::OsString::from(FILE_NAME)]);
    }

    #[tokio::test]
    async fn the_shared_checkpoint_wins_when_another_replica_got_further() {
        let backend = Arc::new(MemoryBackend::new());
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path(), backend.clone()).unwrap();
        checkpoints.store(&key(), Position { page: 1, sequence: 7 }).await.unwrap();
        backend.set("chat", &key().cache_key(), b"1:42", None).await.unwrap();
        assert_eq!(checkpoints.load(&key()).await, Some(Position { page: 1, sequence: 42 }));
    }
}
