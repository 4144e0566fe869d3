//! A registered agent, ready to talk to its vault, and the registration itself.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_RSA_SHA256};
use serde_json::{Value, json};

use crate::client::{CertIdentity, Service, http_client};
use crate::config::{AgentConfig, Home, Registration};
use crate::credentials::{VaultCredentials, pem_to_der};
use crate::error::{AgentError, Result};
use crate::keys::{MasterKey, WrappedKey, check_passphrase};
use crate::manifest::Manifest;
use crate::sealing::Sealer;

pub const AGENT_VERSION: &str = concat!("azsim-mars/", env!("CARGO_PKG_VERSION"));

pub struct Agent {
    /// Show progress bars (a terminal, and not `--json`).
    pub progress: bool,
    pub config: AgentConfig,
    pub registration: Registration,
    pub service: Service,
    pub sealer: Sealer,
}

impl Agent {
    pub fn open(home: &Home, progress: bool) -> Result<Arc<Agent>> {
        let (config, registration) = home.registration()?;
        let http = http_client(config.ca_file.as_deref(), config.proxy.as_deref())?;
        let identity = CertIdentity {
            authority: registration.authority.clone(),
            tenant_id: registration.tenant_id.clone(),
            client_id: registration.client_id.clone(),
            certificate_pem: registration.certificate_pem.clone(),
            key_pem: home.machine_key()?,
        };
        let service = Service::new(http, &registration.service_url, identity);
        let sealer = Sealer::new(&home.master_key()?);
        Ok(Arc::new(Agent {
            progress,
            config,
            registration,
            service,
            sealer,
        }))
    }

    /// The sealer for another server's data (restore elsewhere), from its passphrase.
    pub async fn sealer_for(&self, server: &str, passphrase: &str) -> Result<Sealer> {
        let answer: Value = self
            .service
            .get(&format!("/backup/v1/servers/{}/encryption", encode(server)))
            .await?;
        let wrapped: WrappedKey =
            serde_json::from_value(answer["encryption"].clone()).map_err(|_| {
                AgentError::Service(format!(
                    "the vault holds no usable key information for {server}"
                ))
            })?;
        Ok(Sealer::new(&MasterKey::unwrap(&wrapped, passphrase)?))
    }

    pub async fn recovery_points(&self, server: &str) -> Result<Vec<Value>> {
        let answer: Value = self
            .service
            .get(&format!(
                "/backup/v1/servers/{}/recoveryPoints",
                encode(server)
            ))
            .await?;
        Ok(answer["value"].as_array().cloned().unwrap_or_default())
    }

    pub async fn manifest(
        &self,
        server: &str,
        recovery_point: &str,
        sealer: &Sealer,
    ) -> Result<Manifest> {
        let blob = self
            .service
            .get_bytes(
                &format!(
                    "/backup/v1/servers/{}/recoveryPoints/{}/manifest",
                    encode(server),
                    encode(recovery_point)
                ),
                None,
            )
            .await?;
        Manifest::open(sealer, &blob)
    }
}

pub fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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
    let vault_identity = CertIdentity {
        authority: credentials.authority.clone(),
        tenant_id: credentials.tenant_id.clone(),
        client_id: credentials.client_id.clone(),
        certificate_pem: credentials.certificate_pem.clone(),
        key_pem: credentials.key_pem.clone(),
    };
    let thumbprint = vault_identity.thumbprint()?;
    let service = Service::new(http, &credentials.service_url, vault_identity);

    // Same server again: the passphrase must unlock the key it was registered with.
    let existing: Result<Value> = service
        .get(&format!(
            "/backup/v1/servers/{}/encryption",
            encode(server_name)
        ))
        .await;
    let (master, wrapped) = match existing {
        Ok(answer) => {
            let wrapped: WrappedKey = serde_json::from_value(answer["encryption"].clone())
                .map_err(|_| {
                    AgentError::Service(
                        "the vault's key information for this server is damaged".into(),
                    )
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

    let answer: Value = service
        .post(
            "/backup/v1/register",
            &json!({
                "serverName": server_name,
                "agentVersion": AGENT_VERSION,
                "certificate": STANDARD.encode(pem_to_der(&certificate_pem)?),
                "credentialThumbprint": thumbprint,
                "encryption": wrapped,
                "keyCheck": master.check_value(),
                "keyVault": key_vault_uri.map(|uri| json!({"uri": uri, "passphrase": passphrase})),
            }),
        )
        .await?;
    let registration = Registration {
        server_name: server_name.to_string(),
        subscription_id: credentials.subscription_id,
        resource_group: credentials.resource_group,
        vault: credentials.vault,
        service_url: credentials.service_url,
        authority: answer["authority"]
            .as_str()
            .unwrap_or(&credentials.authority)
            .to_string(),
        tenant_id: answer["tenantId"]
            .as_str()
            .unwrap_or(&credentials.tenant_id)
            .to_string(),
        client_id: answer["clientId"]
            .as_str()
            .ok_or_else(|| {
                AgentError::Service("the vault did not return a machine identity".into())
            })?
            .to_string(),
        certificate_pem,
        encryption: wrapped,
        registered_at: chrono::Utc::now().timestamp(),
    };
    home.save_secrets(&key.serialize_pem(), &master)?;
    config.registration = Some(registration.clone());
    home.save(&config)?;
    Ok(registration)
}
