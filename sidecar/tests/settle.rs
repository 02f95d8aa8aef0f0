//! Settle calls through the router against a real redis-server.
//!
//! gpt-4o in the shipped pricing costs 2_500 nano-dollars per uncached prompt token, 1_250 per
//! cached prompt token and 10_000 per output token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{reserve_request, settle_request, TestEnv};
use spendfuse_protocol::{ReserveResponse, SettleResponse};
use spendfuse_sidecar::pricing::Pricing;

/// Pricing in which gpt-4o-mini costs 1_500 pico-dollars per token, so that a single token
/// costs a fraction of a nano-dollar.
const FRACTIONAL_PRICING: &str = "checked = \"2026-01-01\"\n\
    [models.\"gpt-4o-mini\"]\ninput = \"0.0015\"\noutput = \"0.0015\"\n";

/// Reserves 100 prompt and 500 output tokens of gpt-4o on budget `team` with `limit`, and
/// returns the reservation id.
async fn reserve_team(env: &TestEnv, limit: u64) -> String {
    env.create_budget("team", limit).await;
    env.reserve_granted(&reserve_request("team", "gpt-4o", 100, 500, 16))
        .await
}

#[tokio::test]
async fn settle_charges_the_actual_cost() {
    let env = TestEnv::new();
    let id = reserve_team(&env, 1_000_000_000).await;
    let settled = env
        .settle(&settle_request("team", "gpt-4o", &id, 100, 0, 40))
        .await;
    assert_eq!(settled.charged_nano_usd, 100 * 2_500 + 40 * 10_000);
}

#[tokio::test]
async fn settle_prices_cached_tokens_at_the_cached_rate() {
    let env = TestEnv::new();
    let id = reserve_team(&env, 1_000_000_000).await;
    let settled = env
        .settle(&settle_request("team", "gpt-4o", &id, 100, 60, 0))
        .await;
    assert_eq!(settled.charged_nano_usd, 40 * 2_500 + 60 * 1_250);
}

#[tokio::test]
async fn settle_releases_the_whole_hold() {
    let env = TestEnv::new();
    let id = reserve_team(&env, 1_000_000_000).await;
    let settled = env
        .settle(&settle_request("team", "gpt-4o", &id, 100, 0, 40))
        .await;
    assert_eq!(settled.released_nano_usd, 100 * 2_500 + 500 * 10_000);
}

#[tokio::test]
async fn settle_moves_the_charge_from_reserved_to_spent() {
    let env = TestEnv::new();
    let id = reserve_team(&env, 1_000_000_000).await;
    env.settle(&settle_request("team", "gpt-4o", &id, 100, 0, 40))
        .await;
    let state = env.budget_state("team").await;
    assert_eq!((state.spent_nano, state.reserved_nano), (650_000, 0));
}

#[tokio::test]
async fn settle_rounds_up_once_per_request() {
    // 1 prompt and 1 output token at 1_500 pico each: 3_000 pico is 3 nano. Rounding each
    // part on its own would charge 2 + 2 = 4.
    let env = TestEnv::with_pricing(FRACTIONAL_PRICING);
    env.create_budget("team", 1_000_000).await;
    let id = env
        .reserve_granted(&reserve_request("team", "gpt-4o-mini", 1, 10, 1))
        .await;
    let settled = env
        .settle(&settle_request("team", "gpt-4o-mini", &id, 1, 0, 1))
        .await;
    assert_eq!(settled.charged_nano_usd, 3);
}

#[tokio::test]
async fn settle_rounds_a_fraction_up() {
    let env = TestEnv::with_pricing(FRACTIONAL_PRICING);
    env.create_budget("team", 1_000_000).await;
    let id = env
        .reserve_granted(&reserve_request("team", "gpt-4o-mini", 1, 10, 1))
        .await;
    let settled = env
        .settle(&settle_request("team", "gpt-4o-mini", &id, 1, 0, 0))
        .await;
    assert_eq!(settled.charged_nano_usd, 2);
}

#[tokio::test]
async fn repeated_settle_returns_the_first_numbers() {
    let env = TestEnv::new();
    let id = reserve_team(&env, 1_000_000_000).await;
    let first = env
        .settle(&settle_request("team", "gpt-4o", &id, 100, 0, 40))
        .await;
    let second = env
        .settle(&settle_request("team", "gpt-4o", &id, 100, 0, 400))
        .await;
    assert_eq!(
        second,
        SettleResponse {
            already_settled: true,
            ..first
        }
    );
}

#[tokio::test]
async fn first_settle_is_not_marked_repeated() {
    let env = TestEnv::new();
    let id = reserve_team(&env, 1_000_000_000).await;
    let first = env
        .settle(&settle_request("team", "gpt-4o", &id, 100, 0, 40))
        .await;
    assert!(!first.already_settled);
}

