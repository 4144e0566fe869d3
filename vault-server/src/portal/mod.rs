//! The portal: server-rendered pages for demos — sign in through entra-sim (authorization
//! code + PKCE, a real user token), list and create Recovery Services vaults, set their
//! backup configuration, immutability and identity, download vault credentials, and watch
//! registered servers, backup items, recovery points and jobs.
//!
//! Every page reads and writes through the same ARM API the SDKs use, over HTTPS with the
//! signed-in user's token (`arm.rs`): the portal keeps no state of its own but sessions.
//! The session cookie is `HttpOnly; Secure; SameSite=Lax` (no cross-site form posts).

mod arm;
mod pages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};
use sim_core::well_known;

use crate::http::VsState;
use arm::Arm;

const COOKIE: &str = "azsim_portal";
/// A session lasts as long as its token (a minute less, so ARM never sees it expire): then
/// the next page signs the user in again.
const TOKEN_MARGIN: i64 = 60;
/// Seconds a started sign-in may take, and how many may be under way at once.
const PENDING_LIFETIME: i64 = 600;
const MAX_PENDING: usize = 10_000;

#[derive(Default)]
pub struct Sessions {
    /// Session id → (ARM token, expiry on the simulated clock).
    signed_in: Mutex<HashMap<String, (String, i64)>>,
    /// OAuth `state` → (PKCE verifier, when the sign-in started), while the user is at the
    /// sign-in page; pruned after [`PENDING_LIFETIME`] and capped, since anyone can start one.
    pending: Mutex<HashMap<String, (String, i64)>>,
}

#[derive(Clone)]
struct Portal {
    state: VsState,
    sessions: Arc<Sessions>,
}

pub fn router(state: VsState) -> Router {
    let portal = Portal {
        state,
        sessions: Arc::new(Sessions::default()),
    };
    Router::new()
        .route("/portal", get(vaults))
        .route("/portal/", get(|| async { Redirect::to("/portal") }))
        .route("/portal/signin", get(signed_in))
        .route("/portal/signout", post(sign_out))
        .route("/portal/vaults", post(create_vault))
        .route("/portal/vaults/{group}/{vault}", get(vault))
        .route("/portal/vaults/{group}/{vault}/settings", post(settings))
        .route(
            "/portal/vaults/{group}/{vault}/credentials",
            get(credentials),
        )
        .route(
            "/portal/vaults/{group}/{vault}/servers/{server}/delete",
            post(delete_server),
        )
        .with_state(portal)
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random generator works");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What a page handler needs of the request: its headers (cookie) and `https://host:port`
/// as the browser reached this server (`Host`, or the authority over HTTP/2).
struct Request {
    headers: HeaderMap,
    origin: String,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Request {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let authority = sim_core::arm::request_authority(&parts.uri, &parts.headers);
        Ok(Request {
            headers: parts.headers.clone(),
            origin: format!("https://{authority}"),
        })
    }
}

impl Portal {
    /// The signed-in user's ARM client, or the redirect that signs them in.
    fn session(&self, request: &Request) -> Result<Arm, Redirect> {
        let headers = &request.headers;
        let now = self.state.clock.unix();
        let id = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix(&format!("{COOKIE}=")))
            .next()
            .map(str::to_string);
        let token = id.and_then(|id| {
            let sessions = self
                .sessions
                .signed_in
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            sessions
                .get(&id)
                .filter(|(_, expires)| *expires > now)
                .map(|(token, _)| token.clone())
        });
        match token {
            Some(token) => Ok(Arm::new(
                self.state.http.clone(),
                request.origin.clone(),
                token,
            )),
            None => Err(self.sign_in(&request.origin)),
        }
    }

    /// Redirects to entra-sim's sign-in page with a fresh PKCE challenge.
    fn sign_in(&self, origin: &str) -> Redirect {
        let verifier = random_token();
        let challenge = URL_SAFE_NO_PAD.encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
        );
        let state = random_token();
        let now = self.state.clock.unix();
        let mut pending = self
            .sessions
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, (_, started)| now - *started < PENDING_LIFETIME);
        if pending.len() >= MAX_PENDING {
            // The oldest goes: a flood of unfinished sign-ins cannot grow this without bound.
            if let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            {
                pending.remove(&oldest);
            }
        }
        pending.insert(state.clone(), (verifier, now));
        drop(pending);
        let query = serde_urlencoded::to_string([
            ("client_id", well_known::PORTAL_CLIENT_ID),
            ("response_type", "code"),
            (
                "redirect_uri",
                &format!("{origin}{}", well_known::PORTAL_REDIRECT_PATH),
            ),
            ("scope", "https://management.azure.com/.default"),
            ("state", &state),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
        .unwrap_or_default();
        let authority = &self.state.vaults.entra().authority;
        Redirect::to(&format!(
            "{authority}/{}/oauth2/v2.0/authorize?{query}",
            well_known::TENANT_ID
        ))
    }
}

