//! A Recovery Services vault and everything below it: the resource itself, certificates and
//! vault credentials, usages, extended info, registered identities, and the Backup views.

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{VsState, authorize};
use crate::arm::{ArmCall, CallExt, created, ok};
use crate::backup::{self, Backup};
use crate::credentials::Credentials;
use crate::error::{Result, VsError};
use crate::policy;
use crate::vaults::{Upserted, Vault, VaultRequest};

const READ: &str = "Microsoft.RecoveryServices/vaults/read";
const WRITE: &str = "Microsoft.RecoveryServices/vaults/write";

pub async fn list(state: &VsState, call: &ArmCall, group: Option<&str>) -> Result<Response> {
    if call.method != Method::GET {
        return Err(call.no_route());
    }
    authorize(state, call, READ).await?;
    let vaults = state.vaults.list(call.segment(1), group).await?;
    Ok(call.paged(vaults.iter().map(Vault::to_json).collect()))
}

pub async fn check_name(state: &VsState, call: &ArmCall) -> Result<Response> {
    if call.method != Method::POST {
        return Err(call.no_route());
    }
    authorize(state, call, READ).await?;
    #[derive(Deserialize)]
    struct Body {
        name: String,
        #[serde(rename = "type")]
        kind: Option<String>,
    }
    let body: Body = call.parse()?;
    if let Some(kind) = &body.kind
        && !kind.eq_ignore_ascii_case("Microsoft.RecoveryServices/Vaults")
    {
        return Err(VsError::BadRequest(format!(
            "type '{kind}' is not valid; use 'Microsoft.RecoveryServices/Vaults'."
        )));
    }
    if let Err(e) = crate::settings::validate_name(&body.name) {
        return Ok(ok(
            json!({"nameAvailable": false, "reason": "Invalid", "message": e.to_string()}),
        ));
    }
    crate::groups::get(&state.pool, call.segment(1), call.segment(3)).await?;
    Ok(
        if state
            .vaults
            .name_available(call.segment(1), call.segment(3), &body.name)
            .await?
        {
            ok(json!({"nameAvailable": true}))
        } else {
            ok(
                json!({"nameAvailable": false, "reason": "AlreadyExists", "message": "Resource already exists with the same name."}),
            )
        },
    )
}

