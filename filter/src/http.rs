//! HTTP context: one per request, from identity and reserve to metering and settle.

use crate::config::{Config, FailureMode};
use crate::error::FilterError;
use crate::host;
use crate::identity;
use crate::openai::{self, ChatRequest};
use crate::root::Shared;
use crate::stream::{StreamMeter, Verdict};
use crate::tokens::Encoding;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use spendfuse_protocol::{
    Ending, Grant, ReserveRequest, ReserveResponse, SettleRequest, Usage, UsageSource, RESERVE_PATH,
};
use std::cell::RefCell;
use std::rc::Rc;

/// Response header that tells the client its output limit was lowered to what the budget pays.
pub const LOWERED_HEADER: &str = "x-spendfuse-max-tokens-lowered";

/// Where a request is in its life.
enum Phase {
    /// Headers seen; nothing decided yet.
    Start,
    /// Not metered: passes unchanged.
    PassThrough,
    /// A chat request whose body is being buffered.
    Buffering { budget: String },
    /// The reserve call `token` is in flight.
    Reserving {
        token: u32,
        budget: String,
        request: ChatRequest,
        body_size: usize,
    },
    /// Forwarded under a reservation.
    Forwarded(Box<Forwarded>),
    /// Answered by the filter itself.
    Answered,
}

/// A request forwarded under a reservation, and what its response has shown so far.
struct Forwarded {
    grant: Grant,
    budget: String,
    model: String,
    encoding: Encoding,
    prompt_tokens: u64,
    choices: u64,
    stream: bool,
    drop_usage_chunk: bool,
    lowered: bool,
    response: Response,
    complete: bool,
}

/// The response of a forwarded request.
enum Response {
    /// No response headers yet.
    Waiting,
    /// An error status from the provider (or from Envoy in its place).
    UpstreamError,
    /// An encoding the meter cannot read: settle at the reservation.
    Unreadable,
    /// A streamed response being metered.
    Stream(StreamMeter),
    /// A JSON response, copied as it passes to read its usage at the end.
    Json { copy: Vec<u8>, overflow: bool },
}

/// The filter's context for one HTTP request.
pub struct Http {
    id: u32,
    config: Option<Rc<Config>>,
    shared: Rc<RefCell<Shared>>,
    phase: Phase,
}

impl Http {
    /// Creates the context of request `id`.
    pub fn new(id: u32, config: Option<Rc<Config>>, shared: Rc<RefCell<Shared>>) -> Self {
        Http {
            id,
            config,
            shared,
            phase: Phase::Start,
        }
    }

    fn answer(&mut self, error: FilterError) -> Action {
        log::debug!(
            "#{} answered {} ({})",
            self.id,
            error.status(),
            first_word(&error)
        );
        host::send_error(&error);
        self.phase = Phase::Answered;
        Action::Pause
    }

    fn start_request(&mut self, config: &Config, end_of_stream: bool) -> Action {
        let method = host::header(MapType::HttpRequestHeaders, ":method").unwrap_or_default();
        let path = host::header(MapType::HttpRequestHeaders, ":path").unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default().to_string();
        if method != "POST" {
            self.phase = Phase::PassThrough;
            return Action::Continue;
        }
        if !path.ends_with("/chat/completions") {
            if config.allow_unmetered_paths {
                log::debug!("#{} POST {path} passes unmetered", self.id);
                self.phase = Phase::PassThrough;
                return Action::Continue;
            }
            return self.answer(FilterError::UnmeteredPath { path });
        }
        let headers = host::headers(MapType::HttpRequestHeaders);
        let budget =
            identity::budget_name(&config.identity_headers, &headers, config.hash_identity)
                .or_else(|| config.default_budget.clone());
        let Some(budget) = budget else {
            return self.answer(FilterError::MissingIdentity {
                headers: config.identity_headers.clone(),
            });
        };
        let declared_size = host::header(MapType::HttpRequestHeaders, "content-length")
            .and_then(|v| v.parse::<usize>().ok());
        if declared_size.is_some_and(|size| size > config.max_request_body_bytes) {
            return self.answer(FilterError::BodyTooLarge {
                limit: config.max_request_body_bytes,
            });
        }
        if end_of_stream {
            return self.answer(FilterError::InvalidJson {
                detail: "the body is empty".into(),
            });
        }
        // The meter reads responses as plain text, and the body may be rewritten.
        host::set_header(MapType::HttpRequestHeaders, "accept-encoding", None);
        host::set_header(MapType::HttpRequestHeaders, "content-length", None);
        self.phase = Phase::Buffering { budget };
        Action::Pause
    }

