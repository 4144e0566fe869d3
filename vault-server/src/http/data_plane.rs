//! `/backup/v1/...`: what the agent calls. Registration takes a token of the vault's
//! registration app (signed in with the vault-credentials certificate); everything else
//! takes a token of the machine identity created at registration.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use backup_protocol::{
    BindPolicy, ChangeEncryption, ChunkIds, CommitRequest, CommitResponse, EncryptionResponse,
    FinishJob, ItemRef, ItemState, JobId, List, LocateResponse, MissingResponse, PolicyBody,
    ProtectRequest, ProtectResponse, PutPackResponse, RegisterRequest, RegisterResponse, StartJob,
    StopRequest, VaultRef,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sim_core::auth::Principal;

use super::VsState;
use crate::arm::{ok, parse_json};
use crate::blobs::Placement;
use crate::dataplane::Machine;
use crate::error::{Result, VsError};
use crate::vaults::Vault;

pub async fn handle(
    state: &VsState,
    caller: Principal,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<Response> {
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .skip(2)
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let now = state.clock.unix();
    // The caller is authenticated; each route reads at most what it can need.
    let limit = body_limit(&method, &segments);
    // A pack is kept in the parts it arrived in; other bodies are small and read whole.
    let parts = super::read_body_parts(headers, body, limit).await?;
    let body = match parts.as_slice() {
        [] => Bytes::new(),
        [one] => one.clone(),
        _ if matches!((&method, segments.as_slice()), (&Method::PUT, ["packs", _])) => Bytes::new(),
        many => Bytes::from(many.concat()),
    };
    match (&method, segments.as_slice()) {
        (&Method::POST, ["register"]) => return register(state, &caller, &body, now).await,
        (&Method::GET, ["servers", server, "encryption"]) => {
            return encryption(state, &caller, server).await;
        }
        _ => {}
    }
    let Some((vault, container)) = state.vaults.of_server(&caller.app_id).await? else {
        if state
            .vaults
            .by_registration_app(&caller.app_id)
            .await?
            .is_some()
        {
            return Err(VsError::Forbidden(format!(
                "The caller (app {}) is a vault's registration identity: it may only register servers (POST /backup/v1/register).",
                caller.app_id
            )));
        }
        return Err(VsError::Unregistered(format!(
            "The caller (app {}) is not a registered server of any vault: it was unregistered, or never registered. Register again with vault credentials.",
            caller.app_id
        )));
    };
    let machine = Machine {
        vault_id: vault.id,
        container,
    };
    let data = &state.data;
    if let ["secondary", rest @ ..] = segments.as_slice() {
        return secondary(state, &vault, &method, rest, headers, &body).await;
    }
    // The vault's primary region holds its data: in an outage only job records (kept by
    // the service, not in regional storage) and the secondary-region reads above answer.
    if state.blobs.is_down(&vault.location) && !matches!(segments.as_slice(), ["jobs", ..]) {
        return Err(VsError::RegionUnavailable(vault.location.clone()));
    }
    match (method.clone(), segments.as_slice()) {
        (Method::DELETE, ["register"]) => {
            super::unregister_server(state, &vault, &machine.container).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Method::POST, ["chunks", "missing"]) => {
            let request: ChunkIds = parse_json(&body)?;
            let missing = data.missing(vault.id, &request.ids).await?;
            reply(&MissingResponse { missing })
        }
        (Method::POST, ["chunks", "locate"]) => {
            let request: ChunkIds = parse_json(&body)?;
            let chunks = data.locate(vault.id, &request.ids).await?;
            reply(&LocateResponse { chunks })
        }
        (Method::PUT, ["packs", id]) => {
            let chunks = data.put_pack(vault.id, id, parts, now).await?;
            reply(&PutPackResponse {
                id: id.to_string(),
                chunks,
            })
        }
        (Method::GET, ["packs", id]) => read_pack(state, &vault, id, headers, None).await,
        (Method::POST, ["items"]) => protect(state, &vault, &machine, &body, now).await,
        (Method::POST, ["jobs"]) => {
            let request: StartJob = parse_json(&body)?;
            if !["Backup", "Restore"].contains(&request.operation.as_str()) {
                return Err(VsError::BadRequest(
                    "operation must be Backup or Restore.".into(),
                ));
            }
            // A backup starting means the server's earlier backups are over: any still
            // InProgress were killed with the agent.
            if request.operation == "Backup" {
                data.fail_abandoned_jobs(vault.id, Some(&machine.container), now)
                    .await?;
            }
            let id = data
                .start_job(
                    vault.id,
                    &machine.container,
                    &request.operation,
                    &request.entity,
                    now,
                )
                .await?;
            reply(&JobId { id })
        }
        (Method::PATCH, ["jobs", id]) => {
            let request: FinishJob = parse_json(&body)?;
            let statuses = ["Completed", "CompletedWithWarnings", "Failed", "Cancelled"];
            if !statuses.contains(&request.status.as_str()) {
                return Err(VsError::BadRequest(format!(
                    "status must be one of {}.",
                    statuses.join(", ")
                )));
            }
            data.finish_job(
                vault.id,
                &machine.container,
                id,
                &request.status,
                &request.details,
                now,
            )
            .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Method::PUT, ["servers", server, "encryption"]) => {
            if !server.eq_ignore_ascii_case(&machine.container) {
                return Err(VsError::Forbidden(format!(
                    "Server {} may change only its own passphrase, not {server}'s.",
                    machine.container
                )));
            }
            let request: ChangeEncryption = parse_json(&body)?;
            change_passphrase(state, &vault, &machine, request, now).await
        }
        (Method::GET, ["jobs"]) => {
            data.fail_abandoned_jobs(vault.id, None, now).await?;
            let value = data.jobs(vault.id, &machine.container).await?;
            reply(&List { value })
        }
        (Method::POST, ["recoveryPoints"]) => commit(state, &vault, &machine, &body, now).await,
        (Method::GET, ["servers", server, "recoveryPoints"]) => {
            state.lifecycle.sweep(&vault, now).await?;
            let value = data.recovery_points(vault.id, server, false).await?;
            reply(&List { value })
        }
        (Method::GET, ["items"]) => items(state, &vault, &machine, now).await,
        (Method::POST, ["items", "stop"]) => {
            let request: StopRequest = parse_json(&body)?;
            if request.delete_data {
                state
                    .lifecycle
                    .use_pin(&vault, request.security_pin.as_deref(), now)
                    .await?;
            }
            let lifecycle = &state.lifecycle;
            lifecycle
                .stop_protection(
                    &vault,
                    &machine.container,
                    &request.item,
                    request.delete_data,
                    now,
                )
                .await?;
            lifecycle.sweep(&vault, now).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Method::POST, ["items", "undelete"]) => {
            let request: ItemRef = parse_json(&body)?;
            state
                .lifecycle
                .undelete(&vault, &machine.container, &request.item)
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Method::POST, ["items", "policy"]) => {
            let request: BindPolicy = parse_json(&body)?;
            state
                .lifecycle
                .bind_policy(&vault, &machine.container, &request.item, &request.policy)
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Method::PUT, ["policies", name]) => {
            sim_core::arm::check_resource_name("Policy", name, 150)
                .map_err(VsError::InvalidName)?;
            let request: PolicyBody = parse_json(&body)?;
            let properties = crate::policy::validate(&request.properties)?;
            state
                .lifecycle
                .policy_changing(&vault, name, &properties)
                .await?;
            state.backup.put_policy(&vault, name, &properties).await?;
            reply(&PolicyBody {
                name: Some(name.to_string()),
                properties,
            })
        }
        (Method::GET, ["policies", name]) => {
            let (found, properties) = state
                .backup
                .policies(&vault)
                .await?
                .into_iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    VsError::NotFound(format!(
                        "Policy '{name}' was not found in vault {}.",
                        vault.name
                    ))
                })?;
            reply(&PolicyBody {
                name: Some(found),
                properties,
            })
        }
        (Method::GET, ["servers", server, "recoveryPoints", name, "manifest"]) => {
            let manifest = data.manifest(vault.id, server, name, None).await?;
            Ok((
                [(header::CONTENT_TYPE, "application/octet-stream")],
                manifest,
            )
                .into_response())
        }
        _ => Err(VsError::NoRoute {
            method: method.to_string(),
            path: path.to_string(),
        }),
    }
}

