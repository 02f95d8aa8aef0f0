//! End to end through Envoy for every metered endpoint, streamed and not: the budget is charged
//! exactly the provider's reported usage, normalised per format, times the shipped prices.

mod common;

use common::providers::{
    answer_usage, price_of, stream, streamed_usage, with, Endpoint, AUDIO_MODEL, REASONING_MODEL,
};
use common::{funded_key, send, settled_budget, start, TEN_USD_NANO};
use serde_json::{json, Value};
use spendfuse_tests::tokens::{self, Encoding};
use spendfuse_tests::usage::Usage;
use spendfuse_tests::{BudgetState, Stack};

/// Returns a system prompt of about 1,500 tokens, long enough for real cache reads and writes.
fn long_system_prompt() -> String {
    "Every team has a budget and every request spends part of it. ".repeat(120)
}

/// Returns the charge that `usage` of `model` must cost, failing on an invalid usage.
fn expected_cost(model: &str, usage: &Usage) -> u64 {
    price_of(model)
        .settle_cost_nano(usage)
        .expect("the provider's usage is valid")
}

/// Asserts that the budget released its hold and charged exactly `expected`.
fn assert_charged(state: &BudgetState, expected: u64, usage: &Usage) {
    assert_eq!(state.reserved_nano_usd, 0, "hold not released: {state:?}");
    assert_eq!(
        state.spent_nano_usd, expected,
        "spent is not the cost of the provider's usage {usage:?}: {state:?}"
    );
}

/// Sends a non-streamed request and checks the charge against the answer's usage.
async fn check_answer(
    stack: &Stack,
    endpoint: Endpoint,
    body: &Value,
    knobs: &[(&str, &str)],
) -> Usage {
    let (key, budget) = funded_key(stack, "answer", TEN_USD_NANO).await;
    let mut request = endpoint.post(stack, Some(&key), body);
    for (name, value) in knobs {
        request = request.header(*name, *value);
    }
    let answer = send(request).await;
    assert_eq!(answer.status, 200, "answer {:?}", answer.json);
    let usage = answer_usage(endpoint, &answer.json);
    let state = settled_budget(stack, &budget).await;
    assert_charged(&state, expected_cost(&endpoint.model(body), &usage), &usage);
    usage
}

/// Sends a streamed request and checks the charge against the usage the stream reported.
async fn check_stream(
    stack: &Stack,
    endpoint: Endpoint,
    body: &Value,
    knobs: &[(&str, &str)],
) -> Usage {
    let (key, budget) = funded_key(stack, "stream", TEN_USD_NANO).await;
    let mut request = endpoint.post(stack, Some(&key), body);
    for (name, value) in knobs {
        request = request.header(*name, *value);
    }
    let read = stream(request, None).await;
    assert_eq!(read.transport_error, None, "events {:?}", read.events);
    let usage = streamed_usage(endpoint, &read);
    let state = settled_budget(stack, &budget).await;
    assert_charged(&state, expected_cost(&endpoint.model(body), &usage), &usage);
    usage
}

fn reasoning_chat(stream: bool) -> Value {
    let body = with(
        Endpoint::Chat.body(stream),
        json!({"model": REASONING_MODEL, "n": 2, "max_completion_tokens": 300}),
    );
    with(
        body,
        json!({"messages": [
            {"role": "system", "content": long_system_prompt()},
            {"role": "user", "content": "Tell me how a spending limit protects a team."}
        ]}),
    )
}

const CACHE_AND_REASONING: [(&str, &str); 3] = [
    ("x-mock-cached-tokens", "1024"),
    ("x-mock-reasoning-tokens", "120"),
    ("x-mock-output-tokens", "40"),
];

#[tokio::test]
async fn chat_choices_with_cache_and_reasoning() {
    let stack = start().await;
    let body = reasoning_chat(false);
    let usage = check_answer(&stack, Endpoint::Chat, &body, &CACHE_AND_REASONING).await;
    assert_eq!(usage.cached_prompt_tokens, 1024, "usage {usage:?}");
    assert_eq!(usage.reasoning_tokens, 240, "usage {usage:?}");
}

#[tokio::test]
async fn chat_stream_choices_with_cache_and_reasoning() {
    let stack = start().await;
    let body = reasoning_chat(true);
    let usage = check_stream(&stack, Endpoint::Chat, &body, &CACHE_AND_REASONING).await;
    assert_eq!(usage.completion_tokens, 2 * (120 + 40), "usage {usage:?}");
}

fn audio_chat(stream: bool) -> Value {
    with(
        Endpoint::Chat.body(stream),
        json!({"model": AUDIO_MODEL, "modalities": ["text", "audio"],
               "audio": {"voice": "alloy", "format": "wav"}, "max_tokens": 300}),
    )
}

