//! Prices of every token category, long-context tiers and usage checks, through the router
//! against a real redis-server.
//!
//! Usages follow the filter's normalisation of each provider's usage report. Expected charges
//! are computed by hand from the shipped prices, in pico-dollars per token (USD per million
//! tokens times 10^6), and 1 nano-dollar is 1000 pico-dollars.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::{reserve_request, settle_usage, TestEnv};
use spendfuse_protocol::{ReserveResponse, SettleResponse, Usage, NANO_USD_PER_USD};

/// Budget limit of every test: $1000, far above any charge here.
const LIMIT_NANO: u64 = 1000 * NANO_USD_PER_USD;

/// Pricing with a distinct price in every category, in pico-dollars per token: 11, 3, 13, 17,
/// 19, 23 and 29. A token priced in the wrong category changes the sum.
const EVERY_CATEGORY_PRICING: &str = r#"
checked = "2026-12-04"
[models."every-category"]
input = "0.000011"
cached_input = "0.000003"
cache_write_5m = "0.000013"
cache_write_1h = "0.000017"
audio_input = "0.000019"
output = "0.000023"
audio_output = "0.000029"
"#;

/// Reserves for `usage` on budget `team` and returns the grant's id and amount held.
async fn reserve_for(env: &TestEnv, model: &str, usage: &Usage) -> (String, u64) {
    env.create_budget("team", LIMIT_NANO).await;
    let max_output = usage.completion_tokens.max(1);
    let request = reserve_request("team", model, usage.prompt_tokens, max_output, 1);
    match env.reserve(&request).await {
        ReserveResponse::Granted(grant) => (grant.reservation_id, grant.reserved_nano_usd),
        other => panic!("expected a grant for {model}, got {other:?}"),
    }
}

/// Reserves and settles `usage` of `model` and returns the settle's response.
async fn settle(env: &TestEnv, model: &str, usage: Usage) -> SettleResponse {
    let (id, _) = reserve_for(env, model, &usage).await;
    env.settle(&settle_usage("team", model, &id, usage)).await
}

/// Returns the nano-dollars charged for `usage` of `model` at the shipped prices.
async fn shipped_charge(model: &str, usage: Usage) -> u64 {
    let env = TestEnv::new();
    settle(&env, model, usage).await.charged_nano_usd
}

/// Returns the nano-dollars held by a reserve of `model` with `prompt` prompt tokens and
/// `max_output` output tokens, at the shipped prices.
async fn shipped_hold(model: &str, prompt: u64, max_output: u64) -> u64 {
    let env = TestEnv::new();
    env.create_budget("team", LIMIT_NANO).await;
    let request = reserve_request("team", model, prompt, max_output, 1);
    match env.reserve(&request).await {
        ReserveResponse::Granted(grant) => grant.reserved_nano_usd,
        other => panic!("expected a grant for {model}, got {other:?}"),
    }
}

// Settle: one case per provider shape.

#[tokio::test]
async fn openai_chat_with_cache_and_reasoning() {
    // gpt-4o: input 2_500_000, cached 1_250_000, output 10_000_000. Reasoning is output.
    let usage = Usage {
        prompt_tokens: 1_000,
        cached_prompt_tokens: 400,
        completion_tokens: 300,
        reasoning_tokens: 200,
        ..Usage::default()
    };
    // 600 * 2_500_000 + 400 * 1_250_000 + 300 * 10_000_000 = 5_000_000_000 pico.
    assert_eq!(shipped_charge("gpt-4o", usage).await, 5_000_000);
}

#[tokio::test]
async fn openai_chat_with_audio() {
    // gpt-4o-audio-preview: text 2_500_000 in and 10_000_000 out, audio 40_000_000 in and
    // 80_000_000 out.
    let usage = Usage {
        prompt_tokens: 1_000,
        audio_prompt_tokens: 600,
        completion_tokens: 500,
        audio_completion_tokens: 400,
        ..Usage::default()
    };
    // 400 * 2_500_000 + 600 * 40_000_000 + 100 * 10_000_000 + 400 * 80_000_000
    // = 1e9 + 24e9 + 1e9 + 32e9 = 58e9 pico.
    assert_eq!(
        shipped_charge("gpt-4o-audio-preview", usage).await,
        58_000_000
    );
}

