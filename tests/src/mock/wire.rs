//! OpenAI chat completion objects in the field order and with the fields that the real API
//! sends, including its null and empty values.

use super::plan::TokenCounts;
use serde::Serialize;

/// Object type of a non-streamed response.
pub const COMPLETION_OBJECT: &str = "chat.completion";

/// Object type of one streamed event.
pub const CHUNK_OBJECT: &str = "chat.completion.chunk";

/// A non-streamed chat completion.
#[derive(Debug, Serialize)]
pub struct ChatCompletion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<CompletionChoice>,
    /// Absent only when the mock imitates a server that reports no usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    pub service_tier: &'a str,
    pub system_fingerprint: Option<&'a str>,
}

/// One choice of a non-streamed completion.
#[derive(Debug, Serialize)]
pub struct CompletionChoice {
    pub index: u64,
    pub message: AssistantMessage,
    pub logprobs: Option<()>,
    pub finish_reason: &'static str,
}

/// The assistant message of a non-streamed choice. `content` is null when the output is a
/// refusal or tool calls.
#[derive(Debug, Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: Option<String>,
    pub refusal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    pub annotations: [(); 0],
}

/// A whole tool call of a non-streamed message.
#[derive(Debug, Clone, Serialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: FunctionCall,
}

/// The function and arguments of a tool call; in a streamed delta, `name` is sent only with
/// the first arguments.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionCall {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub arguments: String,
}

/// A piece of a tool call in a streamed delta: the first carries `id`, `type` and the
/// function name, the others only argument text.
#[derive(Debug, Clone, Serialize)]
pub struct ToolCallDelta {
    pub index: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionCall,
}

/// One streamed event. `usage` is absent unless the request set
/// `stream_options.include_usage`, then null on every event but the last.
#[derive(Debug, Serialize)]
pub struct ChatCompletionChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub service_tier: &'a str,
    pub system_fingerprint: Option<&'a str>,
    pub choices: Vec<ChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
    /// Random padding that the API adds to hide the length of each delta; absent when the
    /// request set `stream_options.include_obfuscation` to false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub obfuscation: Option<String>,
}

/// One choice of a streamed event.
#[derive(Debug, Serialize)]
pub struct ChunkChoice {
    pub index: u64,
    pub delta: Delta,
    pub logprobs: Option<()>,
    pub finish_reason: Option<&'static str>,
}

/// The change a streamed event brings to one choice. The first event of a choice carries the
/// role with empty content and a null refusal, the last one is empty. A tool call or refusal
/// output starts with null content instead.
#[derive(Debug, Default, Serialize)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Option<String>>,
}

impl Delta {
    /// Returns the delta of a choice's first event.
    pub fn role() -> Delta {
        Delta {
            role: Some("assistant"),
            content: Some(Some(String::new())),
            refusal: Some(None),
            ..Delta::default()
        }
    }

    /// Returns a delta that adds `text` to the content.
    pub fn content(text: String) -> Delta {
        Delta {
            content: Some(Some(text)),
            ..Delta::default()
        }
    }
}

/// Token usage of a request, with every detail field the API reports.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: PromptTokensDetails,
    pub completion_tokens_details: CompletionTokensDetails,
}

impl Usage {
    /// Returns the usage of a request without cache hits, audio, reasoning or predictions.
    pub fn new(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage::from_counts(&TokenCounts {
            prompt: prompt_tokens,
            completion: completion_tokens,
            ..TokenCounts::default()
        })
    }

    /// Returns the usage that reports `counts`.
    pub fn from_counts(counts: &TokenCounts) -> Usage {
        Usage {
            prompt_tokens: counts.prompt,
            completion_tokens: counts.completion,
            total_tokens: counts.prompt + counts.completion,
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: counts.cached,
                audio_tokens: counts.audio_prompt,
            },
            completion_tokens_details: CompletionTokensDetails {
                reasoning_tokens: counts.reasoning,
                audio_tokens: counts.audio_completion,
                accepted_prediction_tokens: 0,
                rejected_prediction_tokens: 0,
            },
        }
    }
}

/// Breakdown of the prompt tokens.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PromptTokensDetails {
    pub cached_tokens: u64,
    pub audio_tokens: u64,
}

/// Breakdown of the completion tokens.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CompletionTokensDetails {
    pub reasoning_tokens: u64,
    pub audio_tokens: u64,
    pub accepted_prediction_tokens: u64,
    pub rejected_prediction_tokens: u64,
}

/// Body of every error response: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The fields of an error response.
#[derive(Debug, Serialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
}

