//! OpenAI Responses, `POST /v1/responses`.
//!
//! Without `stream`, the response body is one `response` object. Streamed, it is `event:`/`data:`
//! pairs, each with a `sequence_number` from 0, in this order:
//!
//! 1. `response.created` and `response.in_progress`;
//! 2. a `reasoning` item when there are reasoning tokens;
//! 3. the message (or function call) item with its deltas;
//! 4. one terminal event: `response.completed`, `response.incomplete` when `max_output_tokens`
//!    cut the output, or `response.failed` with `x-mock-error-after-tokens`.
//!
//! There is no `[DONE]`. Every `response` object echoes the request's `instructions` and
//! `tools`, and `x-mock-echo-bytes` pads the terminal event's `instructions` to a size.

use super::chat::{error_body, invalid_request, status_error};
use super::events::{named_event, to_json, Event, EventSource};
use super::plan::{pieces, Piece, Plan, TokenCounts};
use super::prompt::responses_prompt_tokens;
use super::records::update;
use super::wire::ErrorBody;
use super::{error_response, json_response, set_headers, stream_response, unix_seconds};
use super::{wire, words, Incoming, Knobs, MockState, Provider, Rng};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Arc;

/// Smallest `max_output_tokens` the API accepts.
pub const MIN_MAX_OUTPUT_TOKENS: u64 = 16;

/// Function name of tool call output when the request names no tool.
const DEFAULT_TOOL_NAME: &str = "record_answer";

pub(super) async fn create_response(
    State(state): State<Arc<MockState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let incoming = state.receive(Provider::Responses, &uri, headers, &body);
    let mut response = serve(incoming);
    let request_id = format!("req_{}", Rng::new().hex(32));
    set_headers(
        response.headers_mut(),
        &[
            ("x-request-id", request_id),
            ("openai-version", "2020-10-01".to_owned()),
        ],
    );
    response
}

/// The parts of a Responses request that shape the response.
struct ResponsesRequest {
    model: String,
    max_output_tokens: Option<u64>,
    stream: bool,
    instructions: Value,
    tools: Value,
    tool_name: String,
    service_tier: String,
}

fn parse_request(body: &Value) -> Result<ResponsesRequest, ErrorBody> {
    let invalid = |message: String, param: &'static str, code: Option<&'static str>| {
        error_body(invalid_request(message, Some(param), code))
    };
    let model = match body.get("model").and_then(Value::as_str) {
        Some(model) if !model.is_empty() => model.to_owned(),
        _ => {
            let message = "Missing required parameter: 'model'.".to_owned();
            return Err(invalid(
                message,
                "model",
                Some("missing_required_parameter"),
            ));
        }
    };
    if body.get("input").is_none_or(Value::is_null) {
        let message = "Missing required parameter: 'input'.".to_owned();
        return Err(invalid(
            message,
            "input",
            Some("missing_required_parameter"),
        ));
    }
    let max_output_tokens = match body.get("max_output_tokens") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_u64() {
            Some(max) if max >= MIN_MAX_OUTPUT_TOKENS => Some(max),
            _ => {
                let message = format!(
                    "Invalid 'max_output_tokens': integer below minimum value. Expected a value \
                     >= {MIN_MAX_OUTPUT_TOKENS}, but got {value} instead."
                );
                let code = Some("integer_below_min_value");
                return Err(invalid(message, "max_output_tokens", code));
            }
        },
    };
    let tools = body.get("tools").cloned().unwrap_or_else(|| json!([]));
    let tool_name = tools
        .pointer("/0/name")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_TOOL_NAME)
        .to_owned();
    Ok(ResponsesRequest {
        model,
        max_output_tokens,
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        instructions: body.get("instructions").cloned().unwrap_or(Value::Null),
        tools,
        tool_name,
        service_tier: body
            .get("service_tier")
            .and_then(Value::as_str)
            .unwrap_or("auto")
            .to_owned(),
    })
}

