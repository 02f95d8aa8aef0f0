//! HTTP routes: reserve and settle for the filter, health checks, and the admin API.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use spendfuse_protocol::{
    Denial, Grant, Rejection, ReserveRequest, ReserveResponse, SettleRequest, SettleResponse,
    UsageSource, RESERVE_PATH, SETTLE_PATH,
};

use crate::admin;
use crate::cost::{check_usage, reserve_cost, settle_cost};
use crate::error::Error;
use crate::store::{BudgetName, Charge, ReserveOutcome, SettleOutcome};
use crate::AppState;

/// Maximum lease a reserve may request: 7 days, in milliseconds. Lease deadlines are Lua
/// numbers, and a hold meant to outlive a week is almost surely a configuration mistake.
pub const MAX_LEASE_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Maximum length of a reservation id accepted by settle, in bytes. Generated ids have 32.
const MAX_RESERVATION_ID_BYTES: usize = 128;

/// Time allowed for Redis to reply to the readiness PING.
const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// Builds the router with every route of the sidecar.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(RESERVE_PATH, post(reserve))
        .route(SETTLE_PATH, post(settle))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/admin/budgets", get(admin::list_budgets))
        .route(
            "/admin/budgets/{name}",
            get(admin::get_budget).put(admin::put_budget),
        )
        .route("/admin/pricing", get(admin::get_pricing))
        .route("/admin/pricing/reload", post(admin::reload_pricing))
        .with_state(state)
}

/// JSON body whose rejection is an [`Error`], so that a malformed body gets the sidecar's JSON
/// error.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(Error::InvalidBody(rejection.body_text())),
        }
    }
}

async fn reserve(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<ReserveRequest>,
) -> Result<Json<ReserveResponse>, Error> {
    let budget = BudgetName::parse(&request.budget)?;
    if request.lease_ms == 0 || request.lease_ms > MAX_LEASE_MS {
        return Err(Error::InvalidLease {
            lease_ms: request.lease_ms,
            max: MAX_LEASE_MS,
        });
    }
    let pricing = state.pricing.current();
    let Some(price) = pricing.price(&request.model) else {
        tracing::debug!(%budget, model = %request.model, "reserve rejected: unknown model");
        return Ok(Json(ReserveResponse::Rejected(Rejection {
            code: "unknown_model".into(),
            message: format!(
                "Model {:?} has no price. Add it to the spendfuse pricing file, under [models] or [aliases].",
                request.model
            ),
        })));
    };
    let cost = reserve_cost(
        price,
        request.prompt_tokens,
        request.max_output_tokens,
        request.min_output_tokens,
        request.choices,
    )?;
    let reservation_id = new_reservation_id()?;

    let outcome = state
        .store
        .reserve(&budget, &reservation_id, &cost, request.lease_ms)
        .await?;
    let response = match outcome {
        ReserveOutcome::Granted {
            output_tokens,
            reserved_nano,
            limit_nano,
            remaining_nano,
        } => {
            tracing::debug!(
                %reservation_id, %budget, output_tokens, reserved_nano, remaining_nano,
                "reserve granted"
            );
            ReserveResponse::Granted(Grant {
                reservation_id,
                output_tokens,
                reserved_nano_usd: reserved_nano,
                limit_nano_usd: limit_nano,
                remaining_nano_usd: remaining_nano,
            })
        }
        ReserveOutcome::Denied {
            limit_nano,
            remaining_nano,
        } => {
            tracing::debug!(
                %budget, remaining_nano, required_nano = cost.required_nano, "reserve denied"
            );
            ReserveResponse::Denied(Denial {
                budget: budget.to_string(),
                limit_nano_usd: limit_nano,
                remaining_nano_usd: remaining_nano,
                required_nano_usd: cost.required_nano,
                unknown_budget: false,
            })
        }
        ReserveOutcome::UnknownBudget => {
            tracing::debug!(%budget, "reserve denied: unknown budget");
            ReserveResponse::Denied(Denial {
                budget: budget.to_string(),
                limit_nano_usd: 0,
                remaining_nano_usd: 0,
                required_nano_usd: cost.required_nano,
                unknown_budget: true,
            })
        }
    };
    Ok(Json(response))
}

