//! Counters of reserve decisions, served at `GET /metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts since the process started.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Reserves granted, shadow decisions included.
    pub grants: AtomicU64,
    /// Reserves denied by an enforcing budget or because no scope has a budget.
    pub denials: AtomicU64,
    /// Grants that a budget in shadow mode would have lowered or denied.
    pub shadow_denials: AtomicU64,
    /// Reserves stopped by the loop check.
    pub loop_denials: AtomicU64,
}

impl Metrics {
    /// Renders every counter in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let counters = [
            (
                "spendfuse_reserve_granted_total",
                "Reserves granted.",
                &self.grants,
            ),
            (
                "spendfuse_reserve_denied_total",
                "Reserves denied by a budget.",
                &self.denials,
            ),
            (
                "spendfuse_shadow_denied_total",
                "Grants that a budget in shadow mode would have lowered or denied.",
                &self.shadow_denials,
            ),
            (
                "spendfuse_loop_denied_total",
                "Reserves stopped by the loop check.",
                &self.loop_denials,
            ),
        ];
        let mut text = String::new();
        for (name, help, value) in counters {
            let value = value.load(Ordering::Relaxed);
            // Writing to a String cannot fail.
            let _ = write!(
                text,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists_each_counter() {
        let metrics = Metrics::default();
        metrics.shadow_denials.fetch_add(2, Ordering::Relaxed);
        let text = metrics.render();
        assert!(text.contains("spendfuse_shadow_denied_total 2\n"), "{text}");
        assert!(text.contains("spendfuse_loop_denied_total 0\n"), "{text}");
    }
}
