//! The measured scenarios. All three stores are open side by side and operations
//! are interleaved one commit (or scan) at a time, in an order that rotates every
//! turn, so machine noise hits redb, fjall and the baseline alike.

use crate::Args;
use crate::stats::{Table, ms, percentile};
use crate::stores::{self, Key, Kind, Res, Spool, disk_usage, thread_count};
use crate::workload::{Rng, T0_MS, records};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BATCH_SIZES: [usize; 4] = [1, 16, 64, 256];
const SCAN_LIMIT: usize = 256;
const MAX_GROUP: usize = 1024;
const SCAN_BUDGET: Duration = Duration::from_secs(3);
const RELAY_SEGMENTS: usize = 4;

struct Slot {
    kind: Kind,
    dir: PathBuf,
    spool: Box<dyn Spool>,
}

type PerStore<T> = [T; 3];

/// One fresh store of each kind, in `Kind::ALL` order.
fn open_all(data: &Path, tag: &str) -> Res<Vec<Slot>> {
    Kind::ALL
        .into_iter()
        .map(|kind| {
            let dir = data.join(format!("{tag}-{}", kind.name()));
            Ok(Slot {
                kind,
                spool: stores::open(kind, &dir)?,
                dir,
            })
        })
        .collect()
}

fn close_all(slots: Vec<Slot>) -> Res<()> {
    for slot in slots {
        drop(slot.spool);
        std::fs::remove_dir_all(&slot.dir)?;
    }
    Ok(())
}

/// Store indices in an order that rotates with `turn`.
fn rotation(turn: usize) -> [usize; 3] {
    let mut order = [0, 1, 2];
    order.rotate_left(turn % 3);
    order
}

fn timed<T>(f: impl FnOnce() -> Res<T>) -> Res<(T, f64)> {
    let start = Instant::now();
    let value = f()?;
    Ok((value, ms(start.elapsed())))
}

fn seed(rep: usize, scenario: usize) -> u64 {
    (rep as u64) << 32 | scenario as u64
}

fn sorted_keys(recs: &[(Key, Vec<u8>)]) -> Vec<Key> {
    let mut keys: Vec<Key> = recs.iter().map(|(k, _)| *k).collect();
    keys.sort_unstable();
    keys
}

fn mib(dir: &Path) -> f64 {
    disk_usage(dir).1 as f64 / (1024.0 * 1024.0)
}

/// Runs `op` on every store for every chunk, interleaved; returns per-call ms.
fn interleaved<T>(
    slots: &mut [Slot],
    rep: usize,
    chunks: std::slice::Chunks<'_, T>,
    op: impl Fn(&mut dyn Spool, &[T]) -> Res<()>,
) -> Res<PerStore<Vec<f64>>> {
    let mut lat: PerStore<Vec<f64>> = Default::default();
    for (turn, chunk) in chunks.enumerate() {
        for s in rotation(rep + turn) {
            lat[s].push(timed(|| op(&mut *slots[s].spool, chunk))?.1);
        }
    }
    Ok(lat)
}

/// events/s over the time spent inside the commits, and p50/p99 per commit.
fn report_commits(
    table: &mut Table,
    name: &str,
    slots: &[Slot],
    rep: usize,
    events: usize,
    lat: &PerStore<Vec<f64>>,
) {
    for (slot, lat) in slots.iter().zip(lat) {
        let secs = lat.iter().sum::<f64>() / 1e3;
        table.add(
            &format!("{name}: events/s"),
            slot.kind,
            rep,
            events as f64 / secs,
        );
        table.add(
            &format!("{name}: commit p50 ms"),
            slot.kind,
            rep,
            percentile(lat, 50.0),
        );
        table.add(
            &format!("{name}: commit p99 ms"),
            slot.kind,
            rep,
            percentile(lat, 99.0),
        );
    }
}

