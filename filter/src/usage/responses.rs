//! OpenAI Responses API: `response.*` events and the `response` object.

use super::{u64_at, EventInfo, Read};
use crate::tokens::Encoding;
use serde_json::Value;
use spendfuse_protocol::Usage;

/// Events whose `delta` is generated output.
const OUTPUT_DELTAS: [&str; 3] = [
    "response.output_text.delta",
    "response.refusal.delta",
    "response.function_call_arguments.delta",
];

/// Events that end a response and carry its final usage.
const TERMINAL_EVENTS: [&str; 3] = [
    "response.completed",
    "response.incomplete",
    "response.failed",
];

/// Reads one streamed event.
pub(super) fn read_event(encoding: Encoding, data: &Value) -> Read {
    let kind = data.get("type").and_then(Value::as_str).unwrap_or_default();
    if OUTPUT_DELTAS.contains(&kind) {
        let delta = data
            .get("delta")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let info = EventInfo {
            output_tokens: encoding.count(delta),
            usage_only: false,
        };
        return Read {
            info,
            ..Read::default()
        };
    }
    if TERMINAL_EVENTS.contains(&kind) {
        let usage = data
            .pointer("/response/usage")
            .filter(|u| u.is_object())
            .map(usage_of);
        return Read {
            usage,
            terminal: true,
            ..Read::default()
        };
    }
    Read::default()
}

/// Reads a non-streamed `response` object.
pub(super) fn read_response(encoding: Encoding, data: &Value) -> Read {
    let mut output_tokens = 0;
    for item in data
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(arguments) = item.get("arguments").and_then(Value::as_str) {
            output_tokens += encoding.count(arguments);
        }
        for part in item
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for key in ["text", "refusal"] {
                if let Some(text) = part.get(key).and_then(Value::as_str) {
                    output_tokens += encoding.count(text);
                }
            }
        }
    }
    let usage = data.get("usage").filter(|u| u.is_object()).map(usage_of);
    Read {
        info: EventInfo {
            output_tokens,
            usage_only: false,
        },
        usage,
        terminal: true,
    }
}

fn usage_of(usage: &Value) -> Usage {
    let prompt_tokens = u64_at(usage, "/input_tokens");
    let completion_tokens = u64_at(usage, "/output_tokens");
    Usage {
        prompt_tokens,
        cached_prompt_tokens: u64_at(usage, "/input_tokens_details/cached_tokens")
            .min(prompt_tokens),
        completion_tokens,
        reasoning_tokens: u64_at(usage, "/output_tokens_details/reasoning_tokens")
            .min(completion_tokens),
        ..Usage::default()
    }
}