#[tokio::test]
async fn repeated_settle_changes_nothing() {
    let env = TestEnv::new();
    let id = reserve_team(&env, 1_000_000_000).await;
    env.settle(&settle_request("team", "gpt-4o", &id, 100, 0, 40))
        .await;
    let before = env.budget_state("team").await;
    env.settle(&settle_request("team", "gpt-4o", &id, 100, 0, 400))
        .await;
    assert_eq!(env.budget_state("team").await, before);
}

#[tokio::test]
async fn expired_lease_is_released_by_the_next_read() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    let mut request = reserve_request("team", "gpt-4o", 100, 500, 16);
    request.lease_ms = 200;
    env.reserve_granted(&request).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(env.budget_state("team").await.reserved_nano, 0);
}

#[tokio::test]
async fn expired_lease_is_released_by_the_next_reserve() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    let mut request = reserve_request("team", "gpt-4o", 100, 500, 16);
    request.lease_ms = 200;
    env.reserve_granted(&request).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let remaining = match env
        .reserve(&reserve_request("team", "gpt-4o", 0, 1, 1))
        .await
    {
        ReserveResponse::Granted(grant) => Some(grant.remaining_nano_usd),
        _ => None,
    };
    assert_eq!(remaining, Some(1_000_000_000 - 10_000));
}

#[tokio::test]
async fn live_lease_is_not_released_early() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    env.reserve_granted(&reserve_request("team", "gpt-4o", 100, 500, 16))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(env.budget_state("team").await.reserved_nano, 5_250_000);
}

#[tokio::test]
async fn settle_after_expiry_charges_the_actual_cost_once() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    let mut request = reserve_request("team", "gpt-4o", 100, 500, 16);
    request.lease_ms = 200;
    let id = env.reserve_granted(&request).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    env.budget_state("team").await;
    env.settle(&settle_request("team", "gpt-4o", &id, 100, 0, 40))
        .await;
    env.settle(&settle_request("team", "gpt-4o", &id, 100, 0, 40))
        .await;
    let state = env.budget_state("team").await;
    assert_eq!((state.spent_nano, state.reserved_nano), (650_000, 0));
}

#[tokio::test]
async fn settle_after_expiry_releases_nothing_more() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    let mut request = reserve_request("team", "gpt-4o", 100, 500, 16);
    request.lease_ms = 200;
    let id = env.reserve_granted(&request).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    env.budget_state("team").await;
    let settled = env
        .settle(&settle_request("team", "gpt-4o", &id, 100, 0, 40))
        .await;
    assert_eq!(settled.released_nano_usd, 0);
}

#[tokio::test]
async fn settle_releases_unreleased_expired_lease() {
    // No reserve or read ran since the lease passed, so the hold is still counted: the settle
    // releases it and charges once.
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    let mut request = reserve_request("team", "gpt-4o", 100, 500, 16);
    request.lease_ms = 200;
    let id = env.reserve_granted(&request).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    env.settle(&settle_request("team", "gpt-4o", &id, 100, 0, 40))
        .await;
    let state = env.budget_state("team").await;
    assert_eq!((state.spent_nano, state.reserved_nano), (650_000, 0));
}

#[tokio::test]
async fn overrun_is_clamped_so_spent_stays_within_limit() {
    let env = TestEnv::new();
    let id = reserve_team(&env, 6_000_000).await;
    // 100 prompt and 5_000 output tokens cost 50_250_000, far above the limit.
    env.settle(&settle_request("team", "gpt-4o", &id, 100, 0, 5_000))
        .await;
    assert_eq!(env.budget_state("team").await.spent_nano, 6_000_000);
}

#[tokio::test]
async fn overrun_is_reported_and_recorded() {
    let env = TestEnv::new();
    let id = reserve_team(&env, 6_000_000).await;
    let settled = env
        .settle(&settle_request("team", "gpt-4o", &id, 100, 0, 5_000))
        .await;
    let state = env.budget_state("team").await;
    assert_eq!(
        (settled.overrun_nano_usd, state.overrun_nano),
        (44_250_000, 44_250_000)
    );
}

#[tokio::test]
async fn overrun_leaves_room_of_other_holds() {
    let env = TestEnv::new();
    // Two holds of 5_250_000 each fill the budget. The first settles far above its hold.
    let id = reserve_team(&env, 10_500_000).await;
    env.reserve_granted(&reserve_request("team", "gpt-4o", 100, 500, 16))
        .await;
    let settled = env
        .settle(&settle_request("team", "gpt-4o", &id, 100, 0, 5_000))
        .await;
    assert_eq!(settled.charged_nano_usd, 5_250_000);
}

