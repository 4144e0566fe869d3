//! Key Vault data plane: `/secrets...` and `/deletedsecrets...` of the vault the host names.
//!
//! Every request is resolved to its vault, then authenticated: no or a bad token gets the
//! 401 challenge naming the vault's tenant and the resource to ask a token for; then the
//! access policy is checked for the operation's permission.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, body::Bytes};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sim_core::ApiError;
use sim_core::auth::{Principal, TokenError};

use super::wire::{self, RestoreBody, SetBody, UpdateBody};
use super::{KvState, host};
use crate::error::{Denial, KvError};
use crate::policy::{self, SecretPermission};
use crate::secrets::{MAX_PAGE, NewSecret, SecretUpdate};
use crate::vault_spec::parse;
use crate::vaults::Vault;
use sim_core::arm::request_authority;

pub fn router(state: KvState) -> Router {
    Router::new()
        .route("/secrets", get(list_secrets))
        .route(
            "/secrets/restore",
            post(restore)
                .put(set_named_restore)
                .get(get_named_restore)
                .delete(delete_named_restore),
        )
        .route(
            "/secrets/{name}",
            get(get_latest)
                .put(set_secret)
                .patch(update_latest)
                .delete(delete_secret),
        )
        .route("/secrets/{name}/", get(get_latest).patch(update_latest))
        .route("/secrets/{name}/versions", get(list_versions))
        .route("/secrets/{name}/backup", post(backup))
        .route(
            "/secrets/{name}/{version}",
            get(get_version).patch(update_version),
        )
        .route("/deletedsecrets", get(list_deleted))
        .route(
            "/deletedsecrets/{name}",
            get(get_deleted).delete(purge_deleted),
        )
        .route("/deletedsecrets/{name}/recover", post(recover))
        .fallback(no_route)
        .with_state(state)
}

/// A request resolved to its vault and authenticated.
pub struct VaultCall {
    vault: Arc<Vault>,
    caller: Principal,
    origin: String,
    query: HashMap<String, String>,
}

impl FromRequestParts<KvState> for VaultCall {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &KvState) -> Result<Self, Response> {
        let target = host::resolve(&request_authority(&parts.uri, &parts.headers));
        let query: HashMap<String, String> =
            serde_urlencoded::from_str(parts.uri.query().unwrap_or_default()).unwrap_or_default();
        let vault = state
            .vaults
            .live_by_name(&target.vault)
            .await
            .map_err(IntoResponse::into_response)?
            .ok_or_else(|| KvError::VaultHostNotFound(target.origin.clone()).into_response())?;
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let caller = state
            .data_verifier
            .verify_header_for(authorization, Some(&target.resource))
            .await
            .map_err(|e| challenge(state, &vault, &target.resource, &token_message(&e)))?;
        if !caller.tenant_id.eq_ignore_ascii_case(&vault.tenant_id) {
            let message = format!(
                "AKV10032: Invalid issuer. Expected a token of tenant {}, found one of tenant {}.",
                vault.tenant_id, caller.tenant_id
            );
            return Err(challenge(state, &vault, &target.resource, &message));
        }
        if !query.contains_key("api-version") {
            return Err(KvError::BadParameter(
                "The 'api-version' query parameter is required (for example api-version=7.4)."
                    .into(),
            )
            .into_response());
        }
        Ok(VaultCall {
            vault,
            caller,
            origin: target.origin,
            query,
        })
    }
}

fn token_message(error: &TokenError) -> String {
    match error {
        TokenError::Missing | TokenError::NotBearer => {
            "AKV10000: Request is missing a Bearer or PoP token.".to_string()
        }
        TokenError::WrongAudience(_) => format!(
            "AKV10022: Invalid audience: {error}. Request a token for https://vault.azure.net or for the resource in this challenge."
        ),
        TokenError::Expired { .. } => format!("AKV10005: Token expired: {error}."),
        _ => format!("AKV10001: The token is invalid: {error}."),
    }
}

/// 401 with the challenge the SDK follows: the vault's tenant and the resource to ask for.
fn challenge(state: &KvState, vault: &Vault, resource: &str, message: &str) -> Response {
    let value = format!(
        "Bearer authorization=\"{}/{}\", resource=\"{resource}\"",
        state.authority.trim_end_matches('/'),
        vault.tenant_id
    );
    let mut api = ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", message);
    if let Ok(value) = HeaderValue::from_str(&value) {
        api = api.with_header(header::WWW_AUTHENTICATE, value);
    }
    api.into_response()
}

impl VaultCall {
    fn authorize(&self, permission: SecretPermission) -> Result<(), KvError> {
        if policy::allows(&self.vault.access_policies, &self.caller, permission) {
            Ok(())
        } else {
            Err(KvError::AccessDenied(Box::new(Denial {
                app_id: self.caller.app_id.clone(),
                object_id: self.caller.object_id.clone(),
                tenant_id: self.caller.tenant_id.clone(),
                permission: permission.name(),
                vault: self.vault.name.clone(),
                location: self.vault.location.clone(),
            })))
        }
    }

