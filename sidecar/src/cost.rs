//! Cost rules: token counts times prices, in integer nano-dollars.
//!
//! Token counts times prices in pico-dollars per token give pico-dollars, computed in u128 so
//! nothing overflows. Each request is rounded up to whole nano-dollars once:
//!
//! - settle: `(prompt - cached) * input + cached * cached_input + completion * output`
//!   pico-dollars, charged as `ceil(pico / 1000)` nano-dollars.
//! - reserve: the prompt costs `ceil(prompt * input / 1000)`. Every output token per choice
//!   costs `output * choices` pico-dollars, so `t` output tokens per choice cost
//!   `ceil(t * output * choices / 1000)`. The worst case is the prompt plus
//!   `max_output_tokens` per choice.
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
    /// More cached prompt tokens than prompt tokens.
    #[error("cached_prompt_tokens ({cached}) is above prompt_tokens ({prompt}); cached tokens are part of the prompt")]
    CachedAbovePrompt { cached: u64, prompt: u64 },
    /// An input count is above 2^53 - 1.
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
    /// Cost of the prompt, all of it priced as uncached input, in nano-dollars.
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

    let per_token_pico = u128::from(price.output_pico) * u128::from(choices);
    if per_token_pico > u128::from(MAX_PRICE_PICO) {
        return Err(CostError::PerTokenPriceTooLarge { per_token_pico });
    }
    let prompt_nano = pico_to_nano(u128::from(prompt_tokens) * u128::from(price.input_pico));
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
    let uncached = u128::from(usage.prompt_tokens - usage.cached_prompt_tokens);
    let pico = uncached * u128::from(price.input_pico)
        + u128::from(usage.cached_prompt_tokens) * u128::from(price.cached_input_pico)
        + u128::from(usage.completion_tokens) * u128::from(price.output_pico);
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

/// Checks that every count is at most 2^53 - 1 and that cached tokens are part of the prompt.
pub fn check_usage(usage: &Usage) -> Result<(), CostError> {
    check_count("prompt_tokens", usage.prompt_tokens)?;
    check_count("cached_prompt_tokens", usage.cached_prompt_tokens)?;
    check_count("completion_tokens", usage.completion_tokens)?;
    if usage.cached_prompt_tokens > usage.prompt_tokens {
        return Err(CostError::CachedAbovePrompt {
            cached: usage.cached_prompt_tokens,
            prompt: usage.prompt_tokens,
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

    const GPT_4O: ModelPrice = ModelPrice {
        input_pico: 2_500_000,
        cached_input_pico: 1_250_000,
        output_pico: 10_000_000,
    };

    #[test]
    fn prompt_cost_rounds_up_once() {
        // 3 tokens at 2.5 micro-dollars each: 7_500_000 pico, 7_500 nano exactly.
        let cost = reserve_cost(&GPT_4O, 3, 0, 0, 1);
        assert_eq!(cost.map(|c| c.prompt_nano), Ok(7_500));
    }

    #[test]
    fn prompt_cost_of_a_fraction_rounds_up() {
        let cheap = ModelPrice {
            input_pico: 1,
            cached_input_pico: 1,
            output_pico: 1,
        };
        let cost = reserve_cost(&cheap, 1_001, 0, 0, 1);
        assert_eq!(cost.map(|c| c.prompt_nano), Ok(2));
    }

    #[test]
    fn output_price_is_multiplied_by_choices() {
        let cost = reserve_cost(&GPT_4O, 0, 100, 1, 3);
        assert_eq!(cost.map(|c| c.per_token_pico), Ok(30_000_000));
    }

    #[test]
    fn worst_case_covers_every_choice() {
        // 100 tokens * 3 choices * 10_000_000 pico = 3_000_000 nano, plus 10 prompt tokens.
        let cost = reserve_cost(&GPT_4O, 10, 100, 1, 3);
        assert_eq!(cost.map(|c| c.worst_case_nano()), Ok(25_000 + 3_000_000));
    }

    #[test]
    fn min_above_max_is_lowered() {
        let cost = reserve_cost(&GPT_4O, 10, 5, 50, 1);
        assert_eq!(cost.map(|c| c.min_output_tokens), Ok(5));
    }

    #[test]
    fn required_covers_prompt_and_min_output() {
        let cost = reserve_cost(&GPT_4O, 10, 100, 16, 1);
        assert_eq!(cost.map(|c| c.required_nano), Ok(25_000 + 160_000));
    }

    #[test]
    fn zero_choices_is_rejected() {
        assert_eq!(
            reserve_cost(&GPT_4O, 10, 100, 16, 0),
            Err(CostError::ZeroChoices)
        );
    }

    #[test]
    fn count_above_two_pow_53_is_rejected() {
        let result = reserve_cost(&GPT_4O, MAX_NANO_USD + 1, 1, 1, 1);
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
        let result = reserve_cost(&GPT_4O, 0, MAX_NANO_USD, 1, 1);
        assert!(matches!(result, Err(CostError::CostTooLarge { .. })));
    }

    #[test]
    fn huge_choices_times_price_is_rejected() {
        let result = reserve_cost(&GPT_4O, 0, 1, 1, 10_000_000);
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
        assert_eq!(settle_cost(&GPT_4O, &usage), Ok(2_100_000));
    }

    #[test]
    fn settle_rounds_the_sum_not_each_part() {
        // 1 prompt token at 1_500 pico and 1 completion token at 1_500 pico: 3_000 pico is
        // 3 nano. Rounding each part on its own would give 2 + 2 = 4.
        let price = ModelPrice {
            input_pico: 1_500,
            cached_input_pico: 1_500,
            output_pico: 1_500,
        };
        let usage = Usage {
            prompt_tokens: 1,
            cached_prompt_tokens: 0,
            completion_tokens: 1,
            ..Usage::default()
        };
        assert_eq!(settle_cost(&price, &usage), Ok(3));
    }

    #[test]
    fn settle_rounds_a_fraction_up() {
        let price = ModelPrice {
            input_pico: 1,
            cached_input_pico: 1,
            output_pico: 1,
        };
        let usage = Usage {
            prompt_tokens: 1,
            cached_prompt_tokens: 0,
            completion_tokens: 0,
            ..Usage::default()
        };
        assert_eq!(settle_cost(&price, &usage), Ok(1));
    }

    #[test]
    fn settle_with_more_cached_than_prompt_is_rejected() {
        let usage = Usage {
            prompt_tokens: 1,
            cached_prompt_tokens: 2,
            completion_tokens: 0,
            ..Usage::default()
        };
        assert!(matches!(
            settle_cost(&GPT_4O, &usage),
            Err(CostError::CachedAbovePrompt { .. })
        ));
    }

    #[test]
    fn settle_above_two_pow_53_nano_is_rejected() {
        let usage = Usage {
            prompt_tokens: 0,
            cached_prompt_tokens: 0,
            completion_tokens: MAX_NANO_USD,
            ..Usage::default()
        };
        assert!(matches!(
            settle_cost(&GPT_4O, &usage),
            Err(CostError::CostTooLarge { .. })
        ));
    }
}
