//! OpenAI chat completions: the request fields that decide cost, and usage in responses.

use crate::error::FilterError;
use crate::tokens::{self, Encoding};
use serde::Deserialize;
use serde_json::{Map, Value};
use spendfuse_protocol::Usage;

/// Largest `n` accepted; OpenAI's own limit is 128.
const MAX_CHOICES: u64 = 128;

/// The output-limit fields of a chat request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxField {
    MaxTokens,
    MaxCompletionTokens,
}

impl MaxField {
    fn key(self) -> &'static str {
        match self {
            MaxField::MaxTokens => "max_tokens",
            MaxField::MaxCompletionTokens => "max_completion_tokens",
        }
    }
}

/// A parsed chat completions request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    body: Map<String, Value>,
    /// Model named by the client.
    pub model: String,
    /// Tokenizer of the model.
    pub encoding: Encoding,
    /// True for `"stream": true`.
    pub stream: bool,
    /// True when the client itself asked for `stream_options.include_usage`.
    pub client_wants_usage: bool,
    /// Output-limit fields the client set.
    pub max_fields: Vec<MaxField>,
    /// Smallest output limit the client set, per choice.
    pub max_output_tokens: Option<u64>,
    /// Number of choices (`n`).
    pub choices: u64,
    /// Prompt tokens as counted by [`tokens::prompt_tokens`].
    pub prompt_tokens: u64,
}

impl ChatRequest {
    /// Parses and checks a request body.
    pub fn parse(bytes: &[u8], image_tokens: u64) -> Result<ChatRequest, FilterError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| FilterError::InvalidJson {
            detail: e.to_string(),
        })?;
        let Value::Object(body) = value else {
            return Err(FilterError::InvalidJson {
                detail: "the top level is not an object".into(),
            });
        };
        let model = match body.get("model") {
            None | Some(Value::Null) => {
                return Err(FilterError::MissingField {
                    field: "model",
                    expected: "a model name",
                })
            }
            Some(Value::String(model)) if !model.is_empty() => model.clone(),
            Some(_) => {
                return Err(FilterError::InvalidField {
                    field: "model",
                    expected: "a model name",
                })
            }
        };
        let messages = match body.get("messages") {
            None | Some(Value::Null) => {
                return Err(FilterError::MissingField {
                    field: "messages",
                    expected: "an array of messages",
                })
            }
            Some(Value::Array(messages)) => messages,
            Some(_) => {
                return Err(FilterError::InvalidField {
                    field: "messages",
                    expected: "an array of messages",
                })
            }
        };
        let stream = match body.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(stream)) => *stream,
            Some(_) => {
                return Err(FilterError::InvalidField {
                    field: "stream",
                    expected: "true or false",
                })
            }
        };
        let client_wants_usage = match body.get("stream_options") {
            None | Some(Value::Null) => false,
            Some(Value::Object(options)) => {
                options.get("include_usage") == Some(&Value::Bool(true))
            }
            Some(_) => {
                return Err(FilterError::InvalidField {
                    field: "stream_options",
                    expected: "an object",
                })
            }
        };
        let choices = match body.get("n") {
            None | Some(Value::Null) => 1,
            Some(value) => match value.as_u64() {
                Some(n) if (1..=MAX_CHOICES).contains(&n) => n,
                _ => {
                    return Err(FilterError::InvalidField {
                        field: "n",
                        expected: "an integer from 1 to 128",
                    })
                }
            },
        };
        let mut max_fields = Vec::new();
        let mut max_output_tokens: Option<u64> = None;
        for field in [MaxField::MaxTokens, MaxField::MaxCompletionTokens] {
            let limit = match body.get(field.key()) {
                None | Some(Value::Null) => continue,
                Some(value) => match value.as_u64() {
                    Some(limit) if limit > 0 => limit,
                    _ => {
                        let field = field.key();
                        return Err(FilterError::InvalidField {
                            field,
                            expected: "a positive integer",
                        });
                    }
                },
            };
            max_fields.push(field);
            max_output_tokens = Some(max_output_tokens.map_or(limit, |m| m.min(limit)));
        }
        let encoding = Encoding::for_model(&model);
        let prompt_tokens =
            tokens::prompt_tokens(encoding, messages, body.get("tools"), image_tokens);
        Ok(ChatRequest {
            body,
            model,
            encoding,
            stream,
            client_wants_usage,
            max_fields,
            max_output_tokens,
            choices,
            prompt_tokens,
        })
    }

    /// Returns the body to forward: its output limit set to `output_tokens`, and for streams
    /// `stream_options.include_usage` set so the provider reports usage.
    pub fn forwarded_body(&self, output_tokens: u64) -> Vec<u8> {
        let mut body = self.body.clone();
        if self.max_fields.is_empty() {
            body.insert(
                MaxField::MaxCompletionTokens.key().into(),
                output_tokens.into(),
            );
        }
        for field in &self.max_fields {
            body.insert(field.key().into(), output_tokens.into());
        }
        if self.stream {
            let options = body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(options) = options {
                options.insert("include_usage".into(), Value::Bool(true));
            }
        }
        Value::Object(body).to_string().into_bytes()
    }
}