    /// `maxresults` (1–25, default 25) and the opaque `$skiptoken`.
    fn paging(&self) -> Result<(i64, Option<String>), KvError> {
        let limit = match self.query.get("maxresults") {
            None => MAX_PAGE,
            Some(text) => match text.parse::<i64>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
                _ => {
                    return Err(KvError::BadParameter(format!(
                        "maxresults must be a number between 1 and {MAX_PAGE}; '{text}' was given."
                    )));
                }
            },
        };
        let token = match self.query.get("$skiptoken") {
            None => None,
            Some(token) => Some(
                URL_SAFE_NO_PAD
                    .decode(token)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        KvError::BadParameter(format!(
                            "$skiptoken '{token}' is not a token this vault issued; follow nextLink as returned."
                        ))
                    })?,
            ),
        };
        Ok((limit, token))
    }

    /// `{"value":[...],"nextLink":...}` with an absolute link to the next page.
    fn page(&self, path: &str, items: Vec<Value>, next: Option<String>, limit: i64) -> Response {
        let next_link = next.map(|after| {
            let api_version = self.query.get("api-version").cloned().unwrap_or_default();
            let query = serde_urlencoded::to_string([
                ("api-version", api_version),
                ("$skiptoken", URL_SAFE_NO_PAD.encode(after)),
                ("maxresults", limit.to_string()),
            ])
            .unwrap_or_default();
            format!("https://{}{path}?{query}", self.origin)
        });
        ok(json!({"value": items, "nextLink": next_link}))
    }
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, Json(body)).into_response()
}

type Handled = Result<Response, KvError>;

async fn get_latest(
    call: VaultCall,
    State(state): State<KvState>,
    Path(name): Path<String>,
) -> Handled {
    read_secret(call, state, name, None).await
}

async fn get_version(
    call: VaultCall,
    State(state): State<KvState>,
    Path((name, version)): Path<(String, String)>,
) -> Handled {
    read_secret(call, state, name, Some(version)).await
}

async fn get_named_restore(call: VaultCall, State(state): State<KvState>) -> Handled {
    read_secret(call, state, "restore".into(), None).await
}

async fn read_secret(
    call: VaultCall,
    state: KvState,
    name: String,
    version: Option<String>,
) -> Handled {
    call.authorize(SecretPermission::Get)?;
    let secret = state
        .secrets
        .get(&call.vault, &name, version.as_deref())
        .await?;
    Ok(ok(wire::bundle(&call.origin, &call.vault, &secret)))
}

