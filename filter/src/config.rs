//! Plugin configuration: parsed and checked once in `on_configure`.

use crate::identity::{Scope, ScopeSource};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Behaviour of the filter when the sidecar does not respond in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureMode {
    /// Reject the request with 503: no budget decision, no spend.
    FailClosed,
    /// Let the request through uncharged and log a warning.
    FailOpen,
}

/// Checked plugin configuration. Every default is set in [`RawConfig::default`] and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Envoy cluster of the sidecar.
    pub sidecar_cluster: String,
    /// `:authority` sent on callouts to the sidecar.
    pub sidecar_authority: String,
    /// Longest wait for a reserve response before the failure mode applies.
    pub sidecar_timeout: Duration,
    /// Behaviour when the sidecar does not respond.
    pub failure_mode: FailureMode,
    /// Request headers that carry the caller's identity, tried in order; lower case.
    pub identity_headers: Vec<String>,
    /// Query parameters that carry the identity (Gemini's `key`), tried after the headers.
    pub identity_query_parameters: Vec<String>,
    /// Replace the identity by its SHA-256 (lower-case hex) before it names a budget.
    pub hash_identity: bool,
    /// Budget charged when a request carries no identity; `None` rejects such requests with 401.
    pub default_budget: Option<String>,
    /// Largest request body accepted, in bytes.
    pub max_request_body_bytes: usize,
    /// Largest non-streamed response body copied to read its usage, in bytes.
    pub max_response_body_bytes: usize,
    /// Output tokens per choice reserved (and written into the body) when the client sets none.
    pub default_max_output_tokens: u64,
    /// Fewest output tokens per choice worth sending a request for when the budget is short.
    pub min_output_tokens: u64,
    /// Lifetime of a reservation that receives no settle.
    pub lease_timeout: Duration,
    /// Root-context timer that sends queued settles and resets severed streams.
    pub tick_period: Duration,
    /// Tokens counted for one image in a prompt (high detail, worst case of common sizes).
    pub image_tokens: u64,
    /// Let POST requests to endpoints the filter does not meter pass uncharged.
    pub allow_unmetered_paths: bool,
    /// Percent added to prompt estimates for Anthropic and Gemini, whose tokenizers differ
    /// from tiktoken.
    pub estimate_margin_percent: u64,
    /// Azure deployment name to the model name the pricing file lists.
    pub azure_deployments: BTreeMap<String, String>,
    /// Budget scopes that contain the identity's budget, from the nearest to the root; none
    /// by default. The last scope present in a request names its hierarchy.
    pub scopes: Vec<Scope>,
    /// Loop breaker, or `None` (the default) to send no loop check.
    pub loop_breaker: Option<LoopBreaker>,
}

/// Loop breaker: the same body from the same identity more than `max_repeats` times within
/// `window` gets 429 before any money is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopBreaker {
    /// Identical bodies allowed within the window.
    pub max_repeats: u64,
    /// Length of the sliding window.
    pub window: Duration,
}

/// One entry of `scopes` as written: exactly one of `header` and `value`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawScope {
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    hash: bool,
    #[serde(default)]
    prefix: String,
}

/// `loopBreaker` as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawLoopBreaker {
    max_repeats: u64,
    window: String,
}

