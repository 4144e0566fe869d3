//! A `.VaultCredentials` file (root `RSBackupVaultAADCreds`): which vault, which tenant and
//! endpoints, and the certificate with its key that signs the agent in for registration.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::{AgentError, Result};

#[derive(Clone, Debug)]
pub struct VaultCredentials {
    pub subscription_id: String,
    pub resource_group: String,
    pub vault: String,
    pub tenant_id: String,
    pub authority: String,
    pub client_id: String,
    pub service_url: String,
    /// PEM certificate (registered on the vault's registration app).
    pub certificate_pem: String,
    /// PEM PKCS#8 private key of that certificate.
    pub key_pem: String,
}

/// The text of `<name>…</name>`, unescaped.
fn element(xml: &str, name: &str) -> Result<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open).map(|i| i + open.len()).ok_or_else(|| {
        AgentError::Credentials(format!(
            "the vault credentials file has no <{name}>; download it again"
        ))
    })?;
    let end = xml[start..]
        .find(&close)
        .map(|i| i + start)
        .ok_or_else(|| {
            AgentError::Credentials(format!(
                "<{name}> is not closed in the vault credentials file"
            ))
        })?;
    Ok(xml[start..end]
        .trim()
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&"))
}

impl VaultCredentials {
    pub fn load(path: &Path) -> Result<Self> {
        let xml = std::fs::read_to_string(path).map_err(|e| AgentError::io(path, e))?;
        if !xml.contains("<RSBackupVaultAADCreds") {
            return Err(AgentError::Credentials(format!(
                "{} is not a vault credentials file (no RSBackupVaultAADCreds element)",
                path.display()
            )));
        }
        let bundle = STANDARD
            .decode(element(&xml, "ManagementCert")?)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                AgentError::Credentials(
                    "ManagementCert is not a certificate bundle; download the credentials again"
                        .into(),
                )
            })?;
        let split = bundle.find("-----BEGIN PRIVATE KEY-----").ok_or_else(|| {
            AgentError::Credentials(
                "ManagementCert holds no private key; download the credentials again".into(),
            )
        })?;
        Ok(VaultCredentials {
            subscription_id: element(&xml, "SubscriptionId")?,
            resource_group: element(&xml, "ResourceGroup")?,
            vault: element(&xml, "ResourceName")?,
            tenant_id: element(&xml, "AadTenantId")?,
            authority: element(&xml, "AadAuthority")?
                .trim_end_matches('/')
                .to_string(),
            client_id: element(&xml, "ServicePrincipalClientId")?,
            service_url: element(&xml, "IdMgmtRestEndpoint")?
                .trim_end_matches('/')
                .to_string(),
            certificate_pem: bundle[..split].to_string(),
            key_pem: bundle[split..].to_string(),
        })
    }
}

/// DER bytes of the first certificate in a PEM text.
pub fn pem_to_der(pem: &str) -> Result<Vec<u8>> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    STANDARD
        .decode(body)
        .map_err(|_| AgentError::Credentials("the certificate is not valid PEM".into()))
}

/// SHA-1 of the DER certificate, upper-case hex (Azure's thumbprint).
pub fn thumbprint(der: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}
