//! Budgets and reservations in Redis, changed only through the Lua scripts in `lua/`.
//!
//! Budgets form hierarchies: a request names its scopes from the most specific (such as an API
//! key) to the root (such as an org), and each scope may have a budget. Every key of one
//! hierarchy carries the root scope's name as its Redis Cluster hash tag, so one script call
//! touches a single slot. A budget therefore belongs to one root: the same team under two
//! roots is two budgets. When a request lacks the upper levels, its most general scope present
//! is the root. `lua/common.lua` lists the keys:
//!
//! | key | type | contents |
//! |---|---|---|
//! | `spendfuse:{ROOT}:budget:NAME` | hash | `limit:KIND` per window (nano-dollars), `shadow` |
//! | `spendfuse:{ROOT}:window:NAME:KIND:START` | hash | `spent`, `reserved`, `overrun` of one period |
//! | `spendfuse:{ROOT}:leases` | sorted set | reservation ids scored by lease deadline (ms) |
//! | `spendfuse:{ROOT}:res:ID` | hash | `amount`, `state`, `windows`, and after a settle `charged`, `released`, `overrun` |
//! | `spendfuse:{ROOT}:repeat:NAME:SHA256` | sorted set | loop check: times a body was seen |
//! | `spendfuse:budgets` | set | `NAME`, or `ROOT<TAB>NAME` when they differ, for the admin list |

use std::sync::Arc;

use redis::{AsyncCommands, Script};

use crate::alerts::Alert;
use crate::connection::{Connection, Connector, RedisTarget};
use crate::cost::ReserveCost;
use crate::error::Error;
use crate::window::{WindowKind, WindowState};

/// How long a reservation hash stays in Redis after it is settled or its lease expires, so
/// that a late or repeated settle still finds it: 7 days, in milliseconds.
pub const RESERVATION_RETENTION_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Key of the set of budgets that the admin list reads.
pub const BUDGET_SET_KEY: &str = "spendfuse:budgets";

/// Maximum length of a budget name, in bytes.
pub const MAX_BUDGET_NAME_BYTES: usize = 256;

/// Largest UTC offset of window boundaries, in minutes (UTC-14:00 to UTC+14:00).
pub const MAX_UTC_OFFSET_MINUTES: i32 = 14 * 60;

/// Scripts are common.lua followed by their own file, so that they share one set of helpers.
const RESERVE_LUA: &str = concat!(
    include_str!("../../lua/common.lua"),
    include_str!("../../lua/reserve.lua")
);
const SETTLE_LUA: &str = concat!(
    include_str!("../../lua/common.lua"),
    include_str!("../../lua/settle.lua")
);
const BUDGET_LUA: &str = concat!(
    include_str!("../../lua/common.lua"),
    include_str!("../../lua/budget.lua")
);

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
}

impl std::fmt::Display for BudgetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A budget's identity: its name and the root scope of its hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BudgetId {
    /// Root scope, whose name is the hash tag of every key of the hierarchy.
    pub root: BudgetName,
    /// Budget name.
    pub name: BudgetName,
}

impl BudgetId {
    /// Returns the id of a budget that is its own root, as in a hierarchy of one level.
    pub fn single(name: BudgetName) -> BudgetId {
        BudgetId {
            root: name.clone(),
            name,
        }
    }

    fn budget_key(&self) -> String {
        format!("{}budget:{}", key_prefix(&self.root), self.name)
    }

    /// Returns the member of [`BUDGET_SET_KEY`] for this budget.
    fn list_member(&self) -> String {
        if self.root == self.name {
            self.name.to_string()
        } else {
            format!("{}\t{}", self.root, self.name)
        }
    }

    fn from_list_member(member: &str) -> Result<BudgetId, Error> {
        match member.split_once('\t') {
            Some((root, name)) => Ok(BudgetId {
                root: BudgetName::parse(root)?,
                name: BudgetName::parse(name)?,
            }),
            None => Ok(BudgetId::single(BudgetName::parse(member)?)),
        }
    }
}

impl std::fmt::Display for BudgetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.root == self.name {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{} (root {})", self.name, self.root)
        }
    }
}

/// Returns `spendfuse:{ROOT}:`, the prefix of every key of the hierarchy under `root`.
pub fn key_prefix(root: &BudgetName) -> String {
    format!("spendfuse:{{{root}}}:")
}