const AUDIO: [(&str, &str); 3] = [
    ("x-mock-audio-prompt-tokens", "200"),
    ("x-mock-audio-completion-tokens", "90"),
    ("x-mock-output-tokens", "30"),
];

#[tokio::test]
async fn chat_audio_tokens_at_audio_prices() {
    let stack = start().await;
    let usage = check_answer(&stack, Endpoint::Chat, &audio_chat(false), &AUDIO).await;
    assert_eq!(usage.audio_prompt_tokens, 200, "usage {usage:?}");
    assert_eq!(usage.audio_completion_tokens, 90, "usage {usage:?}");
}

#[tokio::test]
async fn chat_stream_audio_tokens_at_audio_prices() {
    let stack = start().await;
    check_stream(&stack, Endpoint::Chat, &audio_chat(true), &AUDIO).await;
}

#[tokio::test]
async fn chat_tool_call_stream() {
    let stack = start().await;
    let tools = json!([{"type": "function", "function": {"name": "lookup", "parameters": {}}}]);
    let body = with(Endpoint::Chat.body(true), json!({"tools": tools, "n": 2}));
    check_stream(
        &stack,
        Endpoint::Chat,
        &body,
        &[("x-mock-tool-calls", "true")],
    )
    .await;
}

#[tokio::test]
async fn azure_completion_charges_usage() {
    let stack = start().await;
    check_answer(&stack, Endpoint::Azure, &Endpoint::Azure.body(false), &[]).await;
}

#[tokio::test]
async fn azure_stream_after_filter_chunk() {
    let stack = start().await;
    let (key, budget) = funded_key(&stack, "azure-stream", TEN_USD_NANO).await;
    let body = Endpoint::Azure.body(true);
    let read = stream(Endpoint::Azure.post(&stack, Some(&key), &body), None).await;
    let first = read.events.first().and_then(|event| event.json());
    let first = first.expect("a first JSON chunk");
    assert_eq!(first["choices"], json!([]), "first chunk {first}");
    assert!(first.get("usage").is_none(), "first chunk {first}");
    assert!(
        first["prompt_filter_results"].is_array(),
        "first chunk {first}"
    );

    let usage = streamed_usage(Endpoint::Azure, &read);
    let state = settled_budget(&stack, &budget).await;
    assert_charged(&state, expected_cost("gpt-4o-mini", &usage), &usage);
}

#[tokio::test]
async fn responses_object_charges_usage() {
    let stack = start().await;
    let body = Endpoint::Responses.body(false);
    check_answer(
        &stack,
        Endpoint::Responses,
        &body,
        &[("x-mock-cached-tokens", "8")],
    )
    .await;
}

#[tokio::test]
async fn responses_stream_completed() {
    let stack = start().await;
    let body = with(
        Endpoint::Responses.body(true),
        json!({"model": REASONING_MODEL}),
    );
    let knobs = [
        ("x-mock-reasoning-tokens", "64"),
        ("x-mock-cached-tokens", "8"),
    ];
    let usage = check_stream(&stack, Endpoint::Responses, &body, &knobs).await;
    assert_eq!(usage.reasoning_tokens, 64, "usage {usage:?}");
}

#[tokio::test]
async fn responses_stream_incomplete() {
    let stack = start().await;
    let body = with(
        Endpoint::Responses.body(true),
        json!({"max_output_tokens": 24}),
    );
    let (key, budget) = funded_key(&stack, "incomplete", TEN_USD_NANO).await;
    let request = Endpoint::Responses
        .post(&stack, Some(&key), &body)
        .header("x-mock-output-tokens", "100");
    let read = stream(request, None).await;
    let last = read.last().expect("a terminal event");
    assert_eq!(last.event.as_deref(), Some("response.incomplete"));
    let usage = streamed_usage(Endpoint::Responses, &read);
    assert_eq!(usage.completion_tokens, 24, "usage {usage:?}");
    let state = settled_budget(&stack, &budget).await;
    assert_charged(&state, expected_cost("gpt-4o-mini", &usage), &usage);
}

