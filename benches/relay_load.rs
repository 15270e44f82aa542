//! Load benchmark: requests per second and latency of the relay, as ratios to a bare axum
//! handler that reads the body and answers 204, measured in the same run.
//!
//!     cargo bench --bench relay_load -- [--seconds 3] [--concurrency 32] [--rounds 3] [--only NAME]
//!
//! Every request carries a unique, correctly signed, fresh event (prepared before timing),
//! so the relay does its whole hot path: verify, parse, freshness, replay check, route,
//! uppercase, publish on the embedded backend. Scenarios run in interleaved rounds so that
//! machine noise spreads over all of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use topic_relay::accept::now_ms;
use topic_relay::backend::BackendError;
use topic_relay::config::{ConfigSource, load_from_str};
use topic_relay::event::Message;
use topic_relay::pipeline::{Flow, Processor, ProcessorRegistry, StepContext, StepError};
use topic_relay::startup::App;
use topic_relay::verify::sign;

const SECRET: &str = "bench-secret";

struct Options {
    seconds: u64,
    concurrency: usize,
    rounds: usize,
    /// Run only the scenarios whose name contains this (the baseline always runs).
    only: Option<String>,
}

fn options() -> Options {
    let mut options = Options { seconds: 3, concurrency: 32, rounds: 3, only: None };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        match pair[0].as_str() {
            "--seconds" => options.seconds = pair[1].parse().expect("--seconds N"),
            "--concurrency" => options.concurrency = pair[1].parse().expect("--concurrency N"),
            "--rounds" => options.rounds = pair[1].parse().expect("--rounds N"),
            "--only" => options.only = Some(pair[1].clone()),
            _ => {}
        }
    }
    options
}

/// A step that always fails as if Momento were down, so every event takes the spool path.
struct Outage;

#[async_trait]
impl Processor for Outage {
    async fn process(&self, _: &mut Message, _: &StepContext<'_>) -> Result<Flow, StepError> {
        Err(StepError::Backend(BackendError::Unavailable("benchmark outage".into())))
    }
}

fn relay_config(delivery: &str, steps: &str, spool: &std::path::Path) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_in_flight = 100000\n\n[webhooks.bench]\nsecrets = [\"{SECRET}\"]\n\n\
         [delivery]\nspool_dir = \"{}\"\nmax_spooled_events = 100000000\nretry_initial = \"1h\"\nretry_max = \"1h\"\n{delivery}\n\n\
         [[routes]]\nname = \"shout\"\nmatch = {{ cache = \"chat\", topic = \"topic 1\" }}\nsteps = {steps}\n",
        spool.display()
    )
}

/// Starts a relay; returns its URL.
async fn start_relay(config: &str) -> String {
    let settings =
        load_from_str(config, ConfigSource::BuiltIn, &|_| None, Vec::new()).expect("valid").settings;
    let mut registry = ProcessorRegistry::new();
    registry.register("outage", |_, _| Ok(Arc::new(Outage) as Arc<dyn Processor>));
    let app = App::build_with(settings, registry).await.expect("relay starts");
    let url = format!("http://127.0.0.1:{}/webhook", app.port());
    tokio::spawn(app.run_until_stopped());
    url
}

