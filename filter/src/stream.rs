//! Meters a streamed chat completion and decides what of it reaches the client.

use crate::api::Api;
use crate::sse::{SseItem, SseParser};
use crate::tokens::Encoding;
use crate::usage::UsageTracker;
use spendfuse_protocol::Usage;

/// Next step for the caller after it hands on a chunk's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep streaming.
    Continue,
    /// The allowance is spent: the output ends with the error event and the stream must be
    /// reset on a later callback, so that the event reaches the client first.
    Sever,
}

/// State of one streamed response, kept across body callbacks.
pub struct StreamMeter {
    parser: SseParser,
    tracker: UsageTracker,
    allowance: u64,
    drop_usage_chunk: bool,
    items: Vec<SseItem>,
    output_tokens: u64,
    severed: bool,
}

impl StreamMeter {
    /// Starts a meter of an `api` stream that lets `allowance` output tokens (over all
    /// choices) through.
    ///
    /// `drop_usage_chunk` removes OpenAI's usage-only chunk, for clients that did not ask for it.
    pub fn new(api: Api, encoding: Encoding, allowance: u64, drop_usage_chunk: bool) -> Self {
        StreamMeter {
            parser: SseParser::new(crate::sse::DEFAULT_MAX_EVENT_BYTES),
            tracker: UsageTracker::new(api, encoding),
            allowance,
            drop_usage_chunk,
            items: Vec::new(),
            output_tokens: 0,
            severed: false,
        }
    }

    /// Meters one body chunk and appends to `out` the bytes to hand on in its place.
    ///
    /// Events pass unchanged once complete; an incomplete event waits for its next chunk. The
    /// event that would pass the allowance is replaced by what `error_event` returns for the
    /// sequence number after the last event handed on (the Responses API numbers its events).
    /// After a sever nothing more is handed on, but every output token seen is still counted.
    pub fn process(
        &mut self,
        chunk: &[u8],
        end_of_stream: bool,
        out: &mut Vec<u8>,
        error_event: impl Fn(u64) -> String,
    ) -> Verdict {
        let mut items = std::mem::take(&mut self.items);
        self.parser.feed(chunk, &mut items);
        if end_of_stream {
            self.parser.finish(&mut items);
        }
        let was_severed = self.severed;
        for item in items.drain(..) {
            self.handle(item, out, &error_event);
        }
        self.items = items;
        if self.severed && !was_severed {
            Verdict::Sever
        } else {
            Verdict::Continue
        }
    }

    fn handle(&mut self, item: SseItem, out: &mut Vec<u8>, error_event: &impl Fn(u64) -> String) {
        let event = match item {
            SseItem::Event(event) => event,
            SseItem::Oversized(bytes) => {
                if !self.severed {
                    out.extend_from_slice(&bytes);
                }
                return;
            }
        };
        let next_sequence_number = self.tracker.next_sequence_number();
        let info = self.tracker.read_event(&event);
        self.output_tokens = self.output_tokens.saturating_add(info.output_tokens);
        if self.severed {
            return;
        }
        if self.output_tokens > self.allowance {
            self.severed = true;
            out.extend_from_slice(error_event(next_sequence_number).as_bytes());
            return;
        }
        if !(self.drop_usage_chunk && info.usage_only) {
            out.extend_from_slice(&event.raw);
        }
    }

    /// Output tokens counted so far over all choices, including any seen after a sever.
    pub fn output_tokens(&self) -> u64 {
        self.output_tokens
    }

    /// Usage the provider reported so far, if it did.
    pub fn usage(&self) -> Option<Usage> {
        self.tracker.usage()
    }

    /// True once the provider sent its final usage.
    pub fn complete(&self) -> bool {
        self.tracker.complete()
    }

    /// True once the allowance was passed.
    pub fn severed(&self) -> bool {
        self.severed
    }

    /// True when an event was too large to parse, so the count may be short.
    pub fn unreliable(&self) -> bool {
        self.parser.overflowed()
    }

