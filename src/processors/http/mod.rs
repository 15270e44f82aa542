//! `http`: calls another service, such as a translation API or a workflow trigger.
//! `{ http = { url = "https://translate.example/translate", body = { q = "{text}" },
//! into = "translation" } }`.
//!
//! A 2xx continues (attaching the reply under `into`, if set). A 408, 429, 5xx, a refused
//! connection or a timeout fails the step for a while: the event is kept and resumed at this
//! step, no sooner than the reply's `Retry-After`. Any other status, redirects included
//! (they are never followed, so credentials and the message never go to another origin),
//! fails it for good: the event becomes a dead letter that names the status and a short,
//! redacted excerpt.
//!
//! Values from the message go into the URL's path and query percent-encoded (`url`), and the
//! call goes only where `[http_steps]` allows (`destination`).

mod body;
mod destination;
mod signing;
mod url;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use body::{BodyConfig, BodyKind};
use body::{RequestBody, excerpt};
pub use destination::{DestinationPolicy, HttpStepSettings, Reach, is_local};
use destination::{PublicAddressesOnly, is_local_address_refused};
use signing::Signer;
use url::UrlTemplate;

use crate::common::Secret;
use crate::event::Message;
use crate::pipeline::template::Template;
use crate::pipeline::{Flow, Processor, StepContext, StepError};
use crate::processors::BuildContext;

/// Options of `http`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The URL: `"https://api.example/users/{token_id}"`. Placeholders may go in the path and
    /// query only, and their values are percent-encoded.
    pub url: String,
    /// The method, a template; `POST` by default.
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers, templates. Their values are treated as secrets: never shown by
    /// `check-config`, and scrubbed from any reply kept in an error.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// What to send: `"text"` (the default), `"json"` (the envelope `publish` sends),
    /// `"none"`, or an object of templates.
    #[serde(default)]
    pub body: BodyConfig,
    /// How long one request may take, connecting included; `10s` by default.
    #[serde(default = "default_timeout", with = "crate::common::duration")]
    pub timeout: Duration,
    /// Attaches the reply under this name for later steps (parsed as JSON when it is JSON,
    /// as a string otherwise).
    pub into: Option<String>,
    /// Signs each request as Standard Webhooks do.
    pub sign: Option<SignConfig>,
}

/// `sign = { secret = "whsec_..." }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignConfig {
    /// A Standard Webhooks secret, `whsec_` and a base64 key; usually `"${VAR}"`.
    pub secret: Secret,
}

fn default_method() -> String {
    "POST".into()
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Largest reply attached with `into`; a larger one fails the step for good.
const MAX_REPLY_BYTES: usize = 1 << 20;
/// Longest `Retry-After` honoured, so one reply cannot park an event for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Calls a service for each message.
pub struct Http {
    client: reqwest::Client,
    url: UrlTemplate,
    method: Template,
    headers: Vec<(HeaderName, Template)>,
    body: RequestBody,
    into: Option<String>,
    signer: Option<Signer>,
    /// The header values as written, hidden from any reply excerpt.
    secrets: Vec<String>,
}

impl Http {
    /// Builds the step from its options; one connection pool per step, reused by every call.
    pub fn build(config: &HttpConfig, context: &mut BuildContext) -> Result<Self, String> {
        let url = UrlTemplate::build(&config.url, context)?;
        let reach =
            context.http_destinations().check(url.origin()).map_err(|message| format!("`url`: {message}"))?;
        let method = context.template(&config.method)?;
        if !config.method.contains('{') {
            Method::from_bytes(config.method.as_bytes())
                .map_err(|_| format!("`method` {:?} is not an HTTP method", config.method))?;
        }
        let mut headers = Vec::new();
        for (name, value) in &config.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`headers`: {name:?} is not a header name"))?;
            headers.push((name, context.template(value.expose())?));
        }
        let signer = config.sign.as_ref().map(|sign| Signer::new(sign.secret.expose())).transpose()?;
        let body = RequestBody::build(&config.body, context)?;
        if let Some(into) = &config.into {
            context.attach(into)?;
        }
        let mut client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("topic-relay/", env!("CARGO_PKG_VERSION")));
        if reach == Reach::PublicOnly {
            client = client.dns_resolver(std::sync::Arc::new(PublicAddressesOnly));
        }
        let client = client.build().map_err(|error| format!("cannot make an HTTP client: {error}"))?;
        // Whole values, then each long word of them, so that the key of `Bearer <key>` is
        // hidden when a service echoes it alone.
        let values = config.headers.values().map(|value| value.expose());
        let words = values.clone().flat_map(str::split_whitespace).filter(|word| word.len() >= 8);
        let secrets = values.chain(words).map(str::to_owned).collect();
        Ok(Http { client, url, method, headers, body, into: config.into.clone(), signer, secrets })
    }

    fn request(&self, message: &Message) -> Result<reqwest::RequestBuilder, StepError> {
        let method = self.method.render(message);
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| StepError::Failed(format!("{method:?} is not an HTTP method")))?;
        let parsed = self.url.render(message).map_err(StepError::Failed)?;
        let shown = format!("{method} {}", without_query(&parsed));
        let mut request = self.client.request(method, parsed);
        let body = self.body.render(message);
        if let Some((_, content_type)) = &body {
            request = request.header(CONTENT_TYPE, *content_type);
        }
        for (name, value) in &self.headers {
            let value = HeaderValue::try_from(value.render(message))
                .map_err(|_| StepError::Failed(format!("header {name} is not a valid header value")))?;
            request = request.header(name, value);
        }
        let bytes = body.map(|(bytes, _)| bytes).unwrap_or_default();
        if let Some(signer) = &self.signer {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
            let signed = signer.sign(message, &shown, &bytes, now);
            request = request
                .header("webhook-id", signed.id)
                .header("webhook-timestamp", signed.timestamp)
                .header("webhook-signature", signed.signature);
        }
        Ok(request.body(bytes))
    }

    fn failure(&self, status: StatusCode, retry_after: Option<Duration>, reply: &[u8]) -> StepError {
        let retryable = status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error();
        let excerpt = excerpt(reply, &self.secrets);
        StepError::Call {
            message: format!("the service answered {status}"),
            detail: (!excerpt.is_empty()).then_some(excerpt),
            retryable,
            retry_after: retry_after.filter(|_| retryable),
        }
    }
}

