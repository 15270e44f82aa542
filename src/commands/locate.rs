//! Where the client commands (`send`, `publish`, `token`, `cache`, `spool`, `healthcheck`)
//! find the running relay when they are not given `--url`: they read the same configuration
//! `serve` reads (`--config`, else `$TOPIC_RELAY_CONFIG`, else `config/default.toml`, else the
//! built-in one) and take its `server.listen`, its `[admin] token` and its webhooks' secrets.
//! In the container image, where `$TOPIC_RELAY_CONFIG` is set, `topic-relay healthcheck` so
//! probes the port the relay listens on, whatever it is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{Context, bail};

use crate::cli::ConfigArgs;
use crate::config::{self, Settings};

/// The configuration of the relay a client command talks to.
pub struct ConfiguredRelay {
    settings: Settings,
}

/// A webhook of the configured relay.
pub struct ConfiguredWebhook {
    /// Its name: it is served at `/webhooks/<name>`.
    pub name: String,
    /// Its first signing secret.
    pub secret: String,
}

impl ConfiguredRelay {
    /// Loads the configuration `serve` would load with the same `--config` and environment.
    /// `needed_for` says what the command looks up in it, such as "without --url, the relay's
    /// address", for the error when it cannot be read.
    pub fn load(config: &ConfigArgs, needed_for: &str) -> anyhow::Result<Self> {
        let loaded = config::load(config.config.as_deref())
            .with_context(|| format!("{needed_for} comes from its configuration, which cannot be read"))?;
        Ok(ConfiguredRelay { settings: loaded.settings })
    }

    /// `http://<host>:<port>` of `server.listen`, where an address that listens on every
    /// interface is reached on loopback.
    pub fn base_url(&self) -> anyhow::Result<String> {
        base_url_of(self.settings.server.listen)
    }

    /// Where the operator's routes (`/metrics`, `/v1/status`, `/v1/admin/*`) are served:
    /// `server.ops_listen` when it is set, else `server.listen`.
    pub fn ops_base_url(&self) -> anyhow::Result<String> {
        base_url_of(self.settings.server.ops_listen.unwrap_or(self.settings.server.listen))
    }

    /// The `[admin] token`, when one is configured.
    pub fn admin_token(&self) -> Option<String> {
        self.settings.admin.token.as_ref().map(|token| token.expose().to_owned())
    }

    /// The webhook named `name`, or the only one when `name` is `None`.
    pub fn webhook(&self, name: Option<&str>) -> anyhow::Result<ConfiguredWebhook> {
        let names = || self.settings.webhooks.keys().cloned().collect::<Vec<_>>().join(", ");
        let (name, settings) = match name {
            Some(name) => self.settings.webhooks.get_key_value(name).with_context(|| {
                format!("the configuration has no webhook `{name}` (it has: {}): pass --secret", names())
            })?,
            None if self.settings.webhooks.len() == 1 => {
                self.settings.webhooks.iter().next().expect("one webhook")
            }
            None if self.settings.webhooks.is_empty() => {
                bail!("the configuration has no webhook: pass --url")
            }
            None => {
                bail!("the configuration has several webhooks ({}): pass --url .../webhooks/<name>", names())
            }
        };
        let secret = settings
            .secrets
            .first()
            .with_context(|| format!("webhook `{name}` has no signing secret configured: pass --secret"))?;
        Ok(ConfiguredWebhook { name: name.clone(), secret: secret.expose().to_owned() })
    }

    /// The URL of `webhook` on the configured relay.
    pub fn webhook_url(&self, webhook: &ConfiguredWebhook) -> anyhow::Result<String> {
        Ok(format!("{}/webhooks/{}", self.base_url()?, webhook.name))
    }
}

/// What the client commands look up in the configuration without `--url`.
pub const ADDRESS: &str = "without --url, the relay's address";

/// `--url` when given, else the base URL of the configured relay.
pub fn base_url(url: Option<String>, config: &ConfigArgs) -> anyhow::Result<String> {
    let url = match url {
        Some(url) => url,
        None => ConfiguredRelay::load(config, ADDRESS)?.base_url()?,
    };
    Ok(url.trim_end_matches('/').to_owned())
}

/// The base URL and admin token for the admin API: `--url` and `--token` as given, except that
/// without `--url` the configured relay's operator port is used, with its `[admin] token`
/// unless `--token` is given. A configured token is never sent to a URL from the command line.
pub fn admin_target(
    url: Option<String>,
    token: Option<String>,
    config: &ConfigArgs,
) -> anyhow::Result<(String, Option<String>)> {
    match url {
        Some(url) => Ok((url.trim_end_matches('/').to_owned(), token)),
        None => {
            let relay = ConfiguredRelay::load(config, ADDRESS)?;
            Ok((relay.ops_base_url()?, token.or_else(|| relay.admin_token())))
        }
    }
}

fn base_url_of(listen: SocketAddr) -> anyhow::Result<String> {
    if listen.port() == 0 {
        bail!("the configuration listens on port 0, a free port picked at start: pass --url");
    }
    let reachable = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(format!("http://{}", SocketAddr::new(reachable, listen.port())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigSource, load_from_str};

    fn relay(config: &str) -> ConfiguredRelay {
        let loaded = load_from_str(config, ConfigSource::BuiltIn, &|_| None, Vec::new()).unwrap();
        ConfiguredRelay { settings: loaded.settings }
    }

    const TWO_WEBHOOKS: &str = r#"
        [server]
        listen = "0.0.0.0:9000"
        [webhooks.orders]
        secrets = ["orders-secret", "orders-old"]
        [webhooks.chat]
        secrets = ["chat-secret"]
    "#;

    #[test]
    fn a_named_webhook_gives_its_first_secret_and_its_url() {
        let relay = relay(TWO_WEBHOOKS);
        let orders = relay.webhook(Some("orders")).unwrap();
        assert_eq!(orders.secret, "orders-secret");
        assert_eq!(relay.webhook_url(&orders).unwrap(), "http://127.0.0.1:9000/webhooks/orders");
    }

    #[test]
    fn of_several_webhooks_none_is_picked_and_the_error_names_them() {
        let error = relay(TWO_WEBHOOKS).webhook(None).err().unwrap().to_string();
        assert!(error.contains("chat, orders") && error.contains("--url"), "{error}");
        let error = relay(TWO_WEBHOOKS).webhook(Some("billing")).err().unwrap().to_string();
        assert!(error.contains("no webhook `billing`") && error.contains("--secret"), "{error}");
    }

    #[test]
    fn an_address_on_every_interface_is_reached_on_loopback() {
        assert_eq!(base_url_of("0.0.0.0:9000".parse().unwrap()).unwrap(), "http://127.0.0.1:9000");
        assert_eq!(base_url_of("[::]:9000".parse().unwrap()).unwrap(), "http://[::1]:9000");
    }

    #[test]
    fn a_particular_address_is_kept() {
        assert_eq!(base_url_of("10.1.2.3:8081".parse().unwrap()).unwrap(), "http://10.1.2.3:8081");
        assert_eq!(base_url_of("[fd00::7]:8081".parse().unwrap()).unwrap(), "http://[fd00::7]:8081");
    }

    #[test]
    fn port_zero_cannot_be_found_and_says_to_pass_the_url() {
        let error = base_url_of("127.0.0.1:0".parse().unwrap()).unwrap_err();
        assert!(error.to_string().contains("--url"), "{error}");
    }
}
