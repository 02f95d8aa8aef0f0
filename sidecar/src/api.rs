//! HTTP routes: reserve and settle for the filter, health checks, and the admin API.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use std::sync::atomic::Ordering;

use spendfuse_protocol::{
    Denial, Ending, Grant, LoopCheck as ProtocolLoopCheck, LoopDenial, Rejection, ReserveRequest,
    ReserveResponse, SettleRequest, SettleResponse, UsageSource, RESERVE_PATH, SETTLE_PATH,
};

use crate::admin;
use crate::cost::{check_usage, reserve_cost, settle_cost};
use crate::error::Error;
use crate::store::{BudgetName, Charge, LoopCheck, ReserveOutcome, SettleOutcome};
use crate::AppState;

/// Maximum lease a reserve may request: 7 days, in milliseconds. Lease deadlines are Lua
/// numbers, and a hold meant to outlive a week is almost surely a configuration mistake.
pub const MAX_LEASE_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Maximum number of scopes in one reserve call, the budget and its parents together.
pub const MAX_SCOPES: usize = 8;

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
        .route("/metrics", get(metrics))
        .route("/admin/budgets", get(admin::list_budgets))
        .route(
            "/admin/budgets/{name}",
            get(admin::get_budget)
                .put(admin::put_budget)
                .delete(admin::delete_budget),
        )
        .route(
            "/admin/budgets/{name}/windows/{window}/reset",
            post(admin::reset_window),
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
    let scopes = parse_scopes(&request.budget, &request.parents)?;
    let budget = &scopes[0];
    if request.lease_ms == 0 || request.lease_ms > MAX_LEASE_MS {
        return Err(Error::InvalidLease {
            lease_ms: request.lease_ms,
            max: MAX_LEASE_MS,
        });
    }
    let loop_check = request.loop_check.as_ref().map(check_loop).transpose()?;
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
    let reservation_id = match request.reservation_id {
        Some(id) => {
            check_reservation_id(&id)?;
            id
        }
        None => new_reservation_id()?,
    };

    let outcome = state
        .store
        .reserve(
            &scopes,
            &reservation_id,
            &cost,
            request.lease_ms,
            loop_check.as_ref(),
        )
        .await?;
    let scope_name = |index: usize| scopes.get(index).unwrap_or(budget).to_string();
    let response = match outcome {
        ReserveOutcome::Granted {
            output_tokens,
            reserved_nano,
            limit_nano,
            remaining_nano,
            binding: _,
            shadow_breach,
        } => {
            state.metrics.grants.fetch_add(1, Ordering::Relaxed);
            let shadow_budget = shadow_breach.map(|breach| {
                state.metrics.shadow_denials.fetch_add(1, Ordering::Relaxed);
                let shadow_budget = scope_name(breach.scope);
                tracing::info!(
                    %reservation_id, budget = %shadow_budget, window = %breach.window,
                    reserved_nano, "shadow budget would have lowered or denied the request"
                );
                shadow_budget
            });
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
                shadow_budget,
            })
        }
        ReserveOutcome::Denied {
            limit_nano,
            remaining_nano,
            exhausted,
        } => {
            state.metrics.denials.fetch_add(1, Ordering::Relaxed);
            let exhausted_budget = scope_name(exhausted.scope);
            tracing::debug!(
                budget = %exhausted_budget, window = %exhausted.window, remaining_nano,
                required_nano = cost.required_nano, "reserve denied"
            );
            ReserveResponse::Denied(Denial {
                budget: exhausted_budget,
                window: Some(exhausted.window.to_string()),
                limit_nano_usd: limit_nano,
                remaining_nano_usd: remaining_nano,
                required_nano_usd: cost.required_nano,
                unknown_budget: false,
            })
        }
        ReserveOutcome::UnknownBudget => {
            state.metrics.denials.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%budget, "reserve denied: no scope has a budget");
            ReserveResponse::Denied(Denial {
                budget: budget.to_string(),
                window: None,
                limit_nano_usd: 0,
                remaining_nano_usd: 0,
                required_nano_usd: cost.required_nano,
                unknown_budget: true,
            })
        }
        ReserveOutcome::LoopDetected { max_repeats } => {
            state.metrics.loop_denials.fetch_add(1, Ordering::Relaxed);
            let window_ms = loop_check.as_ref().map_or(0, |check| check.window_ms);
            tracing::info!(%budget, max_repeats, window_ms, "loop check stopped a request");
            ReserveResponse::LoopDetected(LoopDenial {
                budget: budget.to_string(),
                max_repeats,
                window_ms,
            })
        }
    };
    Ok(Json(response))
}

