//! `${VAR}` expansion and `TOPIC_RELAY__SECTION__KEY` overrides, applied to the parsed
//! TOML tree before it is turned into typed settings.

use toml::{Table, Value};

/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "TOPIC_RELAY__";

/// Why expansion failed.
#[derive(Debug)]
pub enum ExpandError {
    /// `${VAR}` where VAR is not set and no default is given.
    Unset { key: String, variable: String },
    /// `${` without a closing `}` or with an empty name.
    Malformed { key: String },
    /// `${file:PATH}` where PATH cannot be read and no default is given.
    File { key: String, path: String, reason: String },
}

/// Replaces `${VAR}` and `${VAR:-default}` in every string of the tree; `$$` is a literal `$`.
/// `${file:PATH}` is the content of the file at PATH, less its final line break: a secret
/// mounted as a file (a Kubernetes Secret volume) is read again at each reload, where the
/// process's environment never changes.
/// Inside a list named `secrets`, an unset variable or an empty result drops the entry, so a
/// "previous secret" slot can stay empty outside a rotation. Keys in `literal` (set by
/// environment overrides) are taken as they are. Returns every value substituted, so that
/// error messages can hide them.
pub fn expand_tree(
    table: &mut Table,
    lookup: &dyn Fn(&str) -> Option<String>,
    literal: &[String],
) -> Result<Vec<String>, ExpandError> {
    let mut substitutions = Vec::new();
    for (key, value) in table.iter_mut() {
        expand_value(key, value, lookup, &mut substitutions, literal)?;
    }
    Ok(substitutions)
}

fn expand_value(
    path: &str,
    value: &mut Value,
    lookup: &dyn Fn(&str) -> Option<String>,
    substitutions: &mut Vec<String>,
    literal: &[String],
) -> Result<(), ExpandError> {
    if literal.iter().any(|literal| literal == path) {
        return Ok(());
    }
    match value {
        Value::String(text) => {
            *text = expand_str(path, text, lookup, substitutions)?;
        }
        Value::Table(table) => {
            for (key, value) in table.iter_mut() {
                expand_value(&format!("{path}.{key}"), value, lookup, substitutions, literal)?;
            }
        }
        Value::Array(items) if path == "secrets" || path.ends_with(".secrets") => {
            expand_secret_list(path, items, lookup, substitutions)?;
        }
        Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                expand_value(&format!("{path}[{index}]"), item, lookup, substitutions, literal)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_secret_list(
    path: &str,
    items: &mut Vec<Value>,
    lookup: &dyn Fn(&str) -> Option<String>,
    substitutions: &mut Vec<String>,
) -> Result<(), ExpandError> {
    let mut kept = Vec::with_capacity(items.len());
    for (index, item) in items.drain(..).enumerate() {
        let Value::String(text) = item else {
            kept.push(item);
            continue;
        };
        let key = format!("{path}[{index}]");
        match expand_str(&key, &text, lookup, substitutions) {
            Ok(expanded) if expanded.is_empty() => {}
            Ok(expanded) => kept.push(Value::String(expanded)),
            Err(ExpandError::Unset { .. } | ExpandError::File { .. }) => {}
            Err(other) => return Err(other),
        }
    }
    *items = kept;
    Ok(())
}

fn expand_str(
    key: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    substitutions: &mut Vec<String>,
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let close = body.find('}').ok_or_else(|| malformed(key))?;
            let (name, default) = match body[..close].split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (&body[..close], None),
            };
            if name.is_empty() {
                return Err(malformed(key));
            }
            let value = match name.strip_prefix("file:") {
                Some(path) => match (read_file(path), default) {
                    (Ok(value), _) => value,
                    (Err(_), Some(default)) => default.to_owned(),
                    (Err(reason), None) => {
                        return Err(ExpandError::File { key: key.to_owned(), path: path.to_owned(), reason });
                    }
                },
                None => match (lookup(name), default) {
                    (Some(value), _) => value,
                    (None, Some(default)) => default.to_owned(),
                    (None, None) => {
                        return Err(ExpandError::Unset { key: key.to_owned(), variable: name.to_owned() });
                    }
                },
            };
            out.push_str(&value);
            substitutions.push(value);
            rest = &body[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A file's text less its final line break, which `echo` and editors add.
fn read_file(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|error| error.to_string())?;
    let text = text.strip_suffix('\n').map_or(text.as_str(), |text| text.strip_suffix('\r').unwrap_or(text));
    Ok(text.to_owned())
}

fn malformed(key: &str) -> ExpandError {
    ExpandError::Malformed { key: key.to_owned() }
}

/// Keys whose values are secrets, wherever they appear.
const SECRET_KEYS: [&str; 3] = ["secrets", "api_key", "token"];

/// Every string held at a secret's key, for scrubbing from error messages.
pub fn secret_values(table: &Table) -> Vec<String> {
    let mut found = Vec::new();
    for (key, value) in table {
        match value {
            Value::Table(inner) => found.extend(secret_values(inner)),
            _ if SECRET_KEYS.contains(&key.as_str()) => collect_strings(value, &mut found),
            _ => {}
        }
    }
    found
}

fn collect_strings(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(text) => found.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| collect_strings(item, found)),
        Value::Table(table) => table.values().for_each(|item| collect_strings(item, found)),
        _ => {}
    }
}

