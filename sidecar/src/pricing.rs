//! Model prices loaded from the pricing file, and the lookup from a request's model name.
//!
//! The file is TOML, and `config/pricing.toml` documents the format. Prices are decimal strings in
//! USD per million tokens, parsed exactly into pico-dollars per token.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use serde::Deserialize;

use crate::money::{parse_price_per_million, DecimalError};

/// Prices of one model, in pico-dollars per token (micro-dollars per million tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    /// Price of a prompt token that the provider did not serve from its cache.
    pub input_pico: u64,
    /// Price of a prompt token served from the provider's cache, at most `input_pico`.
    pub cached_input_pico: u64,
    /// Price of an output token, reasoning tokens included.
    pub output_pico: u64,
}

/// Reason a pricing file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    /// The file cannot be read.
    #[error("cannot read pricing file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the expected tables and fields.
    #[error("invalid pricing file: {0}")]
    Parse(#[from] toml::de::Error),
    /// `checked` is not a date.
    #[error("invalid pricing file: checked = {value:?} is not a date; write the day the prices were checked as \"YYYY-MM-DD\"")]
    CheckedDate { value: String },
    /// A price does not parse.
    #[error("invalid pricing file: {entry}.{field}: {source}")]
    Price {
        entry: String,
        field: &'static str,
        source: DecimalError,
    },
    /// A cached input price is above the input price, which would make the reserve estimate
    /// (priced as uncached input) lower than a settle.
    #[error("invalid pricing file: {entry}.cached_input is above {entry}.input; cached prompt tokens must not cost more than uncached ones")]
    CachedAboveInput { entry: String },
    /// An alias names no model.
    #[error("invalid pricing file: alias {alias:?} points to {target:?}, which is not in [models]; add that model or fix the alias")]
    AliasTarget { alias: String, target: String },
    /// An alias has the name of a model.
    #[error("invalid pricing file: {alias:?} is both a model and an alias; remove one of them")]
    AliasShadowsModel { alias: String },
    /// Nothing in the file prices any request.
    #[error(
        "invalid pricing file: it has no [models] entries and no [fallback]; add at least one"
    )]
    Empty,
}

/// A parsed pricing file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    checked: String,
    models: BTreeMap<String, ModelPrice>,
    aliases: BTreeMap<String, String>,
    fallback: Option<ModelPrice>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PricingFile {
    checked: String,
    #[serde(default)]
    models: BTreeMap<String, PriceEntry>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    fallback: Option<PriceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceEntry {
    input: String,
    cached_input: Option<String>,
    output: String,
}

impl Pricing {
    /// Reads and validates the pricing file at `path`.
    pub fn load(path: &Path) -> Result<Self, PricingError> {
        let text = std::fs::read_to_string(path).map_err(|source| PricingError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text)
    }

    /// Parses and validates the text of a pricing file.
    pub fn from_toml(text: &str) -> Result<Self, PricingError> {
        let file: PricingFile = toml::from_str(text)?;
        if !is_iso_date(&file.checked) {
            return Err(PricingError::CheckedDate {
                value: file.checked,
            });
        }

        let mut models = BTreeMap::new();
        for (name, entry) in &file.models {
            models.insert(
                name.clone(),
                parse_entry(&format!("models.{name:?}"), entry)?,
            );
        }
        for (alias, target) in &file.aliases {
            if models.contains_key(alias) {
                return Err(PricingError::AliasShadowsModel {
                    alias: alias.clone(),
                });
            }
            if !models.contains_key(target) {
                return Err(PricingError::AliasTarget {
                    alias: alias.clone(),
                    target: target.clone(),
                });
            }
        }
        let fallback = match &file.fallback {
            Some(entry) => Some(parse_entry("fallback", entry)?),
            None => None,
        };
        if models.is_empty() && fallback.is_none() {
            return Err(PricingError::Empty);
        }

        Ok(Pricing {
            checked: file.checked,
            models,
            aliases: file.aliases,
            fallback,
        })
    }

    /// Finds the price of `model`: its own entry, then an alias, then the name without a
    /// trailing date (`-2024-08-06` or `-20240806`) as a model or alias, then the fallback.
    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        self.model_or_alias(model)
            .or_else(|| strip_date_suffix(model).and_then(|base| self.model_or_alias(base)))
            .or(self.fallback.as_ref())
    }

    /// Day the prices were checked, as written in the file (`YYYY-MM-DD`).
    pub fn checked(&self) -> &str {
        &self.checked
    }

    /// Returns model names with their prices, sorted by name. Aliases are not included.
    pub fn models(&self) -> impl Iterator<Item = (&str, &ModelPrice)> {
        self.models
            .iter()
            .map(|(name, price)| (name.as_str(), price))
    }

    /// Number of aliases.
    pub fn alias_count(&self) -> usize {
        self.aliases.len()
    }

    /// True when unknown models get the fallback price.
    pub fn has_fallback(&self) -> bool {
        self.fallback.is_some()
    }

    fn model_or_alias(&self, name: &str) -> Option<&ModelPrice> {
        self.models.get(name).or_else(|| {
            let target = self.aliases.get(name)?;
            self.models.get(target)
        })
    }
}

