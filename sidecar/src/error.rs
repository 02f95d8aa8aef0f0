//! The sidecar's error type, and its mapping to HTTP status and JSON body.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use spendfuse_protocol::ErrorResponse;

use crate::cost::CostError;
use crate::money::DecimalError;
use crate::pricing::PricingError;
use crate::reload::ReloadError;
use crate::window::WindowKind;

/// Every failure that a request to the sidecar can end with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not JSON of the expected shape.
    #[error("invalid request body: {0}")]
    InvalidBody(String),
    /// Token counts or choices cannot be priced.
    #[error("invalid request: {0}")]
    InvalidCounts(#[from] CostError),
    /// A lease duration outside the allowed range.
    #[error("invalid lease_ms {lease_ms}: it must be from 1 to {max} milliseconds")]
    InvalidLease { lease_ms: u64, max: u64 },
    /// A budget name that cannot be used in a Redis key.
    #[error("invalid budget name {name:?}: {reason}; use 1 to 256 bytes without '{{', '}}' or control characters")]
    InvalidBudgetName { name: String, reason: &'static str },
    /// A reservation id that the sidecar cannot have generated.
    #[error("invalid reservation_id {id:?}: {reason}; send the id from the grant")]
    InvalidReservationId { id: String, reason: &'static str },
    /// A reserve or settle names more scopes than allowed.
    #[error("too many budget scopes: {count}; send at most {max}, the budget and its parents")]
    TooManyScopes { count: usize, max: usize },
    /// A scope appears twice in one request.
    #[error("budget scope {name:?} appears twice; list each scope once")]
    RepeatedScope { name: String },
    /// A store call was given no scopes.
    #[error("no budget scope given; name at least the budget")]
    NoScopes,
    /// A loop check with numbers out of range.
    #[error("invalid loop_check: {0}")]
    InvalidLoopCheck(String),
    /// A UTC offset outside -14:00 to +14:00.
    #[error("invalid UTC offset {0} minutes: use -840 to 840")]
    InvalidUtcOffset(i32),
    /// A budget would have no window.
    #[error("budget {budget} needs at least one window limit, such as {{\"month\": \"500.00\"}}")]
    NoWindows { budget: String },
    /// A window kind that does not exist.
    #[error("invalid window {0:?}: use minute, hour, day, week, month or lifetime")]
    InvalidWindow(String),
    /// The admin API named a window that the budget lacks.
    #[error("budget {budget} has no {window} window; add it with PUT /admin/budgets/{{name}}")]
    WindowNotFound { budget: String, window: WindowKind },
    /// A budget limit that is not a valid dollar amount.
    #[error("invalid limit_usd: {0}")]
    InvalidLimit(#[from] DecimalError),
    /// Settle named a reservation that does not exist for that budget.
    #[error("reservation {id:?} of budget {budget:?} not found: it was never granted, or it ended more than 7 days ago")]
    ReservationNotFound { budget: String, id: String },
    /// The admin API named a budget that does not exist.
    #[error("budget {name:?} not found; create it with PUT /admin/budgets/{{name}}")]
    BudgetNotFound { name: String },
    /// No admin token is configured.
    #[error("the admin API is disabled; start the sidecar with --admin-token-file, SPENDFUSE_ADMIN_TOKEN_FILE or SPENDFUSE_ADMIN_TOKEN to enable it")]
    AdminDisabled,
    /// The request has no bearer token or a wrong one.
    #[error("missing or invalid admin token; send the header 'Authorization: Bearer TOKEN'")]
    Unauthorized,
    /// A reload of the pricing file that failed, which leaves the prices in force.
    #[error("pricing reload failed: {0}. The previous prices stay in force.")]
    PricingReload(#[from] ReloadError),
    /// Redis failed or did not reply.
    #[error(
        "Redis request failed: {0}. Check that Redis is running and reachable from the sidecar."
    )]
    Redis(#[from] redis::RedisError),
    /// Redis did not reply to a readiness check in time.
    #[error("Redis did not answer PING within {0} ms")]
    RedisTimeout(u64),
    /// A script returned a reply of an unexpected shape.
    #[error("unexpected reply from the {script} script: {reply}")]
    ScriptReply { script: &'static str, reply: String },
    /// Alert settings that cannot be used.
    #[error("invalid alert settings: {0}")]
    InvalidAlert(String),
    /// Encoding an output as JSON failed.
    #[error("encoding the output as JSON failed: {0}")]
    Encode(String),
    /// The operating system's random source failed.
    #[error("cannot generate a reservation id: {0}")]
    Random(getrandom::Error),
}

impl Error {
    /// Returns the HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::InvalidBody(_)
            | Error::InvalidCounts(_)
            | Error::InvalidLease { .. }
            | Error::InvalidBudgetName { .. }
            | Error::InvalidReservationId { .. }
            | Error::InvalidLimit(_)
            | Error::TooManyScopes { .. }
            | Error::RepeatedScope { .. }
            | Error::NoScopes
            | Error::InvalidLoopCheck(_)
            | Error::InvalidUtcOffset(_)
            | Error::NoWindows { .. }
            | Error::InvalidWindow(_)
            | Error::InvalidAlert(_) => StatusCode::BAD_REQUEST,
            Error::ReservationNotFound { .. }
            | Error::BudgetNotFound { .. }
            | Error::WindowNotFound { .. } => StatusCode::NOT_FOUND,
            Error::PricingReload(ReloadError::NoFile) => StatusCode::CONFLICT,
            // An unreadable file is a problem of the host, not of the request.
            Error::PricingReload(ReloadError::Pricing(PricingError::Read { .. })) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Error::PricingReload(ReloadError::Pricing(_)) => StatusCode::BAD_REQUEST,
            Error::AdminDisabled => StatusCode::FORBIDDEN,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            // The filter treats 503 as "no decision" and applies its failure mode.
            Error::Redis(_) | Error::RedisTimeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::ScriptReply { .. } | Error::Random(_) | Error::Encode(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            log_server_error(&self);
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "request failed");
        }
        let body = Json(ErrorResponse {
            error: self.to_string(),
        });
        match self {
            Error::Unauthorized => {
                (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
            }
            _ => (status, body).into_response(),
        }
    }
}

/// Second in which the last server error was logged.
static LAST_LOGGED_SECOND: AtomicU64 = AtomicU64::new(0);

/// Server errors left out of the log since the last logged one.
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// Logs a server error at warn, at most once per second. While Redis is down every request
/// fails the same way, so the line carries the count of errors left out since the last one.
fn log_server_error(error: &Error) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let last = LAST_LOGGED_SECOND.load(Ordering::Relaxed);
    let claimed = now != last
        && LAST_LOGGED_SECOND
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
    if claimed {
        let suppressed = SUPPRESSED.swap(0, Ordering::Relaxed);
        tracing::warn!(%error, suppressed, "request failed");
    } else {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_failure_is_service_unavailable() {
        let error = Error::Redis(redis::RedisError::from((redis::ErrorKind::Io, "refused")));
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn unknown_reservation_is_not_found() {
        let error = Error::ReservationNotFound {
            budget: "b".into(),
            id: "r".into(),
        };
        assert_eq!(error.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn invalid_pricing_file_is_bad_request() {
        let parse_error = crate::pricing::Pricing::from_toml("checked = 1").err();
        let status = parse_error.map(|e| Error::PricingReload(ReloadError::Pricing(e)).status());
        assert_eq!(status, Some(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn unreadable_pricing_file_is_a_server_error() {
        let error = Error::PricingReload(ReloadError::Pricing(PricingError::Read {
            path: "/nonexistent".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }));
        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn disabled_admin_message_says_how_to_enable() {
        assert!(Error::AdminDisabled
            .to_string()
            .contains("SPENDFUSE_ADMIN_TOKEN"));
    }

    #[test]
    fn unauthorized_answer_asks_for_bearer() {
        let response = Error::Unauthorized.into_response();
        let challenge = response.headers().get(header::WWW_AUTHENTICATE).cloned();
        assert_eq!(challenge, Some(header::HeaderValue::from_static("Bearer")));
    }
}
