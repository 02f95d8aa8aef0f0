//! A mock LLM provider for tests that answers in the wire formats of OpenAI, Azure OpenAI,
//! Anthropic and Google Gemini, streamed and not.
//!
//! | route | format |
//! |---|---|
//! | `POST /v1/chat/completions` | OpenAI chat completions ([`chat`]) |
//! | `POST /openai/deployments/{deployment}/chat/completions?api-version=...` | Azure OpenAI chat completions ([`azure`]) |
//! | `POST /v1/responses` | OpenAI Responses ([`responses`]) |
//! | `POST /v1/messages` | Anthropic Messages ([`anthropic`]) |
//! | `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent` | Gemini ([`gemini`]) |
//! | `POST /v1/embeddings`, `/openai/deployments/{deployment}/embeddings` | OpenAI and Azure embeddings ([`embeddings`]) |
//! | `GET /mock/requests` | [`RecordList`] of every request since the last clear |
//! | `DELETE /mock/requests` | clears the records |
//! | `GET /healthz` | 200 |
//!
//! Any other request is recorded and gets a 404 with an OpenAI error body. The `x-mock-*`
//! request headers in [`knobs`] shape each response.

pub mod anthropic;
pub mod azure;
pub mod chat;
mod chat_stream;
pub mod embeddings;
pub mod events;
pub mod gemini;
pub mod knobs;
pub mod plan;
pub mod prompt;
mod records;
pub mod request;
pub mod responses;
pub mod wire;
pub mod words;

pub use knobs::{KnobDefaults, Knobs};
pub use plan::{Plan, TokenCounts};
pub use records::{MockRecord, RecordList};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use events::EventSource;
use records::{update, RecordLog, SharedRecord};
use serde_json::Value;
use std::io::Write;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Path of the chat completions endpoint.
pub const CHAT_COMPLETIONS_PATH: &str = "/v1/chat/completions";

/// Path of the Responses endpoint.
pub const RESPONSES_PATH: &str = "/v1/responses";

/// Path of Anthropic's Messages endpoint.
pub const MESSAGES_PATH: &str = "/v1/messages";

/// Path of the embeddings endpoint.
pub const EMBEDDINGS_PATH: &str = "/v1/embeddings";

/// Path of the request records.
pub const RECORDS_PATH: &str = "/mock/requests";

/// Largest request body the mock reads, above the filter's 16 MiB default limit.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Request headers that carry an API key, in the order the mock looks for them.
const CREDENTIAL_HEADERS: [&str; 4] = ["authorization", "api-key", "x-api-key", "x-goog-api-key"];

/// Shared state of the mock server.
#[derive(Debug, Default)]
pub struct MockState {
    defaults: KnobDefaults,
    records: RecordLog,
}

/// Builds the mock provider's router with `defaults` for the per-request knobs.
pub fn router(defaults: KnobDefaults) -> Router {
    let state = Arc::new(MockState {
        defaults,
        records: RecordLog::default(),
    });
    let azure_chat = "/openai/deployments/{deployment}/chat/completions";
    let azure_embeddings = "/openai/deployments/{deployment}/embeddings";
    Router::new()
        .route(CHAT_COMPLETIONS_PATH, post(chat::chat_completions))
        .route(azure_chat, post(azure::chat_completions))
        .route(RESPONSES_PATH, post(responses::create_response))
        .route(MESSAGES_PATH, post(anthropic::create_message))
        .route("/v1beta/models/{model_action}", post(gemini::generate))
        .route(EMBEDDINGS_PATH, post(embeddings::create_embeddings))
        .route(azure_embeddings, post(azure::embeddings))
        .route(RECORDS_PATH, get(list_records).delete(clear_records))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The wire format of a response, as records name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    OpenAiChat,
    AzureChat,
    Responses,
    Anthropic,
    Gemini,
    Embeddings,
    Unknown,
}

impl Provider {
    /// Returns the name that records use.
    pub fn name(self) -> &'static str {
        match self {
            Provider::OpenAiChat => "openai_chat",
            Provider::AzureChat => "azure_chat",
            Provider::Responses => "responses",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
            Provider::Embeddings => "embeddings",
            Provider::Unknown => "unknown",
        }
    }
}

/// One request as the handlers receive it: recorded, with its knobs read.
pub struct Incoming {
    /// The request's record, which the response keeps up to date.
    pub record: SharedRecord,
    /// The body parsed as JSON.
    pub parsed: Result<Value, serde_json::Error>,
    /// The knobs, or a message naming the invalid `x-mock-*` header.
    pub knobs: Result<Knobs, String>,
    /// The request headers.
    pub headers: HeaderMap,
}

impl MockState {
    /// Records a request and reads its knobs.
    pub fn receive(
        &self,
        provider: Provider,
        uri: &Uri,
        headers: HeaderMap,
        body: &[u8],
    ) -> Incoming {
        let parsed: Result<Value, serde_json::Error> = serde_json::from_slice(body);
        let record = new_record(provider, uri, &headers, body, &parsed);
        let record = self.records.push(record);
        let knobs = Knobs::from_headers(self.defaults, &headers);
        Incoming {
            record,
            parsed,
            knobs,
            headers,
        }
    }
}

