//! The shipped config/pricing.toml and config/budgets.toml.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{repo_file, shipped_pricing};
use spendfuse_sidecar::budgets;

/// OpenAI chat models that the shipped pricing must cover.
const REQUIRED_MODELS: [&str; 15] = [
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
];

#[test]
fn shipped_pricing_parses() {
    assert!(spendfuse_sidecar::pricing::Pricing::load(&repo_file("config/pricing.toml")).is_ok());
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
fn every_shipped_model_has_input_and_output_prices() {
    let pricing = shipped_pricing();
    let unpriced: Vec<_> = pricing
        .models()
        .filter(|(_, price)| price.input_pico == 0 || price.output_pico == 0)
        .map(|(name, _)| name)
        .collect();
    assert!(
        unpriced.is_empty(),
        "models with a zero price: {unpriced:?}"
    );
}

#[test]
fn shipped_pricing_has_no_fallback() {
    assert!(!shipped_pricing().has_fallback());
}

#[test]
fn gpt_4o_has_list_prices() {
    let price = shipped_pricing().price("gpt-4o").copied();
    assert_eq!(
        price.map(|p| (p.input_pico, p.output_pico)),
        Some((2_500_000, 10_000_000))
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
    let price = shipped_pricing().price("gpt-4o-2024-05-13").copied();
    assert_eq!(price.map(|p| p.input_pico), Some(5_000_000));
}

#[test]
fn four_digit_snapshot_alias_resolves() {
    let pricing = shipped_pricing();
    assert_eq!(pricing.price("gpt-4-0613"), pricing.price("gpt-4"));
}

#[test]
fn shipped_budgets_file_parses() {
    let limits = budgets::load(&repo_file("config/budgets.toml"));
    assert!(limits.is_ok_and(|limits| !limits.is_empty()));
}
