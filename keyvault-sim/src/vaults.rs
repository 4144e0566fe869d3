//! The `Microsoft.KeyVault/vaults` resource: create, update, access policies, soft delete,
//! recover and purge, with live vaults cached in memory for the data plane (every secret
//! request looks its vault up by host name).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};
use sim_core::SimClock;
use sim_core::arm::same_location;
use sim_core::well_known;
use sqlx::SqlitePool;
use tokio::sync::Mutex;

use crate::error::{KvError, Result};
use crate::policy::{self, AccessPolicy, Permissions, PolicyEdit};
use crate::vault_spec::{self, VaultRequest};

const DAY: i64 = 86_400;
/// Retention when the request does not say (Azure's default).
pub const DEFAULT_RETENTION_DAYS: i64 = 90;

/// One vault as stored.
#[derive(Clone, Debug)]
pub struct Vault {
    pub id: i64,
    pub name: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub location: String,
    pub tenant_id: String,
    pub sku: String,
    pub tags: Map<String, Value>,
    pub soft_delete_days: i64,
    pub purge_protection: bool,
    pub options: Map<String, Value>,
    pub access_policies: Vec<AccessPolicy>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted_at: Option<i64>,
    pub scheduled_purge_at: Option<i64>,
}

impl Vault {
    /// `recoveryLevel` of the secrets in this vault, as Key Vault reports it.
    pub fn recovery_level(&self) -> &'static str {
        match (
            self.purge_protection,
            self.soft_delete_days == DEFAULT_RETENTION_DAYS,
        ) {
            (true, true) => "Recoverable",
            (true, false) => "CustomizedRecoverable",
            (false, true) => "Recoverable+Purgeable",
            (false, false) => "CustomizedRecoverable+Purgeable",
        }
    }

    pub fn arm_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.KeyVault/vaults/{}",
            self.subscription_id, self.resource_group, self.name
        )
    }
}

#[derive(sqlx::FromRow)]
struct VaultRow {
    id: i64,
    name: String,
    subscription_id: String,
    resource_group: String,
    location: String,
    tenant_id: String,
    sku: String,
    tags: String,
    soft_delete_days: i64,
    purge_protection: bool,
    options: String,
    access_policies: String,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
    scheduled_purge_at: Option<i64>,
}

impl VaultRow {
    fn into_vault(self) -> Vault {
        Vault {
            id: self.id,
            name: self.name,
            subscription_id: self.subscription_id,
            resource_group: self.resource_group,
            location: self.location,
            tenant_id: self.tenant_id,
            sku: self.sku,
            tags: serde_json::from_str(&self.tags).unwrap_or_default(),
            soft_delete_days: self.soft_delete_days,
            purge_protection: self.purge_protection,
            options: serde_json::from_str(&self.options).unwrap_or_default(),
            access_policies: serde_json::from_str(&self.access_policies).unwrap_or_default(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            deleted_at: self.deleted_at,
            scheduled_purge_at: self.scheduled_purge_at,
        }
    }
}

const SELECT_BY_NAME: &str = "SELECT * FROM vaults WHERE name = ?";

/// The vault store. Writes go through one lock, so SQLite never sees two writers race to
/// upgrade a read transaction.
pub struct Vaults {
    pool: SqlitePool,
    clock: SimClock,
    write: Arc<Mutex<()>>,
    live: RwLock<HashMap<String, Arc<Vault>>>,
}

/// What a create-or-update did.
pub enum Upserted {
    Created(Vault),
    Updated(Vault),
}

impl Vaults {
    pub fn new(pool: SqlitePool, clock: SimClock, write: Arc<Mutex<()>>) -> Self {
        Vaults {
            pool,
            clock,
            write,
            live: RwLock::default(),
        }
    }

    /// A live vault by name, from the cache when possible.
    pub async fn live_by_name(&self, name: &str) -> Result<Option<Arc<Vault>>> {
        let key = name.to_ascii_lowercase();
        if let Some(vault) = self.read_cache().get(&key) {
            return Ok(Some(vault.clone()));
        }
        let Some(vault) = self.by_name(name).await? else {
            return Ok(None);
        };
        if vault.deleted_at.is_some() {
            return Ok(None);
        }
        let vault = Arc::new(vault);
        self.live
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, vault.clone());
        Ok(Some(vault))
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Vault>>> {
        self.live.read().unwrap_or_else(|p| p.into_inner())
    }

    fn forget_cached(&self) {
        self.live.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    async fn by_name(&self, name: &str) -> Result<Option<Vault>> {
        let row = sqlx::query_as::<_, VaultRow>(SELECT_BY_NAME)
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(VaultRow::into_vault))
    }

