//! Model prices loaded from the pricing file, and the lookup from a request's model name.
//!
//! The file is TOML, and `config/pricing.toml` documents the format. Prices are decimal strings in
//! USD per million tokens, parsed exactly into pico-dollars per token. Each model has base prices
//! for seven token categories and optional long-context tiers that replace all of them when a
//! request's prompt is longer than the tier's threshold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model_name::{
    is_iso_date, strip_date_suffix, strip_preview_suffix, strip_version_suffix,
};
use crate::money::{parse_price_per_million, DecimalError};

/// Prices of every token category at one tier, in pico-dollars per token (micro-dollars per
/// million tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPrices {
    /// Price of a prompt text token that is neither read from nor written to a cache.
    pub input_pico: u64,
    /// Price of a prompt token read from the provider's cache, at most `input_pico`.
    pub cached_input_pico: u64,
    /// Price of a prompt token written to a cache that lives 5 minutes.
    pub cache_write_5m_pico: u64,
    /// Price of a prompt token written to a cache that lives 1 hour.
    pub cache_write_1h_pico: u64,
    /// Price of a prompt audio token.
    pub audio_input_pico: u64,
    /// Price of an output text token, reasoning tokens included.
    pub output_pico: u64,
    /// Price of an output audio token.
    pub audio_output_pico: u64,
}

impl TokenPrices {
    /// Prices every input category at `input_pico` and every output category at `output_pico`,
    /// as an entry with only `input` and `output` does.
    pub fn flat(input_pico: u64, output_pico: u64) -> Self {
        TokenPrices {
            input_pico,
            cached_input_pico: input_pico,
            cache_write_5m_pico: input_pico,
            cache_write_1h_pico: input_pico,
            audio_input_pico: input_pico,
            output_pico,
            audio_output_pico: output_pico,
        }
    }

    /// Highest price that a prompt token can cost. A cache read is left out because it costs at
    /// most `input_pico`, which the file check enforces.
    pub fn max_prompt_pico(&self) -> u64 {
        self.input_pico
            .max(self.cache_write_5m_pico)
            .max(self.cache_write_1h_pico)
            .max(self.audio_input_pico)
    }

    /// Highest price that an output token can cost.
    pub fn max_output_pico(&self) -> u64 {
        self.output_pico.max(self.audio_output_pico)
    }
}

/// Prices that apply to a whole request whose prompt is longer than a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceTier {
    /// The tier applies when the prompt has more tokens than this.
    pub above_prompt_tokens: u64,
    /// Prices of every token category in such a request.
    pub prices: TokenPrices,
}

/// Prices of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    /// Prices of a request whose prompt is not above any tier's threshold.
    pub base: TokenPrices,
    /// Long-context tiers, sorted by `above_prompt_tokens` from low to high, without repeats.
    pub tiers: Vec<PriceTier>,
}

impl ModelPrice {
    /// Creates a model price without tiers.
    pub fn new(base: TokenPrices) -> Self {
        ModelPrice {
            base,
            tiers: Vec::new(),
        }
    }

    /// Returns the prices of a request with `prompt_tokens` prompt tokens: those of the tier with
    /// the highest threshold below `prompt_tokens`, or the base prices when there is none.
    pub fn prices_for(&self, prompt_tokens: u64) -> &TokenPrices {
        self.tiers
            .iter()
            .rev()
            .find(|tier| tier.above_prompt_tokens < prompt_tokens)
            .map_or(&self.base, |tier| &tier.prices)
    }
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
    /// (which never prices a prompt token below `input`) lower than a settle.
    #[error("invalid pricing file: {entry}.cached_input is above {entry}.input; cached prompt tokens must not cost more than uncached ones")]
    CachedAboveInput { entry: String },
    /// A tier's threshold is 0, which makes it replace the base prices of every request.
    #[error("invalid pricing file: {entry}.above_prompt_tokens is 0; write the base prices at the model's level instead of a tier above 0 tokens")]
    ZeroTierThreshold { entry: String },
    /// Two tiers of one model have the same threshold.
    #[error("invalid pricing file: {entry} has two tiers with above_prompt_tokens = {above_prompt_tokens}; keep one of them")]
    DuplicateTier {
        entry: String,
        above_prompt_tokens: u64,
    },
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
    models: BTreeMap<String, ModelEntry>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    fallback: Option<ModelEntry>,
}