#[tokio::test]
async fn openai_responses_with_cache_and_reasoning() {
    // o3: input 2_000_000, cached 500_000, output 8_000_000.
    let usage = Usage {
        prompt_tokens: 2_000,
        cached_prompt_tokens: 1_000,
        completion_tokens: 1_000,
        reasoning_tokens: 800,
        ..Usage::default()
    };
    // 1_000 * 2_000_000 + 1_000 * 500_000 + 1_000 * 8_000_000 = 10.5e9 pico.
    assert_eq!(shipped_charge("o3", usage).await, 10_500_000);
}

#[tokio::test]
async fn anthropic_with_cache_reads_and_writes() {
    // claude-sonnet-4-5: input 3_000_000, cache read 300_000, 5m write 3_750_000, 1h write
    // 6_000_000, output 15_000_000. The prompt is input_tokens 100 + cache_read 1_000 +
    // cache_creation 2_400 (2_000 for 5 minutes, 400 for 1 hour).
    let usage = Usage {
        prompt_tokens: 3_500,
        cached_prompt_tokens: 1_000,
        cache_write_5m_tokens: 2_000,
        cache_write_1h_tokens: 400,
        completion_tokens: 250,
        ..Usage::default()
    };
    // 100 * 3e6 + 1_000 * 3e5 + 2_000 * 3.75e6 + 400 * 6e6 + 250 * 15e6
    // = 0.3e9 + 0.3e9 + 7.5e9 + 2.4e9 + 3.75e9 = 14.25e9 pico.
    assert_eq!(shipped_charge("claude-sonnet-4-5", usage).await, 14_250_000);
}

#[tokio::test]
async fn anthropic_long_context_uses_the_tier() {
    // Above 200_000 prompt tokens: input 6_000_000, cache read 600_000, 5m write 7_500_000,
    // output 22_500_000, for every token of the request.
    let usage = Usage {
        prompt_tokens: 250_000,
        cached_prompt_tokens: 100_000,
        cache_write_5m_tokens: 50_000,
        completion_tokens: 1_000,
        ..Usage::default()
    };
    // 100_000 * 6e6 + 100_000 * 6e5 + 50_000 * 7.5e6 + 1_000 * 22.5e6
    // = 600e9 + 60e9 + 375e9 + 22.5e9 = 1_057.5e9 pico.
    assert_eq!(
        shipped_charge("claude-sonnet-4-5-20250929", usage).await,
        1_057_500_000
    );
}

#[tokio::test]
async fn gemini_with_cache_and_thoughts() {
    // gemini-2.5-flash: input 300_000, cached 30_000, output 2_500_000. The prompt is
    // promptTokenCount 9_000 + toolUsePromptTokenCount 1_000, and the completion is
    // candidatesTokenCount 500 + thoughtsTokenCount 1_500.
    let usage = Usage {
        prompt_tokens: 10_000,
        cached_prompt_tokens: 4_000,
        completion_tokens: 2_000,
        reasoning_tokens: 1_500,
        ..Usage::default()
    };
    // 6_000 * 3e5 + 4_000 * 3e4 + 2_000 * 2.5e6 = 1.8e9 + 0.12e9 + 5e9 = 6.92e9 pico.
    assert_eq!(shipped_charge("gemini-2.5-flash", usage).await, 6_920_000);
}

#[tokio::test]
async fn gemini_long_context_uses_the_tier() {
    // gemini-2.5-pro above 200_000 prompt tokens: input 2_500_000, cached 250_000, output
    // 15_000_000. The -001 suffix resolves to the family.
    let usage = Usage {
        prompt_tokens: 300_000,
        cached_prompt_tokens: 100_000,
        completion_tokens: 1_000,
        ..Usage::default()
    };
    // 200_000 * 2.5e6 + 100_000 * 2.5e5 + 1_000 * 15e6 = 500e9 + 25e9 + 15e9 = 540e9 pico.
    assert_eq!(
        shipped_charge("gemini-2.5-pro-001", usage).await,
        540_000_000
    );
}