    /// Bytes held for an incomplete event.
    pub fn pending_bytes(&self) -> usize {
        self.parser.pending_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ERROR_EVENT: &str = "data: {\"error\":{}}\n\n";

    fn error_event(_: u64) -> String {
        ERROR_EVENT.to_string()
    }

    fn content_event(text: &str) -> String {
        let chunk = serde_json::json!({"object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
        format!("data: {chunk}\n\n")
    }

    fn usage_event(prompt: u64, completion: u64) -> String {
        let chunk = serde_json::json!({"choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion}});
        format!("data: {chunk}\n\n")
    }

    fn stream_of(words: usize) -> String {
        let mut text: String = (0..words).map(|_| content_event(" the")).collect();
        text.push_str(&usage_event(9, words as u64));
        text.push_str("data: [DONE]\n\n");
        text
    }

    fn run(meter: &mut StreamMeter, input: &[u8], split: usize) -> (Vec<u8>, Vec<Verdict>) {
        let mut out = Vec::new();
        let (first, second) = input.split_at(split);
        let verdicts = vec![
            meter.process(first, false, &mut out, error_event),
            meter.process(second, true, &mut out, error_event),
        ];
        (out, verdicts)
    }

    #[test]
    fn under_allowance_passes_unchanged() {
        let input = stream_of(5);
        let mut meter = StreamMeter::new(Api::OpenAiChat, Encoding::O200kBase, 100, false);
        let (out, _) = run(&mut meter, input.as_bytes(), 17);
        assert_eq!(out, input.as_bytes());
    }

    #[test]
    fn usage_chunk_is_dropped_when_asked() {
        let input = stream_of(2);
        let mut meter = StreamMeter::new(Api::OpenAiChat, Encoding::O200kBase, 100, true);
        let (out, _) = run(&mut meter, input.as_bytes(), 3);
        let expected = format!(
            "{}{}data: [DONE]\n\n",
            content_event(" the"),
            content_event(" the")
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn usage_is_read_even_when_dropped() {
        let input = stream_of(2);
        let mut meter = StreamMeter::new(Api::OpenAiChat, Encoding::O200kBase, 100, true);
        run(&mut meter, input.as_bytes(), 3);
        assert_eq!(meter.usage().map(|u| u.completion_tokens), Some(2));
    }

    #[test]
    fn sever_replaces_event_past_allowance() {
        let input = stream_of(10);
        let mut meter = StreamMeter::new(Api::OpenAiChat, Encoding::O200kBase, 4, true);
        let mut out = Vec::new();
        let verdict = meter.process(input.as_bytes(), false, &mut out, error_event);
        let expected: String =
            (0..4).map(|_| content_event(" the")).collect::<String>() + ERROR_EVENT;
        assert_eq!(verdict, Verdict::Sever);
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn sever_is_reported_once() {
        let mut meter = StreamMeter::new(Api::OpenAiChat, Encoding::O200kBase, 1, true);
        let mut out = Vec::new();
        meter.process(stream_of(3).as_bytes(), false, &mut out, error_event);
        let again = meter.process(
            content_event(" the").as_bytes(),
            false,
            &mut out,
            error_event,
        );
        assert_eq!(again, Verdict::Continue);
    }

    #[test]
    fn tokens_after_sever_are_counted() {
        let mut meter = StreamMeter::new(Api::OpenAiChat, Encoding::O200kBase, 1, true);
        let mut out = Vec::new();
        meter.process(stream_of(3).as_bytes(), false, &mut out, error_event);
        meter.process(
            content_event(" the").as_bytes(),
            false,
            &mut out,
            error_event,
        );
        assert_eq!(meter.output_tokens(), 4);
    }

    #[test]
    fn exact_allowance_is_not_severed() {
        let input = stream_of(4);
        let mut meter = StreamMeter::new(Api::OpenAiChat, Encoding::O200kBase, 4, false);
        let (out, verdicts) = run(&mut meter, input.as_bytes(), 40);
        assert!(verdicts.iter().all(|v| *v == Verdict::Continue));
        assert_eq!(out, input.as_bytes());
    }

    #[test]
    fn every_split_gives_same_output_and_count() {
        let input = stream_of(6).replace("\n", "\r\n");
        let mut whole = StreamMeter::new(Api::OpenAiChat, Encoding::O200kBase, 3, true);
        let mut expected = Vec::new();
        whole.process(input.as_bytes(), true, &mut expected, error_event);
        for split in 0..=input.len() {
            let mut meter = StreamMeter::new(Api::OpenAiChat, Encoding::O200kBase, 3, true);
            let (out, _) = run(&mut meter, input.as_bytes(), split);
            assert_eq!(out, expected, "split at {split}");
            assert_eq!(
                meter.output_tokens(),
                whole.output_tokens(),
                "split at {split}"
            );
        }
    }
    /// Fixture streams of the SSE parser; the meter must count each the same however split.
    const FIXTURES: [&[u8]; 4] = [
        include_bytes!("../tests/fixtures/sse/openai_chat_usage.sse"),
        include_bytes!("../tests/fixtures/sse/openai_crlf.sse"),
        include_bytes!("../tests/fixtures/sse/utf8_content.sse"),
        include_bytes!("../tests/fixtures/sse/openai_error.sse"),
    ];

    #[test]
    fn fixtures_meter_the_same_at_every_split() {
        for (index, fixture) in FIXTURES.iter().enumerate() {
            let mut whole = StreamMeter::new(Api::OpenAiChat, Encoding::O200kBase, u64::MAX, false);
            let mut whole_out = Vec::new();
            whole.process(fixture, true, &mut whole_out, error_event);
            for split in 0..=fixture.len() {
                let mut meter =
                    StreamMeter::new(Api::OpenAiChat, Encoding::O200kBase, u64::MAX, false);
                let (out, _) = run(&mut meter, fixture, split);
                assert_eq!(
                    meter.output_tokens(),
                    whole.output_tokens(),
                    "fixture {index} split {split}"
                );
                assert_eq!(
                    meter.usage(),
                    whole.usage(),
                    "fixture {index} split {split}"
                );
                assert_eq!(out, whole_out, "fixture {index} split {split}");
            }
        }
    }

    #[test]
    fn fixtures_meter_the_same_byte_by_byte() {
        for (index, fixture) in FIXTURES.iter().enumerate() {
            let mut whole = StreamMeter::new(Api::OpenAiChat, Encoding::O200kBase, u64::MAX, false);
            whole.process(fixture, true, &mut Vec::new(), error_event);
            let mut meter = StreamMeter::new(Api::OpenAiChat, Encoding::O200kBase, u64::MAX, false);
            let mut out = Vec::new();
            for byte in fixture.iter() {
                meter.process(std::slice::from_ref(byte), false, &mut out, error_event);
            }
            meter.process(&[], true, &mut out, error_event);
            assert_eq!(
                meter.output_tokens(),
                whole.output_tokens(),
                "fixture {index}"
            );
            assert_eq!(out, *fixture, "fixture {index}");
        }
    }

    #[test]
    fn chat_fixture_has_tokens_and_usage() {
        let mut meter = StreamMeter::new(Api::OpenAiChat, Encoding::O200kBase, u64::MAX, false);
        meter.process(FIXTURES[0], true, &mut Vec::new(), error_event);
        assert!(meter.output_tokens() > 0);
        assert!(meter.usage().is_some());
    }
}
