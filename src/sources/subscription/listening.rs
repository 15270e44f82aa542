//! The running subscriptions: one stream per topic and one membership keeper per leased
//! subscription, started with the server, changed in place by a reload, and stopped at
//! shutdown.
//!
//! A reload keeps every stream whose subscription is unchanged but for its topic list: such a
//! stream keeps its lease, its checkpoint and its open subscription. A topic removed is
//! stopped as at shutdown (the item in hand finished, the queue spooled, the checkpoint
//! written, the lease released); a topic added starts as at startup. A subscription whose
//! other settings changed is stopped whole, then started again under the new ones, from its
//! checkpoints.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{CheckpointKey, Checkpoints};
use super::membership::{self, Membership};
use super::metrics::SubscriptionMetrics;
use super::report::{StreamReport, StreamState};
use super::stream::TopicStream;
use super::{Ownership, SubscriptionSettings};
use crate::backend::Backend;
use crate::event::Source;
use crate::relay::LiveRelay;

/// The relay's subscriptions, built with the app and started with the server.
pub struct Listeners {
    context: StreamContext,
    subscriptions: BTreeMap<String, SubscriptionSettings>,
    reports: ListenerReports,
}

/// What every stream shares, kept to start the streams a reload adds.
#[derive(Clone)]
struct StreamContext {
    backend: Arc<dyn Backend>,
    relay: LiveRelay,
    checkpoints: Checkpoints,
    metrics: SubscriptionMetrics,
    replica: String,
    max_item_bytes: usize,
}

/// What the streams report, for `/v1/status` and `/readyz`; a reload changes the list.
#[derive(Clone, Default)]
pub struct ListenerReports(Arc<RwLock<Vec<ReportedStream>>>);

/// One stream's live report, and whether its failure counts against readiness.
#[derive(Clone)]
struct ReportedStream {
    report: Arc<Mutex<StreamReport>>,
    affects_readiness: bool,
}

impl ReportedStream {
    fn current(&self) -> std::sync::MutexGuard<'_, StreamReport> {
        self.report.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The running subscriptions.
pub struct Listening {
    stop: CancellationToken,
    context: StreamContext,
    running: BTreeMap<String, RunningSubscription>,
    reports: ListenerReports,
}

/// One subscription's tasks, and the settings they run under.
struct RunningSubscription {
    settings: Arc<SubscriptionSettings>,
    membership: Membership,
    keeper: Option<Task>,
    /// By topic, in the configured order.
    streams: Vec<(String, RunningStream)>,
}

struct RunningStream {
    report: ReportedStream,
    task: Task,
}

/// A task with a stop of its own, under the relay's.
struct Task {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

impl Task {
    /// Lets the task finish by `deadline`; past it, ends it.
    async fn finish(mut self, deadline: Instant) {
        self.stop.cancel();
        if tokio::time::timeout_at(deadline, &mut self.handle).await.is_err() {
            self.handle.abort();
            let _ = self.handle.await;
            tracing::warn!("a subscription stream was cut off by the grace it had to stop");
        }
    }
}

/// What a reload changed in the listening: `subscription/topic` names.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TopicChanges {
    /// Topics that started.
    pub started: Vec<String>,
    /// Topics that stopped.
    pub stopped: Vec<String>,
}

impl Listeners {
    /// Every topic of every subscription, to be started. Checkpoints are kept in
    /// `checkpoint_dir` and in each subscription's cache; leases hold `replica`. Items over
    /// `max_item_bytes` are refused.
    pub fn new(
        subscriptions: &BTreeMap<String, SubscriptionSettings>,
        backend: Arc<dyn Backend>,
        relay: LiveRelay,
        checkpoint_dir: &Path,
        metrics: &SubscriptionMetrics,
        replica: &str,
        max_item_bytes: usize,
    ) -> anyhow::Result<Self> {
        let checkpoints = Checkpoints::open(checkpoint_dir, backend.clone())?;
        let context = StreamContext {
            backend,
            relay,
            checkpoints,
            metrics: metrics.clone(),
            replica: replica.to_owned(),
            max_item_bytes,
        };
        let reports = ListenerReports::default();
        let starting = subscriptions.iter().flat_map(|(name, subscription)| {
            subscription.topics.iter().map(|topic| ReportedStream {
                report: Arc::new(Mutex::new(StreamReport::starting(name, topic))),
                affects_readiness: subscription.affects_readiness,
            })
        });
        *reports.write() = starting.collect();
        Ok(Listeners { context, subscriptions: subscriptions.clone(), reports })
    }

