//! The replication outbox at the level of the stores: a copy queued before its write and
//! interrupted at any point is settled at the next start (written → copied; never written →
//! dropped), deletes reach the paired region too, and an outage holds copies back.

mod common;

use bytes::Bytes;
use common::*;
use object_store::path::Path as ObjectPath;
use vault_server::blobs::{Backend, BlobError, Blobs};

/// Replicates until nothing is pending (the server's own replicator may take rows too).
async fn drain(blobs: &Blobs, vault_id: i64) {
    for _ in 0..100 {
        blobs.replicate(10).await.unwrap();
        if blobs.pending(vault_id).await.unwrap().objects == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("replication did not drain");
}

#[tokio::test]
async fn copies_deletes_and_outages_of_a_geo_redundant_vault() {
    let t = start().await;
    t.group("rg1").await;
    t.vault("rg1", "geo", minimal_vault()).await;
    let state = t.state();
    let vault = state.vaults.get(SUB, "rg1", "geo").await.unwrap();
    let blobs = &state.blobs;
    let placement = blobs.placement(vault.id).await.unwrap().unwrap();
    assert_eq!(placement.secondary.as_deref(), Some("northeurope"));

    // Held back while the paired region is down; copied when it returns.
    blobs.set_outage("North Europe", true).await.unwrap();
    let path = ObjectPath::from(format!("packs/{}/ab/abcd", vault.id));
    blobs.put(&path, Bytes::from_static(b"pack")).await.unwrap();
    assert_eq!(blobs.replicate(10).await.unwrap(), 0);
    assert_eq!(blobs.pending(vault.id).await.unwrap().objects, 1);
    assert!(matches!(
        blobs.get_secondary(&placement, &path, None).await,
        Err(BlobError::RegionUnavailable(_))
    ));
    blobs.set_outage("northeurope", false).await.unwrap();
    drain(blobs, vault.id).await;
    assert_eq!(
        &blobs.get_secondary(&placement, &path, None).await.unwrap()[..],
        b"pack"
    );

    // A delete reaches the secondary too.
    blobs.delete(&path).await.unwrap();
    drain(blobs, vault.id).await;
    assert!(matches!(
        blobs.get_secondary(&placement, &path, None).await,
        Err(BlobError::NotFound)
    ));

    // The primary region down: nothing is written there.
    blobs.set_outage("westeurope", true).await.unwrap();
    assert!(matches!(
        blobs.put(&path, Bytes::from_static(b"x")).await,
        Err(BlobError::RegionUnavailable(r)) if r == "westeurope"
    ));
    blobs.set_outage("westeurope", false).await.unwrap();
}

#[tokio::test]
async fn interrupted_writes_are_settled_at_the_next_start() {
    let t = start().await;
    t.group("rg1").await;
    t.vault("rg1", "geo", minimal_vault()).await;
    let state = t.state();
    let vault = state.vaults.get(SUB, "rg1", "geo").await.unwrap();
    let (pool, clock) = (state.pool.clone(), state.clock.clone());
    // The server (and its own replicator) stops: only the stores opened here touch the queue.
    t.kit.shutdown().await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Blobs::open(
            pool.clone(),
            clock.clone(),
            Backend::Local(dir.path().into()),
        )
    };
    let blobs = open().await.unwrap();

    // Two crashes between queueing and marking ready: one after the primary write, one
    // before it.
    let written = ObjectPath::from(format!("packs/{}/aa/written", vault.id));
    let never = ObjectPath::from(format!("packs/{}/bb/never", vault.id));
    std::fs::create_dir_all(dir.path().join(format!("blobs/packs/{}/aa", vault.id))).unwrap();
    std::fs::write(dir.path().join(format!("blobs/{written}")), b"whole").unwrap();
    for path in [&written, &never] {
        sqlx::query(
            "INSERT INTO replication_queue (vault_id, path, target, op, state, size, enqueued_at) \
             VALUES (?, ?, 'region/northeurope', 'put', 'writing', 5, 0)",
        )
        .bind(vault.id)
        .bind(path.as_ref())
        .execute(&pool)
        .await
        .unwrap();
    }
    drop(blobs);
    let blobs = open().await.unwrap();
    assert_eq!(
        blobs.pending(vault.id).await.unwrap().objects,
        1,
        "the unwritten one is dropped"
    );
    assert_eq!(blobs.replicate(10).await.unwrap(), 1);
    let copied = dir.path().join(format!("regions/northeurope/{written}"));
    assert_eq!(std::fs::read(copied).unwrap(), b"whole");
}

#[tokio::test]
async fn staging_files_of_interrupted_writes_are_removed_at_the_next_start() {
    let t = start().await;
    t.group("rg1").await;
    t.vault("rg1", "local", minimal_vault()).await;
    let state = t.state();
    let vault = state.vaults.get(SUB, "rg1", "local").await.unwrap();
    let (pool, clock) = (state.pool.clone(), state.clock.clone());
    t.kit.shutdown().await;
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Blobs::open(
            pool.clone(),
            clock.clone(),
            Backend::Local(dir.path().into()),
        )
    };
    let blobs = open().await.unwrap();
    let kept = ObjectPath::from(format!("packs/{}/ab/abcd", vault.id));
    blobs.put(&kept, Bytes::from_static(b"pack")).await.unwrap();
    drop(blobs);
    // What a kill between object_store's staging write and its rename leaves, in the
    // primary and in a zone's store.
    let staged = [
        dir.path().join(format!("blobs/{kept}#3")),
        dir.path()
            .join(format!("blobs/packs/{}/cd/cdef#12", vault.id)),
        dir.path().join(format!("zones/westeurope/2/{kept}#1")),
    ];
    for path in &staged {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"half a pa").unwrap();
    }
    let blobs = open().await.unwrap();
    for path in &staged {
        assert!(!path.exists(), "{} is left", path.display());
    }
    assert_eq!(
        blobs.get(&kept, None).await.unwrap(),
        Bytes::from_static(b"pack")
    );
}
