//! Parsing of a chat completion request.

use super::wire::is_reasoning_model;
use serde_json::{Map, Value};

/// Largest `n` the API accepts.
const MAX_CHOICES: u64 = 128;

/// Field of the request that set the output maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxTokensField {
    /// `max_tokens`, the older field.
    MaxTokens,
    /// `max_completion_tokens`, the field reasoning models require.
    MaxCompletionTokens,
}

impl MaxTokensField {
    /// Returns the JSON field name.
    pub fn name(self) -> &'static str {
        match self {
            MaxTokensField::MaxTokens => "max_tokens",
            MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
        }
    }
}

/// The parts of a chat completion request that shape the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequest {
    /// Model named in the request.
    pub model: String,
    /// Number of choices to generate.
    pub choices: u64,
    /// Output maximum per choice and the field it came from; `max_completion_tokens` wins
    /// when both are set.
    pub max_tokens: Option<(MaxTokensField, u64)>,
    /// True for a streamed response.
    pub stream: bool,
    /// True when the request set `stream_options.include_usage`.
    pub include_usage: bool,
    /// False when the request set `stream_options.include_obfuscation` to false.
    pub include_obfuscation: bool,
    /// Service tier to name in the response.
    pub service_tier: String,
    /// Name of the first function in `tools`, which tool call output calls.
    pub tool_name: Option<String>,
}

/// A request the API would reject with status 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRequest {
    /// What is wrong and how to fix it.
    pub message: String,
    /// Request field at fault.
    pub param: Option<&'static str>,
    /// Machine-readable code, as the API gives for this kind of mistake.
    pub code: Option<&'static str>,
}

impl InvalidRequest {
    fn new(message: String, param: Option<&'static str>, code: Option<&'static str>) -> Self {
        InvalidRequest {
            message,
            param,
            code,
        }
    }
}

