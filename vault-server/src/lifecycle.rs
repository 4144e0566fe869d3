//! The vault keeps its promises on the simulated clock: recovery points expire by their
//! item's policy, deleted backup data stays recoverable for the soft-delete days, an
//! immutable vault refuses to remove a point before its expiry by any path, destructive
//! agent operations need a security PIN, and whatever no point references any more is
//! collected ([`crate::collect`]).
//!
//! A sweep ([`Lifecycle::sweep`]) purges soft-deleted items whose time is up, deletes
//! expired points and collects garbage. It runs on a timer and before every view of points
//! or items, so a clock move is visible at the next read.

use std::sync::Arc;

use object_store::path::Path as ObjectPath;
use serde_json::Value;
use sqlx::SqlitePool;

use crate::blobs::Blobs;
use crate::collect::{self, Collected};
use crate::dataplane::manifest_path;
use crate::error::{Result, VsError};
use crate::policy;
use crate::retention::{self, Retention};
use crate::settings;
use crate::vaults::Vault;

/// How long a security PIN stays valid (seconds, simulated clock).
pub const PIN_LIFETIME: i64 = 5 * 60;

pub struct Lifecycle {
    pool: SqlitePool,
    blobs: Arc<Blobs>,
    /// One sweep at a time (the timer and a read may meet).
    sweeping: tokio::sync::Mutex<()>,
}

/// A point that cannot be removed yet, for the refusal's message.
struct Protected {
    name: String,
    expires: i64,
}

fn immutable(vault: &Vault) -> bool {
    settings::immutability(&vault.properties()) != "Disabled"
}

/// The vault's soft-delete days, `None` when soft delete is off.
pub fn soft_delete_days(vault: &Vault) -> Option<i64> {
    let properties = vault.properties();
    if settings::soft_delete_state(&properties) == "Disabled" {
        return None;
    }
    Some(
        properties
            .get("securitySettings")
            .and_then(|s| s.get("softDeleteSettings"))
            .and_then(|s| s.get("softDeleteRetentionPeriodInDays"))
            .and_then(Value::as_i64)
            .unwrap_or(14),
    )
}

impl Lifecycle {
    pub fn new(pool: SqlitePool, blobs: Arc<Blobs>) -> Self {
        Lifecycle {
            pool,
            blobs,
            sweeping: tokio::sync::Mutex::new(()),
        }
    }