#[tokio::test]
async fn unknown_reservation_is_not_found() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    let request = settle_request(
        "team",
        "gpt-4o",
        "0123456789abcdef0123456789abcdef",
        1,
        0,
        1,
    );
    assert_eq!(env.settle_raw(&request).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn reservation_of_another_budget_is_not_found() {
    let env = TestEnv::new();
    let id = reserve_team(&env, 1_000_000_000).await;
    env.create_budget("other", 1_000_000_000).await;
    let request = settle_request("other", "gpt-4o", &id, 1, 0, 1);
    assert_eq!(env.settle_raw(&request).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cached_above_prompt_is_bad_request() {
    let env = TestEnv::new();
    let id = reserve_team(&env, 1_000_000_000).await;
    let request = settle_request("team", "gpt-4o", &id, 10, 11, 1);
    assert_eq!(env.settle_raw(&request).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn reservation_id_with_brace_is_bad_request() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    let request = settle_request("team", "gpt-4o", "abc}def", 1, 0, 1);
    assert_eq!(env.settle_raw(&request).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn model_priced_out_after_reserve_charges_the_hold() {
    let env = TestEnv::new();
    let id = reserve_team(&env, 1_000_000_000).await;
    let without_gpt_4o =
        "checked = \"2026-01-01\"\n[models.\"gpt-4\"]\ninput = \"30\"\noutput = \"60\"\n";
    env.state
        .pricing
        .replace(Pricing::from_toml(without_gpt_4o).unwrap());
    let settled = env
        .settle(&settle_request("team", "gpt-4o", &id, 100, 0, 40))
        .await;
    assert_eq!(settled.charged_nano_usd, 100 * 2_500 + 500 * 10_000);
}

#[tokio::test]
async fn reservation_source_charges_the_hold() {
    let env = TestEnv::new();
    let id = reserve_team(&env, 1_000_000_000).await;
    let mut request = settle_request("team", "gpt-4o", &id, 1, 0, 1);
    request.source = spendfuse_protocol::UsageSource::Reservation;
    let settled = env.settle(&request).await;
    assert_eq!(settled.charged_nano_usd, 100 * 2_500 + 500 * 10_000);
}

/// Replaces the prices with one free model, `free-model`.
fn price_free_model(env: &TestEnv) {
    let free = "checked = \"2026-01-01\"\n[models.\"free-model\"]\ninput = \"0\"\noutput = \"0\"\n";
    env.state.pricing.replace(Pricing::from_toml(free).unwrap());
}

#[tokio::test]
async fn expired_free_hold_keeps_budget_usable() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    price_free_model(&env);
    let mut request = reserve_request("team", "free-model", 100, 500, 16);
    request.lease_ms = 200;
    env.reserve_granted(&request).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let next = env
        .reserve(&reserve_request("team", "free-model", 1, 1, 1))
        .await;
    assert!(matches!(next, ReserveResponse::Granted(_)), "{next:?}");
}

#[tokio::test]
async fn free_hold_settles() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    price_free_model(&env);
    let id = env
        .reserve_granted(&reserve_request("team", "free-model", 100, 500, 16))
        .await;
    let settled = env
        .settle(&settle_request("team", "free-model", &id, 100, 0, 40))
        .await;
    assert_eq!(settled.charged_nano_usd, 0);
}

#[tokio::test]
async fn overrun_counts_against_a_raised_limit() {
    let env = TestEnv::new();
    let id = reserve_team(&env, 5_250_000).await;
    // 10_000 nano-dollars over the hold of 5_250_000, recorded as overrun.
    env.settle(&settle_request("team", "gpt-4o", &id, 100, 0, 501))
        .await;
    env.create_budget("team", 5_260_000).await;
    assert_eq!(env.budget_state("team").await.remaining_nano(), 0);
}

/// Returns a settle that cancels reservation `id` of budget "team" before it reached a provider.
fn cancel_request(id: &str) -> spendfuse_protocol::SettleRequest {
    let mut request = settle_request("team", "gpt-4o", id, 0, 0, 0);
    request.ending = spendfuse_protocol::Ending::NotSent;
    request
}

#[tokio::test]
async fn cancel_releases_a_hold_without_charge() {
    let env = TestEnv::new();
    let id = reserve_team(&env, 1_000_000_000).await;
    let settled = env.settle(&cancel_request(&id)).await;
    assert_eq!(settled.charged_nano_usd, 0);
    assert_eq!(env.budget_state("team").await.reserved_nano, 0);
}

#[tokio::test]
async fn cancel_before_reserve_stops_the_reserve() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    let id = "0123456789abcdef0123456789abcdef";
    env.settle(&cancel_request(id)).await;
    let mut request = reserve_request("team", "gpt-4o", 100, 500, 16);
    request.reservation_id = Some(id.to_string());
    let (status, _) = env.reserve_raw(&request).await;
    assert_ne!(status, StatusCode::OK);
    assert_eq!(env.budget_state("team").await.reserved_nano, 0);
}

#[tokio::test]
async fn caller_chosen_reservation_id_is_used() {
    let env = TestEnv::new();
    env.create_budget("team", 1_000_000_000).await;
    let mut request = reserve_request("team", "gpt-4o", 100, 500, 16);
    request.reservation_id = Some("00000000000000000000000000000abc".to_string());
    let granted = env.reserve_granted(&request).await;
    assert_eq!(granted, "00000000000000000000000000000abc");
}
