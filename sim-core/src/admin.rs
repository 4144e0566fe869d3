//! Routes every service serves besides its API:
//!
//! - `GET /health` — 200 when the service's storage answers, 503 otherwise;
//! - `GET /ca.pem` — the development CA, for clients to trust;
//! - `GET /admin/clock`, `POST /admin/clock` — read or move the simulated clock;
//! - `POST /admin/reset` — drop all state and re-create the well-known defaults.
//!
//! Moving the clock and resetting change every test's world, so they need a token of the
//! admin plane: audience [`ADMIN_AUDIENCE`], app role [`ADMIN_ROLE`] (the well-known admin
//! app has it).

use std::future::Future;
use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::api_error::ApiError;
use crate::auth::{Authenticated, Principal, TokenError, TokenVerifier};
use crate::clock::{ClockError, SimClock};
use crate::well_known::{ADMIN_AUDIENCE, ADMIN_ROLE};

/// What a service must provide for `/health` and `/admin/reset`.
pub trait AdminHooks: Send + Sync + 'static {
    /// True when storage is usable.
    fn healthy(&self) -> impl Future<Output = bool> + Send;
    /// Deletes all state and re-seeds the well-known defaults.
    fn reset(&self) -> impl Future<Output = Result<(), String>> + Send;
}

pub struct AdminPlane<H> {
    pub service: &'static str,
    pub hooks: Arc<H>,
    pub clock: SimClock,
    pub ca_pem: String,
    /// Verifier for admin-plane tokens (audience `api://azsim`).
    pub verifier: Arc<TokenVerifier>,
}

impl<H> Clone for AdminPlane<H> {
    fn clone(&self) -> Self {
        AdminPlane {
            service: self.service,
            hooks: self.hooks.clone(),
            clock: self.clock.clone(),
            ca_pem: self.ca_pem.clone(),
            verifier: self.verifier.clone(),
        }
    }
}

impl<H> FromRef<AdminPlane<H>> for Arc<TokenVerifier> {
    fn from_ref(plane: &AdminPlane<H>) -> Self {
        plane.verifier.clone()
    }
}

/// The admin routes, ready to `merge` into a service router.
pub fn router<H: AdminHooks>(plane: AdminPlane<H>) -> Router {
    Router::new()
        .route("/health", get(health::<H>))
        .route("/ca.pem", get(ca_pem::<H>))
        .route("/admin/clock", get(get_clock::<H>).post(move_clock::<H>))
        .route("/admin/reset", post(reset::<H>))
        .with_state(plane)
}

/// Verifies the caller holds the admin role; the 403 names what is missing.
pub fn require_admin(principal: &Principal) -> Result<(), ApiError> {
    if principal.has_role(ADMIN_ROLE) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            format!(
                "The client '{}' with object id '{}' does not have the app role '{ADMIN_ROLE}' on '{ADMIN_AUDIENCE}' required to use the admin API.",
                principal.app_id, principal.object_id
            ),
        ))
    }
}

impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> Self {
        let description = error.to_string().replace('"', "'");
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            format!("Authentication failed: {error}."),
        )
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&format!(
                "Bearer error=\"invalid_token\", error_description=\"{description}\""
            ))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer error=\"invalid_token\"")),
        )
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HealthBody {
    status: &'static str,
    service: &'static str,
    storage: &'static str,
}

async fn health<H: AdminHooks>(State(plane): State<AdminPlane<H>>) -> Response {
    let ok = plane.hooks.healthy().await;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = HealthBody {
        status: if ok { "Healthy" } else { "Unhealthy" },
        service: plane.service,
        storage: if ok { "ok" } else { "unavailable" },
    };
    (status, Json(body)).into_response()
}

async fn ca_pem<H: AdminHooks>(State(plane): State<AdminPlane<H>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        plane.ca_pem.clone(),
    )
        .into_response()
}

/// The clock as `/admin/clock` shows it.
#[derive(Serialize, Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ClockView {
    pub now: String,
    pub unix: i64,
    pub offset_seconds: i64,
}

impl ClockView {
    pub fn of(clock: &SimClock) -> Self {
        ClockView {
            now: clock.now().to_rfc3339_opts(SecondsFormat::Secs, true),
            unix: clock.unix(),
            offset_seconds: clock.offset_seconds(),
        }
    }
}

/// Body of `POST /admin/clock`: exactly one of the fields.
#[derive(Deserialize, Serialize, Debug, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClockMove {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advance_seconds: Option<i64>,
    /// RFC 3339 time, e.g. `2027-01-01T00:00:00Z`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
    /// `true` returns to real time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset: Option<bool>,
}

async fn get_clock<H: AdminHooks>(State(plane): State<AdminPlane<H>>) -> Json<ClockView> {
    Json(ClockView::of(&plane.clock))
}

async fn move_clock<H: AdminHooks>(
    State(plane): State<AdminPlane<H>>,
    Authenticated(principal, _): Authenticated<ApiError>,
    body: axum::body::Bytes,
) -> Result<Json<ClockView>, ApiError> {
    require_admin(&principal)?;
    let request: ClockMove = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "InvalidRequestContent",
            format!(
                "The request body must be JSON with one of 'advanceSeconds', 'set' or 'reset': {e}"
            ),
        )
    })?;
    let result = match (request.advance_seconds, request.set, request.reset) {
        (Some(seconds), None, None) => plane.clock.advance(seconds),
        (None, Some(at), None) => {
            let at = DateTime::parse_from_rfc3339(&at).map_err(|e| {
                ApiError::bad_request(
                    "InvalidRequestContent",
                    format!("'set' must be an RFC 3339 time such as 2027-01-01T00:00:00Z: {e}"),
                )
            })?;
            plane.clock.set(at.with_timezone(&Utc))
        }
        (None, None, Some(true)) => plane.clock.set(Utc::now()),
        _ => {
            return Err(ApiError::bad_request(
                "InvalidRequestContent",
                "Give exactly one of 'advanceSeconds' (seconds, not negative), 'set' (RFC 3339 time) or 'reset': true.",
            ));
        }
    };
    result.map_err(|e| match e {
        ClockError::Persist(_) => ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "ClockNotPersisted",
            e.to_string(),
        ),
        _ => ApiError::bad_request("InvalidRequestContent", e.to_string()),
    })?;
    tracing::info!(
        service = plane.service,
        offset_seconds = plane.clock.offset_seconds(),
        "simulated clock moved"
    );
    Ok(Json(ClockView::of(&plane.clock)))
}

async fn reset<H: AdminHooks>(
    State(plane): State<AdminPlane<H>>,
    Authenticated(principal, _): Authenticated<ApiError>,
) -> Result<StatusCode, ApiError> {
    require_admin(&principal)?;
    plane.hooks.reset().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ResetFailed",
            format!("The reset did not complete: {e}"),
        )
    })?;
    tracing::warn!(service = plane.service, "state reset");
    Ok(StatusCode::NO_CONTENT)
}