/// A `[models."NAME"]` or `[fallback]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    input: String,
    cached_input: Option<String>,
    cache_write_5m: Option<String>,
    cache_write_1h: Option<String>,
    audio_input: Option<String>,
    output: String,
    audio_output: Option<String>,
    #[serde(default)]
    tiers: Vec<TierEntry>,
}

/// A `[[models."NAME".tiers]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TierEntry {
    above_prompt_tokens: u64,
    input: String,
    cached_input: Option<String>,
    cache_write_5m: Option<String>,
    cache_write_1h: Option<String>,
    audio_input: Option<String>,
    output: String,
    audio_output: Option<String>,
}

/// The price strings of a model or a tier, before parsing.
struct PriceTexts<'a> {
    input: &'a str,
    cached_input: Option<&'a str>,
    cache_write_5m: Option<&'a str>,
    cache_write_1h: Option<&'a str>,
    audio_input: Option<&'a str>,
    output: &'a str,
    audio_output: Option<&'a str>,
}

impl ModelEntry {
    fn texts(&self) -> PriceTexts<'_> {
        PriceTexts {
            input: &self.input,
            cached_input: self.cached_input.as_deref(),
            cache_write_5m: self.cache_write_5m.as_deref(),
            cache_write_1h: self.cache_write_1h.as_deref(),
            audio_input: self.audio_input.as_deref(),
            output: &self.output,
            audio_output: self.audio_output.as_deref(),
        }
    }
}

impl TierEntry {
    fn texts(&self) -> PriceTexts<'_> {
        PriceTexts {
            input: &self.input,
            cached_input: self.cached_input.as_deref(),
            cache_write_5m: self.cache_write_5m.as_deref(),
            cache_write_1h: self.cache_write_1h.as_deref(),
            audio_input: self.audio_input.as_deref(),
            output: &self.output,
            audio_output: self.audio_output.as_deref(),
        }
    }
}

/// Rules that turn a snapshot name into its family's name, tried in this order when a name has
/// no entry or alias of its own.
const SUFFIX_RULES: [fn(&str) -> Option<&str>; 3] = [
    strip_date_suffix,
    strip_version_suffix,
    strip_preview_suffix,
];

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
                parse_model(&format!("models.{name:?}"), entry)?,
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
            Some(entry) => Some(parse_model("fallback", entry)?),
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

    /// Finds the price of `model`: its own entry, then an alias, then the name without a snapshot
    /// suffix as a model or alias, then the fallback. The suffixes are a trailing date
    /// (`-2024-08-06` or `-20240806`), a three-digit version (`-001`) and a dated preview
    /// (`-preview-05-20` or `-preview-09-2025`).
    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        self.model_or_alias(model)
            .or_else(|| {
                SUFFIX_RULES.iter().find_map(|strip| {
                    let family = strip(model)?;
                    self.model_or_alias(family)
                })
            })
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

    /// Number of models, aliases not included.
    pub fn model_count(&self) -> usize {
        self.models.len()
    }

    /// Returns each alias with the model it names, sorted by alias.
    pub fn aliases(&self) -> impl Iterator<Item = (&str, &str)> {
        self.aliases
            .iter()
            .map(|(alias, target)| (alias.as_str(), target.as_str()))
    }

    /// Number of aliases.
    pub fn alias_count(&self) -> usize {
        self.aliases.len()
    }

    /// Price of every model that nothing else matches, if the file has one.
    pub fn fallback(&self) -> Option<&ModelPrice> {
        self.fallback.as_ref()
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

/// Parses a model entry and its tiers. `entry` names it in errors, such as `models."gpt-4o"`.
fn parse_model(entry: &str, model: &ModelEntry) -> Result<ModelPrice, PricingError> {
    let base = parse_prices(entry, &model.texts())?;
    let mut tiers = Vec::with_capacity(model.tiers.len());
    for (index, tier) in model.tiers.iter().enumerate() {
        let tier_entry = format!("{entry}.tiers[{index}]");
        if tier.above_prompt_tokens == 0 {
            return Err(PricingError::ZeroTierThreshold { entry: tier_entry });
        }
        tiers.push(PriceTier {
            above_prompt_tokens: tier.above_prompt_tokens,
            prices: parse_prices(&tier_entry, &tier.texts())?,
        });
    }
    tiers.sort_by_key(|tier| tier.above_prompt_tokens);
    let repeated = tiers.windows(2).find_map(|pair| match pair {
        [low, high] if low.above_prompt_tokens == high.above_prompt_tokens => {
            Some(low.above_prompt_tokens)
        }
        _ => None,
    });
    if let Some(above_prompt_tokens) = repeated {
        return Err(PricingError::DuplicateTier {
            entry: entry.to_string(),
            above_prompt_tokens,
        });
    }
    Ok(ModelPrice { base, tiers })
}

/// Parses the prices of a model or tier. Missing input categories take `input`, missing output
/// categories take `output`.
fn parse_prices(entry: &str, texts: &PriceTexts<'_>) -> Result<TokenPrices, PricingError> {
    let parse = |field: &'static str, text: &str| {
        parse_price_per_million(text).map_err(|source| PricingError::Price {
            entry: entry.to_string(),
            field,
            source,
        })
    };
    let parse_or = |field: &'static str, text: Option<&str>, default: u64| match text {
        Some(text) => parse(field, text),
        None => Ok(default),
    };
    let input_pico = parse("input", texts.input)?;
    let output_pico = parse("output", texts.output)?;
    let prices = TokenPrices {
        input_pico,
        cached_input_pico: parse_or("cached_input", texts.cached_input, input_pico)?,
        cache_write_5m_pico: parse_or("cache_write_5m", texts.cache_write_5m, input_pico)?,
        cache_write_1h_pico: parse_or("cache_write_1h", texts.cache_write_1h, input_pico)?,
        audio_input_pico: parse_or("audio_input", texts.audio_input, input_pico)?,
        output_pico,
        audio_output_pico: parse_or("audio_output", texts.audio_output, output_pico)?,
    };
    if prices.cached_input_pico > prices.input_pico {
        return Err(PricingError::CachedAboveInput {
            entry: entry.to_string(),
        });
    }
    Ok(prices)
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