/// The JSON document as written in the Envoy configuration.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct RawConfig {
    sidecar_cluster: String,
    sidecar_authority: String,
    sidecar_timeout: String,
    failure_mode: FailureMode,
    identity_headers: Vec<String>,
    identity_query_parameters: Vec<String>,
    hash_identity: bool,
    default_budget: Option<String>,
    max_request_body_bytes: usize,
    max_response_body_bytes: usize,
    default_max_output_tokens: u64,
    min_output_tokens: u64,
    lease_timeout: String,
    tick_period: String,
    image_tokens: u64,
    allow_unmetered_paths: bool,
    estimate_margin_percent: u64,
    azure_deployments: BTreeMap<String, String>,
    scopes: Vec<RawScope>,
    loop_breaker: Option<RawLoopBreaker>,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            sidecar_cluster: "spendfuse_sidecar".into(),
            sidecar_authority: "spendfuse-sidecar".into(),
            sidecar_timeout: "50ms".into(),
            failure_mode: FailureMode::FailClosed,
            identity_headers: vec![
                "authorization".into(),
                "x-api-key".into(),
                "api-key".into(),
                "x-goog-api-key".into(),
            ],
            identity_query_parameters: vec!["key".into()],
            hash_identity: true,
            default_budget: None,
            max_request_body_bytes: 16 * 1024 * 1024,
            max_response_body_bytes: 16 * 1024 * 1024,
            default_max_output_tokens: 4096,
            min_output_tokens: 16,
            lease_timeout: "15m".into(),
            tick_period: "50ms".into(),
            image_tokens: 1105,
            allow_unmetered_paths: false,
            estimate_margin_percent: 25,
            azure_deployments: BTreeMap::new(),
            scopes: Vec::new(),
            loop_breaker: None,
        }
    }
}

/// Checks `scopes` and returns them in the same order.
fn parse_scopes(raw: &[RawScope]) -> Result<Vec<Scope>, String> {
    let mut scopes = Vec::with_capacity(raw.len());
    for (index, scope) in raw.iter().enumerate() {
        let source = match (&scope.header, &scope.value) {
            (Some(header), None) if !header.is_empty() => ScopeSource::Header {
                name: header.to_ascii_lowercase(),
                hash: scope.hash,
            },
            (None, Some(value)) if !value.is_empty() && !scope.hash => {
                ScopeSource::Value(value.clone())
            }
            _ => {
                return Err(format!(
                    "scopes[{index}] must set exactly one of a non-empty \"header\" or \"value\", \
                     and \"hash\" only with \"header\""
                ))
            }
        };
        scopes.push(Scope {
            source,
            prefix: scope.prefix.clone(),
        });
    }
    // The sidecar accepts 8 scopes per request, and the identity's budget is one of them.
    if scopes.len() > 7 {
        return Err(format!(
            "scopes has {} entries: list at most 7 enclosing scopes",
            scopes.len()
        ));
    }
    Ok(scopes)
}

/// Checks `loopBreaker`.
fn parse_loop_breaker(raw: &RawLoopBreaker) -> Result<LoopBreaker, String> {
    let window = parse_duration("loopBreaker.window", &raw.window)?;
    if raw.max_repeats == 0 || window.is_zero() {
        return Err(
            "loopBreaker needs maxRepeats of at least 1 and a positive window such as \"10s\""
                .into(),
        );
    }
    Ok(LoopBreaker {
        max_repeats: raw.max_repeats,
        window,
    })
}

/// Parses the plugin configuration. An empty document gives every default.
pub fn parse(bytes: &[u8]) -> Result<Config, String> {
    let raw: RawConfig = if bytes.iter().all(u8::is_ascii_whitespace) {
        RawConfig::default()
    } else {
        serde_json::from_slice(bytes).map_err(|e| format!("invalid plugin configuration: {e}"))?
    };
    let sidecar_timeout = parse_duration("sidecarTimeout", &raw.sidecar_timeout)?;
    let lease_timeout = parse_duration("leaseTimeout", &raw.lease_timeout)?;
    let tick_period = parse_duration("tickPeriod", &raw.tick_period)?;
    check(&raw, sidecar_timeout, lease_timeout, tick_period)?;

    let scopes = parse_scopes(&raw.scopes)?;
    let loop_breaker = raw
        .loop_breaker
        .as_ref()
        .map(parse_loop_breaker)
        .transpose()?;
    Ok(Config {
        scopes,
        loop_breaker,
        sidecar_cluster: raw.sidecar_cluster,
        sidecar_authority: raw.sidecar_authority,
        sidecar_timeout,
        failure_mode: raw.failure_mode,
        identity_headers: raw
            .identity_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        identity_query_parameters: raw.identity_query_parameters,
        hash_identity: raw.hash_identity,
        default_budget: raw.default_budget,
        max_request_body_bytes: raw.max_request_body_bytes,
        max_response_body_bytes: raw.max_response_body_bytes,
        default_max_output_tokens: raw.default_max_output_tokens,
        min_output_tokens: raw.min_output_tokens,
        lease_timeout,
        tick_period,
        image_tokens: raw.image_tokens,
        allow_unmetered_paths: raw.allow_unmetered_paths,
        estimate_margin_percent: raw.estimate_margin_percent,
        azure_deployments: raw.azure_deployments,
    })
}

