//! The durable spool: an embedded redb database on local disk (see `writer` for how changes
//! are committed). Readers use their own read transactions. Events being worked on are
//! claimed in memory, so that the inline path and the background worker never run the same
//! event at once.

mod writer;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use tokio::sync::{mpsc, oneshot};

use super::record::{DeadLetter, SpooledEvent};
use crate::metrics::histogram::BATCH_BUCKETS;
use crate::metrics::{Histogram, Metrics, duration_histogram};
use writer::{Change, DatabaseSlot, Writer};

/// Pending events, by (when they are due, id).
const EVENTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("events");
/// Dead letters, by id.
const DEAD_LETTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");
/// Bookkeeping: the next id.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_ID: &str = "next_id";

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
    /// No pending event has that id any more.
    #[error("no pending event has id {0}")]
    NoSuchEvent(u64),
    /// The record cannot be decoded (written by an incompatible version).
    #[error("record {0} cannot be read")]
    Unreadable(u64),
}

/// Counts kept by the writer, readable without touching the disk.
struct Counts {
    events: AtomicU64,
    dead_letters: AtomicU64,
    commits: AtomicU64,
    /// Time of each commit (one transaction, one fsync).
    commit_duration: Histogram,
    /// Changes carried by each commit.
    commit_batch: Histogram,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            events: AtomicU64::new(0),
            dead_letters: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            commit_duration: duration_histogram(),
            commit_batch: Histogram::new(BATCH_BUCKETS),
        }
    }
}

/// A handle on the spool; cheap to clone.
#[derive(Clone)]
pub struct Spool {
    database: DatabaseSlot,
    changes: mpsc::UnboundedSender<(Change, writer::Reply)>,
    counts: Arc<Counts>,
    claimed: Arc<Mutex<HashSet<u64>>>,
    /// Records already reported as unreadable, so that each is logged once, not every poll.
    unreadable: Arc<Mutex<HashSet<u64>>>,
}

/// An event claimed for work; the claim ends when this is dropped, even in a panic.
pub struct Claim {
    id: u64,
    claimed: Arc<Mutex<HashSet<u64>>>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.claimed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&self.id);
    }
}

/// The database file in a spool's directory.
const FILE_NAME: &str = "spool.redb";

impl Spool {
    /// Opens (or creates) the spool in `dir` and starts the writer thread. Returns the handle
    /// and the writer thread, which ends when the spool is closed.
    pub fn open(dir: &Path, max_events: u64) -> anyhow::Result<(Spool, std::thread::JoinHandle<()>)> {
        match Self::try_open(dir, max_events)? {
            Some(opened) => Ok(opened),
            None => anyhow::bail!(
                "the spool {} is in use by another topic-relay process",
                dir.join(FILE_NAME).display()
            ),
        }
    }

    /// Opens the first of `slots` spools under `dir` (`slot-0`, `slot-1`, ...) that no other
    /// process holds, so that relays sharing one volume each take a spool of their own, and
    /// a relay that replaces a dead one takes over its spool and the events in it. Returns the
    /// slot's directory too.
    pub fn open_free_slot(
        dir: &Path,
        slots: u32,
        max_events: u64,
    ) -> anyhow::Result<(Spool, std::thread::JoinHandle<()>, PathBuf)> {
        for slot in 0..slots {
            let slot_dir = dir.join(format!("slot-{slot}"));
            if let Some((spool, writer)) = Self::try_open(&slot_dir, max_events)? {
                return Ok((spool, writer, slot_dir));
            }
        }
        anyhow::bail!(
            "all {slots} spool slots under {} are in use by other topic-relay processes; raise \
             delivery.spool_slots above the number of relays sharing the volume",
            dir.display()
        )
    }

