//! Managed identities (system- and user-assigned) and app-role assignments, plus the
//! service-principal listing they share with applications.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Directory;
use crate::error::{EntraError, Result};
use crate::resources;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum ManagedIdentityKind {
    SystemAssigned,
    UserAssigned,
}

impl ManagedIdentityKind {
    fn as_str(self) -> &'static str {
        match self {
            ManagedIdentityKind::SystemAssigned => "SystemAssigned",
            ManagedIdentityKind::UserAssigned => "UserAssigned",
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ManagedIdentity {
    /// Object id of the identity's service principal (`principalId` in ARM).
    pub principal_id: String,
    pub client_id: String,
    pub tenant_id: String,
    /// The Azure resource the identity belongs to (system-assigned) or is (user-assigned).
    pub resource_id: String,
    #[serde(rename = "type")]
    pub kind: ManagedIdentityKind,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewManagedIdentity {
    #[serde(rename = "type")]
    pub kind: ManagedIdentityKind,
    pub name: String,
    pub resource_id: String,
}

/// How a managed-identity token request names its identity.
#[derive(Clone, Debug)]
pub enum IdentitySelector {
    ClientId(String),
    ObjectId(String),
    ResourceId(String),
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct AppRoleAssignment {
    pub id: String,
    pub principal_id: String,
    pub resource_app_id: String,
    pub app_role: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePrincipal {
    pub id: String,
    pub app_id: String,
    pub display_name: String,
    pub service_principal_type: String,
}

type IdentityRow = (String, String, String, String, String, String, i64);

fn identity_from_row(
    (principal_id, client_id, tenant_id, resource_id, kind, name, created_at): IdentityRow,
) -> ManagedIdentity {
    ManagedIdentity {
        principal_id,
        client_id,
        tenant_id,
        resource_id,
        kind: if kind == "UserAssigned" {
            ManagedIdentityKind::UserAssigned
        } else {
            ManagedIdentityKind::SystemAssigned
        },
        name,
        created_at,
    }
}

impl Directory {
    pub async fn create_managed_identity(
        &self,
        tenant_id: &str,
        new: NewManagedIdentity,
        now: i64,
    ) -> Result<ManagedIdentity> {
        let tenant = self.tenant(tenant_id).await?;
        let name = new.name.trim();
        if name.is_empty() || name.len() > 128 {
            return Err(EntraError::InvalidInput(
                "'name' must be 1 to 128 characters.".into(),
            ));
        }
        if !new.resource_id.starts_with("/subscriptions/") {
            return Err(EntraError::InvalidInput(format!(
                "'resourceId' must be an Azure resource id starting with /subscriptions/, got '{}'.",
                new.resource_id
            )));
        }
        let object_id = Uuid::new_v4().to_string();
        let client_id = Uuid::new_v4().to_string();
        self.insert_managed_identity(&tenant.id, &object_id, &client_id, &new, now)
            .await
    }

    pub(super) async fn insert_managed_identity(
        &self,
        tenant_id: &str,
        object_id: &str,
        client_id: &str,
        new: &NewManagedIdentity,
        now: i64,
    ) -> Result<ManagedIdentity> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO service_principals (object_id, tenant_id, app_id, display_name, kind, created_at) VALUES (?, ?, ?, ?, 'ManagedIdentity', ?)",
        )
        .bind(object_id)
        .bind(tenant_id)
        .bind(client_id)
        .bind(new.name.trim())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO managed_identities (object_id, tenant_id, client_id, resource_id, kind, name, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(object_id)
        .bind(tenant_id)
        .bind(client_id)
        .bind(&new.resource_id)
        .bind(new.kind.as_str())
        .bind(new.name.trim())
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(EntraError::Conflict(format!(
                    "The resource '{}' already has a managed identity.",
                    new.resource_id
                )));
            }
            other => {
                other?;
            }
        }
        tx.commit().await?;
        Ok(ManagedIdentity {
            principal_id: object_id.into(),
            client_id: client_id.into(),
            tenant_id: tenant_id.into(),
            resource_id: new.resource_id.clone(),
            kind: new.kind,
            name: new.name.trim().into(),
            created_at: now,
        })
    }

    pub async fn list_managed_identities(&self, tenant_id: &str) -> Result<Vec<ManagedIdentity>> {
        let tenant = self.tenant(tenant_id).await?;
        let rows = sqlx::query_as::<_, IdentityRow>(
            "SELECT object_id, client_id, tenant_id, resource_id, kind, name, created_at
             FROM managed_identities WHERE tenant_id = ? ORDER BY created_at, object_id",
        )
        .bind(&tenant.id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(identity_from_row).collect())
    }

    /// Finds an identity by client id, object id or resource id (in any tenant: those ids
    /// are globally unique).
    pub async fn managed_identity(
        &self,
        selector: &IdentitySelector,
    ) -> Result<Option<ManagedIdentity>> {
        let (sql, value) = match selector {
            IdentitySelector::ClientId(v) => (
                "SELECT object_id, client_id, tenant_id, resource_id, kind, name, created_at FROM managed_identities WHERE client_id = ? COLLATE NOCASE",
                v,
            ),
            IdentitySelector::ObjectId(v) => (
                "SELECT object_id, client_id, tenant_id, resource_id, kind, name, created_at FROM managed_identities WHERE object_id = ? COLLATE NOCASE",
                v,
            ),
            IdentitySelector::ResourceId(v) => (
                "SELECT object_id, client_id, tenant_id, resource_id, kind, name, created_at FROM managed_identities WHERE resource_id = ? COLLATE NOCASE",
                v,
            ),
        };
        let row = sqlx::query_as::<_, IdentityRow>(sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(identity_from_row))
    }

    pub async fn delete_managed_identity(&self, tenant_id: &str, principal_id: &str) -> Result<()> {
        let tenant = self.tenant(tenant_id).await?;
        if principal_id.eq_ignore_ascii_case(super::HOST_IDENTITY_OBJECT_ID) {
            return Err(EntraError::Conflict(
                "The well-known host identity cannot be deleted.".into(),
            ));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM app_role_assignments WHERE principal_object_id = ?")
            .bind(principal_id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM service_principals WHERE object_id = ? AND tenant_id = ? AND kind = 'ManagedIdentity'")
            .bind(principal_id)
            .bind(&tenant.id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(EntraError::NotFound {
                kind: "Managed identity",
                id: principal_id.into(),
            });
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_service_principals(&self, tenant_id: &str) -> Result<Vec<ServicePrincipal>> {
        let tenant = self.tenant(tenant_id).await?;
        let rows = sqlx::query_as::<_, (String, String, String, String)>(
            "SELECT object_id, app_id, display_name, kind FROM service_principals WHERE tenant_id = ? ORDER BY created_at, object_id",
        )
        .bind(&tenant.id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, app_id, display_name, kind)| ServicePrincipal {
                id,
                app_id,
                display_name,
                service_principal_type: kind,
            })
            .collect())
    }

    /// Grants `principal_id` the app role `app_role` of resource app `resource_app_id`
    /// (a first-party resource or an app registered in the tenant that defines the role).
    pub async fn assign_app_role(
        &self,
        tenant_id: &str,
        principal_id: &str,
        resource_app_id: &str,
        app_role: &str,
        now: i64,
    ) -> Result<AppRoleAssignment> {
        let tenant = self.tenant(tenant_id).await?;
        let principal_exists: Option<String> =
            sqlx::query_scalar("SELECT object_id FROM service_principals WHERE object_id = ? COLLATE NOCASE AND tenant_id = ?")
                .bind(principal_id)
                .bind(&tenant.id)
                .fetch_optional(&self.pool)
                .await?;
        let principal_id = principal_exists.ok_or_else(|| EntraError::NotFound {
            kind: "Service principal",
            id: principal_id.into(),
        })?;
        let defined_roles: Vec<String> = match resources::first_party_by_app_id(resource_app_id) {
            Some(resource) => resource.app_roles.iter().map(|r| r.to_string()).collect(),
            None => match self
                .application_for_resource(&tenant.id, resource_app_id)
                .await?
            {
                Some((_, roles)) => roles.into_iter().map(|r| r.value).collect(),
                None => {
                    return Err(EntraError::NotFound {
                        kind: "Resource application",
                        id: resource_app_id.into(),
                    });
                }
            },
        };
        if !defined_roles.iter().any(|r| r == app_role) {
            return Err(EntraError::InvalidInput(format!(
                "The resource application '{resource_app_id}' does not define the app role '{app_role}'. Defined roles: [{}].",
                defined_roles.join(", ")
            )));
        }
        let assignment = AppRoleAssignment {
            id: Uuid::new_v4().to_string(),
            principal_id,
            resource_app_id: resource_app_id.to_lowercase(),
            app_role: app_role.into(),
            created_at: now,
        };
        let inserted = sqlx::query(
            "INSERT INTO app_role_assignments (id, principal_object_id, resource_app_id, app_role, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&assignment.id)
        .bind(&assignment.principal_id)
        .bind(&assignment.resource_app_id)
        .bind(&assignment.app_role)
        .bind(now)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(assignment),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(EntraError::Conflict(format!(
                    "The principal already has the app role '{app_role}' on '{resource_app_id}'."
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_app_role_assignments(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<AppRoleAssignment>> {
        let tenant = self.tenant(tenant_id).await?;
        Ok(sqlx::query_as(
            "SELECT r.id, r.principal_object_id AS principal_id, r.resource_app_id, r.app_role, r.created_at
             FROM app_role_assignments r JOIN service_principals sp ON sp.object_id = r.principal_object_id
             WHERE sp.tenant_id = ? ORDER BY r.created_at, r.id",
        )
        .bind(&tenant.id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn delete_app_role_assignment(&self, tenant_id: &str, id: &str) -> Result<()> {
        let tenant = self.tenant(tenant_id).await?;
        let done = sqlx::query(
            "DELETE FROM app_role_assignments WHERE id = ? AND principal_object_id IN (SELECT object_id FROM service_principals WHERE tenant_id = ?)",
        )
        .bind(id)
        .bind(&tenant.id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(EntraError::NotFound {
                kind: "App role assignment",
                id: id.into(),
            });
        }
        Ok(())
    }

    /// The app roles `principal_id` holds on resource app `resource_app_id`.
    pub async fn roles_for(
        &self,
        principal_id: &str,
        resource_app_id: &str,
    ) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT app_role FROM app_role_assignments WHERE principal_object_id = ? AND resource_app_id = ? COLLATE NOCASE ORDER BY app_role",
        )
        .bind(principal_id)
        .bind(resource_app_id)
        .fetch_all(&self.pool)
        .await?)
    }
}