fn serve(incoming: Incoming) -> Response {
    let record = &incoming.record;
    let bad_request = |body: ErrorBody| error_response(record, StatusCode::BAD_REQUEST, &body);
    let knobs = match &incoming.knobs {
        Ok(knobs) => *knobs,
        Err(message) => {
            let detail = invalid_request(message.clone(), None, Some("invalid_mock_header"));
            return bad_request(error_body(detail));
        }
    };
    let body = match &incoming.parsed {
        Ok(body) => body,
        Err(error) => {
            let message = format!("The request body is not valid JSON ({error}).");
            return bad_request(error_body(invalid_request(message, None, None)));
        }
    };

    if let Some(status) = knobs.status {
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("this model");
        return error_response(record, status, &error_body(status_error(status, model)));
    }
    let request = match parse_request(body) {
        Ok(request) => request,
        Err(error) => return bad_request(error),
    };

    let plan = Plan::new(1, request.max_output_tokens, &knobs);
    let prompt = responses_prompt_tokens(body);
    let counts = TokenCounts::new(prompt, &plan, &knobs);
    update(record, |record| {
        record.prompt_tokens = prompt;
        if let Some(max) = request.max_output_tokens {
            record.max_tokens_field = Some("max_output_tokens".to_owned());
            record.max_tokens_value = Some(max);
        }
    });

    let builder = Builder::new(request, plan, counts, knobs);
    if builder.request.stream {
        let source = ResponsesStream::new(builder);
        return stream_response(record, source, &knobs, "text/event-stream; charset=utf-8");
    }

    let status = builder.final_status();
    let object = builder.response(
        status,
        builder.output(status),
        &builder.request.instructions,
    );
    update(record, |record| {
        record.generated_tokens = plan.completion_tokens()
    });
    let json = to_json(&object);
    json_response(
        record,
        StatusCode::OK,
        json,
        &incoming.headers,
        knobs.force_gzip,
    )
}

/// Token usage of a response.
#[derive(Debug, Clone, Serialize)]
struct ResponsesUsage {
    input_tokens: u64,
    input_tokens_details: Value,
    output_tokens: u64,
    output_tokens_details: Value,
    total_tokens: u64,
}

impl ResponsesUsage {
    fn from_counts(counts: &TokenCounts) -> ResponsesUsage {
        ResponsesUsage {
            input_tokens: counts.prompt,
            input_tokens_details: json!({"cached_tokens": counts.cached}),
            output_tokens: counts.completion,
            output_tokens_details: json!({"reasoning_tokens": counts.reasoning}),
            total_tokens: counts.prompt + counts.completion,
        }
    }
}

/// The `response` object, in the API's field order.
#[derive(Debug, Serialize)]
struct ResponseObject<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'static str,
    background: bool,
    error: Option<Value>,
    incomplete_details: Option<Value>,
    instructions: &'a Value,
    max_output_tokens: Option<u64>,
    max_tool_calls: Option<u64>,
    model: &'a str,
    output: Vec<OutputItem>,
    parallel_tool_calls: bool,
    previous_response_id: Option<String>,
    prompt_cache_key: Option<String>,
    reasoning: Value,
    safety_identifier: Option<String>,
    service_tier: &'a str,
    store: bool,
    temperature: f64,
    text: Value,
    tool_choice: &'static str,
    tools: &'a Value,
    top_logprobs: u64,
    top_p: f64,
    truncation: &'static str,
    usage: Option<ResponsesUsage>,
    user: Option<String>,
    metadata: Value,
}

/// An item of a response's `output`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
enum OutputItem {
    Reasoning {
        id: String,
        #[serde(rename = "type")]
        kind: &'static str,
        summary: [(); 0],
    },
    Message {
        id: String,
        #[serde(rename = "type")]
        kind: &'static str,
        status: &'static str,
        content: Vec<OutputText>,
        role: &'static str,
    },
    FunctionCall {
        id: String,
        #[serde(rename = "type")]
        kind: &'static str,
        status: &'static str,
        arguments: String,
        call_id: String,
        name: String,
    },
}

/// An `output_text` content part.
#[derive(Debug, Clone, Serialize)]
struct OutputText {
    #[serde(rename = "type")]
    kind: &'static str,
    annotations: [(); 0],
    logprobs: [(); 0],
    text: String,
}

