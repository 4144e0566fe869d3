//! Where backup data lives, and what a vault's storage redundancy does to it.
//!
//! Every object path starts `packs/{vault}/…` or `manifests/{vault}/…`, so the vault — its
//! region (`location`) and `standardTierStorageRedundancy` — is known for each write:
//! - the **primary** store holds every object (zone 1 of the vault's region);
//! - **ZRS**: zones 2 and 3 of the region are written before a write returns (synchronous,
//!   as zone-redundant storage is); a read that misses in one zone is served by the next;
//! - **GRS**: the paired region's store receives a copy asynchronously, through the
//!   replication queue (`replication_queue`, an outbox in SQLite). A queue row is committed
//!   *before* the primary write, as `writing`, and turned `ready` after it: a crash leaves
//!   at worst a `writing` row, settled at the next start by looking at the primary. The
//!   replicator copies `ready` rows in order and deletes them; nothing is ever lost from
//!   the secondary, however often the process dies;
//! - **LRS**: the primary copy only.
//!
//! A region can be put in a simulated outage (`region_outages`): nothing is written to or
//! read from its stores until it is restored — the data plane answers 503 for vaults whose
//! primary region is down, and replication into it waits.
//!
//! Stores are named `primary`, `zone/{region}/{n}` and `region/{region}`; a [`Backend`] makes
//! them: local directories (`<data>/blobs` for the primary, as before regions existed,
//! `<data>/zones/…` and `<data>/regions/…`), memory, or one Azure Blob Storage container each.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use sim_core::clock::SimClock;
use sqlx::SqlitePool;

use crate::error::VsError;

/// Why a blob operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the object does not exist")]
    NotFound,
    #[error(
        "The region {0} is unavailable (a simulated regional outage); its storage can be neither read nor written until it is restored."
    )]
    RegionUnavailable(String),
    #[error("blob storage failed: {0}")]
    Store(#[from] object_store::Error),
    #[error("blob storage bookkeeping failed: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<BlobError> for VsError {
    fn from(error: BlobError) -> Self {
        match error {
            BlobError::NotFound => VsError::NotFound("The object is not in this vault.".into()),
            BlobError::RegionUnavailable(region) => VsError::RegionUnavailable(region),
            other => VsError::Upstream(other.to_string()),
        }
    }
}

/// The directories under `<data>` that hold local stores (see [`local_root`]).
const LOCAL_STORE_DIRS: [&str; 3] = ["blobs", "zones", "regions"];

/// The directory of a local store: `<data>/blobs` for the primary (as before regions
/// existed), `<data>/zones/…` and `<data>/regions/…` for the others.
fn local_root(dir: &std::path::Path, name: &str) -> PathBuf {
    match name {
        "primary" => dir.join("blobs"),
        other => dir.join(other.replacen('/', "s/", 1)),
    }
}

fn not_found(error: object_store::Error) -> BlobError {
    match error {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        other => BlobError::Store(other),
    }
}

/// Azure Blob Storage (or Azurite) as the backend: one container per store.
#[derive(Clone)]
pub struct AzureBlobs {
    /// `http://127.0.0.1:10000/devstoreaccount1` (Azurite, path style) or
    /// `https://{account}.blob.core.windows.net`.
    pub endpoint: String,
    pub account: String,
    pub key: String,
    /// Container names start with it: `{prefix}-primary`, `{prefix}-northeurope`, …
    pub container_prefix: String,
}

/// Never prints the account key.
impl std::fmt::Debug for AzureBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureBlobs")
            .field("endpoint", &self.endpoint)
            .field("account", &self.account)
            .field("key", &"<redacted>")
            .field("container_prefix", &self.container_prefix)
            .finish()
    }
}

