//! Subscriptions, tenants, resource groups and `/metadata/endpoints` (for `az cloud register`).

use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sim_core::well_known;

use super::{VsState, authorize};
use crate::arm::{ArmCall, CallExt, created, ok};
use crate::error::{Result, VsError};
use crate::groups;

fn subscription_json() -> Value {
    json!({
        "id": format!("/subscriptions/{}", well_known::SUBSCRIPTION_ID),
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": well_known::SUBSCRIPTION_ID,
        "tenantId": well_known::TENANT_ID,
        "displayName": "azsim subscription",
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off",
        },
    })
}

pub async fn subscriptions(state: &VsState, call: &ArmCall) -> Result<Response> {
    if call.method != Method::GET {
        return Err(call.no_route());
    }
    let lower = call.lower();
    let visible = state
        .roles
        .authorize(
            &call.caller,
            well_known::SUBSCRIPTION_ID,
            "Microsoft.Resources/subscriptions/read",
            false,
        )
        .await
        .is_ok();
    Ok(match lower.as_slice() {
        ["tenants"] => ok(json!({"value": [{
            "id": format!("/tenants/{}", well_known::TENANT_ID),
            "tenantId": well_known::TENANT_ID,
            "displayName": "azsim",
            "defaultDomain": well_known::TENANT_DOMAIN,
            "tenantCategory": "Home",
        }]})),
        ["subscriptions"] => {
            let value: Vec<Value> = if visible {
                vec![subscription_json()]
            } else {
                vec![]
            };
            ok(json!({"value": value, "count": {"type": "Total", "value": value.len()}}))
        }
        _ => {
            let id = call.segment(1);
            sim_core::rbac::check_subscription(id)?;
            authorize(state, call, "Microsoft.Resources/subscriptions/read").await?;
            ok(subscription_json())
        }
    })
}

#[derive(Deserialize)]
struct GroupBody {
    location: Option<String>,
    tags: Option<Map<String, Value>>,
}

pub async fn resource_groups(state: &VsState, call: &ArmCall) -> Result<Response> {
    let subscription = call.segment(1);
    if call.segments.len() == 3 {
        if call.method != Method::GET {
            return Err(call.no_route());
        }
        authorize(
            state,
            call,
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        )
        .await?;
        let items = groups::list(&state.pool, subscription)
            .await?
            .iter()
            .map(|g| g.to_json())
            .collect();
        return Ok(call.paged(items));
    }
    let name = call.segment(3);
    match call.method {
        Method::GET => {
            authorize(
                state,
                call,
                "Microsoft.Resources/subscriptions/resourceGroups/read",
            )
            .await?;
            Ok(ok(groups::get(&state.pool, subscription, name)
                .await?
                .to_json()))
        }
        Method::HEAD => {
            authorize(
                state,
                call,
                "Microsoft.Resources/subscriptions/resourceGroups/read",
            )
            .await?;
            Ok(match groups::get(&state.pool, subscription, name).await {
                Ok(_) => StatusCode::NO_CONTENT.into_response(),
                Err(VsError::ResourceGroupNotFound(_)) => StatusCode::NOT_FOUND.into_response(),
                Err(e) => return Err(e),
            })
        }
        Method::PUT | Method::PATCH => {
            authorize(
                state,
                call,
                "Microsoft.Resources/subscriptions/resourceGroups/write",
            )
            .await?;
            let body: GroupBody = call.parse()?;
            if call.method == Method::PATCH {
                groups::get(&state.pool, subscription, name).await?;
            } else if body.location.is_none() {
                return Err(VsError::BadRequest(
                    "The 'location' property is required: a PUT sends the whole resource group (use PATCH to change its tags).".into(),
                ));
            }
            let (group, was_created) = groups::put(
                &state.pool,
                subscription,
                name,
                body.location,
                body.tags,
                state.clock.unix(),
            )
            .await?;
            Ok(if was_created {
                created(group.to_json())
            } else {
                ok(group.to_json())
            })
        }
        Method::DELETE => {
            authorize(
                state,
                call,
                "Microsoft.Resources/subscriptions/resourceGroups/delete",
            )
            .await?;
            delete_group(state, subscription, name).await
        }
        _ => Err(call.no_route()),
    }
}

/// Deletes the group and the vaults in it; a vault that cannot be deleted stops it.
async fn delete_group(state: &VsState, subscription: &str, name: &str) -> Result<Response> {
    let group = match groups::get(&state.pool, subscription, name).await {
        Ok(group) => group,
        Err(VsError::ResourceGroupNotFound(_)) => return Ok(StatusCode::NO_CONTENT.into_response()),
        Err(e) => return Err(e),
    };
    for vault in state.vaults.list(subscription, Some(&group.name)).await? {
        state
            .vaults
            .delete(subscription, &group.name, &vault.name)
            .await?;
    }
    groups::delete(&state.pool, subscription, &group.name).await?;
    Ok(StatusCode::OK.into_response())
}

