//! Cost rules: token counts times prices, in integer nano-dollars.
//!
//! Token counts times prices in pico-dollars per token give pico-dollars, computed in u128 so
//! nothing overflows. The prices are those of the model's tier for the request's prompt length
//! ([`ModelPrice::prices_for`]). Each request is rounded up to whole nano-dollars once:
//!
//! - settle: with `text_in = prompt - cached - cache_write_5m - cache_write_1h - audio_prompt`
//!   and `text_out = completion - audio_completion`, the cost is `text_in * input +
//!   cached * cached_input + cache_write_5m * cache_write_5m + cache_write_1h * cache_write_1h +
//!   audio_prompt * audio_input + text_out * output + audio_completion * audio_output`
//!   pico-dollars, charged as `ceil(pico / 1000)` nano-dollars. The tier follows the usage's
//!   `prompt_tokens`.
//! - reserve: the worst case, because the filter cannot tell which category a token falls in.
//!   The tier follows the filter's prompt count, and every prompt token costs the highest of the
//!   tier's `input`, `cache_write_5m`, `cache_write_1h` and `audio_input`, so the prompt costs
//!   `ceil(prompt * that / 1000)`. Every output token per choice costs the higher of `output`
//!   and `audio_output`, times `choices`, so `t` output tokens per choice cost
//!   `ceil(t * that * choices / 1000)`. The worst case is the prompt plus `max_output_tokens`
//!   per choice.
//!
//! Every result must stay at or below [`MAX_NANO_USD`], the largest amount that Redis Lua
//! represents exactly.

use spendfuse_protocol::{Usage, MAX_NANO_USD, PICO_PER_NANO};

use crate::money::MAX_PRICE_PICO;
use crate::pricing::ModelPrice;

/// Reason a cost cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CostError {
    /// `choices` is zero.
    #[error("choices is 0; a request generates at least one choice")]
    ZeroChoices,
    /// A part of a usage total is above that total.
    #[error(
        "{part} ({value}) is above {total_field} ({total}); {part} counts part of {total_field}"
    )]
    PartAboveTotal {
        part: &'static str,
        value: u64,
        total_field: &'static str,
        total: u64,
    },
    /// The input parts of a usage add up to more than its prompt tokens.
    #[error("cached_prompt_tokens + cache_write_5m_tokens + cache_write_1h_tokens + audio_prompt_tokens is {sum}, above prompt_tokens ({prompt}); these fields are parts of prompt_tokens and must not overlap")]
    InputPartsAbovePrompt { sum: u64, prompt: u64 },
    /// A count is above 2^53 - 1.
    #[error("{field} is {value}, above the maximum of {MAX_NANO_USD}")]
    CountTooLarge { field: &'static str, value: u64 },
    /// The output price times `choices` is above what the reserve script can compute exactly.
    #[error("output price times choices is {per_token_pico} pico-dollars per token, above the maximum of {MAX_PRICE_PICO}; lower n")]
    PerTokenPriceTooLarge { per_token_pico: u128 },
    /// A cost is above 2^53 - 1 nano-dollars.
    #[error("the {what} is {nano} nano-dollars, above the maximum of {MAX_NANO_USD}; lower the token counts")]
    CostTooLarge { what: &'static str, nano: u128 },
}

/// Amounts that a reserve call checks against a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReserveCost {
    /// Cost of the prompt, every token at the highest prompt price, in nano-dollars.
    pub prompt_nano: u64,
    /// Cost of one output token per choice, over all choices, in pico-dollars.
    pub per_token_pico: u64,
    /// Output tokens per choice that the request may generate at most.
    pub max_output_tokens: u64,
    /// Minimum output tokens per choice worth granting, at most `max_output_tokens`.
    pub min_output_tokens: u64,
    /// Cost of `max_output_tokens` per choice, in nano-dollars.
    pub max_output_nano: u64,
    /// Cost of the prompt and `min_output_tokens` per choice, in nano-dollars.
    pub required_nano: u64,
}

impl ReserveCost {
    /// Cost of the prompt and `max_output_tokens` per choice, in nano-dollars.
    pub fn worst_case_nano(&self) -> u64 {
        self.prompt_nano.saturating_add(self.max_output_nano)
    }
}

