//! Prices from `config/pricing.toml` and the costs the tests expect, computed independently of
//! the sidecar's code.
//!
//! The file gives USD per million tokens as decimal strings under `[models."NAME"]`: `input`
//! and `output`, and the optional `cached_input`, `cache_write_5m`, `cache_write_1h` and
//! `audio_input` (each defaulting to `input`) and `audio_output` (defaulting to `output`).
//! `[[models."NAME".tiers]]` add long-context prices, which apply to a whole request whose prompt
//! is above the tier's `above_prompt_tokens`. A tier's optional prices default from the tier's
//! own `input` and `output`. `[aliases]` maps a name to a model, `[fallback]` prices every
//! other model. A price is kept as an integer number of pico-dollars per token, which equals
//! micro-dollars per million tokens: "0.15" is 150_000.

use crate::error::{Error, Result};
use crate::usage::Usage;
use std::collections::BTreeMap;
use std::path::Path;

/// Pico-dollars in one nano-dollar.
const PICO_PER_NANO: u128 = 1_000;

/// Decimal places of a price in USD per million tokens that fit the pico-dollar unit.
const PRICE_DECIMALS: usize = 6;

/// The prices of every token category, in pico-dollars per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prices {
    /// Text input that no cache served or stored.
    pub input: u64,
    /// Input read from the provider's cache.
    pub cached_input: u64,
    /// Input written to a 5-minute cache.
    pub cache_write_5m: u64,
    /// Input written to a 1-hour cache.
    pub cache_write_1h: u64,
    /// Input audio.
    pub audio_input: u64,
    /// Text output, reasoning included.
    pub output: u64,
    /// Output audio.
    pub audio_output: u64,
}

impl Prices {
    /// Returns prices with only `input` and `output` set; every other price takes its default.
    pub fn text(input: u64, output: u64) -> Prices {
        Prices {
            input,
            cached_input: input,
            cache_write_5m: input,
            cache_write_1h: input,
            audio_input: input,
            output,
            audio_output: output,
        }
    }

    /// Price of one prompt token in a reservation: the highest input price, because the filter
    /// cannot tell cache, audio and text tokens apart before the request.
    pub fn reserve_input(&self) -> u64 {
        self.input
            .max(self.cache_write_5m)
            .max(self.cache_write_1h)
            .max(self.audio_input)
    }

    /// Price of one output token in a reservation: the higher output price.
    pub fn reserve_output(&self) -> u64 {
        self.output.max(self.audio_output)
    }
}

/// A long-context tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    /// The tier prices requests with more prompt tokens than this.
    pub above_prompt_tokens: u64,
    /// Its prices.
    pub prices: Prices,
}

/// Prices of one model, with its long-context tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    /// Prices below every tier.
    pub base: Prices,
    /// Tiers, in any order.
    pub tiers: Vec<Tier>,
}

impl ModelPrice {
    /// Returns a model with text prices only and no tiers.
    pub fn text(input: u64, output: u64) -> ModelPrice {
        ModelPrice {
            base: Prices::text(input, output),
            tiers: Vec::new(),
        }
    }

    /// Returns the prices for a request of `prompt_tokens`: the tier with the highest threshold
    /// below it, or the base prices.
    pub fn prices_for(&self, prompt_tokens: u64) -> &Prices {
        self.tiers
            .iter()
            .filter(|tier| tier.above_prompt_tokens < prompt_tokens)
            .max_by_key(|tier| tier.above_prompt_tokens)
            .map_or(&self.base, |tier| &tier.prices)
    }

    /// Returns the charge in nano-dollars for a finished request: each part of `usage` at its
    /// own price, the sum in pico-dollars rounded up to whole nano-dollars once. Fails on a
    /// usage whose parts add up to more than their total.
    pub fn settle_cost_nano(&self, usage: &Usage) -> std::result::Result<u64, String> {
        let invalid = || format!("invalid usage, parts above their total: {usage:?}");
        let text_in = usage.text_prompt_tokens().ok_or_else(invalid)?;
        let text_out = usage.text_completion_tokens().ok_or_else(invalid)?;
        let prices = self.prices_for(usage.prompt_tokens);
        let terms = [
            (text_in, prices.input),
            (usage.cached_prompt_tokens, prices.cached_input),
            (usage.cache_write_5m_tokens, prices.cache_write_5m),
            (usage.cache_write_1h_tokens, prices.cache_write_1h),
            (usage.audio_prompt_tokens, prices.audio_input),
            (text_out, prices.output),
            (usage.audio_completion_tokens, prices.audio_output),
        ];
        let pico: u128 = terms
            .iter()
            .map(|(tokens, price)| u128::from(*tokens) * u128::from(*price))
            .sum();
        Ok(pico_to_nano_ceil(pico))
    }

