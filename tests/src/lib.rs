//! Test support for spendfuse: a mock LLM provider and a harness that runs the real stack
//! (redis-server, the sidecar, the mock provider and Envoy with the filter) on loopback ports.
//! It also has clients for each part, and the token, usage and price arithmetic that tests use
//! to compute expected amounts.
//!
//! # Running the end-to-end tests
//!
//! `make test` builds and installs everything they need. Run alone, `cargo test -p
//! spendfuse-tests` needs `redis-server` in PATH, the sidecar at `target/debug/`, the filter's
//! release build at `target/wasm32-wasip1/release/` and Envoy at `.venv/bin/envoy`. These
//! environment variables override the locations:
//!
//! | variable | what it points to |
//! |---|---|
//! | `ENVOY_BIN` | the Envoy binary |
//! | `SPENDFUSE_SIDECAR_BIN` | the sidecar binary |
//! | `SPENDFUSE_WASM` | the filter's wasm module |
//! | `REDIS_SERVER_BIN` | the redis-server binary |
//! | `SPENDFUSE_KEEP_LOGS` | when set, each stack's directory of logs and configuration is kept |
//!
//! Every process listens on a free port of 127.0.0.1 and stops when its owner is dropped.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod client;
pub mod error;
pub mod harness;
pub mod mock;
pub mod pricing;
pub mod tokens;
pub mod usage;

pub use client::{
    budget_name, read_sse, read_stream, AdminClient, BudgetState, ChatEvent, MockClient, SseEvent,
    SseRead, StreamRead,
};
pub use error::{Error, Result};
pub use harness::{Stack, StackOptions};
