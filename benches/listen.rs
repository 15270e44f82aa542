//! The yardstick for listening: topic-relay's release binary against a listener written with
//! Momento's own Node SDK (`@gomomento/sdk`, as Momento's guides show), in one run, on
//! loopback, against the same Momento emulator. Each listener does the seed's work: take
//! each item of an input topic, uppercase it, republish it on an output topic.
//!
//!     cargo build --release && cargo bench --bench listen -- [--seconds 10] [--soak 60] [--rate N]
//!         [--relay-threads N] [--queue N] [--concurrency N] [--no-node]
//!
//! topic-relay runs three times: with `concurrency = 1` (the default: each topic's items in
//! order) and with `concurrency = 16` (`--concurrency N` for another), each with
//! `worker_threads = 1` (`--relay-threads N` for more), as the Node listener runs its
//! JavaScript on one thread; then with that concurrency again on a worker thread per core,
//! the runtime's default, so that what a second worker costs on shared cores is measured in
//! the same run. For each listener it prints:
//! - the items per second it carried at full load (publishers as fast as they can go), and
//!   per CPU second of its own;
//! - the publish-to-republish latency p50 and p99 at half that rate (`--rate` paces it at that
//!   many items a second instead), once what the full load left behind is carried;
//! - its resident memory at the start and the end of that run (`--soak` makes it longer).
//!
//! Then a bare forwarder, the floor under any listener on this machine: a process of a few
//! lines on one thread that takes each item from the stream and republishes it uppercased,
//! `--concurrency` at a time, with nothing else (no routes, checkpoints, leases or metrics).
//! Its p99 is read at the pace the relay's second run was read at, so that what the relay
//! adds to the machine's own latency shows, in the same run.
//!
//! First, the emulator's own ceiling: items per second it delivers straight to a subscriber,
//! so that it is shown not to be what limits either listener. The Node listener needs `node`
//! and `npm`; its SDK is installed once into `~/.cache/topic-relay-bench`.

#[allow(dead_code)]
#[path = "../tests/integration/support/emulator.rs"]
mod emulator;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use emulator::{Emulator, test_api_key};
use futures::StreamExt;
use momento_protos::cache_client::pubsub::pubsub_client::PubsubClient;
use momento_protos::cache_client::pubsub::subscription_item::Kind;
use momento_protos::cache_client::pubsub::{PublishRequest, SubscriptionRequest, TopicValue, topic_value};
use tonic::transport::Channel;

const CACHE: &str = "chat";
/// Publishing tasks at full load.
const PUBLISHERS: usize = 16;
/// Publishing tasks sharing a paced load's schedule. One task that waits for each answer
/// cannot keep a pace near its own bound (one answer at a time, 6,000 a second on an idle
/// emulator): it falls behind, then catches up in bursts of twice the pace, which is not
/// half load. Four keep the schedule, with room to spare.
const PACED_PUBLISHERS: usize = 4;
/// Items a second of the control published beside each half-load run.
const CONTROL_PACE: f64 = 200.0;

struct Options {
    seconds: u64,
    soak: u64,
    /// The paced run's items a second, instead of half the listener's peak.
    rate: Option<f64>,
    /// Leave the Node listener out (`--no-node`), for quicker runs while profiling.
    node: bool,
    /// The relay's `server.worker_threads` in its first two runs.
    relay_threads: usize,
    /// The relay's queue per topic (`--queue N`), instead of one that holds the whole burst.
    queue: usize,
    /// The second relay run's `concurrency` (`--concurrency N`).
    concurrency: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let mut options = Options {
        seconds: 10,
        soak: 10,
        rate: None,
        node: !args.iter().any(|arg| arg == "--no-node"),
        relay_threads: 1,
        queue: 1_000_000,
        concurrency: 16,
    };
    for pair in args.windows(2) {
        match pair[0].as_str() {
            "--seconds" => options.seconds = pair[1].parse().expect("--seconds N"),
            "--soak" => options.soak = pair[1].parse().expect("--soak N"),
            "--rate" => options.rate = Some(pair[1].parse().expect("--rate N")),
            "--relay-threads" => options.relay_threads = pair[1].parse().expect("--relay-threads N"),
            "--queue" => options.queue = pair[1].parse().expect("--queue N"),
            "--concurrency" => options.concurrency = pair[1].parse().expect("--concurrency N"),
            _ => {}
        }
    }
    assert!(options.concurrency > 1, "--concurrency N: more than 1 (the in-order run is always made)");
    options
}

