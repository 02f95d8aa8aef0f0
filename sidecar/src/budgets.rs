//! The budgets file: limits applied to Redis when the sidecar starts.
//!
//! ```toml
//! [budgets."team-search"]
//! root = "org-acme"
//! windows = { month = "500.00", minute = "5.00" }
//! ```
//!
//! `config/budgets.toml` documents the format.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::admin::{budget_id, BudgetBody};
use crate::error::Error;
use crate::money::{parse_usd, DecimalError};
use crate::store::{BudgetId, BudgetUpdate};

/// Reason a budgets file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BudgetsFileError {
    /// The file cannot be read.
    #[error("cannot read budgets file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the expected tables and fields.
    #[error("invalid budgets file: {0}")]
    Parse(#[from] toml::de::Error),
    /// A budget name cannot be used.
    #[error("invalid budgets file: {0}")]
    Name(Error),
    /// A limit does not parse.
    #[error("invalid budgets file: budgets.{name:?}.limit_usd: {source}")]
    Limit { name: String, source: DecimalError },
    /// An entry's windows, root or limits cannot be used.
    #[error("invalid budgets file: budgets.{name:?}: {source}")]
    Entry { name: String, source: Error },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetsFile {
    #[serde(default)]
    budgets: BTreeMap<String, BudgetBody>,
}

/// Reads the budgets file at `path` and returns each budget with its update, sorted by name.
pub fn load(path: &Path) -> Result<Vec<(BudgetId, BudgetUpdate)>, BudgetsFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| BudgetsFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text)
}

/// Parses the text of a budgets file.
pub fn parse(text: &str) -> Result<Vec<(BudgetId, BudgetUpdate)>, BudgetsFileError> {
    let file: BudgetsFile = toml::from_str(text)?;
    let mut entries = Vec::with_capacity(file.budgets.len());
    for (name, entry) in file.budgets {
        let id = budget_id(&name, entry.root.as_deref()).map_err(BudgetsFileError::Name)?;
        if let Some(limit) = &entry.limit_usd {
            if let Err(source) = parse_usd(limit) {
                return Err(BudgetsFileError::Limit { name, source });
            }
        }
        let update = match entry.to_update() {
            Ok(update) if !update.limits.is_empty() => update,
            Ok(_) => {
                let source = Error::NoWindows {
                    budget: id.to_string(),
                };
                return Err(BudgetsFileError::Entry { name, source });
            }
            Err(source) => return Err(BudgetsFileError::Entry { name, source }),
        };
        entries.push((id, update));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::WindowKind;

    #[test]
    fn entries_parse_in_name_order() {
        let text = "[budgets.b]\nlimit_usd = \"2\"\n[budgets.a]\nlimit_usd = \"1.5\"\n";
        let parsed = parse(text).ok().map(|entries| {
            entries
                .into_iter()
                .map(|(id, update)| (id.name.to_string(), update.limits))
                .collect::<Vec<_>>()
        });
        assert_eq!(
            parsed,
            Some(vec![
                ("a".to_string(), vec![(WindowKind::Lifetime, 1_500_000_000)]),
                ("b".to_string(), vec![(WindowKind::Lifetime, 2_000_000_000)])
            ])
        );
    }

    #[test]
    fn windows_root_and_shadow_parse() {
        let text = "[budgets.team]\nroot = \"org\"\nshadow = true\n\
                    windows = { month = \"500\", minute = \"5\" }\n";
        let entries = parse(text).ok().unwrap_or_default();
        let (id, update) = entries.first().cloned().unzip();
        assert_eq!(id.map(|id| id.root.to_string()), Some("org".to_string()));
        assert_eq!(
            update.clone().map(|u| u.limits),
            Some(vec![
                (WindowKind::Minute, 5_000_000_000),
                (WindowKind::Month, 500_000_000_000)
            ])
        );
        assert_eq!(update.and_then(|u| u.shadow), Some(true));
    }

    #[test]
    fn unknown_window_is_rejected() {
        let result = parse("[budgets.a]\nwindows = { fortnight = \"1\" }\n");
        assert!(matches!(result, Err(BudgetsFileError::Entry { .. })));
    }

    #[test]
    fn entry_without_limits_is_rejected() {
        let result = parse("[budgets.a]\nshadow = true\n");
        assert!(matches!(result, Err(BudgetsFileError::Entry { .. })));
    }

    #[test]
    fn empty_file_has_no_budgets() {
        assert!(matches!(parse(""), Ok(limits) if limits.is_empty()));
    }

    #[test]
    fn invalid_limit_names_the_budget() {
        let message = parse("[budgets.a]\nlimit_usd = \"-1\"\n")
            .err()
            .map(|e| e.to_string());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("budgets.\"a\".limit_usd")),
            "message was {message:?}"
        );
    }

    #[test]
    fn invalid_name_is_rejected() {
        let result = parse("[budgets.\"a{b\"]\nlimit_usd = \"1\"\n");
        assert!(matches!(result, Err(BudgetsFileError::Name(_))));
    }

    #[test]
    fn numeric_limit_is_rejected() {
        assert!(matches!(
            parse("[budgets.a]\nlimit_usd = 1.5\n"),
            Err(BudgetsFileError::Parse(_))
        ));
    }
}