/// Loop check of a reserve: the same body hash from the leaf scope may pass `max_repeats`
/// times within `window_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopCheck {
    /// Lower-case hex SHA-256 of the request body.
    pub body_sha256: String,
    /// Most identical bodies allowed within the window.
    pub max_repeats: u64,
    /// Length of the sliding window, in milliseconds.
    pub window_ms: u64,
}

/// A window of one scope, named by the scope's position in the reserve call (0 is the leaf).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScopeWindow {
    /// Index into the scopes of the reserve call.
    pub scope: usize,
    /// Window kind within that scope's budget.
    pub window: WindowKind,
}

/// Result of the reserve script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// Every window reserved `reserved_nano` for `output_tokens` per choice. The limit and
    /// remaining amount are those of `binding`, the enforcing window with the least room. Both
    /// are 0 when every window is in shadow mode.
    Granted {
        output_tokens: u64,
        reserved_nano: u64,
        limit_nano: u64,
        remaining_nano: u64,
        binding: Option<ScopeWindow>,
        /// First window in shadow mode that would have lowered or denied the request.
        shadow_breach: Option<ScopeWindow>,
    },
    /// `exhausted` cannot pay for the prompt and the minimum output.
    Denied {
        limit_nano: u64,
        remaining_nano: u64,
        exhausted: ScopeWindow,
    },
    /// No scope of the request has a budget.
    UnknownBudget,
    /// The loop check saw the body `max_repeats` times already within its window.
    LoopDetected { max_repeats: u64 },
}

/// Amount that a settle charges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// The actual cost, in nano-dollars.
    Actual(u64),
    /// The amount held by the reservation, for usage that cannot be priced.
    Held,
    /// Nothing, for a request that never reached the provider. A reservation that does not
    /// exist yet is written as settled, so that its reserve, if still in flight, fails.
    Cancel,
}

/// Amounts of a settled reservation, in nano-dollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// Minimum amount that a window of the reservation took.
    pub charged_nano: u64,
    /// Hold given back by the settle that ended the reservation.
    pub released_nano: u64,
    /// Maximum cost that a window could not take without passing its limit, recorded instead.
    pub overrun_nano: u64,
}

/// Result of the settle script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleOutcome {
    /// This call settled the reservation, and these alert thresholds fired.
    Settled(Settlement, Vec<Alert>),
    /// An earlier call settled it, with these numbers.
    AlreadySettled(Settlement),
    /// No reservation of that id exists under the root.
    UnknownReservation,
}

/// A budget with the current period of each of its windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetState {
    /// Budget name.
    pub name: BudgetName,
    /// Root scope of the budget's hierarchy.
    pub root: BudgetName,
    /// True when the budget's decisions are only logged and counted, never enforced.
    pub shadow: bool,
    /// Windows in [`WindowKind::ALL`] order.
    pub windows: Vec<WindowState>,
    /// Limit of the summary window: the lifetime window, or else the first one listed.
    pub limit_nano: u64,
    /// Spent in the summary window.
    pub spent_nano: u64,
    /// Reserved in the summary window.
    pub reserved_nano: u64,
    /// Overrun of the summary window.
    pub overrun_nano: u64,
}

impl BudgetState {
    fn new(id: &BudgetId, shadow: bool, windows: Vec<WindowState>) -> BudgetState {
        let summary = windows
            .iter()
            .find(|window| window.kind == WindowKind::Lifetime)
            .or(windows.first());
        let (limit, spent, reserved, overrun) = summary
            .map(|w| (w.limit_nano, w.spent_nano, w.reserved_nano, w.overrun_nano))
            .unwrap_or_default();
        BudgetState {
            name: id.name.clone(),
            root: id.root.clone(),
            shadow,
            windows,
            limit_nano: limit,
            spent_nano: spent,
            reserved_nano: reserved,
            overrun_nano: overrun,
        }
    }

    /// Returns what the summary window can still reserve: limit - spent - reserved - overrun,
    /// or 0 when that is negative. Overrun is money the provider billed past the limit.
    pub fn remaining_nano(&self) -> u64 {
        let used = self
            .spent_nano
            .saturating_add(self.reserved_nano)
            .saturating_add(self.overrun_nano);
        self.limit_nano.saturating_sub(used)
    }

    /// Returns the window of kind `kind`, if the budget has one.
    pub fn window(&self, kind: WindowKind) -> Option<&WindowState> {
        self.windows.iter().find(|window| window.kind == kind)
    }
}

