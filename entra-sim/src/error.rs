//! The one error type of entra-sim, and its two renderings: the OAuth error body of the
//! token endpoints (AADSTS codes, exactly as Entra shapes it) and the `{"error":{...}}`
//! envelope of the admin API.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::json;
use sim_core::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum EntraError {
    // --- token endpoint ---
    #[error("The request body must contain the following parameter: '{0}'.")]
    MissingParameter(&'static str),
    #[error("The request body must be application/x-www-form-urlencoded: {0}")]
    MalformedRequest(String),
    #[error("The endpoint only accepts POST requests. Received a {0} request.")]
    PostOnly(String),
    #[error(
        "The app requested an unsupported grant type '{0}'. Use 'client_credentials' (apps) or 'authorization_code' (interactive sign-in)."
    )]
    UnsupportedGrantType(String),
    /// An authorization code that cannot be redeemed (AADSTS code, message).
    #[error("{1}")]
    InvalidGrant(u32, String),
    #[error(
        "Tenant '{0}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
    )]
    TenantNotFound(String),
    #[error(
        "No tenant-identifying information found in either the request or implied by any provided credentials. Use a tenant-specific endpoint instead of '{0}'."
    )]
    TenantRequired(String),
    #[error(
        "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
    )]
    ApplicationNotFound { client_id: String, tenant: String },
    #[error(
        "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{0}'."
    )]
    InvalidClientSecret(String),
    #[error(
        "The provided client secret keys for app '{0}' are expired. Create a new secret for the app, or use certificate credentials."
    )]
    ExpiredClientSecret(String),
    #[error(
        "'client_assertion' or 'client_secret' is required for the 'client_credentials' grant type."
    )]
    MissingClientCredential,
    #[error("Give either 'client_secret' or 'client_assertion', not both.")]
    AmbiguousClientCredential,
    #[error("{message}")]
    InvalidClientAssertion { code: u32, message: String },
    #[error(
        "The provided value for the input parameter 'scope' is not valid: '{0}'. Client credential flows must request exactly one resource with the '/.default' suffix, e.g. 'https://management.azure.com/.default'."
    )]
    InvalidScope(String),
    #[error(
        "The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant. You might have sent your authentication request to the wrong tenant."
    )]
    ResourceNotFound { resource: String, tenant: String },

    // --- admin API ---
    #[error("{kind} '{id}' was not found.")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidInput(String),

    #[error("the directory is unavailable: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("key material could not be produced: {0}")]
    Crypto(String),
}

/// Request context an OAuth error body carries.
pub struct OAuthContext {
    pub trace_id: String,
    pub correlation_id: String,
}

impl EntraError {
    /// (HTTP status, OAuth `error`, AADSTS code) for the token endpoints.
    fn oauth_parts(&self) -> (StatusCode, &'static str, u32) {
        use EntraError::*;
        match self {
            MissingParameter(_) => (StatusCode::BAD_REQUEST, "invalid_request", 900144),
            MalformedRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request", 90023),
            PostOnly(_) => (StatusCode::BAD_REQUEST, "invalid_request", 900561),
            UnsupportedGrantType(_) => (StatusCode::BAD_REQUEST, "unsupported_grant_type", 70003),
            InvalidGrant(code, _) => (StatusCode::BAD_REQUEST, "invalid_grant", *code),
            TenantNotFound(_) => (StatusCode::BAD_REQUEST, "invalid_request", 90002),
            TenantRequired(_) => (StatusCode::BAD_REQUEST, "invalid_request", 50059),
            ApplicationNotFound { .. } => (StatusCode::BAD_REQUEST, "unauthorized_client", 700016),
            // 401, not 400: MSAL caches a 400 for 60 s and would mask a corrected retry.
            InvalidClientSecret(_) => (StatusCode::UNAUTHORIZED, "invalid_client", 7000215),
            ExpiredClientSecret(_) => (StatusCode::UNAUTHORIZED, "invalid_client", 7000222),
            MissingClientCredential => (StatusCode::UNAUTHORIZED, "invalid_client", 7000216),
            AmbiguousClientCredential => (StatusCode::BAD_REQUEST, "invalid_request", 90023),
            InvalidClientAssertion { code, .. } => {
                (StatusCode::UNAUTHORIZED, "invalid_client", *code)
            }
            InvalidScope(_) => (StatusCode::BAD_REQUEST, "invalid_scope", 70011),
            ResourceNotFound { .. } => (StatusCode::BAD_REQUEST, "invalid_resource", 500011),
            NotFound { .. } | InvalidInput(_) | Conflict(_) => {
                (StatusCode::BAD_REQUEST, "invalid_request", 90023)
            }
            Storage(_) | Crypto(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                90033,
            ),
        }
    }

    /// The Entra-shaped error response of the token endpoints.
    pub fn oauth_response(&self, ctx: &OAuthContext, now: DateTime<Utc>) -> Response {
        if matches!(self, EntraError::Storage(_) | EntraError::Crypto(_)) {
            tracing::error!(error = %self, "token request failed inside entra-sim");
        }
        let (status, error, code) = self.oauth_parts();
        let timestamp = now.format("%Y-%m-%d %H:%M:%SZ").to_string();
        let description = format!(
            "AADSTS{code}: {self}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {timestamp}",
            ctx.trace_id, ctx.correlation_id
        );
        let body = json!({
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": ctx.trace_id,
            "correlation_id": ctx.correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        });
        let mut response = (status, Json(body)).into_response();
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store, no-cache"),
        );
        response
    }
}

impl From<EntraError> for ApiError {
    fn from(error: EntraError) -> Self {
        use EntraError::*;
        match &error {
            NotFound { kind, .. } => ApiError::not_found(
                format!("{}NotFound", kind.replace(' ', "")),
                error.to_string(),
            ),
            Conflict(_) => ApiError::new(StatusCode::CONFLICT, "Conflict", error.to_string()),
            Storage(_) | Crypto(_) => {
                tracing::error!(%error, "admin request failed inside entra-sim");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    error.to_string(),
                )
            }
            _ => ApiError::bad_request("BadRequest", error.to_string()),
        }
    }
}

impl IntoResponse for EntraError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

pub type Result<T, E = EntraError> = std::result::Result<T, E>;