/// Returns the value of `stream_options.include_usage`, false when absent.
pub fn include_usage(body: &Value) -> bool {
    body.pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Returns the output maximum of `body` and its field, `max_completion_tokens` first.
pub fn max_tokens_of(body: &Value) -> Option<(MaxTokensField, u64)> {
    for field in [
        MaxTokensField::MaxCompletionTokens,
        MaxTokensField::MaxTokens,
    ] {
        if let Some(value) = body.get(field.name()).and_then(Value::as_u64) {
            return Some((field, value));
        }
    }
    None
}

/// Checks a parsed body the way the API does and extracts what shapes the response.
pub fn parse_chat_request(body: &Value) -> Result<ChatRequest, InvalidRequest> {
    let Some(object) = body.as_object() else {
        let message = "The request body must be a JSON object.".to_owned();
        return Err(InvalidRequest::new(message, None, None));
    };
    let model = required_model(object)?;
    check_messages(object)?;

    let choices = positive_integer(body, "n", Some(MAX_CHOICES))?.unwrap_or(1);
    positive_integer(body, "max_tokens", None)?;
    positive_integer(body, "max_completion_tokens", None)?;
    if object.contains_key("max_tokens") && is_reasoning_model(&model) {
        let message = format!(
            "Unsupported parameter: model {model} does not take 'max_tokens', \
             so send 'max_completion_tokens' instead."
        );
        let code = Some("unsupported_parameter");
        return Err(InvalidRequest::new(message, Some("max_tokens"), code));
    }

    let stream = object.get("stream").and_then(Value::as_bool);
    let stream = stream.unwrap_or(false);
    let has_stream_options = object
        .get("stream_options")
        .is_some_and(|value| !value.is_null());
    if has_stream_options && !stream {
        let message = "'stream_options' is only allowed when 'stream' is true.".to_owned();
        return Err(InvalidRequest::new(message, Some("stream_options"), None));
    }

    let include_obfuscation = body.pointer("/stream_options/include_obfuscation");
    let service_tier = match object.get("service_tier").and_then(Value::as_str) {
        Some(tier) if tier != "auto" => tier.to_owned(),
        _ => "default".to_owned(),
    };
    Ok(ChatRequest {
        model,
        choices,
        max_tokens: max_tokens_of(body),
        stream,
        include_usage: include_usage(body),
        include_obfuscation: include_obfuscation.and_then(Value::as_bool).unwrap_or(true),
        service_tier,
        tool_name: body
            .pointer("/tools/0/function/name")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

fn required_model(object: &Map<String, Value>) -> Result<String, InvalidRequest> {
    match object.get("model") {
        Some(Value::String(model)) if !model.is_empty() => Ok(model.clone()),
        _ => {
            let message = "The request has no model: set 'model' to a model name.".to_owned();
            Err(InvalidRequest::new(message, Some("model"), None))
        }
    }
}

fn check_messages(object: &Map<String, Value>) -> Result<(), InvalidRequest> {
    match object.get("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => Ok(()),
        Some(Value::Array(_)) => {
            let message = "'messages' is empty: send at least one message.".to_owned();
            let code = Some("empty_array");
            Err(InvalidRequest::new(message, Some("messages"), code))
        }
        _ => {
            let message = "Missing required parameter: 'messages' must be an array.".to_owned();
            let code = Some("missing_required_parameter");
            Err(InvalidRequest::new(message, Some("messages"), code))
        }
    }
}

fn positive_integer(
    body: &Value,
    field: &'static str,
    max: Option<u64>,
) -> Result<Option<u64>, InvalidRequest> {
    let value = match body.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(value) => value,
    };
    let Some(number) = value.as_u64().filter(|number| *number >= 1) else {
        let message = format!("Invalid '{field}': expected an integer of at least 1, got {value}.");
        return Err(InvalidRequest::new(
            message,
            Some(field),
            Some("integer_below_min_value"),
        ));
    };
    if let Some(max) = max.filter(|max| number > *max) {
        let message = format!("Invalid '{field}': expected at most {max}, got {number}.");
        return Err(InvalidRequest::new(
            message,
            Some(field),
            Some("integer_above_max_value"),
        ));
    }
    Ok(Some(number))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(extra: Value) -> Value {
        let mut body =
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        body
    }

    #[test]
    fn minimal_request_defaults() {
        let parsed = parse_chat_request(&request(json!({}))).unwrap();
        assert_eq!(parsed.choices, 1);
        assert_eq!(parsed.max_tokens, None);
        assert!(!parsed.stream);
        assert_eq!(parsed.service_tier, "default");
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        let body = request(json!({"max_tokens": 9, "max_completion_tokens": 5}));
        let parsed = parse_chat_request(&body).unwrap();
        assert_eq!(
            parsed.max_tokens,
            Some((MaxTokensField::MaxCompletionTokens, 5))
        );
    }

    #[test]
    fn missing_model_is_invalid() {
        let body = json!({"messages": [{"role": "user", "content": "hi"}]});
        assert_eq!(parse_chat_request(&body).unwrap_err().param, Some("model"));
    }

    #[test]
    fn empty_messages_are_invalid() {
        let body = json!({"model": "gpt-4o", "messages": []});
        assert_eq!(
            parse_chat_request(&body).unwrap_err().code,
            Some("empty_array")
        );
    }

    #[test]
    fn zero_max_tokens_is_invalid() {
        let error = parse_chat_request(&request(json!({"max_tokens": 0}))).unwrap_err();
        assert_eq!(error.param, Some("max_tokens"));
    }

    #[test]
    fn reasoning_model_rejects_max_tokens() {
        let body = json!({"model": "o3-mini", "messages": [{"role": "user", "content": "hi"}],
                          "max_tokens": 10});
        assert_eq!(
            parse_chat_request(&body).unwrap_err().code,
            Some("unsupported_parameter")
        );
    }

    #[test]
    fn stream_options_need_stream() {
        let body = request(json!({"stream_options": {"include_usage": true}}));
        assert_eq!(
            parse_chat_request(&body).unwrap_err().param,
            Some("stream_options")
        );
    }

    #[test]
    fn too_many_choices_are_invalid() {
        let error = parse_chat_request(&request(json!({"n": 129}))).unwrap_err();
        assert_eq!(error.code, Some("integer_above_max_value"));
    }
}
