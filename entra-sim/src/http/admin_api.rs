//! The directory admin API (`/admin/tenants/...`, `/admin/signingKeys/rotate`): create,
//! list and delete tenants, app registrations and their credentials, managed identities
//! and app-role assignments. Every call needs an admin-plane token (`api://azsim`,
//! role `Azsim.Admin`), which the well-known admin app can get.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use sim_core::ApiError;
use sim_core::admin::require_admin;
use sim_core::auth::Authenticated;

use super::EntraState;
use crate::directory::{NewApplication, NewManagedIdentity, NewTenant};

type Admin = Authenticated<ApiError>;
type ApiResult = Result<Response, ApiError>;

fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(
            "InvalidRequestContent",
            format!("The request body is not valid: {e}"),
        )
    })
}

fn created<T: serde::Serialize>(value: T) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
}

fn list<T: serde::Serialize>(values: Vec<T>) -> Response {
    Json(json!({ "value": values })).into_response()
}

pub async fn list_tenants(State(s): State<EntraState>, Authenticated(p, _): Admin) -> ApiResult {
    require_admin(&p)?;
    Ok(list(s.issuer.directory.list_tenants().await?))
}

pub async fn create_tenant(
    State(s): State<EntraState>,
    Authenticated(p, _): Admin,
    b: Bytes,
) -> ApiResult {
    require_admin(&p)?;
    let new: NewTenant = body(&b)?;
    Ok(created(
        s.issuer
            .directory
            .create_tenant(new, s.issuer.clock.unix())
            .await?,
    ))
}

pub async fn get_tenant(
    State(s): State<EntraState>,
    Authenticated(p, _): Admin,
    Path(t): Path<String>,
) -> ApiResult {
    require_admin(&p)?;
    Ok(Json(s.issuer.directory.tenant(&t).await?).into_response())
}