/// Everything under `.../vaults/{name}`.
pub async fn dispatch(state: &VsState, call: &ArmCall) -> Result<Response> {
    let (subscription, group, name) = (call.segment(1), call.segment(3), call.segment(7));
    let lower = call.lower();
    let rest = &lower[8..];
    if rest.is_empty() {
        return vault_resource(state, call, subscription, group, name).await;
    }
    let action = if matches!(call.method, Method::GET | Method::HEAD) {
        READ
    } else {
        WRITE
    };
    authorize(state, call, action).await?;
    let vault = state.vaults.get(subscription, group, name).await?;
    let arg = |i: usize| call.segment(8 + i);
    let m = &call.method;
    match rest {
        ["certificates", _] if m == Method::PUT => {
            upload_certificate(state, call, &vault, arg(1)).await
        }
        ["azsimvaultcredentials"] if m == Method::POST => {
            vault_credentials(state, call, &vault).await
        }
        ["registeredidentities", _] if m == Method::DELETE => {
            super::unregister_server(state, &vault, arg(1)).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ["usages"] if m == Method::GET => usages(state, call, &vault).await,
        ["replicationusages"] if m == Method::GET => Ok(ok(json!({"value": []}))),
        ["extendedinformation", "vaultextendedinfo"] => extended_info(state, call, &vault).await,
        ["backupstorageconfig", "vaultstorageconfig"] => storage_config(state, call, vault).await,
        ["backupconfig", "vaultconfig"] => vault_config(state, call, vault).await,
        ["backupprotectioncontainers"] if m == Method::GET => {
            containers(&state.backup, call, &vault, None).await
        }
        ["backupfabrics", "azure", "protectioncontainers", _] if m == Method::GET => {
            containers(&state.backup, call, &vault, Some(arg(3))).await
        }
        ["backupfabrics", "azure", "protectioncontainers", _] if m == Method::DELETE => {
            super::unregister_server(state, &vault, arg(3)).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        // The passive stamp (cross-region restore) asks with a trailing slash.
        ["backupprotecteditems"] if m == Method::GET && call.path.ends_with('/') => {
            super::crr::items(state, call, &vault).await
        }
        ["backupprotecteditems"] if m == Method::GET => items(state, call, &vault, None).await,
        ["backupsecuritypin"] if m == Method::POST => {
            let (pin, expires) = state
                .lifecycle
                .issue_pin(&vault, state.clock.unix())
                .await?;
            // .NET ticks (100 ns since 0001-01-01), as the service sends them.
            let ticks = (expires + 62_135_596_800) * 10_000_000;
            Ok(ok(
                json!({"token": pin, "securityPIN": pin, "expiryTimeInUtcTicks": ticks}),
            ))
        }
        [
            "backupfabrics",
            "azure",
            "protectioncontainers",
            _,
            "protecteditems",
            _,
        ] if m == Method::GET => items(state, call, &vault, Some((arg(3), arg(5)))).await,
        [
            "backupfabrics",
            "azure",
            "protectioncontainers",
            _,
            "protecteditems",
            _,
        ] if m == Method::DELETE => {
            // The portal's "Stop backup → Delete backup data": soft delete applies, and an
            // immutable vault refuses while points have not expired.
            let now = state.clock.unix();
            state
                .lifecycle
                .stop_protection(&vault, arg(3), arg(5), true, now)
                .await?;
            state.lifecycle.sweep(&vault, now).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        [
            "backupfabrics",
            "azure",
            "protectioncontainers",
            _,
            "protecteditems",
            _,
        ] if m == Method::PUT => update_item(state, call, &vault, arg(3), arg(5)).await,
        [
            "backupfabrics",
            "azure",
            "protectioncontainers",
            _,
            "protecteditems",
            _,
            "recoverypoints",
        ] if m == Method::GET && call.path.ends_with('/') => {
            super::crr::recovery_points(state, call, &vault, arg(3), arg(5)).await
        }
        [
            "backupfabrics",
            "azure",
            "protectioncontainers",
            _,
            "protecteditems",
            _,
            "recoverypoints",
        ] if m == Method::GET => recovery_points(state, call, &vault, arg(3), arg(5), None).await,
        [
            "backupfabrics",
            "azure",
            "protectioncontainers",
            _,
            "protecteditems",
            _,
            "recoverypoints",
            _,
        ] if m == Method::GET => {
            recovery_points(state, call, &vault, arg(3), arg(5), Some(arg(7))).await
        }
        ["backupjobs"] if m == Method::GET => jobs(state, call, &vault, None).await,
        ["backupjobs", _] if m == Method::GET => jobs(state, call, &vault, Some(arg(1))).await,
        ["backuppolicies"] if m == Method::GET => policies(&state.backup, call, &vault).await,
        ["backuppolicies", _] => one_policy(state, call, &vault, arg(1)).await,
        // Resource guards (multi-user authorization) are not simulated: no proxies exist.
        // The CLI reads this list before it changes soft-delete settings.
        ["backupresourceguardproxies"] if m == Method::GET => Ok(ok(json!({"value": []}))),
        ["backupresourceguardproxies", _] if m == Method::GET => Err(VsError::NotFound(format!(
            "Resource guard proxy '{}' was not found: resource guards are not simulated.",
            arg(1)
        ))),
        ["backupusagesummaries"] | ["backupengines"] if m == Method::GET => {
            Ok(ok(json!({"value": []})))
        }
        _ => Err(call.no_route()),
    }
}

async fn vault_resource(
    state: &VsState,
    call: &ArmCall,
    subscription: &str,
    group: &str,
    name: &str,
) -> Result<Response> {
    let caller = call.caller.object_id.clone();
    match call.method {
        Method::GET => {
            authorize(state, call, READ).await?;
            Ok(ok(state
                .vaults
                .get(subscription, group, name)
                .await?
                .to_json()))
        }
        Method::PUT => {
            authorize(state, call, WRITE).await?;
            let request: VaultRequest = call.parse()?;
            if request.location.is_none() {
                return Err(VsError::BadRequest(
                    "The 'location' property is required: a PUT sends the whole vault (use PATCH to change some of it).".into(),
                ));
            }
            Ok(
                match state
                    .vaults
                    .create_or_update(subscription, group, name, request, &caller)
                    .await?
                {
                    Upserted::Created(vault) => {
                        // As on Azure, a new vault comes with a default policy.
                        state
                            .backup
                            .put_policy(&vault, policy::DEFAULT_POLICY, &policy::default_mab())
                            .await?;
                        created(vault.to_json())
                    }
                    Upserted::Updated(vault) => ok(vault.to_json()),
                },
            )
        }
        Method::PATCH => {
            authorize(state, call, WRITE).await?;
            let request: VaultRequest = call.parse()?;
            Ok(ok(state
                .vaults
                .patch(subscription, group, name, request, &caller)
                .await?
                .to_json()))
        }
        Method::DELETE => {
            authorize(state, call, "Microsoft.RecoveryServices/vaults/delete").await?;
            state.vaults.delete(subscription, group, name).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(call.no_route()),
    }
}

async fn upload_certificate(
    state: &VsState,
    call: &ArmCall,
    vault: &Vault,
    name: &str,
) -> Result<Response> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        properties: Properties,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Properties {
        auth_type: Option<String>,
        certificate: String,
    }
    sim_core::arm::check_resource_name("Certificate", name, 260).map_err(VsError::InvalidName)?;
    let body: Body = call.parse()?;
    if let Some(kind) = &body.properties.auth_type
        && !["aad", "azureactivedirectory"].contains(&kind.to_ascii_lowercase().as_str())
    {
        return Err(VsError::BadRequest(format!(
            "properties.authType '{kind}' is not supported; use 'AAD'."
        )));
    }
    let credentials = Credentials {
        pool: &state.pool,
        vaults: &state.vaults,
    };
    let details = credentials
        .upload(
            vault,
            name,
            &body.properties.certificate,
            state.clock.unix(),
        )
        .await?;
    Ok(ok(details))
}

/// `POST V/azsimVaultCredentials`: a fresh `.VaultCredentials` file (azsim's stand-in for the
/// portal's download button).
async fn vault_credentials(state: &VsState, call: &ArmCall, vault: &Vault) -> Result<Response> {
    let credentials = Credentials {
        pool: &state.pool,
        vaults: &state.vaults,
    };
    let service = format!("https://{}", call.origin);
    let (file_name, xml) = credentials
        .generate(vault, &service, state.clock.unix())
        .await?;
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/xml; charset=utf-8"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        xml,
    )
        .into_response())
}

async fn usages(state: &VsState, _call: &ArmCall, vault: &Vault) -> Result<Response> {
    let containers = state.backup.containers(vault).await?.len();
    let items = state.backup.items(vault).await?.len();
    let in_progress = state.backup.in_progress_jobs(vault).await?;
    let stored = state.lifecycle.stored_bytes(vault).await?;
    let geo = crate::settings::redundancy(&vault.properties()) == "GeoRedundant";
    let usage = |value: &str, localized: &str, current: i64, unit: &str| json!({"name": {"value": value, "localizedValue": localized}, "currentValue": current, "limit": -1, "unit": unit});
    Ok(ok(json!({"value": [
        usage("MABContainersCount", "Backup management servers", containers as i64, "Count"),
        usage("MABProtectedItemCount", "File-Folders", items as i64, "Count"),
        usage("ManagedInstances", "Protected Instances", items as i64, "Count"),
        usage("InProgressJobsCount", "In progress", in_progress, "Count"),
        usage("GRSStorageUsage", "Cloud - GRS", if geo { stored } else { 0 }, "Bytes"),
        usage("LRSStorageUsage", "Cloud - LRS", if geo { 0 } else { stored }, "Bytes"),
    ]})))
}

async fn extended_info(state: &VsState, call: &ArmCall, vault: &Vault) -> Result<Response> {
    let current: Option<Value> = vault
        .extended_info
        .as_deref()
        .and_then(|i| serde_json::from_str(i).ok());
    let properties = match call.method {
        Method::GET => current.ok_or_else(|| {
            VsError::NotFound(format!(
                "Vault {} has no extended information yet; PUT it first.",
                vault.name
            ))
        })?,
        Method::PUT | Method::PATCH => {
            let body: Value = call.parse()?;
            let incoming = body
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .ok_or_else(|| {
                    VsError::BadRequest(
                        "The body must be {\"properties\": {\"integrityKey\", \"algorithm\"}}."
                            .into(),
                    )
                })?;
            let mut merged = match (&call.method, current) {
                (&Method::PATCH, Some(Value::Object(existing))) => existing,
                _ => Map::new(),
            };
            merged.extend(incoming);
            let merged = Value::Object(merged);
            state
                .vaults
                .set_extended_info(vault, merged.clone())
                .await?;
            merged
        }
        _ => return Err(call.no_route()),
    };
    Ok(ok(json!({
        "id": format!("{}/extendedInformation/vaultExtendedInfo", vault.arm_id()),
        "name": "vaultExtendedInfo",
        "type": "Microsoft.RecoveryServices/vaults/extendedInformation",
        "etag": vault.etag,
        "properties": properties,
    })))
}

async fn storage_config(state: &VsState, call: &ArmCall, vault: Vault) -> Result<Response> {
    let protected = state.vaults.protected_item_count(&vault).await? > 0;
    match call.method {
        Method::GET => Ok(ok(backup::storage_config_json(&vault, protected))),
        Method::PUT | Method::PATCH => {
            let body: Value = call.parse()?;
            let properties = backup::storage_config_request(&body)?;
            let vault = state
                .vaults
                .patch_properties(&vault, properties, &call.caller.object_id)
                .await?;
            Ok(if call.method == Method::PATCH {
                StatusCode::NO_CONTENT.into_response()
            } else {
                ok(backup::storage_config_json(&vault, protected))
            })
        }
        _ => Err(call.no_route()),
    }
}

async fn vault_config(state: &VsState, call: &ArmCall, vault: Vault) -> Result<Response> {
    let protected = state.vaults.protected_item_count(&vault).await? > 0;
    match call.method {
        Method::GET => Ok(ok(backup::vault_config_json(&vault, protected))),
        Method::PUT | Method::PATCH => {
            let body: Value = call.parse()?;
            let properties = backup::vault_config_request(&body)?;
            let vault = state
                .vaults
                .patch_properties(&vault, properties, &call.caller.object_id)
                .await?;
            Ok(ok(backup::vault_config_json(&vault, protected)))
        }
        _ => Err(call.no_route()),
    }
}

/// MARS views answer only to `backupManagementType eq 'MAB'` (or no filter).
fn is_mab(call: &ArmCall) -> bool {
    call.filter().admits("backupmanagementtype", "MAB")
}

async fn containers(
    backup: &Backup,
    call: &ArmCall,
    vault: &Vault,
    one: Option<&str>,
) -> Result<Response> {
    let all = backup.containers(vault).await?;
    let items = backup.items(vault).await?;
    let last_status = |container: &str| {
        items
            .iter()
            .filter(|i| i.container.eq_ignore_ascii_case(container))
            .filter_map(|i| i.last_backup_status.as_deref())
            .next()
    };
    let render = |(c, n): &(backup::Container, i64)| {
        backup::container_json(vault, c, *n, last_status(&c.name))
    };
    if let Some(name) = one {
        let found = all
            .iter()
            .find(|(c, _)| c.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                VsError::NotFound(format!(
                    "Protection container '{name}' is not registered in vault {}.",
                    vault.name
                ))
            })?;
        return Ok(ok(render(found)));
    }
    let filter = call.filter();
    let listed = if is_mab(call) {
        all.iter()
            .filter(|(c, _)| filter.admits("friendlyname", &c.friendly_name))
            .map(render)
            .collect()
    } else {
        vec![]
    };
    Ok(call.paged(listed))
}