/// Starts the baseline: read the body, answer 204.
async fn start_baseline() -> String {
    let router = Router::new().route("/webhook", post(|_body: Bytes| async { StatusCode::NO_CONTENT }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

/// Unique signed events, made before the clock starts.
fn prepare(count: usize, round: usize) -> Vec<(Bytes, String)> {
    let now = now_ms();
    (0..count)
        .map(|n| {
            let body = format!(
                r#"{{"cache":"chat","topic":"topic 1","event_timestamp":{now},"publish_timestamp":{now},"topic_sequence_number":{n},"token_id":"user-{round}","text":"benchmark message number {n} of round {round}, about as long as a chat line"}}"#
            );
            let signature = sign(SECRET.as_bytes(), body.as_bytes());
            (Bytes::from(body), signature)
        })
        .collect()
}

struct Measurement {
    per_second: f64,
    requests: usize,
    p50: Duration,
    p99: Duration,
    failures: usize,
    /// Spool commits (fsyncs) during the measurement, for relays with a spool.
    commits: Option<u64>,
}

async fn measure(url: &str, events: Arc<Vec<(Bytes, String)>>, options: &Options) -> Measurement {
    let client = reqwest::Client::builder().pool_max_idle_per_host(options.concurrency).build().unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(options.seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..options.concurrency)
        .map(|_| {
            let (client, url, events, next, failures) =
                (client.clone(), url.to_owned(), events.clone(), next.clone(), failures.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let Some((body, signature)) = events.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .header("momento-signature", signature)
                        .body(body.clone())
                        .send()
                        .await;
                    latencies.push(sent.elapsed());
                    if !response.is_ok_and(|response| response.status().is_success()) {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at =
        |quantile: f64| latencies[((latencies.len() as f64 * quantile) as usize).min(latencies.len() - 1)];
    Measurement {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        requests: latencies.len(),
        commits: None,
        p50: at(0.50),
        p99: at(0.99),
        failures: failures.load(Ordering::Relaxed),
    }
}

/// The relay's `topic_relay_spool_commits` gauge; `None` for servers without one.
async fn spool_commits(webhook_url: &str) -> Option<u64> {
    let metrics_url = webhook_url.replace("/webhook", "/metrics");
    let text = reqwest::get(metrics_url).await.ok()?.text().await.ok()?;
    text.lines().find_map(|line| line.strip_prefix("topic_relay_spool_commits ")?.parse().ok())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let options = options();
    let spool = tempfile::tempdir().unwrap();
    let dir = |name: &str| spool.path().join(name);
    let seed_steps = "[\"uppercase\", { publish = { topic = \"topic 2\" } }]";
    let relays = [
        ("relay, inline (default)", relay_config("", seed_steps, &dir("inline"))),
        ("relay, write-ahead (mode = spool)", relay_config("mode = \"spool\"", seed_steps, &dir("ahead"))),
        (
            "relay, every event spooled (outage)",
            relay_config("", "[\"uppercase\", \"outage\"]", &dir("outage")),
        ),
    ];
    let mut scenarios = vec![("baseline: bare axum, 204", start_baseline().await)];
    for (name, config) in relays {
        if options.only.as_ref().is_none_or(|only| name.contains(only.as_str())) {
            scenarios.push((name, start_relay(&config).await));
        }
    }
    println!(
        "{} s per scenario, {} concurrent requests, {} interleaved rounds; the client runs in this process too",
        options.seconds, options.concurrency, options.rounds
    );
    let mut results: Vec<Vec<Measurement>> = scenarios.iter().map(|_| Vec::new()).collect();
    for round in 0..options.rounds {
        for (index, (_, url)) in scenarios.iter().enumerate() {
            let events = Arc::new(prepare(400_000, round * 10 + index));
            let commits_before = spool_commits(url).await;
            let mut measurement = measure(url, events, &options).await;
            measurement.commits =
                spool_commits(url).await.zip(commits_before).map(|(after, before)| after - before);
            results[index].push(measurement);
        }
    }
    let mut baseline_rates: Vec<f64> = results[0].iter().map(|m| m.per_second).collect();
    let baseline = median(&mut baseline_rates);
    println!(
        "{:<38} {:>10} {:>9} {:>9} {:>9} {:>9} {:>12}",
        "scenario", "req/s", "ratio", "p50 ms", "p99 ms", "non-2xx", "events/fsync"
    );
    for ((name, _), measurements) in scenarios.iter().zip(&results) {
        let mut rates: Vec<f64> = measurements.iter().map(|m| m.per_second).collect();
        let mut p50s: Vec<f64> = measurements.iter().map(|m| m.p50.as_secs_f64() * 1000.0).collect();
        let mut p99s: Vec<f64> = measurements.iter().map(|m| m.p99.as_secs_f64() * 1000.0).collect();
        let failures: usize = measurements.iter().map(|m| m.failures).sum();
        let rate = median(&mut rates);
        let requests: usize = measurements.iter().map(|m| m.requests).sum();
        let commits: Option<u64> = measurements.iter().map(|m| m.commits).sum();
        let per_fsync = match commits {
            Some(commits) if commits > 0 => format!("{:.1}", requests as f64 / commits as f64),
            _ => "-".to_owned(),
        };
        println!(
            "{name:<38} {rate:>10.0} {:>9.2} {:>9.2} {:>9.2} {failures:>9} {per_fsync:>12}",
            rate / baseline,
            median(&mut p50s),
            median(&mut p99s)
        );
    }
}
