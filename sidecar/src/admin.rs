//! Admin API behind a bearer token: create, read, update and delete budgets, reset a window,
//! show the prices in force, and reload the pricing file.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::JsonBody;
use crate::error::Error;
use crate::money::{format_price_per_million, format_usd, parse_usd};
use crate::pricing::{ModelPrice, Pricing, TokenPrices};
use crate::reload::ReloadTrigger;
use crate::store::{BudgetId, BudgetName, BudgetState, BudgetUpdate};
use crate::window::{WindowKind, WindowState};
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
///
/// `limit_usd` alone sets the lifetime window and keeps the others. `windows` replaces every
/// window of the budget; with `limit_usd` as well, the lifetime window is added to them.
/// `shadow` alone switches the mode of an existing budget.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetBody {
    /// Root scope of the budget's hierarchy; the budget itself when absent.
    #[serde(default)]
    pub root: Option<String>,
    /// Lifetime limit in USD as a decimal string, such as `"25.00"`, with at most 9 decimals.
    #[serde(default)]
    pub limit_usd: Option<String>,
    /// Limit per window kind (`minute`, `hour`, `day`, `week`, `month`, `lifetime`) in USD.
    #[serde(default)]
    pub windows: Option<BTreeMap<String, String>>,
    /// True to only log and count this budget's decisions; unchanged when absent.
    #[serde(default)]
    pub shadow: Option<bool>,
}

impl BudgetBody {
    /// Checks the body and turns it into a store update.
    pub fn to_update(&self) -> Result<BudgetUpdate, Error> {
        let mut limits = Vec::new();
        if let Some(windows) = &self.windows {
            for (kind, limit) in windows {
                let kind =
                    WindowKind::parse(kind).ok_or_else(|| Error::InvalidWindow(kind.clone()))?;
                limits.push((kind, parse_usd(limit)?));
            }
        }
        if let Some(limit) = &self.limit_usd {
            limits.retain(|(kind, _)| *kind != WindowKind::Lifetime);
            limits.push((WindowKind::Lifetime, parse_usd(limit)?));
        }
        limits.sort();
        Ok(BudgetUpdate {
            shadow: self.shadow,
            limits,
            replace: self.windows.is_some(),
        })
    }
}

/// Query of the admin calls on one budget.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootQuery {
    /// Root scope of the budget's hierarchy; the budget itself when absent.
    pub root: Option<String>,
}

/// Returns the id of budget `name` under `root`, or under itself when `root` is absent.
pub fn budget_id(name: &str, root: Option<&str>) -> Result<BudgetId, Error> {
    let name = BudgetName::parse(name)?;
    let root = match root {
        Some(root) => BudgetName::parse(root)?,
        None => name.clone(),
    };
    Ok(BudgetId { root, name })
}

/// One window as the admin API shows it. Amounts are nano-dollars, and the `*_usd` fields show
/// the same amounts as exact decimal strings with 9 decimals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowView {
    /// Window kind, such as `month`.
    pub window: WindowKind,
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
    /// Start of the current period, UTC ms since the Unix epoch; 0 for lifetime.
    pub period_start_ms: u64,
    /// End of the current period, UTC ms since the Unix epoch; null for lifetime.
    pub period_end_ms: Option<u64>,
}

impl From<&WindowState> for WindowView {
    fn from(window: &WindowState) -> Self {
        let remaining = window.remaining_nano();
        WindowView {
            window: window.kind,
            limit_nano_usd: window.limit_nano,
            spent_nano_usd: window.spent_nano,
            reserved_nano_usd: window.reserved_nano,
            remaining_nano_usd: remaining,
            overrun_nano_usd: window.overrun_nano,
            limit_usd: format_usd(window.limit_nano),
            spent_usd: format_usd(window.spent_nano),
            remaining_usd: format_usd(remaining),
            period_start_ms: window.start_ms,
            period_end_ms: window.end_ms,
        }
    }
}