/// Azurite's documented development account key.
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl AzureBlobs {
    /// Reads `--blob-url`: the account is the first path segment of a path-style URL
    /// (Azurite) or the first label of `{account}.blob.core.windows.net`.
    pub fn from_url(url: &str, key: Option<String>, prefix: &str) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("--blob-url '{url}': {e}"))?;
        let host = parsed.host_str().unwrap_or_default().to_string();
        let first_segment = parsed
            .path_segments()
            .and_then(|mut s| s.next())
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let account = match first_segment {
            Some(account) => account,
            None => host
                .split('.')
                .next()
                .filter(|_| host.contains(".blob."))
                .map(str::to_string)
                .ok_or_else(|| {
                    format!("--blob-url '{url}' names no account: use https://ACCOUNT.blob.core.windows.net or http://HOST:PORT/ACCOUNT")
                })?,
        };
        let key = match key {
            Some(key) => key,
            None if account == "devstoreaccount1" => AZURITE_KEY.to_string(),
            None => {
                return Err(format!(
                    "--blob-key is needed for storage account '{account}'"
                ));
            }
        };
        let valid_prefix = (1..=40).contains(&prefix.len())
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid_prefix {
            return Err(format!(
                "--blob-container-prefix '{prefix}' must be 1-40 lower-case letters, digits or hyphens"
            ));
        }
        Ok(AzureBlobs {
            endpoint: url.trim_end_matches('/').to_string(),
            account,
            key,
            container_prefix: prefix.to_string(),
        })
    }

    fn container(&self, store: &str) -> String {
        format!("{}-{}", self.container_prefix, store.replace('/', "-"))
    }
}

/// The flags that put backup data in Azure Blob Storage (vault-server, `azsim up`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct BlobArgs {
    /// Keep backup data in Azure Blob Storage at this account URL instead of the data
    /// directory: `http://127.0.0.1:10000/devstoreaccount1` (Azurite) or
    /// `https://ACCOUNT.blob.core.windows.net`. Containers are created when missing.
    #[arg(long, env = "AZSIM_BLOB_URL")]
    pub blob_url: Option<String>,
    /// The storage account key (default: Azurite's documented key for devstoreaccount1).
    #[arg(long, env = "AZSIM_BLOB_KEY", hide_env_values = true)]
    pub blob_key: Option<String>,
    /// Container names start with this (`PREFIX-primary`, `PREFIX-region-northeurope`, …).
    #[arg(long, env = "AZSIM_BLOB_CONTAINER_PREFIX", default_value = "azsim")]
    pub blob_container_prefix: String,
}

impl BlobArgs {
    pub fn azure(&self) -> Result<Option<AzureBlobs>, String> {
        self.blob_url
            .as_deref()
            .map(|url| {
                AzureBlobs::from_url(url, self.blob_key.clone(), &self.blob_container_prefix)
            })
            .transpose()
    }
}

#[derive(Clone, Debug)]
pub enum Backend {
    Memory,
    Local(PathBuf),
    Azure(AzureBlobs),
}

/// How a vault's data is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redundancy {
    Local,
    Zone,
    Geo,
}

impl Redundancy {
    pub fn parse(setting: &str) -> Redundancy {
        match setting {
            "LocallyRedundant" => Redundancy::Local,
            "ZoneRedundant" => Redundancy::Zone,
            _ => Redundancy::Geo,
        }
    }
}

/// Where one vault's objects go.
#[derive(Clone, Debug)]
pub struct Placement {
    pub vault_id: i64,
    pub region: String,
    pub redundancy: Redundancy,
    /// The paired region (GRS copies).
    pub secondary: Option<String>,
}

/// Zones of a region besides the primary store (zone 1).
const EXTRA_ZONES: [u8; 2] = [2, 3];

pub struct Blobs {
    pool: SqlitePool,
    clock: SimClock,
    backend: Backend,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    outages: RwLock<HashSet<String>>,
    wake: tokio::sync::Notify,
}

/// `West Europe` → `westeurope` (as vaults may store their location either way).
fn canonical(location: &str) -> String {
    sim_core::arm::region(location)
        .map(str::to_string)
        .unwrap_or_else(|| location.to_ascii_lowercase())
}

/// The vault id of an object path (`packs/{vault}/…`, `manifests/{vault}/…`).
fn vault_of(path: &ObjectPath) -> Option<i64> {
    let mut parts = path.parts();
    parts.next()?;
    parts.next()?.as_ref().parse().ok()
}

