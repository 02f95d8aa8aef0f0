//! The `x-mock-*` request headers that shape one response, with their defaults.
//!
//! | header | value | effect |
//! |---|---|---|
//! | `x-mock-output-tokens` | count | visible output tokens per choice before the request's maximum applies |
//! | `x-mock-tokens-per-chunk` | count, at least 1 | output tokens per streamed event per choice |
//! | `x-mock-chunk-delay-ms` | milliseconds | pause before each streamed output event |
//! | `x-mock-response-delay-ms` | milliseconds | OpenAI chat: pause before any response, as a slow provider does |
//! | `x-mock-ignore-max-tokens` | flag | keep generating past the request's maximum |
//! | `x-mock-status` | 400..=599 | return this error status in the provider's format and generate nothing |
//! | `x-mock-no-usage` | flag | leave usage out, as some compatible servers do |
//! | `x-mock-cached-tokens` | count | prompt tokens read from the provider's cache |
//! | `x-mock-cache-write-5m-tokens` | count | prompt tokens written to a 5-minute cache (Anthropic) |
//! | `x-mock-cache-write-1h-tokens` | count | prompt tokens written to a 1-hour cache (Anthropic) |
//! | `x-mock-reasoning-tokens` | count | reasoning tokens per choice; also read from `x-mock-thinking-tokens` and `x-mock-thoughts-tokens` |
//! | `x-mock-audio-prompt-tokens` | count | audio input tokens, added to the prompt (OpenAI chat) |
//! | `x-mock-audio-completion-tokens` | count | audio output tokens per choice (OpenAI chat) |
//! | `x-mock-tool-calls` | flag | the output is tool call arguments instead of text |
//! | `x-mock-refusal` | flag | the output is a refusal instead of text (OpenAI chat) |
//! | `x-mock-late-usage` | flag | Anthropic stream: `message_start` reports zero usage, `message_delta` the real numbers |
//! | `x-mock-error-after-tokens` | count | a 200 stream ends with the provider's in-stream error after this many output tokens; also read from `x-mock-fail-after-tokens` |
//! | `x-mock-echo-bytes` | bytes | Responses stream: pad the echoed `instructions` so the terminal event is this long |
//! | `x-mock-force-gzip` | flag | gzip the response even when the request did not accept gzip |
//!
//! A flag is `true`, `false`, `1` or `0`. Each provider reads the knobs that exist in its format
//! and ignores the others.

use axum::http::{HeaderMap, StatusCode};
use std::time::Duration;

/// Header that delays the whole response of an OpenAI chat request.
pub const RESPONSE_DELAY_HEADER: &str = "x-mock-response-delay-ms";

/// Returns the response delay a request asks for, if any.
pub fn response_delay(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RESPONSE_DELAY_HEADER)?.to_str().ok()?;
    value.trim().parse().ok().map(Duration::from_millis)
}

/// Header that sets how many output tokens each choice generates.
pub const OUTPUT_TOKENS_HEADER: &str = "x-mock-output-tokens";
/// Header that sets how many tokens each streamed event carries per choice.
pub const TOKENS_PER_CHUNK_HEADER: &str = "x-mock-tokens-per-chunk";
/// Header that sets the pause before each streamed content event, in milliseconds.
pub const CHUNK_DELAY_HEADER: &str = "x-mock-chunk-delay-ms";
/// Header that, set to `true`, keeps generating past the request's maximum.
pub const IGNORE_MAX_TOKENS_HEADER: &str = "x-mock-ignore-max-tokens";
/// Header that makes the mock return this error status and generate nothing.
pub const STATUS_HEADER: &str = "x-mock-status";
/// Header that, set to `true`, leaves usage out of the response.
pub const NO_USAGE_HEADER: &str = "x-mock-no-usage";
/// Header that sets the prompt tokens read from the provider's cache.
pub const CACHED_TOKENS_HEADER: &str = "x-mock-cached-tokens";
/// Header that sets the prompt tokens written to a cache that lives 5 minutes.
pub const CACHE_WRITE_5M_HEADER: &str = "x-mock-cache-write-5m-tokens";
/// Header that sets the prompt tokens written to a cache that lives 1 hour.
pub const CACHE_WRITE_1H_HEADER: &str = "x-mock-cache-write-1h-tokens";
/// Headers that set the reasoning tokens per choice, in each provider's term. The first
/// present wins.
pub const REASONING_TOKENS_HEADERS: [&str; 3] = [
    "x-mock-reasoning-tokens",
    "x-mock-thinking-tokens",
    "x-mock-thoughts-tokens",
];
/// Header that sets the audio input tokens.
pub const AUDIO_PROMPT_TOKENS_HEADER: &str = "x-mock-audio-prompt-tokens";
/// Header that sets the audio output tokens per choice.
pub const AUDIO_COMPLETION_TOKENS_HEADER: &str = "x-mock-audio-completion-tokens";
/// Header that, set to `true`, makes the output tool call arguments.
pub const TOOL_CALLS_HEADER: &str = "x-mock-tool-calls";
/// Header that, set to `true`, makes the output a refusal.
pub const REFUSAL_HEADER: &str = "x-mock-refusal";
/// Header that, set to `true`, moves Anthropic's stream usage to `message_delta`.
pub const LATE_USAGE_HEADER: &str = "x-mock-late-usage";
/// Headers that end a stream with an in-stream error after this many output tokens. The
/// first present wins.
pub const ERROR_AFTER_TOKENS_HEADERS: [&str; 2] =
    ["x-mock-error-after-tokens", "x-mock-fail-after-tokens"];
