//! spendfuse filter: holds each LLM request to a dollar budget from inside Envoy.
//!
//! The host-free logic (configuration, identity, token counting, provider request and usage
//! formats, SSE and the stream meter) is plain Rust tested natively; `root`, `http`, `host` and
//! `metrics` talk to Envoy.

pub mod api;
pub mod config;
pub mod error;
pub mod host;
pub mod http;
pub mod identity;
pub mod metrics;
pub mod request;
pub mod root;
pub mod settle;
pub mod settle_queue;
pub mod sse;
pub mod stream;
pub mod tokens;
pub mod usage;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(root::Root::new(context_id))
    });
}}
