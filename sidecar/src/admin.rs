//! Admin API: read budgets and set their limits, behind a bearer token.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::JsonBody;
use crate::error::Error;
use crate::money::{format_usd, parse_usd};
use crate::store::{BudgetName, BudgetState};
use crate::AppState;

/// The configured admin token, kept as its SHA-256 digest. Comparing digests in constant time
/// reveals neither the token's bytes nor its length through timing.
#[derive(Clone)]
pub struct AdminToken(Option<Arc<[u8; 32]>>);

impl AdminToken {
    /// Creates a token that every admin request must present.
    pub fn new(token: &str) -> Self {
        AdminToken(Some(Arc::new(Sha256::digest(token.as_bytes()).into())))
    }

    /// Creates a disabled token: the admin API returns 403 to every request.
    pub fn disabled() -> Self {
        AdminToken(None)
    }

    /// True when a token is configured.
    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    fn verify(&self, authorization: Option<&HeaderValue>) -> Result<(), Error> {
        let Some(expected) = &self.0 else {
            return Err(Error::AdminDisabled);
        };
        let presented = authorization
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or(Error::Unauthorized)?;
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        if bool::from(digest.ct_eq(expected.as_ref())) {
            Ok(())
        } else {
            Err(Error::Unauthorized)
        }
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.is_enabled() {
            "enabled"
        } else {
            "disabled"
        };
        f.debug_tuple("AdminToken").field(&state).finish()
    }
}

/// Proof that the request carries the admin token. Handlers that take it are admin-only.
pub struct AdminAccess;

impl FromRequestParts<AppState> for AdminAccess {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        state.admin_token.verify(parts.headers.get(AUTHORIZATION))?;
        Ok(AdminAccess)
    }
}

/// Body of `PUT /admin/budgets/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitBody {
    /// New limit in USD as a decimal string, such as `"25.00"`, with at most 9 decimals.
    pub limit_usd: String,
}

/// A budget as the admin API shows it. Amounts are nano-dollars, and the `*_usd` fields show the
/// same amounts as exact decimal strings with 9 decimals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetView {
    pub name: String,
    pub limit_nano_usd: u64,
    pub spent_nano_usd: u64,
    pub reserved_nano_usd: u64,
    /// `limit - spent - reserved`, or 0 when that is negative.
    pub remaining_nano_usd: u64,
    /// Cost that settles could not charge without passing the limit.
    pub overrun_nano_usd: u64,
    pub limit_usd: String,
    pub spent_usd: String,
    pub remaining_usd: String,
}

impl From<&BudgetState> for BudgetView {
    fn from(state: &BudgetState) -> Self {
        let remaining = state.remaining_nano();
        BudgetView {
            name: state.name.to_string(),
            limit_nano_usd: state.limit_nano,
            spent_nano_usd: state.spent_nano,
            reserved_nano_usd: state.reserved_nano,
            remaining_nano_usd: remaining,
            overrun_nano_usd: state.overrun_nano,
            limit_usd: format_usd(state.limit_nano),
            spent_usd: format_usd(state.spent_nano),
            remaining_usd: format_usd(remaining),
        }
    }
}

/// Body of `GET /admin/budgets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetList {
    /// Every listed budget, sorted by name.
    pub budgets: Vec<BudgetView>,
}

/// `PUT /admin/budgets/{name}`: sets the limit, creating the budget when it is missing.
pub async fn put_budget(
    _: AdminAccess,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<LimitBody>,
) -> Result<Json<BudgetView>, Error> {
    let budget = BudgetName::parse(&name)?;
    let limit_nano = parse_usd(&body.limit_usd)?;
    let updated = state.store.set_limit(&budget, limit_nano).await?;
    tracing::info!(%budget, limit_nano, "budget limit set");
    Ok(Json(BudgetView::from(&updated)))
}

/// `GET /admin/budgets/{name}`: one budget, or 404.
pub async fn get_budget(
    _: AdminAccess,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<BudgetView>, Error> {
    let budget = BudgetName::parse(&name)?;
    match state.store.budget(&budget).await? {
        Some(found) => Ok(Json(BudgetView::from(&found))),
        None => Err(Error::BudgetNotFound { name }),
    }
}

/// `GET /admin/budgets`: every listed budget, sorted by name.
pub async fn list_budgets(
    _: AdminAccess,
    State(state): State<AppState>,
) -> Result<Json<BudgetList>, Error> {
    let mut budgets = Vec::new();
    for name in state.store.budget_names().await? {
        if let Some(found) = state.store.budget(&name).await? {
            budgets.push(BudgetView::from(&found));
        }
    }
    Ok(Json(BudgetList { budgets }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> HeaderValue {
        HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static(""))
    }

    #[test]
    fn matching_bearer_token_passes() {
        let token = AdminToken::new("s3cret");
        assert!(token.verify(Some(&header("Bearer s3cret"))).is_ok());
    }

    #[test]
    fn scheme_is_case_insensitive() {
        let token = AdminToken::new("s3cret");
        assert!(token.verify(Some(&header("bearer s3cret"))).is_ok());
    }

    #[test]
    fn wrong_token_is_unauthorized() {
        let token = AdminToken::new("s3cret");
        let result = token.verify(Some(&header("Bearer s3cret2")));
        assert!(matches!(result, Err(Error::Unauthorized)));
    }

    #[test]
    fn missing_header_is_unauthorized() {
        let token = AdminToken::new("s3cret");
        assert!(matches!(token.verify(None), Err(Error::Unauthorized)));
    }

    #[test]
    fn basic_scheme_is_unauthorized() {
        let token = AdminToken::new("s3cret");
        let result = token.verify(Some(&header("Basic s3cret")));
        assert!(matches!(result, Err(Error::Unauthorized)));
    }

    #[test]
    fn disabled_token_rejects_everything() {
        let result = AdminToken::disabled().verify(Some(&header("Bearer anything")));
        assert!(matches!(result, Err(Error::AdminDisabled)));
    }

    #[test]
    fn debug_output_hides_the_token() {
        assert_eq!(
            format!("{:?}", AdminToken::new("s3cret")),
            "AdminToken(\"enabled\")"
        );
    }
}
