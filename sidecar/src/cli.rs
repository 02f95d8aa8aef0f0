//! Budget commands of the sidecar binary: create, read, update and delete budgets and reset a
//! window, straight in Redis, with the same checks and output as the admin API.

use clap::Subcommand;

use crate::admin::{budget_id, BudgetBody, BudgetList, BudgetView};
use crate::error::Error;
use crate::store::Store;
use crate::window::WindowKind;

/// Subcommands of the sidecar binary; without one, it serves the API.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Manage budgets in the configured Redis and print the result as JSON.
    #[command(subcommand)]
    Budgets(BudgetCommand),
}

/// Budget subcommands. Each prints the resulting budget, or the list, as JSON on stdout.
#[derive(Debug, Clone, Subcommand)]
pub enum BudgetCommand {
    /// Print every budget with the current period of each window.
    List,
    /// Print one budget.
    Get {
        /// Budget name.
        name: String,
        /// Root scope of the budget's hierarchy; the budget itself when absent.
        #[arg(long)]
        root: Option<String>,
    },
    /// Create a budget or change its limits or mode.
    Put {
        /// Budget name.
        name: String,
        /// Root scope of the budget's hierarchy; the budget itself when absent.
        #[arg(long)]
        root: Option<String>,
        /// Limit of one window as KIND=USD, such as month=500.00; repeat for several. Given
        /// windows replace all of the budget's windows.
        #[arg(long = "window", value_name = "KIND=USD")]
        windows: Vec<String>,
        /// Lifetime limit in USD, such as 25.00; alone, it keeps the other windows.
        #[arg(long)]
        limit_usd: Option<String>,
        /// true to only log and count the budget's decisions, false to enforce them.
        #[arg(long)]
        shadow: Option<bool>,
    },
    /// Delete a budget and print its last state.
    Delete {
        /// Budget name.
        name: String,
        /// Root scope of the budget's hierarchy; the budget itself when absent.
        #[arg(long)]
        root: Option<String>,
    },
    /// Set the spent and overrun of a window's current period to 0; live holds stay reserved.
    Reset {
        /// Budget name.
        name: String,
        /// Window kind: minute, hour, day, week, month or lifetime.
        window: String,
        /// Root scope of the budget's hierarchy; the budget itself when absent.
        #[arg(long)]
        root: Option<String>,
    },
}

/// Runs `command` against `store` and returns the JSON text to print.
pub async fn run(command: &BudgetCommand, store: &Store) -> Result<String, Error> {
    let json = match command {
        BudgetCommand::List => {
            let mut budgets = Vec::new();
            for id in store.budget_ids().await? {
                if let Some(found) = store.budget_of(&id).await? {
                    budgets.push(BudgetView::from(&found));
                }
            }
            serde_json::to_string_pretty(&BudgetList { budgets })
        }
        BudgetCommand::Get { name, root } => {
            let id = budget_id(name, root.as_deref())?;
            let found = store.budget_of(&id).await?.ok_or_else(|| not_found(name))?;
            serde_json::to_string_pretty(&BudgetView::from(&found))
        }
        BudgetCommand::Put {
            name,
            root,
            windows,
            limit_usd,
            shadow,
        } => {
            let body = put_body(root.clone(), windows, limit_usd.clone(), *shadow)?;
            let id = budget_id(name, root.as_deref())?;
            let updated = store.update_budget(&id, &body.to_update()?).await?;
            serde_json::to_string_pretty(&BudgetView::from(&updated))
        }
        BudgetCommand::Delete { name, root } => {
            let id = budget_id(name, root.as_deref())?;
            let deleted = store
                .delete_budget(&id)
                .await?
                .ok_or_else(|| not_found(name))?;
            serde_json::to_string_pretty(&BudgetView::from(&deleted))
        }
        BudgetCommand::Reset { name, window, root } => {
            let id = budget_id(name, root.as_deref())?;
            let kind =
                WindowKind::parse(window).ok_or_else(|| Error::InvalidWindow(window.clone()))?;
            let reset = store
                .reset_window(&id, kind)
                .await?
                .ok_or_else(|| not_found(name))?;
            serde_json::to_string_pretty(&BudgetView::from(&reset))
        }
    };
    json.map_err(|error| Error::Encode(error.to_string()))
}

fn not_found(name: &str) -> Error {
    Error::BudgetNotFound {
        name: name.to_string(),
    }
}

/// Builds the admin API body of a `put` from its options.
fn put_body(
    root: Option<String>,
    windows: &[String],
    limit_usd: Option<String>,
    shadow: Option<bool>,
) -> Result<BudgetBody, Error> {
    let mut limits = std::collections::BTreeMap::new();
    for window in windows {
        let Some((kind, usd)) = window.split_once('=') else {
            return Err(Error::InvalidWindow(window.clone()));
        };
        limits.insert(kind.to_string(), usd.to_string());
    }
    Ok(BudgetBody {
        root,
        limit_usd,
        windows: (!limits.is_empty()).then_some(limits),
        shadow,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_options_become_limits() {
        let windows = vec!["month=500".to_string(), "minute=5".to_string()];
        let update = put_body(None, &windows, None, Some(true)).and_then(|b| b.to_update());
        let limits = update.map(|u| u.limits).ok();
        assert_eq!(
            limits,
            Some(vec![
                (WindowKind::Minute, 5_000_000_000),
                (WindowKind::Month, 500_000_000_000)
            ])
        );
    }

    #[test]
    fn window_without_equals_is_invalid() {
        let result = put_body(None, &["month".to_string()], None, None);
        assert!(matches!(result, Err(Error::InvalidWindow(_))));
    }
}