/// Applies every `TOPIC_RELAY__A__B=value` to key `a.b`. Values are read as TOML when they
/// are a TOML number, boolean, array or inline table, and as a plain string otherwise.
/// Returns the key each applied variable set, for error messages.
pub fn apply_env_overrides(
    table: &mut Table,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, String> {
    let mut applied = Vec::new();
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
        if path.iter().any(String::is_empty) {
            return Err(format!("{name}: empty key segment"));
        }
        let value = match path.last().map(String::as_str) {
            // A secret is taken exactly as written: `0x12` or `1_000` must not become numbers.
            Some("api_key" | "token") => Value::String(raw),
            Some("secrets") if !raw.starts_with('[') => Value::Array(vec![Value::String(raw)]),
            _ => parse_env_value(&raw),
        };
        insert_at(table, &path, value).map_err(|reason| format!("{name}: {reason}"))?;
        applied.push((path.join("."), name));
    }
    Ok(applied)
}

fn insert_at(table: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let (last, parents) = path.split_last().expect("path has at least one segment");
    let mut current = table;
    for segment in parents {
        let entry = current.entry(segment.clone()).or_insert_with(|| Value::Table(Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{segment}` is not a table, so it cannot hold keys"))?;
    }
    current.insert(last.clone(), value);
    Ok(())
}

fn parse_env_value(raw: &str) -> Value {
    let looks_structured = raw.starts_with('[') || raw.starts_with('{');
    let parsed = toml::from_str::<Table>(&format!("v = {raw}")).ok().and_then(|mut table| table.remove("v"));
    match parsed {
        Some(value @ (Value::Integer(_) | Value::Float(_) | Value::Boolean(_))) => value,
        Some(value @ (Value::Array(_) | Value::Table(_))) if looks_structured => value,
        _ => Value::String(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SECRET" => Some("s3cr3t".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn expand(text: &str) -> Result<Table, ExpandError> {
        let mut table: Table = toml::from_str(text).unwrap();
        expand_tree(&mut table, &env, &[]).map(|_| table)
    }

    #[test]
    fn variables_defaults_and_dollar_escapes_expand() {
        let table = expand(r#"a = "x-${SECRET}-${NOPE:-dflt}-$$-$5""#).unwrap();
        assert_eq!(table["a"].as_str(), Some("x-s3cr3t-dflt-$-$5"));
    }

    #[test]
    fn an_unset_variable_names_itself_and_its_key() {
        let Err(ExpandError::Unset { key, variable }) = expand("[m]\nk = \"${NOPE}\"") else {
            panic!("expected an unset-variable error");
        };
        assert_eq!((key.as_str(), variable.as_str()), ("m.k", "NOPE"));
    }

    #[test]
    fn empty_or_unset_entries_in_a_secrets_list_are_dropped() {
        let table = expand(r#"secrets = ["${SECRET}", "${NOPE}", "${EMPTY}"]"#).unwrap();
        assert_eq!(table["secrets"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_file_reference_reads_the_file_less_its_final_line_break() {
        let path = std::env::temp_dir().join(format!("topic-relay-expand-{}", std::process::id()));
        std::fs::write(&path, "s3cret-from-a-file\n").unwrap();
        let text = format!("a = \"${{file:{}}}\"\nsecrets = [\"${{file:/no/such/file}}\"]", path.display());
        let table = expand(&text).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(table["a"].as_str(), Some("s3cret-from-a-file"));
        assert_eq!(
            table["secrets"].as_array().map(Vec::len),
            Some(0),
            "a missing file in a secrets list is dropped"
        );
        let Err(ExpandError::File { key, path, .. }) = expand("[m]\nk = \"${file:/no/such/file}\"") else {
            panic!("a missing file is an error");
        };
        assert_eq!((key.as_str(), path.as_str()), ("m.k", "/no/such/file"));
        let defaulted = expand("k = \"${file:/no/such/file:-fallback}\"").unwrap();
        assert_eq!(defaulted["k"].as_str(), Some("fallback"));
    }

    #[test]
    fn an_unclosed_reference_is_malformed() {
        assert!(matches!(expand(r#"a = "${SECRET""#), Err(ExpandError::Malformed { .. })));
    }

    #[test]
    fn keys_set_by_the_environment_are_taken_literally() {
        let mut table: Table = toml::from_str("[m]\nk = \"$${NOPE}\"\nj = \"${SECRET}\"").unwrap();
        expand_tree(&mut table, &env, &["m.k".to_owned()]).unwrap();
        assert_eq!(table["m"]["k"].as_str(), Some("$${NOPE}"));
        assert_eq!(table["m"]["j"].as_str(), Some("s3cr3t"));
    }

    #[test]
    fn values_at_secret_keys_are_found_for_scrubbing() {
        let table: Table =
            toml::from_str("[w.a]\nsecrets = [\"one\", \"two\"]\n[m]\napi_key = \"k\"\n[admin]\ntoken = \"t\"\nother = \"o\"").unwrap();
        let mut found = secret_values(&table);
        found.sort();
        assert_eq!(found, ["k", "one", "t", "two"]);
    }

    #[test]
    fn secrets_from_the_environment_are_kept_exactly_as_written() {
        let mut table = Table::new();
        let vars = [
            ("TOPIC_RELAY__ADMIN__TOKEN".to_owned(), "0x1234567890abcdef".to_owned()),
            ("TOPIC_RELAY__WEBHOOKS__CHAT__SECRETS".to_owned(), "1_000".to_owned()),
        ];
        apply_env_overrides(&mut table, vars).unwrap();
        assert_eq!(table["admin"]["token"].as_str(), Some("0x1234567890abcdef"));
        assert_eq!(table["webhooks"]["chat"]["secrets"][0].as_str(), Some("1_000"));
    }

    #[test]
    fn env_overrides_reach_nested_keys_with_typed_values() {
        let mut table = Table::new();
        let vars = [
            ("TOPIC_RELAY__SERVER__MAX_IN_FLIGHT".to_owned(), "12".to_owned()),
            ("TOPIC_RELAY__MOMENTO__API_KEY".to_owned(), "abc".to_owned()),
            ("OTHER".to_owned(), "ignored".to_owned()),
        ];
        let applied = apply_env_overrides(&mut table, vars).unwrap();
        assert_eq!(table["server"]["max_in_flight"].as_integer(), Some(12));
        assert_eq!(table["momento"]["api_key"].as_str(), Some("abc"));
        assert_eq!(applied.len(), 2);
    }
}
