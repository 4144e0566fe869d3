//! entra-sim's HTTP surface: routing and the wire helpers the handlers share. Handlers
//! translate requests into calls on the directory and the token issuer.

mod admin_api;
mod authorize;
mod discovery;
mod managed_identity;
mod oauth;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use sim_core::ApiError;
use sim_core::auth::TokenVerifier;
use sim_core::server::RequestId;

use crate::error::OAuthContext;
use crate::issuance::TokenIssuer;

#[derive(Clone)]
pub struct EntraState {
    pub issuer: TokenIssuer,
    /// Authorization codes of interactive sign-ins, until redeemed.
    pub sign_ins: Arc<crate::interactive::SignIns>,
    /// Verifies admin-plane tokens (entra-sim checks its own keys in-process).
    pub admin_verifier: Arc<TokenVerifier>,
}

impl FromRef<EntraState> for Arc<TokenVerifier> {
    fn from_ref(state: &EntraState) -> Self {
        state.admin_verifier.clone()
    }
}

/// The HTTPS routes: OAuth, discovery, JWKS and the directory admin API.
pub fn router(state: EntraState) -> Router {
    Router::new()
        .route(
            "/{tenant}/oauth2/v2.0/token",
            post(oauth::token_v2).get(oauth::token_v2),
        )
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(authorize::page).post(authorize::sign_in),
        )
        .route(
            "/{tenant}/oauth2/token",
            post(oauth::token_v1).get(oauth::token_v1),
        )
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(discovery::openid_configuration_v2),
        )
        .route(
            "/{tenant}/.well-known/openid-configuration",
            get(discovery::openid_configuration_v1),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(discovery::jwks))
        .route("/{tenant}/discovery/keys", get(discovery::jwks))
        .route(
            "/common/discovery/instance",
            get(discovery::instance_discovery),
        )
        .route(
            "/admin/tenants",
            get(admin_api::list_tenants).post(admin_api::create_tenant),
        )
        .route(
            "/admin/tenants/{tenant}",
            get(admin_api::get_tenant).delete(admin_api::delete_tenant),
        )
        .route(
            "/admin/tenants/{tenant}/applications",
            get(admin_api::list_applications).post(admin_api::create_application),
        )
        .route(
            "/admin/tenants/{tenant}/applications/{app_id}",
            get(admin_api::get_application).delete(admin_api::delete_application),
        )
        .route(
            "/admin/tenants/{tenant}/applications/{app_id}/secrets",
            post(admin_api::add_secret),
        )
        .route(
            "/admin/tenants/{tenant}/applications/{app_id}/secrets/{key_id}",
            delete(admin_api::remove_secret),
        )
        .route(
            "/admin/tenants/{tenant}/applications/{app_id}/certificates",
            post(admin_api::add_certificate),
        )
        .route(
            "/admin/tenants/{tenant}/applications/{app_id}/certificates/{key_id}",
            delete(admin_api::remove_certificate),
        )
        .route(
            "/admin/tenants/{tenant}/servicePrincipals",
            get(admin_api::list_service_principals),
        )
        .route(
            "/admin/tenants/{tenant}/managedIdentities",
            get(admin_api::list_managed_identities).post(admin_api::create_managed_identity),
        )
        .route(
            "/admin/tenants/{tenant}/managedIdentities/{principal_id}",
            delete(admin_api::delete_managed_identity),
        )
        .route(
            "/admin/tenants/{tenant}/appRoleAssignments",
            get(admin_api::list_role_assignments).post(admin_api::create_role_assignment),
        )
        .route(
            "/admin/tenants/{tenant}/appRoleAssignments/{id}",
            delete(admin_api::delete_role_assignment),
        )
        .route(
            "/admin/signingKeys/rotate",
            post(admin_api::rotate_signing_key),
        )
        .fallback(not_found)
        .with_state(state)
}

/// The plain-HTTP managed-identity routes (and `/health`, as every port answers it).
pub fn managed_identity_router(state: EntraState) -> Router {
    Router::new()
        .route("/msi/token", get(managed_identity::app_service_token))
        .route(
            "/metadata/identity/oauth2/token",
            get(managed_identity::imds_token),
        )
        .route("/health", get(managed_identity::health))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(
            managed_identity::refuse_forwarded,
        ))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("entra-sim has no endpoint at '{}'.", uri.path()),
    )
}

/// `https://<host the client used>`: the HTTP/2 `:authority` (in the URI) or the HTTP/1.1
/// `Host` header; falls back to `localhost` for a missing or odd value.
pub(crate) fn origin(uri: &axum::http::Uri, headers: &HeaderMap) -> String {
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            headers
                .get(axum::http::header::HOST)
                .and_then(|v| v.to_str().ok())
        })
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .unwrap_or("localhost");
    format!("https://{host}")
}

/// Trace and correlation ids for an OAuth error body: the correlation id echoes the
/// client's `client-request-id` when it sent one, as Entra does.
/// The trace id is the request id (`x-ms-request-id`), as on Entra.
pub(crate) fn oauth_context(headers: &HeaderMap, request_id: Option<RequestId>) -> OAuthContext {
    let correlation_id = ["client-request-id", "x-ms-client-request-id"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
        .and_then(|v| uuid::Uuid::parse_str(v).ok())
        .unwrap_or_else(uuid::Uuid::new_v4);
    OAuthContext {
        trace_id: request_id
            .map_or_else(uuid::Uuid::new_v4, |id| id.0)
            .to_string(),
        correlation_id: correlation_id.to_string(),
    }
}
