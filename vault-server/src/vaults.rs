//! The `Microsoft.RecoveryServices/vaults` resource: create or update (synchronously),
//! patch, delete (refused while servers are registered or items protected), lists, and
//! the system-assigned identity kept in entra-sim.

use serde::Deserialize;
use serde_json::{Map, Value, json};
use sim_core::SimClock;
use sqlx::SqlitePool;
use tokio::sync::Mutex;

use crate::arm::iso;
use crate::entra::EntraAdmin;
use crate::error::{Result, VsError};
use crate::groups;
use crate::settings;

pub const KIND: &str = "Microsoft.RecoveryServices/vaults";

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Vault {
    pub id: i64,
    pub resource_number: i64,
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
    pub location: String,
    pub tags: String,
    pub sku: String,
    pub identity: Option<String>,
    pub properties: String,
    pub extended_info: Option<String>,
    pub registration_app_id: Option<String>,
    pub registration_sp_id: Option<String>,
    pub etag: String,
    pub created_at: i64,
    pub created_by: String,
    pub updated_at: i64,
    pub updated_by: String,
}

impl Vault {
    pub fn arm_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.RecoveryServices/vaults/{}",
            self.subscription_id, self.resource_group, self.name
        )
    }

    pub fn properties(&self) -> Map<String, Value> {
        serde_json::from_str(&self.properties).unwrap_or_default()
    }

    pub fn identity(&self) -> Option<Value> {
        self.identity
            .as_deref()
            .and_then(|i| serde_json::from_str(i).ok())
    }

    /// The vault as ARM returns it.
    pub fn to_json(&self) -> Value {
        let mut properties = self.properties();
        properties.insert("provisioningState".into(), "Succeeded".into());
        properties.insert("privateEndpointStateForBackup".into(), "None".into());
        properties.insert("privateEndpointStateForSiteRecovery".into(), "None".into());
        properties.insert("backupStorageVersion".into(), "V2".into());
        properties.insert("secureScore".into(), "Minimum".into());
        properties.insert("bcdrSecurityLevel".into(), "Fair".into());
        let tags: Map<String, Value> = serde_json::from_str(&self.tags).unwrap_or_default();
        let sku: Value =
            serde_json::from_str(&self.sku).unwrap_or(json!({"name": "RS0", "tier": "Standard"}));
        let mut body = json!({
            "id": self.arm_id(),
            "name": self.name,
            "type": KIND,
            "location": self.location,
            "tags": tags,
            "etag": self.etag,
            "sku": sku,
            "systemData": {
                "createdBy": self.created_by,
                "createdByType": "Application",
                "createdAt": iso(self.created_at),
                "lastModifiedBy": self.updated_by,
                "lastModifiedByType": "Application",
                "lastModifiedAt": iso(self.updated_at),
            },
            "properties": properties,
        });
        if let Some(identity) = self.identity() {
            body["identity"] = identity;
        }
        body
    }
}

/// Body of `PUT`/`PATCH` on a vault.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VaultRequest {
    pub location: Option<String>,
    pub tags: Option<Map<String, Value>>,
    pub sku: Option<Sku>,
    pub identity: Option<IdentityRequest>,
    #[serde(default)]
    pub properties: Map<String, Value>,
}

#[derive(Deserialize)]
pub struct Sku {
    pub name: String,
    #[serde(default)]
    pub tier: Option<String>,
}

#[derive(Deserialize)]
pub struct IdentityRequest {
    #[serde(rename = "type")]
    pub kind: String,
}

pub struct Vaults {
    pool: SqlitePool,
    clock: SimClock,
    entra: EntraAdmin,
    write: Mutex<()>,
}

pub enum Upserted {
    Created(Vault),
    Updated(Vault),
}

