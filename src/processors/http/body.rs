//! What an `http` step sends: the text, the JSON envelope `publish` uses, nothing, or a JSON
//! object of templates (`body = { q = "{text}", target = "{item}" }`); and the short,
//! redacted excerpt of a reply that a dead letter keeps.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::common::REDACTED;
use crate::event::Message;
use crate::pipeline::template::Template;
use crate::processors::BuildContext;
use crate::processors::payload::envelope;

/// `body` as written in the config.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum BodyConfig {
    /// `"text"`, `"json"` or `"none"`.
    Kind(BodyKind),
    /// A JSON object whose strings are templates.
    Object(Map<String, Value>),
}

impl Default for BodyConfig {
    fn default() -> Self {
        BodyConfig::Kind(BodyKind::Text)
    }
}

/// The fixed kinds of body.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyKind {
    /// The text as it is, `text/plain`.
    Text,
    /// The JSON envelope of the whole message, as `publish` with `format = "json"` sends.
    Json,
    /// No body, as for a `GET`.
    None,
}

/// A JSON value whose strings are templates.
enum JsonTemplate {
    Text(Template),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
    Fixed(Value),
}

impl JsonTemplate {
    fn build(value: &Value, context: &BuildContext) -> Result<Self, String> {
        Ok(match value {
            Value::String(text) => JsonTemplate::Text(context.template(text)?),
            Value::Array(items) => JsonTemplate::Array(
                items.iter().map(|item| Self::build(item, context)).collect::<Result<_, _>>()?,
            ),
            Value::Object(fields) => JsonTemplate::Object(
                fields
                    .iter()
                    .map(|(key, value)| Ok((key.clone(), Self::build(value, context)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => JsonTemplate::Fixed(other.clone()),
        })
    }

    fn render(&self, message: &Message) -> Value {
        match self {
            JsonTemplate::Text(template) => Value::String(template.render(message)),
            JsonTemplate::Array(items) => {
                Value::Array(items.iter().map(|item| item.render(message)).collect())
            }
            JsonTemplate::Object(fields) => Value::Object(
                fields.iter().map(|(key, value)| (key.clone(), value.render(message))).collect(),
            ),
            JsonTemplate::Fixed(value) => value.clone(),
        }
    }
}

/// The body of each request, built once.
pub struct RequestBody(Built);

enum Built {
    Kind(BodyKind),
    Object(JsonTemplate),
}

impl RequestBody {
    /// Builds the body, checking its templates against what earlier steps attach.
    pub fn build(config: &BodyConfig, context: &BuildContext) -> Result<Self, String> {
        Ok(RequestBody(match config {
            BodyConfig::Kind(kind) => Built::Kind(*kind),
            BodyConfig::Object(fields) => {
                Built::Object(JsonTemplate::build(&Value::Object(fields.clone()), context)?)
            }
        }))
    }

    /// The body for `message` and its content type; `None` for no body.
    pub fn render(&self, message: &Message) -> Option<(Vec<u8>, &'static str)> {
        const JSON: &str = "application/json";
        match &self.0 {
            Built::Kind(BodyKind::Text) => {
                Some((message.text.as_bytes().to_vec(), "text/plain; charset=utf-8"))
            }
            Built::Kind(BodyKind::Json) => Some((envelope(message).into_bytes(), JSON)),
            Built::Kind(BodyKind::None) => None,
            Built::Object(template) => Some((template.render(message).to_string().into_bytes(), JSON)),
        }
    }
}

/// Characters of a reply kept in an error.
const EXCERPT_CHARS: usize = 200;

/// The start of a reply's body, on one line, with every secret the request carried replaced
/// by `<redacted>` in case the service echoed it.
pub fn excerpt(body: &[u8], secrets: &[String]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    for secret in secrets.iter().filter(|secret| secret.len() >= 4) {
        text = text.replace(secret.as_str(), REDACTED);
    }
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((end, _)) => format!("{}…", text[..end].trim_end()),
        None => text.trim_end().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(toml_text: &str, attached: &[&str]) -> RequestBody {
        #[derive(Deserialize)]
        struct Wrapper {
            body: BodyConfig,
        }
        let config: Wrapper = toml::from_str(toml_text).unwrap();
        let mut context = BuildContext::new("test");
        attached.iter().for_each(|name| context.attach(name).unwrap());
        RequestBody::build(&config.body, &context).unwrap()
    }

    #[test]
    fn an_object_body_renders_its_templates_as_escaped_json() {
        let body = body(r#"body = { q = "{text}", target = "{item}", alternatives = 3 }"#, &["item"]);
        let mut message = Message::new("c", "t", "say \"hi\"");
        message.attached.insert("item".into(), "es".into());
        let (bytes, content_type) = body.render(&message).unwrap();
        let sent: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(sent, serde_json::json!({"q": "say \"hi\"", "target": "es", "alternatives": 3}));
        assert_eq!(content_type, "application/json");
    }

    #[test]
    fn text_json_and_none_bodies() {
        let message = Message::new("c", "t", "hi");
        assert_eq!(body(r#"body = "text""#, &[]).render(&message).unwrap().0, b"hi");
        let envelope: Value =
            serde_json::from_slice(&body(r#"body = "json""#, &[]).render(&message).unwrap().0).unwrap();
        assert_eq!(envelope["text"], "hi");
        assert!(body(r#"body = "none""#, &[]).render(&message).is_none());
    }

    #[test]
    fn an_excerpt_is_short_on_one_line_and_hides_secrets() {
        let reply = format!("bad key sk-12345\nline two {}", "x".repeat(500));
        let excerpt = excerpt(reply.as_bytes(), &["sk-12345".into()]);
        assert!(excerpt.starts_with("bad key <redacted> line two"), "{excerpt}");
        assert!(excerpt.chars().count() <= EXCERPT_CHARS + 1);
    }
}