    fn reserve(&mut self, config: &Config, budget: String, body_size: usize) -> Action {
        let body = host::buffer(BufferType::HttpRequestBody, body_size);
        let request = match ChatRequest::parse(&body, config.image_tokens) {
            Ok(request) => request,
            Err(error) => return self.answer(error),
        };
        let max_output_tokens = request
            .max_output_tokens
            .unwrap_or(config.default_max_output_tokens);
        let reserve = ReserveRequest {
            budget: budget.clone(),
            model: request.model.clone(),
            prompt_tokens: request.prompt_tokens,
            max_output_tokens,
            min_output_tokens: config.min_output_tokens.min(max_output_tokens),
            choices: request.choices,
            lease_ms: config.lease_timeout.as_millis() as u64,
        };
        let payload = match serde_json::to_vec(&reserve) {
            Ok(payload) => payload,
            Err(error) => {
                return self.unavailable(config, format!("encoding the reserve failed: {error}"))
            }
        };
        let sent = host::post_json(
            &config.sidecar_cluster,
            &config.sidecar_authority,
            RESERVE_PATH,
            &payload,
            config.sidecar_timeout,
        );
        match sent {
            Ok(token) => {
                log::debug!(
                    "#{} reserving: {} prompt tokens, up to {max_output_tokens} out",
                    self.id,
                    request.prompt_tokens
                );
                self.phase = Phase::Reserving {
                    token,
                    budget,
                    request,
                    body_size,
                };
                Action::Pause
            }
            Err(status) => self.unavailable(config, format!("the reserve call failed: {status:?}")),
        }
    }

    /// Applies the failure mode when the sidecar cannot decide. Returns the action for a
    /// paused request that is still in a callback of its own.
    fn unavailable(&mut self, config: &Config, detail: String) -> Action {
        match config.failure_mode {
            FailureMode::FailClosed => {
                log::warn!("#{} budget service unavailable: {detail}", self.id);
                self.answer(FilterError::SidecarUnavailable { detail })
            }
            FailureMode::FailOpen => {
                log::warn!(
                    "#{} budget service unavailable, passing uncharged (failOpen): {detail}",
                    self.id
                );
                self.phase = Phase::PassThrough;
                Action::Continue
            }
        }
    }

    fn on_reserve_answer(&mut self, config: &Config, status: Option<u32>, body: &[u8]) {
        let Phase::Reserving {
            budget,
            request,
            body_size,
            ..
        } = std::mem::replace(&mut self.phase, Phase::Answered)
        else {
            return;
        };
        let answer = match status {
            Some(200) => serde_json::from_slice::<ReserveResponse>(body)
                .map_err(|e| format!("the reserve answer is not valid: {e}")),
            Some(status) => Err(format!("the reserve call answered status {status}")),
            None => Err("the reserve call timed out or failed".to_string()),
        };
        let grant = match answer {
            Ok(ReserveResponse::Granted(grant)) => grant,
            Ok(ReserveResponse::Denied(denial)) => {
                let error = if denial.unknown_budget {
                    FilterError::UnknownBudget {
                        budget: denial.budget,
                    }
                } else {
                    FilterError::BudgetExceeded {
                        budget: denial.budget,
                        limit_nano_usd: denial.limit_nano_usd,
                        remaining_nano_usd: denial.remaining_nano_usd,
                        required_nano_usd: denial.required_nano_usd,
                    }
                };
                self.answer(error);
                return;
            }
            Ok(ReserveResponse::Rejected(rejection)) => {
                self.answer(FilterError::Rejected {
                    code: rejection.code,
                    message: rejection.message,
                });
                return;
            }
            Err(detail) => {
                if self.unavailable(config, detail) == Action::Continue {
                    resume_request(self.id);
                }
                return;
            }
        };
        let requested = request
            .max_output_tokens
            .unwrap_or(config.default_max_output_tokens);
        let body = request.forwarded_body(grant.output_tokens);
        host::replace_buffer(BufferType::HttpRequestBody, body_size, &body);
        log::debug!(
            "#{} reservation {} granted {} output tokens per choice",
            self.id,
            grant.reservation_id,
            grant.output_tokens
        );
        self.phase = Phase::Forwarded(Box::new(Forwarded {
            lowered: grant.output_tokens < requested,
            budget,
            model: request.model,
            encoding: request.encoding,
            prompt_tokens: request.prompt_tokens,
            choices: request.choices,
            stream: request.stream,
            drop_usage_chunk: request.stream && !request.client_wants_usage,
            response: Response::Waiting,
            complete: false,
            grant,
        }));
        resume_request(self.id);
    }

