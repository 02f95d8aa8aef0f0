//! Budget hierarchies and windows on a real redis-server and on a real three-master Redis
//! Cluster: every check runs on both, unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{Method, StatusCode};
use axum::Router;
use common::{app_for, reserve_request, send, settle_request, RedisCluster, RedisServer};
use serde_json::{json, Value};
use spendfuse_protocol::{LoopCheck, ReserveRequest, ReserveResponse};
use spendfuse_sidecar::connection::RedisTarget;
use spendfuse_sidecar::store::{BudgetId, BudgetName, Store, StoreOptions};
use spendfuse_sidecar::window::WindowKind;

/// Cost of one request: 100 prompt tokens and 100 output tokens of gpt-4o, in nano-dollars.
const REQUEST_NANO: u64 = 100 * 2_500 + 100 * 10_000;

/// Formats nano-dollars as the decimal USD string the admin API takes.
fn usd(nano: u64) -> String {
    format!("{}.{:09}", nano / 1_000_000_000, nano % 1_000_000_000)
}

/// Creates or replaces budget `name` under `root` with `windows` (kind to nano-dollars).
async fn put_budget(app: &Router, name: &str, root: &str, windows: &[(&str, u64)], shadow: bool) {
    let windows: serde_json::Map<String, Value> = windows
        .iter()
        .map(|(kind, nano)| (kind.to_string(), json!(usd(*nano))))
        .collect();
    let body = json!({ "root": root, "windows": windows, "shadow": shadow });
    let path = format!("/admin/budgets/{name}");
    let (status, reply) = send(
        app,
        Method::PUT,
        &path,
        Some(body),
        Some(common::TEST_TOKEN),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "PUT {path} answered {status}: {reply}"
    );
}

/// Builds a reserve of [`REQUEST_NANO`] for `key` inside `parents`.
fn scoped_request(key: &str, parents: &[&str]) -> ReserveRequest {
    let mut request = reserve_request(key, "gpt-4o", 100, 100, 100);
    request.parents = parents.iter().map(|p| p.to_string()).collect();
    request
}

async fn reserve(app: &Router, request: &ReserveRequest) -> ReserveResponse {
    let body = serde_json::to_value(request).unwrap();
    let (status, reply) = send(app, Method::POST, "/v1/reserve", Some(body), None).await;
    assert_eq!(status, StatusCode::OK, "reserve answered {status}: {reply}");
    serde_json::from_value(reply).unwrap()
}

fn id(name: &str, root: &str) -> BudgetId {
    BudgetId {
        root: BudgetName::parse(root).unwrap(),
        name: BudgetName::parse(name).unwrap(),
    }
}

/// Returns spent + reserved of `window` of budget `name` under `root`.
async fn used(store: &Store, name: &str, root: &str, window: WindowKind) -> u64 {
    let state = store.budget_of(&id(name, root)).await.unwrap().unwrap();
    let window = state.window(window).unwrap();
    window.spent_nano + window.reserved_nano
}

