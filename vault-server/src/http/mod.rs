//! The ARM endpoint: authentication, `api-version`, correlation ids, Key Vault forwarding,
//! and dispatch of case-insensitive paths to the handlers in [`resources`] and [`vault`].

mod crr;
mod data_plane;
mod regions;
pub use regions::admin_router as regions_admin_router;
mod resources;
mod vault;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use sim_core::ApiError;
use sim_core::SimClock;
use sim_core::auth::TokenVerifier;
use sqlx::SqlitePool;

use crate::arm::{self, ArmCall, CallExt};
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
    pub lifecycle: crate::lifecycle::Lifecycle,
    /// Backup data by region and zone; replication; regional outages.
    pub blobs: Arc<crate::blobs::Blobs>,
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
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

/// ARM bodies are small; only the data plane's pack uploads and commits are large.
const MAX_ARM_BODY: usize = 4 * 1024 * 1024;

/// Reads a body only after the caller is authenticated, and at most `limit` bytes of it
/// (refused from `Content-Length` before reading when that says more).
pub(crate) async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes> {
    check_declared_length(headers, limit)?;
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => Err(body_error(error, limit)),
    }
}

/// The body as the frames it arrived in (a pack is stored from them without joining them).
pub(crate) async fn read_body_parts(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Vec<Bytes>> {
    use http_body_util::BodyExt;
    check_declared_length(headers, limit)?;
    let mut body = http_body_util::Limited::new(body, limit);
    let mut parts = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| body_error(error, limit))?;
        if let Ok(data) = frame.into_data() {
            parts.push(data);
        }
    }
    Ok(parts)
}

fn too_large(limit: usize) -> VsError {
    VsError::PayloadTooLarge(format!(
        "The request body is larger than this operation accepts ({limit} bytes)."
    ))
}

fn check_declared_length(headers: &HeaderMap, limit: usize) -> Result<()> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared.is_some_and(|length| length > limit as u64) {
        true => Err(too_large(limit)),
        false => Ok(()),
    }
}

fn body_error(error: Box<dyn std::error::Error + Send + Sync>, limit: usize) -> VsError {
    if error.is::<http_body_util::LengthLimitError>() {
        return too_large(limit);
    }
    VsError::RequestTimeout(
        "The request body stopped arriving before it was complete; send it again.".into(),
    )
}

async fn entry(State(state): State<VsState>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let (method, uri, headers) = (parts.method, parts.uri, parts.headers);
    let correlation = sim_core::arm::correlation_id(&headers);
    let mut response = match handle(&state, method, &uri, &headers, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    response
        .headers_mut()
        .insert("x-ms-correlation-request-id", correlation);
    response
}

async fn handle(
    state: &VsState,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
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
            .map_err(ApiError::from)?;
        return Ok(data_plane::handle(state, caller, method, path, headers, body).await?);
    }
    let query: BTreeMap<String, String> =
        serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
    sim_core::arm::require_api_version(&query)?;
    let lower_path = path.to_ascii_lowercase();
    if lower_path.contains("/providers/microsoft.keyvault") {
        if let Some(answer) = key_vault_here(state, &method, &lower_path, authorization).await? {
            return Ok(answer);
        }
        let Some(target) = &state.keyvault_management else {
            return Err(VsError::NoRoute {
                method: method.to_string(),
                path: path.to_string(),
            }
            .into());
        };
        let body = read_body(headers, body, MAX_ARM_BODY).await?;
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
        .map_err(ApiError::from)?;
    let body = read_body(headers, body, MAX_ARM_BODY).await?;
    let call = ArmCall::new(caller, method, path, query, origin, body);
    Ok(dispatch(state, &call, authorization.unwrap_or_default()).await?)
}

/// The parts of `Microsoft.KeyVault` that vault-server answers itself before forwarding to
/// keyvault-sim: managed HSMs are not simulated (their lists are empty), and a vault is
/// created only in a resource group that exists here, the one set of groups.
async fn key_vault_here(
    state: &VsState,
    method: &Method,
    lower_path: &str,
    authorization: Option<&str>,
) -> Result<Option<Response>, ApiError> {
    let segments: Vec<&str> = lower_path.trim_matches('/').split('/').collect();
    let hsm_list = matches!(
        segments.as_slice(),
        [
            "subscriptions",
            _,
            "providers",
            "microsoft.keyvault",
            "deletedmanagedhsms" | "managedhsms"
        ] | [
            "subscriptions",
            _,
            "resourcegroups",
            _,
            "providers",
            "microsoft.keyvault",
            "managedhsms"
        ]
    );
    let creates_vault = *method == Method::PUT
        && matches!(
            segments.as_slice(),
            [
                "subscriptions",
                _,
                "resourcegroups",
                _,
                "providers",
                "microsoft.keyvault",
                "vaults",
                _
            ]
        );
    if !hsm_list && !creates_vault {
        return Ok(None);
    }
    state
        .arm_verifier
        .verify_header(authorization)
        .await
        .map_err(ApiError::from)?;
    if hsm_list {
        return Ok(Some(arm::ok(serde_json::json!({"value": []}))));
    }
    // Names as sent (the lower-cased copy is only for matching).
    let (subscription, group) = (segments[1], segments[3]);
    let groups = crate::groups::list(&state.pool, subscription).await?;
    if !groups.iter().any(|g| g.name.eq_ignore_ascii_case(group)) {
        return Err(VsError::ResourceGroupNotFound(group.to_string()).into());
    }
    Ok(None)
}

async fn dispatch(state: &VsState, call: &ArmCall, bearer: &str) -> Result<Response> {
    let lower = call.lower();
    match lower.as_slice() {
        ["subscriptions", _, "resources"] => {
            resources::generic_resources(state, call, bearer, None).await
        }
        ["subscriptions", _, "resourcegroups", _, "resources"] => {
            resources::generic_resources(state, call, bearer, Some(call.segment(3))).await
        }
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
            "providers",
            "microsoft.recoveryservices",
            "locations",
            _,
            "backupaadproperties",
        ] if call.method == Method::GET => {
            authorize(
                state,
                call,
                "Microsoft.RecoveryServices/locations/backupAadProperties/read",
            )
            .await?;
            crr::aad_properties(call, call.segment(5)).await
        }
        [
            "subscriptions",
            _,
            "providers",
            "microsoft.recoveryservices",
            "locations",
            _,
            "backupcrrjobs",
        ] if call.method == Method::POST => {
            authorize(
                state,
                call,
                "Microsoft.RecoveryServices/locations/backupCrrJobs/action",
            )
            .await?;
            crr::jobs(state, call).await
        }
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

/// Unregisters a server however it is asked for (the agent, or ARM as `az backup container
/// unregister` does): its machine identities stop working first, then its container, items
/// and encryption info go.
pub(crate) async fn unregister_server(
    state: &VsState,
    vault: &crate::vaults::Vault,
    server: &str,
) -> Result<bool> {
    // An immutable vault keeps the server's unexpired points: unregistering would delete them.
    state
        .lifecycle
        .check_removable(
            vault,
            Some(server),
            None,
            "unregistering the server",
            state.clock.unix(),
        )
        .await?;
    let apps = state.data.machine_apps(vault.id, server).await?;
    for app in &apps {
        state.data.remove_machine(app).await?;
        if let Err(error) = state.vaults.entra().delete_app(app).await {
            tracing::warn!(%error, app, "the machine identity could not be deleted from Entra");
        }
    }
    Ok(state.backup.unregister(vault, server).await? || !apps.is_empty())
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
