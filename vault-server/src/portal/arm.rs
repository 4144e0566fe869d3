//! The portal's ARM client: this server's own ARM endpoint, over HTTPS, with the signed-in
//! user's token — exactly what an SDK client would send.

use reqwest::Method;
use serde_json::Value;
use sim_core::well_known;

const API_VERSION: &str = "api-version=2026-11-01";

pub fn subscription() -> String {
    format!("/subscriptions/{}", well_known::SUBSCRIPTION_ID)
}

pub struct Arm {
    http: reqwest::Client,
    origin: String,
    token: String,
}

impl Arm {
    pub fn new(http: reqwest::Client, origin: String, token: String) -> Arm {
        Arm {
            http,
            origin,
            token,
        }
    }

    fn url(&self, path: &str) -> String {
        let separator = if path.contains('?') { '&' } else { '?' };
        format!("{}{path}{separator}{API_VERSION}", self.origin)
    }

    /// The JSON answer, or ARM's error message.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            Ok(value)
        } else {
            Err(value["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("ARM answered {status}")))
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, String> {
        self.call(Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<(), String> {
        self.call(Method::DELETE, path, None).await.map(|_| ())
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, String> {
        self.call(Method::PATCH, path, Some(body)).await
    }

    /// A POST whose answer is a file: its suggested name and text.
    pub async fn post_text(&self, path: &str) -> Result<(String, String), String> {
        let response = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let name = response
            .headers()
            .get(reqwest::header::CONTENT_DISPOSITION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("filename=\"").nth(1))
            .map(|v| v.trim_end_matches('"').to_string())
            .unwrap_or_else(|| "vault.VaultCredentials".into());
        let text = response.text().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok((name, text))
        } else {
            let value: Value = serde_json::from_str(&text).unwrap_or_default();
            Err(value["error"]["message"]
                .as_str()
                .unwrap_or(&text)
                .to_string())
        }
    }
}