async fn org_budget_caps_both_teams(store: &Store) {
    let app = app_for(store);
    put_budget(&app, "org", "org", &[("lifetime", 3 * REQUEST_NANO)], false).await;
    put_budget(
        &app,
        "team-a",
        "org",
        &[("lifetime", 10 * REQUEST_NANO)],
        false,
    )
    .await;
    put_budget(
        &app,
        "team-b",
        "org",
        &[("lifetime", 10 * REQUEST_NANO)],
        false,
    )
    .await;

    let mut granted = 0;
    let mut denials = Vec::new();
    for i in 0..5 {
        let team = if i % 2 == 0 { "team-a" } else { "team-b" };
        match reserve(&app, &scoped_request(&format!("key-{i}"), &[team, "org"])).await {
            ReserveResponse::Granted(_) => granted += 1,
            ReserveResponse::Denied(denial) => denials.push(denial),
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(granted, 3);
    assert_eq!(denials.len(), 2);
    assert_eq!(denials[0].budget, "org");
    assert_eq!(denials[0].window.as_deref(), Some("lifetime"));
    // All or none: the denied requests held nothing in the teams.
    let team_a = used(store, "team-a", "org", WindowKind::Lifetime).await;
    let team_b = used(store, "team-b", "org", WindowKind::Lifetime).await;
    assert_eq!(team_a + team_b, 3 * REQUEST_NANO);
}

async fn denial_names_the_tight_scope_and_window(store: &Store) {
    let app = app_for(store);
    put_budget(&app, "org", "org", &[("month", 100 * REQUEST_NANO)], false).await;
    let team_windows = [("minute", REQUEST_NANO), ("month", 50 * REQUEST_NANO)];
    put_budget(&app, "team-a", "org", &team_windows, false).await;

    let first = reserve(&app, &scoped_request("key", &["team-a", "org"])).await;
    assert!(matches!(first, ReserveResponse::Granted(_)), "{first:?}");
    let second = reserve(&app, &scoped_request("key", &["team-a", "org"])).await;
    let ReserveResponse::Denied(denial) = second else {
        panic!("expected a denial, got {second:?}");
    };
    assert_eq!(denial.budget, "team-a");
    assert_eq!(denial.window.as_deref(), Some("minute"));
    assert_eq!(
        used(store, "org", "org", WindowKind::Month).await,
        REQUEST_NANO
    );
}

async fn settle_charges_every_window(store: &Store) {
    let app = app_for(store);
    put_budget(&app, "org", "org", &[("day", 10 * REQUEST_NANO)], false).await;
    let windows = [("hour", 10 * REQUEST_NANO), ("lifetime", 10 * REQUEST_NANO)];
    put_budget(&app, "team-a", "org", &windows, false).await;
    let ReserveResponse::Granted(grant) =
        reserve(&app, &scoped_request("key", &["team-a", "org"])).await
    else {
        panic!("expected a grant");
    };
    let mut settle = settle_request("key", "gpt-4o", &grant.reservation_id, 40, 0, 10);
    settle.parents = vec!["team-a".into(), "org".into()];
    let body = serde_json::to_value(&settle).unwrap();
    let (status, reply) = send(&app, Method::POST, "/v1/settle", Some(body), None).await;
    assert_eq!(status, StatusCode::OK, "settle answered {status}: {reply}");
    let cost = 40 * 2_500 + 10 * 10_000;
    assert_eq!(reply["charged_nano_usd"], cost);
    for (name, window) in [
        ("org", WindowKind::Day),
        ("team-a", WindowKind::Hour),
        ("team-a", WindowKind::Lifetime),
    ] {
        let state = store.budget_of(&id(name, "org")).await.unwrap().unwrap();
        let window_state = state.window(window).unwrap();
        assert_eq!(window_state.spent_nano, cost, "{name} {window}");
        assert_eq!(window_state.reserved_nano, 0, "{name} {window}");
    }
}

async fn settle_after_delete_charges_nothing(store: &Store) {
    let app = app_for(store);
    put_budget(&app, "org", "org", &[("month", 10 * REQUEST_NANO)], false).await;
    let ReserveResponse::Granted(grant) = reserve(&app, &scoped_request("key", &["org"])).await
    else {
        panic!("expected a grant");
    };
    store.delete_budget(&id("org", "org")).await.unwrap();

    let mut settle = settle_request("key", "gpt-4o", &grant.reservation_id, 100, 0, 100);
    settle.parents = vec!["org".into()];
    let body = serde_json::to_value(&settle).unwrap();
    let (status, reply) = send(&app, Method::POST, "/v1/settle", Some(body), None).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["charged_nano_usd"], 0);
    assert_eq!(reply["released_nano_usd"], REQUEST_NANO);
}

async fn absent_level_makes_the_nearest_scope_root(store: &Store) {
    let app = app_for(store);
    // Requests without an org level have team-a as their root.
    put_budget(
        &app,
        "team-a",
        "team-a",
        &[("lifetime", REQUEST_NANO)],
        false,
    )
    .await;
    let first = reserve(&app, &scoped_request("key", &["team-a"])).await;
    assert!(matches!(first, ReserveResponse::Granted(_)), "{first:?}");
    let second = reserve(&app, &scoped_request("other-key", &["team-a"])).await;
    assert!(
        matches!(&second, ReserveResponse::Denied(denial) if denial.budget == "team-a"),
        "{second:?}"
    );
    // Without any budget on its scopes, a request is denied as unknown.
    let unknown = reserve(&app, &scoped_request("key", &["team-z", "org-z"])).await;
    assert!(
        matches!(&unknown, ReserveResponse::Denied(denial) if denial.unknown_budget),
        "{unknown:?}"
    );
}

async fn shadow_budget_lets_requests_through(store: &Store) {
    let app = app_for(store);
    put_budget(&app, "org", "org", &[("month", REQUEST_NANO / 2)], true).await;
    put_budget(
        &app,
        "team-a",
        "org",
        &[("month", 10 * REQUEST_NANO)],
        false,
    )
    .await;
    let outcome = reserve(&app, &scoped_request("key", &["team-a", "org"])).await;
    let ReserveResponse::Granted(grant) = outcome else {
        panic!("expected a grant, got {outcome:?}");
    };
    assert_eq!(grant.shadow_budget.as_deref(), Some("org"));
    assert_eq!(grant.output_tokens, 100);
    let text = metrics_text(&app).await;
    assert!(text.contains("spendfuse_shadow_denied_total 1\n"), "{text}");
}

async fn metrics_text(app: &Router) -> String {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let request = axum::http::Request::get("/metrics")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn loop_check_stops_the_next_identical_body(store: &Store) {
    let app = app_for(store);
    put_budget(&app, "org", "org", &[("month", 100 * REQUEST_NANO)], false).await;
    let check = |hash: &str| LoopCheck {
        body_sha256: hash.repeat(64),
        max_repeats: 3,
        window_ms: 60_000,
    };

    let mut request = scoped_request("key", &["org"]);
    request.loop_check = Some(check("a"));
    for attempt in 1..=3 {
        let outcome = reserve(&app, &request).await;
        assert!(
            matches!(outcome, ReserveResponse::Granted(_)),
            "attempt {attempt}: {outcome:?}"
        );
    }
    let fourth = reserve(&app, &request).await;
    assert!(
        matches!(&fourth, ReserveResponse::LoopDetected(denial) if denial.max_repeats == 3),
        "{fourth:?}"
    );
    assert_eq!(
        used(store, "org", "org", WindowKind::Month).await,
        3 * REQUEST_NANO
    );

    // Another body from the same key is not a repeat.
    request.loop_check = Some(check("b"));
    let other_body = reserve(&app, &request).await;
    assert!(
        matches!(other_body, ReserveResponse::Granted(_)),
        "{other_body:?}"
    );
}

async fn concurrent_reserves_never_pass_a_limit(store: &Store) {
    const REQUESTS: usize = 200;
    const AFFORDABLE: u64 = 37;
    let app = app_for(store);
    put_budget(
        &app,
        "org",
        "org",
        &[("month", AFFORDABLE * REQUEST_NANO)],
        false,
    )
    .await;
    for team in ["team-a", "team-b"] {
        let windows = [
            ("minute", 150 * REQUEST_NANO),
            ("lifetime", 150 * REQUEST_NANO),
        ];
        put_budget(&app, team, "org", &windows, false).await;
    }

    let running = Arc::new(AtomicBool::new(true));
    let sampler = {
        let store = store.clone();
        let running = running.clone();
        tokio::spawn(async move {
            let mut samples = 0;
            while running.load(Ordering::Relaxed) && samples < 10_000 {
                for name in ["org", "team-a", "team-b"] {
                    let state = store.budget_of(&id(name, "org")).await.unwrap().unwrap();
                    for window in &state.windows {
                        assert!(
                            window.spent_nano + window.reserved_nano <= window.limit_nano,
                            "{name} {} holds {} + {} above {}",
                            window.kind,
                            window.spent_nano,
                            window.reserved_nano,
                            window.limit_nano
                        );
                    }
                }
                samples += 1;
            }
            samples
        })
    };
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let app = app.clone();
            let team = if i % 2 == 0 { "team-a" } else { "team-b" };
            let request = scoped_request(&format!("key-{}", i % 10), &[team, "org"]);
            tokio::spawn(async move { reserve(&app, &request).await })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), ReserveResponse::Granted(_)) {
            granted += 1;
        }
    }
    running.store(false, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    assert_eq!(granted, AFFORDABLE);
    assert!(samples > 0, "the sampler never read Redis");
    assert_eq!(
        used(store, "org", "org", WindowKind::Month).await,
        AFFORDABLE * REQUEST_NANO
    );
}

