//! Token counting with OpenAI's tokenizers (tiktoken).

use serde_json::Value;
use std::sync::OnceLock;
use tiktoken_rs::CoreBPE;

/// Tokens added to every message by the chat format.
pub const TOKENS_PER_MESSAGE: u64 = 3;
/// Tokens added when a message carries a `name`.
const TOKENS_PER_NAME: u64 = 1;
/// Tokens that prime the assistant's reply.
pub const REPLY_PRIMING_TOKENS: u64 = 3;
/// Tokens of an image sent with `detail: "low"` to gpt-4o, and of the largest common image
/// at high detail (85 + 6 tiles of 170), whose ratio scales low detail for other models.
const LOW_DETAIL_IMAGE_TOKENS: u64 = 85;
const HIGH_DETAIL_IMAGE_TOKENS: u64 = 1105;
/// gpt-4o-mini counts about 33.3 times gpt-4o's tokens for one image (2833 + 5667 per tile).
const GPT_4O_MINI_IMAGE_FACTOR: u64 = 34;
/// Models that count images in 32-pixel patches, at most 1536 patches times a model factor
/// of up to 2.46, so about 3779 tokens.
const PATCH_IMAGE_MODELS: [&str; 5] = [
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o4-mini",
    "gpt-5-mini",
    "gpt-5-nano",
];
const PATCH_IMAGE_TOKENS: u64 = 3800;

/// Returns the tokens to reserve for one high-detail image sent to `model`, given the
/// configured figure for gpt-4o-class models.
pub fn image_tokens_for(model: &str, configured: u64) -> u64 {
    if model.starts_with("gpt-4o-mini") {
        configured.saturating_mul(GPT_4O_MINI_IMAGE_FACTOR)
    } else if PATCH_IMAGE_MODELS
        .iter()
        .any(|prefix| model.starts_with(prefix))
    {
        configured.max(PATCH_IMAGE_TOKENS)
    } else {
        configured
    }
}

/// The tokenizer a model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// gpt-4o, gpt-4.1, gpt-4.5, gpt-5 and the o-series.
    O200kBase,
    /// gpt-4, gpt-4-turbo, gpt-3.5 and the text-embedding models.
    Cl100kBase,
}

impl Encoding {
    /// Returns the tokenizer of `model`; unknown models get o200k_base, the current one.
    pub fn for_model(model: &str) -> Encoding {
        let cl100k = ["gpt-4-", "gpt-3.5", "gpt-35", "text-embedding-"];
        if model == "gpt-4" || cl100k.iter().any(|p| model.starts_with(p)) {
            // gpt-4-turbo and dated gpt-4 snapshots; gpt-4o and gpt-4.1 do not match "gpt-4-".
            Encoding::Cl100kBase
        } else {
            Encoding::O200kBase
        }
    }

    fn bpe(self) -> Option<&'static CoreBPE> {
        static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
        static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
        match self {
            Encoding::O200kBase => O200K
                .get_or_init(|| tiktoken_rs::o200k_base().ok())
                .as_ref(),
            Encoding::Cl100kBase => CL100K
                .get_or_init(|| tiktoken_rs::cl100k_base().ok())
                .as_ref(),
        }
    }

    /// Builds the tokenizer now, so the first request does not wait for it.
    pub fn warm_up(self) -> bool {
        self.bpe().is_some()
    }

    /// Counts the tokens of `text`; text that looks like a special token counts as plain text.
    ///
    /// When the tokenizer could not be built, the count falls back to one token per byte, an
    /// overestimate that keeps reservations on the safe side.
    pub fn count(self, text: &str) -> u64 {
        if text.is_empty() {
            return 0;
        }
        match self.bpe() {
            Some(bpe) => bpe.encode_ordinary(text).len() as u64,
            None => text.len() as u64,
        }
    }
}

/// Counts the prompt tokens of a chat request, the way OpenAI's chat format adds them up.
///
/// Each message costs 3 tokens plus its role, its text and, with a `name`, the name and 1 more;
/// the reply costs 3. Images count `image_tokens` each (85 with `detail: "low"`). `tools` and
/// other non-text parts count as the tokens of their JSON text, an estimate: the provider's
/// usage settles the real number.
pub fn prompt_tokens(
    encoding: Encoding,
    messages: &[Value],
    tools: Option<&Value>,
    image_tokens: u64,
) -> u64 {
    REPLY_PRIMING_TOKENS
        + messages_tokens(encoding, messages, image_tokens)
        + json_tokens(encoding, tools)
}

/// Counts a list of messages or items by the chat format. An item without a `role` (a tool
/// call or its output in the Responses API) counts as its JSON text.
pub fn messages_tokens(encoding: Encoding, messages: &[Value], image_tokens: u64) -> u64 {
    let mut total = 0;
    for message in messages {
        let Some(role) = message.get("role").and_then(Value::as_str) else {
            total += TOKENS_PER_MESSAGE + encoding.count(&message.to_string());
            continue;
        };
        total += TOKENS_PER_MESSAGE + encoding.count(role);
        if let Some(name) = message.get("name").and_then(Value::as_str) {
            total += encoding.count(name) + TOKENS_PER_NAME;
        }
        if let Some(content) = message.get("content") {
            total += content_tokens(encoding, content, image_tokens);
        }
        for field in ["tool_calls", "function_call"] {
            total += json_tokens(encoding, message.get(field));
        }
    }
    total
}

/// Counts one message with a plain text content.
pub fn message_tokens(encoding: Encoding, role: &str, text: &str) -> u64 {
    TOKENS_PER_MESSAGE + encoding.count(role) + encoding.count(text)
}

