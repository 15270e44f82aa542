//! Refuses a route that both a webhook and a subscription feed the same topic into. Momento
//! calls a webhook for every publish on its topic, and a subscription to that topic receives
//! every publish too: such a route would process each message twice, in silence. A route
//! that names its source (`match.webhook` or `match.subscription`) takes only one of them;
//! `allow_overlap = true` says the double is meant (the webhook is on other topics, say).

use super::{RouteInputs, RouteTable};
use crate::event::Source;

/// Fails with the key of the first route that takes both a webhook's events and a
/// subscription's items on one of the subscription's topics, unless it allows it.
pub fn refuse_overlaps(table: &RouteTable, settings: &impl RouteInputs) -> Result<(), (String, String)> {
    for (name, cache, topics) in settings.subscribed_topics() {
        let listened = Source::Subscription(name.into());
        for topic in topics {
            let taker = table.routes.iter().position(|route| {
                route.matcher.takes_from(&listened)
                    && route.matcher.cache.matches(cache)
                    && route.matcher.topic.matches(topic)
            });
            let Some(index) = taker else { continue };
            if settings.routes()[index].allow_overlap {
                continue;
            }
            let webhook = settings
                .webhook_names()
                .into_iter()
                .find(|webhook| table.routes[index].matcher.takes_from(&Source::Webhook((*webhook).into())));
            if let Some(webhook) = webhook {
                return Err((
                    format!("routes[{index}]"),
                    format!(
                        "`{}` takes {}/{topic} both from subscription `{name}` and from webhook \
                         `{webhook}`: with Momento's webhook on that topic too, every message would be \
                         processed twice. Name the source in its match (`subscription = \"{name}\"` or \
                         `webhook = \"{webhook}\"`), or set allow_overlap = true on the route if the \
                         webhook is on other topics",
                        settings.routes()[index].name,
                        cache
                    ),
                ));
            }
        }
    }
    Ok(())
}
