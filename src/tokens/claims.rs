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

    /// Fills the placeholders from `claims`; the error names the claim that is missing or
    /// not a scalar.
    pub fn render(&self, claims: &Map<String, Value>) -> Result<String, String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Claim(path) => {
                    let value = lookup(claims, path).ok_or_else(|| path.join("."))?;
                    match value {
                        Value::String(text) => out.push_str(text),
                        Value::Number(number) => out.push_str(&number.to_string()),
                        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
                        _ => return Err(path.join(".")),
                    }
                }
            }
        }
        Ok(out)
    }
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
        assert_eq!(template.render(&claims()).unwrap(), "user-42:ada@7/true {x}");
    }

    #[test]
    fn a_missing_or_non_scalar_claim_is_an_error_naming_it() {
        assert_eq!(ClaimTemplate::parse("{email}").unwrap().render(&claims()), Err("email".into()));
        assert_eq!(ClaimTemplate::parse("{groups}").unwrap().render(&claims()), Err("groups".into()));
    }

    #[test]
    fn malformed_templates_are_refused() {
        for bad in ["{sub", "sub}", "{}", "{a..b}"] {
            assert!(ClaimTemplate::parse(bad).is_err(), "{bad}");
        }
    }
}
