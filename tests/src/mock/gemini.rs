//! Google Gemini, `POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent`, with the `x-goog-api-key` header or the `key` query parameter.
//!
//! `streamGenerateContent?alt=sse` sends `data: {...}\r\n\r\n` events; without `alt=sse` it
//! sends one JSON array whose elements are the same chunks. Every chunk carries the running
//! `usageMetadata`: `candidatesTokenCount` counts the visible output so far, and
//! `thoughtsTokenCount`, which is not part of it, counts the hidden thinking done before the
//! first chunk. The last chunk of each candidate has an empty text and its `finishReason`.

use super::events::{to_json, Event, EventSource};
use super::plan::{pieces, Piece, Plan, TokenCounts};
use super::prompt::gemini_prompt_tokens;
use super::records::update;
use super::{error_response, json_response, query_param, set_headers, stream_response, words};
use super::{Incoming, Knobs, MockState, Provider, Rng};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Arc;

/// Largest `candidateCount` the API accepts.
const MAX_CANDIDATES: u64 = 8;

pub(super) async fn generate(
    State(state): State<Arc<MockState>>,
    Path(model_action): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let incoming = state.receive(Provider::Gemini, &uri, headers, &body);
    let (model, action) = model_action
        .split_once(':')
        .unwrap_or((model_action.as_str(), ""));
    let mut response = match action {
        "generateContent" => serve(incoming, model, Mode::Whole),
        "streamGenerateContent" if query_param(&uri, "alt") == Some("sse") => {
            serve(incoming, model, Mode::Sse)
        }
        "streamGenerateContent" => serve(incoming, model, Mode::JsonArray),
        _ => {
            let message = format!("Method {action:?} of model {model} is not found.");
            let body = error_body(StatusCode::NOT_FOUND, &message);
            error_response(&incoming.record, StatusCode::NOT_FOUND, &body)
        }
    };
    let server_timing = format!("gfet4t7; dur={}", Rng::new().below(900) + 100);
    set_headers(
        response.headers_mut(),
        &[
            ("server-timing", server_timing),
            ("x-content-type-options", "nosniff".to_owned()),
        ],
    );
    response
}

/// How the response is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `generateContent`: one response object.
    Whole,
    /// `streamGenerateContent?alt=sse`: server-sent events framed with CRLF.
    Sse,
    /// `streamGenerateContent`: a JSON array of chunks, streamed.
    JsonArray,
}

/// Returns Gemini's error body: `{"error": {"code", "message", "status"}}`.
pub fn error_body(status: StatusCode, message: &str) -> Value {
    json!({"error": {"code": status.as_u16(), "message": message, "status": status_name(status)}})
}

/// Returns the canonical status name that Gemini gives an HTTP status.
pub fn status_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ if status.is_client_error() => "FAILED_PRECONDITION",
        _ => "INTERNAL",
    }
}

struct GenerateRequest {
    max_output_tokens: Option<u64>,
    candidates: u64,
}

fn parse_request(body: &Value) -> Result<GenerateRequest, String> {
    match body.get("contents").and_then(Value::as_array) {
        Some(contents) if !contents.is_empty() => {}
        _ => return Err("contents is missing: send at least one content entry".to_owned()),
    }
    let config = body.get("generationConfig");
    let field = |name: &str| config.and_then(|config| config.get(name));
    let max_output_tokens = match field("maxOutputTokens") {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_u64().filter(|max| *max >= 1).ok_or_else(|| {
            format!("* GenerateContentRequest.generation_config.max_output_tokens: must be positive, got {value}")
        })?),
    };
    let candidates = match field("candidateCount") {
        None | Some(Value::Null) => 1,
        Some(value) => value
            .as_u64()
            .filter(|count| (1..=MAX_CANDIDATES).contains(count))
            .ok_or_else(|| {
                format!("* GenerateContentRequest.generation_config.candidate_count: must be 1 to {MAX_CANDIDATES}, got {value}")
            })?,
    };
    Ok(GenerateRequest {
        max_output_tokens,
        candidates,
    })
}

