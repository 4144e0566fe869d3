//! Talking to Entra (client-assertion sign-in with a certificate) and to vault-server's
//! `/backup/v1` data plane. Tokens are cached until a minute before they expire.
//!
//! The agent keeps the service's time, not its own: every response's `Date` header updates
//! the skew, and assertions are signed at the service's time (as clients correct clock
//! skew), so `azsim clock advance` moves the agent along with the vault.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::credentials::{pem_to_der, thumbprint};
use crate::error::{AgentError, Result};

/// A certificate identity in Entra: the vault's registration app or the machine's own.
#[derive(Clone)]
pub struct CertIdentity {
    pub authority: String,
    pub tenant_id: String,
    pub client_id: String,
    pub certificate_pem: String,
    pub key_pem: String,
}

impl CertIdentity {
    /// The vault's registration app, from a vault credentials file.
    pub fn of_credentials(credentials: &crate::credentials::VaultCredentials) -> Self {
        CertIdentity {
            authority: credentials.authority.clone(),
            tenant_id: credentials.tenant_id.clone(),
            client_id: credentials.client_id.clone(),
            certificate_pem: credentials.certificate_pem.clone(),
            key_pem: credentials.key_pem.clone(),
        }
    }

    /// This machine's own identity, from its registration and private key.
    pub fn of_registration(registration: &crate::config::Registration, key_pem: String) -> Self {
        CertIdentity {
            authority: registration.authority.clone(),
            tenant_id: registration.tenant_id.clone(),
            client_id: registration.client_id.clone(),
            certificate_pem: registration.certificate_pem.clone(),
            key_pem,
        }
    }

    /// A client assertion for `token_url`, valid from `now` (Unix seconds, service time).
    fn assertion(&self, token_url: &str, now: i64) -> Result<String> {
        let der = pem_to_der(&self.certificate_pem)?;
        let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
        let mut header = Header::new(Algorithm::RS256);
        header.x5t = Some(URL_SAFE_NO_PAD.encode(sha1.as_ref()));
        let claims = json!({
            "aud": token_url, "iss": self.client_id, "sub": self.client_id,
            "iat": now, "nbf": now - 60, "exp": now + 600, "jti": uuid::Uuid::new_v4().to_string(),
        });
        let key = EncodingKey::from_rsa_pem(self.key_pem.as_bytes()).map_err(|e| {
            AgentError::Credentials(format!("the certificate key cannot sign: {e}"))
        })?;
        jsonwebtoken::encode(&header, &claims, &key).map_err(|e| {
            AgentError::Credentials(format!("signing the client assertion failed: {e}"))
        })
    }

    pub fn thumbprint(&self) -> Result<String> {
        Ok(thumbprint(&pem_to_der(&self.certificate_pem)?))
    }
}

pub struct Service {
    http: reqwest::Client,
    base: String,
    identity: CertIdentity,
    /// The cached token and when it expires, in service time (Unix seconds): the service's
    /// clock, not this machine's, decides whether a token is still good.
    token: Mutex<Option<(String, i64)>>,
    /// Service time minus local time, in seconds (from `Date` headers).
    skew: AtomicI64,
}

/// What the service's `Date` header says the time is.
fn service_time(response: &reqwest::Response) -> Option<i64> {
    let date = response
        .headers()
        .get(reqwest::header::DATE)?
        .to_str()
        .ok()?;
    chrono::DateTime::parse_from_rfc2822(date)
        .ok()
        .map(|t| t.timestamp())
}

/// A connection failure, naming the URL and what usually fixes it.
pub fn unreachable(url: &str, error: &reqwest::Error) -> AgentError {
    let mut cause = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        cause = format!("{cause}: {inner}");
        source = inner.source();
    }
    let hint = if cause.contains("Connection refused") {
        " Nothing is listening there: start the stack with `azsim up`, or check the port (azsim up --vault-server-port / --entra-port)."
    } else if cause.contains("certificate") || cause.contains("UnknownIssuer") {
        " The server's certificate is not trusted: install with --ca-file pointing at azsim's CA (<data-dir>/tls/ca.pem, or GET /ca.pem)."
    } else {
        ""
    };
    AgentError::Network(format!("{url}: {cause}.{hint}"))
}

pub fn http_client(
    ca_file: Option<&std::path::Path>,
    proxy: Option<&str>,
) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .connect_timeout(Duration::from_secs(10))
        // HTTP/1.1, one connection per request in flight: over HTTP/2 every pack upload
        // and range download was paced by the peer's flow-control window updates, and a
        // 16 MiB pack took 100–450 ms to upload instead of 60–140 (initial backup of the
        // benchmark set: 6.5 s → 4.9 s).
        .http1_only();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| AgentError::io(path, e))?;
        let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| {
            AgentError::Usage(format!("{} is not a PEM certificate: {e}", path.display()))
        })?;
        builder = builder.tls_certs_only([ca]);
    }
    if let Some(proxy) = proxy {
        let proxy = reqwest::Proxy::all(proxy)
            .map_err(|e| AgentError::Usage(format!("proxy '{proxy}': {e}")))?;
        builder = builder.proxy(proxy);
    }
    builder
        .build()
        .map_err(|e| AgentError::Network(e.to_string()))
}

