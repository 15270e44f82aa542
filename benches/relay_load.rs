//! Load benchmark of the release binary, as users run it: `topic-relay serve` in its own
//! process with its default log settings, loaded by `wrk` (1 thread, 64 connections) on
//! loopback, against two reference servers measured in the same run: a bare axum handler
//! (read the body, answer 204), and the seed route's work written by hand in one handler.
//!
//!     cargo bench --bench relay_load -- [--seconds 8] [--rounds 2]
//!
//! Every request is a distinct, fresh, correctly signed event, so the relay does its whole
//! hot path: verify, parse, freshness, replay check, route, uppercase, publish on the embedded
//! backend. Scenarios run in interleaved rounds and the best round counts, because the
//! machine this runs on is rarely quiet. Then the relay is run at about half its peak rate for
//! its latency under ordinary load. Each run also reads the server's CPU time from `/proc`:
//! CPU per request is what sizes a deployment, and it holds steadier than req/s when the load
//! generator competes for the same cores. Needs `wrk` (`apt-get install wrk`).

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use topic_relay::accept::now_ms;
use topic_relay::verify::{Verifier, sign};

const SECRET: &str = "bench-secret";
const CONNECTIONS: u32 = 64;

/// Sends the events of `EVENTS.tsv` (`SIGNATURE<TAB>BODY` lines) one after another; with a
/// second argument, each connection pauses that many ms between requests.
const WRK_SCRIPT: &str = r#"
local events, i, pause = {}, 0, 0
function init(args)
  for line in io.lines(args[1]) do
    local sig, body = line:match("^(%x+)\t(.*)$")
    events[#events + 1] = wrk.format("POST", nil, {["Content-Type"] = "application/json", ["momento-signature"] = sig}, body)
  end
  pause = tonumber(args[2] or "0")
end
function request() i = i % #events + 1; return events[i] end
-- wrk pauses in whole milliseconds; carrying the remainder over makes the average pause
-- the fractional one asked for.
local owed = 0
function delay()
  owed = owed + pause
  local whole = math.floor(owed)
  owed = owed - whole
  return whole
end
function done(summary, latency, requests)
  io.write(string.format("p50=%.3f p99=%.3f\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"#;

struct Options {
    seconds: u64,
    rounds: usize,
}

fn options() -> Options {
    let mut options = Options { seconds: 8, rounds: 2 };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        match pair[0].as_str() {
            "--seconds" => options.seconds = pair[1].parse().expect("--seconds N"),
            "--rounds" => options.rounds = pair[1].parse().expect("--rounds N"),
            _ => {}
        }
    }
    options
}

/// A server process, stopped when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Peak resident memory so far, in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse().ok())
            .unwrap_or(0.0);
        kib / 1024.0
    }

    /// CPU time the process has used so far, user and system, all threads, in seconds; `None`
    /// where `/proc` does not say.
    #[cfg(target_os = "linux")]
    fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // The command name, in parentheses, may hold spaces: count the fields after it, where
        // utime and stime (fields 14 and 15 of the line) are the 12th and 13th.
        let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
    }

    #[cfg(not(target_os = "linux"))]
    fn cpu_seconds(&self) -> Option<f64> {
        None
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_until_listening(port: u16) {
    for _ in 0..300 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {port}");
}

/// A reference server the relay is measured against, served by this benchmark's own
/// executable in a process of its own.
#[derive(Clone, Copy)]
enum Reference {
    /// Reads the body and answers 204: what any axum service pays per request.
    Bare,
    /// The seed route's work written by hand in one axum handler: verify the signature
    /// (keyed once, with the relay's own `Verifier`), parse the event, uppercase its text,
    /// answer 204. None of the relay's freshness, replay, routing or delivery guarantees.
    ByHand,
}

impl Reference {
    fn name(self) -> &'static str {
        match self {
            Reference::Bare => "bare",
            Reference::ByHand => "by-hand",
        }
    }
}

fn start_reference(reference: Reference) -> Server {
    let port = free_port();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--serve-reference", reference.name(), &port.to_string()])
        .spawn()
        .expect("the reference server starts");
    wait_until_listening(port);
    Server { child, url: format!("http://127.0.0.1:{port}/webhook") }
}

/// The fields of an event the hand-written handler reads.
#[derive(serde::Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    cache: &'a str,
    #[serde(borrow)]
    topic: &'a str,
    text: String,
}

