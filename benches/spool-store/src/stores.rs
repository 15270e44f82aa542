//! The three spools under test behind one trait: redb, fjall, and a raw
//! append-only log (`std::fs::File` + `sync_data`) that serves as the fsync floor.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::ops::Bound;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// 16-byte big-endian `(next_attempt_ms, id)`, so byte order is due order.
pub type Key = [u8; 16];

pub fn key(next_attempt_ms: u64, id: u64) -> Key {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&next_attempt_ms.to_be_bytes());
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Redb,
    Fjall,
    Baseline,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Redb, Kind::Fjall, Kind::Baseline];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Redb => "redb",
            Kind::Fjall => "fjall",
            Kind::Baseline => "baseline",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// What the spool's writer thread and delivery task need from a store.
/// Every mutating call is durable (fsynced) when it returns.
pub trait Spool: Send {
    fn insert_batch(&mut self, batch: &[(Key, Vec<u8>)]) -> Res<()>;
    fn delete_batch(&mut self, keys: &[Key]) -> Res<()>;
    /// Reads (key and value) the first `limit` entries with `after < key <= (now, u64::MAX)`.
    fn scan_due(&self, after: Option<&Key>, now_ms: u64, limit: usize) -> Res<Vec<Key>>;
    fn count(&self) -> Res<usize>;
    /// Explicit space reclamation; returns a note on what was done.
    fn compact(&mut self) -> Res<&'static str>;
}

/// `(after, (now_ms, u64::MAX)]`, or from the start when `after` is `None`.
fn due_range<'a>(after: Option<&'a Key>, upper: &'a Key) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    let lower = after.map_or(Bound::Unbounded, |k| Bound::Excluded(k.as_slice()));
    (lower, Bound::Included(upper.as_slice()))
}

pub fn open(kind: Kind, dir: &Path) -> Res<Box<dyn Spool>> {
    std::fs::create_dir_all(dir)?;
    Ok(match kind {
        Kind::Redb => Box::new(RedbSpool::open(dir)?),
        Kind::Fjall => Box::new(FjallSpool::open(dir)?),
        Kind::Baseline => Box::new(LogSpool::open(dir)?),
    })
}

// ---------------------------------------------------------------- redb

const TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("spool");

struct RedbSpool {
    db: redb::Database,
}

impl RedbSpool {
    fn open(dir: &Path) -> Res<Self> {
        let path = dir.join("spool.redb");
        let fresh = !path.exists();
        let db = redb::Database::create(path)?;
        if fresh {
            let tx = db.begin_write()?;
            tx.open_table(TABLE)?; // create the table once
            tx.commit()?;
        }
        Ok(Self { db })
    }

    fn write(&self, f: impl FnOnce(&mut redb::Table<&[u8], &[u8]>) -> Res<()>) -> Res<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(redb::Durability::Immediate)?;
        {
            let mut table = tx.open_table(TABLE)?;
            f(&mut table)?;
        }
        tx.commit()?;
        Ok(())
    }
}

impl Spool for RedbSpool {
    fn insert_batch(&mut self, batch: &[(Key, Vec<u8>)]) -> Res<()> {
        self.write(|t| {
            for (k, v) in batch {
                t.insert(k.as_slice(), v.as_slice())?;
            }
            Ok(())
        })
    }

    fn delete_batch(&mut self, keys: &[Key]) -> Res<()> {
        self.write(|t| {
            for k in keys {
                t.remove(k.as_slice())?;
            }
            Ok(())
        })
    }

    fn scan_due(&self, after: Option<&Key>, now_ms: u64, limit: usize) -> Res<Vec<Key>> {
        use redb::ReadableDatabase;
        let upper = key(now_ms, u64::MAX);
        let tx = self.db.begin_read()?;
        let table = tx.open_table(TABLE)?;
        let mut out = Vec::with_capacity(limit);
        for entry in table.range::<&[u8]>(due_range(after, &upper))?.take(limit) {
            let (k, v) = entry?;
            std::hint::black_box(v.value().to_vec());
            out.push(k.value().try_into()?);
        }
        Ok(out)
    }

    fn count(&self) -> Res<usize> {
        use redb::{ReadableDatabase, ReadableTableMetadata};
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(TABLE)?.len()? as usize)
    }

    fn compact(&mut self) -> Res<&'static str> {
        self.db.compact()?;
        Ok("Database::compact() (public API)")
    }
}

// ---------------------------------------------------------------- fjall