async fn admin_manages_budgets_and_windows(store: &Store) {
    let app = app_for(store);
    let token = Some(common::TEST_TOKEN);
    let body = json!({ "root": "org", "windows": { "month": "500", "minute": "5" } });
    let (status, view) = send(
        &app,
        Method::PUT,
        "/admin/budgets/team-a",
        Some(body),
        token,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["root"], "org");
    assert_eq!(view["windows"][0]["window"], "minute");
    assert_eq!(view["windows"][1]["limit_usd"], "500.000000000");

    let outcome = reserve(&app, &scoped_request("key", &["team-a", "org"])).await;
    let ReserveResponse::Granted(grant) = outcome else {
        panic!("expected a grant, got {outcome:?}");
    };
    let mut settle = settle_request("key", "gpt-4o", &grant.reservation_id, 100, 0, 100);
    settle.parents = vec!["team-a".into(), "org".into()];
    let body = serde_json::to_value(&settle).unwrap();
    send(&app, Method::POST, "/v1/settle", Some(body), None).await;

    let (status, list) = send(&app, Method::GET, "/admin/budgets", None, token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["budgets"][0]["name"], "team-a");
    assert_eq!(
        list["budgets"][0]["windows"][1]["spent_nano_usd"],
        REQUEST_NANO
    );

    let reset_path = "/admin/budgets/team-a/windows/month/reset?root=org";
    let (status, view) = send(&app, Method::POST, reset_path, None, token).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["windows"][1]["spent_nano_usd"], 0);
    assert_eq!(view["windows"][0]["spent_nano_usd"], REQUEST_NANO);

    let bad_path = "/admin/budgets/team-a/windows/fortnight/reset?root=org";
    let (status, _) = send(&app, Method::POST, bad_path, None, token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let missing_path = "/admin/budgets/team-a/windows/day/reset?root=org";
    let (status, _) = send(&app, Method::POST, missing_path, None, token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let body = json!({ "root": "org", "shadow": true });
    let (status, view) = send(
        &app,
        Method::PUT,
        "/admin/budgets/team-a",
        Some(body),
        token,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["shadow"], true);
    assert_eq!(view["windows"].as_array().map(Vec::len), Some(2));

    let path = "/admin/budgets/team-a?root=org";
    let (status, deleted) = send(&app, Method::DELETE, path, None, token).await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["name"], "team-a");
    let (status, _) = send(&app, Method::GET, path, None, token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = send(&app, Method::GET, "/admin/budgets", None, token).await;
    assert_eq!(list, json!({ "budgets": [] }));
}

/// Places the store's clock `before_ms` before the next minute boundary that is at least
/// `before_ms` away.
fn options_near_minute_boundary(before_ms: i64) -> StoreOptions {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let boundary = (now_ms / 60_000 + 1) * 60_000;
    let mut shift = boundary - before_ms - now_ms;
    if shift < 0 {
        shift += 60_000;
    }
    StoreOptions {
        utc_offset_minutes: 0,
        clock_shift_ms: shift,
    }
}

async fn late_settle_stays_in_its_window(store: &Store) {
    let app = app_for(store);
    // One request fits a minute, with half a request to spare.
    put_budget(
        &app,
        "key",
        "key",
        &[("minute", REQUEST_NANO * 3 / 2)],
        false,
    )
    .await;
    let outcome = reserve(&app, &scoped_request("key", &[])).await;
    let ReserveResponse::Granted(grant) = outcome else {
        panic!("expected a grant, got {outcome:?}");
    };
    let before = store
        .budget(&BudgetName::parse("key").unwrap())
        .await
        .unwrap()
        .unwrap();
    let first_period = before.window(WindowKind::Minute).unwrap().start_ms;

    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let after = store
        .budget(&BudgetName::parse("key").unwrap())
        .await
        .unwrap()
        .unwrap();
    let window = after.window(WindowKind::Minute).unwrap().clone();
    assert_eq!(
        window.start_ms,
        first_period + 60_000,
        "the minute did not turn"
    );
    assert_eq!(window.spent_nano + window.reserved_nano, 0);

    // The settle charges the full request to the first minute, which has room for it.
    let settle = settle_request("key", "gpt-4o", &grant.reservation_id, 100, 0, 100);
    let body = serde_json::to_value(&settle).unwrap();
    let (status, reply) = send(&app, Method::POST, "/v1/settle", Some(body), None).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["charged_nano_usd"], REQUEST_NANO);
    // Had it landed in the new minute, this reserve would not fit.
    let next = reserve(&app, &scoped_request("key", &[])).await;
    assert!(matches!(next, ReserveResponse::Granted(_)), "{next:?}");
}