fn serve(incoming: Incoming, model: &str, mode: Mode) -> Response {
    let record = &incoming.record;
    let invalid = |message: &str| {
        let body = error_body(StatusCode::BAD_REQUEST, message);
        error_response(record, StatusCode::BAD_REQUEST, &body)
    };
    let knobs = match &incoming.knobs {
        Ok(knobs) => *knobs,
        Err(message) => return invalid(message),
    };
    let body = match &incoming.parsed {
        Ok(body) => body,
        Err(error) => return invalid(&format!("Invalid JSON payload received. {error}")),
    };

    if let Some(status) = knobs.status {
        let message = format!("The mock returned status {status} as x-mock-status requested.");
        return error_response(record, status, &error_body(status, &message));
    }
    let request = match parse_request(body) {
        Ok(request) => request,
        Err(message) => return invalid(&message),
    };

    let plan = Plan::new(request.candidates, request.max_output_tokens, &knobs);
    let prompt = gemini_prompt_tokens(body);
    let counts = TokenCounts::new(prompt, &plan, &knobs);
    update(record, |record| {
        record.model = Some(model.to_owned());
        record.stream = mode != Mode::Whole;
        record.prompt_tokens = prompt;
        if let Some(max) = request.max_output_tokens {
            record.max_tokens_field = Some("generationConfig.maxOutputTokens".to_owned());
            record.max_tokens_value = Some(max);
        }
    });

    let parts = ResponseParts {
        model: model.to_owned(),
        response_id: Rng::new().alphanumeric(22),
        plan,
        counts,
        knobs,
    };
    match mode {
        Mode::Whole => {
            let json = to_json(&parts.whole());
            update(record, |record| {
                record.generated_tokens = plan.completion_tokens()
            });
            json_response(
                record,
                StatusCode::OK,
                json,
                &incoming.headers,
                knobs.force_gzip,
            )
        }
        Mode::Sse => {
            let source = GeminiStream::new(parts, mode);
            stream_response(record, source, &knobs, "text/event-stream")
        }
        Mode::JsonArray => {
            let source = GeminiStream::new(parts, mode);
            stream_response(record, source, &knobs, "application/json; charset=UTF-8")
        }
    }
}

/// A response, or one streamed chunk of it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateResponse<'a> {
    candidates: Vec<Candidate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_metadata: Option<UsageMetadata>,
    model_version: &'a str,
    response_id: &'a str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Content,
    #[serde(skip_serializing_if = "Option::is_none")]
    finish_reason: Option<&'static str>,
    index: u64,
}

#[derive(Debug, Serialize)]
struct Content {
    parts: Vec<TextPart>,
    role: &'static str,
}

#[derive(Debug, Serialize)]
struct TextPart {
    text: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ModalityCount {
    modality: &'static str,
    token_count: u64,
}

/// Usage of a response; zero cache and thinking counts are left out, as the API does.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    prompt_token_count: u64,
    candidates_token_count: u64,
    total_token_count: u64,
    #[serde(skip_serializing_if = "is_zero")]
    cached_content_token_count: u64,
    prompt_tokens_details: Vec<ModalityCount>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cache_tokens_details: Vec<ModalityCount>,
    #[serde(skip_serializing_if = "is_zero")]
    thoughts_token_count: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl UsageMetadata {
    /// Returns the usage with `visible` output tokens so far over all candidates.
    fn new(counts: &TokenCounts, visible: u64) -> UsageMetadata {
        let text = |token_count| ModalityCount {
            modality: "TEXT",
            token_count,
        };
        UsageMetadata {
            prompt_token_count: counts.prompt,
            candidates_token_count: visible,
            total_token_count: counts.prompt + visible + counts.reasoning,
            cached_content_token_count: counts.cached,
            prompt_tokens_details: vec![text(counts.prompt)],
            cache_tokens_details: if counts.cached > 0 {
                vec![text(counts.cached)]
            } else {
                Vec::new()
            },
            thoughts_token_count: counts.reasoning,
        }
    }
}

struct ResponseParts {
    model: String,
    response_id: String,
    plan: Plan,
    counts: TokenCounts,
    knobs: Knobs,
}

impl ResponseParts {
    fn finish_reason(&self) -> &'static str {
        if self.plan.truncated {
            "MAX_TOKENS"
        } else {
            "STOP"
        }
    }

    fn response(&self, candidates: Vec<Candidate>, visible: u64) -> GenerateResponse<'_> {
        let usage = UsageMetadata::new(&self.counts, visible);
        GenerateResponse {
            candidates,
            usage_metadata: (!self.knobs.no_usage).then_some(usage),
            model_version: &self.model,
            response_id: &self.response_id,
        }
    }

    fn whole(&self) -> GenerateResponse<'_> {
        let candidates = (0..self.plan.choices)
            .map(|index| {
                let text = words::text(index, 0, self.plan.tokens_per_choice);
                candidate(index, text, Some(self.finish_reason()))
            })
            .collect();
        self.response(candidates, self.plan.visible_tokens())
    }
}

