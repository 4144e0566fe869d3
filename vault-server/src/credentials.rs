//! Vault credentials: certificate upload (`PUT V/certificates/{name}`, which registers the
//! public certificate on the vault's registration app in entra-sim) and the generated
//! `.VaultCredentials` file (root `RSBackupVaultAADCreds`) whose `ManagementCert` holds a
//! fresh certificate and its private key. An agent signs in to entra-sim as the
//! registration app with a client assertion made with that key.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_RSA_SHA256};
use serde_json::{Value, json};
use sqlx::SqlitePool;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::arm::iso;
use crate::error::{Result, VsError};
use crate::vaults::{Vault, Vaults};

/// Generated vault credentials are valid this long on the simulated clock (MARS: 10 days).
pub const VALIDITY_SECONDS: i64 = 10 * 86_400;

/// An uploaded certificate, as stored.
pub struct Uploaded {
    pub thumbprint: String,
    pub subject: String,
    pub issuer: String,
    pub valid_from: i64,
    pub valid_to: i64,
    pub certificate: String,
}

pub struct Credentials<'a> {
    pub pool: &'a SqlitePool,
    pub vaults: &'a Vaults,
}

impl Credentials<'_> {
    /// Registers `certificate_b64` (base64 DER) for the vault; the newest upload is the
    /// vault's latest credential.
    pub async fn upload(
        &self,
        vault: &Vault,
        name: &str,
        certificate_b64: &str,
        now: i64,
    ) -> Result<Value> {
        let der = STANDARD.decode(certificate_b64.trim()).map_err(|_| {
            VsError::CredentialsRefused(
                "properties.certificate must be the base64 of a DER X.509 certificate.".into(),
            )
        })?;
        let (_, parsed) = X509Certificate::from_der(&der).map_err(|e| {
            VsError::CredentialsRefused(format!(
                "properties.certificate is not an X.509 certificate: {e}"
            ))
        })?;
        let uploaded = Uploaded {
            thumbprint: thumbprint(&der),
            subject: parsed.subject().to_string(),
            issuer: parsed.issuer().to_string(),
            valid_from: parsed.validity().not_before.timestamp(),
            valid_to: parsed.validity().not_after.timestamp(),
            certificate: STANDARD.encode(&der),
        };
        if uploaded.valid_to <= now {
            return Err(VsError::CredentialsRefused(format!(
                "The certificate expired at {}; upload a current one.",
                iso(uploaded.valid_to)
            )));
        }
        let (app_id, sp_id) = self.vaults.registration_app(vault).await?;
        let key_id = self
            .vaults
            .entra()
            .add_certificate(&app_id, &uploaded.certificate)
            .await?;
        sqlx::query(
            "INSERT INTO vault_certificates (vault_id, name, thumbprint, certificate, subject, issuer, valid_from, valid_to, \
             entra_key_id, uploaded_at, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
             (SELECT COALESCE(MAX(seq), 0) + 1 FROM vault_certificates WHERE vault_id = ?1)) \
             ON CONFLICT (vault_id, name) DO UPDATE SET thumbprint = excluded.thumbprint, certificate = excluded.certificate, \
             subject = excluded.subject, issuer = excluded.issuer, valid_from = excluded.valid_from, valid_to = excluded.valid_to, \
             entra_key_id = excluded.entra_key_id, uploaded_at = excluded.uploaded_at, seq = excluded.seq",
        )
        .bind(vault.id)
        .bind(name)
        .bind(&uploaded.thumbprint)
        .bind(&uploaded.certificate)
        .bind(&uploaded.subject)
        .bind(&uploaded.issuer)
        .bind(uploaded.valid_from)
        .bind(uploaded.valid_to)
        .bind(&key_id)
        .bind(now)
        .execute(self.pool)
        .await?;
        let entra = self.vaults.entra();
        Ok(json!({
            "name": name,
            "type": "Microsoft.RecoveryServices/vaults/certificates",
            "id": format!("{}/certificates/{name}", vault.arm_id()),
            "properties": {
                "authType": "AzureActiveDirectory",
                "certificate": uploaded.certificate,
                "friendlyName": name,
                "issuer": uploaded.issuer,
                "subject": uploaded.subject,
                "thumbprint": uploaded.thumbprint,
                "validFrom": iso(uploaded.valid_from),
                "validTo": iso(uploaded.valid_to),
                "resourceId": vault.resource_number,
                "aadAuthority": entra.authority,
                "aadTenantId": entra.tenant,
                "servicePrincipalClientId": app_id,
                "servicePrincipalObjectId": sp_id,
                "azureManagementEndpointAudience": format!("{}/", entra.authority),
                "aadAudience": audience(&entra.tenant, vault),
            },
        }))
    }

    /// A new `.VaultCredentials` file (XML) and its file name. `service_url` is the
    /// vault-server origin the agent talks to.
    pub async fn generate(
        &self,
        vault: &Vault,
        service_url: &str,
        now: i64,
    ) -> Result<(String, String)> {
        let key = KeyPair::generate_for(&PKCS_RSA_SHA256).map_err(crypto)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(crypto)?;
        let name = format!(
            "{}{}-{}-vaultcredentials",
            vault.name,
            vault.subscription_id,
            date(now, "%-m-%-d-%Y")
        );
        params
            .distinguished_name
            .push(DnType::CommonName, "Windows Azure Tools");
        params.not_before = offset(now - 300)?;
        params.not_after = offset(now + VALIDITY_SECONDS)?;
        let certificate = params.self_signed(&key).map_err(crypto)?;
        let upload = self
            .upload(vault, &name, &STANDARD.encode(certificate.der()), now)
            .await?;
        let properties = &upload["properties"];
        let bundle = format!("{}{}", certificate.pem(), key.serialize_pem());
        let entra = self.vaults.entra();
        let fields = [
            ("Version", "2.0".to_string()),
            ("SubscriptionId", vault.subscription_id.clone()),
            ("ResourceType", "Vaults".to_string()),
            ("ResourceName", vault.name.clone()),
            ("ManagementCert", STANDARD.encode(bundle)),
            ("ResourceId", vault.resource_number.to_string()),
            ("ResourceGroup", vault.resource_group.clone()),
            ("Location", vault.location.clone()),
            (
                "ProviderNamespace",
                "Microsoft.RecoveryServices".to_string(),
            ),
            ("AadAuthority", entra.authority.clone()),
            ("AadTenantId", entra.tenant.clone()),
            (
                "ServicePrincipalClientId",
                properties["servicePrincipalClientId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ),
            (
                "IdMgmtRestEndpoint",
                format!("{}/", service_url.trim_end_matches('/')),
            ),
            ("AgentLinks", AGENT_LINKS.to_string()),
            ("AadAudience", audience(&entra.tenant, vault)),
        ];
        let mut xml = String::from(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<RSBackupVaultAADCreds xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns=\"http://schemas.datacontract.org/2004/07/Microsoft.Azure.Portal.RecoveryServices.Models.Common\">\n",
        );
        for (element, value) in fields {
            xml.push_str(&format!("  <{element}>{}</{element}>\n", escape(&value)));
        }
        xml.push_str("</RSBackupVaultAADCreds>\n");
        let file_name = format!(
            "{}_{}.VaultCredentials",
            vault.name,
            date(now, "%a %b %d %Y")
        );
        Ok((file_name, xml))
    }
}

const AGENT_LINKS: &str = "WABUpdateKBLink,http://go.microsoft.com/fwlink/p/?LinkId=229525;StorageQuotaPurchaseLink,http://go.microsoft.com/fwlink/?LinkId=205490;WebPortalLink,http://go.microsoft.com/fwlink/?LinkId=817353;WABprivacyStatement,http://go.microsoft.com/fwlink/?LinkId=221308";

fn audience(tenant: &str, vault: &Vault) -> String {
    format!(
        "api://{tenant}/RecoveryServiceVault/{}/{}/{}",
        vault.location, vault.name, vault.resource_number
    )
}

/// SHA-1 of the DER certificate, upper-case hex (Azure's thumbprint).
fn thumbprint(der: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

fn escape(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn date(unix: i64, format: &str) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format(format)
        .to_string()
}

fn offset(unix: i64) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|e| VsError::Upstream(format!("certificate validity out of range: {e}")))
}

fn crypto(e: rcgen::Error) -> VsError {
    VsError::Upstream(format!("certificate generation failed: {e}"))
}
