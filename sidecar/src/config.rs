//! Command-line options, each also settable by an environment variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::cli::Command;
use crate::connection::RedisTarget;

/// Environment variable that contains the admin token itself, as an alternative to a token file.
pub const ADMIN_TOKEN_ENV: &str = "SPENDFUSE_ADMIN_TOKEN";

/// Options of the `spendfuse-sidecar` binary.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "spendfuse-sidecar",
    version,
    about = "Budget service for the spendfuse Envoy filter: reserves and settles LLM spend in Redis.",
    after_help = "The admin API (/admin/budgets, /admin/pricing) needs a bearer token: put it in a \
                  file named by --admin-token-file, or in the SPENDFUSE_ADMIN_TOKEN environment \
                  variable. Without either, the admin API returns 403.\n\
                  The pricing file is read again on SIGHUP, on POST /admin/pricing/reload, and \
                  within 5 seconds of a change to its modification time or size. A file that \
                  fails to load leaves the previous prices in force.\n\
                  Log levels come from RUST_LOG (default: info)."
)]
pub struct Args {
    /// Address to serve HTTP/1.1 and cleartext HTTP/2 (prior knowledge) on.
    #[arg(long, env = "SPENDFUSE_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,

    /// Redis URL, such as redis://127.0.0.1:6379 or redis://:PASSWORD@HOST:PORT/DB.
    #[arg(
        long,
        env = "SPENDFUSE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: String,

    /// Redis Cluster node URLs, comma-separated, such as
    /// redis://127.0.0.1:7000,redis://127.0.0.1:7001. When set, the sidecar connects to the
    /// cluster and ignores --redis-url.
    #[arg(
        long,
        env = "SPENDFUSE_REDIS_CLUSTER_URLS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub redis_cluster_urls: Vec<String>,

    /// UTC offset of budget window boundaries (day, week, month) in minutes, such as 60 for
    /// UTC+01:00; from -840 to 840. A fixed offset: it does not follow daylight saving time.
    #[arg(
        long,
        env = "SPENDFUSE_UTC_OFFSET_MINUTES",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub utc_offset_minutes: i32,

    /// Pricing file (TOML) with the USD price per million tokens of each model.
    #[arg(long, env = "SPENDFUSE_PRICING", default_value = "config/pricing.toml")]
    pub pricing: PathBuf,

    /// Budgets file (TOML) applied at start: each entry sets that budget's limit, creating the
    /// budget when it is missing, and keeps its spend. No file by default.
    #[arg(long, env = "SPENDFUSE_BUDGETS")]
    pub budgets: Option<PathBuf>,

    /// File whose content (trailing whitespace removed) is the admin API bearer token.
    #[arg(long, env = "SPENDFUSE_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Alert thresholds in percent of a window's limit, comma-separated. Each fires once per
    /// window period as a warn log line and, with --alert-webhook-url, a webhook POST.
    #[arg(
        long,
        env = "SPENDFUSE_ALERT_THRESHOLDS",
        value_delimiter = ',',
        default_value = "50,80,100"
    )]
    pub alert_thresholds: Vec<u64>,

    /// URL that receives each alert as a JSON POST, retried with exponential backoff. No
    /// webhook by default.
    #[arg(long, env = "SPENDFUSE_ALERT_WEBHOOK_URL", hide_env_values = true)]
    pub alert_webhook_url: Option<String>,

    /// Budget command to run against Redis instead of serving the API.
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Args {
    /// Returns the Redis to connect to: the cluster when its URLs are set, else --redis-url.
    pub fn redis_target(&self) -> RedisTarget {
        if self.redis_cluster_urls.is_empty() {
            RedisTarget::Single(self.redis_url.clone())
        } else {
            RedisTarget::Cluster(self.redis_cluster_urls.clone())
        }
    }
}

/// Reason the admin token cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    /// The token file cannot be read.
    #[error("cannot read admin token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The token is empty.
    #[error("the admin token from {origin} is empty; put a long random string there")]
    Empty { origin: String },
    /// Both a file and the variable are set.
    #[error("both --admin-token-file (or SPENDFUSE_ADMIN_TOKEN_FILE) and SPENDFUSE_ADMIN_TOKEN are set; keep one")]
    Ambiguous,
}

/// Reads the admin token from `file`, or from `env_token` (the value of
/// [`ADMIN_TOKEN_ENV`]). Returns `None` when neither is set.
pub fn admin_token(
    file: Option<&Path>,
    env_token: Option<String>,
) -> Result<Option<String>, AdminTokenError> {
    let (token, origin) = match (file, env_token) {
        (Some(_), Some(_)) => return Err(AdminTokenError::Ambiguous),
        (None, None) => return Ok(None),
        (Some(path), None) => {
            let text = std::fs::read_to_string(path).map_err(|source| AdminTokenError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            (text, path.display().to_string())
        }
        (None, Some(token)) => (token, ADMIN_TOKEN_ENV.to_string()),
    };
    let token = token.trim_end().to_string();
    if token.is_empty() {
        return Err(AdminTokenError::Empty { origin });
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let args = Args::try_parse_from(["spendfuse-sidecar"]).ok();
        let defaults = args.map(|a| (a.listen.to_string(), a.redis_url, a.pricing, a.budgets));
        assert_eq!(
            defaults,
            Some((
                "127.0.0.1:8081".to_string(),
                "redis://127.0.0.1:6379".to_string(),
                PathBuf::from("config/pricing.toml"),
                None
            ))
        );
    }

    #[test]
    fn cluster_urls_select_the_cluster() {
        let args = Args::try_parse_from([
            "spendfuse-sidecar",
            "--redis-cluster-urls",
            "redis://127.0.0.1:7000,redis://127.0.0.1:7001",
        ])
        .ok();
        let urls = vec![
            "redis://127.0.0.1:7000".to_string(),
            "redis://127.0.0.1:7001".to_string(),
        ];
        assert_eq!(
            args.map(|a| a.redis_target()),
            Some(RedisTarget::Cluster(urls))
        );
    }

    #[test]
    fn no_token_source_disables_admin() {
        assert!(matches!(admin_token(None, None), Ok(None)));
    }

    #[test]
    fn env_token_is_used() {
        let token = admin_token(None, Some("abc\n".into())).ok().flatten();
        assert_eq!(token.as_deref(), Some("abc"));
    }

    #[test]
    fn blank_token_is_rejected() {
        let result = admin_token(None, Some(" \n".into()));
        assert!(matches!(result, Err(AdminTokenError::Empty { .. })));
    }

    #[test]
    fn both_sources_are_rejected() {
        let result = admin_token(Some(Path::new("/nonexistent")), Some("abc".into()));
        assert!(matches!(result, Err(AdminTokenError::Ambiguous)));
    }

    #[test]
    fn missing_token_file_is_a_read_error() {
        let result = admin_token(Some(Path::new("/nonexistent/token")), None);
        assert!(matches!(result, Err(AdminTokenError::Read { .. })));
    }
}
