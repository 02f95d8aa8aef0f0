//! Budgets and reservations in Redis, changed only through the Lua scripts in `lua/`.
//!
//! Keys carry the budget name as a hash tag, so that all keys of one budget share a Redis
//! Cluster slot:
//!
//! | key | type | contents |
//! |---|---|---|
//! | `spendfuse:{NAME}:budget` | hash | `limit`, `spent`, `reserved`, `overrun` (nano-dollars) |
//! | `spendfuse:{NAME}:leases` | sorted set | reservation ids scored by lease deadline (ms) |
//! | `spendfuse:{NAME}:res:ID` | hash | `amount`, `state`, and after a settle `charged`, `released`, `overrun` |
//! | `spendfuse:budgets` | set | budget names for the admin list, untouched by reserve and settle |

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use crate::cost::ReserveCost;
use crate::error::Error;

/// How long a reservation hash stays in Redis after it is settled or its lease expires, so
/// that a late or repeated settle still finds it: 7 days, in milliseconds.
pub const RESERVATION_RETENTION_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Key of the set of budget names that the admin list reads.
pub const BUDGET_SET_KEY: &str = "spendfuse:budgets";

/// Maximum length of a budget name, in bytes.
pub const MAX_BUDGET_NAME_BYTES: usize = 256;

/// Time allowed to open a connection to Redis.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);

/// Time allowed for one Redis command or script to reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Reconnect attempts after a lost connection, before a command fails.
const RECONNECT_RETRIES: usize = 3;

/// Maximum pause between reconnect attempts.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

/// A budget name that is valid in a Redis key: 1 to 256 bytes, no `{`, `}` or control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BudgetName(String);

impl BudgetName {
    /// Checks `name` and wraps it.
    pub fn parse(name: &str) -> Result<Self, Error> {
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > MAX_BUDGET_NAME_BYTES {
            Some("it is longer than 256 bytes")
        } else if name.contains(['{', '}']) {
            Some("it contains '{' or '}'")
        } else if name.chars().any(char::is_control) {
            Some("it contains a control character")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidBudgetName {
                name: name.to_string(),
                reason,
            }),
            None => Ok(BudgetName(name.to_string())),
        }
    }

    /// Returns the name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn budget_key(&self) -> String {
        format!("spendfuse:{{{}}}:budget", self.0)
    }

    fn leases_key(&self) -> String {
        format!("spendfuse:{{{}}}:leases", self.0)
    }

    fn reservation_prefix(&self) -> String {
        format!("spendfuse:{{{}}}:res:", self.0)
    }
}

impl std::fmt::Display for BudgetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Result of the reserve script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// The budget reserved `reserved_nano` for `output_tokens` per choice.
    Granted {
        output_tokens: u64,
        reserved_nano: u64,
        limit_nano: u64,
        remaining_nano: u64,
    },
    /// The budget cannot pay for the prompt and the minimum output.
    Denied {
        limit_nano: u64,
        remaining_nano: u64,
    },
    /// No budget of that name exists.
    UnknownBudget,
}

/// Amount that a settle charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// The actual cost, in nano-dollars.
    Actual(u64),
    /// The amount held by the reservation, for usage that cannot be priced.
    Held,
}

/// Amounts of a settled reservation, in nano-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// Amount added to the budget's spend.
    pub charged_nano: u64,
    /// Hold given back by the settle that ended the reservation.
    pub released_nano: u64,
    /// Cost that did not fit under the limit and was recorded, not charged.
    pub overrun_nano: u64,
}

/// Result of the settle script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleOutcome {
    /// This call settled the reservation.
    Settled(Settlement),
    /// An earlier call settled it, with these numbers.
    AlreadySettled(Settlement),
    /// No reservation of that id exists for the budget.
    UnknownReservation,
}

/// Amounts of one budget, in nano-dollars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetState {
    /// Budget name.
    pub name: BudgetName,
    /// Most the budget may spend.
    pub limit_nano: u64,
    /// Charged by settles so far.
    pub spent_nano: u64,
    /// Held by reservations whose leases have not expired.
    pub reserved_nano: u64,
    /// Cost that settles could not charge without passing the limit.
    pub overrun_nano: u64,
}

impl BudgetState {
    /// Returns what the budget can still reserve: limit - spent - reserved - overrun, or 0 when
    /// that is negative. Overrun is money the provider billed past the limit, so it counts.
    pub fn remaining_nano(&self) -> u64 {
        let used = self
            .spent_nano
            .saturating_add(self.reserved_nano)
            .saturating_add(self.overrun_nano);
        self.limit_nano.saturating_sub(used)
    }
}

struct Scripts {
    reserve: Script,
    settle: Script,
    budget: Script,
}

/// Handle on Redis: one connection manager, shared by clones, and the loaded scripts.
#[derive(Clone)]
pub struct Store {
    connection: ConnectionManager,
    scripts: Arc<Scripts>,
    address: Arc<str>,
}

