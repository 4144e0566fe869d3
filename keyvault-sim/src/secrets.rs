//! Secrets: versions, soft delete on the simulated clock, recover, purge, backup and
//! restore. Values are sealed (AES-256-GCM) before they reach SQLite.
//!
//! Every write runs in one transaction under the store's write lock, so a crash leaves the
//! old state or the new, never a secret without its version.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sim_core::SimClock;
use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::Mutex;

use crate::error::{KvError, Result};
use crate::seal::SealKey;
use crate::vaults::Vault;

const DAY: i64 = 86_400;
/// Key Vault's limit on a secret value.
pub const MAX_VALUE_BYTES: usize = 25 * 1024;
/// Largest page a list returns (Key Vault's maximum `maxresults`).
pub const MAX_PAGE: i64 = 25;
const BACKUP_FORMAT: &str = "azsim-keyvault-secret-backup/1";
const BACKUP_CONTEXT: &[u8] = b"azsim keyvault secret backup v1";

/// One version of a secret, its value opened only when asked for.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SecretVersion {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub value: Option<String>,
    pub content_type: Option<String>,
    pub tags: Option<Map<String, Value>>,
    pub enabled: bool,
    pub not_before: Option<i64>,
    pub expires: Option<i64>,
    pub created: i64,
    pub updated: i64,
}

/// When a deleted secret was deleted and when it will be purged.
#[derive(Clone, Copy, Debug)]
pub struct Deletion {
    pub deleted_at: i64,
    pub scheduled_purge_at: i64,
}

/// `PUT /secrets/{name}`.
#[derive(Default)]
pub struct NewSecret {
    pub value: String,
    pub content_type: Option<String>,
    pub tags: Option<Map<String, Value>>,
    pub enabled: Option<bool>,
    pub not_before: Option<i64>,
    pub expires: Option<i64>,
}

/// `PATCH /secrets/{name}/{version}`: only the fields present change.
#[derive(Default)]
pub struct SecretUpdate {
    pub content_type: Option<String>,
    pub tags: Option<Map<String, Value>>,
    pub enabled: Option<bool>,
    pub not_before: Option<i64>,
    pub expires: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    seq: i64,
    name: String,
    version: String,
    sealed_value: Vec<u8>,
    content_type: Option<String>,
    tags: Option<String>,
    enabled: bool,
    not_before: Option<i64>,
    expires: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Backup {
    format: String,
    subscription_id: String,
    name: String,
    versions: Vec<SecretVersion>,
}

pub struct Secrets {
    pool: SqlitePool,
    clock: SimClock,
    seal: SealKey,
    write: Arc<Mutex<()>>,
}

/// Secret names: 1–127 letters, digits and dashes.
pub fn validate_name(name: &str) -> Result<()> {
    if (1..=127).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        Ok(())
    } else {
        Err(KvError::BadParameter(format!(
            "The request URI contains an invalid name: '{name}'. Secret names are 1-127 characters of letters, digits and dashes."
        )))
    }
}

fn seal_context(vault: &Vault, name: &str, version: &str) -> Vec<u8> {
    format!("{}/{}/{}", vault.id, name.to_ascii_lowercase(), version).into_bytes()
}

// sqlx numbers a plain `?` by its own running count even after a numbered `?N`, so a
// query that repeats a parameter numbers every parameter.
const LATEST: &str = "SELECT v.* FROM secret_versions v JOIN secrets s ON s.vault_id = v.vault_id AND s.name = v.name \
     WHERE v.vault_id = ? AND v.name = ? AND s.deleted_at IS NULL ORDER BY v.seq DESC LIMIT 1";
const BY_VERSION: &str = "SELECT v.* FROM secret_versions v JOIN secrets s ON s.vault_id = v.vault_id AND s.name = v.name \
     WHERE v.vault_id = ? AND v.name = ? AND v.version = ? AND s.deleted_at IS NULL";
const LATEST_ANY_STATE: &str =
    "SELECT * FROM secret_versions WHERE vault_id = ? AND name = ? ORDER BY seq DESC LIMIT 1";

