//! Incremental Server-Sent Events parser that turns body chunks into whole event blocks.
//!
//! The parser follows the event stream format of the WHATWG HTML Living Standard, sections 9.2.5
//! and 9.2.6 (<https://html.spec.whatwg.org/multipage/server-sent-events.html>). Lines end with
//! LF, CRLF or CR, mixed freely, and a blank line ends a block. Each block comes back with its
//! exact bytes, so a caller can forward it unchanged. Bytes of an unfinished block stay in the
//! parser until the rest arrives.
//!
//! Two choices differ from a browser's `EventSource`. Every block is returned, including blocks
//! without a `data` field (comments, `retry:` only, stray blank lines), because the caller must
//! forward all bytes. At end of stream, [`SseParser::finish`] returns an unfinished block instead
//! of discarding it.

/// Default for the largest block that [`SseParser`] keeps whole: 4 MiB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// Smallest limit that [`SseParser::new`] accepts. Below it, a first line made of a BOM and a CR
/// (4 bytes) could be passed on before the next byte decides its line end. The BOM would then
/// count as content, and where the block ends would depend on the chunking.
pub const MIN_MAX_EVENT_BYTES: usize = 4;

/// UTF-8 byte order mark, skipped once at the start of the stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One complete event block: everything up to and including the blank line that ends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The bytes as received, including the terminating blank line, for forwarding unchanged.
    pub raw: Vec<u8>,
    /// Value of the last `event:` field, if any.
    pub event: Option<String>,
    /// `data:` field values joined with '\n', each without the one space that may follow the
    /// colon.
    pub data: String,
    /// True when the block had at least one `data` field (comment-only blocks have none).
    pub has_data: bool,
}

/// Output of [`SseParser`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    /// A complete event block.
    Event(SseEvent),
    /// Bytes of a block larger than the parser's limit, forwarded as they come and not parsed.
    Oversized(Vec<u8>),
}

/// Field values collected from the complete lines of the current block.
#[derive(Debug, Default)]
struct BlockFields {
    event: Option<Vec<u8>>,
    data: Vec<u8>,
    has_data: bool,
}

impl BlockFields {
    /// Applies one non-blank line (without its line end) to the block.
    fn apply_line(&mut self, line: &[u8]) {
        if line.first() == Some(&b':') {
            return;
        }
        let (name, value) = match line.iter().position(|&byte| byte == b':') {
            Some(colon) => {
                let name = line.get(..colon).unwrap_or_default();
                let value = line.get(colon + 1..).unwrap_or_default();
                (name, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => self.event = Some(value.to_vec()),
            // `id`, `retry` and unknown fields stay in the raw bytes and are not interpreted.
            _ => {}
        }
    }

    fn into_event(self, raw: Vec<u8>) -> SseEvent {
        SseEvent {
            raw,
            event: self.event.map(decode_utf8),
            data: decode_utf8(self.data),
            has_data: self.has_data,
        }
    }
}

/// Location of a completed line's content: in the pending bytes or in the current chunk.
enum LineSpan {
    Pending(std::ops::Range<usize>),
    Chunk(std::ops::Range<usize>),
}

/// Stateful parser that splits a streamed body into [`SseItem`]s across chunk boundaries.
///
/// Memory stays bounded: between calls the parser keeps at most `max_event_bytes` bytes of an
/// unfinished block. During one [`SseParser::feed`] call it can keep up to that chunk's length
/// more.
#[derive(Debug)]
pub struct SseParser {
    max_event_bytes: usize,
    /// Bytes of the unfinished block received in earlier chunks.
    pending: Vec<u8>,
    /// Offset in `pending` where the unfinished line starts (`pending.len()` at a line start).
    line_start: usize,
    /// `pending` ends with a CR that ends a line. That line is applied once the next byte shows
    /// whether an LF belongs to the same line end.
    cr_pending: bool,
    fields: BlockFields,
    /// No line of the stream has been completed, so a leading BOM is still to be skipped.
    at_stream_start: bool,
    /// The current block went over the limit, so its bytes pass through as `Oversized`.
    in_oversized_block: bool,
    /// Bytes of the current line were already passed on as `Oversized`, so the line is not blank.
    line_content_passed_on: bool,
    overflowed: bool,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

impl SseParser {
    /// Creates a parser that keeps blocks of at most `max_event_bytes` bytes whole
    /// ([`DEFAULT_MAX_EVENT_BYTES`] is the usual value, and values below
    /// [`MIN_MAX_EVENT_BYTES`] are raised to it). Larger blocks pass through as
    /// [`SseItem::Oversized`].
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            max_event_bytes: max_event_bytes.max(MIN_MAX_EVENT_BYTES),
            pending: Vec::new(),
            line_start: 0,
            cr_pending: false,
            fields: BlockFields::default(),
            at_stream_start: true,
            in_oversized_block: false,
            line_content_passed_on: false,
            overflowed: false,
        }
    }

    /// Feeds one body chunk and appends every item that it completes to `out`.
    ///
    /// A block ended by a blank line whose last byte is a CR at the end of `chunk` is returned
    /// by the next call (or by `finish`), because an LF that follows belongs to its raw bytes.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseItem>) {
        if chunk.is_empty() {
            return;
        }
        // The current block is `pending` followed by `chunk[segment_start..]`, and the next line
        // starts at `chunk[line_start]`.
        let mut segment_start = 0;
        let mut line_start = 0;

        if self.cr_pending {
            // The line before the CR is complete. An LF first in this chunk ends the same line.
            self.cr_pending = false;
            let line_end = usize::from(chunk.first() == Some(&b'\n'));
            let content = self.line_start..self.pending.len().saturating_sub(1);
            segment_start = self.complete_line(chunk, LineSpan::Pending(content), 0, line_end, out);
            line_start = line_end;
        } else if self.line_start < self.pending.len() {
            // The last chunk ended inside a line: copy the rest of it into `pending` so that the
            // line's content is contiguous.
            let Some(terminator) = find_line_terminator(chunk) else {
                self.append_pending(chunk, self.line_start, out);
                return;
            };
            let Some(line_end) = line_end_after(chunk, terminator) else {
                self.cr_pending = true;
                self.append_pending(chunk, self.line_start, out);
                return;
            };
            self.pending
                .extend_from_slice(chunk.get(..terminator).unwrap_or_default());
            let content = self.line_start..self.pending.len();
            segment_start =
                self.complete_line(chunk, LineSpan::Pending(content), terminator, line_end, out);
            line_start = line_end;
        }

        while let Some(offset) = chunk.get(line_start..).and_then(find_line_terminator) {
            let terminator = line_start + offset;
            let Some(line_end) = line_end_after(chunk, terminator) else {
                self.cr_pending = true;
                break;
            };
            let content = LineSpan::Chunk(line_start..terminator);
            segment_start = self.complete_line(chunk, content, segment_start, line_end, out);
            line_start = line_end;
        }

        let tail = chunk.get(segment_start..).unwrap_or_default();
        // `line_start` never falls below `segment_start`, because both only move to line ends.
        let pending_line_start = self.pending.len() + line_start.saturating_sub(segment_start);
        self.append_pending(tail, pending_line_start, out);
    }