    /// Returns the charge in nano-dollars for text tokens only: `cached_tokens` of the prompt
    /// from the cache, `completion` of output.
    pub fn usage_cost_nano(&self, prompt_tokens: u64, cached_tokens: u64, completion: u64) -> u64 {
        let usage = Usage {
            cached_prompt_tokens: cached_tokens.min(prompt_tokens),
            ..Usage::text(prompt_tokens, completion)
        };
        self.settle_cost_nano(&usage).unwrap_or(u64::MAX)
    }

    /// Returns the worst-case hold in nano-dollars for a request, at the prices of the tier that
    /// the prompt selects. The prompt costs the highest input price and the output of every
    /// choice the highest output price, each rounded up to whole nano-dollars on its own.
    pub fn reserve_cost_nano(&self, prompt_tokens: u64, max_output: u64, choices: u64) -> u64 {
        let prices = self.prices_for(prompt_tokens);
        let prompt_pico = u128::from(prompt_tokens) * u128::from(prices.reserve_input());
        let output_pico =
            u128::from(max_output) * u128::from(choices) * u128::from(prices.reserve_output());
        pico_to_nano_ceil(prompt_pico) + pico_to_nano_ceil(output_pico)
    }

    /// Returns the cost in nano-dollars of a prompt alone in a reservation, rounded up.
    pub fn prompt_cost_nano(&self, prompt_tokens: u64) -> u64 {
        self.reserve_cost_nano(prompt_tokens, 0, 1)
    }

    /// Returns the prompt sizes whose reservation, with `max_output` tokens for each of
    /// `choices`, is exactly `reserved` nano-dollars, searched up to `limit` prompt tokens, or
    /// `None` when there is none. A price below a nano-dollar per token gives several.
    pub fn prompts_reserving(
        &self,
        reserved: u64,
        max_output: u64,
        choices: u64,
        limit: u64,
    ) -> Option<std::ops::RangeInclusive<u64>> {
        let cost = |prompt| self.reserve_cost_nano(prompt, max_output, choices);
        let first = partition_point(limit, |prompt| cost(prompt) < reserved);
        let end = partition_point(limit, |prompt| cost(prompt) <= reserved);
        (first < end).then(|| first..=end - 1)
    }
}

/// Returns the first number in `0..=limit` for which `before` is false, or `limit + 1` when it
/// is true everywhere. `before` must be true up to some point and false after it.
fn partition_point(limit: u64, before: impl Fn(u64) -> bool) -> u64 {
    let (mut low, mut high) = (0, limit + 1);
    while low < high {
        let middle = low + (high - low) / 2;
        if before(middle) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

fn pico_to_nano_ceil(pico: u128) -> u64 {
    let nano = pico.div_ceil(PICO_PER_NANO);
    u64::try_from(nano).unwrap_or(u64::MAX)
}

/// Model prices read from a pricing file.
#[derive(Debug, Clone, Default)]
pub struct Pricing {
    models: BTreeMap<String, ModelPrice>,
    aliases: BTreeMap<String, String>,
    fallback: Option<ModelPrice>,
}

impl Pricing {
    /// Reads and parses the pricing file at `path`.
    pub fn load(path: &Path) -> Result<Pricing> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| Error::io(format!("reading {}", path.display()), error))?;
        Pricing::parse(&text)
            .map_err(|detail| Error::Invalid(format!("{}: {detail}", path.display())))
    }

    /// Parses the text of a pricing file.
    pub fn parse(text: &str) -> std::result::Result<Pricing, String> {
        let document: toml::Table = text
            .parse()
            .map_err(|error| format!("invalid TOML: {error}"))?;
        let mut pricing = Pricing::default();
        if let Some(models) = document.get("models").and_then(toml::Value::as_table) {
            for (name, entry) in models {
                let place = format!("models.\"{name}\"");
                pricing
                    .models
                    .insert(name.clone(), parse_model(&place, entry)?);
            }
        }
        if let Some(aliases) = document.get("aliases").and_then(toml::Value::as_table) {
            for (alias, target) in aliases {
                let target = target
                    .as_str()
                    .ok_or_else(|| format!("alias {alias} must name a model as a string"))?;
                pricing.aliases.insert(alias.clone(), target.to_owned());
            }
        }
        if let Some(fallback) = document.get("fallback") {
            pricing.fallback = Some(parse_model("fallback", fallback)?);
        }
        Ok(pricing)
    }

    /// Returns the prices of `model`: its own entry, an alias, the name without a snapshot
    /// suffix as a model or an alias, then the fallback.
    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        let direct = |name: &str| {
            self.models.get(name).or_else(|| {
                let target = self.aliases.get(name)?;
                self.models.get(target)
            })
        };
        direct(model)
            .or_else(|| without_snapshot_suffix(model).and_then(direct))
            .or(self.fallback.as_ref())
    }

    /// Returns the prices of `model`, or an error naming the model and the file to change.
    pub fn require(&self, model: &str) -> Result<ModelPrice> {
        self.price(model).cloned().ok_or_else(|| {
            Error::Invalid(format!(
                "model {model} has no price: add it to config/pricing.toml"
            ))
        })
    }
}