/// Change to a budget's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetUpdate {
    /// New shadow flag, or `None` to keep it (a new budget enforces).
    pub shadow: Option<bool>,
    /// Limits to set, in nano-dollars.
    pub limits: Vec<(WindowKind, u64)>,
    /// True to drop the windows that `limits` does not list.
    pub replace: bool,
}

/// Options of the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// UTC offset of window boundaries in minutes, such as 60 for UTC+01:00; 0 by default.
    /// A fixed offset, so a zone with daylight saving time moves its boundaries by an hour for
    /// part of the year.
    pub utc_offset_minutes: i32,
    /// Added to the Redis clock by every script, in milliseconds. Tests set it to place a
    /// request next to a window boundary; 0 otherwise.
    pub clock_shift_ms: i64,
}

struct Scripts {
    reserve: Script,
    settle: Script,
    budget: Script,
}

/// Handle on Redis: one connection (single server or cluster), shared by clones, and the
/// loaded scripts.
#[derive(Clone)]
pub struct Store {
    connector: Connector,
    scripts: Arc<Scripts>,
    address: Arc<str>,
    options: StoreOptions,
}

impl Store {
    /// Creates a store for the single Redis at `url` with default options. It connects on
    /// first use and reconnects after a lost connection.
    pub fn open(url: &str) -> Result<Self, Error> {
        Store::connect(
            &RedisTarget::Single(url.to_string()),
            StoreOptions::default(),
        )
    }

    /// Creates a store for `target`. It connects on first use.
    pub fn connect(target: &RedisTarget, options: StoreOptions) -> Result<Self, Error> {
        if options.utc_offset_minutes.abs() > MAX_UTC_OFFSET_MINUTES {
            return Err(Error::InvalidUtcOffset(options.utc_offset_minutes));
        }
        let (connector, address) = Connector::new(target)?;
        let scripts = Scripts {
            reserve: Script::new(RESERVE_LUA),
            settle: Script::new(SETTLE_LUA),
            budget: Script::new(BUDGET_LUA),
        };
        Ok(Store {
            connector,
            scripts: Arc::new(scripts),
            address: address.into(),
            options,
        })
    }

    /// Host and port of Redis (or a cluster summary), without the password, for logs.
    pub fn address(&self) -> &str {
        &self.address
    }

    async fn connection(&self) -> Result<Connection, Error> {
        self.connector.connection().await
    }

    fn offset_ms(&self) -> i64 {
        i64::from(self.options.utc_offset_minutes) * 60_000
    }

    /// Loads the scripts into Redis (every master of a cluster) and returns their SHA-1
    /// digests (reserve, settle, budget).
    ///
    /// Calls work without it, because each falls back to loading its script on NOSCRIPT. It
    /// checks at start that Redis responds and accepts the scripts.
    pub async fn load_scripts(&self) -> Result<[String; 3], Error> {
        let mut connection = self.connection().await?;
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
        let mut connection = self.connection().await?;
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        Ok(())
    }

    /// Runs `reserve.lua` for one request. `scopes` go from the leaf to the root, and the last
    /// one names the hierarchy.
    pub async fn reserve(
        &self,
        scopes: &[BudgetName],
        reservation_id: &str,
        cost: &ReserveCost,
        lease_ms: u64,
        loop_check: Option<&LoopCheck>,
    ) -> Result<ReserveOutcome, Error> {
        let Some(root) = scopes.last() else {
            return Err(Error::NoScopes);
        };
        let prefix = key_prefix(root);
        let mut invocation = self.scripts.reserve.prepare_invoke();
        invocation
            .key(format!("{prefix}leases"))
            .key(format!("{prefix}res:{reservation_id}"));
        for scope in scopes {
            invocation.key(format!("{prefix}budget:{scope}"));
        }
        let (body_sha256, max_repeats, window_ms) = match loop_check {
            Some(check) => (
                check.body_sha256.as_str(),
                check.max_repeats,
                check.window_ms,
            ),
            None => ("", 0, 0),
        };
        invocation
            .arg(reservation_id)
            .arg(&prefix)
            .arg(cost.prompt_nano)
            .arg(cost.per_token_pico)
            .arg(cost.max_output_tokens)
            .arg(cost.min_output_tokens)
            .arg(cost.max_output_nano)
            .arg(lease_ms)
            .arg(RESERVATION_RETENTION_MS)
            .arg(self.offset_ms())
            .arg(self.options.clock_shift_ms)
            .arg(body_sha256)
            .arg(max_repeats)
            .arg(window_ms);
        let mut connection = self.connection().await?;
        let reply: Vec<i64> = invocation.invoke_async(&mut connection).await?;
        parse_reserve_reply(&reply)
    }