/// Threads each store adds while open, and whether they go away on close.
pub fn thread_notes(data: &Path, table: &mut Table) -> Res<()> {
    for kind in Kind::ALL {
        let dir = data.join(format!("threads-{}", kind.name()));
        let before = thread_count();
        let mut spool = stores::open(kind, &dir)?;
        spool.insert_batch(&records(1, 0, 16))?;
        let open = thread_count();
        drop(spool);
        let closed = thread_count();
        table.note(format!(
            "{}: {} extra threads while open, {} after close",
            kind.name(),
            open.saturating_sub(before),
            closed.saturating_sub(before)
        ));
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}

/// Scenarios 1 and 2: durable inserts at each batch size into fresh stores,
/// then (on the batch-64 stores) durable deletes of all of them in batches of 64.
pub fn insert_and_delete(args: &Args, rep: usize, table: &mut Table) -> Res<()> {
    let n = args.events;
    for (i, &b) in BATCH_SIZES.iter().enumerate() {
        eprintln!("insert {n} events in batches of {b}");
        let recs = records(seed(rep, i), 0, n);
        let mut slots = open_all(&args.data, &format!("r{rep}-b{b}"))?;
        let lat = interleaved(&mut slots, rep, recs.chunks(b), |sp, c| sp.insert_batch(c))?;
        report_commits(table, &format!("insert b={b}"), &slots, rep, n, &lat);
        if b == 64 {
            eprintln!("delete {n} events in batches of 64");
            let keys = sorted_keys(&recs);
            let lat = interleaved(&mut slots, rep, keys.chunks(64), |sp, c| sp.delete_batch(c))?;
            report_commits(table, "delete b=64", &slots, rep, n, &lat);
            for slot in &slots {
                if slot.spool.count()? != 0 {
                    return Err(
                        format!("{}: records left after deleting all", slot.kind.name()).into(),
                    );
                }
            }
        }
        close_all(slots)?;
    }
    Ok(())
}

struct Request {
    record: (Key, Vec<u8>),
    ack: mpsc::SyncSender<()>,
}

/// The relay's group-commit writer: take everything queued (up to MAX_GROUP),
/// commit it as one durable batch, then acknowledge each request. Returns the
/// number of groups.
fn group_commit_writer(spool: &mut dyn Spool, rx: mpsc::Receiver<Request>) -> Res<usize> {
    let mut groups = 0;
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        let (batch, acks): (Vec<_>, Vec<_>) = group.into_iter().map(|r| (r.record, r.ack)).unzip();
        spool.insert_batch(&batch)?;
        for ack in acks {
            let _ = ack.send(());
        }
        groups += 1;
    }
    Ok(groups)
}

/// `handlers` threads each enqueue one event at a time and wait for its durable
/// ack. Returns (per-event ack latencies ms, groups committed, wall seconds).
fn relay_segment(
    spool: &mut dyn Spool,
    recs: &[(Key, Vec<u8>)],
    handlers: usize,
) -> Res<(Vec<f64>, usize, f64)> {
    let per = recs.len().div_ceil(handlers);
    let work: Vec<Vec<(Key, Vec<u8>)>> = recs.chunks(per).map(<[_]>::to_vec).collect();
    let (tx, rx) = mpsc::channel::<Request>();
    let start = Instant::now();
    let (groups, lat) = std::thread::scope(|sc| {
        let writer = sc.spawn(move || group_commit_writer(spool, rx));
        let threads: Vec<_> = work
            .into_iter()
            .map(|mine| {
                let tx = tx.clone();
                sc.spawn(move || {
                    let mut lat = Vec::with_capacity(mine.len());
                    for record in mine {
                        let (ack, acked) = mpsc::sync_channel(1);
                        let t = Instant::now();
                        if tx.send(Request { record, ack }).is_err() || acked.recv().is_err() {
                            break; // the writer failed; its error is returned below
                        }
                        lat.push(ms(t.elapsed()));
                    }
                    lat
                })
            })
            .collect();
        drop(tx);
        let lat: Vec<f64> = threads
            .into_iter()
            .flat_map(|t| t.join().expect("handler panicked"))
            .collect();
        (writer.join().expect("writer panicked"), lat)
    });
    Ok((lat, groups?, start.elapsed().as_secs_f64()))
}

