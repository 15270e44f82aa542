//! The durable spool: an embedded redb database on local disk. One writer thread applies
//! every change; it takes all the changes waiting at once into one transaction and one
//! fsync (group commit), and only then tells each caller its change is safe.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use tokio::sync::{mpsc, oneshot};

use super::record::{DeadLetter, SpooledEvent};

/// Pending events, by (when they are due, id).
const EVENTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("events");
/// Dead letters, by id.
const DEAD_LETTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");

/// Changes committed together at most.
const MAX_BATCH: usize = 1024;

/// Where a pending event sits: when it is due, and its id.
pub type EventKey = (u64, u64);

/// Why the spool refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpoolError {
    /// It holds `delivery.max_spooled_events` already.
    #[error("the spool is full")]
    Full,
    /// The disk refused the write, or the spool is closed.
    #[error("the spool cannot be written: {0}")]
    Storage(String),
    /// No dead letter has that id.
    #[error("no dead letter has id {0}")]
    NoSuchDeadLetter(u64),
}

enum Change {
    Insert {
        event: SpooledEvent,
        due_ms: u64,
    },
    Reschedule {
        key: EventKey,
        event: SpooledEvent,
        due_ms: u64,
    },
    Remove {
        key: EventKey,
    },
    Bury {
        key: Option<EventKey>,
        letter: DeadLetter,
    },
    Replay {
        id: u64,
        due_ms: u64,
    },
    Purge {
        id: Option<u64>,
    },
    /// Commit what is queued before it, then stop the writer and release the lock.
    Close,
}

/// What a change returns: the id of an inserted or replayed event, or the number purged.
type Reply = oneshot::Sender<Result<u64, SpoolError>>;

/// Counts kept by the writer, readable without touching the disk.
#[derive(Default)]
struct Counts {
    events: AtomicU64,
    dead_letters: AtomicU64,
    commits: AtomicU64,
}

/// The open database, shared by readers and the writer; emptied when the spool closes, so
/// the file (and its lock) is released once the last reader is done.
type DatabaseSlot = Arc<RwLock<Option<Arc<Database>>>>;