    /// The policy governing an item: the one bound to it, else the vault's `DefaultPolicy`
    /// (else the defaults of a new vault).
    pub async fn item_policy(
        &self,
        vault: &Vault,
        container: &str,
        item: &str,
    ) -> Result<(String, Value)> {
        let bound: Option<String> = sqlx::query_scalar(
            "SELECT policy_name FROM protected_items WHERE vault_id = ? AND container = ? AND name = ?",
        )
        .bind(vault.id)
        .bind(container)
        .bind(item)
        .fetch_optional(&self.pool)
        .await?;
        let name = bound
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| policy::DEFAULT_POLICY.to_string());
        let properties: Option<String> =
            sqlx::query_scalar("SELECT properties FROM policies WHERE vault_id = ? AND name = ?")
                .bind(vault.id)
                .bind(&name)
                .fetch_optional(&self.pool)
                .await?;
        let properties = properties
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or_else(policy::default_mab);
        Ok((name, properties))
    }

    /// Tags and expiry of a point the item is about to get.
    pub async fn plan(
        &self,
        vault: &Vault,
        container: &str,
        item: &str,
        created: i64,
        retain_until: Option<i64>,
    ) -> Result<Retention> {
        if let Some(until) = retain_until
            && until <= created
        {
            return Err(VsError::BadRequest(
                "retainUntil must be in the future.".into(),
            ));
        }
        let (_, policy) = self.item_policy(vault, container, item).await?;
        Ok(retention::plan(&policy, created, retain_until))
    }

    /// Binds `policy_name` (which must exist) to an item; its points are re-planned.
    pub async fn bind_policy(
        &self,
        vault: &Vault,
        container: &str,
        item: &str,
        policy_name: &str,
    ) -> Result<()> {
        let properties: Option<String> =
            sqlx::query_scalar("SELECT properties FROM policies WHERE vault_id = ? AND name = ?")
                .bind(vault.id)
                .bind(policy_name)
                .fetch_optional(&self.pool)
                .await?;
        let properties: Value = properties
            .and_then(|p| serde_json::from_str(&p).ok())
            .ok_or_else(|| {
                VsError::NotFound(format!(
                    "Policy '{policy_name}' was not found in vault {}; create it first.",
                    vault.name
                ))
            })?;
        let points = self.points_of(vault, Some(container), Some(item)).await?;
        self.replan(vault, &points, &properties).await?;
        let updated = sqlx::query(
            "UPDATE protected_items SET policy_name = ? WHERE vault_id = ? AND container = ? AND name = ?",
        )
        .bind(policy_name)
        .bind(vault.id)
        .bind(container)
        .bind(item)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(VsError::NotFound(format!(
                "Item '{item}' of server {container} was not found in vault {}.",
                vault.name
            )));
        }
        Ok(())
    }

    /// A policy is about to change: every point of the items it governs is re-planned. In
    /// an immutable vault no point may lose time (refused, nothing changed).
    pub async fn policy_changing(&self, vault: &Vault, name: &str, next: &Value) -> Result<()> {
        let governed: Vec<(String, String)> = sqlx::query_as(
            "SELECT container, name FROM protected_items WHERE vault_id = ? AND \
             (policy_name = ? OR (policy_name = '' AND ? = ?))",
        )
        .bind(vault.id)
        .bind(name)
        .bind(name)
        .bind(policy::DEFAULT_POLICY)
        .fetch_all(&self.pool)
        .await?;
        let mut points = Vec::new();
        for (container, item) in governed {
            points.extend(self.points_of(vault, Some(&container), Some(&item)).await?);
        }
        self.replan(vault, &points, next).await
    }

    /// New expiries for `points` under `policy` (ad-hoc points keep their chosen date).
    async fn replan(&self, vault: &Vault, points: &[PointRow], policy: &Value) -> Result<()> {
        let mut changes = Vec::new();
        for point in points {
            if point.rule == "AdHoc" {
                continue;
            }
            let planned = retention::plan(policy, point.created, None);
            if immutable(vault) && point.expires.is_some_and(|e| planned.expires < e) {
                return Err(VsError::ImmutableRecoveryPoint(format!(
                    "Vault {} is immutable: the policy change would make recovery point {} expire on {} instead of {}. Immutable vaults only allow retention to grow.",
                    vault.name,
                    point.name,
                    crate::arm::iso(planned.expires),
                    crate::arm::iso(point.expires.unwrap_or_default())
                )));
            }
            changes.push((point, planned));
        }
        let mut tx = self.pool.begin().await?;
        for (point, planned) in changes {
            sqlx::query(
                "UPDATE recovery_points SET expires_at = ?, rule_name = ? WHERE vault_id = ? AND name = ?",
            )
            .bind(planned.expires)
            .bind(planned.rule())
            .bind(vault.id)
            .bind(&point.name)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn points_of(
        &self,
        vault: &Vault,
        container: Option<&str>,
        item: Option<&str>,
    ) -> Result<Vec<PointRow>> {
        Ok(sqlx::query_as::<_, PointRow>(
            "SELECT name, created_at AS created, expires_at AS expires, rule_name AS rule \
             FROM recovery_points WHERE vault_id = ? AND (?2 IS NULL OR container = ?2) AND (?3 IS NULL OR item = ?3)",
        )
        .bind(vault.id)
        .bind(container)
        .bind(item)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Refuses, in an immutable vault, removing points that have not expired.
    pub async fn check_removable(
        &self,
        vault: &Vault,
        container: Option<&str>,
        item: Option<&str>,
        what: &str,
        now: i64,
    ) -> Result<()> {
        if !immutable(vault) {
            return Ok(());
        }
        let protected: Vec<Protected> = self
            .points_of(vault, container, item)
            .await?
            .into_iter()
            .filter(|p| p.expires.is_none_or(|e| e > now))
            .map(|p| Protected {
                name: p.name,
                expires: p.expires.unwrap_or(i64::MAX),
            })
            .collect();
        if let Some(last) = protected.iter().max_by_key(|p| p.expires) {
            return Err(VsError::ImmutableRecoveryPoint(format!(
                "Vault {} is immutable ({}): {what} would delete {} recovery point(s) before their expiry (the last, {}, expires {}). Recovery points of an immutable vault can only be deleted once they expire.",
                vault.name,
                settings::immutability(&vault.properties()),
                protected.len(),
                last.name,
                crate::arm::iso(last.expires)
            )));
        }
        Ok(())
    }

    /// A new security PIN for the vault.
    pub async fn issue_pin(&self, vault: &Vault, now: i64) -> Result<(String, i64)> {
        let mut raw = [0u8; 4];
        aws_lc_rs::rand::fill(&mut raw)
            .map_err(|_| VsError::Upstream("no randomness for a PIN".into()))?;
        let pin = format!("{:06}", u32::from_le_bytes(raw) % 1_000_000);
        let expires = now + PIN_LIFETIME;
        sqlx::query("DELETE FROM security_pins WHERE vault_id = ? AND expires_at <= ?")
            .bind(vault.id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO security_pins (vault_id, pin, expires_at) VALUES (?, ?, ?) \
             ON CONFLICT (vault_id, pin) DO UPDATE SET expires_at = excluded.expires_at",
        )
        .bind(vault.id)
        .bind(&pin)
        .bind(expires)
        .execute(&self.pool)
        .await?;
        Ok((pin, expires))
    }

    /// Uses up a PIN: it must be one the vault issued and not expired.
    pub async fn use_pin(&self, vault: &Vault, pin: Option<&str>, now: i64) -> Result<()> {
        let pin = pin.unwrap_or_default().trim();
        if pin.is_empty() {
            return Err(VsError::SecurityPin(
                "Deleting backup data needs a security PIN: generate one for the vault (POST …/backupSecurityPIN, the portal's Properties → Security PIN) and pass it within 5 minutes.".into(),
            ));
        }
        let expires: Option<i64> = sqlx::query_scalar(
            "DELETE FROM security_pins WHERE vault_id = ? AND pin = ? RETURNING expires_at",
        )
        .bind(vault.id)
        .bind(pin)
        .fetch_optional(&self.pool)
        .await?;
        match expires {
            Some(at) if at > now => Ok(()),
            Some(_) => Err(VsError::SecurityPin(
                "The security PIN expired (a PIN is valid for 5 minutes); generate a new one.".into(),
            )),
            None => Err(VsError::SecurityPin(
                "The security PIN is not valid for this vault; generate a new one and enter it exactly.".into(),
            )),
        }
    }

    /// Stop protection: keep the data (no new backups until protection resumes), or delete
    /// it — deferred for the soft-delete days when soft delete is on, at once otherwise.
    pub async fn stop_protection(
        &self,
        vault: &Vault,
        container: &str,
        item: &str,
        delete_data: bool,
        now: i64,
    ) -> Result<()> {
        let known: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT deferred_delete_at FROM protected_items WHERE vault_id = ? AND container = ? AND name = ?",
        )
        .bind(vault.id)
        .bind(container)
        .bind(item)
        .fetch_optional(&self.pool)
        .await?;
        let Some(deferred) = known else {
            return Err(VsError::NotFound(format!(
                "Item '{item}' of server {container} was not found in vault {}.",
                vault.name
            )));
        };
        if !delete_data {
            sqlx::query(
                "UPDATE protected_items SET protection_state = 'ProtectionStopped' WHERE vault_id = ? AND container = ? AND name = ?",
            )
            .bind(vault.id)
            .bind(container)
            .bind(item)
            .execute(&self.pool)
            .await?;
            return Ok(());
        }
        if deferred.is_some() {
            return Err(VsError::Conflict(format!(
                "The backup data of item '{item}' is already deleted (soft-deleted); undelete it or wait for its purge."
            )));
        }
        self.check_removable(
            vault,
            Some(container),
            Some(item),
            "deleting the backup data",
            now,
        )
        .await?;
        if soft_delete_days(vault).is_some() {
            sqlx::query(
                "UPDATE protected_items SET protection_state = 'ProtectionStopped', deferred_delete_at = ? \
                 WHERE vault_id = ? AND container = ? AND name = ?",
            )
            .bind(now)
            .bind(vault.id)
            .bind(container)
            .bind(item)
            .execute(&self.pool)
            .await?;
            return Ok(());
        }
        self.purge_item(vault, container, item).await
    }

    /// Undoes a soft delete: the item and its points are back, protection stays stopped.
    pub async fn undelete(&self, vault: &Vault, container: &str, item: &str) -> Result<()> {
        let updated = sqlx::query(
            "UPDATE protected_items SET deferred_delete_at = NULL WHERE vault_id = ? AND container = ? AND name = ? \
             AND deferred_delete_at IS NOT NULL",
        )
        .bind(vault.id)
        .bind(container)
        .bind(item)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(VsError::Conflict(format!(
                "Item '{item}' of server {container} is not soft-deleted; there is nothing to undelete."
            )));
        }
        Ok(())
    }

    /// Deletes an item and its points for good (the chunks go at the next collection).
    async fn purge_item(&self, vault: &Vault, container: &str, item: &str) -> Result<()> {
        let points = self.points_of(vault, Some(container), Some(item)).await?;
        sqlx::query(
            "DELETE FROM protected_items WHERE vault_id = ? AND container = ? AND name = ?",
        )
        .bind(vault.id)
        .bind(container)
        .bind(item)
        .execute(&self.pool)
        .await?;
        self.forget_objects(vault.id, &points).await;
        Ok(())
    }

    /// Manifests of deleted points (after their rows: an object without a row is harmless).
    async fn forget_objects(&self, vault_id: i64, points: &[PointRow]) {
        for point in points {
            for path in [
                manifest_path(vault_id, &point.name),
                ObjectPath::from(format!("manifests/{vault_id}/{}.chunks", point.name)),
            ] {
                if let Err(error) = self.blobs.delete(&path).await {
                    tracing::warn!(%error, %path, "a deleted recovery point's object stays");
                }
            }
        }
    }

    /// Purges soft-deleted items whose time is up, deletes expired points (those of
    /// soft-deleted items wait: undelete brings them back) and collects garbage.
    pub async fn sweep(&self, vault: &Vault, now: i64) -> Result<Collected> {
        let _one = self.sweeping.lock().await;
        let days = soft_delete_days(vault).unwrap_or(0);
        let due: Vec<(String, String)> = sqlx::query_as(
            "SELECT container, name FROM protected_items WHERE vault_id = ? AND deferred_delete_at IS NOT NULL \
             AND deferred_delete_at + ? <= ?",
        )
        .bind(vault.id)
        .bind(days * 86_400)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        for (container, item) in &due {
            self.purge_item(vault, container, item).await?;
        }
        let expired: Vec<PointRow> = sqlx::query_as::<_, PointRow>(
            "SELECT r.name, r.created_at AS created, r.expires_at AS expires, r.rule_name AS rule \
             FROM recovery_points r JOIN protected_items p ON p.vault_id = r.vault_id AND p.container = r.container AND p.name = r.item \
             WHERE r.vault_id = ? AND r.expires_at IS NOT NULL AND r.expires_at <= ? AND p.deferred_delete_at IS NULL",
        )
        .bind(vault.id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        if !expired.is_empty() {
            let mut tx = self.pool.begin().await?;
            for point in &expired {
                sqlx::query("DELETE FROM recovery_points WHERE vault_id = ? AND name = ?")
                    .bind(vault.id)
                    .bind(&point.name)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            self.forget_objects(vault.id, &expired).await;
        }
        if due.is_empty() && expired.is_empty() {
            return Ok(Collected::default());
        }
        collect::collect(&self.pool, &self.blobs, vault.id).await
    }

    /// Collects a vault's garbage now (the admin API's `collect`).
    pub async fn collect(&self, vault: &Vault) -> Result<Collected> {
        let _one = self.sweeping.lock().await;
        collect::collect(&self.pool, &self.blobs, vault.id).await
    }

    /// Bytes of packs the vault stores.
    pub async fn stored_bytes(&self, vault: &Vault) -> Result<i64> {
        let total: Option<i64> =
            sqlx::query_scalar("SELECT SUM(size) FROM packs WHERE vault_id = ?")
                .bind(vault.id)
                .fetch_one(&self.pool)
                .await?;
        Ok(total.unwrap_or(0))
    }
}

#[derive(sqlx::FromRow)]
struct PointRow {
    name: String,
    created: i64,
    expires: Option<i64>,
    rule: String,
}
