//! HTTP context: one per request, from identity and reserve to metering and settle.

use crate::api::{self, Api, Route};
use crate::config::{Config, FailureMode};
use crate::error::FilterError;
use crate::host;
use crate::identity;
use crate::request::{LlmRequest, ParseOptions};
use crate::root::Shared;
use crate::settle::{self, Forwarded, Response};
use crate::stream::{StreamMeter, Verdict};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use spendfuse_protocol::{
    Ending, ErrorResponse, LoopCheck, ReserveRequest, ReserveResponse, SettleRequest, Usage,
    UsageSource, RESERVE_PATH,
};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// Response header that reports to the client the output limit the budget could pay for.
pub const LOWERED_HEADER: &str = "x-spendfuse-max-tokens-lowered";

/// Lifecycle stage of a request.
enum Phase {
    /// Headers seen; nothing decided yet.
    Start,
    /// Not metered: passes unchanged.
    PassThrough,
    /// A metered request whose body is being buffered.
    Buffering {
        route: Route,
        budget: String,
        parents: Vec<String>,
    },
    /// The reserve call `token` is in flight.
    Reserving {
        token: u32,
        reservation_id: String,
        budget: String,
        parents: Vec<String>,
        request: LlmRequest,
        body_size: usize,
    },
    /// Forwarded under a reservation.
    Forwarded(Box<Forwarded>),
    /// Rejected with a local reply from the filter.
    Answered,
}

/// The filter's context for one HTTP request.
pub struct Http {
    id: u32,
    config: Option<Rc<Config>>,
    shared: Rc<RefCell<Shared>>,
    phase: Phase,
    /// API whose error format local replies use: OpenAI's until the path names another.
    api: Api,
}

impl Http {
    /// Creates the context of request `id`.
    pub fn new(id: u32, config: Option<Rc<Config>>, shared: Rc<RefCell<Shared>>) -> Self {
        Http {
            id,
            config,
            shared,
            phase: Phase::Start,
            api: Api::OpenAiChat,
        }
    }

    fn answer(&mut self, error: FilterError) -> Action {
        log::debug!(
            "#{} answered {} ({})",
            self.id,
            error.status(),
            error.code()
        );
        host::send_error(error.status(), &self.api.error_body(&error));
        self.phase = Phase::Answered;
        Action::Pause
    }

