//! Suffixes that providers add to a model family's name for a snapshot, which the price lookup
//! removes to find the family's entry.

/// Returns `name` without a trailing `-YYYY-MM-DD` or `-YYYYMMDD`, or `None` when it has neither.
///
/// OpenAI dates snapshots the first way (`gpt-4o-2024-08-06`), Anthropic the second
/// (`claude-sonnet-4-5-20250929`).
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
        (date.len() == 8 && is_digits(date)).then_some(base)
    };
    dashed.or_else(compact).filter(|base| !base.is_empty())
}

/// Returns `name` without a trailing three-digit version such as `-001`, or `None` when it has
/// none. Google names stable Gemini snapshots this way (`gemini-2.0-flash-001`).
pub fn strip_version_suffix(name: &str) -> Option<&str> {
    let (base, version) = name.rsplit_once('-')?;
    (version.len() == 3 && is_digits(version) && !base.is_empty()).then_some(base)
}

/// Returns `name` without a trailing `-preview-MM-DD` or `-preview-MM-YYYY`, or `None` when it
/// has neither. Google names Gemini previews this way (`gemini-2.5-flash-preview-05-20`,
/// `gemini-2.5-flash-lite-preview-09-2025`).
pub fn strip_preview_suffix(name: &str) -> Option<&str> {
    let (base, date) = name.rsplit_once("-preview-")?;
    let (month, rest) = date.split_once('-')?;
    let day_or_year_ok = match rest.len() {
        2 => is_digits(rest) && is_in_range(rest, 1, 31),
        4 => is_digits(rest),
        _ => false,
    };
    let month_ok = month.len() == 2 && is_digits(month) && is_in_range(month, 1, 12);
    (month_ok && day_or_year_ok && !base.is_empty()).then_some(base)
}

/// True for `YYYY-MM-DD` with a month from 01 to 12 and a day from 01 to 31.
pub fn is_iso_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    let shape_ok = bytes.len() == 10
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            4 | 7 => *byte == b'-',
            _ => byte.is_ascii_digit(),
        });
    shape_ok
        && text
            .get(5..7)
            .is_some_and(|month| is_in_range(month, 1, 12))
        && text.get(8..10).is_some_and(|day| is_in_range(day, 1, 31))
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

fn is_in_range(digits: &str, min: u32, max: u32) -> bool {
    digits
        .parse::<u32>()
        .is_ok_and(|value| (min..=max).contains(&value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashed_date_is_removed() {
        assert_eq!(strip_date_suffix("gpt-4o-2024-08-06"), Some("gpt-4o"));
    }

    #[test]
    fn compact_date_is_removed() {
        assert_eq!(
            strip_date_suffix("claude-sonnet-4-5-20250929"),
            Some("claude-sonnet-4-5")
        );
    }

    #[test]
    fn date_strip_keeps_names_without_dates() {
        assert_eq!(strip_date_suffix("gpt-4o-mini"), None);
    }

    #[test]
    fn date_strip_ignores_four_digit_suffixes() {
        assert_eq!(strip_date_suffix("gpt-3.5-turbo-0125"), None);
    }

    #[test]
    fn date_strip_rejects_month_thirteen() {
        assert_eq!(strip_date_suffix("gpt-4o-2024-13-01"), None);
    }

    #[test]
    fn date_strip_of_a_bare_date_is_none() {
        assert_eq!(strip_date_suffix("-2024-08-06"), None);
    }

    #[test]
    fn date_strip_handles_multibyte_names() {
        assert_eq!(strip_date_suffix("modèle-2024-08-06"), Some("modèle"));
    }

    #[test]
    fn three_digit_version_is_removed() {
        assert_eq!(
            strip_version_suffix("gemini-2.0-flash-001"),
            Some("gemini-2.0-flash")
        );
    }

    #[test]
    fn version_strip_ignores_four_digits() {
        assert_eq!(strip_version_suffix("gpt-4-0613"), None);
    }

    #[test]
    fn version_strip_ignores_two_digits() {
        assert_eq!(strip_version_suffix("gpt-4o-mini-tts-01"), None);
    }

    #[test]
    fn version_strip_ignores_letters() {
        assert_eq!(strip_version_suffix("gemini-2.0-flash-exp"), None);
    }

    #[test]
    fn version_strip_of_a_bare_version_is_none() {
        assert_eq!(strip_version_suffix("-001"), None);
    }

    #[test]
    fn preview_with_month_and_day_is_removed() {
        assert_eq!(
            strip_preview_suffix("gemini-2.5-flash-preview-05-20"),
            Some("gemini-2.5-flash")
        );
    }

    #[test]
    fn preview_with_month_and_year_is_removed() {
        assert_eq!(
            strip_preview_suffix("gemini-2.5-flash-lite-preview-09-2025"),
            Some("gemini-2.5-flash-lite")
        );
    }

    #[test]
    fn preview_strip_rejects_month_thirteen() {
        assert_eq!(strip_preview_suffix("gemini-2.5-pro-preview-13-01"), None);
    }

    #[test]
    fn preview_strip_rejects_day_zero() {
        assert_eq!(strip_preview_suffix("gemini-2.5-pro-preview-05-00"), None);
    }

    #[test]
    fn preview_strip_needs_a_date() {
        assert_eq!(strip_preview_suffix("gpt-4o-audio-preview"), None);
    }

    #[test]
    fn preview_strip_rejects_a_named_preview() {
        assert_eq!(strip_preview_suffix("gemini-2.5-flash-preview-tts"), None);
    }

    #[test]
    fn iso_date_accepts_a_valid_day() {
        assert!(is_iso_date("2026-12-04"));
    }

    #[test]
    fn iso_date_rejects_day_32() {
        assert!(!is_iso_date("2026-12-32"));
    }
}
