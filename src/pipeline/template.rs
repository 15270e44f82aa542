//! Templates such as `user:{token_id}` or `{topic}-enriched`: text with `{field}`
//! placeholders filled from a message. Parsed once when the config is loaded.
//!
//! Fields: `cache`, `topic`, `token_id`, `text`, `event_timestamp`, `publish_timestamp`,
//! `topic_sequence_number`, `sequence_page` (subscription items), and any name a step attached (`user`, `json`), with a dotted
//! path into its JSON (`{user.name}`, `{json.course.id}`). `{{` and `}}` are literal braces.
//! A field that is absent renders as the empty string.

use std::borrow::Cow;
use std::fmt::Write;

use serde_json::Value;

use crate::event::Message;

/// The message fields every template can use.
pub const EVENT_FIELDS: [&str; 8] = [
    "cache",
    "topic",
    "token_id",
    "text",
    "event_timestamp",
    "publish_timestamp",
    "topic_sequence_number",
    "sequence_page",
];

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Field { root: String, path: Vec<String> },
}

impl Template {
    /// Parses `source`; `known` lists the attached names earlier steps provide, so a typo in a
    /// field name is an error at load time rather than an empty string at run time.
    pub fn parse(source: &str, known: &[String]) -> Result<Template, String> {
        Self::parse_with(source, Some(known))
    }

    /// Parses `source` accepting any field name, for tools that only need its shape.
    pub fn parse_lenient(source: &str) -> Result<Template, String> {
        Self::parse_with(source, None)
    }

    fn parse_with(source: &str, known: Option<&[String]>) -> Result<Template, String> {
        let parts = split_placeholders(source)?
            .into_iter()
            .map(|piece| match piece {
                Piece::Literal(text) => Ok(Part::Literal(text)),
                Piece::Placeholder(name) => parse_field(&name, source, known),
            })
            .collect::<Result<_, String>>()?;
        Ok(Template { source: source.to_owned(), parts })
    }

    /// Fills the placeholders from `message`, borrowing instead when the template is only
    /// literal text or only one of the message's text fields (such as `{topic}`), as most
    /// publish targets are.
    pub fn render_borrowed<'a>(&'a self, message: &'a Message) -> Cow<'a, str> {
        match self.parts.as_slice() {
            [] => Cow::Borrowed(""),
            [Part::Literal(text)] => Cow::Borrowed(text),
            [Part::Field { root, path }] if path.is_empty() => match root.as_str() {
                "cache" => Cow::Borrowed(&message.cache),
                "topic" => Cow::Borrowed(&message.topic),
                "token_id" => Cow::Borrowed(&message.token_id),
                "text" => Cow::Borrowed(&message.text),
                _ => Cow::Owned(self.render(message)),
            },
            _ => Cow::Owned(self.render(message)),
        }
    }

    /// Fills the placeholders from `message`, passing each field's value through `escape`
    /// (literal text goes as written), as a URL's path needs its values percent-encoded.
    pub fn render_escaped(&self, message: &Message, escape: impl Fn(&str, &mut String)) -> String {
        let mut out = String::with_capacity(self.source.len() + 16);
        let mut value = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field { root, path } => {
                    value.clear();
                    write_field(&mut value, message, root, path);
                    escape(&value, &mut out);
                }
            }
        }
        out
    }

    /// Fills the placeholders from `message`.
    pub fn render(&self, message: &Message) -> String {
        let mut out = String::with_capacity(self.source.len() + 16);
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field { root, path } => write_field(&mut out, message, root, path),
            }
        }
        out
    }
}

/// A piece of template text: literal, or the name inside a `{placeholder}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text as it is, with `{{` and `}}` already turned into single braces.
    Literal(String),
    /// The text between `{` and `}`.
    Placeholder(String),
}

/// Splits `source` into literal text and placeholders; the error says what is unbalanced.
/// Shared by every kind of template, whatever fills its placeholders.
pub fn split_placeholders(source: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    name.push(c);
                }
                if !closed {
                    return Err(format!("unclosed placeholder in template {source:?}"));
                }
                if !literal.is_empty() {
                    pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Placeholder(name));
            }
            '}' => {
                return Err(format!(
                    "unmatched '}}' in template {source:?} (write '}}}}' for a literal brace)"
                ));
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    Ok(pieces)
}

