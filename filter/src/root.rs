//! Root context: configuration, the settle queue, and resets of severed streams.

use crate::config::{self, Config};
use crate::host;
use crate::http::Http;
use crate::metrics::Metrics;
use crate::settle_queue::{Outcome, SettleQueue};
use crate::tokens::Encoding;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};
use spendfuse_protocol::SETTLE_PATH;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

/// How long a settle call may take before it is retried.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);

/// State the root context shares with the HTTP contexts of its VM.
#[derive(Default)]
pub struct Shared {
    /// Settles waiting to be sent.
    pub settles: SettleQueue,
    /// Streams whose error event went out and that wait for a reset.
    pub resets: BTreeSet<u32>,
    /// Counters.
    pub metrics: Metrics,
    /// Shared queue whose messages wake the root context to send new settles at once.
    pub wakeup_queue: Option<u32>,
}

impl Shared {
    /// Asks the root context to send queued settles now instead of at its next tick.
    pub fn wake_root(&self) {
        if let Some(queue) = self.wakeup_queue {
            if let Err(status) = hostcalls::enqueue_shared_queue(queue, Some(b"settle")) {
                log::debug!("waking the root context failed: {status:?}");
            }
        }
    }
}

/// The plugin's root context; one per VM.
pub struct Root {
    context_id: u32,
    config: Option<Rc<Config>>,
    shared: Rc<RefCell<Shared>>,
}

impl Root {
    /// Creates the root context with id `context_id`.
    pub fn new(context_id: u32) -> Self {
        Root {
            context_id,
            config: None,
            shared: Rc::new(RefCell::new(Shared::default())),
        }
    }

    /// Registers this VM's wake-up queue under a random name, because every worker's VM runs
    /// the same code and a shared name would deliver every wake-up to one of them.
    fn register_wakeup_queue(&self) -> Option<u32> {
        use std::hash::BuildHasher;
        let unique = std::collections::hash_map::RandomState::new().hash_one(self.context_id);
        let name = format!("spendfuse_settles_{unique:016x}");
        hostcalls::register_shared_queue(&name)
            .map_err(|status| {
                log::warn!(
                    "registering the settle queue failed, settles wait for ticks: {status:?}"
                )
            })
            .ok()
    }

    fn reset_severed_streams(&mut self) {
        let ids = std::mem::take(&mut self.shared.borrow_mut().resets);
        if ids.is_empty() {
            return;
        }
        for id in ids {
            match hostcalls::set_effective_context(id) {
                Ok(()) => {
                    log::debug!("#{id} resetting the severed stream from the tick");
                    if let Err(status) = hostcalls::reset_http_response() {
                        log::debug!("#{id} reset failed: {status:?}");
                    }
                }
                Err(status) => log::debug!("#{id} stream is gone before its reset: {status:?}"),
            }
        }
        // Later host calls of this tick, such as settles, must act for the root context.
        if let Err(status) = hostcalls::set_effective_context(self.context_id) {
            log::warn!("restoring the root context failed: {status:?}");
        }
    }

    fn send_due_settles(&mut self, config: &Config) {
        let now = host::now_ms();
        let due = self.shared.borrow_mut().settles.take_due(now);
        for pending in due {
            let sent = serde_json::to_vec(&pending.request)
                .map_err(|error| format!("encoding failed: {error}"))
                .and_then(|body| {
                    host::post_json(
                        &config.sidecar_cluster,
                        &config.sidecar_authority,
                        SETTLE_PATH,
                        &body,
                        SETTLE_TIMEOUT,
                    )
                    .map_err(|status| format!("{status:?}"))
                });
            let mut shared = self.shared.borrow_mut();
            match sent {
                Ok(token) => shared.settles.sent(token, pending),
                Err(error) => {
                    log::warn!(
                        "settle of {} not sent ({error}); retrying",
                        pending.reservation_id()
                    );
                    log_outcome(shared.settles.retry(pending, now));
                }
            }
        }
    }
}

fn log_outcome(outcome: Outcome) {
    match outcome {
        Outcome::Done(id) => log::debug!("settle of {id} accepted"),
        Outcome::Retrying(id) => log::warn!("settle of {id} failed; retrying with backoff"),
        Outcome::ChargingHold(id) => {
            log::warn!("settle of {id} rejected its usage; charging the amount held instead")
        }
        Outcome::GaveUp(id) => {
            log::error!(
                "settle of {id} failed too often and was dropped; its lease releases the hold"
            )
        }
        Outcome::UnknownToken => log::warn!("response to an unknown settle call ignored"),
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _: usize, _: usize, _: usize) {
        let status = host::call_status();
        let outcome = self
            .shared
            .borrow_mut()
            .settles
            .answered(token, status, host::now_ms());
        log_outcome(outcome);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = host::buffer(BufferType::PluginConfiguration, size);
        let config = match config::parse(&bytes) {
            Ok(config) => config,
            Err(error) => {
                log::error!("spendfuse configuration rejected: {error}");
                return false;
            }
        };
        self.shared.borrow_mut().metrics = Metrics::define();
        self.shared.borrow_mut().wakeup_queue = self.register_wakeup_queue();
        // Built here, not on the first request, because building takes about 100 ms each.
        for encoding in [Encoding::O200kBase, Encoding::Cl100kBase] {
            if !encoding.warm_up() {
                log::error!(
                    "the {encoding:?} tokenizer could not be built; counts fall back to bytes"
                );
            }
        }
        if let Err(status) = hostcalls::set_tick_period(config.tick_period) {
            log::error!("setting the tick period failed: {status:?}");
            return false;
        }
        log::info!(
            "spendfuse configured: sidecar cluster {}, failure mode {:?}",
            config.sidecar_cluster,
            config.failure_mode
        );
        self.config = Some(Rc::new(config));
        true
    }

    fn on_queue_ready(&mut self, queue: u32) {
        while let Ok(Some(_)) = hostcalls::dequeue_shared_queue(queue) {}
        if let Some(config) = self.config.clone() {
            self.send_due_settles(&config);
        }
    }

    fn on_tick(&mut self) {
        self.reset_severed_streams();
        if let Some(config) = self.config.clone() {
            self.send_due_settles(&config);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(
            context_id,
            self.config.clone(),
            self.shared.clone(),
        )))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
