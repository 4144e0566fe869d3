//! The whole azsim in-process (azsim-testkit: in memory, port 0, one CA), talked to over
//! HTTPS like any ARM client.
#![allow(dead_code)]

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sim_core::{SimClock, well_known};

pub const TENANT: &str = well_known::TENANT_ID;
pub const SUB: &str = well_known::SUBSCRIPTION_ID;
pub const API: &str = "api-version=2026-11-01";

pub struct TestArm {
    /// The whole azsim, in-process (azsim-testkit).
    pub kit: azsim_testkit::Stack,
    pub http: reqwest::Client,
    pub clock: SimClock,
    pub entra_url: String,
    pub url: String,
    pub ca_pem: String,
}

pub async fn start() -> TestArm {
    let kit = azsim_testkit::Stack::start().await.unwrap();
    TestArm {
        url: kit.arm_url(),
        entra_url: kit.entra_url(),
        http: kit.http.clone(),
        clock: kit.clock.clone(),
        ca_pem: kit.ca_pem.clone(),
        kit,
    }
}

impl TestArm {
    /// vault-server's in-process state (domain modules, the database).
    pub fn state(&self) -> &vault_server::http::VsState {
        &self.kit.vault_server.server.state
    }
}

pub type Response = (StatusCode, Value, reqwest::header::HeaderMap);

impl TestArm {
    pub async fn token_for(&self, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/{TENANT}/oauth2/v2.0/token", self.entra_url))
            .form(form)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    pub async fn token(&self, client_id: &str, secret: &str, scope: &str) -> String {
        let (_, body) = self
            .token_for(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", scope),
            ])
            .await;
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{body}"))
            .to_string()
    }

    pub async fn admin(&self) -> String {
        self.token(
            well_known::ADMIN_CLIENT_ID,
            well_known::ADMIN_CLIENT_SECRET,
            "https://management.azure.com/.default",
        )
        .await
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Response {
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            headers,
        )
    }

    /// An ARM call on `path` (api-version appended).
    pub async fn arm(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: &str,
    ) -> Response {
        let separator = if path.contains('?') { '&' } else { '?' };
        self.send(
            method,
            &format!("{}{path}{separator}{API}", self.url),
            body,
            Some(token),
        )
        .await
    }

    pub async fn group(&self, name: &str) {
        let token = self.admin().await;
        let (status, body, _) = self
            .arm(
                Method::PUT,
                &group_path(name),
                Some(json!({"location": "westeurope"})),
                &token,
            )
            .await;
        assert!(status.is_success(), "{body}");
    }

    pub async fn vault(&self, group: &str, name: &str, body: Value) -> Value {
        let token = self.admin().await;
        let (status, answer, _) = self
            .arm(Method::PUT, &vault_path(group, name), Some(body), &token)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        answer
    }
}

pub fn group_path(name: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/{name}")
}

pub fn vault_path(group: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.RecoveryServices/vaults/{name}",
        group_path(group)
    )
}

pub fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

pub fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

pub fn minimal_vault() -> Value {
    json!({"location": "westeurope", "sku": {"name": "RS0", "tier": "Standard"}, "properties": {}})
}

/// An admin-plane token (entra-sim's admin API).
pub async fn admin_plane(t: &TestArm) -> String {
    t.token(
        well_known::ADMIN_CLIENT_ID,
        well_known::ADMIN_CLIENT_SECRET,
        "api://azsim/.default",
    )
    .await
}

/// A registered server of `vault` with its own machine identity; returns its ARM token.
pub async fn machine(t: &TestArm, vault: &str, server: &str) -> String {
    machine_login(t, vault, server).await.token(t).await
}

/// A machine identity's client credentials (tokens expire as the clock moves).
pub struct MachineLogin {
    pub app_id: String,
    pub secret: String,
}

impl MachineLogin {
    pub async fn token(&self, t: &TestArm) -> String {
        t.token(
            &self.app_id,
            &self.secret,
            "https://management.azure.com/.default",
        )
        .await
    }
}

/// A registered server of `vault` with its own machine identity.
pub async fn machine_login(t: &TestArm, vault: &str, server: &str) -> MachineLogin {
    let admin = admin_plane(t).await;
    let apps = format!("{}/admin/tenants/{TENANT}/applications", t.entra_url);
    let (status, app, _) = t
        .send(
            Method::POST,
            &apps,
            Some(json!({"displayName": format!("mars-{server}")})),
            Some(&admin),
        )
        .await;
    assert!(status.is_success(), "{app}");
    let app_id = app["appId"].as_str().unwrap().to_string();
    let (_, secret, _) = t
        .send(
            Method::POST,
            &format!("{apps}/{app_id}/secrets"),
            Some(json!({})),
            Some(&admin),
        )
        .await;
    let state = t.state();
    let vault = state.vaults.get(SUB, "rg1", vault).await.unwrap();
    state
        .backup
        .register_container(&vault, server, "test", 1)
        .await
        .unwrap();
    state
        .data
        .add_machine(
            &app_id,
            app["servicePrincipalId"].as_str().unwrap(),
            &vault,
            server,
            1,
        )
        .await
        .unwrap();
    MachineLogin {
        app_id,
        secret: secret["secretText"].as_str().unwrap().to_string(),
    }
}

pub async fn data_plane(
    t: &TestArm,
    method: Method,
    path: &str,
    body: Option<Value>,
    token: &str,
) -> Response {
    t.send(
        method,
        &format!("{}/backup/v1{path}", t.url),
        body,
        Some(token),
    )
    .await
}

/// A pack of `blobs`, as the agent builds it.
pub fn pack(blobs: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let mut builder = backup_protocol::PackBuilder::default();
    for (id, blob) in blobs {
        builder.add(id.to_string(), bytes::Bytes::copy_from_slice(blob));
    }
    builder.finish()
}
