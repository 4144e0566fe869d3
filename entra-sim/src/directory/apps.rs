//! App registrations, their credentials (client secrets and certificates) and the service
//! principal each one gets in its tenant. Creating an app creates its service principal at
//! the same time (real Entra needs a second call; a simulator gains nothing from that).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Directory;
use crate::error::{EntraError, Result};

/// `end_at` of credentials that never expire (9999-12-31).
pub const FAR_FUTURE: i64 = 253_402_214_400;
/// Default lifetime of a generated client secret: two years, like the portal's default.
const DEFAULT_SECRET_LIFETIME: i64 = 2 * 365 * 86_400;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AppRole {
    #[serde(default = "new_id")]
    pub id: String,
    pub value: String,
    #[serde(default)]
    pub display_name: String,
}

fn new_id() -> String {
    Uuid::new_v4().to_string()
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    /// Object id of the application object.
    pub id: String,
    pub app_id: String,
    pub tenant_id: String,
    pub display_name: String,
    pub identifier_uris: Vec<String>,
    pub app_roles: Vec<AppRole>,
    /// Object id of the app's service principal (the `oid` of its tokens).
    pub service_principal_id: String,
    pub password_credentials: Vec<StoredSecret>,
    pub key_credentials: Vec<KeyCredential>,
    pub created_at: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewApplication {
    pub display_name: String,
    #[serde(default)]
    pub identifier_uris: Vec<String>,
    #[serde(default)]
    pub app_roles: Vec<AppRole>,
    /// A fixed application (client) id, for fixtures and seed files; a new GUID when absent.
    #[serde(default)]
    pub app_id: Option<String>,
}

/// A client secret as listed: never the secret itself.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct StoredSecret {
    pub key_id: String,
    pub display_name: Option<String>,
    pub hint: String,
    pub start_date_time: i64,
    pub end_date_time: i64,
}

/// A freshly created secret: the only time `secret_text` is ever shown.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewPassword {
    #[serde(flatten)]
    pub stored: StoredSecret,
    pub secret_text: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KeyCredential {
    pub key_id: String,
    pub display_name: Option<String>,
    /// base64url SHA-1 of the certificate (the `x5t` a client assertion names).
    pub thumbprint_sha1: String,
    /// base64url SHA-256 of the certificate (`x5t#S256`).
    pub thumbprint_sha256: String,
    /// Upper-case hex SHA-1, as the portal shows it.
    pub custom_key_identifier: String,
    pub start_date_time: i64,
    pub end_date_time: i64,
    #[serde(skip)]
    pub certificate_der: Vec<u8>,
}

/// An application joined with its service principal, as stored.
#[derive(sqlx::FromRow)]
struct ApplicationRow {
    object_id: String,
    app_id: String,
    display_name: String,
    /// JSON arrays.
    identifier_uris: String,
    app_roles: String,
    created_at: i64,
    service_principal_id: String,
}

/// A registered certificate, as stored.
#[derive(sqlx::FromRow)]
struct CertificateRow {
    key_id: String,
    display_name: Option<String>,
    thumbprint_sha1: String,
    thumbprint_sha256: String,
    certificate_der: Vec<u8>,
    start_at: i64,
    end_at: i64,
}

/// What the token endpoint needs about a confidential client.
#[derive(Clone, Debug)]
pub struct ClientApplication {
    pub app_object_id: String,
    pub app_id: String,
    pub service_principal_id: String,
}

pub(crate) fn secret_digest(secret: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes())
        .as_ref()
        .to_vec()
}

/// A secret in the portal's style: 40 characters, `~` in fourth position after the hint.
fn generate_secret() -> Result<String> {
    let mut bytes = [0u8; 30];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| EntraError::Crypto("random generator failed".into()))?;
    let body = URL_SAFE_NO_PAD.encode(bytes);
    Ok(format!("{}8Q~{}", &body[..3], &body[3..]))
}

