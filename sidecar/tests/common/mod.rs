//! Test harness: a real redis-server per test, the router without a socket, and the built
//! binary.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::Value;
use spendfuse_protocol::{
    Ending, ReserveRequest, ReserveResponse, SettleRequest, SettleResponse, Usage, UsageSource,
};
use spendfuse_sidecar::admin::AdminToken;
use spendfuse_sidecar::pricing::Pricing;
use spendfuse_sidecar::reload::SharedPricing;
use spendfuse_sidecar::store::{BudgetName, BudgetState, Store};
use spendfuse_sidecar::{router, AppState};
use tower::ServiceExt;

/// Admin token of every test environment.
pub const TEST_TOKEN: &str = "test-admin-token-5f1c";

/// Maximum time a started server may take to become ready.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// Returns a loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local address of the probe listener")
        .port()
}

/// Path of a file in the repository, from the sidecar crate's directory.
pub fn repo_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// A redis-server on a free loopback port without persistence, killed on drop.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    /// Starts redis-server and waits until it replies to PING.
    pub fn start() -> Self {
        Self::start_on(free_port(), &["--save", "", "--appendonly", "no"])
    }

    /// Starts redis-server on `port` with the append-only file that the README documents,
    /// in `dir`, and waits until it replies to PING.
    pub fn start_durable(port: u16, dir: &Path) -> Self {
        let dir = dir.to_str().expect("the Redis directory is valid UTF-8");
        let args = [
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--dir",
            dir,
        ];
        Self::start_on(port, &args)
    }

    fn start_on(port: u16, args: &[&str]) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server; install it (Debian: apt-get install redis-server)");
        let mut server = RedisServer { child, port };
        server.wait_until_ready();
        server
    }

    /// URL of this server.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL, as a crash would, and waits for it to exit.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "redis-server on port {} exited at start with {status}",
                    self.port
                );
            }
            if ping(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not answer PING within {START_DEADLINE:?}",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

/// Loads the shipped pricing file.
pub fn shipped_pricing() -> Pricing {
    Pricing::load(&repo_file("config/pricing.toml")).expect("config/pricing.toml must parse")
}

/// A redis-server and the sidecar's router on it, called without a socket.
pub struct TestEnv {
    pub redis: RedisServer,
    pub store: Store,
    pub state: AppState,
    pub app: Router,
}

impl TestEnv {
    /// Environment with the shipped pricing and the admin token [`TEST_TOKEN`].
    pub fn new() -> Self {
        Self::build(shipped_pricing(), AdminToken::new(TEST_TOKEN))
    }

    /// Environment with the pricing file text `pricing`.
    pub fn with_pricing(pricing: &str) -> Self {
        let pricing = Pricing::from_toml(pricing).expect("test pricing must parse");
        Self::build(pricing, AdminToken::new(TEST_TOKEN))
    }

    /// Environment whose admin API is disabled.
    pub fn without_admin_token() -> Self {
        Self::build(shipped_pricing(), AdminToken::disabled())
    }

    /// Environment that loads its pricing from the file at `path`, so that it can reload it.
    pub fn with_pricing_file(path: &Path) -> Self {
        let pricing = SharedPricing::load(path).expect("test pricing file must load");
        Self::build_shared(pricing, AdminToken::new(TEST_TOKEN))
    }

    fn build(pricing: Pricing, admin_token: AdminToken) -> Self {
        Self::build_shared(SharedPricing::new(pricing), admin_token)
    }

    fn build_shared(pricing: SharedPricing, admin_token: AdminToken) -> Self {
        let redis = RedisServer::start();
        let store = Store::open(&redis.url()).expect("open the store");
        let state = AppState {
            store: store.clone(),
            pricing,
            admin_token,
            metrics: Default::default(),
            alerts: Default::default(),
        };
        let app = router(state.clone());
        TestEnv {
            redis,
            store,
            state,
            app,
        }
    }

    /// Creates budget `name` with `limit_nano`.
    pub async fn create_budget(&self, name: &str, limit_nano: u64) {
        let budget = BudgetName::parse(name).expect("valid budget name");
        self.store
            .set_limit(&budget, limit_nano)
            .await
            .expect("set the budget limit");
    }

    /// State of budget `name`, which must exist.
    pub async fn budget_state(&self, name: &str) -> BudgetState {
        let budget = BudgetName::parse(name).expect("valid budget name");
        self.store
            .budget(&budget)
            .await
            .expect("read the budget")
            .expect("budget exists")
    }

    /// Sends a request to the router and returns the status and the JSON body (null when the
    /// body is not JSON).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        send(&self.app, method, path, body, token).await
    }

    /// Posts a reserve call and returns the status and body.
    pub async fn reserve_raw(&self, request: &ReserveRequest) -> (StatusCode, Value) {
        let body = serde_json::to_value(request).unwrap();
        self.send(Method::POST, "/v1/reserve", Some(body), None)
            .await
    }

    /// Posts a reserve call that must return 200.
    pub async fn reserve(&self, request: &ReserveRequest) -> ReserveResponse {
        let (status, body) = self.reserve_raw(request).await;
        assert_eq!(status, StatusCode::OK, "reserve answered {status}: {body}");
        serde_json::from_value(body).expect("reserve body is a ReserveResponse")
    }

    /// Posts a settle call and returns the status and body.
    pub async fn settle_raw(&self, request: &SettleRequest) -> (StatusCode, Value) {
        let body = serde_json::to_value(request).unwrap();
        self.send(Method::POST, "/v1/settle", Some(body), None)
            .await
    }

    /// Posts a settle call that must return 200.
    pub async fn settle(&self, request: &SettleRequest) -> SettleResponse {
        let (status, body) = self.settle_raw(request).await;
        assert_eq!(status, StatusCode::OK, "settle answered {status}: {body}");
        serde_json::from_value(body).expect("settle body is a SettleResponse")
    }

    /// Reserves and returns the reservation id of the grant, failing on any other outcome.
    pub async fn reserve_granted(&self, request: &ReserveRequest) -> String {
        match self.reserve(request).await {
            ReserveResponse::Granted(grant) => grant.reservation_id,
            other => panic!("expected a grant, got {other:?}"),
        }
    }
}

