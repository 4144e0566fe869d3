//! vault-server: the Azure Resource Manager endpoint of azsim.
//!
//! - `Microsoft.Resources`: subscriptions, tenants, resource groups, `/metadata/endpoints`;
//! - `Microsoft.RecoveryServices/vaults`: the vault ([`vaults`], [`settings`]), vault
//!   credentials ([`credentials`]), and the Backup views ([`backup`], [`policy`]);
//! - `Microsoft.KeyVault`: forwarded to keyvault-sim ([`forward`]);
//! - the agents' backup data plane `/backup/v1` ([`dataplane`], its wire types in the
//!   `backup-protocol` crate), and the vault's lifecycle on the simulated clock:
//!   retention ([`retention`]), expiry, soft delete, PINs and immutability ([`lifecycle`]),
//!   garbage collection and repacking ([`collect`]).
//!
//! Every request carries an ARM bearer token from entra-sim; the caller needs a role on
//! the subscription ([`sim_core::rbac`]). [`arm`] holds the request plumbing, [`http`] the
//! dispatch.

pub mod arm;
mod azure_container;
pub mod backup;
pub mod blobs;
pub mod collect;
pub mod credentials;
pub mod dataplane;
pub mod entra;
pub mod error;
pub mod forward;
pub mod groups;
pub mod http;
pub mod lifecycle;
mod local_files;
pub mod passphrase;
pub mod policy;
mod portal;
pub mod retention;
pub mod settings;
pub mod vaults;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use sim_core::SimClock;
use sim_core::admin::{AdminHooks, AdminPlane};
use sim_core::auth::{KeyCache, TenantPolicy, TokenVerifier};
use sim_core::cli::Runtime;
use sim_core::db::Storage;
use sim_core::server::{RunningServer, ServeConfig};
use sim_core::well_known::ADMIN_AUDIENCE;

pub use error::VsError;
use http::{Shared, VsState};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Audiences ARM accepts (one list for every service).
pub use sim_core::arm::ARM_AUDIENCES;

/// Where vault-server finds its neighbours.
#[derive(Clone)]
pub struct Config {
    /// entra-sim's public URL (admin API for identities; `AadAuthority` of credentials).
    pub authority: String,
    /// The development CA, to trust entra-sim and keyvault-sim.
    pub ca_pem: String,
    /// keyvault-sim's management URL; `Microsoft.KeyVault` requests go there.
    pub keyvault_management: Option<String>,
    /// `vault.localhost:<port>`: the Key Vault DNS suffix in `/metadata/endpoints`.
    pub keyvault_dns: Option<String>,
    /// entra-sim's managed-identity endpoint (`http://host:port`): vault identities get
    /// their Key Vault tokens there.
    pub managed_identity: Option<String>,
    /// Where `*.localhost` Key Vault hosts (`kv1.vault.localhost`) are: loopback when
    /// `None`; a host name such as the keyvault-sim container's in docker-compose.
    pub keyvault_host: Option<String>,
    /// Azure Blob Storage (or Azurite) for backup data; `None`: the data directory (or
    /// memory).
    pub blobs: Option<blobs::AzureBlobs>,
}

#[derive(Clone)]
pub struct VaultServer {
    pub state: VsState,
}