impl Blobs {
    /// Opens the stores; `writing` queue rows a crash left are settled against the primary,
    /// and the staging files of local writes it cut short are removed.
    pub async fn open(
        pool: SqlitePool,
        clock: SimClock,
        backend: Backend,
    ) -> Result<Arc<Blobs>, BlobError> {
        let outages: Vec<String> = sqlx::query_scalar("SELECT region FROM region_outages")
            .fetch_all(&pool)
            .await?;
        let blobs = Arc::new(Blobs {
            pool,
            clock,
            backend,
            stores: Mutex::default(),
            outages: RwLock::new(outages.into_iter().collect()),
            wake: tokio::sync::Notify::new(),
        });
        if let Backend::Local(dir) = &blobs.backend {
            let roots: Vec<PathBuf> = LOCAL_STORE_DIRS.iter().map(|d| dir.join(d)).collect();
            // A walk of every stored object: off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || {
                for root in roots {
                    let removed = crate::local_files::remove_interrupted_writes(&root);
                    if removed > 0 {
                        tracing::info!(
                            "removed {removed} partial object(s) that interrupted writes left in {}",
                            root.display()
                        );
                    }
                }
            })
            .await;
        }
        // The primary at once: a wrong URL or key fails the start, not the first backup.
        blobs.store("primary").await?;
        blobs.settle_interrupted_writes().await?;
        Ok(blobs)
    }

    /// The store `name`, opened on first use: a directory or an Azure container is created
    /// then (object_store creates neither), so only the stores vaults use exist.
    async fn store(&self, name: &str) -> Result<Arc<dyn ObjectStore>, BlobError> {
        let known = self
            .stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned();
        if let Some(store) = known {
            return Ok(store);
        }
        let store: Arc<dyn ObjectStore> = match &self.backend {
            Backend::Memory => Arc::new(object_store::memory::InMemory::new()),
            Backend::Local(dir) => {
                let root = local_root(dir, name);
                std::fs::create_dir_all(&root).map_err(|e| {
                    BlobError::Store(object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: Box::new(e),
                    })
                })?;
                Arc::new(object_store::local::LocalFileSystem::new_with_prefix(
                    &root,
                )?)
            }
            Backend::Azure(azure) => {
                crate::azure_container::create(azure, &azure.container(name))
                    .await
                    .map_err(|e| {
                        BlobError::Store(object_store::Error::Generic {
                            store: "MicrosoftAzure",
                            source: e.into(),
                        })
                    })?;
                Arc::new(
                    object_store::azure::MicrosoftAzureBuilder::new()
                        .with_account(&azure.account)
                        .with_access_key(&azure.key)
                        .with_endpoint(azure.endpoint.clone())
                        .with_allow_http(azure.endpoint.starts_with("http://"))
                        .with_container_name(azure.container(name))
                        .build()?,
                )
            }
        };
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        Ok(stores.entry(name.to_string()).or_insert(store).clone())
    }

    /// The vault's region and redundancy (one indexed read: redundancy changes only before
    /// items exist, but it is never cached stale).
    pub async fn placement(&self, vault_id: i64) -> Result<Option<Placement>, BlobError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT location, properties FROM vaults WHERE id = ?")
                .bind(vault_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(region, properties)| {
            let properties = serde_json::from_str(&properties).unwrap_or_default();
            let setting = crate::settings::redundancy(&properties);
            let region = canonical(&region);
            Placement {
                vault_id,
                secondary: sim_core::arm::paired_region(&region).map(str::to_string),
                region,
                redundancy: Redundancy::parse(setting),
            }
        }))
    }

    async fn placement_of(&self, path: &ObjectPath) -> Result<Option<Placement>, BlobError> {
        match vault_of(path) {
            Some(vault_id) => self.placement(vault_id).await,
            None => Ok(None),
        }
    }

    pub fn is_down(&self, region: &str) -> bool {
        self.outages
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&canonical(region))
    }

    fn check_up(&self, region: &str) -> Result<(), BlobError> {
        match self.is_down(region) {
            true => Err(BlobError::RegionUnavailable(region.to_string())),
            false => Ok(()),
        }
    }

    /// Writes `bytes` at `path` in the primary (and the zones, for ZRS), queueing the copy to
    /// the paired region for GRS.
    /// `bytes`: one buffer, or the parts of one (a pack as it arrived), written without
    /// joining them.
    pub async fn put(
        &self,
        path: &ObjectPath,
        bytes: impl Into<PutPayload>,
    ) -> Result<(), BlobError> {
        let bytes: PutPayload = bytes.into();
        let placement = self.placement_of(path).await?;
        if let Some(p) = &placement {
            self.check_up(&p.region)?;
        }
        let queued = match &placement {
            Some(p) => self.enqueue(p, path, "put", bytes.content_length()).await?,
            None => None,
        };
        self.store("primary")
            .await?
            .put(path, bytes.clone())
            .await?;
        if let Some(p) = placement
            .as_ref()
            .filter(|p| p.redundancy == Redundancy::Zone)
        {
            for zone in EXTRA_ZONES {
                self.store(&format!("zone/{}/{zone}", p.region))
                    .await?
                    .put(path, bytes.clone())
                    .await?;
            }
        }
        self.mark_ready(queued).await
    }

    /// Deletes `path` everywhere it is kept (the paired region's copy through the queue).
    pub async fn delete(&self, path: &ObjectPath) -> Result<(), BlobError> {
        let placement = self.placement_of(path).await?;
        if let Some(p) = &placement {
            self.check_up(&p.region)?;
        }
        let queued = match &placement {
            Some(p) => self.enqueue(p, path, "delete", 0).await?,
            None => None,
        };
        let mut stores = vec!["primary".to_string()];
        if let Some(p) = placement
            .as_ref()
            .filter(|p| p.redundancy == Redundancy::Zone)
        {
            stores.extend(EXTRA_ZONES.iter().map(|z| format!("zone/{}/{z}", p.region)));
        }
        for name in stores {
            match self.store(&name).await?.delete(path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(other) => return Err(other.into()),
            }
        }
        self.mark_ready(queued).await
    }

    /// The stores a read may use, in order: the primary, then (ZRS) the other zones.
    async fn read_order(&self, path: &ObjectPath) -> Result<Vec<String>, BlobError> {
        let mut order = vec!["primary".to_string()];
        if let Some(p) = self.placement_of(path).await? {
            self.check_up(&p.region)?;
            if p.redundancy == Redundancy::Zone {
                order.extend(EXTRA_ZONES.iter().map(|z| format!("zone/{}/{z}", p.region)));
            }
        }
        Ok(order)
    }

    /// The whole object, or bytes `range` of it.
    pub async fn get(
        &self,
        path: &ObjectPath,
        range: Option<Range<u64>>,
    ) -> Result<Bytes, BlobError> {
        let mut last = BlobError::NotFound;
        for name in self.read_order(path).await? {
            // Ranges of local files are read without object_store (see `local_files`).
            if let (Backend::Local(dir), Some(range)) = (&self.backend, &range)
                && let Some(file) = crate::local_files::file_of(&local_root(dir, &name), path)
            {
                match crate::local_files::read(file, range.clone()).await {
                    Ok(bytes) => return Ok(bytes),
                    Err(error) => last = error,
                }
                continue;
            }
            let store = self.store(&name).await?;
            let result = match &range {
                Some(range) => store.get_range(path, range.clone()).await,
                None => match store.get(path).await {
                    Ok(object) => object.bytes().await,
                    Err(e) => Err(e),
                },
            };
            match result.map_err(not_found) {
                Ok(bytes) => return Ok(bytes),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    /// Every object under `prefix` in the primary store.
    pub async fn list(&self, prefix: &ObjectPath) -> Result<Vec<ObjectMeta>, BlobError> {
        use futures_util::TryStreamExt;
        Ok(self
            .store("primary")
            .await?
            .list(Some(prefix))
            .try_collect()
            .await?)
    }

    /// Reads from the vault's paired region (cross-region restore): only what replication
    /// has copied there.
    pub async fn get_secondary(
        &self,
        placement: &Placement,
        path: &ObjectPath,
        range: Option<Range<u64>>,
    ) -> Result<Bytes, BlobError> {
        let region = placement.secondary.as_deref().ok_or(BlobError::NotFound)?;
        self.check_up(region)?;
        let store = self.store(&format!("region/{region}")).await?;
        let result = match range {
            Some(range) => store.get_range(path, range).await,
            None => match store.get(path).await {
                Ok(object) => object.bytes().await,
                Err(e) => Err(e),
            },
        };
        result.map_err(not_found)
    }

    async fn enqueue(
        &self,
        placement: &Placement,
        path: &ObjectPath,
        op: &str,
        size: usize,
    ) -> Result<Option<i64>, BlobError> {
        let Some(secondary) = placement
            .secondary
            .as_ref()
            .filter(|_| placement.redundancy == Redundancy::Geo)
        else {
            return Ok(None);
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO replication_queue (vault_id, path, target, op, state, size, enqueued_at) \
             VALUES (?, ?, ?, ?, 'writing', ?, ?) RETURNING id",
        )
        .bind(placement.vault_id)
        .bind(path.as_ref())
        .bind(format!("region/{secondary}"))
        .bind(op)
        .bind(size as i64)
        .bind(self.clock.unix())
        .fetch_one(&self.pool)
        .await?;
        Ok(Some(id))
    }

    async fn mark_ready(&self, queued: Option<i64>) -> Result<(), BlobError> {
        if let Some(id) = queued {
            sqlx::query("UPDATE replication_queue SET state = 'ready' WHERE id = ?")
                .bind(id)
                .execute(&self.pool)
                .await?;
            self.wake.notify_one();
        }
        Ok(())
    }

    /// After a crash: a `writing` put whose object reached the primary is ready to copy; one
    /// whose object did not is dropped (its write never happened). A `writing` delete is
    /// replayed (deleting twice is harmless).
    async fn settle_interrupted_writes(&self) -> Result<(), BlobError> {
        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT id, path, op FROM replication_queue WHERE state = 'writing'")
                .fetch_all(&self.pool)
                .await?;
        for (id, path, op) in rows {
            let path = ObjectPath::from(path);
            let written = op == "delete"
                || match self.store("primary").await?.head(&path).await {
                    Ok(_) => true,
                    Err(object_store::Error::NotFound { .. }) => false,
                    Err(other) => return Err(other.into()),
                };
            let sql = match written {
                true => "UPDATE replication_queue SET state = 'ready' WHERE id = ?",
                false => "DELETE FROM replication_queue WHERE id = ?",
            };
            sqlx::query(sql).bind(id).execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Copies up to `limit` ready queue rows to their region, oldest first; returns how many
    /// were done. Rows for a region in outage wait.
    pub async fn replicate(&self, limit: i64) -> Result<usize, BlobError> {
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT id, path, target, op FROM replication_queue WHERE state = 'ready' ORDER BY id LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut done = 0;
        for (id, path, target, op) in rows {
            if self.is_down(target.trim_start_matches("region/")) {
                continue;
            }
            let path = ObjectPath::from(path);
            let target_store = self.store(&target).await?;
            match op.as_str() {
                "delete" => match target_store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(other) => return Err(other.into()),
                },
                _ => match self.store("primary").await?.get(&path).await {
                    Ok(object) => {
                        let bytes = object.bytes().await?;
                        target_store.put(&path, PutPayload::from(bytes)).await?;
                    }
                    // Deleted since: its delete is queued after this row.
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(other) => return Err(other.into()),
                },
            }
            sqlx::query("DELETE FROM replication_queue WHERE id = ?")
                .bind(id)
                .execute(&self.pool)
                .await?;
            done += 1;
        }
        Ok(done)
    }

    /// Runs replication while the server lives: woken by each queued write, and every
    /// second in case a region came back.
    pub fn spawn_replicator(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(blobs) = weak.upgrade() else { return };
                match blobs.replicate(64).await {
                    Ok(64) => continue,
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "replication paused"),
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), blobs.wake.notified()).await;
            }
        })
    }

    /// Replication still to do for a vault: objects, bytes, and the oldest's age in seconds
    /// (simulated clock).
    pub async fn pending(&self, vault_id: i64) -> Result<Pending, BlobError> {
        let (objects, bytes, oldest): (i64, Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), SUM(size), MIN(enqueued_at) FROM replication_queue WHERE vault_id = ?",
        )
        .bind(vault_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(Pending {
            objects,
            bytes: bytes.unwrap_or(0),
            lag_seconds: oldest.map_or(0, |t| (self.clock.unix() - t).max(0)),
        })
    }

    /// The newest queue position: a recovery point committed now is in the paired region
    /// once no queue row of its vault at or below this mark remains.
    pub async fn mark(&self) -> Result<i64, BlobError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM replication_queue")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The lowest queue row of a vault still to copy (`i64::MAX` when none).
    pub async fn first_pending(&self, vault_id: i64) -> Result<i64, BlobError> {
        let first: Option<i64> =
            sqlx::query_scalar("SELECT MIN(id) FROM replication_queue WHERE vault_id = ?")
                .bind(vault_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(first.unwrap_or(i64::MAX))
    }

    /// Starts or ends a simulated outage of `region`.
    pub async fn set_outage(&self, region: &str, down: bool) -> Result<(), BlobError> {
        let region = canonical(region);
        match down {
            true => {
                sqlx::query(
                    "INSERT INTO region_outages (region, since) VALUES (?, ?) ON CONFLICT DO NOTHING",
                )
                .bind(&region)
                .bind(self.clock.unix())
                .execute(&self.pool)
                .await?;
            }
            false => {
                sqlx::query("DELETE FROM region_outages WHERE region = ?")
                    .bind(&region)
                    .execute(&self.pool)
                    .await?;
            }
        }
        let mut outages = self.outages.write().unwrap_or_else(|p| p.into_inner());
        match down {
            true => outages.insert(region),
            false => outages.remove(&region),
        };
        drop(outages);
        self.wake.notify_one();
        Ok(())
    }

    /// Forgets every outage and queued copy (the admin reset: the vaults are gone too).
    pub async fn reset(&self) -> Result<(), BlobError> {
        sqlx::query("DELETE FROM replication_queue")
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM region_outages")
            .execute(&self.pool)
            .await?;
        self.outages
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
    }

    pub fn outages(&self) -> Vec<String> {
        let mut list: Vec<String> = self
            .outages
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        list.sort();
        list
    }
}

