//! A data directory written by an earlier version keeps working: the migrations that came
//! later convert what it holds (here: chunk ids from 64 hex characters to their 32 bytes,
//! and packs named by number in chunk rows).

use sim_core::SimClock;
use sim_core::db::Storage;
use sqlx::migrate::Migrator;
use vault_server::blobs::{Backend, Blobs};
use vault_server::dataplane::DataPlane;

/// The vault-server migrations up to (not including) `version`.
fn migrations_before(version: i64) -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    let earlier: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version < version)
        .cloned()
        .collect();
    migrator.migrations = earlier.into();
    migrator
}

#[tokio::test]
async fn chunk_ids_stored_as_hex_become_bytes_and_are_still_found() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::Disk(dir.path().to_path_buf());
    let chunk = "0123456789abcdef".repeat(4);
    let pack = "f".repeat(64);

    // The database as version 0004 left it, with one pack and its chunk.
    let old = sim_core::db::open(&storage, "vault-server", &migrations_before(5))
        .await
        .unwrap();
    let mut connection = old.acquire().await.unwrap();
    sqlx::query("PRAGMA foreign_keys = OFF")
        .execute(&mut *connection)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO vaults (id, resource_number, subscription_id, resource_group, name, location, tags, sku, properties, etag, created_at, created_by, updated_at, updated_by) \
         VALUES (7, 7, 'sub', 'rg', 'v', 'westeurope', '{}', '{}', '{}', 'e', 1, 'test', 1, 'test')",
    )
    .execute(&mut *connection)
    .await
    .unwrap();
    sqlx::query("INSERT INTO packs (vault_id, id, size, uploaded_at) VALUES (7, ?, 100, 1)")
        .bind(&pack)
        .execute(&mut *connection)
        .await
        .unwrap();
    sqlx::query("INSERT INTO chunks (vault_id, id, pack, offset, length) VALUES (7, ?, ?, 10, 20)")
        .bind(&chunk)
        .bind(&pack)
        .execute(&mut *connection)
        .await
        .unwrap();
    drop(connection);
    old.close().await;

    // Opened by this version: every migration runs, the row is converted.
    let pool = sim_core::db::open(&storage, "vault-server", &sqlx::migrate!("./migrations"))
        .await
        .unwrap();
    let (kind, hex): (String, String) =
        sqlx::query_as("SELECT typeof(id), lower(hex(id)) FROM chunks")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((kind.as_str(), hex.as_str()), ("blob", chunk.as_str()));
    let pack_kind: String = sqlx::query_scalar("SELECT typeof(pack) FROM chunks")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(pack_kind, "integer", "a chunk names its pack by number");

    let blobs = Blobs::open(pool.clone(), SimClock::in_memory(), Backend::Memory)
        .await
        .unwrap();
    let data = DataPlane::new(pool, blobs);
    let located = data.locate(7, std::slice::from_ref(&chunk)).await.unwrap();
    assert_eq!(
        (
            located[0].pack.as_str(),
            located[0].offset,
            located[0].length
        ),
        (pack.as_str(), 10, 20)
    );
    assert!(
        data.missing(7, std::slice::from_ref(&chunk))
            .await
            .unwrap()
            .is_empty(),
        "the converted chunk is known"
    );
    assert_eq!(
        data.missing(7, &["a".repeat(64)]).await.unwrap(),
        vec!["a".repeat(64)]
    );
}
