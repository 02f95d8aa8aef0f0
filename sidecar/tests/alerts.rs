//! Spend alerts against a real redis-server and a webhook receiver on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use common::{reserve_request, send, settle_request, shipped_pricing, RedisServer, TEST_TOKEN};
use spendfuse_protocol::ReserveResponse;
use spendfuse_sidecar::admin::AdminToken;
use spendfuse_sidecar::alerts::{Alert, Alerts, RetryPolicy};
use spendfuse_sidecar::reload::SharedPricing;
use spendfuse_sidecar::store::{BudgetId, BudgetName, Store};
use spendfuse_sidecar::window::WindowKind;
use spendfuse_sidecar::{router, AppState};

/// Cost of one request: 100 prompt tokens and 100 output tokens of gpt-4o, in nano-dollars.
const REQUEST_NANO: u64 = 100 * 2_500 + 100 * 10_000;

/// Fast retries, so that the tests finish quickly.
const RETRY: RetryPolicy = RetryPolicy {
    attempts: 4,
    first_delay: Duration::from_millis(50),
    max_delay: Duration::from_millis(200),
};

/// A webhook receiver on 127.0.0.1 that records every POST and fails the first ones.
#[derive(Clone, Default)]
struct Receiver {
    attempts: Arc<AtomicU32>,
    failures_left: Arc<AtomicU32>,
    delivered: Arc<Mutex<Vec<Alert>>>,
    delay: Duration,
}

async fn receive(State(receiver): State<Receiver>, Json(alert): Json<Alert>) -> StatusCode {
    receiver.attempts.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(receiver.delay).await;
    let failing = receiver
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok();
    if failing {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    receiver.delivered.lock().unwrap().push(alert);
    StatusCode::NO_CONTENT
}

/// Starts `receiver` on a free loopback port and returns its URL.
async fn serve(receiver: Receiver) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(receiver);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/hook")
}

fn app(store: &Store, alerts: Alerts) -> Router {
    router(AppState {
        store: store.clone(),
        pricing: SharedPricing::new(shipped_pricing()),
        admin_token: AdminToken::new(TEST_TOKEN),
        metrics: Default::default(),
        alerts,
    })
}

/// Reserves and settles one request of [`REQUEST_NANO`] on budget `team` and returns how
/// long the settle call took.
async fn spend_one_request(app: &Router) -> Duration {
    let body = serde_json::to_value(reserve_request("team", "gpt-4o", 100, 100, 100)).unwrap();
    let (_, reply) = send(app, Method::POST, "/v1/reserve", Some(body), None).await;
    let ReserveResponse::Granted(grant) = serde_json::from_value(reply).unwrap() else {
        panic!("expected a grant");
    };
    let settle = settle_request("team", "gpt-4o", &grant.reservation_id, 100, 0, 100);
    let body = serde_json::to_value(&settle).unwrap();
    let started = Instant::now();
    let (status, reply) = send(app, Method::POST, "/v1/settle", Some(body), None).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    started.elapsed()
}

/// Waits up to 5 s until `count` alerts were delivered, then returns them.
async fn delivered(receiver: &Receiver, count: usize) -> Vec<Alert> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && receiver.delivered.lock().unwrap().len() < count {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    receiver.delivered.lock().unwrap().clone()
}

async fn team_budget(store: &Store) {
    store
        .set_limit(&BudgetName::parse("team").unwrap(), 10 * REQUEST_NANO)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_fire_once_per_window() {
    let redis = RedisServer::start();
    let store = Store::open(&redis.url()).unwrap();
    let receiver = Receiver::default();
    let url = serve(receiver.clone()).await;
    let alerts = Alerts::new(&[50, 80, 100], Some(&url), RETRY).unwrap();
    let app = app(&store, alerts);
    team_budget(&store).await;

    for _ in 0..10 {
        spend_one_request(&app).await;
    }
    let mut alerts = delivered(&receiver, 3).await;
    // Give a wrongly repeated alert time to arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.attempts.load(Ordering::SeqCst), 3);
    alerts.sort_by_key(|alert| alert.threshold_percent);
    let fired: Vec<(u64, u64)> = alerts
        .iter()
        .map(|alert| (alert.threshold_percent, alert.spent_nano_usd))
        .collect();
    assert_eq!(
        fired,
        vec![
            (50, 5 * REQUEST_NANO),
            (80, 8 * REQUEST_NANO),
            (100, 10 * REQUEST_NANO)
        ]
    );
    assert!(alerts.iter().all(|alert| alert.budget == "team"));
    assert!(alerts
        .iter()
        .all(|alert| alert.window == WindowKind::Lifetime));
    assert!(alerts
        .iter()
        .all(|alert| alert.limit_nano_usd == 10 * REQUEST_NANO));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_receiver_is_retried_without_blocking() {
    let redis = RedisServer::start();
    let store = Store::open(&redis.url()).unwrap();
    let receiver = Receiver {
        delay: Duration::from_millis(300),
        ..Receiver::default()
    };
    receiver.failures_left.store(2, Ordering::SeqCst);
    let url = serve(receiver.clone()).await;
    let alerts = Alerts::new(&[50], Some(&url), RETRY).unwrap();
    let app = app(&store, alerts);
    team_budget(&store).await;

    for _ in 0..4 {
        spend_one_request(&app).await;
    }
    // This settle crosses 50 percent while the receiver takes 300 ms and fails twice.
    let took = spend_one_request(&app).await;
    assert!(took < Duration::from_millis(250), "settle took {took:?}");

    let alerts = delivered(&receiver, 1).await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(receiver.attempts.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_window_fires_again() {
    let redis = RedisServer::start();
    let store = Store::open(&redis.url()).unwrap();
    let receiver = Receiver::default();
    let url = serve(receiver.clone()).await;
    let alerts = Alerts::new(&[50], Some(&url), RETRY).unwrap();
    let app = app(&store, alerts);
    team_budget(&store).await;

    for _ in 0..5 {
        spend_one_request(&app).await;
    }
    assert_eq!(delivered(&receiver, 1).await.len(), 1);
    let id = BudgetId::single(BudgetName::parse("team").unwrap());
    store.reset_window(&id, WindowKind::Lifetime).await.unwrap();
    for _ in 0..5 {
        spend_one_request(&app).await;
    }
    assert_eq!(delivered(&receiver, 2).await.len(), 2);
}