    fn start_request(&mut self, config: &Config, end_of_stream: bool) -> Action {
        let method = host::header(MapType::HttpRequestHeaders, ":method").unwrap_or_default();
        let full_path = host::header(MapType::HttpRequestHeaders, ":path").unwrap_or_default();
        let path = full_path.split('?').next().unwrap_or_default();
        if method != "POST" {
            return self.start_other_method(config, &method, path);
        }
        let Some(route) = api::route(path) else {
            if config.allow_unmetered_paths {
                log::debug!("#{} POST {path} passes unmetered", self.id);
                self.phase = Phase::PassThrough;
                return Action::Continue;
            }
            return self.answer(FilterError::UnmeteredPath {
                path: path.to_string(),
            });
        };
        self.api = route.api;
        let Some(budget) = budget_of(config, route.api, &full_path) else {
            let mut names = config.identity_headers.clone();
            names.extend(
                config
                    .identity_query_parameters
                    .iter()
                    .map(|p| format!("?{p}=")),
            );
            return self.answer(FilterError::MissingIdentity { headers: names });
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
        let parents =
            identity::scope_names(&config.scopes, &host::headers(MapType::HttpRequestHeaders));
        self.phase = Phase::Buffering {
            route,
            budget,
            parents,
        };
        Action::Pause
    }

    /// Lets reads and deletes pass; another method on a metered path would reach the provider
    /// unmetered, so it is rejected.
    fn start_other_method(&mut self, config: &Config, method: &str, path: &str) -> Action {
        let harmless = matches!(method, "GET" | "HEAD" | "OPTIONS" | "DELETE");
        if harmless || api::route(path).is_none() || config.allow_unmetered_paths {
            self.phase = Phase::PassThrough;
            return Action::Continue;
        }
        let method = method.to_string();
        self.answer(FilterError::MethodNotAllowed {
            method,
            path: path.to_string(),
        })
    }

    fn reserve(
        &mut self,
        config: &Config,
        route: Route,
        budget: String,
        parents: Vec<String>,
        body_size: usize,
    ) -> Action {
        let started_ms = host::now_ms();
        let body = host::buffer(BufferType::HttpRequestBody, body_size);
        let options = ParseOptions {
            image_tokens: config.image_tokens,
            estimate_margin_percent: config.estimate_margin_percent,
            azure_deployments: config.azure_deployments.clone(),
        };
        let request = match LlmRequest::parse(&route, &body, &options) {
            Ok(request) => request,
            Err(error) => return self.answer(error),
        };
        let max_output_tokens = if request.has_output() {
            request
                .max_output_tokens
                .unwrap_or(config.default_max_output_tokens)
        } else {
            0
        };
        let loop_check = config.loop_breaker.map(|breaker| LoopCheck {
            body_sha256: identity::sha256_hex(&body),
            max_repeats: breaker.max_repeats,
            window_ms: breaker.window.as_millis() as u64,
        });
        let reservation_id = new_reservation_id(self.id);
        let reserve = ReserveRequest {
            reservation_id: Some(reservation_id.clone()),
            budget: budget.clone(),
            parents: parents.clone(),
            model: request.model.clone(),
            prompt_tokens: request.prompt_tokens,
            max_output_tokens,
            min_output_tokens: config.min_output_tokens.min(max_output_tokens),
            choices: request.choices,
            lease_ms: config.lease_timeout.as_millis() as u64,
            loop_check,
        };
        let payload = match serde_json::to_vec(&reserve) {
            Ok(payload) => payload,
            Err(error) => {
                return self.unavailable(config, format!("encoding the reserve failed: {error}"))
            }
        };
        // Envoy starts the callout's timer from the time its event loop last read, before
        // this callback parsed and counted the body, so that time is added to the timeout.
        let counting = Duration::from_millis(host::now_ms().saturating_sub(started_ms));
        let sent = host::post_json(
            &config.sidecar_cluster,
            &config.sidecar_authority,
            RESERVE_PATH,
            &payload,
            config.sidecar_timeout + counting,
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
                    reservation_id,
                    budget,
                    parents,
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
            reservation_id,
            budget,
            parents,
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
            Some(400) => {
                // The sidecar rejects what the client sent (a limit too large to price, a budget
                // name it cannot store): the client's error, not an outage.
                let message = serde_json::from_slice::<ErrorResponse>(body)
                    .map(|e| e.error)
                    .unwrap_or_else(|_| "the budget service rejected the request".into());
                let code = "invalid_request".to_string();
                self.answer(FilterError::Rejected { code, message });
                return;
            }
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
                        window: denial.window,
                        limit_nano_usd: denial.limit_nano_usd,
                        remaining_nano_usd: denial.remaining_nano_usd,
                        required_nano_usd: denial.required_nano_usd,
                    }
                };
                self.answer(error);
                return;
            }
            Ok(ReserveResponse::LoopDetected(denial)) => {
                log::info!(
                    "#{} loop check: the same body came from {} more than {} times",
                    self.id,
                    denial.budget,
                    denial.max_repeats
                );
                self.answer(FilterError::LoopDetected {
                    budget: denial.budget,
                    max_repeats: denial.max_repeats,
                    window_ms: denial.window_ms,
                });
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
                // The sidecar may still make the hold after this filter gave up on it.
                self.cancel_reservation(reservation_id, budget, parents, &request.model);
                if self.unavailable(config, detail) == Action::Continue {
                    resume_request(self.id);
                }
                return;
            }
        };
        let requested = request
            .max_output_tokens
            .unwrap_or(config.default_max_output_tokens);
        if request.has_output() {
            let body = request.forwarded_body(grant.output_tokens);
            host::replace_buffer(BufferType::HttpRequestBody, body_size, &body);
        }
        log::debug!(
            "#{} reservation {} granted {} output tokens per choice",
            self.id,
            grant.reservation_id,
            grant.output_tokens
        );
        self.phase = Phase::Forwarded(Box::new(Forwarded {
            lowered: request.has_output() && grant.output_tokens < requested,
            budget,
            parents,
            grant,
            request,
            response: Response::Waiting,
            complete: false,
        }));
        resume_request(self.id);
    }

    fn queue_settle(&mut self, forwarded: &Forwarded) {
        let settle = forwarded.settle_request();
        log::debug!(
            "#{} settling {} ({:?}, {:?}): {} prompt, {} output tokens",
            self.id,
            settle.reservation_id,
            settle.ending,
            settle.source,
            settle.usage.prompt_tokens,
            settle.usage.completion_tokens
        );
        let mut shared = self.shared.borrow_mut();
        shared.metrics.record_settle(forwarded);
        if let Some(dropped) = shared.settles.push(settle, host::now_ms()) {
            log::error!(
                "settle queue full: dropped the settle of {}",
                dropped.reservation_id()
            );
        }
        shared.wake_root();
    }

    /// Queues a settle that cancels a reservation whose request never reached the provider:
    /// it releases the hold if the reserve made one, and stops the reserve if it has not run yet.
    fn cancel_reservation(
        &mut self,
        reservation_id: String,
        budget: String,
        parents: Vec<String>,
        model: &str,
    ) {
        log::debug!("#{} cancelling reservation {reservation_id}", self.id);
        let cancel = SettleRequest {
            reservation_id,
            budget,
            parents,
            model: model.to_string(),
            usage: Usage::default(),
            source: UsageSource::Provider,
            ending: Ending::NotSent,
        };
        let mut shared = self.shared.borrow_mut();
        if let Some(dropped) = shared.settles.push(cancel, host::now_ms()) {
            log::error!(
                "settle queue full: dropped the settle of {}",
                dropped.reservation_id()
            );
        }
        shared.wake_root();
    }

    fn meter_stream(&mut self, body_size: usize, end_of_stream: bool) {
        let id = self.id;
        let Phase::Forwarded(forwarded) = &mut self.phase else {
            return;
        };
        let api = forwarded.request.api;
        let error = FilterError::AllowanceSpent {
            budget: forwarded.budget.clone(),
            output_tokens: forwarded.allowance(),
        };
        let Response::Stream(meter) = &mut forwarded.response else {
            return;
        };
        let chunk = host::buffer(BufferType::HttpResponseBody, body_size);
        let error_event = |number: u64| api.error_event(&error, number);
        if meter.severed() {
            // The error event went out on an earlier callback, so a reset now reaches the
            // client after it and closes the provider's connection.
            meter.process(&chunk, end_of_stream, &mut Vec::new(), error_event);
            host::replace_buffer(BufferType::HttpResponseBody, body_size, &[]);
            self.shared.borrow_mut().resets.remove(&id);
            if let Err(status) = hostcalls::reset_http_response() {
                log::debug!("#{id} reset failed: {status:?}");
            }
            return;
        }
        let mut out = Vec::with_capacity(chunk.len());
        let verdict = meter.process(&chunk, end_of_stream, &mut out, error_event);
        if out != chunk {
            host::replace_buffer(BufferType::HttpResponseBody, body_size, &out);
        }
        if verdict == Verdict::Sever {
            log::debug!(
                "#{id} allowance of {} output tokens spent: severing",
                forwarded.allowance()
            );
            let mut shared = self.shared.borrow_mut();
            shared.metrics.record_sever();
            if !end_of_stream {
                shared.resets.insert(id);
            }
        }
    }
}