    fn queue_settle(&mut self, forwarded: &Forwarded) {
        let (usage, source) = forwarded.usage();
        let ending = forwarded.ending();
        let settle = SettleRequest {
            reservation_id: forwarded.grant.reservation_id.clone(),
            budget: forwarded.budget.clone(),
            model: forwarded.model.clone(),
            usage,
            source,
            ending,
        };
        let Ok(body) = serde_json::to_vec(&settle) else {
            log::error!(
                "#{} encoding the settle failed; the lease releases the hold",
                self.id
            );
            return;
        };
        log::debug!(
            "#{} settling {} ({ending:?}, {source:?}): {} prompt, {} output tokens",
            self.id,
            settle.reservation_id,
            usage.prompt_tokens,
            usage.completion_tokens
        );
        let mut shared = self.shared.borrow_mut();
        if let Some(dropped) = shared
            .settles
            .push(settle.reservation_id, body, host::now_ms())
        {
            log::error!(
                "settle queue full: dropped the settle of {}",
                dropped.reservation_id
            );
        }
    }
}

impl Forwarded {
    fn reserved_usage(&self) -> Usage {
        Usage::text(
            self.prompt_tokens,
            self.grant.output_tokens.saturating_mul(self.choices),
        )
    }

    fn metered_usage(&self, output_tokens: u64) -> Usage {
        Usage::text(self.prompt_tokens, output_tokens)
    }

    /// Returns what to charge and where it comes from.
    fn usage(&self) -> (Usage, UsageSource) {
        match &self.response {
            Response::Waiting => (self.metered_usage(0), UsageSource::Metered),
            Response::UpstreamError => (Usage::default(), UsageSource::Provider),
            Response::Unreadable => (self.reserved_usage(), UsageSource::Metered),
            Response::Stream(meter) => match meter.usage() {
                _ if meter.unreliable() => (self.reserved_usage(), UsageSource::Metered),
                Some(usage) if !meter.severed() => (usage, UsageSource::Provider),
                _ => (
                    self.metered_usage(meter.output_tokens()),
                    UsageSource::Metered,
                ),
            },
            Response::Json { copy, overflow } => {
                let info = if *overflow || !self.complete {
                    None
                } else {
                    std::str::from_utf8(copy)
                        .ok()
                        .and_then(|text| openai::read_chunk(self.encoding, text))
                };
                match info {
                    Some(info) => match info.usage {
                        Some(usage) => (usage, UsageSource::Provider),
                        None => (self.metered_usage(info.output_tokens), UsageSource::Metered),
                    },
                    // The provider generates a whole non-streamed answer even when the client
                    // leaves, and bills it, so an unread answer is charged at its reservation.
                    None => (self.reserved_usage(), UsageSource::Metered),
                }
            }
        }
    }

    fn ending(&self) -> Ending {
        match &self.response {
            Response::UpstreamError => Ending::UpstreamError,
            Response::Stream(meter) if meter.severed() => Ending::Severed,
            _ if self.complete => Ending::Completed,
            _ => Ending::ClientDisconnected,
        }
    }
}

fn resume_request(id: u32) {
    if let Err(status) = hostcalls::resume_http_request() {
        log::debug!("#{id} resuming the request failed: {status:?}");
    }
}

fn first_word(error: &FilterError) -> String {
    let body: serde_json::Value = serde_json::from_str(&error.body()).unwrap_or_default();
    body.pointer("/error/code")
        .and_then(|c| c.as_str())
        .unwrap_or_default()
        .to_string()
}

