//! Exact conversion between decimal dollar strings and integer money units, with no floats.

use spendfuse_protocol::{MAX_NANO_USD, NANO_USD_PER_USD, PICO_PER_NANO};

/// Largest price in pico-dollars per token. The reserve script multiplies an output price (times
/// the number of choices) by up to 1000 and must stay below 2^53, so no single price may pass
/// (2^53 - 1) / 1000, which is about $9 million per million tokens.
pub const MAX_PRICE_PICO: u64 = MAX_NANO_USD / PICO_PER_NANO;

/// Decimal places in a price per million tokens: one millionth of a dollar per million tokens is
/// one pico-dollar per token.
const PRICE_DECIMALS: u32 = 6;

/// Decimal places in a dollar amount: one nano-dollar.
const USD_DECIMALS: u32 = 9;

/// Reason a decimal string is not a valid amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// The string has a minus sign.
    #[error("{value:?} is negative; amounts must be zero or more")]
    Negative { value: String },
    /// The string is not digits with an optional fraction.
    #[error("{value:?} is not a decimal number; write digits with an optional fraction, such as \"2.50\"")]
    Invalid { value: String },
    /// The fraction is longer than the unit allows.
    #[error("{value:?} has more than {max} decimal places")]
    TooManyDecimals { value: String, max: u32 },
    /// The amount is above the largest allowed.
    #[error("{value:?} is above the maximum of {max}")]
    TooLarge { value: String, max: String },
}

/// Parses a dollar amount such as `"25.00"` into nano-dollars, exactly.
///
/// Accepts digits with an optional `.` and 1 to 9 fraction digits, at most
/// [`MAX_NANO_USD`] nano-dollars (about 9 million USD).
pub fn parse_usd(text: &str) -> Result<u64, DecimalError> {
    parse_scaled(text, USD_DECIMALS, MAX_NANO_USD)
}

/// Parses a price in USD per million tokens such as `"2.50"` into pico-dollars per token.
///
/// Pico-dollars per token equal micro-dollars per million tokens, so `"2.50"` is 2_500_000.
/// Accepts at most 6 fraction digits and at most [`MAX_PRICE_PICO`].
pub fn parse_price_per_million(text: &str) -> Result<u64, DecimalError> {
    parse_scaled(text, PRICE_DECIMALS, MAX_PRICE_PICO)
}

/// Formats nano-dollars as a dollar string with all 9 decimal places, such as `"0.000123450"`.
pub fn format_usd(nano: u64) -> String {
    let whole = nano / NANO_USD_PER_USD;
    let fraction = nano % NANO_USD_PER_USD;
    format!("{whole}.{fraction:09}")
}

/// Formats a price in pico-dollars per token as USD per million tokens, with 2 to 6 decimal
/// places, such as `"2.50"` or `"0.125"`. It is the inverse of [`parse_price_per_million`].
pub fn format_price_per_million(pico: u64) -> String {
    let scale = 10u64.pow(PRICE_DECIMALS);
    let fraction = format!("{:06}", pico % scale);
    let trimmed = fraction.trim_end_matches('0');
    // The fraction has 6 ASCII digits, so its first two always exist.
    let fraction_digits = if trimmed.len() < 2 {
        fraction.get(..2).unwrap_or("00")
    } else {
        trimmed
    };
    format!("{}.{fraction_digits}", pico / scale)
}

/// Parses `text` as a count of `10^-decimals` units, at most `max_units`.
fn parse_scaled(text: &str, decimals: u32, max_units: u64) -> Result<u64, DecimalError> {
    if text.starts_with('-') {
        return Err(DecimalError::Negative {
            value: text.to_string(),
        });
    }
    let invalid = || DecimalError::Invalid {
        value: text.to_string(),
    };
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let fraction = fraction.unwrap_or("");
    if text.contains('.') && fraction.is_empty() {
        return Err(invalid());
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    if fraction.len() > decimals as usize {
        return Err(DecimalError::TooManyDecimals {
            value: text.to_string(),
            max: decimals,
        });
    }

    let too_large = || DecimalError::TooLarge {
        value: text.to_string(),
        max: format_scaled(max_units, decimals),
    };
    // u128 represents any 38-digit number, so only a longer whole part can overflow it.
    let whole_value: u128 = whole.parse().map_err(|_| too_large())?;
    let scale = 10u128.pow(decimals);
    let padding = 10u128.pow(decimals - fraction.len() as u32);
    let fraction_value: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<u128>().map_err(|_| invalid())? * padding
    };
    let units = whole_value
        .checked_mul(scale)
        .and_then(|scaled| scaled.checked_add(fraction_value))
        .ok_or_else(too_large)?;
    if units > u128::from(max_units) {
        return Err(too_large());
    }
    u64::try_from(units).map_err(|_| too_large())
}

