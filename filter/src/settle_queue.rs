//! Settles waiting to be sent to the sidecar, retried with backoff until one is accepted.

use spendfuse_protocol::{SettleRequest, UsageSource};
use std::collections::{HashMap, VecDeque};

/// First retry delay, in milliseconds; it doubles with each failure.
const FIRST_RETRY_MS: u64 = 100;
/// Longest retry delay, in milliseconds.
const MAX_RETRY_MS: u64 = 10_000;
/// Attempts before a settle is dropped: about 30 minutes with the delays above. The
/// reservation's lease has released the hold by then; only the charge is lost.
const MAX_ATTEMPTS: u32 = 200;
/// Most settles kept waiting per VM; past it the oldest is dropped and logged.
const MAX_WAITING: usize = 10_000;

/// One settle call with its retry state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSettle {
    /// The settle call.
    pub request: SettleRequest,
    attempts: u32,
    due_ms: u64,
}

impl PendingSettle {
    /// Reservation the settle names, for logs.
    pub fn reservation_id(&self) -> &str {
        &self.request.reservation_id
    }
}

/// Result of a settle call whose response came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The sidecar took it.
    Done(String),
    /// It failed and will be sent again.
    Retrying(String),
    /// The sidecar rejected its usage; it will be sent again to charge the amount held.
    ChargingHold(String),
    /// It failed too often and was dropped.
    GaveUp(String),
    /// The token named no settle in flight.
    UnknownToken,
}

/// Settles of one wasm VM: waiting ones in due order, and those in flight by callout token.
#[derive(Debug, Default)]
pub struct SettleQueue {
    waiting: VecDeque<PendingSettle>,
    in_flight: HashMap<u32, PendingSettle>,
}

impl SettleQueue {
    /// Queues a settle to be sent at once. Returns the dropped settle when full.
    pub fn push(&mut self, request: SettleRequest, now_ms: u64) -> Option<PendingSettle> {
        let dropped = if self.waiting.len() >= MAX_WAITING {
            self.waiting.pop_front()
        } else {
            None
        };
        self.waiting.push_back(PendingSettle {
            request,
            attempts: 0,
            due_ms: now_ms,
        });
        dropped
    }

    /// Removes and returns the settles due at `now_ms`.
    pub fn take_due(&mut self, now_ms: u64) -> Vec<PendingSettle> {
        let (due, later): (Vec<_>, Vec<_>) =
            self.waiting.drain(..).partition(|p| p.due_ms <= now_ms);
        self.waiting = later.into();
        due
    }

    /// Records a settle as sent under `token`.
    pub fn sent(&mut self, token: u32, pending: PendingSettle) {
        self.in_flight.insert(token, pending);
    }

    /// Puts back a settle that could not be sent or was not accepted.
    pub fn retry(&mut self, mut pending: PendingSettle, now_ms: u64) -> Outcome {
        pending.attempts += 1;
        if pending.attempts >= MAX_ATTEMPTS {
            return Outcome::GaveUp(pending.request.reservation_id);
        }
        let shift = pending.attempts.min(16);
        let delay = FIRST_RETRY_MS.saturating_mul(1 << shift).min(MAX_RETRY_MS);
        pending.due_ms = now_ms.saturating_add(delay);
        let id = pending.request.reservation_id.clone();
        self.waiting.push_back(pending);
        Outcome::Retrying(id)
    }

    /// Handles the response to `token`: `status` is `None` when the call timed out or failed.
    ///
    /// 200 and 404 end a settle: 404 means the sidecar has no such reservation, which a retry
    /// cannot change. A 400 rejects the usage, so the settle is sent again at once to charge
    /// the amount held instead. Anything else is retried with backoff.
    pub fn answered(&mut self, token: u32, status: Option<u32>, now_ms: u64) -> Outcome {
        let Some(mut pending) = self.in_flight.remove(&token) else {
            return Outcome::UnknownToken;
        };
        match status {
            Some(200) | Some(404) => Outcome::Done(pending.request.reservation_id),
            Some(400) if pending.request.source != UsageSource::Reservation => {
                pending.request.source = UsageSource::Reservation;
                pending.due_ms = now_ms;
                let id = pending.request.reservation_id.clone();
                self.waiting.push_back(pending);
                Outcome::ChargingHold(id)
            }
            _ => self.retry(pending, now_ms),
        }
    }

