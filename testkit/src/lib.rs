//! azsim-testkit: the whole azsim stack in-process — entra-sim (with its managed-identity
//! endpoint), keyvault-sim (data and management planes) and vault-server — on free ports,
//! in memory or on disk, sharing one development CA and one simulated clock.
//!
//! `azsim up` runs exactly this; integration tests start it the same way, like a
//! Testcontainers module but without a container:
//!
//! ```no_run
//! # async fn demo() -> Result<(), azsim_testkit::Error> {
//! let stack = azsim_testkit::Stack::start().await?;
//! for (name, value) in stack.env() {
//!     // AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_AUTHORITY_HOST,
//!     // AZSIM_ARM_URL, SSL_CERT_FILE, … for the code under test (or a child process).
//!     println!("{name}={value}");
//! }
//! let token = stack.token("https://management.azure.com/.default").await?;
//! let groups = stack
//!     .http
//!     .get(format!("{}/subscriptions/{}/resourcegroups?api-version=2021-04-01",
//!         stack.arm_url(), azsim_testkit::well_known::SUBSCRIPTION_ID))
//!     .bearer_auth(token)
//!     .send()
//!     .await?;
//! assert!(groups.status().is_success());
//! stack.clock.advance(30 * 86_400).expect("the clock moves"); // every expiry follows
//! stack.shutdown().await;
//! # Ok(()) }
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use sim_core::SimClock;
use sim_core::cli::Runtime;
pub use sim_core::db::Storage;
pub use sim_core::well_known;

/// Why the stack did not start, or a request to it failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Start(#[from] sim_core::Error),
    #[error("request to azsim failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Refused(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the services listen. Port 0 picks a free port.
#[derive(Clone, Debug)]
pub struct Ports {
    pub entra: u16,
    pub managed_identity: u16,
    pub keyvault: u16,
    pub keyvault_management: u16,
    pub vault_server: u16,
}

impl Ports {
    /// Every service on a free port.
    pub fn any() -> Self {
        Ports {
            entra: 0,
            managed_identity: 0,
            keyvault: 0,
            keyvault_management: 0,
            vault_server: 0,
        }
    }

    /// The README's fixed ports (10010–10014).
    pub fn well_known() -> Self {
        Ports {
            entra: well_known::ENTRA_PORT,
            managed_identity: well_known::MANAGED_IDENTITY_PORT,
            keyvault: well_known::KEYVAULT_PORT,
            keyvault_management: well_known::KEYVAULT_MANAGEMENT_PORT,
            vault_server: well_known::VAULT_SERVER_PORT,
        }
    }
}

/// How to start the stack.
pub struct Options {
    pub storage: Storage,
    /// Where the HTTPS services listen.
    pub bind: IpAddr,
    /// Where the managed-identity endpoint listens (loopback unless said otherwise: it
    /// hands out the host identity's tokens).
    pub managed_identity_bind: IpAddr,
    pub ports: Ports,
    /// Extra names for the TLS certificate.
    pub tls_names: Vec<String>,
    /// Backup data in Azure Blob Storage (or Azurite) instead of the storage above.
    pub blobs: Option<vault_server::blobs::AzureBlobs>,
}