impl VaultServer {
    pub async fn open(
        storage: &Storage,
        clock: SimClock,
        keys: Arc<KeyCache>,
        config: Config,
    ) -> Result<Self, sim_core::Error> {
        let pool = sim_core::db::open(storage, "vault-server", &MIGRATOR).await?;
        let roles = sim_core::rbac::Roles::open(pool.clone()).await?;
        roles.seed().await?;
        groups::seed_default(&pool, clock.unix())
            .await
            .map_err(|e| sim_core::Error::Config(format!("vault-server could not start: {e}")))?;
        let entra = entra::EntraAdmin::new(&config.authority, &config.ca_pem)?;
        let verifier = |audiences: &[&str]| {
            Arc::new(TokenVerifier::new(
                keys.clone(),
                audiences.iter().map(|a| a.to_string()).collect(),
                TenantPolicy::Any,
                clock.clone(),
            ))
        };
        let ca = reqwest::Certificate::from_pem(config.ca_pem.as_bytes())
            .map_err(|e| sim_core::Error::Tls(e.to_string()))?;
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| sim_core::Error::Tls(e.to_string()))?;
        let backend = match (&config.blobs, storage.data_dir()) {
            (Some(azure), _) => blobs::Backend::Azure(azure.clone()),
            (None, Some(dir)) => blobs::Backend::Local(dir.to_path_buf()),
            (None, None) => blobs::Backend::Memory,
        };
        let store = blobs::Blobs::open(pool.clone(), clock.clone(), backend)
            .await
            .map_err(|e| sim_core::Error::Config(format!("blob storage: {e}")))?;
        let shared = Shared {
            vaults: vaults::Vaults::new(pool.clone(), clock.clone(), entra),
            backup: backup::Backup::new(pool.clone()),
            data: dataplane::DataPlane::new(pool.clone(), store.clone()),
            lifecycle: lifecycle::Lifecycle::new(pool.clone(), store.clone()),
            blobs: store,
            passphrases: passphrase::PassphraseSaver::new(
                &config.ca_pem,
                config.managed_identity.clone(),
                config.keyvault_host.clone(),
            )?,
            arm_verifier: verifier(ARM_AUDIENCES),
            admin_verifier: verifier(&[ADMIN_AUDIENCE]),
            roles,
            keyvault_management: config.keyvault_management,
            keyvault_dns: config.keyvault_dns,
            http,
            pool,
            clock,
        };
        Ok(VaultServer {
            state: Arc::new(shared),
        })
    }

    /// ARM, plus `/health`, `/ca.pem`, `/admin/{clock,reset}`, `/admin/roleAssignments` and
    /// `/admin/regions`.
    pub fn router(&self, ca_pem: String) -> Router {
        let plane = AdminPlane {
            service: "vault-server",
            hooks: Arc::new(self.clone()),
            clock: self.state.clock.clone(),
            ca_pem,
            verifier: self.state.admin_verifier.clone(),
        };
        http::router(self.state.clone())
            .merge(sim_core::admin::router(plane))
            .merge(http::regions_admin_router(self.state.clone()))
            .merge(portal::router(self.state.clone()))
            .merge(sim_core::rbac::admin_router(
                self.state.roles.clone(),
                self.state.admin_verifier.clone(),
            ))
    }
}

impl AdminHooks for VaultServer {
    async fn healthy(&self) -> bool {
        sim_core::db::is_healthy(&self.state.pool).await
    }

    async fn reset(&self) -> Result<(), String> {
        let pool = &self.state.pool;
        groups::reset(pool).await.map_err(|e| e.to_string())?;
        self.state.blobs.reset().await.map_err(|e| e.to_string())?;
        self.state.roles.reset().await.map_err(|e| e.to_string())?;
        groups::seed_default(pool, self.state.clock.unix())
            .await
            .map_err(|e| e.to_string())
    }
}

pub struct Running {
    pub server: VaultServer,
    pub https: RunningServer,
}

impl Running {
    pub async fn shutdown(self) {
        self.https.shutdown().await;
    }
}

/// Opens and serves vault-server (port 0 picks a free port).
pub async fn start(
    runtime: &Runtime,
    bind: IpAddr,
    port: u16,
    keys: Arc<KeyCache>,
    config: Config,
) -> Result<Running, sim_core::Error> {
    let server = VaultServer::open(&runtime.storage, runtime.clock.clone(), keys, config).await?;
    let https = sim_core::server::serve(
        server.router(runtime.tls.ca_pem.clone()),
        // Limits are per route, checked after authentication (see `http::body`).
        ServeConfig::new(
            "vault-server",
            bind,
            port,
            Some(runtime.tls.clone()),
            runtime.clock.clone(),
        )
        .max_body(None),
    )
    .await?;
    spawn_sweeper(&server.state);
    server.state.blobs.spawn_replicator();
    Ok(Running { server, https })
}

/// Every [`SWEEP_INTERVAL`], each vault's expired points, due purges and garbage go (views
/// also sweep before they read). The task ends when the server is dropped.
fn spawn_sweeper(state: &VsState) {
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(state) = weak.upgrade() else { return };
            let vaults = match state.vaults.all().await {
                Ok(vaults) => vaults,
                Err(error) => {
                    tracing::warn!(%error, "the lifecycle sweep could not list vaults");
                    continue;
                }
            };
            for vault in vaults {
                if let Err(error) = state.lifecycle.sweep(&vault, state.clock.unix()).await {
                    tracing::warn!(%error, vault = vault.name, "the lifecycle sweep failed");
                }
            }
        }
    });
}

/// How often the background sweep runs (real time).
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