/// `/backup/v1/secondary/…`: cross-region restore, reading the paired region's copies —
/// recovery points whose objects have all been replicated there, their manifests, chunk
/// locations and pack ranges. Only for a GeoRedundant vault with Cross Region Restore on.
async fn secondary(
    state: &VsState,
    vault: &Vault,
    method: &Method,
    segments: &[&str],
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response> {
    let placement = super::crr::allowed(state, vault).await?;
    let data = &state.data;
    match (method.clone(), segments) {
        (Method::GET, ["servers", server, "recoveryPoints"]) => {
            let value = data.recovery_points(vault.id, server, true).await?;
            reply(&List { value })
        }
        (Method::GET, ["servers", server, "recoveryPoints", name, "manifest"]) => {
            let replicated = data
                .recovery_points(vault.id, server, true)
                .await?
                .iter()
                .any(|p| p.name == *name);
            if !replicated {
                return Err(VsError::NotFound(format!(
                    "Recovery point {name} of server {server} has not reached the secondary region {} yet (or does not exist).",
                    placement.secondary.as_deref().unwrap_or_default()
                )));
            }
            let manifest = data
                .manifest(vault.id, server, name, Some(&placement))
                .await?;
            Ok((
                [(header::CONTENT_TYPE, "application/octet-stream")],
                manifest,
            )
                .into_response())
        }
        (Method::POST, ["chunks", "locate"]) => {
            let request: ChunkIds = parse_json(body)?;
            let chunks = data.locate(vault.id, &request.ids).await?;
            reply(&LocateResponse { chunks })
        }
        (Method::GET, ["packs", id]) => {
            read_pack(state, vault, id, headers, Some(&placement)).await
        }
        _ => Err(VsError::NoRoute {
            method: method.to_string(),
            path: format!("/backup/v1/secondary/{}", segments.join("/")),
        }),
    }
}

/// Body limit per route: packs are large, commits carry a manifest, the rest is small JSON.
fn body_limit(method: &Method, segments: &[&str]) -> usize {
    const KIB: usize = 1024;
    match (method, segments) {
        (&Method::PUT, ["packs", _]) => crate::dataplane::MAX_PACK_BYTES,
        (&Method::POST, ["recoveryPoints"]) => 128 * 1024 * KIB,
        (&Method::POST, ["chunks", _]) | (&Method::POST, ["secondary", "chunks", _]) => {
            4 * 1024 * KIB
        }
        (&Method::PATCH, ["jobs", _]) => 256 * KIB,
        (&Method::POST, ["register"]) => 64 * KIB,
        _ => 16 * KIB,
    }
}

/// The caller's items with their policy, protection and deletion state.
async fn items(state: &VsState, vault: &Vault, machine: &Machine, now: i64) -> Result<Response> {
    state.lifecycle.sweep(vault, now).await?;
    let value: Vec<ItemState> = state
        .backup
        .items(vault)
        .await?
        .into_iter()
        .filter(|i| i.container.eq_ignore_ascii_case(&machine.container))
        .map(|i| ItemState {
            policy: if i.policy_name.is_empty() {
                crate::policy::DEFAULT_POLICY.to_string()
            } else {
                i.policy_name
            },
            item: i.name,
            path: i.friendly_name,
            protection_state: i.protection_state,
            recovery_points: i.recovery_points,
            deleted_at: i.deferred_delete_at,
        })
        .collect();
    reply(&List { value })
}

/// A new passphrase for the caller's master key: the PIN is used up, the check value must
/// not change, and the wrapped key is replaced in one statement (the old passphrase or the
/// new one works, never neither).
async fn change_passphrase(
    state: &VsState,
    vault: &Vault,
    machine: &Machine,
    request: ChangeEncryption,
    now: i64,
) -> Result<Response> {
    let (_, key_check) = state
        .data
        .encryption(vault.id, &machine.container)
        .await?
        .ok_or_else(|| VsError::NotFound("This server has no key information.".into()))?;
    if key_check != request.key_check {
        return Err(VsError::BadRequest(
            "keyCheck differs from the registered one: a passphrase change re-wraps the same master key, it never replaces it.".into(),
        ));
    }
    state
        .lifecycle
        .use_pin(vault, Some(&request.security_pin), now)
        .await?;
    let saved = match &request.key_vault {
        Some(save) => Some(
            state
                .passphrases
                .save(
                    vault,
                    &save.uri,
                    &passphrase_secret_name(&machine.container, &vault.name),
                    &save.passphrase,
                )
                .await?,
        ),
        None => None,
    };
    state
        .data
        .set_encryption(
            vault.id,
            &machine.container,
            &request.encryption,
            &key_check,
        )
        .await?;
    Ok(ok(
        serde_json::json!({"server": machine.container, "passphraseSecretId": saved}),
    ))
}

/// The Key Vault secret that holds a server's passphrase.
fn passphrase_secret_name(server: &str, vault: &str) -> String {
    format!("mars-{server}-{vault}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(127)
        .collect()
}

/// A typed answer as JSON.
fn reply<T: serde::Serialize>(body: &T) -> Result<Response> {
    Ok(ok(
        serde_json::to_value(body).expect("a protocol body serialises")
    ))
}

async fn register(state: &VsState, caller: &Principal, body: &[u8], now: i64) -> Result<Response> {
    let vault = state.vaults.by_registration_app(&caller.app_id).await?.ok_or_else(|| {
        VsError::Forbidden(format!(
            "The caller (app {}) is not the registration identity of any vault; sign in with the vault credentials' certificate.",
            caller.app_id
        ))
    })?;
    let request: RegisterRequest = parse_json(body)?;
    let name = request.server_name.trim();
    if name.is_empty() || name.len() > 255 || name.contains(['/', '\\', ';']) {
        return Err(VsError::BadRequest(format!(
            "serverName '{name}' is invalid: 1-255 characters, without '/', '\\\\' or ';'."
        )));
    }
    state
        .vaults
        .check_latest_credential(&vault, &request.credential_thumbprint, now)
        .await?;
    let data = &state.data;
    let existing = data.encryption(vault.id, name).await?;
    if let Some((_, key_check)) = &existing
        && *key_check != request.key_check
    {
        return Err(VsError::Conflict(format!(
            "Server '{name}' is already registered to vault {} with another passphrase; re-register it with the passphrase it was registered with.",
            vault.name
        )));
    }
    // Before anything is registered: a refusal here leaves nothing behind.
    let saved_secret = match &request.key_vault {
        Some(save) => {
            let secret = passphrase_secret_name(name, &vault.name);
            Some(
                state
                    .passphrases
                    .save(&vault, &save.uri, &secret, &save.passphrase)
                    .await?,
            )
        }
        None => None,
    };
    if existing.is_some() {
        for app in data.machine_apps(vault.id, name).await? {
            data.remove_machine(&app).await?;
            let _ = state.vaults.entra().delete_app(&app).await;
        }
    }
    let entra = state.vaults.entra();
    let app = entra
        .create_app(&format!("mars-{name}-{}", vault.resource_number))
        .await?;
    entra
        .add_certificate(&app.app_id, &request.certificate)
        .await
        .map_err(|e| VsError::BadRequest(format!("The machine certificate was refused: {e}")))?;
    state
        .backup
        .register_container(&vault, name, &request.agent_version, now)
        .await?;
    data.set_encryption(vault.id, name, &request.encryption, &request.key_check)
        .await?;
    data.add_machine(&app.app_id, &app.service_principal_id, &vault, name, now)
        .await?;
    reply(&RegisterResponse {
        container_name: name.to_string(),
        client_id: app.app_id,
        tenant_id: entra.tenant.clone(),
        authority: entra.authority.clone(),
        vault: VaultRef {
            subscription_id: vault.subscription_id.clone(),
            resource_group: vault.resource_group.clone(),
            name: vault.name.clone(),
        },
        passphrase_secret_id: saved_secret,
    })
}

async fn encryption(state: &VsState, caller: &Principal, server: &str) -> Result<Response> {
    let vault = match state.vaults.by_registration_app(&caller.app_id).await? {
        Some(vault) => vault,
        None => {
            let machine = state.data.machine(&caller.app_id).await?.ok_or_else(|| {
                VsError::Forbidden(
                    "Sign in with the vault credentials' certificate or as a registered server."
                        .into(),
                )
            })?;
            state.vaults.by_id(machine.vault_id).await?
        }
    };
    let (info, _) = state
        .data
        .encryption(vault.id, server)
        .await?
        .ok_or_else(|| {
            VsError::NotFound(format!(
                "Server '{server}' is not registered to vault {}.",
                vault.name
            ))
        })?;
    reply(&EncryptionResponse {
        server: server.to_string(),
        encryption: info,
    })
}

async fn read_pack(
    state: &VsState,
    vault: &Vault,
    id: &str,
    headers: &HeaderMap,
    secondary: Option<&Placement>,
) -> Result<Response> {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(parse_range)
        .transpose()?;
    let bytes = state.data.read_pack(vault.id, id, range, secondary).await?;
    let status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

/// `bytes=a-b` (inclusive) → `[a, b+1)`.
fn parse_range(value: &str) -> Result<(u64, u64)> {
    let bad = || VsError::BadRequest(format!("Range '{value}' must be bytes=START-END."));
    let spec = value.strip_prefix("bytes=").ok_or_else(bad)?;
    let (start, end) = spec.split_once('-').ok_or_else(bad)?;
    let start: u64 = start.parse().map_err(|_| bad())?;
    let end: u64 = end.parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok((start, end + 1))
}

async fn protect(
    state: &VsState,
    vault: &Vault,
    machine: &Machine,
    body: &[u8],
    now: i64,
) -> Result<Response> {
    let request: ProtectRequest = parse_json(body)?;
    if request.path.is_empty() || request.path.len() > 4096 {
        return Err(VsError::BadRequest(
            "path must be 1-4096 characters.".into(),
        ));
    }
    let digest =
        blake3::hash(format!("{}\0{}", machine.container, request.path).as_bytes()).to_hex();
    let guid = format!(
        "{}-{}-{}-{}-{}",
        &digest[..8],
        &digest[8..12],
        &digest[12..16],
        &digest[16..20],
        &digest[20..32]
    )
    .to_uppercase();
    // One path segment, as Azure's MAB item names are: the path lives in friendlyName.
    let name = format!("FileFolder;{guid}");
    state
        .backup
        .protect_item(vault, &machine.container, &name, &request.path, now)
        .await?;
    reply(&ProtectResponse { item: name })
}

async fn commit(
    state: &VsState,
    vault: &Vault,
    machine: &Machine,
    body: &[u8],
    now: i64,
) -> Result<Response> {
    let request: CommitRequest = parse_json(body)?;
    let manifest = STANDARD
        .decode(&request.manifest)
        .map_err(|_| VsError::BadRequest("manifest must be base64.".into()))?;
    let name = format!("{now}{:06}", uuid::Uuid::new_v4().as_u128() % 1_000_000);
    let retention = state
        .lifecycle
        .plan(
            vault,
            &machine.container,
            &request.item,
            now,
            request.retain_until,
        )
        .await?;
    state
        .data
        .commit(
            vault,
            &machine.container,
            &request.item,
            &name,
            Bytes::from(manifest),
            &request.chunks,
            now,
            &retention,
        )
        .await?;
    reply(&CommitResponse {
        name,
        expires: retention.expires,
        tags: retention.tags.iter().map(|t| t.to_string()).collect(),
    })
}
