//! Cross Region Restore through ARM, in the shapes the official passive-stamp client
//! (`azure-mgmt-recoveryservicesbackup-passivestamp`, the `az backup … --use-secondary-region`
//! client) reads: the protected items and recovery points as the vault's **secondary**
//! region holds them, the AAD properties a CRR caller needs, and the CRR jobs.
//!
//! The passive stamp's list routes are the active ones with a trailing slash
//! (`…/backupProtectedItems/`, `…/recoveryPoints/`): that is how they are told apart here.
//! A point is in the secondary once every object it needs has been replicated there.

use axum::response::Response;
use serde_json::{Value, json};
use sim_core::well_known;

use super::VsState;
use crate::arm::{ArmCall, CallExt, ok};
use crate::backup;
use crate::blobs::{Placement, Redundancy};
use crate::error::{Result, VsError};
use crate::vaults::Vault;

/// The vault's placement when it may restore from its secondary region, else Azure's
/// refusal (not GeoRedundant, Cross Region Restore off, or the secondary region down).
pub async fn allowed(state: &VsState, vault: &Vault) -> Result<Placement> {
    let placement = state
        .blobs
        .placement(vault.id)
        .await?
        .ok_or_else(|| VsError::NotFound(format!("Vault {} was not found.", vault.name)))?;
    if placement.redundancy != Redundancy::Geo {
        return Err(VsError::CrossRegionRestore(format!(
            "Cross Region Restore is supported only for vaults with GeoRedundant storage; vault {} is {}.",
            vault.name,
            match placement.redundancy {
                Redundancy::Local => "LocallyRedundant",
                _ => "ZoneRedundant",
            }
        )));
    }
    let properties = Value::Object(vault.properties());
    if properties["redundancySettings"]["crossRegionRestore"].as_str() != Some("Enabled") {
        return Err(VsError::CrossRegionRestore(format!(
            "Cross Region Restore is not enabled for vault {}: enable it in the vault's Backup Configuration (redundancySettings.crossRegionRestore = Enabled).",
            vault.name
        )));
    }
    if let Some(region) = placement.secondary.as_deref()
        && state.blobs.is_down(region)
    {
        return Err(VsError::RegionUnavailable(region.to_string()));
    }
    Ok(placement)
}

/// Names of the points of a container that have reached the secondary region.
async fn replicated(state: &VsState, vault: &Vault, container: &str) -> Result<Vec<String>> {
    Ok(state
        .data
        .recovery_points(vault.id, container, true)
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect())
}

/// `GET …/vaults/{vault}/backupProtectedItems/`: the items with a point in the secondary.
pub async fn items(state: &VsState, call: &ArmCall, vault: &Vault) -> Result<Response> {
    allowed(state, vault).await?;
    let now = state.clock.unix();
    let days = crate::lifecycle::soft_delete_days(vault).unwrap_or(0);
    let mut listed = Vec::new();
    // The replicated points of each server, read once however many items it has.
    let mut by_server: std::collections::HashMap<String, Vec<String>> = Default::default();
    for item in state.backup.items(vault).await? {
        if !by_server.contains_key(&item.container) {
            let names = replicated(state, vault, &item.container).await?;
            by_server.insert(item.container.clone(), names);
        }
        let names = &by_server[&item.container];
        let points = state
            .backup
            .recovery_points(vault, &item.container, &item.name)
            .await?;
        if points.iter().any(|p| names.contains(&p.name)) {
            listed.push(backup::item_json(vault, &item, now, days));
        }
    }
    Ok(call.paged(listed))
}

/// `GET …/protectedItems/{item}/recoveryPoints/`: the item's points in the secondary.
pub async fn recovery_points(
    state: &VsState,
    call: &ArmCall,
    vault: &Vault,
    container: &str,
    item: &str,
) -> Result<Response> {
    allowed(state, vault).await?;
    let names = replicated(state, vault, container).await?;
    let points = state.backup.recovery_points(vault, container, item).await?;
    Ok(call.paged(
        points
            .iter()
            .filter(|p| names.contains(&p.name))
            .map(|p| backup::recovery_point_json(vault, container, item, p))
            .collect(),
    ))
}

/// `GET /subscriptions/{s}/providers/Microsoft.RecoveryServices/locations/{region}/backupAadProperties`.
pub async fn aad_properties(call: &ArmCall, region: &str) -> Result<Response> {
    let region = sim_core::arm::region(region)
        .ok_or_else(|| VsError::BadRequest(sim_core::arm::unknown_location(region, "locations")))?;
    Ok(ok(json!({
        "id": call.path.trim_end_matches('/'),
        "name": "backupAadProperties",
        "type": "Microsoft.RecoveryServices/locations/backupAadProperties",
        "properties": {
            "tenantId": well_known::TENANT_ID,
            "audience": format!("https://RecoveryServices/IaasCoord/aadmgmt/{region}"),
            "servicePrincipalClientId": well_known::ADMIN_CLIENT_ID,
            "servicePrincipalObjectId": well_known::ADMIN_OBJECT_ID,
            "authority": "https://login.windows.net",
        },
    })))
}

/// `POST …/locations/{region}/backupCrrJobs` with `{"resourceId": vault}`: that vault's jobs.
pub async fn jobs(state: &VsState, call: &ArmCall) -> Result<Response> {
    let body: Value = call.parse()?;
    let resource = body["resourceId"].as_str().ok_or_else(|| {
        VsError::BadRequest("The body must be {\"resourceId\": \"<the vault's ARM id>\"}.".into())
    })?;
    let parts: Vec<&str> = resource.trim_matches('/').split('/').collect();
    let [_, subscription, _, group, _, _, _, name] = parts.as_slice() else {
        return Err(VsError::BadRequest(format!(
            "resourceId '{resource}' is not a Recovery Services vault id."
        )));
    };
    let vault = state.vaults.get(subscription, group, name).await?;
    allowed(state, &vault).await?;
    let listed = state
        .backup
        .jobs(&vault)
        .await?
        .iter()
        .map(|job| backup::job_json(&vault, job))
        .collect();
    Ok(call.paged(listed))
}
