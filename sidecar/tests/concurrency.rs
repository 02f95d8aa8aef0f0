//! Concurrent reserves cannot hold more than a budget's limit.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{reserve_request, TestEnv};
use spendfuse_protocol::ReserveResponse;

/// Reserves sent at once.
const REQUESTS: usize = 100;

/// Grants the budget pays for.
const AFFORDABLE: u64 = 10;

/// Cost of one request: 100 prompt tokens and 100 output tokens of gpt-4o.
const REQUEST_NANO: u64 = 100 * 2_500 + 100 * 10_000;

/// Sends [`REQUESTS`] reserves at once against a budget that pays for [`AFFORDABLE`] of them,
/// and returns the environment and the number of grants.
async fn reserve_concurrently() -> (TestEnv, usize) {
    let env = TestEnv::new();
    env.create_budget("shared", AFFORDABLE * REQUEST_NANO).await;
    // min = max, so no grant is lowered and every grant holds exactly REQUEST_NANO.
    let request = reserve_request("shared", "gpt-4o", 100, 100, 100);
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let app = env.app.clone();
            let body = serde_json::to_value(&request).unwrap();
            tokio::spawn(async move {
                common::send(
                    &app,
                    axum::http::Method::POST,
                    "/v1/reserve",
                    Some(body),
                    None,
                )
                .await
            })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert!(status.is_success(), "reserve answered {status}: {body}");
        let response: ReserveResponse = serde_json::from_value(body).unwrap();
        if matches!(response, ReserveResponse::Granted(_)) {
            granted += 1;
        }
    }
    (env, granted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactly_the_affordable_reserves_are_granted() {
    let (_env, granted) = reserve_concurrently().await;
    assert_eq!(granted as u64, AFFORDABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_holds_fill_the_budget_exactly() {
    let (env, _) = reserve_concurrently().await;
    let state = env.budget_state("shared").await;
    assert_eq!(state.spent_nano + state.reserved_nano, state.limit_nano);
}
