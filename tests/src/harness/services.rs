//! The back-end processes of the stack: redis-server, the sidecar and the mock provider.

use super::paths;
use super::process::{free_port, Process};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long each process gets to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Returns true when an HTTP GET of `url` returns status 200.
pub async fn returns_ok(http: &reqwest::Client, url: &str) -> bool {
    let sent = http.get(url).timeout(Duration::from_secs(2)).send().await;
    sent.is_ok_and(|response| response.status() == reqwest::StatusCode::OK)
}

/// A redis-server on a loopback port with the append-only file settings that the README
/// documents, writing into the stack's directory.
#[derive(Debug)]
pub struct Redis {
    process: Process,
    port: u16,
}

impl Redis {
    /// Starts redis-server with its log in `dir` and waits until it replies to PING.
    pub async fn start(dir: &Path) -> Result<Redis> {
        let port = free_port()?;
        let mut command = Command::new(paths::redis_bin());
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ])
            .arg("--dir")
            .arg(dir);
        let mut process = Process::spawn("redis-server", command, &dir.join("redis.log"))?;
        process
            .wait_ready(START_TIMEOUT, || replies_to_ping(port))
            .await?;
        Ok(Redis { process, port })
    }

    /// Returns the URL the sidecar connects to.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Returns the process, for its log.
    pub fn process(&self) -> &Process {
        &self.process
    }
}

async fn replies_to_ping(port: u16) -> bool {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(b"PING\r\n").await?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await?;
        Ok::<bool, std::io::Error>(&reply == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), exchange).await,
        Ok(Ok(true))
    )
}

/// The spendfuse sidecar, which can be stopped and started again on the same port.
#[derive(Debug)]
pub struct Sidecar {
    process: Option<Process>,
    port: u16,
    bin: PathBuf,
    redis_url: String,
    token_file: PathBuf,
    log: PathBuf,
    http: reqwest::Client,
}

impl Sidecar {
    /// Starts the sidecar against `redis_url` with an admin token file in `dir`.
    pub async fn start_new(
        dir: &Path,
        redis_url: String,
        http: reqwest::Client,
    ) -> Result<Sidecar> {
        let token_file = dir.join("admin-token");
        std::fs::write(&token_file, random_token()?)
            .map_err(|error| Error::io(format!("writing {}", token_file.display()), error))?;
        let mut sidecar = Sidecar {
            process: None,
            port: free_port()?,
            bin: paths::sidecar_bin()?,
            redis_url,
            token_file,
            log: dir.join("sidecar.log"),
            http,
        };
        sidecar.start().await?;
        Ok(sidecar)
    }

    /// Starts the sidecar process if it is not running, and waits until `/readyz` returns 200.
    pub async fn start(&mut self) -> Result<()> {
        if self.process.is_some() {
            return Ok(());
        }
        let mut command = Command::new(&self.bin);
        command
            .env("SPENDFUSE_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("SPENDFUSE_REDIS_URL", &self.redis_url)
            .env("SPENDFUSE_PRICING", paths::pricing_file()?)
            .env("SPENDFUSE_ADMIN_TOKEN_FILE", &self.token_file)
            .env_remove("SPENDFUSE_ADMIN_TOKEN")
            .env_remove("SPENDFUSE_BUDGETS");
        let ready_url = format!("{}/readyz", self.url());
        let http = self.http.clone();
        let process = Process::spawn("spendfuse sidecar", command, &self.log)?;
        let process = self.process.insert(process);
        let ready = process
            .wait_ready(START_TIMEOUT, || returns_ok(&http, &ready_url))
            .await;
        if ready.is_err() {
            self.stop();
        }
        ready
    }

    /// Stops the sidecar; `start` runs it again on the same port.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    /// Returns the base URL, such as `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Returns the listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the admin bearer token.
    pub fn admin_token(&self) -> Result<String> {
        std::fs::read_to_string(&self.token_file)
            .map(|token| token.trim().to_owned())
            .map_err(|error| Error::io(format!("reading {}", self.token_file.display()), error))
    }

    /// Returns the process while it runs, for its log.
    pub fn process(&self) -> Option<&Process> {
        self.process.as_ref()
    }
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| {
        Error::Invalid(format!(
            "cannot read random bytes for the admin token: {error}"
        ))
    })?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// The mock provider binary on a loopback port.
#[derive(Debug)]
pub struct MockProvider {
    process: Process,
    port: u16,
}

impl MockProvider {
    /// Starts the mock provider at `bin` with `args` after `--listen`, and waits until
    /// `/healthz` returns 200.
    pub async fn start(
        bin: &Path,
        args: &[String],
        dir: &Path,
        http: &reqwest::Client,
    ) -> Result<MockProvider> {
        if !bin.is_file() {
            let hint = "build it with `cargo build -p spendfuse-tests`";
            let item = "the mock provider binary";
            return Err(Error::Missing {
                item,
                path: bin.to_path_buf(),
                hint,
            });
        }
        let port = free_port()?;
        let mut command = Command::new(bin);
        command
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args);
        let mut process = Process::spawn("mock provider", command, &dir.join("mock.log"))?;
        let health_url = format!("http://127.0.0.1:{port}/healthz");
        process
            .wait_ready(START_TIMEOUT, || returns_ok(http, &health_url))
            .await?;
        Ok(MockProvider { process, port })
    }

    /// Returns the base URL, such as `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Returns the listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Returns the process, for its log.
    pub fn process(&self) -> &Process {
        &self.process
    }
}
