//! Configuration errors name the key (and the file or variable it came from), and never
//! show a secret.

use topic_relay::config::{ConfigError, ConfigSource, load_from_str};
use topic_relay::processors::ProcessorRegistry;
use topic_relay::route::RouteTable;

const BASE: &str = r#"
[webhooks.chat]
secrets = ["s"]

[[routes]]
name = "shout"
match = { cache = "chat", topic = "topic 1" }
steps = ["uppercase", { publish = { topic = "topic 2" } }]
"#;

/// A valid `[tokens]` section.
const TOKENS: &str = r#"
[tokens]
jwt = { hs256_secret = "0123456789abcdef0123456789abcdef0123456789abcdef" }
token_id = "{sub}"
expires_in = "30m"
permissions = [{ role = "publish_only", cache = "chat", topic = "room-1" }]"#;

/// `http` steps that must be refused at load: they call the relay's own machine, a cloud's
/// metadata service, a host the message names, or a host off the allow-list.
const HTTP_TO_LOOPBACK: &str = r#"{ http = { url = "http://127.0.0.1:9090/admin" } }"#;
const HTTP_TO_METADATA: &str = r#"{ http = { url = "http://169.254.169.254/latest/meta-data/" } }"#;
const HTTP_HOST_FROM_MESSAGE: &str = r#"{ http = { url = "https://{token_id}.example.com/x" } }"#;
const HTTP_TO_OTHER_HOST: &str = r#"{ http = { url = "https://other.example.com/x" } }"#;

#[test]
fn a_listed_loopback_destination_is_allowed() {
    let config = format!("{BASE}\n[http_steps]\nallowed_destinations = [\"127.0.0.1:9090\"]")
        .replace("\"uppercase\"", HTTP_TO_LOOPBACK);
    let loaded = load_from_str(&config, source(), &env, Vec::new()).unwrap();
    assert!(RouteTable::build(&loaded.settings, &ProcessorRegistry::new()).is_ok());
}

#[test]
fn a_valid_tokens_section_loads_and_its_secret_is_redacted() {
    let loaded = load_from_str(&format!("{BASE}\n{TOKENS}"), source(), &env, Vec::new()).expect("valid");
    let shown = toml::to_string(&loaded.settings).unwrap();
    assert!(shown.contains("hs256_secret = \"<redacted>\""), "{shown}");
    assert!(!shown.contains("0123456789abcdef"), "{shown}");
}

fn source() -> ConfigSource {
    ConfigSource::File("relay.toml".into())
}

fn env(name: &str) -> Option<String> {
    (name == "API_KEY").then(|| "sk-very-secret-value".to_owned())
}

/// The error for `config`, including what building the routes finds.
fn error_for(config: &str) -> String {
    match load_from_str(config, source(), &env, Vec::new()) {
        Err(error) => error.to_string(),
        Ok(loaded) => match RouteTable::build(&loaded.settings, &ProcessorRegistry::new()) {
            Err((key, message)) => format!("`{key}`: {message}"),
            Ok(_) => panic!("expected an error for:\n{config}"),
        },
    }
}

