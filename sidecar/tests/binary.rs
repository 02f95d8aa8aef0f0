//! The built spendfuse-sidecar binary over HTTP/1.1 and cleartext HTTP/2 (prior knowledge, as
//! Envoy calls it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::time::Duration;

use common::{reserve_request, settle_request, RedisServer, SidecarProcess, TEST_TOKEN};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::{Client, StatusCode, Version};
use spendfuse_protocol::{ReserveResponse, SettleResponse};
use tempfile::NamedTempFile;

fn http1_client() -> Client {
    Client::builder()
        .http1_only()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn h2c_client() -> Client {
    Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Writes `contents` to a new temporary TOML file, removed on drop.
fn temp_toml(contents: &str) -> NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(contents.as_bytes()).unwrap();
    file
}

/// Starts Redis and the sidecar with the admin token and budget `team` ($1) from a budgets file.
async fn start() -> (RedisServer, SidecarProcess, NamedTempFile) {
    let redis = RedisServer::start();
    let budgets = temp_toml("[budgets.team]\nlimit_usd = \"1.00\"\n");
    let env = [
        ("SPENDFUSE_ADMIN_TOKEN", TEST_TOKEN.to_string()),
        ("SPENDFUSE_BUDGETS", budgets.path().display().to_string()),
    ];
    let sidecar = SidecarProcess::start(&redis.url(), &env).await;
    (redis, sidecar, budgets)
}

#[tokio::test]
async fn healthz_answers_ok() {
    let (_redis, sidecar, _budgets) = start().await;
    let response = http1_client()
        .get(format!("{}/healthz", sidecar.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn readyz_answers_ok_with_redis_up() {
    let (_redis, sidecar, _budgets) = start().await;
    let response = http1_client()
        .get(format!("{}/readyz", sidecar.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn readyz_answers_503_with_redis_down() {
    let (mut redis, sidecar, _budgets) = start().await;
    redis.stop();
    let response = http1_client()
        .get(format!("{}/readyz", sidecar.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn reserve_over_http1_is_granted() {
    let (_redis, sidecar, _budgets) = start().await;
    let response = http1_client()
        .post(format!("{}/v1/reserve", sidecar.url()))
        .json(&reserve_request("team", "gpt-4o", 10, 10, 1))
        .send()
        .await
        .unwrap();
    let answer: ReserveResponse = response.json().await.unwrap();
    assert!(
        matches!(answer, ReserveResponse::Granted(_)),
        "got {answer:?}"
    );
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served_as_http2() {
    let (_redis, sidecar, _budgets) = start().await;
    let response = h2c_client()
        .get(format!("{}/healthz", sidecar.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
}

#[tokio::test]
async fn reserve_and_settle_over_h2c() {
    let (_redis, sidecar, _budgets) = start().await;
    let client = h2c_client();
    let granted: ReserveResponse = client
        .post(format!("{}/v1/reserve", sidecar.url()))
        .json(&reserve_request("team", "gpt-4o", 10, 10, 1))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ReserveResponse::Granted(grant) = granted else {
        panic!("expected a grant, got {granted:?}");
    };
    let settled: SettleResponse = client
        .post(format!("{}/v1/settle", sidecar.url()))
        .json(&settle_request(
            "team",
            "gpt-4o",
            &grant.reservation_id,
            10,
            0,
            5,
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settled.charged_nano_usd, 10 * 2_500 + 5 * 10_000);
}

#[tokio::test]
async fn budgets_file_is_applied_at_start() {
    let (_redis, sidecar, _budgets) = start().await;
    let body: serde_json::Value = http1_client()
        .get(format!("{}/admin/budgets/team", sidecar.url()))
        .bearer_auth(TEST_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["limit_nano_usd"], 1_000_000_000);
}

#[tokio::test]
async fn restart_with_budgets_file_keeps_spend() {
    let (redis, sidecar, budgets) = start().await;
    let client = http1_client();
    let granted: ReserveResponse = client
        .post(format!("{}/v1/reserve", sidecar.url()))
        .json(&reserve_request("team", "gpt-4o", 10, 10, 1))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ReserveResponse::Granted(grant) = granted else {
        panic!("expected a grant, got {granted:?}");
    };
    client
        .post(format!("{}/v1/settle", sidecar.url()))
        .json(&settle_request(
            "team",
            "gpt-4o",
            &grant.reservation_id,
            10,
            0,
            5,
        ))
        .send()
        .await
        .unwrap();
    drop(sidecar);

    let env = [
        ("SPENDFUSE_ADMIN_TOKEN", TEST_TOKEN.to_string()),
        ("SPENDFUSE_BUDGETS", budgets.path().display().to_string()),
    ];
    let restarted = SidecarProcess::start(&redis.url(), &env).await;
    let body: serde_json::Value = client
        .get(format!("{}/admin/budgets/team", restarted.url()))
        .bearer_auth(TEST_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["spent_nano_usd"], 75_000);
}

#[tokio::test]
async fn admin_api_without_token_is_forbidden() {
    let redis = RedisServer::start();
    let sidecar = SidecarProcess::start(&redis.url(), &[]).await;
    let response = http1_client()
        .get(format!("{}/admin/budgets", sidecar.url()))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn sigterm_stops_the_process_cleanly() {
    let (_redis, mut sidecar, _budgets) = start().await;
    let pid = Pid::from_raw(i32::try_from(sidecar.pid()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    assert_eq!(sidecar.wait_for_exit(Duration::from_secs(5)).await, Some(0));
}

#[tokio::test]
async fn sigterm_with_an_open_h2_connection_stops_cleanly() {
    let (_redis, mut sidecar, _budgets) = start().await;
    let client = h2c_client();
    client
        .get(format!("{}/healthz", sidecar.url()))
        .send()
        .await
        .unwrap();
    let pid = Pid::from_raw(i32::try_from(sidecar.pid()).unwrap());
    kill(pid, Signal::SIGTERM).unwrap();
    assert_eq!(sidecar.wait_for_exit(Duration::from_secs(5)).await, Some(0));
}

#[tokio::test]
async fn invalid_pricing_file_fails_at_start() {
    let redis = RedisServer::start();
    let pricing = temp_toml("checked = \"soon\"\n");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_spendfuse-sidecar"));
    command
        .env(
            "SPENDFUSE_LISTEN",
            format!("127.0.0.1:{}", common::free_port()),
        )
        .env("SPENDFUSE_REDIS_URL", redis.url())
        .env("SPENDFUSE_PRICING", pricing.path())
        .env_remove("SPENDFUSE_BUDGETS")
        .env_remove("SPENDFUSE_ADMIN_TOKEN")
        .env_remove("SPENDFUSE_ADMIN_TOKEN_FILE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let status = command.status().unwrap();
    assert_eq!(status.code(), Some(1));
}