/// A handle on the spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    database: DatabaseSlot,
    changes: mpsc::UnboundedSender<(Change, Reply)>,
    counts: Arc<Counts>,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, takes its lock, and starts the writer thread.
    /// Returns the handle and the writer thread, which ends once every handle is dropped
    /// and every queued change is committed.
    pub fn open(dir: &Path, max_events: u64) -> anyhow::Result<(Spool, std::thread::JoinHandle<()>)> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the spool directory {}", dir.display()))?;
        let path = dir.join("spool.redb");
        let database = Database::create(&path).map_err(|error| match error {
            DatabaseError::DatabaseAlreadyOpen => {
                anyhow::anyhow!("the spool {} is in use by another topic-relay process", path.display())
            }
            other => anyhow::Error::new(other).context(format!("cannot open the spool {}", path.display())),
        })?;
        let database = Arc::new(database);
        let (counts, next_id) = initial_state(&database)?;
        let counts = Arc::new(counts);
        let (changes, receiver) = mpsc::unbounded_channel();
        let database: DatabaseSlot = Arc::new(RwLock::new(Some(database)));
        let writer = Writer { database: database.clone(), counts: counts.clone(), max_events, next_id };
        let thread = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(receiver))
            .context("cannot start the spool writer")?;
        Ok((Spool { database, changes, counts }, thread))
    }

    async fn change(&self, change: Change) -> Result<u64, SpoolError> {
        let (reply, answer) = oneshot::channel();
        self.changes.send((change, reply)).map_err(|_| SpoolError::Storage("the spool is closed".into()))?;
        answer.await.map_err(|_| SpoolError::Storage("the spool writer stopped".into()))?
    }

    /// Stores a new event, durably; returns its key.
    pub async fn insert(&self, event: SpooledEvent, due_ms: u64) -> Result<EventKey, SpoolError> {
        self.change(Change::Insert { event, due_ms }).await.map(|id| (due_ms, id))
    }

    /// Replaces a pending event and moves it to a new due time; returns its new key.
    pub async fn reschedule(
        &self,
        key: EventKey,
        event: SpooledEvent,
        due_ms: u64,
    ) -> Result<EventKey, SpoolError> {
        self.change(Change::Reschedule { key, event, due_ms }).await.map(|id| (due_ms, id))
    }

    /// Forgets a pending event: it was delivered.
    pub async fn remove(&self, key: EventKey) -> Result<(), SpoolError> {
        self.change(Change::Remove { key }).await.map(drop)
    }

    /// Moves a pending event (or, with no key, a new one) to the dead letters; returns its id.
    pub async fn bury(&self, key: Option<EventKey>, letter: DeadLetter) -> Result<u64, SpoolError> {
        self.change(Change::Bury { key, letter }).await
    }

    /// Moves a dead letter back to the pending events, due at `due_ms`, with its attempts
    /// reset; returns its id.
    pub async fn replay(&self, id: u64, due_ms: u64) -> Result<u64, SpoolError> {
        self.change(Change::Replay { id, due_ms }).await
    }

    /// Deletes one dead letter, or all of them; returns how many went.
    pub async fn purge(&self, id: Option<u64>) -> Result<u64, SpoolError> {
        self.change(Change::Purge { id }).await
    }

    /// Commits every change queued so far, then stops the writer and releases the spool's
    /// lock. Later changes fail with `Storage`.
    pub async fn close(&self) -> Result<(), SpoolError> {
        self.change(Change::Close).await.map(drop)
    }

    /// Pending events.
    pub fn event_count(&self) -> u64 {
        self.counts.events.load(Ordering::Relaxed)
    }

    /// Dead letters.
    pub fn dead_letter_count(&self) -> u64 {
        self.counts.dead_letters.load(Ordering::Relaxed)
    }

    /// Transactions committed (each one fsync) since the spool was opened.
    pub fn commit_count(&self) -> u64 {
        self.counts.commits.load(Ordering::Relaxed)
    }

    /// Up to `limit` pending events due by `now_ms`, soonest first, skipping `skip`.
    pub fn due(
        &self,
        now_ms: u64,
        limit: usize,
        skip: &dyn Fn(u64) -> bool,
    ) -> anyhow::Result<Vec<(EventKey, SpooledEvent)>> {
        self.read_events(..=(now_ms, u64::MAX), limit, skip)
    }

    /// Up to `limit` pending events, soonest first.
    pub fn pending(&self, limit: usize) -> anyhow::Result<Vec<(EventKey, SpooledEvent)>> {
        self.read_events(.., limit, &|_| false)
    }

    fn database(&self) -> anyhow::Result<Arc<Database>> {
        let slot = self.database.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.clone().ok_or_else(|| anyhow::anyhow!("the spool is closed"))
    }

    fn read_events(
        &self,
        range: impl std::ops::RangeBounds<(u64, u64)>,
        limit: usize,
        skip: &dyn Fn(u64) -> bool,
    ) -> anyhow::Result<Vec<(EventKey, SpooledEvent)>> {
        let read = self.database()?.begin_read()?;
        let table = read.open_table(EVENTS)?;
        let mut found = Vec::new();
        for entry in table.range(range)? {
            let (key, value) = entry?;
            let key = key.value();
            if skip(key.1) {
                continue;
            }
            found.push((key, serde_json::from_slice(value.value())?));
            if found.len() >= limit {
                break;
            }
        }
        Ok(found)
    }

    /// Up to `limit` dead letters, oldest first.
    pub fn dead_letters(&self, limit: usize) -> anyhow::Result<Vec<(u64, DeadLetter)>> {
        let read = self.database()?.begin_read()?;
        let table = read.open_table(DEAD_LETTERS)?;
        let mut found = Vec::new();
        for entry in table.iter()?.take(limit) {
            let (id, value) = entry?;
            found.push((id.value(), serde_json::from_slice(value.value())?));
        }
        Ok(found)
    }

    /// One dead letter.
    pub fn dead_letter(&self, id: u64) -> anyhow::Result<Option<DeadLetter>> {
        let read = self.database()?.begin_read()?;
        let table = read.open_table(DEAD_LETTERS)?;
        Ok(match table.get(id)? {
            Some(value) => Some(serde_json::from_slice(value.value())?),
            None => None,
        })
    }
}

