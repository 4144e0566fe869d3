//! The Backup views of a vault (Microsoft.RecoveryServices backup APIs, MARS subset):
//! storage and security configuration, containers (registered servers), protected items,
//! jobs, recovery points and MAB policies, in the exact polymorphic shapes the SDK
//! deserialises. The agent's data plane fills containers, items, jobs and recovery points.

use serde_json::{Map, Value, json};
use sqlx::SqlitePool;

use crate::arm::iso;
use crate::error::{Result, VsError};
use crate::settings;
use crate::vaults::Vault;

pub struct Backup {
    pool: SqlitePool,
}

#[derive(sqlx::FromRow)]
pub struct Container {
    pub name: String,
    pub container_id: i64,
    pub friendly_name: String,
    pub agent_version: String,
    pub registered_at: i64,
}

#[derive(sqlx::FromRow)]
pub struct Item {
    pub container: String,
    pub name: String,
    pub friendly_name: String,
    pub policy_name: String,
    pub protection_state: String,
    pub last_backup_status: Option<String>,
    pub last_backup_time: Option<i64>,
    pub recovery_points: i64,
    pub oldest_recovery_point: Option<i64>,
    /// When its backup data was soft-deleted.
    pub deferred_delete_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
pub struct Job {
    pub id: String,
    pub operation: String,
    pub status: String,
    pub entity_name: String,
    pub server_name: String,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub details: String,
}

#[derive(sqlx::FromRow)]
pub struct RecoveryPoint {
    pub name: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    /// Retention tags (`Daily,Weekly`, `AdHoc`).
    pub rule_name: String,
    /// The item's data is soft-deleted.
    pub soft_deleted: bool,
}

impl Backup {
    pub fn new(pool: SqlitePool) -> Self {
        Backup { pool }
    }

    pub async fn containers(&self, vault: &Vault) -> Result<Vec<(Container, i64)>> {
        let rows = sqlx::query_as::<_, Container>(
            "SELECT name, container_id, friendly_name, agent_version, registered_at FROM containers WHERE vault_id = ? ORDER BY name",
        )
        .bind(vault.id)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for container in rows {
            let count: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM protected_items WHERE vault_id = ? AND container = ?",
            )
            .bind(vault.id)
            .bind(&container.name)
            .fetch_one(&self.pool)
            .await?;
            out.push((container, count));
        }
        Ok(out)
    }

