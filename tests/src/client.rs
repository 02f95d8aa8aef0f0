//! Clients that tests use: the sidecar's admin API, the mock provider's records, and readers
//! of server-sent events.

use crate::error::{Error, Result};
use crate::mock::{MockRecord, RecordList, RECORDS_PATH};
use crate::pricing::format_usd;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Returns an HTTP client for loopback servers: no proxy from the environment, HTTP/1.1, no
/// overall timeout because streams may run long (tests bound their own time).
pub fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|error| Error::http("building the HTTP client", error))
}

/// Returns the budget name the filter derives from an API key: lowercase hex SHA-256 of it.
pub fn budget_name(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// State of a budget as the sidecar's admin API returns it, in nano-dollars.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BudgetState {
    /// Budget name.
    pub name: String,
    /// Most the budget may spend.
    pub limit_nano_usd: u64,
    /// Charged by settled requests.
    pub spent_nano_usd: u64,
    /// Held by requests in flight.
    pub reserved_nano_usd: u64,
    /// What new requests may still reserve.
    pub remaining_nano_usd: u64,
    /// Cost above the limit that settles recorded without charging it.
    #[serde(default)]
    pub overrun_nano_usd: u64,
}

/// Client of the sidecar's admin API.
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl AdminClient {
    /// Returns a client of the sidecar at `base` that sends `token`.
    pub fn new(http: reqwest::Client, base: String, token: String) -> AdminClient {
        AdminClient { http, base, token }
    }

    /// Sets the limit of budget `name` to `limit_usd`, a decimal string such as "25.00",
    /// creating the budget when it does not exist.
    pub async fn set_budget(&self, name: &str, limit_usd: &str) -> Result<BudgetState> {
        let url = format!("{}/admin/budgets/{name}", self.base);
        let context = format!("setting budget {name} to {limit_usd} USD");
        let response = self
            .http
            .put(&url)
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "limit_usd": limit_usd }))
            .send()
            .await
            .map_err(|error| Error::http(context.clone(), error))?;
        read_json(response, &context).await
    }

    /// Sets the limit of budget `name` to `limit_nano_usd` nano-dollars.
    pub async fn set_budget_nano(&self, name: &str, limit_nano_usd: u64) -> Result<BudgetState> {
        self.set_budget(name, &format_usd(limit_nano_usd)).await
    }

    /// Returns the state of budget `name`.
    pub async fn budget(&self, name: &str) -> Result<BudgetState> {
        let url = format!("{}/admin/budgets/{name}", self.base);
        let context = format!("reading budget {name}");
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|error| Error::http(context.clone(), error))?;
        read_json(response, &context).await
    }

    /// Sends `body` (root, windows, shadow or limit_usd) to `PUT /admin/budgets/{name}` and
    /// returns the budget as the sidecar shows it.
    pub async fn put_budget(&self, name: &str, body: &Value) -> Result<Value> {
        let url = format!("{}/admin/budgets/{name}", self.base);
        let context = format!("putting budget {name}");
        let response = self
            .http
            .put(&url)
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|error| Error::http(context.clone(), error))?;
        read_json(response, &context).await
    }

    /// Returns budget `name` under `root` with every window, as the sidecar shows it.
    pub async fn budget_under(&self, name: &str, root: &str) -> Result<Value> {
        let url = format!("{}/admin/budgets/{name}?root={root}", self.base);
        let context = format!("reading budget {name} under {root}");
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|error| Error::http(context.clone(), error))?;
        read_json(response, &context).await
    }

    /// Returns the sidecar's `/metrics` text.
    pub async fn metrics(&self) -> Result<String> {
        let url = format!("{}/metrics", self.base);
        let context = "reading the sidecar's metrics".to_string();
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|error| Error::http(context.clone(), error))?;
        response
            .text()
            .await
            .map_err(|error| Error::http(context, error))
    }

    /// Polls budget `name` until `done` returns true or `timeout` passes, and returns the last state.
    pub async fn wait_for_budget(
        &self,
        name: &str,
        timeout: Duration,
        done: impl Fn(&BudgetState) -> bool,
    ) -> Result<BudgetState> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let state = self.budget(name).await?;
            if done(&state) || tokio::time::Instant::now() >= deadline {
                return Ok(state);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Client of the mock provider's records.
#[derive(Debug, Clone)]
pub struct MockClient {
    http: reqwest::Client,
    base: String,
}

impl MockClient {
    /// Returns a client of the mock provider at `base`.
    pub fn new(http: reqwest::Client, base: String) -> MockClient {
        MockClient { http, base }
    }

    /// Returns the base URL of the mock provider.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Returns every request the mock saw since the last clear.
    pub async fn records(&self) -> Result<Vec<MockRecord>> {
        let context = "reading the mock provider's records";
        let response = self
            .http
            .get(format!("{}{RECORDS_PATH}", self.base))
            .send()
            .await
            .map_err(|error| Error::http(context, error))?;
        let list: RecordList = read_json(response, context).await?;
        Ok(list.requests)
    }

    /// Forgets every record.
    pub async fn clear(&self) -> Result<()> {
        let context = "clearing the mock provider's records";
        let response = self
            .http
            .delete(format!("{}{RECORDS_PATH}", self.base))
            .send()
            .await
            .map_err(|error| Error::http(context, error))?;
        let _: Value = read_json(response, context).await?;
        Ok(())
    }

    /// Polls the records until `done` returns true or `timeout` passes, and returns the last ones.
    pub async fn wait_for_records(
        &self,
        timeout: Duration,
        done: impl Fn(&[MockRecord]) -> bool,
    ) -> Result<Vec<MockRecord>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let records = self.records().await?;
            if done(&records) || tokio::time::Instant::now() >= deadline {
                return Ok(records);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    context: &str,
) -> Result<T> {
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|error| Error::http(context, error))?;
    if !status.is_success() {
        return Err(Error::Status {
            context: context.to_owned(),
            status: status.as_u16(),
            body: text,
        });
    }
    serde_json::from_str(&text).map_err(|error| {
        Error::Invalid(format!(
            "{context}: invalid JSON response ({error}): {text}"
        ))
    })
}

/// One event of a streamed chat completion, as a client sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatEvent {
    /// A chunk with choices; `content` joins the content of every choice's delta.
    Chunk {
        content: String,
        finish_reason: Option<String>,
        json: Value,
    },
    /// The usage chunk, whose `choices` is empty.
    Usage(Value),
    /// An event whose JSON has an `error` object, as the filter sends when it cuts a stream.
    Error(Value),
    /// `data: [DONE]`.
    Done,
    /// Anything else, such as data that is not JSON.
    Other(String),
}

