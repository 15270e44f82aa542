//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// topic-relay: process Momento Topics events outside Lambda. The relay listens to your
/// topics (or takes Momento's webhook calls), routes each message by cache, topic and
/// publisher through configured steps, and republishes the results through Momento.
#[derive(Debug, Parser)]
#[command(name = "topic-relay", version, propagate_version = true)]
pub struct Cli {
    /// Where the configuration comes from: for `serve` and `check-config`, and for the
    /// commands that talk to a running relay, which find it there unless given `--url`.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay (the default).
    Serve,
    /// Validate the configuration and print it fully resolved, secrets redacted.
    CheckConfig,
    /// Print the momento-signature header value for a request body.
    Sign(SignArgs),
    /// Send a signed, realistic event to a relay and print its answer.
    Send(SendArgs),
    /// Publish a message on the embedded backend's bus, as a Momento client publishes on a
    /// topic: what the relay's subscriptions listen to when it runs without an account.
    Publish(PublishArgs),
    /// Get a token for publishers from a relay's POST /v1/tokens, as your application's
    /// users would, and print it.
    Token(TokenArgs),
    /// Mint an HS256 JWT such as your application would give its users, to try `[tokens]`.
    Jwt(JwtArgs),
    /// Read or write a cache item through a running relay (admin API), such as the user
    /// records that `lookup` steps read.
    Cache(CacheArgs),
    /// Exit 0 when the relay's /healthz answers 200, 1 otherwise (for Docker HEALTHCHECK).
    Healthcheck(HealthcheckArgs),
    /// Inspect a running relay's spool and dead letters; replay or purge them.
    Spool(SpoolArgs),
    /// Have a running relay read its configuration file again, as SIGHUP does (admin API).
    Reload(ReloadArgs),
}

/// Where the configuration comes from.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// Config file. Default: $TOPIC_RELAY_CONFIG, else config/default.toml, else the built-in
    /// demo configuration.
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `publish`
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The relay's base URL [default: from the configuration's `server.listen`, such as
    /// http://127.0.0.1:8080].
    #[arg(long)]
    pub url: Option<String>,
    /// A token from `topic-relay token` (needed when the relay has `[tokens]`; it then sets
    /// the token_id).
    #[arg(long, env = "TOPIC_RELAY_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// What is published, and by whom.
    #[command(flatten)]
    pub message: MessageArgs,
}

/// `token`
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The relay's base URL [default: from the configuration's `server.listen`, such as
    /// http://127.0.0.1:8080].
    #[arg(long)]
    pub url: Option<String>,
    /// Your application's JWT for the user (see `topic-relay jwt`).
    #[arg(long, env = "TOPIC_RELAY_JWT", hide_env_values = true)]
    pub jwt: String,
    /// Ask for a shorter life than the relay's `tokens.expires_in`, such as 5m.
    #[arg(long)]
    pub expires_in: Option<String>,
    /// Print only the token, for `TOKEN=$(topic-relay token ...)`.
    #[arg(long)]
    pub only_token: bool,
}

/// `jwt`
#[derive(Debug, Args)]
pub struct JwtArgs {
    /// The HS256 secret: `tokens.jwt.hs256_secret` of the relay. `APP_JWT_SECRET`, its old
    /// name, is read for one more release.
    #[arg(long, env = "TOPIC_RELAY_JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// The user: the `sub` claim.
    #[arg(long)]
    pub sub: String,
    /// The `iss` claim.
    #[arg(long)]
    pub issuer: Option<String>,
    /// The `aud` claim.
    #[arg(long)]
    pub audience: Option<String>,
    /// More claims, as NAME=VALUE (repeatable).
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    pub claims: Vec<String>,
    /// How long the JWT is valid.
    #[arg(long, default_value = "1h")]
    pub expires_in: String,
}