async fn items(
    state: &VsState,
    call: &ArmCall,
    vault: &Vault,
    one: Option<(&str, &str)>,
) -> Result<Response> {
    let now = state.clock.unix();
    state.lifecycle.sweep(vault, now).await?;
    let days = crate::lifecycle::soft_delete_days(vault).unwrap_or(0);
    let all = state.backup.items(vault).await?;
    if let Some((container, name)) = one {
        let found = all
            .iter()
            .find(|i| {
                i.container.eq_ignore_ascii_case(container) && i.name.eq_ignore_ascii_case(name)
            })
            .ok_or_else(|| {
                VsError::NotFound(format!(
                    "Protected item '{name}' of container '{container}' was not found in vault {}.",
                    vault.name
                ))
            })?;
        return Ok(ok(backup::item_json(vault, found, now, days)));
    }
    let filter = call.filter();
    let file_folder = filter.admits("itemtype", "FileFolder");
    let listed = if is_mab(call) && file_folder {
        all.iter()
            .filter(|i| filter.admits("containername", &i.container))
            .filter(|i| filter.admits("policyname", &i.policy_name))
            .map(|i| backup::item_json(vault, i, now, days))
            .collect()
    } else {
        vec![]
    };
    Ok(call.paged(listed))
}

/// `PUT` of a protected item: `isRehydrate: true` undeletes soft-deleted data; `policyId`
/// binds a policy (its points are re-planned).
async fn update_item(
    state: &VsState,
    call: &ArmCall,
    vault: &Vault,
    container: &str,
    item: &str,
) -> Result<Response> {
    let body: Value = call.parse()?;
    let properties = body.get("properties").cloned().unwrap_or(Value::Null);
    if !properties.is_object() {
        return Err(VsError::BadRequest(
            "properties must be an object (a MabFileFolderProtectedItem).".into(),
        ));
    }
    if properties["isRehydrate"].as_bool() == Some(true) {
        state.lifecycle.undelete(vault, container, item).await?;
    }
    if let Some(policy_id) = properties["policyId"].as_str().filter(|p| !p.is_empty()) {
        let name = policy_id.rsplit('/').next().unwrap_or(policy_id);
        state
            .lifecycle
            .bind_policy(vault, container, item, name)
            .await?;
    }
    items(state, call, vault, Some((container, item))).await
}

