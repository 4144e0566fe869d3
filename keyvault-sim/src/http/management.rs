//! ARM management plane for `Microsoft.KeyVault/vaults`, served under `/subscriptions/...`
//! on its own port (vault-server forwards `providers/Microsoft.KeyVault` here). ARM paths
//! are case-insensitive, so routing matches lower-cased segments by hand.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use sim_core::ApiError;
use sim_core::arm::{ArmCall, iso};

use super::KvState;
use crate::error::KvError;
use crate::policy::{AccessPolicy, PolicyEdit};
use crate::vault_spec::{VaultRequest, parse};
use crate::vaults::{Upserted, Vault};
use sim_core::arm::request_authority;

/// The management router. `vault_dns` is `vault.localhost:<data-plane port>`, from which
/// each vault's `vaultUri` is made.
pub fn router(state: KvState, vault_dns: String) -> Router {
    Router::new().fallback(move |method, uri, headers, body| {
        arm(state.clone(), vault_dns.clone(), method, uri, headers, body)
    })
}

struct Call<'a> {
    state: &'a KvState,
    arm: ArmCall,
    vault_dns: &'a str,
}

async fn arm(
    state: KvState,
    vault_dns: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let correlation = sim_core::arm::correlation_id(&headers);
    let mut response = match handle(&state, &vault_dns, method, &uri, &headers, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    response
        .headers_mut()
        .insert("x-ms-correlation-request-id", correlation);
    response
}

async fn handle(
    state: &KvState,
    vault_dns: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let query: BTreeMap<String, String> =
        serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
    sim_core::arm::require_api_version(&query)?;
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = state
        .arm_verifier
        .verify_header(authorization)
        .await
        .map_err(ApiError::from)?;
    // vault-server forwards with the host the client called, so links point back at it.
    let origin = headers
        .get("x-forwarded-host")
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| request_authority(uri, headers));
    let call = Call {
        state,
        arm: ArmCall::new(caller, method, uri.path(), query, origin, body),
        vault_dns,
    };
    let body: &[u8] = &call.arm.body;
    let segments: Vec<&str> = call.arm.segments.iter().map(String::as_str).collect();
    let lower = call.arm.lower();
    let m = &call.arm.method;
    Ok(match (lower.as_slice(), segments.as_slice()) {
        (
            [
                "subscriptions",
                _,
                "providers",
                "microsoft.keyvault",
                "vaults",
            ],
            [_, sub, ..],
        ) if m == Method::GET => call.list_vaults(sub, None).await?,
        (
            [
                "subscriptions",
                _,
                "resourcegroups",
                _,
                "providers",
                "microsoft.keyvault",
                "vaults",
            ],
            [_, sub, _, rg, ..],
        ) if m == Method::GET => call.list_vaults(sub, Some(rg)).await?,
        (
            [
                "subscriptions",
                _,
                "resourcegroups",
                _,
                "providers",
                "microsoft.keyvault",
                "vaults",
                _,
            ],
            [_, sub, _, rg, _, _, _, name],
        ) => call.vault(sub, rg, name, body).await?,
        (
            [
                "subscriptions",
                _,
                "resourcegroups",
                _,
                "providers",
                "microsoft.keyvault",
                "vaults",
                _,
                "accesspolicies",
                _,
            ],
            [_, sub, _, rg, _, _, _, name, _, kind],
        ) if m == Method::PUT => call.access_policies(sub, rg, name, kind, body).await?,
        (
            [
                "subscriptions",
                _,
                "providers",
                "microsoft.keyvault",
                "deletedvaults",
            ],
            [_, sub, ..],
        ) if m == Method::GET => call.list_deleted(sub).await?,
        (
            [
                "subscriptions",
                _,
                "providers",
                "microsoft.keyvault",
                "locations",
                _,
                "deletedvaults",
                _,
            ],
            [_, sub, _, _, _, location, _, name],
        ) if m == Method::GET => call.get_deleted(sub, location, name).await?,
        (
            [
                "subscriptions",
                _,
                "providers",
                "microsoft.keyvault",
                "locations",
                _,
                "deletedvaults",
                _,
                "purge",
            ],
            [_, sub, _, _, _, location, _, name, _],
        ) if m == Method::POST => call.purge_deleted(sub, location, name).await?,
        (
            [
                "subscriptions",
                _,
                "providers",
                "microsoft.keyvault",
                "checknameavailability",
            ],
            [_, sub, ..],
        ) if m == Method::POST => call.check_name(sub, body).await?,
        _ => {
            return Err(KvError::NoRoute {
                method: call.arm.method.to_string(),
                path: call.arm.path.clone(),
            }
            .into());
        }
    })
}

