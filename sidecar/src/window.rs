//! Budget windows: the periods a limit applies to, and each window's amounts.

use serde::{Deserialize, Serialize};

/// Period of a budget limit. Minute, hour and day periods are fixed lengths of UTC time moved
/// by the configured UTC offset. Weeks start on Monday, as ISO weeks do, and months are
/// calendar months in that offset. A lifetime window never resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Lifetime,
}

impl WindowKind {
    /// Every kind, in the order of `WINDOW_KINDS` in `lua/common.lua`.
    pub const ALL: [WindowKind; 6] = [
        WindowKind::Minute,
        WindowKind::Hour,
        WindowKind::Day,
        WindowKind::Week,
        WindowKind::Month,
        WindowKind::Lifetime,
    ];

    /// Name used in Redis keys, in the admin API and in files.
    pub fn as_str(self) -> &'static str {
        match self {
            WindowKind::Minute => "minute",
            WindowKind::Hour => "hour",
            WindowKind::Day => "day",
            WindowKind::Week => "week",
            WindowKind::Month => "month",
            WindowKind::Lifetime => "lifetime",
        }
    }

    /// Parses a name such as `"month"`.
    pub fn parse(name: &str) -> Option<WindowKind> {
        WindowKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }

    /// Returns the kind at 1-based position `index` of the scripts' list.
    pub fn from_script_index(index: i64) -> Option<WindowKind> {
        let position = usize::try_from(index).ok()?.checked_sub(1)?;
        WindowKind::ALL.get(position).copied()
    }
}

impl std::fmt::Display for WindowKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Amounts of one window's current period, in nano-dollars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowState {
    /// Which window.
    pub kind: WindowKind,
    /// Most the budget may spend in one period.
    pub limit_nano: u64,
    /// Charged by settles in this period.
    pub spent_nano: u64,
    /// Held by live reservations made in this period.
    pub reserved_nano: u64,
    /// Cost that settles could not charge without passing the limit.
    pub overrun_nano: u64,
    /// Start of the period, UTC ms since the Unix epoch; 0 for lifetime.
    pub start_ms: u64,
    /// End of the period, UTC ms since the Unix epoch; `None` for lifetime.
    pub end_ms: Option<u64>,
}

impl WindowState {
    /// Returns what the window can still hold: limit - spent - reserved - overrun, or 0 when
    /// that is negative. Overrun is money a provider billed past the limit.
    pub fn remaining_nano(&self) -> u64 {
        let used = self
            .spent_nano
            .saturating_add(self.reserved_nano)
            .saturating_add(self.overrun_nano);
        self.limit_nano.saturating_sub(used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in WindowKind::ALL {
            assert_eq!(WindowKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn script_index_is_one_based() {
        assert_eq!(WindowKind::from_script_index(1), Some(WindowKind::Minute));
        assert_eq!(WindowKind::from_script_index(6), Some(WindowKind::Lifetime));
        assert_eq!(WindowKind::from_script_index(0), None);
        assert_eq!(WindowKind::from_script_index(7), None);
    }

    #[test]
    fn lua_lists_the_same_kinds() {
        let common = include_str!("../../lua/common.lua");
        let names: Vec<String> = WindowKind::ALL
            .iter()
            .map(|kind| format!("\"{kind}\""))
            .collect();
        let expected = format!("local WINDOW_KINDS = {{{}}}", names.join(", "));
        assert!(common.contains(&expected), "common.lua lacks {expected}");
    }
}