#[tokio::test]
async fn embeddings_charge_the_prompt_only() {
    // text-embedding-3-small: input 20_000, output 0.
    let usage = Usage::text(12_345, 0);
    // 12_345 * 20_000 = 246_900_000 pico.
    assert_eq!(
        shipped_charge("text-embedding-3-small", usage).await,
        246_900
    );
}

#[tokio::test]
async fn every_category_rounds_once() {
    let env = TestEnv::with_pricing(EVERY_CATEGORY_PRICING);
    let usage = Usage {
        prompt_tokens: 100,
        cached_prompt_tokens: 10,
        cache_write_5m_tokens: 20,
        cache_write_1h_tokens: 30,
        audio_prompt_tokens: 5,
        completion_tokens: 50,
        reasoning_tokens: 40,
        audio_completion_tokens: 7,
    };
    // 35 * 11 + 10 * 3 + 20 * 13 + 30 * 17 + 5 * 19 + 43 * 23 + 7 * 29 = 2_472 pico, charged
    // as 3 nano. Rounding each category on its own would charge 7.
    let settled = settle(&env, "every-category", usage).await;
    assert_eq!(settled.charged_nano_usd, 3);
}

// Tier choice at the threshold, for reserve and settle.

#[tokio::test]
async fn reserve_at_the_threshold_uses_base_prices() {
    // Base: prompt at the highest prompt price (1h write, 6_000_000), output 15_000_000.
    // 200_000 * 6e6 + 100 * 15e6 = 1_200e9 + 1.5e9 pico.
    assert_eq!(
        shipped_hold("claude-sonnet-4-5", 200_000, 100).await,
        1_201_500_000
    );
}

#[tokio::test]
async fn reserve_above_the_threshold_uses_the_tier() {
    // Tier: prompt at 12_000_000 (1h write), output 22_500_000.
    // 200_001 * 12e6 + 100 * 22.5e6 = 2_400_012e6 + 2.25e9 pico.
    assert_eq!(
        shipped_hold("claude-sonnet-4-5", 200_001, 100).await,
        2_402_262_000
    );
}

#[tokio::test]
async fn settle_at_the_threshold_uses_base_prices() {
    // 200_000 * 3e6 + 100 * 15e6 = 600e9 + 1.5e9 pico.
    let usage = Usage::text(200_000, 100);
    assert_eq!(
        shipped_charge("claude-sonnet-4-5", usage).await,
        601_500_000
    );
}

#[tokio::test]
async fn settle_above_the_threshold_uses_the_tier() {
    // 200_001 * 6e6 + 100 * 22.5e6 = 1_200_006e6 + 2.25e9 pico.
    let usage = Usage::text(200_001, 100);
    assert_eq!(
        shipped_charge("claude-sonnet-4-5", usage).await,
        1_202_256_000
    );
}

// The reserve is a worst case.

#[tokio::test]
async fn reserve_prices_the_prompt_as_audio() {
    // gpt-4o-audio-preview: 1_000 * 40e6 (audio input) + 10 * 80e6 (audio output) pico.
    assert_eq!(
        shipped_hold("gpt-4o-audio-preview", 1_000, 10).await,
        40_800_000
    );
}

#[tokio::test]
async fn reserve_prices_prompt_as_1h_write() {
    // claude-sonnet-4-5: 1_000 * 6e6 + 100 * 15e6 = 6e9 + 1.5e9 pico.
    assert_eq!(
        shipped_hold("claude-sonnet-4-5", 1_000, 100).await,
        7_500_000
    );
}

