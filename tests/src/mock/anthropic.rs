//! Anthropic Messages, `POST /v1/messages`, with the `x-api-key` and `anthropic-version`
//! headers.
//!
//! Without `stream`, the response body is one `message` object. Streamed, it is `event:`/`data:`
//! pairs: `message_start` (usage with the input numbers and `output_tokens: 1`), then per
//! content block `content_block_start`, `content_block_delta`... and `content_block_stop`, with
//! one `ping` after the first block starts, then `message_delta` (stop reason and cumulative
//! usage) and `message_stop`. Reasoning tokens stream as a `thinking` block before the text;
//! tool call output is a `tool_use` block of `input_json_delta`s.

use super::events::{named_event, to_json, Event, EventSource};
use super::plan::{pieces, Piece, Plan, TokenCounts};
use super::prompt::anthropic_prompt_tokens;
use super::records::update;
use super::{error_response, json_response, set_headers, stream_response, words};
use super::{Incoming, Knobs, MockState, Provider, Rng};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Arc;

/// Header with the API version, which every request must send.
pub const VERSION_HEADER: &str = "anthropic-version";

/// Word offset of thinking text, so that it differs from the visible text.
const THINKING_WORD_OFFSET: u64 = 11;

/// Tool name of tool call output when the request names no tool.
const DEFAULT_TOOL_NAME: &str = "record_answer";

pub(super) async fn create_message(
    State(state): State<Arc<MockState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let incoming = state.receive(Provider::Anthropic, &uri, headers, &body);
    let mut response = serve(incoming);
    let mut rng = Rng::new();
    set_headers(
        response.headers_mut(),
        &[
            ("request-id", format!("req_011C{}", rng.alphanumeric(20))),
            ("anthropic-organization-id", rng.hex(32)),
        ],
    );
    response
}

/// Anthropic's error body, in the API's field order: `{"type": "error", "error": {"type",
/// "message"}, "request_id"}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    #[serde(rename = "type")]
    kind: &'static str,
    error: OwnedErrorDetail,
    request_id: String,
}

#[derive(Debug, Serialize)]
struct OwnedErrorDetail {
    #[serde(rename = "type")]
    kind: String,
    message: String,
}

/// Returns Anthropic's error body with error type `kind`.
pub fn error_body(kind: &str, message: &str) -> ErrorBody {
    ErrorBody {
        kind: "error",
        error: OwnedErrorDetail {
            kind: kind.to_owned(),
            message: message.to_owned(),
        },
        request_id: format!("req_011C{}", Rng::new().alphanumeric(20)),
    }
}

/// Returns the error type Anthropic names for an HTTP status.
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

/// Returns the dated model that responses name for an alias, such as
/// `claude-sonnet-4-5-20250929` for `claude-sonnet-4-5`. Other names come back unchanged.
// NOTE: Anthropic moves aliases to newer snapshots over time, so clients must not depend on
// these.
pub fn snapshot_name(model: &str) -> &str {
    match model {
        "claude-sonnet-4-5" => "claude-sonnet-4-5-20250929",
        "claude-haiku-4-5" => "claude-haiku-4-5-20251001",
        "claude-opus-4-1" => "claude-opus-4-1-20250805",
        "claude-sonnet-4-0" => "claude-sonnet-4-20250514",
        "claude-3-7-sonnet-latest" => "claude-3-7-sonnet-20250219",
        "claude-3-5-haiku-latest" => "claude-3-5-haiku-20241022",
        other => other,
    }
}

struct MessagesRequest {
    model: String,
    max_tokens: u64,
    stream: bool,
    tool_name: String,
}

fn parse_request(headers: &HeaderMap, body: &Value) -> Result<MessagesRequest, String> {
    if !headers.contains_key(VERSION_HEADER) {
        return Err(format!("{VERSION_HEADER}: header is required"));
    }
    let model = match body.get("model").and_then(Value::as_str) {
        Some(model) if !model.is_empty() => model.to_owned(),
        _ => return Err("model: Field required".to_owned()),
    };
    let max_tokens = match body.get("max_tokens") {
        None | Some(Value::Null) => return Err("max_tokens: Field required".to_owned()),
        Some(value) => value.as_u64().filter(|max| *max >= 1).ok_or_else(|| {
            format!("max_tokens: Input should be a positive integer, got {value}")
        })?,
    };
    match body.get("messages").and_then(Value::as_array) {
        Some(messages) if !messages.is_empty() => {}
        Some(_) => return Err("messages: at least one message is required".to_owned()),
        None => return Err("messages: Field required".to_owned()),
    }
    Ok(MessagesRequest {
        model,
        max_tokens,
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        tool_name: body
            .pointer("/tools/0/name")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_TOOL_NAME)
            .to_owned(),
    })
}

