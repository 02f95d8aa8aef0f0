//! Prompt token counts that the mock reports for the formats other than OpenAI chat.
//!
//! Responses and embeddings use OpenAI's tokenizers as the real API does. Anthropic and Gemini
//! use a count of the mock's own: o200k_base tokens of every text plus fixed overheads. It is
//! deliberately not the filter's estimate, so tests can tell a charge from the provider's usage
//! from a charge from the filter's count.

use crate::tokens::{self, Encoding};
use serde_json::{json, Value};

/// Tokens that Anthropic's count adds once per request.
pub const ANTHROPIC_REQUEST_OVERHEAD: u64 = 7;

/// Tokens that Anthropic's count adds per message.
pub const ANTHROPIC_MESSAGE_OVERHEAD: u64 = 4;

/// Tokens that Gemini's count adds per content entry, the system instruction included.
pub const GEMINI_CONTENT_OVERHEAD: u64 = 1;

/// Tokens that one image counts in Anthropic's and Gemini's counts.
pub const IMAGE_TOKENS: u64 = 258;

/// Counts a Responses request with the chat formula: `instructions` as a developer message,
/// then `input` as a user message when it is a string, or its items with a role.
pub fn responses_prompt_tokens(body: &Value) -> u64 {
    let model = body.get("model").and_then(Value::as_str).unwrap_or("");
    let mut messages = Vec::new();
    if let Some(instructions) = body.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "developer", "content": instructions}));
    }
    match body.get("input") {
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => messages.extend(
            items
                .iter()
                .filter(|item| item.get("role").is_some())
                .cloned(),
        ),
        _ => {}
    }
    let encoding = Encoding::for_model_or_default(model);
    let mut total = tokens::prompt_tokens(encoding, &messages);
    if let Some(tools) = body.get("tools").filter(|tools| !tools.is_null()) {
        total += encoding.count(&tools.to_string());
    }
    total
}

/// Counts an Anthropic Messages request: every text of `system` and `messages`, tool inputs
/// and results as their JSON text, images at [`IMAGE_TOKENS`], `tools` as JSON text, plus
/// the overheads.
pub fn anthropic_prompt_tokens(body: &Value) -> u64 {
    let mut total = ANTHROPIC_REQUEST_OVERHEAD;
    if let Some(system) = body.get("system") {
        total += anthropic_content_tokens(system);
    }
    let messages = body.get("messages").and_then(Value::as_array);
    for message in messages.into_iter().flatten() {
        total += ANTHROPIC_MESSAGE_OVERHEAD;
        if let Some(content) = message.get("content") {
            total += anthropic_content_tokens(content);
        }
    }
    if let Some(tools) = body.get("tools").filter(|tools| !tools.is_null()) {
        total += count(&tools.to_string());
    }
    total
}

fn anthropic_content_tokens(content: &Value) -> u64 {
    match content {
        Value::String(text) => count(text),
        Value::Array(blocks) => blocks.iter().map(anthropic_block_tokens).sum(),
        _ => 0,
    }
}

fn anthropic_block_tokens(block: &Value) -> u64 {
    match block.get("type").and_then(Value::as_str) {
        Some("text") => block.get("text").and_then(Value::as_str).map_or(0, count),
        Some("image") | Some("document") => IMAGE_TOKENS,
        Some("tool_use") => block
            .get("input")
            .map_or(0, |input| count(&input.to_string())),
        Some("tool_result") => block.get("content").map_or(0, anthropic_content_tokens),
        _ => 0,
    }
}

/// Counts a Gemini request: every `text` part of `contents` and `systemInstruction`, inline
/// data at [`IMAGE_TOKENS`], plus [`GEMINI_CONTENT_OVERHEAD`] per content entry.
pub fn gemini_prompt_tokens(body: &Value) -> u64 {
    let mut total = 0;
    if let Some(system) = body.get("systemInstruction") {
        total += GEMINI_CONTENT_OVERHEAD + gemini_parts_tokens(system);
    }
    let contents = body.get("contents").and_then(Value::as_array);
    for content in contents.into_iter().flatten() {
        total += GEMINI_CONTENT_OVERHEAD + gemini_parts_tokens(content);
    }
    total
}

fn gemini_parts_tokens(content: &Value) -> u64 {
    let parts = content.get("parts").and_then(Value::as_array);
    parts
        .into_iter()
        .flatten()
        .map(|part| {
            if let Some(text) = part.get("text").and_then(Value::as_str) {
                count(text)
            } else if part.get("inlineData").is_some() || part.get("fileData").is_some() {
                IMAGE_TOKENS
            } else {
                0
            }
        })
        .sum()
}

/// Counts the `input` of an embeddings request with cl100k_base, the tokenizer of OpenAI's
/// embedding models: a string or an array of strings by their text, an array of token ids or
/// of arrays of token ids by their length.
pub fn embedding_input_tokens(input: &Value) -> u64 {
    let cl100k = |text: &str| Encoding::Cl100kBase.count(text);
    match input {
        Value::String(text) => cl100k(text),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => cl100k(text),
                Value::Number(_) => 1,
                Value::Array(ids) => ids.len() as u64,
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

fn count(text: &str) -> u64 {
    Encoding::O200kBase.count(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_string_input_is_a_user_message() {
        let body = json!({"model": "gpt-4o", "input": "Hello world"});
        let messages = [json!({"role": "user", "content": "Hello world"})];
        assert_eq!(
            responses_prompt_tokens(&body),
            tokens::prompt_tokens(Encoding::O200kBase, &messages)
        );
    }

    #[test]
    fn anthropic_counts_system_and_messages() {
        let body = json!({
            "system": "Be brief.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello world"}]}]
        });
        let expected = ANTHROPIC_REQUEST_OVERHEAD
            + count("Be brief.")
            + ANTHROPIC_MESSAGE_OVERHEAD
            + count("Hello world");
        assert_eq!(anthropic_prompt_tokens(&body), expected);
    }

    #[test]
    fn gemini_counts_each_content() {
        let body = json!({
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "contents": [{"role": "user", "parts": [{"text": "Hello"}, {"text": " world"}]}]
        });
        let expected = 2 * GEMINI_CONTENT_OVERHEAD + count("Be brief.") + count("Hello world");
        assert_eq!(gemini_prompt_tokens(&body), expected);
    }

    #[test]
    fn embedding_token_arrays_count_their_length() {
        assert_eq!(embedding_input_tokens(&json!([[1, 2, 3], [4]])), 4);
        assert_eq!(embedding_input_tokens(&json!([5, 6])), 2);
        assert_eq!(embedding_input_tokens(&json!(["hello", "world"])), 2);
    }
}
