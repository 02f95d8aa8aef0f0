//! Azure OpenAI: `POST /openai/deployments/{deployment}/chat/completions?api-version=...` and
//! `/openai/deployments/{deployment}/embeddings`, with the `api-key` header.
//!
//! The body is OpenAI's, with Azure's differences: keys in alphabetical order, content filter
//! results on the prompt and on every choice, no `service_tier` or `obfuscation`, and a first
//! streamed chunk with `"choices": []` and only `prompt_filter_results`. The deployment name is
//! the model, so responses name the model's dated snapshot.

use super::chat_stream::Flavour;
use super::events::{data_event, to_json};
use super::wire::{ChatCompletion, ChatCompletionChunk};
use super::{chat, embeddings, error_response, query_param, set_headers};
use super::{Incoming, MockState, Provider, Rng};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Value};
use std::sync::Arc;

pub(super) async fn chat_completions(
    State(state): State<Arc<MockState>>,
    Path(deployment): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let incoming = state.receive(Provider::AzureChat, &uri, headers, &body);
    answer(incoming, &uri, |incoming| {
        chat::serve(incoming, Flavour::Azure, Some(&deployment))
    })
}

pub(super) async fn embeddings(
    State(state): State<Arc<MockState>>,
    Path(deployment): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let incoming = state.receive(Provider::Embeddings, &uri, headers, &body);
    answer(incoming, &uri, |incoming| {
        embeddings::serve(incoming, Some(&deployment))
    })
}

/// Rejects a request without `api-version` as Azure does, else serves it, and adds Azure's
/// response headers.
fn answer(incoming: Incoming, uri: &Uri, serve: impl FnOnce(Incoming) -> Response) -> Response {
    let mut response = if query_param(uri, "api-version").is_none() {
        let body = json!({"error": {"code": "404", "message": "Resource not found"}});
        error_response(&incoming.record, StatusCode::NOT_FOUND, &body)
    } else {
        serve(incoming)
    };
    let mut rng = Rng::new();
    let request_id = format!(
        "{}-{}-{}-{}-{}",
        rng.hex(8),
        rng.hex(4),
        rng.hex(4),
        rng.hex(4),
        rng.hex(12)
    );
    set_headers(
        response.headers_mut(),
        &[
            ("apim-request-id", request_id.clone()),
            ("x-request-id", request_id),
            ("x-ms-region", "East US".to_owned()),
        ],
    );
    response
}

/// Returns the error body Azure sends with `status`: `{"error": {"code": "429", ...}}`.
pub fn status_error(status: StatusCode) -> Value {
    let message = match status.as_u16() {
        401 => {
            "Access denied: the subscription key is invalid or the endpoint is wrong.".to_owned()
        }
        429 => "Requests to this deployment exceeded the token rate limit of its pricing tier: \
                retry after 1 second."
            .to_owned(),
        500..=599 => "The server failed while processing the request: retry it.".to_owned(),
        _ => format!("The mock returned status {status} as the x-mock-status header requested."),
    };
    json!({"error": {"code": status.as_u16().to_string(), "message": message}})
}

fn filter_result() -> Value {
    json!({"filtered": false, "severity": "safe"})
}

fn detection_result() -> Value {
    json!({"filtered": false, "detected": false})
}

/// Content filter results of a prompt that passed.
fn prompt_filter_results() -> Value {
    json!([{
        "prompt_index": 0,
        "content_filter_results": {
            "hate": filter_result(),
            "jailbreak": detection_result(),
            "self_harm": filter_result(),
            "sexual": filter_result(),
            "violence": filter_result()
        }
    }])
}

/// Content filter results of generated output that passed.
fn output_filter_results() -> Value {
    json!({
        "hate": filter_result(),
        "protected_material_code": detection_result(),
        "protected_material_text": detection_result(),
        "self_harm": filter_result(),
        "sexual": filter_result(),
        "violence": filter_result()
    })
}

/// Returns the first event of an Azure stream: no choices, no usage key, only the prompt's
/// filter results.
pub fn prompt_filter_event() -> String {
    let chunk = json!({
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": prompt_filter_results()
    });
    data_event(&to_json(&chunk))
}

/// Turns an OpenAI chunk into Azure's: filter results on choices that carry output, `{}` on
/// the others, and no `service_tier`, `obfuscation` or null `usage`.
pub fn chunk_value(chunk: &ChatCompletionChunk<'_>) -> Value {
    let mut value = serde_json::to_value(chunk).unwrap_or(Value::Null);
    let Some(object) = value.as_object_mut() else {
        return value;
    };
    object.remove("service_tier");
    object.remove("obfuscation");
    if object.get("usage").is_some_and(Value::is_null) {
        object.remove("usage");
    }
    let choices = object.get_mut("choices").and_then(Value::as_array_mut);
    for choice in choices.into_iter().flatten() {
        let delta = &choice["delta"];
        let has_output = ["content", "refusal"]
            .iter()
            .any(|field| delta[field].as_str().is_some_and(|text| !text.is_empty()))
            || delta
                .pointer("/tool_calls/0/function/arguments")
                .is_some_and(|text| text.as_str().is_some_and(|text| !text.is_empty()));
        let results = if has_output {
            output_filter_results()
        } else {
            json!({})
        };
        if let Some(choice) = choice.as_object_mut() {
            choice.insert("content_filter_results".into(), results);
        }
    }
    value
}

/// Turns an OpenAI completion into Azure's: filter results on the prompt and on every choice,
/// no `service_tier`.
pub fn completion_value(completion: &ChatCompletion<'_>) -> Value {
    let mut value = serde_json::to_value(completion).unwrap_or(Value::Null);
    let Some(object) = value.as_object_mut() else {
        return value;
    };
    object.remove("service_tier");
    object.insert("prompt_filter_results".into(), prompt_filter_results());
    let choices = object.get_mut("choices").and_then(Value::as_array_mut);
    for choice in choices.into_iter().flatten() {
        if let Some(choice) = choice.as_object_mut() {
            choice.insert("content_filter_results".into(), output_filter_results());
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_filter_event_has_no_usage_key() {
        let event = prompt_filter_event();
        let json: Value = serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(json["choices"], json!([]));
        assert!(json.get("usage").is_none());
        assert!(json["prompt_filter_results"][0]["content_filter_results"].is_object());
    }

    #[test]
    fn keys_are_alphabetical() {
        let event = prompt_filter_event();
        assert!(event.starts_with(r#"data: {"choices":[],"created":0,"id":"","#));
    }
}
