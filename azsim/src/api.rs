//! The public APIs of a running stack, called as the well-known admin app: ARM (with the
//! Key Vault resources it forwards), the Key Vault data plane and entra-sim's admin API.
//! `demo` and `seed` go through these, so they meet the same validation as any client.

use std::path::PathBuf;

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sim_core::well_known;

/// The api-version sent with ARM calls.
const ARM_API_VERSION: &str = "2026-11-01";
const ARM_SCOPE: &str = "https://management.azure.com/.default";
const ADMIN_SCOPE: &str = "api://azsim/.default";
const KEY_VAULT_SCOPE: &str = "https://vault.azure.net/.default";
const KEY_VAULT_API_VERSION: &str = "7.4";

/// Where the stack answers, with a client that trusts its CA.
pub struct Endpoints {
    pub http: reqwest::Client,
    pub entra: String,
    pub arm: String,
    pub keyvault_mgmt: String,
    pub keyvault_port: u16,
    pub ca_file: PathBuf,
}

impl Endpoints {
    /// The endpoints of a running stack (its CA is fetched when it lives in memory).
    pub async fn of(
        located: &crate::Located,
        timeout: std::time::Duration,
    ) -> anyhow::Result<Endpoints> {
        Ok(Endpoints {
            http: located.http(timeout).await?,
            entra: located.entra_url(),
            arm: located.arm_url(),
            keyvault_mgmt: located.url(located.ports.keyvault_management),
            keyvault_port: located.ports.keyvault,
            ca_file: located.ca_file().await?,
        })
    }

    pub async fn token(&self, scope: &str) -> anyhow::Result<String> {
        crate::clock::well_known_token(&self.http, &self.entra, scope).await
    }

    /// One call; the status and the JSON body (or the text as a JSON string).
    async fn call(
        &self,
        method: Method,
        url: &str,
        scope: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(self.token(scope).await?);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|err| crate::unreachable(url, err))?;
        let status = response.status();
        let text = response.text().await?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    fn arm_url(&self, path: &str) -> String {
        let separator = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{separator}api-version={ARM_API_VERSION}", self.arm)
    }

    /// An ARM call that must succeed; returns its JSON (or text) body.
    pub async fn arm(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, value) = self
            .call(
                method.clone(),
                &self.arm_url(path),
                ARM_SCOPE,
                body.as_ref(),
            )
            .await?;
        if !status.is_success() {
            bail!(
                "{method} {path} was refused ({status}): {}",
                error_message(&value)
            );
        }
        Ok(value)
    }

    /// An ARM read: `None` when the resource does not exist.
    pub async fn arm_get(&self, path: &str) -> anyhow::Result<Option<Value>> {
        let (status, value) = self
            .call(Method::GET, &self.arm_url(path), ARM_SCOPE, None)
            .await?;
        match status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(value)),
            s => bail!("GET {path} was refused ({s}): {}", error_message(&value)),
        }
    }

    /// A call to entra-sim's admin API that must succeed (`None`: 404).
    pub async fn entra_admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Option<Value>> {
        let url = format!("{}{path}", self.entra);
        let (status, value) = self
            .call(method.clone(), &url, ADMIN_SCOPE, body.as_ref())
            .await?;
        match status {
            StatusCode::NOT_FOUND if method == Method::GET => Ok(None),
            s if s.is_success() => Ok(Some(value)),
            s => bail!(
                "{method} {path} was refused ({s}): {}",
                error_message(&value)
            ),
        }
    }

    /// A call to a service's admin API that must succeed; its JSON answer.
    pub async fn admin_call(&self, method: Method, url: &str) -> anyhow::Result<Value> {
        let (status, value) = self.call(method.clone(), url, ADMIN_SCOPE, None).await?;
        if !status.is_success() {
            bail!(
                "{method} {url} was refused ({status}): {}",
                error_message(&value)
            );
        }
        Ok(value)
    }

    /// A service's admin-plane upsert (e.g. `/admin/roleAssignments/{objectId}`).
    pub async fn admin_put(&self, url: &str, body: &Value) -> anyhow::Result<()> {
        let (status, value) = self.call(Method::PUT, url, ADMIN_SCOPE, Some(body)).await?;
        if !status.is_success() {
            bail!(
                "PUT {url} was refused ({status}): {}",
                error_message(&value)
            );
        }
        Ok(())
    }

    /// A Key Vault data-plane client for `vault`: `{vault}.vault.localhost` is resolved to
    /// this stack in-process (no hosts file needed), TLS still checks that name.
    fn key_vault(&self, vault: &str) -> anyhow::Result<(reqwest::Client, String)> {
        let host = format!("{vault}.vault.localhost");
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], self.keyvault_port));
        let ca = std::fs::read(&self.ca_file)
            .with_context(|| format!("reading {}", self.ca_file.display()))?;
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca)?])
            .resolve(&host, address)
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok((client, format!("https://{host}:{}", self.keyvault_port)))
    }

    /// The current value of a Key Vault secret; `None` when it does not exist.
    pub async fn get_secret(&self, vault: &str, name: &str) -> anyhow::Result<Option<String>> {
        let (client, base) = self.key_vault(vault)?;
        let url = format!("{base}/secrets/{name}?api-version={KEY_VAULT_API_VERSION}");
        let response = client
            .get(&url)
            .bearer_auth(self.token(KEY_VAULT_SCOPE).await?)
            .send()
            .await
            .map_err(|err| crate::unreachable(&url, err))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        match status {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(body["value"].as_str().map(str::to_owned)),
            s => bail!(
                "reading secret '{name}' was refused ({s}): {}",
                error_message(&body)
            ),
        }
    }

    /// Sets a Key Vault secret through the data plane.
    pub async fn set_secret(&self, vault: &str, name: &str, value: &str) -> anyhow::Result<()> {
        let (client, base) = self.key_vault(vault)?;
        let url = format!("{base}/secrets/{name}?api-version={KEY_VAULT_API_VERSION}");
        let response = client
            .put(&url)
            .bearer_auth(self.token(KEY_VAULT_SCOPE).await?)
            .json(&serde_json::json!({ "value": value }))
            .send()
            .await
            .map_err(|err| crate::unreachable(&url, err))?;
        let status = response.status();
        if !status.is_success() {
            let body: Value = response.json().await.unwrap_or_default();
            bail!(
                "setting secret '{name}' in Key Vault '{vault}' was refused ({status}): {}",
                error_message(&body)
            );
        }
        Ok(())
    }
}

/// The message of an ARM, Key Vault or admin error envelope, else the whole body.
fn error_message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| body.to_string())
}

/// The subscription every resource lives in.
pub fn subscription_path() -> String {
    format!("/subscriptions/{}", well_known::SUBSCRIPTION_ID)
}