    /// Number of settles waiting or in flight.
    pub fn len(&self) -> usize {
        self.waiting.len() + self.in_flight.len()
    }

    /// True when no settle is waiting or in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spendfuse_protocol::{Ending, Usage};

    fn request(id: &str) -> SettleRequest {
        SettleRequest {
            reservation_id: id.into(),
            budget: "team".into(),
            parents: Vec::new(),
            model: "gpt-4o".into(),
            usage: Usage::text(1, 1),
            source: UsageSource::Provider,
            ending: Ending::Completed,
        }
    }

    fn queue_with_one() -> SettleQueue {
        let mut queue = SettleQueue::default();
        queue.push(request("r1"), 1000);
        queue
    }

    #[test]
    fn new_settle_is_due_at_once() {
        assert_eq!(queue_with_one().take_due(1000).len(), 1);
    }

    #[test]
    fn accepted_settle_is_done() {
        let mut queue = queue_with_one();
        let pending = queue.take_due(1000).remove(0);
        queue.sent(7, pending);
        assert_eq!(
            queue.answered(7, Some(200), 1001),
            Outcome::Done("r1".into())
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn failed_settle_waits_for_backoff() {
        let mut queue = queue_with_one();
        let pending = queue.take_due(1000).remove(0);
        queue.sent(7, pending);
        assert_eq!(
            queue.answered(7, Some(503), 1000),
            Outcome::Retrying("r1".into())
        );
        assert!(queue.take_due(1100).is_empty());
        assert_eq!(queue.take_due(1200).len(), 1);
    }

    #[test]
    fn timed_out_settle_is_retried() {
        let mut queue = queue_with_one();
        let pending = queue.take_due(1000).remove(0);
        queue.sent(7, pending);
        assert_eq!(
            queue.answered(7, None, 1000),
            Outcome::Retrying("r1".into())
        );
    }

    #[test]
    fn settle_gives_up_after_max_attempts() {
        let mut queue = queue_with_one();
        let mut now = 1000;
        let mut last = Outcome::UnknownToken;
        for token in 0..MAX_ATTEMPTS {
            let pending = queue.take_due(now).remove(0);
            queue.sent(token, pending);
            last = queue.answered(token, Some(500), now);
            now += MAX_RETRY_MS;
        }
        assert_eq!(last, Outcome::GaveUp("r1".into()));
    }

    #[test]
    fn unknown_token_is_reported() {
        assert_eq!(
            SettleQueue::default().answered(9, Some(200), 0),
            Outcome::UnknownToken
        );
    }

    #[test]
    fn full_queue_drops_oldest() {
        let mut queue = SettleQueue::default();
        for i in 0..MAX_WAITING {
            queue.push(request(&format!("r{i}")), 0);
        }
        let dropped = queue.push(request("last"), 0);
        assert_eq!(
            dropped.map(|p| p.request.reservation_id),
            Some("r0".to_string())
        );
    }

    #[test]
    fn rejected_usage_is_resent_to_charge_hold() {
        let mut queue = queue_with_one();
        let pending = queue.take_due(1000).remove(0);
        queue.sent(7, pending);
        assert_eq!(
            queue.answered(7, Some(400), 1000),
            Outcome::ChargingHold("r1".into())
        );
        let resent = queue.take_due(1000).remove(0);
        assert_eq!(resent.request.source, UsageSource::Reservation);
    }

    #[test]
    fn rejected_hold_charge_backs_off() {
        let mut queue = queue_with_one();
        let mut pending = queue.take_due(1000).remove(0);
        pending.request.source = UsageSource::Reservation;
        queue.sent(7, pending);
        assert_eq!(
            queue.answered(7, Some(400), 1000),
            Outcome::Retrying("r1".into())
        );
    }
}