    /// Runs `settle.lua` for one reservation of the hierarchy under `root`. `alert_thresholds`
    /// is the script's list of percentages, such as `"50,80,100"`, or empty for none.
    pub async fn settle(
        &self,
        root: &BudgetName,
        reservation_id: &str,
        charge: Charge,
        alert_thresholds: &str,
    ) -> Result<SettleOutcome, Error> {
        let actual: i64 = match charge {
            // Amounts are at most 2^53 - 1, so they fit in i64.
            Charge::Actual(nano) => i64::try_from(nano).unwrap_or(i64::MAX),
            Charge::Held => -1,
            Charge::Cancel => 0,
        };
        let cancel = if charge == Charge::Cancel { "1" } else { "0" };
        let prefix = key_prefix(root);
        let mut connection = self.connection().await?;
        let reply: Vec<redis::Value> = self
            .scripts
            .settle
            .key(format!("{prefix}leases"))
            .key(format!("{prefix}res:{reservation_id}"))
            .arg(reservation_id)
            .arg(actual)
            .arg(RESERVATION_RETENTION_MS)
            .arg(alert_thresholds)
            .arg(cancel)
            .invoke_async(&mut connection)
            .await?;
        let invalid = || Error::ScriptReply {
            script: "settle",
            reply: format!("{reply:?}"),
        };
        let (numbers, alert_lines) = reply.split_at(reply.len().min(4));
        let numbers: Vec<i64> = numbers
            .iter()
            .map(|value| match value {
                redis::Value::Int(number) => Ok(*number),
                _ => Err(invalid()),
            })
            .collect::<Result<_, _>>()?;
        let alerts = alert_lines
            .iter()
            .map(|line| parse_alert(root, line).ok_or_else(invalid))
            .collect::<Result<Vec<_>, _>>()?;
        let settlement = |charged: i64, released: i64, overrun: i64| {
            Ok::<_, Error>(Settlement {
                charged_nano: to_u64("settle", charged)?,
                released_nano: to_u64("settle", released)?,
                overrun_nano: to_u64("settle", overrun)?,
            })
        };
        match numbers.as_slice() {
            [1, charged, released, overrun] => Ok(SettleOutcome::Settled(
                settlement(*charged, *released, *overrun)?,
                alerts,
            )),
            [2, charged, released, overrun] => Ok(SettleOutcome::AlreadySettled(settlement(
                *charged, *released, *overrun,
            )?)),
            [0, ..] => Ok(SettleOutcome::UnknownReservation),
            [3, ..] => Ok(SettleOutcome::Settled(settlement(0, 0, 0)?, alerts)),
            _ => Err(Error::ScriptReply {
                script: "settle",
                reply: format!("{reply:?}"),
            }),
        }
    }

    /// Returns the state of the budget `name` that is its own root, or `None` when it does not
    /// exist. Expired leases are released first, so reserved amounts count only live holds.
    pub async fn budget(&self, name: &BudgetName) -> Result<Option<BudgetState>, Error> {
        self.budget_of(&BudgetId::single(name.clone())).await
    }

    /// Returns the state of budget `id`, or `None` when it does not exist.
    pub async fn budget_of(&self, id: &BudgetId) -> Result<Option<BudgetState>, Error> {
        self.run_budget_script(id, &["get".to_string()]).await
    }

    /// Sets the lifetime limit of the budget `name` that is its own root, creating it when it
    /// is missing, and returns its state. Other windows and all amounts keep their values.
    pub async fn set_limit(
        &self,
        name: &BudgetName,
        limit_nano: u64,
    ) -> Result<BudgetState, Error> {
        let update = BudgetUpdate {
            shadow: None,
            limits: vec![(WindowKind::Lifetime, limit_nano)],
            replace: false,
        };
        self.update_budget(&BudgetId::single(name.clone()), &update)
            .await
    }