pub async fn delete_tenant(
    State(s): State<EntraState>,
    Authenticated(p, _): Admin,
    Path(t): Path<String>,
) -> ApiResult {
    require_admin(&p)?;
    s.issuer.directory.delete_tenant(&t).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list_applications(
    State(s): State<EntraState>,
    Authenticated(p, _): Admin,
    Path(t): Path<String>,
) -> ApiResult {
    require_admin(&p)?;
    Ok(list(s.issuer.directory.list_applications(&t).await?))
}

pub async fn create_application(
    State(s): State<EntraState>,
    Authenticated(p, _): Admin,
    Path(t): Path<String>,
    b: Bytes,
) -> ApiResult {
    require_admin(&p)?;
    let new: NewApplication = body(&b)?;
    Ok(created(
        s.issuer
            .directory
            .create_application(&t, new, s.issuer.clock.unix())
            .await?,
    ))
}

pub async fn get_application(
    State(s): State<EntraState>,
    Authenticated(p, _): Admin,
    Path((t, app)): Path<(String, String)>,
) -> ApiResult {
    require_admin(&p)?;
    Ok(Json(s.issuer.directory.application(&t, &app).await?).into_response())
}

pub async fn delete_application(
    State(s): State<EntraState>,
    Authenticated(p, _): Admin,
    Path((t, app)): Path<(String, String)>,
) -> ApiResult {
    require_admin(&p)?;
    s.issuer.directory.delete_application(&t, &app).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewSecretRequest {
    display_name: Option<String>,
    /// Unix seconds; two years from now when absent.
    end_date_time: Option<i64>,
    /// A chosen secret (fixtures, seed files); generated when absent, as Graph always does.
    secret_text: Option<String>,
}

pub async fn add_secret(
    State(s): State<EntraState>,
    Authenticated(p, _): Admin,
    Path((t, app)): Path<(String, String)>,
    b: Bytes,
) -> ApiResult {
    require_admin(&p)?;
    let request: NewSecretRequest = if b.is_empty() {
        NewSecretRequest::default()
    } else {
        body(&b)?
    };
    let secret = s
        .issuer
        .directory
        .add_password(
            &t,
            &app,
            request.display_name,
            request.end_date_time,
            request.secret_text,
            s.issuer.clock.unix(),
        )
        .await?;
    Ok(created(secret))
}

pub async fn remove_secret(
    State(s): State<EntraState>,
    Authenticated(p, _): Admin,
    Path((t, app, key)): Path<(String, String, String)>,
) -> ApiResult {
    require_admin(&p)?;
    s.issuer.directory.remove_password(&t, &app, &key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewCertificateRequest {
    /// PEM certificate, or base64 DER.
    certificate: String,
    display_name: Option<String>,
}

pub async fn add_certificate(
    State(s): State<EntraState>,
    Authenticated(p, _): Admin,
    Path((t, app)): Path<(String, String)>,
    b: Bytes,
) -> ApiResult {
    require_admin(&p)?;
    let request: NewCertificateRequest = body(&b)?;
    let credential = s
        .issuer
        .directory
        .add_certificate(&t, &app, &request.certificate, request.display_name)
        .await?;
    Ok(created(credential))
}

pub async fn remove_certificate(
    State(s): State<EntraState>,
    Authenticated(p, _): Admin,
    Path((t, app, key)): Path<(String, String, String)>,
) -> ApiResult {
    require_admin(&p)?;
    s.issuer
        .directory
        .remove_certificate(&t, &app, &key)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list_service_principals(
    State(s): State<EntraState>,
    Authenticated(p, _): Admin,
    Path(t): Path<String>,
) -> ApiResult {
    require_admin(&p)?;
    Ok(list(s.issuer.directory.list_service_principals(&t).await?))
}

pub async fn list_managed_identities(
    State(s): State<EntraState>,
    Authenticated(p, _): Admin,
    Path(t): Path<String>,
) -> ApiResult {
    require_admin(&p)?;
    Ok(list(s.issuer.directory.list_managed_identities(&t).await?))
}

pub async fn create_managed_identity(
    State(s): State<EntraState>,
    Authenticated(p, _): Admin,
    Path(t): Path<String>,
    b: Bytes,
) -> ApiResult {
    require_admin(&p)?;
    let new: NewManagedIdentity = body(&b)?;
    Ok(created(
        s.issuer
            .directory
            .create_managed_identity(&t, new, s.issuer.clock.unix())
            .await?,
    ))
}

pub async fn delete_managed_identity(
    State(s): State<EntraState>,
    Authenticated(p, _): Admin,
    Path((t, principal)): Path<(String, String)>,
) -> ApiResult {
    require_admin(&p)?;
    s.issuer
        .directory
        .delete_managed_identity(&t, &principal)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewAssignmentRequest {
    principal_id: String,
    resource_app_id: String,
    app_role: String,
}

pub async fn list_role_assignments(
    State(s): State<EntraState>,
    Authenticated(p, _): Admin,
    Path(t): Path<String>,
) -> ApiResult {
    require_admin(&p)?;
    Ok(list(
        s.issuer.directory.list_app_role_assignments(&t).await?,
    ))
}

pub async fn create_role_assignment(
    State(s): State<EntraState>,
    Authenticated(p, _): Admin,
    Path(t): Path<String>,
    b: Bytes,
) -> ApiResult {
    require_admin(&p)?;
    let r: NewAssignmentRequest = body(&b)?;
    let assignment = s
        .issuer
        .directory
        .assign_app_role(
            &t,
            &r.principal_id,
            &r.resource_app_id,
            &r.app_role,
            s.issuer.clock.unix(),
        )
        .await?;
    Ok(created(assignment))
}

pub async fn delete_role_assignment(
    State(s): State<EntraState>,
    Authenticated(p, _): Admin,
    Path((t, id)): Path<(String, String)>,
) -> ApiResult {
    require_admin(&p)?;
    s.issuer
        .directory
        .delete_app_role_assignment(&t, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Rotates the token-signing key: the JWKS then holds the new and the previous key.
pub async fn rotate_signing_key(
    State(s): State<EntraState>,
    Authenticated(p, _): Admin,
) -> ApiResult {
    require_admin(&p)?;
    let kid = s.issuer.keys.rotate(s.issuer.clock.unix()).await?;
    Ok(Json(json!({ "currentKid": kid })).into_response())
}
