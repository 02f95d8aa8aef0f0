//! End to end through Envoy: provider errors before and after a response starts, responses the
//! filter cannot read, and the errors the filter returns itself in each provider's format.

mod common;

use common::providers::{stream, with, Endpoint};
use common::{funded_key, held_nano, send, settled_budget, start, TEN_USD_NANO};
use serde_json::{json, Value};
use spendfuse_tests::pricing::format_usd;
use spendfuse_tests::tokens;
use std::io::Read;

/// Every endpoint, with the streamed variant where the format has one in the body or path.
const ENDPOINTS: [(Endpoint, bool); 7] = [
    (Endpoint::Chat, false),
    (Endpoint::Azure, true),
    (Endpoint::Responses, true),
    (Endpoint::Anthropic, true),
    (Endpoint::Gemini { stream: true }, true),
    (Endpoint::Embeddings, false),
    (Endpoint::AzureEmbeddings, false),
];

/// Checks that `json` is an error body in the format of `endpoint` with HTTP status `status`.
fn assert_error_format(endpoint: Endpoint, status: u16, json: &Value) {
    match endpoint {
        Endpoint::Anthropic => {
            assert_eq!(json["type"], "error", "{endpoint:?}: {json}");
            assert!(json["error"]["type"].is_string(), "{endpoint:?}: {json}");
            assert!(json["error"]["message"].is_string(), "{endpoint:?}: {json}");
        }
        Endpoint::Gemini { .. } => {
            assert_eq!(json["error"]["code"], status, "{endpoint:?}: {json}");
            assert!(json["error"]["status"].is_string(), "{endpoint:?}: {json}");
            assert!(json["error"]["message"].is_string(), "{endpoint:?}: {json}");
        }
        _ => {
            let error = json["error"].as_object();
            let error = error.unwrap_or_else(|| panic!("{endpoint:?}: no error object in {json}"));
            for field in ["message", "type", "param", "code"] {
                assert!(
                    error.contains_key(field),
                    "{endpoint:?}: no {field} in {json}"
                );
            }
        }
    }
}

#[tokio::test]
async fn provider_error_status_releases_whole_hold() {
    let stack = start().await;
    let cases = [
        (Endpoint::Azure, "429"),
        (Endpoint::Responses, "500"),
        (Endpoint::Anthropic, "429"),
        (Endpoint::Anthropic, "529"),
        (Endpoint::Gemini { stream: true }, "429"),
        (Endpoint::Embeddings, "502"),
    ];
    for (endpoint, status) in cases {
        let (key, budget) = funded_key(&stack, "upstream-error", TEN_USD_NANO).await;
        let request = endpoint
            .post(&stack, Some(&key), &endpoint.body(true))
            .header("x-mock-status", status);
        let answer = send(request).await;
        assert_eq!(
            answer.status.to_string(),
            status,
            "{endpoint:?}: {:?}",
            answer.json
        );
        // Every provider's error body has an `error` object, which passes through unchanged.
        assert!(
            answer.json["error"].is_object(),
            "{endpoint:?}: {:?}",
            answer.json
        );
        let state = settled_budget(&stack, &budget).await;
        assert_eq!(
            state.reserved_nano_usd, 0,
            "{endpoint:?} {status}: {state:?}"
        );
        assert_eq!(state.spent_nano_usd, 0, "{endpoint:?} {status}: {state:?}");
    }
}

