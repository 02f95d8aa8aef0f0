//! End to end through Envoy: back-to-back requests, clients that leave before a non-streamed
//! response, methods other than POST, and limits the budget service cannot price.

mod common;

use common::{
    chat_body, funded_key, price, prompt_tokens, send, settled_budget, start, TEN_USD_NANO,
};
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn back_to_back_requests_reuse_released_holds() {
    let stack = start().await;
    let body = chat_body(json!({"max_tokens": 200}));
    // Room for two holds at once; each request uses far less than its hold.
    let hold = price().reserve_cost_nano(prompt_tokens(&body), 200, 1);
    let (key, _) = funded_key(&stack, "back-to-back", 2 * hold + hold / 2).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let answer = send(
            stack
                .chat(Some(&key), &body)
                .header("x-mock-output-tokens", "5"),
        )
        .await;
        statuses.push(answer.status);
    }
    assert_eq!(statuses, vec![200; 6]);
}

#[tokio::test]
async fn client_leaving_before_answer_pays_the_hold() {
    let stack = start().await;
    let (key, budget) = funded_key(&stack, "leave-early", TEN_USD_NANO).await;
    let body = chat_body(json!({"max_tokens": 300}));
    let hold = price().reserve_cost_nano(prompt_tokens(&body), 300, 1);
    let request = stack
        .chat(Some(&key), &body)
        .header("x-mock-response-delay-ms", "1500")
        .timeout(Duration::from_millis(300));
    assert!(
        request.send().await.is_err(),
        "the client should time out first"
    );

    let state = settled_budget(&stack, &budget).await;
    assert_eq!(state.spent_nano_usd, hold, "state {state:?}");
}

#[tokio::test]
async fn put_on_metered_path_is_405() {
    let stack = start().await;
    let (key, _) = funded_key(&stack, "put", TEN_USD_NANO).await;
    let request = stack
        .http()
        .put(stack.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_body(json!({})));
    let answer = send(request).await;
    assert_eq!(answer.status, 405, "answer {:?}", answer.json);
    assert_eq!(answer.json["error"]["code"], "method_not_allowed");
    assert!(stack.mock.records().await.expect("records").is_empty());
}

#[tokio::test]
async fn unpriceable_limit_is_400_not_503() {
    let stack = start().await;
    let (key, budget) = funded_key(&stack, "huge-limit", TEN_USD_NANO).await;
    let body = chat_body(json!({"max_tokens": 100_000_000_000_000_000_u64}));
    let answer = send(stack.chat(Some(&key), &body)).await;
    assert_eq!(answer.status, 400, "answer {:?}", answer.json);
    assert!(stack.mock.records().await.expect("records").is_empty());
    let state = stack.admin.budget(&budget).await.expect("budget state");
    assert_eq!(state.reserved_nano_usd, 0, "state {state:?}");
}

#[tokio::test]
async fn reserve_given_up_leaves_no_hold() {
    // A 1 ms sidecar timeout makes the filter give up on most reserves that the sidecar still
    // completes; whatever the response, no hold may stay behind.
    let stack = common::start_with_filter_config(json!({"sidecarTimeout": "1ms"})).await;
    let (key, budget) = funded_key(&stack, "given-up", TEN_USD_NANO).await;
    for _ in 0..5 {
        send(stack.chat(Some(&key), &chat_body(json!({"max_tokens": 50})))).await;
    }
    let state = settled_budget(&stack, &budget).await;
    assert_eq!(state.reserved_nano_usd, 0, "state {state:?}");
}
