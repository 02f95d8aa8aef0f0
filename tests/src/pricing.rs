//! Prices from `config/pricing.toml` and the costs the tests expect, computed independently of
//! the sidecar's code.
//!
//! The file gives USD per million tokens as decimal strings (`input`, optional `cached_input`,
//! `output`) under `[models."NAME"]`, and `[aliases]` maps a name to a model. A price is kept
//! as an integer number of pico-dollars per token, which equals micro-dollars per million tokens:
//! "0.15" is 150_000.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Pico-dollars in one nano-dollar.
const PICO_PER_NANO: u128 = 1_000;

/// Decimal places of a price in USD per million tokens that fit the pico-dollar unit.
const PRICE_DECIMALS: usize = 6;

/// Prices of one model, in pico-dollars per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    /// Price of a prompt token.
    pub input_pico: u64,
    /// Price of a prompt token served from the provider's cache; equals `input_pico` when the
    /// file gives none.
    pub cached_input_pico: u64,
    /// Price of an output token.
    pub output_pico: u64,
}

impl ModelPrice {
    /// Returns the charge in nano-dollars for a finished request: the pico-dollar cost of all
    /// tokens, rounded up to whole nano-dollars once.
    pub fn usage_cost_nano(&self, prompt_tokens: u64, cached_tokens: u64, completion: u64) -> u64 {
        let uncached = u128::from(prompt_tokens.saturating_sub(cached_tokens));
        let pico = uncached * u128::from(self.input_pico)
            + u128::from(cached_tokens) * u128::from(self.cached_input_pico)
            + u128::from(completion) * u128::from(self.output_pico);
        pico_to_nano_ceil(pico)
    }

    /// Returns the worst-case hold in nano-dollars for a request: the prompt and the output
    /// of every choice, each rounded up to whole nano-dollars on its own.
    pub fn reserve_cost_nano(&self, prompt_tokens: u64, max_output: u64, choices: u64) -> u64 {
        let prompt_pico = u128::from(prompt_tokens) * u128::from(self.input_pico);
        let output_pico =
            u128::from(max_output) * u128::from(choices) * u128::from(self.output_pico);
        pico_to_nano_ceil(prompt_pico) + pico_to_nano_ceil(output_pico)
    }

    /// Returns the cost in nano-dollars of a prompt alone, rounded up.
    pub fn prompt_cost_nano(&self, prompt_tokens: u64) -> u64 {
        self.reserve_cost_nano(prompt_tokens, 0, 1)
    }
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
                pricing
                    .models
                    .insert(name.clone(), parse_model(name, entry)?);
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
        Ok(pricing)
    }

    /// Returns the prices of `model`, looked up by exact name, then as an alias.
    pub fn price(&self, model: &str) -> Option<ModelPrice> {
        if let Some(price) = self.models.get(model) {
            return Some(*price);
        }
        let target = self.aliases.get(model)?;
        self.models.get(target).copied()
    }

    /// Returns the prices of `model`, or an error naming the model and the file to change.
    pub fn require(&self, model: &str) -> Result<ModelPrice> {
        self.price(model).ok_or_else(|| {
            Error::Invalid(format!(
                "model {model} has no price: add it to config/pricing.toml"
            ))
        })
    }
}

fn parse_model(name: &str, entry: &toml::Value) -> std::result::Result<ModelPrice, String> {
    let field = |key: &str| -> std::result::Result<Option<u64>, String> {
        match entry.get(key) {
            None => Ok(None),
            Some(toml::Value::String(text)) => parse_usd_per_million(text)
                .map(Some)
                .map_err(|detail| format!("models.\"{name}\".{key}: {detail}")),
            Some(other) => Err(format!(
                "models.\"{name}\".{key} must be a decimal string such as \"2.50\", found {other}"
            )),
        }
    };
    let input = field("input")?.ok_or_else(|| format!("models.\"{name}\" has no input price"))?;
    let output =
        field("output")?.ok_or_else(|| format!("models.\"{name}\" has no output price"))?;
    let cached_input = field("cached_input")?.unwrap_or(input);
    Ok(ModelPrice {
        input_pico: input,
        cached_input_pico: cached_input,
        output_pico: output,
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
        [aliases]
        "chatgpt-4o-latest" = "gpt-4o"
    "#;

    #[test]
    fn prices_parse_to_pico() {
        let pricing = Pricing::parse(SAMPLE).unwrap();
        let price = pricing.price("gpt-4o-mini").unwrap();
        assert_eq!(price.input_pico, 150_000);
        assert_eq!(price.cached_input_pico, 75_000);
        assert_eq!(price.output_pico, 600_000);
    }

    #[test]
    fn cached_input_defaults_to_input() {
        let pricing = Pricing::parse(SAMPLE).unwrap();
        assert_eq!(
            pricing.price("gpt-4o").unwrap().cached_input_pico,
            2_500_000
        );
    }

    #[test]
    fn alias_resolves() {
        let pricing = Pricing::parse(SAMPLE).unwrap();
        assert_eq!(pricing.price("chatgpt-4o-latest"), pricing.price("gpt-4o"));
    }

    #[test]
    fn usage_cost_rounds_once() {
        let price = ModelPrice {
            input_pico: 333,
            cached_input_pico: 333,
            output_pico: 333,
        };
        // 1 * 333 + 2 * 333 = 999 pico, which is 1 nano; rounding each part would give 2.
        assert_eq!(price.usage_cost_nano(1, 0, 2), 1);
        assert_eq!(price.reserve_cost_nano(1, 2, 1), 2);
    }

    #[test]
    fn cached_tokens_use_cached_price() {
        let price = ModelPrice {
            input_pico: 2_000,
            cached_input_pico: 1_000,
            output_pico: 0,
        };
        assert_eq!(price.usage_cost_nano(10, 4, 0), 6 * 2 + 4);
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
}