#[tokio::test]
async fn hold_covers_an_all_1h_cache_write_prompt() {
    let env = TestEnv::new();
    let usage = Usage {
        prompt_tokens: 1_000,
        cache_write_1h_tokens: 1_000,
        completion_tokens: 100,
        ..Usage::default()
    };
    let (id, held) = reserve_for(&env, "claude-sonnet-4-5", &usage).await;
    let settled = env
        .settle(&settle_usage("team", "claude-sonnet-4-5", &id, usage))
        .await;
    assert!(
        settled.charged_nano_usd <= held,
        "charged {} above the hold of {held}",
        settled.charged_nano_usd
    );
}

#[tokio::test]
async fn hold_covers_an_all_audio_request() {
    let env = TestEnv::new();
    let usage = Usage {
        prompt_tokens: 1_000,
        audio_prompt_tokens: 1_000,
        completion_tokens: 100,
        audio_completion_tokens: 100,
        ..Usage::default()
    };
    let (id, held) = reserve_for(&env, "gpt-audio", &usage).await;
    let settled = env
        .settle(&settle_usage("team", "gpt-audio", &id, usage))
        .await;
    assert!(
        settled.charged_nano_usd <= held,
        "charged {} above the hold of {held}",
        settled.charged_nano_usd
    );
}

// Usage checks.

/// Settles `usage` against a real reservation and returns the status and the error message.
async fn settle_invalid(usage: Usage) -> (StatusCode, String) {
    let env = TestEnv::new();
    let (id, _) = reserve_for(&env, "gpt-4o", &Usage::text(10, 10)).await;
    let request = settle_usage("team", "gpt-4o", &id, usage);
    let (status, body) = env.settle_raw(&request).await;
    (
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn cache_write_above_prompt_is_rejected() {
    let usage = Usage {
        prompt_tokens: 10,
        cache_write_1h_tokens: 11,
        ..Usage::default()
    };
    let (status, message) = settle_invalid(usage).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "message: {message}");
    assert!(
        message.contains("cache_write_1h_tokens"),
        "message: {message}"
    );
}

#[tokio::test]
async fn audio_prompt_above_prompt_is_rejected() {
    let usage = Usage {
        prompt_tokens: 10,
        audio_prompt_tokens: 11,
        ..Usage::default()
    };
    let (status, message) = settle_invalid(usage).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "message: {message}");
    assert!(
        message.contains("audio_prompt_tokens"),
        "message: {message}"
    );
}

#[tokio::test]
async fn input_parts_above_prompt_are_rejected() {
    let usage = Usage {
        prompt_tokens: 10,
        cached_prompt_tokens: 6,
        cache_write_5m_tokens: 5,
        ..Usage::default()
    };
    let (status, message) = settle_invalid(usage).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "message: {message}");
    assert!(
        message.contains("cached_prompt_tokens + cache_write_5m_tokens"),
        "message: {message}"
    );
}

#[tokio::test]
async fn reasoning_above_completion_is_rejected() {
    let usage = Usage {
        prompt_tokens: 10,
        completion_tokens: 5,
        reasoning_tokens: 6,
        ..Usage::default()
    };
    let (status, message) = settle_invalid(usage).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "message: {message}");
    assert!(message.contains("reasoning_tokens"), "message: {message}");
}

#[tokio::test]
async fn audio_completion_above_completion_is_rejected() {
    let usage = Usage {
        prompt_tokens: 10,
        completion_tokens: 5,
        audio_completion_tokens: 6,
        ..Usage::default()
    };
    let (status, message) = settle_invalid(usage).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "message: {message}");
    assert!(
        message.contains("audio_completion_tokens"),
        "message: {message}"
    );
}

#[tokio::test]
async fn rejected_settle_keeps_the_hold() {
    let env = TestEnv::new();
    let (id, held) = reserve_for(&env, "gpt-4o", &Usage::text(10, 10)).await;
    let usage = Usage {
        prompt_tokens: 10,
        completion_tokens: 5,
        reasoning_tokens: 6,
        ..Usage::default()
    };
    env.settle_raw(&settle_usage("team", "gpt-4o", &id, usage))
        .await;
    assert_eq!(env.budget_state("team").await.reserved_nano, held);
}
