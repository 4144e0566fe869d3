//! Starts a real entra-sim and keyvault-sim in-process (port 0, their own CA) and talks to
//! them over HTTPS like any client. keyvault-sim fetches entra-sim's JWKS over HTTPS, as
//! the standalone binary does.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sim_core::auth::{KeyCache, KeySource};
use sim_core::cli::Runtime;
use sim_core::db::Storage;
use sim_core::tls::TlsMaterial;
use sim_core::{SimClock, well_known};

pub const TENANT: &str = well_known::TENANT_ID;
pub const SUBSCRIPTION: &str = well_known::SUBSCRIPTION_ID;
pub const API: &str = "api-version=7.6";
pub const ARM_API: &str = "api-version=2026-05-15";

pub struct TestKv {
    pub entra: entra_sim::Running,
    pub kv: keyvault_sim::Running,
    pub http: reqwest::Client,
    pub clock: SimClock,
    pub entra_url: String,
    pub data_port: u16,
    pub mgmt_url: String,
}

/// Vault host names the test client resolves to the data plane.
pub const HOSTS: &[&str] = &[
    "azsim.vault.localhost",
    "kv1.vault.localhost",
    "kv2.vault.localhost",
    "guarded.vault.localhost",
    "nosuch.vault.localhost",
];

pub async fn start() -> TestKv {
    start_with(Storage::Memory).await
}

pub async fn start_with(storage: Storage) -> TestKv {
    sim_core::install_crypto_provider();
    let runtime = Runtime {
        tls: TlsMaterial::load_or_create(storage.data_dir(), &[]).unwrap(),
        storage,
        clock: SimClock::in_memory(),
    };
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let entra = entra_sim::start(&runtime, loopback, 0, 0).await.unwrap();
    let entra_url = entra.https.url();
    let keys = KeyCache::new(KeySource::remote(&entra_url, &runtime.tls.ca_pem).unwrap());
    let kv = keyvault_sim::start(&runtime, loopback, 0, 0, keys, entra_url.clone())
        .await
        .unwrap();
    let data_port = kv.data.addr.port();
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(runtime.tls.ca_pem.as_bytes()).unwrap()]);
    for host in HOSTS {
        builder = builder.resolve(host, SocketAddr::new(loopback, data_port));
    }
    TestKv {
        mgmt_url: kv.management.url(),
        entra,
        kv,
        http: builder.build().unwrap(),
        clock: runtime.clock.clone(),
        entra_url,
        data_port,
    }
}

pub type Response = (StatusCode, Value, reqwest::header::HeaderMap);

impl TestKv {
    pub fn vault(&self, name: &str) -> String {
        format!("https://{name}.vault.localhost:{}", self.data_port)
    }

    /// A token from entra-sim (client credentials with a secret).
    pub async fn token(&self, client_id: &str, secret: &str, scope: &str) -> String {
        let response: Value = self
            .http
            .post(format!("{}/{TENANT}/oauth2/v2.0/token", self.entra_url))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        response["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token: {response}"))
            .to_string()
    }

    pub async fn admin_kv_token(&self) -> String {
        self.token(
            well_known::ADMIN_CLIENT_ID,
            well_known::ADMIN_CLIENT_SECRET,
            "https://vault.azure.net/.default",
        )
        .await
    }

    pub async fn admin_arm_token(&self) -> String {
        self.token(
            well_known::ADMIN_CLIENT_ID,
            well_known::ADMIN_CLIENT_SECRET,
            "https://management.azure.com/.default",
        )
        .await
    }

    pub async fn admin_plane_token(&self) -> String {
        self.token(
            well_known::ADMIN_CLIENT_ID,
            well_known::ADMIN_CLIENT_SECRET,
            "api://azsim/.default",
        )
        .await
    }

    /// Registers an app in entra-sim; returns (app id, secret, object id).
    pub async fn register_app(&self, name: &str) -> (String, String, String) {
        let token = self.admin_plane_token().await;
        let base = format!("{}/admin/tenants/{TENANT}/applications", self.entra_url);
        let (_, app, _) = self
            .send(
                Method::POST,
                &base,
                Some(json!({"displayName": name})),
                Some(&token),
            )
            .await;
        let app_id = app["appId"].as_str().unwrap().to_string();
        let (_, secret, _) = self
            .send(
                Method::POST,
                &format!("{base}/{app_id}/secrets"),
                Some(json!({})),
                Some(&token),
            )
            .await;
        (
            app_id,
            secret["secretText"].as_str().unwrap().to_string(),
            app["servicePrincipalId"].as_str().unwrap().to_string(),
        )
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

    /// A data-plane call on `vault` with `path` (query appended with the api-version).
    pub async fn kv(
        &self,
        method: Method,
        vault: &str,
        path: &str,
        body: Option<Value>,
        token: &str,
    ) -> Response {
        let separator = if path.contains('?') { '&' } else { '?' };
        let url = format!("{}{path}{separator}{API}", self.vault(vault));
        self.send(method, &url, body, Some(token)).await
    }

    /// A management-plane call, `path` below `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.KeyVault/`.
    pub async fn arm(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: &str,
    ) -> Response {
        let separator = if path.contains('?') { '&' } else { '?' };
        let url = format!("{}{path}{separator}{ARM_API}", self.mgmt_url);
        self.send(method, &url, body, Some(token)).await
    }

    pub fn vault_path(group: &str, name: &str) -> String {
        format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/Microsoft.KeyVault/vaults/{name}"
        )
    }

    /// Creates a vault granting the admin app every secret permission.
    pub async fn create_vault(&self, name: &str, extra: Value) -> Value {
        let token = self.admin_arm_token().await;
        let mut properties = json!({
            "tenantId": TENANT,
            "sku": {"family": "A", "name": "standard"},
            "accessPolicies": [{
                "tenantId": TENANT,
                "objectId": well_known::ADMIN_OBJECT_ID,
                "permissions": {"secrets": ["all"]},
            }],
        });
        for (key, value) in extra.as_object().unwrap() {
            properties[key] = value.clone();
        }
        let (status, body, _) = self
            .arm(
                Method::PUT,
                &Self::vault_path("rg1", name),
                Some(json!({"location": "eastus", "properties": properties})),
                &token,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }
}

pub fn code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
}

pub fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}