/// Creates the tables if needed; counts what they hold and finds the next free id.
fn initial_state(database: &Database) -> anyhow::Result<(Counts, u64)> {
    let write = database.begin_write()?;
    let (events, dead_letters, last_id) = {
        let events = write.open_table(EVENTS)?;
        let dead = write.open_table(DEAD_LETTERS)?;
        let mut last_id = dead.last()?.map_or(0, |(id, _)| id.value());
        for entry in events.iter()? {
            last_id = last_id.max(entry?.0.value().1);
        }
        (events.len()?, dead.len()?, last_id)
    };
    write.commit()?;
    let counts = Counts {
        events: AtomicU64::new(events),
        dead_letters: AtomicU64::new(dead_letters),
        commits: AtomicU64::new(0),
    };
    Ok((counts, last_id + 1))
}

/// Owns all writes. Lives on its own thread because redb's commits block on fsync.
struct Writer {
    database: DatabaseSlot,
    counts: Arc<Counts>,
    max_events: u64,
    next_id: u64,
}

/// How a committed change moves the counts.
#[derive(Default, Clone, Copy)]
struct Delta {
    events: i64,
    dead_letters: i64,
}

impl Writer {
    fn run(mut self, mut receiver: mpsc::UnboundedReceiver<(Change, Reply)>) {
        while let Some(first) = receiver.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH && !matches!(batch.last(), Some((Change::Close, _))) {
                match receiver.try_recv() {
                    Ok(change) => batch.push(change),
                    Err(_) => break,
                }
            }
            let close = match batch.last() {
                Some((Change::Close, _)) => batch.pop().map(|(_, reply)| reply),
                _ => None,
            };
            if !batch.is_empty() {
                self.commit(batch);
            }
            if let Some(reply) = close {
                receiver.close();
                self.database.write().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
                let _ = reply.send(Ok(0));
                return;
            }
        }
    }

    fn commit(&mut self, batch: Vec<(Change, Reply)>) {
        let mut results = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let database = self.database.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let Some(database) = database else { return };
        let outcome = database.begin_write().map_err(storage).and_then(|write| {
            let mut pending = Delta::default();
            {
                let mut events = write.open_table(EVENTS).map_err(storage)?;
                let mut dead = write.open_table(DEAD_LETTERS).map_err(storage)?;
                for (change, reply) in batch {
                    let current = self.counts.events.load(Ordering::Relaxed) as i64 + pending.events;
                    // A storage error aborts the whole batch; a refused change fails alone.
                    let result = self.apply(change, current as u64, &mut events, &mut dead)?;
                    if let Ok((_, delta)) = &result {
                        pending.events += delta.events;
                        pending.dead_letters += delta.dead_letters;
                    }
                    results.push(result.map(|(value, _)| value));
                    replies.push(reply);
                }
            }
            write.commit().map_err(storage)?;
            Ok(pending)
        });
        match outcome {
            Ok(delta) => {
                self.counts.commits.fetch_add(1, Ordering::Relaxed);
                add(&self.counts.events, delta.events);
                add(&self.counts.dead_letters, delta.dead_letters);
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, "the spool could not commit");
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    fn apply(
        &mut self,
        change: Change,
        events_now: u64,
        events: &mut redb::Table<(u64, u64), &[u8]>,
        dead: &mut redb::Table<u64, &[u8]>,
    ) -> Result<Result<(u64, Delta), SpoolError>, SpoolError> {
        Ok(Ok(match change {
            Change::Insert { event, due_ms } => {
                if events_now >= self.max_events {
                    return Ok(Err(SpoolError::Full));
                }
                let id = self.take_id();
                events.insert((due_ms, id), encode(&event)?.as_slice()).map_err(storage)?;
                (id, Delta { events: 1, dead_letters: 0 })
            }
            Change::Reschedule { key, event, due_ms } => {
                let bytes = encode(&event)?;
                let existed = events.remove(key).map_err(storage)?.is_some();
                events.insert((due_ms, key.1), bytes.as_slice()).map_err(storage)?;
                (key.1, Delta { events: i64::from(!existed), dead_letters: 0 })
            }
            Change::Remove { key } => {
                let removed = events.remove(key).map_err(storage)?.is_some();
                (key.1, Delta { events: -i64::from(removed), dead_letters: 0 })
            }
            Change::Bury { key, letter } => {
                let bytes = encode(&letter)?;
                let (id, removed) = match key {
                    Some(key) => (key.1, events.remove(key).map_err(storage)?.is_some()),
                    None => (self.take_id(), false),
                };
                dead.insert(id, bytes.as_slice()).map_err(storage)?;
                (id, Delta { events: -i64::from(removed), dead_letters: 1 })
            }
            Change::Replay { id, due_ms } => {
                let Some(stored) = dead.get(id).map_err(storage)? else {
                    return Ok(Err(SpoolError::NoSuchDeadLetter(id)));
                };
                let letter: DeadLetter = serde_json::from_slice(stored.value()).map_err(storage)?;
                drop(stored);
                let event = SpooledEvent { attempts: 0, ..letter.event };
                events.insert((due_ms, id), encode(&event)?.as_slice()).map_err(storage)?;
                dead.remove(id).map_err(storage)?;
                (id, Delta { events: 1, dead_letters: -1 })
            }
            Change::Purge { id: Some(id) } => match dead.remove(id).map_err(storage)? {
                Some(_) => (1, Delta { events: 0, dead_letters: -1 }),
                None => return Ok(Err(SpoolError::NoSuchDeadLetter(id))),
            },
            Change::Close => unreachable!("Close is handled by the writer loop"),
            Change::Purge { id: None } => {
                let purged = dead.len().map_err(storage)?;
                dead.retain(|_, _| false).map_err(storage)?;
                (purged, Delta { events: 0, dead_letters: -(purged as i64) })
            }
        }))
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, SpoolError> {
    serde_json::to_vec(value).map_err(|error| SpoolError::Storage(error.to_string()))
}

fn storage(error: impl std::fmt::Display) -> SpoolError {
    SpoolError::Storage(error.to_string())
}

fn add(counter: &AtomicU64, delta: i64) {
    if delta >= 0 {
        counter.fetch_add(delta as u64, Ordering::Relaxed);
    } else {
        counter.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Message;

    fn event(text: &str) -> SpooledEvent {
        SpooledEvent {
            webhook: "chat".into(),
            route: "shout".into(),
            message: Message::new("chat", "topic 1", text),
            next_step: 1,
            attempts: 1,
            received_ms: 5,
            last_error: None,
        }
    }

    fn letter(text: &str) -> DeadLetter {
        DeadLetter { event: event(text), dead_at_ms: 9, reason: "gave up".into() }
    }

    #[tokio::test]
    async fn events_come_back_when_due_and_leave_when_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), 10).unwrap();
        let later = spool.insert(event("later"), 200).await.unwrap();
        let soon = spool.insert(event("soon"), 100).await.unwrap();
        assert_eq!(spool.event_count(), 2);
        let due = spool.due(150, 10, &|_| false).unwrap();
        assert_eq!(due, vec![(soon, event("soon"))]);
        let moved = spool.reschedule(soon, event("soon again"), 300).await.unwrap();
        assert_eq!(spool.due(250, 10, &|_| false).unwrap(), vec![(later, event("later"))]);
        spool.remove(later).await.unwrap();
        spool.remove(moved).await.unwrap();
        assert_eq!(spool.event_count(), 0);
        assert!(spool.pending(10).unwrap().is_empty());
    }

    #[tokio::test]
    async fn dead_letters_can_be_replayed_and_purged() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), 10).unwrap();
        let key = spool.insert(event("doomed"), 100).await.unwrap();
        let id = spool.bury(Some(key), letter("doomed")).await.unwrap();
        assert_eq!((spool.event_count(), spool.dead_letter_count()), (0, 1));
        assert_eq!(spool.dead_letter(id).unwrap().unwrap().reason, "gave up");
        spool.replay(id, 50).await.unwrap();
        assert_eq!((spool.event_count(), spool.dead_letter_count()), (1, 0));
        let (_, replayed) = spool.due(60, 1, &|_| false).unwrap().remove(0);
        assert_eq!(replayed.attempts, 0, "a replay starts its attempts afresh");
        assert_eq!(spool.replay(id, 50).await, Err(SpoolError::NoSuchDeadLetter(id)));
        spool.bury(None, letter("a")).await.unwrap();
        spool.bury(None, letter("b")).await.unwrap();
        assert_eq!(spool.purge(None).await.unwrap(), 2);
        assert_eq!(spool.dead_letter_count(), 0);
    }

    #[tokio::test]
    async fn a_full_spool_refuses_new_events_and_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), 1).unwrap();
        spool.insert(event("first"), 1).await.unwrap();
        assert_eq!(spool.insert(event("second"), 1).await, Err(SpoolError::Full));
        assert_eq!(spool.pending(10).unwrap().len(), 1);
    }

    #[tokio::test]
    async fn what_was_committed_is_there_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, writer) = Spool::open(dir.path(), 10).unwrap();
        let key = spool.insert(event("kept"), 7).await.unwrap();
        let id = spool.bury(None, letter("dead")).await.unwrap();
        drop(spool);
        writer.join().unwrap();
        let (reopened, _) = Spool::open(dir.path(), 10).unwrap();
        assert_eq!((reopened.event_count(), reopened.dead_letter_count()), (1, 1));
        assert_eq!(reopened.pending(10).unwrap(), vec![(key, event("kept"))]);
        let next = reopened.insert(event("new"), 7).await.unwrap();
        assert!(next.1 > id && next.1 > key.1, "ids are never reused");
    }

    #[tokio::test]
    async fn closing_commits_what_is_queued_and_releases_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, writer) = Spool::open(dir.path(), 10).unwrap();
        let queued = spool.insert(event("queued"), 1);
        let (inserted, closed) = tokio::join!(queued, spool.close());
        inserted.unwrap();
        closed.unwrap();
        assert!(matches!(spool.insert(event("late"), 1).await, Err(SpoolError::Storage(_))));
        writer.join().unwrap();
        let (reopened, _) = Spool::open(dir.path(), 10).expect("the lock was released");
        assert_eq!(reopened.event_count(), 1);
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_spool() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Spool::open(dir.path(), 10).unwrap();
        let second = Spool::open(dir.path(), 10).err().expect("the lock is held");
        assert!(second.to_string().contains("in use"), "{second}");
    }

    #[tokio::test]
    async fn concurrent_inserts_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open(dir.path(), 10_000).unwrap();
        let inserts = (0..200).map(|n| {
            let spool = spool.clone();
            tokio::spawn(async move { spool.insert(event(&n.to_string()), 1).await })
        });
        for insert in futures::future::join_all(inserts).await {
            insert.unwrap().unwrap();
        }
        assert_eq!(spool.event_count(), 200);
        assert!(spool.commit_count() < 200, "{} commits for 200 inserts", spool.commit_count());
    }
}
