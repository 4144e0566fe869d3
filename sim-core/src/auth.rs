//! Verification of entra-sim access tokens.
//!
//! Services trust exactly what Azure resources trust: an RS256 JWT signed by a key in the
//! issuer's JWKS, with the v1 or v2 issuer of the token's own tenant, an audience the
//! service accepts, and `nbf`/`exp` valid on the simulated clock (with a small skew).
//! The JWKS is fetched over HTTPS from entra-sim, cached, and refreshed when a token names
//! an unknown `kid` (key rotation). Refreshes are spaced by [`REFRESH_SPACING`] (a caller
//! waits, it is not refused), and a `kid` still unknown after a refresh is refused without
//! another download for [`UNKNOWN_KID_TTL`], so forged key ids cannot flood entra-sim.
//!
//! [`Authenticated`] is the axum extractor; its rejection is the service's own error type
//! (`E: From<TokenError>`), so each service answers in its own envelope.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use crate::clock::SimClock;

/// Clock skew tolerated on `nbf` and `exp`.
pub const LEEWAY_SECONDS: i64 = 60;
/// Minimum time between two JWKS downloads.
pub const REFRESH_SPACING: Duration = Duration::from_millis(100);
/// How long a key id that was not in a fresh JWKS is refused without asking again.
pub const UNKNOWN_KID_TTL: Duration = Duration::from_secs(5);

/// Who called: the verified claims a service authorizes against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub tenant_id: String,
    /// Object id of the service principal or managed identity (`oid`).
    pub object_id: String,
    /// Client id of the calling application (`appid`, or `azp` in v2 tokens).
    pub app_id: String,
    pub audience: String,
    pub roles: Vec<String>,
}

impl Principal {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Why a token was refused. Each service maps this into its own 401 envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the request has no Authorization header with a Bearer token")]
    Missing,
    #[error("the Authorization header must use the Bearer scheme")]
    NotBearer,
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token algorithm '{0}' is not accepted; tokens must be signed with RS256")]
    UnsupportedAlgorithm(String),
    #[error("the token signing key '{0}' is not one of the issuer's current keys")]
    UnknownKey(String),
    #[error("the token signature is invalid")]
    InvalidSignature,
    #[error("the token expired at {expired_at} (Unix seconds); request a new token")]
    Expired { expired_at: i64 },
    #[error("the token is not valid before {not_before} (Unix seconds)")]
    NotYetValid { not_before: i64 },
    #[error("the token audience '{0}' is not accepted by this service")]
    WrongAudience(String),
    #[error("the token issuer '{0}' is not valid for its tenant")]
    WrongIssuer(String),
    #[error("tokens from tenant '{0}' are not accepted by this service")]
    TenantNotAccepted(String),
    #[error("the issuer's signing keys could not be retrieved: {0}")]
    KeysUnavailable(String),
}

/// Where signing keys come from.
#[derive(Clone)]
pub enum KeySource {
    /// entra-sim's JWKS over HTTPS, trusted through the development CA.
    Remote {
        jwks_url: String,
        http: reqwest::Client,
    },
    /// In-process keys (entra-sim verifying its own tokens).
    Local(Arc<dyn Fn() -> JwkSet + Send + Sync>),
}

impl KeySource {
    /// The JWKS of the entra-sim at `authority` (e.g. `https://localhost:10010`), trusting
    /// only `ca_pem`.
    pub fn remote(authority: &str, ca_pem: &str) -> Result<Self, crate::Error> {
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes())
            .map_err(|e| crate::Error::Tls(e.to_string()))?;
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| crate::Error::Tls(e.to_string()))?;
        Ok(KeySource::Remote {
            jwks_url: format!(
                "{}/common/discovery/v2.0/keys",
                authority.trim_end_matches('/')
            ),
            http,
        })
    }

    async fn fetch(&self) -> Result<JwkSet, TokenError> {
        match self {
            KeySource::Local(keys) => Ok(keys()),
            KeySource::Remote { jwks_url, http } => {
                let response = http
                    .get(jwks_url)
                    .send()
                    .await
                    .map_err(|e| TokenError::KeysUnavailable(format!("{jwks_url}: {e}")))?;
                if !response.status().is_success() {
                    return Err(TokenError::KeysUnavailable(format!(
                        "{jwks_url}: HTTP {}",
                        response.status()
                    )));
                }
                response
                    .json::<JwkSet>()
                    .await
                    .map_err(|e| TokenError::KeysUnavailable(format!("{jwks_url}: {e}")))
            }
        }
    }
}

