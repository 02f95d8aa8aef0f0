//! End to end through Envoy for the streaming formats other than OpenAI chat. A stream that
//! outruns its output limit is cut with the provider's own error event. A client that leaves
//! mid-stream is charged between the cost of what it saw and of what the provider generated.

mod common;

use common::providers::{
    early_prompt_tokens, price_of, streamed_text, with, Endpoint, STREAM_TIMEOUT,
};
use common::{funded_key, held_nano, settled_budget, start, TEN_USD_NANO};
use serde_json::{json, Value};
use spendfuse_tests::tokens::Encoding;
use spendfuse_tests::{read_sse, SseRead, Stack};
use std::time::Duration;

/// Output limit of the severed requests; the mock ignores it and keeps generating.
const ALLOWANCE: u64 = 40;

/// Output limit of the requests that the client leaves; far above what the test reads.
const LARGE_LIMIT: u64 = 4000;

/// Largest prompt the reservation search considers.
const PROMPT_SEARCH_LIMIT: u64 = 1_000_000;

fn count(text: &str) -> u64 {
    Encoding::O200kBase.count(text)
}

/// Returns the streamed body of `endpoint` with its output limit set to `limit`.
fn limited_body(endpoint: Endpoint, limit: u64) -> Value {
    let body = endpoint.body(true);
    match endpoint {
        Endpoint::Chat | Endpoint::Azure | Endpoint::Anthropic => {
            with(body, json!({"max_tokens": limit}))
        }
        Endpoint::Responses => with(body, json!({"max_output_tokens": limit})),
        Endpoint::Gemini { .. } => with(
            body,
            json!({"generationConfig": {"maxOutputTokens": limit}}),
        ),
        Endpoint::Embeddings | Endpoint::AzureEmbeddings => body,
    }
}

/// What a severed stream left behind.
struct Severed {
    read: SseRead,
    client_tokens: u64,
}

/// Sends a stream whose provider ignores its limit of [`ALLOWANCE`] tokens, and checks what
/// every format shares: the client saw at most one event past the allowance, the provider saw
/// the connection close early, and the hold was released.
async fn sever(stack: &Stack, endpoint: Endpoint) -> Severed {
    let (key, budget) = funded_key(stack, "sever", TEN_USD_NANO).await;
    let body = limited_body(endpoint, ALLOWANCE);
    let response = endpoint
        .post(stack, Some(&key), &body)
        .header("x-mock-ignore-max-tokens", "true")
        .header("x-mock-output-tokens", "500")
        .header("x-mock-chunk-delay-ms", "20")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let read = tokio::time::timeout(STREAM_TIMEOUT, read_sse(response, None))
        .await
        .expect("the stream ends within the test's time bound");

    let client_tokens = count(&streamed_text(endpoint, &read));
    assert!(
        client_tokens <= ALLOWANCE + 1,
        "client read {client_tokens} tokens"
    );
    let records = stack
        .mock
        .wait_for_records(Duration::from_secs(2), |records| {
            records
                .first()
                .is_some_and(|record| record.client_closed_early)
        })
        .await
        .expect("records");
    let record = records.first().expect("the request reached the provider");
    assert!(record.client_closed_early, "record {record:?}");
    assert!(
        record.generated_tokens <= ALLOWANCE + 2,
        "mock generated {}",
        record.generated_tokens
    );
    let state = settled_budget(stack, &budget).await;
    assert_eq!(state.reserved_nano_usd, 0, "hold not released: {state:?}");
    Severed {
        read,
        client_tokens,
    }
}

/// Returns the last event's data as JSON, failing with the events when it is not JSON.
fn last_json(read: &SseRead) -> Value {
    let last = read.last().expect("the stream has events");
    last.json()
        .unwrap_or_else(|| panic!("the last event is not JSON: {:?}", read.events))
}

#[tokio::test]
async fn azure_stream_severed_with_openai_error() {
    let stack = start().await;
    let severed = sever(&stack, Endpoint::Azure).await;
    let error = last_json(&severed.read);
    assert_eq!(
        error["error"]["type"], "insufficient_quota",
        "event {error}"
    );
    assert_eq!(error["error"]["code"], "budget_exceeded", "event {error}");
    assert!(error["error"]["message"].is_string(), "event {error}");
}

#[tokio::test]
async fn responses_stream_severed_with_error_event() {
    let stack = start().await;
    let severed = sever(&stack, Endpoint::Responses).await;
    let last = severed.read.last().expect("an event");
    assert_eq!(
        last.event.as_deref(),
        Some("error"),
        "events {:?}",
        severed.read.events
    );
    let error = last_json(&severed.read);
    assert_eq!(error["type"], "error", "event {error}");
    assert_eq!(error["code"], "budget_exceeded", "event {error}");
    assert_eq!(error["param"], Value::Null, "event {error}");
    assert!(error["message"].is_string(), "event {error}");
    // The error continues the provider's numbering after the last event the client got.
    let events = severed.read.json();
    let last_forwarded = events[..events.len() - 1]
        .iter()
        .filter_map(|event| event["sequence_number"].as_u64())
        .max()
        .expect("numbered events before the error");
    let number = error["sequence_number"]
        .as_u64()
        .expect("a sequence number");
    assert!(
        number > last_forwarded,
        "error {number} after {last_forwarded}"
    );
}

