//! The one error type of vault-server and its ARM envelope `{"error":{"code","message"}}`.
//! Codes follow ARM and the Backup service where they are known; messages say what to fix.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sim_core::ApiError;
use sim_core::rbac::RbacError;

#[derive(Debug, thiserror::Error)]
pub enum VsError {
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
    /// A region azsim does not know; `code` is ARM's for the kind of resource.
    #[error("{message}")]
    LocationNotAvailable { code: &'static str, message: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    /// A machine token whose server is no longer registered.
    #[error("{0}")]
    Unregistered(String),
    #[error(
        "Vault {0} cannot be deleted as there are existing resources within the vault: unregister its servers and stop protection of (and delete) its backup items first."
    )]
    VaultNotEmpty(String),
    #[error(
        "Immutability of vault {0} is Locked and can never be changed; a locked vault stays immutable."
    )]
    ImmutabilityLocked(String),
    #[error(
        "The storage redundancy of vault {vault} is {current} and cannot be changed to {requested} because items are already protected in it. Stop protection and delete the backup data first, or use another vault."
    )]
    RedundancyLocked {
        vault: String,
        current: String,
        requested: String,
    },
    #[error("{0}")]
    InvalidPolicy(String),
    /// A commit naming chunks the vault does not hold (`backup_protocol::CHUNKS_NOT_STORED`).
    #[error("{0}")]
    ChunksNotStored(String),
    /// Removing a point of an immutable vault before its expiry.
    #[error("{0}")]
    ImmutableRecoveryPoint(String),
    /// A missing, wrong or expired security PIN.
    #[error("{0}")]
    SecurityPin(String),
    #[error("{0}")]
    CredentialsRefused(String),
    #[error("No route for {method} {path}.")]
    NoRoute { method: String, path: String },
    #[error(transparent)]
    Rbac(#[from] RbacError),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    Upstream(String),
    #[error(
        "The region {0} is unavailable (a simulated regional outage): the vault's primary storage can be neither read nor written until the region is restored. A GeoRedundant vault with Cross Region Restore enabled can restore from its secondary region meanwhile."
    )]
    RegionUnavailable(String),
    #[error("{0}")]
    CrossRegionRestore(String),
    #[error("vault-server storage failed: {0}")]
    Storage(#[from] sqlx::Error),
}

impl From<&VsError> for ApiError {
    fn from(error: &VsError) -> Self {
        use VsError::*;
        let (status, code) = match error {
            ResourceGroupNotFound(_) => (StatusCode::NOT_FOUND, "ResourceGroupNotFound"),
            ResourceNotFound { .. } | NotFound(_) => (StatusCode::NOT_FOUND, "ResourceNotFound"),
            InvalidName(_) => (StatusCode::BAD_REQUEST, "InvalidResourceName"),
            BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            LocationNotAvailable { code, .. } => (StatusCode::BAD_REQUEST, *code),
            Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
            Unregistered(_) => (StatusCode::UNAUTHORIZED, "ServerNotRegistered"),
            VaultNotEmpty(_) => (StatusCode::BAD_REQUEST, "ServiceResourceNotEmpty"),
            ImmutabilityLocked(_) => (
                StatusCode::BAD_REQUEST,
                "UserErrorImmutabilityStateLockedCannotBeChanged",
            ),
            RedundancyLocked { .. } => (
                StatusCode::BAD_REQUEST,
                "BMSUserErrorRedundancySettingsUpdateNotAllowed",
            ),
            InvalidPolicy(_) => (StatusCode::BAD_REQUEST, "BMSUserErrorInvalidPolicyInput"),
            ChunksNotStored(_) => (StatusCode::BAD_REQUEST, backup_protocol::CHUNKS_NOT_STORED),
            ImmutableRecoveryPoint(_) => (
                StatusCode::BAD_REQUEST,
                "BMSUserErrorImmutableRecoveryPointNotExpired",
            ),
            SecurityPin(_) => (StatusCode::BAD_REQUEST, "BMSUserErrorSecurityPinInvalid"),
            CredentialsRefused(_) => (StatusCode::BAD_REQUEST, "InvalidCertificate"),
            NoRoute { .. } => (StatusCode::NOT_FOUND, "NoRegisteredProviderFound"),
            Rbac(rbac) => return ApiError::from(rbac),
            PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge"),
            RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "RequestTimeout"),
            RegionUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "RegionUnavailable"),
            CrossRegionRestore(_) => (
                StatusCode::BAD_REQUEST,
                "UserErrorCrossRegionRestoreNotSupported",
            ),
            // A constraint failure means the request named something that is gone (a server
            // unregistered meanwhile, say): the caller's problem, not an outage.
            Storage(sqlx::Error::Database(db))
                if db.is_foreign_key_violation() || db.is_unique_violation() =>
            {
                return ApiError::new(
                    StatusCode::CONFLICT,
                    "Conflict",
                    "The request refers to something that no longer exists or already exists in this vault (it changed meanwhile); read the current state and try again.",
                );
            }
            Upstream(_) | Storage(_) => {
                tracing::error!(%error, "vault-server request failed");
                (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
            }
        };
        ApiError::new(status, code, error.to_string())
    }
}

impl From<VsError> for ApiError {
    fn from(error: VsError) -> Self {
        ApiError::from(&error)
    }
}

impl IntoResponse for VsError {
    fn into_response(self) -> Response {
        ApiError::from(&self).into_response()
    }
}

pub type Result<T, E = VsError> = std::result::Result<T, E>;
