//! Pricing reload without a restart: the admin API, the file watcher, and SIGHUP to the built
//! binary, against a real redis-server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{Method, StatusCode};
use common::{
    modified_time, reserve_request, shipped_pricing, write_pricing_file, RedisServer,
    SidecarProcess, TestEnv, TEST_TOKEN,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use spendfuse_protocol::ReserveResponse;
use spendfuse_sidecar::admin::{PricingView, ReloadSummary};
use spendfuse_sidecar::reload::{watch_pricing_file, SharedPricing};
use tempfile::NamedTempFile;

/// Maximum wait for a reload that a test caused.
const RELOAD_DEADLINE: Duration = Duration::from_secs(10);

/// Maximum wait for the binary's own poll, which runs every 5 seconds.
const POLL_DEADLINE: Duration = Duration::from_secs(15);

/// Poll interval of the in-process watcher tests.
const TEST_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Modification time of a pricing file as a test first writes it.
fn first_write_time() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Modification time of a pricing file after a test changed it.
fn second_write_time() -> SystemTime {
    first_write_time() + Duration::from_secs(60)
}

/// Returns the text of a pricing file with one model, gpt-4o, at `input` USD per million prompt
/// tokens. Values of `checked` and `input` of equal length give files of equal length.
fn pricing_text(checked: &str, input: &str) -> String {
    format!(
        "checked = \"{checked}\"\n[models.\"gpt-4o\"]\ninput = \"{input}\"\noutput = \"10.00\"\n"
    )
}

/// Text that fails to load because a price is not a decimal.
const BROKEN_PRICING: &str =
    "checked = \"2026-03-03\"\n[models.\"gpt-4o\"]\ninput = \"cheap\"\noutput = \"10.00\"\n";

/// Creates a temporary pricing file with gpt-4o at $2.50 per million prompt tokens, checked
/// 2026-01-01.
fn pricing_file() -> NamedTempFile {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    write_pricing_file(
        file.path(),
        &pricing_text("2026-01-01", "2.50"),
        first_write_time(),
    );
    file
}

/// Returns the amount that a reserve of 1_000 prompt tokens and no output holds for gpt-4o.
async fn prompt_hold(env: &TestEnv) -> u64 {
    env.create_budget("team", 1_000_000_000).await;
    match env
        .reserve(&reserve_request("team", "gpt-4o", 1_000, 0, 0))
        .await
    {
        ReserveResponse::Granted(grant) => grant.reserved_nano_usd,
        other => panic!("expected a grant, got {other:?}"),
    }
}

async fn post_reload(env: &TestEnv, token: Option<&str>) -> (StatusCode, Value) {
    env.send(Method::POST, "/admin/pricing/reload", None, token)
        .await
}

/// Waits until the pricing in force was checked on `checked`, or fails after `deadline`.
async fn wait_for_checked(pricing: &SharedPricing, checked: &str, deadline: Duration) {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if pricing.current().checked() == checked {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "the pricing was not reloaded within {deadline:?}: checked is still {}",
        pricing.current().checked()
    );
}

// The admin API.

#[tokio::test]
async fn admin_reload_returns_models_and_checked() {
    let file = pricing_file();
    let env = TestEnv::with_pricing_file(file.path());
    write_pricing_file(
        file.path(),
        &pricing_text("2026-02-02", "5.00"),
        second_write_time(),
    );
    let (status, body) = post_reload(&env, Some(TEST_TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "body: {body}");
    let summary: ReloadSummary = serde_json::from_value(body).unwrap();
    assert_eq!(
        summary,
        ReloadSummary {
            models: 1,
            checked: "2026-02-02".into()
        }
    );
}

#[tokio::test]
async fn admin_reload_applies_the_new_prices() {
    let file = pricing_file();
    let env = TestEnv::with_pricing_file(file.path());
    write_pricing_file(
        file.path(),
        &pricing_text("2026-02-02", "5.00"),
        second_write_time(),
    );
    post_reload(&env, Some(TEST_TOKEN)).await;
    // 1_000 prompt tokens at 5_000_000 pico each.
    assert_eq!(prompt_hold(&env).await, 5_000_000);
}

#[tokio::test]
async fn reload_of_broken_file_is_bad_request() {
    let file = pricing_file();
    let env = TestEnv::with_pricing_file(file.path());
    write_pricing_file(file.path(), BROKEN_PRICING, second_write_time());
    let (status, body) = post_reload(&env, Some(TEST_TOKEN)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "body: {body}");
}

#[tokio::test]
async fn admin_reload_error_names_the_field() {
    let file = pricing_file();
    let env = TestEnv::with_pricing_file(file.path());
    write_pricing_file(file.path(), BROKEN_PRICING, second_write_time());
    let (_, body) = post_reload(&env, Some(TEST_TOKEN)).await;
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("models.\"gpt-4o\".input"),
        "message: {message}"
    );
}

#[tokio::test]
async fn broken_file_keeps_the_old_prices() {
    let file = pricing_file();
    let env = TestEnv::with_pricing_file(file.path());
    write_pricing_file(file.path(), BROKEN_PRICING, second_write_time());
    post_reload(&env, Some(TEST_TOKEN)).await;
    // 1_000 prompt tokens at the old 2_500_000 pico each.
    assert_eq!(prompt_hold(&env).await, 2_500_000);
}

#[tokio::test]
async fn deleted_file_keeps_the_old_prices() {
    let file = pricing_file();
    let env = TestEnv::with_pricing_file(file.path());
    let path = file.path().to_path_buf();
    file.close().unwrap();
    let (status, _) = post_reload(&env, Some(TEST_TOKEN)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "file {path:?}");
    assert_eq!(env.state.pricing.current().checked(), "2026-01-01");
}

#[tokio::test]
async fn admin_reload_without_token_is_unauthorized() {
    let file = pricing_file();
    let env = TestEnv::with_pricing_file(file.path());
    let (status, _) = post_reload(&env, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn admin_reload_without_a_file_is_conflict() {
    let env = TestEnv::new();
    let (status, _) = post_reload(&env, Some(TEST_TOKEN)).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn admin_pricing_shows_decimal_prices() {
    let env = TestEnv::new();
    let (status, body) = env
        .send(Method::GET, "/admin/pricing", None, Some(TEST_TOKEN))
        .await;
    assert_eq!(status, StatusCode::OK, "body: {body}");
    let view: PricingView = serde_json::from_value(body).unwrap();
    let gpt_4o = &view.models["gpt-4o"].prices;
    assert_eq!(
        (gpt_4o.input.as_str(), gpt_4o.cached_input.as_str()),
        ("2.50", "1.25")
    );
}

#[tokio::test]
async fn admin_pricing_shows_checked() {
    let env = TestEnv::new();
    let (_, body) = env
        .send(Method::GET, "/admin/pricing", None, Some(TEST_TOKEN))
        .await;
    assert_eq!(body["checked"].as_str(), Some(shipped_pricing().checked()));
}

#[tokio::test]
async fn admin_pricing_shows_tiers() {
    let env = TestEnv::new();
    let (_, body) = env
        .send(Method::GET, "/admin/pricing", None, Some(TEST_TOKEN))
        .await;
    let tier = &body["models"]["claude-sonnet-4-5"]["tiers"][0];
    assert_eq!(
        (tier["above_prompt_tokens"].as_u64(), tier["input"].as_str()),
        (Some(200_000), Some("6.00"))
    );
}

#[tokio::test]
async fn admin_pricing_without_token_is_unauthorized() {
    let env = TestEnv::new();
    let (status, _) = env.send(Method::GET, "/admin/pricing", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

// The file watcher, in this process.

#[tokio::test]
async fn watcher_reloads_a_changed_file() {
    let file = pricing_file();
    let pricing = SharedPricing::load(file.path()).unwrap();
    let watcher = tokio::spawn(watch_pricing_file(pricing.clone(), TEST_POLL_INTERVAL));
    write_pricing_file(
        file.path(),
        &pricing_text("2026-02-02", "5.00"),
        second_write_time(),
    );
    wait_for_checked(&pricing, "2026-02-02", RELOAD_DEADLINE).await;
    watcher.abort();
}

#[tokio::test]
async fn watcher_keeps_old_prices_for_a_broken_file() {
    let file = pricing_file();
    let pricing = SharedPricing::load(file.path()).unwrap();
    write_pricing_file(file.path(), BROKEN_PRICING, second_write_time());
    let result = pricing.reload_if_changed().await;
    assert!(
        matches!(result, Some(Err(_))),
        "expected a failed reload, got {result:?}"
    );
    assert_eq!(pricing.current().checked(), "2026-01-01");
}

#[tokio::test]
async fn watcher_reloads_a_fixed_file() {
    let file = pricing_file();
    let pricing = SharedPricing::load(file.path()).unwrap();
    write_pricing_file(file.path(), BROKEN_PRICING, second_write_time());
    let _ = pricing.reload_if_changed().await;
    write_pricing_file(
        file.path(),
        &pricing_text("2026-04-04", "5.00"),
        second_write_time() + Duration::from_secs(60),
    );
    let result = pricing.reload_if_changed().await;
    assert!(matches!(result, Some(Ok(_))), "got {result:?}");
}

#[tokio::test]
async fn unchanged_file_is_not_reloaded() {
    let file = pricing_file();
    let pricing = SharedPricing::load(file.path()).unwrap();
    assert!(pricing.reload_if_changed().await.is_none());
}

#[tokio::test]
async fn broken_file_is_reported_once() {
    let file = pricing_file();
    let pricing = SharedPricing::load(file.path()).unwrap();
    write_pricing_file(file.path(), BROKEN_PRICING, second_write_time());
    let _ = pricing.reload_if_changed().await;
    assert!(pricing.reload_if_changed().await.is_none());
}

// The built binary.

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Starts the binary with the admin token and the pricing file at `path`.
async fn start_sidecar(redis: &RedisServer, path: &Path) -> SidecarProcess {
    let env = [
        ("SPENDFUSE_ADMIN_TOKEN", TEST_TOKEN.to_string()),
        ("SPENDFUSE_PRICING", path.display().to_string()),
    ];
    SidecarProcess::start(&redis.url(), &env).await
}

/// Returns `checked` of the pricing that the binary serves.
async fn served_checked(sidecar: &SidecarProcess) -> String {
    let view: PricingView = http_client()
        .get(format!("{}/admin/pricing", sidecar.url()))
        .bearer_auth(TEST_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    view.checked
}

/// Waits until the binary serves the pricing checked on `checked`, or fails after `deadline`.
async fn wait_for_served_checked(sidecar: &SidecarProcess, checked: &str, deadline: Duration) {
    let start = Instant::now();
    let mut served = String::new();
    while start.elapsed() < deadline {
        served = served_checked(sidecar).await;
        if served == checked {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the sidecar did not reload within {deadline:?}: it still serves checked = {served}");
}

fn send_signal(sidecar: &SidecarProcess, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(sidecar.pid()).unwrap());
    kill(pid, signal).unwrap();
}

#[tokio::test]
async fn sighup_reloads_the_binary_pricing() {
    let redis = RedisServer::start();
    let file = pricing_file();
    let sidecar = start_sidecar(&redis, file.path()).await;
    // Same length and modification time as before, so that only SIGHUP can cause the reload.
    let unchanged_time = modified_time(file.path());
    write_pricing_file(
        file.path(),
        &pricing_text("2026-02-02", "5.00"),
        unchanged_time,
    );
    send_signal(&sidecar, Signal::SIGHUP);
    wait_for_served_checked(&sidecar, "2026-02-02", RELOAD_DEADLINE).await;
}

#[tokio::test]
async fn sighup_with_a_broken_file_keeps_serving() {
    let redis = RedisServer::start();
    let file = pricing_file();
    let mut sidecar = start_sidecar(&redis, file.path()).await;
    write_pricing_file(file.path(), BROKEN_PRICING, modified_time(file.path()));
    send_signal(&sidecar, Signal::SIGHUP);
    // A process that SIGHUP ended would exit within this wait.
    let exit = sidecar.wait_for_exit(Duration::from_millis(500)).await;
    assert_eq!(exit, None, "the sidecar exited after SIGHUP");
    assert_eq!(served_checked(&sidecar).await, "2026-01-01");
}

#[tokio::test]
async fn binary_reloads_a_changed_file() {
    let redis = RedisServer::start();
    let file = pricing_file();
    let sidecar = start_sidecar(&redis, file.path()).await;
    write_pricing_file(
        file.path(),
        &pricing_text("2026-02-02", "5.00"),
        second_write_time(),
    );
    wait_for_served_checked(&sidecar, "2026-02-02", POLL_DEADLINE).await;
}
