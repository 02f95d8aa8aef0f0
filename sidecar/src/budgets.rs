//! The budgets file: limits applied to Redis when the sidecar starts.
//!
//! ```toml
//! [budgets."team-search"]
//! limit_usd = "25.00"
//! ```
//!
//! `config/budgets.toml` documents the format.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;
use crate::money::{parse_usd, DecimalError};
use crate::store::BudgetName;

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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetsFile {
    #[serde(default)]
    budgets: BTreeMap<String, BudgetEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetEntry {
    limit_usd: String,
}

/// Reads the budgets file at `path` and returns each budget with its limit in nano-dollars,
/// sorted by name.
pub fn load(path: &Path) -> Result<Vec<(BudgetName, u64)>, BudgetsFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| BudgetsFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text)
}

/// Parses the text of a budgets file.
pub fn parse(text: &str) -> Result<Vec<(BudgetName, u64)>, BudgetsFileError> {
    let file: BudgetsFile = toml::from_str(text)?;
    let mut limits = Vec::with_capacity(file.budgets.len());
    for (name, entry) in file.budgets {
        let budget = BudgetName::parse(&name).map_err(BudgetsFileError::Name)?;
        let limit = parse_usd(&entry.limit_usd)
            .map_err(|source| BudgetsFileError::Limit { name, source })?;
        limits.push((budget, limit));
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_in_name_order() {
        let text = "[budgets.b]\nlimit_usd = \"2\"\n[budgets.a]\nlimit_usd = \"1.5\"\n";
        let parsed = parse(text).ok().map(|limits| {
            limits
                .into_iter()
                .map(|(n, l)| (n.to_string(), l))
                .collect::<Vec<_>>()
        });
        assert_eq!(
            parsed,
            Some(vec![
                ("a".to_string(), 1_500_000_000),
                ("b".to_string(), 2_000_000_000)
            ])
        );
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