/// Scenario 6: the relay's write path end to end, `handlers` concurrent request
/// handlers against one group-commit writer; stores alternate in segments.
pub fn relay(args: &Args, rep: usize, table: &mut Table) -> Res<()> {
    let h = args.handlers;
    eprintln!("relay: {h} handlers, {} events", args.events);
    let per_segment = args.events.div_ceil(RELAY_SEGMENTS);
    let mut slots = open_all(&args.data, &format!("r{rep}-relay"))?;
    let mut lat: PerStore<Vec<f64>> = Default::default();
    let mut groups = [0usize; 3];
    let mut secs = [0f64; 3];
    for seg in 0..RELAY_SEGMENTS {
        let recs = records(seed(rep, 60 + seg), (seg * per_segment) as u64, per_segment);
        for s in rotation(rep + seg) {
            let (l, g, t) = relay_segment(&mut *slots[s].spool, &recs, h)?;
            lat[s].extend(l);
            groups[s] += g;
            secs[s] += t;
        }
    }
    let name = format!("relay, {h} handlers");
    for (s, slot) in slots.iter().enumerate() {
        let n = lat[s].len() as f64;
        table.add(&format!("{name}: events/s"), slot.kind, rep, n / secs[s]);
        table.add(
            &format!("{name}: ack p50 ms"),
            slot.kind,
            rep,
            percentile(&lat[s], 50.0),
        );
        table.add(
            &format!("{name}: ack p99 ms"),
            slot.kind,
            rep,
            percentile(&lat[s], 99.0),
        );
        table.add(
            &format!("{name}: mean group size"),
            slot.kind,
            rep,
            n / groups[s] as f64,
        );
    }
    close_all(slots)
}

/// Interleaved due scans until `max_scans` rounds or SCAN_BUDGET; µs per scan.
fn scan_rounds(
    slots: &[Slot],
    rep: usize,
    max_scans: usize,
    now_ms: u64,
) -> Res<PerStore<Vec<f64>>> {
    let mut lat: PerStore<Vec<f64>> = Default::default();
    let start = Instant::now();
    for turn in 0..max_scans {
        if turn >= 10 && start.elapsed() > SCAN_BUDGET {
            break;
        }
        for s in rotation(rep + turn) {
            let (got, t) = timed(|| slots[s].spool.scan_due(None, now_ms, SCAN_LIMIT))?;
            if got.len() != SCAN_LIMIT {
                return Err(
                    format!("{}: scan returned {} keys", slots[s].kind.name(), got.len()).into(),
                );
            }
            lat[s].push(t * 1e3);
        }
    }
    Ok(lat)
}