impl Store {
    /// Creates a store for the Redis at `url`. It connects on first use and reconnects after a
    /// lost connection.
    pub fn open(url: &str) -> Result<Self, Error> {
        let client = redis::Client::open(url)?;
        let address: Arc<str> = client.get_connection_info().addr().to_string().into();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_max_delay(RECONNECT_MAX_DELAY);
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        let scripts = Scripts {
            reserve: Script::new(include_str!("../../lua/reserve.lua")),
            settle: Script::new(include_str!("../../lua/settle.lua")),
            budget: Script::new(include_str!("../../lua/budget.lua")),
        };
        Ok(Store {
            connection,
            scripts: Arc::new(scripts),
            address,
        })
    }

    /// Host and port (or socket path) of Redis, without the password, for logs.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Loads the scripts into Redis and returns their SHA-1 digests (reserve, settle, budget).
    ///
    /// Calls work without it, because each falls back to loading its script on NOSCRIPT. It
    /// checks at start that Redis responds and accepts the scripts.
    pub async fn load_scripts(&self) -> Result<[String; 3], Error> {
        let mut connection = self.connection.clone();
        let reserve = self
            .scripts
            .reserve
            .prepare_invoke()
            .load_async(&mut connection)
            .await?;
        let settle = self
            .scripts
            .settle
            .prepare_invoke()
            .load_async(&mut connection)
            .await?;
        let budget = self
            .scripts
            .budget
            .prepare_invoke()
            .load_async(&mut connection)
            .await?;
        Ok([reserve, settle, budget])
    }

    /// Sends PING.
    pub async fn ping(&self) -> Result<(), Error> {
        let mut connection = self.connection.clone();
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        Ok(())
    }

    /// Runs `reserve.lua` for one request.
    pub async fn reserve(
        &self,
        budget: &BudgetName,
        reservation_id: &str,
        cost: &ReserveCost,
        lease_ms: u64,
    ) -> Result<ReserveOutcome, Error> {
        let reservation_prefix = budget.reservation_prefix();
        let mut connection = self.connection.clone();
        let reply: Vec<i64> = self
            .scripts
            .reserve
            .key(budget.budget_key())
            .key(budget.leases_key())
            .key(format!("{reservation_prefix}{reservation_id}"))
            .arg(reservation_id)
            .arg(&reservation_prefix)
            .arg(cost.prompt_nano)
            .arg(cost.per_token_pico)
            .arg(cost.max_output_tokens)
            .arg(cost.min_output_tokens)
            .arg(cost.max_output_nano)
            .arg(lease_ms)
            .arg(RESERVATION_RETENTION_MS)
            .invoke_async(&mut connection)
            .await?;
        match reply.as_slice() {
            [1, output_tokens, reserved, limit, remaining] => Ok(ReserveOutcome::Granted {
                output_tokens: to_u64("reserve", *output_tokens)?,
                reserved_nano: to_u64("reserve", *reserved)?,
                limit_nano: to_u64("reserve", *limit)?,
                remaining_nano: to_u64("reserve", *remaining)?,
            }),
            [0, _, _, limit, remaining] => Ok(ReserveOutcome::Denied {
                limit_nano: to_u64("reserve", *limit)?,
                remaining_nano: to_u64("reserve", *remaining)?,
            }),
            [-1, ..] => Ok(ReserveOutcome::UnknownBudget),
            _ => Err(Error::ScriptReply {
                script: "reserve",
                reply: format!("{reply:?}"),
            }),
        }
    }

    /// Runs `settle.lua` for one reservation.
    pub async fn settle(
        &self,
        budget: &BudgetName,
        reservation_id: &str,
        charge: Charge,
    ) -> Result<SettleOutcome, Error> {
        let actual: i64 = match charge {
            // Amounts are at most 2^53 - 1, so they fit in i64.
            Charge::Actual(nano) => i64::try_from(nano).unwrap_or(i64::MAX),
            Charge::Held => -1,
        };
        let mut connection = self.connection.clone();
        let reply: Vec<i64> = self
            .scripts
            .settle
            .key(budget.budget_key())
            .key(budget.leases_key())
            .key(format!("{}{reservation_id}", budget.reservation_prefix()))
            .arg(reservation_id)
            .arg(actual)
            .arg(RESERVATION_RETENTION_MS)
            .invoke_async(&mut connection)
            .await?;
        let settlement = |charged: i64, released: i64, overrun: i64| {
            Ok::<_, Error>(Settlement {
                charged_nano: to_u64("settle", charged)?,
                released_nano: to_u64("settle", released)?,
                overrun_nano: to_u64("settle", overrun)?,
            })
        };
        match reply.as_slice() {
            [1, charged, released, overrun] => Ok(SettleOutcome::Settled(settlement(
                *charged, *released, *overrun,
            )?)),
            [2, charged, released, overrun] => Ok(SettleOutcome::AlreadySettled(settlement(
                *charged, *released, *overrun,
            )?)),
            [0, ..] => Ok(SettleOutcome::UnknownReservation),
            _ => Err(Error::ScriptReply {
                script: "settle",
                reply: format!("{reply:?}"),
            }),
        }
    }