/// Returns `model` without a snapshot suffix: a date (`-2024-08-06`, `-20250929`), a
/// three-digit version (`-001`) or a dated preview (`-preview-05-20`, `-preview-09-2025`).
pub fn without_snapshot_suffix(model: &str) -> Option<&str> {
    let digits = |text: &str, count: usize| {
        text.len() == count && text.bytes().all(|byte| byte.is_ascii_digit())
    };
    let parts: Vec<&str> = model.rsplitn(4, '-').collect();
    let strip = |pieces: usize| {
        let suffix: usize = parts[..pieces].iter().map(|part| part.len() + 1).sum();
        Some(&model[..model.len() - suffix])
    };
    match parts.as_slice() {
        [day, month, year, _] if digits(year, 4) && digits(month, 2) && digits(day, 2) => strip(3),
        [day, month, "preview", _] if digits(month, 2) && (digits(day, 2) || digits(day, 4)) => {
            strip(3)
        }
        [date, ..] if digits(date, 8) => strip(1),
        [version, _, ..] if digits(version, 3) => strip(1),
        _ => None,
    }
}

fn parse_model(place: &str, entry: &toml::Value) -> std::result::Result<ModelPrice, String> {
    let base = parse_prices(place, entry)?;
    let mut tiers = Vec::new();
    if let Some(list) = entry.get("tiers") {
        let list = list
            .as_array()
            .ok_or_else(|| format!("{place}.tiers must be an array of tables"))?;
        for (index, tier) in list.iter().enumerate() {
            let tier_place = format!("{place}.tiers[{index}]");
            let above = tier
                .get("above_prompt_tokens")
                .and_then(toml::Value::as_integer)
                .and_then(|above| u64::try_from(above).ok())
                .ok_or_else(|| {
                    format!("{tier_place}.above_prompt_tokens must be a non-negative integer")
                })?;
            tiers.push(Tier {
                above_prompt_tokens: above,
                prices: parse_prices(&tier_place, tier)?,
            });
        }
    }
    Ok(ModelPrice { base, tiers })
}

fn parse_prices(place: &str, entry: &toml::Value) -> std::result::Result<Prices, String> {
    let field = |key: &str| -> std::result::Result<Option<u64>, String> {
        match entry.get(key) {
            None => Ok(None),
            Some(toml::Value::String(text)) => parse_usd_per_million(text)
                .map(Some)
                .map_err(|detail| format!("{place}.{key}: {detail}")),
            Some(other) => Err(format!(
                "{place}.{key} must be a decimal string such as \"2.50\", found {other}"
            )),
        }
    };
    let input = field("input")?.ok_or_else(|| format!("{place} has no input price"))?;
    let output = field("output")?.ok_or_else(|| format!("{place} has no output price"))?;
    Ok(Prices {
        input,
        cached_input: field("cached_input")?.unwrap_or(input),
        cache_write_5m: field("cache_write_5m")?.unwrap_or(input),
        cache_write_1h: field("cache_write_1h")?.unwrap_or(input),
        audio_input: field("audio_input")?.unwrap_or(input),
        output,
        audio_output: field("audio_output")?.unwrap_or(output),
    })
}

