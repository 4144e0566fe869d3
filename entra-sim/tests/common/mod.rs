//! Starts a real entra-sim in-process (in memory, port 0, its own CA) and talks to it over
//! HTTPS like any client would.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sim_core::cli::Runtime;
use sim_core::db::Storage;
use sim_core::tls::TlsMaterial;
use sim_core::{SimClock, well_known};

pub const TENANT: &str = well_known::TENANT_ID;
pub const ADMIN_ID: &str = well_known::ADMIN_CLIENT_ID;
pub const ADMIN_SECRET: &str = well_known::ADMIN_CLIENT_SECRET;
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";

pub struct TestEntra {
    pub running: entra_sim::Running,
    pub base: String,
    pub mi_base: String,
    pub http: reqwest::Client,
    pub clock: SimClock,
    pub ca_pem: String,
}

pub async fn start() -> TestEntra {
    sim_core::install_crypto_provider();
    let runtime = Runtime {
        storage: Storage::Memory,
        tls: TlsMaterial::load_or_create(None, &[]).unwrap(),
        clock: SimClock::in_memory(),
    };
    let running = entra_sim::start(&runtime, IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 0)
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(runtime.tls.ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    TestEntra {
        base: running.https.url(),
        mi_base: running.managed_identity.url(),
        running,
        http,
        clock: runtime.clock.clone(),
        ca_pem: runtime.tls.ca_pem.clone(),
    }
}

impl TestEntra {
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.base)
    }

    /// POSTs a form to the v2 token endpoint of `tenant`.
    pub async fn token_request(&self, tenant: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .http
            .post(self.token_url(tenant))
            .form(form)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    pub async fn secret_token(
        &self,
        client_id: &str,
        secret: &str,
        scope: &str,
    ) -> (StatusCode, Value) {
        self.token_request(
            TENANT,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", scope),
            ],
        )
        .await
    }

    pub async fn admin_token(&self) -> String {
        let (status, body) = self
            .secret_token(ADMIN_ID, ADMIN_SECRET, "api://azsim/.default")
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    /// Calls the admin API with the well-known admin's token.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let token = self.admin_token().await;
        self.call(method, path, body, Some(&token)).await
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Registers an app with a fresh secret; returns (app_id, secret, service principal id).
    pub async fn register_app(&self, name: &str) -> (String, String, String) {
        let (status, app) = self
            .admin(
                reqwest::Method::POST,
                &format!("/admin/tenants/{TENANT}/applications"),
                Some(json!({"displayName": name})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{app}");
        let app_id = app["appId"].as_str().unwrap().to_string();
        let (status, secret) = self
            .admin(
                reqwest::Method::POST,
                &format!("/admin/tenants/{TENANT}/applications/{app_id}/secrets"),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{secret}");
        (
            app_id,
            secret["secretText"].as_str().unwrap().to_string(),
            app["servicePrincipalId"].as_str().unwrap().to_string(),
        )
    }
}

/// The claims of a JWT, without verification (tests verify separately).
pub fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// The AADSTS code of an Entra error body.
pub fn aadsts(body: &Value) -> u64 {
    body["error_codes"][0]
        .as_u64()
        .unwrap_or_else(|| panic!("not an Entra error: {body}"))
}