/// Returns options whose clock reads `target_ms` (UTC ms) now, with window boundaries at
/// `utc_offset_minutes`.
fn options_at(target_ms: i64, utc_offset_minutes: i32) -> StoreOptions {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    StoreOptions {
        utc_offset_minutes,
        clock_shift_ms: target_ms - now_ms,
    }
}

/// Returns the (start, end) of each window of a budget with every window kind.
async fn periods(store: &Store) -> Vec<(WindowKind, u64, Option<u64>)> {
    let app = app_for(store);
    let windows: Vec<(&str, u64)> = WindowKind::ALL.iter().map(|k| (k.as_str(), 1)).collect();
    put_budget(&app, "key", "key", &windows, false).await;
    let state = store
        .budget(&BudgetName::parse("key").unwrap())
        .await
        .unwrap()
        .unwrap();
    state
        .windows
        .iter()
        .map(|w| (w.kind, w.start_ms, w.end_ms))
        .collect()
}

async fn periods_on_a_leap_day_in_utc(store: &Store) {
    // The clock reads 2024-02-29T12:00:00Z, a Thursday.
    assert_eq!(
        periods(store).await,
        vec![
            (
                WindowKind::Minute,
                1_709_208_000_000,
                Some(1_709_208_060_000)
            ),
            (WindowKind::Hour, 1_709_208_000_000, Some(1_709_211_600_000)),
            (WindowKind::Day, 1_709_164_800_000, Some(1_709_251_200_000)),
            (WindowKind::Week, 1_708_905_600_000, Some(1_709_510_400_000)),
            (
                WindowKind::Month,
                1_706_745_600_000,
                Some(1_709_251_200_000)
            ),
            (WindowKind::Lifetime, 0, None),
        ]
    );
}

