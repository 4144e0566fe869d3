//! Garbage collection without the key. The server never decrypts, but it knows which chunk
//! ids every recovery point references (`manifests/{vault}/{rp}.chunks`) and where every
//! chunk lies. A chunk no recovery point references (live or soft-deleted) is garbage:
//! packs holding only garbage are deleted; packs more than half garbage are repacked by
//! copying their still-live sealed chunks, unchanged, into a new pack.
//!
//! Crash safety: a new pack's object is written before its rows, and the chunk index moves
//! to it in one transaction that also drops the old pack's rows; objects are deleted only
//! after the rows that point at them are gone. A crash at any step leaves every live chunk
//! reachable; what it can leave is an object no row names, which the next run deletes.
//! Collection is skipped while a backup of the vault is in progress (its uploaded chunks
//! are not referenced by any recovery point yet).

use std::collections::{HashMap, HashSet};

use crate::blobs::{BlobError, Blobs};
use object_store::path::Path as ObjectPath;
use serde::Serialize;
use sqlx::SqlitePool;

use backup_protocol::PackBuilder;

use crate::dataplane::pack_path;
use crate::error::{Result, VsError};

/// A pack is repacked when more than this share of its bytes is garbage.
const REPACK_GARBAGE_SHARE: f64 = 0.5;

/// What one collection did.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Collected {
    pub skipped_backup_in_progress: bool,
    pub packs_deleted: u64,
    pub packs_repacked: u64,
    pub orphans_deleted: u64,
    pub stored_bytes_before: u64,
    pub stored_bytes_after: u64,
}

/// Chunk ids the vault's recovery points reference (hex).
async fn live_chunks(
    pool: &SqlitePool,
    store: &Blobs,
    vault_id: i64,
) -> Result<Option<HashSet<String>>> {
    let points: Vec<String> =
        sqlx::query_scalar("SELECT name FROM recovery_points WHERE vault_id = ?")
            .bind(vault_id)
            .fetch_all(pool)
            .await?;
    let mut live = HashSet::new();
    for point in points {
        let path = ObjectPath::from(format!("manifests/{vault_id}/{point}.chunks"));
        let bytes = match store.get(&path, None).await {
            Ok(bytes) => bytes,
            // Without a point's references nothing can be called garbage.
            Err(BlobError::NotFound) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        for id in bytes.chunks_exact(32) {
            let id: [u8; 32] = id.try_into().expect("32 bytes");
            live.insert(blake3::Hash::from_bytes(id).to_hex().to_string());
        }
    }
    Ok(Some(live))
}

/// Collects one vault's garbage.
pub async fn collect(pool: &SqlitePool, store: &Blobs, vault_id: i64) -> Result<Collected> {
    let mut report = Collected::default();
    let busy: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs WHERE vault_id = ? AND operation = 'Backup' AND status = 'InProgress'",
    )
    .bind(vault_id)
    .fetch_one(pool)
    .await?;
    if busy > 0 {
        report.skipped_backup_in_progress = true;
        return Ok(report);
    }
    let Some(live) = live_chunks(pool, store, vault_id).await? else {
        return Ok(report);
    };
    let packs: Vec<(String, i64)> =
        sqlx::query_as("SELECT id, size FROM packs WHERE vault_id = ? ORDER BY id")
            .bind(vault_id)
            .fetch_all(pool)
            .await?;
    report.stored_bytes_before = packs.iter().map(|(_, size)| *size as u64).sum();
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT lower(hex(c.id)), p.id, c.offset, c.length FROM chunks c JOIN packs p ON p.number = c.pack \
         WHERE c.vault_id = ?",
    )
    .bind(vault_id)
    .fetch_all(pool)
    .await?;
    let mut by_pack: HashMap<String, Vec<(String, u64, u64, bool)>> = HashMap::new();
    for (id, pack, offset, length) in rows {
        let is_live = live.contains(&id);
        by_pack
            .entry(pack)
            .or_default()
            .push((id, offset as u64, length as u64, is_live));
    }
    for (pack, size) in &packs {
        let chunks = by_pack.remove(pack).unwrap_or_default();
        let live_bytes: u64 = chunks.iter().filter(|c| c.3).map(|c| c.2).sum();
        let dead_bytes: u64 = chunks.iter().filter(|c| !c.3).map(|c| c.2).sum();
        if live_bytes == 0 {
            delete_pack(pool, store, vault_id, pack).await?;
            report.packs_deleted += 1;
        } else if dead_bytes as f64 > REPACK_GARBAGE_SHARE * *size as f64 {
            let live: Vec<_> = chunks.into_iter().filter(|c| c.3).collect();
            repack(pool, store, vault_id, pack, &live).await?;
            report.packs_repacked += 1;
        }
    }
    report.orphans_deleted = delete_orphans(pool, store, vault_id).await?;
    let after: Option<i64> = sqlx::query_scalar("SELECT SUM(size) FROM packs WHERE vault_id = ?")
        .bind(vault_id)
        .fetch_one(pool)
        .await?;
    report.stored_bytes_after = after.unwrap_or(0) as u64;
    Ok(report)
}