/// Scenarios 3, 4 and 5 on stores holding `big` records: fill, due scans, clean
/// reopen, deleting the head then everything, and whether disk space comes back.
pub fn big_store(args: &Args, rep: usize, table: &mut Table) -> Res<()> {
    let recs = records(seed(rep, 100), 0, args.big);
    let keys = sorted_keys(&recs);
    let k = args.big / 1000;
    let mut slots = open_all(&args.data, &format!("r{rep}-big"))?;

    eprintln!("{k}k store: fill, scan, reopen");
    let lat = interleaved(&mut slots, rep, recs.chunks(256), |sp, c| {
        sp.insert_batch(c)
    })?;
    for (slot, lat) in slots.iter().zip(&lat) {
        table.add(
            &format!("fill {k}k b=256: events/s"),
            slot.kind,
            rep,
            args.big as f64 / (lat.iter().sum::<f64>() / 1e3),
        );
        table.add(
            &format!("size after {k}k inserts: MiB"),
            slot.kind,
            rep,
            mib(&slot.dir),
        );
    }
    // About half of the keys are due at `now_ms`.
    let now_ms = T0_MS + args.big as u64 / 2;
    let lat = scan_rounds(&slots, rep, args.scans, now_ms)?;
    for (slot, lat) in slots.iter().zip(&lat) {
        table.add(
            &format!("scan {SCAN_LIMIT} due of {k}k: µs p50"),
            slot.kind,
            rep,
            percentile(lat, 50.0),
        );
    }

    let mut reopened: Vec<Option<Slot>> = slots.into_iter().map(Some).collect();
    for s in rotation(rep) {
        let Some(Slot { kind, dir, spool }) = reopened[s].take() else {
            continue;
        };
        drop(spool);
        let (spool, open_ms) = timed(|| stores::open(kind, &dir))?;
        let (_, scan_ms) = timed(|| spool.scan_due(None, now_ms, SCAN_LIMIT))?;
        table.add(&format!("clean reopen with {k}k: ms"), kind, rep, open_ms);
        table.add("first scan after reopen: µs", kind, rep, scan_ms * 1e3);
        reopened[s] = Some(Slot { kind, dir, spool });
    }
    let mut slots: Vec<Slot> = reopened.into_iter().flatten().collect();

    eprintln!("{k}k store: delete head, scan, delete rest");
    let (head, rest) = keys.split_at(keys.len() / 2);
    let lat = interleaved(&mut slots, rep, head.chunks(256), |sp, c| {
        sp.delete_batch(c)
    })?;
    for (slot, lat) in slots.iter().zip(&lat) {
        table.add(
            "delete first half b=256: events/s",
            slot.kind,
            rep,
            head.len() as f64 / (lat.iter().sum::<f64>() / 1e3),
        );
    }
    // Time has moved on: the remaining (later) half is now due.
    let lat = scan_rounds(&slots, rep, args.scans, T0_MS + args.big as u64)?;
    for (slot, lat) in slots.iter().zip(&lat) {
        table.add(
            &format!("scan {SCAN_LIMIT} due after head deleted: µs p50"),
            slot.kind,
            rep,
            percentile(lat, 50.0),
        );
    }
    interleaved(&mut slots, rep, rest.chunks(256), |sp, c| {
        sp.delete_batch(c)
    })?;
    for slot in &slots {
        table.add(
            "size right after deleting all: MiB",
            slot.kind,
            rep,
            mib(&slot.dir),
        );
    }

    eprintln!("{k}k store: idle {:?}, compact", args.idle);
    std::thread::sleep(args.idle); // a chance for background compaction
    for slot in &slots {
        table.add(
            &format!("size after {}s idle: MiB", args.idle.as_secs()),
            slot.kind,
            rep,
            mib(&slot.dir),
        );
    }
    for s in rotation(rep) {
        let (how, t) = timed(|| slots[s].spool.compact())?;
        table.add("explicit compaction: ms", slots[s].kind, rep, t);
        if rep == 0 {
            table.note(format!("{} compaction = {how}", slots[s].kind.name()));
        }
    }
    for slot in slots {
        drop(slot.spool);
        table.add(
            "size after compaction + close: MiB",
            slot.kind,
            rep,
            mib(&slot.dir),
        );
        std::fs::remove_dir_all(&slot.dir)?;
    }
    Ok(())
}