impl Context for Http {
    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        let expected = matches!(self.phase, Phase::Reserving { token: t, .. } if t == token);
        if !expected {
            log::warn!("#{} answer to unknown callout {token} ignored", self.id);
            return;
        }
        let Some(config) = self.config.clone() else {
            return;
        };
        let status = host::call_status();
        let body = host::buffer(BufferType::HttpCallResponseBody, body_size);
        self.on_reserve_answer(&config, status, &body);
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return self.answer(FilterError::SidecarUnavailable {
                detail: "spendfuse is not configured".into(),
            });
        };
        self.start_request(&config, end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Phase::Buffering { budget } = &self.phase else {
            return match self.phase {
                Phase::Reserving { .. } | Phase::Answered => Action::Pause,
                _ => Action::Continue,
            };
        };
        let Some(config) = self.config.clone() else {
            return Action::Pause;
        };
        if body_size > config.max_request_body_bytes {
            return self.answer(FilterError::BodyTooLarge {
                limit: config.max_request_body_bytes,
            });
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let budget = budget.clone();
        self.reserve(&config, budget, body_size)
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        let Phase::Forwarded(forwarded) = &mut self.phase else {
            return Action::Continue;
        };
        let status: u32 = host::header(MapType::HttpResponseHeaders, ":status")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if forwarded.lowered {
            let granted = forwarded.grant.output_tokens.to_string();
            host::set_header(MapType::HttpResponseHeaders, LOWERED_HEADER, Some(&granted));
        }
        let encoding = host::header(MapType::HttpResponseHeaders, "content-encoding");
        let content_type =
            host::header(MapType::HttpResponseHeaders, "content-type").unwrap_or_default();
        forwarded.response = if !(200..300).contains(&status) {
            Response::UpstreamError
        } else if encoding.is_some_and(|e| !e.eq_ignore_ascii_case("identity")) {
            log::warn!(
                "#{} response is compressed despite the request; settling at the reservation",
                self.id
            );
            Response::Unreadable
        } else if content_type.starts_with("text/event-stream") {
            host::set_header(MapType::HttpResponseHeaders, "content-length", None);
            let allowance = forwarded
                .grant
                .output_tokens
                .saturating_mul(forwarded.choices);
            let error = FilterError::AllowanceSpent {
                budget: forwarded.budget.clone(),
                output_tokens: allowance,
            };
            Response::Stream(StreamMeter::new(
                forwarded.encoding,
                allowance,
                forwarded.drop_usage_chunk,
                error.sse_event(),
            ))
        } else {
            if forwarded.stream {
                log::debug!("#{} streamed request answered with {content_type}", self.id);
            }
            Response::Json {
                copy: Vec::new(),
                overflow: false,
            }
        };
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let id = self.id;
        let max_copy = self
            .config
            .as_ref()
            .map_or(0, |c| c.max_response_body_bytes);
        let Phase::Forwarded(forwarded) = &mut self.phase else {
            return Action::Continue;
        };
        forwarded.complete |= end_of_stream;
        match &mut forwarded.response {
            Response::Stream(meter) => {
                let chunk = host::buffer(BufferType::HttpResponseBody, body_size);
                if meter.severed() {
                    // The error event went out on an earlier callback, so a reset now reaches
                    // the client after it and closes the provider's connection.
                    let mut ignored = Vec::new();
                    meter.process(&chunk, end_of_stream, &mut ignored);
                    host::replace_buffer(BufferType::HttpResponseBody, body_size, &[]);
                    self.shared.borrow_mut().resets.remove(&id);
                    if let Err(status) = hostcalls::reset_http_response() {
                        log::debug!("#{id} reset failed: {status:?}");
                    }
                    return Action::Continue;
                }
                let mut out = Vec::with_capacity(chunk.len());
                let verdict = meter.process(&chunk, end_of_stream, &mut out);
                if out != chunk {
                    host::replace_buffer(BufferType::HttpResponseBody, body_size, &out);
                }
                if verdict == Verdict::Sever {
                    log::debug!(
                        "#{id} allowance of {} output tokens spent: severing",
                        meter.output_tokens()
                    );
                    if !end_of_stream {
                        self.shared.borrow_mut().resets.insert(id);
                    }
                }
            }
            Response::Json { copy, overflow } => {
                if !*overflow {
                    if copy.len().saturating_add(body_size) > max_copy {
                        *overflow = true;
                        copy.clear();
                    } else {
                        copy.extend(host::buffer(BufferType::HttpResponseBody, body_size));
                    }
                }
            }
            Response::Waiting | Response::UpstreamError | Response::Unreadable => {}
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.shared.borrow_mut().resets.remove(&self.id);
        match std::mem::replace(&mut self.phase, Phase::Answered) {
            Phase::Forwarded(forwarded) => self.queue_settle(&forwarded),
            Phase::Reserving { .. } => {
                // NOTE: the reserve answer will not reach this context any more, so its
                // reservation (if granted) is released only when its lease runs out.
                log::debug!("#{} request ended while reserving", self.id);
            }
            _ => {}
        }
    }
}