impl Directory {
    pub async fn create_application(
        &self,
        tenant_id: &str,
        new: NewApplication,
        now: i64,
    ) -> Result<Application> {
        let tenant = self.tenant(tenant_id).await?;
        let display_name = new.display_name.trim().to_string();
        sim_core::arm::check_display_name("'displayName'", display_name.as_ref(), 256)
            .map_err(EntraError::InvalidInput)?;
        for uri in &new.identifier_uris {
            if !(uri.starts_with("api://") || uri.starts_with("https://")) || uri.len() > 255 {
                return Err(EntraError::InvalidInput(format!(
                    "identifierUris must start with 'api://' or 'https://' (at most 255 characters), got '{uri}'."
                )));
            }
        }
        for role in &new.app_roles {
            if role.value.is_empty()
                || role.value.contains(char::is_whitespace)
                || role.value.len() > 120
            {
                return Err(EntraError::InvalidInput(format!(
                    "appRoles values must be 1 to 120 characters without spaces, got '{}'.",
                    role.value
                )));
            }
        }
        let object_id = Uuid::new_v4().to_string();
        let app_id = match &new.app_id {
            Some(chosen) => Uuid::parse_str(chosen)
                .map_err(|_| {
                    EntraError::InvalidInput(format!("'appId' must be a GUID, got '{chosen}'."))
                })?
                .to_string(),
            None => Uuid::new_v4().to_string(),
        };
        let sp_id = Uuid::new_v4().to_string();
        let mut tx = self.pool.begin().await?;
        let taken: Option<String> =
            sqlx::query_scalar("SELECT app_id FROM applications WHERE app_id = ? COLLATE NOCASE")
                .bind(&app_id)
                .fetch_optional(&mut *tx)
                .await?;
        if taken.is_some() {
            return Err(EntraError::Conflict(format!(
                "An application with appId '{app_id}' already exists."
            )));
        }
        for uri in &new.identifier_uris {
            let taken: Option<String> = sqlx::query_scalar(
                "SELECT a.app_id FROM applications a, json_each(a.identifier_uris) u WHERE a.tenant_id = ? AND u.value = ? COLLATE NOCASE",
            )
            .bind(&tenant.id)
            .bind(uri)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(other) = taken {
                return Err(EntraError::Conflict(format!(
                    "The identifier URI '{uri}' is already used by application '{other}' in this tenant."
                )));
            }
        }
        sqlx::query(
            "INSERT INTO applications (object_id, tenant_id, app_id, display_name, identifier_uris, app_roles, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&object_id)
        .bind(&tenant.id)
        .bind(&app_id)
        .bind(&display_name)
        .bind(serde_json::to_string(&new.identifier_uris).expect("strings serialise"))
        .bind(serde_json::to_string(&new.app_roles).expect("roles serialise"))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO service_principals (object_id, tenant_id, app_id, display_name, kind, created_at) VALUES (?, ?, ?, ?, 'Application', ?)",
        )
        .bind(&sp_id)
        .bind(&tenant.id)
        .bind(&app_id)
        .bind(&display_name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.application(&tenant.id, &app_id).await
    }

    pub async fn list_applications(&self, tenant_id: &str) -> Result<Vec<Application>> {
        let tenant = self.tenant(tenant_id).await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT app_id FROM applications WHERE tenant_id = ? ORDER BY created_at, app_id",
        )
        .bind(&tenant.id)
        .fetch_all(&self.pool)
        .await?;
        let mut apps = Vec::with_capacity(ids.len());
        for app_id in ids {
            apps.push(self.application(&tenant.id, &app_id).await?);
        }
        Ok(apps)
    }