impl Default for Options {
    /// In memory, loopback, free ports. With `AZSIM_BLOB_URL` (and `AZSIM_BLOB_KEY` for an
    /// account other than Azurite's) set, backup data goes to that Blob Storage, in
    /// containers of this stack's own (`azsim-<8 hex>-…`): how CI runs the suites against
    /// Azurite.
    fn default() -> Self {
        let blobs = std::env::var("AZSIM_BLOB_URL").ok().map(|url| {
            let prefix = format!("azsim-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
            vault_server::blobs::AzureBlobs::from_url(
                &url,
                std::env::var("AZSIM_BLOB_KEY").ok(),
                &prefix,
            )
            .unwrap_or_else(|e| panic!("AZSIM_BLOB_URL: {e}"))
        });
        Options {
            storage: Storage::Memory,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            managed_identity_bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: Ports::any(),
            tls_names: Vec::new(),
            blobs,
        }
    }
}

/// A running stack. Dropping it stops nothing gracefully; call [`Stack::shutdown`].
pub struct Stack {
    pub entra: entra_sim::Running,
    pub keyvault: keyvault_sim::Running,
    pub vault_server: vault_server::Running,
    /// The simulated clock every service reads.
    pub clock: SimClock,
    /// The development CA (PEM), and a file holding it.
    pub ca_pem: String,
    pub ca_file: PathBuf,
    /// An HTTPS client that trusts the CA.
    pub http: reqwest::Client,
    /// The temporary directory of the CA file (in-memory stacks).
    _scratch: Option<tempfile::TempDir>,
}

impl Stack {
    /// In memory, on loopback, on free ports.
    pub async fn start() -> Result<Stack, Error> {
        Stack::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Result<Stack, Error> {
        sim_core::install_crypto_provider();
        let runtime = Runtime::new(options.storage, &options.tls_names)?;
        let clock = runtime.clock.clone();
        let ports = &options.ports;
        let entra = entra_sim::start_split(
            &runtime,
            options.bind,
            ports.entra,
            options.managed_identity_bind,
            ports.managed_identity,
        )
        .await?;
        let keyvault = keyvault_sim::start(
            &runtime,
            options.bind,
            ports.keyvault,
            ports.keyvault_management,
            entra.sim.key_cache(),
            entra.https.url(),
        )
        .await?;
        let keyvault_port = keyvault.data.addr.port();
        let vault_server = vault_server::start(
            &runtime,
            options.bind,
            ports.vault_server,
            entra.sim.key_cache(),
            vault_server::Config {
                authority: entra.https.url(),
                ca_pem: runtime.tls.ca_pem.clone(),
                keyvault_management: Some(keyvault.management.url()),
                keyvault_dns: Some(format!("vault.localhost:{keyvault_port}")),
                managed_identity: Some(entra.managed_identity.url()),
                keyvault_host: None,
                blobs: options.blobs.clone(),
            },
        )
        .await?;
        let (ca_file, scratch) = match &runtime.tls.ca_path {
            Some(path) => (path.clone(), None),
            None => {
                let scratch = tempfile::tempdir().map_err(|source| Error::Io {
                    path: std::env::temp_dir(),
                    source,
                })?;
                let path = scratch.path().join("ca.pem");
                std::fs::write(&path, &runtime.tls.ca_pem).map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?;
                (path, Some(scratch))
            }
        };
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(
                runtime.tls.ca_pem.as_bytes(),
            )?])
            .build()?;
        Ok(Stack {
            entra,
            keyvault,
            vault_server,
            clock,
            ca_pem: runtime.tls.ca_pem.clone(),
            ca_file,
            http,
            _scratch: scratch,
        })
    }

    pub fn entra_url(&self) -> String {
        self.entra.https.url()
    }

    pub fn managed_identity_url(&self) -> String {
        self.entra.managed_identity.url()
    }

    /// The Key Vault data plane (the default vault at this origin; named vaults at
    /// `https://{vault}.vault.localhost:{port}`).
    pub fn keyvault_url(&self) -> String {
        self.keyvault.data.url()
    }

    pub fn keyvault_management_url(&self) -> String {
        self.keyvault.management.url()
    }

    /// Azure Resource Manager (and the agents' `/backup/v1`).
    pub fn arm_url(&self) -> String {
        self.vault_server.https.url()
    }

    /// The settings that point the Azure SDKs at this stack, as `azsim env` prints them.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let ca = self.ca_file.display().to_string();
        vec![
            ("AZURE_TENANT_ID", well_known::TENANT_ID.to_string()),
            (
                "AZURE_SUBSCRIPTION_ID",
                well_known::SUBSCRIPTION_ID.to_string(),
            ),
            ("AZURE_CLIENT_ID", well_known::ADMIN_CLIENT_ID.to_string()),
            (
                "AZURE_CLIENT_SECRET",
                well_known::ADMIN_CLIENT_SECRET.to_string(),
            ),
            ("AZURE_AUTHORITY_HOST", self.entra_url()),
            ("REQUESTS_CA_BUNDLE", ca.clone()),
            ("SSL_CERT_FILE", ca),
            ("AZSIM_ENTRA_URL", self.entra_url()),
            ("AZSIM_MANAGED_IDENTITY_URL", self.managed_identity_url()),
            ("AZSIM_KEYVAULT_URL", self.keyvault_url()),
            ("AZSIM_KEYVAULT_MGMT_URL", self.keyvault_management_url()),
            ("AZSIM_ARM_URL", self.arm_url()),
        ]
    }

    /// A token of the well-known admin app for `scope` (e.g.
    /// `https://management.azure.com/.default`, `https://vault.azure.net/.default`,
    /// `api://azsim/.default` for the admin plane).
    pub async fn token(&self, scope: &str) -> Result<String, Error> {
        let body: serde_json::Value = self
            .http
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                self.entra_url(),
                well_known::TENANT_ID
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", well_known::ADMIN_CLIENT_ID),
                ("client_secret", well_known::ADMIN_CLIENT_SECRET),
                ("scope", scope),
            ])
            .send()
            .await?
            .json()
            .await?;
        body["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Refused(format!("entra-sim refused the token: {body}")))
    }

    /// Stops every service gracefully.
    pub async fn shutdown(self) {
        tokio::join!(
            self.entra.shutdown(),
            self.keyvault.shutdown(),
            self.vault_server.shutdown()
        );
    }
}