/// Replication a vault still waits for.
#[derive(Clone, Copy, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub objects: i64,
    pub bytes: i64,
    pub lag_seconds: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_ids_come_from_paths() {
        assert_eq!(vault_of(&ObjectPath::from("packs/12/ab/abcd")), Some(12));
        assert_eq!(vault_of(&ObjectPath::from("manifests/3/rp1")), Some(3));
        assert_eq!(vault_of(&ObjectPath::from("other")), None);
    }

    #[test]
    fn blob_urls_name_their_account() {
        let azurite =
            AzureBlobs::from_url("http://127.0.0.1:10000/devstoreaccount1", None, "azsim").unwrap();
        assert_eq!(azurite.account, "devstoreaccount1");
        assert_eq!(azurite.key, AZURITE_KEY);
        assert_eq!(
            azurite.container("region/northeurope"),
            "azsim-region-northeurope"
        );
        let azure = AzureBlobs::from_url(
            "https://contoso.blob.core.windows.net",
            Some("a2V5".into()),
            "backups",
        )
        .unwrap();
        assert_eq!(azure.account, "contoso");
        assert!(AzureBlobs::from_url("https://contoso.blob.core.windows.net", None, "x").is_err());
        assert!(
            AzureBlobs::from_url(
                "http://127.0.0.1:10000/devstoreaccount1",
                None,
                "Bad_Prefix"
            )
            .is_err()
        );
        assert!(AzureBlobs::from_url("not a url", None, "x").is_err());
        assert!(
            !format!("{azure:?}").contains("a2V5"),
            "the key is never printed"
        );
    }
}