/// Computes the reserve amounts of one request.
///
/// A `min_output_tokens` above `max_output_tokens` is lowered to `max_output_tokens`.
pub fn reserve_cost(
    price: &ModelPrice,
    prompt_tokens: u64,
    max_output_tokens: u64,
    min_output_tokens: u64,
    choices: u64,
) -> Result<ReserveCost, CostError> {
    check_count("prompt_tokens", prompt_tokens)?;
    check_count("max_output_tokens", max_output_tokens)?;
    check_count("choices", choices)?;
    if choices == 0 {
        return Err(CostError::ZeroChoices);
    }
    let min_output_tokens = min_output_tokens.min(max_output_tokens);
    let prices = price.prices_for(prompt_tokens);

    let per_token_pico = u128::from(prices.max_output_pico()) * u128::from(choices);
    if per_token_pico > u128::from(MAX_PRICE_PICO) {
        return Err(CostError::PerTokenPriceTooLarge { per_token_pico });
    }
    let prompt_pico = u128::from(prompt_tokens) * u128::from(prices.max_prompt_pico());
    let prompt_nano = pico_to_nano(prompt_pico);
    let max_output_nano = pico_to_nano(u128::from(max_output_tokens) * per_token_pico);
    let min_output_nano = pico_to_nano(u128::from(min_output_tokens) * per_token_pico);

    let worst_case = prompt_nano + max_output_nano;
    if worst_case > u128::from(MAX_NANO_USD) {
        return Err(CostError::CostTooLarge {
            what: "worst-case cost",
            nano: worst_case,
        });
    }
    // The worst case bounds every other amount, so these conversions cannot fail.
    let narrow = |nano: u128| u64::try_from(nano).unwrap_or(MAX_NANO_USD);
    Ok(ReserveCost {
        prompt_nano: narrow(prompt_nano),
        per_token_pico: narrow(per_token_pico),
        max_output_tokens,
        min_output_tokens,
        max_output_nano: narrow(max_output_nano),
        required_nano: narrow(prompt_nano + min_output_nano),
    })
}

/// Computes what a finished request costs, in nano-dollars.
pub fn settle_cost(price: &ModelPrice, usage: &Usage) -> Result<u64, CostError> {
    check_usage(usage)?;
    let prices = price.prices_for(usage.prompt_tokens);
    // check_usage makes sure that the parts fit in their totals, so these cannot underflow.
    let text_in = usage.prompt_tokens
        - usage.cached_prompt_tokens
        - usage.cache_write_5m_tokens
        - usage.cache_write_1h_tokens
        - usage.audio_prompt_tokens;
    let text_out = usage.completion_tokens - usage.audio_completion_tokens;
    let terms = [
        (text_in, prices.input_pico),
        (usage.cached_prompt_tokens, prices.cached_input_pico),
        (usage.cache_write_5m_tokens, prices.cache_write_5m_pico),
        (usage.cache_write_1h_tokens, prices.cache_write_1h_pico),
        (usage.audio_prompt_tokens, prices.audio_input_pico),
        (text_out, prices.output_pico),
        (usage.audio_completion_tokens, prices.audio_output_pico),
    ];
    // Each term is below 2^53 * 2^53, so the sum of seven fits in u128 with room to spare.
    let pico: u128 = terms
        .iter()
        .map(|(tokens, price)| u128::from(*tokens) * u128::from(*price))
        .sum();
    let nano = pico_to_nano(pico);
    if nano > u128::from(MAX_NANO_USD) {
        return Err(CostError::CostTooLarge {
            what: "actual cost",
            nano,
        });
    }
    u64::try_from(nano).map_err(|_| CostError::CostTooLarge {
        what: "actual cost",
        nano,
    })
}

