//! What the mock provider saw of each request, for tests to read at `GET /mock/requests`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::{Arc, Mutex, PoisonError};

/// One request that reached the mock provider, and what the mock did with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MockRecord {
    /// Format of the mock's response: `openai_chat`, `azure_chat`, `responses`, `anthropic`,
    /// `gemini`, `embeddings`, or `unknown` for a path it does not serve.
    pub provider: String,
    /// Request path.
    pub path: String,
    /// Query string, without the `?`.
    #[serde(default)]
    pub query: Option<String>,
    /// Header (or `key` for the query parameter) that carried the API key, never its value.
    #[serde(default)]
    pub credential: Option<String>,
    /// `model` of the body, when the body is a JSON object with one.
    pub model: Option<String>,
    /// True for a streamed request: `stream` of the body, or Gemini's `streamGenerateContent`.
    pub stream: bool,
    /// `stream_options.include_usage` of the body.
    pub include_usage: bool,
    /// Field of the body that set the output maximum: `max_completion_tokens` or
    /// `max_tokens` (the first when both) for chat, `max_output_tokens` for Responses,
    /// `max_tokens` for Anthropic, `generationConfig.maxOutputTokens` for Gemini.
    pub max_tokens_field: Option<String>,
    /// Value of `max_tokens_field`.
    pub max_tokens_value: Option<u64>,
    /// `accept-encoding` request header.
    pub accept_encoding: Option<String>,
    /// The body as received: parsed JSON, or a JSON string with the raw text when it is not JSON.
    pub body: Value,
    /// Prompt tokens the mock reports: the formula in `spendfuse_tests::tokens` for OpenAI
    /// formats, the mock's own count for Anthropic and Gemini, before any knob adds to it.
    pub prompt_tokens: u64,
    /// Output tokens generated over all choices so far, hidden reasoning and audio tokens
    /// included, whether or not usage is sent.
    pub generated_tokens: u64,
    /// True when the streamed body was dropped before its last event was written.
    pub client_closed_early: bool,
    /// True once the whole response was produced.
    pub completed: bool,
    /// Status of the response.
    pub status: u16,
}

/// A record that the request handler and the streamed body both update.
pub type SharedRecord = Arc<Mutex<MockRecord>>;

/// Applies `change` to a shared record. A poisoned lock still holds a usable record, because
/// every change is a plain field assignment.
pub fn update(record: &SharedRecord, change: impl FnOnce(&mut MockRecord)) {
    let mut guard = record.lock().unwrap_or_else(PoisonError::into_inner);
    change(&mut guard);
}

/// All records since the last clear, oldest first.
#[derive(Debug, Default)]
pub struct RecordLog {
    records: Mutex<Vec<SharedRecord>>,
}

impl RecordLog {
    /// Adds a record and returns the handle that updates it.
    pub fn push(&self, record: MockRecord) -> SharedRecord {
        let shared = Arc::new(Mutex::new(record));
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        records.push(Arc::clone(&shared));
        shared
    }

    /// Returns a copy of every record.
    pub fn snapshot(&self) -> Vec<MockRecord> {
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        records
            .iter()
            .map(|record| {
                record
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
            })
            .collect()
    }

    /// Forgets every record and returns how many there were. Streams still running keep
    /// updating their own record, which is no longer listed.
    pub fn clear(&self) -> usize {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let count = records.len();
        records.clear();
        count
    }
}

/// Body of `GET /mock/requests`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordList {
    /// Every record since the last clear, oldest first.
    pub requests: Vec<MockRecord>,
}