#[tokio::test]
async fn anthropic_stream_severed_with_billing_error() {
    let stack = start().await;
    let severed = sever(&stack, Endpoint::Anthropic).await;
    let last = severed.read.last().expect("an event");
    assert_eq!(
        last.event.as_deref(),
        Some("error"),
        "events {:?}",
        severed.read.events
    );
    let error = last_json(&severed.read);
    assert_eq!(error["type"], "error", "event {error}");
    assert_eq!(error["error"]["type"], "billing_error", "event {error}");
    assert!(error["error"]["message"].is_string(), "event {error}");
    println!("client read {} tokens", severed.client_tokens);
}

#[tokio::test]
async fn gemini_stream_severed_with_resource_exhausted() {
    let stack = start().await;
    let severed = sever(&stack, Endpoint::Gemini { stream: true }).await;
    let error = last_json(&severed.read);
    assert_eq!(error["error"]["code"], 402, "event {error}");
    assert_eq!(
        error["error"]["status"], "RESOURCE_EXHAUSTED",
        "event {error}"
    );
    assert!(error["error"]["message"].is_string(), "event {error}");
    assert!(
        severed.read.raw.ends_with(b"}\r\n\r\n"),
        "the error event is not framed with CRLF: {:?}",
        String::from_utf8_lossy(&severed.read.raw[severed.read.raw.len().saturating_sub(80)..])
    );
}

/// Events to read before leaving: enough to include a few output events in every format.
fn events_before_leaving(endpoint: Endpoint) -> usize {
    match endpoint {
        // Prompt filter chunk, role chunk, then output.
        Endpoint::Azure => 6,
        // created, in_progress, output_item.added, content_part.added, then deltas.
        Endpoint::Responses => 8,
        // message_start, content_block_start, ping, then deltas.
        Endpoint::Anthropic => 7,
        _ => 4,
    }
}

/// Leaves a long stream after a few events and checks that the hold goes back within the
/// settle timeout and that the charge lies between the cost of what the client saw and the
/// cost of what the provider generated. The prompt is either the filter's estimate, found from
/// the hold, or the provider's early input numbers, so both bound the charge.
async fn leave_mid_stream(endpoint: Endpoint) {
    let stack = start().await;
    let (key, budget) = funded_key(&stack, "leave", TEN_USD_NANO).await;
    let body = limited_body(endpoint, LARGE_LIMIT);
    let price = price_of(&endpoint.model(&body));
    let response = endpoint
        .post(&stack, Some(&key), &body)
        .header("x-mock-output-tokens", "3000")
        .header("x-mock-chunk-delay-ms", "50")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let hold = held_nano(&stack, &budget).await;
    let wanted = events_before_leaving(endpoint);
    let read = tokio::time::timeout(STREAM_TIMEOUT, read_sse(response, Some(wanted)))
        .await
        .expect("the events arrive within the test's time bound");
    let client_tokens = count(&streamed_text(endpoint, &read));
    assert!(
        client_tokens > 0,
        "no output before leaving: {:?}",
        read.events
    );

    let state = settled_budget(&stack, &budget).await;
    assert_eq!(
        state.reserved_nano_usd, 0,
        "hold not released within 2 s: {state:?}"
    );
    let records = stack
        .mock
        .wait_for_records(Duration::from_secs(2), |records| {
            records
                .first()
                .is_some_and(|record| record.client_closed_early)
        })
        .await
        .expect("records");
    let generated = records.first().expect("a record").generated_tokens;

    let estimates = price
        .prompts_reserving(hold, LARGE_LIMIT, 1, PROMPT_SEARCH_LIMIT)
        .unwrap_or_else(|| panic!("no prompt size reserves the hold {hold}"));
    let mut prompts = vec![*estimates.start(), *estimates.end()];
    prompts.extend(early_prompt_tokens(endpoint, &read));
    let cost = |prompt: u64, output: u64| price.usage_cost_nano(prompt, 0, output);
    let low = prompts
        .iter()
        .map(|p| cost(*p, client_tokens))
        .min()
        .unwrap_or(0);
    let high = prompts
        .iter()
        .map(|p| cost(*p, generated))
        .max()
        .unwrap_or(0);
    println!(
        "client read {client_tokens} tokens, mock generated {generated}, prompts {prompts:?}, \
         spent {} in {low}..={high}",
        state.spent_nano_usd
    );
    assert!(
        (low..=high).contains(&state.spent_nano_usd),
        "spent {} is outside {low}..={high}: client read {client_tokens} tokens, mock \
         generated {generated}, prompt candidates {prompts:?}",
        state.spent_nano_usd
    );
}

#[tokio::test]
async fn azure_client_leaves_mid_stream() {
    leave_mid_stream(Endpoint::Azure).await;
}

#[tokio::test]
async fn responses_client_leaves_mid_stream() {
    leave_mid_stream(Endpoint::Responses).await;
}

#[tokio::test]
async fn anthropic_client_leaves_mid_stream() {
    leave_mid_stream(Endpoint::Anthropic).await;
}

#[tokio::test]
async fn gemini_client_leaves_mid_stream() {
    leave_mid_stream(Endpoint::Gemini { stream: true }).await;
}
