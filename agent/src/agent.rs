//! A registered agent, ready to talk to its vault, and the registration itself.

use std::path::Path;
use std::sync::Arc;

use backup_protocol::{ChangeEncryption, KeyVaultSave, RecoveryPoint, RegisterRequest};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_RSA_SHA256};

use crate::client::{CertIdentity, Service, http_client};
use crate::config::{AgentConfig, Home, Registration};
use crate::credentials::{VaultCredentials, pem_to_der};
use crate::error::{AgentError, Result};
use crate::keys::{MasterKey, WrappedKey, check_passphrase};
use crate::manifest::Manifest;
use crate::sealing::Sealer;
use crate::vault_client::VaultClient;

/// A passphrase file's first line (a trailing newline is not part of it).
pub fn read_passphrase(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| AgentError::io(path, e))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

pub const AGENT_VERSION: &str = concat!("azsim-mars/", env!("CARGO_PKG_VERSION"));

pub struct Agent {
    /// Show progress bars (a terminal, and not `--json`).
    pub progress: bool,
    pub config: AgentConfig,
    pub registration: Registration,
    /// The vault's backup data plane, signed in as this machine.
    pub vault: VaultClient,
    pub sealer: Sealer,
    /// Paces uploads to the throttle's rate.
    pub pacer: crate::throttle::Pacer,
}

impl Agent {
    pub fn open(home: &Home, progress: bool) -> Result<Arc<Agent>> {
        Agent::open_in(home, progress, false)
    }

    /// With `secondary_region`, recovery points and restores read the vault's paired
    /// region (cross-region restore).
    pub fn open_in(home: &Home, progress: bool, secondary_region: bool) -> Result<Arc<Agent>> {
        let (config, registration) = home.registration()?;
        let http = http_client(config.ca_file.as_deref(), config.proxy.as_deref())?;
        let identity = CertIdentity::of_registration(&registration, home.machine_key()?);
        let mut vault = VaultClient::new(Service::new(http, &registration.service_url, identity));
        if secondary_region {
            vault = vault.in_secondary_region();
        }
        let sealer = Sealer::new(&home.master_key()?);
        Ok(Arc::new(Agent {
            progress,
            pacer: crate::throttle::Pacer::new(config.throttle.clone()),
            config,
            registration,
            vault,
            sealer,
        }))
    }

    /// The sealer for another server's data (restore elsewhere), from its passphrase.
    pub async fn sealer_for(&self, server: &str, passphrase: &str) -> Result<Sealer> {
        let answer = self.vault.encryption(server).await?;
        let wrapped: WrappedKey = serde_json::from_value(answer.encryption).map_err(|_| {
            AgentError::Service(format!(
                "the vault holds no usable key information for {server}"
            ))
        })?;
        Ok(Sealer::new(&MasterKey::unwrap(&wrapped, passphrase)?))
    }

    /// Which server's backups, and the sealer that opens them: this server's own (a
    /// passphrase given for them is checked, not ignored), or another's from its passphrase.
    pub async fn source(
        &self,
        from_server: Option<String>,
        passphrase_file: Option<&Path>,
    ) -> Result<(String, Sealer)> {
        let passphrase = passphrase_file.map(read_passphrase).transpose()?;
        match (from_server, passphrase) {
            (None, None) => Ok((self.registration.server_name.clone(), self.sealer.clone())),
            (None, Some(passphrase)) => {
                let server = self.registration.server_name.clone();
                let sealer = self.sealer_for(&server, &passphrase).await?;
                if sealer.key_check() != self.sealer.key_check() {
                    return Err(AgentError::WrongPassphrase);
                }
                Ok((server, self.sealer.clone()))
            }
            (Some(server), Some(passphrase)) => {
                let sealer = self.sealer_for(&server, &passphrase).await?;
                Ok((server, sealer))
            }
            (Some(_), None) => Err(AgentError::Usage(
                "--from-server needs --passphrase-file".into(),
            )),
        }
    }

    /// Unregisters this server from its vault, then forgets the registration and its keys
    /// here (only once the vault agreed).
    pub async fn unregister(&self, home: &Home) -> Result<()> {
        self.vault.unregister().await?;
        let mut config = home.load()?;
        config.registration = None;
        home.save(&config)?;
        home.forget_secrets()
    }

    /// Re-wraps the master key with `new_passphrase` (nothing is re-encrypted) and stores
    /// it on the vault, which needs its security PIN; with `key_vault_uri` the vault's
    /// identity saves the new passphrase there too. The vault swaps the wrapped key in one
    /// step, so the old passphrase works until the new one does.
    pub async fn change_passphrase(
        &self,
        home: &Home,
        security_pin: &str,
        new_passphrase: &str,
        key_vault_uri: Option<&str>,
    ) -> Result<()> {
        check_passphrase(new_passphrase)?;
        let master = home.master_key()?;
        let wrapped = master.wrap(new_passphrase)?;
        self.vault
            .change_encryption(
                &self.registration.server_name,
                &ChangeEncryption {
                    encryption: serde_json::to_value(&wrapped).expect("a wrapped key serialises"),
                    key_check: master.check_value(),
                    security_pin: security_pin.to_string(),
                    key_vault: key_vault_uri.map(|uri| KeyVaultSave {
                        uri: uri.to_string(),
                        passphrase: new_passphrase.to_string(),
                    }),
                },
            )
            .await?;
        let mut config = home.load()?;
        if let Some(registration) = config.registration.as_mut() {
            registration.encryption = wrapped;
        }
        home.save(&config)
    }