/// Sends one request to `app` without a socket.
pub async fn send(
    app: &Router,
    method: Method,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut builder = Request::builder().method(method).uri(path);
    if body.is_some() {
        builder = builder.header(CONTENT_TYPE, "application/json");
    }
    if let Some(token) = token {
        builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = body.map(|value| value.to_string()).unwrap_or_default();
    let response = app
        .clone()
        .oneshot(builder.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Builds a reserve request with a 60 s lease and one choice.
pub fn reserve_request(
    budget: &str,
    model: &str,
    prompt: u64,
    max: u64,
    min: u64,
) -> ReserveRequest {
    ReserveRequest {
        reservation_id: None,
        budget: budget.into(),
        parents: Vec::new(),
        model: model.into(),
        prompt_tokens: prompt,
        max_output_tokens: max,
        min_output_tokens: min,
        choices: 1,
        lease_ms: 60_000,
        loop_check: None,
    }
}

/// Builds a settle request for a completed response with provider usage.
pub fn settle_request(
    budget: &str,
    model: &str,
    reservation_id: &str,
    prompt: u64,
    cached: u64,
    completion: u64,
) -> SettleRequest {
    SettleRequest {
        reservation_id: reservation_id.into(),
        budget: budget.into(),
        parents: Vec::new(),
        model: model.into(),
        usage: Usage {
            prompt_tokens: prompt,
            cached_prompt_tokens: cached,
            completion_tokens: completion,
            ..Usage::default()
        },
        source: UsageSource::Provider,
        ending: Ending::Completed,
    }
}

/// Builds a settle request for a completed response with the provider usage `usage`.
pub fn settle_usage(
    budget: &str,
    model: &str,
    reservation_id: &str,
    usage: Usage,
) -> SettleRequest {
    SettleRequest {
        reservation_id: reservation_id.into(),
        budget: budget.into(),
        parents: Vec::new(),
        model: model.into(),
        usage,
        source: UsageSource::Provider,
        ending: Ending::Completed,
    }
}

/// Writes `contents` to `path`, replacing the file, and sets its modification time to `modified`.
/// Tests set the time so that a change is visible even where timestamps are coarse.
pub fn write_pricing_file(path: &Path, contents: &str, modified: std::time::SystemTime) {
    std::fs::write(path, contents).expect("write the test pricing file");
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open the test pricing file");
    file.set_modified(modified)
        .expect("set the modification time of the test pricing file");
}

/// Returns the modification time of the file at `path`.
pub fn modified_time(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path)
        .and_then(|metadata| metadata.modified())
        .expect("read the modification time of the test pricing file")
}

/// The built `spendfuse-sidecar` binary on a free loopback port, killed on drop.
pub struct SidecarProcess {
    child: Child,
    pub port: u16,
}

impl SidecarProcess {
    /// Starts the binary against `redis_url` with the shipped pricing. `extra_env` adds or
    /// overrides environment variables. Waits until /healthz answers.
    pub async fn start(redis_url: &str, extra_env: &[(&str, String)]) -> Self {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_spendfuse-sidecar"));
        for (name, _) in std::env::vars() {
            if name.starts_with("SPENDFUSE_") {
                command.env_remove(name);
            }
        }
        command
            .env("SPENDFUSE_LISTEN", format!("127.0.0.1:{port}"))
            .env("SPENDFUSE_REDIS_URL", redis_url)
            .env("SPENDFUSE_PRICING", repo_file("config/pricing.toml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in extra_env {
            command.env(name, value);
        }
        let child = command.spawn().expect("start the spendfuse-sidecar binary");
        let mut process = SidecarProcess { child, port };
        process.wait_until_healthy().await;
        process
    }

    /// Base URL, such as `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for the process to exit and returns its exit code. It sleeps on the
    /// async runtime, so that the test's client connections keep running meanwhile.
    pub async fn wait_for_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    async fn wait_until_healthy(&mut self) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("spendfuse-sidecar exited at start with {status}");
            }
            let answer = client.get(format!("{}/healthz", self.url())).send().await;
            if answer.is_ok_and(|response| response.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "spendfuse-sidecar on port {} did not answer /healthz within {START_DEADLINE:?}",
            self.port
        );
    }
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Three redis-server masters in cluster mode on free loopback ports, each with its own
/// directory, joined by `redis-cli --cluster create`. Killed on drop.
pub struct RedisCluster {
    nodes: Vec<Child>,
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts the three masters, creates the cluster and waits until it reports `ok`.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("create the cluster's directory");
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            ports: Vec::new(),
            _dir: dir,
        };
        for index in 0..3 {
            let port = free_port();
            let node_dir = cluster._dir.path().join(format!("node{index}"));
            std::fs::create_dir(&node_dir).expect("create a cluster node's directory");
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start redis-server in cluster mode");
            cluster.nodes.push(child);
            cluster.ports.push(port);
        }
        for &port in &cluster.ports {
            wait_for_ping(port);
        }
        let addresses: Vec<String> = cluster
            .ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run redis-cli --cluster create");
        assert!(
            status.success(),
            "redis-cli --cluster create failed: {status}"
        );
        cluster.wait_until_ok();
        cluster
    }

    /// Node URLs for the sidecar's cluster option.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect()
    }

    fn wait_until_ok(&self) {
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            let ready = self.ports.iter().all(|port| {
                Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .map(|output| {
                        String::from_utf8_lossy(&output.stdout).contains("cluster_state:ok")
                    })
                    .unwrap_or(false)
            });
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the Redis cluster on ports {:?} did not reach cluster_state:ok within {START_DEADLINE:?}", self.ports);
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}

fn wait_for_ping(port: u16) {
    let deadline = Instant::now() + START_DEADLINE;
    while Instant::now() < deadline {
        if ping(port) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server on port {port} did not answer PING within {START_DEADLINE:?}");
}

/// Builds the router over `store` with the shipped pricing and the admin token [`TEST_TOKEN`].
pub fn app_for(store: &Store) -> Router {
    router(AppState {
        store: store.clone(),
        pricing: SharedPricing::new(shipped_pricing()),
        admin_token: AdminToken::new(TEST_TOKEN),
        metrics: Default::default(),
        alerts: Default::default(),
    })
}
