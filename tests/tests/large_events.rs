//! End to end through Envoy: a Responses stream whose terminal event is larger than the
//! filter's SSE event limit (4 MiB) settles at its hold, and one below it at the provider's
//! usage.

mod common;

use common::providers::{price_of, streamed_usage, Endpoint, STREAM_TIMEOUT};
use common::{funded_key, held_nano, settled_budget, start, TEN_USD_NANO};
use spendfuse_tests::{read_sse, BudgetState, SseRead, Stack};

const MIB: usize = 1024 * 1024;

/// Streams a Responses request whose terminal event is `terminal_bytes` long, and returns the
/// hold while the stream was open, what the client read and the settled budget.
async fn large_terminal_event(stack: &Stack, terminal_bytes: usize) -> (u64, SseRead, BudgetState) {
    let (key, budget) = funded_key(stack, "large-terminal", TEN_USD_NANO).await;
    let body = Endpoint::Responses.body(true);
    let response = Endpoint::Responses
        .post(stack, Some(&key), &body)
        .header("x-mock-echo-bytes", terminal_bytes.to_string())
        .header("x-mock-output-tokens", "5")
        // Slow enough that the hold is still there when the test reads it.
        .header("x-mock-chunk-delay-ms", "40")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let hold = held_nano(stack, &budget).await;
    assert!(hold > 0, "no hold while the stream is open");
    let read = tokio::time::timeout(STREAM_TIMEOUT, read_sse(response, None))
        .await
        .expect("the stream ends within the test's time bound");
    let state = settled_budget(stack, &budget).await;
    (hold, read, state)
}

#[tokio::test]
async fn six_mib_terminal_event_settles_at_hold() {
    let stack = start().await;
    let (hold, _, state) = large_terminal_event(&stack, 6 * MIB).await;
    assert_eq!(state.reserved_nano_usd, 0, "hold not released: {state:?}");
    assert_eq!(state.spent_nano_usd, hold, "state {state:?}");
}

#[tokio::test]
async fn six_mib_terminal_event_reaches_client_whole() {
    let stack = start().await;
    let (_, read, _) = large_terminal_event(&stack, 6 * MIB).await;
    assert_eq!(read.transport_error, None);
    let last = read.last().expect("events");
    assert_eq!(last.event.as_deref(), Some("response.completed"));
    let terminal = last.json().expect("the terminal event is whole JSON");
    assert_eq!(terminal["response"]["status"], "completed");
    let raw = String::from_utf8_lossy(&read.raw);
    let start = raw
        .rfind("event: response.completed")
        .expect("terminal event");
    assert_eq!(raw.len() - start, 6 * MIB);
}

#[tokio::test]
async fn one_mib_terminal_event_settles_at_usage() {
    let stack = start().await;
    let (_, read, state) = large_terminal_event(&stack, MIB).await;
    let usage = streamed_usage(Endpoint::Responses, &read);
    assert!(usage.completion_tokens > 0, "usage {usage:?}");
    let expected = price_of("gpt-4o-mini")
        .settle_cost_nano(&usage)
        .expect("valid usage");
    assert_eq!(state.reserved_nano_usd, 0, "hold not released: {state:?}");
    assert_eq!(state.spent_nano_usd, expected, "state {state:?}");
}