/// Checks the values of `raw` that serde cannot, naming the field and the fix.
fn check(
    raw: &RawConfig,
    sidecar_timeout: Duration,
    lease_timeout: Duration,
    tick_period: Duration,
) -> Result<(), String> {
    if raw.sidecar_cluster.is_empty() {
        return Err("sidecarCluster is empty: set it to the Envoy cluster of the sidecar".into());
    }
    if sidecar_timeout.is_zero() {
        return Err("sidecarTimeout is 0: set a positive duration such as \"50ms\"".into());
    }
    if lease_timeout < Duration::from_secs(1) {
        return Err(
            "leaseTimeout is under 1s: set it above the longest request, such as \"15m\"".into(),
        );
    }
    if tick_period.is_zero() || tick_period > Duration::from_secs(1) {
        return Err("tickPeriod must be between 1ms and 1s, such as \"50ms\"".into());
    }
    let no_identity = raw.identity_headers.is_empty() && raw.identity_query_parameters.is_empty();
    if no_identity && raw.default_budget.is_none() {
        return Err(
            "identityHeaders, identityQueryParameters and defaultBudget are all unset: set one"
                .into(),
        );
    }
    if raw.estimate_margin_percent > 1000 {
        return Err(format!(
            "estimateMarginPercent is {}: set a percent from 0 to 1000, such as 25",
            raw.estimate_margin_percent
        ));
    }
    if raw.default_max_output_tokens == 0 {
        return Err(
            "defaultMaxOutputTokens is 0: set the output tokens to reserve, such as 4096".into(),
        );
    }
    if raw.min_output_tokens == 0 || raw.min_output_tokens > raw.default_max_output_tokens {
        return Err(format!(
            "minOutputTokens is {}: set it between 1 and defaultMaxOutputTokens ({})",
            raw.min_output_tokens, raw.default_max_output_tokens
        ));
    }
    if raw.max_request_body_bytes == 0 {
        return Err("maxRequestBodyBytes is 0: set a size in bytes, such as 16777216".into());
    }
    if let Some(name) = &raw.default_budget {
        let invalid = name.is_empty()
            || name.len() > 256
            || name.chars().any(|c| c == '{' || c == '}' || c.is_control());
        if invalid {
            return Err(format!(
                "defaultBudget \"{name}\" is invalid: use 1 to 256 bytes without braces or control characters"
            ));
        }
    }
    if raw
        .identity_headers
        .iter()
        .chain(&raw.identity_query_parameters)
        .any(|name| name.trim().is_empty())
    {
        return Err(
            "identityHeaders or identityQueryParameters has an empty name: remove it".into(),
        );
    }
    Ok(())
}