/// Microseconds since the run began, the clock every item carries.
fn now_us(base: Instant) -> u64 {
    base.elapsed().as_micros() as u64
}

async fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(endpoint.to_owned()).unwrap().connect().await.expect("the emulator answers")
}

async fn publish(client: &mut PubsubClient<Channel>, topic: &str, text: String) -> bool {
    let request = PublishRequest {
        cache_name: CACHE.to_owned(),
        topic: topic.to_owned(),
        value: Some(TopicValue { kind: Some(topic_value::Kind::Text(text)) }),
    };
    client.publish(request).await.is_ok()
}

/// What the output topic brought: items counted, with their latencies in µs.
#[derive(Default)]
struct Received {
    count: AtomicU64,
    latencies: std::sync::Mutex<Vec<u64>>,
}

/// Subscribes to `topic` and records every item's latency from the time it carries.
async fn watch(endpoint: &str, topic: &str, base: Instant) -> Arc<Received> {
    let received = Arc::new(Received::default());
    let mut client = PubsubClient::new(channel(endpoint).await);
    let request =
        SubscriptionRequest { cache_name: CACHE.to_owned(), topic: topic.to_owned(), ..Default::default() };
    let mut stream = client.subscribe(request).await.expect("subscribe").into_inner();
    let counted = received.clone();
    tokio::spawn(async move {
        while let Some(Ok(item)) = stream.next().await {
            let Some(Kind::Item(item)) = item.kind else { continue };
            let Some(topic_value::Kind::Text(text)) = item.value.and_then(|value| value.kind) else {
                continue;
            };
            let sent: u64 = text.split_whitespace().nth(1).and_then(|sent| sent.parse().ok()).unwrap_or(0);
            counted.count.fetch_add(1, Ordering::Relaxed);
            counted.latencies.lock().unwrap().push(now_us(base).saturating_sub(sent));
        }
    });
    received
}

/// Publishes on `topic` from [`PUBLISHERS`] tasks for `seconds`, as fast as they go, or from
/// [`PACED_PUBLISHERS`] sharing one schedule of `rate` items a second; returns how many were
/// published.
async fn load(endpoint: &str, topic: &str, seconds: u64, rate: Option<f64>, base: Instant) -> u64 {
    let tasks = if rate.is_some() { PACED_PUBLISHERS } else { PUBLISHERS };
    load_from(tasks, endpoint, topic, seconds, rate, base).await
}