#[tokio::test]
async fn anthropic_error_event_settles_what_was_used() {
    let stack = start().await;
    let (key, budget) = funded_key(&stack, "error-event", TEN_USD_NANO).await;
    let endpoint = Endpoint::Anthropic;
    let response = endpoint
        .post(&stack, Some(&key), &endpoint.body(true))
        .header("x-mock-error-after-tokens", "10")
        // Slow enough that the hold is still there when the test reads it.
        .header("x-mock-chunk-delay-ms", "30")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let hold = held_nano(&stack, &budget).await;
    let read = spendfuse_tests::read_sse(response, None).await;
    let last = read.last().expect("events");
    assert_eq!(
        last.event.as_deref(),
        Some("error"),
        "events {:?}",
        read.events
    );

    let state = settled_budget(&stack, &budget).await;
    assert_eq!(state.reserved_nano_usd, 0, "hold not released: {state:?}");
    assert!(state.spent_nano_usd > 0, "nothing charged: {state:?}");
    assert!(
        state.spent_nano_usd < hold,
        "charged the whole hold {hold} for 10 tokens: {state:?}"
    );
}

#[tokio::test]
async fn forced_gzip_completion_settles_at_hold() {
    let stack = start().await;
    let (key, budget) = funded_key(&stack, "gzip", TEN_USD_NANO).await;
    let max_tokens = 50;
    let body = with(
        Endpoint::Chat.body(false),
        json!({"max_tokens": max_tokens}),
    );
    let request = Endpoint::Chat
        .post(&stack, Some(&key), &body)
        .header("x-mock-force-gzip", "true");
    let response = request.send().await.expect("answer");
    assert_eq!(response.status(), 200);
    let compressed = response.bytes().await.expect("body");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut text)
        .expect("the client gets the gzip body unchanged");

    // The filter's estimate of a text-only chat prompt is the formula in `tokens`.
    let prompt = tokens::request_prompt_tokens(&body);
    let hold = common::price().reserve_cost_nano(prompt, max_tokens, 1);
    let state = settled_budget(&stack, &budget).await;
    assert_eq!(state.reserved_nano_usd, 0, "hold not released: {state:?}");
    assert_eq!(state.spent_nano_usd, hold, "state {state:?}");
}

/// Streams a gzip body that the filter cannot read from `endpoint`, and returns the hold while
/// the stream was open and the settled budget.
async fn forced_gzip_stream(endpoint: Endpoint) -> (u64, spendfuse_tests::BudgetState) {
    let stack = start().await;
    let (key, budget) = funded_key(&stack, "gzip-stream", TEN_USD_NANO).await;
    let body = with(endpoint.body(true), json!({"max_tokens": 400}));
    let response = endpoint
        .post(&stack, Some(&key), &body)
        .header("x-mock-force-gzip", "true")
        // Slow enough that the hold is still there when the test reads it.
        .header("x-mock-chunk-delay-ms", "30")
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    let hold = held_nano(&stack, &budget).await;
    response.bytes().await.expect("the whole body");
    (hold, settled_budget(&stack, &budget).await)
}

#[tokio::test]
async fn forced_gzip_stream_settles_at_hold() {
    let (hold, state) = forced_gzip_stream(Endpoint::Chat).await;
    assert_eq!(state.reserved_nano_usd, 0, "hold not released: {state:?}");
    assert_eq!(state.spent_nano_usd, hold, "state {state:?}");
}

/// Anthropic's reservation prices the prompt at the 1-hour cache write price, above its input
/// price, so a settle at the prompt estimate and the output limit would charge less than the
/// hold.
#[tokio::test]
async fn forced_gzip_anthropic_stream_settles_at_hold() {
    let (hold, state) = forced_gzip_stream(Endpoint::Anthropic).await;
    assert_eq!(state.reserved_nano_usd, 0, "hold not released: {state:?}");
    assert_eq!(state.spent_nano_usd, hold, "state {state:?}");
}

