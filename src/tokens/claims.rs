//! Templates over a caller's verified JWT claims, such as `"{sub}"`, `"{sub}:{name}"` or
//! `"inbox-{sub}"`. A placeholder names a claim, or a dotted path into one
//! (`{org.id}`); `{{` and `}}` are literal braces. A claim that is missing, or is not a
//! string, number or boolean, refuses the token rather than rendering as nothing.

use serde_json::{Map, Value};

use crate::pipeline::template::{Piece, split_placeholders};

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Claim(Vec<String>),
}

impl ClaimTemplate {
    /// Parses `source`; the error says what is wrong with it.
    pub fn parse(source: &str) -> Result<ClaimTemplate, String> {
        let parts = split_placeholders(source)?
            .into_iter()
            .map(|piece| match piece {
                Piece::Literal(text) => Ok(Part::Literal(text)),
                Piece::Placeholder(name) => {
                    let path: Vec<String> = name.split('.').map(|s| s.trim().to_owned()).collect();
                    if path.iter().any(String::is_empty) {
                        return Err(format!("empty placeholder in {source:?}"));
                    }
                    Ok(Part::Claim(path))
                }
            })
            .collect::<Result<_, String>>()?;
        Ok(ClaimTemplate { parts })
    }

    /// Fills the placeholders from `claims`, taking each claim's value only if `acceptable`
    /// says so; the error names the claim that is missing, not a scalar, or not acceptable.
    pub fn render(
        &self,
        claims: &Map<String, Value>,
        acceptable: impl Fn(&str) -> bool,
    ) -> Result<String, ClaimError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Claim(path) => {
                    let value = lookup(claims, path).ok_or_else(|| ClaimError::Missing(path.join(".")))?;
                    let value = match value {
                        Value::String(text) => text.clone(),
                        Value::Number(number) => number.to_string(),
                        Value::Bool(flag) => flag.to_string(),
                        _ => return Err(ClaimError::Missing(path.join("."))),
                    };
                    if !acceptable(&value) {
                        return Err(ClaimError::Unacceptable(path.join(".")));
                    }
                    out.push_str(&value);
                }
            }
        }
        Ok(out)
    }
}

/// Why a template could not be filled; each names the claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimError {
    /// The claim is missing, or is not a string, number or boolean.
    Missing(String),
    /// The claim's value is not one the template may take (see the caller's rule).
    Unacceptable(String),
}

/// Whether a claim's value can name a cache or topic in a permission: a literal name, never
/// empty, never holding `*` (which Momento's scopes read as "all"), never a control character.
pub fn is_literal_name(value: &str) -> bool {
    !value.is_empty() && !value.contains('*') && !value.chars().any(char::is_control)
}

/// Whether a claim's value can go into a `token_id`: no control characters, which would let
/// one publisher's id pass for another's in logs and lookups.
pub fn is_token_id_part(value: &str) -> bool {
    !value.chars().any(char::is_control)
}

fn lookup<'a>(claims: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    rest.iter().try_fold(claims.get(first)?, |value, segment| value.get(segment))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims() -> Map<String, Value> {
        json!({"sub": "user-42", "name": "ada", "org": {"id": 7}, "admin": true, "groups": ["a"]})
            .as_object()
            .cloned()
            .unwrap()
    }

    #[test]
    fn placeholders_are_filled_from_claims_and_nested_claims() {
        let template = ClaimTemplate::parse("{sub}:{name}@{org.id}/{admin} {{x}}").unwrap();
        assert_eq!(template.render(&claims(), |_| true).unwrap(), "user-42:ada@7/true {x}");
    }

    #[test]
    fn a_missing_or_non_scalar_claim_is_an_error_naming_it() {
        let render = |source| ClaimTemplate::parse(source).unwrap().render(&claims(), |_| true);
        assert_eq!(render("{email}"), Err(ClaimError::Missing("email".into())));
        assert_eq!(render("{groups}"), Err(ClaimError::Missing("groups".into())));
    }

    #[test]
    fn a_value_the_rule_refuses_is_an_error_naming_its_claim() {
        let template = ClaimTemplate::parse("room-{sub}").unwrap();
        let refused = template.render(&claims(), |value| value != "user-42");
        assert_eq!(refused, Err(ClaimError::Unacceptable("sub".into())));
    }

    #[test]
    fn names_from_claims_must_be_literal_and_token_id_parts_free_of_control_characters() {
        for bad in ["*", "", "a*", "room\n1", "\u{0}"] {
            assert!(!is_literal_name(bad), "{bad:?}");
        }
        assert!(is_literal_name("room-1") && is_literal_name("chat room"));
        assert!(!is_token_id_part("user\r\n42") && is_token_id_part("42:ada"));
    }

    #[test]
    fn malformed_templates_are_refused() {
        for bad in ["{sub", "sub}", "{}", "{a..b}"] {
            assert!(ClaimTemplate::parse(bad).is_err(), "{bad}");
        }
    }
}