    pub async fn items(&self, vault: &Vault) -> Result<Vec<Item>> {
        Ok(sqlx::query_as::<_, Item>(
            "SELECT p.container, p.name, p.friendly_name, p.policy_name, p.protection_state, p.last_backup_status, \
             p.last_backup_time, (SELECT COUNT(*) FROM recovery_points r WHERE r.vault_id = p.vault_id AND r.container = p.container AND r.item = p.name) AS recovery_points, \
             (SELECT MIN(created_at) FROM recovery_points r WHERE r.vault_id = p.vault_id AND r.container = p.container AND r.item = p.name) AS oldest_recovery_point, \
             p.deferred_delete_at \
             FROM protected_items p WHERE p.vault_id = ? ORDER BY p.container, p.name",
        )
        .bind(vault.id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn jobs(&self, vault: &Vault) -> Result<Vec<Job>> {
        Ok(sqlx::query_as::<_, Job>(
            "SELECT id, operation, status, entity_name, server_name, start_time, end_time, details FROM jobs WHERE vault_id = ? ORDER BY seq DESC",
        )
        .bind(vault.id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn recovery_points(
        &self,
        vault: &Vault,
        container: &str,
        item: &str,
    ) -> Result<Vec<RecoveryPoint>> {
        let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM protected_items WHERE vault_id = ? AND container = ? AND name = ?")
            .bind(vault.id)
            .bind(container)
            .bind(item)
            .fetch_one(&self.pool)
            .await?;
        if exists == 0 {
            return Err(VsError::NotFound(format!(
                "Protected item '{item}' of container '{container}' was not found in vault {}.",
                vault.name
            )));
        }
        Ok(sqlx::query_as::<_, RecoveryPoint>(
            "SELECT r.name, r.created_at, r.expires_at, r.rule_name, (p.deferred_delete_at IS NOT NULL) AS soft_deleted \
             FROM recovery_points r JOIN protected_items p ON p.vault_id = r.vault_id AND p.container = r.container AND p.name = r.item \
             WHERE r.vault_id = ? AND r.container = ? AND r.item = ? ORDER BY r.created_at DESC, r.rowid DESC",
        )
        .bind(vault.id)
        .bind(container)
        .bind(item)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Registers a server (the agent's registration); idempotent per name.
    pub async fn register_container(
        &self,
        vault: &Vault,
        name: &str,
        agent_version: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO containers (vault_id, name, container_id, friendly_name, agent_version, registered_at) \
             VALUES (?, ?, (SELECT COALESCE(MAX(container_id), 1000) + 1 FROM containers), ?, ?, ?) \
             ON CONFLICT (vault_id, name) DO UPDATE SET agent_version = excluded.agent_version",
        )
        .bind(vault.id)
        .bind(name)
        .bind(name)
        .bind(agent_version)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Starts protecting `path` on a registered server.
    pub async fn protect_item(
        &self,
        vault: &Vault,
        container: &str,
        name: &str,
        friendly_name: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO protected_items (vault_id, container, name, friendly_name, protection_state, created_at) \
             VALUES (?, ?, ?, ?, 'IRPending', ?) ON CONFLICT DO NOTHING",
        )
        .bind(vault.id)
        .bind(container)
        .bind(name)
        .bind(friendly_name)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Unregisters a server and drops its items (`registeredIdentities` DELETE).
    pub async fn unregister(&self, vault: &Vault, name: &str) -> Result<bool> {
        let removed = sqlx::query("DELETE FROM containers WHERE vault_id = ? AND name = ?")
            .bind(vault.id)
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(removed > 0)
    }

    pub async fn in_progress_jobs(&self, vault: &Vault) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs WHERE vault_id = ? AND status = 'InProgress'",
        )
        .bind(vault.id)
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn policies(&self, vault: &Vault) -> Result<Vec<(String, Value)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, properties FROM policies WHERE vault_id = ? ORDER BY name",
        )
        .bind(vault.id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, properties)| {
                (
                    name,
                    serde_json::from_str(&properties).unwrap_or(Value::Null),
                )
            })
            .collect())
    }

    pub async fn put_policy(&self, vault: &Vault, name: &str, properties: &Value) -> Result<()> {
        sqlx::query(
            "INSERT INTO policies (vault_id, name, properties) VALUES (?, ?, ?) \
             ON CONFLICT (vault_id, name) DO UPDATE SET properties = excluded.properties",
        )
        .bind(vault.id)
        .bind(name)
        .bind(properties.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_policy(&self, vault: &Vault, name: &str) -> Result<bool> {
        let in_use: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM protected_items WHERE vault_id = ? AND policy_name = ?",
        )
        .bind(vault.id)
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        if in_use > 0 {
            return Err(VsError::BadRequest(format!(
                "Policy '{name}' protects {in_use} item(s); assign them another policy before deleting it."
            )));
        }
        let removed = sqlx::query("DELETE FROM policies WHERE vault_id = ? AND name = ?")
            .bind(vault.id)
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(removed > 0)
    }

    pub async fn policy_item_count(&self, vault: &Vault, name: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM protected_items WHERE vault_id = ? AND policy_name = ?",
        )
        .bind(vault.id)
        .bind(name)
        .fetch_one(&self.pool)
        .await?)
    }
}

// ---- wire shapes ----

fn child_id(vault: &Vault, tail: &str) -> String {
    format!("{}/{tail}", vault.arm_id())
}

/// `backupstorageconfig/vaultstorageconfig`: a view of the vault's redundancy settings.
pub fn storage_config_json(vault: &Vault, items_protected: bool) -> Value {
    let properties = vault.properties();
    let redundancy = settings::redundancy(&properties);
    let crr = properties
        .get("redundancySettings")
        .and_then(|r| r.get("crossRegionRestore"))
        .and_then(Value::as_str)
        == Some("Enabled");
    json!({
        "id": child_id(vault, "backupstorageconfig/vaultstorageconfig"),
        "name": "vaultstorageconfig",
        "type": "Microsoft.RecoveryServices/vaults/backupstorageconfig",
        "properties": {
            "storageModelType": redundancy,
            "storageType": redundancy,
            "storageTypeState": if items_protected { "Locked" } else { "Unlocked" },
            "crossRegionRestoreFlag": crr,
            "dedupState": "Disabled",
            "xcoolState": "Disabled",
        },
    })
}

/// The vault properties a storage-config PUT/PATCH body asks for.
pub fn storage_config_request(body: &Value) -> Result<Map<String, Value>> {
    let properties = body.get("properties").and_then(Value::as_object).ok_or_else(|| {
        VsError::BadRequest("The body must be {\"properties\": {\"storageType\"?: ..., \"crossRegionRestoreFlag\"?: ...}}.".into())
    })?;
    let mut redundancy = Map::new();
    if let Some(kind) = properties
        .get("storageType")
        .or_else(|| properties.get("storageModelType"))
    {
        redundancy.insert("standardTierStorageRedundancy".into(), kind.clone());
    }
    if let Some(flag) = properties.get("crossRegionRestoreFlag") {
        let flag = flag.as_bool().ok_or_else(|| {
            VsError::BadRequest("properties.crossRegionRestoreFlag must be true or false.".into())
        })?;
        redundancy.insert(
            "crossRegionRestore".into(),
            if flag { "Enabled" } else { "Disabled" }.into(),
        );
    }
    let mut out = Map::new();
    out.insert("redundancySettings".into(), Value::Object(redundancy));
    Ok(out)
}

/// `backupconfig/vaultconfig`: a view of the vault's soft-delete settings.
pub fn vault_config_json(vault: &Vault, items_protected: bool) -> Value {
    let properties = vault.properties();
    let soft = properties
        .get("securitySettings")
        .and_then(|s| s.get("softDeleteSettings"))
        .cloned()
        .unwrap_or(Value::Null);
    let redundancy = settings::redundancy(&properties);
    let state = soft["softDeleteState"].as_str().unwrap_or("Enabled");
    json!({
        "id": child_id(vault, "backupconfig/vaultconfig"),
        "name": "vaultconfig",
        "type": "Microsoft.RecoveryServices/vaults/backupconfig",
        "properties": {
            "storageModelType": redundancy,
            "storageType": redundancy,
            "storageTypeState": if items_protected { "Locked" } else { "Unlocked" },
            "enhancedSecurityState": soft["enhancedSecurityState"].as_str().unwrap_or("Enabled"),
            "softDeleteFeatureState": state,
            "softDeleteRetentionPeriodInDays": soft["softDeleteRetentionPeriodInDays"].as_i64().unwrap_or(14),
            "isSoftDeleteFeatureStateEditable": state != "AlwaysON",
            "resourceGuardOperationRequests": [],
        },
    })
}

/// The vault properties a vault-config PUT/PATCH body asks for.
pub fn vault_config_request(body: &Value) -> Result<Map<String, Value>> {
    let properties = body
        .get("properties")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            VsError::BadRequest(
                "The body must be {\"properties\": {\"softDeleteFeatureState\"?: ..., ...}}."
                    .into(),
            )
        })?;
    let mut soft = Map::new();
    for (from, to) in [
        ("softDeleteFeatureState", "softDeleteState"),
        ("enhancedSecurityState", "enhancedSecurityState"),
        (
            "softDeleteRetentionPeriodInDays",
            "softDeleteRetentionPeriodInDays",
        ),
    ] {
        if let Some(value) = properties.get(from) {
            soft.insert(to.into(), value.clone());
        }
    }
    Ok(json!({"securitySettings": {"softDeleteSettings": soft}})
        .as_object()
        .cloned()
        .unwrap_or_default())
}

pub fn container_json(
    vault: &Vault,
    container: &Container,
    items: i64,
    last_status: Option<&str>,
) -> Value {
    json!({
        "id": child_id(vault, &format!("backupFabrics/Azure/protectionContainers/{}", container.name)),
        "name": container.name,
        "type": "Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers",
        "properties": {
            "containerType": "Windows",
            "friendlyName": container.friendly_name,
            "backupManagementType": "MAB",
            "registrationStatus": "Registered",
            "healthStatus": "Healthy",
            "canReRegister": true,
            "containerId": container.container_id,
            "protectedItemCount": items,
            "agentVersion": container.agent_version,
            "extendedInfo": {
                "lastRefreshedAt": iso(container.registered_at),
                "backupItemType": "FileFolder",
                "backupItems": [],
                "policyName": "",
                "lastBackupStatus": last_status.unwrap_or(""),
            },
            "mabContainerHealthDetails": [],
            "containerHealthState": "Healthy",
        },
    })
}

/// `soft_delete_days`: the vault's soft-delete retention, for a deleted item's purge time.
pub fn item_json(vault: &Vault, item: &Item, now: i64, soft_delete_days: i64) -> Value {
    let policy = if item.policy_name.is_empty() {
        crate::policy::DEFAULT_POLICY
    } else {
        &item.policy_name
    };
    let mut properties = json!({
        "protectedItemType": "MabFileFolderProtectedItem",
        "backupManagementType": "MAB",
        "workloadType": "FileFolder",
        "containerName": item.container,
        "friendlyName": item.friendly_name,
        "computerName": item.container,
        "protectionState": item.protection_state,
        "deferredDeleteSyncTimeInUTC": 0,
        "isScheduledForDeferredDelete": item.deferred_delete_at.is_some(),
        "policyName": policy,
        "policyId": child_id(vault, &format!("backupPolicies/{policy}")),
        "extendedInfo": {"recoveryPointCount": item.recovery_points},
    });
    if let Some(status) = &item.last_backup_status {
        properties["lastBackupStatus"] = status.clone().into();
    }
    if let Some(time) = item.last_backup_time {
        properties["lastBackupTime"] = iso(time).into();
        properties["extendedInfo"]["lastRefreshedAt"] = iso(time).into();
    }
    if let Some(oldest) = item.oldest_recovery_point {
        properties["extendedInfo"]["oldestRecoveryPoint"] = iso(oldest).into();
    }
    if let Some(deleted) = item.deferred_delete_at {
        let purge = deleted + soft_delete_days * 86_400;
        properties["deferredDeleteTimeInUTC"] = iso(deleted).into();
        properties["deferredDeleteSyncTimeInUTC"] = deleted.into();
        let left = (purge - now).max(0);
        properties["deferredDeleteTimeRemaining"] = format!(
            "{}.{:02}:{:02}:{:02}",
            left / 86_400,
            left % 86_400 / 3600,
            left % 3600 / 60,
            left % 60
        )
        .into();
        properties["isDeferredDeleteScheduleUpcoming"] = (left < 86_400).into();
    }
    json!({
        "id": child_id(vault, &format!("backupFabrics/Azure/protectionContainers/{}/protectedItems/{}", item.container, item.name)),
        "name": item.name,
        "type": "Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers/protectedItems",
        "properties": properties,
    })
}

pub fn job_json(vault: &Vault, job: &Job) -> Value {
    let details: Value = serde_json::from_str(&job.details).unwrap_or(json!({}));
    let mut properties = json!({
        "jobType": "MabJob",
        "entityFriendlyName": job.entity_name,
        "backupManagementType": "MAB",
        "operation": job.operation,
        "status": job.status,
        "startTime": iso(job.start_time),
        "activityId": job.id,
        "actionsInfo": [],
        "mabServerName": job.server_name,
        "mabServerType": "Windows",
        "workloadType": "FileFolder",
        "errorDetails": details.get("errorDetails").cloned().unwrap_or(json!([])),
        "extendedInfo": {
            "tasksList": [],
            "propertyBag": details.get("propertyBag").cloned().unwrap_or(json!({})),
            "dynamicErrorMessage": Value::Null,
        },
    });
    if let Some(end) = job.end_time {
        properties["endTime"] = iso(end).into();
        properties["duration"] = format!("PT{}S", (end - job.start_time).max(0)).into();
    } else {
        properties["duration"] = "PT0S".into();
    }
    json!({
        "id": child_id(vault, &format!("backupJobs/{}", job.id)),
        "name": job.id,
        "type": "Microsoft.RecoveryServices/vaults/backupJobs",
        "properties": properties,
    })
}

pub fn recovery_point_json(
    vault: &Vault,
    container: &str,
    item: &str,
    point: &RecoveryPoint,
) -> Value {
    let mut properties = json!({
        "objectType": "GenericRecoveryPoint",
        "friendlyName": point.name,
        "recoveryPointType": "FileSystem",
        "recoveryPointTime": iso(point.created_at),
        "recoveryPointAdditionalInfo": "",
    });
    let mut point_properties =
        json!({"ruleName": point.rule_name, "isSoftDeleted": point.soft_deleted});
    if let Some(expiry) = point.expires_at {
        point_properties["expiryTime"] = iso(expiry).into();
    }
    properties["recoveryPointProperties"] = point_properties;
    json!({
        "id": child_id(vault, &format!(
            "backupFabrics/Azure/protectionContainers/{container}/protectedItems/{item}/recoveryPoints/{}",
            point.name
        )),
        "name": point.name,
        "type": "Microsoft.RecoveryServices/vaults/backupFabrics/protectionContainers/protectedItems/recoveryPoints",
        "properties": properties,
    })
}

pub fn policy_json(vault: &Vault, name: &str, properties: &Value, items: i64) -> Value {
    let mut properties = properties.clone();
    properties["protectedItemsCount"] = items.into();
    json!({
        "id": child_id(vault, &format!("backupPolicies/{name}")),
        "name": name,
        "type": "Microsoft.RecoveryServices/vaults/backupPolicies",
        "properties": properties,
    })
}
