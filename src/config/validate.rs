//! Checks that need more than types: limits, combinations of keys, and what the chosen
//! backend requires. Each failure names the key it is about.

use std::time::Duration;

use super::{BackendKind, DedupMode, Secret, Settings, is_published_demo_value};

/// Momento abandons a webhook call after this long; nothing the relay does may take longer.
pub const MOMENTO_DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

type Failure = (String, String);

/// Checks the settings; the error is the offending key and what is wrong with it.
pub fn check(settings: &Settings) -> Result<(), Failure> {
    check_server(settings)?;
    check_webhooks(settings)?;
    check_no_demo_values(settings)?;
    check_subscriptions(settings)?;
    check_momento(settings)?;
    check_delivery(settings)?;
    crate::processors::http::DestinationPolicy::new(&settings.http_steps)?;
    if let Some(tokens) = &settings.tokens {
        tokens.check()?;
    }
    check_route_names(settings)
}

fn fail(key: impl Into<String>, message: impl Into<String>) -> Result<(), Failure> {
    Err((key.into(), message.into()))
}

fn check_server(settings: &Settings) -> Result<(), Failure> {
    let server = &settings.server;
    if let Some(ops) = server.ops_listen
        && ops.port() != 0
        && ops.port() == server.listen.port()
        && (ops.ip() == server.listen.ip()
            || ops.ip().is_unspecified()
            || server.listen.ip().is_unspecified())
    {
        return fail(
            "server.ops_listen",
            format!("must be another port than server.listen ({})", server.listen),
        );
    }
    if server.request_timeout.is_zero() || server.request_timeout >= MOMENTO_DELIVERY_TIMEOUT {
        return fail(
            "server.request_timeout",
            "must be more than 0 and under 5s, Momento's delivery timeout",
        );
    }
    if server.shutdown_grace < server.request_timeout {
        return fail(
            "server.shutdown_grace",
            "must be at least server.request_timeout, so that requests in flight can finish",
        );
    }
    if server.max_in_flight == 0 {
        return fail("server.max_in_flight", "must be at least 1");
    }
    if server.read_timeout <= server.request_timeout {
        return fail(
            "server.read_timeout",
            "must be longer than server.request_timeout, so that every request can be answered",
        );
    }
    if server.idle_timeout < Duration::from_secs(1) {
        return fail("server.idle_timeout", "must be at least 1s");
    }
    if server.max_connections == 0 {
        return fail("server.max_connections", "must be at least 1");
    }
    if server.threads == Some(0) {
        return fail("server.threads", "must be at least 1; leave it out for one per CPU");
    }
    if server.worker_threads == Some(0) {
        return fail("server.worker_threads", "must be at least 1; leave it out for one per CPU");
    }
    if server.max_body_bytes < 4096 {
        return fail("server.max_body_bytes", "must be at least 4096: Momento payloads go up to 4 KB");
    }
    Ok(())
}

/// Letters, digits, '-' and '_': a name that fits in a URL path and a metric label as it is.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_subscriptions(settings: &Settings) -> Result<(), Failure> {
    for (name, subscription) in &settings.subscriptions {
        let key = format!("subscriptions.{name}");
        if !is_plain_name(name) {
            return fail(key, "a subscription name may only hold letters, digits, '-' and '_'");
        }
        if subscription.cache.is_empty() {
            return fail(format!("{key}.cache"), "name the cache whose topics to listen to");
        }
        if subscription.topics.is_empty() {
            return fail(format!("{key}.topics"), "list at least one topic");
        }
        if let Some(index) = subscription.topics.iter().position(String::is_empty) {
            return fail(format!("{key}.topics[{index}]"), "a topic name cannot be empty");
        }
        let mut topics = subscription.topics.clone();
        topics.sort();
        if topics.windows(2).any(|pair| pair[0] == pair[1]) {
            return fail(format!("{key}.topics"), "a topic is listed twice");
        }
        if subscription.lease_ttl < Duration::from_secs(1) {
            return fail(format!("{key}.lease_ttl"), "must be at least 1s");
        }
        if subscription.queue == 0 {
            return fail(format!("{key}.queue"), "must be at least 1");
        }
        if subscription.concurrency == 0 || subscription.concurrency > 1024 {
            return fail(format!("{key}.concurrency"), "must be from 1 to 1024");
        }
        if subscription.checkpoint_interval < Duration::from_millis(10) {
            return fail(format!("{key}.checkpoint_interval"), "must be at least 10ms");
        }
        if subscription.stall_after < Duration::from_millis(100) {
            return fail(format!("{key}.stall_after"), "must be at least 100ms");
        }
        if subscription.reconnect_initial.is_zero()
            || subscription.reconnect_initial > subscription.reconnect_max
        {
            return fail(
                format!("{key}.reconnect_initial"),
                "must be more than zero and no longer than reconnect_max",
            );
        }
    }
    Ok(())
}

fn check_webhooks(settings: &Settings) -> Result<(), Failure> {
    if settings.webhooks.is_empty() && settings.subscriptions.is_empty() {
        return fail(
            "webhooks",
            "no webhook or subscription configured; add a [webhooks.<name>] table with its signing \
             secrets, or a [subscriptions.<name>] table",
        );
    }
    let momento = settings.momento.resolved_backend() == BackendKind::Momento;
    for (name, webhook) in &settings.webhooks {
        let key = format!("webhooks.{name}");
        if !is_plain_name(name) {
            return fail(key, "a webhook name may only hold letters, digits, '-' and '_'");
        }
        if webhook.max_age.is_zero() {
            return fail(format!("{key}.max_age"), "must be more than 0");
        }
        if let Some(index) = webhook.secrets.iter().position(Secret::is_empty) {
            return fail(
                format!("{key}.secrets[{index}]"),
                "an empty secret would let anyone sign events; remove the entry",
            );
        }
        if momento && webhook.secrets.is_empty() {
            return fail(
                format!("{key}.secrets"),
                "no signing secret configured (every entry was empty or unset); the momento \
                 backend requires one",
            );
        }
    }
    Ok(())
}