/// Attempts per request before a network failure is reported.
const RETRIES: u32 = 6;

/// The vault's refusal as the error the user sees.
async fn refusal(response: reqwest::Response) -> AgentError {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or(&text)
        .to_string();
    let code = body["error"]["code"].as_str().unwrap_or_default();
    match code {
        "InvalidCertificate" => AgentError::Credentials(message),
        "ServerNotRegistered" => unregistered(),
        backup_protocol::CHUNKS_NOT_STORED => AgentError::ChunksNotStored(message),
        _ if status == reqwest::StatusCode::NOT_FOUND => AgentError::NotFound(message),
        "" => AgentError::Service(format!("vault-server refused ({status}): {message}")),
        _ => AgentError::Service(format!(
            "vault-server refused ({status}, {code}): {message}"
        )),
    }
}

fn network(e: reqwest::Error) -> AgentError {
    let url = e.url().map(|u| u.to_string()).unwrap_or_default();
    unreachable(&url, &e)
}

/// Whether an Entra error body lists `code` in `error_codes`.
fn has_error_code(body: &Value, code: i64) -> bool {
    body["error_codes"]
        .as_array()
        .is_some_and(|codes| codes.iter().any(|c| c.as_i64() == Some(code)))
}

/// The server this machine registered as is gone from the vault.
fn unregistered() -> AgentError {
    AgentError::Unregistered(
        "this server was unregistered from the vault; register again with `mars-agent register`"
            .into(),
    )
}

impl Service {
    pub fn new(http: reqwest::Client, base: &str, identity: CertIdentity) -> Self {
        Service {
            http,
            base: base.trim_end_matches('/').to_string(),
            identity,
            token: Mutex::new(None),
            skew: AtomicI64::new(0),
        }
    }

    /// The service's current time (Unix seconds).
    pub fn now(&self) -> i64 {
        chrono::Utc::now().timestamp() + self.skew.load(Ordering::Relaxed)
    }

    /// Asks the service for its time (`GET /health`, no sign-in needed) and returns it.
    pub async fn probe_time(&self) -> Result<i64> {
        let response = self
            .http
            .get(format!("{}/health", self.base))
            .send()
            .await
            .map_err(network)?;
        self.learn_time(&response);
        Ok(self.now())
    }

    fn learn_time(&self, response: &reqwest::Response) {
        if let Some(at) = service_time(response) {
            self.skew
                .store(at - chrono::Utc::now().timestamp(), Ordering::Relaxed);
        }
    }

    /// Whether a sign-in has succeeded (check-network).
    pub async fn has_token(&self) -> bool {
        self.token.lock().await.is_some()
    }

