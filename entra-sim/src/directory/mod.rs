//! The directory: what Entra knows about tenants and the principals in them. This is the
//! domain layer behind both the admin API and token issuance; it knows nothing of HTTP.
//!
//! - this file: the store, tenants, seeding of the well-known development identity;
//! - [`apps`]: app registrations, their secrets and certificates, service principals;
//! - [`identities`]: managed identities and app-role assignments.

mod apps;
mod identities;

pub use apps::{
    AppRole, Application, ClientApplication, KeyCredential, NewApplication, NewPassword,
    StoredSecret,
};
pub use identities::{
    AppRoleAssignment, IdentitySelector, ManagedIdentity, ManagedIdentityKind, NewManagedIdentity,
    ServicePrincipal,
};

use serde::{Deserialize, Serialize};
use sim_core::db::Storage;
use sim_core::well_known;
use sqlx::SqlitePool;

use crate::error::{EntraError, Result};
use crate::resources;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Fixed object ids of the well-known principals (documented in the README).
pub const ADMIN_APP_OBJECT_ID: &str = "a2e0c0de-5e11-4a55-9a2e-00000000002a";
pub const ADMIN_SP_OBJECT_ID: &str = sim_core::well_known::ADMIN_OBJECT_ID;
pub const HOST_IDENTITY_OBJECT_ID: &str = "a2e0c0de-5e11-4a55-9a2e-00000000001b";
const ADMIN_SECRET_KEY_ID: &str = "a2e0c0de-5e11-4a55-9a2e-00000000003a";

