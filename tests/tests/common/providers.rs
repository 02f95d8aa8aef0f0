//! Requests through Envoy in each provider's format, with its identity header, and the usage
//! each format reports, for the multi-provider end-to-end tests.

use serde_json::{json, Value};
use spendfuse_tests::harness::paths;
use spendfuse_tests::pricing::{ModelPrice, Pricing};
use spendfuse_tests::usage::Usage;
use spendfuse_tests::{read_sse, SseRead, Stack};
use std::time::Duration;

/// Anthropic model of the tests; its cache prices differ from its input price.
pub const ANTHROPIC_MODEL: &str = "claude-sonnet-4-5";
/// Gemini model of the tests.
pub const GEMINI_MODEL: &str = "gemini-2.5-flash";
/// Reasoning model of the chat tests, which takes `max_completion_tokens` only.
pub const REASONING_MODEL: &str = "o4-mini";
/// Model with audio prices.
pub const AUDIO_MODEL: &str = "gpt-4o-audio-preview";
/// Embedding model, also the name of the shipped Azure embeddings deployment.
pub const EMBEDDING_MODEL: &str = "text-embedding-3-small";
/// Azure deployment that the shipped configuration maps to gpt-4o-mini.
pub const AZURE_DEPLOYMENT: &str = "gpt-4o-mini";
/// API version that Azure requests name.
pub const AZURE_API_VERSION: &str = "2024-10-21";

/// Upper bound on how long one streamed test request may take.
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// Returns the shipped prices of `model`.
pub fn price_of(model: &str) -> ModelPrice {
    let file = paths::pricing_file().expect("pricing file");
    let pricing = Pricing::load(&file).expect("pricing file parses");
    pricing.require(model).expect("model has a price")
}

/// Returns the Azure chat completions path of the shipped deployment.
pub fn azure_chat_path() -> String {
    format!(
        "/openai/deployments/{AZURE_DEPLOYMENT}/chat/completions?api-version={AZURE_API_VERSION}"
    )
}

/// Returns the Azure embeddings path of the shipped embeddings deployment.
pub fn azure_embeddings_path() -> String {
    format!("/openai/deployments/{EMBEDDING_MODEL}/embeddings?api-version={AZURE_API_VERSION}")
}

/// Returns Gemini's path for `model`: `streamGenerateContent?alt=sse` when `stream`.
pub fn gemini_path(model: &str, stream: bool) -> String {
    if stream {
        format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/v1beta/models/{model}:generateContent")
    }
}

/// A metered endpoint, with the identity header its provider uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Azure,
    Responses,
    Anthropic,
    Gemini { stream: bool },
    Embeddings,
    AzureEmbeddings,
}

impl Endpoint {
    /// Returns the request path.
    pub fn path(self) -> String {
        match self {
            Endpoint::Chat => "/v1/chat/completions".into(),
            Endpoint::Azure => azure_chat_path(),
            Endpoint::Responses => "/v1/responses".into(),
            Endpoint::Anthropic => "/v1/messages".into(),
            Endpoint::Gemini { stream } => gemini_path(GEMINI_MODEL, stream),
            Endpoint::Embeddings => "/v1/embeddings".into(),
            Endpoint::AzureEmbeddings => azure_embeddings_path(),
        }
    }

    /// Returns a POST of `body` through Envoy, with `key` in the provider's identity header
    /// when given.
    pub fn post(self, stack: &Stack, key: Option<&str>, body: &Value) -> reqwest::RequestBuilder {
        let request = stack.http().post(stack.url(&self.path())).json(body);
        let request = match self {
            Endpoint::Anthropic => request.header("anthropic-version", "2023-06-01"),
            _ => request,
        };
        let Some(key) = key else {
            return request;
        };
        match self {
            Endpoint::Chat | Endpoint::Responses | Endpoint::Embeddings => request.bearer_auth(key),
            Endpoint::Azure | Endpoint::AzureEmbeddings => request.header("api-key", key),
            Endpoint::Anthropic => request.header("x-api-key", key),
            Endpoint::Gemini { .. } => request.header("x-goog-api-key", key),
        }
    }

    /// Returns a small valid request body, streamed when `stream` and the format streams by
    /// a body field.
    pub fn body(self, stream: bool) -> Value {
        match self {
            Endpoint::Chat | Endpoint::Azure => {
                let mut body = json!({"messages": [
                    {"role": "system", "content": "You answer in plain words."},
                    {"role": "user", "content": "Tell me how a spending limit protects a team."}
                ]});
                if self == Endpoint::Chat {
                    body["model"] = json!("gpt-4o-mini");
                }
                if stream {
                    body["stream"] = json!(true);
                    body["stream_options"] = json!({"include_usage": true});
                }
                body
            }
            Endpoint::Responses => json!({
                "model": "gpt-4o-mini",
                "instructions": "You answer in plain words.",
                "input": "Tell me how a spending limit protects a team.",
                "stream": stream
            }),
            Endpoint::Anthropic => json!({
                "model": ANTHROPIC_MODEL,
                "max_tokens": 400,
                "system": "You answer in plain words.",
                "messages": [{"role": "user", "content": "Tell me how a spending limit protects a team."}],
                "stream": stream
            }),
            Endpoint::Gemini { .. } => json!({
                "systemInstruction": {"parts": [{"text": "You answer in plain words."}]},
                "contents": [{"role": "user", "parts": [{"text": "Tell me how a spending limit protects a team."}]}]
            }),
            Endpoint::Embeddings => {
                json!({"model": EMBEDDING_MODEL, "input": ["a budget", "a limit"]})
            }
            Endpoint::AzureEmbeddings => json!({"input": ["a budget", "a limit"]}),
        }
    }

