//! Property tests: random and mutated input never panics the request parser or the stream
//! meter, and the meter's memory stays bounded. Runs a fixed number of cases from a fixed seed,
//! so a failure repeats; set SPENDFUSE_RANDOM_CASES to run more.

// Test code may index and panic: a failure should stop at the line that failed.
#![allow(clippy::indexing_slicing, clippy::expect_used, clippy::panic)]

use spendfuse_filter::api::{route, Api};
use spendfuse_filter::error::FilterError;
use spendfuse_filter::request::{LlmRequest, ParseOptions};
use spendfuse_filter::sse::DEFAULT_MAX_EVENT_BYTES;
use spendfuse_filter::stream::StreamMeter;
use spendfuse_filter::tokens::Encoding;

/// xorshift64*: small, deterministic, good enough to pick bytes and offsets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn cases() -> usize {
    std::env::var("SPENDFUSE_RANDOM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

const FIXTURES: [(Api, &[u8]); 7] = [
    (
        Api::OpenAiChat,
        include_bytes!("fixtures/sse/openai_chat_usage.sse"),
    ),
    (
        Api::AzureChat,
        include_bytes!("fixtures/providers/azure_chat.sse"),
    ),
    (
        Api::OpenAiChat,
        include_bytes!("fixtures/providers/compat_no_usage.sse"),
    ),
    (
        Api::Responses,
        include_bytes!("fixtures/providers/responses.sse"),
    ),
    (
        Api::Anthropic,
        include_bytes!("fixtures/providers/anthropic.sse"),
    ),
    (
        Api::Anthropic,
        include_bytes!("fixtures/providers/anthropic_late_usage.sse"),
    ),
    (Api::Gemini, include_bytes!("fixtures/providers/gemini.sse")),
];

/// Bytes that matter to the parsers: line ends, field syntax, JSON punctuation, UTF-8 lead
/// and continuation bytes.
const INTERESTING: &[u8] =
    b"\r\n:{}[]\",0123456789 -.e\\udata: event: \xC3\xA9\xF0\x9F\x80\xFF\x00";

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..=rng.below(8) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(4) {
            0 if at < bytes.len() => {
                bytes.remove(at);
            }
            1 if at < bytes.len() => {
                if let Some(byte) = bytes.get_mut(at) {
                    *byte = INTERESTING[rng.below(INTERESTING.len())];
                }
            }
            2 => bytes.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            _ => {
                let start = rng.below(bytes.len() + 1);
                let end = (start + rng.below(64)).min(bytes.len());
                let copy = bytes[start..end].to_vec();
                bytes.splice(at..at, copy);
            }
        }
    }
    bytes
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    (0..rng.below(512))
        .map(|_| INTERESTING[rng.below(INTERESTING.len())])
        .collect()
}

/// Feeds `input` in random chunks and checks the held bytes after every chunk.
fn meter_in_chunks(rng: &mut Rng, api: Api, input: &[u8]) {
    let allowance = rng.below(40) as u64;
    let mut meter = StreamMeter::new(api, Encoding::O200kBase, allowance, rng.below(2) == 0);
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(1 + rng.below(rest.len()));
        let error = FilterError::AllowanceSpent {
            budget: "b".into(),
            output_tokens: 1,
        };
        meter.process(chunk, tail.is_empty(), &mut out, |number| {
            api.error_event(&error, number)
        });
        assert!(
            meter.pending_bytes() <= DEFAULT_MAX_EVENT_BYTES,
            "held {} bytes",
            meter.pending_bytes()
        );
        rest = tail;
    }
    assert!(
        out.len() <= input.len() + 4096,
        "output grew from {} to {} bytes",
        input.len(),
        out.len()
    );
}

#[test]
fn mutated_streams_never_panic() {
    let mut rng = Rng(0x5EED_0001);
    for _ in 0..cases() {
        let (api, fixture) = FIXTURES[rng.below(FIXTURES.len())];
        let input = mutate(&mut rng, fixture);
        meter_in_chunks(&mut rng, api, &input);
    }
}

#[test]
fn random_bytes_never_panic_the_meter() {
    let mut rng = Rng(0x5EED_0002);
    let apis = [
        Api::OpenAiChat,
        Api::AzureChat,
        Api::Responses,
        Api::Anthropic,
        Api::Gemini,
        Api::Embeddings,
    ];
    for _ in 0..cases() {
        let input = random_bytes(&mut rng);
        let api = apis[rng.below(apis.len())];
        meter_in_chunks(&mut rng, api, &input);
    }
}

#[test]
fn long_event_keeps_memory_bounded() {
    let mut rng = Rng(0x5EED_0003);
    let mut input = b"data: {\"choices\":[{\"delta\":{\"content\":\"".to_vec();
    input.extend(std::iter::repeat_n(b'a', DEFAULT_MAX_EVENT_BYTES + 1024));
    input.extend_from_slice(b"\"}}]}\n\n");
    meter_in_chunks(&mut rng, Api::OpenAiChat, &input);
}

#[test]
fn mutated_requests_never_panic_the_parser() {
    let mut rng = Rng(0x5EED_0004);
    let bodies: [(&str, &[u8]); 5] = [
        ("/v1/chat/completions", br#"{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"n":2,"max_tokens":9,"stream":true,"stream_options":{"include_usage":true}}"#),
        ("/v1/responses", br#"{"model":"gpt-5","input":[{"role":"user","content":"hi"}],"instructions":"x","max_output_tokens":5}"#),
        ("/v1/messages", br#"{"model":"claude-sonnet-4-5","max_tokens":5,"system":"s","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#),
        ("/v1beta/models/gemini-2.5-flash:generateContent", br#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"generationConfig":{"maxOutputTokens":5,"candidateCount":2}}"#),
        ("/v1/embeddings", br#"{"model":"text-embedding-3-small","input":["a",[1,2]]}"#),
    ];
    let options = ParseOptions {
        image_tokens: 1105,
        estimate_margin_percent: 25,
        ..ParseOptions::default()
    };
    for _ in 0..cases() * 4 {
        let (path, body) = bodies[rng.below(bodies.len())];
        let route = route(path).expect("metered path");
        let input = mutate(&mut rng, body);
        if let Ok(request) = LlmRequest::parse(&route, &input, &options) {
            let forwarded = request.forwarded_body(rng.below(100) as u64 + 1);
            assert!(serde_json::from_slice::<serde_json::Value>(&forwarded).is_ok());
        }
    }
}
