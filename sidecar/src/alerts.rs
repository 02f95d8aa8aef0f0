//! Spend alerts. A window whose spent reaches a threshold percentage of its limit fires once
//! per period, as a warn log line and, when a webhook is configured, as a JSON POST. The POST
//! runs in a task of its own and is retried with exponential backoff, so requests never wait.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::window::WindowKind;

/// Thresholds used when none are configured, in percent of a window's limit.
pub const DEFAULT_THRESHOLDS: [u64; 3] = [50, 80, 100];

/// Largest threshold accepted, in percent.
pub const MAX_THRESHOLD_PERCENT: u64 = 1000;

/// Time allowed for one webhook POST.
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// A threshold that a window reached, as the webhook receives it in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Budget name.
    pub budget: String,
    /// Root scope of the budget's hierarchy.
    pub root: String,
    /// Window that reached the threshold.
    pub window: WindowKind,
    /// Threshold reached, in percent of the limit.
    pub threshold_percent: u64,
    /// Spent in the window's current period after the settle, in nano-dollars.
    pub spent_nano_usd: u64,
    /// Limit of the window, in nano-dollars.
    pub limit_nano_usd: u64,
}

/// How often and how fast a failed webhook POST is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included.
    pub attempts: u32,
    /// Pause after the first failure; each later pause doubles, up to `max_delay`.
    pub first_delay: Duration,
    /// Maximum pause between attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

struct Webhook {
    url: reqwest::Url,
    client: reqwest::Client,
    retry: RetryPolicy,
}

/// Alert settings shared by every request handler: thresholds, and the webhook if any.
#[derive(Clone)]
pub struct Alerts {
    thresholds: Arc<[u64]>,
    webhook: Option<Arc<Webhook>>,
}

impl Default for Alerts {
    /// Alerts at [`DEFAULT_THRESHOLDS`] as log lines only.
    fn default() -> Self {
        Alerts {
            thresholds: DEFAULT_THRESHOLDS.into(),
            webhook: None,
        }
    }
}

impl Alerts {
    /// Creates alerts at `thresholds` (percent, 1 to 1000), posted to `webhook_url` when given.
    pub fn new(
        thresholds: &[u64],
        webhook_url: Option<&str>,
        retry: RetryPolicy,
    ) -> Result<Alerts, Error> {
        if let Some(bad) = thresholds
            .iter()
            .find(|percent| **percent == 0 || **percent > MAX_THRESHOLD_PERCENT)
        {
            return Err(Error::InvalidAlert(format!(
                "threshold {bad} is outside 1 to {MAX_THRESHOLD_PERCENT} percent"
            )));
        }
        let webhook = match webhook_url {
            None => None,
            Some(url) => {
                let url = reqwest::Url::parse(url).map_err(|error| {
                    Error::InvalidAlert(format!("webhook URL {url:?} is invalid: {error}"))
                })?;
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .timeout(POST_TIMEOUT)
                    .build()
                    .map_err(|error| Error::InvalidAlert(format!("HTTP client: {error}")))?;
                Some(Arc::new(Webhook { url, client, retry }))
            }
        };
        let mut sorted = thresholds.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        Ok(Alerts {
            thresholds: sorted.into(),
            webhook,
        })
    }

    /// Returns the thresholds as the settle script takes them, such as `"50,80,100"`.
    pub fn script_argument(&self) -> String {
        let parts: Vec<String> = self.thresholds.iter().map(u64::to_string).collect();
        parts.join(",")
    }

    /// Logs `alert` and starts its webhook delivery without waiting for it.
    pub fn fire(&self, alert: Alert) {
        tracing::warn!(
            budget = %alert.budget, root = %alert.root, window = %alert.window,
            threshold_percent = alert.threshold_percent, spent_nano = alert.spent_nano_usd,
            limit_nano = alert.limit_nano_usd, "budget alert"
        );
        if let Some(webhook) = &self.webhook {
            // NOTE: one task per alert, without a bound. Each threshold fires once per window
            // period, so the count is bounded by thresholds x windows x budgets per period.
            tokio::spawn(deliver(webhook.clone(), alert));
        }
    }
}

/// Posts `alert` until the receiver returns a 2xx status or the attempts run out.
async fn deliver(webhook: Arc<Webhook>, alert: Alert) {
    let mut delay = webhook.retry.first_delay;
    for attempt in 1..=webhook.retry.attempts {
        let result = webhook
            .client
            .post(webhook.url.clone())
            .json(&alert)
            .send()
            .await;
        let failure = match result {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(budget = %alert.budget, attempt, "alert delivered");
                return;
            }
            Ok(response) => format!("status {}", response.status()),
            Err(error) => error.to_string(),
        };
        if attempt == webhook.retry.attempts {
            tracing::error!(
                budget = %alert.budget, window = %alert.window, attempt, error = %failure,
                "alert webhook failed; giving up"
            );
            return;
        }
        tracing::warn!(
            budget = %alert.budget, window = %alert.window, attempt, error = %failure,
            retry_ms = delay.as_millis() as u64, "alert webhook failed; retrying"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(webhook.retry.max_delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_sorted_for_the_script() {
        let alerts = Alerts::new(&[100, 50, 80, 50], None, RetryPolicy::default());
        let argument = alerts.map(|a| a.script_argument()).ok();
        assert_eq!(argument.as_deref(), Some("50,80,100"));
    }

    #[test]
    fn zero_threshold_is_rejected() {
        let result = Alerts::new(&[0], None, RetryPolicy::default());
        assert!(matches!(result, Err(Error::InvalidAlert(_))));
    }

    #[test]
    fn invalid_url_is_rejected() {
        let result = Alerts::new(&[50], Some("not a url"), RetryPolicy::default());
        assert!(matches!(result, Err(Error::InvalidAlert(_))));
    }
}