#[derive(Clone)]
pub struct Directory {
    pool: SqlitePool,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    pub id: String,
    pub display_name: String,
    pub domain: String,
    pub created_at: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewTenant {
    pub display_name: String,
    /// Optional fixed id (a GUID); generated when absent.
    pub id: Option<String>,
    /// Optional verified domain; `<id-prefix>.onmicrosoft.com` when absent.
    pub domain: Option<String>,
}

impl Directory {
    pub async fn open(storage: &Storage) -> std::result::Result<Self, sim_core::Error> {
        let pool = sim_core::db::open(storage, "entra", &MIGRATOR).await?;
        Ok(Directory { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Creates the well-known tenant, admin app (with its fixed secret and the admin role)
    /// and host managed identity if they are missing. Idempotent.
    pub async fn seed_well_known(&self, now: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT OR IGNORE INTO tenants (id, display_name, domain, created_at) VALUES (?, ?, ?, ?)")
            .bind(well_known::TENANT_ID)
            .bind("azsim Development")
            .bind(well_known::TENANT_DOMAIN)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT OR IGNORE INTO applications (object_id, tenant_id, app_id, display_name, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(ADMIN_APP_OBJECT_ID)
        .bind(well_known::TENANT_ID)
        .bind(well_known::ADMIN_CLIENT_ID)
        .bind("azsim-admin")
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT OR IGNORE INTO service_principals (object_id, tenant_id, app_id, display_name, kind, created_at) VALUES (?, ?, ?, ?, 'Application', ?)",
        )
        .bind(ADMIN_SP_OBJECT_ID)
        .bind(well_known::TENANT_ID)
        .bind(well_known::ADMIN_CLIENT_ID)
        .bind("azsim-admin")
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT OR IGNORE INTO password_credentials (key_id, app_object_id, display_name, hint, secret_sha256, start_at, end_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(ADMIN_SECRET_KEY_ID)
        .bind(ADMIN_APP_OBJECT_ID)
        .bind("well-known development secret")
        .bind(&well_known::ADMIN_CLIENT_SECRET[..3])
        .bind(apps::secret_digest(well_known::ADMIN_CLIENT_SECRET))
        .bind(now)
        .bind(apps::FAR_FUTURE)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT OR IGNORE INTO app_role_assignments (id, principal_object_id, resource_app_id, app_role, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind("a2e0c0de-5e11-4a55-9a2e-00000000004a")
        .bind(ADMIN_SP_OBJECT_ID)
        .bind(resources::AZSIM_ADMIN_API_APP_ID)
        .bind(well_known::ADMIN_ROLE)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if self
            .managed_identity(&IdentitySelector::ObjectId(HOST_IDENTITY_OBJECT_ID.into()))
            .await?
            .is_none()
        {
            self.insert_managed_identity(
                well_known::TENANT_ID,
                HOST_IDENTITY_OBJECT_ID,
                well_known::HOST_IDENTITY_CLIENT_ID,
                &NewManagedIdentity {
                    kind: ManagedIdentityKind::SystemAssigned,
                    name: "azsim-host".into(),
                    resource_id: well_known::HOST_IDENTITY_RESOURCE_ID.into(),
                },
                now,
            )
            .await?;
        }
        Ok(())
    }

    /// Deletes every tenant (and with them every principal), then re-seeds. Signing keys
    /// stay, so tokens verifiers have cached keep verifying.
    pub async fn reset(&self, now: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM app_role_assignments")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM tenants").execute(&mut *tx).await?;
        tx.commit().await?;
        self.seed_well_known(now).await
    }

    /// Finds a tenant by GUID or verified domain.
    pub async fn resolve_tenant(&self, id_or_domain: &str) -> Result<Option<Tenant>> {
        let row = sqlx::query_as::<_, (String, String, String, i64)>(
            "SELECT id, display_name, domain, created_at FROM tenants WHERE id = ?1 COLLATE NOCASE OR domain = ?1",
        )
        .bind(id_or_domain)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id, display_name, domain, created_at)| Tenant {
            id,
            display_name,
            domain,
            created_at,
        }))
    }

    /// Like [`resolve_tenant`](Self::resolve_tenant) but absent is an error.
    pub async fn tenant(&self, id_or_domain: &str) -> Result<Tenant> {
        self.resolve_tenant(id_or_domain)
            .await?
            .ok_or_else(|| EntraError::NotFound {
                kind: "Tenant",
                id: id_or_domain.to_string(),
            })
    }

    pub async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let rows = sqlx::query_as::<_, (String, String, String, i64)>(
            "SELECT id, display_name, domain, created_at FROM tenants ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, display_name, domain, created_at)| Tenant {
                id,
                display_name,
                domain,
                created_at,
            })
            .collect())
    }

    pub async fn create_tenant(&self, new: NewTenant, now: i64) -> Result<Tenant> {
        let display_name = new.display_name.trim();
        sim_core::arm::check_display_name("'displayName'", display_name, 256)
            .map_err(EntraError::InvalidInput)?;
        let id = match new.id {
            Some(id) => uuid::Uuid::parse_str(&id)
                .map_err(|_| EntraError::InvalidInput(format!("'id' must be a GUID, got '{id}'.")))?
                .to_string(),
            None => uuid::Uuid::new_v4().to_string(),
        };
        let domain = new
            .domain
            .unwrap_or_else(|| format!("tenant{}.onmicrosoft.com", &id[..8]));
        if !is_domain_name(&domain) {
            return Err(EntraError::InvalidInput(format!(
                "'domain' must be a DNS name such as contoso.onmicrosoft.com, got '{domain}'."
            )));
        }
        let inserted = sqlx::query(
            "INSERT INTO tenants (id, display_name, domain, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(display_name)
        .bind(&domain)
        .bind(now)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(Tenant {
                id,
                display_name: display_name.to_string(),
                domain,
                created_at: now,
            }),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(EntraError::Conflict(
                format!("A tenant with id '{id}' or domain '{domain}' already exists."),
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete_tenant(&self, id_or_domain: &str) -> Result<()> {
        let tenant = self.tenant(id_or_domain).await?;
        if tenant.id == well_known::TENANT_ID {
            return Err(EntraError::Conflict(
                "The well-known development tenant cannot be deleted; use POST /admin/reset to clear it.".into(),
            ));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM app_role_assignments WHERE principal_object_id IN (SELECT object_id FROM service_principals WHERE tenant_id = ?)",
        )
        .bind(&tenant.id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM tenants WHERE id = ?")
            .bind(&tenant.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

fn is_domain_name(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