#[async_trait]
impl Processor for Http {
    async fn process(&self, message: &mut Message, _: &StepContext<'_>) -> Result<Flow, StepError> {
        let mut response = self.request(message)?.send().await.map_err(unreachable)?;
        let status = response.status();
        let retry_after = response.headers().get(RETRY_AFTER).and_then(parse_retry_after);
        let wanted = if status.is_success() && self.into.is_none() { 0 } else { MAX_REPLY_BYTES };
        let mut reply = Vec::new();
        while reply.len() < wanted {
            match response.chunk().await {
                Ok(Some(chunk)) => reply.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(error) if status.is_success() => return Err(unreachable(error)),
                Err(_) => break,
            }
        }
        if !status.is_success() {
            return Err(self.failure(status, retry_after, &reply));
        }
        if let Some(into) = &self.into {
            if reply.len() >= MAX_REPLY_BYTES {
                return Err(StepError::Failed(format!("the reply is larger than {MAX_REPLY_BYTES} bytes")));
            }
            let value = serde_json::from_slice(&reply)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&reply).into_owned()));
            message.attached.insert(into.clone(), value);
        }
        Ok(Flow::Continue)
    }
}

/// A request that got no answer: worth another try, unless its host resolved only to
/// addresses the step may not call.
fn unreachable(error: reqwest::Error) -> StepError {
    if is_local_address_refused(&error) {
        return StepError::Call {
            message: destination::LocalAddressRefused.to_string(),
            detail: None,
            retryable: false,
            retry_after: None,
        };
    }
    let what = if error.is_timeout() { "timed out" } else { "could not reach the service" };
    // Without the URL, whose query may hold a key.
    let error = error.without_url();
    let cause = std::error::Error::source(&error).map(|source| format!(": {source}")).unwrap_or_default();
    StepError::Call {
        message: format!("the request {what}{cause}"),
        detail: None,
        retryable: true,
        retry_after: None,
    }
}

fn without_query(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// `Retry-After` in seconds or as an HTTP date, capped at an hour.
fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    let wait = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(text).ok()?.duration_since(SystemTime::now()).unwrap_or_default(),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date_is_capped() {
        let seconds = HeaderValue::from_static("7");
        assert_eq!(parse_retry_after(&seconds), Some(Duration::from_secs(7)));
        let far = HeaderValue::from_static("999999");
        assert_eq!(parse_retry_after(&far), Some(MAX_RETRY_AFTER));
        let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let wait = parse_retry_after(&HeaderValue::from_str(&date).unwrap()).unwrap();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120), "{wait:?}");
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
    }

    fn build(options: &str) -> Result<Http, String> {
        let config: HttpConfig = toml::from_str(options).map_err(|error| error.to_string())?;
        Http::build(&config, &mut BuildContext::new("test"))
    }

    fn refusal(options: &str) -> String {
        build(options).err().expect("the options should be refused")
    }

    #[test]
    fn bad_urls_methods_headers_and_templates_are_refused_at_load() {
        assert!(refusal(r#"url = "ftp://x""#).contains("http://"));
        assert!(refusal(r#"url = "https://{token_id}.example/""#).contains("never in the"));
        assert!(refusal(r#"url = "http://127.0.0.1:9/""#).contains("loopback"));
        assert!(refusal("url = \"http://x\"\nmethod = \"NO PE\"").contains("method"));
        assert!(refusal("url = \"http://x\"\nheaders = { \"bad name\" = \"v\" }").contains("header"));
        assert!(build(r#"url = "http://x/{user.id}""#).is_err());
        assert!(build("url = \"http://x\"\ninto = \"text\"").is_err());
    }

    #[test]
    fn statuses_sort_into_retryable_and_permanent() {
        let step = build(r#"url = "http://x""#).unwrap();
        for (status, retryable) in [
            (503, true),
            (500, true),
            (429, true),
            (408, true),
            (400, false),
            (404, false),
            (301, false),
            (307, false),
        ] {
            let error =
                step.failure(StatusCode::from_u16(status).unwrap(), Some(Duration::from_secs(3)), b"");
            assert_eq!(error.is_retryable(), retryable, "{status}");
            assert_eq!(error.retry_after().is_some(), retryable, "{status}");
        }
    }

    #[test]
    fn what_a_service_answered_is_kept_but_never_in_the_logged_message() {
        let step = build(r#"url = "http://x""#).unwrap();
        let error = step.failure(StatusCode::BAD_REQUEST, None, b"cannot translate 'my secret plans'");
        assert_eq!(error.to_string(), "the service answered 400 Bad Request");
        assert!(error.detail().ends_with(": cannot translate 'my secret plans'"), "{}", error.detail());
    }

    #[test]
    fn header_values_are_redacted_when_shown() {
        let config: HttpConfig =
            toml::from_str("url = \"http://x\"\nheaders = { Authorization = \"Bearer sk-live\" }").unwrap();
        let shown = toml::to_string(&config).unwrap();
        assert!(!shown.contains("sk-live"), "{shown}");
    }
}