/// Pricing that every request reads. A later reload can swap the whole table with
/// [`SharedPricing::replace`], and a request keeps the table it started with.
#[derive(Debug, Clone)]
pub struct SharedPricing(Arc<RwLock<Arc<Pricing>>>);

impl SharedPricing {
    /// Wraps `pricing` for sharing.
    pub fn new(pricing: Pricing) -> Self {
        SharedPricing(Arc::new(RwLock::new(Arc::new(pricing))))
    }

    /// Returns the table in force now.
    pub fn current(&self) -> Arc<Pricing> {
        // A panic while holding the lock cannot leave the Arc half-written, so a poisoned lock
        // still holds a valid table.
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the table for all later requests.
    pub fn replace(&self, pricing: Pricing) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(pricing);
    }
}

/// Returns `name` without a trailing `-YYYY-MM-DD` or `-YYYYMMDD`, or `None` when it has neither.
pub fn strip_date_suffix(name: &str) -> Option<&str> {
    let dashed = name.len().checked_sub(11).and_then(|start| {
        let (base, suffix) = name.split_at_checked(start)?;
        let date = suffix.strip_prefix('-')?;
        is_iso_date(date).then_some(base)
    });
    let compact = || {
        let start = name.len().checked_sub(9)?;
        let (base, suffix) = name.split_at_checked(start)?;
        let date = suffix.strip_prefix('-')?;
        (date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit())).then_some(base)
    };
    dashed.or_else(compact).filter(|base| !base.is_empty())
}

/// True for `YYYY-MM-DD` with a month from 01 to 12 and a day from 01 to 31.
fn is_iso_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 10
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            4 | 7 => *byte == b'-',
            _ => byte.is_ascii_digit(),
        });
    if !shape_ok {
        return false;
    }
    let month: u32 = text.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(0);
    let day: u32 = text.get(8..10).and_then(|d| d.parse().ok()).unwrap_or(0);
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