/// `cache`
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CacheCommand,
    /// The relay's base URL [default: from the configuration's `server.ops_listen`, else
    /// `server.listen`, such as http://127.0.0.1:8080].
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// The admin token [default: `[admin] token` in the relay's configuration].
    #[arg(long, global = true, env = "TOPIC_RELAY_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// The `cache` subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Store VALUE under KEY in CACHE.
    Set {
        /// The cache.
        cache: String,
        /// The key, such as user:user-42.
        key: String,
        /// The value, such as '{"name":"Ada"}'.
        value: String,
        /// How long the item lives (default: the relay's momento.default_ttl).
        #[arg(long)]
        ttl: Option<String>,
    },
    /// Print the value under KEY in CACHE.
    Get {
        /// The cache.
        cache: String,
        /// The key.
        key: String,
    },
}

/// A message on a topic, as `send` and `publish` take it.
#[derive(Debug, Args)]
pub struct MessageArgs {
    /// The cache.
    #[arg(long)]
    pub cache: String,
    /// The topic.
    #[arg(long)]
    pub topic: String,
    /// The message text.
    #[arg(long)]
    pub text: String,
    /// The publisher's token id, as Momento stamps it from a disposable token (empty: an
    /// anonymous publisher).
    #[arg(long, default_value = "")]
    pub token_id: String,
}

/// `sign`
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The webhook's signing secret.
    #[arg(long, env = "TOPIC_RELAY_SECRET", hide_env_values = true)]
    pub secret: String,
    /// File holding the body; `-` or nothing reads stdin. The bytes are signed exactly as
    /// they are, trailing newline included.
    #[arg(value_name = "FILE|-")]
    pub file: Option<PathBuf>,
}

/// `send`
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The relay's webhook URL [default: the configured webhook's, such as
    /// http://127.0.0.1:8080/webhooks/chat].
    #[arg(long)]
    pub url: Option<String>,
    /// The webhook's signing secret [default: the configured webhook's first secret; the
    /// public demo secret on the embedded backend when none is configured].
    #[arg(long, env = "TOPIC_RELAY_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// The event's message.
    #[command(flatten)]
    pub message: MessageArgs,
    /// How many events to send, with increasing sequence numbers.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
}

/// `healthcheck`
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The health endpoint to probe [default: /healthz at the configuration's
    /// `server.listen`, such as http://127.0.0.1:8080/healthz].
    #[arg(long)]
    pub url: Option<String>,
}

/// `reload`
#[derive(Debug, Args)]
pub struct ReloadArgs {
    /// The relay's base URL [default: from the configuration's `server.ops_listen`, else
    /// `server.listen`].
    #[arg(long)]
    pub url: Option<String>,
    /// The admin token [default: `[admin] token` in the relay's configuration].
    #[arg(long, env = "TOPIC_RELAY_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `spool`
#[derive(Debug, Args)]
pub struct SpoolArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SpoolCommand,
    /// The relay's base URL [default: from the configuration's `server.ops_listen`, else
    /// `server.listen`, such as http://127.0.0.1:8080].
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// The admin token [default: `[admin] token` in the relay's configuration].
    #[arg(long, global = true, env = "TOPIC_RELAY_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// The `spool` subcommands.
#[derive(Debug, Subcommand)]
pub enum SpoolCommand {
    /// Backend, readiness, how many events are spooled and dead-lettered, and each
    /// subscription stream's state.
    Status,
    /// Events waiting for redelivery.
    Pending {
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Events the relay gave up on, with the reason.
    #[command(visible_alias = "list")]
    DeadLetters {
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One dead letter in full.
    Show {
        /// Its id.
        id: u64,
    },
    /// Put dead letters back in the spool, to be retried now from the step that failed.
    Replay {
        /// The dead letter's id.
        id: Option<u64>,
        /// Every dead letter.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
    /// Delete dead letters for good.
    Purge {
        /// The dead letter's id.
        id: Option<u64>,
        /// Every dead letter.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}
