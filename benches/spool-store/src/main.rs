//! spool-bench: redb vs fjall vs a raw fsync'd append log, on a durable
//! webhook spool workload (group-committed inserts, batched deletes, due scans).
//! See README.md.

mod scenarios;
mod stats;
mod stores;
mod workload;

use stats::Table;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use stores::{Kind, Res};
use workload::records;

pub struct Args {
    pub events: usize,
    pub big: usize,
    pub reps: usize,
    pub scans: usize,
    pub churn: usize,
    pub handlers: usize,
    pub idle: Duration,
    pub data: PathBuf,
}

const USAGE: &str = "usage: spool-bench [--events N] [--big N] [--reps N] [--scans N] [--churn N] \
                     [--handlers N] [--idle-secs N] [--data DIR]";

fn main() -> Res<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("--crash-child") {
        return crash_child(&argv[1..]);
    }
    let mut args = parse_args(&argv)?;
    let started = Instant::now();
    // A private directory per run, removed afterwards (as is `--data` if left empty).
    let parent = std::mem::replace(&mut args.data, PathBuf::new());
    args.data = parent.join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&args.data)?;
    eprintln!(
        "spool-bench: events={} big={} reps={} scans={} churn={} handlers={} idle={:?} data={}",
        args.events,
        args.big,
        args.reps,
        args.scans,
        args.churn,
        args.handlers,
        args.idle,
        args.data.display()
    );

    let mut table = Table::default();
    let result = scenarios::thread_notes(&args.data, &mut table).and_then(|()| {
        (0..args.reps).try_for_each(|rep| {
            eprintln!(
                "--- repetition {} of {} ({:.0} s so far) ---",
                rep + 1,
                args.reps,
                started.elapsed().as_secs_f64()
            );
            scenarios::insert_and_delete(&args, rep, &mut table)?;
            scenarios::relay(&args, rep, &mut table)?;
            scenarios::big_store(&args, rep, &mut table)?;
            scenarios::churn(&args, rep, &mut table)?;
            scenarios::crash_recovery(&args, rep, &mut table)
        })
    });
    std::fs::remove_dir_all(&args.data)?;
    let _ = std::fs::remove_dir(&parent);
    result?;

    println!("{}", table.render());
    println!(
        "values: median [min–max] over {} repetitions; ratios: median of per-repetition store/baseline. \
         total runtime {:.0} s",
        args.reps,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn parse_args(argv: &[String]) -> Res<Args> {
    let mut args = Args {
        events: 8192,
        big: 100_000,
        reps: 3,
        scans: 2000,
        churn: 100_000,
        handlers: 64,
        idle: Duration::from_secs(5),
        data: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data"),
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(USAGE)?;
        let num = || value.parse::<usize>().map_err(|_| USAGE);
        match flag.as_str() {
            "--events" => args.events = num()?,
            "--big" => args.big = num()?,
            "--reps" => args.reps = num()?,
            "--scans" => args.scans = num()?,
            "--churn" => args.churn = num()?,
            "--handlers" => args.handlers = num()?,
            "--idle-secs" => args.idle = Duration::from_secs(num()? as u64),
            "--data" => args.data = PathBuf::from(value),
            _ => return Err(USAGE.into()),
        }
    }
    if args.events == 0 || args.big < 1024 || args.reps == 0 || args.handlers == 0 {
        return Err(USAGE.into());
    }
    Ok(args)
}

/// `--crash-child KIND DIR N SEED`: fill N records, print "filled", then append
/// batches of 64, printing "acked TOTAL" after each durable commit, until killed.
fn crash_child(argv: &[String]) -> Res<()> {
    let [kind, dir, n, seed] = argv else {
        return Err("bad --crash-child args".into());
    };
    let kind = Kind::parse(kind).ok_or("bad kind")?;
    let n: usize = n.parse()?;
    let seed: u64 = seed.parse()?;
    let mut s = stores::open(kind, Path::new(dir))?;
    for chunk in records(seed, 0, n).chunks(256) {
        s.insert_batch(chunk)?;
    }
    println!("filled");
    let mut total = n as u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        s.insert_batch(&records(seed ^ total, total, 64))?;
        total += 64;
        println!("acked {total}");
    }
    Ok(())
}
