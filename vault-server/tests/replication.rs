//! The replication outbox at the level of the stores: a copy queued before its write and
//! interrupted at any point is settled at the next start (written → copied; never written →
//! dropped), deletes reach the paired region too, and an outage holds copies back.

mod common;

use bytes::Bytes;
use common::*;
use object_store::path::Path as ObjectPath;
use vault_server::blobs::{Backend, BlobError, Blobs};

/// Local stores in a fresh directory over the database of a server that had vault `name`
/// and then stopped (with its replicator): only the stores opened here touch the queue, and
/// opening them again is what a restart does.
struct Restarted {
    vault_id: i64,
    pool: sqlx::SqlitePool,
    clock: sim_core::clock::SimClock,
    dir: tempfile::TempDir,
}

impl Restarted {
    async fn after_a_server_with(name: &str) -> Restarted {
        let t = start().await;
        t.group("rg1").await;
        t.vault("rg1", name, minimal_vault()).await;
        let state = t.state();
        let vault = state.vaults.get(SUB, "rg1", name).await.unwrap();
        let (pool, clock) = (state.pool.clone(), state.clock.clone());
        t.kit.shutdown().await;
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        Restarted {
            vault_id: vault.id,
            pool,
            clock,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn open(&self) -> std::sync::Arc<Blobs> {
        Blobs::open(
            self.pool.clone(),
            self.clock.clone(),
            Backend::Local(self.dir.path().into()),
        )
        .await
        .unwrap()
    }
}

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
    let restarted = Restarted::after_a_server_with("geo").await;
    let (vault_id, pool, dir) = (restarted.vault_id, &restarted.pool, restarted.dir.path());
    let blobs = restarted.open().await;

    // Two crashes between queueing and marking ready: one after the primary write, one
    // before it.
    let written = ObjectPath::from(format!("packs/{}/aa/written", vault_id));
    let never = ObjectPath::from(format!("packs/{}/bb/never", vault_id));
    std::fs::create_dir_all(dir.join(format!("blobs/packs/{}/aa", vault_id))).unwrap();
    std::fs::write(dir.join(format!("blobs/{written}")), b"whole").unwrap();
    for path in [&written, &never] {
        sqlx::query(
            "INSERT INTO replication_queue (vault_id, path, target, op, state, size, enqueued_at) \
             VALUES (?, ?, 'region/northeurope', 'put', 'writing', 5, 0)",
        )
        .bind(vault_id)
        .bind(path.as_ref())
        .execute(pool)
        .await
        .unwrap();
    }
    drop(blobs);
    let blobs = restarted.open().await;
    assert_eq!(
        blobs.pending(vault_id).await.unwrap().objects,
        1,
        "the unwritten one is dropped"
    );
    assert_eq!(blobs.replicate(10).await.unwrap(), 1);
    let copied = dir.join(format!("regions/northeurope/{written}"));
    assert_eq!(std::fs::read(copied).unwrap(), b"whole");
}

#[tokio::test]
async fn staging_files_of_interrupted_writes_are_removed_at_the_next_start() {
    let restarted = Restarted::after_a_server_with("local").await;
    let (vault_id, dir) = (restarted.vault_id, restarted.dir.path());
    let blobs = restarted.open().await;
    let kept = ObjectPath::from(format!("packs/{}/ab/abcd", vault_id));
    blobs.put(&kept, Bytes::from_static(b"pack")).await.unwrap();
    drop(blobs);
    // What a kill between object_store's staging write and its rename leaves, in the
    // primary and in a zone's store.
    let staged = [
        dir.join(format!("blobs/{kept}#3")),
        dir.join(format!("blobs/packs/{}/cd/cdef#12", vault_id)),
        dir.join(format!("zones/westeurope/2/{kept}#1")),
    ];
    for path in &staged {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"half a pa").unwrap();
    }
    let blobs = restarted.open().await;
    for path in &staged {
        assert!(!path.exists(), "{} is left", path.display());
    }
    assert_eq!(
        blobs.get(&kept, None).await.unwrap(),
        Bytes::from_static(b"pack")
    );
}