/// Returns the budget a request charges: from its identity headers, then its query
/// parameters, then the configured default. The header the API's provider authenticates with
/// is tried first, so the budget charged is the one of the key the provider bills.
fn budget_of(config: &Config, api: Api, full_path: &str) -> Option<String> {
    let headers = host::headers(MapType::HttpRequestHeaders);
    let wanted = identity::preferred_first(&config.identity_headers, api.credential_header());
    identity::budget_name(&wanted, &headers, config.hash_identity)
        .or_else(|| {
            config
                .identity_query_parameters
                .iter()
                .find_map(|name| identity::query_parameter(full_path, name))
                .map(|value| identity::budget_for_value(value, config.hash_identity))
        })
        .or_else(|| config.default_budget.clone())
}

/// Returns a new reservation id: 128 bits as 32 lower-case hex digits. The bits come from the
/// standard library's randomly keyed hasher, which WASI seeds from the host's random source,
/// so ids differ across VMs and workers as well as within one.
fn new_reservation_id(context_id: u32) -> String {
    use std::hash::BuildHasher;
    let high =
        std::collections::hash_map::RandomState::new().hash_one((context_id, host::now_ms()));
    let low = std::collections::hash_map::RandomState::new().hash_one((host::now_ms(), context_id));
    format!("{high:016x}{low:016x}")
}

fn resume_request(id: u32) {
    if let Err(status) = hostcalls::resume_http_request() {
        log::debug!("#{id} resuming the request failed: {status:?}");
    }
}

impl Context for Http {
    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        let expected = matches!(self.phase, Phase::Reserving { token: t, .. } if t == token);
        if !expected {
            log::warn!("#{} response to unknown callout {token} ignored", self.id);
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
            let detail = "spendfuse is not configured".to_string();
            return self.answer(FilterError::SidecarUnavailable { detail });
        };
        self.start_request(&config, end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Phase::Buffering { .. } = &self.phase else {
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
        let Phase::Buffering {
            route,
            budget,
            parents,
        } = std::mem::replace(&mut self.phase, Phase::Answered)
        else {
            return Action::Pause;
        };
        self.reserve(&config, route, budget, parents, body_size)
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
        let request = &forwarded.request;
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
            let drop_usage = request.stream && !request.client_wants_usage;
            let meter = StreamMeter::new(
                request.api,
                request.encoding,
                forwarded.allowance(),
                drop_usage,
            );
            Response::Stream(Box::new(meter))
        } else {
            Response::Json(settle::JsonCopy::default())
        };
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let max_copy = self
            .config
            .as_ref()
            .map_or(0, |c| c.max_response_body_bytes);
        let Phase::Forwarded(forwarded) = &mut self.phase else {
            return Action::Continue;
        };
        forwarded.complete |= end_of_stream;
        match &mut forwarded.response {
            Response::Stream(_) => self.meter_stream(body_size, end_of_stream),
            Response::Json(copy) => {
                let chunk = host::buffer(BufferType::HttpResponseBody, body_size);
                copy.push(&chunk, max_copy);
            }
            Response::Waiting | Response::UpstreamError | Response::Unreadable => {}
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        self.shared.borrow_mut().resets.remove(&self.id);
        match std::mem::replace(&mut self.phase, Phase::Answered) {
            Phase::Forwarded(forwarded) => self.queue_settle(&forwarded),
            Phase::Reserving {
                reservation_id,
                budget,
                parents,
                request,
                ..
            } => {
                // The reserve response will not reach this context any more.
                log::debug!("#{} request ended while reserving", self.id);
                self.cancel_reservation(reservation_id, budget, parents, &request.model);
            }
            _ => {}
        }
    }
}