    pub async fn application(&self, tenant_id: &str, app_id: &str) -> Result<Application> {
        let tenant = self.tenant(tenant_id).await?;
        let row: ApplicationRow = sqlx::query_as(
            "SELECT a.object_id, a.app_id, a.display_name, a.identifier_uris, a.app_roles, a.created_at,
                    sp.object_id AS service_principal_id
             FROM applications a JOIN service_principals sp ON sp.tenant_id = a.tenant_id AND sp.app_id = a.app_id
             WHERE a.tenant_id = ? AND a.app_id = ? COLLATE NOCASE",
        )
        .bind(&tenant.id)
        .bind(app_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| EntraError::NotFound {
            kind: "Application",
            id: app_id.to_string(),
        })?;
        Ok(Application {
            password_credentials: self.stored_secrets(&row.object_id).await?,
            key_credentials: self.certificates(&row.object_id).await?,
            id: row.object_id,
            app_id: row.app_id,
            tenant_id: tenant.id,
            display_name: row.display_name,
            identifier_uris: serde_json::from_str(&row.identifier_uris).unwrap_or_default(),
            app_roles: serde_json::from_str(&row.app_roles).unwrap_or_default(),
            service_principal_id: row.service_principal_id,
            created_at: row.created_at,
        })
    }

    pub async fn delete_application(&self, tenant_id: &str, app_id: &str) -> Result<()> {
        let app = self.application(tenant_id, app_id).await?;
        if app.app_id == sim_core::well_known::ADMIN_CLIENT_ID {
            return Err(EntraError::Conflict(
                "The well-known admin application cannot be deleted.".into(),
            ));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM app_role_assignments WHERE principal_object_id = ? OR resource_app_id = ?",
        )
        .bind(&app.service_principal_id)
        .bind(&app.app_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM service_principals WHERE object_id = ?")
            .bind(&app.service_principal_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM applications WHERE object_id = ?")
            .bind(&app.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Adds a generated client secret; `end_at` defaults to two years from `now`.
    pub async fn add_password(
        &self,
        tenant_id: &str,
        app_id: &str,
        display_name: Option<String>,
        end_at: Option<i64>,
        chosen: Option<String>,
        now: i64,
    ) -> Result<NewPassword> {
        let app = self.application(tenant_id, app_id).await?;
        if let Some(text) = &chosen {
            let fits =
                (16..=256).contains(&text.len()) && text.chars().all(|c| c.is_ascii_graphic());
            if !fits {
                return Err(EntraError::InvalidInput(
                    "'secretText' must be 16 to 256 printable ASCII characters without spaces."
                        .into(),
                ));
            }
        }
        let end_at = end_at.unwrap_or(now + DEFAULT_SECRET_LIFETIME);
        if end_at <= now {
            return Err(EntraError::InvalidInput(
                "'endDateTime' must be in the future.".into(),
            ));
        }
        let secret = match chosen {
            Some(text) => text,
            None => generate_secret()?,
        };
        let stored = StoredSecret {
            key_id: Uuid::new_v4().to_string(),
            display_name,
            hint: secret[..3].to_string(),
            start_date_time: now,
            end_date_time: end_at,
        };
        sqlx::query(
            "INSERT INTO password_credentials (key_id, app_object_id, display_name, hint, secret_sha256, start_at, end_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&stored.key_id)
        .bind(&app.id)
        .bind(&stored.display_name)
        .bind(&stored.hint)
        .bind(secret_digest(&secret))
        .bind(stored.start_date_time)
        .bind(stored.end_date_time)
        .execute(&self.pool)
        .await?;
        Ok(NewPassword {
            stored,
            secret_text: secret,
        })
    }

    pub async fn remove_password(&self, tenant_id: &str, app_id: &str, key_id: &str) -> Result<()> {
        let sql = "DELETE FROM password_credentials WHERE key_id = ? AND app_object_id = ?";
        self.remove_credential(tenant_id, app_id, key_id, sql, "Password credential")
            .await
    }

    /// Deletes one credential of the app: `sql` binds `key_id` then `app_object_id`.
    async fn remove_credential(
        &self,
        tenant_id: &str,
        app_id: &str,
        key_id: &str,
        sql: &'static str,
        kind: &'static str,
    ) -> Result<()> {
        let app = self.application(tenant_id, app_id).await?;
        let done = sqlx::query(sql)
            .bind(key_id)
            .bind(&app.id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(EntraError::NotFound {
                kind,
                id: key_id.into(),
            });
        }
        Ok(())
    }

    /// Registers a certificate (PEM, or base64 DER) whose key may sign client assertions.
    pub async fn add_certificate(
        &self,
        tenant_id: &str,
        app_id: &str,
        certificate: &str,
        display_name: Option<String>,
    ) -> Result<KeyCredential> {
        let app = self.application(tenant_id, app_id).await?;
        let der = certificate_der(certificate)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| {
            EntraError::InvalidInput(format!(
                "'certificate' is not a valid X.509 certificate: {e}"
            ))
        })?;
        if !matches!(
            cert.public_key().parsed(),
            Ok(x509_parser::public_key::PublicKey::RSA(_))
        ) {
            return Err(EntraError::InvalidInput(
                "Only RSA certificates can sign client assertions (RS256/PS256); this certificate has another key type.".into(),
            ));
        }
        let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
        let sha256 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
        let credential = KeyCredential {
            key_id: Uuid::new_v4().to_string(),
            display_name: display_name.or_else(|| Some(cert.subject().to_string())),
            thumbprint_sha1: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
            thumbprint_sha256: URL_SAFE_NO_PAD.encode(sha256.as_ref()),
            custom_key_identifier: sha1.as_ref().iter().map(|b| format!("{b:02X}")).collect(),
            start_date_time: cert.validity().not_before.timestamp(),
            end_date_time: cert.validity().not_after.timestamp(),
            certificate_der: der.clone(),
        };
        let duplicate: Option<String> = sqlx::query_scalar(
            "SELECT key_id FROM key_credentials WHERE app_object_id = ? AND thumbprint_sha1 = ?",
        )
        .bind(&app.id)
        .bind(&credential.thumbprint_sha1)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(existing) = duplicate {
            return Err(EntraError::Conflict(format!(
                "This certificate is already registered on the application as key '{existing}'."
            )));
        }
        sqlx::query(
            "INSERT INTO key_credentials (key_id, app_object_id, display_name, thumbprint_sha1, thumbprint_sha256, certificate_der, start_at, end_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&credential.key_id)
        .bind(&app.id)
        .bind(&credential.display_name)
        .bind(&credential.thumbprint_sha1)
        .bind(&credential.thumbprint_sha256)
        .bind(&der)
        .bind(credential.start_date_time)
        .bind(credential.end_date_time)
        .execute(&self.pool)
        .await?;
        Ok(credential)
    }

    pub async fn remove_certificate(
        &self,
        tenant_id: &str,
        app_id: &str,
        key_id: &str,
    ) -> Result<()> {
        let sql = "DELETE FROM key_credentials WHERE key_id = ? AND app_object_id = ?";
        self.remove_credential(tenant_id, app_id, key_id, sql, "Key credential")
            .await
    }

    /// The confidential client `client_id` of tenant `tenant_id`, if registered there.
    pub async fn client_application(
        &self,
        tenant_id: &str,
        client_id: &str,
    ) -> Result<Option<ClientApplication>> {
        let row = sqlx::query_as::<_, (String, String, String)>(
            "SELECT a.object_id, a.app_id, sp.object_id
             FROM applications a JOIN service_principals sp ON sp.tenant_id = a.tenant_id AND sp.app_id = a.app_id
             WHERE a.tenant_id = ? AND a.app_id = ? COLLATE NOCASE",
        )
        .bind(tenant_id)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(app_object_id, app_id, service_principal_id)| ClientApplication {
                app_object_id,
                app_id,
                service_principal_id,
            },
        ))
    }

    /// Checks `secret` against the app's secrets: `Ok` when a current one matches.
    pub async fn check_secret(
        &self,
        client: &ClientApplication,
        secret: &str,
        now: i64,
    ) -> Result<()> {
        let rows = sqlx::query_as::<_, (Vec<u8>, i64, i64)>(
            "SELECT secret_sha256, start_at, end_at FROM password_credentials WHERE app_object_id = ?",
        )
        .bind(&client.app_object_id)
        .fetch_all(&self.pool)
        .await?;
        let digest = secret_digest(secret);
        let matching = rows.iter().find(|(stored, _, _)| {
            aws_lc_rs::constant_time::verify_slices_are_equal(stored, &digest).is_ok()
        });
        match matching {
            Some((_, start, end)) if *start <= now + 300 && now < *end => Ok(()),
            Some(_) => Err(EntraError::ExpiredClientSecret(client.app_id.clone())),
            None => Err(EntraError::InvalidClientSecret(client.app_id.clone())),
        }
    }

    async fn stored_secrets(&self, app_object_id: &str) -> Result<Vec<StoredSecret>> {
        Ok(sqlx::query_as(
            "SELECT key_id, display_name, hint, start_at AS start_date_time, end_at AS end_date_time
             FROM password_credentials WHERE app_object_id = ? ORDER BY start_at, key_id",
        )
        .bind(app_object_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The app's registered certificates.
    pub async fn certificates(&self, app_object_id: &str) -> Result<Vec<KeyCredential>> {
        let rows: Vec<CertificateRow> = sqlx::query_as(
            "SELECT key_id, display_name, thumbprint_sha1, thumbprint_sha256, certificate_der, start_at, end_at
             FROM key_credentials WHERE app_object_id = ? ORDER BY start_at, key_id",
        )
        .bind(app_object_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| KeyCredential {
                custom_key_identifier: URL_SAFE_NO_PAD
                    .decode(&row.thumbprint_sha1)
                    .unwrap_or_default()
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect(),
                key_id: row.key_id,
                display_name: row.display_name,
                thumbprint_sha1: row.thumbprint_sha1,
                thumbprint_sha256: row.thumbprint_sha256,
                certificate_der: row.certificate_der,
                start_date_time: row.start_at,
                end_date_time: row.end_at,
            })
            .collect())
    }

    /// The registered app whose app id or identifier URI is `resource`, in this tenant.
    pub async fn application_for_resource(
        &self,
        tenant_id: &str,
        resource: &str,
    ) -> Result<Option<(String, Vec<AppRole>)>> {
        let bare = resource
            .strip_prefix("api://")
            .unwrap_or(resource)
            .trim_end_matches('/');
        let row = sqlx::query_as::<_, (String, String)>(
            "SELECT a.app_id, a.app_roles FROM applications a
             WHERE a.tenant_id = ?1 AND (a.app_id = ?2 COLLATE NOCASE
                OR EXISTS (SELECT 1 FROM json_each(a.identifier_uris) u WHERE u.value = ?3 COLLATE NOCASE))",
        )
        .bind(tenant_id)
        .bind(bare)
        .bind(resource.trim_end_matches('/'))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(app_id, roles)| (app_id, serde_json::from_str(&roles).unwrap_or_default())))
    }
}

/// Accepts a PEM certificate or its base64 DER (as Graph's `keyCredentials.key`).
fn certificate_der(input: &str) -> Result<Vec<u8>> {
    let input = input.trim();
    if input.starts_with("-----BEGIN") {
        let (_, pem) = x509_parser::pem::parse_x509_pem(input.as_bytes()).map_err(|e| {
            EntraError::InvalidInput(format!("'certificate' is not a valid PEM certificate: {e}"))
        })?;
        if pem.label != "CERTIFICATE" {
            return Err(EntraError::InvalidInput(format!(
                "'certificate' must be a CERTIFICATE PEM block, got '{}'. Never upload a private key.",
                pem.label
            )));
        }
        Ok(pem.contents)
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(input.split_whitespace().collect::<String>())
            .map_err(|_| {
                EntraError::InvalidInput(
                    "'certificate' must be a PEM certificate or base64-encoded DER.".into(),
                )
            })
    }
}
