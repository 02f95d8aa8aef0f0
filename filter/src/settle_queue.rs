//! Settles waiting to be sent to the sidecar, retried with backoff until one is answered.

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

/// One settle call body with its retry state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSettle {
    /// Reservation the settle names, for logs.
    pub reservation_id: String,
    /// JSON body of the settle call.
    pub body: Vec<u8>,
    attempts: u32,
    due_ms: u64,
}

/// What happened to a settle whose answer came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The sidecar took it.
    Done(String),
    /// It failed and will be sent again.
    Retrying(String),
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
    /// Queues a settle to be sent at the next tick. Returns the dropped settle when full.
    pub fn push(
        &mut self,
        reservation_id: String,
        body: Vec<u8>,
        now_ms: u64,
    ) -> Option<PendingSettle> {
        let dropped = if self.waiting.len() >= MAX_WAITING {
            self.waiting.pop_front()
        } else {
            None
        };
        self.waiting.push_back(PendingSettle {
            reservation_id,
            body,
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
            return Outcome::GaveUp(pending.reservation_id);
        }
        let shift = pending.attempts.min(16);
        let delay = FIRST_RETRY_MS.saturating_mul(1 << shift).min(MAX_RETRY_MS);
        pending.due_ms = now_ms.saturating_add(delay);
        let id = pending.reservation_id.clone();
        self.waiting.push_back(pending);
        Outcome::Retrying(id)
    }

    /// Handles the answer to `token`: `status` is `None` when the call timed out or failed.
    ///
    /// 200 and 404 end a settle: 404 means the sidecar has no such reservation, which a retry
    /// cannot change. Anything else is retried.
    pub fn answered(&mut self, token: u32, status: Option<u32>, now_ms: u64) -> Outcome {
        let Some(pending) = self.in_flight.remove(&token) else {
            return Outcome::UnknownToken;
        };
        match status {
            Some(200) | Some(404) => Outcome::Done(pending.reservation_id),
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

    fn queue_with_one() -> SettleQueue {
        let mut queue = SettleQueue::default();
        queue.push("r1".into(), b"{}".to_vec(), 1000);
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
            queue.push(format!("r{i}"), Vec::new(), 0);
        }
        let dropped = queue.push("last".into(), Vec::new(), 0);
        assert_eq!(dropped.map(|p| p.reservation_id), Some("r0".to_string()));
    }
}
