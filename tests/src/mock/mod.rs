//! An OpenAI-compatible chat completions server for tests, in OpenAI's wire format.
//!
//! | route | response |
//! |---|---|
//! | `POST /v1/chat/completions` | a `chat.completion`, or `chat.completion.chunk` events with `stream: true` |
//! | `GET /mock/requests` | [`RecordList`] of every request since the last clear |
//! | `DELETE /mock/requests` | clears the records |
//! | `GET /healthz` | 200 |
//!
//! Any other request is recorded and gets a 404 with an OpenAI error body. The `x-mock-*`
//! request headers in [`request`] shape each response.

mod records;
pub mod request;
mod stream;
pub mod wire;
pub mod words;

pub use records::{MockRecord, RecordList};
pub use request::KnobDefaults;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use records::{update, RecordLog, SharedRecord};
use request::{ChatRequest, InvalidRequest, Knobs};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use wire::{AssistantMessage, ChatCompletion, CompletionChoice, ErrorBody, ErrorDetail, Usage};

/// Path of the chat completions endpoint.
pub const CHAT_COMPLETIONS_PATH: &str = "/v1/chat/completions";

/// Path of the request records.
pub const RECORDS_PATH: &str = "/mock/requests";

/// Largest request body the mock reads, above the filter's 16 MiB default limit.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

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
    Router::new()
        .route(CHAT_COMPLETIONS_PATH, post(chat_completions))
        .route(RECORDS_PATH, get(list_records).delete(clear_records))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Output that one request generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Number of choices.
    pub choices: u64,
    /// Output tokens of each choice.
    pub tokens_per_choice: u64,
    /// `length` when the request's maximum cut the output, else `stop`.
    pub finish_reason: &'static str,
}

impl Plan {
    /// Applies the request's maximum to the output that the knobs request, unless
    /// `ignore_max_tokens` is set.
    pub fn new(request: &ChatRequest, knobs: &Knobs) -> Plan {
        let max = request.max_tokens.map(|(_, value)| value);
        let (tokens_per_choice, finish_reason) = match max {
            Some(max) if !knobs.ignore_max_tokens && knobs.output_tokens > max => (max, "length"),
            _ => (knobs.output_tokens, "stop"),
        };
        Plan {
            choices: request.choices,
            tokens_per_choice,
            finish_reason,
        }
    }

    /// Output tokens over all choices.
    pub fn total_tokens(&self) -> u64 {
        self.choices.saturating_mul(self.tokens_per_choice)
    }
}

async fn chat_completions(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let parsed: Result<Value, serde_json::Error> = serde_json::from_slice(&body);
    let record = state
        .records
        .push(new_record(CHAT_COMPLETIONS_PATH, &headers, &body, &parsed));

    let knobs = match Knobs::from_headers(state.defaults, &headers) {
        Ok(knobs) => knobs,
        Err(message) => {
            let detail = invalid_request(message, None, Some("invalid_mock_header"));
            return error_response(&record, StatusCode::BAD_REQUEST, detail);
        }
    };
    let model = parsed
        .as_ref()
        .ok()
        .and_then(|body| body.get("model"))
        .and_then(Value::as_str);
    if let Some(status) = knobs.status {
        let detail = status_error(status, model.unwrap_or("this model"));
        return error_response(&record, status, detail);
    }

    let body = match parsed {
        Ok(body) => body,
        Err(error) => {
            let message = format!("The request body is not valid JSON ({error}).");
            let detail = invalid_request(message, None, None);
            return error_response(&record, StatusCode::BAD_REQUEST, detail);
        }
    };
    let request = match request::parse_chat_request(&body) {
        Ok(request) => request,
        Err(InvalidRequest {
            message,
            param,
            code,
        }) => {
            let detail = invalid_request(message, param, code);
            return error_response(&record, StatusCode::BAD_REQUEST, detail);
        }
    };

    let plan = Plan::new(&request, &knobs);
    let prompt_tokens = crate::tokens::request_prompt_tokens(&body);
    tracing::debug!(model = %request.model, stream = request.stream, ?plan, "chat completion");
    let header = stream::StreamHeader {
        id: format!("chatcmpl-{}", Rng::new().alphanumeric(29)),
        created: unix_seconds(),
        model: wire::snapshot_name(&request.model).to_owned(),
        service_tier: request.service_tier.clone(),
        system_fingerprint: fingerprint(&request.model),
    };
    let mut response = if request.stream {
        let shape = stream::StreamShape {
            tokens_per_chunk: knobs.tokens_per_chunk,
            chunk_delay: knobs.chunk_delay,
            usage_field: request.include_usage && !knobs.no_usage,
            obfuscation: request.include_obfuscation,
        };
        stream_response(&record, header, plan, shape, prompt_tokens)
    } else {
        let usage = (!knobs.no_usage).then(|| Usage::new(prompt_tokens, plan.total_tokens()));
        complete(&record, &header, &plan, usage, &headers)
    };
    add_api_headers(response.headers_mut(), started);
    response
}

/// Builds the streamed response, whose body produces events as the client reads them.
fn stream_response(
    record: &SharedRecord,
    header: stream::StreamHeader,
    plan: Plan,
    shape: stream::StreamShape,
    prompt_tokens: u64,
) -> Response {
    update(record, |record| record.status = 200);
    let events = stream::events(header, plan, shape, prompt_tokens, Arc::clone(record));
    let mut response = Body::from_stream(events).into_response();
    let content_type = HeaderValue::from_static("text/event-stream; charset=utf-8");
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
}