    /// Names this registration's files in the cache (with `within`, one protected path's):
    /// another vault or master key must never reuse chunk ids or dictionaries it does not
    /// hold.
    pub fn cache_key(&self, within: Option<&str>) -> String {
        let registration = &self.registration;
        let mut key = format!(
            "{}\0{}\0{}\0{}",
            registration.subscription_id,
            registration.vault,
            registration.server_name,
            self.sealer.key_check()
        );
        if let Some(within) = within {
            key = format!("{key}\0{within}");
        }
        blake3::hash(key.as_bytes()).to_hex()[..32].to_string()
    }

    pub async fn recovery_points(&self, server: &str) -> Result<Vec<RecoveryPoint>> {
        self.vault.recovery_points(server).await
    }

    pub async fn manifest(
        &self,
        server: &str,
        recovery_point: &str,
        sealer: &Sealer,
    ) -> Result<Manifest> {
        let blob = self.vault.manifest(server, recovery_point).await?;
        Manifest::open(sealer, &blob)
    }
}

/// Registers this machine with the vault named in `credentials`.
/// With `key_vault_uri`, the vault saves the passphrase there through its managed identity
/// (and registration fails, leaving nothing registered, if it cannot).
pub async fn register(
    home: &Home,
    credentials: &Path,
    passphrase: &str,
    server_name: &str,
    key_vault_uri: Option<&str>,
) -> Result<Registration> {
    check_passphrase(passphrase)?;
    let mut config = home.load()?;
    let credentials = VaultCredentials::load(credentials)?;
    if let Some(current) = &config.registration
        && (current.vault != credentials.vault
            || current.resource_group != credentials.resource_group
            || current.subscription_id != credentials.subscription_id)
    {
        return Err(AgentError::Credentials(format!(
            "this machine is registered to vault {} (resource group {}); these credentials are for vault {} — unregister first to move it",
            current.vault, current.resource_group, credentials.vault
        )));
    }
    let http = http_client(config.ca_file.as_deref(), config.proxy.as_deref())?;
    let vault_identity = CertIdentity::of_credentials(&credentials);
    let thumbprint = vault_identity.thumbprint()?;
    let vault = VaultClient::new(Service::new(http, &credentials.service_url, vault_identity));

    // Same server again: the passphrase must unlock the key it was registered with.
    let existing = vault.encryption(server_name).await;
    let (master, wrapped) = match existing {
        Ok(answer) => {
            let wrapped: WrappedKey = serde_json::from_value(answer.encryption).map_err(|_| {
                AgentError::Service("the vault's key information for this server is damaged".into())
            })?;
            let master = MasterKey::unwrap(&wrapped, passphrase).map_err(|e| match e {
                AgentError::WrongPassphrase => AgentError::Usage(format!(
                    "server '{server_name}' is already registered to vault {} with another passphrase; re-registering needs that passphrase",
                    credentials.vault
                )),
                other => other,
            })?;
            (master, wrapped)
        }
        Err(AgentError::NotFound(_)) => {
            let master = MasterKey::generate();
            let wrapped = master.wrap(passphrase)?;
            (master, wrapped)
        }
        Err(other) => return Err(other),
    };

    let key =
        KeyPair::generate_for(&PKCS_RSA_SHA256).map_err(|e| AgentError::Crypto(e.to_string()))?;
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| AgentError::Crypto(e.to_string()))?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("mars-agent {server_name}"));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let certificate = params
        .self_signed(&key)
        .map_err(|e| AgentError::Crypto(e.to_string()))?;
    let certificate_pem = certificate.pem();

    let answer = vault
        .register(&RegisterRequest {
            server_name: server_name.to_string(),
            agent_version: AGENT_VERSION.to_string(),
            certificate: STANDARD.encode(pem_to_der(&certificate_pem)?),
            credential_thumbprint: thumbprint,
            encryption: serde_json::to_value(&wrapped).expect("a wrapped key serialises"),
            key_check: master.check_value(),
            key_vault: key_vault_uri.map(|uri| KeyVaultSave {
                uri: uri.to_string(),
                passphrase: passphrase.to_string(),
            }),
        })
        .await?;
    let registration = Registration {
        server_name: server_name.to_string(),
        subscription_id: credentials.subscription_id,
        resource_group: credentials.resource_group,
        vault: credentials.vault,
        service_url: credentials.service_url,
        authority: answer.authority,
        tenant_id: answer.tenant_id,
        client_id: answer.client_id,
        certificate_pem,
        encryption: wrapped,
        registered_at: chrono::Utc::now().timestamp(),
    };
    home.save_secrets(&key.serialize_pem(), &master)?;
    config.registration = Some(registration.clone());
    home.save(&config)?;
    Ok(registration)
}
