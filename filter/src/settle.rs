//! Settle call of a forwarded request: the usage it is charged, decided when it ends.

use crate::request::LlmRequest;
use crate::stream::StreamMeter;
use crate::usage::UsageTracker;
use spendfuse_protocol::{Ending, Grant, SettleRequest, Usage, UsageSource};

/// A request forwarded under a reservation, and what its response has shown so far.
pub struct Forwarded {
    /// The sidecar's hold.
    pub grant: Grant,
    /// Budget the hold is on.
    pub budget: String,
    /// Enclosing scopes sent with the reserve, from the nearest to the root.
    pub parents: Vec<String>,
    /// The request as parsed.
    pub request: LlmRequest,
    /// True when the output limit was lowered to what the budget pays for.
    pub lowered: bool,
    /// The response so far.
    pub response: Response,
    /// True once the response ended normally.
    pub complete: bool,
}

/// The response of a forwarded request.
pub enum Response {
    /// No response headers yet.
    Waiting,
    /// An error status from the provider (or from Envoy in its place).
    UpstreamError,
    /// An encoding the meter cannot read: settle at the reservation.
    Unreadable,
    /// A streamed response being metered.
    Stream(Box<StreamMeter>),
    /// A whole JSON response, copied as it passes to read its usage at the end.
    Json(JsonCopy),
}

/// Copy of a non-streamed response body, up to a size limit.
#[derive(Debug, Default)]
pub struct JsonCopy {
    bytes: Vec<u8>,
    overflow: bool,
}

impl JsonCopy {
    /// Appends `chunk`; past `limit` bytes the copy is dropped and marked as overflowed.
    pub fn push(&mut self, chunk: &[u8], limit: usize) {
        if self.overflow {
            return;
        }
        if self.bytes.len().saturating_add(chunk.len()) > limit {
            self.overflow = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(chunk);
        }
    }
}

impl Forwarded {
    /// Output tokens over all choices that the reservation pays for.
    pub fn allowance(&self) -> u64 {
        self.grant
            .output_tokens
            .saturating_mul(self.request.choices)
    }

    /// Returns the settle call body for this request as it ended.
    pub fn settle_request(&self) -> SettleRequest {
        let (usage, source) = self.usage();
        SettleRequest {
            reservation_id: self.grant.reservation_id.clone(),
            budget: self.budget.clone(),
            parents: self.parents.clone(),
            model: self.request.model.clone(),
            usage,
            source,
            ending: self.ending(),
        }
    }

    /// Returns usage that makes the sidecar charge the amount held. Its counts are for logs only.
    fn reserved_usage(&self) -> (Usage, UsageSource) {
        (
            Usage::text(self.request.prompt_tokens, self.allowance()),
            UsageSource::Reservation,
        )
    }

    /// Returns what to charge and where it comes from.
    ///
    /// Provider usage settles a response that reached its final usage report. Otherwise the
    /// input side comes from the provider's partial report when there is one, else from the
    /// filter's estimate, and the output is the larger of the partial report and the meter.
    pub fn usage(&self) -> (Usage, UsageSource) {
        match &self.response {
            // A non-streamed response is generated and billed whole even when the client leaves
            // before it arrives. A stream with no response yet has spent its prompt.
            Response::Waiting if !self.request.stream => self.reserved_usage(),
            Response::Waiting => partial(None, self.request.prompt_tokens, 0),
            Response::UpstreamError => (Usage::default(), UsageSource::Provider),
            Response::Unreadable => self.reserved_usage(),
            Response::Stream(meter) if meter.unreliable() => self.reserved_usage(),
            Response::Stream(meter) => match meter.usage() {
                Some(usage) if meter.complete() && !meter.severed() => {
                    (usage, UsageSource::Provider)
                }
                usage => partial(usage, self.request.prompt_tokens, meter.output_tokens()),
            },
            Response::Json(copy) => {
                if copy.overflow || !self.complete {
                    // The provider generates a whole non-streamed response even when the client
                    // leaves, and bills it, so an unread response is charged at its reservation.
                    return self.reserved_usage();
                }
                let mut tracker = UsageTracker::new(self.request.api, self.request.encoding);
                let output_tokens = tracker.read_body(&copy.bytes);
                match tracker.usage() {
                    Some(usage) if tracker.complete() => (usage, UsageSource::Provider),
                    usage => partial(usage, self.request.prompt_tokens, output_tokens),
                }
            }
        }
    }

    /// How the request ended.
    pub fn ending(&self) -> Ending {
        match &self.response {
            Response::UpstreamError => Ending::UpstreamError,
            Response::Stream(meter) if meter.severed() => Ending::Severed,
            _ if self.complete => Ending::Completed,
            _ => Ending::ClientDisconnected,
        }
    }

    /// Output tokens the meter counted, when the response was a metered stream.
    pub fn metered_output(&self) -> Option<u64> {
        match &self.response {
            Response::Stream(meter) => Some(meter.output_tokens()),
            _ => None,
        }
    }
}

/// Usage of a response that ended before the provider's final report.
fn partial(
    reported: Option<Usage>,
    prompt_estimate: u64,
    metered_output: u64,
) -> (Usage, UsageSource) {
    let mut usage = reported.unwrap_or_else(|| Usage::text(prompt_estimate, 0));
    if usage.prompt_tokens == 0 {
        usage.prompt_tokens = prompt_estimate;
    }
    usage.completion_tokens = usage.completion_tokens.max(metered_output);
    (usage, UsageSource::Metered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_keeps_reported_input() {
        let reported = Usage {
            prompt_tokens: 40,
            cached_prompt_tokens: 10,
            ..Usage::default()
        };
        let (usage, source) = partial(Some(reported), 30, 7);
        assert_eq!((usage.prompt_tokens, usage.cached_prompt_tokens), (40, 10));
        assert_eq!(usage.completion_tokens, 7);
        assert_eq!(source, UsageSource::Metered);
    }

    #[test]
    fn partial_without_report_uses_estimate() {
        let (usage, _) = partial(None, 30, 7);
        assert_eq!(usage, Usage::text(30, 7));
    }

    #[test]
    fn partial_keeps_larger_reported_output() {
        let reported = Usage::text(5, 12);
        assert_eq!(partial(Some(reported), 30, 7).0.completion_tokens, 12);
    }

    #[test]
    fn json_copy_overflows_past_limit() {
        let mut copy = JsonCopy::default();
        copy.push(b"1234", 6);
        copy.push(b"567", 6);
        assert!(copy.overflow);
        assert!(copy.bytes.is_empty());
    }
}