#[derive(Deserialize)]
struct UsageJson {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl From<UsageJson> for Usage {
    fn from(usage: UsageJson) -> Usage {
        let cached = usage
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0);
        Usage {
            prompt_tokens: usage.prompt_tokens,
            cached_prompt_tokens: cached.min(usage.prompt_tokens),
            completion_tokens: usage.completion_tokens,
            ..Usage::default()
        }
    }
}

/// Generated text of one choice: a streamed `delta` or a complete `message`.
#[derive(Deserialize, Default)]
struct Generated {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    /// Reasoning text that some OpenAI-compatible servers stream; it is billed as output.
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCall>>,
    #[serde(default)]
    function_call: Option<FunctionCall>,
}

#[derive(Deserialize)]
struct ToolCall {
    #[serde(default)]
    function: Option<FunctionCall>,
}

#[derive(Deserialize)]
struct FunctionCall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

impl Generated {
    fn tokens(&self, encoding: Encoding) -> u64 {
        let texts = [&self.content, &self.refusal, &self.reasoning_content];
        let mut total: u64 = texts
            .iter()
            .filter_map(|t| t.as_deref())
            .map(|t| encoding.count(t))
            .sum();
        let functions = self
            .tool_calls
            .iter()
            .flatten()
            .filter_map(|c| c.function.as_ref());
        for function in functions.chain(self.function_call.as_ref()) {
            for text in [&function.name, &function.arguments].into_iter().flatten() {
                total += encoding.count(text);
            }
        }
        total
    }
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Option<Generated>,
    #[serde(default)]
    message: Option<Generated>,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    usage: Option<UsageJson>,
    #[serde(default)]
    error: Option<Value>,
}

/// What one streamed chunk or one complete response carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkInfo {
    /// Output tokens in the chunk's deltas, counted with the model's tokenizer.
    pub output_tokens: u64,
    /// Usage the provider reported in it.
    pub usage: Option<Usage>,
    /// True for the extra usage chunk of `include_usage`: usage and an empty `choices` list.
    pub usage_only: bool,
    /// True when the chunk is an error object.
    pub is_error: bool,
}

