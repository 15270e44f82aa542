//! Where `http` steps may connect. `[http_steps] allowed_destinations`, when set, lists the
//! only hosts they may call. Loopback, link-local and unspecified addresses (the relay
//! itself, a cloud's metadata service) are refused unless their host is listed there: checked
//! on the URL's host when the config loads, and on every address a host name resolves to
//! when a call is made, so that a name pointed at such an address later is refused too.

use std::error::Error;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::{Deserialize, Serialize};

/// `[http_steps]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStepSettings {
    /// The only hosts `http` steps may call, as `"api.example.com"` (any port) or
    /// `"127.0.0.1:5000"`; empty: any host whose addresses are not local. Listing a loopback
    /// or link-local host is how to allow it.
    #[serde(default)]
    pub allowed_destinations: Vec<String>,
}

/// One entry of `allowed_destinations`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Destination {
    host: String,
    port: Option<u16>,
}

/// The rule every `http` step's URL is checked against.
#[derive(Debug, Clone, Default)]
pub struct DestinationPolicy {
    allowed: Vec<Destination>,
}

/// How a step may reach its URL's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The host is listed: connect to whatever it resolves to.
    Listed,
    /// The host is not listed: connect only to addresses that are not local.
    PublicOnly,
}

impl DestinationPolicy {
    /// Parses the settings; the error names the entry's key.
    pub fn new(settings: &HttpStepSettings) -> Result<Self, (String, String)> {
        let allowed = settings
            .allowed_destinations
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                parse_destination(entry).ok_or_else(|| {
                    (
                        format!("http_steps.allowed_destinations[{index}]"),
                        format!("{entry:?} is not a host or host:port, such as \"api.example.com\" or \"127.0.0.1:5000\""),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(DestinationPolicy { allowed })
    }

    /// Whether a step may call `url`'s origin, and how; the error says what to change.
    pub fn check(&self, url: &Url) -> Result<Reach, String> {
        let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        let host = host.to_ascii_lowercase();
        let port = url.port_or_known_default();
        let listed = self
            .allowed
            .iter()
            .any(|allowed| allowed.host == host && allowed.port.is_none_or(|own| Some(own) == port));
        if listed {
            return Ok(Reach::Listed);
        }
        let shown = url.origin().ascii_serialization();
        if !self.allowed.is_empty() {
            return Err(format!("{shown} is not in http_steps.allowed_destinations"));
        }
        let local = host == "localhost" || host.ends_with(".localhost") || host.parse().is_ok_and(is_local);
        if local {
            return Err(format!(
                "{shown} is a loopback or link-local address; list it in \
                 http_steps.allowed_destinations to call it"
            ));
        }
        Ok(Reach::PublicOnly)
    }
}

fn parse_destination(entry: &str) -> Option<Destination> {
    let url = Url::parse(&format!("http://{}", entry.trim())).ok()?;
    let plain =
        url.path() == "/" && url.query().is_none() && url.username().is_empty() && !entry.contains('/');
    let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    plain.then_some(Destination { host, port: url.port() })
}

/// Loopback, link-local, unspecified, broadcast and multicast addresses, in either family
/// (IPv4 mapped into IPv6 included).
pub fn is_local(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_local(IpAddr::V4(v4)),
            None => {
                v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || v6.is_unicast_link_local()
            }
        },
    }
}

/// A host name resolved only to local addresses, which the step may not call.
#[derive(Debug)]
pub struct LocalAddressRefused;

impl fmt::Display for LocalAddressRefused {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(
            "the host resolves only to loopback or link-local addresses; list it in \
             http_steps.allowed_destinations to call it",
        )
    }
}

impl Error for LocalAddressRefused {}

/// The system resolver, keeping only addresses that are not local.
pub struct PublicAddressesOnly;

impl Resolve for PublicAddressesOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                found.into_iter().filter(|address| !is_local(address.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(LocalAddressRefused) as Box<dyn Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// Whether `error`, or anything that caused it, is a [`LocalAddressRefused`].
pub fn is_local_address_refused(error: &(dyn Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<LocalAddressRefused>() {
            return true;
        }
        current = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allowed: &[&str]) -> DestinationPolicy {
        let settings = HttpStepSettings {
            allowed_destinations: allowed.iter().map(|entry| entry.to_string()).collect(),
        };
        DestinationPolicy::new(&settings).unwrap()
    }

    fn check(policy: &DestinationPolicy, url: &str) -> Result<Reach, String> {
        policy.check(&Url::parse(url).unwrap())
    }

    #[test]
    fn local_hosts_are_refused_unless_listed() {
        let open = policy(&[]);
        for url in [
            "http://127.0.0.1:5000/",
            "http://localhost/",
            "http://api.localhost/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
        ] {
            assert!(check(&open, url).unwrap_err().contains("loopback or link-local"), "{url}");
        }
        assert_eq!(check(&open, "https://api.example.com/x"), Ok(Reach::PublicOnly));
        assert_eq!(check(&open, "http://10.0.0.5/"), Ok(Reach::PublicOnly), "private networks are services");
        let listed = policy(&["127.0.0.1:5000"]);
        assert_eq!(check(&listed, "http://127.0.0.1:5000/translate"), Ok(Reach::Listed));
        assert!(check(&listed, "http://127.0.0.1:5001/").is_err(), "only the listed port");
    }

    #[test]
    fn a_list_allows_only_its_hosts() {
        let listed = policy(&["API.example.com", "[::1]:8080"]);
        assert_eq!(check(&listed, "https://api.example.com/x"), Ok(Reach::Listed));
        assert_eq!(check(&listed, "http://api.example.com:8443/x"), Ok(Reach::Listed), "any port");
        assert_eq!(check(&listed, "http://[::1]:8080/"), Ok(Reach::Listed));
        assert!(check(&listed, "https://evil.example.com/").unwrap_err().contains("not in http_steps"));
    }

    #[test]
    fn entries_that_are_not_hosts_are_refused_naming_their_key() {
        for entry in ["https://api.example.com/path", "api.example.com/x", "user@host", "", "a b"] {
            let settings = HttpStepSettings { allowed_destinations: vec!["ok.example".into(), entry.into()] };
            let (key, _) = DestinationPolicy::new(&settings).unwrap_err();
            assert_eq!(key, "http_steps.allowed_destinations[1]", "{entry:?}");
        }
    }

    #[tokio::test]
    async fn names_that_resolve_only_to_local_addresses_are_refused_when_called() {
        let error = PublicAddressesOnly.resolve("localhost".parse().unwrap()).await.err().unwrap();
        assert!(is_local_address_refused(error.as_ref()), "{error}");
    }
}