/// `SELECT <every vault column> FROM vaults` + a tail, as one `&'static str` (sqlx takes
/// only static query strings).
macro_rules! select_vaults {
    ($tail:literal) => {
        select_vaults!("", $tail)
    };
    ($columns:literal, $tail:literal) => {
        concat!(
            "SELECT id, resource_number, subscription_id, resource_group, name, location, tags, sku, identity, ",
            "properties, extended_info, registration_app_id, registration_sp_id, etag, created_at, created_by, ",
            "updated_at, updated_by",
            $columns,
            " FROM vaults",
            $tail
        )
    };
}

impl Vaults {
    pub fn new(pool: SqlitePool, clock: SimClock, entra: EntraAdmin) -> Self {
        Vaults {
            pool,
            clock,
            entra,
            write: Mutex::new(()),
        }
    }

    pub fn entra(&self) -> &EntraAdmin {
        &self.entra
    }

    pub async fn find(&self, subscription: &str, group: &str, name: &str) -> Result<Option<Vault>> {
        const QUERY: &str =
            select_vaults!(" WHERE subscription_id = ? AND resource_group = ? AND name = ?");
        Ok(sqlx::query_as::<_, Vault>(QUERY)
            .bind(subscription)
            .bind(group)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn by_id(&self, id: i64) -> Result<Vault> {
        const QUERY: &str = select_vaults!(" WHERE id = ?");
        sqlx::query_as::<_, Vault>(QUERY)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| VsError::NotFound("The vault of this server no longer exists.".into()))
    }

    /// The vault of the registered server whose identity is `app_id`, and the server's
    /// container: one query, as every data-plane request asks it.
    pub async fn of_server(&self, app_id: &str) -> Result<Option<(Vault, String)>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            vault: Vault,
            container: String,
        }
        const QUERY: &str = select_vaults!(
            ", container",
            " JOIN machines ON machines.vault_id = vaults.id WHERE machines.app_id = ?"
        );
        let row: Option<Row> = sqlx::query_as(QUERY)
            .bind(app_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| (row.vault, row.container)))
    }

    /// The vault whose registration app is `app_id` (the identity of vault credentials).
    pub async fn by_registration_app(&self, app_id: &str) -> Result<Option<Vault>> {
        const QUERY: &str = select_vaults!(" WHERE registration_app_id = ?");
        Ok(sqlx::query_as::<_, Vault>(QUERY)
            .bind(app_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Registration needs the vault's newest credentials, unexpired.
    pub async fn check_latest_credential(
        &self,
        vault: &Vault,
        thumbprint: &str,
        now: i64,
    ) -> Result<()> {
        let latest: Option<(String, i64)> = sqlx::query_as(
            "SELECT thumbprint, valid_to FROM vault_certificates WHERE vault_id = ? ORDER BY seq DESC LIMIT 1",
        )
        .bind(vault.id)
        .fetch_optional(&self.pool)
        .await?;
        match latest {
            Some((latest, _)) if !latest.eq_ignore_ascii_case(thumbprint) => {
                Err(VsError::CredentialsRefused(format!(
                    "These vault credentials are not the latest of vault {}: only the most recently downloaded file can register a server. Download the credentials again.",
                    vault.name
                )))
            }
            Some((_, valid_to)) if valid_to <= now => Err(VsError::CredentialsRefused(format!(
                "The vault credentials of vault {} expired at {}; download new ones.",
                vault.name,
                crate::arm::iso(valid_to)
            ))),
            Some(_) => Ok(()),
            None => Err(VsError::CredentialsRefused(format!(
                "Vault {} has no vault credentials; download them first.",
                vault.name
            ))),
        }
    }

    /// The vault, or 404 naming the resource group or the vault that is missing.
    pub async fn get(&self, subscription: &str, group: &str, name: &str) -> Result<Vault> {
        if let Some(vault) = self.find(subscription, group, name).await? {
            return Ok(vault);
        }
        // Which 404: the resource group's or the vault's.
        groups::get(&self.pool, subscription, group).await?;
        Err(VsError::ResourceNotFound {
            kind: KIND,
            group: group.to_string(),
            name: name.to_string(),
        })
    }

    pub async fn list(&self, subscription: &str, group: Option<&str>) -> Result<Vec<Vault>> {
        if let Some(group) = group {
            groups::get(&self.pool, subscription, group).await?;
        }
        const QUERY: &str = select_vaults!(
            " WHERE subscription_id = ?1 AND (?2 IS NULL OR resource_group = ?2) ORDER BY name"
        );
        Ok(sqlx::query_as::<_, Vault>(QUERY)
            .bind(subscription)
            .bind(group)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Every vault of every subscription (the lifecycle sweep's list).
    pub async fn all(&self) -> Result<Vec<Vault>> {
        const QUERY: &str = select_vaults!(" ORDER BY id");
        Ok(sqlx::query_as::<_, Vault>(QUERY)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Protected items in the vault (redundancy is fixed once there are any).
    pub async fn protected_item_count(&self, vault: &Vault) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM protected_items WHERE vault_id = ?")
                .bind(vault.id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn create_or_update(
        &self,
        subscription: &str,
        group: &str,
        name: &str,
        request: VaultRequest,
        caller: &str,
    ) -> Result<Upserted> {
        settings::validate_name(name)?;
        let _write = self.write.lock().await;
        groups::get(&self.pool, subscription, group).await?;
        match self.find(subscription, group, name).await? {
            Some(vault) => Ok(Upserted::Updated(
                self.update(vault, request, caller).await?,
            )),
            None => Ok(Upserted::Created(
                self.create(subscription, group, name, request, caller)
                    .await?,
            )),
        }
    }

    async fn create(
        &self,
        subscription: &str,
        group: &str,
        name: &str,
        request: VaultRequest,
        caller: &str,
    ) -> Result<Vault> {
        let location = request.location.clone().ok_or_else(|| {
            VsError::BadRequest("The 'location' property is required to create a vault.".into())
        })?;
        if sim_core::arm::region(&location).is_none() {
            return Err(VsError::LocationNotAvailable {
                code: "LocationNotAvailableForResourceType",
                message: sim_core::arm::unknown_location(
                    &location,
                    "resource type 'Microsoft.RecoveryServices/vaults'",
                ),
            });
        }
        let mut properties = settings::defaults();
        settings::merge(&mut properties, &request.properties);
        settings::validate(name, None, &mut properties, false)?;
        let sku = sku_json(request.sku.as_ref())?;
        let now = self.clock.unix();
        let mut vault = Vault {
            id: 0,
            resource_number: resource_number(),
            subscription_id: subscription.to_string(),
            resource_group: group.to_string(),
            name: name.to_string(),
            location,
            tags: Value::Object(request.tags.clone().unwrap_or_default()).to_string(),
            sku: sku.to_string(),
            identity: None,
            properties: Value::Object(properties).to_string(),
            extended_info: None,
            registration_app_id: None,
            registration_sp_id: None,
            etag: etag(),
            created_at: now,
            created_by: caller.to_string(),
            updated_at: now,
            updated_by: caller.to_string(),
        };
        vault.identity = self
            .identity_change(&vault, request.identity.as_ref())
            .await?;
        vault.id = sqlx::query_scalar(
            "INSERT INTO vaults (resource_number, subscription_id, resource_group, name, location, tags, sku, identity, \
             properties, etag, created_at, created_by, updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(vault.resource_number)
        .bind(&vault.subscription_id)
        .bind(&vault.resource_group)
        .bind(&vault.name)
        .bind(&vault.location)
        .bind(&vault.tags)
        .bind(&vault.sku)
        .bind(&vault.identity)
        .bind(&vault.properties)
        .bind(&vault.etag)
        .bind(vault.created_at)
        .bind(&vault.created_by)
        .bind(vault.updated_at)
        .bind(&vault.updated_by)
        .fetch_one(&self.pool)
        .await?;
        Ok(vault)
    }

    /// Applies a PUT or PATCH body to an existing vault (merge semantics, as Azure does).
    async fn update(&self, mut vault: Vault, request: VaultRequest, caller: &str) -> Result<Vault> {
        if let Some(location) = &request.location
            && !groups::same_location(location, &vault.location)
        {
            return Err(VsError::BadRequest(format!(
                "Vault '{}' exists in location '{}'; a vault cannot move to '{location}'.",
                vault.name, vault.location
            )));
        }
        let current = vault.properties();
        let mut next = current.clone();
        settings::merge(&mut next, &request.properties);
        let protected = self.protected_item_count(&vault).await? > 0;
        settings::validate(&vault.name, Some(&current), &mut next, protected)?;
        if let Some(tags) = request.tags {
            vault.tags = Value::Object(tags).to_string();
        }
        if let Some(sku) = request.sku.as_ref() {
            vault.sku = sku_json(Some(sku))?.to_string();
        }
        if request.identity.is_some() {
            vault.identity = self
                .identity_change(&vault, request.identity.as_ref())
                .await?;
        }
        vault.properties = Value::Object(next).to_string();
        self.save(&mut vault, caller).await?;
        Ok(vault)
    }

    pub async fn patch(
        &self,
        subscription: &str,
        group: &str,
        name: &str,
        request: VaultRequest,
        caller: &str,
    ) -> Result<Vault> {
        let _write = self.write.lock().await;
        let vault = self.get(subscription, group, name).await?;
        self.update(vault, request, caller).await
    }

    /// Replaces the redundancy settings (backupstorageconfig) or soft-delete settings
    /// (backupconfig) through the same rules as a PATCH of the vault.
    pub async fn patch_properties(
        &self,
        vault: &Vault,
        properties: Map<String, Value>,
        caller: &str,
    ) -> Result<Vault> {
        let _write = self.write.lock().await;
        let request = VaultRequest {
            properties,
            ..VaultRequest::default()
        };
        let fresh = self
            .get(&vault.subscription_id, &vault.resource_group, &vault.name)
            .await?;
        self.update(fresh, request, caller).await
    }

    async fn save(&self, vault: &mut Vault, caller: &str) -> Result<()> {
        vault.updated_at = self.clock.unix();
        vault.updated_by = caller.to_string();
        vault.etag = etag();
        sqlx::query(
            "UPDATE vaults SET tags = ?, sku = ?, identity = ?, properties = ?, extended_info = ?, registration_app_id = ?, \
             registration_sp_id = ?, etag = ?, updated_at = ?, updated_by = ? WHERE id = ?",
        )
        .bind(&vault.tags)
        .bind(&vault.sku)
        .bind(&vault.identity)
        .bind(&vault.properties)
        .bind(&vault.extended_info)
        .bind(&vault.registration_app_id)
        .bind(&vault.registration_sp_id)
        .bind(&vault.etag)
        .bind(vault.updated_at)
        .bind(&vault.updated_by)
        .bind(vault.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The identity JSON after `request`: SystemAssigned creates the managed identity in
    /// entra-sim (once), None removes it.
    async fn identity_change(
        &self,
        vault: &Vault,
        request: Option<&IdentityRequest>,
    ) -> Result<Option<String>> {
        let Some(request) = request else {
            return Ok(vault.identity.clone());
        };
        let existing = vault.identity();
        let principal = existing
            .as_ref()
            .and_then(|i| i["principalId"].as_str().map(str::to_string));
        match request.kind.to_ascii_lowercase().as_str() {
            "systemassigned" => {
                if existing.is_some() {
                    return Ok(vault.identity.clone());
                }
                let identity = self
                    .entra
                    .create_system_identity(&vault.name, &vault.arm_id())
                    .await?;
                Ok(Some(
                    json!({"type": "SystemAssigned", "principalId": identity.principal_id, "tenantId": identity.tenant_id})
                        .to_string(),
                ))
            }
            "none" => {
                if let Some(principal) = principal {
                    self.entra.delete_identity(&principal).await?;
                }
                Ok(None)
            }
            other => Err(VsError::BadRequest(format!(
                "identity.type '{other}' is not supported; use 'SystemAssigned' or 'None'."
            ))),
        }
    }

    /// Deletes the vault; `false` when it did not exist.
    pub async fn delete(&self, subscription: &str, group: &str, name: &str) -> Result<bool> {
        let _write = self.write.lock().await;
        groups::get(&self.pool, subscription, group).await?;
        let Some(vault) = self.find(subscription, group, name).await? else {
            return Ok(false);
        };
        let (containers, items): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM containers WHERE vault_id = ?1), (SELECT COUNT(*) FROM protected_items WHERE vault_id = ?1)",
        )
        .bind(vault.id)
        .fetch_one(&self.pool)
        .await?;
        if containers + items > 0 {
            return Err(VsError::VaultNotEmpty(vault.name));
        }
        sqlx::query("DELETE FROM vaults WHERE id = ?")
            .bind(vault.id)
            .execute(&self.pool)
            .await?;
        // The vault is gone; its identities in entra-sim follow (a failure here only
        // leaves an unused principal behind, logged).
        if let Some(principal) = vault
            .identity()
            .and_then(|i| i["principalId"].as_str().map(str::to_string))
            && let Err(e) = self.entra.delete_identity(&principal).await
        {
            tracing::warn!(%e, vault = %vault.name, "could not delete the vault's managed identity");
        }
        if let Some(app) = &vault.registration_app_id
            && let Err(e) = self.entra.delete_app(app).await
        {
            tracing::warn!(%e, vault = %vault.name, "could not delete the vault's registration app");
        }
        Ok(true)
    }

    /// The registration app of the vault (created on first use): agents sign in as it with
    /// vault-credential certificates.
    pub async fn registration_app(&self, vault: &Vault) -> Result<(String, String)> {
        let _write = self.write.lock().await;
        let mut fresh = self
            .get(&vault.subscription_id, &vault.resource_group, &vault.name)
            .await?;
        if let (Some(app), Some(sp)) = (&fresh.registration_app_id, &fresh.registration_sp_id) {
            return Ok((app.clone(), sp.clone()));
        }
        let app = self
            .entra
            .create_app(&format!(
                "{}-backup-registration-{}",
                vault.name, vault.resource_number
            ))
            .await?;
        fresh.registration_app_id = Some(app.app_id.clone());
        fresh.registration_sp_id = Some(app.service_principal_id.clone());
        sqlx::query(
            "UPDATE vaults SET registration_app_id = ?, registration_sp_id = ? WHERE id = ?",
        )
        .bind(&app.app_id)
        .bind(&app.service_principal_id)
        .bind(fresh.id)
        .execute(&self.pool)
        .await?;
        Ok((app.app_id, app.service_principal_id))
    }

    pub async fn set_extended_info(&self, vault: &Vault, info: Value) -> Result<()> {
        sqlx::query("UPDATE vaults SET extended_info = ? WHERE id = ?")
            .bind(info.to_string())
            .bind(vault.id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether `name` can be used for a new vault in the resource group.
    pub async fn name_available(
        &self,
        subscription: &str,
        group: &str,
        name: &str,
    ) -> Result<bool> {
        Ok(self.find(subscription, group, name).await?.is_none())
    }
}

fn sku_json(sku: Option<&Sku>) -> Result<Value> {
    let Some(sku) = sku else {
        return Ok(json!({"name": "RS0", "tier": "Standard"}));
    };
    match sku.name.to_ascii_lowercase().as_str() {
        "rs0" => Ok(
            json!({"name": "RS0", "tier": sku.tier.clone().unwrap_or_else(|| "Standard".into())}),
        ),
        "standard" => Ok(json!({"name": "Standard"})),
        _ => Err(VsError::BadRequest(format!(
            "sku.name '{}' is not valid; use 'Standard' or 'RS0'.",
            sku.name
        ))),
    }
}

fn etag() -> String {
    format!("W/\"{}\"", uuid::Uuid::new_v4().simple())
}

/// A positive 63-bit number, like the vault ids in vault credentials.
fn resource_number() -> i64 {
    (uuid::Uuid::new_v4().as_u64_pair().0 >> 1) as i64
}
