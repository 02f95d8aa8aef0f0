//! The whole stack on loopback ports: redis-server, the sidecar, the mock provider and Envoy
//! with the filter. Every process stops when the [`Stack`] is dropped.

pub mod envoy;
pub mod paths;
pub mod process;
pub mod services;

use crate::client::{http_client, AdminClient, MockClient};
use crate::error::Result;
use envoy::Envoy;
use serde_json::Value;
use services::{MockProvider, Redis, Sidecar};
use std::path::PathBuf;
use tempfile::TempDir;
use tokio::sync::{Mutex, MutexGuard};

/// Environment variable that, when set, keeps each stack's directory of logs and configuration.
pub const KEEP_LOGS_ENV: &str = "SPENDFUSE_KEEP_LOGS";

/// Lets one stack run at a time in a test binary, because stacks running in parallel compete
/// for CPU and stretch the timing that the streaming tests depend on.
static ONE_STACK_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// How to start a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    mock_bin: PathBuf,
    mock_args: Vec<String>,
    filter_patch: Option<Value>,
}

impl StackOptions {
    /// Returns the options of a stack with the shipped configuration. `mock_bin` is the mock
    /// provider binary, `env!("CARGO_BIN_EXE_mock-provider")` in this crate's tests.
    pub fn new(mock_bin: impl Into<PathBuf>) -> StackOptions {
        StackOptions {
            mock_bin: mock_bin.into(),
            mock_args: Vec::new(),
            filter_patch: None,
        }
    }

    /// Sets the keys of `patch`, a JSON object, in the filter's configuration.
    pub fn filter_config(mut self, patch: Value) -> StackOptions {
        self.filter_patch = Some(patch);
        self
    }

    /// Passes `args` to the mock provider, such as `["--output-tokens", "5"]`.
    pub fn mock_args<I, S>(mut self, args: I) -> StackOptions
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.mock_args = args.into_iter().map(Into::into).collect();
        self
    }
}

/// A running stack. Fields drop in order, so Envoy stops first and the log directory last.
pub struct Stack {
    /// Client of the sidecar's admin API.
    pub admin: AdminClient,
    /// Client of the mock provider's records.
    pub mock: MockClient,
    http: reqwest::Client,
    envoy: Envoy,
    sidecar: Sidecar,
    mock_provider: MockProvider,
    redis: Redis,
    dir: Option<TempDir>,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Stack {
    /// Starts every process, waits until each is ready, and clears the mock's records of the
    /// readiness probe. When a process does not start, its directory of logs is kept, so that
    /// the log path in the error stays valid.
    pub async fn start(options: StackOptions) -> Result<Stack> {
        let one_at_a_time = ONE_STACK_AT_A_TIME.lock().await;
        let dir = tempfile::Builder::new()
            .prefix("spendfuse-stack-")
            .tempdir()
            .map_err(|error| crate::Error::io("creating the stack's temporary directory", error))?;
        match Stack::start_in(&dir, &options, one_at_a_time).await {
            Ok(mut stack) => {
                stack.dir = Some(dir);
                Ok(stack)
            }
            Err(error) => {
                let _ = dir.keep();
                Err(error)
            }
        }
    }

    async fn start_in(
        dir: &TempDir,
        options: &StackOptions,
        one_at_a_time: MutexGuard<'static, ()>,
    ) -> Result<Stack> {
        let http = http_client()?;
        let redis = Redis::start(dir.path()).await?;
        let sidecar = Sidecar::start_new(dir.path(), redis.url(), http.clone()).await?;
        let mock_provider =
            MockProvider::start(&options.mock_bin, &options.mock_args, dir.path(), &http).await?;
        let envoy = Envoy::start(
            dir.path(),
            mock_provider.port(),
            sidecar.port(),
            options.filter_patch.as_ref(),
            &http,
        )
        .await?;
        let admin = AdminClient::new(http.clone(), sidecar.url(), sidecar.admin_token()?);
        let mock = MockClient::new(http.clone(), mock_provider.url());
        mock.clear().await?;
        Ok(Stack {
            admin,
            mock,
            http,
            envoy,
            sidecar,
            mock_provider,
            redis,
            dir: None,
            _one_at_a_time: one_at_a_time,
        })
    }

    /// Returns the URL of `path` through Envoy.
    pub fn url(&self, path: &str) -> String {
        self.envoy.url(path)
    }

    /// Returns the HTTP client the stack uses.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Returns a POST of `body` to the chat completions endpoint through Envoy, with
    /// `Authorization: Bearer KEY` when `key` is given.
    pub fn chat(&self, key: Option<&str>, body: &Value) -> reqwest::RequestBuilder {
        let request = self
            .http
            .post(self.url(crate::mock::CHAT_COMPLETIONS_PATH))
            .json(body);
        match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Stops the sidecar, keeping its port for [`Stack::start_sidecar`].
    pub fn stop_sidecar(&mut self) {
        self.sidecar.stop();
    }

    /// Starts the sidecar again on its port and waits until it is ready.
    pub async fn start_sidecar(&mut self) -> Result<()> {
        self.sidecar.start().await
    }

    /// Returns the Envoy of the stack.
    pub fn envoy(&self) -> &Envoy {
        &self.envoy
    }

    fn print_logs(&self) {
        let mut processes = vec![
            self.envoy.process(),
            self.mock_provider.process(),
            self.redis.process(),
        ];
        processes.extend(self.sidecar.process());
        for process in processes {
            eprintln!(
                "--- {} log ({}) ---",
                process.name(),
                process.log_path().display()
            );
            eprintln!("{}", process.log_tail());
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        if std::env::var_os(KEEP_LOGS_ENV).is_some() {
            if let Some(dir) = self.dir.take() {
                eprintln!("stack logs kept in {}", dir.keep().display());
            }
        }
    }
}