fn cached_anthropic(stream: bool) -> Value {
    with(
        Endpoint::Anthropic.body(stream),
        json!({"system": [{"type": "text", "text": long_system_prompt(),
                            "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}),
    )
}

const ANTHROPIC_CACHE: [(&str, &str); 3] = [
    ("x-mock-cached-tokens", "600"),
    ("x-mock-cache-write-5m-tokens", "300"),
    ("x-mock-cache-write-1h-tokens", "400"),
];

#[tokio::test]
async fn anthropic_message_with_cache_reads_and_writes() {
    let stack = start().await;
    let body = cached_anthropic(false);
    let usage = check_answer(&stack, Endpoint::Anthropic, &body, &ANTHROPIC_CACHE).await;
    assert_eq!(usage.cached_prompt_tokens, 600, "usage {usage:?}");
    assert_eq!(usage.cache_write_5m_tokens, 300, "usage {usage:?}");
    assert_eq!(usage.cache_write_1h_tokens, 400, "usage {usage:?}");
}

#[tokio::test]
async fn anthropic_stream_with_cache_reads_and_writes() {
    let stack = start().await;
    let body = cached_anthropic(true);
    let usage = check_stream(&stack, Endpoint::Anthropic, &body, &ANTHROPIC_CACHE).await;
    assert_eq!(usage.cache_write_1h_tokens, 400, "usage {usage:?}");
}

#[tokio::test]
async fn anthropic_stream_with_late_usage() {
    let stack = start().await;
    let body = cached_anthropic(true);
    let knobs = [
        ("x-mock-late-usage", "true"),
        ("x-mock-cached-tokens", "600"),
    ];
    let usage = check_stream(&stack, Endpoint::Anthropic, &body, &knobs).await;
    assert_eq!(usage.cached_prompt_tokens, 600, "usage {usage:?}");
}

#[tokio::test]
async fn anthropic_stream_with_thinking() {
    let stack = start().await;
    let body = Endpoint::Anthropic.body(true);
    let knobs = [("x-mock-thinking-tokens", "80")];
    let usage = check_stream(&stack, Endpoint::Anthropic, &body, &knobs).await;
    assert_eq!(usage.completion_tokens, 100, "usage {usage:?}");
}

const GEMINI_THOUGHTS_AND_CACHE: [(&str, &str); 2] = [
    ("x-mock-thoughts-tokens", "150"),
    ("x-mock-cached-tokens", "10"),
];

#[tokio::test]
async fn gemini_generate_with_thoughts_and_cache() {
    let stack = start().await;
    let endpoint = Endpoint::Gemini { stream: false };
    let body = with(
        endpoint.body(false),
        json!({"generationConfig": {"candidateCount": 2}}),
    );
    let usage = check_answer(&stack, endpoint, &body, &GEMINI_THOUGHTS_AND_CACHE).await;
    assert_eq!(usage.reasoning_tokens, 300, "usage {usage:?}");
    assert_eq!(usage.cached_prompt_tokens, 10, "usage {usage:?}");
}

#[tokio::test]
async fn gemini_stream_with_thoughts_and_cache() {
    let stack = start().await;
    let endpoint = Endpoint::Gemini { stream: true };
    let usage = check_stream(
        &stack,
        endpoint,
        &endpoint.body(true),
        &GEMINI_THOUGHTS_AND_CACHE,
    )
    .await;
    assert_eq!(usage.completion_tokens, 150 + 20, "usage {usage:?}");
}

#[tokio::test]
async fn embeddings_charge_prompt_tokens() {
    let stack = start().await;
    let usage = check_answer(
        &stack,
        Endpoint::Embeddings,
        &Endpoint::Embeddings.body(false),
        &[],
    )
    .await;
    assert!(usage.prompt_tokens > 0, "usage {usage:?}");
}

#[tokio::test]
async fn azure_embeddings_charge_prompt_tokens() {
    let stack = start().await;
    let endpoint = Endpoint::AzureEmbeddings;
    check_answer(&stack, endpoint, &endpoint.body(false), &[]).await;
}

#[tokio::test]
async fn compatible_server_completion_without_usage() {
    let stack = start().await;
    let (key, budget) = funded_key(&stack, "no-usage", TEN_USD_NANO).await;
    let body = with(Endpoint::Chat.body(false), json!({"max_tokens": 100}));
    let request = Endpoint::Chat
        .post(&stack, Some(&key), &body)
        .header("x-mock-no-usage", "true")
        .header("x-mock-output-tokens", "33");
    let answer = send(request).await;
    assert_eq!(answer.status, 200, "answer {:?}", answer.json);
    assert!(
        answer.json.get("usage").is_none(),
        "answer {:?}",
        answer.json
    );

    // The filter's estimate of a text-only chat prompt is the formula in `tokens`.
    let prompt = tokens::request_prompt_tokens(&body);
    let content = answer.json["choices"][0]["message"]["content"]
        .as_str()
        .expect("content");
    let output = Encoding::O200kBase.count(content);
    let state = settled_budget(&stack, &budget).await;
    let usage = Usage::text(prompt, output);
    assert_charged(&state, expected_cost("gpt-4o-mini", &usage), &usage);
}