async fn set_secret(
    call: VaultCall,
    State(state): State<KvState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Handled {
    write_secret(call, state, name, body).await
}

async fn set_named_restore(call: VaultCall, State(state): State<KvState>, body: Bytes) -> Handled {
    write_secret(call, state, "restore".into(), body).await
}

async fn write_secret(call: VaultCall, state: KvState, name: String, body: Bytes) -> Handled {
    call.authorize(SecretPermission::Set)?;
    let body: SetBody = parse_body(&body)?;
    let value = body.value.ok_or_else(|| {
        KvError::BadParameter(
            "The request body must carry the secret as {\"value\": \"...\"}.".into(),
        )
    })?;
    check_tags(body.tags.as_ref())?;
    let attributes = body.attributes.unwrap_or_default();
    let secret = state
        .secrets
        .set(
            &call.vault,
            &name,
            NewSecret {
                value,
                content_type: body.content_type,
                tags: body.tags,
                enabled: attributes.enabled,
                not_before: attributes.nbf,
                expires: attributes.exp,
            },
        )
        .await?;
    Ok(ok(wire::bundle(&call.origin, &call.vault, &secret)))
}

/// Key Vault parses bodies itself and answers 400 BadParameter naming the problem.
fn parse_body<T: for<'de> serde::Deserialize<'de>>(body: &[u8]) -> Result<T, KvError> {
    parse(body).map_err(|e| KvError::BadParameter(e.to_string()))
}

fn check_tags(tags: Option<&serde_json::Map<String, Value>>) -> Result<(), KvError> {
    let Some(tags) = tags else { return Ok(()) };
    if tags.len() > 15 {
        return Err(KvError::BadParameter(format!(
            "A secret may carry at most 15 tags; {} were given.",
            tags.len()
        )));
    }
    match tags.iter().find(|(_, v)| !v.is_string()) {
        Some((key, _)) => Err(KvError::BadParameter(format!(
            "Tag '{key}' must have a string value."
        ))),
        None => Ok(()),
    }
}

async fn update_latest(
    call: VaultCall,
    State(state): State<KvState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Handled {
    update_secret(call, state, name, None, body).await
}

async fn update_version(
    call: VaultCall,
    State(state): State<KvState>,
    Path((name, version)): Path<(String, String)>,
    body: Bytes,
) -> Handled {
    update_secret(call, state, name, Some(version), body).await
}

async fn update_secret(
    call: VaultCall,
    state: KvState,
    name: String,
    version: Option<String>,
    body: Bytes,
) -> Handled {
    call.authorize(SecretPermission::Set)?;
    let body: UpdateBody = parse_body(&body)?;
    check_tags(body.tags.as_ref())?;
    let attributes = body.attributes.unwrap_or_default();
    let secret = state
        .secrets
        .update(
            &call.vault,
            &name,
            version.as_deref().filter(|v| !v.is_empty()),
            SecretUpdate {
                content_type: body.content_type,
                tags: body.tags,
                enabled: attributes.enabled,
                not_before: attributes.nbf,
                expires: attributes.exp,
            },
        )
        .await?;
    Ok(ok(wire::bundle(&call.origin, &call.vault, &secret)))
}

async fn list_secrets(call: VaultCall, State(state): State<KvState>) -> Handled {
    call.authorize(SecretPermission::List)?;
    let (limit, after) = call.paging()?;
    let (secrets, more) = state
        .secrets
        .list(&call.vault, after.as_deref(), limit)
        .await?;
    let next = more
        .then(|| secrets.last().map(|s| s.name.clone()))
        .flatten();
    let items = secrets
        .iter()
        .map(|s| wire::item(&call.origin, &call.vault, s, false))
        .collect();
    Ok(call.page("/secrets", items, next, limit))
}

async fn list_versions(
    call: VaultCall,
    State(state): State<KvState>,
    Path(name): Path<String>,
) -> Handled {
    call.authorize(SecretPermission::List)?;
    let (limit, after) = call.paging()?;
    let (versions, more) = state
        .secrets
        .list_versions(&call.vault, &name, after.as_deref(), limit)
        .await?;
    let next = more
        .then(|| versions.last().map(|s| s.version.clone()))
        .flatten();
    let items = versions
        .iter()
        .map(|s| wire::item(&call.origin, &call.vault, s, true))
        .collect();
    Ok(call.page(&format!("/secrets/{name}/versions"), items, next, limit))
}

async fn delete_secret(
    call: VaultCall,
    State(state): State<KvState>,
    Path(name): Path<String>,
) -> Handled {
    remove_secret(call, state, name).await
}

async fn delete_named_restore(call: VaultCall, State(state): State<KvState>) -> Handled {
    remove_secret(call, state, "restore".into()).await
}

async fn remove_secret(call: VaultCall, state: KvState, name: String) -> Handled {
    call.authorize(SecretPermission::Delete)?;
    let (secret, deletion) = state.secrets.delete(&call.vault, &name).await?;
    Ok(ok(wire::deleted_bundle(
        &call.origin,
        &call.vault,
        &secret,
        deletion,
    )))
}

async fn get_deleted(
    call: VaultCall,
    State(state): State<KvState>,
    Path(name): Path<String>,
) -> Handled {
    // Key Vault requires `list` to read deleted secrets.
    call.authorize(SecretPermission::List)?;
    let (secret, deletion) = state.secrets.get_deleted(&call.vault, &name).await?;
    Ok(ok(wire::deleted_bundle(
        &call.origin,
        &call.vault,
        &secret,
        deletion,
    )))
}

async fn list_deleted(call: VaultCall, State(state): State<KvState>) -> Handled {
    call.authorize(SecretPermission::List)?;
    let (limit, after) = call.paging()?;
    let (secrets, more) = state
        .secrets
        .list_deleted(&call.vault, after.as_deref(), limit)
        .await?;
    let next = more
        .then(|| secrets.last().map(|(s, _)| s.name.clone()))
        .flatten();
    let items = secrets
        .iter()
        .map(|(s, d)| wire::deleted_item(&call.origin, &call.vault, s, *d))
        .collect();
    Ok(call.page("/deletedsecrets", items, next, limit))
}

async fn recover(
    call: VaultCall,
    State(state): State<KvState>,
    Path(name): Path<String>,
) -> Handled {
    call.authorize(SecretPermission::Recover)?;
    let secret = state.secrets.recover(&call.vault, &name).await?;
    Ok(ok(wire::bundle(&call.origin, &call.vault, &secret)))
}

async fn purge_deleted(
    call: VaultCall,
    State(state): State<KvState>,
    Path(name): Path<String>,
) -> Handled {
    call.authorize(SecretPermission::Purge)?;
    state.secrets.purge(&call.vault, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn backup(
    call: VaultCall,
    State(state): State<KvState>,
    Path(name): Path<String>,
) -> Handled {
    call.authorize(SecretPermission::Backup)?;
    let blob = state.secrets.backup(&call.vault, &name).await?;
    Ok(ok(json!({"value": URL_SAFE_NO_PAD.encode(blob)})))
}

async fn restore(call: VaultCall, State(state): State<KvState>, body: Bytes) -> Handled {
    call.authorize(SecretPermission::Restore)?;
    let body: RestoreBody = parse_body(&body)?;
    let blob = body
        .value
        .and_then(|v| URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')).ok())
        .ok_or_else(|| {
            KvError::BadParameter(
                "The request body must be {\"value\": \"<base64url backup blob>\"} as backup_secret returned it.".into(),
            )
        })?;
    let secret = state.secrets.restore(&call.vault, &blob).await?;
    Ok(ok(wire::bundle(&call.origin, &call.vault, &secret)))
}

async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> KvError {
    KvError::NoRoute {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
}