[models."claude-sonnet-4-5"]
input = "3.00"
cached_input = "0.30"
cache_write_5m = "3.75"
cache_write_1h = "6.00"
output = "15.00"

[[models."claude-sonnet-4-5".tiers]]
above_prompt_tokens = 200000
input = "6.00"
cached_input = "0.60"
cache_write_5m = "7.50"
cache_write_1h = "12.00"
output = "22.50"

[models."gemini-2.0-flash"]
input = "0.10"
output = "0.40"

[models."gemini-2.5-flash"]
input = "0.30"
audio_input = "1.00"
output = "2.50"

[aliases]
"gpt-4-0613" = "gpt-4"
"claude-sonnet-4-5-latest" = "claude-sonnet-4-5"
"#;

    fn parse(text: &str) -> Pricing {
        match Pricing::from_toml(text) {
            Ok(pricing) => pricing,
            Err(error) => unreachable!("test pricing must parse: {error}"),
        }
    }

    fn small() -> Pricing {
        parse(SMALL)
    }

    fn error_message(text: &str) -> String {
        Pricing::from_toml(text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    /// A model with two tiers, written in descending order.
    const TWO_TIERS: &str = r#"
checked = "2026-01-02"
[models.m]
input = "1"
output = "2"
[[models.m.tiers]]
above_prompt_tokens = 2000
input = "5"
output = "6"
[[models.m.tiers]]
above_prompt_tokens = 1000
input = "3"
output = "4"
"#;

    #[test]
    fn exact_model_is_found() {
        let price = small().price("gpt-4o").map(|p| p.base);
        assert_eq!(
            price,
            Some(TokenPrices {
                input_pico: 2_500_000,
                cached_input_pico: 1_250_000,
                cache_write_5m_pico: 2_500_000,
                cache_write_1h_pico: 2_500_000,
                audio_input_pico: 2_500_000,
                output_pico: 10_000_000,
                audio_output_pico: 10_000_000,
            })
        );
    }

    #[test]
    fn every_category_is_parsed() {
        let price = small().price("claude-sonnet-4-5").map(|p| p.base);
        assert_eq!(
            price,
            Some(TokenPrices {
                input_pico: 3_000_000,
                cached_input_pico: 300_000,
                cache_write_5m_pico: 3_750_000,
                cache_write_1h_pico: 6_000_000,
                audio_input_pico: 3_000_000,
                output_pico: 15_000_000,
                audio_output_pico: 15_000_000,
            })
        );
    }

    #[test]
    fn cached_input_defaults_to_input() {
        let price = small().price("gpt-4").map(|p| p.base.cached_input_pico);
        assert_eq!(price, Some(30_000_000));
    }

    #[test]
    fn audio_output_defaults_to_output() {
        let price = small()
            .price("gemini-2.5-flash")
            .map(|p| p.base.audio_output_pico);
        assert_eq!(price, Some(2_500_000));
    }

    #[test]
    fn tier_is_parsed() {
        let tiers = small().price("claude-sonnet-4-5").map(|p| p.tiers.clone());
        assert_eq!(
            tiers,
            Some(vec![PriceTier {
                above_prompt_tokens: 200_000,
                prices: TokenPrices {
                    input_pico: 6_000_000,
                    cached_input_pico: 600_000,
                    cache_write_5m_pico: 7_500_000,
                    cache_write_1h_pico: 12_000_000,
                    audio_input_pico: 6_000_000,
                    output_pico: 22_500_000,
                    audio_output_pico: 22_500_000,
                },
            }])
        );
    }

    #[test]
    fn tier_defaults_come_from_the_tier() {
        // The base has cache_write_1h = 9, but the tier's own input (3) is the default.
        let text = "checked = \"2026-01-02\"\n\
                    [models.m]\ninput = \"1\"\ncache_write_1h = \"9\"\noutput = \"2\"\n\
                    [[models.m.tiers]]\nabove_prompt_tokens = 10\ninput = \"3\"\noutput = \"4\"\n";
        let tier = parse(text)
            .price("m")
            .and_then(|p| p.tiers.first().copied());
        assert_eq!(
            tier.map(|t| t.prices),
            Some(TokenPrices::flat(3_000_000, 4_000_000))
        );
    }

    #[test]
    fn tiers_are_sorted_by_threshold() {
        let pricing = parse(TWO_TIERS);
        let thresholds: Vec<u64> = pricing
            .price("m")
            .map(|p| p.tiers.iter().map(|t| t.above_prompt_tokens).collect())
            .unwrap_or_default();
        assert_eq!(thresholds, vec![1000, 2000]);
    }

    #[test]
    fn prompt_at_threshold_gets_base_prices() {
        let pricing = parse(TWO_TIERS);
        let input = pricing.price("m").map(|p| p.prices_for(1000).input_pico);
        assert_eq!(input, Some(1_000_000));
    }

    #[test]
    fn prompt_above_threshold_gets_tier_prices() {
        let pricing = parse(TWO_TIERS);
        let input = pricing.price("m").map(|p| p.prices_for(1001).input_pico);
        assert_eq!(input, Some(3_000_000));
    }

    #[test]
    fn highest_passed_tier_wins() {
        let pricing = parse(TWO_TIERS);
        let input = pricing.price("m").map(|p| p.prices_for(2001).input_pico);
        assert_eq!(input, Some(5_000_000));
    }

    #[test]
    fn zero_tier_threshold_is_rejected() {
        let text = "checked = \"2026-01-02\"\n[models.m]\ninput = \"1\"\noutput = \"2\"\n\
                    [[models.m.tiers]]\nabove_prompt_tokens = 0\ninput = \"3\"\noutput = \"4\"\n";
        assert!(matches!(
            Pricing::from_toml(text),
            Err(PricingError::ZeroTierThreshold { .. })
        ));
    }

    #[test]
    fn repeated_tier_threshold_is_rejected() {
        let text = TWO_TIERS.replace("2000", "1000");
        assert!(matches!(
            Pricing::from_toml(&text),
            Err(PricingError::DuplicateTier {
                above_prompt_tokens: 1000,
                ..
            })
        ));
    }

    #[test]
    fn negative_tier_threshold_is_rejected() {
        let text = TWO_TIERS.replace("2000", "-5");
        assert!(matches!(
            Pricing::from_toml(&text),
            Err(PricingError::Parse(_))
        ));
    }

    #[test]
    fn tier_error_names_the_tier() {
        let text = TWO_TIERS.replace("input = \"5\"", "input = \"five\"");
        let message = error_message(&text);
        assert!(
            message.contains("models.\"m\".tiers[0].input"),
            "message was: {message}"
        );
    }

    #[test]
    fn tier_cached_price_above_its_input_is_rejected() {
        let text = TWO_TIERS.replace("input = \"5\"", "input = \"5\"\ncached_input = \"5.5\"");
        assert!(matches!(
            Pricing::from_toml(&text),
            Err(PricingError::CachedAboveInput { .. })
        ));
    }

    #[test]
    fn unknown_tier_field_is_rejected() {
        let text = TWO_TIERS.replace("input = \"5\"", "input = \"5\"\nbelow_prompt_tokens = 9");
        assert!(matches!(
            Pricing::from_toml(&text),
            Err(PricingError::Parse(_))
        ));
    }

    #[test]
    fn max_prompt_price_covers_cache_writes() {
        let price = small()
            .price("claude-sonnet-4-5")
            .map(|p| p.base.max_prompt_pico());
        assert_eq!(price, Some(6_000_000));
    }

    #[test]
    fn max_prompt_price_covers_audio() {
        let price = small()
            .price("gemini-2.5-flash")
            .map(|p| p.base.max_prompt_pico());
        assert_eq!(price, Some(1_000_000));
    }

    #[test]
    fn max_output_price_covers_audio() {
        let prices = TokenPrices {
            audio_output_pico: 80,
            ..TokenPrices::flat(1, 10)
        };
        assert_eq!(prices.max_output_pico(), 80);
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
        assert_eq!(
            pricing.price("claude-sonnet-4-5-20250929"),
            pricing.price("claude-sonnet-4-5")
        );
    }

    #[test]
    fn gemini_version_suffix_is_removed() {
        let pricing = small();
        assert_eq!(
            pricing.price("gemini-2.0-flash-001"),
            pricing.price("gemini-2.0-flash")
        );
    }

    #[test]
    fn gemini_preview_suffix_is_removed() {
        let pricing = small();
        assert_eq!(
            pricing.price("gemini-2.5-flash-preview-05-20"),
            pricing.price("gemini-2.5-flash")
        );
    }

    #[test]
    fn own_entry_wins_over_a_suffix_rule() {
        let text =
            format!("{SMALL}\n[models.\"gemini-2.0-flash-001\"]\ninput = \"7\"\noutput = \"7\"\n");
        let input = parse(&text)
            .price("gemini-2.0-flash-001")
            .map(|p| p.base.input_pico);
        assert_eq!(input, Some(7_000_000));
    }

    #[test]
    fn unknown_model_without_fallback_has_no_price() {
        assert_eq!(small().price("gpt-9"), None);
    }

    #[test]
    fn fallback_prices_unknown_models() {
        let text = format!("{SMALL}\n[fallback]\ninput = \"1\"\noutput = \"2\"\n");
        let output = parse(&text).price("gpt-9").map(|p| p.base.output_pico);
        assert_eq!(output, Some(2_000_000));
    }

    #[test]
    fn fallback_may_have_tiers() {
        let text = format!(
            "{SMALL}\n[fallback]\ninput = \"1\"\noutput = \"2\"\n\
             [[fallback.tiers]]\nabove_prompt_tokens = 5\ninput = \"3\"\noutput = \"4\"\n"
        );
        let input = parse(&text)
            .price("gpt-9")
            .map(|p| p.prices_for(6).input_pico);
        assert_eq!(input, Some(3_000_000));
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
        let message = error_message(text);
        assert!(
            message.contains("models.\"m\".input"),
            "message was: {message}"
        );
    }

    #[test]
    fn audio_price_error_names_the_field() {
        let text = "checked = \"2026-01-02\"\n[models.m]\ninput = \"1\"\noutput = \"1\"\n\
                    audio_output = \"-3\"\n";
        let message = error_message(text);
        assert!(
            message.contains("models.\"m\".audio_output"),
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
    fn model_count_leaves_out_aliases() {
        assert_eq!(small().model_count(), 5);
    }
}
