//! The wire: the Key Vault data plane (one vault per host name) and the ARM management
//! plane for `Microsoft.KeyVault/vaults`. Handlers translate shapes and call the domain
//! modules; errors become the Key Vault / ARM envelope in [`crate::error`].

mod data;
mod management;
mod wire;

pub mod host;

use std::sync::Arc;

use sim_core::SimClock;
use sim_core::auth::TokenVerifier;
use sqlx::SqlitePool;

use crate::secrets::Secrets;
use crate::vaults::Vaults;

pub use data::router as data_router;
pub use management::router as management_router;

/// Everything the handlers share.
pub struct Shared {
    pub pool: SqlitePool,
    /// Subscription roles of management-plane callers.
    pub roles: std::sync::Arc<sim_core::rbac::Roles>,
    pub vaults: Vaults,
    pub secrets: Secrets,
    pub clock: SimClock,
    /// Key Vault tokens (`https://vault.azure.net` or the challenge resource of the host).
    pub data_verifier: Arc<TokenVerifier>,
    /// ARM tokens for the management plane.
    pub arm_verifier: Arc<TokenVerifier>,
    /// Admin-plane tokens (`api://azsim`).
    pub admin_verifier: Arc<TokenVerifier>,
    /// entra-sim's public URL, named in the 401 challenge.
    pub authority: String,
}

pub type KvState = Arc<Shared>;