/// Formats a count of `10^-decimals` units as a decimal string with trailing zeros removed.
fn format_scaled(units: u64, decimals: u32) -> String {
    let scale = 10u64.pow(decimals);
    let fraction = format!("{:0width$}", units % scale, width = decimals as usize);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        format!("{}", units / scale)
    } else {
        format!("{}.{fraction}", units / scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_with_cents_parses_to_nano() {
        assert_eq!(parse_usd("25.00"), Ok(25_000_000_000));
    }

    #[test]
    fn usd_without_fraction_parses() {
        assert_eq!(parse_usd("7"), Ok(7_000_000_000));
    }

    #[test]
    fn usd_with_nine_decimals_parses_exactly() {
        assert_eq!(parse_usd("0.000000001"), Ok(1));
    }

    #[test]
    fn usd_with_ten_decimals_is_rejected() {
        assert!(matches!(
            parse_usd("0.0000000001"),
            Err(DecimalError::TooManyDecimals { .. })
        ));
    }

    #[test]
    fn usd_at_maximum_parses() {
        assert_eq!(parse_usd("9007199.254740991"), Ok(MAX_NANO_USD));
    }

    #[test]
    fn usd_above_maximum_is_rejected() {
        assert!(matches!(
            parse_usd("9007199.254740992"),
            Err(DecimalError::TooLarge { .. })
        ));
    }

    #[test]
    fn usd_with_huge_whole_part_is_too_large() {
        let huge = "9".repeat(60);
        assert!(matches!(
            parse_usd(&huge),
            Err(DecimalError::TooLarge { .. })
        ));
    }

    #[test]
    fn negative_usd_is_rejected() {
        assert!(matches!(
            parse_usd("-1.00"),
            Err(DecimalError::Negative { .. })
        ));
    }

    #[test]
    fn malformed_decimals_are_rejected() {
        for text in [
            "", ".5", "5.", "1.2.3", "+1", "1e3", " 1", "1 ", "1,5", "0x10", "1.-5",
        ] {
            assert!(
                matches!(parse_usd(text), Err(DecimalError::Invalid { .. })),
                "{text:?} should be invalid"
            );
        }
    }

    #[test]
    fn price_per_million_parses_to_pico_per_token() {
        assert_eq!(parse_price_per_million("2.50"), Ok(2_500_000));
    }

    #[test]
    fn price_with_six_decimals_parses() {
        assert_eq!(parse_price_per_million("0.000001"), Ok(1));
    }

    #[test]
    fn price_with_seven_decimals_is_rejected() {
        assert!(matches!(
            parse_price_per_million("0.0000001"),
            Err(DecimalError::TooManyDecimals { max: 6, .. })
        ));
    }

    #[test]
    fn price_above_maximum_is_rejected() {
        assert!(matches!(
            parse_price_per_million("10000000"),
            Err(DecimalError::TooLarge { .. })
        ));
    }

    #[test]
    fn zero_price_parses() {
        assert_eq!(parse_price_per_million("0"), Ok(0));
    }

    #[test]
    fn format_keeps_nine_decimals() {
        assert_eq!(format_usd(123_450), "0.000123450");
    }

    #[test]
    fn format_of_whole_dollars() {
        assert_eq!(format_usd(25_000_000_000), "25.000000000");
    }

    #[test]
    fn price_format_keeps_two_decimals() {
        assert_eq!(format_price_per_million(2_500_000), "2.50");
    }

    #[test]
    fn price_format_keeps_significant_decimals() {
        assert_eq!(format_price_per_million(125_000), "0.125");
    }

    #[test]
    fn price_format_of_one_pico() {
        assert_eq!(format_price_per_million(1), "0.000001");
    }

    #[test]
    fn price_format_of_zero() {
        assert_eq!(format_price_per_million(0), "0.00");
    }

    #[test]
    fn price_format_round_trips() {
        for pico in [0, 1, 10, 75_000, 22_500_000, 600_000_000, MAX_PRICE_PICO] {
            let text = format_price_per_million(pico);
            assert_eq!(parse_price_per_million(&text), Ok(pico), "text was {text}");
        }
    }

    #[test]
    fn too_large_message_names_the_maximum() {
        let message = parse_usd("10000000").map_err(|e| e.to_string());
        assert_eq!(
            message,
            Err("\"10000000\" is above the maximum of 9007199.254740991".into())
        );
    }
}
