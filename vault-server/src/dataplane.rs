//! The agent-facing backup data plane: machine registration, encryption info, packs and
//! chunks, recovery points and their manifests, jobs. The server never decrypts anything:
//! chunk ids and manifests are opaque; it knows which chunks each pack holds and which
//! chunks each recovery point references, enough to verify a commit and serve restores.
//!
//! Pack bodies go to an [`ObjectStore`] (local files by default, memory in tests), keyed
//! `packs/{vault}/{id}`; manifests `manifests/{vault}/{recovery point}`. A pack's rows are
//! written only after its object is stored, and a recovery point only after every chunk
//! it references is known, each in one transaction: a crash leaves the old state or the new.

use std::sync::Arc;

use backup_protocol::{ChunkLocation, Job, RecoveryPoint, is_hex_id, parse_index_of_parts};
use bytes::Bytes;
use object_store::PutPayload;
use object_store::path::Path as ObjectPath;
use serde_json::{Value, json};
use sqlx::SqlitePool;

use crate::blobs::{BlobError, Blobs, Placement};
use crate::error::{Result, VsError};
use crate::vaults::Vault;

/// A job InProgress longer than this (seconds, simulated clock) was abandoned.
pub const JOB_TIMEOUT: i64 = 24 * 3600;

/// Largest pack accepted, in bytes.
pub const MAX_PACK_BYTES: usize = 256 * 1024 * 1024;

/// Who a machine token belongs to.
#[derive(Clone, Debug)]
pub struct Machine {
    pub vault_id: i64,
    pub container: String,
}

pub struct DataPlane {
    pool: SqlitePool,
    blobs: Arc<Blobs>,
}

pub(crate) fn pack_path(vault_id: i64, id: &str) -> ObjectPath {
    ObjectPath::from(format!("packs/{vault_id}/{}/{id}", &id[..2]))
}

pub(crate) fn manifest_path(vault_id: i64, recovery_point: &str) -> ObjectPath {
    ObjectPath::from(format!("manifests/{vault_id}/{recovery_point}"))
}

impl DataPlane {
    pub fn new(pool: SqlitePool, blobs: Arc<Blobs>) -> Self {
        DataPlane { pool, blobs }
    }

