//! Name patterns of a route's `match`: exact names or globs.

use globset::{GlobBuilder, GlobMatcher};

/// Matches a cache, topic, webhook or token id.
#[derive(Debug, Clone)]
pub enum NamePattern {
    /// Matches everything (the key was omitted).
    Any,
    /// Matches this name only.
    Exact(String),
    /// Matches a glob: `*` any run of characters, `?` one, `[abc]` a class, `{a,b}` either.
    Glob(GlobMatcher),
}

impl NamePattern {
    /// Parses an optional pattern; a pattern without glob characters is exact.
    pub fn parse(pattern: Option<&str>) -> Result<Self, String> {
        let Some(pattern) = pattern else {
            return Ok(NamePattern::Any);
        };
        if !pattern.contains(['*', '?', '[', '{']) {
            return Ok(NamePattern::Exact(pattern.to_owned()));
        }
        GlobBuilder::new(pattern)
            .literal_separator(false)
            .build()
            .map(|glob| NamePattern::Glob(glob.compile_matcher()))
            .map_err(|error| format!("invalid glob {pattern:?}: {error}"))
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Any => true,
            NamePattern::Exact(exact) => exact == name,
            NamePattern::Glob(glob) => glob.is_match(name),
        }
    }

    /// A name this pattern matches, for checking where a route's output goes: the exact
    /// name, or the glob with each wildcard filled in.
    pub fn example(&self) -> String {
        match self {
            NamePattern::Any => "example".into(),
            NamePattern::Exact(exact) => exact.clone(),
            NamePattern::Glob(glob) => fill_wildcards(glob.glob().glob()),
        }
    }
}

fn fill_wildcards(glob: &str) -> String {
    let mut out = String::new();
    let mut chars = glob.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' | '?' => out.push('x'),
            '[' => {
                let class: String = chars.by_ref().take_while(|&c| c != ']').collect();
                out.extend(class.chars().find(|&c| c != '!' && c != '^'));
            }
            '{' => {
                let alternatives: String = chars.by_ref().take_while(|&c| c != '}').collect();
                out.push_str(alternatives.split(',').next().unwrap_or_default());
            }
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// What a route asks of the publisher's token id.
#[derive(Debug, Clone)]
pub enum TokenIdRule {
    /// Anything, including none.
    Any,
    /// A non-empty token id: anonymous publishers are refused.
    Required,
    /// No token id: anonymous publishers only.
    Absent,
    /// A non-empty token id matching this pattern.
    Matching(NamePattern),
}

impl TokenIdRule {
    /// Parses `"required"`, `"absent"`, or a pattern.
    pub fn parse(rule: Option<&str>) -> Result<Self, String> {
        Ok(match rule {
            None => TokenIdRule::Any,
            Some("required") => TokenIdRule::Required,
            Some("absent") => TokenIdRule::Absent,
            Some(pattern) => TokenIdRule::Matching(NamePattern::parse(Some(pattern))?),
        })
    }

    /// Whether `token_id` satisfies the rule.
    pub fn matches(&self, token_id: &str) -> bool {
        match self {
            TokenIdRule::Any => true,
            TokenIdRule::Required => !token_id.is_empty(),
            TokenIdRule::Absent => token_id.is_empty(),
            TokenIdRule::Matching(pattern) => !token_id.is_empty() && pattern.matches(token_id),
        }
    }

    /// A token id the rule accepts.
    pub fn example(&self) -> String {
        match self {
            TokenIdRule::Absent => String::new(),
            TokenIdRule::Matching(pattern) => pattern.example(),
            TokenIdRule::Any | TokenIdRule::Required => "example-user".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_and_globs_match_as_written() {
        let exact = NamePattern::parse(Some("topic 1")).unwrap();
        assert!(exact.matches("topic 1") && !exact.matches("topic 10"));
        let glob = NamePattern::parse(Some("room-*")).unwrap();
        assert!(glob.matches("room-1") && glob.matches("room-a/b") && !glob.matches("lobby"));
        assert!(NamePattern::parse(None).unwrap().matches("anything"));
        assert!(NamePattern::parse(Some("room-[")).is_err());
    }

    #[test]
    fn an_example_of_a_glob_matches_the_glob() {
        for pattern in ["room-*", "a?c", "x[yz]", "{red,blue}-team", "*"] {
            let parsed = NamePattern::parse(Some(pattern)).unwrap();
            assert!(parsed.matches(&parsed.example()), "{pattern} -> {}", parsed.example());
        }
    }

    #[test]
    fn token_id_rules_refuse_or_require_anonymous_publishers() {
        let required = TokenIdRule::parse(Some("required")).unwrap();
        assert!(required.matches("user-42") && !required.matches(""));
        let absent = TokenIdRule::parse(Some("absent")).unwrap();
        assert!(absent.matches("") && !absent.matches("user-42"));
        let glob = TokenIdRule::parse(Some("user-*")).unwrap();
        assert!(glob.matches("user-42") && !glob.matches("admin") && !glob.matches(""));
    }
}