/// Checks that every count is at most 2^53 - 1, that each part fits in its total, and that the
/// input parts together fit in `prompt_tokens`.
pub fn check_usage(usage: &Usage) -> Result<(), CostError> {
    let counts = [
        ("prompt_tokens", usage.prompt_tokens),
        ("cached_prompt_tokens", usage.cached_prompt_tokens),
        ("cache_write_5m_tokens", usage.cache_write_5m_tokens),
        ("cache_write_1h_tokens", usage.cache_write_1h_tokens),
        ("audio_prompt_tokens", usage.audio_prompt_tokens),
        ("completion_tokens", usage.completion_tokens),
        ("reasoning_tokens", usage.reasoning_tokens),
        ("audio_completion_tokens", usage.audio_completion_tokens),
    ];
    for (field, value) in counts {
        check_count(field, value)?;
    }

    let input_parts = [
        ("cached_prompt_tokens", usage.cached_prompt_tokens),
        ("cache_write_5m_tokens", usage.cache_write_5m_tokens),
        ("cache_write_1h_tokens", usage.cache_write_1h_tokens),
        ("audio_prompt_tokens", usage.audio_prompt_tokens),
    ];
    for (part, value) in input_parts {
        check_part(part, value, "prompt_tokens", usage.prompt_tokens)?;
    }
    let output_parts = [
        ("reasoning_tokens", usage.reasoning_tokens),
        ("audio_completion_tokens", usage.audio_completion_tokens),
    ];
    for (part, value) in output_parts {
        check_part(part, value, "completion_tokens", usage.completion_tokens)?;
    }

    // Each part is at most 2^53 - 1, so four of them fit in a u64.
    let sum: u64 = input_parts.iter().map(|(_, value)| value).sum();
    if sum > usage.prompt_tokens {
        return Err(CostError::InputPartsAbovePrompt {
            sum,
            prompt: usage.prompt_tokens,
        });
    }
    Ok(())
}

fn check_part(
    part: &'static str,
    value: u64,
    total_field: &'static str,
    total: u64,
) -> Result<(), CostError> {
    if value > total {
        return Err(CostError::PartAboveTotal {
            part,
            value,
            total_field,
            total,
        });
    }
    Ok(())
}

/// Rounds pico-dollars up to whole nano-dollars.
fn pico_to_nano(pico: u128) -> u128 {
    pico.div_ceil(u128::from(PICO_PER_NANO))
}