impl OutputText {
    fn new(text: String) -> OutputText {
        OutputText {
            kind: "output_text",
            annotations: [],
            logprobs: [],
            text,
        }
    }
}

/// What a response is made of: the request, the output plan and the ids, shared by the
/// non-streamed object and every streamed event.
struct Builder {
    request: ResponsesRequest,
    plan: Plan,
    counts: TokenCounts,
    knobs: Knobs,
    id: String,
    created_at: u64,
    reasoning_id: String,
    item_id: String,
    call_id: String,
}

impl Builder {
    fn new(request: ResponsesRequest, plan: Plan, counts: TokenCounts, knobs: Knobs) -> Builder {
        let mut rng = Rng::new();
        let item_prefix = if knobs.tool_calls { "fc" } else { "msg" };
        Builder {
            request,
            plan,
            counts,
            knobs,
            id: format!("resp_{}", rng.hex(48)),
            created_at: unix_seconds(),
            reasoning_id: format!("rs_{}", rng.hex(48)),
            item_id: format!("{item_prefix}_{}", rng.hex(48)),
            call_id: format!("call_{}", rng.alphanumeric(24)),
        }
    }

    fn final_status(&self) -> &'static str {
        if self.plan.truncated {
            "incomplete"
        } else {
            "completed"
        }
    }

    fn output_index(&self) -> u64 {
        u64::from(self.plan.reasoning_per_choice > 0)
    }

    fn reasoning_item(&self) -> OutputItem {
        OutputItem::Reasoning {
            id: self.reasoning_id.clone(),
            kind: "reasoning",
            summary: [],
        }
    }

    /// Returns the message or function call item with `text` so far.
    fn main_item(&self, status: &'static str, text: Option<String>) -> OutputItem {
        if self.knobs.tool_calls {
            return OutputItem::FunctionCall {
                id: self.item_id.clone(),
                kind: "function_call",
                status,
                arguments: text.unwrap_or_default(),
                call_id: self.call_id.clone(),
                name: self.request.tool_name.clone(),
            };
        }
        OutputItem::Message {
            id: self.item_id.clone(),
            kind: "message",
            status,
            content: text.map(OutputText::new).into_iter().collect(),
            role: "assistant",
        }
    }

    /// Returns the whole output of a finished response.
    fn output(&self, status: &'static str) -> Vec<OutputItem> {
        let text = words::text(0, 0, self.plan.tokens_per_choice);
        let mut output = Vec::new();
        if self.plan.reasoning_per_choice > 0 {
            output.push(self.reasoning_item());
        }
        output.push(self.main_item(status, Some(text)));
        output
    }

    fn response<'a>(
        &'a self,
        status: &'static str,
        output: Vec<OutputItem>,
        instructions: &'a Value,
    ) -> ResponseObject<'a> {
        let finished = matches!(status, "completed" | "incomplete");
        let usage =
            (finished && !self.knobs.no_usage).then(|| ResponsesUsage::from_counts(&self.counts));
        let incomplete_details =
            (status == "incomplete").then(|| json!({"reason": "max_output_tokens"}));
        let error = (status == "failed").then(|| {
            json!({"code": "server_error", "message": "The model could not finish this response."})
        });
        let service_tier = if finished && self.request.service_tier == "auto" {
            "default"
        } else {
            &self.request.service_tier
        };
        ResponseObject {
            id: &self.id,
            object: "response",
            created_at: self.created_at,
            status,
            background: false,
            error,
            incomplete_details,
            instructions,
            max_output_tokens: self.request.max_output_tokens,
            max_tool_calls: None,
            model: wire::snapshot_name(&self.request.model),
            output,
            parallel_tool_calls: true,
            previous_response_id: None,
            prompt_cache_key: None,
            reasoning: json!({"effort": null, "summary": null}),
            safety_identifier: None,
            service_tier,
            store: true,
            temperature: 1.0,
            text: json!({"format": {"type": "text"}, "verbosity": "medium"}),
            tool_choice: "auto",
            tools: &self.request.tools,
            top_logprobs: 0,
            top_p: 1.0,
            truncation: "disabled",
            usage,
            user: None,
            metadata: json!({}),
        }
    }
}