/// A budget as the admin API shows it. The top-level amounts are those of its summary window:
/// the lifetime window, or else the first one listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetView {
    pub name: String,
    /// Root scope of the budget's hierarchy.
    pub root: String,
    /// True when the budget's decisions are only logged and counted.
    pub shadow: bool,
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
    /// Every window of the budget, in the order minute, hour, day, week, month, lifetime.
    pub windows: Vec<WindowView>,
}

impl From<&BudgetState> for BudgetView {
    fn from(state: &BudgetState) -> Self {
        let remaining = state.remaining_nano();
        BudgetView {
            name: state.name.to_string(),
            root: state.root.to_string(),
            shadow: state.shadow,
            limit_nano_usd: state.limit_nano,
            spent_nano_usd: state.spent_nano,
            reserved_nano_usd: state.reserved_nano,
            remaining_nano_usd: remaining,
            overrun_nano_usd: state.overrun_nano,
            limit_usd: format_usd(state.limit_nano),
            spent_usd: format_usd(state.spent_nano),
            remaining_usd: format_usd(remaining),
            windows: state.windows.iter().map(WindowView::from).collect(),
        }
    }
}

/// Body of `GET /admin/budgets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetList {
    /// Every listed budget, sorted by root and then name.
    pub budgets: Vec<BudgetView>,
}

/// `PUT /admin/budgets/{name}`: sets limits or the shadow flag, creating the budget when it is
/// missing, and returns the budget.
pub async fn put_budget(
    _: AdminAccess,
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<BudgetBody>,
) -> Result<Json<BudgetView>, Error> {
    let id = budget_id(&name, body.root.as_deref())?;
    let update = body.to_update()?;
    let updated = state.store.update_budget(&id, &update).await?;
    tracing::info!(budget = %id, ?update, "budget updated");
    Ok(Json(BudgetView::from(&updated)))
}

/// `GET /admin/budgets/{name}`: one budget, or 404.
pub async fn get_budget(
    _: AdminAccess,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<RootQuery>,
) -> Result<Json<BudgetView>, Error> {
    let id = budget_id(&name, query.root.as_deref())?;
    match state.store.budget_of(&id).await? {
        Some(found) => Ok(Json(BudgetView::from(&found))),
        None => Err(Error::BudgetNotFound { name }),
    }
}

/// `DELETE /admin/budgets/{name}`: removes the budget and returns it as it was, or 404.
pub async fn delete_budget(
    _: AdminAccess,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<RootQuery>,
) -> Result<Json<BudgetView>, Error> {
    let id = budget_id(&name, query.root.as_deref())?;
    match state.store.delete_budget(&id).await? {
        Some(deleted) => {
            tracing::info!(budget = %id, "budget deleted");
            Ok(Json(BudgetView::from(&deleted)))
        }
        None => Err(Error::BudgetNotFound { name }),
    }
}

/// `POST /admin/budgets/{name}/windows/{window}/reset`: sets the current period's spent and
/// overrun to 0 and returns the budget.
pub async fn reset_window(
    _: AdminAccess,
    State(state): State<AppState>,
    Path((name, window)): Path<(String, String)>,
    Query(query): Query<RootQuery>,
) -> Result<Json<BudgetView>, Error> {
    let id = budget_id(&name, query.root.as_deref())?;
    let kind = WindowKind::parse(&window).ok_or(Error::InvalidWindow(window))?;
    match state.store.reset_window(&id, kind).await? {
        Some(reset) => {
            tracing::info!(budget = %id, window = %kind, "window reset");
            Ok(Json(BudgetView::from(&reset)))
        }
        None => Err(Error::BudgetNotFound { name }),
    }
}

/// `GET /admin/budgets`: every listed budget with its windows.
pub async fn list_budgets(
    _: AdminAccess,
    State(state): State<AppState>,
) -> Result<Json<BudgetList>, Error> {
    let mut budgets = Vec::new();
    for id in state.store.budget_ids().await? {
        if let Some(found) = state.store.budget_of(&id).await? {
            budgets.push(BudgetView::from(&found));
        }
    }
    Ok(Json(BudgetList { budgets }))
}