impl ChatEvent {
    /// Classifies the data of one event.
    pub fn parse(data: &str) -> ChatEvent {
        if data == "[DONE]" {
            return ChatEvent::Done;
        }
        let Ok(json) = serde_json::from_str::<Value>(data) else {
            return ChatEvent::Other(data.to_owned());
        };
        if json.get("error").is_some_and(Value::is_object) {
            return ChatEvent::Error(json);
        }
        let Some(choices) = json.get("choices").and_then(Value::as_array) else {
            return ChatEvent::Other(data.to_owned());
        };
        if choices.is_empty() && json.get("usage").is_some_and(Value::is_object) {
            return ChatEvent::Usage(json);
        }
        let content = choices
            .iter()
            .filter_map(|choice| choice.pointer("/delta/content").and_then(Value::as_str))
            .collect();
        let finish_reason = choices
            .iter()
            .find_map(|choice| choice.get("finish_reason").and_then(Value::as_str))
            .map(str::to_owned);
        ChatEvent::Chunk {
            content,
            finish_reason,
            json,
        }
    }
}

/// What a client read of a streamed response.
#[derive(Debug, Clone, Default)]
pub struct StreamRead {
    /// Every complete event, in order.
    pub events: Vec<ChatEvent>,
    /// Error of the connection or body, when the stream ended abnormally.
    pub transport_error: Option<String>,
    /// Bytes after the last complete event.
    pub trailing: String,
}

impl StreamRead {
    /// Returns the content of every chunk, joined.
    pub fn content(&self) -> String {
        self.events
            .iter()
            .filter_map(|event| match event {
                ChatEvent::Chunk { content, .. } => Some(content.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Returns the first error event.
    pub fn error_event(&self) -> Option<&Value> {
        self.events.iter().find_map(|event| match event {
            ChatEvent::Error(json) => Some(json),
            _ => None,
        })
    }

    /// Returns the first usage chunk.
    pub fn usage_event(&self) -> Option<&Value> {
        self.events.iter().find_map(|event| match event {
            ChatEvent::Usage(json) => Some(json),
            _ => None,
        })
    }

    /// Counts the events that carry content.
    pub fn content_events(&self) -> usize {
        let has_content = |event: &&ChatEvent| matches!(event, ChatEvent::Chunk { content, .. } if !content.is_empty());
        self.events.iter().filter(has_content).count()
    }
}

/// Reads server-sent events from a streamed chat completion until the body ends, the
/// connection fails, or `stop_after` events arrived. The response is then dropped, which closes
/// the connection.
pub async fn read_stream(response: reqwest::Response, stop_after: Option<usize>) -> StreamRead {
    let read = read_sse(response, stop_after).await;
    StreamRead {
        events: read
            .events
            .iter()
            .map(|event| ChatEvent::parse(&event.data))
            .collect(),
        transport_error: read.transport_error,
        trailing: read.trailing,
    }
}

/// One server-sent event: its `event:` name, when it has one, and its `data:` lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// Value of the `event:` field.
    pub event: Option<String>,
    /// Values of the `data:` fields, joined by newlines.
    pub data: String,
}

impl SseEvent {
    /// Returns the data parsed as JSON, or `None` when it is not JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.data).ok()
    }
}

/// What a client read of a stream of server-sent events in any provider's format.
#[derive(Debug, Clone, Default)]
pub struct SseRead {
    /// Every complete event that has data, in order.
    pub events: Vec<SseEvent>,
    /// Error of the connection or body, when the stream ended abnormally.
    pub transport_error: Option<String>,
    /// Bytes after the last complete event.
    pub trailing: String,
    /// Every byte of the body, for checks of the framing.
    pub raw: Vec<u8>,
}

impl SseRead {
    /// Returns the events named `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a SseEvent> + 'a {
        self.events
            .iter()
            .filter(move |event| event.event.as_deref() == Some(name))
    }

    /// Returns the data of every event parsed as JSON; data that is not JSON is skipped.
    pub fn json(&self) -> Vec<Value> {
        self.events.iter().filter_map(SseEvent::json).collect()
    }

    /// Returns the last event.
    pub fn last(&self) -> Option<&SseEvent> {
        self.events.last()
    }
}

/// Reads server-sent events until the body ends, the connection fails, or `stop_after` events
/// arrived. Events end with a blank line of LF or CRLF. The response is then dropped, which
/// closes the connection.
pub async fn read_sse(mut response: reqwest::Response, stop_after: Option<usize>) -> SseRead {
    let mut read = SseRead::default();
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        if stop_after.is_some_and(|count| read.events.len() >= count) {
            break;
        }
        match response.chunk().await {
            Ok(Some(bytes)) => {
                read.raw.extend_from_slice(&bytes);
                buffer.extend_from_slice(&bytes);
                take_events(&mut buffer, &mut read.events, stop_after);
            }
            Ok(None) => break,
            Err(error) => {
                read.transport_error = Some(format!("{error:?}"));
                break;
            }
        }
    }
    read.trailing = String::from_utf8_lossy(&buffer).into_owned();
    read
}