fn check_count(field: &'static str, value: u64) -> Result<(), CostError> {
    if value > MAX_NANO_USD {
        return Err(CostError::CountTooLarge { field, value });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::{PriceTier, TokenPrices};

    fn gpt_4o() -> ModelPrice {
        ModelPrice::new(TokenPrices {
            cached_input_pico: 1_250_000,
            ..TokenPrices::flat(2_500_000, 10_000_000)
        })
    }

    fn flat(input_pico: u64, output_pico: u64) -> ModelPrice {
        ModelPrice::new(TokenPrices::flat(input_pico, output_pico))
    }

    /// Prices with a distinct value in every category, so that a term priced in the wrong
    /// category changes the sum.
    fn every_category() -> ModelPrice {
        ModelPrice::new(TokenPrices {
            input_pico: 11,
            cached_input_pico: 3,
            cache_write_5m_pico: 13,
            cache_write_1h_pico: 17,
            audio_input_pico: 19,
            output_pico: 23,
            audio_output_pico: 29,
        })
    }

    /// Base input 1_000 and output 2_000 pico; above 100 prompt tokens 3_000 and 5_000, with a
    /// cache write at 7_000 and audio output at 9_000.
    fn tiered() -> ModelPrice {
        ModelPrice {
            base: TokenPrices::flat(1_000, 2_000),
            tiers: vec![PriceTier {
                above_prompt_tokens: 100,
                prices: TokenPrices {
                    cache_write_1h_pico: 7_000,
                    audio_output_pico: 9_000,
                    ..TokenPrices::flat(3_000, 5_000)
                },
            }],
        }
    }

    #[test]
    fn prompt_cost_rounds_up_once() {
        // 3 tokens at 2.5 micro-dollars each: 7_500_000 pico, 7_500 nano exactly.
        let cost = reserve_cost(&gpt_4o(), 3, 0, 0, 1);
        assert_eq!(cost.map(|c| c.prompt_nano), Ok(7_500));
    }

    #[test]
    fn prompt_cost_of_a_fraction_rounds_up() {
        let cost = reserve_cost(&flat(1, 1), 1_001, 0, 0, 1);
        assert_eq!(cost.map(|c| c.prompt_nano), Ok(2));
    }

    #[test]
    fn output_price_is_multiplied_by_choices() {
        let cost = reserve_cost(&gpt_4o(), 0, 100, 1, 3);
        assert_eq!(cost.map(|c| c.per_token_pico), Ok(30_000_000));
    }

    #[test]
    fn worst_case_covers_every_choice() {
        // 100 tokens * 3 choices * 10_000_000 pico = 3_000_000 nano, plus 10 prompt tokens.
        let cost = reserve_cost(&gpt_4o(), 10, 100, 1, 3);
        assert_eq!(cost.map(|c| c.worst_case_nano()), Ok(25_000 + 3_000_000));
    }

    #[test]
    fn reserve_uses_the_highest_prompt_price() {
        // The highest of 11, 13, 17 and 19 is the audio input price.
        let cost = reserve_cost(&every_category(), 1_000, 0, 0, 1);
        assert_eq!(cost.map(|c| c.prompt_nano), Ok(19));
    }

    #[test]
    fn reserve_prices_output_at_the_highest_output_price() {
        let cost = reserve_cost(&every_category(), 0, 10, 1, 1);
        assert_eq!(cost.map(|c| c.per_token_pico), Ok(29));
    }

    #[test]
    fn reserve_at_the_threshold_uses_base_prices() {
        // 100 * 1_000 + 10 * 2_000 pico = 120 nano.
        let cost = reserve_cost(&tiered(), 100, 10, 1, 1);
        assert_eq!(cost.map(|c| c.worst_case_nano()), Ok(120));
    }

    #[test]
    fn reserve_above_the_threshold_uses_the_tier() {
        // 101 * 7_000 + 10 * 9_000 pico = 707 + 90 nano.
        let cost = reserve_cost(&tiered(), 101, 10, 1, 1);
        assert_eq!(cost.map(|c| c.worst_case_nano()), Ok(797));
    }

    #[test]
    fn min_above_max_is_lowered() {
        let cost = reserve_cost(&gpt_4o(), 10, 5, 50, 1);
        assert_eq!(cost.map(|c| c.min_output_tokens), Ok(5));
    }

    #[test]
    fn required_covers_prompt_and_min_output() {
        let cost = reserve_cost(&gpt_4o(), 10, 100, 16, 1);
        assert_eq!(cost.map(|c| c.required_nano), Ok(25_000 + 160_000));
    }

    #[test]
    fn zero_choices_is_rejected() {
        assert_eq!(
            reserve_cost(&gpt_4o(), 10, 100, 16, 0),
            Err(CostError::ZeroChoices)
        );
    }

    #[test]
    fn count_above_two_pow_53_is_rejected() {
        let result = reserve_cost(&gpt_4o(), MAX_NANO_USD + 1, 1, 1, 1);
        assert!(matches!(
            result,
            Err(CostError::CountTooLarge {
                field: "prompt_tokens",
                ..
            })
        ));
    }

    #[test]
    fn huge_worst_case_is_rejected() {
        let result = reserve_cost(&gpt_4o(), 0, MAX_NANO_USD, 1, 1);
        assert!(matches!(result, Err(CostError::CostTooLarge { .. })));
    }

    #[test]
    fn huge_choices_times_price_is_rejected() {
        let result = reserve_cost(&gpt_4o(), 0, 1, 1, 10_000_000);
        assert!(matches!(
            result,
            Err(CostError::PerTokenPriceTooLarge { .. })
        ));
    }

    #[test]
    fn settle_prices_cached_tokens_at_cached_rate() {
        let usage = Usage {
            prompt_tokens: 1_000,
            cached_prompt_tokens: 400,
            completion_tokens: 10,
            ..Usage::default()
        };
        // 600 * 2.5 + 400 * 1.25 + 10 * 10 micro-dollars = 2_100 micro = 2_100_000 nano.
        assert_eq!(settle_cost(&gpt_4o(), &usage), Ok(2_100_000));
    }

    #[test]
    fn settle_prices_every_category() {
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
        // 35 * 11 + 10 * 3 + 20 * 13 + 30 * 17 + 5 * 19 + 43 * 23 + 7 * 29 = 2_472 pico, which
        // rounds up to 3 nano.
        assert_eq!(settle_cost(&every_category(), &usage), Ok(3));
    }

    #[test]
    fn settle_at_the_threshold_uses_base_prices() {
        // 100 * 1_000 + 10 * 2_000 pico = 120 nano.
        assert_eq!(settle_cost(&tiered(), &Usage::text(100, 10)), Ok(120));
    }

    #[test]
    fn settle_above_the_threshold_uses_the_tier() {
        // 101 * 3_000 + 10 * 5_000 pico = 353 nano.
        assert_eq!(settle_cost(&tiered(), &Usage::text(101, 10)), Ok(353));
    }

    #[test]
    fn settle_rounds_the_sum_not_each_part() {
        // 1 prompt token at 1_500 pico and 1 completion token at 1_500 pico: 3_000 pico is
        // 3 nano. Rounding each part on its own would give 2 + 2 = 4.
        let price = flat(1_500, 1_500);
        assert_eq!(settle_cost(&price, &Usage::text(1, 1)), Ok(3));
    }

    #[test]
    fn settle_rounds_a_fraction_up() {
        assert_eq!(settle_cost(&flat(1, 1), &Usage::text(1, 0)), Ok(1));
    }

    #[test]
    fn settle_with_more_cached_than_prompt_is_rejected() {
        let usage = Usage {
            prompt_tokens: 1,
            cached_prompt_tokens: 2,
            ..Usage::default()
        };
        assert!(matches!(
            settle_cost(&gpt_4o(), &usage),
            Err(CostError::PartAboveTotal {
                part: "cached_prompt_tokens",
                ..
            })
        ));
    }

    #[test]
    fn input_parts_above_prompt_are_rejected() {
        let usage = Usage {
            prompt_tokens: 10,
            cached_prompt_tokens: 6,
            cache_write_1h_tokens: 5,
            ..Usage::default()
        };
        assert_eq!(
            check_usage(&usage),
            Err(CostError::InputPartsAbovePrompt {
                sum: 11,
                prompt: 10
            })
        );
    }

    #[test]
    fn reasoning_above_completion_is_rejected() {
        let usage = Usage {
            completion_tokens: 3,
            reasoning_tokens: 4,
            ..Usage::default()
        };
        assert!(matches!(
            check_usage(&usage),
            Err(CostError::PartAboveTotal {
                part: "reasoning_tokens",
                ..
            })
        ));
    }

    #[test]
    fn audio_completion_above_completion_is_rejected() {
        let usage = Usage {
            completion_tokens: 3,
            audio_completion_tokens: 4,
            ..Usage::default()
        };
        assert!(matches!(
            check_usage(&usage),
            Err(CostError::PartAboveTotal {
                part: "audio_completion_tokens",
                ..
            })
        ));
    }

    #[test]
    fn reasoning_and_audio_may_overlap() {
        // Both are parts of completion_tokens; the contract does not say they are disjoint.
        let usage = Usage {
            completion_tokens: 3,
            reasoning_tokens: 3,
            audio_completion_tokens: 3,
            ..Usage::default()
        };
        assert_eq!(check_usage(&usage), Ok(()));
    }

    #[test]
    fn huge_reasoning_count_is_rejected() {
        let usage = Usage {
            completion_tokens: MAX_NANO_USD,
            reasoning_tokens: MAX_NANO_USD + 1,
            ..Usage::default()
        };
        assert!(matches!(
            check_usage(&usage),
            Err(CostError::CountTooLarge {
                field: "reasoning_tokens",
                ..
            })
        ));
    }

    #[test]
    fn part_error_names_the_field() {
        let error = CostError::PartAboveTotal {
            part: "audio_prompt_tokens",
            value: 5,
            total_field: "prompt_tokens",
            total: 4,
        };
        assert!(error
            .to_string()
            .starts_with("audio_prompt_tokens (5) is above prompt_tokens (4)"));
    }

    #[test]
    fn settle_above_two_pow_53_nano_is_rejected() {
        let usage = Usage::text(0, MAX_NANO_USD);
        assert!(matches!(
            settle_cost(&gpt_4o(), &usage),
            Err(CostError::CostTooLarge { .. })
        ));
    }
}