struct FjallSpool {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

impl FjallSpool {
    fn open(dir: &Path) -> Res<Self> {
        let db = fjall::Database::builder(dir).open()?;
        let ks = db.keyspace("spool", fjall::KeyspaceCreateOptions::default)?;
        Ok(Self { db, ks })
    }
}

impl Spool for FjallSpool {
    fn insert_batch(&mut self, batch: &[(Key, Vec<u8>)]) -> Res<()> {
        let mut wb = self.db.batch();
        for (k, v) in batch {
            wb.insert(&self.ks, k.as_slice(), v.as_slice());
        }
        wb.commit()?;
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    fn delete_batch(&mut self, keys: &[Key]) -> Res<()> {
        let mut wb = self.db.batch();
        for k in keys {
            wb.remove(&self.ks, k.as_slice());
        }
        wb.commit()?;
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }

    fn scan_due(&self, after: Option<&Key>, now_ms: u64, limit: usize) -> Res<Vec<Key>> {
        let upper = key(now_ms, u64::MAX);
        let mut out = Vec::with_capacity(limit);
        for guard in self
            .ks
            .range::<&[u8], _>(due_range(after, &upper))
            .take(limit)
        {
            let (k, v) = guard.into_inner()?;
            std::hint::black_box(v.to_vec());
            out.push(k.as_ref().try_into()?);
        }
        Ok(out)
    }

    fn count(&self) -> Res<usize> {
        Ok(self.ks.len()?)
    }

    fn compact(&mut self) -> Res<&'static str> {
        // Neither call is public, documented API in fjall 3.1 (#[doc(hidden)]):
        // normally space only comes back through background compaction.
        self.ks.rotate_memtable_and_wait()?;
        self.ks.major_compact()?;
        Ok("rotate_memtable_and_wait + major_compact (#[doc(hidden)] API)")
    }
}

// ---------------------------------------------------------------- baseline

/// Append-only log: `[op u8][key 16][len u32 BE][value]`, op 1 = put, 0 = delete.
/// Index in memory; a reopen replays the whole file. The floor for fsync cost.
struct LogSpool {
    path: PathBuf,
    file: File,
    len: u64,
    index: BTreeMap<Key, (u64, u32)>,
}

const HEADER: usize = 1 + 16 + 4;

impl LogSpool {
    fn open(dir: &Path) -> Res<Self> {
        let path = dir.join("spool.log");
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let mut index = BTreeMap::new();
        let mut reader = BufReader::with_capacity(1 << 20, &mut file);
        reader.seek(SeekFrom::Start(0))?;
        let mut pos = 0u64;
        let mut header = [0u8; HEADER];
        let mut value = Vec::new();
        // A torn tail (crash mid-append) simply ends the replay.
        while reader.read_exact(&mut header).is_ok() {
            let k: Key = header[1..17].try_into()?;
            let len = u32::from_be_bytes(header[17..21].try_into()?);
            value.resize(len as usize, 0);
            if reader.read_exact(&mut value).is_err() {
                break;
            }
            if header[0] == 1 {
                index.insert(k, (pos + HEADER as u64, len));
            } else {
                index.remove(&k);
            }
            pos += (HEADER + len as usize) as u64;
        }
        drop(reader);
        file.set_len(pos)?;
        Ok(Self {
            path,
            file,
            len: pos,
            index,
        })
    }

    fn append(&mut self, buf: &[u8]) -> Res<()> {
        self.file.write_all(buf)?;
        self.file.sync_data()?;
        self.len += buf.len() as u64;
        Ok(())
    }
}

impl Spool for LogSpool {
    fn insert_batch(&mut self, batch: &[(Key, Vec<u8>)]) -> Res<()> {
        let mut buf = Vec::with_capacity(batch.iter().map(|(_, v)| HEADER + v.len()).sum());
        let mut pos = self.len;
        for (k, v) in batch {
            buf.push(1);
            buf.extend_from_slice(k);
            buf.extend_from_slice(&(v.len() as u32).to_be_bytes());
            buf.extend_from_slice(v);
            self.index.insert(*k, (pos + HEADER as u64, v.len() as u32));
            pos += (HEADER + v.len()) as u64;
        }
        self.append(&buf)
    }

    fn delete_batch(&mut self, keys: &[Key]) -> Res<()> {
        let mut buf = Vec::with_capacity(keys.len() * HEADER);
        for k in keys {
            buf.push(0);
            buf.extend_from_slice(k);
            buf.extend_from_slice(&0u32.to_be_bytes());
            self.index.remove(k);
        }
        self.append(&buf)
    }

    fn scan_due(&self, after: Option<&Key>, now_ms: u64, limit: usize) -> Res<Vec<Key>> {
        let upper = key(now_ms, u64::MAX);
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut out = Vec::with_capacity(limit);
        for (k, &(off, len)) in self
            .index
            .range::<Key, _>((lower, Bound::Included(&upper)))
            .take(limit)
        {
            let mut v = vec![0u8; len as usize];
            self.file.read_exact_at(&mut v, off)?;
            std::hint::black_box(v);
            out.push(*k);
        }
        Ok(out)
    }

    fn count(&self) -> Res<usize> {
        Ok(self.index.len())
    }

    fn compact(&mut self) -> Res<&'static str> {
        // Rewrite live records into a new file, fsync, rename over the old one.
        let tmp = self.path.with_extension("tmp");
        let mut out = File::create(&tmp)?;
        let mut new_index = BTreeMap::new();
        let mut pos = 0u64;
        for (k, &(off, len)) in &self.index {
            let mut v = vec![0u8; len as usize];
            self.file.read_exact_at(&mut v, off)?;
            out.write_all(&[1])?;
            out.write_all(k)?;
            out.write_all(&len.to_be_bytes())?;
            out.write_all(&v)?;
            new_index.insert(*k, (pos + HEADER as u64, len));
            pos += (HEADER + v.len()) as u64;
        }
        out.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        File::open(self.path.parent().unwrap_or(Path::new(".")))?.sync_all()?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        self.len = pos;
        self.index = new_index;
        Ok("rewrite live records + rename (hand-written)")
    }
}

/// (apparent bytes, allocated bytes) of everything under `dir`.
pub fn disk_usage(dir: &Path) -> (u64, u64) {
    let mut total = (0, 0);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                let (a, b) = disk_usage(&entry.path());
                total.0 += a;
                total.1 += b;
            } else {
                total.0 += meta.len();
                total.1 += meta.blocks() * 512;
            }
        }
    }
    total
}

/// Number of threads in this process (Linux).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}