/// Publishes on `topic` from `tasks` tasks, each waiting for every answer, for `seconds`.
async fn load_from(
    tasks: usize,
    endpoint: &str,
    topic: &str,
    seconds: u64,
    rate: Option<f64>,
    base: Instant,
) -> u64 {
    let published = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..tasks {
        clients.push(PubsubClient::new(channel(endpoint).await));
    }
    // One schedule for all the tasks: each takes the next item and publishes it when due.
    let started = Instant::now();
    let mut handles = Vec::new();
    for mut client in clients {
        let (published, stop) = (published.clone(), stop.clone());
        let topic = topic.to_owned();
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = published.fetch_add(1, Ordering::Relaxed);
                if let Some(rate) = rate {
                    let due = started + Duration::from_secs_f64(n as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                if !publish(&mut client, &topic, format!("item-{n} {}", now_us(base))).await {
                    break;
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for handle in handles {
        let _ = handle.await;
    }
    published.load(Ordering::Relaxed)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

fn resident_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// CPU seconds (user and system, all threads) the process `pid` has used, from `/proc`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks: f64 = [11, 12].iter().filter_map(|&index| fields.get(index)?.parse::<f64>().ok()).sum();
    // SAFETY: sysconf reads a constant of the system and has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// One listener's figures.
struct Figures {
    peak: f64,
    /// Items carried per CPU second the listener used at full load: what sizes it, and
    /// steadier than items a second when the load generator shares its cores.
    per_cpu_second: f64,
    /// The items a second the half-load run published.
    paced: f64,
    p50: f64,
    p99: f64,
    /// The p99 of a control in the same window: items published at 200 a second straight
    /// to a subscriber of the emulator. A stall of the machine, the load or the emulator
    /// shows in both; one of the listener's, only in its own.
    control_p99: f64,
    rss_start: f64,
    rss_end: f64,
}

/// Measures the listener `pid` that carries `input` to `output`; its half-load run is paced
/// at `pace`, else at `--rate`, else at half its own peak.
async fn measure(
    endpoint: &str,
    (input, output): (&str, &str),
    pid: u32,
    pace: Option<f64>,
    options: &Options,
    base: Instant,
) -> Figures {
    let out = watch(endpoint, output, base).await;
    // Warm up, so that connections and the listener's pools are open.
    load(endpoint, input, 1, Some(200.0), base).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = out.count.load(Ordering::Relaxed);
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let published = load(endpoint, input, options.seconds, None, base).await;
    let carried = out.count.load(Ordering::Relaxed) - before;
    let peak = carried as f64 / started.elapsed().as_secs_f64();
    let per_cpu_second = carried as f64 / (cpu_seconds(pid) - cpu_before).max(1e-9);
    // The publishers outran the listener: let it carry what is left (from its queue, or
    // the spool) before the half-load run, so that the backlog does not count as latency.
    let drained = Instant::now();
    while out.count.load(Ordering::Relaxed) < before + published
        && drained.elapsed() < Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let backlog = (before + published).saturating_sub(out.count.load(Ordering::Relaxed));
    if backlog > 0 {
        eprintln!("{input}: {backlog} items still not carried 120 s after the full-load run");
    } else {
        let behind = (before + published).saturating_sub(before + carried);
        eprintln!(
            "{input}: carried the {behind} items left behind by the full load in {:.1} s",
            drained.elapsed().as_secs_f64()
        );
    }
    out.latencies.lock().unwrap().clear();
    let rss_start = resident_mib(pid);
    let pace = pace.or(options.rate).unwrap_or(peak / 2.0);
    let control_topic = format!("{input}-control");
    let control = watch(endpoint, &control_topic, base).await;
    let seconds = options.soak.max(options.seconds);
    let (paced, _) = tokio::join!(
        load(endpoint, input, seconds, Some(pace), base),
        load(endpoint, &control_topic, seconds, Some(CONTROL_PACE), base),
    );
    let paced = paced as f64 / seconds as f64;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_end = resident_mib(pid);
    let mut latencies = std::mem::take(&mut *out.latencies.lock().unwrap());
    latencies.sort_unstable();
    let mut control = std::mem::take(&mut *control.latencies.lock().unwrap());
    control.sort_unstable();
    Figures {
        peak,
        per_cpu_second,
        paced,
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        control_p99: percentile(&control, 0.99),
        rss_start,
        rss_end,
    }
}

/// What the emulator itself can do.
struct Ceiling {
    /// Items a second it delivers straight to one subscriber.
    peak: f64,
    /// Publishes a second from one publisher that waits for each answer: what bounds any
    /// listener that keeps its topic's items in order, which waits likewise for each
    /// republish.
    one_at_a_time: f64,
    /// Its own publish-to-delivery latency p50 and p99 at the paced rate, the floor under
    /// every listener's (one hop where a listener makes two).
    p50: f64,
    p99: f64,
}

async fn ceiling(endpoint: &str, options: &Options, paced: f64, base: Instant) -> Ceiling {
    let out = watch(endpoint, "ceiling", base).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    load(endpoint, "ceiling", options.seconds, None, base).await;
    let peak = out.count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let published = load_from(1, endpoint, "ceiling-one", options.seconds, None, base).await;
    let one_at_a_time = published as f64 / started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    out.latencies.lock().unwrap().clear();
    load(endpoint, "ceiling", options.seconds, Some(paced), base).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut latencies = std::mem::take(&mut *out.latencies.lock().unwrap());
    latencies.sort_unstable();
    Ceiling { peak, one_at_a_time, p50: percentile(&latencies, 0.5), p99: percentile(&latencies, 0.99) }
}

/// One run of the relay: its topic's `concurrency`, and its worker threads (`None`: the
/// runtime's default, one per core).
struct RelayRun {
    concurrency: usize,
    threads: Option<usize>,
}

impl RelayRun {
    /// What names the run's subscription, topics and configuration file.
    fn name(&self) -> String {
        match self.threads {
            Some(threads) => format!("{}-t{threads}", self.concurrency),
            None => format!("{}-per-core", self.concurrency),
        }
    }

    fn label(&self) -> String {
        let order = match self.concurrency {
            1 => "in order".to_owned(),
            concurrency => format!("concurrency {concurrency}"),
        };
        match self.threads {
            Some(1) => format!("topic-relay, {order}"),
            Some(threads) => format!("topic-relay, {order}, {threads} thr"),
            None => format!("topic-relay, {order}, thread/core"),
        }
    }
}

/// A relay's configuration. Each run has a subscription of its own: one sharing the name of
/// the run before would see that replica, killed, among the live members until its member
/// key expires, and leave the topic to it until then. The queue holds the whole burst of the
/// full load unless `--queue` says otherwise: with the default queue (1,000 items) the rest
/// goes to the spool and is carried from there out of order, which would count items the
/// in-order run did not carry in order.
fn relay_config(dir: &Path, endpoint: &str, run: &RelayRun, queue: usize) -> PathBuf {
    let (name, concurrency) = (run.name(), run.concurrency);
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
{worker_threads}
[delivery]
spool_dir = {spool:?}

[subscriptions.bench-{name}]
cache = "{CACHE}"
topics = ["relay-in-{name}"]
concurrency = {concurrency}
queue = {queue}

[[routes]]
name = "shout"
match = {{ subscription = "bench-{name}" }}
steps = ["uppercase", {{ publish = {{ topic = "relay-out-{name}" }} }}]

[momento]
backend = "momento"
api_key = "{key}"
endpoint_override = "{endpoint}"
tls = false
probe_cache = "{CACHE}"
"#,
        spool = dir.join("spool"),
        key = test_api_key(),
        worker_threads = run.threads.map_or(String::new(), |threads| format!("worker_threads = {threads}\n")),
    );
    let file = dir.join(format!("relay-{name}.toml"));
    std::fs::write(&file, text).unwrap();
    file
}

/// Kills the child when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A listener on Momento's Node SDK. As Momento's guides show, it publishes from `onItem`
/// without waiting, so its republishes may land out of order; with `in-order`, each
/// publish waits for the one before, as a listener that keeps its topic's order must.
const NODE_LISTENER: &str = r#"
import { TopicClient, TopicConfigurations, MomentoLocalProvider } from '@gomomento/sdk';
const [port, input, output, mode] = process.argv.slice(2);
const client = new TopicClient({
  configuration: TopicConfigurations.Default.latest(),
  credentialProvider: new MomentoLocalProvider({ hostname: '127.0.0.1', port: Number(port) }),
});
let previous = Promise.resolve();
const republish = (text) => client.publish('chat', output, text.toUpperCase());
await client.subscribe('chat', input, {
  onItem: mode === 'in-order'
    ? (item) => { const text = item.valueString(); previous = previous.then(() => republish(text)); }
    : (item) => { republish(item.valueString()); },
  onError: (error) => console.error(error.toString()),
});
console.log('listening');
"#;

/// The Node listener's folder, with `@gomomento/sdk` installed.
fn node_listener() -> Option<PathBuf> {
    let home = std::env::var("HOME").ok()?;
    let dir = PathBuf::from(home).join(".cache/topic-relay-bench/node-listener");
    std::fs::create_dir_all(&dir).ok()?;
    std::fs::write(dir.join("listener.mjs"), NODE_LISTENER).ok()?;
    if !dir.join("node_modules/@gomomento/sdk").exists() {
        std::fs::write(dir.join("package.json"), r#"{"private": true, "type": "module"}"#).ok()?;
        let installed = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "@gomomento/sdk@1.118.1"])
            .current_dir(&dir)
            .status()
            .ok()?;
        if !installed.success() {
            return None;
        }
    }
    Some(dir)
}

async fn until_subscribed(emulator: &Emulator, topic: &str) -> bool {
    for _ in 0..200 {
        if emulator.subscribers(CACHE, topic) > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn print(name: &str, figures: &Figures, node: Option<&Figures>) {
    let ratio = |ours: f64, theirs: fn(&Figures) -> f64| {
        node.map_or(String::new(), |node| format!(" ({:.1}x Node)", ours / theirs(node)))
    };
    println!(
        "{name:<40} {:>6.0} items/s{}, {:>6.0} per CPU second{}; half load ({:.0}/s): p50 {:.2} ms, p99 {:.2} ms (control {:.2}); RSS {:.1} -> {:.1} MiB",
        figures.peak,
        ratio(figures.peak, |node| node.peak),
        figures.per_cpu_second,
        ratio(figures.per_cpu_second, |node| node.per_cpu_second),
        figures.paced,
        figures.p50,
        figures.p99,
        figures.control_p99,
        figures.rss_start,
        figures.rss_end
    );
}

/// Runs the bare forwarder (`--forwarder ENDPOINT INPUT OUTPUT CONCURRENCY`) until killed:
/// one thread, one stream, one connection to publish on.
fn forward(args: &[String]) {
    let [endpoint, input, output, concurrency] = args else {
        panic!("--forwarder ENDPOINT INPUT OUTPUT CONCURRENCY")
    };
    let concurrency: usize = concurrency.parse().expect("CONCURRENCY");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut subscriber = PubsubClient::new(channel(endpoint).await);
        let publisher = PubsubClient::new(channel(endpoint).await);
        let request =
            SubscriptionRequest { cache_name: CACHE.to_owned(), topic: input.clone(), ..Default::default() };
        let mut stream = subscriber.subscribe(request).await.expect("subscribe").into_inner();
        let in_flight = Arc::new(tokio::sync::Semaphore::new(concurrency));
        while let Some(Ok(item)) = stream.next().await {
            let Some(Kind::Item(item)) = item.kind else { continue };
            let Some(topic_value::Kind::Text(text)) = item.value.and_then(|value| value.kind) else {
                continue;
            };
            let permit = in_flight.clone().acquire_owned().await.unwrap();
            let (mut publisher, output) = (publisher.clone(), output.clone());
            tokio::spawn(async move {
                publish(&mut publisher, &output, text.to_uppercase()).await;
                drop(permit);
            });
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--forwarder") {
        return forward(&args[at + 1..(at + 5).min(args.len())]);
    }
    let options = options();
    let relay_binary = PathBuf::from("target/release/topic-relay");
    assert!(relay_binary.exists(), "build the release binary first: cargo build --release");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let base = Instant::now();
        let emulator = Emulator::start().await;
        emulator.forget_publishes();
        let endpoint = emulator.endpoint();
        let paced = options.rate.unwrap_or(1000.0);
        let emulator_can = ceiling(&endpoint, &options, paced, base).await;
        println!(
            "{:<40} {:>7.0} items/s delivered straight to a subscriber; at {paced:.0}/s: p50 {:.2} ms, p99 {:.2} ms",
            "emulator ceiling", emulator_can.peak, emulator_can.p50, emulator_can.p99
        );
        println!(
            "{:<40} {:>7.0} publishes/s from one publisher waiting for each answer (bounds any in-order listener)",
            "", emulator_can.one_at_a_time
        );

        let dir = tempfile::tempdir().unwrap();
        let mut relays = Vec::new();
        let threads = Some(options.relay_threads);
        let runs = [
            RelayRun { concurrency: 1, threads },
            RelayRun { concurrency: options.concurrency, threads },
            RelayRun { concurrency: options.concurrency, threads: None },
        ];
        for run in runs {
            let config = relay_config(dir.path(), &endpoint, &run, options.queue);
            let mut command = Command::new(&relay_binary);
            command.args(["--config", config.to_str().unwrap()]).stderr(Stdio::null()).stdout(Stdio::null());
            let relay = Running(command.spawn().expect("the relay starts"));
            let (input, output) = (format!("relay-in-{}", run.name()), format!("relay-out-{}", run.name()));
            assert!(until_subscribed(&emulator, &input).await, "the relay subscribes");
            let figures = measure(&endpoint, (&input, &output), relay.0.id(), None, &options, base).await;
            relays.push((run, figures));
        }

        let (input, output) = ("bare-in".to_owned(), "bare-out".to_owned());
        let concurrency = options.concurrency.to_string();
        let mut command = Command::new(std::env::current_exe().unwrap());
        command.args(["--forwarder", &endpoint, &input, &output, &concurrency]);
        let forwarder = Running(command.stdout(Stdio::null()).spawn().expect("the forwarder starts"));
        assert!(until_subscribed(&emulator, &input).await, "the forwarder subscribes");
        let relay_pace = relays[1].1.paced;
        let bare = measure(&endpoint, (&input, &output), forwarder.0.id(), Some(relay_pace), &options, base).await;
        drop(forwarder);

        let node_dir = options.node.then(node_listener).flatten();
        match &node_dir {
            Some(_) => {}
            None if !options.node => eprintln!("Node listener skipped (--no-node)"),
            None => eprintln!("cannot install @gomomento/sdk: no Node figures"),
        }
        let mut nodes = Vec::new();
        for mode in ["guide", "in-order"] {
            let Some(dir) = &node_dir else { break };
            let (input, output) = (format!("node-{mode}-in"), format!("node-{mode}-out"));
            let child = Command::new("node")
                .args(["listener.mjs", &emulator.port().to_string(), &input, &output, mode])
                .current_dir(dir)
                .stdout(Stdio::null())
                .spawn()
                .expect("node starts");
            let running = Running(child);
            if until_subscribed(&emulator, &input).await {
                nodes.push(measure(&endpoint, (&input, &output), running.0.id(), None, &options, base).await);
            } else {
                eprintln!("the Node listener ({mode}) did not subscribe");
            }
        }
        // Each relay run is set beside the Node listener that keeps the same promise: in
        // order against in order, any order against the guides' listener.
        let (node_guide, node_in_order) = (nodes.first(), nodes.get(1));
        for (run, figures) in &relays {
            let node = if run.concurrency == 1 { node_in_order } else { node_guide };
            print(&run.label(), figures, node);
        }
        // The last two runs differ only in their worker threads.
        if let [_, (_, fewer), (_, per_core)] = relays.as_slice() {
            println!(
                "{:<40} {:.2}x the items/s, {:.2}x the items per CPU second of a worker per core",
                format!("worker_threads = {}", options.relay_threads),
                fewer.peak / per_core.peak,
                fewer.per_cpu_second / per_core.per_cpu_second,
            );
        }
        print(&format!("bare forwarder, concurrency {}", options.concurrency), &bare, node_guide);
        let (run, relay) = &relays[1];
        println!(
            "{:<40} {:.2}x the items/s, {:.2}x the items per CPU second of the bare forwarder; at the same pace, p99 {:.2} ms against its {:.2} ms",
            run.label(),
            relay.peak / bare.peak,
            relay.per_cpu_second / bare.per_cpu_second,
            relay.p99,
            bare.p99,
        );
        if let Some(node) = node_guide {
            print("Node, as Momento's guides show", node, None);
        }
        if let Some(node) = node_in_order {
            print("Node, in order", node, None);
        }
    });
}