async fn recovery_points(
    state: &VsState,
    call: &ArmCall,
    vault: &Vault,
    container: &str,
    item: &str,
    one: Option<&str>,
) -> Result<Response> {
    state.lifecycle.sweep(vault, state.clock.unix()).await?;
    let points = state.backup.recovery_points(vault, container, item).await?;
    if let Some(name) = one {
        let point = points.iter().find(|p| p.name == name).ok_or_else(|| {
            VsError::NotFound(format!(
                "Recovery point '{name}' of item '{item}' was not found."
            ))
        })?;
        return Ok(ok(backup::recovery_point_json(
            vault, container, item, point,
        )));
    }
    Ok(call.paged(
        points
            .iter()
            .map(|p| backup::recovery_point_json(vault, container, item, p))
            .collect(),
    ))
}

async fn jobs(
    state: &VsState,
    call: &ArmCall,
    vault: &Vault,
    one: Option<&str>,
) -> Result<Response> {
    state
        .data
        .fail_abandoned_jobs(vault.id, None, state.clock.unix())
        .await?;
    let backup = &state.backup;
    let all = backup.jobs(vault).await?;
    if let Some(id) = one {
        let job = all
            .iter()
            .find(|j| j.id.eq_ignore_ascii_case(id))
            .ok_or_else(|| {
                VsError::NotFound(format!("Job '{id}' was not found in vault {}.", vault.name))
            })?;
        return Ok(ok(backup::job_json(vault, job)));
    }
    let filter = call.filter();
    let listed = if is_mab(call) {
        all.iter()
            .filter(|j| filter.admits("operation", &j.operation))
            .filter(|j| filter.admits("status", &j.status))
            .map(|j| backup::job_json(vault, j))
            .collect()
    } else {
        vec![]
    };
    Ok(call.paged(listed))
}