    async fn token(&self) -> Result<String> {
        let mut cached = self.token.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && self.now() < *until
        {
            return Ok(token.clone());
        }
        let url = format!(
            "{}/{}/oauth2/v2.0/token",
            self.identity.authority, self.identity.tenant_id
        );
        // A refusal for the assertion's time (AADSTS700024) teaches the service's time from
        // its `Date`: sign once more with it.
        let mut body = Value::Null;
        let mut status = reqwest::StatusCode::OK;
        for _ in 0..2 {
            let assertion = self.identity.assertion(&url, self.now())?;
            let response = self
                .http
                .post(&url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", self.identity.client_id.as_str()),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.as_str()),
                    ("scope", "https://management.azure.com/.default"),
                ])
                .send()
                .await
                .map_err(network)?;
            self.learn_time(&response);
            status = response.status();
            body = response.json().await.map_err(network)?;
            if !has_error_code(&body, 700024) {
                break;
            }
        }
        let Some(token) = body["access_token"].as_str() else {
            let description = body["error_description"]
                .as_str()
                .unwrap_or("no description");
            if has_error_code(&body, 700016) {
                return Err(unregistered());
            }
            return Err(if description.contains("expired") {
                AgentError::Credentials(format!(
                    "the vault credentials expired; download new ones from the vault ({status}: {description})"
                ))
            } else {
                AgentError::Service(format!(
                    "Entra refused the sign-in ({status}): {description}"
                ))
            });
        };
        let lifetime = body["expires_in"]
            .as_u64()
            .unwrap_or(3600)
            .saturating_sub(60);
        *cached = Some((token.to_string(), self.now() + lifetime as i64));
        Ok(token.to_string())
    }

    /// Sends the request `build` makes, retrying what is worth retrying (the connection
    /// failed or the service was briefly unavailable) with a growing pause.
    async fn send(&self, build: impl Fn() -> reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let mut pause = Duration::from_millis(250);
        let mut attempt = 1;
        let mut signed_in_again = false;
        loop {
            let token = self.token().await?;
            let outcome = build().bearer_auth(token).send().await;
            let transient = match &outcome {
                Err(e) => e.is_connect() || e.is_request() || e.is_timeout(),
                // A region in outage stays down: no point waiting for it here.
                Ok(r) => {
                    matches!(r.status().as_u16(), 502..=504)
                        && r.headers()
                            .get("x-ms-error-code")
                            .is_none_or(|c| c != "RegionUnavailable")
                }
            };
            if transient && attempt < RETRIES {
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
                continue;
            }
            let response = outcome.map_err(network)?;
            self.learn_time(&response);
            if response.status().is_success() {
                return Ok(response);
            }
            // The service's clock may have moved past the cached token: sign in once more.
            if response.status() == reqwest::StatusCode::UNAUTHORIZED && !signed_in_again {
                signed_in_again = true;
                *self.token.lock().await = None;
                continue;
            }
            return Err(refusal(response).await);
        }
    }

    /// The reply to `path` as `T`; a reply that does not parse names the route.
    async fn parse<T: DeserializeOwned>(path: &str, response: reqwest::Response) -> Result<T> {
        let bytes = response.bytes().await.map_err(network)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            AgentError::Service(format!(
                "the vault's answer to {path} is malformed ({e}); is this an azsim vault-server of the same version?"
            ))
        })
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        let response = self
            .send(|| self.http.post(format!("{}{path}", self.base)).json(body))
            .await?;
        Self::parse(path, response).await
    }

    pub async fn put<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        let response = self
            .send(|| self.http.put(format!("{}{path}", self.base)).json(body))
            .await?;
        Self::parse(path, response).await
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let response = self
            .send(|| self.http.get(format!("{}{path}", self.base)))
            .await?;
        Self::parse(path, response).await
    }

    /// A POST whose answer has no body (204).
    pub async fn post_no_content(&self, path: &str, body: &impl Serialize) -> Result<()> {
        self.send(|| self.http.post(format!("{}{path}", self.base)).json(body))
            .await?;
        Ok(())
    }

    pub async fn patch(&self, path: &str, body: &impl Serialize) -> Result<()> {
        self.send(|| self.http.patch(format!("{}{path}", self.base)).json(body))
            .await?;
        Ok(())
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        self.send(|| self.http.delete(format!("{}{path}", self.base)))
            .await?;
        Ok(())
    }

    pub async fn get_bytes(&self, path: &str) -> Result<Bytes> {
        let url = format!("{}{path}", self.base);
        self.send(|| self.http.get(&url))
            .await?
            .bytes()
            .await
            .map_err(network)
    }

    /// Bytes `[start, end)` of `path`, read straight into one buffer of that size (no
    /// joining of the received frames afterwards), for the caller to decrypt in place.
    pub async fn get_range(&self, path: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        let url = format!("{}{path}", self.base);
        let range = format!("bytes={start}-{}", end - 1);
        let mut response = self
            .send(|| self.http.get(&url).header("Range", &range))
            .await?;
        let wanted = (end - start) as usize;
        let mut buffer = Vec::with_capacity(wanted);
        while let Some(frame) = response.chunk().await.map_err(network)? {
            if buffer.len() + frame.len() > wanted {
                return Err(AgentError::Service(format!(
                    "{path}: the service sent more than the {wanted} bytes asked for"
                )));
            }
            buffer.extend_from_slice(&frame);
        }
        Ok(buffer)
    }

    pub async fn put_bytes(&self, path: &str, body: Bytes) -> Result<()> {
        self.send(|| {
            self.http
                .put(format!("{}{path}", self.base))
                .body(body.clone())
        })
        .await?;
        Ok(())
    }

    /// PUT of a body sent from its parts, without joining them (a pack from its blobs).
    pub async fn put_parts(&self, path: &str, parts: Vec<Bytes>) -> Result<()> {
        let length: usize = parts.iter().map(Bytes::len).sum();
        self.send(|| {
            self.http
                .put(format!("{}{path}", self.base))
                .header(reqwest::header::CONTENT_LENGTH, length)
                .body(reqwest::Body::wrap(Parts {
                    parts: parts.clone().into(),
                    remaining: length as u64,
                }))
        })
        .await?;
        Ok(())
    }
}

/// A request body of byte parts sent one after another (cloning it for a retry clones
/// only the handles).
struct Parts {
    parts: std::collections::VecDeque<Bytes>,
    remaining: u64,
}

impl http_body::Body for Parts {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<http_body::Frame<Bytes>, Self::Error>>> {
        let next = self.parts.pop_front();
        if let Some(part) = &next {
            self.remaining -= part.len() as u64;
        }
        std::task::Poll::Ready(next.map(|part| Ok(http_body::Frame::data(part))))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}
