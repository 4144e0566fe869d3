//! keyvault-sim: an Azure Key Vault emulator.
//!
//! - The **data plane** (secrets) on one HTTPS port; the vault is chosen by host name
//!   (`{vault}.vault.localhost`, `{vault}.localhost`, and the default vault at
//!   `localhost`), with Key Vault's challenge authentication and access policies.
//! - The **management plane**, `Microsoft.KeyVault/vaults` over ARM paths, on another port
//!   (vault-server's ARM endpoint forwards to it).
//!
//! Layout: [`vaults`] and [`vault_spec`] (the resource), [`policy`] (access policies),
//! [`secrets`] (versions, soft delete, backup), [`seal`] (encryption at rest), [`http`] (the wire); who may manage vaults is
//! [`sim_core::rbac`].

pub mod error;
pub mod http;
pub mod policy;
pub mod seal;
pub mod secrets;
pub mod vault_spec;
pub mod vaults;

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use sim_core::SimClock;
use sim_core::admin::{AdminHooks, AdminPlane};
use sim_core::auth::{KeyCache, TenantPolicy, TokenVerifier};
use sim_core::cli::Runtime;
use sim_core::db::Storage;
use sim_core::server::{RunningServer, ServeConfig};
use sim_core::well_known::ADMIN_AUDIENCE;
use tokio::sync::Mutex;

pub use error::KvError;
use http::{KvState, Shared};
use seal::SealKey;
use secrets::Secrets;
use vaults::Vaults;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Audiences of Key Vault tokens (the challenge resource of each host is added per request).
pub const KEY_VAULT_AUDIENCES: &[&str] = &["https://vault.azure.net", "https://vault.azure.net/"];
/// Audiences ARM accepts (one list for every service).
pub use sim_core::arm::ARM_AUDIENCES;

/// An opened keyvault-sim, ready to be served.
#[derive(Clone)]
pub struct KeyVaultSim {
    pub state: KvState,
}

impl KeyVaultSim {
    /// Opens the store (migrating it and seeding the default vault). `keys` are entra-sim's
    /// signing keys; `authority` is entra-sim's public URL, named in the 401 challenge.
    pub async fn open(
        storage: &Storage,
        clock: SimClock,
        keys: Arc<KeyCache>,
        authority: String,
    ) -> Result<Self, sim_core::Error> {
        let pool = sim_core::db::open(storage, "keyvault", &MIGRATOR).await?;
        let seal = SealKey::load_or_create(storage)?;
        let write = Arc::new(Mutex::new(()));
        let verifier = |audiences: &[&str]| {
            Arc::new(TokenVerifier::new(
                keys.clone(),
                audiences.iter().map(|a| a.to_string()).collect(),
                TenantPolicy::Any,
                clock.clone(),
            ))
        };
        let roles = sim_core::rbac::Roles::open(pool.clone())
            .await
            .map_err(|e| startup(e.into()))?;
        let shared = Shared {
            vaults: Vaults::new(pool.clone(), clock.clone(), write.clone()),
            secrets: Secrets::new(pool.clone(), clock.clone(), seal, write),
            data_verifier: verifier(KEY_VAULT_AUDIENCES),
            arm_verifier: verifier(ARM_AUDIENCES),
            admin_verifier: verifier(&[ADMIN_AUDIENCE]),
            roles,
            pool,
            clock,
            authority,
        };
        let sim = KeyVaultSim {
            state: Arc::new(shared),
        };
        sim.seed().await.map_err(startup)?;
        Ok(sim)
    }

    async fn seed(&self) -> Result<(), KvError> {
        self.state.vaults.seed_default().await?;
        self.state.roles.seed().await?;
        Ok(())
    }

    fn admin_plane(&self, ca_pem: String) -> Router {
        sim_core::admin::router(AdminPlane {
            service: "keyvault-sim",
            hooks: Arc::new(self.clone()),
            clock: self.state.clock.clone(),
            ca_pem,
            verifier: self.state.admin_verifier.clone(),
        })
    }

    /// The data plane, plus `/health`, `/ca.pem` and `/admin/{clock,reset}`.
    pub fn data_router(&self, ca_pem: String) -> Router {
        http::data_router(self.state.clone()).merge(self.admin_plane(ca_pem))
    }

    /// The management plane. `vault_dns` is `vault.localhost:<data port>`.
    pub fn management_router(&self, vault_dns: String, ca_pem: String) -> Router {
        http::management_router(self.state.clone(), vault_dns)
            .merge(self.admin_plane(ca_pem))
            .merge(sim_core::rbac::admin_router(
                self.state.roles.clone(),
                self.state.admin_verifier.clone(),
            ))
    }
}

impl AdminHooks for KeyVaultSim {
    async fn healthy(&self) -> bool {
        sim_core::db::is_healthy(&self.state.pool).await
    }

    async fn reset(&self) -> Result<(), String> {
        let reset = async {
            self.state.vaults.delete_all().await?;
            self.state.roles.reset().await?;
            self.seed().await
        };
        reset.await.map_err(|e: KvError| e.to_string())
    }
}

/// A running keyvault-sim: data plane and management plane.
pub struct Running {
    pub sim: KeyVaultSim,
    pub data: RunningServer,
    pub management: RunningServer,
}

impl Running {
    pub async fn shutdown(self) {
        tokio::join!(self.data.shutdown(), self.management.shutdown());
    }
}

/// Opens and serves keyvault-sim (port 0 picks free ports).
pub async fn start(
    runtime: &Runtime,
    bind: IpAddr,
    data_port: u16,
    management_port: u16,
    keys: Arc<KeyCache>,
    authority: String,
) -> Result<Running, sim_core::Error> {
    let sim = KeyVaultSim::open(&runtime.storage, runtime.clock.clone(), keys, authority).await?;
    let ca_pem = runtime.tls.ca_pem.clone();
    let data = sim_core::server::serve(
        sim.data_router(ca_pem.clone()),
        ServeConfig::new(
            "keyvault-sim",
            bind,
            data_port,
            Some(runtime.tls.clone()),
            runtime.clock.clone(),
        ),
    )
    .await?;
    let vault_dns = format!("vault.localhost:{}", data.addr.port());
    let management = sim_core::server::serve(
        sim.management_router(vault_dns, ca_pem),
        ServeConfig::new(
            "keyvault-sim-mgmt",
            bind,
            management_port,
            Some(runtime.tls.clone()),
            runtime.clock.clone(),
        ),
    )
    .await?;
    Ok(Running {
        sim,
        data,
        management,
    })
}

fn startup(e: KvError) -> sim_core::Error {
    sim_core::Error::Config(format!("keyvault-sim could not start: {e}"))
}