/// Cached signing keys, shared by every verifier of a process that talks to one issuer.
pub struct KeyCache {
    source: KeySource,
    keys: RwLock<HashMap<String, DecodingKey>>,
    refresh: Mutex<RefreshState>,
}

#[derive(Default)]
struct RefreshState {
    last: Option<Instant>,
    unknown: HashMap<String, Instant>,
}

impl KeyCache {
    pub fn new(source: KeySource) -> Arc<Self> {
        Arc::new(KeyCache {
            source,
            keys: RwLock::new(HashMap::new()),
            refresh: Mutex::new(RefreshState::default()),
        })
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, TokenError> {
        if let Some(key) = self.keys.read().await.get(kid) {
            return Ok(key.clone());
        }
        {
            let mut refresh = self.refresh.lock().await;
            // Another request may have refreshed while we waited for the lock.
            if let Some(key) = self.keys.read().await.get(kid) {
                return Ok(key.clone());
            }
            refresh
                .unknown
                .retain(|_, at| at.elapsed() < UNKNOWN_KID_TTL);
            if refresh.unknown.contains_key(kid) {
                return Err(TokenError::UnknownKey(kid.to_string()));
            }
            if let Some(wait) = refresh
                .last
                .and_then(|at| REFRESH_SPACING.checked_sub(at.elapsed()))
            {
                tokio::time::sleep(wait).await;
            }
            let set = self.source.fetch().await;
            refresh.last = Some(Instant::now());
            let set = set?;
            let mut fresh = HashMap::new();
            for jwk in &set.keys {
                if let (Some(id), Ok(key)) = (&jwk.common.key_id, DecodingKey::from_jwk(jwk)) {
                    fresh.insert(id.clone(), key);
                }
            }
            if !fresh.contains_key(kid) {
                refresh.unknown.insert(kid.to_string(), Instant::now());
            }
            *self.keys.write().await = fresh;
        }
        self.keys
            .read()
            .await
            .get(kid)
            .cloned()
            .ok_or_else(|| TokenError::UnknownKey(kid.to_string()))
    }
}

/// Which tenants' tokens a service accepts.
#[derive(Clone, Debug)]
pub enum TenantPolicy {
    Any,
    Only(Vec<String>),
}

/// Verifies tokens for one audience set.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: Arc<KeyCache>,
    audiences: Vec<String>,
    tenants: TenantPolicy,
    clock: SimClock,
    /// Tokens whose signature already checked out, so a client reusing its token (the
    /// normal case) costs one map lookup instead of an RSA verification. Time, audience,
    /// issuer and tenant are still checked on every use.
    verified: Arc<std::sync::Mutex<HashMap<String, Arc<Claims>>>>,
}

/// Signature-verified tokens kept at most; the map is emptied when it fills up.
const VERIFIED_CACHE_LIMIT: usize = 8192;

#[derive(Deserialize, Clone)]
struct Claims {
    aud: String,
    iss: String,
    exp: i64,
    nbf: Option<i64>,
    tid: String,
    oid: String,
    appid: Option<String>,
    azp: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
}

impl TokenVerifier {
    pub fn new(
        keys: Arc<KeyCache>,
        audiences: Vec<String>,
        tenants: TenantPolicy,
        clock: SimClock,
    ) -> Self {
        TokenVerifier {
            keys,
            audiences,
            tenants,
            clock,
            verified: Arc::default(),
        }
    }

    /// The same keys and tenant policy for a different audience set.
    pub fn for_audiences(&self, audiences: Vec<String>) -> Self {
        TokenVerifier {
            audiences,
            ..self.clone()
        }
    }

    /// Verifies a token from an `Authorization` header value.
    pub async fn verify_header(&self, header: Option<&str>) -> Result<Principal, TokenError> {
        self.verify_header_for(header, None).await
    }

    /// Like [`Self::verify_header`], also accepting `extra_audience` (a resource that
    /// depends on the request, such as Key Vault's challenge resource for the host called).
    pub async fn verify_header_for(
        &self,
        header: Option<&str>,
        extra_audience: Option<&str>,
    ) -> Result<Principal, TokenError> {
        let header = header.ok_or(TokenError::Missing)?.trim();
        let (scheme, token) = header.split_once(' ').ok_or(TokenError::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(TokenError::NotBearer);
        }
        self.verify_for(token.trim(), extra_audience).await
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        self.verify_for(token, None).await
    }

