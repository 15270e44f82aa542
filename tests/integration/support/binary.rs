//! The relay's real binary, run as a child process: for tests that kill it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Writes `relay.toml` in `dir`: the seed configuration, with its spool in `dir` too.
pub fn seed_config_in(dir: &Path) -> PathBuf {
    let config = dir.join("relay.toml");
    let spool_section = format!("[delivery]\nspool_dir = {:?}\n\n[webhooks.chat]", dir.join("spool"));
    std::fs::write(&config, super::SEED_CONFIG.replace("[webhooks.chat]", &spool_section)).unwrap();
    config
}

/// The relay binary on the config file at `config`, with JSON logs at `info` and no
/// configuration taken from the environment.
pub fn command(config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_topic-relay"));
    command.args(["--config", config.to_str().unwrap()]).env("TOPIC_RELAY_LOG_FORMAT", "json");
    // The port is read from the startup log line, whatever the environment asks for.
    command.env("RUST_LOG", "info").env_remove("TOPIC_RELAY_CONFIG");
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("TOPIC_RELAY__")) {
        command.env_remove(name);
    }
    command
}

/// The relay binary, running on `config`; reports the port it listens on. Killed when
/// dropped, so that a failing test leaves no process behind.
pub struct Relay {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Relay {
    /// Starts the binary on the config file at `config`.
    pub fn start(config: &Path) -> Relay {
        let mut child = command(config).stderr(Stdio::piped()).spawn().expect("the relay starts");
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
                } else if line.contains("\"ERROR\"") {
                    // Shown with the test's output when it fails.
                    eprintln!("relay: {line}");
                }
            }
        });
        let mut relay = Relay { child, port: 0 };
        relay.port = port.recv_timeout(Duration::from_secs(60)).expect("the relay reports its port");
        relay
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The URL of `path` on this relay.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sends SIGTERM and waits for the process to exit; true when it exited successfully.
    pub fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().is_ok_and(|status| status.success());
        sent && self.child.wait().is_ok_and(|status| status.success())
    }

    /// Kills the process with SIGKILL: no shutdown, no flush.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