/// Header that sets the size of the Responses stream's terminal event, in bytes.
pub const ECHO_BYTES_HEADER: &str = "x-mock-echo-bytes";
/// Header that, set to `true`, gzips the response whatever the request accepts.
pub const FORCE_GZIP_HEADER: &str = "x-mock-force-gzip";

/// Defaults of the per-request knobs, set on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnobDefaults {
    /// Output tokens per choice.
    pub output_tokens: u64,
    /// Tokens per streamed event per choice; at least 1.
    pub tokens_per_chunk: u64,
    /// Pause before each streamed content event.
    pub chunk_delay: Duration,
}

impl Default for KnobDefaults {
    fn default() -> KnobDefaults {
        KnobDefaults {
            output_tokens: 20,
            tokens_per_chunk: 1,
            chunk_delay: Duration::ZERO,
        }
    }
}

/// How the mock responds to one request, from the defaults and the `x-mock-*` headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knobs {
    /// Visible output tokens per choice before the request's maximum applies.
    pub output_tokens: u64,
    /// Tokens per streamed event per choice; at least 1.
    pub tokens_per_chunk: u64,
    /// Pause before each streamed content event.
    pub chunk_delay: Duration,
    /// Keep generating past the request's maximum.
    pub ignore_max_tokens: bool,
    /// Error status to return in place of a completion.
    pub status: Option<StatusCode>,
    /// Leave usage out of the response, as some compatible servers do.
    pub no_usage: bool,
    /// Prompt tokens read from the cache; at most the prompt.
    pub cached_tokens: u64,
    /// Prompt tokens written to a 5-minute cache; at most what the cache read left.
    pub cache_write_5m_tokens: u64,
    /// Prompt tokens written to a 1-hour cache; at most what the other parts left.
    pub cache_write_1h_tokens: u64,
    /// Reasoning tokens per choice, counted against the request's maximum first.
    pub reasoning_tokens: u64,
    /// Audio input tokens, added to the text prompt.
    pub audio_prompt_tokens: u64,
    /// Audio output tokens per choice, never streamed as text.
    pub audio_completion_tokens: u64,
    /// The output is tool call arguments.
    pub tool_calls: bool,
    /// The output is a refusal.
    pub refusal: bool,
    /// Anthropic stream: zero usage in `message_start`.
    pub late_usage: bool,
    /// Output tokens after which a stream ends with the provider's in-stream error.
    pub error_after_tokens: Option<u64>,
    /// Size of the Responses stream's terminal event, in bytes.
    pub echo_bytes: Option<u64>,
    /// Gzip the response whatever the request accepts.
    pub force_gzip: bool,
}

impl Knobs {
    /// Reads the knobs from `headers`, or returns a message naming the invalid header.
    pub fn from_headers(defaults: KnobDefaults, headers: &HeaderMap) -> Result<Knobs, String> {
        let reader = HeaderReader(headers);
        let tokens_per_chunk = reader.number(TOKENS_PER_CHUNK_HEADER, defaults.tokens_per_chunk)?;
        if tokens_per_chunk == 0 {
            return Err(format!(
                "header {TOKENS_PER_CHUNK_HEADER} must be at least 1"
            ));
        }
        let delay_default = u64::try_from(defaults.chunk_delay.as_millis()).unwrap_or(u64::MAX);
        Ok(Knobs {
            output_tokens: reader.number(OUTPUT_TOKENS_HEADER, defaults.output_tokens)?,
            tokens_per_chunk,
            chunk_delay: Duration::from_millis(reader.number(CHUNK_DELAY_HEADER, delay_default)?),
            ignore_max_tokens: reader.flag(IGNORE_MAX_TOKENS_HEADER)?,
            status: error_status(headers)?,
            no_usage: reader.flag(NO_USAGE_HEADER)?,
            cached_tokens: reader.number(CACHED_TOKENS_HEADER, 0)?,
            cache_write_5m_tokens: reader.number(CACHE_WRITE_5M_HEADER, 0)?,
            cache_write_1h_tokens: reader.number(CACHE_WRITE_1H_HEADER, 0)?,
            reasoning_tokens: reader.first_number(&REASONING_TOKENS_HEADERS)?.unwrap_or(0),
            audio_prompt_tokens: reader.number(AUDIO_PROMPT_TOKENS_HEADER, 0)?,
            audio_completion_tokens: reader.number(AUDIO_COMPLETION_TOKENS_HEADER, 0)?,
            tool_calls: reader.flag(TOOL_CALLS_HEADER)?,
            refusal: reader.flag(REFUSAL_HEADER)?,
            late_usage: reader.flag(LATE_USAGE_HEADER)?,
            error_after_tokens: reader.first_number(&ERROR_AFTER_TOKENS_HEADERS)?,
            echo_bytes: reader.first_number(&[ECHO_BYTES_HEADER])?,
            force_gzip: reader.flag(FORCE_GZIP_HEADER)?,
        })
    }
}

