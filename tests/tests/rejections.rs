//! End to end through Envoy: requests the filter rejects never reach the provider and cost
//! nothing.

mod common;

use common::{chat_body, funded_key, send, start, start_with_filter_config, TEN_USD_NANO};
use serde_json::json;

#[tokio::test]
async fn invalid_requests_rejected_without_charge() {
    let stack = start().await;
    let (key, budget) = funded_key(&stack, "invalid", TEN_USD_NANO).await;
    let url = stack.url("/v1/chat/completions");
    let json_post = |body: String, key: Option<&str>| {
        let request = stack
            .http()
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    };
    let valid = chat_body(json!({"max_tokens": 20}));
    let no_model = json!({"messages": [{"role": "user", "content": "hi"}]});
    let unknown_model = chat_body(json!({"model": "no-such-model-anywhere"}));
    let cases = [
        (
            "invalid JSON",
            json_post("{\"model\": ".into(), Some(key.as_str())),
            400,
            "invalid_json",
        ),
        (
            "missing model",
            json_post(no_model.to_string(), Some(key.as_str())),
            400,
            "missing_model",
        ),
        (
            "unknown model",
            json_post(unknown_model.to_string(), Some(key.as_str())),
            400,
            "unknown_model",
        ),
        (
            "no identity",
            json_post(valid.to_string(), None),
            401,
            "missing_identity",
        ),
    ];

    for (case, request, status, code) in cases {
        let answer = send(request).await;
        assert_eq!(answer.status, status, "{case}: answer {:?}", answer.json);
        assert_eq!(
            answer.json["error"]["code"], code,
            "{case}: answer {:?}",
            answer.json
        );
        assert!(
            answer.json["error"]["message"].is_string(),
            "{case}: answer {:?}",
            answer.json
        );
        let records = stack.mock.records().await.expect("records");
        assert!(records.is_empty(), "{case}: the provider got {records:?}");
        let state = stack.admin.budget(&budget).await.expect("budget state");
        assert_eq!(state.spent_nano_usd, 0, "{case}: state {state:?}");
        assert_eq!(state.reserved_nano_usd, 0, "{case}: state {state:?}");
    }

    let answer = send(stack.chat(Some(&key), &valid)).await;
    assert_eq!(
        answer.status, 200,
        "valid request after the rejections: {:?}",
        answer.json
    );
}

#[tokio::test]
async fn oversized_body_rejected_with_413() {
    let limit_bytes = 4096;
    let stack = start_with_filter_config(json!({"maxRequestBodyBytes": limit_bytes})).await;
    let (key, budget) = funded_key(&stack, "oversized", TEN_USD_NANO).await;
    let long_text = "budget ".repeat(2 * limit_bytes);
    let body = chat_body(json!({"messages": [{"role": "user", "content": long_text}]}));

    let answer = send(stack.chat(Some(&key), &body)).await;
    assert_eq!(answer.status, 413, "answer {:?}", answer.json);
    assert_eq!(answer.json["error"]["code"], "request_too_large");
    assert!(stack.mock.records().await.expect("records").is_empty());
    let state = stack.admin.budget(&budget).await.expect("budget state");
    assert_eq!(state.spent_nano_usd, 0, "state {state:?}");
}
