//! Envoy counters the filter keeps, shown by Envoy's stats as `wasmcustom.spendfuse_*`.

use crate::settle::Forwarded;
use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use spendfuse_protocol::UsageSource;

/// Counter ids of one VM; `None` where defining the counter failed.
#[derive(Debug, Default)]
pub struct Metrics {
    settles_provider: Option<u32>,
    settles_metered: Option<u32>,
    severed_streams: Option<u32>,
    meter_drift_tokens: Option<u32>,
}

impl Metrics {
    /// Defines the counters with the host.
    pub fn define() -> Metrics {
        Metrics {
            settles_provider: counter("spendfuse_settles_provider_usage"),
            settles_metered: counter("spendfuse_settles_metered_usage"),
            severed_streams: counter("spendfuse_severed_streams"),
            meter_drift_tokens: counter("spendfuse_meter_drift_tokens"),
        }
    }

    /// Counts a settle by its usage source; a charge of the amount held counts as metered.
    /// Also counts the meter's drift: the absolute difference between the visible output the
    /// provider reported (completion minus hidden reasoning tokens) and the meter's count.
    pub fn record_settle(&self, forwarded: &Forwarded) {
        let (usage, source) = forwarded.usage();
        match source {
            UsageSource::Provider => increment(self.settles_provider, 1),
            UsageSource::Metered | UsageSource::Reservation => increment(self.settles_metered, 1),
        }
        let Some(metered) = forwarded.metered_output() else {
            return;
        };
        if source != UsageSource::Provider {
            return;
        }
        let visible = usage
            .completion_tokens
            .saturating_sub(usage.reasoning_tokens);
        let drift = visible.abs_diff(metered);
        if drift > 0 {
            log::debug!("meter drift of {drift} tokens: provider {visible}, meter {metered}");
            increment(self.meter_drift_tokens, drift);
        }
    }

    /// Counts a stream cut at its allowance.
    pub fn record_sever(&self) {
        increment(self.severed_streams, 1);
    }
}

fn counter(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, name)
        .map_err(|status| log::warn!("defining counter {name} failed: {status:?}"))
        .ok()
}

fn increment(metric: Option<u32>, by: u64) {
    if let Some(id) = metric {
        let by = i64::try_from(by).unwrap_or(i64::MAX);
        if let Err(status) = hostcalls::increment_metric(id, by) {
            log::debug!("incrementing counter {id} failed: {status:?}");
        }
    }
}
