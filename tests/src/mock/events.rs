//! The body of a streamed response: events that a provider format renders one at a time, paced,
//! counted in the request's record, and gzip-compressed on request.

use super::records::{update, SharedRecord};
use axum::body::Body;
use bytes::Bytes;
use flate2::write::GzEncoder;
use std::convert::Infallible;
use std::io::Write;
use std::time::Duration;

/// One event of a streamed body, already framed (for example `data: {...}\n\n`).
#[derive(Debug, Clone)]
pub struct Event {
    /// The bytes on the wire.
    pub bytes: Bytes,
    /// Output tokens the provider generated for this event, hidden ones included.
    pub output_tokens: u64,
    /// True for an output event, which waits for the chunk delay before it goes out.
    pub paced: bool,
}

impl Event {
    /// Returns an event that carries no output and goes out at once.
    pub fn plain(bytes: impl Into<Bytes>) -> Event {
        Event {
            bytes: bytes.into(),
            output_tokens: 0,
            paced: false,
        }
    }

    /// Returns an output event of `output_tokens` tokens.
    pub fn output(bytes: impl Into<Bytes>, output_tokens: u64) -> Event {
        Event {
            bytes: bytes.into(),
            output_tokens,
            paced: true,
        }
    }
}

/// A provider format's events of one response, rendered when the body polls for them.
pub trait EventSource: Send + 'static {
    /// Returns the next event, or `None` after the last.
    fn next_event(&mut self) -> Option<Event>;
}

/// Marks the record when the body is dropped before its last event went out, which is how a
/// server detects a client or proxy that closed the connection.
struct CloseGuard {
    record: SharedRecord,
    finished: bool,
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        if !self.finished {
            update(&self.record, |record| record.client_closed_early = true);
            tracing::debug!("client closed the stream before its last event");
        }
    }
}

struct BodyState<S> {
    source: S,
    next: Option<Event>,
    delay: Duration,
    gzip: Option<GzEncoder<Vec<u8>>>,
    guard: CloseGuard,
}

impl<S: EventSource> BodyState<S> {
    async fn produce(&mut self) -> Option<Bytes> {
        let Some(event) = self.next.take() else {
            return self.gzip_trailer();
        };
        if event.paced && !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        update(&self.guard.record, |record| {
            record.generated_tokens += event.output_tokens
        });
        self.next = self.source.next_event();
        if self.next.is_none() {
            self.guard.finished = true;
            update(&self.guard.record, |record| record.completed = true);
        }
        Some(self.encode(event.bytes))
    }

    fn encode(&mut self, bytes: Bytes) -> Bytes {
        let Some(encoder) = self.gzip.as_mut() else {
            return bytes;
        };
        // Writing to and flushing into a Vec cannot fail. The flush ends a deflate block, so
        // the client can decode each event as it arrives.
        let _ = encoder.write_all(&bytes);
        let _ = encoder.flush();
        Bytes::from(std::mem::take(encoder.get_mut()))
    }

    fn gzip_trailer(&mut self) -> Option<Bytes> {
        let encoder = self.gzip.take()?;
        let trailer = encoder.finish().unwrap_or_default();
        (!trailer.is_empty()).then(|| Bytes::from(trailer))
    }
}

/// Returns the body that streams `source`. It pauses `delay` before each output event and
/// adds each event's tokens to the record's `generated_tokens` as the event goes out, so the
/// count is right even when the client leaves mid-stream. With `gzip`, the body is one gzip
/// stream.
pub fn stream_body(
    mut source: impl EventSource,
    delay: Duration,
    record: SharedRecord,
    gzip: bool,
) -> Body {
    let next = source.next_event();
    let state = BodyState {
        source,
        next,
        delay,
        gzip: gzip.then(|| GzEncoder::new(Vec::new(), flate2::Compression::fast())),
        guard: CloseGuard {
            record,
            finished: false,
        },
    };
    let stream = futures_util::stream::unfold(state, |mut state| async move {
        let bytes = state.produce().await?;
        Some((Ok::<Bytes, Infallible>(bytes), state))
    });
    Body::from_stream(stream)
}

/// Frames `data` as one server-sent event named `name`.
pub fn named_event(name: &str, data: &str) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// Frames `data` as one unnamed server-sent event.
pub fn data_event(data: &str) -> String {
    format!("data: {data}\n\n")
}

/// Serializes a wire value. Serializing the mock's plain structs and JSON values cannot fail,
/// so the empty fallback is never sent.
pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
