//! End to end through Envoy: budget scopes from headers and fixed values, shadow mode, the
//! per-minute brake and the loop breaker.

mod common;

use common::{chat_body, new_key, price, prompt_tokens, send, start_with_filter_config};
use futures_util::future::join_all;
use serde_json::{json, Value};
use spendfuse_tests::pricing::format_usd;
use spendfuse_tests::Stack;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Output maximum of each request; the mock generates all of it.
const MAX_TOKENS: u64 = 50;

/// Upper bound on the time a burst of requests may take.
const BURST_TIMEOUT: Duration = Duration::from_secs(90);

/// Filter scopes of these tests: the team from a header, then the fixed org.
fn team_and_org() -> Value {
    json!([{ "header": "x-team" }, { "value": "org" }])
}

async fn put(stack: &Stack, name: &str, body: Value) {
    stack
        .admin
        .put_budget(name, &body)
        .await
        .unwrap_or_else(|error| panic!("PUT budget {name}: {error}"));
}

/// Returns (spent + reserved, limit) of each window of `name` under `root`.
async fn usage(stack: &Stack, name: &str, root: &str) -> Vec<(u64, u64)> {
    let view = stack.admin.budget_under(name, root).await.expect("budget");
    view["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .map(|window| {
            let amount = |field: &str| window[field].as_u64().expect(field);
            (
                amount("spent_nano_usd") + amount("reserved_nano_usd"),
                amount("limit_nano_usd"),
            )
        })
        .collect()
}

#[tokio::test]
async fn org_budget_admits_exactly_what_it_holds() {
    const REQUESTS: usize = 200;
    const AFFORDABLE: u64 = 23;
    // A debug-build sidecar serving 200 callouts at once on a small machine can take longer
    // than the shipped 50 ms timeout. This test is about atomic holds, not latency.
    let stack = start_with_filter_config(json!({
        "sidecarTimeout": "10s",
        "scopes": team_and_org(),
    }))
    .await;
    let body = chat_body(json!({ "max_tokens": MAX_TOKENS }));
    let hold = price().reserve_cost_nano(prompt_tokens(&body), MAX_TOKENS, 1);
    let org_limit = AFFORDABLE * hold;
    put(
        &stack,
        "org",
        json!({ "windows": { "month": format_usd(org_limit) } }),
    )
    .await;
    for team in ["team-a", "team-b"] {
        let windows =
            json!({ "minute": format_usd(1000 * hold), "lifetime": format_usd(1000 * hold) });
        put(&stack, team, json!({ "root": "org", "windows": windows })).await;
    }

    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let admin = stack.admin.clone();
        let running = running.clone();
        tokio::spawn(async move {
            let mut samples = 0u32;
            while running.load(Ordering::Relaxed) && samples < 5_000 {
                for name in ["org", "team-a", "team-b"] {
                    let view = admin.budget_under(name, "org").await.expect("budget");
                    for window in view["windows"].as_array().expect("windows") {
                        let amount = |field: &str| window[field].as_u64().expect(field);
                        let held = amount("spent_nano_usd") + amount("reserved_nano_usd");
                        assert!(
                            held <= amount("limit_nano_usd"),
                            "{name} {} holds {held} above its limit: {window}",
                            window["window"]
                        );
                    }
                }
                samples += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            samples
        })
    };

    let keys: Vec<String> = (0..10).map(|i| new_key(&format!("k{i}"))).collect();
    let requests = (0..REQUESTS).map(|i| {
        let team = if i % 2 == 0 { "team-a" } else { "team-b" };
        let request = stack
            .chat(Some(&keys[i % keys.len()]), &body)
            .header("x-team", team)
            .header("x-mock-output-tokens", MAX_TOKENS.to_string());
        async move {
            request
                .send()
                .await
                .map(|response| response.status().as_u16())
        }
    });
    let statuses = tokio::time::timeout(BURST_TIMEOUT, join_all(requests))
        .await
        .expect("the burst finishes within its time bound");
    running.store(false, Ordering::Relaxed);
    let samples = sampler.await.expect("the sampler found no limit passed");
    let statuses: Vec<u16> = statuses
        .into_iter()
        .map(|status| status.expect("answer"))
        .collect();

    let admitted = statuses.iter().filter(|status| **status == 200).count();
    let rejected = statuses.iter().filter(|status| **status == 402).count();
    assert_eq!(admitted, AFFORDABLE as usize, "statuses {statuses:?}");
    assert_eq!(
        rejected,
        REQUESTS - AFFORDABLE as usize,
        "statuses {statuses:?}"
    );
    assert!(samples > 0, "the sampler never read the budgets");
    assert_eq!(
        stack.mock.records().await.expect("records").len(),
        AFFORDABLE as usize
    );
}