/// Builds the non-streamed response, gzip-compressed when the client accepts gzip.
fn complete(
    record: &SharedRecord,
    header: &stream::StreamHeader,
    plan: &Plan,
    usage: Option<Usage>,
    request_headers: &HeaderMap,
) -> Response {
    let choices = (0..plan.choices)
        .map(|index| CompletionChoice {
            index,
            message: AssistantMessage {
                role: "assistant",
                content: words::text(index, 0, plan.tokens_per_choice),
                refusal: None,
                annotations: [],
            },
            logprobs: None,
            finish_reason: plan.finish_reason,
        })
        .collect();
    let completion = ChatCompletion {
        id: &header.id,
        object: wire::COMPLETION_OBJECT,
        created: header.created,
        model: &header.model,
        choices,
        usage,
        service_tier: &header.service_tier,
        system_fingerprint: header.system_fingerprint.as_deref(),
    };
    update(record, |record| {
        record.generated_tokens = plan.total_tokens();
        record.completed = true;
        record.status = 200;
    });
    // Serializing these plain structs cannot fail, so the fallback is never sent.
    let json = serde_json::to_vec(&completion).unwrap_or_default();
    let accepts_gzip = request_headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(',')
                .any(|coding| coding.trim().starts_with("gzip"))
        });
    let mut response = if accepts_gzip {
        let mut response = gzip(&json).into_response();
        let gzip_value = HeaderValue::from_static("gzip");
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, gzip_value);
        response
    } else {
        json.into_response()
    };
    let json_type = HeaderValue::from_static("application/json");
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, json_type);
    response
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

fn new_record(
    path: &str,
    headers: &HeaderMap,
    raw: &[u8],
    parsed: &Result<Value, serde_json::Error>,
) -> MockRecord {
    let body = match parsed {
        Ok(body) => body.clone(),
        Err(_) => Value::String(String::from_utf8_lossy(raw).into_owned()),
    };
    let max_tokens = request::max_tokens_of(&body);
    MockRecord {
        path: path.to_owned(),
        model: body.get("model").and_then(Value::as_str).map(str::to_owned),
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: request::include_usage(&body),
        max_tokens_field: max_tokens.map(|(field, _)| field.name().to_owned()),
        max_tokens_value: max_tokens.map(|(_, value)| value),
        accept_encoding: headers
            .get(header::ACCEPT_ENCODING)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned()),
        prompt_tokens: if body.is_object() {
            crate::tokens::request_prompt_tokens(&body)
        } else {
            0
        },
        body,
        generated_tokens: 0,
        client_closed_early: false,
        completed: false,
        status: 0,
    }
}

fn invalid_request(
    message: String,
    param: Option<&'static str>,
    code: Option<&'static str>,
) -> ErrorDetail {
    ErrorDetail {
        message,
        kind: "invalid_request_error",
        param,
        code,
    }
}

/// Returns the error the API sends with `status`, in its type and code for that status.
fn status_error(status: StatusCode, model: &str) -> ErrorDetail {
    let (message, kind, code) = match status.as_u16() {
        401 => (
            "Incorrect API key provided.".to_owned(),
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        404 => (
            format!("The model {model} does not exist or you do not have access to it."),
            "invalid_request_error",
            Some("model_not_found"),
        ),
        429 => (
            format!("Rate limit reached for {model} on requests per minute: retry after 1s."),
            "requests",
            Some("rate_limit_exceeded"),
        ),
        500..=599 => (
            "The server had an error while processing the request: retry it.".to_owned(),
            "server_error",
            None,
        ),
        _ => (
            format!("The mock returned status {status} as the x-mock-status header requested."),
            "invalid_request_error",
            None,
        ),
    };
    ErrorDetail {
        message,
        kind,
        param: None,
        code,
    }
}

fn error_response(record: &SharedRecord, status: StatusCode, error: ErrorDetail) -> Response {
    update(record, |record| {
        record.status = status.as_u16();
        record.completed = true;
    });
    tracing::debug!(status = status.as_u16(), message = %error.message, "error response");
    let mut response = (status, Json(ErrorBody { error })).into_response();
    add_api_headers(response.headers_mut(), Instant::now());
    response
}

/// Adds the headers that the API sends on every response.
fn add_api_headers(headers: &mut HeaderMap, started: Instant) {
    let request_id = format!("req_{}", Rng::new().hex(32));
    let processing_ms = started.elapsed().as_millis().to_string();
    for (name, value) in [
        ("x-request-id", request_id),
        ("openai-processing-ms", processing_ms),
        ("openai-version", "2020-10-01".to_owned()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

/// Returns a stable `fp_` fingerprint per model, or null for gpt-3.5, as the API sends for
/// gpt-3.5-turbo.
fn fingerprint(model: &str) -> Option<String> {
    if model.starts_with("gpt-3.5") {
        return None;
    }
    let digest = Sha256::digest(model.as_bytes());
    let hex: String = digest
        .iter()
        .take(5)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Some(format!("fp_{hex}"))
}

fn unix_seconds() -> u64 {
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
    let parsed = serde_json::from_slice(&body);
    let record = state
        .records
        .push(new_record(uri.path(), &headers, &body, &parsed));
    let message = format!("Invalid URL ({method} {}).", uri.path());
    error_response(
        &record,
        StatusCode::NOT_FOUND,
        invalid_request(message, None, None),
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