async fn periods_at_new_year_in_utc_plus_one(store: &Store) {
    // The clock reads 2025-12-31T23:30:00Z, which is 2026-01-01T00:30 at UTC+01:00.
    let local_midnight = 1_767_222_000_000;
    assert_eq!(
        periods(store).await,
        vec![
            (
                WindowKind::Minute,
                1_767_223_800_000,
                Some(1_767_223_860_000)
            ),
            (WindowKind::Hour, local_midnight, Some(1_767_225_600_000)),
            (WindowKind::Day, local_midnight, Some(1_767_308_400_000)),
            (WindowKind::Week, 1_766_962_800_000, Some(1_767_567_600_000)),
            (WindowKind::Month, local_midnight, Some(1_769_900_400_000)),
            (WindowKind::Lifetime, 0, None),
        ]
    );
}

/// Runs each check on a single redis-server and on a three-master cluster.
macro_rules! on_single_and_cluster {
    ($($check:ident => $options:expr),* $(,)?) => {
        mod single {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let redis = RedisServer::start();
                    let target = RedisTarget::Single(redis.url());
                    let store = Store::connect(&target, $options).unwrap();
                    super::$check(&store).await;
                }
            )*
        }
        mod cluster {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let cluster = RedisCluster::start();
                    let target = RedisTarget::Cluster(cluster.urls());
                    let store = Store::connect(&target, $options).unwrap();
                    super::$check(&store).await;
                }
            )*
        }
    };
}

on_single_and_cluster! {
    org_budget_caps_both_teams => StoreOptions::default(),
    denial_names_the_tight_scope_and_window => StoreOptions::default(),
    settle_charges_every_window => StoreOptions::default(),
    settle_after_delete_charges_nothing => StoreOptions::default(),
    absent_level_makes_the_nearest_scope_root => StoreOptions::default(),
    shadow_budget_lets_requests_through => StoreOptions::default(),
    loop_check_stops_the_next_identical_body => StoreOptions::default(),
    concurrent_reserves_never_pass_a_limit => StoreOptions::default(),
    admin_manages_budgets_and_windows => StoreOptions::default(),
    late_settle_stays_in_its_window => options_near_minute_boundary(1_000),
    periods_on_a_leap_day_in_utc => options_at(1_709_208_000_000, 0),
    periods_at_new_year_in_utc_plus_one => options_at(1_767_223_800_000, 60),
}
