//! The managed-identity endpoint, over plain HTTP as Azure's is (SDKs allow http only
//! there): the App Service protocol (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`) at
//! `/msi/token`, and the IMDS protocol at `/metadata/identity/oauth2/token`.
//! Without a selector the token is for the well-known host identity; `client_id`,
//! `object_id`/`principal_id` or `mi_res_id`/`msi_res_id` pick another identity.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sim_core::well_known::IDENTITY_HEADER;

use super::EntraState;
use crate::directory::IdentitySelector;
use crate::error::EntraError;

/// Azure's IMDS refuses any request carrying `X-Forwarded-For`: a proxy relaying requests
/// from elsewhere must not obtain the host's tokens. Both protocols refuse it here.
pub async fn refuse_forwarded(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.headers().contains_key("x-forwarded-for") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": "invalid_request",
                "error_description": "Request contains the X-Forwarded-For header: the managed-identity endpoint answers only requests made on this host, never forwarded ones.",
            })),
        )
            .into_response();
    }
    next.run(request).await
}

/// `GET /health` on the managed-identity port.
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "healthy", "service": "entra-sim managed identity"}))
}

/// Query parameters naming an identity, per protocol.
const APP_SERVICE_SELECTORS: &[&str] = &["client_id", "object_id", "principal_id", "mi_res_id"];
const IMDS_SELECTORS: &[&str] = &["client_id", "object_id", "msi_res_id", "mi_res_id"];

fn selector(
    query: &HashMap<String, String>,
    allowed: &[&str],
) -> Result<Option<IdentitySelector>, String> {
    let given: Vec<&&str> = allowed
        .iter()
        .filter(|name| query.contains_key(**name))
        .collect();
    if given.len() > 1 {
        return Err(format!(
            "Give at most one of {}; got {}.",
            allowed.join(", "),
            given.len()
        ));
    }
    Ok(given.first().map(|name| {
        let value = query[**name].clone();
        match **name {
            "client_id" => IdentitySelector::ClientId(value),
            "object_id" | "principal_id" => IdentitySelector::ObjectId(value),
            _ => IdentitySelector::ResourceId(value),
        }
    }))
}

/// App Service protocol (`api-version=2019-08-01`); errors are `{"statusCode","message"}`.
pub async fn app_service_token(
    State(state): State<EntraState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let fail = |status: StatusCode, message: String| {
        (status, Json(json!({"statusCode": status.as_u16(), "message": message, "correlationId": uuid::Uuid::new_v4()}))).into_response()
    };
    match headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
    {
        None => {
            return fail(
                StatusCode::UNAUTHORIZED,
                "The X-IDENTITY-HEADER header is missing; send the value of IDENTITY_HEADER."
                    .into(),
            );
        }
        Some(value) if value != IDENTITY_HEADER => {
            return fail(
                StatusCode::UNAUTHORIZED,
                "The X-IDENTITY-HEADER value does not match this endpoint's IDENTITY_HEADER."
                    .into(),
            );
        }
        Some(_) => {}
    }
    if !query.contains_key("api-version") {
        return fail(
            StatusCode::BAD_REQUEST,
            "The query parameter 'api-version' is required (e.g. 2019-08-01).".into(),
        );
    }
    let Some(resource) = query.get("resource") else {
        return fail(
            StatusCode::BAD_REQUEST,
            "The query parameter 'resource' is required (e.g. https://vault.azure.net).".into(),
        );
    };
    let selector = match selector(&query, APP_SERVICE_SELECTORS) {
        Ok(s) => s,
        Err(message) => return fail(StatusCode::BAD_REQUEST, message),
    };
    match state.issuer.managed_identity(selector, resource).await {
        Ok((token, identity)) => Json(json!({
            "access_token": token.access_token,
            "expires_on": token.expires_on.to_string(),
            "resource": token.resource,
            "token_type": "Bearer",
            "client_id": identity.client_id,
        }))
        .into_response(),
        Err(EntraError::NotFound { id, .. }) => fail(
            StatusCode::BAD_REQUEST,
            format!("No managed identity '{id}' is assigned to this host."),
        ),
        Err(e @ (EntraError::Storage(_) | EntraError::Crypto(_))) => {
            fail(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        Err(e) => fail(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// IMDS protocol (`api-version=2018-02-01`); errors are OAuth-shaped like IMDS's.
pub async fn imds_token(
    State(state): State<EntraState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let fail = |status: StatusCode, error: &str, description: String| {
        (
            status,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    let metadata = headers.get("metadata").and_then(|v| v.to_str().ok());
    if !metadata.is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required metadata header not specified".into(),
        );
    }
    if !query.contains_key("api-version") {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'api-version' is missing".into(),
        );
    }
    let Some(resource) = query.get("resource") else {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query variable 'resource' is missing".into(),
        );
    };
    let selector = match selector(&query, IMDS_SELECTORS) {
        Ok(s) => s,
        Err(message) => return fail(StatusCode::BAD_REQUEST, "invalid_request", message),
    };
    match state.issuer.managed_identity(selector, resource).await {
        Ok((token, identity)) => Json(json!({
            "access_token": token.access_token,
            "client_id": identity.client_id,
            "expires_in": token.expires_in.to_string(),
            "expires_on": token.expires_on.to_string(),
            "ext_expires_in": token.expires_in.to_string(),
            "not_before": token.not_before.to_string(),
            "resource": token.resource,
            "token_type": "Bearer",
        }))
        .into_response(),
        Err(EntraError::NotFound { .. }) => fail(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Identity not found".into(),
        ),
        Err(e @ EntraError::ResourceNotFound { .. }) => fail(
            StatusCode::BAD_REQUEST,
            "invalid_resource",
            format!("AADSTS500011: {e}"),
        ),
        Err(e @ (EntraError::Storage(_) | EntraError::Crypto(_))) => fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            e.to_string(),
        ),
        Err(e) => fail(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()),
    }
}
