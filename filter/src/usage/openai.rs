//! OpenAI chat completions (and Azure, compatible servers, embeddings): chunks and bodies.

use super::{u64_at, EventInfo, Read};
use crate::tokens::Encoding;
use serde_json::Value;
use spendfuse_protocol::Usage;

/// Reads a `chat.completion.chunk`, a `chat.completion` or an embeddings response.
pub(super) fn read_chunk(encoding: Encoding, data: &Value) -> Read {
    let choices = data.get("choices").and_then(Value::as_array);
    let output_tokens = choices
        .into_iter()
        .flatten()
        .flat_map(|choice| {
            ["delta", "message"]
                .into_iter()
                .filter_map(|key| choice.get(key))
        })
        .map(|generated| generated_tokens(encoding, generated))
        .sum();
    let usage = data.get("usage").filter(|u| u.is_object()).map(usage_of);
    let no_choices = choices.is_none_or(|c| c.is_empty());
    Read {
        info: EventInfo {
            output_tokens,
            usage_only: usage.is_some() && no_choices,
        },
        terminal: usage.is_some(),
        usage,
    }
}

/// Counts the text a delta or message generated: content, refusal, reasoning text that some
/// compatible servers stream, and tool call names and arguments.
fn generated_tokens(encoding: Encoding, generated: &Value) -> u64 {
    let mut total = 0;
    for key in ["content", "refusal", "reasoning_content", "reasoning"] {
        if let Some(text) = generated.get(key).and_then(Value::as_str) {
            total += encoding.count(text);
        }
    }
    let tool_calls = generated
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    let functions = tool_calls
        .filter_map(|call| call.get("function"))
        .chain(generated.get("function_call"));
    for function in functions {
        for key in ["name", "arguments"] {
            if let Some(text) = function.get(key).and_then(Value::as_str) {
                total += encoding.count(text);
            }
        }
    }
    total
}

fn usage_of(usage: &Value) -> Usage {
    let prompt_tokens = u64_at(usage, "/prompt_tokens");
    let completion_tokens = u64_at(usage, "/completion_tokens");
    Usage {
        prompt_tokens,
        cached_prompt_tokens: u64_at(usage, "/prompt_tokens_details/cached_tokens")
            .min(prompt_tokens),
        audio_prompt_tokens: u64_at(usage, "/prompt_tokens_details/audio_tokens")
            .min(prompt_tokens),
        completion_tokens,
        reasoning_tokens: u64_at(usage, "/completion_tokens_details/reasoning_tokens")
            .min(completion_tokens),
        audio_completion_tokens: u64_at(usage, "/completion_tokens_details/audio_tokens")
            .min(completion_tokens),
        ..Usage::default()
    }
}