/// The cloud description the Azure CLI reads in `az cloud register` (an object; an array for
/// `api-version=2019-05-01`, as ARM does).
pub fn metadata_endpoints(state: &VsState, origin: &str, query: &str) -> Response {
    let login = state.vaults.entra().authority.clone();
    let keyvault_dns = state
        .keyvault_dns
        .clone()
        .unwrap_or_else(|| "vault.localhost".into());
    let cloud = json!({
        "name": "azsim",
        "authentication": {
            "loginEndpoint": format!("{login}/"),
            "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
            "tenant": "common",
            "identityProvider": "AAD",
        },
        "resourceManager": format!("https://{origin}/"),
        "graph": "https://graph.windows.net/",
        "graphAudience": "https://graph.windows.net/",
        "microsoftGraphResourceId": "https://graph.microsoft.com/",
        "media": "https://rest.media.azure.net",
        "gallery": "https://gallery.azure.com/",
        "batch": "https://batch.core.windows.net/",
        "sqlManagement": "https://management.core.windows.net:8443/",
        "suffixes": {
            "keyVaultDns": keyvault_dns,
            "storage": "core.windows.net",
            "sqlServerHostname": "database.windows.net",
            "acrLoginServer": "azurecr.io",
        },
    });
    if query.contains("2019-05-01") {
        ok(json!([cloud]))
    } else {
        ok(cloud)
    }
}

/// `GET /subscriptions/{s}[/resourceGroups/{g}]/resources`: the generic resource list over
/// every type azsim holds (Recovery Services vaults here, Key Vaults from keyvault-sim),
/// with `$filter` on `resourceType`, `name` and `location`. `az keyvault list`,
/// `az keyvault show -n` (without `-g`) and `az resource list` read it.
pub async fn generic_resources(
    state: &VsState,
    call: &ArmCall,
    bearer: &str,
    group: Option<&str>,
) -> Result<Response> {
    authorize(
        state,
        call,
        "Microsoft.Resources/subscriptions/resources/read",
    )
    .await?;
    let subscription = call.segment(1);
    if let Some(group) = group {
        groups::get(&state.pool, subscription, group).await?;
    }
    let mut resources: Vec<Value> = state
        .vaults
        .list(subscription, group)
        .await?
        .iter()
        .map(|vault| generic(&vault.to_json()))
        .collect();
    resources.extend(key_vaults(state, bearer, subscription, group).await?);
    let filter = call.filter();
    resources.retain(|r| {
        let field = |key: &str| r[key].as_str().unwrap_or_default().to_string();
        filter.admits("resourcetype", &field("type"))
            && filter.admits("name", &field("name"))
            && filter.admits("location", &field("location"))
    });
    Ok(call.paged(resources))
}

/// The generic-resource view of a resource: id, name, type, location, tags (and SKU and
/// identity when it has them).
fn generic(resource: &Value) -> Value {
    let mut out = json!({
        "id": resource["id"],
        "name": resource["name"],
        "type": resource["type"],
        "location": resource["location"],
        "tags": resource.get("tags").cloned().unwrap_or_else(|| json!({})),
    });
    for key in ["sku", "identity", "kind"] {
        if let Some(value) = resource.get(key) {
            out[key] = value.clone();
        }
    }
    out
}

/// Key Vaults of the subscription (or group), asked of keyvault-sim with the caller's token.
async fn key_vaults(
    state: &VsState,
    bearer: &str,
    subscription: &str,
    group: Option<&str>,
) -> Result<Vec<Value>> {
    let Some(management) = &state.keyvault_management else {
        return Ok(Vec::new());
    };
    let scope = match group {
        Some(group) => format!("/subscriptions/{subscription}/resourceGroups/{group}"),
        None => format!("/subscriptions/{subscription}"),
    };
    let mut next = Some(format!(
        "{management}{scope}/providers/Microsoft.KeyVault/vaults?api-version=2023-07-01"
    ));
    let mut out = Vec::new();
    while let Some(url) = next.take() {
        let response = state
            .http
            .get(&url)
            .header(header::AUTHORIZATION, bearer)
            .send()
            .await
            .map_err(|e| VsError::Upstream(format!("keyvault-sim cannot be reached: {e}")))?;
        // A caller without rights on Key Vaults sees the rest of the list.
        if response.status() == reqwest::StatusCode::FORBIDDEN {
            return Ok(Vec::new());
        }
        if !response.status().is_success() {
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            return Err(VsError::Upstream(format!(
                "keyvault-sim refused the Key Vault list ({status}): {text}"
            )));
        }
        let page: Value = response
            .json()
            .await
            .map_err(|e| VsError::Upstream(format!("keyvault-sim answered badly: {e}")))?;
        out.extend(page["value"].as_array().into_iter().flatten().map(generic));
        next = page["nextLink"].as_str().map(str::to_string);
    }
    Ok(out)
}