/// Checks the request's scopes: each a valid name, no repeats, at most [`MAX_SCOPES`].
/// Returns them from the leaf to the root.
fn parse_scopes(budget: &str, parents: &[String]) -> Result<Vec<BudgetName>, Error> {
    if parents.len() + 1 > MAX_SCOPES {
        return Err(Error::TooManyScopes {
            count: parents.len() + 1,
            max: MAX_SCOPES,
        });
    }
    let mut scopes = Vec::with_capacity(parents.len() + 1);
    for name in std::iter::once(budget).chain(parents.iter().map(String::as_str)) {
        let scope = BudgetName::parse(name)?;
        if scopes.contains(&scope) {
            return Err(Error::RepeatedScope {
                name: name.to_string(),
            });
        }
        scopes.push(scope);
    }
    Ok(scopes)
}

/// Checks a loop check's numbers and its hash, which becomes part of a Redis key.
fn check_loop(check: &ProtocolLoopCheck) -> Result<LoopCheck, Error> {
    let valid_hash =
        check.body_sha256.len() == 64 && check.body_sha256.bytes().all(|b| b.is_ascii_hexdigit());
    if !valid_hash
        || check.max_repeats == 0
        || check.window_ms == 0
        || check.window_ms > MAX_LEASE_MS
    {
        return Err(Error::InvalidLoopCheck(format!(
            "body_sha256 must be 64 hex digits, max_repeats at least 1 and window_ms from 1 to \
             {MAX_LEASE_MS}; got {:?}, {} and {}",
            check.body_sha256, check.max_repeats, check.window_ms
        )));
    }
    Ok(LoopCheck {
        body_sha256: check.body_sha256.to_ascii_lowercase(),
        max_repeats: check.max_repeats,
        window_ms: check.window_ms,
    })
}

async fn settle(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<SettleRequest>,
) -> Result<Json<SettleResponse>, Error> {
    let scopes = parse_scopes(&request.budget, &request.parents)?;
    let budget = &scopes[0];
    let root = &scopes[scopes.len() - 1];
    check_reservation_id(&request.reservation_id)?;
    check_usage(&request.usage)?;
    let reservation_id = request.reservation_id;
    let charge = if request.ending == Ending::NotSent {
        Ok(Charge::Cancel)
    } else {
        settle_charge(&state, &request.model, &request.usage, request.source)?
    };
    let charge = charge.unwrap_or_else(|reason| {
        // Charging the hold keeps the cap: forgetting the charge would let the spend
        // escape it.
        tracing::warn!(
            %reservation_id, %budget, model = %request.model, %reason,
            "settle charges the amount held"
        );
        Charge::Held
    });

    let thresholds = state.alerts.script_argument();
    let outcome = state
        .store
        .settle(root, &reservation_id, charge, &thresholds)
        .await?;
    let (settlement, already_settled) = match outcome {
        SettleOutcome::Settled(settlement, alerts) => {
            for alert in alerts {
                state.alerts.fire(alert);
            }
            (settlement, false)
        }
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

/// Prices a settle's usage. The inner `Err` gives the reason the amount held is charged
/// instead: the filter could not count the usage, or the model has no price because the
/// pricing changed after the reserve.
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

/// Returns the decision counters in the Prometheus text format.
async fn metrics(State(state): State<AppState>) -> String {
    state.metrics.render()
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