/// A streamed event: its type and sequence number, then its own fields.
#[derive(Serialize)]
struct StreamEvent<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    sequence_number: u64,
    #[serde(flatten)]
    fields: T,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Created,
    InProgress,
    ReasoningAdded,
    ReasoningDone,
    ItemAdded,
    PartAdded,
    Delta(Piece),
    TextDone,
    PartDone,
    ItemDone,
    Terminal,
}

/// The event source of one streamed response.
struct ResponsesStream {
    builder: Builder,
    steps: VecDeque<Step>,
    sequence_number: u64,
    rng: Rng,
}

impl ResponsesStream {
    fn new(builder: Builder) -> ResponsesStream {
        let mut steps = VecDeque::from([Step::Created, Step::InProgress]);
        if builder.plan.reasoning_per_choice > 0 {
            steps.extend([Step::ReasoningAdded, Step::ReasoningDone]);
        }
        let tool_calls = builder.knobs.tool_calls;
        steps.push_back(Step::ItemAdded);
        if !tool_calls {
            steps.push_back(Step::PartAdded);
        }
        let error_after = builder.knobs.error_after_tokens;
        let output = pieces(&builder.plan, builder.knobs.tokens_per_chunk, error_after);
        steps.extend(output.into_iter().map(Step::Delta));
        if error_after.is_none() {
            steps.push_back(Step::TextDone);
            if !tool_calls {
                steps.push_back(Step::PartDone);
            }
            steps.push_back(Step::ItemDone);
        }
        steps.push_back(Step::Terminal);
        ResponsesStream {
            builder,
            steps,
            sequence_number: 0,
            rng: Rng::new(),
        }
    }

    fn event<T: Serialize>(&mut self, kind: &str, fields: T) -> String {
        let event = StreamEvent {
            kind,
            sequence_number: self.sequence_number,
            fields,
        };
        self.sequence_number += 1;
        named_event(kind, &to_json(&event))
    }

    fn render(&mut self, step: Step) -> Event {
        let b = &self.builder;
        let index = b.output_index();
        let item_id = b.item_id.clone();
        let full_text = || words::text(0, 0, b.plan.tokens_per_choice);
        let status = b.final_status();
        let tool_calls = b.knobs.tool_calls;
        match step {
            Step::Created | Step::InProgress => {
                let kind = match step {
                    Step::Created => "response.created",
                    _ => "response.in_progress",
                };
                let response = b.response("in_progress", Vec::new(), &b.request.instructions);
                let event = StreamEvent {
                    kind,
                    sequence_number: self.sequence_number,
                    fields: ResponseFields { response },
                };
                let frame = named_event(kind, &to_json(&event));
                self.sequence_number += 1;
                Event::plain(frame)
            }
            Step::ReasoningAdded | Step::ReasoningDone => {
                let (kind, hidden) = match step {
                    Step::ReasoningAdded => ("response.output_item.added", 0),
                    _ => ("response.output_item.done", b.plan.hidden_per_choice()),
                };
                let fields = ItemFields {
                    output_index: 0,
                    item: b.reasoning_item(),
                };
                let event = self.event(kind, fields);
                Event {
                    output_tokens: hidden,
                    ..Event::plain(event)
                }
            }
            Step::ItemAdded => {
                let item = b.main_item("in_progress", tool_calls.then(String::new));
                let fields = ItemFields {
                    output_index: index,
                    item,
                };
                Event::plain(self.event("response.output_item.added", fields))
            }
            Step::PartAdded | Step::PartDone => {
                let (kind, text) = match step {
                    Step::PartAdded => ("response.content_part.added", String::new()),
                    _ => ("response.content_part.done", full_text()),
                };
                let fields = PartFields {
                    item_id,
                    output_index: index,
                    content_index: 0,
                    part: OutputText::new(text),
                };
                Event::plain(self.event(kind, fields))
            }
            Step::Delta(piece) => {
                let delta = words::text(0, piece.start, piece.count);
                let length = 1 + self.rng.below(15) as usize;
                let obfuscation = self.rng.alphanumeric(length);
                let event = if tool_calls {
                    let fields = ArgumentsDelta {
                        item_id,
                        output_index: index,
                        delta,
                        obfuscation,
                    };
                    self.event("response.function_call_arguments.delta", fields)
                } else {
                    let fields = TextDelta {
                        item_id,
                        output_index: index,
                        content_index: 0,
                        delta,
                        logprobs: [],
                        obfuscation,
                    };
                    self.event("response.output_text.delta", fields)
                };
                Event::output(event, piece.count)
            }
            Step::TextDone => {
                let event = if tool_calls {
                    let fields = ArgumentsDone {
                        item_id,
                        output_index: index,
                        arguments: full_text(),
                    };
                    self.event("response.function_call_arguments.done", fields)
                } else {
                    let fields = TextDone {
                        item_id,
                        output_index: index,
                        content_index: 0,
                        text: full_text(),
                        logprobs: [],
                    };
                    self.event("response.output_text.done", fields)
                };
                Event::plain(event)
            }
            Step::ItemDone => {
                let fields = ItemFields {
                    output_index: index,
                    item: b.main_item(status, Some(full_text())),
                };
                Event::plain(self.event("response.output_item.done", fields))
            }
            Step::Terminal => Event::plain(self.terminal_event()),
        }
    }

