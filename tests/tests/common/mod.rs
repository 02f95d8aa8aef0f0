//! Helpers shared by the end-to-end tests: starting a stack, funding a key, sending requests
//! and computing expected amounts from the shipped prices.

#![allow(dead_code)]

pub mod mock_server;
pub mod providers;

use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use spendfuse_tests::harness::paths;
use spendfuse_tests::mock::Rng;
use spendfuse_tests::pricing::{ModelPrice, Pricing};
use spendfuse_tests::{budget_name, tokens, BudgetState, Stack, StackOptions};
use std::time::Duration;

/// Model of every end-to-end request.
pub const MODEL: &str = "gpt-4o-mini";

/// How long the filter gets to settle a finished request with the sidecar.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);

/// A budget large enough for any single test request: 10 USD.
pub const TEN_USD_NANO: u64 = 10_000_000_000;

/// Starts a stack with the shipped configuration.
pub async fn start() -> Stack {
    Stack::start(options()).await.expect("the stack starts")
}

/// Starts a stack whose filter configuration has the keys of `patch` set.
pub async fn start_with_filter_config(patch: Value) -> Stack {
    Stack::start(options().filter_config(patch))
        .await
        .expect("the stack starts")
}

fn options() -> StackOptions {
    StackOptions::new(env!("CARGO_BIN_EXE_mock-provider"))
}

/// Returns the shipped prices of [`MODEL`].
pub fn price() -> ModelPrice {
    let file = paths::pricing_file().expect("pricing file");
    let pricing = Pricing::load(&file).expect("pricing file parses");
    pricing.require(MODEL).expect("model has a price")
}

/// Returns a new API key, unique per call, so that each test has its own budget.
pub fn new_key(tag: &str) -> String {
    format!("sk-test-{tag}-{}", Rng::new().alphanumeric(20))
}

/// Creates the budget of a new key with `limit_nano_usd` and returns the key and budget name.
pub async fn funded_key(stack: &Stack, tag: &str, limit_nano_usd: u64) -> (String, String) {
    let key = new_key(tag);
    let budget = budget_name(&key);
    stack
        .admin
        .set_budget_nano(&budget, limit_nano_usd)
        .await
        .expect("budget is set");
    (key, budget)
}

/// Returns a chat request for [`MODEL`] with one user message and the keys of `extra` set.
pub fn chat_body(extra: Value) -> Value {
    let mut body = json!({
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You answer in plain words."},
            {"role": "user", "content": "Tell me how a spending limit protects a team."}
        ]
    });
    let object = body.as_object_mut().expect("body is an object");
    for (key, value) in extra.as_object().expect("extra is an object") {
        object.insert(key.clone(), value.clone());
    }
    body
}

/// Prompt tokens of `body` by the formula that the filter and the mock share.
pub fn prompt_tokens(body: &Value) -> u64 {
    tokens::request_prompt_tokens(body)
}

/// Counts the tokens of generated text; every generated word is one token.
pub fn output_tokens(text: &str) -> u64 {
    tokens::Encoding::O200kBase.count(text)
}

/// A non-streamed response.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub json: Value,
}

/// Sends `request` and reads a JSON response. A body that is not JSON becomes a JSON string.
pub async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("the request gets an answer");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("the answer has a body");
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        json,
    }
}

/// Returns what budget `name` holds in reservations now, in nano-dollars.
pub async fn held_nano(stack: &Stack, name: &str) -> u64 {
    let state = stack.admin.budget(name).await.expect("budget state");
    state.reserved_nano_usd
}

/// Waits until budget `name` has no reservation left, and returns its state.
pub async fn settled_budget(stack: &Stack, name: &str) -> BudgetState {
    stack
        .admin
        .wait_for_budget(name, SETTLE_TIMEOUT, |state| state.reserved_nano_usd == 0)
        .await
        .expect("budget state")
}

/// Returns the count in `low..=high` whose charge, with `prompt` prompt tokens, is `spent`.
pub fn output_tokens_charged(
    price: &ModelPrice,
    prompt: u64,
    spent: u64,
    low: u64,
    high: u64,
) -> Option<u64> {
    (low..=high).find(|tokens| price.usage_cost_nano(prompt, 0, *tokens) == spent)
}