fn parse_field(name: &str, source: &str, known: Option<&[String]>) -> Result<Part, String> {
    let mut segments = name.split('.').map(str::trim);
    let root = segments.next().unwrap_or_default().to_owned();
    let path: Vec<String> = segments.map(str::to_owned).collect();
    if root.is_empty() || path.iter().any(String::is_empty) {
        return Err(format!("empty or unclosed placeholder in template {source:?}"));
    }
    let is_event_field = EVENT_FIELDS.contains(&root.as_str());
    if is_event_field && !path.is_empty() {
        return Err(format!(
            "{{{name}}} in template {source:?}: `{root}` is plain text; parse it with a json step and use {{json.…}}"
        ));
    }
    if let Some(known) = known.filter(|known| !is_event_field && !known.contains(&root)) {
        return Err(format!(
            "unknown field {{{name}}} in template {source:?}; known: {}",
            EVENT_FIELDS
                .iter()
                .map(|f| f.to_string())
                .chain(known.iter().cloned())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Part::Field { root, path })
}

fn write_field(out: &mut String, message: &Message, root: &str, path: &[String]) {
    let _ = match root {
        "cache" => out.write_str(&message.cache),
        "topic" => out.write_str(&message.topic),
        "token_id" => out.write_str(&message.token_id),
        "text" => out.write_str(&message.text),
        "event_timestamp" => write!(out, "{}", message.event_timestamp),
        "publish_timestamp" => write!(out, "{}", message.publish_timestamp),
        "topic_sequence_number" => write!(out, "{}", message.topic_sequence_number),
        "sequence_page" => write!(out, "{}", message.sequence_page),
        _ => {
            let value = path.iter().try_fold(message.attached.get(root), |value, key| Some(value?.get(key)));
            match value.flatten() {
                Some(Value::String(text)) => write!(out, "{text}"),
                Some(Value::Null) | None => Ok(()),
                Some(other) => write!(out, "{other}"),
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        let mut message = Message::new("chat", "room-1", "hello");
        message.token_id = "user-42".into();
        message.attached.insert("user".into(), serde_json::json!({"name": "Ada", "age": 36}));
        message
    }

    fn render(source: &str) -> String {
        Template::parse(source, &["user".into()]).unwrap().render(&message())
    }

    #[test]
    fn borrowed_rendering_matches_rendering_and_borrows_only_literals_and_single_fields() {
        let message = message();
        for (source, borrows) in [
            ("", true),
            ("room-9", true),
            ("{topic}", true),
            ("{text}", true),
            ("{topic}-out", false),
            ("{user.name}", false),
            ("{event_timestamp}", false),
        ] {
            let template = Template::parse(source, &["user".into()]).unwrap();
            let borrowed = template.render_borrowed(&message);
            assert_eq!(borrowed, template.render(&message), "{source}");
            assert_eq!(matches!(borrowed, Cow::Borrowed(_)), borrows, "{source}");
        }
    }

    #[test]
    fn placeholders_fill_from_event_fields_and_attached_json() {
        assert_eq!(render("{topic}-enriched"), "room-1-enriched");
        assert_eq!(render("user:{token_id}"), "user:user-42");
        assert_eq!(render("{user.name} ({user.age}) says {text}"), "Ada (36) says hello");
    }

    #[test]
    fn escaped_rendering_escapes_field_values_but_not_literal_text() {
        let template = Template::parse("/a?b={token_id}&c={user.name}", &["user".into()]).unwrap();
        let escaped = template.render_escaped(&message(), |value, out| {
            out.push('[');
            out.push_str(value);
            out.push(']');
        });
        assert_eq!(escaped, "/a?b=[user-42]&c=[Ada]");
    }

    #[test]
    fn absent_fields_render_empty_and_doubled_braces_are_literal() {
        assert_eq!(render("[{user.missing}]"), "[]");
        assert_eq!(render("{{literal}}"), "{literal}");
    }

    #[test]
    fn unknown_fields_and_broken_placeholders_are_refused_at_parse_time() {
        assert!(Template::parse("{topci}", &[]).unwrap_err().contains("unknown field {topci}"));
        assert!(Template::parse("{user.name}", &[]).is_err());
        assert!(Template::parse("{text.name}", &[]).is_err());
        assert!(Template::parse("a}b", &[]).is_err());
        assert!(Template::parse("{}", &[]).is_err());
        assert!(Template::parse("user:{token_id", &[]).unwrap_err().contains("unclosed"));
    }
}
