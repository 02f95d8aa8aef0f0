//! Admin API through the router against a real redis-server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{reserve_request, settle_request, TestEnv, TEST_TOKEN};
use serde_json::{json, Value};
use spendfuse_sidecar::admin::{BudgetList, BudgetView, WindowView};
use spendfuse_sidecar::window::WindowKind;

async fn put_limit(env: &TestEnv, name: &str, limit: &str) -> (StatusCode, Value) {
    let path = format!("/admin/budgets/{name}");
    env.send(
        Method::PUT,
        &path,
        Some(json!({ "limit_usd": limit })),
        Some(TEST_TOKEN),
    )
    .await
}

async fn get_budget(env: &TestEnv, name: &str) -> (StatusCode, Value) {
    env.send(
        Method::GET,
        &format!("/admin/budgets/{name}"),
        None,
        Some(TEST_TOKEN),
    )
    .await
}

#[tokio::test]
async fn request_without_token_is_unauthorized() {
    let env = TestEnv::new();
    let (status, _) = env.send(Method::GET, "/admin/budgets", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn request_with_wrong_token_is_unauthorized() {
    let env = TestEnv::new();
    let (status, _) = env
        .send(Method::GET, "/admin/budgets", None, Some("wrong"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn put_without_token_changes_nothing() {
    let env = TestEnv::new();
    let body = json!({ "limit_usd": "5" });
    env.send(
        Method::PUT,
        "/admin/budgets/team",
        Some(body),
        Some("wrong"),
    )
    .await;
    assert_eq!(get_budget(&env, "team").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn disabled_admin_api_is_forbidden_with_instructions() {
    let env = TestEnv::without_admin_token();
    let (status, body) = env
        .send(Method::GET, "/admin/budgets", None, Some(TEST_TOKEN))
        .await;
    let message = body["error"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        (status, message.contains("SPENDFUSE_ADMIN_TOKEN")),
        (StatusCode::FORBIDDEN, true),
        "message was {message:?}"
    );
}

#[tokio::test]
async fn put_creates_the_budget() {
    let env = TestEnv::new();
    let (status, body) = put_limit(&env, "team", "25.00").await;
    assert_eq!(status, StatusCode::OK, "body: {body}");
    let view: BudgetView = serde_json::from_value(body).unwrap();
    assert_eq!(
        view,
        BudgetView {
            name: "team".into(),
            root: "team".into(),
            shadow: false,
            limit_nano_usd: 25_000_000_000,
            spent_nano_usd: 0,
            reserved_nano_usd: 0,
            remaining_nano_usd: 25_000_000_000,
            overrun_nano_usd: 0,
            limit_usd: "25.000000000".into(),
            spent_usd: "0.000000000".into(),
            remaining_usd: "25.000000000".into(),
            windows: vec![WindowView {
                window: WindowKind::Lifetime,
                limit_nano_usd: 25_000_000_000,
                spent_nano_usd: 0,
                reserved_nano_usd: 0,
                remaining_nano_usd: 25_000_000_000,
                overrun_nano_usd: 0,
                limit_usd: "25.000000000".into(),
                spent_usd: "0.000000000".into(),
                remaining_usd: "25.000000000".into(),
                period_start_ms: 0,
                period_end_ms: None,
            }],
        }
    );
}

#[tokio::test]
async fn get_returns_what_put_set() {
    let env = TestEnv::new();
    put_limit(&env, "team", "0.000123450").await;
    let (_, body) = get_budget(&env, "team").await;
    assert_eq!(body["limit_usd"], "0.000123450");
}

#[tokio::test]
async fn get_of_missing_budget_is_not_found() {
    let env = TestEnv::new();
    assert_eq!(get_budget(&env, "nobody").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn new_limit_keeps_spent_and_reserved() {
    let env = TestEnv::new();
    put_limit(&env, "team", "1").await;
    let id = env
        .reserve_granted(&reserve_request("team", "gpt-4o", 100, 500, 16))
        .await;
    env.settle(&settle_request("team", "gpt-4o", &id, 100, 0, 40))
        .await;
    env.reserve_granted(&reserve_request("team", "gpt-4o", 100, 500, 16))
        .await;
    let (_, body) = put_limit(&env, "team", "2").await;
    assert_eq!(
        (
            body["spent_nano_usd"].clone(),
            body["reserved_nano_usd"].clone()
        ),
        (json!(650_000), json!(5_250_000))
    );
}

#[tokio::test]
async fn state_shows_spent_and_remaining_as_decimals() {
    let env = TestEnv::new();
    put_limit(&env, "team", "1").await;
    let id = env
        .reserve_granted(&reserve_request("team", "gpt-4o", 100, 500, 16))
        .await;
    env.settle(&settle_request("team", "gpt-4o", &id, 100, 0, 40))
        .await;
    let (_, body) = get_budget(&env, "team").await;
    assert_eq!(
        (body["spent_usd"].clone(), body["remaining_usd"].clone()),
        (json!("0.000650000"), json!("0.999350000"))
    );
}

#[tokio::test]
async fn get_counts_expired_leases_as_released() {
    let env = TestEnv::new();
    put_limit(&env, "team", "1").await;
    let mut request = reserve_request("team", "gpt-4o", 100, 500, 16);
    request.lease_ms = 200;
    env.reserve_granted(&request).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, body) = get_budget(&env, "team").await;
    assert_eq!(body["reserved_nano_usd"], 0);
}

#[tokio::test]
async fn list_is_sorted_by_name() {
    let env = TestEnv::new();
    for name in ["charlie", "alpha", "bravo"] {
        put_limit(&env, name, "1").await;
    }
    let (_, body) = env
        .send(Method::GET, "/admin/budgets", None, Some(TEST_TOKEN))
        .await;
    let list: BudgetList = serde_json::from_value(body).unwrap();
    let names: Vec<_> = list.budgets.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["alpha", "bravo", "charlie"]);
}

#[tokio::test]
async fn empty_list_has_no_budgets() {
    let env = TestEnv::new();
    let (_, body) = env
        .send(Method::GET, "/admin/budgets", None, Some(TEST_TOKEN))
        .await;
    assert_eq!(body, json!({ "budgets": [] }));
}

#[tokio::test]
async fn invalid_limits_are_bad_requests() {
    let env = TestEnv::new();
    for limit in ["-1", "1.0000000001", "abc", "", "9007199.254740992", "1e3"] {
        let (status, _) = put_limit(&env, "team", limit).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "limit {limit:?}");
    }
}

#[tokio::test]
async fn numeric_limit_is_a_bad_request() {
    let env = TestEnv::new();
    let body = json!({ "limit_usd": 25.0 });
    let (status, _) = env
        .send(
            Method::PUT,
            "/admin/budgets/team",
            Some(body),
            Some(TEST_TOKEN),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn invalid_budget_name_is_a_bad_request() {
    let env = TestEnv::new();
    assert_eq!(
        put_limit(&env, "a%7Bb", "1").await.0,
        StatusCode::BAD_REQUEST
    );
}