    /// Ends the stream: appends the unfinished block, if any, to `out` so that no byte is lost.
    ///
    /// An unfinished block comes back as an [`SseItem::Event`] whose `raw` lacks the blank line.
    /// Its last line counts even without a line end, so `data: x` at the very end yields data
    /// `x` with `has_data` true. A block without `data` fields still yields an event, with
    /// `has_data` false. The rest of a block over the limit comes back as
    /// [`SseItem::Oversized`]. Afterwards the parser starts a new stream, but `overflowed`
    /// stays true.
    pub fn finish(&mut self, out: &mut Vec<SseItem>) {
        if self.cr_pending {
            self.cr_pending = false;
            let content = self.line_start..self.pending.len().saturating_sub(1);
            self.complete_line(&[], LineSpan::Pending(content), 0, 0, out);
            self.line_start = self.pending.len();
        }
        if self.in_oversized_block {
            if !self.pending.is_empty() {
                out.push(SseItem::Oversized(std::mem::take(&mut self.pending)));
            }
        } else if !self.pending.is_empty() {
            if let Some(line) = self.pending.get(self.line_start..) {
                if !line.is_empty() {
                    let line = strip_bom(line, self.at_stream_start);
                    self.fields.apply_line(line);
                }
            }
            let fields = std::mem::take(&mut self.fields);
            let raw = std::mem::take(&mut self.pending);
            out.push(SseItem::Event(fields.into_event(raw)));
        }
        let overflowed = self.overflowed;
        *self = Self::new(self.max_event_bytes);
        self.overflowed = overflowed;
    }

    /// Number of bytes pending for the unfinished block.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// True once any block went over the limit (the meter cannot trust its count after that).
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Applies one line whose line end runs up to `chunk[line_end]`, and emits the block if
    /// the line was blank. The current block is `pending` followed by
    /// `chunk[segment_start..line_end]`. Returns where the current block now starts in `chunk`.
    fn complete_line(
        &mut self,
        chunk: &[u8],
        content: LineSpan,
        segment_start: usize,
        line_end: usize,
        out: &mut Vec<SseItem>,
    ) -> usize {
        let line = match content {
            LineSpan::Pending(range) => self.pending.get(range),
            LineSpan::Chunk(range) => chunk.get(range),
        };
        let line = strip_bom(line.unwrap_or_default(), self.at_stream_start);
        let is_blank = line.is_empty() && !self.line_content_passed_on;
        self.at_stream_start = false;
        self.line_content_passed_on = false;

        let segment = chunk.get(segment_start..line_end).unwrap_or_default();
        let block_len = self.pending.len() + segment.len();
        if !is_blank {
            if !self.in_oversized_block {
                self.fields.apply_line(line);
            }
            if block_len > self.max_event_bytes {
                self.enter_oversized_block();
            }
            return segment_start;
        }

        let mut raw = Vec::with_capacity(block_len);
        raw.extend_from_slice(&self.pending);
        raw.extend_from_slice(segment);
        self.pending.clear();
        self.line_start = 0;
        if block_len > self.max_event_bytes {
            self.enter_oversized_block();
        }
        let fields = std::mem::take(&mut self.fields);
        if self.in_oversized_block {
            self.in_oversized_block = false;
            // The raw bytes are empty when earlier calls already passed on the whole block.
            if !raw.is_empty() {
                out.push(SseItem::Oversized(raw));
            }
        } else {
            out.push(SseItem::Event(fields.into_event(raw)));
        }
        line_end
    }

    /// Appends `tail`, the unfinished end of a chunk, to `pending`. The unfinished line starts at
    /// `line_start` in `pending` afterwards. Passes the bytes on instead once the block is over
    /// the limit.
    fn append_pending(&mut self, tail: &[u8], line_start: usize, out: &mut Vec<SseItem>) {
        self.pending.extend_from_slice(tail);
        self.line_start = line_start;
        if self.pending.len() > self.max_event_bytes {
            self.enter_oversized_block();
        }
        if !self.in_oversized_block || self.pending.is_empty() {
            return;
        }
        // Remember whether the unfinished line has content, because its bytes leave now.
        let content_end = self.pending.len() - usize::from(self.cr_pending);
        if content_end > self.line_start {
            self.line_content_passed_on = true;
        }
        self.line_start = 0;
        out.push(SseItem::Oversized(std::mem::take(&mut self.pending)));
    }

