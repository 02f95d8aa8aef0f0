//! Spend and live holds survive a crash of redis-server that runs with the append-only file
//! settings the README documents.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{free_port, reserve_request, settle_request, RedisServer};
use spendfuse_protocol::ReserveResponse;
use spendfuse_sidecar::store::{BudgetId, BudgetName, BudgetUpdate, Store};
use spendfuse_sidecar::window::WindowKind;

/// Cost of one request: 100 prompt tokens and 100 output tokens of gpt-4o, in nano-dollars.
const REQUEST_NANO: u64 = 100 * 2_500 + 100 * 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_survives_a_redis_crash() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut redis = RedisServer::start_durable(port, dir.path());
    let store = Store::open(&redis.url()).unwrap();
    let app = common::app_for(&store);
    let budget = BudgetId::single(BudgetName::parse("team").unwrap());
    let update = BudgetUpdate {
        shadow: None,
        limits: vec![
            (WindowKind::Month, 10 * REQUEST_NANO),
            (WindowKind::Lifetime, 20 * REQUEST_NANO),
        ],
        replace: true,
    };
    store.update_budget(&budget, &update).await.unwrap();

    let reserve = |app: axum::Router| async move {
        let body = serde_json::to_value(reserve_request("team", "gpt-4o", 100, 100, 100)).unwrap();
        let (_, reply) = common::send(
            &app,
            axum::http::Method::POST,
            "/v1/reserve",
            Some(body),
            None,
        )
        .await;
        match serde_json::from_value(reply).unwrap() {
            ReserveResponse::Granted(grant) => grant.reservation_id,
            other => panic!("expected a grant, got {other:?}"),
        }
    };
    let settled_id = reserve(app.clone()).await;
    let settle = settle_request("team", "gpt-4o", &settled_id, 100, 0, 100);
    let body = serde_json::to_value(&settle).unwrap();
    common::send(
        &app,
        axum::http::Method::POST,
        "/v1/settle",
        Some(body),
        None,
    )
    .await;
    let held_id = reserve(app.clone()).await;
    let before = store.budget_of(&budget).await.unwrap().unwrap();
    // With appendfsync everysec, Redis syncs the file to disk once a second. Waiting for one
    // sync keeps the test from depending on what the page cache still holds.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;

    redis.stop();
    let redis = RedisServer::start_durable(port, dir.path());
    // Commands on the connection broken by the crash fail (the sidecar fails closed) until the
    // connection manager has reconnected.
    let mut after = None;
    for _ in 0..50 {
        if let Ok(state) = store.budget_of(&budget).await {
            after = state;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let after = after.expect("the budget is readable after the restart");
    assert_eq!(after.windows, before.windows);
    assert_eq!(after.spent_nano, REQUEST_NANO);
    assert_eq!(after.reserved_nano, REQUEST_NANO);

    // The hold made before the crash settles after it.
    let settle = settle_request("team", "gpt-4o", &held_id, 100, 0, 100);
    let body = serde_json::to_value(&settle).unwrap();
    let (status, reply) = common::send(
        &app,
        axum::http::Method::POST,
        "/v1/settle",
        Some(body),
        None,
    )
    .await;
    assert_eq!(status, axum::http::StatusCode::OK, "{reply}");
    let settled = store.budget_of(&budget).await.unwrap().unwrap();
    assert_eq!(settled.spent_nano, 2 * REQUEST_NANO);
    assert_eq!(settled.reserved_nano, 0);
    drop(redis);
}
