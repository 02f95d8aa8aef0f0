//! Token usage normalised from each provider's usage report, the way tests expect the filter
//! to read it, written independently of the filter's code.
//!
//! | format | prompt | completion |
//! |---|---|---|
//! | OpenAI chat, Azure | `prompt_tokens`; cached and audio from `prompt_tokens_details` | `completion_tokens`; reasoning and audio from `completion_tokens_details` |
//! | OpenAI Responses | `input_tokens`; cached from `input_tokens_details` | `output_tokens`; reasoning from `output_tokens_details` |
//! | Anthropic | `input_tokens` + `cache_read_input_tokens` + `cache_creation_input_tokens` | `output_tokens` |
//! | Gemini | `promptTokenCount` + `toolUsePromptTokenCount` | `candidatesTokenCount` + `thoughtsTokenCount` |
//! | embeddings | `prompt_tokens` | 0 |

use serde_json::Value;

/// Token counts of one request. The input parts are parts of `prompt_tokens`, the output parts
/// parts of `completion_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Every input token: text, cache reads, cache writes and audio.
    pub prompt_tokens: u64,
    /// Input tokens read from the cache.
    pub cached_prompt_tokens: u64,
    /// Input tokens written to a 5-minute cache.
    pub cache_write_5m_tokens: u64,
    /// Input tokens written to a 1-hour cache.
    pub cache_write_1h_tokens: u64,
    /// Input audio tokens.
    pub audio_prompt_tokens: u64,
    /// Every output token: text, reasoning and audio.
    pub completion_tokens: u64,
    /// Reasoning tokens.
    pub reasoning_tokens: u64,
    /// Output audio tokens.
    pub audio_completion_tokens: u64,
}

fn number(value: &Value, pointer: &str) -> u64 {
    value.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

impl Usage {
    /// Returns a usage of plain text tokens.
    pub fn text(prompt_tokens: u64, completion_tokens: u64) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            ..Usage::default()
        }
    }

    /// Reads an OpenAI chat or Azure `usage` object.
    pub fn from_openai_chat(usage: &Value) -> Usage {
        Usage {
            prompt_tokens: number(usage, "/prompt_tokens"),
            cached_prompt_tokens: number(usage, "/prompt_tokens_details/cached_tokens"),
            audio_prompt_tokens: number(usage, "/prompt_tokens_details/audio_tokens"),
            completion_tokens: number(usage, "/completion_tokens"),
            reasoning_tokens: number(usage, "/completion_tokens_details/reasoning_tokens"),
            audio_completion_tokens: number(usage, "/completion_tokens_details/audio_tokens"),
            ..Usage::default()
        }
    }

    /// Reads an OpenAI Responses `usage` object.
    pub fn from_responses(usage: &Value) -> Usage {
        Usage {
            prompt_tokens: number(usage, "/input_tokens"),
            cached_prompt_tokens: number(usage, "/input_tokens_details/cached_tokens"),
            completion_tokens: number(usage, "/output_tokens"),
            reasoning_tokens: number(usage, "/output_tokens_details/reasoning_tokens"),
            ..Usage::default()
        }
    }

    /// Reads Anthropic usage objects in stream order (`message_start`'s, then each
    /// `message_delta`'s), merged field by field with the later value winning, as the deltas
    /// are cumulative. When `cache_creation` has no breakdown, every cache write counts as
    /// a 5-minute write.
    pub fn from_anthropic<'a>(usages: impl IntoIterator<Item = &'a Value>) -> Usage {
        let mut merged = serde_json::Map::new();
        for usage in usages {
            if let Some(fields) = usage.as_object() {
                for (key, value) in fields {
                    if !value.is_null() {
                        merged.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        let merged = Value::Object(merged);
        let cache_read = number(&merged, "/cache_read_input_tokens");
        let cache_creation = number(&merged, "/cache_creation_input_tokens");
        let (write_5m, write_1h) = match merged.get("cache_creation") {
            Some(breakdown) if breakdown.is_object() => (
                number(breakdown, "/ephemeral_5m_input_tokens"),
                number(breakdown, "/ephemeral_1h_input_tokens"),
            ),
            _ => (cache_creation, 0),
        };
        Usage {
            prompt_tokens: number(&merged, "/input_tokens") + cache_read + cache_creation,
            cached_prompt_tokens: cache_read,
            cache_write_5m_tokens: write_5m,
            cache_write_1h_tokens: write_1h,
            completion_tokens: number(&merged, "/output_tokens"),
            ..Usage::default()
        }
    }

    /// Reads a Gemini `usageMetadata` object. Thinking tokens are output but not part of
    /// `candidatesTokenCount`.
    pub fn from_gemini(usage: &Value) -> Usage {
        let thoughts = number(usage, "/thoughtsTokenCount");
        Usage {
            prompt_tokens: number(usage, "/promptTokenCount")
                + number(usage, "/toolUsePromptTokenCount"),
            cached_prompt_tokens: number(usage, "/cachedContentTokenCount"),
            completion_tokens: number(usage, "/candidatesTokenCount") + thoughts,
            reasoning_tokens: thoughts,
            ..Usage::default()
        }
    }

    /// Reads an embeddings `usage` object.
    pub fn from_embeddings(usage: &Value) -> Usage {
        Usage::text(number(usage, "/prompt_tokens"), 0)
    }

    /// Returns the input tokens billed at the plain input price, or `None` when the input
    /// parts add up to more than the prompt.
    pub fn text_prompt_tokens(&self) -> Option<u64> {
        self.prompt_tokens
            .checked_sub(self.cached_prompt_tokens)?
            .checked_sub(self.cache_write_5m_tokens)?
            .checked_sub(self.cache_write_1h_tokens)?
            .checked_sub(self.audio_prompt_tokens)
    }

    /// Returns the output tokens billed at the plain output price, or `None` when the audio
    /// or reasoning part is above the completion.
    pub fn text_completion_tokens(&self) -> Option<u64> {
        if self.reasoning_tokens > self.completion_tokens {
            return None;
        }
        self.completion_tokens
            .checked_sub(self.audio_completion_tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn anthropic_delta_overrides_start() {
        let start = json!({"input_tokens": 10, "cache_read_input_tokens": 4,
                           "cache_creation_input_tokens": 0, "output_tokens": 1});
        let delta = json!({"output_tokens": 30});
        let usage = Usage::from_anthropic([&start, &delta]);
        assert_eq!(usage.prompt_tokens, 14);
        assert_eq!(usage.cached_prompt_tokens, 4);
        assert_eq!(usage.completion_tokens, 30);
    }

    #[test]
    fn anthropic_writes_without_breakdown_are_5m() {
        let usage = Usage::from_anthropic([&json!({"input_tokens": 1,
            "cache_creation_input_tokens": 7, "output_tokens": 2})]);
        assert_eq!(usage.cache_write_5m_tokens, 7);
        assert_eq!(usage.prompt_tokens, 8);
    }

    #[test]
    fn gemini_thoughts_are_output() {
        let usage = Usage::from_gemini(&json!({"promptTokenCount": 5,
            "candidatesTokenCount": 3, "thoughtsTokenCount": 9}));
        assert_eq!(usage.completion_tokens, 12);
        assert_eq!(usage.reasoning_tokens, 9);
    }

    #[test]
    fn parts_above_prompt_are_invalid() {
        let usage = Usage {
            prompt_tokens: 3,
            cached_prompt_tokens: 2,
            audio_prompt_tokens: 2,
            ..Usage::default()
        };
        assert_eq!(usage.text_prompt_tokens(), None);
    }
}