/// Moves every complete event (ended by a blank line) from `buffer` to `events`, up to
/// `limit` events in all.
fn take_events(buffer: &mut Vec<u8>, events: &mut Vec<SseEvent>, limit: Option<usize>) {
    while limit.is_none_or(|limit| events.len() < limit) {
        let Some((end, separator)) = block_end(buffer) else {
            return;
        };
        let block = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..end + separator);
        let field = |line: &str, name: &str| -> Option<String> {
            let value = line.strip_prefix(name)?.strip_prefix(':')?;
            Some(value.strip_prefix(' ').unwrap_or(value).to_owned())
        };
        let data: Vec<String> = block
            .lines()
            .filter_map(|line| field(line, "data"))
            .collect();
        let event = block.lines().find_map(|line| field(line, "event"));
        if !data.is_empty() {
            events.push(SseEvent {
                event,
                data: data.join("\n"),
            });
        }
    }
}

/// Returns where the first event block ends and the length of the blank line after it.
fn block_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let find = |separator: &[u8]| {
        buffer
            .windows(separator.len())
            .position(|window| window == separator)
    };
    let lf = find(b"\n\n").map(|at| (at, 2));
    let crlf = find(b"\r\n\r\n").map(|at| (at, 4));
    match (lf, crlf) {
        (Some(lf), Some(crlf)) => Some(if crlf.0 < lf.0 { crlf } else { lf }),
        (lf, crlf) => lf.or(crlf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn budget_name_is_sha256_hex() {
        // SHA-256 of "abc" from FIPS 180-2, appendix B.1.
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(budget_name("abc"), expected);
    }

    #[test]
    fn events_split_on_blank_lines() {
        let mut buffer =
            b"data: {\"choices\":[{\"delta\":{\"content\":\" a\"}}]}\n\ndata: [DO".to_vec();
        let mut events = Vec::new();
        take_events(&mut buffer, &mut events, None);
        assert_eq!(events.len(), 1);
        assert_eq!(buffer, b"data: [DO");
    }

    #[test]
    fn events_keep_their_names_and_crlf_framing() {
        let mut buffer = b"event: ping\ndata: {}\n\ndata: {\"a\":1}\r\n\r\n".to_vec();
        let mut events = Vec::new();
        take_events(&mut buffer, &mut events, None);
        assert_eq!(events[0].event.as_deref(), Some("ping"));
        assert_eq!(events[1].event, None);
        assert_eq!(events[1].data, "{\"a\":1}");
        assert!(buffer.is_empty());
    }

    #[test]
    fn event_kinds() {
        assert_eq!(ChatEvent::parse("[DONE]"), ChatEvent::Done);
        let error = json!({"error": {"code": "budget_exceeded"}});
        assert!(matches!(
            ChatEvent::parse(&error.to_string()),
            ChatEvent::Error(_)
        ));
        let usage = json!({"choices": [], "usage": {"prompt_tokens": 1}});
        assert!(matches!(
            ChatEvent::parse(&usage.to_string()),
            ChatEvent::Usage(_)
        ));
        let chunk = json!({"choices": [{"delta": {"content": " x"}, "finish_reason": null}], "usage": null});
        let ChatEvent::Chunk {
            content,
            finish_reason,
            ..
        } = ChatEvent::parse(&chunk.to_string())
        else {
            panic!("not a chunk");
        };
        assert_eq!(content, " x");
        assert_eq!(finish_reason, None);
    }
}
