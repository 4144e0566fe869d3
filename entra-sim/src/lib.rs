//! entra-sim: a Microsoft Entra ID emulator for local Azure simulation.
//!
//! What it serves, root-mounted like login.microsoftonline.com (MSAL treats the first path
//! segment as the tenant):
//! - OpenID discovery (v2 and v1), JWKS with rotation, instance discovery;
//! - `/{tenant}/oauth2/v2.0/token` and v1 `/{tenant}/oauth2/token`: client credentials with
//!   a client secret or a certificate assertion, returning v1 access tokens shaped like the
//!   ones Azure resources receive;
//! - the managed-identity endpoint (App Service and IMDS protocols) on a plain-HTTP port;
//! - an admin API for tenants, apps, credentials, managed identities and app roles.
//!
//! Layout: [`directory`] (the store), [`resources`] (what a token can be for),
//! [`issuance`] (who gets which token), [`assertion`], [`signing`] (keys and JWKS),
//! [`http`] (the wire).

pub mod assertion;
pub mod directory;
pub mod error;
pub mod http;
pub mod interactive;
pub mod issuance;
pub mod resources;
pub mod signing;

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use sim_core::SimClock;
use sim_core::admin::{AdminHooks, AdminPlane};
use sim_core::auth::{KeyCache, KeySource, TenantPolicy, TokenVerifier};
use sim_core::cli::Runtime;
use sim_core::db::Storage;
use sim_core::server::{RunningServer, ServeConfig};
use sim_core::well_known::ADMIN_AUDIENCE;

pub use directory::Directory;
pub use error::EntraError;
pub use http::EntraState;
use issuance::TokenIssuer;
use signing::SigningKeys;

/// An opened entra-sim: its directory, keys and clock, ready to be served.
#[derive(Clone)]
pub struct EntraSim {
    pub state: EntraState,
}

impl EntraSim {
    /// Opens the directory (migrating and seeding the well-known identity) and the keys.
    pub async fn open(storage: &Storage, clock: SimClock) -> Result<Self, sim_core::Error> {
        let directory = Directory::open(storage).await?;
        let now = clock.unix();
        directory.seed_well_known(now).await.map_err(startup)?;
        let keys = Arc::new(
            SigningKeys::load_or_create(directory.pool().clone(), now)
                .await
                .map_err(startup)?,
        );
        let local_keys = keys.clone();
        let key_cache = KeyCache::new(KeySource::Local(Arc::new(move || local_keys.jwks())));
        let admin_verifier = Arc::new(TokenVerifier::new(
            key_cache,
            vec![ADMIN_AUDIENCE.to_string()],
            TenantPolicy::Any,
            clock.clone(),
        ));
        Ok(EntraSim {
            state: EntraState {
                issuer: TokenIssuer {
                    directory,
                    keys,
                    clock,
                },
                admin_verifier,
                sign_ins: Default::default(),
            },
        })
    }

    /// The HTTPS router, including `/health`, `/ca.pem` and `/admin/{clock,reset}`.
    pub fn router(&self, ca_pem: String) -> Router {
        let plane = AdminPlane {
            service: "entra-sim",
            hooks: Arc::new(self.clone()),
            clock: self.state.issuer.clock.clone(),
            ca_pem,
            verifier: self.state.admin_verifier.clone(),
        };
        http::router(self.state.clone()).merge(sim_core::admin::router(plane))
    }

    /// entra-sim's signing keys for verifiers in the same process (no JWKS download).
    pub fn key_cache(&self) -> Arc<KeyCache> {
        let keys = self.state.issuer.keys.clone();
        KeyCache::new(KeySource::Local(Arc::new(move || keys.jwks())))
    }

    /// The plain-HTTP managed-identity router.
    pub fn managed_identity_router(&self) -> Router {
        http::managed_identity_router(self.state.clone())
    }
}

impl AdminHooks for EntraSim {
    async fn healthy(&self) -> bool {
        sim_core::db::is_healthy(self.state.issuer.directory.pool()).await
    }

    async fn reset(&self) -> Result<(), String> {
        self.state
            .issuer
            .directory
            .reset(self.state.issuer.clock.unix())
            .await
            .map_err(|e| e.to_string())
    }
}

/// A running entra-sim: the HTTPS server and the managed-identity server.
pub struct Running {
    pub sim: EntraSim,
    pub https: RunningServer,
    pub managed_identity: RunningServer,
}

impl Running {
    pub async fn shutdown(self) {
        tokio::join!(self.https.shutdown(), self.managed_identity.shutdown());
    }
}

/// Opens and serves entra-sim (port 0 picks free ports), both listeners on `bind`.
pub async fn start(
    runtime: &Runtime,
    bind: IpAddr,
    https_port: u16,
    managed_identity_port: u16,
) -> Result<Running, sim_core::Error> {
    start_split(runtime, bind, https_port, bind, managed_identity_port).await
}

/// As [`start`], with the managed-identity endpoint on its own address: it hands tokens
/// to whoever reaches it (only `IDENTITY_HEADER` guards it, as on Azure, where it is
/// reachable from the host alone), so it stays on loopback when the rest is exposed.
pub async fn start_split(
    runtime: &Runtime,
    bind: IpAddr,
    https_port: u16,
    managed_identity_bind: IpAddr,
    managed_identity_port: u16,
) -> Result<Running, sim_core::Error> {
    let sim = EntraSim::open(&runtime.storage, runtime.clock.clone()).await?;
    let https = sim_core::server::serve(
        sim.router(runtime.tls.ca_pem.clone()),
        ServeConfig::new(
            "entra-sim",
            bind,
            https_port,
            Some(runtime.tls.clone()),
            runtime.clock.clone(),
        ),
    )
    .await?;
    let managed_identity = sim_core::server::serve(
        sim.managed_identity_router(),
        ServeConfig::new(
            "entra-sim-mi",
            managed_identity_bind,
            managed_identity_port,
            None,
            runtime.clock.clone(),
        ),
    )
    .await?;
    Ok(Running {
        sim,
        https,
        managed_identity,
    })
}

fn startup(e: EntraError) -> sim_core::Error {
    sim_core::Error::Config(format!("entra-sim could not start: {e}"))
}