#[tokio::test]
async fn shadow_org_lets_an_over_budget_request_through() {
    let stack = start_with_filter_config(json!({ "scopes": team_and_org() })).await;
    put(
        &stack,
        "org",
        json!({ "windows": { "month": "0.000000001" }, "shadow": true }),
    )
    .await;
    put(
        &stack,
        "team-a",
        json!({ "root": "org", "windows": { "month": "10" } }),
    )
    .await;
    let body = chat_body(json!({ "max_tokens": MAX_TOKENS }));
    let answer = send(
        stack
            .chat(Some(&new_key("shadow")), &body)
            .header("x-team", "team-a"),
    )
    .await;
    assert_eq!(answer.status, 200, "body {}", answer.json);
    let metrics = stack.admin.metrics().await.expect("metrics");
    assert!(
        metrics.contains("spendfuse_shadow_denied_total 1\n"),
        "{metrics}"
    );
}

/// Waits, at most about 12 s, until fewer than 48 s of the current UTC minute have passed, so
/// that a loop of a few seconds stays inside one minute window.
async fn wait_for_early_in_minute() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let second = now.as_secs() % 60;
    if second >= 48 {
        let rest =
            std::time::Duration::from_secs(60 - second) + std::time::Duration::from_millis(200);
        tokio::time::sleep(rest).await;
    }
}

#[tokio::test]
async fn minute_window_stops_a_tight_loop() {
    let stack = start_with_filter_config(json!({ "scopes": team_and_org() })).await;
    let body = chat_body(json!({ "max_tokens": MAX_TOKENS }));
    let hold = price().reserve_cost_nano(prompt_tokens(&body), MAX_TOKENS, 1);
    let windows = json!({ "minute": format_usd(3 * hold), "month": "100" });
    put(
        &stack,
        "team-a",
        json!({ "root": "org", "windows": windows }),
    )
    .await;
    put(&stack, "org", json!({ "windows": { "month": "100" } })).await;

    // The loop must run within one minute window: start early in a minute.
    wait_for_early_in_minute().await;
    let key = new_key("loop");
    let mut statuses = Vec::new();
    let mut last_error = Value::Null;
    for _ in 0..10 {
        let request = stack
            .chat(Some(&key), &body)
            .header("x-team", "team-a")
            .header("x-mock-output-tokens", MAX_TOKENS.to_string());
        let answer = send(request).await;
        statuses.push(answer.status);
        if answer.status != 200 {
            last_error = answer.json.clone();
        }
    }
    assert_eq!(&statuses[..3], &[200, 200, 200], "statuses {statuses:?}");
    assert!(
        statuses[3..].iter().all(|status| *status == 402),
        "statuses {statuses:?}"
    );
    let message = last_error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Budget team-a (minute window)"),
        "message {message:?}"
    );
    let team = usage(&stack, "team-a", "org").await;
    assert!(team[0].0 <= team[0].1, "team-a minute {team:?}");
}

#[tokio::test]
async fn loop_breaker_rejects_repeat_with_429() {
    let stack = start_with_filter_config(json!({
        "scopes": team_and_org(),
        "loopBreaker": { "maxRepeats": 2, "window": "60s" },
    }))
    .await;
    put(&stack, "org", json!({ "windows": { "month": "100" } })).await;
    let key = new_key("repeat");
    let body = chat_body(json!({ "max_tokens": MAX_TOKENS }));
    let mut statuses = Vec::new();
    let mut third = Value::Null;
    for attempt in 0..3 {
        let answer = send(stack.chat(Some(&key), &body).header("x-team", "team-a")).await;
        statuses.push(answer.status);
        if attempt == 2 {
            third = answer.json.clone();
        }
    }
    assert_eq!(statuses, vec![200, 200, 429]);
    assert_eq!(third["error"]["code"], "repeated_request", "body {third}");
    let spent = usage(&stack, "org", "org").await;
    let other = chat_body(json!({ "max_tokens": MAX_TOKENS + 1 }));
    let answer = send(stack.chat(Some(&key), &other).header("x-team", "team-a")).await;
    assert_eq!(
        answer.status, 200,
        "a different body passes: {}",
        answer.json
    );
    assert!(spent[0].0 > 0, "org spent nothing: {spent:?}");
}