    /// Returns the priced model of `body` sent to this endpoint.
    pub fn model(self, body: &Value) -> String {
        match self {
            Endpoint::Azure => AZURE_DEPLOYMENT.into(),
            Endpoint::AzureEmbeddings => EMBEDDING_MODEL.into(),
            Endpoint::Gemini { .. } => GEMINI_MODEL.into(),
            _ => body["model"].as_str().expect("body names a model").into(),
        }
    }
}

/// Sets the keys of `extra` in `body`.
pub fn with(mut body: Value, extra: Value) -> Value {
    let object = body.as_object_mut().expect("body is an object");
    for (key, value) in extra.as_object().expect("extra is an object") {
        object.insert(key.clone(), value.clone());
    }
    body
}

/// Sends `request` and reads its events within [`STREAM_TIMEOUT`], up to `stop_after`.
pub async fn stream(request: reqwest::RequestBuilder, stop_after: Option<usize>) -> SseRead {
    let response = request.send().await.expect("the stream gets an answer");
    assert_eq!(response.status(), 200, "stream status");
    tokio::time::timeout(STREAM_TIMEOUT, read_sse(response, stop_after))
        .await
        .expect("the stream ends within the test's time bound")
}

/// Returns the usage that a streamed response reported, in the format of `endpoint`.
pub fn streamed_usage(endpoint: Endpoint, read: &SseRead) -> Usage {
    let events = read.json();
    match endpoint {
        Endpoint::Chat | Endpoint::Azure => {
            let chunk = events
                .iter()
                .rev()
                .find(|chunk| chunk["usage"].is_object())
                .expect("the stream has a usage chunk");
            Usage::from_openai_chat(&chunk["usage"])
        }
        Endpoint::Responses => {
            let terminal = events.last().expect("a terminal event");
            Usage::from_responses(&terminal["response"]["usage"])
        }
        Endpoint::Anthropic => {
            let usages: Vec<&Value> = events
                .iter()
                .filter_map(|event| match event["type"].as_str() {
                    Some("message_start") => Some(&event["message"]["usage"]),
                    Some("message_delta") => Some(&event["usage"]),
                    _ => None,
                })
                .collect();
            Usage::from_anthropic(usages)
        }
        Endpoint::Gemini { .. } => {
            let last = events
                .iter()
                .rev()
                .find(|chunk| chunk["usageMetadata"].is_object())
                .expect("a chunk with usageMetadata");
            Usage::from_gemini(&last["usageMetadata"])
        }
        Endpoint::Embeddings | Endpoint::AzureEmbeddings => Usage::default(),
    }
}

/// Returns the usage of a non-streamed response body, in the format of `endpoint`.
pub fn answer_usage(endpoint: Endpoint, answer: &Value) -> Usage {
    match endpoint {
        Endpoint::Chat | Endpoint::Azure => Usage::from_openai_chat(&answer["usage"]),
        Endpoint::Responses => Usage::from_responses(&answer["usage"]),
        Endpoint::Anthropic => Usage::from_anthropic([&answer["usage"]]),
        Endpoint::Gemini { .. } => Usage::from_gemini(&answer["usageMetadata"]),
        Endpoint::Embeddings | Endpoint::AzureEmbeddings => {
            Usage::from_embeddings(&answer["usage"])
        }
    }
}

/// Returns the visible output text of a stream in the format of `endpoint`: content, refusal
/// and tool call argument deltas, Responses text and argument deltas, Anthropic text, thinking
/// and tool input deltas, Gemini candidate text.
pub fn streamed_text(endpoint: Endpoint, read: &SseRead) -> String {
    let mut text = String::new();
    for event in read.json() {
        let pieces: Vec<&Value> = match endpoint {
            Endpoint::Chat | Endpoint::Azure => event["choices"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|choice| {
                    let delta = &choice["delta"];
                    [
                        &delta["content"],
                        &delta["refusal"],
                        &delta["tool_calls"][0]["function"]["arguments"],
                    ]
                })
                .collect(),
            Endpoint::Responses => match event["type"].as_str() {
                Some("response.output_text.delta")
                | Some("response.refusal.delta")
                | Some("response.function_call_arguments.delta") => vec![&event["delta"]],
                _ => Vec::new(),
            },
            Endpoint::Anthropic => {
                let delta = &event["delta"];
                vec![&delta["text"], &delta["thinking"], &delta["partial_json"]]
            }
            Endpoint::Gemini { .. } => event["candidates"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|candidate| {
                    candidate["content"]["parts"]
                        .as_array()
                        .into_iter()
                        .flatten()
                })
                .map(|part| &part["text"])
                .collect(),
            Endpoint::Embeddings | Endpoint::AzureEmbeddings => Vec::new(),
        };
        text.extend(pieces.iter().filter_map(|value| value.as_str()));
    }
    text
}

/// Returns the prompt tokens the provider reported before its final usage, when the client saw
/// them: Anthropic's `message_start` input numbers or Gemini's running `promptTokenCount`.
pub fn early_prompt_tokens(endpoint: Endpoint, read: &SseRead) -> Option<u64> {
    let events = read.json();
    match endpoint {
        Endpoint::Anthropic => {
            let start = events
                .iter()
                .find(|event| event["type"] == "message_start")?;
            Some(Usage::from_anthropic([&start["message"]["usage"]]).prompt_tokens)
        }
        Endpoint::Gemini { .. } => {
            let chunk = events
                .iter()
                .find(|chunk| chunk["usageMetadata"].is_object())?;
            Some(Usage::from_gemini(&chunk["usageMetadata"]).prompt_tokens)
        }
        _ => None,
    }
}
