//! End to end through Envoy: requests under and over budget, what the filter forwards, and
//! what it charges.

mod common;

use common::{
    chat_body, funded_key, output_tokens, price, prompt_tokens, send, settled_budget, start,
    TEN_USD_NANO,
};
use serde_json::{json, Value};
use spendfuse_tests::pricing::format_usd;
use spendfuse_tests::read_stream;

/// Returns the usage object of a non-streamed answer as (prompt, cached, completion).
fn usage_of(json: &Value) -> (u64, u64, u64) {
    let usage = &json["usage"];
    let number = |pointer: &str| usage.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    (
        number("/prompt_tokens"),
        number("/prompt_tokens_details/cached_tokens"),
        number("/completion_tokens"),
    )
}

#[tokio::test]
async fn completion_under_budget_charges_usage() {
    let stack = start().await;
    let (key, budget) = funded_key(&stack, "under", TEN_USD_NANO).await;
    let answer = send(stack.chat(Some(&key), &chat_body(json!({"max_tokens": 50})))).await;
    assert_eq!(answer.status, 200, "answer {:?}", answer.json);

    let (prompt, cached, completion) = usage_of(&answer.json);
    let state = settled_budget(&stack, &budget).await;
    assert_eq!(
        state.reserved_nano_usd, 0,
        "the hold was not released: {state:?}"
    );
    assert_eq!(
        state.spent_nano_usd,
        price().usage_cost_nano(prompt, cached, completion)
    );
}