    /// What the streams report, live.
    pub fn reports(&self) -> ListenerReports {
        self.reports.clone()
    }

    /// Starts every stream.
    pub fn start(self) -> Listening {
        let mut listening = Listening {
            stop: CancellationToken::new(),
            context: self.context,
            running: BTreeMap::new(),
            reports: self.reports,
        };
        // The reports made before the start are the ones the streams now keep.
        let mut made = listening.reports.read().clone().into_iter();
        for (name, settings) in &self.subscriptions {
            let running = listening.start_subscription(name, settings, &mut made);
            listening.running.insert(name.clone(), running);
        }
        listening.publish_reports();
        listening
    }
}

impl Listening {
    /// Moves to `subscriptions`: topics no longer listed stop, new ones start, and the rest
    /// keep their streams. Streams that stop get until `deadline` to finish what they hold.
    pub async fn reconfigure(
        &mut self,
        subscriptions: &BTreeMap<String, SubscriptionSettings>,
        deadline: Instant,
    ) -> TopicChanges {
        let mut changes = TopicChanges::default();
        let mut stopping = Vec::new();
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            let kept =
                subscriptions.get(&name).filter(|new| same_but_topics(&self.running[&name].settings, new));
            let Some(new) = kept else {
                let running = self.running.remove(&name).expect("listed above");
                for (topic, stream) in running.streams {
                    changes.stopped.push(format!("{name}/{topic}"));
                    stopping.push(stream.task);
                }
                stopping.extend(running.keeper);
                continue;
            };
            let running = self.running.get_mut(&name).expect("listed above");
            let (staying, leaving) = std::mem::take(&mut running.streams)
                .into_iter()
                .partition(|(topic, _)| new.topics.contains(topic));
            running.streams = staying;
            for (topic, stream) in leaving {
                changes.stopped.push(format!("{name}/{topic}"));
                stopping.push(stream.task);
            }
            running.membership.set_topics(&new.topics);
        }
        // Stopped first, so that a topic moving between subscriptions, or one started again
        // under new settings, is never held twice by this replica.
        futures::future::join_all(stopping.into_iter().map(|task| task.finish(deadline))).await;
        for (name, settings) in subscriptions {
            if let Some(running) = self.running.get_mut(name) {
                let settings = Arc::new(settings.clone());
                let mut streams = Vec::with_capacity(settings.topics.len());
                for topic in &settings.topics {
                    let position = running.streams.iter().position(|(kept, _)| kept == topic);
                    let stream = match position {
                        Some(index) => running.streams.swap_remove(index).1,
                        None => {
                            changes.started.push(format!("{name}/{topic}"));
                            let report = new_report(name, &settings, topic);
                            self.context.start_stream(
                                &self.stop,
                                name,
                                &settings,
                                &running.membership,
                                topic,
                                report,
                            )
                        }
                    };
                    streams.push((topic.clone(), stream));
                }
                running.streams = streams;
                running.settings = settings;
            } else {
                changes.started.extend(settings.topics.iter().map(|topic| format!("{name}/{topic}")));
                let mut none = std::iter::empty();
                let running = self.start_subscription(name, settings, &mut none);
                self.running.insert(name.clone(), running);
            }
        }
        self.publish_reports();
        changes
    }

    /// Stops taking items; each stream finishes the item in hand, spools what it queued,
    /// writes its checkpoint and releases its lease, by `deadline` at the latest. A stream
    /// still busy then is ended, so that nothing of it runs after the spool closes; what it
    /// held past its checkpoint is read again at the next start.
    pub async fn stop(self, deadline: Instant) {
        self.stop.cancel();
        let tasks = self.running.into_values().flat_map(|running| {
            running.streams.into_iter().map(|(_, stream)| stream.task).chain(running.keeper)
        });
        futures::future::join_all(tasks.map(|task| task.finish(deadline))).await;
    }