/// Returns the dated snapshot that the API names in its responses for a model alias, such as
/// `gpt-4o-mini-2024-07-18` for `gpt-4o-mini`. Other names come back unchanged.
// NOTE: the API moves an alias to newer snapshots over time, so some of these dates may be
// out of date. Clients and the filter must not depend on them.
pub fn snapshot_name(model: &str) -> &str {
    match model {
        "gpt-4o-mini" => "gpt-4o-mini-2024-07-18",
        "gpt-4o" => "gpt-4o-2024-08-06",
        "gpt-4.1" => "gpt-4.1-2025-04-14",
        "gpt-4.1-mini" => "gpt-4.1-mini-2025-04-14",
        "gpt-4.1-nano" => "gpt-4.1-nano-2025-04-14",
        "gpt-5" => "gpt-5-2025-08-07",
        "gpt-5-mini" => "gpt-5-mini-2025-08-07",
        "gpt-5-nano" => "gpt-5-nano-2025-08-07",
        "o1" => "o1-2024-12-17",
        "o3" => "o3-2025-04-16",
        "o3-mini" => "o3-mini-2025-01-31",
        "o4-mini" => "o4-mini-2025-04-16",
        "gpt-4-turbo" => "gpt-4-turbo-2024-04-09",
        "gpt-4" => "gpt-4-0613",
        "gpt-3.5-turbo" => "gpt-3.5-turbo-0125",
        other => other,
    }
}

/// Returns true for reasoning models, which reject `max_tokens` and take only
/// `max_completion_tokens`.
pub fn is_reasoning_model(model: &str) -> bool {
    ["o1", "o3", "o4", "gpt-5"]
        .iter()
        .any(|prefix| model.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chunk(usage: Option<Option<Usage>>, choices: Vec<ChunkChoice>) -> serde_json::Value {
        let chunk = ChatCompletionChunk {
            id: "chatcmpl-1",
            object: CHUNK_OBJECT,
            created: 7,
            model: "gpt-4o-mini-2024-07-18",
            service_tier: "default",
            system_fingerprint: Some("fp_1"),
            choices,
            usage,
            obfuscation: None,
        };
        serde_json::to_value(chunk).unwrap()
    }

    #[test]
    fn first_delta_has_role_empty_content_null_refusal() {
        let value = serde_json::to_value(Delta::role()).unwrap();
        assert_eq!(
            value,
            json!({"role": "assistant", "content": "", "refusal": null})
        );
    }

    #[test]
    fn final_delta_is_empty_object() {
        assert_eq!(serde_json::to_value(Delta::default()).unwrap(), json!({}));
    }

    #[test]
    fn usage_field_absent_null_or_set() {
        assert!(chunk(None, Vec::new()).get("usage").is_none());
        assert_eq!(chunk(Some(None), Vec::new())["usage"], json!(null));
        let with_usage = chunk(Some(Some(Usage::new(9, 4))), Vec::new());
        assert_eq!(with_usage["usage"]["total_tokens"], 13);
        assert_eq!(with_usage["choices"], json!([]));
    }

    #[test]
    fn chunk_fields_in_api_order() {
        let text = serde_json::to_string(&ChatCompletionChunk {
            id: "chatcmpl-1",
            object: CHUNK_OBJECT,
            created: 7,
            model: "m",
            service_tier: "default",
            system_fingerprint: None,
            choices: vec![ChunkChoice {
                index: 0,
                delta: Delta::content(" the".into()),
                logprobs: None,
                finish_reason: None,
            }],
            usage: Some(None),
            obfuscation: Some("ab".into()),
        })
        .unwrap();
        let expected = concat!(
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","#,
            r#""service_tier":"default","system_fingerprint":null,"choices":[{"index":0,"#,
            r#""delta":{"content":" the"},"logprobs":null,"finish_reason":null}],"#,
            r#""usage":null,"obfuscation":"ab"}"#
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn usage_has_every_detail_field() {
        let value = serde_json::to_value(Usage::new(1, 2)).unwrap();
        assert_eq!(
            value["prompt_tokens_details"],
            json!({"cached_tokens": 0, "audio_tokens": 0})
        );
        assert_eq!(
            value["completion_tokens_details"],
            json!({
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0
            })
        );
    }

    #[test]
    fn alias_returns_snapshot_name() {
        assert_eq!(snapshot_name("gpt-4o-mini"), "gpt-4o-mini-2024-07-18");
        assert_eq!(snapshot_name("my-local-model"), "my-local-model");
    }
}
