//! Request and response bodies of the `/backup/v1` routes, named after the route. All
//! are camelCase JSON; unknown fields are ignored, so either side may grow them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST register` (signed in as the vault's registration app).
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    pub server_name: String,
    pub agent_version: String,
    /// The machine's own public certificate (base64 DER); it signs in with its key.
    pub certificate: String,
    /// Thumbprint of the vault-credentials certificate the caller signed in with.
    pub credential_thumbprint: String,
    /// Wrapped master key and KDF parameters (opaque to the server).
    pub encryption: Value,
    /// A check value of the master key: re-registration must present the same.
    pub key_check: String,
    /// Save the passphrase in this Key Vault (through the vault's managed identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_vault: Option<KeyVaultSave>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct KeyVaultSave {
    pub uri: String,
    pub passphrase: String,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    pub container_name: String,
    /// The machine identity's app id in Entra.
    pub client_id: String,
    pub tenant_id: String,
    pub authority: String,
    pub vault: VaultRef,
    /// The Key Vault secret id of the saved passphrase, when one was saved.
    #[serde(default)]
    pub passphrase_secret_id: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct VaultRef {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
}

/// `GET servers/{s}/encryption`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct EncryptionResponse {
    pub server: String,
    pub encryption: Value,
}

/// `PUT servers/{s}/encryption` (the server itself): a new passphrase wraps the same
/// master key. Needs the vault's security PIN.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ChangeEncryption {
    pub encryption: Value,
    /// Must equal the registered check value: the master key does not change.
    pub key_check: String,
    pub security_pin: String,
    /// Save the new passphrase in this Key Vault too (through the vault's identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_vault: Option<KeyVaultSave>,
}

/// The error `code` of a commit that names chunks the vault does not hold: uploaded never,
/// or collected since (every recovery point that held them expired or was deleted). The
/// agent then asks `chunks/missing`, uploads those chunks again and commits again.
pub const CHUNKS_NOT_STORED: &str = "ChunksNotStored";

/// `POST chunks/missing` and `POST chunks/locate`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ChunkIds {
    pub ids: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct MissingResponse {
    /// The asked ids the vault does not hold, in the order asked.
    pub missing: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ChunkLocation {
    pub id: String,
    pub pack: String,
    pub offset: u64,
    pub length: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct LocateResponse {
    pub chunks: Vec<ChunkLocation>,
}

/// `PUT packs/{id}`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct PutPackResponse {
    pub id: String,
    /// Chunks in the pack.
    pub chunks: usize,
}

/// `POST items`: protect a path (idempotent).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ProtectRequest {
    pub path: String,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ProtectResponse {
    /// The protected item's name (one path segment).
    pub item: String,
}

/// `GET items`: the caller's items.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ItemState {
    pub item: String,
    pub path: String,
    pub policy: String,
    pub protection_state: String,
    pub recovery_points: i64,
    /// When its backup data was soft-deleted (Unix seconds).
    pub deleted_at: Option<i64>,
}

/// `POST items/stop`.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct StopRequest {
    pub item: String,
    #[serde(default)]
    pub delete_data: bool,
    #[serde(default)]
    pub security_pin: Option<String>,
}

/// `POST items/undelete`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ItemRef {
    pub item: String,
}

/// `POST items/policy`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct BindPolicy {
    pub item: String,
    pub policy: String,
}

/// `PUT policies/{name}` and its answer, `GET policies/{name}`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct PolicyBody {
    #[serde(default)]
    pub name: Option<String>,
    /// MabProtectionPolicy properties.
    pub properties: Value,
}

/// `POST jobs`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct StartJob {
    /// `Backup` or `Restore`.
    pub operation: String,
    pub entity: String,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct JobId {
    pub id: String,
}

/// `PATCH jobs/{id}`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct FinishJob {
    /// `Completed`, `CompletedWithWarnings`, `Failed` or `Cancelled`.
    pub status: String,
    /// `propertyBag` and `errorDetails`, shown in the ARM job view.
    #[serde(default)]
    pub details: Value,
}

/// One of `GET jobs`.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Job {
    pub id: String,
    pub operation: String,
    pub status: String,
    pub entity: String,
    pub start: i64,
    pub end: Option<i64>,
    pub details: Value,
}

/// `POST recoveryPoints`: commit a point (every referenced chunk must be stored).
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct CommitRequest {
    pub item: String,
    /// The sealed manifest, base64.
    pub manifest: String,
    /// Every distinct chunk id the manifest references.
    pub chunks: Vec<String>,
    /// Keep the point until then (Unix seconds) instead of the policy's retention.
    #[serde(default)]
    pub retain_until: Option<i64>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct CommitResponse {
    pub name: String,
    pub expires: i64,
    pub tags: Vec<String>,
}

/// One of `GET servers/{s}/recoveryPoints`, newest first.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct RecoveryPoint {
    pub name: String,
    pub item: String,
    /// The protected path.
    pub path: String,
    pub created: i64,
    pub expires: Option<i64>,
    pub chunks: i64,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// `{"value": [...]}` lists.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct List<T> {
    pub value: Vec<T>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_in_camel_case() {
        let commit = CommitRequest {
            item: "FileFolder;X".into(),
            manifest: "bQ==".into(),
            chunks: vec!["a".repeat(64)],
            retain_until: Some(5),
        };
        let json = serde_json::to_value(&commit).unwrap();
        assert_eq!(json["retainUntil"], 5);
        let back: CommitRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back.chunks, commit.chunks);
        let stop: StopRequest = serde_json::from_str(r#"{"item":"i"}"#).unwrap();
        assert!(!stop.delete_data && stop.security_pin.is_none());
        let state = ItemState {
            item: "i".into(),
            path: "/d".into(),
            policy: "DefaultPolicy".into(),
            protection_state: "Protected".into(),
            recovery_points: 2,
            deleted_at: None,
        };
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["protectionState"], "Protected");
        assert!(json["deletedAt"].is_null());
        let list: List<RecoveryPoint> = serde_json::from_str(
            r#"{"value":[{"name":"r","item":"i","path":"/d","created":1,"expires":null,"chunks":0}]}"#,
        )
        .unwrap();
        assert!(list.value[0].tags.is_empty(), "old servers send no tags");
    }
}