    /// Renders the terminal event, padded to `x-mock-echo-bytes` when set.
    fn terminal_event(&mut self) -> String {
        let failed = self.builder.knobs.error_after_tokens.is_some();
        let (kind, status) = if failed {
            ("response.failed", "failed")
        } else if self.builder.plan.truncated {
            ("response.incomplete", "incomplete")
        } else {
            ("response.completed", "completed")
        };
        let Some(target) = self.builder.knobs.echo_bytes else {
            let instructions = self.builder.request.instructions.clone();
            return self.render_terminal(kind, status, &instructions);
        };
        let base = self.builder.request.instructions.as_str().unwrap_or("");
        let unpadded = Value::String(base.to_owned());
        let length = self.render_terminal(kind, status, &unpadded).len() as u64;
        let padding = usize::try_from(target.saturating_sub(length)).unwrap_or(0);
        let padded = Value::String(format!("{base}{}", " ".repeat(padding)));
        self.render_terminal(kind, status, &padded)
    }

    /// Renders the terminal event without consuming a sequence number.
    fn render_terminal(&self, kind: &str, status: &'static str, instructions: &Value) -> String {
        let b = &self.builder;
        let output = if status == "failed" {
            Vec::new()
        } else {
            b.output(status)
        };
        let event = StreamEvent {
            kind,
            sequence_number: self.sequence_number,
            fields: ResponseFields {
                response: b.response(status, output, instructions),
            },
        };
        named_event(kind, &to_json(&event))
    }
}

impl EventSource for ResponsesStream {
    fn next_event(&mut self) -> Option<Event> {
        let step = self.steps.pop_front()?;
        Some(self.render(step))
    }
}

#[derive(Serialize)]
struct ResponseFields<'a> {
    response: ResponseObject<'a>,
}

#[derive(Serialize)]
struct ItemFields {
    output_index: u64,
    item: OutputItem,
}

#[derive(Serialize)]
struct PartFields {
    item_id: String,
    output_index: u64,
    content_index: u64,
    part: OutputText,
}

#[derive(Serialize)]
struct TextDelta {
    item_id: String,
    output_index: u64,
    content_index: u64,
    delta: String,
    logprobs: [(); 0],
    obfuscation: String,
}

#[derive(Serialize)]
struct TextDone {
    item_id: String,
    output_index: u64,
    content_index: u64,
    text: String,
    logprobs: [(); 0],
}

#[derive(Serialize)]
struct ArgumentsDelta {
    item_id: String,
    output_index: u64,
    delta: String,
    obfuscation: String,
}

#[derive(Serialize)]
struct ArgumentsDone {
    item_id: String,
    output_index: u64,
    arguments: String,
}
