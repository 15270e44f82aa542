//! The real binary, killed with SIGKILL while events sit in its spool, restarted: every
//! spooled event is delivered, none twice.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::emulator::Emulator;
use support::on_emulator::momento_section;
use support::{SECRET, event};
use tonic::Code;
use topic_relay::verify::sign;

/// The relay binary, running on `config`; reports the port it listens on. Killed when
/// dropped, so that a failing test leaves no process behind.
struct Relay {
    child: Child,
    port: u16,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Relay {
    fn start(config: &std::path::Path) -> Relay {
        let mut command = Command::new(env!("CARGO_BIN_EXE_topic-relay"));
        command.args(["--config", config.to_str().unwrap()]).env("TOPIC_RELAY_LOG_FORMAT", "json");
        // The port is read from the startup log line, whatever the environment asks for.
        command.env("RUST_LOG", "info").env_remove("TOPIC_RELAY_CONFIG");
        for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("TOPIC_RELAY__")) {
            command.env_remove(name);
        }
        let mut child = command.stderr(Stdio::piped()).spawn().expect("the relay starts");
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (found, port) = std::sync::mpsc::channel();
        // Reads the log until the port shows up, then keeps draining it so that the relay never
        // blocks on a full pipe.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("topic-relay is listening")
                    && let Ok(log) = serde_json::from_str::<serde_json::Value>(&line)
                {
                    let _ = found.send(log["fields"]["port"].as_u64().unwrap_or_default() as u16);
                }
            }
        });
        let mut relay = Relay { child, port: 0 };
        relay.port = port.recv_timeout(Duration::from_secs(60)).expect("the relay reports its port");
        relay
    }

    async fn post(&self, client: &reqwest::Client, body: String) -> u16 {
        let signature = sign(SECRET.as_bytes(), body.as_bytes());
        let url = format!("http://127.0.0.1:{}/webhook", self.port);
        let response =
            client.post(url).header("momento-signature", signature).body(body).send().await.unwrap();
        response.status().as_u16()
    }

    async fn spooled(&self, client: &reqwest::Client) -> u64 {
        let url = format!("http://127.0.0.1:{}/v1/status", self.port);
        let status: serde_json::Value = client.get(url).send().await.unwrap().json().await.unwrap();
        status["delivery"]["spooled"].as_u64().unwrap()
    }
}

fn published_counts(emulator: &Emulator) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for published in emulator.published() {
        *counts.entry(published.text.unwrap_or_default()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn spooled_events_survive_sigkill_and_are_delivered_once_after_a_restart() {
    let emulator = Emulator::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    let spool = dir.path().join("spool");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[webhooks.chat]\nsecrets = [\"{SECRET}\"]\n\n[delivery]\nspool_dir = \"{}\"\nretry_initial = \"200ms\"\nretry_max = \"500ms\"\n\n[[routes]]\nname = \"shout\"\nmatch = {{ cache = \"chat\", topic = \"topic 1\" }}\nsteps = [\"uppercase\", {{ publish = {{ topic = \"topic 2\" }} }}]\n{}",
            spool.display(),
            momento_section(&emulator)
        ),
    )
    .unwrap();
    let client = reqwest::Client::new();
    emulator.fail_all(Code::Unavailable);

    let first = Relay::start(&config);
    for n in 0..10 {
        assert_eq!(first.post(&client, event("chat", "topic 1", &format!("survivor {n}"))).await, 202);
    }
    assert_eq!(first.spooled(&client).await, 10);
    drop(first); // SIGKILL: no shutdown, no flush
    assert!(emulator.published().is_empty());

    emulator.heal();
    let second = Relay::start(&config);
    let deadline = Instant::now() + Duration::from_secs(20);
    while published_counts(&emulator).len() < 10 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let counts = published_counts(&emulator);
    assert_eq!(counts.len(), 10, "{counts:?}");
    assert!(counts.values().all(|&times| times == 1), "{counts:?}");
    assert!(counts.contains_key("SURVIVOR 9"));
    assert_eq!(second.spooled(&client).await, 0);
}