    /// Applies `update` to budget `id`, creating it when it is missing, and returns its state.
    /// Amounts keep their values.
    pub async fn update_budget(
        &self,
        id: &BudgetId,
        update: &BudgetUpdate,
    ) -> Result<BudgetState, Error> {
        if update.limits.is_empty() && (update.replace || self.budget_of(id).await?.is_none()) {
            return Err(Error::NoWindows {
                budget: id.to_string(),
            });
        }
        let mut connection = self.connection().await?;
        // Listed first: a listed budget that does not exist is skipped by the admin list, while
        // a budget missing from the list would be invisible there.
        let _: i64 = connection.sadd(BUDGET_SET_KEY, id.list_member()).await?;
        let shadow = match update.shadow {
            Some(true) => "1",
            Some(false) => "0",
            None => "",
        };
        let mut args = vec![
            "put".to_string(),
            shadow.to_string(),
            if update.replace { "replace" } else { "merge" }.to_string(),
        ];
        for (kind, limit) in &update.limits {
            args.push(kind.as_str().to_string());
            args.push(limit.to_string());
        }
        match self.run_budget_script(id, &args).await? {
            Some(state) => Ok(state),
            None => Err(Error::ScriptReply {
                script: "budget",
                reply: "no budget after setting its limits".into(),
            }),
        }
    }

    /// Deletes budget `id` and returns its state before the deletion, or `None` when it did
    /// not exist. Spend of its windows other than lifetime expires with their periods.
    pub async fn delete_budget(&self, id: &BudgetId) -> Result<Option<BudgetState>, Error> {
        let state = self.run_budget_script(id, &["delete".to_string()]).await?;
        let mut connection = self.connection().await?;
        let _: i64 = connection.srem(BUDGET_SET_KEY, id.list_member()).await?;
        Ok(state)
    }

    /// Sets spent and overrun of the current period of `kind` to 0 and returns the budget's
    /// state, or `None` when the budget does not exist. Live holds stay reserved.
    pub async fn reset_window(
        &self,
        id: &BudgetId,
        kind: WindowKind,
    ) -> Result<Option<BudgetState>, Error> {
        let Some(before) = self.budget_of(id).await? else {
            return Ok(None);
        };
        if before.window(kind).is_none() {
            return Err(Error::WindowNotFound {
                budget: id.to_string(),
                window: kind,
            });
        }
        let args = ["reset".to_string(), kind.as_str().to_string()];
        self.run_budget_script(id, &args).await
    }

    /// Returns the budgets in the admin list, sorted. Entries that are not valid budget names
    /// are left out.
    pub async fn budget_ids(&self) -> Result<Vec<BudgetId>, Error> {
        let mut connection = self.connection().await?;
        let members: Vec<String> = connection.smembers(BUDGET_SET_KEY).await?;
        let mut valid: Vec<BudgetId> = members
            .iter()
            .filter_map(|member| match BudgetId::from_list_member(member) {
                Ok(valid) => Some(valid),
                Err(error) => {
                    tracing::warn!(%error, "skipping an invalid entry in {BUDGET_SET_KEY}");
                    None
                }
            })
            .collect();
        valid.sort();
        Ok(valid)
    }

    async fn run_budget_script(
        &self,
        id: &BudgetId,
        action: &[String],
    ) -> Result<Option<BudgetState>, Error> {
        let prefix = key_prefix(&id.root);
        let mut invocation = self.scripts.budget.prepare_invoke();
        invocation
            .key(format!("{prefix}leases"))
            .key(id.budget_key())
            .arg(&prefix)
            .arg(RESERVATION_RETENTION_MS)
            .arg(self.offset_ms())
            .arg(self.options.clock_shift_ms);
        for arg in action {
            invocation.arg(arg);
        }
        let mut connection = self.connection().await?;
        let reply: Vec<i64> = invocation.invoke_async(&mut connection).await?;
        parse_budget_reply(id, &reply)
    }
}

fn parse_reserve_reply(reply: &[i64]) -> Result<ReserveOutcome, Error> {
    let invalid = || Error::ScriptReply {
        script: "reserve",
        reply: format!("{reply:?}"),
    };
    let scope_window = |scope: i64, kind: i64| -> Option<ScopeWindow> {
        let scope = usize::try_from(scope).ok()?.checked_sub(1)?;
        let window = WindowKind::from_script_index(kind)?;
        Some(ScopeWindow { scope, window })
    };
    match reply {
        [1, output_tokens, reserved, limit, remaining, scope, kind, shadow_scope, shadow_kind] => {
            Ok(ReserveOutcome::Granted {
                output_tokens: to_u64("reserve", *output_tokens)?,
                reserved_nano: to_u64("reserve", *reserved)?,
                limit_nano: to_u64("reserve", *limit)?,
                remaining_nano: to_u64("reserve", *remaining)?,
                binding: scope_window(*scope, *kind),
                shadow_breach: scope_window(*shadow_scope, *shadow_kind),
            })
        }
        [0, _, _, limit, remaining, scope, kind, _, _] => Ok(ReserveOutcome::Denied {
            limit_nano: to_u64("reserve", *limit)?,
            remaining_nano: to_u64("reserve", *remaining)?,
            exhausted: scope_window(*scope, *kind).ok_or_else(invalid)?,
        }),
        [-1, ..] => Ok(ReserveOutcome::UnknownBudget),
        [-2, _, _, max_repeats, ..] => Ok(ReserveOutcome::LoopDetected {
            max_repeats: to_u64("reserve", *max_repeats)?,
        }),
        _ => Err(invalid()),
    }
}