    fn enter_oversized_block(&mut self) {
        self.in_oversized_block = true;
        self.overflowed = true;
        self.fields = BlockFields::default();
    }
}

/// Returns the index of the first CR or LF in `bytes`.
///
/// Tests eight bytes at a time: `(x - 0x0101..) & !x & 0x8080..` sets the high bit of every
/// zero byte of `x`, as in <https://graphics.stanford.edu/~seander/bithacks.html>. A byte above
/// a zero byte can be flagged falsely through the borrow, but no byte below the first zero one.
fn find_line_terminator(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH_BITS: u64 = u64::from_le_bytes([0x80; 8]);
    const LF: u64 = u64::from_le_bytes([b'\n'; 8]);
    const CR: u64 = u64::from_le_bytes([b'\r'; 8]);

    let mut words = bytes.chunks_exact(8);
    let mut offset = 0;
    for word in words.by_ref() {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            break;
        };
        let value = u64::from_le_bytes(word);
        let lf_zero = value ^ LF;
        let cr_zero = value ^ CR;
        let flags =
            (lf_zero.wrapping_sub(ONES) & !lf_zero) | (cr_zero.wrapping_sub(ONES) & !cr_zero);
        let flags = flags & HIGH_BITS;
        if flags != 0 {
            return Some(offset + (flags.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&byte| byte == b'\n' || byte == b'\r')
        .map(|index| offset + index)
}

/// Returns the index just past the line end that starts at `chunk[terminator]`, or `None` for
/// a CR as the chunk's last byte, where the next chunk decides whether an LF belongs to it.
fn line_end_after(chunk: &[u8], terminator: usize) -> Option<usize> {
    match chunk.get(terminator) {
        Some(b'\r') => match chunk.get(terminator + 1) {
            Some(b'\n') => Some(terminator + 2),
            Some(_) => Some(terminator + 1),
            None => None,
        },
        _ => Some(terminator + 1),
    }
}

fn strip_bom(line: &[u8], at_stream_start: bool) -> &[u8] {
    if at_stream_start {
        line.strip_prefix(BOM).unwrap_or(line)
    } else {
        line
    }
}

/// Decodes UTF-8, replacing invalid sequences with U+FFFD.
fn decode_utf8(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => String::from_utf8_lossy(error.as_bytes()).into_owned(),
    }
}

#[cfg(test)]
#[allow(
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unwrap_used
)]
mod tests {
    use super::*;

    /// An event's parsed fields: `event`, `data` and `has_data`.
    type Fields = (Option<String>, String, bool);

    struct Fixture {
        name: &'static str,
        bytes: &'static [u8],
    }

    macro_rules! fixture {
        ($name:literal) => {
            Fixture {
                name: $name,
                bytes: include_bytes!(concat!("../tests/fixtures/sse/", $name)),
            }
        };
    }

    const FIXTURES: &[Fixture] = &[
        fixture!("openai_chat_usage.sse"),
        fixture!("openai_crlf.sse"),
        fixture!("cr_only.sse"),
        fixture!("keepalive_comments.sse"),
        fixture!("multiline_data.sse"),
        fixture!("anthropic_messages.sse"),
        fixture!("id_retry.sse"),
        fixture!("utf8_content.sse"),
        fixture!("openai_error.sse"),
        fixture!("bom.sse"),
        fixture!("mixed_line_ends.sse"),
        fixture!("unterminated.sse"),
    ];

    /// Fixtures up to this size are also split into three chunks at every pair of offsets.
    const ALL_PAIRS_MAX_LEN: usize = 600;

