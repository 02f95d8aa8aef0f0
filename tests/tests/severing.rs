//! End to end through Envoy: a stream that outruns its reservation is cut, and a client that
//! leaves mid-stream is charged for what the filter saw.

mod common;

use common::{
    chat_body, funded_key, output_tokens, output_tokens_charged, price, prompt_tokens,
    settled_budget, start, TEN_USD_NANO,
};
use serde_json::json;
use spendfuse_tests::{read_stream, ChatEvent, StreamRead};
use std::time::Duration;

/// Output tokens the budget in the severing test pays for.
const ALLOWANCE: u64 = 50;

/// Upper bound on how long one streamed test request may take.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads a stream within [`STREAM_TIMEOUT`].
async fn read_bounded(response: reqwest::Response, stop_after: Option<usize>) -> StreamRead {
    tokio::time::timeout(STREAM_TIMEOUT, read_stream(response, stop_after))
        .await
        .expect("the stream ends within the test's time bound")
}

#[tokio::test]
async fn stream_past_allowance_is_severed() {
    let stack = start().await;
    let body = chat_body(json!({"stream": true}));
    let prompt = prompt_tokens(&body);
    let price = price();
    let limit = price.reserve_cost_nano(prompt, ALLOWANCE, 1);
    let (key, budget) = funded_key(&stack, "sever", limit).await;
    let response = stack
        .chat(Some(&key), &body)
        .header("x-mock-ignore-max-tokens", "true")
        .header("x-mock-output-tokens", "500")
        .header("x-mock-tokens-per-chunk", "1")
        .header("x-mock-chunk-delay-ms", "20")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let read = read_bounded(response, None).await;

    // The client gets at most the allowance and one more event, then the error event last.
    let client_tokens = output_tokens(&read.content());
    assert!(
        client_tokens <= ALLOWANCE + 1,
        "client read {client_tokens} tokens"
    );
    let error = read
        .error_event()
        .expect("the stream ends with an error event");
    assert_eq!(error["error"]["type"], "insufficient_quota");
    assert_eq!(error["error"]["code"], "budget_exceeded");
    assert!(
        matches!(read.events.last(), Some(ChatEvent::Error(_))),
        "events {:?}",
        read.events
    );
    assert!(!read
        .events
        .iter()
        .any(|event| matches!(event, ChatEvent::Done)));

    // The provider detects the closed connection within two chunks of the allowance.
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

    // The charge is the prompt and the tokens the filter saw, never above what was reserved.
    let state = settled_budget(&stack, &budget).await;
    assert_eq!(
        state.reserved_nano_usd, 0,
        "the hold was not released: {state:?}"
    );
    assert!(
        state.spent_nano_usd <= limit,
        "spent {} above the hold {limit}",
        state.spent_nano_usd
    );
    assert_eq!(state.remaining_nano_usd, limit - state.spent_nano_usd);
    let charged = output_tokens_charged(
        &price,
        prompt,
        state.spent_nano_usd,
        client_tokens,
        record.generated_tokens,
    );
    println!(
        "client read {client_tokens} tokens, mock generated {}, filter charged {charged:?}",
        record.generated_tokens
    );
    assert!(
        charged.is_some(),
        "spent {} is not the prompt and {client_tokens}..={} output tokens",
        state.spent_nano_usd,
        record.generated_tokens
    );
}

#[tokio::test]
async fn client_disconnect_charges_seen_tokens() {
    let stack = start().await;
    let body = chat_body(json!({"stream": true, "max_tokens": 4000}));
    let prompt = prompt_tokens(&body);
    let price = price();
    let (key, budget) = funded_key(&stack, "disconnect", TEN_USD_NANO).await;
    let response = stack
        .chat(Some(&key), &body)
        .header("x-mock-output-tokens", "3000")
        .header("x-mock-chunk-delay-ms", "50")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    // Five events: the role event and four content events. Dropping the read closes the
    // connection.
    let read = read_bounded(response, Some(5)).await;
    let client_tokens = output_tokens(&read.content());

    let state = settled_budget(&stack, &budget).await;
    assert_eq!(
        state.reserved_nano_usd, 0,
        "the hold was not released within 2 s: {state:?}"
    );
    let records = stack.mock.records().await.expect("records");
    let record = records.first().expect("the request reached the provider");
    let charged = output_tokens_charged(
        &price,
        prompt,
        state.spent_nano_usd,
        client_tokens,
        record.generated_tokens,
    );
    let Some(charged) = charged else {
        panic!(
            "spent {} is not the prompt and {client_tokens}..={} output tokens",
            state.spent_nano_usd, record.generated_tokens
        );
    };
    println!(
        "client read {client_tokens} tokens, filter charged {charged}, mock generated {}: \
         {} below the mock",
        record.generated_tokens,
        record.generated_tokens - charged
    );
}
