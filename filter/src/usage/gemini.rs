//! Gemini `generateContent` and `streamGenerateContent`: chunks with running usage.
//!
//! Every streamed chunk repeats the usage so far, so the last one wins. Thinking tokens
//! (`thoughtsTokenCount`) are billed as output but are not part of `candidatesTokenCount`.

use super::{u64_at, EventInfo, Read};
use crate::tokens::Encoding;
use serde_json::Value;
use spendfuse_protocol::Usage;

/// Reads one `GenerateContentResponse`, streamed or whole.
pub(super) fn read_chunk(encoding: Encoding, data: &Value) -> Read {
    let candidates = data.get("candidates").and_then(Value::as_array);
    let mut output_tokens = 0;
    let mut finished = false;
    for candidate in candidates.into_iter().flatten() {
        finished |= candidate
            .get("finishReason")
            .is_some_and(|reason| !reason.is_null());
        for part in candidate
            .pointer("/content/parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(text) = part.get("text").and_then(Value::as_str) {
                output_tokens += encoding.count(text);
            }
            if let Some(call) = part.get("functionCall") {
                output_tokens += encoding.count(&call.to_string());
            }
        }
    }
    let usage = data
        .get("usageMetadata")
        .filter(|u| u.is_object())
        .map(usage_of);
    Read {
        info: EventInfo {
            output_tokens,
            usage_only: false,
        },
        usage,
        terminal: finished,
    }
}

/// Reads a whole body: one response, or the JSON array that `streamGenerateContent` sends
/// without `alt=sse`, whose last usage wins.
pub(super) fn read_body(encoding: Encoding, data: &Value) -> Read {
    let Some(chunks) = data.as_array() else {
        return read_chunk(encoding, data);
    };
    let mut total = Read::default();
    for chunk in chunks {
        let read = read_chunk(encoding, chunk);
        total.info.output_tokens += read.info.output_tokens;
        if read.usage.is_some() {
            total.usage = read.usage;
        }
        total.terminal |= read.terminal;
    }
    total
}

fn usage_of(usage: &Value) -> Usage {
    let thoughts = u64_at(usage, "/thoughtsTokenCount");
    let prompt_tokens = u64_at(usage, "/promptTokenCount")
        .saturating_add(u64_at(usage, "/toolUsePromptTokenCount"));
    let audio: u64 = usage
        .get("promptTokensDetails")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|detail| detail.get("modality").and_then(Value::as_str) == Some("AUDIO"))
        .map(|detail| u64_at(detail, "/tokenCount"))
        .sum();
    Usage {
        prompt_tokens,
        cached_prompt_tokens: u64_at(usage, "/cachedContentTokenCount").min(prompt_tokens),
        audio_prompt_tokens: audio.min(prompt_tokens),
        completion_tokens: u64_at(usage, "/candidatesTokenCount").saturating_add(thoughts),
        reasoning_tokens: thoughts,
        ..Usage::default()
    }
}
