//! Stage 3, route: the first route whose `match` fits the event gets it.

mod loops;
mod overlap;
mod pattern;
mod settings;

use std::sync::Arc;

pub use pattern::{NamePattern, TokenIdRule};
pub use settings::{MatchSettings, RouteSettings, UnmatchedAction, UnmatchedSettings};

use crate::event::Source;
use crate::metrics::Tally;
use crate::pipeline::Pipeline;
use crate::processors::ProcessorRegistry;
use crate::processors::http::{DestinationPolicy, HttpStepSettings};

/// Which events a route takes.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Set when the route names a webhook: it takes only events from webhooks of that name.
    webhook: Option<NamePattern>,
    /// Set when the route names a subscription: it takes only events from those.
    subscription: Option<NamePattern>,
    cache: NamePattern,
    topic: NamePattern,
    token_id: TokenIdRule,
}

impl Matcher {
    /// Parses a route's `match`; the error names the offending key under `key`.
    pub fn parse(settings: &MatchSettings, key: &str) -> Result<Self, (String, String)> {
        let field = |name: &'static str| move |message: String| (format!("{key}.{name}"), message);
        if settings.webhook.is_some() && settings.subscription.is_some() {
            return Err((
                key.to_owned(),
                "name a webhook or a subscription, not both (a route that names neither takes both)".into(),
            ));
        }
        let source = |pattern: Option<&str>, name: &'static str| {
            pattern.map(|pattern| NamePattern::parse(Some(pattern)).map_err(field(name))).transpose()
        };
        Ok(Matcher {
            webhook: source(settings.webhook.as_deref(), "webhook")?,
            subscription: source(settings.subscription.as_deref(), "subscription")?,
            cache: NamePattern::parse(settings.cache.as_deref()).map_err(field("cache"))?,
            topic: NamePattern::parse(settings.topic.as_deref()).map_err(field("topic"))?,
            token_id: TokenIdRule::parse(settings.token_id.as_deref()).map_err(field("token_id"))?,
        })
    }

    /// Whether an event with these fields, from `source`, is this route's.
    pub fn matches(&self, source: &Source, cache: &str, topic: &str, token_id: &str) -> bool {
        self.takes_from(source)
            && self.cache.matches(cache)
            && self.topic.matches(topic)
            && self.token_id.matches(token_id)
    }

    /// Whether the route takes events from `source`, whatever their cache and topic.
    pub(super) fn takes_from(&self, source: &Source) -> bool {
        match (source, &self.webhook, &self.subscription) {
            (Source::Webhook(name), Some(webhook), _) => webhook.matches(name),
            (Source::Subscription(name), _, Some(subscription)) => subscription.matches(name),
            (_, None, None) => true,
            _ => false,
        }
    }
}

/// A configured route, ready to run.
#[derive(Clone)]
pub struct Route {
    /// The route's name.
    pub name: Arc<str>,
    /// What it takes.
    pub matcher: Matcher,
    /// What it does.
    pub pipeline: Pipeline,
    /// Events it took, in `topic_relay_route_events_total`.
    pub events: Tally,
}

/// The routes in force, swapped whole by a reload; for workers that outlive one
/// configuration, such as redelivery.
pub type LiveRoutes = Arc<arc_swap::ArcSwap<RouteTable>>;

/// All routes, in configuration order.
#[derive(Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

/// What building the routes needs of the whole configuration: the routes themselves, and
/// what feeds them or takes their output, to refuse loops and overlaps. `config::Settings`
/// provides it; the route layer does not know the configuration's shape.
pub trait RouteInputs {
    /// `[[routes]]`, in order.
    fn routes(&self) -> &[RouteSettings];
    /// `[http_steps]`.
    fn http_steps(&self) -> &HttpStepSettings;
    /// The webhooks' names.
    fn webhook_names(&self) -> Vec<&str>;
    /// Each subscription's name, cache and topics.
    fn subscribed_topics(&self) -> Vec<(&str, &str, &[String])>;
    /// The cache and topic dead letters are published to, if any.
    fn dead_letter_topic(&self) -> Option<(&str, &str)>;
}

impl RouteTable {
    /// Builds every route's matcher and pipeline and refuses routes that would republish
    /// into themselves. The error is the offending key and what is wrong.
    pub fn build(
        settings: &impl RouteInputs,
        registry: &ProcessorRegistry,
    ) -> Result<Self, (String, String)> {
        let mut routes = Vec::with_capacity(settings.routes().len());
        let http_destinations = DestinationPolicy::new(settings.http_steps())?;
        for (index, route) in settings.routes().iter().enumerate() {
            routes.push(Route {
                name: route.name.as_str().into(),
                matcher: Matcher::parse(&route.matcher, &format!("routes[{index}].match"))?,
                pipeline: registry.build(
                    (index, &route.name),
                    &route.steps,
                    route.max_branches,
                    &http_destinations,
                )?,
                events: Tally::default(),
            });
        }
        let table = RouteTable { routes };
        loops::refuse_loops(&table, settings)?;
        overlap::refuse_overlaps(&table, settings)?;
        Ok(table)
    }

    /// Counts every route's events and times its steps, in the relay's metrics.
    pub fn measure(&mut self, metrics: &crate::metrics::Metrics) {
        for route in &mut self.routes {
            route.events = metrics.route_events(&route.name);
            route.pipeline.time_steps(metrics);
        }
    }

    /// The first route that takes this event, with its position.
    pub fn select(&self, source: &Source, cache: &str, topic: &str, token_id: &str) -> Option<&Route> {
        self.routes.iter().find(|route| route.matcher.matches(source, cache, topic, token_id))
    }

    /// The route with this name, for resuming stored events.
    pub fn by_name(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|route| &*route.name == name)
    }
}