fn serve(incoming: Incoming) -> Response {
    let record = &incoming.record;
    let invalid = |message: &str| {
        let body = error_body("invalid_request_error", message);
        error_response(record, StatusCode::BAD_REQUEST, &body)
    };
    let knobs = match &incoming.knobs {
        Ok(knobs) => *knobs,
        Err(message) => return invalid(message),
    };
    let body = match &incoming.parsed {
        Ok(body) => body,
        Err(error) => return invalid(&format!("The request body is not valid JSON: {error}")),
    };

    if let Some(status) = knobs.status {
        let message = format!("The mock returned status {status} as x-mock-status requested.");
        return error_response(record, status, &error_body(error_type(status), &message));
    }
    let request = match parse_request(&incoming.headers, body) {
        Ok(request) => request,
        Err(message) => return invalid(&message),
    };

    let plan = Plan::new(1, Some(request.max_tokens), &knobs);
    let prompt = anthropic_prompt_tokens(body);
    let counts = TokenCounts::new(prompt, &plan, &knobs);
    update(record, |record| {
        record.prompt_tokens = prompt;
        record.max_tokens_field = Some("max_tokens".to_owned());
        record.max_tokens_value = Some(request.max_tokens);
    });

    let message = MessageParts::new(request, plan, counts, knobs);
    if message.request.stream {
        let source = MessagesStream::new(message);
        return stream_response(record, source, &knobs, "text/event-stream; charset=utf-8");
    }
    let json = to_json(&message.whole());
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

/// Anthropic's usage object, in the API's field order.
#[derive(Debug, Serialize)]
struct MessageUsage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation: CacheCreation,
    output_tokens: u64,
    service_tier: &'static str,
}

#[derive(Debug, Serialize)]
struct CacheCreation {
    ephemeral_5m_input_tokens: u64,
    ephemeral_1h_input_tokens: u64,
}

impl MessageUsage {
    fn new(counts: &TokenCounts, output_tokens: u64) -> MessageUsage {
        MessageUsage {
            input_tokens: counts.uncached_prompt(),
            cache_creation_input_tokens: counts.cache_write_5m + counts.cache_write_1h,
            cache_read_input_tokens: counts.cached,
            cache_creation: CacheCreation {
                ephemeral_5m_input_tokens: counts.cache_write_5m,
                ephemeral_1h_input_tokens: counts.cache_write_1h,
            },
            output_tokens,
            service_tier: "standard",
        }
    }
}

/// The `message` object.
#[derive(Debug, Serialize)]
struct Message<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<Block>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<()>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<MessageUsage>,
}

/// A content block, with its `type` first as the API sends it.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Thinking {
        thinking: String,
        signature: String,
    },
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

/// The change a `content_block_delta` brings to its block.
#[derive(Debug, Serialize)]
#[serde(tag = "type")]
enum Delta {
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: String },
    #[serde(rename = "signature_delta")]
    Signature { signature: String },
    #[serde(rename = "text_delta")]
    Text { text: String },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: String },
}

/// The cumulative usage of `message_delta`.
#[derive(Debug, Serialize)]
struct DeltaUsage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

#[derive(Debug, Serialize)]
struct StopDelta {
    stop_reason: &'static str,
    stop_sequence: Option<()>,
}

#[derive(Debug, Serialize)]
struct ErrorDetail<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

/// One streamed event's data, with its `type` first.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StreamEvent<'a> {
    MessageStart {
        message: Message<'a>,
    },
    ContentBlockStart {
        index: u64,
        content_block: Block,
    },
    Ping,
    ContentBlockDelta {
        index: u64,
        delta: Delta,
    },
    ContentBlockStop {
        index: u64,
    },
    MessageDelta {
        delta: StopDelta,
        #[serde(skip_serializing_if = "Option::is_none")]
        usage: Option<DeltaUsage>,
    },
    MessageStop,
    Error {
        error: ErrorDetail<'a>,
    },
}

