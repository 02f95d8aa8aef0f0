//! Where the harness finds the programs and files of the stack, with the environment
//! variables that override each location.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Environment variable with the sidecar binary to run.
pub const SIDECAR_BIN_ENV: &str = "SPENDFUSE_SIDECAR_BIN";
/// Environment variable with the Envoy binary to run.
pub const ENVOY_BIN_ENV: &str = "ENVOY_BIN";
/// Environment variable with the filter's wasm module to load.
pub const WASM_ENV: &str = "SPENDFUSE_WASM";
/// Environment variable with the redis-server binary to run; `redis-server` from PATH otherwise.
pub const REDIS_BIN_ENV: &str = "REDIS_SERVER_BIN";

const BUILD_HINT: &str = "run `make test`, which builds it";

/// Returns the root of the spendfuse repository, the parent of this crate's directory.
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

fn from_env_or(variable: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or(default)
}

fn existing(item: &'static str, path: PathBuf, hint: &'static str) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Missing { item, path, hint })
    }
}

/// Returns the sidecar binary: `$SPENDFUSE_SIDECAR_BIN`, else `target/debug/spendfuse-sidecar`.
pub fn sidecar_bin() -> Result<PathBuf> {
    let default = repo_root().join("target/debug/spendfuse-sidecar");
    existing(
        "the spendfuse sidecar binary",
        from_env_or(SIDECAR_BIN_ENV, default),
        BUILD_HINT,
    )
}

/// Returns the Envoy binary: `$ENVOY_BIN`, else `.venv/bin/envoy` in the repository.
pub fn envoy_bin() -> Result<PathBuf> {
    let default = repo_root().join(".venv/bin/envoy");
    let hint = "run `make test`, which installs it, or set ENVOY_BIN";
    existing(
        "the Envoy binary",
        from_env_or(ENVOY_BIN_ENV, default),
        hint,
    )
}

/// Returns the filter's wasm module: `$SPENDFUSE_WASM`, else the release build in `target/`.
pub fn wasm_module() -> Result<PathBuf> {
    let default = repo_root().join("target/wasm32-wasip1/release/spendfuse_filter.wasm");
    existing(
        "the spendfuse filter wasm module",
        from_env_or(WASM_ENV, default),
        BUILD_HINT,
    )
}

/// Returns the redis-server program: `$REDIS_SERVER_BIN`, else `redis-server` looked up in PATH.
pub fn redis_bin() -> PathBuf {
    from_env_or(REDIS_BIN_ENV, PathBuf::from("redis-server"))
}

/// Returns the shipped pricing file, `config/pricing.toml`.
pub fn pricing_file() -> Result<PathBuf> {
    let hint = "the sidecar and the tests read model prices from it";
    existing(
        "the pricing file",
        repo_root().join("config/pricing.toml"),
        hint,
    )
}

/// Returns the shipped Envoy configuration, `envoy/envoy.yaml`.
pub fn envoy_config_template() -> Result<PathBuf> {
    let hint = "the harness renders the test configuration from it";
    existing(
        "the Envoy configuration",
        repo_root().join("envoy/envoy.yaml"),
        hint,
    )
}
