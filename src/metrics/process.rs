//! What operators look for on any process: which build it is (`topic_relay_build_info`), and
//! its resident memory, open file descriptors, CPU time and start time, under the names
//! Prometheus's own client libraries give them. Read from `/proc` at each scrape, so they
//! cost nothing between scrapes; elsewhere than Linux only the build is shown.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

/// Registers `topic_relay_build_info` and the process's series in `registry`.
pub fn register(registry: &mut Registry) {
    let build = Family::<Vec<(&'static str, &'static str)>, Gauge>::default();
    build
        .get_or_create(&vec![
            ("version", env!("CARGO_PKG_VERSION")),
            ("arch", std::env::consts::ARCH),
            ("os", std::env::consts::OS),
        ])
        .set(1);
    registry.register("topic_relay_build_info", "The relay's build: 1, with its version as a label", build);
    let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |since| since.as_secs_f64());
    registry.register_collector(Box::new(ProcessCollector { started }));
}

/// Reads the process's own figures at each scrape.
#[derive(Debug)]
struct ProcessCollector {
    /// When the relay started, in seconds since the epoch.
    started: f64,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let start = ConstGauge::new(self.started);
        start.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "When the process started, in seconds since the epoch.",
            None,
            start.metric_type(),
        )?)?;
        let Some(figures) = ProcessFigures::read() else { return Ok(()) };
        let cpu = ConstCounter::new(figures.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "CPU time the process has used, user and system, in seconds.",
            None,
            cpu.metric_type(),
        )?)?;
        let resident = ConstGauge::new(figures.resident_bytes as f64);
        resident.encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory of the process, in bytes.",
            None,
            resident.metric_type(),
        )?)?;
        let open = ConstGauge::new(figures.open_fds as f64);
        open.encode(encoder.encode_descriptor(
            "process_open_fds",
            "File descriptors the process holds open: connections, the spool, logs.",
            None,
            open.metric_type(),
        )?)?;
        if let Some(max) = figures.max_fds {
            let max = ConstGauge::new(max as f64);
            max.encode(encoder.encode_descriptor(
                "process_max_fds",
                "The most file descriptors the process may hold open.",
                None,
                max.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

/// The process's figures, from `/proc/self`.
struct ProcessFigures {
    cpu_seconds: f64,
    resident_bytes: u64,
    open_fds: usize,
    max_fds: Option<u64>,
}

impl ProcessFigures {
    #[cfg(target_os = "linux")]
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        // SAFETY: sysconf reads constants of the system and has no preconditions.
        let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
        let (utime, stime): (f64, f64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
        let resident_pages: u64 = fields.get(21)?.parse().ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let max_fds = limits
            .lines()
            .find(|line| line.starts_with("Max open files"))
            .and_then(|line| line.split_whitespace().nth(3)?.parse().ok());
        Some(ProcessFigures {
            cpu_seconds: (utime + stime) / ticks.max(1) as f64,
            resident_bytes: resident_pages * page.max(1) as u64,
            open_fds,
            max_fds,
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn read() -> Option<Self> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape() -> String {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn the_build_and_the_process_are_in_a_scrape() {
        // Enough work for the CPU time to show, at the kernel's 10 ms ticks.
        let busy = std::time::Instant::now();
        let mut spun = 0u64;
        while busy.elapsed() < std::time::Duration::from_millis(50) {
            spun = std::hint::black_box(spun.wrapping_mul(31).wrapping_add(7));
        }
        let text = scrape();
        let version = format!("topic_relay_build_info{{version=\"{}\",", env!("CARGO_PKG_VERSION"));
        assert!(text.contains(&version), "{text}");
        assert!(text.contains("process_start_time_seconds "), "{text}");
        if cfg!(target_os = "linux") {
            let value = |name: &str| -> f64 {
                let line = text.lines().find(|line| line.starts_with(&format!("{name} "))).unwrap();
                line.split_whitespace().nth(1).unwrap().parse().unwrap()
            };
            assert!(value("process_resident_memory_bytes") > 1_000_000.0, "{text}");
            assert!(value("process_open_fds") >= 3.0, "{text}");
            assert!(value("process_cpu_seconds_total") > 0.0, "{text}");
            assert!(value("process_max_fds") >= value("process_open_fds"), "{text}");
        }
    }
}