fn parse_entry(entry: &str, prices: &PriceEntry) -> Result<ModelPrice, PricingError> {
    let parse = |field: &'static str, text: &str| {
        parse_price_per_million(text).map_err(|source| PricingError::Price {
            entry: entry.to_string(),
            field,
            source,
        })
    };
    let input_pico = parse("input", &prices.input)?;
    let output_pico = parse("output", &prices.output)?;
    let cached_input_pico = match &prices.cached_input {
        Some(text) => parse("cached_input", text)?,
        None => input_pico,
    };
    if cached_input_pico > input_pico {
        return Err(PricingError::CachedAboveInput {
            entry: entry.to_string(),
        });
    }
    Ok(ModelPrice {
        input_pico,
        cached_input_pico,
        output_pico,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
checked = "2026-01-02"

[models."gpt-4o"]
input = "2.50"
cached_input = "1.25"
output = "10.00"

[models."gpt-4"]
input = "30.00"
output = "60.00"

[aliases]
"gpt-4-0613" = "gpt-4"
"#;

    fn small() -> Pricing {
        match Pricing::from_toml(SMALL) {
            Ok(pricing) => pricing,
            Err(error) => unreachable!("test pricing must parse: {error}"),
        }
    }

    #[test]
    fn exact_model_is_found() {
        let price = small().price("gpt-4o").copied();
        assert_eq!(
            price,
            Some(ModelPrice {
                input_pico: 2_500_000,
                cached_input_pico: 1_250_000,
                output_pico: 10_000_000
            })
        );
    }

    #[test]
    fn cached_input_defaults_to_input() {
        let price = small().price("gpt-4").map(|p| p.cached_input_pico);
        assert_eq!(price, Some(30_000_000));
    }

    #[test]
    fn alias_resolves_to_its_model() {
        let pricing = small();
        assert_eq!(pricing.price("gpt-4-0613"), pricing.price("gpt-4"));
    }

    #[test]
    fn dashed_date_suffix_is_removed() {
        let pricing = small();
        assert_eq!(pricing.price("gpt-4o-2024-08-06"), pricing.price("gpt-4o"));
    }

    #[test]
    fn compact_date_suffix_is_removed() {
        let pricing = small();
        assert_eq!(pricing.price("gpt-4o-20240806"), pricing.price("gpt-4o"));
    }

    #[test]
    fn unknown_model_without_fallback_has_no_price() {
        assert_eq!(small().price("gpt-9"), None);
    }

    #[test]
    fn fallback_prices_unknown_models() {
        let text = format!("{SMALL}\n[fallback]\ninput = \"1\"\noutput = \"2\"\n");
        let price = Pricing::from_toml(&text)
            .ok()
            .and_then(|p| p.price("gpt-9").copied());
        assert_eq!(price.map(|p| p.output_pico), Some(2_000_000));
    }

    #[test]
    fn strip_keeps_names_without_dates() {
        assert_eq!(strip_date_suffix("gpt-4o-mini"), None);
    }

    #[test]
    fn strip_ignores_four_digit_suffixes() {
        assert_eq!(strip_date_suffix("gpt-3.5-turbo-0125"), None);
    }

    #[test]
    fn strip_rejects_month_thirteen() {
        assert_eq!(strip_date_suffix("gpt-4o-2024-13-01"), None);
    }

    #[test]
    fn strip_of_a_bare_date_is_none() {
        assert_eq!(strip_date_suffix("-2024-08-06"), None);
    }

    #[test]
    fn strip_handles_multibyte_names() {
        assert_eq!(strip_date_suffix("modèle-2024-08-06"), Some("modèle"));
    }

    #[test]
    fn float_price_is_rejected() {
        let text = "checked = \"2026-01-02\"\n[models.m]\ninput = 2.5\noutput = \"1\"\n";
        assert!(matches!(
            Pricing::from_toml(text),
            Err(PricingError::Parse(_))
        ));
    }

    #[test]
    fn unknown_field_is_rejected() {
        let text =
            "checked = \"2026-01-02\"\n[models.m]\ninput = \"1\"\noutput = \"1\"\nouput = \"1\"\n";
        assert!(matches!(
            Pricing::from_toml(text),
            Err(PricingError::Parse(_))
        ));
    }

    #[test]
    fn bad_checked_date_is_rejected() {
        let text = "checked = \"last week\"\n[models.m]\ninput = \"1\"\noutput = \"1\"\n";
        assert!(matches!(
            Pricing::from_toml(text),
            Err(PricingError::CheckedDate { .. })
        ));
    }

    #[test]
    fn alias_to_missing_model_is_rejected() {
        let text = format!("{SMALL}\"o9\" = \"o10\"\n");
        assert!(matches!(
            Pricing::from_toml(&text),
            Err(PricingError::AliasTarget { .. })
        ));
    }

    #[test]
    fn alias_named_like_a_model_is_rejected() {
        let text = format!("{SMALL}\"gpt-4o\" = \"gpt-4\"\n");
        assert!(matches!(
            Pricing::from_toml(&text),
            Err(PricingError::AliasShadowsModel { .. })
        ));
    }

    #[test]
    fn cached_price_above_input_is_rejected() {
        let text = "checked = \"2026-01-02\"\n\
                    [models.m]\ninput = \"1\"\ncached_input = \"2\"\noutput = \"1\"\n";
        assert!(matches!(
            Pricing::from_toml(text),
            Err(PricingError::CachedAboveInput { .. })
        ));
    }

    #[test]
    fn price_error_names_the_entry_and_field() {
        let text = "checked = \"2026-01-02\"\n[models.m]\ninput = \"1.0000001\"\noutput = \"1\"\n";
        let message = Pricing::from_toml(text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("models.\"m\".input"),
            "message was: {message}"
        );
    }

    #[test]
    fn empty_file_is_rejected() {
        assert!(matches!(
            Pricing::from_toml("checked = \"2026-01-02\"\n"),
            Err(PricingError::Empty)
        ));
    }

    #[test]
    fn replaced_pricing_is_seen_by_later_reads() {
        let shared = SharedPricing::new(small());
        let replacement = "checked = \"2026-02-03\"\n[models.m]\ninput = \"1\"\noutput = \"1\"\n";
        if let Ok(pricing) = Pricing::from_toml(replacement) {
            shared.replace(pricing);
        }
        assert_eq!(shared.current().checked(), "2026-02-03");
    }
}
