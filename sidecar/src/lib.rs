//! spendfuse sidecar: reserves and charges LLM spend against dollar budgets in Redis.
//!
//! The Envoy filter calls `POST /v1/reserve` before it forwards a request, to hold the request's
//! worst-case cost, and `POST /v1/settle` after the response, to charge the real usage. Each
//! money decision is one atomic Lua script, so concurrent requests cannot overspend a budget.
//! [`router`] builds the HTTP service, and the binary in `main.rs` serves it.

pub mod admin;
pub mod alerts;
pub mod api;
pub mod budgets;
pub mod cli;
pub mod config;
pub mod connection;
pub mod cost;
pub mod error;
pub mod metrics;
pub mod model_name;
pub mod money;
pub mod pricing;
pub mod reload;
pub mod store;
pub mod window;

pub use api::router;
pub use error::Error;

use std::sync::Arc;

use admin::AdminToken;
use alerts::Alerts;
use metrics::Metrics;
use reload::SharedPricing;
use store::Store;

/// Shared state of every request handler.
#[derive(Clone)]
pub struct AppState {
    /// Redis access.
    pub store: Store,
    /// Model prices, reloadable from the pricing file.
    pub pricing: SharedPricing,
    /// Token that the admin API requires, or none to disable it.
    pub admin_token: AdminToken,
    /// Decision counters, served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Spend alert thresholds and webhook.
    pub alerts: Alerts,
}
