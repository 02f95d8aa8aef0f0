//! Anthropic Messages: stream events and the `message` object.
//!
//! `message_start` reports the input side; every `message_delta` repeats the usage so far,
//! cumulatively. Fields are merged one by one, the later value winning, and never summed.

use super::{EventInfo, Read};
use crate::tokens::Encoding;
use serde_json::Value;
use spendfuse_protocol::Usage;

/// Usage fields as Anthropic reports them, each kept until a later report replaces it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct RawUsage {
    input: Option<u64>,
    cache_read: Option<u64>,
    cache_creation: Option<u64>,
    cache_5m: Option<u64>,
    cache_1h: Option<u64>,
    output: Option<u64>,
}

impl RawUsage {
    pub(super) fn merge(&mut self, usage: &Value) {
        let field = |pointer: &str| usage.pointer(pointer).and_then(Value::as_u64);
        let updates = [
            (&mut self.input, field("/input_tokens")),
            (&mut self.cache_read, field("/cache_read_input_tokens")),
            (
                &mut self.cache_creation,
                field("/cache_creation_input_tokens"),
            ),
            (
                &mut self.cache_5m,
                field("/cache_creation/ephemeral_5m_input_tokens"),
            ),
            (
                &mut self.cache_1h,
                field("/cache_creation/ephemeral_1h_input_tokens"),
            ),
            (&mut self.output, field("/output_tokens")),
        ];
        for (slot, update) in updates {
            if update.is_some() {
                *slot = update;
            }
        }
    }

    pub(super) fn normalised(&self) -> Usage {
        let cache_read = self.cache_read.unwrap_or(0);
        let cache_creation = self.cache_creation.unwrap_or(0);
        let (cache_5m, cache_1h) = match (self.cache_5m, self.cache_1h) {
            (None, None) => (cache_creation, 0),
            (five, hour) => (five.unwrap_or(0), hour.unwrap_or(0)),
        };
        let cache_writes = cache_creation.max(cache_5m.saturating_add(cache_1h));
        Usage {
            prompt_tokens: self
                .input
                .unwrap_or(0)
                .saturating_add(cache_read)
                .saturating_add(cache_writes),
            cached_prompt_tokens: cache_read,
            cache_write_5m_tokens: cache_5m,
            cache_write_1h_tokens: cache_1h,
            completion_tokens: self.output.unwrap_or(0),
            ..Usage::default()
        }
    }
}

/// Reads one streamed event.
pub(super) fn read_event(encoding: Encoding, data: &Value, raw: &mut RawUsage) -> Read {
    let kind = data.get("type").and_then(Value::as_str).unwrap_or_default();
    match kind {
        "message_start" => {
            if let Some(usage) = data.pointer("/message/usage") {
                raw.merge(usage);
            }
            Read {
                usage: Some(raw.normalised()),
                ..Read::default()
            }
        }
        "message_delta" => {
            if let Some(usage) = data.get("usage") {
                raw.merge(usage);
            }
            Read {
                usage: Some(raw.normalised()),
                ..Read::default()
            }
        }
        "message_stop" => Read {
            usage: Some(raw.normalised()),
            terminal: true,
            ..Read::default()
        },
        "content_block_delta" => {
            let output_tokens = data
                .get("delta")
                .map_or(0, |delta| block_tokens(encoding, delta));
            Read {
                info: EventInfo {
                    output_tokens,
                    usage_only: false,
                },
                ..Read::default()
            }
        }
        _ => Read::default(),
    }
}

/// Reads a non-streamed `message` object.
pub(super) fn read_message(encoding: Encoding, data: &Value, raw: &mut RawUsage) -> Read {
    let output_tokens = data
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|block| block_tokens(encoding, block))
        .sum();
    let usage = data.get("usage").filter(|u| u.is_object()).map(|usage| {
        raw.merge(usage);
        raw.normalised()
    });
    Read {
        info: EventInfo {
            output_tokens,
            usage_only: false,
        },
        usage,
        terminal: true,
    }
}

/// Counts a content block or a block delta: text, thinking, and tool input JSON.
fn block_tokens(encoding: Encoding, block: &Value) -> u64 {
    let mut total = 0;
    for key in ["text", "thinking", "partial_json"] {
        if let Some(text) = block.get(key).and_then(Value::as_str) {
            total += encoding.count(text);
        }
    }
    if block.get("type").and_then(Value::as_str) == Some("tool_use") {
        if let Some(input) = block.get("input") {
            total += encoding.count(&input.to_string());
        }
    }
    total
}