    /// Verifies `token`, accepting the configured audiences and `extra_audience`.
    pub async fn verify_for(
        &self,
        token: &str,
        extra_audience: Option<&str>,
    ) -> Result<Principal, TokenError> {
        let cached = self.cached(token);
        let claims = match cached {
            Some(claims) => claims,
            None => {
                let claims = Arc::new(self.verify_signature(token).await?);
                self.remember(token, claims.clone());
                claims
            }
        };
        self.check_claims(&claims, extra_audience)
    }

    fn cached(&self, token: &str) -> Option<Arc<Claims>> {
        let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(token).cloned()
    }

    fn remember(&self, token: &str, claims: Arc<Claims>) {
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= VERIFIED_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(token.to_owned(), claims);
    }

    /// Header, key and signature: everything that does not depend on time or audience.
    async fn verify_signature(&self, token: &str) -> Result<Claims, TokenError> {
        // A header naming an algorithm jsonwebtoken does not know (e.g. `none`) is reported
        // as the algorithm problem it is, not as noise.
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| match raw_header_alg(token) {
                Some(alg) if alg != "RS256" => TokenError::UnsupportedAlgorithm(alg),
                _ => TokenError::Malformed(format!("the header cannot be decoded ({e})")),
            })?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenError::UnsupportedAlgorithm(format!(
                "{:?}",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| TokenError::Malformed("the header has no 'kid'".into()))?;
        let key = self.keys.key(&kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        // Time and audience are checked below against the simulated clock, with precise errors.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::InvalidSignature,
                _ => TokenError::Malformed(format!("the claims cannot be read ({e})")),
            })
            .map(|data| data.claims)
    }

    fn check_claims(
        &self,
        claims: &Claims,
        extra_audience: Option<&str>,
    ) -> Result<Principal, TokenError> {
        let now = self.clock.unix();
        if claims.exp + LEEWAY_SECONDS < now {
            return Err(TokenError::Expired {
                expired_at: claims.exp,
            });
        }
        if let Some(nbf) = claims.nbf
            && nbf - LEEWAY_SECONDS > now
        {
            return Err(TokenError::NotYetValid { not_before: nbf });
        }
        if !self.audiences.iter().any(|a| a == &claims.aud) && extra_audience != Some(&claims.aud) {
            return Err(TokenError::WrongAudience(claims.aud.clone()));
        }
        let v1_issuer = format!("https://sts.windows.net/{}/", claims.tid);
        let v2_suffix = format!("/{}/v2.0", claims.tid);
        if claims.iss != v1_issuer && !claims.iss.ends_with(&v2_suffix) {
            return Err(TokenError::WrongIssuer(claims.iss.clone()));
        }
        if let TenantPolicy::Only(tenants) = &self.tenants
            && !tenants.iter().any(|t| t.eq_ignore_ascii_case(&claims.tid))
        {
            return Err(TokenError::TenantNotAccepted(claims.tid.clone()));
        }
        Ok(Principal {
            tenant_id: claims.tid.clone(),
            object_id: claims.oid.clone(),
            app_id: claims
                .appid
                .clone()
                .or_else(|| claims.azp.clone())
                .unwrap_or_default(),
            audience: claims.aud.clone(),
            roles: claims.roles.clone(),
        })
    }
}

/// The `alg` string of a token whose header jsonwebtoken refuses to parse (e.g. `none`).
fn raw_header_alg(token: &str) -> Option<String> {
    use base64::Engine;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("alg")?.as_str().map(str::to_owned)
}

/// Extractor: the verified caller, or the service's own 401 (`E: From<TokenError>`).
pub struct Authenticated<E>(pub Principal, pub PhantomData<fn() -> E>);

impl<S, E> FromRequestParts<S> for Authenticated<E>
where
    S: Send + Sync,
    Arc<TokenVerifier>: FromRef<S>,
    E: From<TokenError> + IntoResponse,
{
    type Rejection = E;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let verifier = Arc::<TokenVerifier>::from_ref(state);
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let principal = verifier.verify_header(header).await?;
        Ok(Authenticated(principal, PhantomData))
    }
}