/// Scenario 7, the spool's steady state: insert 256 events (durable), scan the
/// first 256 due, delete them (durable); repeat for `churn` events. Retries
/// (10%, due up to 1 h later) stay behind as the backlog. Run twice: scanning
/// from the start of the keyspace (naive), and from a cursor just past the last
/// delivered key (which skips the deleted head; valid here because new keys are
/// never due earlier than `now`).
pub fn churn(args: &Args, rep: usize, table: &mut Table) -> Res<()> {
    let recs = records(seed(rep, 7), 0, args.churn);
    let k = args.churn / 1000;
    for cursor in [false, true] {
        let mode = if cursor {
            "cursor scan"
        } else {
            "scan from start"
        };
        eprintln!("churn {k}k, {mode}");
        let mut slots = open_all(&args.data, &format!("r{rep}-churn"))?;
        let mut busy = [0f64; 3];
        let mut scan_lat: PerStore<Vec<f64>> = Default::default();
        let mut peak = [0f64; 3];
        let mut last: PerStore<Option<Key>> = [None; 3];
        let mut inserted = 0;
        for (turn, chunk) in recs.chunks(256).enumerate() {
            inserted += chunk.len();
            let now_ms = T0_MS + inserted as u64;
            for s in rotation(rep + turn) {
                let spool = &mut slots[s].spool;
                let (_, t_insert) = timed(|| spool.insert_batch(chunk))?;
                let after = if cursor { last[s].as_ref() } else { None };
                let (due, t_scan) = timed(|| spool.scan_due(after, now_ms, SCAN_LIMIT))?;
                let mut t_delete = 0.0;
                if let Some(k) = due.last() {
                    last[s] = Some(*k);
                    t_delete = timed(|| spool.delete_batch(&due))?.1;
                }
                busy[s] += t_insert + t_scan + t_delete;
                scan_lat[s].push(t_scan * 1e3);
            }
            if turn % 32 == 0 {
                for (p, slot) in peak.iter_mut().zip(&slots) {
                    *p = p.max(mib(&slot.dir));
                }
            }
        }
        let name = format!("churn {k}k, {mode}");
        for (s, slot) in slots.iter().enumerate() {
            let kind = slot.kind;
            table.add(
                &format!("{name}: events/s"),
                kind,
                rep,
                args.churn as f64 / (busy[s] / 1e3),
            );
            table.add(
                &format!("{name}: due-scan µs p50"),
                kind,
                rep,
                percentile(&scan_lat[s], 50.0),
            );
            table.add(
                &format!("{name}: due-scan µs p99"),
                kind,
                rep,
                percentile(&scan_lat[s], 99.0),
            );
            if !cursor {
                table.add(
                    &format!("churn {k}k: peak disk MiB"),
                    kind,
                    rep,
                    peak[s].max(mib(&slot.dir)),
                );
                table.add(
                    &format!("churn {k}k: final disk MiB"),
                    kind,
                    rep,
                    mib(&slot.dir),
                );
            }
            if rep == 0 {
                let live = slot.spool.count()?;
                table.note(format!(
                    "churn, {mode}: {live} live records (not-yet-due retries) left in {}",
                    kind.name()
                ));
            }
        }
        close_all(slots)?;
    }
    Ok(())
}

/// Store order for a repetition, rotated so no store always runs first or last.
fn order(rep: usize) -> [Kind; 3] {
    let mut kinds = Kind::ALL;
    kinds.rotate_left(rep % 3);
    kinds
}

/// Scenario 5b: a child process fills `big` records, keeps appending acknowledged
/// batches, and is SIGKILLed at a random moment; we time the recovery open and
/// check that every acknowledged record is there. (Process crash, not power loss.)
pub fn crash_recovery(args: &Args, rep: usize, table: &mut Table) -> Res<()> {
    let mut rng = Rng::new(rep as u64);
    let k = args.big / 1000;
    for kind in order(rep) {
        eprintln!("kill -9 recovery {}", kind.name());
        let dir = args.data.join(format!("r{rep}-crash-{}", kind.name()));
        let mut child = Command::new(std::env::current_exe()?)
            .arg("--crash-child")
            .args([
                kind.name(),
                &dir.to_string_lossy(),
                &args.big.to_string(),
                &(rep as u64 + 50).to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut lines = BufReader::new(child.stdout.take().ok_or("no child stdout")?).lines();
        if !lines.by_ref().map_while(Result::ok).any(|l| l == "filled") {
            child.wait()?;
            return Err(format!("{}: crash child failed before filling", kind.name()).into());
        }
        std::thread::sleep(Duration::from_millis(20 + rng.below(130)));
        child.kill()?;
        child.wait()?;
        let acked = lines
            .map_while(Result::ok)
            .filter_map(|l| l.strip_prefix("acked ")?.parse::<usize>().ok())
            .last()
            .unwrap_or(args.big);

        let t = Instant::now();
        let s = stores::open(kind, &dir)?;
        s.scan_due(None, T0_MS + args.big as u64 / 2, SCAN_LIMIT)?;
        table.add(
            &format!("open + first scan after kill -9 (≥{k}k): ms"),
            kind,
            rep,
            ms(t.elapsed()),
        );
        let count = s.count()?;
        table.add(
            "acked records lost after kill -9",
            kind,
            rep,
            acked.saturating_sub(count) as f64,
        );
        drop(s);
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
