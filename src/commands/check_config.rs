//! `topic-relay check-config`: everything startup checks, without starting.

use std::process::ExitCode;

use anyhow::anyhow;

use crate::backend::momento::credential_provider;
use crate::cli::ConfigArgs;
use crate::config::{self, BackendKind, REDACTED};
use crate::processors::ProcessorRegistry;
use crate::route::RouteTable;

/// Validates the configuration (routes, steps and loops included) and prints it resolved,
/// with secrets redacted.
pub fn run(args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let loaded = config::load(args.config.as_deref())?;
    RouteTable::build(&loaded.settings, &ProcessorRegistry::new())
        .map_err(|(key, message)| anyhow!("{}: `{key}`: {message}", loaded.source))?;
    if loaded.settings.momento.resolved_backend() == BackendKind::Momento {
        credential_provider(&loaded.settings.momento)
            .map_err(|error| anyhow!("{}: {error}", loaded.source))?;
    }
    let resolved = readable_toml(&toml::to_string_pretty(&loaded.settings)?)?;
    say!("# configuration from {}: valid", loaded.source)?;
    say!("# backend: {}", loaded.settings.momento.resolved_backend().name())?;
    let server = &loaded.settings.server;
    let chosen_by = |set: bool, key| if set { key } else { "one per CPU this relay may use" };
    let http_by = chosen_by(server.threads.is_some(), "server.threads");
    say!("# http threads: {} ({http_by})", server.threads())?;
    let workers_by = chosen_by(server.worker_threads.is_some(), "server.worker_threads");
    say!("# worker threads: {} ({workers_by})", server.worker_threads())?;
    for notice in &loaded.notices {
        say!("# NOTE: {notice}")?;
    }
    say!("\n{resolved}")?;
    Ok(ExitCode::SUCCESS)
}

/// Hides the query values of every URL in `item`: a URL written with `${VAR}` may carry a
/// key in its query (`?key=...`), which the printed configuration must not show.
fn redact_url_queries(item: &mut toml_edit::Item) {
    match item {
        toml_edit::Item::Value(value) => redact_value(value),
        toml_edit::Item::Table(table) => table.iter_mut().for_each(|(_, item)| redact_url_queries(item)),
        toml_edit::Item::ArrayOfTables(tables) => {
            tables
                .iter_mut()
                .for_each(|table| table.iter_mut().for_each(|(_, item)| redact_url_queries(item)));
        }
        toml_edit::Item::None => {}
    }
}

fn redact_value(value: &mut toml_edit::Value) {
    match value {
        toml_edit::Value::String(text) => {
            if let Some(redacted) = without_query_values(text.value()) {
                let decor = text.decor().clone();
                *text = toml_edit::Formatted::new(redacted);
                *text.decor_mut() = decor;
            }
        }
        toml_edit::Value::Array(items) => items.iter_mut().for_each(redact_value),
        toml_edit::Value::InlineTable(table) => table.iter_mut().for_each(|(_, value)| redact_value(value)),
        _ => {}
    }
}

/// `url` with each query value replaced by `<redacted>`, if it is an http(s) URL with a
/// query; the rest is kept as written, placeholders included.
fn without_query_values(url: &str) -> Option<String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return None;
    }
    let (before, after) = url.split_once('?')?;
    let (query, fragment) =
        after.split_once('#').map_or((after, None), |(query, fragment)| (query, Some(fragment)));
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) => format!("{name}={REDACTED}"),
            None => pair.to_owned(),
        })
        .collect();
    let fragment = fragment.map(|fragment| format!("#{fragment}")).unwrap_or_default();
    Some(format!("{before}?{}{fragment}", redacted.join("&")))
}

/// Writes each route's `match` and `steps` inline, the way users write them, instead of as
/// nested tables.
fn readable_toml(text: &str) -> anyhow::Result<String> {
    let mut document: toml_edit::DocumentMut = text.parse()?;
    redact_url_queries(document.as_item_mut());
    let Some(routes) = document.get_mut("routes").and_then(|item| item.as_array_of_tables_mut()) else {
        return Ok(document.to_string());
    };
    for route in routes.iter_mut() {
        if let Some(mut matcher) = route.remove("match") {
            inline(&mut matcher);
            route.insert("match", matcher);
        }
        if let Some(steps) = route.remove("steps").and_then(|item| item.into_array_of_tables().ok()) {
            let mut array: toml_edit::Array = steps
                .into_iter()
                .map(|step| {
                    let mut step = toml_edit::Value::InlineTable(step.into_inline_table());
                    one_line(&mut step);
                    step
                })
                .collect();
            array.iter_mut().for_each(|step| step.decor_mut().set_prefix("\n  "));
            array.set_trailing("\n");
            array.set_trailing_comma(true);
            route.insert("steps", toml_edit::value(array));
        }
    }
    Ok(document.to_string())
}

/// Puts a value's arrays on one line, as `for_each = ["en", "es"]` is written.
fn one_line(value: &mut toml_edit::Value) {
    match value {
        toml_edit::Value::Array(array) => {
            for (index, element) in array.iter_mut().enumerate() {
                one_line(element);
                element.decor_mut().set_prefix(if index == 0 { "" } else { " " });
                element.decor_mut().set_suffix("");
            }
            array.set_trailing("");
            array.set_trailing_comma(false);
        }
        toml_edit::Value::InlineTable(table) => table.iter_mut().for_each(|(_, value)| one_line(value)),
        _ => {}
    }
}

fn inline(item: &mut toml_edit::Item) {
    if let Some(table) = item.as_table_mut() {
        let mut inline = std::mem::take(table).into_inline_table();
        inline.fmt();
        *item = toml_edit::value(inline);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_of_urls_are_redacted_and_the_rest_is_kept_as_written() {
        assert_eq!(
            without_query_values("https://api.example/users/{token_id}?key=sk-live-1&lang=es#top").as_deref(),
            Some("https://api.example/users/{token_id}?key=<redacted>&lang=<redacted>#top")
        );
        assert_eq!(without_query_values("https://api.example/x"), None);
        assert_eq!(without_query_values("room-?x=1"), None, "only URLs");
        let shown =
            readable_toml("[a]\nurls = [\"http://h/?token=abc\"]\n[[routes]]\nname = \"http://x/?k=def\"\n")
                .unwrap();
        assert!(!shown.contains("abc") && !shown.contains("def"), "{shown}");
    }
}