async fn settle(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<SettleRequest>,
) -> Result<Json<SettleResponse>, Error> {
    let budget = BudgetName::parse(&request.budget)?;
    check_reservation_id(&request.reservation_id)?;
    check_usage(&request.usage)?;
    let reservation_id = request.reservation_id;
    let charge = settle_charge(&state, &request.model, &request.usage, request.source)?
        .unwrap_or_else(|reason| {
            // Charging the hold keeps the cap: forgetting the charge would let the spend
            // escape it.
            tracing::warn!(
                %reservation_id, %budget, model = %request.model, %reason,
                "settle charges the amount held"
            );
            Charge::Held
        });

    let outcome = state.store.settle(&budget, &reservation_id, charge).await?;
    let (settlement, already_settled) = match outcome {
        SettleOutcome::Settled(settlement) => (settlement, false),
        SettleOutcome::AlreadySettled(settlement) => (settlement, true),
        SettleOutcome::UnknownReservation => {
            return Err(Error::ReservationNotFound {
                budget: budget.to_string(),
                id: reservation_id,
            });
        }
    };
    tracing::debug!(
        %reservation_id, %budget, ending = ?request.ending, source = ?request.source,
        charged_nano = settlement.charged_nano, released_nano = settlement.released_nano,
        overrun_nano = settlement.overrun_nano, already_settled, "settled"
    );
    Ok(Json(SettleResponse {
        charged_nano_usd: settlement.charged_nano,
        released_nano_usd: settlement.released_nano,
        overrun_nano_usd: settlement.overrun_nano,
        already_settled,
    }))
}

/// Prices a settle's usage. The inner `Err` says why the amount held is charged instead: the
/// filter could not count the usage, or the model has no price (the pricing changed after the
/// reserve).
fn settle_charge(
    state: &AppState,
    model: &str,
    usage: &spendfuse_protocol::Usage,
    source: UsageSource,
) -> Result<Result<Charge, String>, Error> {
    if source == UsageSource::Reservation {
        return Ok(Err("the filter could not count the usage".into()));
    }
    let pricing = state.pricing.current();
    let Some(price) = pricing.price(model) else {
        return Ok(Err(format!("model {model} has no price")));
    };
    Ok(Ok(Charge::Actual(settle_cost(price, usage)?)))
}

/// Returns 200 while the process runs.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Returns 200 when Redis replies to PING within [`READY_TIMEOUT`], else 503.
async fn readyz(State(state): State<AppState>) -> Result<&'static str, Error> {
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok("ready\n"),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(Error::RedisTimeout(READY_TIMEOUT.as_millis() as u64)),
    }
}

/// Generates a reservation id: 128 random bits as 32 lower-case hex digits.
fn new_reservation_id() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(Error::Random)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Rejects ids that cannot be part of a reservation key: empty, longer than 128 bytes, or with
/// characters other than printable ASCII, or with `{` or `}`.
fn check_reservation_id(id: &str) -> Result<(), Error> {
    let reason = if id.is_empty() {
        Some("it is empty")
    } else if id.len() > MAX_RESERVATION_ID_BYTES {
        Some("it is longer than 128 bytes")
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}')
    {
        Some("it contains a character other than printable ASCII, or '{' or '}'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidReservationId {
            id: id.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_id_is_32_hex_digits() {
        let id = new_reservation_id().unwrap_or_default();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "id was {id:?}"
        );
    }

    #[test]
    fn reservation_ids_differ() {
        assert_ne!(new_reservation_id().ok(), new_reservation_id().ok());
    }

    #[test]
    fn generated_id_passes_the_settle_check() {
        let id = new_reservation_id().unwrap_or_default();
        assert!(check_reservation_id(&id).is_ok());
    }

    #[test]
    fn ids_with_braces_or_spaces_are_rejected() {
        for id in ["", "a{b", "a}b", "a b", "é"] {
            assert!(
                check_reservation_id(id).is_err(),
                "{id:?} should be rejected"
            );
        }
    }
}