fn candidate(index: u64, text: String, finish_reason: Option<&'static str>) -> Candidate {
    Candidate {
        content: Content {
            parts: vec![TextPart { text }],
            role: "model",
        },
        finish_reason,
        index,
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Output(Piece),
    Finish { choice: u64 },
    Error,
}

/// The event source of one streamed response, in SSE or JSON array framing.
struct GeminiStream {
    parts: ResponseParts,
    mode: Mode,
    steps: VecDeque<Step>,
    /// Visible output tokens sent so far over all candidates.
    visible: u64,
    /// True once the hidden thinking tokens were counted, with the first chunk.
    thinking_counted: bool,
    /// Chunks framed so far.
    chunks: u64,
    /// True once a JSON array stream sent its closing bracket.
    closed: bool,
}

impl GeminiStream {
    fn new(parts: ResponseParts, mode: Mode) -> GeminiStream {
        let error_after = parts.knobs.error_after_tokens;
        let output = pieces(&parts.plan, parts.knobs.tokens_per_chunk, error_after);
        let mut steps: VecDeque<Step> = output.into_iter().map(Step::Output).collect();
        if error_after.is_some() {
            steps.push_back(Step::Error);
        } else {
            steps.extend((0..parts.plan.choices).map(|choice| Step::Finish { choice }));
        }
        GeminiStream {
            parts,
            mode,
            steps,
            visible: 0,
            thinking_counted: false,
            chunks: 0,
            closed: false,
        }
    }

    /// Frames one chunk: `data: ...\r\n\r\n` for SSE, an array element otherwise.
    fn frame(&mut self, json: &str) -> String {
        self.chunks += 1;
        match self.mode {
            Mode::Sse => format!("data: {json}\r\n\r\n"),
            _ if self.chunks == 1 => format!("[{json}"),
            _ => format!(",\r\n{json}"),
        }
    }

    fn render(&mut self, step: Step) -> Event {
        let hidden = if self.thinking_counted {
            0
        } else {
            self.thinking_counted = true;
            self.parts.plan.choices * self.parts.plan.hidden_per_choice()
        };
        let event = match step {
            Step::Output(piece) => {
                self.visible += piece.count;
                let text = words::text(piece.choice, piece.start, piece.count);
                let candidates = vec![candidate(piece.choice, text, None)];
                let json = to_json(&self.parts.response(candidates, self.visible));
                Event::output(self.frame(&json), piece.count)
            }
            Step::Finish { choice } => {
                let finish = Some(self.parts.finish_reason());
                let candidates = vec![candidate(choice, String::new(), finish)];
                let json = to_json(&self.parts.response(candidates, self.visible));
                Event::plain(self.frame(&json))
            }
            Step::Error => {
                let message = "An internal error occurred while generating: retry the request.";
                let body = error_body(StatusCode::INTERNAL_SERVER_ERROR, message);
                Event::plain(self.frame(&to_json(&body)))
            }
        };
        Event {
            output_tokens: event.output_tokens + hidden,
            ..event
        }
    }
}

impl EventSource for GeminiStream {
    fn next_event(&mut self) -> Option<Event> {
        if let Some(step) = self.steps.pop_front() {
            return Some(self.render(step));
        }
        // A JSON array closes after its last chunk; an SSE stream just ends.
        if self.mode == Mode::JsonArray && !self.closed {
            self.closed = true;
            let close = if self.chunks == 0 { "[]" } else { "]" };
            return Some(Event::plain(close));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_leaves_out_zero_counts() {
        let counts = TokenCounts {
            prompt: 5,
            ..TokenCounts::default()
        };
        let usage = serde_json::to_value(UsageMetadata::new(&counts, 3)).unwrap();
        assert!(usage.get("thoughtsTokenCount").is_none());
        assert!(usage.get("cachedContentTokenCount").is_none());
        assert_eq!(usage["totalTokenCount"], 8);
    }

    #[test]
    fn thoughts_add_to_total_not_candidates() {
        let counts = TokenCounts {
            prompt: 5,
            reasoning: 7,
            completion: 10,
            ..TokenCounts::default()
        };
        let usage = serde_json::to_value(UsageMetadata::new(&counts, 3)).unwrap();
        assert_eq!(usage["candidatesTokenCount"], 3);
        assert_eq!(usage["thoughtsTokenCount"], 7);
        assert_eq!(usage["totalTokenCount"], 15);
    }
}
