//! The vault's `/backup/v1` API as typed calls: the one place the agent names a route or
//! reads a reply. Bodies are `backup_protocol` types; a reply that does not parse is an
//! error naming the route, never a silent default.

use backup_protocol::{
    BindPolicy, ChangeEncryption, ChunkIds, ChunkLocation, CommitRequest, CommitResponse,
    EncryptionResponse, FinishJob, ItemRef, ItemState, Job, JobId, List, LocateResponse,
    MissingResponse, PolicyBody, ProtectRequest, ProtectResponse, RecoveryPoint, RegisterRequest,
    RegisterResponse, StartJob, StopRequest, routes,
};
use bytes::Bytes;
use serde_json::Value;

use crate::client::Service;
use crate::error::Result;

pub struct VaultClient {
    service: Service,
    /// Read recovery points, manifests, chunk locations and packs from the vault's
    /// secondary region (cross-region restore).
    secondary: bool,
}

impl VaultClient {
    pub fn new(service: Service) -> Self {
        VaultClient {
            service,
            secondary: false,
        }
    }

    /// The same client reading from the vault's secondary region.
    pub fn in_secondary_region(self) -> Self {
        VaultClient {
            secondary: true,
            ..self
        }
    }

    /// `route`, or its secondary-region twin.
    fn read(&self, route: String) -> String {
        match self.secondary {
            true => routes::secondary(&route),
            false => route,
        }
    }

    /// The signed-in connection (its clock, whether a sign-in succeeded).
    pub fn service(&self) -> &Service {
        &self.service
    }

    pub async fn register(&self, request: &RegisterRequest) -> Result<RegisterResponse> {
        self.service.post(routes::REGISTER, request).await
    }

    pub async fn unregister(&self) -> Result<()> {
        self.service.delete(routes::REGISTER).await
    }

    pub async fn encryption(&self, server: &str) -> Result<EncryptionResponse> {
        self.service.get(&routes::encryption(server)).await
    }

    /// Replaces this server's wrapped master key (a new passphrase).
    pub async fn change_encryption(&self, server: &str, request: &ChangeEncryption) -> Result<()> {
        let _: Value = self
            .service
            .put(&routes::encryption(server), request)
            .await?;
        Ok(())
    }

    /// The ids of `ids` the vault does not hold yet.
    pub async fn missing(&self, ids: Vec<String>) -> Result<Vec<String>> {
        let answer: MissingResponse = self
            .service
            .post(routes::CHUNKS_MISSING, &ChunkIds { ids })
            .await?;
        Ok(answer.missing)
    }

    /// Where each chunk is (pack, offset, length).
    pub async fn locate(&self, ids: Vec<String>) -> Result<Vec<ChunkLocation>> {
        let answer: LocateResponse = self
            .service
            .post(&self.read(routes::CHUNKS_LOCATE.into()), &ChunkIds { ids })
            .await?;
        Ok(answer.chunks)
    }

    /// Uploads a pack from its parts (blobs, then index).
    pub async fn put_pack(&self, id: &str, parts: Vec<Bytes>) -> Result<()> {
        self.service.put_parts(&routes::pack(id), parts).await
    }

    /// Bytes `[start, end)` of a pack.
    pub async fn read_pack(&self, pack: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        self.service
            .get_range(&self.read(routes::pack(pack)), start, end)
            .await
    }

    /// Protects `path` (idempotent); returns the item's name.
    pub async fn protect(&self, path: &str) -> Result<String> {
        let answer: ProtectResponse = self
            .service
            .post(
                routes::ITEMS,
                &ProtectRequest {
                    path: path.to_string(),
                },
            )
            .await?;
        Ok(answer.item)
    }

    pub async fn items(&self) -> Result<Vec<ItemState>> {
        let answer: List<ItemState> = self.service.get(routes::ITEMS).await?;
        Ok(answer.value)
    }

    pub async fn stop(&self, request: &StopRequest) -> Result<()> {
        self.service
            .post_no_content(routes::ITEMS_STOP, request)
            .await
    }

    pub async fn undelete(&self, item: &str) -> Result<()> {
        self.service
            .post_no_content(
                routes::ITEMS_UNDELETE,
                &ItemRef {
                    item: item.to_string(),
                },
            )
            .await
    }

    pub async fn bind_policy(&self, item: &str, policy: &str) -> Result<()> {
        self.service
            .post_no_content(
                routes::ITEMS_POLICY,
                &BindPolicy {
                    item: item.to_string(),
                    policy: policy.to_string(),
                },
            )
            .await
    }

    pub async fn put_policy(&self, name: &str, properties: Value) -> Result<()> {
        let _: PolicyBody = self
            .service
            .put(
                &routes::policy(name),
                &PolicyBody {
                    name: None,
                    properties,
                },
            )
            .await?;
        Ok(())
    }

    pub async fn policy(&self, name: &str) -> Result<PolicyBody> {
        self.service.get(&routes::policy(name)).await
    }

    /// Starts a `Backup` or `Restore` job; returns its id.
    pub async fn start_job(&self, operation: &str, entity: &str) -> Result<String> {
        let answer: JobId = self
            .service
            .post(
                routes::JOBS,
                &StartJob {
                    operation: operation.to_string(),
                    entity: entity.to_string(),
                },
            )
            .await?;
        Ok(answer.id)
    }

    pub async fn finish_job(&self, id: &str, status: &str, details: Value) -> Result<()> {
        self.service
            .patch(
                &routes::job(id),
                &FinishJob {
                    status: status.to_string(),
                    details,
                },
            )
            .await
    }

    pub async fn jobs(&self) -> Result<Vec<Job>> {
        let answer: List<Job> = self.service.get(routes::JOBS).await?;
        Ok(answer.value)
    }

    pub async fn commit(&self, request: &CommitRequest) -> Result<CommitResponse> {
        self.service.post(routes::RECOVERY_POINTS, request).await
    }

    pub async fn recovery_points(&self, server: &str) -> Result<Vec<RecoveryPoint>> {
        let answer: List<RecoveryPoint> = self
            .service
            .get(&self.read(routes::recovery_points(server)))
            .await?;
        Ok(answer.value)
    }

    /// A recovery point's sealed manifest.
    pub async fn manifest(&self, server: &str, recovery_point: &str) -> Result<Bytes> {
        self.service
            .get_bytes(&self.read(routes::manifest(server, recovery_point)))
            .await
    }
}
