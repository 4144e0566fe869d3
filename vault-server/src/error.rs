//! The one error type of vault-server and its ARM envelope `{"error":{"code","message"}}`.
//! Codes follow ARM and the Backup service where they are known; messages say what to fix.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sim_core::ApiError;
use sim_core::rbac::RbacError;

#[derive(Debug, thiserror::Error)]
pub enum VsError {
    #[error("The api-version query parameter (?api-version=) is required for all requests.")]
    MissingApiVersion,
    #[error("Resource group '{0}' could not be found.")]
    ResourceGroupNotFound(String),
    #[error("The Resource '{kind}/{name}' under resource group '{group}' was not found.")]
    ResourceNotFound {
        kind: &'static str,
        group: String,
        name: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(
        "Vault {0} cannot be deleted as there are existing resources within the vault: unregister its servers and stop protection of (and delete) its backup items first."
    )]
    VaultNotEmpty(String),
    #[error(
        "Immutability of vault {0} is Locked and can never be changed; a locked vault stays immutable."
    )]
    ImmutabilityLocked(String),
    #[error(
        "The storage redundancy of vault {0} cannot be changed because items are already protected in it. Stop protection and delete the backup data first, or use another vault."
    )]
    RedundancyLocked(String),
    #[error("{0}")]
    InvalidPolicy(String),
    #[error("{0}")]
    CredentialsRefused(String),
    #[error("No route for {method} {path}.")]
    NoRoute { method: String, path: String },
    #[error(transparent)]
    Rbac(#[from] RbacError),
    #[error("{0}")]
    Upstream(String),
    #[error("vault-server storage failed: {0}")]
    Storage(#[from] sqlx::Error),
}

impl From<&VsError> for ApiError {
    fn from(error: &VsError) -> Self {
        use VsError::*;
        let (status, code) = match error {
            MissingApiVersion => (StatusCode::BAD_REQUEST, "MissingApiVersionParameter"),
            ResourceGroupNotFound(_) => (StatusCode::NOT_FOUND, "ResourceGroupNotFound"),
            ResourceNotFound { .. } | NotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFound"),
            InvalidName(_) => (StatusCode::BAD_REQUEST, "InvalidResourceName"),
            BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
            VaultNotEmpty(_) => (StatusCode::BAD_REQUEST, "ServiceResourceNotEmpty"),
            ImmutabilityLocked(_) => (
                StatusCode::BAD_REQUEST,
                "UserErrorImmutabilityStateLockedCannotBeChanged",
            ),
            RedundancyLocked(_) => (
                StatusCode::BAD_REQUEST,
                "BMSUserErrorRedundancySettingsUpdateNotAllowed",
            ),
            InvalidPolicy(_) => (StatusCode::BAD_REQUEST, "BMSUserErrorInvalidPolicyInput"),
            CredentialsRefused(_) => (StatusCode::BAD_REQUEST, "InvalidCertificate"),
            NoRoute { .. } => (StatusCode::NOT_FOUND, "NoRegisteredProviderFound"),
            Rbac(rbac) => return ApiError::from(rbac),
            Upstream(_) | Storage(_) => {
                tracing::error!(%error, "vault-server request failed");
                (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
            }
        };
        ApiError::new(status, code, error.to_string())
    }
}

impl IntoResponse for VsError {
    fn into_response(self) -> Response {
        ApiError::from(&self).into_response()
    }
}

pub type Result<T, E = VsError> = std::result::Result<T, E>;