async fn by_hand(verifier: Arc<Verifier>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let signature = headers.get("momento-signature").map(|value| value.as_bytes());
    if verifier.verify(&body, signature).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(event) = serde_json::from_slice::<Event>(&body) else { return StatusCode::BAD_REQUEST };
    std::hint::black_box((event.cache, event.topic, event.text.to_uppercase()));
    StatusCode::NO_CONTENT
}

fn serve_reference(kind: &str, port: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let router = match kind {
            "bare" => Router::new().route("/webhook", post(|_body: Bytes| async { StatusCode::NO_CONTENT })),
            _ => {
                let verifier = Arc::new(Verifier::new([SECRET]));
                Router::new().route(
                    "/webhook",
                    post(move |headers: HeaderMap, body: Bytes| by_hand(verifier.clone(), headers, body)),
                )
            }
        };
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await.unwrap();
        axum::serve(listener, router).await.unwrap();
    });
}

/// The seed route's steps: uppercase the text, publish it.
const SEED_STEPS: &str = r#"["uppercase", { publish = { topic = "topic 2" } }]"#;
/// The same with the uppercasing done by a script step, for what JavaScript costs.
const SCRIPT_STEPS: &str =
    r#"[{ script = { code = "return event.text.toUpperCase()" } }, { publish = { topic = "topic 2" } }]"#;

/// The release binary with the seed route (or `steps`), logging to `log` as it would by
/// default.
fn start_relay(dir: &Path, delivery: &str, steps: &str, log: &Path) -> Server {
    let port = free_port();
    let config = dir.join(format!("relay-{port}.toml"));
    let spool = dir.join(format!("spool-{port}"));
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nmax_in_flight = 100000\n\n[webhooks.chat]\nsecrets = [\"{SECRET}\"]\n\n\
             [delivery]\nspool_dir = {spool:?}\n{delivery}\n\n[[routes]]\nname = \"shout\"\n\
             match = {{ cache = \"chat\", topic = \"topic 1\" }}\nsteps = {steps}\n"
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_topic-relay"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("RUST_LOG")
        .env_remove("TOPIC_RELAY_LOG_FORMAT")
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("the relay starts");
    wait_until_listening(port);
    Server { child, url: format!("http://127.0.0.1:{port}/webhooks/chat") }
}

/// Writes `count` distinct events, signed and stamped now, for one wrk run.
fn write_events(path: &Path, count: usize, salt: usize) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let now = now_ms();
    let text = "hello momento ".repeat(15);
    for n in 0..count {
        let body = format!(
            r#"{{"cache":"chat","topic":"topic 1","event_timestamp":{now},"publish_timestamp":{now},"topic_sequence_number":{n},"token_id":"mo-{salt}","text":"{text}"}}"#
        );
        writeln!(file, "{}\t{body}", sign(SECRET.as_bytes(), body.as_bytes())).unwrap();
    }
}

/// One wrk run: requests per second, non-2xx answers, p50 and p99 in ms, and the server's
/// CPU time per request in µs (NaN where the system does not say).
struct Run {
    per_second: f64,
    failures: u64,
    p50: f64,
    p99: f64,
    cpu_us: f64,
}