fn page(markup: maud::Markup) -> Response {
    Html(markup.into_string()).into_response()
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The redirect back from entra-sim: the code is redeemed (with the verifier kept for
/// this `state`) for the user's ARM token, and a session starts.
async fn signed_in(
    State(portal): State<Portal>,
    request: Request,
    Query(callback): Query<Callback>,
) -> Response {
    if let Some(error) = callback.error {
        let message = callback.error_description.unwrap_or(error);
        return page(pages::problem("Sign-in failed", &message));
    }
    let verifier = callback.state.as_ref().and_then(|state| {
        portal
            .sessions
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(state)
            .map(|(verifier, _)| verifier)
    });
    let (Some(code), Some(verifier)) = (callback.code, verifier) else {
        return page(pages::problem(
            "Sign-in failed",
            "This sign-in link is stale or was used already. Open the portal again.",
        ));
    };
    let authority = portal.state.vaults.entra().authority.clone();
    let redirect_uri = format!("{}{}", request.origin, well_known::PORTAL_REDIRECT_PATH);
    let answer = portal
        .state
        .http
        .post(format!(
            "{authority}/{}/oauth2/v2.0/token",
            well_known::TENANT_ID
        ))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", well_known::PORTAL_CLIENT_ID),
            ("code", &code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", &verifier),
            ("scope", "https://management.azure.com/.default"),
        ])
        .send()
        .await;
    let body: Value = match answer {
        Ok(response) => response.json().await.unwrap_or_default(),
        Err(error) => return page(pages::problem("Sign-in failed", &error.to_string())),
    };
    let Some(token) = body["access_token"].as_str() else {
        let message = body["error_description"]
            .as_str()
            .unwrap_or("no token")
            .to_string();
        return page(pages::problem("Sign-in failed", &message));
    };
    let session = random_token();
    let now = portal.state.clock.unix();
    let lifetime = body["expires_in"].as_i64().unwrap_or(3599) - TOKEN_MARGIN;
    let mut sessions = portal
        .sessions
        .signed_in
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    sessions.retain(|_, (_, expires)| *expires > now);
    sessions.insert(session.clone(), (token.to_string(), now + lifetime.max(0)));
    drop(sessions);
    let mut response = Redirect::to("/portal").into_response();
    let cookie = format!("{COOKIE}={session}; Path=/portal; HttpOnly; Secure; SameSite=Lax");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn sign_out(State(portal): State<Portal>, headers: HeaderMap) -> Response {
    if let Some(cookie) = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()) {
        let mut sessions = portal
            .sessions
            .signed_in
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        sessions.retain(|id, _| !cookie.contains(id.as_str()));
    }
    let mut response = page(pages::signed_out());
    let cookie = format!("{COOKIE}=; Path=/portal; HttpOnly; Secure; SameSite=Lax; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The vault list with the Create form (`notice`: a refusal to show above it).
async fn vaults(State(portal): State<Portal>, request: Request) -> Response {
    let arm = match portal.session(&request) {
        Ok(arm) => arm,
        Err(redirect) => return redirect.into_response(),
    };
    render_vaults(&arm, None, &Value::Null).await
}

async fn render_vaults(arm: &Arm, notice: Option<&str>, form: &Value) -> Response {
    let listed = arm
        .get(&format!(
            "{}/providers/Microsoft.RecoveryServices/vaults",
            arm::subscription()
        ))
        .await;
    let groups = arm
        .get(&format!("{}/resourcegroups", arm::subscription()))
        .await;
    match (listed, groups) {
        (Ok(vaults), Ok(groups)) => page(pages::vaults(&vaults, &groups, notice, form)),
        (Err(error), _) | (_, Err(error)) => page(pages::problem("ARM refused", &error)),
    }
}

#[derive(Deserialize)]
struct NewVault {
    #[serde(default)]
    resource_group: String,
    #[serde(default)]
    new_resource_group: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    location: String,
}

async fn create_vault(State(portal): State<Portal>, request: Request, body: Bytes) -> Response {
    let arm = match portal.session(&request) {
        Ok(arm) => arm,
        Err(redirect) => return redirect.into_response(),
    };
    let Ok(form) = serde_urlencoded::from_bytes::<NewVault>(&body) else {
        return render_vaults(&arm, Some("The form was incomplete."), &Value::Null).await;
    };
    let echo = json!({"name": form.name, "location": form.location, "newResourceGroup": form.new_resource_group});
    let (group, new_group) = match form.new_resource_group.trim() {
        "" => (form.resource_group.trim().to_string(), false),
        named => (named.to_string(), true),
    };
    if group.is_empty() {
        return render_vaults(
            &arm,
            Some("Choose a resource group or name a new one."),
            &echo,
        )
        .await;
    }
    let group_path = format!("{}/resourceGroups/{group}", arm::subscription());
    if new_group
        && let Err(error) = arm
            .put(&group_path, &json!({"location": form.location}))
            .await
    {
        return render_vaults(&arm, Some(&error), &echo).await;
    }
    let vault_path = format!(
        "{group_path}/providers/Microsoft.RecoveryServices/vaults/{}",
        form.name
    );
    let created = arm
        .put(&vault_path, &json!({"location": form.location, "sku": {"name": "RS0", "tier": "Standard"}, "properties": {}}))
        .await;
    match created {
        Ok(_) => Redirect::to(&format!("/portal/vaults/{group}/{}", form.name)).into_response(),
        Err(error) => render_vaults(&arm, Some(&error), &echo).await,
    }
}

fn vault_path(group: &str, vault: &str) -> String {
    format!(
        "{}/resourceGroups/{group}/providers/Microsoft.RecoveryServices/vaults/{vault}",
        arm::subscription()
    )
}

#[derive(Deserialize)]
struct JobFilter {
    status: Option<String>,
    operation: Option<String>,
}

async fn vault(
    State(portal): State<Portal>,
    request: Request,
    Path((group, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let arm = match portal.session(&request) {
        Ok(arm) => arm,
        Err(redirect) => return redirect.into_response(),
    };
    let filter: JobFilter = serde_urlencoded::from_str(query.as_deref().unwrap_or_default())
        .unwrap_or(JobFilter {
            status: None,
            operation: None,
        });
    render_vault(&arm, &group, &name, None, &filter).await
}

async fn render_vault(
    arm: &Arm,
    group: &str,
    name: &str,
    notice: Option<&str>,
    filter: &JobFilter,
) -> Response {
    let path = vault_path(group, name);
    let vault = match arm.get(&path).await {
        Ok(vault) => vault,
        Err(error) => return page(pages::problem("Vault not found", &error)),
    };
    let mab = "$filter=backupManagementType%20eq%20%27MAB%27";
    let servers = arm
        .get(&format!("{path}/backupProtectionContainers?{mab}"))
        .await
        .unwrap_or_default();
    let items = arm
        .get(&format!("{path}/backupProtectedItems?{mab}"))
        .await
        .unwrap_or_default();
    let jobs = arm
        .get(&format!("{path}/backupJobs"))
        .await
        .unwrap_or_default();
    let key_vaults = arm
        .get(&format!(
            "{}/providers/Microsoft.KeyVault/vaults",
            arm::subscription()
        ))
        .await
        .unwrap_or_default();
    let mut points = Vec::new();
    for item in items["value"].as_array().into_iter().flatten() {
        let id = item["id"].as_str().unwrap_or_default();
        let relative = id
            .split("/providers/Microsoft.RecoveryServices/vaults/")
            .nth(1)
            .and_then(|r| r.split_once('/'))
            .map(|(_, r)| r.to_string())
            .unwrap_or_default();
        let listed = arm
            .get(&format!("{path}/{relative}/recoveryPoints"))
            .await
            .unwrap_or_default();
        points.push((item.clone(), listed));
    }
    let jobs = pages::filter_jobs(&jobs, filter.status.as_deref(), filter.operation.as_deref());
    page(pages::vault(
        pages::VaultView {
            group,
            vault: &vault,
            servers: &servers,
            points: &points,
            jobs: &jobs,
            key_vaults: &key_vaults,
        },
        notice,
        filter.status.as_deref(),
        filter.operation.as_deref(),
    ))
}

#[derive(Deserialize)]
struct Settings {
    section: String,
    #[serde(default)]
    redundancy: String,
    #[serde(default)]
    cross_region_restore: Option<String>,
    #[serde(default)]
    immutability: String,
    #[serde(default)]
    identity: String,
    #[serde(default)]
    soft_delete: String,
    #[serde(default)]
    soft_delete_days: String,
    /// The ARM id of the Key Vault whose access policy gains the vault identity's `set`.
    #[serde(default)]
    key_vault: String,
}

async fn settings(
    State(portal): State<Portal>,
    request: Request,
    Path((group, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let arm = match portal.session(&request) {
        Ok(arm) => arm,
        Err(redirect) => return redirect.into_response(),
    };
    let Ok(form) = serde_urlencoded::from_bytes::<Settings>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let patch = match form.section.as_str() {
        "redundancy" => json!({"properties": {"redundancySettings": {
            "standardTierStorageRedundancy": form.redundancy,
            "crossRegionRestore": if form.cross_region_restore.is_some() { "Enabled" } else { "Disabled" }}}}),
        "immutability" => {
            json!({"properties": {"securitySettings": {"immutabilitySettings": {"state": form.immutability}}}})
        }
        "identity" => {
            json!({"identity": {"type": if form.identity == "on" { "SystemAssigned" } else { "None" }}})
        }
        "softdelete" => {
            let days: Value = form
                .soft_delete_days
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(form.soft_delete_days.clone()));
            json!({"properties": {"securitySettings": {"softDeleteSettings": {
                "softDeleteState": form.soft_delete, "softDeleteRetentionPeriodInDays": days}}}})
        }
        "keyvault" => {
            let filter = JobFilter {
                status: None,
                operation: None,
            };
            let notice = match grant_key_vault(&arm, &group, &name, &form.key_vault).await {
                Ok(()) => "Saved.".to_string(),
                Err(error) => error,
            };
            return render_vault(&arm, &group, &name, Some(&notice), &filter).await;
        }
        _ => return StatusCode::BAD_REQUEST.into_response(),
    };
    let filter = JobFilter {
        status: None,
        operation: None,
    };
    match arm.patch(&vault_path(&group, &name), &patch).await {
        Ok(_) => render_vault(&arm, &group, &name, Some("Saved."), &filter).await,
        Err(error) => render_vault(&arm, &group, &name, Some(&error), &filter).await,
    }
}

/// Grants the vault's system-assigned identity `set` on a Key Vault's secrets (where agents'
/// passphrases are saved), through the Key Vault's ARM `accessPolicies/add`.
async fn grant_key_vault(
    arm: &Arm,
    group: &str,
    name: &str,
    key_vault: &str,
) -> Result<(), String> {
    let vault = arm.get(&vault_path(group, name)).await?;
    let principal = vault["identity"]["principalId"].as_str().ok_or(
        "The vault has no system-assigned identity: turn it on first (Identity).".to_string(),
    )?;
    if !key_vault.starts_with("/subscriptions/")
        || !key_vault.contains("/providers/Microsoft.KeyVault/vaults/")
    {
        return Err("Choose a Key Vault.".into());
    }
    arm.put(
        &format!("{key_vault}/accessPolicies/add"),
        &json!({"properties": {"accessPolicies": [{
            "tenantId": well_known::TENANT_ID, "objectId": principal,
            "permissions": {"secrets": ["set"]}}]}}),
    )
    .await
    .map(|_| ())
}

/// Unregisters a server (Backup Infrastructure › Protected servers › Delete): ARM's
/// `DELETE …/protectionContainers/{server}`, as `az backup container unregister` sends.
async fn delete_server(
    State(portal): State<Portal>,
    request: Request,
    Path((group, name, server)): Path<(String, String, String)>,
) -> Response {
    let arm = match portal.session(&request) {
        Ok(arm) => arm,
        Err(redirect) => return redirect.into_response(),
    };
    let path = format!(
        "{}/backupFabrics/Azure/protectionContainers/{server}",
        vault_path(&group, &name)
    );
    let filter = JobFilter {
        status: None,
        operation: None,
    };
    match arm.delete(&path).await {
        Ok(()) => {
            render_vault(
                &arm,
                &group,
                &name,
                Some(&format!("Server {server} was unregistered.")),
                &filter,
            )
            .await
        }
        Err(error) => render_vault(&arm, &group, &name, Some(&error), &filter).await,
    }
}

/// Download vault credentials: the file ARM's `azsimVaultCredentials` action makes.
async fn credentials(
    State(portal): State<Portal>,
    request: Request,
    Path((group, name)): Path<(String, String)>,
) -> Response {
    let arm = match portal.session(&request) {
        Ok(arm) => arm,
        Err(redirect) => return redirect.into_response(),
    };
    match arm
        .post_text(&format!(
            "{}/azsimVaultCredentials",
            vault_path(&group, &name)
        ))
        .await
    {
        Ok((file_name, xml)) => {
            let disposition = format!("attachment; filename=\"{file_name}\"");
            let mut response = xml.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            if let Ok(value) = HeaderValue::from_str(&disposition) {
                headers.insert(header::CONTENT_DISPOSITION, value);
            }
            response
        }
        Err(error) => page(pages::problem("Vault credentials", &error)),
    }
}
