//! Metrics on `GET /metrics`, in the OpenMetrics text format, through `prometheus-client`
//! (which escapes label values, so a route named with a quote cannot break a scrape).
//!
//! Every series the hot path touches is created at startup and kept as a handle: counting
//! is an atomic add to the counting thread's own cells, with no lock and no look-up in the
//! registry.

pub mod histogram;
pub mod per_thread;
mod process;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

use histogram::DURATION_BUCKETS;
pub use histogram::Histogram;
pub use per_thread::Tally;

/// The content type of `GET /metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Outcomes of answered events.
pub const OUTCOMES: &[&str] = &["processed", "dropped", "unmatched", "spooled", "dead_lettered"];

/// The `outcome` of the request-duration histogram for every answer that is not a 2xx.
pub const REFUSED: &str = "refused";

/// Outcomes of background redelivery attempts.
pub const REDELIVERY_OUTCOMES: &[&str] = &["redelivered", "retry_scheduled", "dead_lettered", "refused"];

/// A label set of one label.
type Label = [(&'static str, String); 1];

/// A family of duration histograms, one per label value.
type Durations = Family<Label, Histogram, fn() -> Histogram>;

/// A histogram with the buckets for durations on a webhook's path, in seconds.
pub fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Handles on the series of one family, created at startup for a label set known then.
#[derive(Clone)]
pub struct Series<M> {
    entries: Vec<(String, M)>,
}

impl<M: Clone> Series<M> {
    fn new<C: MetricConstructor<M>>(
        family: &Family<Label, M, C>,
        label: &'static str,
        values: &[&str],
    ) -> Self {
        Series::with_labels(family, values, |value| [(label, value.to_owned())])
    }

    /// The series of `family` for each of `values`, labelled by `labels`.
    pub fn with_labels<L, C>(family: &Family<L, M, C>, values: &[&str], labels: impl Fn(&str) -> L) -> Self
    where
        L: Clone + std::hash::Hash + Eq,
        C: MetricConstructor<M>,
    {
        let entries = values
            .iter()
            .map(|value| ((*value).to_owned(), family.get_or_create(&labels(value)).clone()))
            .collect();
        Series { entries }
    }

    /// The series for `value`, if it is one of the values known at startup.
    pub fn get(&self, value: &str) -> Option<&M> {
        self.entries.iter().find(|(known, _)| known == value).map(|(_, series)| series)
    }
}

impl Series<Tally> {
    /// Adds one to `value`'s counter; values outside the set are ignored.
    pub fn increment(&self, value: &str) {
        if let Some(counter) = self.get(value) {
            counter.inc();
        }
    }

    /// The count for `value`.
    pub fn value(&self, value: &str) -> u64 {
        self.get(value).map_or(0, Tally::get)
    }
}

/// Levels read when `/metrics` is scraped.
#[derive(Debug, Clone, Copy, Default)]
pub struct Levels {
    /// Webhook requests being handled.
    pub in_flight: u64,
    /// Signatures the replay check remembers.
    pub replay_signatures: u64,
    /// Events in the spool, waiting for redelivery.
    pub spooled_events: u64,
    /// Dead letters kept in the spool.
    pub dead_letters: u64,
    /// 1 while `/readyz` would answer 200, else 0.
    pub ready: u64,
}

/// Everything the relay measures.
pub struct Metrics {
    registry: Registry,
    /// Answered events by outcome.
    pub events: Series<Tally>,
    /// Refused requests by error code (including `overloaded`).
    pub refusals: Series<Tally>,
    route_events: Family<Label, Tally>,
    /// Background redelivery attempts by outcome.
    pub redelivery: Series<Tally>,
    /// Reloads of the configuration, by result: `applied` or `refused`.
    pub config_reloads: Series<Tally>,
    /// Webhook request duration, by 2xx outcome, or [`REFUSED`] for any error answer (the
    /// refusals are counted by code in `refusals`; a histogram per code would be noise).
    pub request_duration: Series<Histogram>,
    /// Events accepted without being remembered by the replay check, because it was full.
    pub replay_unremembered: Tally,
    /// Events refused because the replay check was full (with `dedup_when_full = "refuse"`).
    pub replay_refused: Tally,
    step_duration: Durations,
    backend_duration: Durations,
    levels: [Gauge; 5],
}

impl Metrics {
    /// Every series, for these error codes and route names.
    pub fn new(error_codes: &[&str], route_names: &[&str]) -> Self {
        let mut registry = Registry::default();
        let mut counters = |name: &str, help: &str, label: &'static str, values: &[&str]| {
            let family = Family::<Label, Tally>::default();
            registry.register(name, help, family.clone());
            Series::new(&family, label, values)
        };
        let events =
            counters("topic_relay_events", "Events answered with 2xx, by outcome", "outcome", OUTCOMES);
        let refusals = counters(
            "topic_relay_refusals",
            "Requests answered with an error, by error code",
            "error",
            error_codes,
        );
        let redelivery = counters(
            "topic_relay_redelivery_attempts",
            "Background attempts on spooled events, by outcome",
            "outcome",
            REDELIVERY_OUTCOMES,
        );
        let config_reloads = counters(
            "topic_relay_config_reloads",
            "Reloads of the configuration (SIGHUP or POST /v1/admin/reload), by result",
            "result",
            &["applied", "refused"],
        );
        let route_events = Family::<Label, Tally>::default();
        registry.register("topic_relay_route_events", "Events taken by each route", route_events.clone());
        for name in route_names {
            let _ = route_events.get_or_create(&[("route", (*name).to_owned())]);
        }
        let request_family = Durations::new_with_constructor(duration_histogram);
        registry.register(
            "topic_relay_webhook_request_duration_seconds",
            "Time from a webhook request's arrival to its answer, by outcome or error code",
            request_family.clone(),
        );
        let outcomes: Vec<&str> = OUTCOMES.iter().copied().chain([REFUSED]).collect();
        let request_duration = Series::new(&request_family, "outcome", &outcomes);
        let step_duration = Durations::new_with_constructor(duration_histogram);
        registry.register(
            "topic_relay_step_duration_seconds",
            "Time one pipeline step takes, by step kind",
            step_duration.clone(),
        );
        let backend_duration = Durations::new_with_constructor(duration_histogram);
        registry.register(
            "topic_relay_backend_call_duration_seconds",
            "Time one backend call takes, retries included, by operation",
            backend_duration.clone(),
        );
        let metrics = Metrics {
            replay_unremembered: Tally::default(),
            replay_refused: Tally::default(),
            levels: Default::default(),
            registry,
            events,
            refusals,
            route_events,
            redelivery,
            config_reloads,
            request_duration,
            step_duration,
            backend_duration,
        };
        metrics.register_the_rest()
    }

    fn register_the_rest(mut self) -> Self {
        let registry = &mut self.registry;
        process::register(registry);
        registry.register(
            "topic_relay_replay_unremembered",
            "Events accepted without being remembered, because the replay check held delivery.dedup_capacity signatures",
            self.replay_unremembered.clone(),
        );
        registry.register(
            "topic_relay_replay_refused",
            "Events refused because the replay check was full (dedup_when_full = \"refuse\")",
            self.replay_refused.clone(),
        );
        let [in_flight, replay, spooled, dead, ready] = self.levels.clone();
        registry.register("topic_relay_in_flight", "Webhook requests being handled", in_flight);
        registry.register(
            "topic_relay_replay_signatures",
            "Signatures the replay check remembers (at most delivery.dedup_capacity)",
            replay,
        );
        registry.register(
            "topic_relay_spooled_events",
            "Events in the spool, waiting for redelivery",
            spooled,
        );
        registry.register("topic_relay_dead_letters", "Dead letters kept in the spool", dead);
        registry.register(
            "topic_relay_ready",
            "1 while /readyz answers 200 (the backend answers, subscriptions hold, not draining), else 0",
            ready,
        );
        self
    }

    /// Registers a metric of a part's own, such as the backend's publishes per client or the
    /// spool's commit timings. Only before the metrics are shared.
    pub fn register(&mut self, name: &str, help: &str, metric: impl Metric) {
        self.registry.register(name, help, metric);
    }

    /// One gauge per HTTP thread of the connections it holds open; taken once, at startup.
    pub fn http_connections(&mut self, threads: usize) -> Vec<Gauge> {
        let family = Family::<Label, Gauge>::default();
        self.registry.register(
            "topic_relay_http_connections",
            "Open HTTP connections, by the HTTP thread serving them",
            family.clone(),
        );
        (0..threads).map(|thread| family.get_or_create(&[("thread", thread.to_string())]).clone()).collect()
    }

    /// The counters of HTTP connections the relay closed itself, by reason: a request slower
    /// than `server.read_timeout`, idle past `server.idle_timeout`, and past
    /// `server.max_connections`; taken once, at startup.
    pub fn http_connections_closed(&mut self) -> [Counter; 3] {
        let family = Family::<Label, Counter>::default();
        self.registry.register(
            "topic_relay_http_connections_closed",
            "HTTP connections the relay closed: slow_request, idle or over_limit",
            family.clone(),
        );
        ["slow_request", "idle", "over_limit"]
            .map(|reason| family.get_or_create(&[("reason", reason.to_owned())]).clone())
    }

    /// The counter of events taken by the route named `route`; taken once, when the route is
    /// built. A route that a reload removes keeps its series at its last value.
    pub fn route_events(&self, route: &str) -> Tally {
        self.route_events.get_or_create(&[("route", route.to_owned())]).clone()
    }

    /// The duration histogram of steps of this kind; taken once, when a pipeline is built.
    pub fn step_duration(&self, kind: &str) -> Histogram {
        self.step_duration.get_or_create(&[("kind", kind.to_owned())]).clone()
    }

    /// The duration histogram of backend calls of this operation; taken once, at startup.
    pub fn backend_duration(&self, operation: &str) -> Histogram {
        self.backend_duration.get_or_create(&[("operation", operation.to_owned())]).clone()
    }

    /// The OpenMetrics text exposition, with `levels` as the gauges' values.
    pub fn render(&self, levels: Levels) -> String {
        let values = [
            levels.in_flight,
            levels.replay_signatures,
            levels.spooled_events,
            levels.dead_letters,
            levels.ready,
        ];
        for (gauge, value) in self.levels.iter().zip(values) {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        }
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_in_the_openmetrics_text_format() {
        let metrics = Metrics::new(&["invalid_signature"], &["shout"]);
        metrics.events.increment("processed");
        metrics.refusals.increment("invalid_signature");
        metrics.refusals.increment("not_a_code");
        let text = metrics.render(Levels { in_flight: 2, ..Levels::default() });
        assert!(text.contains("topic_relay_events_total{outcome=\"processed\"} 1"), "{text}");
        assert!(text.contains("topic_relay_refusals_total{error=\"invalid_signature\"} 1"));
        assert!(text.contains("topic_relay_route_events_total{route=\"shout\"} 0"));
        assert!(text.contains("topic_relay_in_flight 2"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn a_label_value_with_a_quote_and_a_line_break_is_escaped() {
        let metrics = Metrics::new(&[], &["say \"hi\"\nnow"]);
        metrics.route_events("say \"hi\"\nnow").inc();
        let text = metrics.render(Levels::default());
        assert!(text.contains(r#"topic_relay_route_events_total{route="say \"hi\"\nnow"} 1"#), "{text}");
    }

    #[test]
    fn step_histograms_taken_twice_share_their_counts() {
        let metrics = Metrics::new(&[], &[]);
        metrics.step_duration("publish").observe(0.002);
        metrics.step_duration("publish").observe(0.003);
        assert_eq!(metrics.step_duration("publish").count(), 2);
        let text = metrics.render(Levels::default());
        assert!(text.contains("topic_relay_step_duration_seconds_count{kind=\"publish\"} 2"), "{text}");
    }
}
