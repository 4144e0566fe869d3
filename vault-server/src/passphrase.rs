//! Saving an agent's passphrase in Key Vault, as the Recovery Services vault does: with a
//! token for the vault's system-assigned managed identity (from entra-sim's managed-identity
//! endpoint), `PUT {keyVaultUri}/secrets/{name}`. It only works when the Key Vault's access
//! policy grants that identity `set`; otherwise the refusal names the identity and the
//! permission.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::{Value, json};
use sim_core::well_known;

use crate::error::{Result, VsError};
use crate::vaults::Vault;

/// Resolves `*.localhost` (Key Vault hosts like `kv1.vault.localhost`) to loopback, as
/// browsers do and plain glibc does not, or to `keyvault_host` when Key Vault runs
/// elsewhere (another container); everything else through the system resolver.
struct LocalhostResolver {
    keyvault_host: Option<String>,
}

impl Resolve for LocalhostResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let mut host = name.as_str().to_string();
        let keyvault_host = self.keyvault_host.clone();
        Box::pin(async move {
            if host == "localhost" || host.ends_with(".localhost") {
                match keyvault_host {
                    Some(elsewhere) => host = elsewhere,
                    None => {
                        let addrs: Addrs =
                            Box::new(vec![SocketAddr::from(([127, 0, 0, 1], 0))].into_iter());
                        return Ok(addrs);
                    }
                }
            }
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let addrs: Addrs = Box::new(found.collect::<Vec<_>>().into_iter());
            Ok(addrs)
        })
    }
}

pub struct PassphraseSaver {
    http: reqwest::Client,
    /// entra-sim's managed-identity endpoint (`http://host:port`).
    managed_identity: Option<String>,
}

impl PassphraseSaver {
    pub fn new(
        ca_pem: &str,
        managed_identity: Option<String>,
        keyvault_host: Option<String>,
    ) -> Result<Self, sim_core::Error> {
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes())
            .map_err(|e| sim_core::Error::Tls(e.to_string()))?;
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .dns_resolver(Arc::new(LocalhostResolver { keyvault_host }))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| sim_core::Error::Tls(e.to_string()))?;
        Ok(PassphraseSaver {
            http,
            managed_identity,
        })
    }

    /// Writes `passphrase` as secret `name` in the Key Vault at `uri`; returns the secret id.
    pub async fn save(
        &self,
        vault: &Vault,
        uri: &str,
        name: &str,
        passphrase: &str,
    ) -> Result<String> {
        let uri = uri.trim_end_matches('/');
        if !uri.starts_with("https://") {
            return Err(VsError::BadRequest(format!(
                "keyVaultUri '{uri}' must be an https:// Key Vault URI."
            )));
        }
        let principal = vault
            .identity()
            .and_then(|i| i["principalId"].as_str().map(str::to_string))
            .ok_or_else(|| {
                VsError::BadRequest(format!(
                    "Vault {} has no system-assigned managed identity: enable it (identity.type SystemAssigned) and grant it 'set' on the Key Vault's secrets.",
                    vault.name
                ))
            })?;
        let endpoint = self.managed_identity.as_deref().ok_or_else(|| {
            VsError::Upstream(
                "vault-server has no managed-identity endpoint configured (--managed-identity-url)"
                    .into(),
            )
        })?;
        let token: Value = self
            .http
            .get(format!(
                "{}/msi/token?api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net&principal_id={principal}",
                endpoint.trim_end_matches('/')
            ))
            .header("X-IDENTITY-HEADER", well_known::IDENTITY_HEADER)
            .send()
            .await
            .map_err(|e| VsError::Upstream(format!("the managed-identity endpoint could not be reached: {e}")))?
            .json()
            .await
            .map_err(|e| VsError::Upstream(format!("the managed-identity endpoint answered badly: {e}")))?;
        let token = token["access_token"].as_str().ok_or_else(|| {
            VsError::Upstream(format!(
                "no token for the vault's identity {principal}: {token}"
            ))
        })?;
        let response = self
            .http
            .put(format!("{uri}/secrets/{name}?api-version=7.4"))
            .bearer_auth(token)
            .json(&json!({
                "value": passphrase,
                "contentType": "MARS agent passphrase",
                "tags": {"vault": vault.name, "purpose": "azure-backup-mars-passphrase"},
            }))
            .send()
            .await
            .map_err(|e| {
                VsError::BadRequest(format!("Key Vault {uri} could not be reached: {e}"))
            })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body["error"]["message"].as_str().unwrap_or("no message");
            return Err(VsError::Forbidden(format!(
                "Saving the passphrase to Key Vault {uri} as the identity of vault {} (object id {principal}) failed ({status}): {message} Grant that identity the 'set' secret permission in the Key Vault's access policies.",
                vault.name
            )));
        }
        Ok(body["id"].as_str().unwrap_or_default().to_string())
    }
}