async fn policies(backup: &Backup, call: &ArmCall, vault: &Vault) -> Result<Response> {
    let mut listed = Vec::new();
    if is_mab(call) {
        for (name, properties) in backup.policies(vault).await? {
            let count = backup.policy_item_count(vault, &name).await?;
            listed.push(backup::policy_json(vault, &name, &properties, count));
        }
    }
    Ok(call.paged(listed))
}

async fn one_policy(
    state: &VsState,
    call: &ArmCall,
    vault: &Vault,
    name: &str,
) -> Result<Response> {
    let backup = &state.backup;
    match call.method {
        Method::GET => {
            let (name, properties) = backup
                .policies(vault)
                .await?
                .into_iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    VsError::NotFound(format!(
                        "Policy '{name}' was not found in vault {}.",
                        vault.name
                    ))
                })?;
            let count = backup.policy_item_count(vault, &name).await?;
            Ok(ok(backup::policy_json(vault, &name, &properties, count)))
        }
        Method::PUT => {
            sim_core::arm::check_resource_name("Policy", name, 150)
                .map_err(VsError::InvalidName)?;
            let body: Value = call.parse()?;
            let properties = policy::validate(body.get("properties").unwrap_or(&Value::Null))?;
            // Existing points follow the new retention (an immutable vault refuses to
            // shorten any).
            state
                .lifecycle
                .policy_changing(vault, name, &properties)
                .await?;
            backup.put_policy(vault, name, &properties).await?;
            let count = backup.policy_item_count(vault, name).await?;
            Ok(ok(backup::policy_json(vault, name, &properties, count)))
        }
        Method::DELETE => Ok(if backup.delete_policy(vault, name).await? {
            StatusCode::OK.into_response()
        } else {
            StatusCode::NO_CONTENT.into_response()
        }),
        _ => Err(call.no_route()),
    }
}
