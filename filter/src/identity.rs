//! The budgets a request charges: the identity's budget from its headers, and the enclosing
//! scopes (project, team, org and so on) from headers or fixed values.

use sha2::{Digest, Sha256};

/// Returns the value of query parameter `name` in `path`, or `None` when it is absent or empty.
pub fn query_parameter<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = path.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((key, value)) if key == name && !value.is_empty() => Some(value),
            _ => None,
        })
}

/// Returns `wanted` with `first` moved to the front when it is among them.
pub fn preferred_first(wanted: &[String], first: &str) -> Vec<String> {
    let mut ordered: Vec<String> = wanted
        .iter()
        .filter(|name| *name == first)
        .cloned()
        .collect();
    ordered.extend(wanted.iter().filter(|name| *name != first).cloned());
    ordered
}

/// Returns the budget name for an identity value, hashed when `hash` is set.
pub fn budget_for_value(value: &str, hash: bool) -> String {
    if hash {
        sha256_hex(value.as_bytes())
    } else {
        value.to_string()
    }
}

/// Returns the budget name for the first identity header present, or `None` when none is.
///
/// `headers` are `(name, value)` pairs with lower-case names. A `Bearer ` prefix is removed,
/// so `authorization: Bearer KEY` and `x-api-key: KEY` name the same budget. With `hash`, the
/// name is the lower-case hex SHA-256 of the value, so raw keys never reach Redis or logs.
pub fn budget_name(wanted: &[String], headers: &[(String, String)], hash: bool) -> Option<String> {
    let value = wanted.iter().find_map(|name| {
        headers
            .iter()
            .find(|(header, value)| header == name && !strip_bearer(value).is_empty())
            .map(|(_, value)| strip_bearer(value))
    })?;
    Some(budget_for_value(value, hash))
}

fn strip_bearer(value: &str) -> &str {
    let trimmed = value.trim();
    let scheme = trimmed.split_whitespace().next().unwrap_or_default();
    if scheme.eq_ignore_ascii_case("bearer") {
        trimmed.get(scheme.len()..).unwrap_or_default().trim()
    } else {
        trimmed
    }
}

/// Source of an enclosing budget scope's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeSource {
    /// A request header (lower-case name); hashed to lower-case hex SHA-256 when `hash` is set.
    Header { name: String, hash: bool },
    /// The same value for every request.
    Value(String),
}

/// An enclosing budget scope: its source, and text put in front of its value to form the
/// budget name, such as `team:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub source: ScopeSource,
    pub prefix: String,
}

/// Returns the budget names of the scopes present in `headers`, in the order of `scopes`.
/// A header scope whose header is missing or empty is left out, so that level is absent.
pub fn scope_names(scopes: &[Scope], headers: &[(String, String)]) -> Vec<String> {
    scopes
        .iter()
        .filter_map(|scope| {
            let value = match &scope.source {
                ScopeSource::Value(value) => value.clone(),
                ScopeSource::Header { name, hash } => {
                    let value = headers
                        .iter()
                        .find(|(header, value)| header == name && !value.trim().is_empty())
                        .map(|(_, value)| value.trim())?;
                    budget_for_value(value, *hash)
                }
            };
            Some(format!("{}{value}", scope.prefix))
        })
        .collect()
}

/// Returns the lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn bearer_key_is_hashed() {
        let wanted = vec!["authorization".to_string()];
        let name = budget_name(
            &wanted,
            &headers(&[("authorization", "Bearer sk-test")]),
            true,
        );
        assert_eq!(name.as_deref(), Some(sha256_hex(b"sk-test").as_str()));
    }

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn first_present_header_wins() {
        let wanted = vec!["x-team".to_string(), "authorization".to_string()];
        let found = headers(&[("authorization", "Bearer k"), ("x-team", "search")]);
        assert_eq!(
            budget_name(&wanted, &found, false).as_deref(),
            Some("search")
        );
    }

    #[test]
    fn provider_header_moves_first() {
        let wanted = vec!["authorization".to_string(), "x-api-key".to_string()];
        assert_eq!(
            preferred_first(&wanted, "x-api-key"),
            vec!["x-api-key", "authorization"]
        );
    }

    #[test]
    fn absent_provider_header_keeps_order() {
        let wanted = vec!["authorization".to_string(), "x-team".to_string()];
        assert_eq!(preferred_first(&wanted, "api-key"), wanted);
    }

    #[test]
    fn query_key_is_found() {
        assert_eq!(
            query_parameter("/v1beta/m:generateContent?alt=sse&key=k1", "key"),
            Some("k1")
        );
    }

    #[test]
    fn empty_query_key_is_absent() {
        assert_eq!(query_parameter("/p?key=&alt=sse", "key"), None);
    }

    #[test]
    fn empty_bearer_is_no_identity() {
        let wanted = vec!["authorization".to_string()];
        assert_eq!(
            budget_name(&wanted, &headers(&[("authorization", "Bearer  ")]), true),
            None
        );
    }

    #[test]
    fn absent_scope_header_is_skipped() {
        let scopes = vec![
            Scope {
                source: ScopeSource::Header {
                    name: "x-project".into(),
                    hash: false,
                },
                prefix: "project:".into(),
            },
            Scope {
                source: ScopeSource::Header {
                    name: "x-team".into(),
                    hash: true,
                },
                prefix: "team:".into(),
            },
            Scope {
                source: ScopeSource::Value("acme".into()),
                prefix: "org:".into(),
            },
        ];
        let names = scope_names(&scopes, &headers(&[("x-team", "search")]));
        let team = format!("team:{}", sha256_hex(b"search"));
        assert_eq!(names, vec![team, "org:acme".to_string()]);
    }

    #[test]
    fn missing_header_is_no_identity() {
        let wanted = vec!["authorization".to_string()];
        assert_eq!(
            budget_name(&wanted, &headers(&[("x-other", "v")]), true),
            None
        );
    }
}