#[tokio::test]
async fn stream_under_budget_charges_usage() {
    let stack = start().await;
    let (key, budget) = funded_key(&stack, "under-stream", TEN_USD_NANO).await;
    let body = chat_body(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let response = stack.chat(Some(&key), &body).send().await.expect("answer");
    assert_eq!(response.status(), 200);
    let read = read_stream(response, None).await;
    assert_eq!(read.transport_error, None);

    let usage = read
        .usage_event()
        .expect("the client asked for the usage chunk");
    let (prompt, cached, completion) = usage_of(usage);
    let state = settled_budget(&stack, &budget).await;
    assert_eq!(
        state.reserved_nano_usd, 0,
        "the hold was not released: {state:?}"
    );
    assert_eq!(
        state.spent_nano_usd,
        price().usage_cost_nano(prompt, cached, completion)
    );
}

#[tokio::test]
async fn over_budget_is_402_and_not_forwarded() {
    let stack = start().await;
    let limit = 1_000;
    let (key, budget) = funded_key(&stack, "over", limit).await;
    let answer = send(stack.chat(Some(&key), &chat_body(json!({"max_tokens": 50})))).await;
    assert_eq!(answer.status, 402, "answer {:?}", answer.json);

    let error = &answer.json["error"];
    assert_eq!(error["type"], "insufficient_quota");
    assert_eq!(error["code"], "budget_exceeded");
    let message = error["message"].as_str().expect("message");
    assert!(
        message.contains(&budget),
        "message does not name the budget: {message}"
    );
    assert!(
        message.contains(&format_usd(limit)),
        "message does not give the limit: {message}"
    );
    assert!(stack.mock.records().await.expect("records").is_empty());
}

#[tokio::test]
async fn forwarded_stream_asks_usage_without_encoding() {
    let stack = start().await;
    let (key, _) = funded_key(&stack, "forward", TEN_USD_NANO).await;
    let response = stack
        .chat(Some(&key), &chat_body(json!({"stream": true})))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .expect("answer");
    read_stream(response, None).await;

    let records = stack.mock.records().await.expect("records");
    let [record] = records.as_slice() else {
        panic!("expected one forwarded request, got {records:?}");
    };
    assert_eq!(
        record.accept_encoding, None,
        "accept-encoding reached the provider"
    );
    assert!(record.include_usage, "forwarded body {}", record.body);
}

#[tokio::test]
async fn usage_chunk_hidden_unless_requested() {
    let stack = start().await;
    let (key, _) = funded_key(&stack, "hidden-usage", TEN_USD_NANO).await;
    let response = stack
        .chat(Some(&key), &chat_body(json!({"stream": true})))
        .send()
        .await
        .expect("answer");
    let read = read_stream(response, None).await;
    assert_eq!(read.transport_error, None);
    assert!(read.usage_event().is_none(), "events {:?}", read.events);
    assert_eq!(output_tokens(&read.content()), 20);
}

#[tokio::test]
async fn usage_chunk_kept_when_requested() {
    let stack = start().await;
    let (key, _) = funded_key(&stack, "kept-usage", TEN_USD_NANO).await;
    let body = chat_body(json!({"stream": true, "stream_options": {"include_usage": true}}));
    let response = stack.chat(Some(&key), &body).send().await.expect("answer");
    let read = read_stream(response, None).await;
    let usage = read.usage_event().expect("usage chunk");
    assert_eq!(usage["usage"]["completion_tokens"], 20);
}

#[tokio::test]
async fn lowered_cap_rewrites_max_tokens() {
    let stack = start().await;
    let body = chat_body(json!({"max_tokens": 1000}));
    let prompt = prompt_tokens(&body);
    let affordable = 100;
    let limit = price().reserve_cost_nano(prompt, affordable, 1);
    let (key, _) = funded_key(&stack, "lowered", limit).await;
    let answer = send(stack.chat(Some(&key), &body)).await;
    assert_eq!(answer.status, 200, "answer {:?}", answer.json);

    let lowered = answer.headers.get("x-spendfuse-max-tokens-lowered");
    assert_eq!(lowered.and_then(|value| value.to_str().ok()), Some("100"));
    let records = stack.mock.records().await.expect("records");
    let [record] = records.as_slice() else {
        panic!("expected one forwarded request, got {records:?}");
    };
    assert_eq!(record.max_tokens_field.as_deref(), Some("max_tokens"));
    assert_eq!(record.max_tokens_value, Some(affordable));
}

#[tokio::test]
async fn default_max_written_when_absent() {
    let stack = start().await;
    let (key, _) = funded_key(&stack, "default-max", TEN_USD_NANO).await;
    let answer = send(stack.chat(Some(&key), &chat_body(json!({})))).await;
    assert_eq!(answer.status, 200, "answer {:?}", answer.json);

    let records = stack.mock.records().await.expect("records");
    let [record] = records.as_slice() else {
        panic!("expected one forwarded request, got {records:?}");
    };
    assert_eq!(
        record.max_tokens_field.as_deref(),
        Some("max_completion_tokens")
    );
    assert_eq!(record.max_tokens_value, Some(4096));
}

#[tokio::test]
async fn stream_without_provider_usage_charges_metered() {
    let stack = start().await;
    let (key, budget) = funded_key(&stack, "metered", TEN_USD_NANO).await;
    let body = chat_body(json!({"stream": true}));
    let response = stack
        .chat(Some(&key), &body)
        .header("x-mock-no-usage", "true")
        .header("x-mock-output-tokens", "37")
        .send()
        .await
        .expect("answer");
    let read = read_stream(response, None).await;
    assert_eq!(output_tokens(&read.content()), 37);

    let state = settled_budget(&stack, &budget).await;
    assert_eq!(
        state.reserved_nano_usd, 0,
        "the hold was not released: {state:?}"
    );
    assert_eq!(
        state.spent_nano_usd,
        price().usage_cost_nano(prompt_tokens(&body), 0, 37)
    );
}

#[tokio::test]
async fn provider_error_passes_through_and_releases() {
    let stack = start().await;
    let (key, budget) = funded_key(&stack, "upstream-429", TEN_USD_NANO).await;
    let request = stack.chat(Some(&key), &chat_body(json!({"max_tokens": 50})));
    let answer = send(request.header("x-mock-status", "429")).await;
    assert_eq!(answer.status, 429);
    assert_eq!(answer.json["error"]["code"], "rate_limit_exceeded");

    let state = settled_budget(&stack, &budget).await;
    assert_eq!(
        state.reserved_nano_usd, 0,
        "the hold was not released: {state:?}"
    );
}