/// The published demo values are for the embedded backend only: on Momento, a JWT secret
/// anyone can read lets anyone mint callers and get real tokens with any `token_id`, and a
/// known admin token opens the admin API.
fn check_no_demo_values(settings: &Settings) -> Result<(), Failure> {
    if settings.momento.resolved_backend() != BackendKind::Momento {
        return Ok(());
    }
    let is_demo = |secret: &Secret| is_published_demo_value(secret.expose());
    for (name, webhook) in &settings.webhooks {
        if webhook.secrets.iter().any(is_demo) {
            return fail(
                format!("webhooks.{name}.secrets"),
                "the public demo secret is refused with the momento backend; set the webhook's \
                 own signing secret",
            );
        }
    }
    let jwt_secret = settings.tokens.as_ref().and_then(|tokens| tokens.jwt.hs256_secret.as_ref());
    if jwt_secret.is_some_and(is_demo) {
        return fail(
            "tokens.jwt.hs256_secret",
            "is the published demo secret, refused with the momento backend: anyone could sign \
             callers' JWTs with it; set TOPIC_RELAY_JWT_SECRET (or the variable your file names) to a \
             long random value",
        );
    }
    if settings.admin.token.as_ref().is_some_and(is_demo) {
        return fail(
            "admin.token",
            "is the published demo admin token, refused with the momento backend; set \
             TOPIC_RELAY_ADMIN_TOKEN (or the variable your file names) to a long random value",
        );
    }
    Ok(())
}

fn check_momento(settings: &Settings) -> Result<(), Failure> {
    let momento = &settings.momento;
    if let Some(url) = &momento.endpoint_override
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return fail(
            "momento.endpoint_override",
            "must be a URL with its scheme, such as http://127.0.0.1:9090",
        );
    }
    match (&momento.endpoint_override, momento.tls) {
        (None, false) => return fail("momento.tls", "tls = false only applies with endpoint_override"),
        (Some(url), true) if url.starts_with("http://") => {
            return fail("momento.tls", "an http:// endpoint_override needs tls = false");
        }
        (Some(url), false) if url.starts_with("https://") => {
            return fail("momento.tls", "an https:// endpoint_override needs tls = true");
        }
        _ => {}
    }
    if momento.resolved_backend() == BackendKind::Memory {
        return Ok(());
    }
    if momento.api_key.as_ref().is_none_or(|key| key.is_empty()) {
        return fail("momento.api_key", "the momento backend needs an API key");
    }
    if momento.topic_clients == 0 {
        return fail("momento.topic_clients", "must be at least 1");
    }
    if momento.cache_connections == 0 {
        return fail("momento.cache_connections", "must be at least 1");
    }
    if settings.probe_cache().is_empty() {
        return fail(
            "momento.probe_cache",
            "no route names a cache exactly and there is no subscription, so set the cache the \
             readiness probe reads (a key there need not exist)",
        );
    }
    if momento.call_timeout.is_zero() || momento.call_timeout >= settings.server.request_timeout {
        return fail("momento.call_timeout", "must be more than 0 and less than server.request_timeout");
    }
    Ok(())
}

fn check_delivery(settings: &Settings) -> Result<(), Failure> {
    let delivery = &settings.delivery;
    if delivery
        .inline_budget
        .is_some_and(|budget| budget.is_zero() || budget >= settings.server.request_timeout)
    {
        return fail("delivery.inline_budget", "must be more than 0 and less than server.request_timeout");
    }
    if delivery.retry_initial.is_zero() || delivery.retry_max < delivery.retry_initial {
        return fail("delivery.retry_initial", "must be more than 0 and at most delivery.retry_max");
    }
    if delivery.spool_slots == 0 {
        return fail("delivery.spool_slots", "must be at least 1");
    }
    if delivery.max_attempts == 0 {
        return fail("delivery.max_attempts", "must be at least 1");
    }
    if delivery.max_spooled_events == 0 {
        return fail("delivery.max_spooled_events", "must be at least 1");
    }
    if delivery.redelivery_concurrency == 0 {
        return fail("delivery.redelivery_concurrency", "must be at least 1");
    }
    if delivery.dedup_capacity == 0 {
        return fail("delivery.dedup_capacity", "must be at least 1");
    }
    if delivery.dedup == DedupMode::Momento && settings.momento.resolved_backend() != BackendKind::Momento {
        return fail("delivery.dedup", "dedup = \"momento\" needs the momento backend");
    }
    if settings.admin.token.as_ref().is_some_and(|token| !token.is_empty() && token.expose().len() < 16) {
        return fail("admin.token", "must be at least 16 characters");
    }
    Ok(())
}

fn check_route_names(settings: &Settings) -> Result<(), Failure> {
    for (index, route) in settings.routes.iter().enumerate() {
        if route.name.trim().is_empty() {
            return fail(format!("routes[{index}].name"), "must not be empty");
        }
        if settings.routes[..index].iter().any(|earlier| earlier.name == route.name) {
            return fail(
                format!("routes[{index}].name"),
                format!("another route is already named {:?}", route.name),
            );
        }
    }
    Ok(())
}
