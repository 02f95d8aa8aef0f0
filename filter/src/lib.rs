//! spendfuse filter: holds each LLM request to a dollar budget from inside Envoy.
//!
//! The host-free logic (configuration, identity, token counting, the OpenAI format, SSE and
//! the stream meter) is plain Rust tested natively; `root`, `http` and `host` talk to Envoy.

pub mod config;
pub mod error;
pub mod host;
pub mod http;
pub mod identity;
pub mod openai;
pub mod root;
pub mod settle_queue;
pub mod sse;
pub mod stream;
pub mod tokens;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(root::Root::new(context_id))
    });
}}