/// Counts the JSON text of `value`; nothing for an absent or null value.
pub fn json_tokens(encoding: Encoding, value: Option<&Value>) -> u64 {
    match value {
        None | Some(Value::Null) => 0,
        Some(value) => encoding.count(&value.to_string()),
    }
}

/// Counts a message content of any provider: a string, or a list of parts or blocks.
pub fn content_tokens(encoding: Encoding, content: &Value, image_tokens: u64) -> u64 {
    match content {
        Value::String(text) => encoding.count(text),
        Value::Array(parts) => parts
            .iter()
            .map(|part| part_tokens(encoding, part, image_tokens))
            .sum(),
        Value::Null => 0,
        other => encoding.count(&other.to_string()),
    }
}

/// Counts one content part. A text part counts its text, and a nested tool result its content.
/// An image (OpenAI `image_url` and `input_image`, Anthropic `image`, Gemini `inlineData` and
/// `fileData`) counts `image_tokens`. Anything else counts its JSON text.
fn part_tokens(encoding: Encoding, part: &Value, image_tokens: u64) -> u64 {
    if let Some(text) = part.get("text").and_then(Value::as_str) {
        return encoding.count(text);
    }
    let kind = part.get("type").and_then(Value::as_str).unwrap_or_default();
    let image = matches!(kind, "image_url" | "input_image" | "image")
        || part.get("inlineData").is_some()
        || part.get("fileData").is_some();
    if image {
        let detail = part
            .pointer("/image_url/detail")
            .or_else(|| part.get("detail"))
            .and_then(Value::as_str);
        if detail != Some("low") {
            return image_tokens;
        }
        // Low detail scales with the model's image cost: 85 for gpt-4o, more for gpt-4o-mini.
        let scaled =
            image_tokens.saturating_mul(LOW_DETAIL_IMAGE_TOKENS) / HIGH_DETAIL_IMAGE_TOKENS;
        return scaled.max(LOW_DETAIL_IMAGE_TOKENS).min(image_tokens);
    }
    if kind == "tool_result" {
        if let Some(content) = part.get("content") {
            return content_tokens(encoding, content, image_tokens);
        }
    }
    // Audio, files and unknown parts: their JSON text, which is at least as long as any
    // transcript the provider derives from a base64 payload.
    encoding.count(&part.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encoding_by_model() {
        assert_eq!(Encoding::for_model("gpt-4o-mini"), Encoding::O200kBase);
        assert_eq!(Encoding::for_model("gpt-4.1"), Encoding::O200kBase);
        assert_eq!(Encoding::for_model("o3-mini"), Encoding::O200kBase);
        assert_eq!(Encoding::for_model("gpt-5"), Encoding::O200kBase);
        assert_eq!(Encoding::for_model("gpt-4"), Encoding::Cl100kBase);
        assert_eq!(Encoding::for_model("gpt-4-turbo"), Encoding::Cl100kBase);
        assert_eq!(Encoding::for_model("gpt-3.5-turbo"), Encoding::Cl100kBase);
    }

    #[test]
    fn special_token_text_counts_as_text() {
        let count = Encoding::O200kBase.count("<|endoftext|>");
        assert!(count > 1, "counted {count}");
    }

    #[test]
    fn hello_world_prompt() {
        // 3 priming + (3 + "user" 1 + "Hello world" 2)
        let messages = vec![json!({"role": "user", "content": "Hello world"})];
        assert_eq!(prompt_tokens(Encoding::O200kBase, &messages, None, 1105), 9);
    }

    #[test]
    fn name_adds_one_and_its_tokens() {
        let plain = vec![json!({"role": "user", "content": "hi"})];
        let named = vec![json!({"role": "user", "content": "hi", "name": "bob"})];
        let base = prompt_tokens(Encoding::O200kBase, &plain, None, 0);
        let with_name = prompt_tokens(Encoding::O200kBase, &named, None, 0);
        assert_eq!(with_name, base + Encoding::O200kBase.count("bob") + 1);
    }

    #[test]
    fn text_parts_equal_string_content() {
        let string = vec![json!({"role": "user", "content": "one two"})];
        let parts = vec![json!({"role": "user", "content": [
            {"type": "text", "text": "one"}, {"type": "text", "text": " two"}
        ]})];
        assert_eq!(
            prompt_tokens(Encoding::O200kBase, &string, None, 0),
            prompt_tokens(Encoding::O200kBase, &parts, None, 0)
        );
    }

    #[test]
    fn images_count_by_detail() {
        let message = |detail: &str| {
            vec![json!({"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": detail}}
            ]})]
        };
        let low = prompt_tokens(Encoding::O200kBase, &message("low"), None, 1000);
        let high = prompt_tokens(Encoding::O200kBase, &message("high"), None, 1000);
        assert_eq!(high - low, 1000 - LOW_DETAIL_IMAGE_TOKENS);
    }

    #[test]
    fn mini_images_cost_more_tokens() {
        assert_eq!(image_tokens_for("gpt-4o-mini-2024-07-18", 1105), 1105 * 34);
        assert_eq!(image_tokens_for("gpt-4.1-nano", 1105), 3800);
        assert_eq!(image_tokens_for("gpt-4o", 1105), 1105);
    }

    #[test]
    fn tools_add_tokens() {
        let messages = vec![json!({"role": "user", "content": "hi"})];
        let tools = json!([{"type": "function", "function": {"name": "get_weather"}}]);
        let without = prompt_tokens(Encoding::O200kBase, &messages, None, 0);
        let with = prompt_tokens(Encoding::O200kBase, &messages, Some(&tools), 0);
        assert!(with > without);
    }
}
