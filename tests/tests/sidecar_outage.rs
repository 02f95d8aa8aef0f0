//! End to end through Envoy: what clients get while the sidecar is down, in each failure mode.

mod common;

use common::{chat_body, funded_key, send, start, start_with_filter_config, TEN_USD_NANO};
use serde_json::json;

#[tokio::test]
async fn fail_closed_is_503_then_recovers() {
    let mut stack = start().await;
    let (key, _) = funded_key(&stack, "outage", TEN_USD_NANO).await;
    let body = chat_body(json!({"max_tokens": 20}));
    stack.stop_sidecar();

    let answer = send(stack.chat(Some(&key), &body)).await;
    assert_eq!(answer.status, 503, "answer {:?}", answer.json);
    assert_eq!(answer.json["error"]["code"], "budget_service_unavailable");
    assert!(stack.mock.records().await.expect("records").is_empty());

    stack
        .start_sidecar()
        .await
        .expect("the sidecar starts again");
    let answer = send(stack.chat(Some(&key), &body)).await;
    assert_eq!(answer.status, 200, "answer {:?}", answer.json);
}

#[tokio::test]
async fn fail_open_forwards_while_down() {
    let mut stack = start_with_filter_config(json!({"failureMode": "failOpen"})).await;
    let (key, _) = funded_key(&stack, "fail-open", TEN_USD_NANO).await;
    stack.stop_sidecar();

    let answer = send(stack.chat(Some(&key), &chat_body(json!({"max_tokens": 20})))).await;
    assert_eq!(answer.status, 200, "answer {:?}", answer.json);
    assert_eq!(stack.mock.records().await.expect("records").len(), 1);
}