    fn fixture_bytes(name: &str) -> &'static [u8] {
        FIXTURES
            .iter()
            .find(|fixture| fixture.name == name)
            .map(|fixture| fixture.bytes)
            .expect("fixture is listed in FIXTURES")
    }

    /// Feeds `chunks` in order to a parser with limit `max`, then finishes the stream.
    fn parse_chunks_with_limit(chunks: &[&[u8]], max: usize) -> (Vec<SseItem>, SseParser) {
        let mut parser = SseParser::new(max);
        let mut items = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut items);
        }
        parser.finish(&mut items);
        (items, parser)
    }

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<SseItem> {
        parse_chunks_with_limit(chunks, DEFAULT_MAX_EVENT_BYTES).0
    }

    /// Splits `bytes` at the sorted `offsets` and parses the pieces as chunks.
    fn parse_split(bytes: &[u8], offsets: &[usize]) -> Vec<SseItem> {
        let mut chunks = Vec::new();
        let mut start = 0;
        for &offset in offsets {
            chunks.push(&bytes[start..offset]);
            start = offset;
        }
        chunks.push(&bytes[start..]);
        parse_chunks(&chunks)
    }

    fn events(items: &[SseItem]) -> Vec<&SseEvent> {
        items
            .iter()
            .map(|item| match item {
                SseItem::Event(event) => event,
                SseItem::Oversized(bytes) => {
                    panic!("unexpected Oversized item of {} bytes", bytes.len())
                }
            })
            .collect()
    }

    fn fields(items: &[SseItem]) -> Vec<Fields> {
        events(items)
            .into_iter()
            .map(|event| (event.event.clone(), event.data.clone(), event.has_data))
            .collect()
    }

    fn expected(list: &[(Option<&str>, &str, bool)]) -> Vec<Fields> {
        list.iter()
            .map(|(event, data, has_data)| (event.map(String::from), data.to_string(), *has_data))
            .collect()
    }

    fn concat_raw(items: &[SseItem]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for item in items {
            match item {
                SseItem::Event(event) => bytes.extend_from_slice(&event.raw),
                SseItem::Oversized(raw) => bytes.extend_from_slice(raw),
            }
        }
        bytes
    }

    fn json_data(event: &SseEvent) -> serde_json::Value {
        serde_json::from_str(&event.data)
            .unwrap_or_else(|error| panic!("data {:?} is not JSON: {error}", event.data))
    }

    /// Concatenates the `choices[0].delta.content` strings of OpenAI chat chunks, which are
    /// the events without an `event` field, apart from `[DONE]`.
    fn openai_content(items: &[SseItem]) -> String {
        events(items)
            .into_iter()
            .filter(|event| event.event.is_none() && event.data != "[DONE]")
            .filter_map(|event| {
                json_data(event)["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(String::from)
            })
            .collect()
    }

    /// Checks that every way of cutting `bytes` into two chunks parses like the whole input.
    fn assert_two_chunk_splits_match(name: &str, bytes: &[u8]) {
        let whole = parse_chunks(&[bytes]);
        for offset in 0..=bytes.len() {
            let split = parse_split(bytes, &[offset]);
            assert_eq!(split, whole, "{name}: split at offset {offset}");
        }
    }

    // Whole fixtures.

    #[test]
    fn fixtures_round_trip_raw_bytes() {
        for fixture in FIXTURES {
            let items = parse_chunks(&[fixture.bytes]);
            assert_eq!(concat_raw(&items), fixture.bytes, "{}", fixture.name);
        }
    }

    #[test]
    fn fixtures_yield_only_events() {
        for fixture in FIXTURES {
            let (items, parser) =
                parse_chunks_with_limit(&[fixture.bytes], DEFAULT_MAX_EVENT_BYTES);
            let oversized = items
                .iter()
                .filter(|item| matches!(item, SseItem::Oversized(_)))
                .count();
            assert_eq!(oversized, 0, "{}: Oversized items", fixture.name);
            assert!(!parser.overflowed(), "{}: overflowed", fixture.name);
        }
    }

    #[test]
    fn fixtures_split_in_two_at_every_offset() {
        for fixture in FIXTURES {
            assert_two_chunk_splits_match(fixture.name, fixture.bytes);
        }
    }

    #[test]
    fn fixtures_fed_one_byte_per_chunk() {
        for fixture in FIXTURES {
            let whole = parse_chunks(&[fixture.bytes]);
            let bytes: Vec<&[u8]> = fixture.bytes.chunks(1).collect();
            assert_eq!(parse_chunks(&bytes), whole, "{}", fixture.name);
        }
    }

    #[test]
    fn fixtures_with_empty_chunks_between_bytes() {
        for fixture in FIXTURES {
            let whole = parse_chunks(&[fixture.bytes]);
            let mut chunks: Vec<&[u8]> = vec![b""];
            for byte in fixture.bytes.chunks(1) {
                chunks.push(byte);
                chunks.push(b"");
            }
            assert_eq!(parse_chunks(&chunks), whole, "{}", fixture.name);
        }
    }

    #[test]
    fn fixtures_split_in_three_at_offset_pairs() {
        for fixture in FIXTURES {
            let whole = parse_chunks(&[fixture.bytes]);
            let len = fixture.bytes.len();
            for first in 0..=len {
                // Larger fixtures get every second cut within 16 bytes of the first one, which
                // covers a line end or a UTF-8 character spread over three chunks.
                let last = if len <= ALL_PAIRS_MAX_LEN {
                    len
                } else {
                    len.min(first + 16)
                };
                for second in first..=last {
                    let split = parse_split(fixture.bytes, &[first, second]);
                    assert_eq!(
                        split, whole,
                        "{}: split at {first} and {second}",
                        fixture.name
                    );
                }
            }
        }
    }

    // What each fixture contains.

    #[test]
    fn openai_stream_content_usage_and_done() {
        let items = parse_chunks(&[fixture_bytes("openai_chat_usage.sse")]);
        let events = events(&items);
        assert_eq!(events.len(), 7);
        assert_eq!(openai_content(&items), "Hello there!");
        let usage = json_data(events[5]);
        assert_eq!(usage["choices"], serde_json::json!([]));
        assert_eq!(usage["usage"]["total_tokens"], 15);
        assert_eq!(events[6].data, "[DONE]");
        assert!(events.iter().all(|event| event.event.is_none()));
        assert!(events.iter().all(|event| event.raw.ends_with(b"\n\n")));
    }

    #[test]
    fn openai_crlf_stream() {
        let items = parse_chunks(&[fixture_bytes("openai_crlf.sse")]);
        let events = events(&items);
        assert_eq!(events.len(), 3);
        assert_eq!(openai_content(&items), "Hi");
        assert_eq!(json_data(events[1])["choices"][0]["finish_reason"], "stop");
        assert_eq!(events[2].data, "[DONE]");
        assert!(events.iter().all(|event| event.raw.ends_with(b"\r\n\r\n")));
    }

    #[test]
    fn cr_only_stream() {
        let items = parse_chunks(&[fixture_bytes("cr_only.sse")]);
        let expected = expected(&[
            (Some("greeting"), "first line\nsecond line", true),
            (None, "", false),
            (None, "{\"n\":2}", true),
            (None, "[DONE]", true),
        ]);
        assert_eq!(fields(&items), expected);
        assert_eq!(events(&items)[1].raw, b": comment between blocks\r\r");
    }

    #[test]
    fn keepalive_comments_stream() {
        let items = parse_chunks(&[fixture_bytes("keepalive_comments.sse")]);
        let expected = expected(&[
            (None, "", false),
            (None, "{\"delta\":\"a\"}", true),
            (None, "", false),
            (None, "", false),
            (None, "{\"delta\":\"b\"}", true),
            (None, "", false),
            (None, "[DONE]", true),
        ]);
        assert_eq!(fields(&items), expected);
        assert_eq!(events(&items)[0].raw, b": ping\n\n");
    }

    #[test]
    fn multiline_data_stream() {
        let items = parse_chunks(&[fixture_bytes("multiline_data.sse")]);
        let expected = expected(&[
            (None, "first\nsecond\nthird\n fourth keeps one space", true),
            (None, "", true),
            (None, "\n", true),
            (None, "{\n  \"nested\": true\n}", true),
            (None, "trailing colon:\na:b:c", true),
        ]);
        assert_eq!(fields(&items), expected);
    }

    #[test]
    fn anthropic_stream_event_names() {
        let items = parse_chunks(&[fixture_bytes("anthropic_messages.sse")]);
        let names: Vec<Option<&str>> = events(&items)
            .iter()
            .map(|event| event.event.as_deref())
            .collect();
        let expected = [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
        .map(Some);
        assert_eq!(names, expected);
    }

    #[test]
    fn anthropic_stream_data_matches_event_name() {
        let items = parse_chunks(&[fixture_bytes("anthropic_messages.sse")]);
        for event in events(&items) {
            assert_eq!(json_data(event)["type"].as_str(), event.event.as_deref());
        }
    }

    #[test]
    fn anthropic_stream_usage() {
        let items = parse_chunks(&[fixture_bytes("anthropic_messages.sse")]);
        let events = events(&items);
        assert_eq!(json_data(events[0])["message"]["usage"]["input_tokens"], 21);
        assert_eq!(json_data(events[6])["usage"]["output_tokens"], 9);
    }

    #[test]
    fn id_and_retry_fields_are_ignored() {
        let items = parse_chunks(&[fixture_bytes("id_retry.sse")]);
        let expected = expected(&[
            (None, "", false),
            (Some("update"), "{\"seq\":41}", true),
            (Some(""), "{\"seq\":42}", true),
            (Some("second"), "last event field wins", true),
            (None, "", false),
        ]);
        assert_eq!(fields(&items), expected);
    }

    #[test]
    fn utf8_stream_content() {
        let items = parse_chunks(&[fixture_bytes("utf8_content.sse")]);
        assert_eq!(openai_content(&items), "你好，世界 🚀✨ café");
        let note = events(&items)[3];
        assert_eq!(note.event.as_deref(), Some("note"));
        assert_eq!(note.data, "日本語のテキスト\n👩‍💻 €");
    }

    #[test]
    fn openai_error_event() {
        let items = parse_chunks(&[fixture_bytes("openai_error.sse")]);
        let events = events(&items);
        assert_eq!(events.len(), 3);
        assert_eq!(json_data(events[2])["error"]["type"], "server_error");
    }

    #[test]
    fn bom_skipped_at_stream_start() {
        let items = parse_chunks(&[fixture_bytes("bom.sse")]);
        let expected = expected(&[
            (None, "after a byte order mark", true),
            (None, "second", true),
        ]);
        assert_eq!(fields(&items), expected);
        assert!(events(&items)[0].raw.starts_with(BOM));
    }

    #[test]
    fn mixed_line_ends_stream() {
        let items = parse_chunks(&[fixture_bytes("mixed_line_ends.sse")]);
        let expected = expected(&[
            (None, "lf", true),
            (None, "crlf", true),
            (None, "cr", true),
            (None, "a\nb\nc", true),
            (None, "", false),
        ]);
        assert_eq!(fields(&items), expected);
        assert_eq!(events(&items)[4].raw, b": end\r");
    }

    #[test]
    fn unterminated_stream_finishes_last_block() {
        let items = parse_chunks(&[fixture_bytes("unterminated.sse")]);
        let expected = expected(&[
            (None, "one", true),
            (Some("partial"), "no blank line at the end", true),
        ]);
        assert_eq!(fields(&items), expected);
        assert_eq!(
            events(&items)[1].raw,
            b"event: partial\ndata: no blank line at the end"
        );
    }

    // Line ends across chunk boundaries.

    #[test]
    fn split_crlf_is_one_line_end() {
        let items = parse_chunks(&[b"data: a\r", b"\ndata: b\r\n\r\n"]);
        assert_eq!(fields(&items), expected(&[(None, "a\nb", true)]));
        assert_eq!(events(&items)[0].raw, b"data: a\r\ndata: b\r\n\r\n");
    }

    #[test]
    fn cr_then_other_byte_in_next_chunk() {
        let items = parse_chunks(&[b"data: a\r", b"data: b\n\n"]);
        assert_eq!(fields(&items), expected(&[(None, "a\nb", true)]));
    }

    #[test]
    fn blank_cr_waits_for_next_byte() {
        let mut parser = SseParser::default();
        let mut items = Vec::new();
        parser.feed(b"data: a\n\r", &mut items);
        assert!(
            items.is_empty(),
            "event returned before the byte after CR: {items:?}"
        );
        assert_eq!(parser.pending_len(), 9);
    }

    #[test]
    fn blank_cr_then_lf_keeps_lf_in_raw() {
        let items = parse_chunks(&[b"data: a\n\r", b"\n", b"data: b\n\n"]);
        let events = events(&items);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].raw, b"data: a\n\r\n");
        assert_eq!(events[1].raw, b"data: b\n\n");
    }

    #[test]
    fn blank_cr_then_other_byte_ends_block() {
        let items = parse_chunks(&[b"data: a\r\r", b"data: b\r\r"]);
        let events = events(&items);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].raw, b"data: a\r\r");
        assert_eq!(events[1].raw, b"data: b\r\r");
    }

    #[test]
    fn finish_after_blank_cr_returns_block() {
        let items = parse_chunks(&[b"data: a\r\r"]);
        assert_eq!(fields(&items), expected(&[(None, "a", true)]));
    }

    #[test]
    fn finish_after_field_cr_applies_line() {
        let items = parse_chunks(&[b"data: a\r"]);
        assert_eq!(fields(&items), expected(&[(None, "a", true)]));
        assert_eq!(events(&items)[0].raw, b"data: a\r");
    }

    // Fields.

    #[test]
    fn field_without_colon_has_empty_value() {
        let items = parse_chunks(&[b"data\nevent\n\n"]);
        assert_eq!(fields(&items), expected(&[(Some(""), "", true)]));
    }

    #[test]
    fn only_one_space_after_colon_is_removed() {
        let items = parse_chunks(&[b"data:x\ndata:  y\ndata:\tz\n\n"]);
        assert_eq!(fields(&items), expected(&[(None, "x\n y\n\tz", true)]));
    }

    #[test]
    fn field_names_are_case_sensitive() {
        let items = parse_chunks(&[b"Data: x\nEVENT: y\n\n"]);
        assert_eq!(fields(&items), expected(&[(None, "", false)]));
    }

    #[test]
    fn done_marker_is_ordinary_event() {
        let items = parse_chunks(&[b"data: [DONE]\n\n"]);
        assert_eq!(fields(&items), expected(&[(None, "[DONE]", true)]));
    }

    #[test]
    fn stray_blank_lines_are_empty_events() {
        let items = parse_chunks(&[b"\n\r\n\rdata: x\n\n"]);
        let raws: Vec<&[u8]> = events(&items).iter().map(|event| &event.raw[..]).collect();
        assert_eq!(raws, [&b"\n"[..], b"\r\n", b"\r", b"data: x\n\n"]);
    }

    #[test]
    fn bom_later_in_stream_is_not_skipped() {
        let items = parse_chunks(&[b"data: a\n\n\xEF\xBB\xBFdata: b\n\n"]);
        assert_eq!(
            fields(&items),
            expected(&[(None, "a", true), (None, "", false)])
        );
    }

    #[test]
    fn bom_only_first_line_is_blank() {
        let items = parse_chunks(&[b"\xEF\xBB\xBF\ndata: a\n\n"]);
        assert_eq!(
            fields(&items),
            expected(&[(None, "", false), (None, "a", true)])
        );
    }

    // UTF-8.

    #[test]
    fn utf8_character_split_across_chunks() {
        let bytes = "data: 🚀\n\n".as_bytes();
        for offset in 7..10 {
            let items = parse_split(bytes, &[offset]);
            assert_eq!(
                fields(&items),
                expected(&[(None, "🚀", true)]),
                "split at {offset}"
            );
        }
    }

    #[test]
    fn invalid_utf8_data_is_replaced() {
        let items = parse_chunks(&[b"data: a\xFFb\n\n"]);
        assert_eq!(fields(&items), expected(&[(None, "a\u{FFFD}b", true)]));
    }

    #[test]
    fn truncated_utf8_data_is_replaced() {
        let items = parse_chunks(&[b"data: \xF0\x9F\x9A\ndata: ok\n\n"]);
        assert_eq!(fields(&items), expected(&[(None, "\u{FFFD}\nok", true)]));
    }

    #[test]
    fn invalid_utf8_event_name_is_replaced() {
        let items = parse_chunks(&[b"event: \xC3\ndata: x\n\n"]);
        assert_eq!(fields(&items), expected(&[(Some("\u{FFFD}"), "x", true)]));
    }

    #[test]
    fn invalid_utf8_split_at_every_offset() {
        let bytes =
            b"event: \xC3(\ndata: \xF0\x9F\xFF\r\n\xE2\x82\ndata: \xED\xA0\x80\r\r: \xFF\n\n";
        assert_two_chunk_splits_match("invalid UTF-8", bytes);
    }

    // Chunks and end of stream.

    #[test]
    fn empty_chunk_returns_nothing() {
        let mut parser = SseParser::default();
        let mut items = Vec::new();
        parser.feed(b"", &mut items);
        assert!(items.is_empty());
        assert_eq!(parser.pending_len(), 0);
    }

    #[test]
    fn empty_chunk_after_cr_changes_nothing() {
        let items = parse_chunks(&[b"data: a\r", b"", b"\n\n"]);
        assert_eq!(events(&items)[0].raw, b"data: a\r\n\n");
    }

    #[test]
    fn partial_block_stays_pending() {
        let mut parser = SseParser::default();
        let mut items = Vec::new();
        parser.feed(b"data: one\n\ndata: tw", &mut items);
        assert_eq!(events(&items).len(), 1);
        assert_eq!(parser.pending_len(), 8);
    }

    #[test]
    fn finish_returns_partial_block_with_data() {
        let items = parse_chunks(&[b"data: one\n", b"data: tw"]);
        assert_eq!(fields(&items), expected(&[(None, "one\ntw", true)]));
        assert_eq!(events(&items)[0].raw, b"data: one\ndata: tw");
    }

    #[test]
    fn finish_returns_partial_block_without_data() {
        let items = parse_chunks(&[b": pi", b"ng"]);
        assert_eq!(fields(&items), expected(&[(None, "", false)]));
        assert_eq!(events(&items)[0].raw, b": ping");
    }

    #[test]
    fn finish_on_empty_stream_returns_nothing() {
        assert!(parse_chunks(&[]).is_empty());
    }

    #[test]
    fn finish_leaves_nothing_pending() {
        let (_, parser) = parse_chunks_with_limit(&[b"data: x"], DEFAULT_MAX_EVENT_BYTES);
        assert_eq!(parser.pending_len(), 0);
    }

    #[test]
    fn reuse_after_finish_starts_new_stream() {
        let mut parser = SseParser::default();
        let mut items = Vec::new();
        parser.feed(b"data: a", &mut items);
        parser.finish(&mut items);
        parser.feed(b"\xEF\xBB\xBFdata: b\n\n", &mut items);
        assert_eq!(
            fields(&items),
            expected(&[(None, "a", true), (None, "b", true)])
        );
    }

    // Blocks over the limit.

    const LIMIT: usize = 64;

    fn oversized_stream() -> (Vec<u8>, Vec<u8>) {
        let mut block = b"event: big\ndata: ".to_vec();
        block.extend_from_slice(&[b'x'; 1000]);
        block.extend_from_slice(b"\ndata: more\n\n");
        let mut stream = b"data: before\n\n".to_vec();
        stream.extend_from_slice(&block);
        stream.extend_from_slice(b"data: after\n\n");
        (stream, block)
    }

    fn oversized_bytes(items: &[SseItem]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for item in items {
            if let SseItem::Oversized(raw) = item {
                bytes.extend_from_slice(raw);
            }
        }
        bytes
    }

    fn parsed_events(items: &[SseItem]) -> Vec<SseEvent> {
        items
            .iter()
            .filter_map(|item| match item {
                SseItem::Event(event) => Some(event.clone()),
                SseItem::Oversized(_) => None,
            })
            .collect()
    }

    #[test]
    fn oversized_block_memory_stays_bounded() {
        let (stream, _) = oversized_stream();
        let mut parser = SseParser::new(LIMIT);
        let mut items = Vec::new();
        for chunk in stream.chunks(10) {
            parser.feed(chunk, &mut items);
            assert!(
                parser.pending_len() <= LIMIT,
                "pending {} bytes",
                parser.pending_len()
            );
        }
    }

    #[test]
    fn oversized_block_passes_through() {
        let (stream, block) = oversized_stream();
        let chunks: Vec<&[u8]> = stream.chunks(10).collect();
        let (items, _) = parse_chunks_with_limit(&chunks, LIMIT);
        assert_eq!(oversized_bytes(&items), block);
    }

    #[test]
    fn oversized_block_sets_overflowed() {
        let (stream, _) = oversized_stream();
        let (_, parser) = parse_chunks_with_limit(&[&stream], LIMIT);
        assert!(parser.overflowed());
    }

    #[test]
    fn events_around_oversized_block_are_parsed() {
        let (stream, _) = oversized_stream();
        let chunks: Vec<&[u8]> = stream.chunks(10).collect();
        let (items, _) = parse_chunks_with_limit(&chunks, LIMIT);
        let data: Vec<String> = parsed_events(&items)
            .into_iter()
            .map(|event| event.data)
            .collect();
        assert_eq!(data, ["before", "after"]);
    }

    #[test]
    fn oversized_block_in_one_chunk_is_one_item() {
        let (stream, block) = oversized_stream();
        let (items, _) = parse_chunks_with_limit(&[&stream], LIMIT);
        assert_eq!(items.len(), 3);
        assert_eq!(items[1], SseItem::Oversized(block));
    }

    #[test]
    fn oversized_stream_split_at_every_offset() {
        let (stream, block) = oversized_stream();
        let (whole, _) = parse_chunks_with_limit(&[&stream], LIMIT);
        for offset in 0..=stream.len() {
            let (first, second) = stream.split_at(offset);
            let (items, _) = parse_chunks_with_limit(&[first, second], LIMIT);
            assert_eq!(concat_raw(&items), stream, "split at {offset}: bytes");
            assert_eq!(
                oversized_bytes(&items),
                block,
                "split at {offset}: oversized bytes"
            );
            assert_eq!(
                parsed_events(&items),
                parsed_events(&whole),
                "split at {offset}: events"
            );
        }
    }

    #[test]
    fn oversized_cr_stream_fed_one_byte_per_chunk() {
        let (stream, block) = oversized_stream();
        let to_cr = |bytes: &[u8]| -> Vec<u8> {
            bytes
                .iter()
                .map(|&byte| if byte == b'\n' { b'\r' } else { byte })
                .collect()
        };
        let (stream, block) = (to_cr(&stream), to_cr(&block));
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        let (items, _) = parse_chunks_with_limit(&chunks, LIMIT);
        assert_eq!(oversized_bytes(&items), block);
        let data: Vec<String> = parsed_events(&items)
            .into_iter()
            .map(|event| event.data)
            .collect();
        assert_eq!(data, ["before", "after"]);
    }

    #[test]
    fn oversized_crlf_stream_fed_in_odd_chunks() {
        let (stream, block) = oversized_stream();
        let to_crlf = |bytes: &[u8]| -> Vec<u8> {
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            text.replace('\n', "\r\n").into_bytes()
        };
        let (stream, block) = (to_crlf(&stream), to_crlf(&block));
        for size in [1, 2, 3, 7, 13, 63, 64, 65] {
            let chunks: Vec<&[u8]> = stream.chunks(size).collect();
            let (items, _) = parse_chunks_with_limit(&chunks, LIMIT);
            assert_eq!(oversized_bytes(&items), block, "chunk size {size}");
            assert_eq!(parsed_events(&items).len(), 2, "chunk size {size}");
        }
    }

    #[test]
    fn finish_returns_oversized_rest() {
        let mut stream = b"data: ".to_vec();
        stream.extend_from_slice(&[b'y'; 200]);
        let chunks: Vec<&[u8]> = stream.chunks(30).collect();
        let (items, _) = parse_chunks_with_limit(&chunks, LIMIT);
        assert_eq!(oversized_bytes(&items), stream);
        assert!(parsed_events(&items).is_empty());
    }

    #[test]
    fn block_at_limit_is_kept_whole() {
        let block = b"data: exactly at the limit\n\n";
        let (items, parser) = parse_chunks_with_limit(&[block], block.len());
        assert_eq!(
            fields(&items),
            expected(&[(None, "exactly at the limit", true)])
        );
        assert!(!parser.overflowed());
    }

    #[test]
    fn block_one_byte_over_limit_is_oversized() {
        let block = b"data: one byte over the limit\n\n";
        for offset in 0..=block.len() {
            let (first, second) = block.split_at(offset);
            let (items, _) = parse_chunks_with_limit(&[first, second], block.len() - 1);
            assert_eq!(oversized_bytes(&items), block, "split at {offset}");
            assert!(parsed_events(&items).is_empty(), "split at {offset}");
        }
    }

    #[test]
    fn overflowed_stays_set_after_finish() {
        let mut parser = SseParser::new(4);
        let mut items = Vec::new();
        parser.feed(b"data: too long\n\n", &mut items);
        parser.finish(&mut items);
        assert!(parser.overflowed());
    }

    // Generated streams.

    /// Returns pseudo-random streams built from bytes that matter to the parser.
    fn generated_streams(count: usize) -> Vec<Vec<u8>> {
        const PIECES: &[&[u8]] = &[
            b"data",
            b"event",
            b":",
            b" ",
            b"\r",
            b"\n",
            b"\r\n",
            b"x",
            b"\xEF\xBB\xBF",
            b"\xF0\x9F",
            b"\xFF",
            b"id: 7",
        ];
        // xorshift64, seeded with a constant so that a failure repeats.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..count)
            .map(|_| {
                let pieces = next() % 40;
                let mut stream = Vec::new();
                for _ in 0..pieces {
                    stream.extend_from_slice(PIECES[(next() % PIECES.len() as u64) as usize]);
                }
                stream
            })
            .collect()
    }

    #[test]
    fn generated_streams_split_at_every_offset() {
        for (index, stream) in generated_streams(2000).iter().enumerate() {
            for limit in [0, 4, 5, 8, 24, DEFAULT_MAX_EVENT_BYTES] {
                let (whole, _) = parse_chunks_with_limit(&[stream], limit);
                assert_eq!(
                    concat_raw(&whole),
                    *stream,
                    "stream {index} limit {limit}: bytes"
                );
                for offset in 0..=stream.len() {
                    let (first, second) = stream.split_at(offset);
                    let (items, _) = parse_chunks_with_limit(&[first, second], limit);
                    let case = format!("stream {index} {stream:?} limit {limit} split at {offset}");
                    assert_eq!(concat_raw(&items), *stream, "{case}: bytes");
                    assert_eq!(
                        parsed_events(&items),
                        parsed_events(&whole),
                        "{case}: events"
                    );
                }
            }
        }
    }

    #[test]
    fn generated_streams_fed_one_byte_per_chunk() {
        for (index, stream) in generated_streams(2000).iter().enumerate() {
            for limit in [4, 8, DEFAULT_MAX_EVENT_BYTES] {
                let (whole, _) = parse_chunks_with_limit(&[stream], limit);
                let bytes: Vec<&[u8]> = stream.chunks(1).collect();
                let (items, _) = parse_chunks_with_limit(&bytes, limit);
                let case = format!("stream {index} {stream:?} limit {limit}");
                assert_eq!(concat_raw(&items), *stream, "{case}: bytes");
                assert_eq!(
                    parsed_events(&items),
                    parsed_events(&whole),
                    "{case}: events"
                );
            }
        }
    }

    #[test]
    fn limit_below_minimum_is_raised() {
        let (items, parser) = parse_chunks_with_limit(&[b"\r\n\n"], 0);
        assert_eq!(
            fields(&items),
            expected(&[(None, "", false), (None, "", false)])
        );
        assert!(!parser.overflowed());
    }

    // Line end search.

    #[test]
    fn find_line_terminator_matches_byte_scan() {
        let fillers = [b'a', 0x00, 0x0B, 0x0C, 0x0E, 0x8A, 0x8D, 0xFF];
        for len in 0..40 {
            for &filler in &fillers {
                let plain = vec![filler; len];
                assert_eq!(
                    find_line_terminator(&plain),
                    None,
                    "len {len} filler {filler:#x}"
                );
                for position in 0..len {
                    for (first, second) in [(b'\n', b'\r'), (b'\r', b'\n'), (b'\n', b'\n')] {
                        // A second terminator near the end checks that the first one wins.
                        let mut bytes = plain.clone();
                        bytes[position] = first;
                        bytes[len - 1 - (len - 1 - position) / 2] = second;
                        assert_eq!(
                            find_line_terminator(&bytes),
                            Some(position),
                            "len {len} filler {filler:#x} terminator at {position}"
                        );
                    }
                }
            }
        }
    }
}
