//! The ARM endpoint: authentication, `api-version`, correlation ids, Key Vault forwarding,
//! and dispatch of case-insensitive paths to the handlers in [`resources`] and [`vault`].

mod data_plane;
mod resources;
mod vault;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use sim_core::ApiError;
use sim_core::SimClock;
use sim_core::auth::TokenVerifier;
use sqlx::SqlitePool;

use crate::arm::ArmCall;
use crate::backup::Backup;
use crate::error::{Result, VsError};
use crate::vaults::Vaults;

pub struct Shared {
    pub pool: SqlitePool,
    /// Subscription roles of callers.
    pub roles: Arc<sim_core::rbac::Roles>,
    pub clock: SimClock,
    pub vaults: Vaults,
    pub backup: Backup,
    pub data: crate::dataplane::DataPlane,
    pub passphrases: crate::passphrase::PassphraseSaver,
    pub arm_verifier: Arc<TokenVerifier>,
    pub admin_verifier: Arc<TokenVerifier>,
    /// keyvault-sim's management plane, where `Microsoft.KeyVault` requests go.
    pub keyvault_management: Option<String>,
    pub keyvault_dns: Option<String>,
    pub http: reqwest::Client,
}

pub type VsState = Arc<Shared>;

pub fn router(state: VsState) -> Router {
    Router::new()
        .fallback(entry)
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::dataplane::MAX_PACK_BYTES + 1024 * 1024,
        ))
        .with_state(state)
}

/// ARM bodies are small; only pack uploads may be large.
const MAX_ARM_BODY: usize = 4 * 1024 * 1024;

async fn entry(
    State(state): State<VsState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let correlation = headers
        .get("x-ms-correlation-request-id")
        .or_else(|| headers.get("x-ms-client-request-id"))
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .expect("a uuid is a header value")
        });
    let mut response = match handle(&state, method, &uri, &headers, body).await {
        Ok(response) => response,
        Err(Failure::Vs(error)) => error.into_response(),
        Err(Failure::Api(error)) => error.into_response(),
    };
    response
        .headers_mut()
        .insert("x-ms-correlation-request-id", correlation);
    response
}

enum Failure {
    Vs(VsError),
    Api(ApiError),
}

impl From<VsError> for Failure {
    fn from(error: VsError) -> Self {
        Failure::Vs(error)
    }
}

async fn handle(
    state: &VsState,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let origin = sim_core::arm::request_authority(uri, headers);
    // ARM tolerates doubled slashes (the Azure CLI sends `//metadata/endpoints`).
    let normalised = collapse_slashes(uri.path());
    let path = normalised.as_str();
    if path.eq_ignore_ascii_case("/metadata/endpoints") {
        return Ok(resources::metadata_endpoints(
            state,
            &origin,
            uri.query().unwrap_or_default(),
        ));
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if path.starts_with("/backup/v1/") {
        let caller = state
            .arm_verifier
            .verify_header(authorization)
            .await
            .map_err(|e| Failure::Api(e.into()))?;
        return Ok(data_plane::handle(state, caller, method, path, headers, body).await?);
    }
    if body.len() > MAX_ARM_BODY {
        return Err(VsError::BadRequest(format!(
            "Request bodies are limited to {MAX_ARM_BODY} bytes."
        ))
        .into());
    }
    let query: BTreeMap<String, String> =
        serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
    if !query.contains_key("api-version") {
        return Err(VsError::MissingApiVersion.into());
    }
    if path
        .to_ascii_lowercase()
        .contains("/providers/microsoft.keyvault")
    {
        let Some(target) = &state.keyvault_management else {
            return Err(VsError::NoRoute {
                method: method.to_string(),
                path: path.to_string(),
            }
            .into());
        };
        return Ok(crate::forward::forward(
            &state.http,
            target,
            &origin,
            method,
            uri,
            headers,
            body,
        )
        .await);
    }
    let caller = state
        .arm_verifier
        .verify_header(authorization)
        .await
        .map_err(|e| Failure::Api(e.into()))?;
    let call = ArmCall::new(caller, method, path, query, origin, body);
    Ok(dispatch(state, &call).await?)
}

async fn dispatch(state: &VsState, call: &ArmCall) -> Result<Response> {
    let lower = call.lower();
    match lower.as_slice() {
        ["subscriptions"] | ["tenants"] | ["subscriptions", _] => {
            resources::subscriptions(state, call).await
        }
        ["subscriptions", _, "resourcegroups"] | ["subscriptions", _, "resourcegroups", _] => {
            resources::resource_groups(state, call).await
        }
        [
            "subscriptions",
            _,
            "providers",
            "microsoft.recoveryservices",
            "vaults",
        ] => vault::list(state, call, None).await,
        [
            "subscriptions",
            _,
            "resourcegroups",
            _,
            "providers",
            "microsoft.recoveryservices",
            "vaults",
        ] => vault::list(state, call, Some(call.segment(3))).await,
        [
            "subscriptions",
            _,
            "resourcegroups",
            _,
            "providers",
            "microsoft.recoveryservices",
            "locations",
            _,
            "checknameavailability",
        ] => vault::check_name(state, call).await,
        [
            "subscriptions",
            _,
            "resourcegroups",
            _,
            "providers",
            "microsoft.recoveryservices",
            "vaults",
            _,
            ..,
        ] => vault::dispatch(state, call).await,
        _ => Err(call.no_route()),
    }
}

fn collapse_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    out
}

/// Requires a role on the subscription covering `action` (writes need Owner/Contributor).
pub(crate) async fn authorize(state: &VsState, call: &ArmCall, action: &str) -> Result<()> {
    let write = !matches!(call.method, Method::GET | Method::HEAD);
    let subscription = call.segments.get(1).map(String::as_str).unwrap_or_default();
    state
        .roles
        .authorize(&call.caller, subscription, action, write)
        .await?;
    Ok(())
}
