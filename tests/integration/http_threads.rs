//! The HTTP server's threads: each serves the connections handed to it, new ones going to the
//! thread serving the fewest, so one held up by a request does not hold up the others.

use crate::support;

use std::time::Duration;

use support::steps::GATE;
use support::{SEED_CONFIG, event, spawn_app_with};

#[tokio::test]
async fn a_request_holding_its_thread_does_not_hold_up_other_connections() {
    let config = format!(
        "{}\n[[routes]]\nname = \"held\"\nmatch = {{ topic = \"held\" }}\nsteps = [{{ hold_thread = {{}} }}]\n",
        SEED_CONFIG.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nthreads = 2")
    );
    let app = spawn_app_with(&config).await;
    let meanwhile = async {
        for _ in 0..200 {
            if GATE.held() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(GATE.held(), 1, "the held request reached its step");
        // A new connection, so that it cannot be one the held thread owns.
        let body = event("chat", "topic 1", "meanwhile");
        let sent = reqwest::Client::new()
            .post(app.url("/webhook"))
            .header("momento-signature", app.sign(&body))
            .body(body)
            .send();
        let answered = tokio::time::timeout(Duration::from_secs(10), sent).await;
        GATE.open();
        answered
    };
    let (held, answered) = tokio::join!(app.post_event("chat", "held", "hold on"), meanwhile);
    let answered = answered.expect("another connection is served while one thread is held");
    assert_eq!(answered.unwrap().status(), 200);
    assert_eq!(held.status(), 200, "the held request finishes once let go");
    app.stop().await.unwrap();
}

/// Opens a connection and has one request answered on it, so that it has been accepted and
/// handed to a thread; the connection stays open while the stream lives.
async fn open_connection(port: u16) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nhost: relay\r\n\r\n").await.unwrap();
    let mut answer = [0; 64];
    let read = stream.read(&mut answer).await.unwrap();
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer[..read]));
    stream
}

#[tokio::test]
async fn connections_opened_together_are_spread_evenly_over_the_threads() {
    const THREADS: usize = 3;
    const CONNECTIONS: usize = 12;
    let config = SEED_CONFIG
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:0\"\nthreads = {THREADS}"));
    let app = spawn_app_with(&config).await;
    // All at once, as a load balancer opens its pool: whichever thread woke first used to take
    // nearly all of them.
    let open = futures::future::join_all((0..CONNECTIONS).map(|_| open_connection(app.port))).await;
    let metrics = reqwest::Client::new().get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let per_thread: Vec<u64> = (0..THREADS)
        .map(|thread| {
            let series = format!("topic_relay_http_connections{{thread=\"{thread}\"}} ");
            let line = metrics.lines().find(|line| line.starts_with(&series));
            let line = line.unwrap_or_else(|| panic!("no {series}in /metrics:\n{metrics}"));
            line[series.len()..].parse().unwrap()
        })
        .collect();
    // The scrape's own connection is open too, on one of the threads.
    assert_eq!(per_thread.iter().sum::<u64>(), CONNECTIONS as u64 + 1, "{per_thread:?}");
    let (fewest, most) = (per_thread.iter().min().unwrap(), per_thread.iter().max().unwrap());
    assert!(most - fewest <= 1, "connections per thread: {per_thread:?}");
    drop(open);
    app.stop().await.unwrap();
}

/// The scheduling policy of each of `pid`'s threads named `http-N`, from field 41 of its
/// `stat`, and of its other threads.
#[cfg(target_os = "linux")]
fn policies(pid: u32) -> (Vec<u32>, Vec<u32>) {
    let (mut http, mut others) = (Vec::new(), Vec::new());
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap();
        // The fields after the name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let policy = fields[41 - 3].parse().unwrap();
        if name.trim_end().starts_with("http-") { http.push(policy) } else { others.push(policy) }
    }
    (http, others)
}

#[cfg(target_os = "linux")]
#[test]
fn the_http_threads_run_under_sched_batch_unless_told_otherwise() {
    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    for (extra, expected) in [("", SCHED_BATCH), ("scheduling = \"normal\"\n", SCHED_OTHER)] {
        let dir = tempfile::tempdir().unwrap();
        let config = seed_config_with_server(dir.path(), &format!("threads = 2\n{extra}"));
        let relay = support::binary::Relay::start(&config);
        // The port is logged as the listener opens, a moment before the threads start, and
        // each thread sets its policy a moment after it is named.
        let mut found = policies(relay.pid());
        for _ in 0..100 {
            if found.0 == [expected; 2] {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            found = policies(relay.pid());
        }
        let (http, others) = found;
        assert_eq!(http, [expected; 2], "the HTTP threads, with {extra:?}");
        assert!(others.iter().all(|&policy| policy == SCHED_OTHER), "the other threads: {others:?}");
        assert!(relay.terminate(), "the relay shuts down cleanly");
    }
}

/// The seed configuration in `dir`, for the real binary, with `server` added to its
/// `[server]` table.
fn seed_config_with_server(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
    let config = support::binary::seed_config_in(dir);
    let text = std::fs::read_to_string(&config).unwrap();
    let listen = "listen = \"127.0.0.1:0\"\n";
    std::fs::write(&config, text.replace(listen, &format!("{listen}{server}"))).unwrap();
    config
}

/// The relay's startup line, as JSON, read from `relay`'s log.
fn startup_line(mut relay: std::process::Child) -> serde_json::Value {
    use std::io::BufRead;
    let lines = std::io::BufReader::new(relay.stderr.take().unwrap()).lines();
    let line = lines
        .map_while(Result::ok)
        .find(|line| line.contains("topic-relay is listening"))
        .expect("the relay logs its startup line");
    let _ = relay.kill();
    let _ = relay.wait();
    serde_json::from_str(&line).unwrap()
}

#[test]
fn the_worker_threads_are_one_per_cpu_unless_the_configuration_sizes_them() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    // One more than the CPUs, so that the setting cannot be mistaken for the default.
    for (extra, expected) in [(String::new(), cpus), (format!("worker_threads = {}\n", cpus + 1), cpus + 1)] {
        let dir = tempfile::tempdir().unwrap();
        let config = seed_config_with_server(dir.path(), &extra);
        let checked = support::binary::command(&config).arg("check-config").output().unwrap();
        let stdout = String::from_utf8_lossy(&checked.stdout);
        assert!(stdout.contains(&format!("# worker threads: {expected} (")), "{stdout}");
        let relay = support::binary::command(&config).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let line = startup_line(relay);
        assert_eq!(line["fields"]["worker_threads"], expected, "with {extra:?}: {line}");
    }
}