/// Prices of every token category, as decimal USD per million tokens such as `"2.50"`. Each
/// category shows the price in force, so an omitted field shows the default it took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricesView {
    pub input: String,
    pub cached_input: String,
    pub cache_write_5m: String,
    pub cache_write_1h: String,
    pub audio_input: String,
    pub output: String,
    pub audio_output: String,
}

impl From<&TokenPrices> for PricesView {
    fn from(prices: &TokenPrices) -> Self {
        PricesView {
            input: format_price_per_million(prices.input_pico),
            cached_input: format_price_per_million(prices.cached_input_pico),
            cache_write_5m: format_price_per_million(prices.cache_write_5m_pico),
            cache_write_1h: format_price_per_million(prices.cache_write_1h_pico),
            audio_input: format_price_per_million(prices.audio_input_pico),
            output: format_price_per_million(prices.output_pico),
            audio_output: format_price_per_million(prices.audio_output_pico),
        }
    }
}

/// A long-context tier as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierView {
    /// The tier applies when the prompt has more tokens than this.
    pub above_prompt_tokens: u64,
    #[serde(flatten)]
    pub prices: PricesView,
}

/// A model's prices as the admin API shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPriceView {
    /// Base prices.
    #[serde(flatten)]
    pub prices: PricesView,
    /// Long-context tiers, from the lowest threshold to the highest.
    pub tiers: Vec<TierView>,
}

impl From<&ModelPrice> for ModelPriceView {
    fn from(price: &ModelPrice) -> Self {
        ModelPriceView {
            prices: PricesView::from(&price.base),
            tiers: price
                .tiers
                .iter()
                .map(|tier| TierView {
                    above_prompt_tokens: tier.above_prompt_tokens,
                    prices: PricesView::from(&tier.prices),
                })
                .collect(),
        }
    }
}

/// Body of `GET /admin/pricing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricingView {
    /// Day the prices were checked, as the file states it (`YYYY-MM-DD`).
    pub checked: String,
    /// Every model by name.
    pub models: BTreeMap<String, ModelPriceView>,
    /// Every alias with the model it names.
    pub aliases: BTreeMap<String, String>,
    /// Price of the models that nothing else matches, or null.
    pub fallback: Option<ModelPriceView>,
}

impl From<&Pricing> for PricingView {
    fn from(pricing: &Pricing) -> Self {
        PricingView {
            checked: pricing.checked().to_string(),
            models: pricing
                .models()
                .map(|(name, price)| (name.to_string(), ModelPriceView::from(price)))
                .collect(),
            aliases: pricing
                .aliases()
                .map(|(alias, target)| (alias.to_string(), target.to_string()))
                .collect(),
            fallback: pricing.fallback().map(ModelPriceView::from),
        }
    }
}

/// Body of a successful `POST /admin/pricing/reload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadSummary {
    /// Number of models in the new pricing, aliases not included.
    pub models: usize,
    /// Day the new prices were checked (`YYYY-MM-DD`).
    pub checked: String,
}

/// `GET /admin/pricing`: the prices in force.
pub async fn get_pricing(_: AdminAccess, State(state): State<AppState>) -> Json<PricingView> {
    Json(PricingView::from(state.pricing.current().as_ref()))
}

/// `POST /admin/pricing/reload`: reads the pricing file again. A file that fails to load
/// leaves the prices in force and returns the error.
pub async fn reload_pricing(
    _: AdminAccess,
    State(state): State<AppState>,
) -> Result<Json<ReloadSummary>, Error> {
    let pricing = state.pricing.reload(ReloadTrigger::AdminApi).await?;
    Ok(Json(ReloadSummary {
        models: pricing.model_count(),
        checked: pricing.checked().to_string(),
    }))
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

    #[test]
    fn pricing_view_shows_defaults_in_force() {
        let text = "checked = \"2026-01-02\"\n[models.m]\ninput = \"2.5\"\noutput = \"10\"\n";
        let view = Pricing::from_toml(text).ok().map(|p| PricingView::from(&p));
        let cache_write =
            view.and_then(|v| v.models.get("m").map(|m| m.prices.cache_write_1h.clone()));
        assert_eq!(cache_write.as_deref(), Some("2.50"));
    }
}
