//! End to end through Envoy: concurrent requests on one identity never spend past its limit.

mod common;

use common::{
    chat_body, funded_key, price, prompt_tokens, settled_budget, start_with_filter_config,
};
use futures_util::future::join_all;
use serde_json::json;
use std::time::Duration;

/// Requests sent at once.
const REQUESTS: usize = 100;

/// Worst-case reservations the budget pays for.
const AFFORDABLE: u64 = 10;

/// Output maximum of each request; the mock generates all of it.
const MAX_TOKENS: u64 = 100;

/// Upper bound on the time all requests may take together.
const BURST_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn burst_admits_exactly_what_budget_holds() {
    // A debug-build sidecar serving 100 callouts at once on a 2-core machine can take
    // longer than the shipped 50 ms timeout. This test is about the atomicity of holds, not
    // latency, so the callouts get 5 s.
    let stack = start_with_filter_config(json!({"sidecarTimeout": "5s"})).await;
    let body = chat_body(json!({"max_tokens": MAX_TOKENS}));
    let price = price();
    let hold = price.reserve_cost_nano(prompt_tokens(&body), MAX_TOKENS, 1);
    let limit = AFFORDABLE * hold;
    let (key, budget) = funded_key(&stack, "burst", limit).await;

    let requests = (0..REQUESTS).map(|_| {
        let request = stack
            .chat(Some(&key), &body)
            .header("x-mock-output-tokens", MAX_TOKENS.to_string());
        async move {
            request
                .send()
                .await
                .map(|response| response.status().as_u16())
        }
    });
    let statuses = tokio::time::timeout(BURST_TIMEOUT, join_all(requests))
        .await
        .expect("the burst finishes within its time bound");
    let statuses: Vec<u16> = statuses
        .into_iter()
        .map(|status| status.expect("answer"))
        .collect();

    let admitted = statuses.iter().filter(|status| **status == 200).count();
    let rejected = statuses.iter().filter(|status| **status == 402).count();
    assert_eq!(admitted, AFFORDABLE as usize, "statuses {statuses:?}");
    assert_eq!(
        rejected,
        REQUESTS - AFFORDABLE as usize,
        "statuses {statuses:?}"
    );
    let records = stack.mock.records().await.expect("records");
    assert_eq!(records.len(), AFFORDABLE as usize);
    let state = settled_budget(&stack, &budget).await;
    assert_eq!(
        state.reserved_nano_usd, 0,
        "holds were not released: {state:?}"
    );
    // For gpt-4o-mini, whose prices are whole nano-dollars per token, a settled request of the
    // full maximum costs exactly its hold, so the budget ends spent to the nano-dollar.
    assert_eq!(state.spent_nano_usd, limit, "state {state:?}");
}