fn new_record(
    provider: Provider,
    uri: &Uri,
    headers: &HeaderMap,
    raw: &[u8],
    parsed: &Result<Value, serde_json::Error>,
) -> MockRecord {
    let body = match parsed {
        Ok(body) => body.clone(),
        Err(_) => Value::String(String::from_utf8_lossy(raw).into_owned()),
    };
    let credential = CREDENTIAL_HEADERS
        .into_iter()
        .find(|name| headers.contains_key(*name))
        .map(str::to_owned)
        .or_else(|| query_param(uri, "key").map(|_| "key".to_owned()));
    MockRecord {
        provider: provider.name().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        credential,
        model: body.get("model").and_then(Value::as_str).map(str::to_owned),
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: request::include_usage(&body),
        max_tokens_field: None,
        max_tokens_value: None,
        accept_encoding: headers
            .get(header::ACCEPT_ENCODING)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned()),
        prompt_tokens: 0,
        body,
        generated_tokens: 0,
        client_closed_early: false,
        completed: false,
        status: 0,
    }
}

/// Returns the value of query parameter `name`, without percent-decoding.
pub fn query_param<'a>(uri: &'a Uri, name: &str) -> Option<&'a str> {
    uri.query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// Returns a JSON response, gzip-compressed when the request accepts gzip or `force_gzip` is
/// set, and marks the record complete with `status`.
pub fn json_response(
    record: &SharedRecord,
    status: StatusCode,
    json: String,
    request_headers: &HeaderMap,
    force_gzip: bool,
) -> Response {
    update(record, |record| {
        record.status = status.as_u16();
        record.completed = true;
    });
    let mut response = if force_gzip || accepts_gzip(request_headers) {
        let mut response = (status, gzip(json.as_bytes())).into_response();
        let gzip_value = HeaderValue::from_static("gzip");
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, gzip_value);
        response
    } else {
        (status, json).into_response()
    };
    let json_type = HeaderValue::from_static("application/json");
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, json_type);
    response
}

/// Returns an error response with `body`, never compressed.
pub fn error_response(
    record: &SharedRecord,
    status: StatusCode,
    body: &impl serde::Serialize,
) -> Response {
    let json = events::to_json(body);
    tracing::debug!(status = status.as_u16(), body = %json, "error response");
    json_response(record, status, json, &HeaderMap::new(), false)
}

/// Returns a streamed response of `source` with `content_type`, paced and gzipped as the
/// knobs set, and marks the record's status 200.
pub fn stream_response(
    record: &SharedRecord,
    source: impl EventSource,
    knobs: &Knobs,
    content_type: &'static str,
) -> Response {
    update(record, |record| record.status = 200);
    let body = events::stream_body(
        source,
        knobs.chunk_delay,
        Arc::clone(record),
        knobs.force_gzip,
    );
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if knobs.force_gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(',')
                .any(|coding| coding.trim().starts_with("gzip"))
        })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// Sets response headers, skipping any value that is not a valid header value.
pub fn set_headers(headers: &mut HeaderMap, values: &[(&'static str, String)]) {
    for (name, value) in values {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(*name, value);
        }
    }
}

/// Returns the current Unix time in seconds.
pub fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

async fn list_records(State(state): State<Arc<MockState>>) -> Json<RecordList> {
    Json(RecordList {
        requests: state.records.snapshot(),
    })
}

async fn clear_records(State(state): State<Arc<MockState>>) -> Json<Value> {
    let cleared = state.records.clear();
    Json(serde_json::json!({ "cleared": cleared }))
}

async fn unknown_route(
    State(state): State<Arc<MockState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let incoming = state.receive(Provider::Unknown, &uri, headers, &body);
    let message = format!("Invalid URL ({method} {}).", uri.path());
    let detail = chat::invalid_request(message, None, None);
    error_response(
        &incoming.record,
        StatusCode::NOT_FOUND,
        &chat::error_body(detail),
    )
}

/// A small xorshift generator for ids and padding; not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    const ALPHANUMERIC: &'static [u8] =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

    /// Seeds a generator from the operating system, or from the clock if that fails.
    pub fn new() -> Rng {
        let mut seed = [0u8; 8];
        let seed = match getrandom::fill(&mut seed) {
            Ok(()) => u64::from_le_bytes(seed),
            Err(_) => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|elapsed| elapsed.as_nanos() as u64)
                .unwrap_or(1),
        };
        // xorshift never leaves the all-zero state, so the seed must not be zero.
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Returns a number below `bound`, which must be above zero.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    /// Returns `length` random letters and digits.
    pub fn alphanumeric(&mut self, length: usize) -> String {
        let alphabet = Self::ALPHANUMERIC;
        (0..length)
            .map(|_| alphabet[self.below(alphabet.len() as u64) as usize] as char)
            .collect()
    }

    /// Returns `length` random lowercase hex digits.
    pub fn hex(&mut self, length: usize) -> String {
        (0..length)
            .map(|_| char::from_digit(self.below(16) as u32, 16).unwrap_or('0'))
            .collect()
    }
}

impl Default for Rng {
    fn default() -> Rng {
        Rng::new()
    }
}
