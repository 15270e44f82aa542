//! Counters, exposed on `GET /metrics` in the Prometheus text format. Plain atomics over a
//! fixed set of labels: counting takes no lock on the hot path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Outcomes of answered events.
pub const OUTCOMES: &[&str] = &["processed", "dropped", "unmatched", "spooled", "dead_lettered"];

/// Outcomes of background redelivery attempts.
pub const REDELIVERY_OUTCOMES: &[&str] = &["redelivered", "retry_scheduled", "dead_lettered", "refused"];

/// A counter per label, for a label set known at startup.
pub struct LabelledCounter {
    labels: Vec<String>,
    counts: Vec<AtomicU64>,
}

impl LabelledCounter {
    /// One zeroed counter for each of `labels`.
    pub fn new(labels: &[&str]) -> Self {
        LabelledCounter {
            labels: labels.iter().map(|label| label.to_string()).collect(),
            counts: labels.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Adds one to `label`'s counter; labels outside the set are ignored.
    pub fn increment(&self, label: &str) {
        if let Some(index) = self.labels.iter().position(|known| *known == label) {
            self.counts[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The count for `label`.
    pub fn get(&self, label: &str) -> u64 {
        self.labels
            .iter()
            .position(|known| *known == label)
            .map_or(0, |index| self.counts[index].load(Ordering::Relaxed))
    }

    fn render(&self, out: &mut String, name: &str, label_name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (label, count) in self.labels.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}{{{label_name}=\"{label}\"}} {}", count.load(Ordering::Relaxed));
        }
    }
}

/// Everything the relay counts.
pub struct Metrics {
    /// Answered events by outcome.
    pub events: LabelledCounter,
    /// Refused requests by error code (including `overloaded`).
    pub refusals: LabelledCounter,
    /// Events per route.
    pub routes: LabelledCounter,
    /// Background redelivery attempts by outcome.
    pub delivery: LabelledCounter,
}

impl Metrics {
    /// Counters for these error codes and route names.
    pub fn new(error_codes: &[&str], route_names: &[&str]) -> Self {
        Metrics {
            events: LabelledCounter::new(OUTCOMES),
            refusals: LabelledCounter::new(error_codes),
            routes: LabelledCounter::new(route_names),
            delivery: LabelledCounter::new(REDELIVERY_OUTCOMES),
        }
    }

    /// The Prometheus text exposition, with `extra` gauges appended.
    pub fn render(&self, gauges: &[(&str, &str, u64)]) -> String {
        let mut out = String::with_capacity(2048);
        self.events.render(
            &mut out,
            "topic_relay_events_total",
            "outcome",
            "Events answered with 2xx, by outcome.",
        );
        self.refusals.render(
            &mut out,
            "topic_relay_refusals_total",
            "error",
            "Requests answered with an error, by error code.",
        );
        self.routes.render(
            &mut out,
            "topic_relay_route_events_total",
            "route",
            "Events taken by each route.",
        );
        self.delivery.render(
            &mut out,
            "topic_relay_redelivery_attempts_total",
            "outcome",
            "Background attempts on spooled events, by outcome.",
        );
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_in_the_prometheus_text_format() {
        let metrics = Metrics::new(&["invalid_signature"], &["shout"]);
        metrics.events.increment("processed");
        metrics.refusals.increment("invalid_signature");
        metrics.refusals.increment("not_a_code");
        let text = metrics.render(&[("topic_relay_in_flight", "Requests in flight.", 2)]);
        assert!(text.contains("topic_relay_events_total{outcome=\"processed\"} 1"));
        assert!(text.contains("topic_relay_refusals_total{error=\"invalid_signature\"} 1"));
        assert!(text.contains("topic_relay_route_events_total{route=\"shout\"} 0"));
        assert!(text.contains("topic_relay_in_flight 2"));
    }
}
