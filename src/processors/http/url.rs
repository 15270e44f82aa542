//! The URL of an `http` step: a fixed origin (scheme, host and port, written in the config),
//! then a path and query that may hold placeholders. Every value rendered into them is
//! percent-encoded, so a message cannot add a path segment, a query parameter or a fragment,
//! and cannot move the call to another host.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Url;

use crate::event::Message;
use crate::pipeline::template::Template;
use crate::processors::BuildContext;

/// Everything but RFC 3986's unreserved characters is encoded: `/`, `?`, `#`, `&`, `=`, `%`,
/// `\` and `@` included.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A parsed `url`.
pub struct UrlTemplate {
    origin: Url,
    origin_text: String,
    rest: Template,
}

impl UrlTemplate {
    /// Parses `source`; placeholders in the scheme, host or port are refused, as is a path
    /// that is not written percent-encoded.
    pub fn build(source: &str, context: &BuildContext) -> Result<Self, String> {
        let Some(after_scheme) = ["http://", "https://"]
            .iter()
            .find_map(|scheme| source.strip_prefix(scheme).map(|_| scheme.len()))
        else {
            return Err(format!("`url` must start with http:// or https://, not {source:?}"));
        };
        let authority_end =
            source[after_scheme..].find(['/', '?', '#']).map_or(source.len(), |offset| after_scheme + offset);
        let (origin_text, rest) = source.split_at(authority_end);
        if origin_text.contains(['{', '}']) {
            return Err(format!(
                "`url` {source:?}: placeholders may go in the path and query only, never in the \
                 scheme, host or port"
            ));
        }
        let origin = Url::parse(origin_text).map_err(|error| format!("`url` {source:?}: {error}"))?;
        if origin.host().is_none() || !origin.username().is_empty() || origin.password().is_some() {
            return Err(format!("`url` {source:?} needs a host, and no user name or password"));
        }
        let url = UrlTemplate { origin, origin_text: origin_text.to_owned(), rest: context.template(rest)? };
        // With every placeholder a plain word, the path must come out as written: a path the
        // URL parser would rewrite could not be told apart from one a message rewrote.
        let plain = url.rest.render_escaped(&Message::new("", "", ""), |_, out| out.push('x'));
        url.assemble(plain).map_err(|()| {
            format!("`url` {source:?}: write its path percent-encoded, without `.` or `..` segments")
        })?;
        Ok(url)
    }

    /// Where every call goes: the scheme, host and port.
    pub fn origin(&self) -> &Url {
        &self.origin
    }

    /// The URL for `message`; the error says why the message cannot make one.
    pub fn render(&self, message: &Message) -> Result<Url, String> {
        let rest =
            self.rest.render_escaped(message, |value, out| out.extend(utf8_percent_encode(value, VALUE)));
        self.assemble(rest).map_err(|()| "a value from the message would change the URL's path".to_owned())
    }

    /// The origin and `rest` as one URL, if the parser takes `rest`'s path as it is: it
    /// resolves `.` and `..` segments (`%2e` too), which no encoding can keep out.
    fn assemble(&self, rest: String) -> Result<Url, ()> {
        let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
        let written_path = if path_end == 0 { "/" } else { &rest[..path_end] };
        let url = Url::parse(&format!("{}{rest}", self.origin_text)).map_err(drop)?;
        if url.path() != written_path || url.origin() != self.origin.origin() {
            return Err(());
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(source: &str) -> Result<UrlTemplate, String> {
        let mut context = BuildContext::new("test");
        context.attach("user").unwrap();
        UrlTemplate::build(source, &context)
    }

    fn message(token_id: &str) -> Message {
        let mut message = Message::new("chat", "room 1", "hi");
        message.token_id = token_id.into();
        message
    }

    fn rendered(source: &str, token_id: &str) -> Result<String, String> {
        url(source).unwrap().render(&message(token_id)).map(String::from)
    }

    #[test]
    fn values_are_percent_encoded_in_the_path_and_the_query() {
        let source = "https://api.example/users/{token_id}/profile?room={topic}";
        assert_eq!(
            rendered(source, "user-42").unwrap(),
            "https://api.example/users/user-42/profile?room=room%201"
        );
        assert_eq!(
            rendered(source, "../../admin/delete-all?confirm=yes#").unwrap(),
            "https://api.example/users/..%2F..%2Fadmin%2Fdelete-all%3Fconfirm%3Dyes%23/profile?room=room%201"
        );
        assert_eq!(
            rendered("https://api.example/q?id={token_id}", "1&admin=true").unwrap(),
            "https://api.example/q?id=1%26admin%3Dtrue"
        );
        assert_eq!(rendered(source, r"a\b@c:d").unwrap().split('/').nth(4), Some("a%5Cb%40c%3Ad"));
    }

    #[test]
    fn a_value_that_makes_a_dot_segment_is_refused_not_resolved() {
        let source = "https://api.example/users/{token_id}/profile";
        for token_id in ["..", ".", "%2e%2e"] {
            let result = rendered(source, token_id);
            if token_id.starts_with('%') {
                assert_eq!(result.unwrap(), "https://api.example/users/%252e%252e/profile");
            } else {
                assert!(result.unwrap_err().contains("change the URL's path"), "{token_id}");
            }
        }
    }

    #[test]
    fn placeholders_in_the_scheme_host_or_port_are_refused_at_load() {
        for source in [
            "https://{token_id}.example/x",
            "https://api.example:{token_id}/x",
            "https://{user.host}/x",
            "https://user:{token_id}@api.example/x",
            "{topic}://api.example/x",
            "https://api.example{token_id}",
        ] {
            assert!(url(source).is_err(), "{source}");
        }
        assert!(url("https://me:secret@api.example/x").is_err(), "credentials belong in headers");
        assert!(url("https://api.example/a/../b").is_err(), "a dot segment in the path as written");
        assert!(url("https://api.example").is_ok() && url("https://api.example?q={text}").is_ok());
    }
}