const VAULTS_READ: &str = "Microsoft.KeyVault/vaults/read";
const VAULTS_WRITE: &str = "Microsoft.KeyVault/vaults/write";
const VAULTS_DELETE: &str = "Microsoft.KeyVault/vaults/delete";

impl Call<'_> {
    async fn authorize(
        &self,
        subscription: &str,
        action: &str,
        write: bool,
    ) -> Result<(), KvError> {
        Ok(self
            .state
            .roles
            .authorize(&self.arm.caller, subscription, action, write)
            .await?)
    }

    async fn list_vaults(&self, sub: &str, group: Option<&str>) -> Result<Response, KvError> {
        self.authorize(sub, VAULTS_READ, false).await?;
        let vaults = self.state.vaults.list(sub, group).await?;
        let items = vaults.iter().map(|v| self.vault_json(v)).collect();
        Ok(self.paged(items))
    }

    /// `$top` and `$skiptoken` (an offset) over a complete list, with an absolute nextLink.
    fn paged(&self, items: Vec<Value>) -> Response {
        self.arm.page(items, None)
    }

    async fn vault(
        &self,
        sub: &str,
        rg: &str,
        name: &str,
        body: &[u8],
    ) -> Result<Response, KvError> {
        let vaults = &self.state.vaults;
        match self.arm.method {
            Method::GET => {
                self.authorize(sub, VAULTS_READ, false).await?;
                let vault = vaults.get(sub, rg, name).await?;
                Ok(self.json(StatusCode::OK, self.vault_json(&vault)))
            }
            Method::PUT => {
                self.authorize(sub, VAULTS_WRITE, true).await?;
                let request: VaultRequest = parse(body)?;
                request.check_complete()?;
                Ok(
                    match vaults.create_or_update(sub, rg, name, request).await? {
                        Upserted::Created(vault) => {
                            self.json(StatusCode::CREATED, self.vault_json(&vault))
                        }
                        Upserted::Updated(vault) => {
                            self.json(StatusCode::OK, self.vault_json(&vault))
                        }
                    },
                )
            }
            Method::PATCH => {
                self.authorize(sub, VAULTS_WRITE, true).await?;
                let request: VaultRequest = parse(body)?;
                let vault = vaults.patch(sub, rg, name, request).await?;
                Ok(self.json(StatusCode::OK, self.vault_json(&vault)))
            }
            Method::DELETE => {
                self.authorize(sub, VAULTS_DELETE, true).await?;
                Ok(if vaults.delete(sub, rg, name).await? {
                    StatusCode::OK.into_response()
                } else {
                    StatusCode::NO_CONTENT.into_response()
                })
            }
            _ => Err(KvError::NoRoute {
                method: self.arm.method.to_string(),
                path: self.arm.path.clone(),
            }),
        }
    }

    async fn access_policies(
        &self,
        sub: &str,
        rg: &str,
        name: &str,
        kind: &str,
        body: &[u8],
    ) -> Result<Response, KvError> {
        self.authorize(sub, "Microsoft.KeyVault/vaults/accessPolicies/write", true)
            .await?;
        let edit = PolicyEdit::parse(kind).ok_or_else(|| {
            KvError::InvalidRequest(format!(
                "The access policy operation '{kind}' is not valid; use 'add', 'replace' or 'remove'."
            ))
        })?;
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Body {
            properties: Properties,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Properties {
            access_policies: Vec<AccessPolicy>,
        }
        let request: Body = parse(body)?;
        let changes = request.properties.access_policies;
        let vault = self
            .state
            .vaults
            .edit_access_policies(sub, rg, name, edit, &changes)
            .await?;
        Ok(self.json(
            StatusCode::OK,
            json!({
                "id": format!("{}/accessPolicies/{}", vault.arm_id(), kind.to_ascii_lowercase()),
                "name": kind.to_ascii_lowercase(),
                "type": "Microsoft.KeyVault/vaults/accessPolicies",
                "location": vault.location,
                "properties": {"accessPolicies": changes},
            }),
        ))
    }

    async fn list_deleted(&self, sub: &str) -> Result<Response, KvError> {
        self.authorize(sub, "Microsoft.KeyVault/deletedVaults/read", false)
            .await?;
        let vaults = self.state.vaults.list_deleted(sub).await?;
        let items = vaults.iter().map(deleted_json).collect();
        Ok(self.paged(items))
    }

    async fn get_deleted(
        &self,
        sub: &str,
        location: &str,
        name: &str,
    ) -> Result<Response, KvError> {
        self.authorize(sub, "Microsoft.KeyVault/deletedVaults/read", false)
            .await?;
        let vault = self.state.vaults.get_deleted(sub, location, name).await?;
        Ok(self.json(StatusCode::OK, deleted_json(&vault)))
    }

    async fn purge_deleted(
        &self,
        sub: &str,
        location: &str,
        name: &str,
    ) -> Result<Response, KvError> {
        self.authorize(
            sub,
            "Microsoft.KeyVault/locations/deletedVaults/purge/action",
            true,
        )
        .await?;
        self.state.vaults.purge_deleted(sub, location, name).await?;
        Ok(StatusCode::OK.into_response())
    }

    async fn check_name(&self, sub: &str, body: &[u8]) -> Result<Response, KvError> {
        self.authorize(sub, VAULTS_READ, false).await?;
        #[derive(Deserialize)]
        struct Body {
            name: String,
            #[serde(rename = "type")]
            kind: Option<String>,
        }
        let request: Body = parse(body)?;
        if let Some(kind) = &request.kind
            && !kind.eq_ignore_ascii_case("Microsoft.KeyVault/vaults")
        {
            return Err(KvError::InvalidRequest(format!(
                "type '{kind}' is not valid; use 'Microsoft.KeyVault/vaults'."
            )));
        }
        let (available, reason, message) =
            self.state.vaults.name_availability(&request.name).await?;
        let mut body = json!({"nameAvailable": available});
        if let Some(reason) = reason {
            body["reason"] = reason.into();
        }
        if let Some(message) = message {
            body["message"] = message.into();
        }
        Ok(self.json(StatusCode::OK, body))
    }

    fn json(&self, status: StatusCode, body: Value) -> Response {
        (status, Json(body)).into_response()
    }

    fn vault_json(&self, vault: &Vault) -> Value {
        let mut properties = json!({
            "tenantId": vault.tenant_id,
            "sku": {"family": "A", "name": vault.sku},
            "accessPolicies": vault.access_policies,
            "vaultUri": format!("https://{}.{}/", vault.name.to_ascii_lowercase(), self.vault_dns),
            "enabledForDeployment": false,
            "enabledForDiskEncryption": false,
            "enabledForTemplateDeployment": false,
            "enableSoftDelete": true,
            "softDeleteRetentionInDays": vault.soft_delete_days,
            "enableRbacAuthorization": false,
            "publicNetworkAccess": "Enabled",
            "provisioningState": "Succeeded",
        });
        if vault.purge_protection {
            properties["enablePurgeProtection"] = true.into();
        }
        for (key, value) in &vault.options {
            properties[key] = value.clone();
        }
        json!({
            "id": vault.arm_id(),
            "name": vault.name,
            "type": "Microsoft.KeyVault/vaults",
            "location": vault.location,
            "tags": vault.tags,
            "systemData": {
                "createdAt": iso(vault.created_at),
                "lastModifiedAt": iso(vault.updated_at),
            },
            "properties": properties,
        })
    }
}

fn deleted_json(vault: &Vault) -> Value {
    json!({
        "id": format!(
            "/subscriptions/{}/providers/Microsoft.KeyVault/locations/{}/deletedVaults/{}",
            vault.subscription_id, vault.location, vault.name
        ),
        "name": vault.name,
        "type": "Microsoft.KeyVault/deletedVaults",
        "properties": {
            "vaultId": vault.arm_id(),
            "location": vault.location,
            "deletionDate": vault.deleted_at.map(iso),
            "scheduledPurgeDate": vault.scheduled_purge_at.map(iso),
            "tags": vault.tags,
            "purgeProtectionEnabled": vault.purge_protection,
        },
    })
}
