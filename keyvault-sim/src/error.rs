//! The one error type of keyvault-sim, and its mapping to the Key Vault / ARM envelope
//! `{"error":{"code","message","innererror"?}}`. Messages follow Azure's wording where it
//! is known, and always say what to fix.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sim_core::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    // ---- data plane ----
    #[error(
        "A secret with (name/id) {0} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
    )]
    SecretNotFound(String),
    #[error(
        "A secret with (name/id) {name}/{version} was not found in this key vault. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
    )]
    VersionNotFound { name: String, version: String },
    #[error("Deleted Secret not found: there is no deleted secret named {0} in this key vault.")]
    DeletedSecretNotFound(String),
    #[error(
        "Operation get is not allowed on a disabled secret ({0}). Enable it first with an update of its attributes."
    )]
    SecretDisabled(String),
    #[error(
        "Secret {0} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged."
    )]
    DeletedButRecoverable(String),
    #[error(
        "Secret {0} already exists in this key vault; purge or rename it before restoring the backup."
    )]
    SecretAlreadyExists(String),
    #[error(
        "Operation 'DeletedSecretPurge' is not allowed on secret {0} because purge protection is enabled for this vault. Key Vault will purge it automatically after the retention period."
    )]
    PurgeProtected(String),
    #[error(
        "The user, group or application 'appid={};oid={};iss=https://sts.windows.net/{}/' does not have secrets {} permission on key vault '{};location={}'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
        .0.app_id, .0.object_id, .0.tenant_id, .0.permission, .0.vault, .0.location
    )]
    AccessDenied(Box<Denial>),
    #[error("{0}")]
    BadParameter(String),
    #[error(
        "No key vault answers at host '{0}'. Use https://<vault-name>.vault.localhost:<port> for a vault created through the management API, or https://localhost:<port> for the default vault."
    )]
    VaultHostNotFound(String),

    // ---- management plane (ARM) ----
    #[error(
        "The Resource 'Microsoft.KeyVault/vaults/{name}' under resource group '{resource_group}' was not found."
    )]
    VaultNotFound {
        resource_group: String,
        name: String,
    },
    #[error("Deleted vault '{name}' was not found in location '{location}'.")]
    DeletedVaultNotFound { location: String, name: String },
    #[error(
        "The vault name '{0}' is invalid. A vault's name must be between 3-24 alphanumeric characters. The name must begin with a letter, end with a letter or digit, and not contain consecutive hyphens."
    )]
    InvalidVaultName(String),
    #[error("The vault name '{0}' is already in use. Vault names are global; choose another name.")]
    VaultAlreadyExists(String),
    #[error(
        "A vault with the same name '{0}' already exists in deleted state. You need to either recover (createMode 'recover') or purge the existing key vault."
    )]
    VaultDeletedButRecoverable(String),
    #[error(
        "Vault '{0}' has purge protection enabled; it will be purged automatically after its retention period."
    )]
    VaultPurgeProtected(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Rbac(#[from] sim_core::rbac::RbacError),
    #[error("No route for {method} {path}.")]
    NoRoute { method: String, path: String },

    // ---- our own failures ----
    #[error("keyvault-sim storage failed: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("a stored value could not be decrypted: {0}")]
    Seal(String),
}

/// Who was refused which secret permission on which vault.
#[derive(Debug)]
pub struct Denial {
    pub app_id: String,
    pub object_id: String,
    pub tenant_id: String,
    pub permission: &'static str,
    pub vault: String,
    pub location: String,
}

impl From<&KvError> for ApiError {
    fn from(error: &KvError) -> Self {
        use KvError::*;
        let message = error.to_string();
        let (status, code, inner) = match error {
            SecretNotFound(_) | VersionNotFound { .. } | DeletedSecretNotFound(_) => {
                (StatusCode::NOT_FOUND, "SecretNotFound", None)
            }
            SecretDisabled(_) => (StatusCode::FORBIDDEN, "Forbidden", Some("SecretDisabled")),
            DeletedButRecoverable(_) => (
                StatusCode::CONFLICT,
                "Conflict",
                Some("ObjectIsDeletedButRecoverable"),
            ),
            SecretAlreadyExists(_) => (
                StatusCode::CONFLICT,
                "Conflict",
                Some("ObjectAlreadyExists"),
            ),
            PurgeProtected(_) => (
                StatusCode::FORBIDDEN,
                "Forbidden",
                Some("PurgeProtectionEnabled"),
            ),
            AccessDenied(_) => (StatusCode::FORBIDDEN, "Forbidden", Some("AccessDenied")),
            BadParameter(_) => (StatusCode::BAD_REQUEST, "BadParameter", None),
            VaultHostNotFound(_) => (StatusCode::NOT_FOUND, "VaultNotFound", None),
            VaultNotFound { .. } => (StatusCode::NOT_FOUND, "ResourceNotFound", None),
            DeletedVaultNotFound { .. } => (StatusCode::NOT_FOUND, "ResourceNotFound", None),
            InvalidVaultName(_) => (StatusCode::BAD_REQUEST, "VaultNameNotValid", None),
            VaultAlreadyExists(_) => (StatusCode::CONFLICT, "VaultAlreadyExists", None),
            VaultDeletedButRecoverable(_) => (StatusCode::CONFLICT, "ConflictError", None),
            VaultPurgeProtected(_) => (StatusCode::CONFLICT, "Conflict", None),
            InvalidRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest", None),
            Rbac(rbac) => return ApiError::from(rbac),
            NoRoute { .. } => (StatusCode::NOT_FOUND, "NotFound", None),
            Storage(_) | Seal(_) => {
                tracing::error!(%error, "keyvault-sim request failed");
                (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", None)
            }
        };
        let api = ApiError::new(status, code, message);
        match inner {
            Some(inner) => api.with_inner_code(inner),
            None => api,
        }
    }
}

impl From<KvError> for ApiError {
    fn from(error: KvError) -> Self {
        ApiError::from(&error)
    }
}

impl IntoResponse for KvError {
    fn into_response(self) -> Response {
        ApiError::from(&self).into_response()
    }
}

pub type Result<T, E = KvError> = std::result::Result<T, E>;
