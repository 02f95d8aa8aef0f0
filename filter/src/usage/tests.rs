//! Every provider format, fed whole and split in every way: the same usage and output count.

use super::*;
use crate::stream::StreamMeter;

struct Case {
    name: &'static str,
    api: Api,
    stream: &'static [u8],
    /// Text pieces the provider generated, one count each.
    generated: &'static [&'static str],
    usage: Option<Usage>,
    complete: bool,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "azure chat with content filter chunk",
            api: Api::AzureChat,
            stream: include_bytes!("../../tests/fixtures/providers/azure_chat.sse"),
            generated: &["Grüße", " aus", " 東京", " 🚀"],
            usage: Some(Usage::text(21, 6)),
            complete: true,
        },
        Case {
            name: "compatible server without usage",
            api: Api::OpenAiChat,
            stream: include_bytes!("../../tests/fixtures/providers/compat_no_usage.sse"),
            generated: &[
                "Let me think",
                "Answer: 42",
                "lookup",
                "{\"q\":",
                "\"naïve\"}",
            ],
            usage: None,
            complete: false,
        },
        Case {
            name: "responses api",
            api: Api::Responses,
            stream: include_bytes!("../../tests/fixtures/providers/responses.sse"),
            generated: &["Bonjour", " à", " vous", "—merci"],
            usage: Some(Usage {
                prompt_tokens: 20,
                cached_prompt_tokens: 4,
                completion_tokens: 37,
                reasoning_tokens: 30,
                ..Usage::default()
            }),
            complete: true,
        },
        Case {
            name: "anthropic with cache reads and writes",
            api: Api::Anthropic,
            stream: include_bytes!("../../tests/fixtures/providers/anthropic.sse"),
            generated: &["Consider the café", "Hello", " wörld", " 👋"],
            usage: Some(Usage {
                prompt_tokens: 40,
                cached_prompt_tokens: 5,
                cache_write_5m_tokens: 6,
                cache_write_1h_tokens: 4,
                completion_tokens: 15,
                ..Usage::default()
            }),
            complete: true,
        },
        Case {
            name: "anthropic usage only in message_delta",
            api: Api::Anthropic,
            stream: include_bytes!("../../tests/fixtures/providers/anthropic_late_usage.sse"),
            generated: &["Short ✓"],
            usage: Some(Usage {
                prompt_tokens: 38,
                cached_prompt_tokens: 7,
                completion_tokens: 3,
                ..Usage::default()
            }),
            complete: true,
        },
        Case {
            name: "gemini with CRLF framing and thoughts",
            api: Api::Gemini,
            stream: include_bytes!("../../tests/fixtures/providers/gemini.sse"),
            generated: &["Ciao", " a tutti ✨", " — fine"],
            usage: Some(Usage {
                prompt_tokens: 12,
                cached_prompt_tokens: 4,
                completion_tokens: 29,
                reasoning_tokens: 20,
                ..Usage::default()
            }),
            complete: true,
        },
    ]
}

/// Meters `chunks` as one stream and returns (usage, complete, output tokens, bytes out).
fn meter(api: Api, chunks: &[&[u8]]) -> (Option<Usage>, bool, u64, Vec<u8>) {
    let mut meter = StreamMeter::new(api, Encoding::O200kBase, u64::MAX, false);
    let mut out = Vec::new();
    let last = chunks.len().saturating_sub(1);
    for (index, chunk) in chunks.iter().enumerate() {
        meter.process(chunk, index == last, &mut out, |_| String::new());
    }
    (meter.usage(), meter.complete(), meter.output_tokens(), out)
}

fn expected_output(case: &Case) -> u64 {
    case.generated
        .iter()
        .map(|text| Encoding::O200kBase.count(text))
        .sum()
}

#[test]
fn whole_stream_gives_expected_usage() {
    for case in cases() {
        let (usage, complete, output, out) = meter(case.api, &[case.stream]);
        assert_eq!(usage, case.usage, "{}", case.name);
        assert_eq!(complete, case.complete, "{}", case.name);
        assert_eq!(output, expected_output(&case), "{}", case.name);
        assert_eq!(out, case.stream, "{}: bytes pass unchanged", case.name);
    }
}

#[test]
fn every_two_way_split_gives_same_record() {
    for case in cases() {
        let whole = meter(case.api, &[case.stream]);
        for at in 0..=case.stream.len() {
            let (first, second) = case.stream.split_at(at);
            assert_eq!(
                meter(case.api, &[first, second]),
                whole,
                "{} split at {at}",
                case.name
            );
        }
    }
}