#[tokio::test]
async fn anthropic_without_max_tokens_is_400() {
    let stack = start().await;
    let (key, budget) = funded_key(&stack, "no-max-tokens", TEN_USD_NANO).await;
    let mut body = Endpoint::Anthropic.body(false);
    body.as_object_mut().expect("object").remove("max_tokens");
    let answer = send(Endpoint::Anthropic.post(&stack, Some(&key), &body)).await;
    assert_eq!(answer.status, 400, "answer {:?}", answer.json);
    assert_eq!(answer.json["type"], "error", "answer {:?}", answer.json);
    assert_eq!(answer.json["error"]["type"], "invalid_request_error");
    let message = answer.json["error"]["message"].as_str().expect("message");
    assert!(message.contains("max_tokens"), "message {message}");
    assert!(stack.mock.records().await.expect("records").is_empty());
    let state = stack.admin.budget(&budget).await.expect("budget");
    assert_eq!(state.spent_nano_usd, 0, "state {state:?}");
}

#[tokio::test]
async fn gemini_over_budget_is_402_resource_exhausted() {
    let stack = start().await;
    let limit = 1_000;
    let (key, budget) = funded_key(&stack, "gemini-over", limit).await;
    let endpoint = Endpoint::Gemini { stream: false };
    let answer = send(endpoint.post(&stack, Some(&key), &endpoint.body(false))).await;
    assert_eq!(answer.status, 402, "answer {:?}", answer.json);
    let error = &answer.json["error"];
    assert_eq!(error["code"], 402, "answer {:?}", answer.json);
    assert_eq!(
        error["status"], "RESOURCE_EXHAUSTED",
        "answer {:?}",
        answer.json
    );
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
async fn over_budget_is_402_in_each_format() {
    let stack = start().await;
    for (endpoint, streamed) in ENDPOINTS {
        let (key, _) = funded_key(&stack, "over", 1).await;
        let answer = send(endpoint.post(&stack, Some(&key), &endpoint.body(streamed))).await;
        assert_eq!(answer.status, 402, "{endpoint:?}: {:?}", answer.json);
        assert_error_format(endpoint, 402, &answer.json);
        match endpoint {
            Endpoint::Anthropic => assert_eq!(answer.json["error"]["type"], "billing_error"),
            Endpoint::Gemini { .. } => {
                assert_eq!(answer.json["error"]["status"], "RESOURCE_EXHAUSTED")
            }
            _ => {
                assert_eq!(
                    answer.json["error"]["type"], "insufficient_quota",
                    "{endpoint:?}"
                );
                assert_eq!(
                    answer.json["error"]["code"], "budget_exceeded",
                    "{endpoint:?}"
                );
            }
        }
    }
    assert!(stack.mock.records().await.expect("records").is_empty());
}

#[tokio::test]
async fn missing_identity_is_401_in_each_format() {
    let stack = start().await;
    for (endpoint, streamed) in ENDPOINTS {
        let answer = send(endpoint.post(&stack, None, &endpoint.body(streamed))).await;
        assert_eq!(answer.status, 401, "{endpoint:?}: {:?}", answer.json);
        assert_error_format(endpoint, 401, &answer.json);
        match endpoint {
            Endpoint::Anthropic => {
                assert_eq!(answer.json["error"]["type"], "authentication_error")
            }
            Endpoint::Gemini { .. } => {
                assert_eq!(answer.json["error"]["status"], "UNAUTHENTICATED")
            }
            _ => assert_eq!(
                answer.json["error"]["code"], "missing_identity",
                "{endpoint:?}"
            ),
        }
    }
    assert!(stack.mock.records().await.expect("records").is_empty());
}

#[tokio::test]
async fn gemini_key_query_parameter_names_budget() {
    let stack = start().await;
    let (key, budget) = funded_key(&stack, "gemini-query", TEN_USD_NANO).await;
    let endpoint = Endpoint::Gemini { stream: true };
    let url = stack.url(&format!("{}&key={key}", endpoint.path()));
    let request = stack.http().post(url).json(&endpoint.body(true));
    let read = stream(request, None).await;
    assert!(!read.events.is_empty(), "no events");
    let state = settled_budget(&stack, &budget).await;
    assert!(
        state.spent_nano_usd > 0,
        "the key's budget was not charged: {state:?}"
    );
}