async fn delete_pack(pool: &SqlitePool, store: &Blobs, vault_id: i64, pack: &str) -> Result<()> {
    // Rows first (its chunk rows go with it), then the object.
    sqlx::query("DELETE FROM packs WHERE vault_id = ? AND id = ?")
        .bind(vault_id)
        .bind(pack)
        .execute(pool)
        .await?;
    Ok(store.delete(&pack_path(vault_id, pack)).await?)
}

/// Copies the live sealed chunks of `old` into a new pack and moves the index to it.
async fn repack(
    pool: &SqlitePool,
    store: &Blobs,
    vault_id: i64,
    old: &str,
    live: &[(String, u64, u64, bool)],
) -> Result<()> {
    let bytes = store.get(&pack_path(vault_id, old), None).await?;
    let mut builder = PackBuilder::default();
    for (id, offset, length, _) in live {
        let (start, end) = (*offset as usize, (*offset + *length) as usize);
        if end > bytes.len() {
            return Err(VsError::Upstream(format!(
                "pack {old} is shorter than its index; it was not repacked"
            )));
        }
        builder.add(id.clone(), bytes.slice(start..end));
    }
    let (new, body) = builder.finish();
    let index = backup_protocol::parse_index(&body).expect("a pack just built parses");
    let size = body.len() as i64;
    store
        .put(&pack_path(vault_id, &new), bytes::Bytes::from(body))
        .await?;
    let now: i64 =
        sqlx::query_scalar("SELECT uploaded_at FROM packs WHERE vault_id = ? AND id = ?")
            .bind(vault_id)
            .bind(old)
            .fetch_optional(pool)
            .await?
            .unwrap_or(0);
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO packs (vault_id, id, size, uploaded_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(vault_id)
    .bind(&new)
    .bind(size)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for entry in &index {
        sqlx::query(
            "UPDATE chunks SET pack = (SELECT number FROM packs WHERE vault_id = ?1 AND id = ?2), offset = ?3 \
             WHERE vault_id = ?1 AND id = unhex(?4)",
        )
            .bind(vault_id)
            .bind(&new)
            .bind(entry.offset as i64)
            .bind(&entry.id)
            .execute(&mut *tx)
            .await?;
    }
    // The garbage chunk rows still name the old pack and go with it.
    sqlx::query("DELETE FROM packs WHERE vault_id = ? AND id = ?")
        .bind(vault_id)
        .bind(old)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(store.delete(&pack_path(vault_id, old)).await?)
}

/// Pack objects no row names (left by a crash between writing an object and its rows).
async fn delete_orphans(pool: &SqlitePool, store: &Blobs, vault_id: i64) -> Result<u64> {
    let known: HashSet<String> =
        sqlx::query_scalar::<_, String>("SELECT id FROM packs WHERE vault_id = ?")
            .bind(vault_id)
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    let prefix = ObjectPath::from(format!("packs/{vault_id}"));
    let objects = store.list(&prefix).await?;
    // An upload writes its object just before its rows: only objects older than any upload
    // can be orphans.
    let settled = chrono::Utc::now() - chrono::TimeDelta::minutes(10);
    let mut deleted = 0;
    for object in objects {
        let Some(id) = object.location.filename() else {
            continue;
        };
        if !known.contains(id) && object.last_modified < settled {
            store.delete(&object.location).await?;
            deleted += 1;
        }
    }
    Ok(deleted)
}