/// Reads a streamed `chat.completion.chunk` or a complete `chat.completion`; `None` when the
/// data is not such a JSON object (for example `[DONE]`).
pub fn read_chunk(encoding: Encoding, data: &str) -> Option<ChunkInfo> {
    let chunk: Chunk = serde_json::from_str(data).ok()?;
    let choices = chunk.choices.unwrap_or_default();
    let output_tokens = choices
        .iter()
        .flat_map(|choice| choice.delta.iter().chain(choice.message.iter()))
        .map(|generated| generated.tokens(encoding))
        .sum();
    let usage = chunk.usage.map(Usage::from);
    Some(ChunkInfo {
        output_tokens,
        usage_only: usage.is_some() && choices.is_empty(),
        usage,
        is_error: chunk.error.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<ChatRequest, FilterError> {
        ChatRequest::parse(body.to_string().as_bytes(), 1105)
    }

    fn hello(extra: Value) -> Value {
        let mut body =
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]});
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        body
    }

    #[test]
    fn invalid_json_is_rejected() {
        let error = ChatRequest::parse(b"{not json", 0).unwrap_err();
        assert!(matches!(error, FilterError::InvalidJson { .. }));
    }

    #[test]
    fn missing_model_is_rejected() {
        let error = parse(json!({"messages": []})).unwrap_err();
        assert_eq!(
            error,
            FilterError::MissingField {
                field: "model",
                expected: "a model name"
            }
        );
    }

    #[test]
    fn non_object_body_is_rejected() {
        assert!(matches!(
            parse(json!([1, 2])).unwrap_err(),
            FilterError::InvalidJson { .. }
        ));
    }

    #[test]
    fn negative_max_tokens_is_rejected() {
        let error = parse(hello(json!({"max_tokens": -1}))).unwrap_err();
        assert!(matches!(
            error,
            FilterError::InvalidField {
                field: "max_tokens",
                ..
            }
        ));
    }

    #[test]
    fn zero_n_is_rejected() {
        assert!(parse(hello(json!({"n": 0}))).is_err());
    }

    #[test]
    fn smaller_of_both_limits_wins() {
        let request = parse(hello(
            json!({"max_tokens": 50, "max_completion_tokens": 30}),
        ))
        .unwrap();
        assert_eq!(request.max_output_tokens, Some(30));
    }

    #[test]
    fn forwarded_body_gets_default_limit() {
        let request = parse(hello(json!({}))).unwrap();
        let body: Value = serde_json::from_slice(&request.forwarded_body(4096)).unwrap();
        assert_eq!(body["max_completion_tokens"], 4096);
        assert!(body.get("max_tokens").is_none());
    }

    #[test]
    fn forwarded_body_keeps_clients_field() {
        let request = parse(hello(json!({"max_tokens": 500}))).unwrap();
        let body: Value = serde_json::from_slice(&request.forwarded_body(40)).unwrap();
        assert_eq!(body["max_tokens"], 40);
        assert!(body.get("max_completion_tokens").is_none());
    }

    #[test]
    fn stream_gets_include_usage() {
        let request = parse(hello(json!({"stream": true}))).unwrap();
        assert!(!request.client_wants_usage);
        let body: Value = serde_json::from_slice(&request.forwarded_body(10)).unwrap();
        assert_eq!(body["stream_options"]["include_usage"], true);
    }

    #[test]
    fn client_usage_request_is_seen() {
        let request = parse(hello(
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ));
        assert!(request.unwrap().client_wants_usage);
    }

    #[test]
    fn chunk_counts_content_and_tool_arguments() {
        let data = json!({"choices": [
            {"index": 0, "delta": {"content": "Hello"}},
            {"index": 1, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":1}"}}]}}
        ]});
        let info = read_chunk(Encoding::O200kBase, &data.to_string()).unwrap();
        let expected = Encoding::O200kBase.count("Hello") + Encoding::O200kBase.count("{\"a\":1}");
        assert_eq!(info.output_tokens, expected);
    }

    #[test]
    fn refusal_is_counted() {
        let data = json!({"choices": [{"index": 0, "delta": {"refusal": "I can't"}}]});
        let info = read_chunk(Encoding::O200kBase, &data.to_string()).unwrap();
        assert_eq!(info.output_tokens, Encoding::O200kBase.count("I can't"));
    }

    #[test]
    fn usage_chunk_is_usage_only() {
        let data = json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4,
            "prompt_tokens_details": {"cached_tokens": 2}}});
        let info = read_chunk(Encoding::O200kBase, &data.to_string()).unwrap();
        assert!(info.usage_only);
        let usage = info.usage.unwrap();
        assert_eq!(
            (
                usage.prompt_tokens,
                usage.cached_prompt_tokens,
                usage.completion_tokens
            ),
            (9, 2, 4)
        );
    }

    #[test]
    fn null_usage_is_no_usage() {
        let data = json!({"choices": [{"index": 0, "delta": {"content": "a"}}], "usage": null});
        assert_eq!(
            read_chunk(Encoding::O200kBase, &data.to_string())
                .unwrap()
                .usage,
            None
        );
    }

    #[test]
    fn done_marker_is_not_a_chunk() {
        assert_eq!(read_chunk(Encoding::O200kBase, "[DONE]"), None);
    }

    #[test]
    fn complete_response_counts_message() {
        let data = json!({"object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "Hi there"}}
        ]});
        let info = read_chunk(Encoding::O200kBase, &data.to_string()).unwrap();
        assert_eq!(info.output_tokens, Encoding::O200kBase.count("Hi there"));
    }
}
