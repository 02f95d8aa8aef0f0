//! Reserve calls through the router against a real redis-server.
//!
//! gpt-4o in the shipped pricing costs 2_500 nano-dollars per prompt token and 10_000 per
//! output token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::{reserve_request, RedisServer, TestEnv};
use spendfuse_protocol::{ReserveResponse, MAX_NANO_USD};
use spendfuse_sidecar::admin::AdminToken;
use spendfuse_sidecar::reload::SharedPricing;
use spendfuse_sidecar::store::Store;
use spendfuse_sidecar::{router, AppState};

const PROMPT_TOKEN_NANO: u64 = 2_500;
const OUTPUT_TOKEN_NANO: u64 = 10_000;

#[tokio::test]
async fn under_budget_grants_full_max() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    let response = env
        .reserve(&reserve_request("team", "gpt-4o", 100, 500, 16))
        .await;
    let granted = match response {
        ReserveResponse::Granted(grant) => Some(grant.output_tokens),
        _ => None,
    };
    assert_eq!(granted, Some(500));
}

#[tokio::test]
async fn grant_holds_prompt_and_full_output() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    env.reserve_granted(&reserve_request("team", "gpt-4o", 100, 500, 16))
        .await;
    let expected = 100 * PROMPT_TOKEN_NANO + 500 * OUTPUT_TOKEN_NANO;
    assert_eq!(env.budget_state("team").await.reserved_nano, expected);
}

#[tokio::test]
async fn grant_reports_remaining_after_hold() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    let response = env
        .reserve(&reserve_request("team", "gpt-4o", 100, 500, 16))
        .await;
    let remaining = match response {
        ReserveResponse::Granted(grant) => Some(grant.remaining_nano_usd),
        _ => None,
    };
    assert_eq!(remaining, Some(1_000_000_000 - 250_000 - 5_000_000));
}

#[tokio::test]
async fn choices_multiply_the_output_hold() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    let mut request = reserve_request("team", "gpt-4o", 0, 100, 16);
    request.choices = 3;
    env.reserve_granted(&request).await;
    assert_eq!(
        env.budget_state("team").await.reserved_nano,
        3 * 100 * OUTPUT_TOKEN_NANO
    );
}

#[tokio::test]
async fn over_budget_denies_with_limit_and_remaining() {
    let env = TestEnv::new();
    env.create_budget("team", 200_000).await;
    let response = env
        .reserve(&reserve_request("team", "gpt-4o", 100, 500, 16))
        .await;
    let denial = match response {
        ReserveResponse::Denied(denial) => Some((
            denial.limit_nano_usd,
            denial.remaining_nano_usd,
            denial.unknown_budget,
        )),
        _ => None,
    };
    assert_eq!(denial, Some((200_000, 200_000, false)));
}

#[tokio::test]
async fn denial_reports_required_amount() {
    let env = TestEnv::new();
    env.create_budget("team", 200_000).await;
    let response = env
        .reserve(&reserve_request("team", "gpt-4o", 100, 500, 16))
        .await;
    let required = match response {
        ReserveResponse::Denied(denial) => Some(denial.required_nano_usd),
        _ => None,
    };
    assert_eq!(
        required,
        Some(100 * PROMPT_TOKEN_NANO + 16 * OUTPUT_TOKEN_NANO)
    );
}

#[tokio::test]
async fn partial_budget_lowers_the_grant() {
    let env = TestEnv::new();
    // Room for the prompt and 50.5 output tokens: the grant is lowered to 50.
    env.create_budget("team", 250_000 + 505_000).await;
    let response = env
        .reserve(&reserve_request("team", "gpt-4o", 100, 100, 16))
        .await;
    let granted = match response {
        ReserveResponse::Granted(grant) => Some((grant.output_tokens, grant.reserved_nano_usd)),
        _ => None,
    };
    assert_eq!(granted, Some((50, 250_000 + 500_000)));
}

#[tokio::test]
async fn lowered_grant_counts_all_choices() {
    let env = TestEnv::new();
    // 2 choices: each output token per choice costs 20_000. Room for 30 per choice.
    env.create_budget("team", 600_000).await;
    let mut request = reserve_request("team", "gpt-4o", 0, 100, 16);
    request.choices = 2;
    let granted = match env.reserve(&request).await {
        ReserveResponse::Granted(grant) => Some(grant.output_tokens),
        _ => None,
    };
    assert_eq!(granted, Some(30));
}

#[tokio::test]
async fn fractional_price_grant_fits_room() {
    // 1_500 pico-dollars per output token: 7 tokens cost 10.5 nano, rounded up to 11. With 10
    // nano of room the grant is 6 tokens (9 nano), not 7.
    let env = TestEnv::with_pricing(
        "checked = \"2026-01-01\"\n[models.\"gpt-4o-mini\"]\ninput = \"0\"\noutput = \"0.0015\"\n",
    );
    env.create_budget("team", 10).await;
    let granted = match env
        .reserve(&reserve_request("team", "gpt-4o-mini", 0, 100, 1))
        .await
    {
        ReserveResponse::Granted(grant) => Some((grant.output_tokens, grant.reserved_nano_usd)),
        _ => None,
    };
    assert_eq!(granted, Some((6, 9)));
}