struct HeaderReader<'a>(&'a HeaderMap);

impl HeaderReader<'_> {
    fn text(&self, name: &str) -> Result<Option<&str>, String> {
        header_text(self.0, name)
    }

    fn number(&self, name: &str, default: u64) -> Result<u64, String> {
        Ok(self.first_number(&[name])?.unwrap_or(default))
    }

    /// Returns the value of the first of `names` that is present.
    fn first_number(&self, names: &[&str]) -> Result<Option<u64>, String> {
        for name in names {
            if let Some(text) = self.text(name)? {
                let number = text.trim().parse().map_err(|_| {
                    format!("header {name} must be a non-negative integer, found {text:?}")
                })?;
                return Ok(Some(number));
            }
        }
        Ok(None)
    }

    fn flag(&self, name: &str) -> Result<bool, String> {
        match self.text(name)? {
            None => Ok(false),
            Some(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(format!(
                    "header {name} must be true or false, found {text:?}"
                )),
            },
        }
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(Some)
            .map_err(|_| format!("header {name} must be visible ASCII")),
    }
}

fn error_status(headers: &HeaderMap) -> Result<Option<StatusCode>, String> {
    let Some(text) = header_text(headers, STATUS_HEADER)? else {
        return Ok(None);
    };
    let status = text
        .trim()
        .parse::<u16>()
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
        .filter(|status| status.is_client_error() || status.is_server_error());
    match status {
        Some(status) => Ok(Some(status)),
        None => Err(format!(
            "header {STATUS_HEADER} must be a status from 400 to 599, found {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn knobs_default_without_headers() {
        let knobs = Knobs::from_headers(KnobDefaults::default(), &HeaderMap::new()).unwrap();
        assert_eq!(knobs.output_tokens, 20);
        assert_eq!(knobs.tokens_per_chunk, 1);
        assert_eq!(knobs.status, None);
        assert!(!knobs.ignore_max_tokens);
        assert_eq!(knobs.error_after_tokens, None);
        assert!(!knobs.force_gzip);
    }

    #[test]
    fn knobs_read_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(OUTPUT_TOKENS_HEADER, HeaderValue::from_static("500"));
        headers.insert(CHUNK_DELAY_HEADER, HeaderValue::from_static("20"));
        headers.insert(IGNORE_MAX_TOKENS_HEADER, HeaderValue::from_static("true"));
        headers.insert(STATUS_HEADER, HeaderValue::from_static("429"));
        headers.insert(CACHED_TOKENS_HEADER, HeaderValue::from_static("7"));
        headers.insert(FORCE_GZIP_HEADER, HeaderValue::from_static("1"));
        let knobs = Knobs::from_headers(KnobDefaults::default(), &headers).unwrap();
        assert_eq!(knobs.output_tokens, 500);
        assert_eq!(knobs.chunk_delay, Duration::from_millis(20));
        assert!(knobs.ignore_max_tokens);
        assert_eq!(knobs.status, Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(knobs.cached_tokens, 7);
        assert!(knobs.force_gzip);
    }

    #[test]
    fn provider_terms_set_reasoning_tokens() {
        for name in REASONING_TOKENS_HEADERS {
            let mut headers = HeaderMap::new();
            headers.insert(name, HeaderValue::from_static("12"));
            let knobs = Knobs::from_headers(KnobDefaults::default(), &headers).unwrap();
            assert_eq!(knobs.reasoning_tokens, 12, "header {name}");
        }
    }

    #[test]
    fn fail_after_sets_error_after() {
        let mut headers = HeaderMap::new();
        headers.insert("x-mock-fail-after-tokens", HeaderValue::from_static("3"));
        let knobs = Knobs::from_headers(KnobDefaults::default(), &headers).unwrap();
        assert_eq!(knobs.error_after_tokens, Some(3));
    }

    #[test]
    fn knob_errors_name_the_header() {
        let mut headers = HeaderMap::new();
        headers.insert(STATUS_HEADER, HeaderValue::from_static("200"));
        let error = Knobs::from_headers(KnobDefaults::default(), &headers).unwrap_err();
        assert!(error.contains(STATUS_HEADER), "{error}");
        let mut headers = HeaderMap::new();
        headers.insert(TOKENS_PER_CHUNK_HEADER, HeaderValue::from_static("0"));
        let error = Knobs::from_headers(KnobDefaults::default(), &headers).unwrap_err();
        assert!(error.contains(TOKENS_PER_CHUNK_HEADER), "{error}");
        let mut headers = HeaderMap::new();
        headers.insert(REFUSAL_HEADER, HeaderValue::from_static("maybe"));
        let error = Knobs::from_headers(KnobDefaults::default(), &headers).unwrap_err();
        assert!(error.contains(REFUSAL_HEADER), "{error}");
    }
}
