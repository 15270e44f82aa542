//! Loading: built-in defaults, then one config file, then `TOPIC_RELAY__*` variables, then
//! `${VAR}` expansion, then typed deserialization and validation. Every error names the key
//! and where its value came from.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::Table;

use super::expand::{self, ExpandError};
use super::{BackendKind, DEMO_SECRET, REDACTED, Secret, Settings, is_published_demo_value, validate};

/// The demo configuration, used when no config file is given and `config/default.toml` is
/// not in the working directory.
const BUILT_IN_CONFIG: &str = include_str!("../../config/default.toml");

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "TOPIC_RELAY_CONFIG";

/// Where the configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A file on disk.
    File(PathBuf),
    /// The demo configuration compiled into the binary.
    BuiltIn,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::BuiltIn => f.write_str("built-in demo configuration"),
        }
    }
}

/// Settings ready to use, with the notices the operator should see at startup.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The validated settings.
    pub settings: Settings,
    /// Where they came from.
    pub source: ConfigSource,
    /// Things worth a warning, such as running with the public demo secret.
    pub notices: Vec<String>,
    /// SHA-256 of the file's text, in hex as `sha256sum` prints it. Values read through
    /// `${VAR}` or `${file:PATH}` are not part of it.
    pub sha256: String,
}

/// Why the configuration could not be loaded. The message never contains a secret: values
/// that came from `${VAR}` are replaced by the variable's name.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {reason}")]
    Unreadable {
        /// The file.
        path: String,
        /// What the system said.
        reason: String,
    },
    /// The file is not valid TOML.
    #[error("{origin}: not valid TOML: {message}")]
    Syntax {
        /// The file, or the environment variable, the value came from.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A `${VAR}` names a variable that is not set.
    #[error("{origin}: `{key}`: environment variable {variable} is not set")]
    UnsetVariable {
        /// The file, or the environment variable, the value came from.
        origin: String,
        /// The key, such as `server.listen`.
        key: String,
        /// The variable's name.
        variable: String,
    },
    /// A key has a value that is not allowed.
    #[error("{origin}: `{key}`: {message}")]
    Invalid {
        /// The file, or the environment variable, the value came from.
        origin: String,
        /// The key, such as `server.listen`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Loads the configuration: `explicit` (from `--config`), else `$TOPIC_RELAY_CONFIG`, else
/// `config/default.toml`, else the built-in demo configuration.
pub fn load(explicit: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
    load_source(resolve_source(explicit))
}

/// Loads the configuration from `source`, as a reload reads again the file the relay
/// started with.
pub fn load_source(source: ConfigSource) -> Result<LoadedConfig, ConfigError> {
    let text = match &source {
        ConfigSource::File(path) => std::fs::read_to_string(path).map_err(|error| {
            ConfigError::Unreadable { path: path.display().to_string(), reason: error.to_string() }
        })?,
        ConfigSource::BuiltIn => BUILT_IN_CONFIG.to_owned(),
    };
    load_from_str(&text, source, &|name| std::env::var(name).ok(), std::env::vars())
}

fn resolve_source(explicit: Option<&Path>) -> ConfigSource {
    if let Some(path) = explicit {
        return ConfigSource::File(path.to_owned());
    }
    if let Some(path) = std::env::var_os(CONFIG_ENV).filter(|path| !path.is_empty()) {
        return ConfigSource::File(PathBuf::from(path));
    }
    let default = PathBuf::from("config/default.toml");
    if default.is_file() { ConfigSource::File(default) } else { ConfigSource::BuiltIn }
}

/// Variables the shipped configuration files named before every variable the relay reads was
/// spelled `TOPIC_RELAY_*`, with their names now. For one release, a file that names the new
/// one still finds a value set under the old, with a notice.
pub const RENAMED_VARIABLES: [(&str, &str); 4] = [
    ("WEBHOOK_SECRET", "TOPIC_RELAY_WEBHOOK_SECRET"),
    ("WEBHOOK_SECRET_PREVIOUS", "TOPIC_RELAY_WEBHOOK_SECRET_PREVIOUS"),
    ("ADMIN_TOKEN", "TOPIC_RELAY_ADMIN_TOKEN"),
    ("APP_JWT_SECRET", "TOPIC_RELAY_JWT_SECRET"),
];

/// Loads from text, with the environment passed in (so tests need not touch the process's).
pub fn load_from_str(
    text: &str,
    source: ConfigSource,
    lookup: &dyn Fn(&str) -> Option<String>,
    env_vars: impl IntoIterator<Item = (String, String)>,
) -> Result<LoadedConfig, ConfigError> {
    let origin = source.to_string();
    let mut table: Table = toml::from_str(text).map_err(|error| syntax_error(&origin, text, &error))?;
    let env_keys = expand::apply_env_overrides(&mut table, env_vars).map_err(|message| {
        ConfigError::Invalid { origin: "environment".into(), key: "TOPIC_RELAY__*".into(), message }
    })?;
    let env_paths: Vec<String> = env_keys.iter().map(|(path, _)| path.clone()).collect();
    let old_names_read = std::cell::RefCell::new(Vec::new());
    let lookup = |name: &str| {
        lookup(name).or_else(|| {
            let (old, _) = RENAMED_VARIABLES.iter().find(|(_, new)| *new == name)?;
            let value = lookup(old)?;
            old_names_read.borrow_mut().push(format!(
                "{old} is read for ${{{name}}}: rename it {name}; the old name is read until the next release"
            ));
            Some(value)
        })
    };
    let substitutions =
        expand::expand_tree(&mut table, &lookup, &env_paths).map_err(|error| match error {
            ExpandError::Unset { key, variable } => {
                ConfigError::UnsetVariable { origin: origin.clone(), key, variable }
            }
            ExpandError::Malformed { key } => ConfigError::Invalid {
                origin: origin.clone(),
                key,
                message: "malformed ${VAR} reference".into(),
            },
            ExpandError::File { key, path, reason } => ConfigError::Invalid {
                origin: origin.clone(),
                key,
                message: format!("cannot read {path} for ${{file:{path}}}: {reason}"),
            },
        })?;
    // Whatever came from a variable, or sits at a secret's key, may be a secret.
    let mut secrets = substitutions;
    secrets.extend(expand::secret_values(&table));
    let invalid = |key: String, message: String| {
        let origin = env_keys
            .iter()
            .find(|(env_key, _)| key == *env_key || key.starts_with(&format!("{env_key}.")))
            .map_or_else(|| origin.clone(), |(_, variable)| variable.clone());
        ConfigError::Invalid { origin, message: scrub(&message, &secrets), key }
    };
    let mut settings: Settings = serde_path_to_error::deserialize(toml::Value::Table(table))
        .map_err(|error| invalid(error.path().to_string(), error.inner().message().to_owned()))?;
    forget_empty_values(&mut settings);
    validate::check(&settings).map_err(|(key, message)| invalid(key, message))?;
    let mut notices = old_names_read.into_inner();
    notices.sort();
    notices.dedup();
    notices.extend(apply_demo_secret(&mut settings).map_err(|(key, message)| invalid(key, message))?);
    let digest = <sha2::Sha256 as sha2::Digest>::digest(text.as_bytes());
    let sha256 = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(LoadedConfig { settings, source, notices, sha256 })
}

/// `api_key = "${MOMENTO_API_KEY:-}"` with the variable unset means "no key", not an
/// empty one; likewise for the endpoints and the admin token.
fn forget_empty_values(settings: &mut Settings) {
    let momento = &mut settings.momento;
    momento.api_key = momento.api_key.take().filter(|key| !key.is_empty());
    momento.endpoint = momento.endpoint.take().filter(|endpoint| !endpoint.is_empty());
    momento.endpoint_override = momento.endpoint_override.take().filter(|url| !url.is_empty());
    settings.admin.token = settings.admin.token.take().filter(|token| !token.is_empty());
}

/// On the embedded backend, a webhook without secrets uses the public demo secret, loudly, and
/// every other published demo value in use is named. Listening beyond loopback, where anyone
/// who can reach the port could use them, each is refused instead, unless
/// `server.allow_demo_secrets` says so. (Validation has already refused them for the Momento
/// backend.)
fn apply_demo_secret(settings: &mut Settings) -> Result<Vec<String>, (String, String)> {
    let mut notices = Vec::new();
    if settings.momento.resolved_backend() != BackendKind::Memory {
        return Ok(notices);
    }
    let listen = settings.server.listen;
    let exposed = !listen.ip().is_loopback() && !settings.server.allow_demo_secrets;
    let refuse = |key: String, what: &str, variable: &str| {
        let message = format!(
            "{what}, and the relay listens on {listen}, beyond this machine, where anyone could \
             use it. Set {variable}, listen on 127.0.0.1, or set server.allow_demo_secrets = \
             true to accept that"
        );
        Err((key, message))
    };
    for (name, webhook) in &mut settings.webhooks {
        if webhook.secrets.is_empty() {
            if exposed {
                let what = format!(
                    "webhook `{name}` has no signing secret, so it would accept events signed \
                     with the PUBLIC demo secret"
                );
                return refuse(
                    format!("webhooks.{name}.secrets"),
                    &what,
                    "a secret (TOPIC_RELAY_WEBHOOK_SECRET in the shipped configuration)",
                );
            }
            webhook.secrets.push(Secret::new(DEMO_SECRET));
            notices.push(format!(
                "webhook `{name}` has no signing secret configured, so it accepts events \
                 signed with the PUBLIC demo secret {DEMO_SECRET:?}; set one before exposing \
                 this relay"
            ));
        }
    }
    let jwt_secret = settings.tokens.as_ref().and_then(|tokens| tokens.jwt.hs256_secret.as_ref());
    if jwt_secret.is_some_and(|secret| is_published_demo_value(secret.expose())) {
        if exposed {
            let what =
                "tokens.jwt.hs256_secret is the PUBLISHED demo secret, so anyone could sign callers' JWTs";
            return refuse("tokens.jwt.hs256_secret".into(), what, "TOPIC_RELAY_JWT_SECRET");
        }
        notices.push(
            "tokens.jwt.hs256_secret is the PUBLISHED demo secret, so anyone can sign callers' \
             JWTs; set TOPIC_RELAY_JWT_SECRET before exposing this relay (the momento backend refuses it)"
                .to_owned(),
        );
    }
    if settings.admin.token.as_ref().is_some_and(|token| is_published_demo_value(token.expose())) {
        if exposed {
            let what = "admin.token is the PUBLISHED demo admin token, so anyone could use the admin API";
            return refuse("admin.token".into(), what, "TOPIC_RELAY_ADMIN_TOKEN");
        }
        notices.push(
            "admin.token is the PUBLISHED demo admin token, so anyone can use the admin API; set \
             TOPIC_RELAY_ADMIN_TOKEN before exposing this relay (the momento backend refuses it)"
                .to_owned(),
        );
    }
    Ok(notices)
}

/// Hides every value that may be a secret: whatever came from `${VAR}`, and whatever sits at
/// a secret's key.
fn scrub(message: &str, secrets: &[String]) -> String {
    let mut scrubbed = message.to_owned();
    for secret in secrets.iter().filter(|secret| secret.len() >= 3) {
        // Error messages quote strings with escapes, so the escaped form goes too.
        scrubbed =
            scrubbed.replace(&secret.escape_debug().to_string(), REDACTED).replace(secret.as_str(), REDACTED);
    }
    scrubbed
}

/// A TOML syntax error with its line and column. The offending line itself is not shown:
/// it may hold a secret.
fn syntax_error(origin: &str, text: &str, error: &toml::de::Error) -> ConfigError {
    let at = error.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |start| start.chars().count()) + 1;
        format!(" at line {line}, column {column}")
    });
    ConfigError::Syntax {
        origin: origin.to_owned(),
        message: format!("{}{}", error.message(), at.unwrap_or_default()),
    }
}