#[test]
fn each_invalid_config_gets_an_error_naming_its_key() {
    let cases = [
        (format!("{BASE}\n[server]\nrequest_timeout = \"4x\""), "server.request_timeout"),
        (format!("{BASE}\n[server]\nrequest_timeout = \"5s\""), "server.request_timeout"),
        (format!("{BASE}\n[server]\nlisten = \"nowhere\""), "server.listen"),
        (format!("{BASE}\n[server]\nmax_in_flight = 0"), "server.max_in_flight"),
        (format!("{BASE}\n[server]\nthreads = 0"), "server.threads"),
        (format!("{BASE}\n[server]\nworker_threads = 0"), "server.worker_threads"),
        (format!("{BASE}\n[server]\nlisten_port = 1"), "server.listen_port"),
        (format!("{BASE}\n[momento]\nbackend = \"redis\""), "momento.backend"),
        (format!("{BASE}\n[momento]\nbackend = \"momento\""), "momento.api_key"),
        (format!("{BASE}\n[momento]\nendpoint_override = \"127.0.0.1:9090\""), "momento.endpoint_override"),
        (format!("{BASE}\n[unmatched]\naction = \"shrug\""), "unmatched.action"),
        (BASE.replace("secrets = [\"s\"]", "secrets = \"s\""), "webhooks.chat.secrets"),
        (BASE.replace("[webhooks.chat]", "[webhooks.\"my hook\"]"), "webhooks.my hook"),
        (BASE.replace("[webhooks.chat]\nsecrets = [\"s\"]", ""), "webhooks"),
        (BASE.replace("\"uppercase\"", "\"uppercsae\""), "routes[0].steps[0]"),
        (BASE.replace("topic = \"topic 2\"", "topik = \"topic 2\""), "routes[0].steps[1]"),
        (BASE.replace("topic = \"topic 2\"", "topic = \"{topci}\""), "routes[0].steps[1].publish"),
        (BASE.replace("topic = \"topic 1\"", "topic = \"room-[\""), "routes[0].match.topic"),
        (format!("{BASE}\n[[routes]]\nname = \"shout\""), "routes[1].name"),
        (format!("{BASE}\n{TOKENS}").replace("{sub}\"", "{sub\""), "tokens.token_id"),
        (
            format!("{BASE}\n{TOKENS}").replace("hs256_secret", "jwks_url = \"https://x\", hs256_secret"),
            "tokens.jwt",
        ),
        (format!("{BASE}\n{TOKENS}").replace("0123456789abcdef", ""), "tokens.jwt.hs256_secret"),
        (format!("{BASE}\n{TOKENS}").replace(", topic = \"room-1\"", ""), "tokens.permissions[0].topic"),
        (format!("{BASE}\n{TOKENS}").replace("publish_only", "publish"), "tokens.permissions[0].role"),
        (format!("{BASE}\n{TOKENS}").replace("30m", "2d"), "tokens.expires_in"),
        (format!("{BASE}\n{TOKENS}\nrate_limit = \"10/day\""), "tokens.rate_limit"),
        (format!("{BASE}\n{TOKENS}\ncors_origins = [\"chat.example.com\"]"), "tokens.cors_origins[0]"),
        (
            format!("{BASE}\n{TOKENS}").replace(
                "hs256_secret = \"0123456789abcdef0123456789abcdef0123456789abcdef\"",
                "jwks_url = \"https://idp.example/jwks.json\"",
            ),
            "tokens.jwt",
        ),
        (BASE.replace("\"uppercase\"", HTTP_TO_LOOPBACK), "routes[0].steps[0].http"),
        (BASE.replace("\"uppercase\"", HTTP_TO_METADATA), "routes[0].steps[0].http"),
        (BASE.replace("\"uppercase\"", HTTP_HOST_FROM_MESSAGE), "routes[0].steps[0].http"),
        (
            format!("{BASE}\n[http_steps]\nallowed_destinations = [\"https://x/y\"]"),
            "http_steps.allowed_destinations[0]",
        ),
        (
            format!("{BASE}\n[http_steps]\nallowed_destinations = [\"api.example.com\"]")
                .replace("\"uppercase\"", HTTP_TO_OTHER_HOST),
            "routes[0].steps[0].http",
        ),
    ];
    for (config, key) in cases {
        let error = error_for(&config);
        assert!(error.contains(&format!("`{key}`")), "expected key `{key}` in: {error}");
    }
}

#[test]
fn errors_name_the_file_they_come_from() {
    let error = error_for(&format!("{BASE}\n[server]\nmax_in_flight = 0"));
    assert!(error.starts_with("relay.toml: "), "{error}");
}