    /// The live vault `name` in this resource group, or 404.
    pub async fn get(&self, subscription: &str, group: &str, name: &str) -> Result<Vault> {
        match self.by_name(name).await? {
            Some(vault)
                if vault.deleted_at.is_none()
                    && vault.subscription_id.eq_ignore_ascii_case(subscription)
                    && vault.resource_group.eq_ignore_ascii_case(group) =>
            {
                Ok(vault)
            }
            _ => Err(KvError::VaultNotFound {
                resource_group: group.to_string(),
                name: name.to_string(),
            }),
        }
    }

    /// Live vaults of a subscription, optionally of one resource group, by name.
    pub async fn list(&self, subscription: &str, group: Option<&str>) -> Result<Vec<Vault>> {
        let rows = sqlx::query_as::<_, VaultRow>(
            "SELECT * FROM vaults WHERE subscription_id = ?1 AND deleted_at IS NULL \
             AND (?2 IS NULL OR resource_group = ?2) ORDER BY name",
        )
        .bind(subscription)
        .bind(group)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(VaultRow::into_vault).collect())
    }

    pub async fn create_or_update(
        &self,
        subscription: &str,
        group: &str,
        name: &str,
        request: VaultRequest,
    ) -> Result<Upserted> {
        vault_spec::validate_name(name)?;
        let _write = self.write.lock().await;
        self.purge_expired_vaults().await?;
        let existing = self.by_name(name).await?;
        let properties = &request.properties;
        let recover = properties
            .create_mode
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case("recover"));
        vault_spec::check_settings(
            properties,
            existing.as_ref().map(|v| v.purge_protection),
            existing.as_ref().map(|v| v.soft_delete_days),
        )?;
        let now = self.clock.unix();
        match existing {
            Some(vault)
                if !vault.subscription_id.eq_ignore_ascii_case(subscription)
                    || (vault.deleted_at.is_none()
                        && !vault.resource_group.eq_ignore_ascii_case(group)) =>
            {
                Err(KvError::VaultAlreadyExists(name.to_string()))
            }
            Some(vault) if vault.deleted_at.is_some() && !recover => {
                Err(KvError::VaultDeletedButRecoverable(name.to_string()))
            }
            Some(mut vault) => {
                if let Some(location) = &request.location
                    && !same_location(location, &vault.location)
                {
                    return Err(KvError::InvalidRequest(format!(
                        "Vault '{name}' already exists in location '{}'; a resource cannot move to '{location}'.",
                        vault.location
                    )));
                }
                if vault.deleted_at.is_some() {
                    vault.deleted_at = None;
                    vault.scheduled_purge_at = None;
                    vault.resource_group = group.to_string();
                }
                self.apply_request(&mut vault, request, true)?;
                vault.updated_at = now;
                self.save(&vault).await?;
                Ok(Upserted::Updated(vault))
            }
            None if recover => Err(KvError::InvalidRequest(format!(
                "properties.createMode is 'recover' but there is no deleted vault named '{name}' in subscription '{subscription}'."
            ))),
            None => {
                let mut vault = self.new_vault(subscription, group, name, &request, now)?;
                self.apply_request(&mut vault, request, false)?;
                vault.id = self.insert(&vault).await?;
                Ok(Upserted::Created(vault))
            }
        }
    }

    fn new_vault(
        &self,
        subscription: &str,
        group: &str,
        name: &str,
        request: &VaultRequest,
        now: i64,
    ) -> Result<Vault> {
        let properties = &request.properties;
        let location = request.location.clone().ok_or_else(|| {
            KvError::InvalidRequest("The 'location' property is required to create a vault.".into())
        })?;
        let tenant_id = properties.tenant_id.clone().ok_or_else(|| {
            KvError::InvalidRequest(
                "properties.tenantId is required: the tenant whose tokens the vault accepts."
                    .into(),
            )
        })?;
        let sku = properties.sku.as_ref().ok_or_else(|| {
            KvError::InvalidRequest(
                "properties.sku is required, e.g. {\"family\":\"A\",\"name\":\"standard\"}.".into(),
            )
        })?;
        if properties.access_policies.is_none() {
            return Err(KvError::InvalidRequest(
                "properties.accessPolicies is required when creating a vault (it may be an empty list).".into(),
            ));
        }
        Ok(Vault {
            id: 0,
            name: name.to_string(),
            subscription_id: subscription.to_string(),
            resource_group: group.to_string(),
            location,
            tenant_id,
            sku: vault_spec::validate_sku(sku)?,
            tags: Map::new(),
            soft_delete_days: properties
                .soft_delete_retention_in_days
                .unwrap_or(DEFAULT_RETENTION_DAYS),
            purge_protection: false,
            options: Map::new(),
            access_policies: Vec::new(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            scheduled_purge_at: None,
        })
    }

    /// Copies what the request sets onto `vault`. A PUT replaces tags and policies; a
    /// PATCH (`merge`) changes only what it names.
    fn apply_request(&self, vault: &mut Vault, request: VaultRequest, merge: bool) -> Result<()> {
        let properties = request.properties;
        if let Some(tenant) = &properties.tenant_id {
            vault_spec::validate_tenant(tenant)?;
            vault.tenant_id = tenant.clone();
        }
        if let Some(sku) = &properties.sku {
            vault.sku = vault_spec::validate_sku(sku)?;
        }
        if let Some(tags) = request.tags {
            vault.tags = tags;
        }
        if let Some(policies) = properties.access_policies.clone() {
            vault.access_policies = policies;
        }
        if properties.enable_purge_protection == Some(true) {
            vault.purge_protection = true;
        }
        let options = properties.options();
        if !merge {
            vault.options = Map::new();
        }
        vault.options.extend(options);
        Ok(())
    }

    /// `PATCH`: changes only the fields present.
    pub async fn patch(
        &self,
        subscription: &str,
        group: &str,
        name: &str,
        request: VaultRequest,
    ) -> Result<Vault> {
        let _write = self.write.lock().await;
        let mut vault = self.get(subscription, group, name).await?;
        if request
            .properties
            .create_mode
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case("recover"))
        {
            return Err(KvError::InvalidRequest(
                "properties.createMode 'recover' is only valid on PUT.".into(),
            ));
        }
        vault_spec::check_settings(
            &request.properties,
            Some(vault.purge_protection),
            Some(vault.soft_delete_days),
        )?;
        self.apply_request(&mut vault, request, true)?;
        vault.updated_at = self.clock.unix();
        self.save(&vault).await?;
        Ok(vault)
    }

    pub async fn edit_access_policies(
        &self,
        subscription: &str,
        group: &str,
        name: &str,
        edit: PolicyEdit,
        changes: &[AccessPolicy],
    ) -> Result<Vault> {
        policy::validate(changes)?;
        let _write = self.write.lock().await;
        let mut vault = self.get(subscription, group, name).await?;
        policy::apply(&mut vault.access_policies, edit, changes);
        policy::validate(&vault.access_policies)?;
        vault.updated_at = self.clock.unix();
        self.save(&vault).await?;
        Ok(vault)
    }

    /// Soft-deletes the vault (its secrets stay, unreachable, until it is recovered or
    /// purged). `false` when there was no such vault.
    pub async fn delete(&self, subscription: &str, group: &str, name: &str) -> Result<bool> {
        let _write = self.write.lock().await;
        let vault = match self.get(subscription, group, name).await {
            Ok(vault) => vault,
            Err(KvError::VaultNotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let now = self.clock.unix();
        sqlx::query("UPDATE vaults SET deleted_at = ?, scheduled_purge_at = ? WHERE id = ?")
            .bind(now)
            .bind(now + vault.soft_delete_days * DAY)
            .bind(vault.id)
            .execute(&self.pool)
            .await?;
        self.forget_cached();
        Ok(true)
    }

    pub async fn list_deleted(&self, subscription: &str) -> Result<Vec<Vault>> {
        self.purge_expired_vaults_locked().await?;
        let rows = sqlx::query_as::<_, VaultRow>(
            "SELECT * FROM vaults WHERE subscription_id = ? AND deleted_at IS NOT NULL ORDER BY name",
        )
        .bind(subscription)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(VaultRow::into_vault).collect())
    }

    pub async fn get_deleted(
        &self,
        subscription: &str,
        location: &str,
        name: &str,
    ) -> Result<Vault> {
        self.purge_expired_vaults_locked().await?;
        match self.by_name(name).await? {
            Some(vault)
                if vault.deleted_at.is_some()
                    && vault.subscription_id.eq_ignore_ascii_case(subscription)
                    && same_location(&vault.location, location) =>
            {
                Ok(vault)
            }
            _ => Err(KvError::DeletedVaultNotFound {
                location: location.to_string(),
                name: name.to_string(),
            }),
        }
    }

    /// Removes a deleted vault and its secrets for good.
    pub async fn purge_deleted(
        &self,
        subscription: &str,
        location: &str,
        name: &str,
    ) -> Result<()> {
        let vault = self.get_deleted(subscription, location, name).await?;
        if vault.purge_protection {
            return Err(KvError::VaultPurgeProtected(vault.name));
        }
        let _write = self.write.lock().await;
        sqlx::query("DELETE FROM vaults WHERE id = ? AND deleted_at IS NOT NULL")
            .bind(vault.id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// `(available, reason, message)` for checkNameAvailability.
    pub async fn name_availability(
        &self,
        name: &str,
    ) -> Result<(bool, Option<&'static str>, Option<String>)> {
        if let Err(e) = vault_spec::validate_name(name) {
            return Ok((false, Some("AccountNameInvalid"), Some(e.to_string())));
        }
        self.purge_expired_vaults_locked().await?;
        Ok(match self.by_name(name).await? {
            None => (true, None, None),
            Some(vault) if vault.deleted_at.is_some() => (
                false,
                Some("AlreadyExists"),
                Some(KvError::VaultDeletedButRecoverable(name.to_string()).to_string()),
            ),
            Some(_) => (
                false,
                Some("AlreadyExists"),
                Some(format!("The vault name '{name}' is already in use.")),
            ),
        })
    }

    async fn purge_expired_vaults_locked(&self) -> Result<()> {
        let _write = self.write.lock().await;
        self.purge_expired_vaults().await
    }

    /// Deleted vaults whose retention ended on the simulated clock disappear.
    async fn purge_expired_vaults(&self) -> Result<()> {
        sqlx::query("DELETE FROM vaults WHERE deleted_at IS NOT NULL AND scheduled_purge_at <= ?")
            .bind(self.clock.unix())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert(&self, vault: &Vault) -> Result<i64> {
        let id = sqlx::query_scalar::<_, i64>(
            "INSERT INTO vaults (name, subscription_id, resource_group, location, tenant_id, sku, tags, \
             soft_delete_days, purge_protection, options, access_policies, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&vault.name)
        .bind(&vault.subscription_id)
        .bind(&vault.resource_group)
        .bind(&vault.location)
        .bind(&vault.tenant_id)
        .bind(&vault.sku)
        .bind(Value::Object(vault.tags.clone()).to_string())
        .bind(vault.soft_delete_days)
        .bind(vault.purge_protection)
        .bind(Value::Object(vault.options.clone()).to_string())
        .bind(policies_json(&vault.access_policies))
        .bind(vault.created_at)
        .bind(vault.updated_at)
        .fetch_one(&self.pool)
        .await?;
        self.forget_cached();
        Ok(id)
    }

    async fn save(&self, vault: &Vault) -> Result<()> {
        sqlx::query(
            "UPDATE vaults SET resource_group = ?, tenant_id = ?, sku = ?, tags = ?, purge_protection = ?, \
             options = ?, access_policies = ?, updated_at = ?, deleted_at = ?, scheduled_purge_at = ? \
             WHERE id = ?",
        )
        .bind(&vault.resource_group)
        .bind(&vault.tenant_id)
        .bind(&vault.sku)
        .bind(Value::Object(vault.tags.clone()).to_string())
        .bind(vault.purge_protection)
        .bind(Value::Object(vault.options.clone()).to_string())
        .bind(policies_json(&vault.access_policies))
        .bind(vault.updated_at)
        .bind(vault.deleted_at)
        .bind(vault.scheduled_purge_at)
        .bind(vault.id)
        .execute(&self.pool)
        .await?;
        self.forget_cached();
        Ok(())
    }

    /// Creates the default vault (served at `localhost`) with the admin app allowed
    /// everything on secrets, unless it exists.
    pub async fn seed_default(&self) -> Result<()> {
        if self.by_name(well_known::DEFAULT_KEY_VAULT).await?.is_some() {
            return Ok(());
        }
        let now = self.clock.unix();
        let vault = Vault {
            id: 0,
            name: well_known::DEFAULT_KEY_VAULT.to_string(),
            subscription_id: well_known::SUBSCRIPTION_ID.to_string(),
            resource_group: well_known::DEFAULT_RESOURCE_GROUP.to_string(),
            location: well_known::DEFAULT_LOCATION.to_string(),
            tenant_id: well_known::TENANT_ID.to_string(),
            sku: "standard".to_string(),
            tags: Map::new(),
            soft_delete_days: DEFAULT_RETENTION_DAYS,
            purge_protection: false,
            options: Map::new(),
            access_policies: vec![AccessPolicy {
                tenant_id: well_known::TENANT_ID.to_string(),
                object_id: well_known::ADMIN_OBJECT_ID.to_string(),
                application_id: None,
                permissions: Permissions {
                    secrets: vec!["all".to_string()],
                    ..Permissions::default()
                },
            }],
            created_at: now,
            updated_at: now,
            deleted_at: None,
            scheduled_purge_at: None,
        };
        let _write = self.write.lock().await;
        self.insert(&vault).await?;
        Ok(())
    }

    /// Drops every vault (and, by cascade, every secret).
    pub async fn delete_all(&self) -> Result<()> {
        let _write = self.write.lock().await;
        sqlx::query("DELETE FROM vaults")
            .execute(&self.pool)
            .await?;
        self.forget_cached();
        Ok(())
    }
}

fn policies_json(policies: &[AccessPolicy]) -> String {
    serde_json::to_string(policies).expect("access policies always serialise")
}
