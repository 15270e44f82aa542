//! The spool's only writer, on a thread of its own because redb's commits block on fsync.
//! It takes every change waiting at once into one transaction and one fsync (group commit),
//! and only then tells each caller that its change is safe.

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use redb::{Database, ReadableTable, ReadableTableMetadata, Table};
use tokio::sync::{mpsc, oneshot};

use super::{Counts, DEAD_LETTERS, EVENTS, EventKey, META, NEXT_ID, SpoolError};
use crate::delivery::record::{DeadLetter, SpooledEvent};

/// Changes committed together at most.
const MAX_BATCH: usize = 1024;

/// A change to the spool.
pub(super) enum Change {
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
    Replace {
        key: Option<EventKey>,
        pending: Vec<(SpooledEvent, u64)>,
        letters: Vec<DeadLetter>,
    },
    Replay {
        id: u64,
        due_ms: u64,
    },
    Purge {
        id: Option<u64>,
    },
    /// Commit what is queued before it, then stop the writer and release the database.
    Close,
}

/// What a change returns: the id of an inserted or replayed event, or the number purged.
pub(super) type Reply = oneshot::Sender<Result<u64, SpoolError>>;

/// The open database, shared by readers and the writer; emptied when the spool closes, so
/// the file (and its lock) is released once the last reader is done.
pub(super) type DatabaseSlot = Arc<RwLock<Option<Arc<Database>>>>;

/// Owns all writes.
pub(super) struct Writer {
    pub(super) database: DatabaseSlot,
    pub(super) counts: Arc<Counts>,
    pub(super) max_events: u64,
    pub(super) next_id: u64,
}

/// How a committed change moves the counts.
#[derive(Default, Clone, Copy)]
struct Delta {
    events: i64,
    dead_letters: i64,
}

/// The tables a batch writes to.
struct Tables<'txn> {
    events: Table<'txn, (u64, u64), &'static [u8]>,
    dead: Table<'txn, u64, &'static [u8]>,
}

/// A change's own result, or a storage error that aborts the whole batch.
type Applied = Result<Result<(u64, Delta), SpoolError>, SpoolError>;

