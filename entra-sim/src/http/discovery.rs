//! OpenID discovery (v2 and v1), the JWKS, and instance discovery. URLs in the documents
//! use the host the client used, so `https://localhost:10010`, `https://127.0.0.1:10010`
//! and `https://login.localhost:10010` all describe themselves correctly.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{EntraState, oauth_context, origin};
use crate::error::EntraError;

/// The tenant id to put in documents: generic segments keep Entra's `{tenantid}` marker.
async fn tenant_in_documents(state: &EntraState, segment: &str) -> Result<String, EntraError> {
    if matches!(
        segment.to_ascii_lowercase().as_str(),
        "common" | "organizations" | "consumers"
    ) {
        return Ok("{tenantid}".into());
    }
    Ok(state
        .issuer
        .directory
        .resolve_tenant(segment)
        .await?
        .ok_or_else(|| EntraError::TenantNotFound(segment.to_string()))?
        .id)
}

pub async fn openid_configuration_v2(
    State(state): State<EntraState>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let tid = match tenant_in_documents(&state, &tenant).await {
        Ok(tid) => tid,
        Err(e) => {
            return e.oauth_response(&oauth_context(&headers, None), state.issuer.clock.now());
        }
    };
    let base = format!("{}/{tenant}", origin(&uri, &headers));
    Json(json!({
        "token_endpoint": format!("{base}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{}/{tid}/v2.0", origin(&uri, &headers)),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "cloud_instance_name", "cloud_instance_host_name", "cloud_graph_host_name", "msgraph_host", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"],
        "kerberos_endpoint": format!("{base}/kerberos"),
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net",
    }))
    .into_response()
}

pub async fn openid_configuration_v1(
    State(state): State<EntraState>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let tid = match tenant_in_documents(&state, &tenant).await {
        Ok(tid) => tid,
        Err(e) => {
            return e.oauth_response(&oauth_context(&headers, None), state.issuer.clock.now());
        }
    };
    let base = format!("{}/{tenant}", origin(&uri, &headers));
    Json(json!({
        "token_endpoint": format!("{base}/oauth2/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{}/common/discovery/keys", origin(&uri, &headers)),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
        "scopes_supported": ["openid"],
        "issuer": format!("https://sts.windows.net/{tid}/"),
        "authorization_endpoint": format!("{base}/oauth2/authorize"),
        "device_authorization_endpoint": format!("{base}/oauth2/devicecode"),
        "end_session_endpoint": format!("{base}/oauth2/logout"),
        "cloud_instance_name": "microsoftonline.com",
        "tenant_region_scope": "EU",
    }))
    .into_response()
}

/// JWKS: the current and the previous signing key.
pub async fn jwks(
    State(state): State<EntraState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = tenant_in_documents(&state, &tenant).await {
        return e.oauth_response(&oauth_context(&headers, None), state.issuer.clock.now());
    }
    Json(state.issuer.keys.jwks()).into_response()
}

#[derive(Deserialize)]
pub struct InstanceQuery {
    authorization_endpoint: Option<String>,
}

/// `GET /common/discovery/instance` for clients that cannot turn instance discovery off.
pub async fn instance_discovery(
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<InstanceQuery>,
) -> Response {
    let host = origin(&uri, &headers);
    let tenant = query
        .authorization_endpoint
        .as_deref()
        .and_then(|url| url.split_once("://").map(|(_, rest)| rest))
        .and_then(|rest| rest.split('/').nth(1))
        .filter(|segment| !segment.is_empty())
        .unwrap_or("common")
        .to_string();
    let bare_host = host.trim_start_matches("https://");
    Json(json!({
        "tenant_discovery_endpoint": format!("{host}/{tenant}/v2.0/.well-known/openid-configuration"),
        "api-version": "1.1",
        "metadata": [{"preferred_network": bare_host, "preferred_cache": bare_host, "aliases": [bare_host]}],
    }))
    .into_response()
}
