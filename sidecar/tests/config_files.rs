//! The shipped config/pricing.toml and config/budgets.toml.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{repo_file, shipped_pricing};
use spendfuse_sidecar::budgets;
use spendfuse_sidecar::pricing::{Pricing, TokenPrices};

/// Models that the shipped pricing must cover, from every provider that the filter meters.
const REQUIRED_MODELS: [&str; 45] = [
    // OpenAI chat
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-4o",
    "gpt-4o-mini",
    "o1",
    "o3",
    "o3-mini",
    "o4-mini",
    "gpt-4-turbo",
    "gpt-4",
    "gpt-3.5-turbo",
    // OpenAI audio, Responses-only and embeddings
    "gpt-audio",
    "gpt-4o-audio-preview",
    "gpt-4o-mini-audio-preview",
    "o1-pro",
    "o3-pro",
    "gpt-5-codex",
    "codex-mini-latest",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
    // Anthropic, with the names the API accepts
    "claude-opus-4-1",
    "claude-opus-4-1-20250805",
    "claude-opus-4-0",
    "claude-opus-4-20250514",
    "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929",
    "claude-sonnet-4-0",
    "claude-sonnet-4-20250514",
    "claude-3-7-sonnet-latest",
    "claude-3-7-sonnet-20250219",
    "claude-haiku-4-5",
    "claude-haiku-4-5-20251001",
    "claude-3-5-haiku-latest",
    "claude-3-5-haiku-20241022",
    // Google
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.0-flash",
    "gemini-2.0-flash-lite",
    "gemini-2.0-flash-001",
];

/// Models whose output is never billed, so that a 0 output price is right.
fn is_embedding_model(name: &str) -> bool {
    name.starts_with("text-embedding-")
}

fn base_prices(pricing: &Pricing, model: &str) -> Option<TokenPrices> {
    pricing.price(model).map(|price| price.base)
}

#[test]
fn shipped_pricing_parses() {
    assert!(Pricing::load(&repo_file("config/pricing.toml")).is_ok());
}

#[test]
fn shipped_pricing_covers_the_required_models() {
    let pricing = shipped_pricing();
    let missing: Vec<_> = REQUIRED_MODELS
        .iter()
        .filter(|model| pricing.price(model).is_none())
        .collect();
    assert!(missing.is_empty(), "models without a price: {missing:?}");
}

#[test]
fn every_shipped_model_has_an_input_price() {
    let pricing = shipped_pricing();
    let unpriced: Vec<_> = pricing
        .models()
        .filter(|(_, price)| price.base.input_pico == 0)
        .map(|(name, _)| name)
        .collect();
    assert!(unpriced.is_empty(), "models with input = 0: {unpriced:?}");
}

#[test]
fn every_generating_model_has_an_output_price() {
    let pricing = shipped_pricing();
    let unpriced: Vec<_> = pricing
        .models()
        .filter(|(name, price)| !is_embedding_model(name) && price.base.output_pico == 0)
        .map(|(name, _)| name)
        .collect();
    assert!(unpriced.is_empty(), "models with output = 0: {unpriced:?}");
}

#[test]
fn every_shipped_tier_has_a_threshold_above_zero() {
    let pricing = shipped_pricing();
    let bad: Vec<_> = pricing
        .models()
        .filter(|(_, price)| price.tiers.iter().any(|tier| tier.above_prompt_tokens == 0))
        .map(|(name, _)| name)
        .collect();
    assert!(bad.is_empty(), "models with a tier above 0 tokens: {bad:?}");
}

#[test]
fn every_shipped_tier_has_input_and_output_prices() {
    let pricing = shipped_pricing();
    let bad: Vec<_> = pricing
        .models()
        .filter(|(_, price)| {
            price
                .tiers
                .iter()
                .any(|tier| tier.prices.input_pico == 0 || tier.prices.output_pico == 0)
        })
        .map(|(name, _)| name)
        .collect();
    assert!(bad.is_empty(), "models with a tier priced at 0: {bad:?}");
}

#[test]
fn shipped_tiers_cost_more_than_their_base() {
    // Long-context prices are surcharges; a cheaper tier would hint at swapped fields.
    let pricing = shipped_pricing();
    let bad: Vec<_> = pricing
        .models()
        .filter(|(_, price)| {
            price.tiers.iter().any(|tier| {
                tier.prices.input_pico < price.base.input_pico
                    || tier.prices.output_pico < price.base.output_pico
            })
        })
        .map(|(name, _)| name)
        .collect();
    assert!(
        bad.is_empty(),
        "models with a tier cheaper than base: {bad:?}"
    );
}

#[test]
fn shipped_pricing_has_no_fallback() {
    assert!(!shipped_pricing().has_fallback());
}

#[test]
fn gpt_4o_has_list_prices() {
    let prices = base_prices(&shipped_pricing(), "gpt-4o");
    assert_eq!(
        prices.map(|p| (p.input_pico, p.cached_input_pico, p.output_pico)),
        Some((2_500_000, 1_250_000, 10_000_000))
    );
}

