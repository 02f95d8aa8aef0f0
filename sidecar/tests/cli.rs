//! The `budgets` subcommands of the built binary against a real redis-server and a real
//! three-master cluster.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::{Command, Output};

use common::{RedisCluster, RedisServer};
use serde_json::Value;

/// Runs `spendfuse-sidecar` with `redis` options and `args`, with no SPENDFUSE_ variables from
/// the environment.
fn sidecar(redis: &[String], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spendfuse-sidecar"));
    for (name, _) in std::env::vars() {
        if name.starts_with("SPENDFUSE_") {
            command.env_remove(name);
        }
    }
    command.args(redis).args(args).output().unwrap()
}

/// Runs a command that must succeed and returns its JSON output.
fn json(redis: &[String], args: &[&str]) -> Value {
    let output = sidecar(redis, args);
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn single(redis: &RedisServer) -> Vec<String> {
    vec!["--redis-url".into(), redis.url()]
}

#[test]
fn put_get_list_reset_delete() {
    let redis = RedisServer::start();
    let options = single(&redis);
    let put = [
        "budgets",
        "put",
        "team:search",
        "--root",
        "acme",
        "--window",
        "month=500",
        "--window",
        "minute=5",
    ];
    let created = json(&options, &put);
    assert_eq!(created["root"], "acme");
    assert_eq!(created["windows"][0]["window"], "minute");
    assert_eq!(created["windows"][1]["limit_usd"], "500.000000000");

    let shadow = [
        "budgets",
        "put",
        "team:search",
        "--root",
        "acme",
        "--shadow",
        "true",
    ];
    let switched = json(&options, &shadow);
    assert_eq!(switched["shadow"], true);
    assert_eq!(switched["windows"].as_array().map(Vec::len), Some(2));

    let read = json(
        &options,
        &["budgets", "get", "team:search", "--root", "acme"],
    );
    assert_eq!(read, switched);

    let list = json(&options, &["budgets", "list"]);
    assert_eq!(list["budgets"][0]["name"], "team:search");

    let reset = ["budgets", "reset", "team:search", "month", "--root", "acme"];
    let after_reset = json(&options, &reset);
    assert_eq!(after_reset["windows"][1]["spent_nano_usd"], 0);

    let deleted = json(
        &options,
        &["budgets", "delete", "team:search", "--root", "acme"],
    );
    assert_eq!(deleted["name"], "team:search");
    let missing = sidecar(
        &options,
        &["budgets", "get", "team:search", "--root", "acme"],
    );
    assert!(!missing.status.success());
    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(message.contains("not found"), "stderr: {message}");
}

#[test]
fn invalid_window_fails_with_message() {
    let redis = RedisServer::start();
    let options = single(&redis);
    let output = sidecar(
        &options,
        &["budgets", "put", "k", "--window", "fortnight=1"],
    );
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("invalid window \"fortnight\""),
        "stderr: {message}"
    );
    let list = json(&options, &["budgets", "list"]);
    assert_eq!(list["budgets"], Value::Array(Vec::new()));
}

#[test]
fn put_without_limits_fails() {
    let redis = RedisServer::start();
    let output = sidecar(
        &single(&redis),
        &["budgets", "put", "k", "--shadow", "true"],
    );
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("needs at least one window"),
        "stderr: {message}"
    );
}

#[test]
fn unreachable_redis_fails() {
    let port = common::free_port();
    let options = vec![
        "--redis-url".to_string(),
        format!("redis://127.0.0.1:{port}"),
    ];
    let output = sidecar(&options, &["budgets", "list"]);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
}

#[test]
fn cluster_urls_reach_the_cluster() {
    let cluster = RedisCluster::start();
    let options = vec!["--redis-cluster-urls".to_string(), cluster.urls().join(",")];
    for org in ["org-a", "org-b", "org-c", "org-d"] {
        let put = ["budgets", "put", "team", "--root", org, "--window", "day=1"];
        let created = json(&options, &put);
        assert_eq!(created["root"], org);
    }
    let list = json(&options, &["budgets", "list"]);
    assert_eq!(list["budgets"].as_array().map(Vec::len), Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_api_reaches_the_cluster() {
    let cluster = RedisCluster::start();
    let urls = cluster.urls().join(",");
    let options = vec!["--redis-cluster-urls".to_string(), urls.clone()];
    let put = [
        "budgets", "put", "team", "--root", "org", "--window", "month=1",
    ];
    json(&options, &put);
    let org = ["budgets", "put", "org", "--window", "month=1"];
    json(&options, &org);

    // The served API gets the cluster from its environment variable.
    let env = [("SPENDFUSE_REDIS_CLUSTER_URLS", urls)];
    let sidecar = common::SidecarProcess::start("redis://127.0.0.1:1", &env).await;
    let mut request = common::reserve_request("key", "gpt-4o", 100, 100, 100);
    request.parents = vec!["team".into(), "org".into()];
    let response = reqwest::Client::new()
        .post(format!("{}/v1/reserve", sidecar.url()))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["outcome"], "granted", "{body}");

    let team = json(&options, &["budgets", "get", "team", "--root", "org"]);
    assert_eq!(team["windows"][0]["reserved_nano_usd"], 1_250_000);
}