impl StreamEvent<'_> {
    fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::Ping => "ping",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
            StreamEvent::Error { .. } => "error",
        }
    }

    fn frame(&self) -> String {
        named_event(self.name(), &to_json(self))
    }
}

/// What a message is made of, shared by the whole object and the streamed events.
struct MessageParts {
    request: MessagesRequest,
    plan: Plan,
    counts: TokenCounts,
    knobs: Knobs,
    id: String,
    tool_use_id: String,
    signature: String,
}

impl MessageParts {
    fn new(request: MessagesRequest, plan: Plan, counts: TokenCounts, knobs: Knobs) -> Self {
        let mut rng = Rng::new();
        MessageParts {
            request,
            plan,
            counts,
            knobs,
            id: format!("msg_01{}", rng.alphanumeric(22)),
            tool_use_id: format!("toolu_01{}", rng.alphanumeric(22)),
            signature: rng.alphanumeric(88),
        }
    }

    fn stop_reason(&self) -> &'static str {
        if self.plan.truncated {
            "max_tokens"
        } else if self.knobs.tool_calls {
            "tool_use"
        } else {
            "end_turn"
        }
    }

    fn thinking_text(&self, start: u64, count: u64) -> String {
        words::text(THINKING_WORD_OFFSET, start, count)
    }

    fn output_kind(&self) -> BlockKind {
        if self.knobs.tool_calls {
            BlockKind::ToolUse
        } else {
            BlockKind::Text
        }
    }

    fn message(
        &self,
        content: Vec<Block>,
        stop_reason: Option<&'static str>,
        usage: MessageUsage,
    ) -> Message<'_> {
        Message {
            id: &self.id,
            kind: "message",
            role: "assistant",
            model: snapshot_name(&self.request.model),
            content,
            stop_reason,
            stop_sequence: None,
            usage: (!self.knobs.no_usage).then_some(usage),
        }
    }

    /// Returns the non-streamed message.
    fn whole(&self) -> Message<'_> {
        let mut content = Vec::new();
        if self.plan.reasoning_per_choice > 0 {
            let thinking = self.thinking_text(0, self.plan.reasoning_per_choice);
            content.push(self.block(BlockKind::Thinking, thinking));
        }
        let text = words::text(0, 0, self.plan.tokens_per_choice);
        content.push(self.block(self.output_kind(), text));
        let usage = MessageUsage::new(&self.counts, self.counts.completion);
        self.message(content, Some(self.stop_reason()), usage)
    }

    /// Returns a content block with `text`. Empty text gives the block that starts a stream.
    fn block(&self, kind: BlockKind, text: String) -> Block {
        match kind {
            BlockKind::Thinking => Block::Thinking {
                signature: if text.is_empty() {
                    String::new()
                } else {
                    self.signature.clone()
                },
                thinking: text,
            },
            BlockKind::Text => Block::Text { text },
            BlockKind::ToolUse => Block::ToolUse {
                id: self.tool_use_id.clone(),
                name: self.request.tool_name.clone(),
                input: if text.is_empty() {
                    json!({})
                } else {
                    json!({ "answer": text })
                },
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Thinking,
    Text,
    ToolUse,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    MessageStart,
    Ping,
    BlockStart {
        index: u64,
        kind: BlockKind,
    },
    ThinkingDelta {
        index: u64,
        start: u64,
        count: u64,
    },
    SignatureDelta {
        index: u64,
    },
    OutputDelta {
        index: u64,
        kind: BlockKind,
        piece: Piece,
    },
    BlockStop {
        index: u64,
    },
    MessageDelta,
    MessageStop,
    Error,
}

/// Lays out a stream: `message_start`, an optional thinking block, the output block with a
/// `ping` after the first block starts, then `message_delta` and `message_stop`, or an `error`
/// event in their place with `x-mock-error-after-tokens`.
fn steps(parts: &MessageParts) -> VecDeque<Step> {
    let mut steps = VecDeque::from([Step::MessageStart]);
    let chunk = parts.knobs.tokens_per_chunk;
    let mut index = 0;

    let reasoning = parts.plan.reasoning_per_choice;
    if reasoning > 0 {
        let kind = BlockKind::Thinking;
        steps.extend([Step::BlockStart { index, kind }, Step::Ping]);
        let mut start = 0;
        while start < reasoning {
            let count = chunk.min(reasoning - start);
            steps.push_back(Step::ThinkingDelta {
                index,
                start,
                count,
            });
            start += count;
        }
        steps.extend([Step::SignatureDelta { index }, Step::BlockStop { index }]);
        index += 1;
    }

    let kind = parts.output_kind();
    steps.push_back(Step::BlockStart { index, kind });
    if index == 0 {
        steps.push_back(Step::Ping);
    }

    let error_after = parts.knobs.error_after_tokens;
    let output = pieces(&parts.plan, chunk, error_after);
    steps.extend(
        output
            .into_iter()
            .map(|piece| Step::OutputDelta { index, kind, piece }),
    );

    if error_after.is_some() {
        steps.push_back(Step::Error);
    } else {
        let end = [
            Step::BlockStop { index },
            Step::MessageDelta,
            Step::MessageStop,
        ];
        steps.extend(end);
    }
    steps
}

/// The event source of one streamed message.
struct MessagesStream {
    parts: MessageParts,
    steps: VecDeque<Step>,
    /// Output tokens sent so far, for the cumulative usage of `message_delta`.
    sent: u64,
}

impl MessagesStream {
    fn new(parts: MessageParts) -> MessagesStream {
        MessagesStream {
            steps: steps(&parts),
            parts,
            sent: 0,
        }
    }

    fn render(&mut self, step: Step) -> Event {
        let parts = &self.parts;
        let (event, output_tokens) = match step {
            Step::MessageStart => {
                let usage = if parts.knobs.late_usage {
                    MessageUsage::new(&TokenCounts::default(), 0)
                } else {
                    MessageUsage::new(&parts.counts, 1)
                };
                let message = parts.message(Vec::new(), None, usage);
                (StreamEvent::MessageStart { message }, None)
            }
            Step::Ping => (StreamEvent::Ping, None),
            Step::BlockStart { index, kind } => {
                let content_block = parts.block(kind, String::new());
                let event = StreamEvent::ContentBlockStart {
                    index,
                    content_block,
                };
                (event, None)
            }
            Step::ThinkingDelta {
                index,
                start,
                count,
            } => {
                let thinking = parts.thinking_text(start, count);
                let delta = Delta::Thinking { thinking };
                (StreamEvent::ContentBlockDelta { index, delta }, Some(count))
            }
            Step::SignatureDelta { index } => {
                let signature = parts.signature.clone();
                let delta = Delta::Signature { signature };
                (StreamEvent::ContentBlockDelta { index, delta }, None)
            }
            Step::OutputDelta { index, kind, piece } => {
                let text = words::text(0, piece.start, piece.count);
                let delta = match kind {
                    BlockKind::ToolUse => Delta::InputJson { partial_json: text },
                    _ => Delta::Text { text },
                };
                let event = StreamEvent::ContentBlockDelta { index, delta };
                (event, Some(piece.count))
            }
            Step::BlockStop { index } => (StreamEvent::ContentBlockStop { index }, None),
            Step::MessageDelta => {
                let usage = MessageUsage::new(&parts.counts, self.sent);
                let usage = DeltaUsage {
                    input_tokens: usage.input_tokens,
                    cache_creation_input_tokens: usage.cache_creation_input_tokens,
                    cache_read_input_tokens: usage.cache_read_input_tokens,
                    output_tokens: usage.output_tokens,
                };
                let delta = StopDelta {
                    stop_reason: parts.stop_reason(),
                    stop_sequence: None,
                };
                let usage = (!parts.knobs.no_usage).then_some(usage);
                (StreamEvent::MessageDelta { delta, usage }, None)
            }
            Step::MessageStop => (StreamEvent::MessageStop, None),
            Step::Error => {
                let error = ErrorDetail {
                    kind: "overloaded_error",
                    message: "Overloaded",
                };
                (StreamEvent::Error { error }, None)
            }
        };
        let frame = event.frame();
        match output_tokens {
            Some(tokens) => {
                self.sent += tokens;
                Event::output(frame, tokens)
            }
            None => Event::plain(frame),
        }
    }
}

impl EventSource for MessagesStream {
    fn next_event(&mut self) -> Option<Event> {
        let step = self.steps.pop_front()?;
        Some(self.render(step))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_data_starts_with_type() {
        let event = StreamEvent::ContentBlockStop { index: 2 };
        assert_eq!(
            event.frame(),
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n"
        );
    }

    #[test]
    fn block_type_comes_first() {
        let block = Block::Text { text: "hi".into() };
        assert_eq!(to_json(&block), r#"{"type":"text","text":"hi"}"#);
    }
}