    /// The machine a token's app id belongs to.
    pub async fn machine(&self, app_id: &str) -> Result<Option<Machine>> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT vault_id, container FROM machines WHERE app_id = ?")
                .bind(app_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(vault_id, container)| Machine {
            vault_id,
            container,
        }))
    }

    pub async fn add_machine(
        &self,
        app_id: &str,
        sp_id: &str,
        vault: &Vault,
        container: &str,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO machines (app_id, vault_id, container, service_principal_id, registered_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(app_id)
        .bind(vault.id)
        .bind(container)
        .bind(sp_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Machine app ids of a container (to retire on re-registration).
    pub async fn machine_apps(&self, vault_id: i64, container: &str) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT app_id FROM machines WHERE vault_id = ? AND container = ?")
                .bind(vault_id)
                .bind(container)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn remove_machine(&self, app_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM machines WHERE app_id = ?")
            .bind(app_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn encryption(
        &self,
        vault_id: i64,
        container: &str,
    ) -> Result<Option<(Value, String)>> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT info, key_check FROM encryption WHERE vault_id = ? AND container = ?",
        )
        .bind(vault_id)
        .bind(container)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(info, check)| (serde_json::from_str(&info).unwrap_or(Value::Null), check)))
    }

    pub async fn set_encryption(
        &self,
        vault_id: i64,
        container: &str,
        info: &Value,
        key_check: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO encryption (vault_id, container, info, key_check) VALUES (?, ?, ?, ?) \
             ON CONFLICT (vault_id, container) DO UPDATE SET info = excluded.info, key_check = excluded.key_check",
        )
        .bind(vault_id)
        .bind(container)
        .bind(info.to_string())
        .bind(key_check)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The ids of `ids` the vault does not hold yet (one query, whatever the count).
    pub async fn missing(&self, vault_id: i64, ids: &[String]) -> Result<Vec<String>> {
        if let Some(bad) = ids.iter().find(|id| !is_hex_id(id)) {
            return Err(VsError::BadRequest(format!(
                "'{bad}' is not a chunk id (64 lower-case hex digits)."
            )));
        }
        let list = serde_json::to_string(ids).expect("ids serialise");
        Ok(sqlx::query_scalar(
            "SELECT j.value FROM json_each(?1) j \
             WHERE NOT EXISTS (SELECT 1 FROM chunks c WHERE c.vault_id = ?2 AND c.id = unhex(j.value)) ORDER BY j.key",
        )
        .bind(list)
        .bind(vault_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Stores a pack: `body` = chunk blobs, then the index, then its length as u32 LE,
    /// in the parts it arrived in (hashed and written without joining them). The pack id
    /// must be the BLAKE3 of the body. Uploading a stored pack again is a no-op.
    pub async fn put_pack(
        &self,
        vault_id: i64,
        id: &str,
        body: Vec<Bytes>,
        now: i64,
    ) -> Result<usize> {
        if !is_hex_id(id) {
            return Err(VsError::BadRequest(format!(
                "'{id}' is not a pack id (64 lower-case hex digits)."
            )));
        }
        let size: usize = body.iter().map(Bytes::len).sum();
        if size > MAX_PACK_BYTES {
            return Err(VsError::BadRequest(format!(
                "Packs are at most {MAX_PACK_BYTES} bytes."
            )));
        }
        let mut hasher = blake3::Hasher::new();
        for part in &body {
            hasher.update(part);
        }
        let actual = hasher.finalize().to_hex().to_string();
        if actual != id {
            return Err(VsError::BadRequest(format!(
                "The pack body does not match its id (BLAKE3 {actual}); it was damaged in transit, upload it again."
            )));
        }
        let entries =
            parse_index_of_parts(&body).map_err(|e| VsError::BadRequest(e.to_string()))?;
        let known: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM packs WHERE vault_id = ? AND id = ?")
                .bind(vault_id)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        if known.is_some() {
            return Ok(entries.len());
        }
        self.blobs
            .put(
                &pack_path(vault_id, id),
                body.into_iter().collect::<PutPayload>(),
            )
            .await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO packs (vault_id, id, size, uploaded_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING")
            .bind(vault_id)
            .bind(id)
            .bind(size as i64)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // One statement for the pack's whole index: a statement per chunk was a round trip
        // to SQLite's worker thread each, and those wake-ups were a third of the server's
        // time during a backup.
        sqlx::query(
            "INSERT INTO chunks (vault_id, id, pack, offset, length) \
             SELECT ?1, unhex(j.value ->> 'id'), (SELECT number FROM packs WHERE vault_id = ?1 AND id = ?2), \
             j.value ->> 'offset', j.value ->> 'length' FROM json_each(?3) j \
             WHERE true ON CONFLICT DO NOTHING",
        )
        .bind(vault_id)
        .bind(id)
        .bind(serde_json::to_string(&entries).expect("entries serialise"))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(entries.len())
    }

    /// Where each chunk is, for a restore (one query).
    pub async fn locate(&self, vault_id: i64, ids: &[String]) -> Result<Vec<ChunkLocation>> {
        if let Some(bad) = ids.iter().find(|id| !is_hex_id(id)) {
            return Err(VsError::BadRequest(format!(
                "'{bad}' is not a chunk id (64 lower-case hex digits)."
            )));
        }
        let list = serde_json::to_string(ids).expect("ids serialise");
        // One row holding every answer: row by row, handing each across to sqlx's worker
        // thread cost more than the lookups (2 % of a restore's CPU).
        let (answers,): (String,) = sqlx::query_as(
            "SELECT json_group_array(json_array(j.value, p.id, c.offset, c.length) ORDER BY j.key) \
             FROM json_each(?1) j \
             LEFT JOIN chunks c ON c.vault_id = ?2 AND c.id = unhex(j.value) \
             LEFT JOIN packs p ON p.number = c.pack",
        )
        .bind(list)
        .bind(vault_id)
        .fetch_one(&self.pool)
        .await?;
        let rows: Vec<LocatedRow> = serde_json::from_str(&answers).map_err(|e| {
            VsError::Storage(sqlx::Error::Decode(
                format!("chunk locations from the database: {e}").into(),
            ))
        })?;
        rows.into_iter()
            .map(|(id, pack, offset, length)| match (pack, offset, length) {
                (Some(pack), Some(offset), Some(length)) => Ok(ChunkLocation {
                    id,
                    pack,
                    offset: offset as u64,
                    length: length as u64,
                }),
                _ => Err(VsError::NotFound(format!(
                    "Chunk {id} is not in this vault."
                ))),
            })
            .collect()
    }

    /// Bytes `[start, end)` of a pack.
    /// `secondary`: read the paired region's copy (cross-region restore).
    pub async fn read_pack(
        &self,
        vault_id: i64,
        id: &str,
        range: Option<(u64, u64)>,
        secondary: Option<&Placement>,
    ) -> Result<Bytes> {
        if !is_hex_id(id) {
            return Err(VsError::BadRequest(format!("'{id}' is not a pack id.")));
        }
        let size: Option<i64> =
            sqlx::query_scalar("SELECT size FROM packs WHERE vault_id = ? AND id = ?")
                .bind(vault_id)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        let size = size
            .ok_or_else(|| VsError::NotFound(format!("Pack {id} is not in this vault.")))?
            as u64;
        if let Some((start, end)) = range
            && end > size
        {
            return Err(VsError::BadRequest(format!(
                "The range {start}-{} reaches past the end of pack {id} ({size} bytes).",
                end - 1
            )));
        }
        let path = pack_path(vault_id, id);
        let range = range.map(|(start, end)| start..end);
        let result = match secondary {
            Some(placement) => self.blobs.get_secondary(placement, &path, range).await,
            None => self.blobs.get(&path, range).await,
        };
        result.map_err(|e| match e {
            BlobError::NotFound if secondary.is_some() => VsError::NotFound(format!(
                "Pack {id} has not reached the secondary region yet; wait for replication."
            )),
            BlobError::NotFound => VsError::NotFound(format!("Pack {id} is not in this vault.")),
            other => other.into(),
        })
    }

    /// Commits a recovery point with its retention: the item must be protected (not
    /// deleted) and every referenced chunk stored. One transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit(
        &self,
        vault: &Vault,
        container: &str,
        item: &str,
        name: &str,
        manifest: Bytes,
        chunks: &[String],
        now: i64,
        retention: &crate::retention::Retention,
    ) -> Result<()> {
        let item_state: Option<(String, Option<i64>)> = sqlx::query_as(
            "SELECT protection_state, deferred_delete_at FROM protected_items WHERE vault_id = ? AND container = ? AND name = ?",
        )
        .bind(vault.id)
        .bind(container)
        .bind(item)
        .fetch_optional(&self.pool)
        .await?;
        match item_state {
            None => {
                return Err(VsError::BadRequest(format!(
                    "Item '{item}' is not protected on server {container}; POST /backup/v1/items first."
                )));
            }
            Some((_, Some(_))) => {
                return Err(VsError::Conflict(format!(
                    "The backup data of item '{item}' was deleted (soft-deleted); undelete it before backing it up again."
                )));
            }
            Some(_) => {}
        }
        let missing = self.missing(vault.id, chunks).await?;
        if !missing.is_empty() {
            return Err(VsError::ChunksNotStored(format!(
                "The recovery point references {} chunk(s) the vault does not hold (first: {}); upload their packs first.",
                missing.len(),
                missing[0]
            )));
        }
        self.blobs
            .put(&manifest_path(vault.id, name), manifest.clone())
            .await?;
        // The referenced ids, 32 bytes each, for retention and garbage collection.
        let mut references = Vec::with_capacity(chunks.len() * 32);
        for chunk in chunks {
            let id = blake3::Hash::from_hex(chunk)
                .map_err(|_| VsError::BadRequest(format!("'{chunk}' is not a chunk id.")))?;
            references.extend_from_slice(id.as_bytes());
        }
        let references_path = ObjectPath::from(format!("manifests/{}/{name}.chunks", vault.id));
        self.blobs
            .put(&references_path, Bytes::from(references))
            .await?;
        // Every object this point needs was queued for the paired region at or before this.
        let mark = self.blobs.mark().await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO recovery_points (vault_id, container, item, name, created_at, expires_at, manifest_size, chunk_count, rule_name, replication_mark) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(vault.id)
        .bind(container)
        .bind(item)
        .bind(name)
        .bind(now)
        .bind(retention.expires)
        .bind(manifest.len() as i64)
        .bind(chunks.len() as i64)
        .bind(retention.rule())
        .bind(mark)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE protected_items SET protection_state = 'Protected', last_backup_status = 'Completed', last_backup_time = ? \
             WHERE vault_id = ? AND container = ? AND name = ?",
        )
        .bind(now)
        .bind(vault.id)
        .bind(container)
        .bind(item)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Recovery points of a container (all its items), newest first; with `secondary`,
    /// only those whose every object has reached the paired region.
    pub async fn recovery_points(
        &self,
        vault_id: i64,
        container: &str,
        secondary: bool,
    ) -> Result<Vec<RecoveryPoint>> {
        let below = match secondary {
            true => self.blobs.first_pending(vault_id).await?,
            false => i64::MAX,
        };
        let rows: Vec<PointRow> = sqlx::query_as(
            "SELECT r.name, r.item, p.friendly_name, r.created_at, r.expires_at, r.chunk_count, r.rule_name FROM recovery_points r \
             JOIN protected_items p ON p.vault_id = r.vault_id AND p.container = r.container AND p.name = r.item \
             WHERE r.vault_id = ? AND r.container = ? AND r.replication_mark < ? ORDER BY r.created_at DESC, r.rowid DESC",
        )
        .bind(vault_id)
        .bind(container)
        .bind(below)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(name, item, path, created, expires, chunks, rule)| RecoveryPoint {
                    name,
                    item,
                    path,
                    created,
                    expires,
                    chunks,
                    tags: rule
                        .split(',')
                        .filter(|t| !t.is_empty())
                        .map(str::to_string)
                        .collect(),
                },
            )
            .collect())
    }

    /// `secondary`: the paired region's copy (cross-region restore).
    pub async fn manifest(
        &self,
        vault_id: i64,
        container: &str,
        name: &str,
        secondary: Option<&Placement>,
    ) -> Result<Bytes> {
        let known: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM recovery_points WHERE vault_id = ? AND container = ? AND name = ?",
        )
        .bind(vault_id)
        .bind(container)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        if known.is_none() {
            return Err(VsError::NotFound(format!(
                "Recovery point {name} of server {container} was not found."
            )));
        }
        let path = manifest_path(vault_id, name);
        let result = match secondary {
            Some(placement) => self.blobs.get_secondary(placement, &path, None).await,
            None => self.blobs.get(&path, None).await,
        };
        result.map_err(|e| match e {
            BlobError::NotFound => VsError::NotFound(format!(
                "Recovery point {name} of server {container} is not in {} yet.",
                if secondary.is_some() {
                    "the secondary region"
                } else {
                    "storage"
                }
            )),
            other => other.into(),
        })
    }

    /// Starts a job; returns its id.
    pub async fn start_job(
        &self,
        vault_id: i64,
        container: &str,
        operation: &str,
        entity: &str,
        now: i64,
    ) -> Result<String> {
        let id = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO jobs (vault_id, id, seq, operation, status, entity_name, server_name, start_time, details) \
             VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs), ?, 'InProgress', ?, ?, ?, '{}')",
        )
        .bind(vault_id)
        .bind(&id)
        .bind(operation)
        .bind(entity)
        .bind(container)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// Ends a job of `server` (another server's job is not found, whatever its id).
    pub async fn finish_job(
        &self,
        vault_id: i64,
        server: &str,
        id: &str,
        status: &str,
        details: &Value,
        now: i64,
    ) -> Result<()> {
        let updated = sqlx::query(
            "UPDATE jobs SET status = ?, end_time = ?, details = ? WHERE vault_id = ? AND server_name = ? AND id = ?",
        )
        .bind(status)
        .bind(now)
        .bind(details.to_string())
        .bind(vault_id)
        .bind(server)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(VsError::NotFound(format!("Job {id} was not found.")));
        }
        Ok(())
    }

    /// Marks abandoned jobs Failed: with `server`, every InProgress backup of that server (it
    /// is starting a new one, so the old agent is gone); always, any job InProgress for
    /// longer than [`JOB_TIMEOUT`] on the simulated clock.
    pub async fn fail_abandoned_jobs(
        &self,
        vault_id: i64,
        server: Option<&str>,
        now: i64,
    ) -> Result<()> {
        let interrupted = json!({"errorDetails": [{
            "errorString": "The backup was interrupted: the agent stopped before it finished (the server started its next backup).",
            "recommendations": ["Run the backup again; data already uploaded is not sent twice."],
        }]});
        let timed_out = json!({"errorDetails": [{
            "errorString": "The job timed out: the agent stopped reporting progress.",
            "recommendations": ["Check that the agent is running and can reach the vault, then run it again."],
        }]});
        let mut tx = self.pool.begin().await?;
        if let Some(server) = server {
            sqlx::query(
                "UPDATE jobs SET status = 'Failed', end_time = ?, details = ? \
                 WHERE vault_id = ? AND server_name = ? AND operation = 'Backup' AND status = 'InProgress'",
            )
            .bind(now)
            .bind(interrupted.to_string())
            .bind(vault_id)
            .bind(server)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE jobs SET status = 'Failed', end_time = ?, details = ? \
             WHERE vault_id = ? AND status = 'InProgress' AND start_time < ?",
        )
        .bind(now)
        .bind(timed_out.to_string())
        .bind(vault_id)
        .bind(now - JOB_TIMEOUT)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn jobs(&self, vault_id: i64, container: &str) -> Result<Vec<Job>> {
        let rows: Vec<JobRow> = sqlx::query_as(
            "SELECT id, operation, status, entity_name, start_time, end_time, details FROM jobs WHERE vault_id = ? AND server_name = ? ORDER BY seq DESC",
        )
        .bind(vault_id)
        .bind(container)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, operation, status, entity, start, end, details)| Job {
                id,
                operation,
                status,
                entity,
                start,
                end,
                details: serde_json::from_str::<Value>(&details).unwrap_or(Value::Null),
            })
            .collect())
    }
}

/// name, item, path, created, expires, chunk count, retention tags.
type PointRow = (String, String, String, i64, Option<i64>, i64, String);

/// chunk id, and its pack, offset and length when the vault holds it.
type LocatedRow = (String, Option<String>, Option<i64>, Option<i64>);

/// id, operation, status, entity, start, end, details.
type JobRow = (String, String, String, String, i64, Option<i64>, String);