#[test]
fn one_byte_per_callback_gives_same_record() {
    for case in cases() {
        let whole = meter(case.api, &[case.stream]);
        let bytes: Vec<&[u8]> = case.stream.chunks(1).collect();
        assert_eq!(meter(case.api, &bytes), whole, "{}", case.name);
    }
}

#[test]
fn split_between_cr_and_lf_gives_same_record() {
    let case = cases().into_iter().find(|c| c.api == Api::Gemini).unwrap();
    let whole = meter(case.api, &[case.stream]);
    let splits: Vec<usize> = case
        .stream
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w == b"\r\n")
        .map(|(i, _)| i + 1)
        .collect();
    assert!(!splits.is_empty());
    for at in splits {
        let (first, second) = case.stream.split_at(at);
        assert_eq!(meter(case.api, &[first, second]), whole, "split at {at}");
    }
}

#[test]
fn split_inside_utf8_character_gives_same_record() {
    for case in cases() {
        let whole = meter(case.api, &[case.stream]);
        let inside: Vec<usize> = (1..case.stream.len())
            .filter(|&i| case.stream.get(i).is_some_and(|b| b & 0xC0 == 0x80))
            .collect();
        assert!(
            !inside.is_empty(),
            "{} has multi-byte characters",
            case.name
        );
        for at in inside {
            let (first, second) = case.stream.split_at(at);
            assert_eq!(
                meter(case.api, &[first, second]),
                whole,
                "{} split at {at}",
                case.name
            );
        }
    }
}

#[test]
fn cumulative_anthropic_usage_is_not_summed() {
    let mut raw = anthropic::RawUsage::default();
    for output_tokens in [5, 9, 12] {
        raw.merge(&serde_json::json!({"output_tokens": output_tokens}));
    }
    assert_eq!(raw.normalised().completion_tokens, 12);
}

#[test]
fn anthropic_cache_creation_without_breakdown_is_5m() {
    let mut raw = anthropic::RawUsage::default();
    raw.merge(&serde_json::json!({"input_tokens": 3, "cache_creation_input_tokens": 8}));
    let usage = raw.normalised();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.cache_write_5m_tokens,
            usage.cache_write_1h_tokens
        ),
        (11, 8, 0)
    );
}

#[test]
fn chat_body_usage_with_details() {
    let mut tracker = UsageTracker::new(Api::OpenAiChat, Encoding::O200kBase);
    let body = serde_json::json!({"object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi there"}}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 30,
            "prompt_tokens_details": {"cached_tokens": 20, "audio_tokens": 5},
            "completion_tokens_details": {"reasoning_tokens": 25, "audio_tokens": 3}}});
    let output = tracker.read_body(body.to_string().as_bytes());
    let expected = Usage {
        prompt_tokens: 50,
        cached_prompt_tokens: 20,
        audio_prompt_tokens: 5,
        completion_tokens: 30,
        reasoning_tokens: 25,
        audio_completion_tokens: 3,
        ..Usage::default()
    };
    assert_eq!(tracker.usage(), Some(expected));
    assert_eq!(output, Encoding::O200kBase.count("Hi there"));
}

#[test]
fn gemini_json_array_body_takes_last_usage() {
    let mut tracker = UsageTracker::new(Api::Gemini, Encoding::O200kBase);
    let body = serde_json::json!([
        {"candidates": [{"content": {"parts": [{"text": "a"}]}}], "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 1}},
        {"candidates": [{"content": {"parts": [{"text": "b"}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 2}}
    ]);
    tracker.read_body(body.to_string().as_bytes());
    assert_eq!(tracker.usage(), Some(Usage::text(4, 2)));
}

#[test]
fn responses_sequence_number_follows_last_event() {
    let case = cases()
        .into_iter()
        .find(|c| c.api == Api::Responses)
        .unwrap();
    let mut meter = StreamMeter::new(Api::Responses, Encoding::O200kBase, 2, false);
    let next = std::cell::Cell::new(None);
    meter.process(case.stream, true, &mut Vec::new(), |number| {
        next.set(Some(number));
        String::new()
    });
    // The third text delta (number 6) passes the allowance of 2 tokens. The error event that
    // replaces it takes its number, so the client sees no gap.
    assert_eq!(next.get(), Some(6));
}

#[test]
fn embeddings_body_usage() {
    let mut tracker = UsageTracker::new(Api::Embeddings, Encoding::Cl100kBase);
    let body = serde_json::json!({"object": "list", "data": [], "usage": {"prompt_tokens": 8, "total_tokens": 8}});
    tracker.read_body(body.to_string().as_bytes());
    assert_eq!(tracker.usage(), Some(Usage::text(8, 0)));
}