    /// Returns the state of `budget`, or `None` when it does not exist. Expired leases are
    /// released first, so `reserved_nano` counts only live holds.
    pub async fn budget(&self, budget: &BudgetName) -> Result<Option<BudgetState>, Error> {
        self.run_budget_script(budget, None).await
    }

    /// Sets the limit of `budget`, creating it when it is missing, and returns its state.
    /// Spent, reserved and overrun keep their values.
    pub async fn set_limit(
        &self,
        budget: &BudgetName,
        limit_nano: u64,
    ) -> Result<BudgetState, Error> {
        let mut connection = self.connection.clone();
        // Listed first: a listed name without a budget is skipped by the admin list, while a
        // budget missing from the list would be invisible there.
        let _: i64 = connection.sadd(BUDGET_SET_KEY, budget.as_str()).await?;
        match self.run_budget_script(budget, Some(limit_nano)).await? {
            Some(state) => Ok(state),
            None => Err(Error::ScriptReply {
                script: "budget",
                reply: "no budget after setting its limit".into(),
            }),
        }
    }

    /// Returns the names in the admin list, sorted. Names that are not valid budget names are
    /// left out.
    pub async fn budget_names(&self) -> Result<Vec<BudgetName>, Error> {
        let mut connection = self.connection.clone();
        let names: Vec<String> = connection.smembers(BUDGET_SET_KEY).await?;
        let mut valid: Vec<BudgetName> = names
            .iter()
            .filter_map(|name| match BudgetName::parse(name) {
                Ok(valid) => Some(valid),
                Err(error) => {
                    tracing::warn!(%error, "skipping an invalid name in {BUDGET_SET_KEY}");
                    None
                }
            })
            .collect();
        valid.sort();
        Ok(valid)
    }

    async fn run_budget_script(
        &self,
        budget: &BudgetName,
        new_limit_nano: Option<u64>,
    ) -> Result<Option<BudgetState>, Error> {
        let new_limit = new_limit_nano
            .map(|nano| nano.to_string())
            .unwrap_or_default();
        let mut connection = self.connection.clone();
        let reply: Vec<i64> = self
            .scripts
            .budget
            .key(budget.budget_key())
            .key(budget.leases_key())
            .arg(budget.reservation_prefix())
            .arg(RESERVATION_RETENTION_MS)
            .arg(new_limit)
            .invoke_async(&mut connection)
            .await?;
        match reply.as_slice() {
            [1, limit, spent, reserved, overrun] => Ok(Some(BudgetState {
                name: budget.clone(),
                limit_nano: to_u64("budget", *limit)?,
                spent_nano: to_u64("budget", *spent)?,
                reserved_nano: to_u64("budget", *reserved)?,
                overrun_nano: to_u64("budget", *overrun)?,
            })),
            [0, ..] => Ok(None),
            _ => Err(Error::ScriptReply {
                script: "budget",
                reply: format!("{reply:?}"),
            }),
        }
    }
}

fn to_u64(script: &'static str, value: i64) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::ScriptReply {
        script,
        reply: format!("negative amount {value}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_budget_hash_tag() {
        let name = BudgetName::parse("team-a").ok();
        let keys = name.map(|n| (n.budget_key(), n.leases_key(), n.reservation_prefix()));
        assert_eq!(
            keys,
            Some((
                "spendfuse:{team-a}:budget".to_string(),
                "spendfuse:{team-a}:leases".to_string(),
                "spendfuse:{team-a}:res:".to_string()
            ))
        );
    }

    #[test]
    fn sha256_hex_name_is_valid() {
        let name = "a".repeat(64);
        assert!(BudgetName::parse(&name).is_ok());
    }

    #[test]
    fn name_of_256_bytes_is_valid() {
        assert!(BudgetName::parse(&"n".repeat(256)).is_ok());
    }

    #[test]
    fn invalid_names_are_rejected() {
        let long = "n".repeat(257);
        for name in [
            "",
            long.as_str(),
            "a{b",
            "a}b",
            "tab\there",
            "new\nline",
            "nul\0",
        ] {
            assert!(
                matches!(
                    BudgetName::parse(name),
                    Err(Error::InvalidBudgetName { .. })
                ),
                "{name:?} should be rejected"
            );
        }
    }

    #[test]
    fn remaining_is_zero_when_over_limit() {
        let state = BudgetState {
            name: BudgetName("b".into()),
            limit_nano: 10,
            spent_nano: 8,
            reserved_nano: 5,
            overrun_nano: 0,
        };
        assert_eq!(state.remaining_nano(), 0);
    }
}
