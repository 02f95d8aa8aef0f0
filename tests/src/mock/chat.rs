//! OpenAI chat completions, `POST /v1/chat/completions`, and the request handling that Azure's
//! chat endpoint shares.

use super::chat_stream::{ChatStream, Flavour, OutputKind, StreamHeader, StreamShape};
use super::events::to_json;
use super::plan::{Plan, TokenCounts};
use super::records::update;
use super::request::{parse_chat_request, InvalidRequest};
use super::wire::{
    self, AssistantMessage, ChatCompletion, CompletionChoice, ErrorBody, ErrorDetail, FunctionCall,
    ToolCall, Usage,
};
use super::{azure, json_response, set_headers, stream_response, words};
use super::{error_response, unix_seconds, Incoming, MockState, Provider, Rng};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Instant;

/// Function name of tool call output when the request names no tool.
const DEFAULT_TOOL_NAME: &str = "record_answer";

pub(super) async fn chat_completions(
    State(state): State<Arc<MockState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let delay = super::knobs::response_delay(&headers);
    let incoming = state.receive(Provider::OpenAiChat, &uri, headers, &body);
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut response = serve(incoming, Flavour::OpenAi, None);
    let request_id = format!("req_{}", Rng::new().hex(32));
    set_headers(
        response.headers_mut(),
        &[
            ("x-request-id", request_id),
            (
                "openai-processing-ms",
                started.elapsed().as_millis().to_string(),
            ),
            ("openai-version", "2020-10-01".to_owned()),
        ],
    );
    response
}

/// Serves a chat completion request in `flavour`. `deployment` is Azure's deployment name,
/// which sets the model when the body names none.
pub(super) fn serve(incoming: Incoming, flavour: Flavour, deployment: Option<&str>) -> Response {
    let record = &incoming.record;
    let error = |status: StatusCode, detail: ErrorDetail| {
        error_response(record, status, &error_body(detail))
    };
    let knobs = match &incoming.knobs {
        Ok(knobs) => *knobs,
        Err(message) => {
            let detail = invalid_request(message.clone(), None, Some("invalid_mock_header"));
            return error(StatusCode::BAD_REQUEST, detail);
        }
    };
    let mut body = match &incoming.parsed {
        Ok(body) => body.clone(),
        Err(parse_error) => {
            let message = format!("The request body is not valid JSON ({parse_error}).");
            return error(
                StatusCode::BAD_REQUEST,
                invalid_request(message, None, None),
            );
        }
    };

    if let (Some(deployment), Some(object)) = (deployment, body.as_object_mut()) {
        object
            .entry("model")
            .or_insert_with(|| Value::String(deployment.to_owned()));
    }

    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("this model");
    if let Some(status) = knobs.status {
        return match flavour {
            Flavour::OpenAi => {
                error_response(record, status, &error_body(status_error(status, model)))
            }
            Flavour::Azure => error_response(record, status, &azure::status_error(status)),
        };
    }
    let request = match parse_chat_request(&body) {
        Ok(request) => request,
        Err(InvalidRequest {
            message,
            param,
            code,
        }) => {
            return error(
                StatusCode::BAD_REQUEST,
                invalid_request(message, param, code),
            )
        }
    };

    let max = request.max_tokens.map(|(_, value)| value);
    let plan = Plan::new(request.choices, max, &knobs);
    let text_prompt = crate::tokens::request_prompt_tokens(&body);
    let counts = TokenCounts::new(text_prompt, &plan, &knobs);
    update(record, |record| {
        record.max_tokens_field = request.max_tokens.map(|(field, _)| field.name().to_owned());
        record.max_tokens_value = max;
        record.prompt_tokens = text_prompt;
    });
    tracing::debug!(model = %request.model, stream = request.stream, ?plan, "chat completion");

    let header = StreamHeader {
        id: format!("chatcmpl-{}", Rng::new().alphanumeric(29)),
        created: unix_seconds(),
        model: wire::snapshot_name(&request.model).to_owned(),
        service_tier: request.service_tier.clone(),
        system_fingerprint: fingerprint(&request.model),
    };
    let kind = if knobs.tool_calls {
        OutputKind::ToolCalls
    } else if knobs.refusal {
        OutputKind::Refusal
    } else {
        OutputKind::Text
    };
    let tool_name = request
        .tool_name
        .clone()
        .unwrap_or_else(|| DEFAULT_TOOL_NAME.to_owned());
    if request.stream {
        let shape = StreamShape {
            tokens_per_chunk: knobs.tokens_per_chunk,
            usage_field: request.include_usage && !knobs.no_usage,
            obfuscation: request.include_obfuscation && flavour == Flavour::OpenAi,
            kind,
            tool_name,
            error_after: knobs.error_after_tokens,
            flavour,
        };
        let source = ChatStream::new(header, plan, shape, counts);
        return stream_response(record, source, &knobs, "text/event-stream; charset=utf-8");
    }
    let usage = (!knobs.no_usage).then(|| Usage::from_counts(&counts));
    let completion = completion(&header, &plan, kind, &tool_name, usage);
    let json = match flavour {
        Flavour::OpenAi => to_json(&completion),
        Flavour::Azure => to_json(&azure::completion_value(&completion)),
    };
    update(record, |record| {
        record.generated_tokens = plan.completion_tokens()
    });
    let headers = &incoming.headers;
    json_response(record, StatusCode::OK, json, headers, knobs.force_gzip)
}

fn completion<'a>(
    header: &'a StreamHeader,
    plan: &Plan,
    kind: OutputKind,
    tool_name: &str,
    usage: Option<Usage>,
) -> ChatCompletion<'a> {
    let mut rng = Rng::new();
    let choices = (0..plan.choices)
        .map(|index| {
            let text = words::text(index, 0, plan.tokens_per_choice);
            let mut message = AssistantMessage {
                role: "assistant",
                content: None,
                refusal: None,
                tool_calls: None,
                annotations: [],
            };
            match kind {
                OutputKind::Text => message.content = Some(text),
                OutputKind::Refusal => message.refusal = Some(text),
                OutputKind::ToolCalls => {
                    message.tool_calls = Some(vec![ToolCall {
                        id: format!("call_{}", rng.alphanumeric(24)),
                        kind: "function",
                        function: FunctionCall {
                            name: Some(tool_name.to_owned()),
                            arguments: text,
                        },
                    }]);
                }
            }
            CompletionChoice {
                index,
                message,
                logprobs: None,
                finish_reason: plan.finish_reason(kind.natural_finish()),
            }
        })
        .collect();
    ChatCompletion {
        id: &header.id,
        object: wire::COMPLETION_OBJECT,
        created: header.created,
        model: &header.model,
        choices,
        usage,
        service_tier: &header.service_tier,
        system_fingerprint: header.system_fingerprint.as_deref(),
    }
}

/// Returns an `invalid_request_error` with `message`, the field at fault and a code.
pub fn invalid_request(
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

/// Wraps an error in OpenAI's `{"error": {...}}` body.
pub fn error_body(error: ErrorDetail) -> ErrorBody {
    ErrorBody { error }
}

/// Returns the error the API sends with `status`, in its type and code for that status.
pub fn status_error(status: StatusCode, model: &str) -> ErrorDetail {
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

/// Returns a stable `fp_` fingerprint per model, or null for gpt-3.5, as the API sends for
/// gpt-3.5-turbo.
pub fn fingerprint(model: &str) -> Option<String> {
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