impl Writer {
    /// Commits batches until the spool is closed or every handle is gone.
    pub(super) fn run(mut self, mut receiver: mpsc::UnboundedReceiver<(Change, Reply)>) {
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
        let started = std::time::Instant::now();
        let size = batch.len();
        let database = self.database.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let Some(database) = database else { return };
        let mut replies = Vec::with_capacity(batch.len());
        let mut results = Vec::with_capacity(batch.len());
        let outcome = (|| -> Result<Delta, SpoolError> {
            let write = database.begin_write().map_err(storage)?;
            let mut total = Delta::default();
            {
                let mut tables = Tables {
                    events: write.open_table(EVENTS).map_err(storage)?,
                    dead: write.open_table(DEAD_LETTERS).map_err(storage)?,
                };
                for (change, reply) in batch {
                    let events_now =
                        (self.counts.events.load(Ordering::Relaxed) as i64 + total.events) as u64;
                    let result = self.apply(change, events_now, &mut tables)?;
                    if let Ok((_, delta)) = &result {
                        total.events += delta.events;
                        total.dead_letters += delta.dead_letters;
                    }
                    results.push(result.map(|(value, _)| value));
                    replies.push(reply);
                }
                write.open_table(META).map_err(storage)?.insert(NEXT_ID, self.next_id).map_err(storage)?;
            }
            write.commit().map_err(storage)?;
            Ok(total)
        })();
        match outcome {
            Ok(total) => {
                self.counts.commits.fetch_add(1, Ordering::Relaxed);
                self.counts.commit_duration.observe_duration(started.elapsed());
                self.counts.commit_batch.observe(size as f64);
                add(&self.counts.events, total.events);
                add(&self.counts.dead_letters, total.dead_letters);
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, "the spool could not commit");
                // Changes not yet applied when the batch failed are dropped with their reply
                // senders, and their callers see the writer as gone.
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    fn apply(&mut self, change: Change, events_now: u64, tables: &mut Tables<'_>) -> Applied {
        match change {
            Change::Insert { event, due_ms } => self.insert(event, due_ms, events_now, tables),
            Change::Reschedule { key, event, due_ms } => reschedule(key, &event, due_ms, tables),
            Change::Remove { key } => {
                let removed = tables.events.remove(key).map_err(storage)?.is_some();
                Ok(Ok((key.1, Delta { events: -i64::from(removed), dead_letters: 0 })))
            }
            Change::Bury { key, letter } => self.bury(key, &letter, tables),
            Change::Replace { key, pending, letters } => self.replace(key, pending, &letters, tables),
            Change::Replay { id, due_ms } => self.replay(id, due_ms, events_now, tables),
            Change::Purge { id } => purge(id, tables),
            Change::Close => unreachable!("Close is handled by the writer loop"),
        }
    }

    fn insert(
        &mut self,
        event: SpooledEvent,
        due_ms: u64,
        events_now: u64,
        tables: &mut Tables<'_>,
    ) -> Applied {
        if events_now >= self.max_events {
            return Ok(Err(SpoolError::Full));
        }
        let id = self.take_id();
        tables.events.insert((due_ms, id), encode(&event)?.as_slice()).map_err(storage)?;
        Ok(Ok((id, Delta { events: 1, dead_letters: 0 })))
    }

    fn bury(&mut self, key: Option<EventKey>, letter: &DeadLetter, tables: &mut Tables<'_>) -> Applied {
        let bytes = encode(letter)?;
        let (id, removed) = match key {
            Some(key) => (key.1, tables.events.remove(key).map_err(storage)?.is_some()),
            None => (self.take_id(), false),
        };
        let replaced = tables.dead.insert(id, bytes.as_slice()).map_err(storage)?.is_some();
        Ok(Ok((id, Delta { events: -i64::from(removed), dead_letters: i64::from(!replaced) })))
    }

    /// Removes `key` and adds its branches, pending or dead, in the same transaction. The
    /// branches of an event already answered for are stored even when the spool is full.
    fn replace(
        &mut self,
        key: Option<EventKey>,
        pending: Vec<(SpooledEvent, u64)>,
        letters: &[DeadLetter],
        tables: &mut Tables<'_>,
    ) -> Applied {
        let removed = match key {
            Some(key) => tables.events.remove(key).map_err(storage)?.is_some(),
            None => false,
        };
        let first_letter = self.next_id;
        for letter in letters {
            let id = self.take_id();
            tables.dead.insert(id, encode(letter)?.as_slice()).map_err(storage)?;
        }
        for (event, due_ms) in &pending {
            let id = self.take_id();
            tables.events.insert((*due_ms, id), encode(event)?.as_slice()).map_err(storage)?;
        }
        let delta =
            Delta { events: pending.len() as i64 - i64::from(removed), dead_letters: letters.len() as i64 };
        Ok(Ok((first_letter, delta)))
    }

    fn replay(&mut self, id: u64, due_ms: u64, events_now: u64, tables: &mut Tables<'_>) -> Applied {
        if events_now >= self.max_events {
            return Ok(Err(SpoolError::Full));
        }
        let Some(stored) = tables.dead.get(id).map_err(storage)? else {
            return Ok(Err(SpoolError::NoSuchDeadLetter(id)));
        };
        let letter: Result<DeadLetter, _> = serde_json::from_slice(stored.value());
        drop(stored);
        let Ok(letter) = letter else {
            return Ok(Err(SpoolError::Unreadable(id)));
        };
        // A replay starts afresh: its attempts and its age count from now.
        let event = SpooledEvent { attempts: 0, received_ms: due_ms, ..letter.event };
        tables.events.insert((due_ms, id), encode(&event)?.as_slice()).map_err(storage)?;
        tables.dead.remove(id).map_err(storage)?;
        Ok(Ok((id, Delta { events: 1, dead_letters: -1 })))
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// Moves a pending event to a new due time. An event that is no longer there is not brought
/// back: whoever removed it delivered or buried it.
fn reschedule(key: EventKey, event: &SpooledEvent, due_ms: u64, tables: &mut Tables<'_>) -> Applied {
    let bytes = encode(event)?;
    if tables.events.remove(key).map_err(storage)?.is_none() {
        return Ok(Err(SpoolError::NoSuchEvent(key.1)));
    }
    tables.events.insert((due_ms, key.1), bytes.as_slice()).map_err(storage)?;
    Ok(Ok((key.1, Delta::default())))
}

fn purge(id: Option<u64>, tables: &mut Tables<'_>) -> Applied {
    Ok(match id {
        Some(id) => match tables.dead.remove(id).map_err(storage)? {
            Some(_) => Ok((1, Delta { events: 0, dead_letters: -1 })),
            None => Err(SpoolError::NoSuchDeadLetter(id)),
        },
        None => {
            let purged = tables.dead.len().map_err(storage)?;
            tables.dead.retain(|_, _| false).map_err(storage)?;
            Ok((purged, Delta { events: 0, dead_letters: -(purged as i64) }))
        }
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, SpoolError> {
    serde_json::to_vec(value).map_err(storage)
}

fn storage(error: impl std::fmt::Display) -> SpoolError {
    SpoolError::Storage(error.to_string())
}

fn add(counter: &std::sync::atomic::AtomicU64, delta: i64) {
    if delta >= 0 {
        counter.fetch_add(delta as u64, Ordering::Relaxed);
    } else {
        counter.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
    }
}
