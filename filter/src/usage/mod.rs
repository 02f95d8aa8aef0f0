//! Usage and output tokens in provider responses, streamed and not, normalised into [`Usage`].

mod anthropic;
mod gemini;
mod openai;
mod responses;

use crate::api::Api;
use crate::sse::SseEvent;
use crate::tokens::Encoding;
use serde_json::Value;
use spendfuse_protocol::Usage;

/// Output tokens and kind of one streamed event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventInfo {
    /// Output tokens in the event, counted with the model's tokenizer.
    pub output_tokens: u64,
    /// True for OpenAI's usage-only chunk (usage and an empty `choices` list).
    pub usage_only: bool,
}

/// Usage reported so far by one response, kept across events.
#[derive(Debug, Clone)]
pub struct UsageTracker {
    api: Api,
    encoding: Encoding,
    usage: Option<Usage>,
    anthropic: anthropic::RawUsage,
    complete: bool,
    last_sequence_number: Option<u64>,
}

impl UsageTracker {
    /// Starts tracking a response of `api` whose text counts with `encoding`.
    pub fn new(api: Api, encoding: Encoding) -> Self {
        UsageTracker {
            api,
            encoding,
            usage: None,
            anthropic: anthropic::RawUsage::default(),
            complete: false,
            last_sequence_number: None,
        }
    }

    /// Reads one streamed event. Data that is not JSON, such as `[DONE]`, carries nothing.
    pub fn read_event(&mut self, event: &SseEvent) -> EventInfo {
        if !event.has_data {
            return EventInfo::default();
        }
        let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
            return EventInfo::default();
        };
        if let Some(number) = data.get("sequence_number").and_then(Value::as_u64) {
            self.last_sequence_number = Some(number);
        }
        let read = match self.api {
            Api::OpenAiChat | Api::AzureChat | Api::Embeddings => {
                openai::read_chunk(self.encoding, &data)
            }
            Api::Responses => responses::read_event(self.encoding, &data),
            Api::Gemini => gemini::read_chunk(self.encoding, &data),
            Api::Anthropic => anthropic::read_event(self.encoding, &data, &mut self.anthropic),
        };
        self.apply(read)
    }

    /// Reads a complete non-streamed body and returns its output tokens.
    pub fn read_body(&mut self, body: &[u8]) -> u64 {
        let Ok(data) = serde_json::from_slice::<Value>(body) else {
            return 0;
        };
        let read = match self.api {
            Api::OpenAiChat | Api::AzureChat | Api::Embeddings => {
                openai::read_chunk(self.encoding, &data)
            }
            Api::Responses => responses::read_response(self.encoding, &data),
            Api::Gemini => gemini::read_body(self.encoding, &data),
            Api::Anthropic => anthropic::read_message(self.encoding, &data, &mut self.anthropic),
        };
        let output_tokens = read.info.output_tokens;
        self.apply(read);
        // A whole body is the provider's final word, even without a finish marker.
        self.complete = self.usage.is_some();
        output_tokens
    }

    fn apply(&mut self, read: Read) -> EventInfo {
        if read.usage.is_some() {
            self.usage = read.usage;
        }
        self.complete |= read.terminal && self.usage.is_some();
        read.info
    }

    /// Usage the provider reported so far.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// True once the provider sent its final usage.
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// Sequence number for an event appended after the last one seen (Responses API).
    pub fn next_sequence_number(&self) -> u64 {
        self.last_sequence_number.map_or(0, |n| n.saturating_add(1))
    }
}

/// Content of one event or body, before it is merged into the tracker.
#[derive(Debug, Clone, Copy, Default)]
struct Read {
    info: EventInfo,
    /// Usage as the provider now reports it, replacing earlier reports.
    usage: Option<Usage>,
    /// True for the provider's last event.
    terminal: bool,
}

fn u64_at(value: &Value, pointer: &str) -> u64 {
    value.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

#[cfg(test)]
mod tests;