#[test]
fn an_error_from_an_environment_override_names_the_variable() {
    let vars = vec![("TOPIC_RELAY__SERVER__MAX_IN_FLIGHT".to_owned(), "lots".to_owned())];
    let error = load_from_str(BASE, source(), &env, vars).unwrap_err().to_string();
    assert!(error.starts_with("TOPIC_RELAY__SERVER__MAX_IN_FLIGHT: `server.max_in_flight`"), "{error}");
}

#[test]
fn an_unset_variable_is_an_error_naming_the_variable_and_the_key() {
    let config = format!("{BASE}\n[momento]\nendpoint = \"${{MOMENTO_ENDPOINT}}\"");
    let error = load_from_str(&config, source(), &env, Vec::new()).unwrap_err();
    assert!(
        matches!(&error, ConfigError::UnsetVariable { key, variable, .. } if key == "momento.endpoint" && variable == "MOMENTO_ENDPOINT")
    );
}

#[test]
fn a_secret_never_appears_in_an_error_message() {
    let config = format!("{BASE}\n[momento]\nbackend = \"${{API_KEY}}\"");
    let error = load_from_str(&config, source(), &env, Vec::new()).unwrap_err().to_string();
    assert!(error.contains("momento.backend"), "{error}");
    assert!(!error.contains("sk-very-secret-value"), "{error}");
    assert!(error.contains("<redacted>"), "{error}");
}

#[test]
fn a_secret_set_through_the_environment_never_appears_in_an_error_message() {
    let vars = vec![(
        "TOPIC_RELAY__WEBHOOKS__CHAT".to_owned(),
        r#"{ secrets = "my-real-signing-secret" }"#.to_owned(),
    )];
    let error = load_from_str(BASE, source(), &env, vars).unwrap_err().to_string();
    assert!(error.contains("webhooks.chat.secrets"), "{error}");
    assert!(!error.contains("my-real-signing-secret"), "{error}");
}