/// Parses a decimal USD-per-million-tokens string into pico-dollars per token.
pub fn parse_usd_per_million(text: &str) -> std::result::Result<u64, String> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return Err(format!(
            "invalid price {text:?}: expected digits such as \"2.50\""
        ));
    }
    if fraction.len() > PRICE_DECIMALS {
        return Err(format!(
            "invalid price {text:?}: at most {PRICE_DECIMALS} decimal places"
        ));
    }
    let padded = format!("{fraction:0<width$}", width = PRICE_DECIMALS);
    let whole: u64 = whole
        .parse()
        .map_err(|_| format!("price {text:?} is too large"))?;
    let fraction: u64 = padded
        .parse()
        .map_err(|_| format!("invalid price {text:?}"))?;
    whole
        .checked_mul(1_000_000)
        .and_then(|micro| micro.checked_add(fraction))
        .ok_or_else(|| format!("price {text:?} is too large"))
}

/// Formats nano-dollars as a USD decimal string with nine places, as the admin API takes it.
pub fn format_usd(nano_usd: u64) -> String {
    format!(
        "{}.{:09}",
        nano_usd / 1_000_000_000,
        nano_usd % 1_000_000_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
        checked = "2025-01-01"
        [models."gpt-4o-mini"]
        input = "0.15"
        cached_input = "0.075"
        output = "0.60"
        [models."gpt-4o"]
        input = "2.50"
        output = "10"
        [models."audio"]
        input = "2.50"
        audio_input = "40.00"
        output = "10.00"
        audio_output = "80.00"
        [models."claude"]
        input = "3.00"
        cached_input = "0.30"
        cache_write_5m = "3.75"
        cache_write_1h = "6.00"
        output = "15.00"
        [[models."claude".tiers]]
        above_prompt_tokens = 200000
        input = "6.00"
        output = "22.50"
        cache_write_1h = "12.00"
        [aliases]
        "chatgpt-4o-latest" = "gpt-4o"
    "#;

    fn sample() -> Pricing {
        Pricing::parse(SAMPLE).unwrap()
    }

    #[test]
    fn prices_parse_to_pico() {
        let price = sample().require("gpt-4o-mini").unwrap();
        assert_eq!(price.base.input, 150_000);
        assert_eq!(price.base.cached_input, 75_000);
        assert_eq!(price.base.output, 600_000);
    }

    #[test]
    fn optional_prices_default_to_input_and_output() {
        let price = sample().require("gpt-4o").unwrap();
        assert_eq!(price.base, Prices::text(2_500_000, 10_000_000));
    }

    #[test]
    fn tier_prices_default_from_the_tier() {
        let price = sample().require("claude").unwrap();
        let tier = price.prices_for(200_001);
        assert_eq!(tier.input, 6_000_000);
        assert_eq!(tier.cached_input, 6_000_000);
        assert_eq!(tier.cache_write_1h, 12_000_000);
        assert_eq!(tier.audio_output, 22_500_000);
        assert_eq!(price.prices_for(200_000).input, 3_000_000);
    }

    #[test]
    fn alias_and_suffixes_resolve() {
        let pricing = sample();
        assert_eq!(pricing.price("chatgpt-4o-latest"), pricing.price("gpt-4o"));
        assert_eq!(pricing.price("gpt-4o-2024-08-06"), pricing.price("gpt-4o"));
        assert_eq!(pricing.price("claude-20250929"), pricing.price("claude"));
        assert_eq!(pricing.price("no-such-model"), None);
    }

    #[test]
    fn snapshot_suffixes() {
        let cases = [
            ("gpt-4o-2024-08-06", Some("gpt-4o")),
            ("claude-sonnet-4-5-20250929", Some("claude-sonnet-4-5")),
            ("gemini-2.0-flash-001", Some("gemini-2.0-flash")),
            ("gemini-2.5-flash-preview-05-20", Some("gemini-2.5-flash")),
            (
                "gemini-2.5-flash-lite-preview-09-2025",
                Some("gemini-2.5-flash-lite"),
            ),
            ("gpt-4-0613", None),
            ("claude-sonnet-4-5", None),
            ("gpt-4o", None),
        ];
        for (model, expected) in cases {
            assert_eq!(without_snapshot_suffix(model), expected, "model {model}");
        }
    }

    #[test]
    fn usage_cost_rounds_once() {
        let price = ModelPrice::text(333, 333);
        // 1 * 333 + 2 * 333 = 999 pico, which is 1 nano; rounding each part would give 2.
        assert_eq!(price.usage_cost_nano(1, 0, 2), 1);
        assert_eq!(price.reserve_cost_nano(1, 2, 1), 2);
    }

    #[test]
    fn every_category_at_its_price() {
        let price = sample().require("claude").unwrap();
        let usage = Usage {
            prompt_tokens: 100,
            cached_prompt_tokens: 10,
            cache_write_5m_tokens: 20,
            cache_write_1h_tokens: 30,
            completion_tokens: 7,
            ..Usage::default()
        };
        let pico = 40 * 3_000_000 + 10 * 300_000 + 20 * 3_750_000 + 30 * 6_000_000 + 7 * 15_000_000;
        assert_eq!(price.settle_cost_nano(&usage), Ok(pico / 1000));
    }

    #[test]
    fn audio_tokens_use_audio_prices() {
        let price = sample().require("audio").unwrap();
        let usage = Usage {
            prompt_tokens: 10,
            audio_prompt_tokens: 4,
            completion_tokens: 5,
            audio_completion_tokens: 2,
            ..Usage::default()
        };
        let pico = 6 * 2_500_000 + 4 * 40_000_000 + 3 * 10_000_000 + 2 * 80_000_000;
        assert_eq!(price.settle_cost_nano(&usage), Ok(pico / 1000));
    }

    #[test]
    fn reserve_uses_highest_prices() {
        let price = sample().require("claude").unwrap();
        assert_eq!(price.reserve_cost_nano(10, 2, 1), 10 * 6_000 + 2 * 15_000);
    }

    #[test]
    fn tier_prices_the_whole_usage() {
        let price = sample().require("claude").unwrap();
        let usage = Usage::text(200_001, 10);
        let pico = 200_001u64 * 6_000_000 + 10 * 22_500_000;
        assert_eq!(price.settle_cost_nano(&usage), Ok(pico / 1000));
    }

    #[test]
    fn invalid_usage_is_an_error() {
        let usage = Usage {
            prompt_tokens: 1,
            cached_prompt_tokens: 2,
            ..Usage::default()
        };
        assert!(ModelPrice::text(1, 1).settle_cost_nano(&usage).is_err());
    }

    #[test]
    fn prompts_reserving_inverts_the_hold() {
        let price = sample().require("claude").unwrap();
        let hold = price.reserve_cost_nano(1234, 100, 1);
        assert_eq!(
            price.prompts_reserving(hold, 100, 1, 1_000_000),
            Some(1234..=1234)
        );
        let cheap = ModelPrice::text(150_000, 600_000);
        let hold = cheap.reserve_cost_nano(20, 0, 1);
        let range = cheap.prompts_reserving(hold, 0, 1, 1000).unwrap();
        assert!(range.contains(&20), "range {range:?}");
        assert_eq!(cheap.prompts_reserving(hold + 1, 0, 1, 1000), None);
    }

    #[test]
    fn price_text_edge_cases() {
        assert_eq!(parse_usd_per_million("2.50"), Ok(2_500_000));
        assert_eq!(parse_usd_per_million("10"), Ok(10_000_000));
        assert_eq!(parse_usd_per_million("0.000001"), Ok(1));
        assert!(parse_usd_per_million("0.0000001").is_err());
        assert!(parse_usd_per_million("-1").is_err());
        assert!(parse_usd_per_million(".5").is_err());
        assert!(parse_usd_per_million("1e3").is_err());
    }

    #[test]
    fn usd_format_keeps_nine_places() {
        assert_eq!(format_usd(1_500_000_001), "1.500000001");
        assert_eq!(format_usd(30), "0.000000030");
    }

    #[test]
    fn shipped_file_parses() {
        let file = crate::harness::paths::pricing_file().unwrap();
        let pricing = Pricing::load(&file).unwrap();
        for model in ["gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash"] {
            assert!(pricing.price(model).is_some(), "model {model}");
        }
    }
}