    /// Starts one subscription: its membership keeper, if leased, and a stream per topic,
    /// keeping the reports `made` holds for them, in order.
    fn start_subscription(
        &self,
        name: &str,
        settings: &SubscriptionSettings,
        made: &mut dyn Iterator<Item = ReportedStream>,
    ) -> RunningSubscription {
        let settings = Arc::new(settings.clone());
        let (membership, keeper) = match settings.owner {
            Ownership::Lease => {
                let (membership, keeper) = Membership::new(
                    self.context.backend.clone(),
                    &settings.cache,
                    name,
                    &settings.topics,
                    &self.context.replica,
                    settings.lease_ttl,
                );
                let stop = self.stop.child_token();
                let handle = tokio::spawn(keeper.run(stop.clone()));
                (membership, Some(Task { stop, handle }))
            }
            Ownership::EveryReplica => (membership::Membership::alone(&self.context.replica), None),
        };
        let streams = settings
            .topics
            .iter()
            .map(|topic| {
                let report = made.next().unwrap_or_else(|| new_report(name, &settings, topic));
                (
                    topic.clone(),
                    self.context.start_stream(&self.stop, name, &settings, &membership, topic, report),
                )
            })
            .collect();
        RunningSubscription { settings, membership, keeper, streams }
    }

    /// Shows the running streams' reports, in configuration order.
    fn publish_reports(&self) {
        let reports = self.running.values().flat_map(|running| running.streams.iter());
        *self.reports.write() = reports.map(|(_, stream)| stream.report.clone()).collect();
    }
}

impl StreamContext {
    /// Starts the stream of `topic`, under `stop`.
    fn start_stream(
        &self,
        stop: &CancellationToken,
        name: &str,
        settings: &Arc<SubscriptionSettings>,
        membership: &Membership,
        topic: &str,
        report: ReportedStream,
    ) -> RunningStream {
        let context = self;
        let stream = TopicStream {
            source: Source::Subscription(name.into()),
            settings: settings.clone(),
            key: CheckpointKey {
                cache: settings.cache.clone(),
                subscription: name.to_owned(),
                topic: topic.to_owned(),
            },
            backend: context.backend.clone(),
            relay: context.relay.clone(),
            checkpoints: context.checkpoints.clone(),
            metrics: context.metrics.stream(name, topic),
            report: report.report.clone(),
            replica: context.replica.clone(),
            membership: membership.clone(),
            max_item_bytes: context.max_item_bytes,
        };
        let stop = stop.child_token();
        let handle = tokio::spawn(stream.run(stop.clone()));
        RunningStream { report, task: Task { stop, handle } }
    }
}

/// A report for a stream about to start.
fn new_report(name: &str, settings: &SubscriptionSettings, topic: &str) -> ReportedStream {
    ReportedStream {
        report: Arc::new(Mutex::new(StreamReport::starting(name, topic))),
        affects_readiness: settings.affects_readiness,
    }
}

/// Whether a subscription can keep its streams across a change from `old` to `new`: only
/// its topic list may differ.
fn same_but_topics(old: &SubscriptionSettings, new: &SubscriptionSettings) -> bool {
    let without_topics =
        |settings: &SubscriptionSettings| SubscriptionSettings { topics: Vec::new(), ..settings.clone() };
    without_topics(old) == without_topics(new)
}

impl ListenerReports {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<ReportedStream>> {
        self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<ReportedStream>> {
        self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every stream's report, in configuration order.
    pub fn snapshot(&self) -> Vec<StreamReport> {
        self.read().iter().map(|stream| stream.current().clone()).collect()
    }

    /// Whether some topic that affects readiness cannot be subscribed to, or its lease
    /// cannot be taken.
    pub fn any_failing(&self) -> bool {
        self.read()
            .iter()
            .any(|stream| stream.affects_readiness && stream.current().state == StreamState::Failing)
    }
}