#[test]
fn a_single_secret_from_the_environment_is_a_list_of_one_and_an_empty_one_is_refused() {
    let one = vec![("TOPIC_RELAY__WEBHOOKS__CHAT__SECRETS".to_owned(), "0x10".to_owned())];
    let loaded = load_from_str(BASE, source(), &env, one).unwrap();
    assert_eq!(loaded.settings.webhooks["chat"].secrets[0].expose(), "0x10");
    let with_empty = vec![("TOPIC_RELAY__WEBHOOKS__CHAT__SECRETS".to_owned(), r#"["new", ""]"#.to_owned())];
    let error = load_from_str(BASE, source(), &env, with_empty).unwrap_err().to_string();
    assert!(error.contains("`webhooks.chat.secrets[1]`") && error.contains("anyone"), "{error}");
}

#[test]
fn a_numeric_token_from_the_environment_is_a_string_and_kept_literally() {
    let vars = vec![
        ("TOPIC_RELAY__ADMIN__TOKEN".to_owned(), "1234567890123456".to_owned()),
        ("TOPIC_RELAY__MOMENTO__ENDPOINT".to_owned(), "cell.example.com/$${literal}".to_owned()),
    ];
    let loaded = load_from_str(BASE, source(), &env, vars).unwrap();
    assert_eq!(loaded.settings.admin.token.unwrap().expose(), "1234567890123456");
    assert_eq!(loaded.settings.momento.endpoint.as_deref(), Some("cell.example.com/$${literal}"));
}

#[test]
fn a_syntax_error_names_its_line_and_column_but_not_the_line() {
    let error =
        load_from_str("[server]\nlisten = \"x\"\ntoken = = \"hunter2\"\n", source(), &env, Vec::new())
            .unwrap_err()
            .to_string();
    assert!(error.contains("line 3"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}

#[test]
fn a_loop_back_into_the_routes_own_topic_is_refused_unless_allowed() {
    let looping = BASE.replace("topic = \"topic 2\"", "topic = \"{topic}\"");
    assert!(error_for(&looping).contains("endless loop"));
    let glob_loop = BASE
        .replace("topic = \"topic 1\"", "topic = \"room-*\"")
        .replace("topic = \"topic 2\"", "topic = \"{topic}-out\"");
    assert!(error_for(&glob_loop).contains("`routes[0]`"));
    let allowed = looping.replace("name = \"shout\"", "name = \"shout\"\nallow_loop = true");
    let loaded = load_from_str(&allowed, source(), &env, Vec::new()).unwrap();
    assert!(RouteTable::build(&loaded.settings, &ProcessorRegistry::new()).is_ok());
}

#[test]
fn a_loop_through_two_routes_is_refused_too() {
    let config = format!(
        "{BASE}\n[[routes]]\nname = \"echo\"\nmatch = {{ cache = \"chat\", topic = \"topic 2\" }}\nsteps = [{{ publish = {{ topic = \"topic 1\" }} }}]\n"
    );
    let error = error_for(&config);
    assert!(
        error.contains("`shout` publishes to chat/topic 2, then `echo` publishes to chat/topic 1"),
        "{error}"
    );
}

#[test]
fn a_dead_letter_topic_that_a_route_takes_is_refused() {
    let config =
        format!("{BASE}\n[delivery]\ndead_letter_topic = {{ cache = \"chat\", topic = \"topic 1\" }}\n");
    let error = error_for(&config);
    assert!(error.contains("`delivery.dead_letter_topic`") && error.contains("`shout`"), "{error}");
}

#[test]
fn a_route_that_requires_a_token_id_does_not_take_back_the_relays_own_publishes() {
    let config = BASE
        .replace("topic = \"topic 1\" }", "topic = \"room-*\", token_id = \"required\" }")
        .replace("topic = \"topic 2\"", "topic = \"{topic}-enriched\"");
    let loaded = load_from_str(&config, source(), &env, Vec::new()).unwrap();
    assert!(RouteTable::build(&loaded.settings, &ProcessorRegistry::new()).is_ok());
}

#[test]
fn empty_secret_slots_are_dropped_and_the_demo_secret_fills_in_on_the_embedded_backend() {
    let config = BASE.replace("secrets = [\"s\"]", "secrets = [\"${UNSET_ONE}\", \"${UNSET_TWO}\"]");
    let loaded = load_from_str(&config, source(), &env, Vec::new()).unwrap();
    assert_eq!(loaded.settings.webhooks["chat"].secrets.len(), 1);
    assert!(loaded.notices[0].contains("PUBLIC demo secret"));
    let momento = format!("{config}\n[momento]\napi_key = \"${{API_KEY}}\"");
    let error = load_from_str(&momento, source(), &env, Vec::new()).unwrap_err().to_string();
    assert!(error.contains("`webhooks.chat.secrets`"), "{error}");
}

#[test]
fn beyond_loopback_a_webhook_without_a_secret_is_refused_unless_allowed() {
    let secretless = BASE.replace("secrets = [\"s\"]", "secrets = [\"${WEBHOOK_SECRET}\"]");
    let exposed = format!("[server]\nlisten = \"0.0.0.0:8080\"\n{secretless}");
    let error = load_from_str(&exposed, source(), &env, Vec::new()).unwrap_err().to_string();
    assert!(error.contains("`webhooks.chat.secrets`") && error.contains("PUBLIC demo secret"), "{error}");
    assert!(error.contains("0.0.0.0:8080") && error.contains("WEBHOOK_SECRET"), "{error}");
    assert!(error.contains("server.allow_demo_secrets"), "{error}");
    assert!(!error.contains("topic-relay-demo-secret"), "the error never shows a secret: {error}");

    let allowed = exposed.replace("[server]\n", "[server]\nallow_demo_secrets = true\n");
    let loaded = load_from_str(&allowed, source(), &env, Vec::new()).unwrap();
    assert!(loaded.notices[0].contains("PUBLIC demo secret"));
    let on_loopback = exposed.replace("0.0.0.0:8080", "127.0.0.1:8080");
    assert!(load_from_str(&on_loopback, source(), &env, Vec::new()).is_ok());
    let own = |name: &str| (name == "WEBHOOK_SECRET").then(|| "our-own-secret".to_owned());
    let loaded = load_from_str(&exposed, source(), &own, Vec::new()).unwrap();
    assert!(loaded.notices.is_empty(), "{:?}", loaded.notices);
}

#[test]
fn beyond_loopback_the_published_demo_jwt_secret_and_admin_token_are_refused() {
    let text = std::fs::read_to_string("config/examples/identity-local.toml").unwrap();
    let exposed = text.replace("listen = \"127.0.0.1:8080\"", "listen = \"0.0.0.0:8080\"");
    assert_ne!(exposed, text, "the example listens on loopback");
    let error = load_from_str(&exposed, source(), &|_| None, Vec::new()).unwrap_err().to_string();
    assert!(
        error.contains("`tokens.jwt.hs256_secret`") && error.contains("TOPIC_RELAY_JWT_SECRET"),
        "{error}"
    );
    let jwt = |name: &str| {
        (name == "APP_JWT_SECRET").then(|| "an-application-secret-of-thirty-two-bytes".to_owned())
    };
    let error = load_from_str(&exposed, source(), &jwt, Vec::new()).unwrap_err().to_string();
    assert!(error.contains("`admin.token`") && error.contains("ADMIN_TOKEN"), "{error}");
}

#[test]
fn a_variable_under_its_old_name_is_still_read_for_one_release_with_a_notice() {
    let text = std::fs::read_to_string("config/default.toml").unwrap();
    assert!(text.contains("${TOPIC_RELAY_WEBHOOK_SECRET}"), "the shipped file names the new spelling");
    let old = |name: &str| (name == "WEBHOOK_SECRET").then(|| "a-secret-under-its-old-name".to_owned());
    let loaded = load_from_str(&text, source(), &old, Vec::new()).unwrap();
    assert_eq!(loaded.settings.webhooks["chat"].secrets.len(), 1);
    assert_eq!(loaded.settings.webhooks["chat"].secrets[0].expose(), "a-secret-under-its-old-name");
    let notices = loaded.notices.join("\n");
    assert!(notices.contains("WEBHOOK_SECRET is read for ${TOPIC_RELAY_WEBHOOK_SECRET}"), "{notices}");
    assert!(!notices.contains("PUBLIC demo secret"), "{notices}");

    let new = |name: &str| (name == "TOPIC_RELAY_WEBHOOK_SECRET").then(|| "the-new-name".to_owned());
    let loaded = load_from_str(&text, source(), &new, Vec::new()).unwrap();
    assert_eq!(loaded.settings.webhooks["chat"].secrets[0].expose(), "the-new-name");
    assert!(loaded.notices.is_empty(), "{:?}", loaded.notices);
}

#[test]
fn the_shipped_default_config_is_valid() {
    let text = std::fs::read_to_string("config/default.toml").unwrap();
    let loaded = load_from_str(&text, source(), &|_| None, Vec::new()).unwrap();
    assert!(RouteTable::build(&loaded.settings, &ProcessorRegistry::new()).is_ok());
}

/// `config/examples/identity-local.toml` as a user would switch it to Momento: `backend =
/// "memory"` dropped and an API key set, with `variables` set in the environment.
fn identity_local_on_momento(variables: &[(&str, &str)]) -> Result<(), String> {
    let text = std::fs::read_to_string("config/examples/identity-local.toml").unwrap();
    let text = text.replace("\nbackend = \"memory\"\n", "\napi_key = \"${API_KEY}\"\n");
    assert!(text.contains("api_key = "), "the example names its backend on a line of its own");
    let variables: Vec<(String, String)> =
        variables.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
    let lookup = |name: &str| {
        variables
            .iter()
            .find(|(variable, _)| variable == name)
            .map(|(_, value)| value.clone())
            .or_else(|| env(name))
    };
    load_from_str(&text, source(), &lookup, Vec::new()).map(drop).map_err(|error| error.to_string())
}

#[test]
fn the_published_demo_jwt_secret_and_admin_token_are_refused_on_momento() {
    let error = identity_local_on_momento(&[]).unwrap_err();
    assert!(error.contains("`tokens.jwt.hs256_secret`") && error.contains("published demo"), "{error}");
    let own_jwt_secret = ("APP_JWT_SECRET", "an-application-secret-of-thirty-two-bytes-or-more");
    let error = identity_local_on_momento(&[own_jwt_secret]).unwrap_err();
    assert!(error.contains("`admin.token`") && error.contains("published demo"), "{error}");
    assert!(!error.contains("local-demo-admin-token"), "{error}");
    identity_local_on_momento(&[own_jwt_secret, ("ADMIN_TOKEN", "an-admin-token-of-our-own")]).unwrap();
}

#[test]
fn the_published_demo_values_are_named_in_notices_on_the_embedded_backend() {
    let text = std::fs::read_to_string("config/examples/identity-local.toml").unwrap();
    let loaded = load_from_str(&text, source(), &|_| None, Vec::new()).unwrap();
    let notices = loaded.notices.join("\n");
    assert!(notices.contains("tokens.jwt.hs256_secret is the PUBLISHED demo secret"), "{notices}");
    assert!(notices.contains("admin.token is the PUBLISHED demo admin token"), "{notices}");
}

/// The seed's webhook and route, with a subscription to the route's own topic.
fn webhook_and_subscription_on_one_topic(route_extra: &str) -> String {
    format!("{BASE}\n{route_extra}\n[subscriptions.rooms]\ncache = \"chat\"\ntopics = [\"topic 1\"]\n")
}

#[test]
fn a_route_fed_one_topic_by_both_a_webhook_and_a_subscription_is_refused() {
    let error = error_for(&webhook_and_subscription_on_one_topic(""));
    assert!(error.contains("`routes[0]`") && error.contains("processed twice"), "{error}");
    assert!(error.contains("subscription `rooms`") && error.contains("webhook `chat`"), "{error}");
}

#[test]
fn a_route_that_names_its_source_or_allows_the_overlap_is_accepted() {
    for config in [
        webhook_and_subscription_on_one_topic("allow_overlap = true"),
        webhook_and_subscription_on_one_topic("")
            .replace("topic = \"topic 1\" }", "topic = \"topic 1\", webhook = \"chat\" }"),
        webhook_and_subscription_on_one_topic("")
            .replace("topic = \"topic 1\" }", "topic = \"topic 1\", subscription = \"rooms\" }"),
    ] {
        let loaded = load_from_str(&config, source(), &env, Vec::new()).unwrap();
        let built = RouteTable::build(&loaded.settings, &ProcessorRegistry::new());
        assert!(built.is_ok(), "{:?}\n{config}", built.err());
    }
}

#[test]
fn a_listening_relay_on_momento_probes_its_subscriptions_cache_when_no_route_names_one() {
    let config = r#"
[subscriptions.inbox]
cache = "chat"
topics = ["topic 1"]

[[routes]]
name = "shout"
match = { subscription = "inbox" }
steps = ["uppercase", { publish = { topic = "topic 2" } }]

[momento]
api_key = "${API_KEY}"
"#;
    let loaded = load_from_str(config, source(), &env, Vec::new()).unwrap();
    assert_eq!(loaded.settings.probe_cache(), "chat");
    let with_own = config.replace("[momento]\n", "[momento]\nprobe_cache = \"probes\"\n");
    let loaded = load_from_str(&with_own, source(), &env, Vec::new()).unwrap();
    assert_eq!(loaded.settings.probe_cache(), "probes");
}