#[tokio::test]
async fn budget_below_min_output_denies() {
    let env = TestEnv::new();
    // Room for the prompt and 10 output tokens, but the request needs 16.
    env.create_budget("team", 250_000 + 100_000).await;
    let response = env
        .reserve(&reserve_request("team", "gpt-4o", 100, 500, 16))
        .await;
    assert!(
        matches!(response, ReserveResponse::Denied(_)),
        "got {response:?}"
    );
}

#[tokio::test]
async fn denial_leaves_budget_untouched() {
    let env = TestEnv::new();
    env.create_budget("team", 100_000).await;
    env.reserve(&reserve_request("team", "gpt-4o", 100, 500, 16))
        .await;
    assert_eq!(env.budget_state("team").await.reserved_nano, 0);
}

#[tokio::test]
async fn unknown_budget_is_denied() {
    let env = TestEnv::new();
    let response = env
        .reserve(&reserve_request("nobody", "gpt-4o", 10, 10, 1))
        .await;
    let unknown = match response {
        ReserveResponse::Denied(denial) => Some((denial.unknown_budget, denial.limit_nano_usd)),
        _ => None,
    };
    assert_eq!(unknown, Some((true, 0)));
}

#[tokio::test]
async fn unknown_model_is_rejected() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    let response = env
        .reserve(&reserve_request("team", "gpt-9-ultra", 10, 10, 1))
        .await;
    let code = match &response {
        ReserveResponse::Rejected(rejection) => Some(rejection.code.as_str()),
        _ => None,
    };
    assert_eq!(code, Some("unknown_model"));
}

#[tokio::test]
async fn rejection_message_names_the_model_and_the_fix() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    let response = env
        .reserve(&reserve_request("team", "gpt-9-ultra", 10, 10, 1))
        .await;
    let message = match response {
        ReserveResponse::Rejected(rejection) => rejection.message,
        other => panic!("expected a rejection, got {other:?}"),
    };
    assert!(
        message.contains("gpt-9-ultra") && message.contains("pricing file"),
        "message was {message:?}"
    );
}

#[tokio::test]
async fn dated_model_name_uses_the_base_price() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    env.reserve_granted(&reserve_request("team", "gpt-4o-2024-08-06", 100, 500, 16))
        .await;
    let expected = 100 * PROMPT_TOKEN_NANO + 500 * OUTPUT_TOKEN_NANO;
    assert_eq!(env.budget_state("team").await.reserved_nano, expected);
}

#[tokio::test]
async fn fallback_price_is_used_for_unlisted_models() {
    let env = TestEnv::with_pricing(
        "checked = \"2026-01-01\"\n\
         [models.\"gpt-4o\"]\ninput = \"2.50\"\noutput = \"10.00\"\n\
         [fallback]\ninput = \"30.00\"\noutput = \"60.00\"\n",
    );
    env.create_budget("team", 1_000_000_000).await;
    env.reserve_granted(&reserve_request("team", "gpt-4.5-preview", 10, 10, 1))
        .await;
    // 10 * 30_000 + 10 * 60_000 nano-dollars.
    assert_eq!(env.budget_state("team").await.reserved_nano, 900_000);
}

#[tokio::test]
async fn min_above_max_is_treated_as_max() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    let response = env
        .reserve(&reserve_request("team", "gpt-4o", 10, 8, 16))
        .await;
    let granted = match response {
        ReserveResponse::Granted(grant) => Some(grant.output_tokens),
        _ => None,
    };
    assert_eq!(granted, Some(8));
}

#[tokio::test]
async fn zero_choices_is_bad_request() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    let mut request = reserve_request("team", "gpt-4o", 10, 10, 1);
    request.choices = 0;
    assert_eq!(env.reserve_raw(&request).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn count_above_two_pow_53_is_bad_request() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    let request = reserve_request("team", "gpt-4o", MAX_NANO_USD + 1, 10, 1);
    assert_eq!(env.reserve_raw(&request).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn huge_worst_case_is_bad_request() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    let request = reserve_request("team", "gpt-4o", 0, MAX_NANO_USD, 1);
    assert_eq!(env.reserve_raw(&request).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn zero_lease_is_bad_request() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    let mut request = reserve_request("team", "gpt-4o", 10, 10, 1);
    request.lease_ms = 0;
    assert_eq!(env.reserve_raw(&request).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn budget_name_with_brace_is_bad_request() {
    let env = TestEnv::new();
    let request = reserve_request("team}x", "gpt-4o", 10, 10, 1);
    assert_eq!(env.reserve_raw(&request).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn missing_field_is_bad_request_with_json_error() {
    let env = TestEnv::new();
    let body = serde_json::json!({"budget": "team", "model": "gpt-4o"});
    let (status, answer) = env
        .send(axum::http::Method::POST, "/v1/reserve", Some(body), None)
        .await;
    assert_eq!(
        (status, answer["error"].is_string()),
        (StatusCode::BAD_REQUEST, true)
    );
}

#[tokio::test]
async fn redis_down_is_service_unavailable() {
    let mut redis = RedisServer::start();
    let store = Store::open(&redis.url()).unwrap();
    redis.stop();
    let state = AppState {
        store,
        pricing: SharedPricing::new(common::shipped_pricing()),
        admin_token: AdminToken::disabled(),
        metrics: Default::default(),
        alerts: Default::default(),
    };
    let body = serde_json::to_value(reserve_request("team", "gpt-4o", 10, 10, 1)).unwrap();
    let (status, _) = common::send(
        &router(state),
        axum::http::Method::POST,
        "/v1/reserve",
        Some(body),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}
