//! vault-server's calls to entra-sim's admin API: a vault's system-assigned identity and the
//! registration app whose certificates (vault credentials) let agents sign in.

use std::time::Duration;

use serde_json::{Value, json};
use sim_core::well_known;

use crate::error::{Result, VsError};

#[derive(Clone)]
pub struct EntraAdmin {
    http: reqwest::Client,
    /// entra-sim's public URL (also the `AadAuthority` of vault credentials).
    pub authority: String,
    pub tenant: String,
}

/// A created managed identity.
pub struct Identity {
    pub principal_id: String,
    pub client_id: String,
    pub tenant_id: String,
}

/// A created app registration.
pub struct App {
    pub app_id: String,
    pub service_principal_id: String,
}

impl EntraAdmin {
    pub fn new(authority: &str, ca_pem: &str) -> Result<Self, sim_core::Error> {
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes())
            .map_err(|e| sim_core::Error::Tls(e.to_string()))?;
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| sim_core::Error::Tls(e.to_string()))?;
        Ok(EntraAdmin {
            http,
            authority: authority.trim_end_matches('/').to_string(),
            tenant: well_known::TENANT_ID.to_string(),
        })
    }

    async fn token(&self) -> Result<String> {
        let response: Value = self
            .http
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                self.authority, self.tenant
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", well_known::ADMIN_CLIENT_ID),
                ("client_secret", well_known::ADMIN_CLIENT_SECRET),
                ("scope", "api://azsim/.default"),
            ])
            .send()
            .await
            .map_err(upstream)?
            .json()
            .await
            .map_err(upstream)?;
        response["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| {
                VsError::Upstream(format!("entra-sim refused the admin token: {response}"))
            })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let token = self.token().await?;
        let mut request = self
            .http
            .request(
                method,
                format!("{}/admin/tenants/{}{path}", self.authority, self.tenant),
            )
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(upstream)?;
        let status = response.status();
        let text = response.text().await.map_err(upstream)?;
        if !status.is_success() {
            return Err(VsError::Upstream(format!(
                "entra-sim {path}: {status} {text}"
            )));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn create_system_identity(&self, name: &str, resource_id: &str) -> Result<Identity> {
        let body = json!({"type": "SystemAssigned", "name": name, "resourceId": resource_id});
        let identity = self
            .call(reqwest::Method::POST, "/managedIdentities", Some(body))
            .await?;
        let field = |name: &str| identity[name].as_str().unwrap_or_default().to_string();
        Ok(Identity {
            principal_id: field("principalId"),
            client_id: field("clientId"),
            tenant_id: field("tenantId"),
        })
    }

    pub async fn delete_identity(&self, principal_id: &str) -> Result<()> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/managedIdentities/{principal_id}"),
            None,
        )
        .await
        .map(|_| ())
    }

    pub async fn create_app(&self, display_name: &str) -> Result<App> {
        let app = self
            .call(
                reqwest::Method::POST,
                "/applications",
                Some(json!({"displayName": display_name})),
            )
            .await?;
        Ok(App {
            app_id: app["appId"].as_str().unwrap_or_default().to_string(),
            service_principal_id: app["servicePrincipalId"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        })
    }

    pub async fn delete_app(&self, app_id: &str) -> Result<()> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/applications/{app_id}"),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Registers a public certificate (base64 DER) on the app; returns its key id.
    pub async fn add_certificate(&self, app_id: &str, certificate: &str) -> Result<String> {
        let credential = self
            .call(
                reqwest::Method::POST,
                &format!("/applications/{app_id}/certificates"),
                Some(json!({"certificate": certificate})),
            )
            .await?;
        Ok(credential["keyId"].as_str().unwrap_or_default().to_string())
    }
}

fn upstream(e: reqwest::Error) -> VsError {
    VsError::Upstream(format!("entra-sim could not be reached: {e}"))
}
