//! Refuses routes that republish into a topic a route would take back: with Momento calling
//! the relay for every publish, that is an endless loop, each pass billed.
//!
//! Each route's `publish` targets are rendered for an example event the route takes, and
//! the example target is run through the routes, once for each way it would come back: the
//! webhooks, and the relay's own subscriptions to that topic. The relay publishes with its own API key,
//! so a republished event carries an empty `token_id`; a route that requires a token id
//! never takes the relay's own output back.

use super::{RouteInputs, RouteTable};
use crate::event::Message;
use crate::event::Source;
use crate::pipeline::template::Template;
use crate::processors::for_each::ITEM;
use crate::processors::{BuiltinStep, StepSettings};

/// Fails with the key of the first route on a loop that none of its routes allows, or of a
/// dead-letter topic that a route would take back.
pub fn refuse_loops(table: &RouteTable, settings: &impl RouteInputs) -> Result<(), (String, String)> {
    refuse_dead_letter_loop(table, settings)?;
    let edges: Vec<Vec<(usize, String)>> =
        (0..table.routes.len()).map(|index| targets(table, settings, index)).collect();
    for start in 0..edges.len() {
        if let Some(cycle) = find_cycle(&edges, start)
            && !cycle.iter().any(|&index| settings.routes()[index].allow_loop)
        {
            let path: Vec<String> = cycle
                .iter()
                .map(|&index| {
                    let target =
                        &edges[index].iter().find(|(to, _)| cycle.contains(to)).expect("on the cycle").1;
                    format!("`{}` publishes to {target}", settings.routes()[index].name)
                })
                .collect();
            return Err((
                format!("routes[{start}]"),
                format!(
                    "{}, which the relay would receive again: an endless loop through Momento. \
                     Publish elsewhere, narrow the match, or set allow_loop = true on the route",
                    path.join(", then ")
                ),
            ));
        }
    }
    Ok(())
}

/// A route taking the dead-letter topic would turn each dead letter into a new event, and
/// one that fails there into yet another dead letter.
fn refuse_dead_letter_loop(table: &RouteTable, settings: &impl RouteInputs) -> Result<(), (String, String)> {
    let Some((cache, topic)) = settings.dead_letter_topic() else { return Ok(()) };
    let taker = table.routes.iter().position(|route| {
        route.matcher.cache.matches(cache)
            && route.matcher.topic.matches(topic)
            && route.matcher.token_id.matches("")
    });
    match taker {
        Some(index) if !settings.routes()[index].allow_loop => Err((
            "delivery.dead_letter_topic".into(),
            format!(
                "route `{}` takes {}/{}, so dead letters would come back as events; publish them \
                 elsewhere, narrow the route's match, or set allow_loop = true on it",
                settings.routes()[index].name,
                cache,
                topic
            ),
        )),
        _ => Ok(()),
    }
}

/// The routes that would take back what route `index` publishes, with the target shown.
fn targets(table: &RouteTable, settings: &impl RouteInputs, index: usize) -> Vec<(usize, String)> {
    let route = &table.routes[index];
    let mut example = Message::new(&route.matcher.cache.example(), &route.matcher.topic.example(), "example");
    example.token_id = route.matcher.token_id.example();
    let mut found = Vec::new();
    let mut items: Vec<String> = Vec::new();
    for step in &settings.routes()[index].steps {
        let (step, for_each) = step.for_each();
        if let Some(for_each) = for_each {
            items = for_each.to_vec();
        }
        let StepSettings::Builtin(BuiltinStep::Publish(publish)) = step else {
            continue;
        };
        let (Ok(cache), Ok(topic)) =
            (Template::parse_lenient(&publish.cache), Template::parse_lenient(&publish.topic))
        else {
            continue;
        };
        // Each item of the latest `for_each` is a branch that publishes on its own topic.
        let branches = if items.is_empty() { vec![None] } else { items.iter().map(Some).collect() };
        for item in branches {
            if let Some(item) = item {
                example.attached.insert(ITEM.into(), item.as_str().into());
            }
            let (cache, topic) = (cache.render(&example), topic.render(&example));
            for source in sources_of(settings, &cache, &topic) {
                let taker =
                    table.routes.iter().position(|other| other.matcher.matches(&source, &cache, &topic, ""));
                if let Some(taker) = taker.filter(|taker| !found.iter().any(|(known, _)| known == taker)) {
                    found.push((taker, format!("{cache}/{topic}")));
                }
            }
        }
    }
    found
}

/// How a publish on `cache`/`topic` comes back to the relay: through any of its webhooks (the
/// relay cannot see which topics Momento calls them for, so it assumes all), and through each
/// of its subscriptions to that topic.
fn sources_of(settings: &impl RouteInputs, cache: &str, topic: &str) -> Vec<Source> {
    let webhooks = settings.webhook_names().into_iter().map(|name| Source::Webhook(name.into()));
    let subscriptions = settings
        .subscribed_topics()
        .into_iter()
        .filter(|(_, listened_cache, topics)| *listened_cache == cache && topics.iter().any(|t| t == topic))
        .map(|(name, _, _)| Source::Subscription(name.into()));
    webhooks.chain(subscriptions).collect()
}

/// A cycle through `start`, as the routes on it in order, if there is one.
fn find_cycle(edges: &[Vec<(usize, String)>], start: usize) -> Option<Vec<usize>> {
    let mut path = vec![start];
    let mut visited = vec![false; edges.len()];
    walk(edges, start, start, &mut path, &mut visited).then_some(path)
}

fn walk(
    edges: &[Vec<(usize, String)>],
    start: usize,
    at: usize,
    path: &mut Vec<usize>,
    visited: &mut [bool],
) -> bool {
    visited[at] = true;
    for &(next, _) in &edges[at] {
        if next == start {
            return true;
        }
        if !visited[next] {
            path.push(next);
            if walk(edges, start, next, path, visited) {
                return true;
            }
            path.pop();
        }
    }
    false
}