/// Parses one alert line of the settle script: `NAME<TAB>KIND<TAB>PERCENT<TAB>SPENT<TAB>LIMIT`.
fn parse_alert(root: &BudgetName, line: &redis::Value) -> Option<Alert> {
    let redis::Value::BulkString(bytes) = line else {
        return None;
    };
    let text = std::str::from_utf8(bytes).ok()?;
    let mut fields = text.split('\t');
    let budget = fields.next()?.to_string();
    let window = WindowKind::parse(fields.next()?)?;
    let threshold_percent = fields.next()?.parse().ok()?;
    let spent_nano_usd = fields.next()?.parse().ok()?;
    let limit_nano_usd = fields.next()?.parse().ok()?;
    Some(Alert {
        budget,
        root: root.to_string(),
        window,
        threshold_percent,
        spent_nano_usd,
        limit_nano_usd,
    })
}

fn parse_budget_reply(id: &BudgetId, reply: &[i64]) -> Result<Option<BudgetState>, Error> {
    let invalid = || Error::ScriptReply {
        script: "budget",
        reply: format!("{reply:?}"),
    };
    match reply {
        [0] => Ok(None),
        [1, shadow, rest @ ..] if rest.len() % 7 == 0 => {
            let mut windows = Vec::with_capacity(rest.len() / 7);
            for fields in rest.chunks_exact(7) {
                let [kind, limit, spent, reserved, overrun, start, end] = fields else {
                    return Err(invalid());
                };
                windows.push(WindowState {
                    kind: WindowKind::from_script_index(*kind).ok_or_else(invalid)?,
                    limit_nano: to_u64("budget", *limit)?,
                    spent_nano: to_u64("budget", *spent)?,
                    reserved_nano: to_u64("budget", *reserved)?,
                    overrun_nano: to_u64("budget", *overrun)?,
                    start_ms: to_u64("budget", *start)?,
                    end_ms: u64::try_from(*end).ok(),
                });
            }
            Ok(Some(BudgetState::new(id, *shadow == 1, windows)))
        }
        _ => Err(invalid()),
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

    fn name(text: &str) -> BudgetName {
        BudgetName(text.to_string())
    }

    #[test]
    fn keys_carry_the_root_hash_tag() {
        let id = BudgetId {
            root: name("org-a"),
            name: name("team-b"),
        };
        assert_eq!(id.budget_key(), "spendfuse:{org-a}:budget:team-b");
        assert_eq!(key_prefix(&id.root), "spendfuse:{org-a}:");
    }

    #[test]
    fn list_member_round_trips() {
        let nested = BudgetId {
            root: name("org"),
            name: name("team"),
        };
        let single = BudgetId::single(name("key"));
        for id in [nested, single] {
            let parsed = BudgetId::from_list_member(&id.list_member()).ok();
            assert_eq!(parsed, Some(id));
        }
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
    fn summary_prefers_the_lifetime_window() {
        let window = |kind, limit| WindowState {
            kind,
            limit_nano: limit,
            spent_nano: 8,
            reserved_nano: 5,
            overrun_nano: 0,
            start_ms: 0,
            end_ms: None,
        };
        let windows = vec![
            window(WindowKind::Minute, 10),
            window(WindowKind::Lifetime, 100),
        ];
        let state = BudgetState::new(&BudgetId::single(name("b")), false, windows);
        assert_eq!(state.limit_nano, 100);
        assert_eq!(state.remaining_nano(), 87);
    }

    #[test]
    fn denial_reply_names_scope_and_window() {
        let outcome = parse_reserve_reply(&[0, 0, 0, 50, 3, 2, 5, 0, 0]).ok();
        let expected = ReserveOutcome::Denied {
            limit_nano: 50,
            remaining_nano: 3,
            exhausted: ScopeWindow {
                scope: 1,
                window: WindowKind::Month,
            },
        };
        assert_eq!(outcome, Some(expected));
    }
}