impl Secrets {
    pub fn new(pool: SqlitePool, clock: SimClock, seal: SealKey, write: Arc<Mutex<()>>) -> Self {
        Secrets {
            pool,
            clock,
            seal,
            write,
        }
    }

    fn open_row(&self, vault: &Vault, row: VersionRow, with_value: bool) -> Result<SecretVersion> {
        let value = if with_value {
            let plain = self
                .seal
                .open(
                    &row.sealed_value,
                    &seal_context(vault, &row.name, &row.version),
                )
                .ok_or_else(|| KvError::Seal(format!("secret {}/{}", row.name, row.version)))?;
            Some(String::from_utf8(plain).map_err(|e| KvError::Seal(e.to_string()))?)
        } else {
            None
        };
        Ok(SecretVersion {
            name: row.name,
            version: row.version,
            value,
            content_type: row.content_type,
            tags: row.tags.and_then(|t| serde_json::from_str(&t).ok()),
            enabled: row.enabled,
            not_before: row.not_before,
            expires: row.expires,
            created: row.created_at,
            updated: row.updated_at,
        })
    }

    async fn find(&self, vault: &Vault, name: &str, version: Option<&str>) -> Result<VersionRow> {
        let row = match version {
            None => {
                sqlx::query_as::<_, VersionRow>(LATEST)
                    .bind(vault.id)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?
            }
            Some(version) => {
                sqlx::query_as::<_, VersionRow>(BY_VERSION)
                    .bind(vault.id)
                    .bind(name)
                    .bind(version.to_ascii_lowercase())
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        row.ok_or_else(|| match version {
            None => KvError::SecretNotFound(name.to_string()),
            Some(version) => KvError::VersionNotFound {
                name: name.to_string(),
                version: version.to_string(),
            },
        })
    }

    /// The latest (or a given) version with its value; a disabled version is refused.
    pub async fn get(
        &self,
        vault: &Vault,
        name: &str,
        version: Option<&str>,
    ) -> Result<SecretVersion> {
        validate_name(name)?;
        let row = self.find(vault, name, version).await?;
        if !row.enabled {
            return Err(KvError::SecretDisabled(name.to_string()));
        }
        self.open_row(vault, row, true)
    }

    /// Adds a new version (creating the secret on first set).
    pub async fn set(&self, vault: &Vault, name: &str, secret: NewSecret) -> Result<SecretVersion> {
        validate_name(name)?;
        if secret.value.len() > MAX_VALUE_BYTES {
            return Err(KvError::BadParameter(format!(
                "The secret value is {} bytes; Key Vault accepts at most {MAX_VALUE_BYTES} bytes (25 KiB).",
                secret.value.len()
            )));
        }
        let _write = self.write.lock().await;
        let now = self.clock.unix();
        let mut tx = self.pool.begin().await?;
        purge_expired(&mut tx, vault, now).await?;
        let state: Option<(String, Option<i64>)> =
            sqlx::query_as("SELECT name, deleted_at FROM secrets WHERE vault_id = ? AND name = ?")
                .bind(vault.id)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        let stored_name = match state {
            Some((_, Some(_))) => return Err(KvError::DeletedButRecoverable(name.to_string())),
            Some((stored, None)) => stored,
            None => {
                sqlx::query("INSERT INTO secrets (vault_id, name) VALUES (?, ?)")
                    .bind(vault.id)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                name.to_string()
            }
        };
        let version = SecretVersion {
            name: stored_name,
            version: uuid::Uuid::new_v4().simple().to_string(),
            value: Some(secret.value),
            content_type: secret.content_type,
            tags: secret.tags,
            enabled: secret.enabled.unwrap_or(true),
            not_before: secret.not_before,
            expires: secret.expires,
            created: now,
            updated: now,
        };
        self.insert_version(&mut tx, vault, &version).await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn insert_version(
        &self,
        tx: &mut SqliteConnection,
        vault: &Vault,
        version: &SecretVersion,
    ) -> Result<()> {
        let value = version.value.as_deref().unwrap_or_default();
        let sealed = self.seal.seal(
            value.as_bytes(),
            &seal_context(vault, &version.name, &version.version),
        );
        sqlx::query(
            "INSERT INTO secret_versions (vault_id, name, version, sealed_value, content_type, tags, \
             enabled, not_before, expires, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(vault.id)
        .bind(&version.name)
        .bind(&version.version)
        .bind(sealed)
        .bind(&version.content_type)
        .bind(version.tags.as_ref().map(|t| Value::Object(t.clone()).to_string()))
        .bind(version.enabled)
        .bind(version.not_before)
        .bind(version.expires)
        .bind(version.created)
        .bind(version.updated)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Changes the attributes of the latest (or a given) version; the value is not returned.
    pub async fn update(
        &self,
        vault: &Vault,
        name: &str,
        version: Option<&str>,
        update: SecretUpdate,
    ) -> Result<SecretVersion> {
        validate_name(name)?;
        let _write = self.write.lock().await;
        let row = self.find(vault, name, version).await?;
        let seq = row.seq;
        let mut current = self.open_row(vault, row, false)?;
        if let Some(content_type) = update.content_type {
            current.content_type = Some(content_type);
        }
        if let Some(tags) = update.tags {
            current.tags = Some(tags);
        }
        if let Some(enabled) = update.enabled {
            current.enabled = enabled;
        }
        if let Some(nbf) = update.not_before {
            current.not_before = Some(nbf);
        }
        if let Some(exp) = update.expires {
            current.expires = Some(exp);
        }
        current.updated = self.clock.unix();
        sqlx::query(
            "UPDATE secret_versions SET content_type = ?, tags = ?, enabled = ?, not_before = ?, \
             expires = ?, updated_at = ? WHERE seq = ?",
        )
        .bind(&current.content_type)
        .bind(
            current
                .tags
                .as_ref()
                .map(|t| Value::Object(t.clone()).to_string()),
        )
        .bind(current.enabled)
        .bind(current.not_before)
        .bind(current.expires)
        .bind(current.updated)
        .bind(seq)
        .execute(&self.pool)
        .await?;
        Ok(current)
    }

    /// The latest version of each live secret, by name, after `after`; `more` when
    /// another page follows.
    pub async fn list(
        &self,
        vault: &Vault,
        after: Option<&str>,
        limit: i64,
    ) -> Result<(Vec<SecretVersion>, bool)> {
        let rows = sqlx::query_as::<_, VersionRow>(
            "SELECT v.* FROM secrets s JOIN secret_versions v ON v.vault_id = s.vault_id AND v.name = s.name \
             AND v.seq = (SELECT MAX(seq) FROM secret_versions WHERE vault_id = s.vault_id AND name = s.name) \
             WHERE s.vault_id = ?1 AND s.deleted_at IS NULL AND (?2 IS NULL OR s.name > ?2) \
             ORDER BY s.name LIMIT ?3",
        )
        .bind(vault.id)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        self.page(vault, rows, limit)
    }

    fn page(
        &self,
        vault: &Vault,
        mut rows: Vec<VersionRow>,
        limit: i64,
    ) -> Result<(Vec<SecretVersion>, bool)> {
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let items = rows
            .into_iter()
            .map(|row| self.open_row(vault, row, false))
            .collect::<Result<Vec<_>>>()?;
        Ok((items, more))
    }

    /// Versions of one live secret in creation order, after version `after`.
    pub async fn list_versions(
        &self,
        vault: &Vault,
        name: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<(Vec<SecretVersion>, bool)> {
        validate_name(name)?;
        self.find(vault, name, None).await?;
        let rows = sqlx::query_as::<_, VersionRow>(
            "SELECT * FROM secret_versions WHERE vault_id = ?1 AND name = ?2 AND \
             seq > COALESCE((SELECT seq FROM secret_versions WHERE vault_id = ?1 AND name = ?2 AND version = ?3), 0) \
             ORDER BY seq LIMIT ?4",
        )
        .bind(vault.id)
        .bind(name)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        self.page(vault, rows, limit)
    }

    /// Soft-deletes a secret (all its versions) for the vault's retention period.
    pub async fn delete(&self, vault: &Vault, name: &str) -> Result<(SecretVersion, Deletion)> {
        validate_name(name)?;
        let _write = self.write.lock().await;
        let latest = self.find(vault, name, None).await?;
        let now = self.clock.unix();
        let deletion = Deletion {
            deleted_at: now,
            scheduled_purge_at: now + vault.soft_delete_days * DAY,
        };
        sqlx::query("UPDATE secrets SET deleted_at = ?, scheduled_purge_at = ? WHERE vault_id = ? AND name = ?")
            .bind(deletion.deleted_at)
            .bind(deletion.scheduled_purge_at)
            .bind(vault.id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok((self.open_row(vault, latest, false)?, deletion))
    }

    async fn find_deleted(
        &self,
        tx: &mut SqliteConnection,
        vault: &Vault,
        name: &str,
    ) -> Result<(VersionRow, Deletion)> {
        purge_expired(tx, vault, self.clock.unix()).await?;
        let deletion: Option<(i64, i64)> = sqlx::query_as(
            "SELECT deleted_at, scheduled_purge_at FROM secrets WHERE vault_id = ? AND name = ? AND deleted_at IS NOT NULL",
        )
        .bind(vault.id)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((deleted_at, scheduled_purge_at)) = deletion else {
            return Err(KvError::DeletedSecretNotFound(name.to_string()));
        };
        let row = sqlx::query_as::<_, VersionRow>(LATEST_ANY_STATE)
            .bind(vault.id)
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
        Ok((
            row,
            Deletion {
                deleted_at,
                scheduled_purge_at,
            },
        ))
    }

    pub async fn get_deleted(
        &self,
        vault: &Vault,
        name: &str,
    ) -> Result<(SecretVersion, Deletion)> {
        validate_name(name)?;
        let _write = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        let (row, deletion) = self.find_deleted(&mut tx, vault, name).await?;
        tx.commit().await?;
        Ok((self.open_row(vault, row, false)?, deletion))
    }

    pub async fn list_deleted(
        &self,
        vault: &Vault,
        after: Option<&str>,
        limit: i64,
    ) -> Result<(Vec<(SecretVersion, Deletion)>, bool)> {
        {
            let _write = self.write.lock().await;
            let mut connection = self.pool.acquire().await?;
            purge_expired(&mut connection, vault, self.clock.unix()).await?;
        }
        #[derive(sqlx::FromRow)]
        struct DeletedRow {
            #[sqlx(flatten)]
            version: VersionRow,
            deleted_at: i64,
            scheduled_purge_at: i64,
        }
        let mut rows = sqlx::query_as::<_, DeletedRow>(
            "SELECT v.*, s.deleted_at AS deleted_at, s.scheduled_purge_at AS scheduled_purge_at \
             FROM secrets s JOIN secret_versions v ON v.vault_id = s.vault_id AND v.name = s.name \
             AND v.seq = (SELECT MAX(seq) FROM secret_versions WHERE vault_id = s.vault_id AND name = s.name) \
             WHERE s.vault_id = ?1 AND s.deleted_at IS NOT NULL AND (?2 IS NULL OR s.name > ?2) \
             ORDER BY s.name LIMIT ?3",
        )
        .bind(vault.id)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(&self.pool)
        .await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let items = rows
            .into_iter()
            .map(|row| {
                let deletion = Deletion {
                    deleted_at: row.deleted_at,
                    scheduled_purge_at: row.scheduled_purge_at,
                };
                Ok((self.open_row(vault, row.version, false)?, deletion))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((items, more))
    }

    /// Brings a deleted secret back, every version included.
    pub async fn recover(&self, vault: &Vault, name: &str) -> Result<SecretVersion> {
        validate_name(name)?;
        let _write = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        let (row, _) = self.find_deleted(&mut tx, vault, name).await?;
        sqlx::query("UPDATE secrets SET deleted_at = NULL, scheduled_purge_at = NULL WHERE vault_id = ? AND name = ?")
            .bind(vault.id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.open_row(vault, row, false)
    }

    /// Removes a deleted secret for good, unless the vault has purge protection.
    pub async fn purge(&self, vault: &Vault, name: &str) -> Result<()> {
        validate_name(name)?;
        let _write = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        self.find_deleted(&mut tx, vault, name).await?;
        if vault.purge_protection {
            return Err(KvError::PurgeProtected(name.to_string()));
        }
        sqlx::query("DELETE FROM secrets WHERE vault_id = ? AND name = ?")
            .bind(vault.id)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every version of a live secret, sealed into a blob only this installation opens.
    pub async fn backup(&self, vault: &Vault, name: &str) -> Result<Vec<u8>> {
        validate_name(name)?;
        let latest = self.find(vault, name, None).await?;
        let rows = sqlx::query_as::<_, VersionRow>(
            "SELECT * FROM secret_versions WHERE vault_id = ? AND name = ? ORDER BY seq",
        )
        .bind(vault.id)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let backup = Backup {
            format: BACKUP_FORMAT.to_string(),
            subscription_id: vault.subscription_id.clone(),
            name: latest.name,
            versions: rows
                .into_iter()
                .map(|row| self.open_row(vault, row, true))
                .collect::<Result<_>>()?,
        };
        let plain = serde_json::to_vec(&backup).expect("a backup always serialises");
        Ok(self.seal.seal(&plain, BACKUP_CONTEXT))
    }

    /// Restores a backup into `vault` (same subscription); 409 when the name is taken.
    pub async fn restore(&self, vault: &Vault, blob: &[u8]) -> Result<SecretVersion> {
        let backup: Backup = self
            .seal
            .open(blob, BACKUP_CONTEXT)
            .and_then(|plain| serde_json::from_slice(&plain).ok())
            .filter(|b: &Backup| b.format == BACKUP_FORMAT && !b.versions.is_empty())
            .ok_or_else(|| {
                KvError::BadParameter(
                    "The backup blob is corrupt or was not produced by this keyvault-sim installation; pass the exact bytes backup_secret returned.".into(),
                )
            })?;
        if !backup
            .subscription_id
            .eq_ignore_ascii_case(&vault.subscription_id)
        {
            return Err(KvError::BadParameter(format!(
                "The backup comes from a vault of subscription {}; it can only be restored into a vault of the same subscription.",
                backup.subscription_id
            )));
        }
        let _write = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        purge_expired(&mut tx, vault, self.clock.unix()).await?;
        let existing: Option<Option<i64>> =
            sqlx::query_scalar("SELECT deleted_at FROM secrets WHERE vault_id = ? AND name = ?")
                .bind(vault.id)
                .bind(&backup.name)
                .fetch_optional(&mut *tx)
                .await?;
        match existing {
            Some(Some(_)) => return Err(KvError::DeletedButRecoverable(backup.name)),
            Some(None) => return Err(KvError::SecretAlreadyExists(backup.name)),
            None => {}
        }
        sqlx::query("INSERT INTO secrets (vault_id, name) VALUES (?, ?)")
            .bind(vault.id)
            .bind(&backup.name)
            .execute(&mut *tx)
            .await?;
        for version in &backup.versions {
            self.insert_version(&mut tx, vault, version).await?;
        }
        tx.commit().await?;
        let mut latest = backup.versions.last().cloned().expect("checked non-empty");
        latest.value = None;
        Ok(latest)
    }
}

/// Deleted secrets whose retention ended on the simulated clock are purged.
async fn purge_expired(connection: &mut SqliteConnection, vault: &Vault, now: i64) -> Result<()> {
    sqlx::query("DELETE FROM secrets WHERE vault_id = ? AND deleted_at IS NOT NULL AND scheduled_purge_at <= ?")
        .bind(vault.id)
        .bind(now)
        .execute(&mut *connection)
        .await?;
    Ok(())
}