#[test]
fn gpt_audio_has_audio_prices() {
    let prices = base_prices(&shipped_pricing(), "gpt-audio");
    assert_eq!(
        prices.map(|p| (p.audio_input_pico, p.audio_output_pico)),
        Some((32_000_000, 64_000_000))
    );
}

#[test]
fn embeddings_have_no_output_price() {
    let prices = base_prices(&shipped_pricing(), "text-embedding-3-small");
    assert_eq!(
        prices.map(|p| (p.input_pico, p.output_pico)),
        Some((20_000, 0))
    );
}

#[test]
fn claude_sonnet_4_5_has_cache_prices() {
    let prices = base_prices(&shipped_pricing(), "claude-sonnet-4-5");
    assert_eq!(
        prices.map(|p| (
            p.cached_input_pico,
            p.cache_write_5m_pico,
            p.cache_write_1h_pico
        )),
        Some((300_000, 3_750_000, 6_000_000))
    );
}

#[test]
fn sonnet_4_5_has_long_context_tier() {
    let pricing = shipped_pricing();
    let tier = pricing
        .price("claude-sonnet-4-5")
        .and_then(|price| price.tiers.first().copied());
    assert_eq!(
        tier.map(|t| (
            t.above_prompt_tokens,
            t.prices.input_pico,
            t.prices.output_pico
        )),
        Some((200_000, 6_000_000, 22_500_000))
    );
}

#[test]
fn sonnet_4_shares_the_4_5_tier() {
    let pricing = shipped_pricing();
    let tiers = |model: &str| pricing.price(model).map(|price| price.tiers.clone());
    assert_eq!(tiers("claude-sonnet-4"), tiers("claude-sonnet-4-5"));
}

#[test]
fn gemini_pro_has_long_context_tier() {
    let pricing = shipped_pricing();
    let tier = pricing
        .price("gemini-2.5-pro")
        .and_then(|price| price.tiers.first().copied());
    assert_eq!(
        tier.map(|t| (
            t.above_prompt_tokens,
            t.prices.input_pico,
            t.prices.cached_input_pico,
            t.prices.output_pico
        )),
        Some((200_000, 2_500_000, 250_000, 15_000_000))
    );
}

#[test]
fn gemini_flash_has_cache_and_audio_prices() {
    let prices = base_prices(&shipped_pricing(), "gemini-2.5-flash");
    assert_eq!(
        prices.map(|p| (p.cached_input_pico, p.audio_input_pico)),
        Some((30_000, 1_000_000))
    );
}

#[test]
fn dated_snapshot_resolves_to_its_model() {
    let pricing = shipped_pricing();
    assert_eq!(
        pricing.price("gpt-4o-mini-2024-07-18"),
        pricing.price("gpt-4o-mini")
    );
}

#[test]
fn compact_dated_snapshot_resolves_to_its_model() {
    let pricing = shipped_pricing();
    assert_eq!(pricing.price("gpt-4.1-20250414"), pricing.price("gpt-4.1"));
}

#[test]
fn first_gpt_4o_snapshot_keeps_its_own_price() {
    let input = base_prices(&shipped_pricing(), "gpt-4o-2024-05-13").map(|p| p.input_pico);
    assert_eq!(input, Some(5_000_000));
}

#[test]
fn four_digit_snapshot_alias_resolves() {
    let pricing = shipped_pricing();
    assert_eq!(pricing.price("gpt-4-0613"), pricing.price("gpt-4"));
}

#[test]
fn dated_claude_name_resolves_to_its_family() {
    let pricing = shipped_pricing();
    assert_eq!(
        pricing.price("claude-sonnet-4-5-20250929"),
        pricing.price("claude-sonnet-4-5")
    );
}

#[test]
fn latest_claude_alias_resolves_to_its_family() {
    let pricing = shipped_pricing();
    assert_eq!(
        pricing.price("claude-3-7-sonnet-latest"),
        pricing.price("claude-3-7-sonnet")
    );
}

#[test]
fn claude_zero_alias_resolves_to_its_family() {
    let pricing = shipped_pricing();
    assert_eq!(
        pricing.price("claude-sonnet-4-0"),
        pricing.price("claude-sonnet-4")
    );
}

#[test]
fn versioned_gemini_name_resolves_to_its_family() {
    let pricing = shipped_pricing();
    assert_eq!(
        pricing.price("gemini-2.0-flash-lite-001"),
        pricing.price("gemini-2.0-flash-lite")
    );
}

#[test]
fn gemini_preview_resolves_to_its_family() {
    let pricing = shipped_pricing();
    assert_eq!(
        pricing.price("gemini-2.5-flash-preview-05-20"),
        pricing.price("gemini-2.5-flash")
    );
}

#[test]
fn gemini_preview_with_year_resolves() {
    let pricing = shipped_pricing();
    assert_eq!(
        pricing.price("gemini-2.5-flash-lite-preview-09-2025"),
        pricing.price("gemini-2.5-flash-lite")
    );
}

#[test]
fn unknown_gemini_model_has_no_price() {
    assert_eq!(shipped_pricing().price("gemini-9-ultra"), None);
}

#[test]
fn shipped_budgets_file_parses() {
    let limits = budgets::load(&repo_file("config/budgets.toml"));
    assert!(limits.is_ok_and(|limits| !limits.is_empty()));
}