fn run_wrk(work: &Path, server: &Server, seconds: u64, pause_ms: f64, salt: usize) -> Run {
    let events = work.join("events.tsv");
    // More than the fastest server answers in that time, so that no event is sent twice: a
    // repeat is answered 409 as a replay, cheaply, and would flatter the relay.
    write_events(&events, (seconds as usize) * 200_000, salt);
    let script = work.join("events.lua");
    std::fs::write(&script, WRK_SCRIPT).unwrap();
    let cpu_before = server.cpu_seconds();
    let output = Command::new("wrk")
        .args(["-t1", &format!("-c{CONNECTIONS}"), &format!("-d{seconds}s"), "-s"])
        .arg(&script)
        .arg(&server.url)
        .arg("--")
        .arg(&events)
        .arg(pause_ms.to_string())
        .stderr(Stdio::inherit())
        .output()
        .expect("wrk runs");
    let cpu_seconds = server.cpu_seconds().zip(cpu_before).map(|(after, before)| after - before);
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| -> Option<&str> {
        text.lines().find_map(|line| line.trim().strip_prefix(prefix)).map(str::trim)
    };
    let quantiles = text.lines().find(|line| line.starts_with("p50=")).unwrap_or_default();
    let quantile = |name: &str| -> f64 {
        quantiles
            .split_whitespace()
            .find_map(|part| part.strip_prefix(name)?.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let requests: Option<f64> = text
        .lines()
        .find(|line| line.contains("requests in"))
        .and_then(|line| line.split_whitespace().next()?.parse().ok());
    Run {
        cpu_us: cpu_seconds.zip(requests).map_or(f64::NAN, |(cpu, requests)| cpu * 1e6 / requests),
        per_second: field("Requests/sec:").and_then(|value| value.parse().ok()).unwrap_or(0.0),
        failures: field("Non-2xx or 3xx responses:").and_then(|value| value.parse().ok()).unwrap_or(0),
        p50: quantile("p50="),
        p99: quantile("p99="),
    }
}

/// The relay's spool commits and the changes they carried, from `/metrics`.
fn spool_batches(webhook_url: &str) -> Option<(f64, f64)> {
    let url = webhook_url.replace("/webhooks/chat", "/metrics");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    let text = runtime.block_on(async { reqwest::get(url).await.ok()?.text().await.ok() })?;
    let value = |name: &str| -> Option<f64> {
        text.lines().find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
    };
    Some((
        value("topic_relay_spool_commit_batch_size_count")?,
        value("topic_relay_spool_commit_batch_size_sum")?,
    ))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--serve-reference") {
        return serve_reference(&args[at + 1], &args[at + 2]);
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("this benchmark drives the relay with wrk: apt-get install wrk");
        std::process::exit(2);
    }
    let options = options();
    let work = tempfile::tempdir().unwrap();
    let relay_log = work.path().join("relay.log");
    let servers = [
        ("bare axum: read the body, answer 204", start_reference(Reference::Bare)),
        ("by hand: verify, parse, uppercase", start_reference(Reference::ByHand)),
        ("relay, inline (default)", start_relay(work.path(), "", SEED_STEPS, &relay_log)),
        (
            "relay, write-ahead (mode = \"spool\")",
            start_relay(work.path(), "mode = \"spool\"", SEED_STEPS, &work.path().join("ahead.log")),
        ),
        (
            "relay, inline, uppercase by a script step",
            start_relay(work.path(), "", SCRIPT_STEPS, &work.path().join("script.log")),
        ),
    ];
    println!(
        "{} s per run, wrk with 1 thread and {CONNECTIONS} connections, {} interleaved rounds, best round shown",
        options.seconds, options.rounds
    );
    let mut best: Vec<Option<Run>> = servers.iter().map(|_| None).collect();
    for round in 0..options.rounds {
        for (index, (_, server)) in servers.iter().enumerate() {
            let run = run_wrk(work.path(), server, options.seconds, 0.0, round * 10 + index);
            if best[index].as_ref().is_none_or(|known| run.per_second > known.per_second) {
                best[index] = Some(run);
            }
        }
    }
    let bare = best[0].as_ref().map_or(1.0, |run| run.per_second);
    println!(
        "{:<40} {:>10} {:>8} {:>9} {:>9} {:>8} {:>12}",
        "server", "req/s", "× bare", "p50 ms", "p99 ms", "non-2xx", "CPU µs/req"
    );
    for ((name, _), run) in servers.iter().zip(&best) {
        let run = run.as_ref().unwrap();
        println!(
            "{name:<40} {:>10.0} {:>8.2} {:>9.2} {:>9.2} {:>8} {:>12.1}",
            run.per_second,
            run.per_second / bare,
            run.p50,
            run.p99,
            run.failures,
            run.cpu_us
        );
    }
    let inline = &servers[2].1;
    let peak = best[2].as_ref().unwrap();
    // Each connection waits for an answer and then pauses, so it sends one request per
    // pause plus latency; the latency at half load is close to the median at the peak.
    let pause = (f64::from(CONNECTIONS) * 1000.0 / (peak.per_second / 2.0) - peak.p50).max(0.0);
    let half = run_wrk(work.path(), inline, options.seconds, pause, 99);
    println!(
        "relay, inline, paced to {:.2} of its peak: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {:.1} µs of CPU per request",
        half.per_second / peak.per_second,
        half.per_second,
        half.p50,
        half.p99,
        half.cpu_us
    );
    if let Some((commits, changes)) = spool_batches(&servers[3].1.url).filter(|(commits, _)| *commits > 0.0) {
        // Each event is two changes to the spool: written ahead, then removed once done.
        println!("write-ahead: {:.1} events per spool commit (one fsync each)", changes / commits / 2.0);
    }
    let logged = std::fs::metadata(&relay_log).map_or(0, |meta| meta.len());
    println!(
        "relay, inline: peak RSS {:.1} MiB, {:.1} KiB of logs",
        inline.peak_rss_mib(),
        logged as f64 / 1024.0
    );
}
