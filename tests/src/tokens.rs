//! Token counts of chat requests, with the same prompt formula as the spendfuse filter.
//!
//! The prompt of a chat request costs 3 tokens that prime the reply, plus a cost per message.
//! Each message costs 3 tokens, the tokens of its role and the tokens of its text. A message
//! with a `name` also costs the tokens of the name and 1 more. Text is counted with
//! `encode_ordinary`, so text that looks like a special token counts as plain text.

use serde_json::Value;
use tiktoken_rs::CoreBPE;

/// Tokens that prime the assistant's reply, once per request.
pub const REPLY_PRIMING_TOKENS: u64 = 3;

/// Tokens that the chat format adds to every message.
pub const TOKENS_PER_MESSAGE: u64 = 3;

/// Tokens that a message's `name` adds on top of the name's own tokens.
pub const TOKENS_PER_NAME: u64 = 1;

/// Tokenizer of an OpenAI model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// gpt-4o, gpt-4.1, gpt-5 and the o1, o3 and o4 series.
    O200kBase,
    /// gpt-4, gpt-4-turbo and gpt-3.5.
    Cl100kBase,
}

impl Encoding {
    /// Returns the tokenizer of `model`, or `None` for a model outside the OpenAI families
    /// listed on the variants.
    pub fn for_model(model: &str) -> Option<Encoding> {
        let o200k_prefixes = ["gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4"];
        if o200k_prefixes
            .iter()
            .any(|prefix| model.starts_with(prefix))
        {
            return Some(Encoding::O200kBase);
        }
        // gpt-4o and gpt-4.1 matched above, so "gpt-4-" here is gpt-4-turbo or a gpt-4 snapshot.
        if model == "gpt-4" || model.starts_with("gpt-4-") || model.starts_with("gpt-3.5") {
            return Some(Encoding::Cl100kBase);
        }
        None
    }

    /// Returns the tokenizer of `model`, falling back to o200k_base for unknown models.
    pub fn for_model_or_default(model: &str) -> Encoding {
        Encoding::for_model(model).unwrap_or(Encoding::O200kBase)
    }

    fn bpe(self) -> &'static CoreBPE {
        match self {
            Encoding::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Encoding::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        }
    }

    /// Counts the tokens of `text`, treating special-token-like text as plain text.
    pub fn count(self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        self.bpe().encode_ordinary(text).len() as u64
    }
}

/// Counts the prompt tokens of a chat request's `messages` array with the formula in the
/// module documentation.
///
/// Content is either a string or an array of parts, of which only the `text` parts count.
// NOTE: tools, tool calls and images are not counted here, while the filter estimates them.
// Tests that compare the two send text messages only.
pub fn prompt_tokens(encoding: Encoding, messages: &[Value]) -> u64 {
    let mut total = REPLY_PRIMING_TOKENS;
    for message in messages {
        total += TOKENS_PER_MESSAGE;
        if let Some(role) = message.get("role").and_then(Value::as_str) {
            total += encoding.count(role);
        }
        if let Some(content) = message.get("content") {
            total += content_tokens(encoding, content);
        }
        if let Some(name) = message.get("name").and_then(Value::as_str) {
            total += encoding.count(name) + TOKENS_PER_NAME;
        }
    }
    total
}

/// Counts the prompt tokens of a whole chat request body, using the tokenizer of its `model`.
/// A body without a `messages` array counts as an empty conversation.
pub fn request_prompt_tokens(body: &Value) -> u64 {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let encoding = Encoding::for_model_or_default(model);
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice);
    prompt_tokens(encoding, messages.unwrap_or_default())
}

fn content_tokens(encoding: Encoding, content: &Value) -> u64 {
    match content {
        Value::String(text) => encoding.count(text),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .map(|text| encoding.count(text))
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encoding_of_each_family() {
        let cases = [
            ("gpt-4o-mini", Some(Encoding::O200kBase)),
            ("gpt-4o-2024-08-06", Some(Encoding::O200kBase)),
            ("gpt-4.1-nano", Some(Encoding::O200kBase)),
            ("gpt-5-mini", Some(Encoding::O200kBase)),
            ("o1", Some(Encoding::O200kBase)),
            ("o3-mini", Some(Encoding::O200kBase)),
            ("o4-mini", Some(Encoding::O200kBase)),
            ("gpt-4", Some(Encoding::Cl100kBase)),
            ("gpt-4-turbo", Some(Encoding::Cl100kBase)),
            ("gpt-4-0613", Some(Encoding::Cl100kBase)),
            ("gpt-3.5-turbo", Some(Encoding::Cl100kBase)),
            ("llama-3", None),
        ];
        for (model, expected) in cases {
            assert_eq!(Encoding::for_model(model), expected, "model {model}");
        }
    }

    #[test]
    fn one_user_message() {
        // 3 priming + 3 per message + "user" (1) + "Hello world" (2).
        let messages = [json!({"role": "user", "content": "Hello world"})];
        assert_eq!(prompt_tokens(Encoding::O200kBase, &messages), 9);
    }

    #[test]
    fn name_costs_its_tokens_and_one() {
        let plain = [json!({"role": "user", "content": "hi"})];
        let named = [json!({"role": "user", "content": "hi", "name": "alice"})];
        let difference = prompt_tokens(Encoding::Cl100kBase, &named)
            - prompt_tokens(Encoding::Cl100kBase, &plain);
        assert_eq!(difference, Encoding::Cl100kBase.count("alice") + 1);
    }

    #[test]
    fn text_parts_sum_like_a_string() {
        let string = [json!({"role": "user", "content": "alpha beta"})];
        let parts = [json!({"role": "user", "content": [
            {"type": "text", "text": "alpha"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "text", "text": " beta"}
        ]})];
        assert_eq!(
            prompt_tokens(Encoding::O200kBase, &string),
            prompt_tokens(Encoding::O200kBase, &parts)
        );
    }

    #[test]
    fn special_token_text_is_plain_text() {
        assert!(Encoding::O200kBase.count("<|endoftext|>") > 1);
    }

    #[test]
    fn request_without_messages_counts_priming() {
        assert_eq!(
            request_prompt_tokens(&json!({"model": "gpt-4o"})),
            REPLY_PRIMING_TOKENS
        );
    }
}