/// Parses a duration such as `"50ms"`, `"2s"` or `"15m"`.
pub fn parse_duration(field: &str, text: &str) -> Result<Duration, String> {
    let invalid =
        || format!("{field} is \"{text}\": write a whole number with ms, s or m, such as \"50ms\"");
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => return Err(invalid()),
    };
    let value: u64 = digits.parse().map_err(|_| invalid())?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => value
            .checked_mul(60)
            .map(Duration::from_secs)
            .ok_or_else(invalid),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_document_gives_defaults() {
        let config = parse(b"").unwrap();
        assert_eq!(config.sidecar_timeout, Duration::from_millis(50));
        assert_eq!(config.failure_mode, FailureMode::FailClosed);
        assert_eq!(config.max_request_body_bytes, 16 * 1024 * 1024);
    }

    #[test]
    fn fail_open_is_parsed() {
        let config = parse(br#"{"failureMode": "failOpen"}"#).unwrap();
        assert_eq!(config.failure_mode, FailureMode::FailOpen);
    }

    #[test]
    fn unknown_field_is_rejected() {
        let error = parse(br#"{"sidecarTimout": "50ms"}"#).unwrap_err();
        assert!(error.contains("sidecarTimout"), "{error}");
    }

    #[test]
    fn bad_duration_names_the_field() {
        let error = parse(br#"{"sidecarTimeout": "fast"}"#).unwrap_err();
        assert!(error.starts_with("sidecarTimeout"), "{error}");
    }

    #[test]
    fn duration_units() {
        assert_eq!(parse_duration("f", "20ms"), Ok(Duration::from_millis(20)));
        assert_eq!(parse_duration("f", "2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("f", "15m"), Ok(Duration::from_secs(900)));
        assert!(parse_duration("f", "15").is_err());
        assert!(parse_duration("f", "ms").is_err());
        assert!(parse_duration("f", "1h").is_err());
    }

    #[test]
    fn default_budget_with_brace_is_rejected() {
        let error = parse(br#"{"defaultBudget": "a{b}"}"#).unwrap_err();
        assert!(error.starts_with("defaultBudget"), "{error}");
    }

    #[test]
    fn empty_identity_header_is_rejected() {
        let error = parse(br#"{"identityHeaders": [""]}"#).unwrap_err();
        assert!(error.contains("empty name"), "{error}");
    }

    #[test]
    fn query_identity_alone_is_enough() {
        let config = parse(br#"{"identityHeaders": [], "identityQueryParameters": ["key"]}"#);
        assert!(config.is_ok(), "{config:?}");
    }

    #[test]
    fn huge_estimate_margin_is_rejected() {
        let error = parse(br#"{"estimateMarginPercent": 5000}"#).unwrap_err();
        assert!(error.starts_with("estimateMarginPercent"), "{error}");
    }

    #[test]
    fn min_above_default_max_is_rejected() {
        let error = parse(br#"{"minOutputTokens": 5000}"#).unwrap_err();
        assert!(error.contains("minOutputTokens"), "{error}");
    }

    #[test]
    fn scopes_and_loop_breaker_parse() {
        let config = parse(
            br#"{"scopes": [{"header": "X-Team", "prefix": "team:"}, {"value": "acme"}],
                "loopBreaker": {"maxRepeats": 3, "window": "10s"}}"#,
        )
        .unwrap();
        assert_eq!(
            config.scopes[0].source,
            ScopeSource::Header {
                name: "x-team".into(),
                hash: false
            }
        );
        assert_eq!(config.scopes[1].source, ScopeSource::Value("acme".into()));
        assert_eq!(
            config.loop_breaker,
            Some(LoopBreaker {
                max_repeats: 3,
                window: Duration::from_secs(10)
            })
        );
    }

    #[test]
    fn scope_with_header_and_value_is_rejected() {
        let error = parse(br#"{"scopes": [{"header": "x-team", "value": "a"}]}"#).unwrap_err();
        assert!(error.starts_with("scopes[0]"), "{error}");
    }

    #[test]
    fn loop_breaker_of_zero_is_rejected() {
        let error = parse(br#"{"loopBreaker": {"maxRepeats": 0, "window": "1s"}}"#).unwrap_err();
        assert!(error.contains("maxRepeats"), "{error}");
    }

    #[test]
    fn shipped_envoy_config_parses() {
        let yaml = include_str!("../../envoy/envoy.yaml");
        let start = yaml.find("value: |").unwrap() + "value: |".len();
        let end = yaml[start..].find("vm_config:").unwrap() + start;
        parse(&yaml.as_bytes()[start..end]).unwrap();
    }
}