    /// Opens the spool in `dir`, or `None` when another process holds it.
    fn try_open(dir: &Path, max_events: u64) -> anyhow::Result<Option<(Spool, std::thread::JoinHandle<()>)>> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the spool directory {}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        let database = match Database::create(&path) {
            Ok(database) => database,
            Err(DatabaseError::DatabaseAlreadyOpen) => return Ok(None),
            Err(other) => {
                return Err(
                    anyhow::Error::new(other).context(format!("cannot open the spool {}", path.display()))
                );
            }
        };
        let (counts, next_id) = initial_state(&database)?;
        let counts = Arc::new(counts);
        let database: DatabaseSlot = Arc::new(RwLock::new(Some(Arc::new(database))));
        let (changes, receiver) = mpsc::unbounded_channel();
        let writer = Writer { database: database.clone(), counts: counts.clone(), max_events, next_id };
        let thread = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer.run(receiver))
            .context("cannot start the spool writer")?;
        let spool = Spool { database, changes, counts, claimed: Arc::default(), unreadable: Arc::default() };
        Ok(Some((spool, thread)))
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

    /// Replaces a pending event (or, with no key, nothing) with the branches it became:
    /// `pending` records with their due times, and `letters`, in one atomic change. Returns
    /// the id of the first dead letter; the others follow in order.
    pub async fn replace(
        &self,
        key: Option<EventKey>,
        pending: Vec<(SpooledEvent, u64)>,
        letters: Vec<DeadLetter>,
    ) -> Result<u64, SpoolError> {
        self.change(Change::Replace { key, pending, letters }).await
    }

    /// Moves a dead letter back to the pending events, due at `due_ms`, with its attempts
    /// and age reset; returns its id.
    pub async fn replay(&self, id: u64, due_ms: u64) -> Result<u64, SpoolError> {
        self.change(Change::Replay { id, due_ms }).await
    }

    /// Deletes one dead letter, or all of them; returns how many went.
    pub async fn purge(&self, id: Option<u64>) -> Result<u64, SpoolError> {
        self.change(Change::Purge { id }).await
    }

    /// Commits every change queued so far, then stops the writer and releases the spool.
    /// Later changes fail with `Storage`.
    pub async fn close(&self) -> Result<(), SpoolError> {
        self.change(Change::Close).await.map(drop)
    }

    /// Claims the event with this id for work, unless someone already has.
    pub fn claim(&self, id: u64) -> Option<Claim> {
        let newly = self.claimed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(id);
        newly.then(|| Claim { id, claimed: self.claimed.clone() })
    }

    /// Pending events.
    pub fn event_count(&self) -> u64 {
        self.counts.events.load(Ordering::Relaxed)
    }

    /// Dead letters.
    pub fn dead_letter_count(&self) -> u64 {
        self.counts.dead_letters.load(Ordering::Relaxed)
    }

    /// Registers the commit timings: `topic_relay_spool_commit_duration_seconds` and
    /// `topic_relay_spool_commit_batch_size`.
    pub fn register_metrics(&self, metrics: &mut Metrics) {
        metrics.register(
            "topic_relay_spool_commit_duration_seconds",
            "Time one spool commit takes (one transaction and one fsync)",
            self.counts.commit_duration.clone(),
        );
        metrics.register(
            "topic_relay_spool_commit_batch_size",
            "Changes carried by one spool commit (group commit); _count is the number of commits",
            self.counts.commit_batch.clone(),
        );
    }

    /// Transactions committed (each one fsync) since the spool was opened.
    pub fn commit_count(&self) -> u64 {
        self.counts.commits.load(Ordering::Relaxed)
    }

    /// Up to `limit` pending events due by `now_ms` and not claimed, soonest first.
    pub fn due(&self, now_ms: u64, limit: usize) -> anyhow::Result<Vec<(EventKey, SpooledEvent)>> {
        let claimed = self.claimed.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        self.read_events(..=(now_ms, u64::MAX), limit, &|id| claimed.contains(&id))
    }

    /// Up to `limit` pending events, soonest first.
    pub fn pending(&self, limit: usize) -> anyhow::Result<Vec<(EventKey, SpooledEvent)>> {
        self.read_events(.., limit, &|_| false)
    }

    fn database(&self) -> anyhow::Result<Arc<Database>> {
        let slot = self.database.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.clone().ok_or_else(|| anyhow::anyhow!("the spool is closed"))
    }

    /// Reads events in `range`. A record that cannot be decoded is logged and skipped, so that
    /// one bad record does not stop the rest.
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
            if found.len() >= limit {
                break;
            }
            let (key, value) = entry?;
            let key = key.value();
            if skip(key.1) {
                continue;
            }
            match serde_json::from_slice(value.value()) {
                Ok(event) => found.push((key, event)),
                Err(error) => self.report_unreadable(key.1, &error),
            }
        }
        Ok(found)
    }

    /// Up to `limit` dead letters, oldest first; unreadable ones are logged and skipped.
    pub fn dead_letters(&self, limit: usize) -> anyhow::Result<Vec<(u64, DeadLetter)>> {
        let read = self.database()?.begin_read()?;
        let table = read.open_table(DEAD_LETTERS)?;
        let mut found = Vec::new();
        for entry in table.iter()? {
            if found.len() >= limit {
                break;
            }
            let (id, value) = entry?;
            match serde_json::from_slice(value.value()) {
                Ok(letter) => found.push((id.value(), letter)),
                Err(error) => self.report_unreadable(id.value(), &error),
            }
        }
        Ok(found)
    }

    fn report_unreadable(&self, id: u64, error: &serde_json::Error) {
        if self.unreadable.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(id) {
            tracing::error!(id, %error, "a spool record cannot be read (written by another version?); it is skipped");
        }
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

/// Creates the tables if needed; counts what they hold and reads the next free id.
fn initial_state(database: &Database) -> anyhow::Result<(Counts, u64)> {
    let write = database.begin_write()?;
    let (events, dead_letters, next_id) = {
        let events = write.open_table(EVENTS)?;
        let dead = write.open_table(DEAD_LETTERS)?;
        let meta = write.open_table(META)?;
        let next_id = meta.get(NEXT_ID)?.map_or(1, |next| next.value());
        (events.len()?, dead.len()?, next_id)
    };
    write.commit()?;
    let counts = Counts {
        events: AtomicU64::new(events),
        dead_letters: AtomicU64::new(dead_letters),
        ..Counts::default()
    };
    Ok((counts, next_id))
}

#[cfg(test)]
mod tests;
