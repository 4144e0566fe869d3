//! `POST /{tenant}/oauth2/v2.0/token` and the v1 `POST /{tenant}/oauth2/token`: the
//! client-credentials grant with a client secret (form body or HTTP Basic) or a client
//! assertion, and (v2) the authorization-code grant with PKCE of an interactive sign-in. Errors use Entra's OAuth body (see `EntraError::oauth_response`).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;
use sim_core::server::RequestId;

use super::{EntraState, oauth_context};
use crate::assertion::JWT_BEARER;
use crate::error::{EntraError, Result};
use crate::issuance::{ClientCredential, ClientCredentialsRequest, IssuedToken};
use crate::resources;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    V1,
    V2,
}

/// What every token request hands the shared handler.
type TokenRequestParts = (
    State<EntraState>,
    Path<String>,
    Option<Extension<RequestId>>,
    Method,
    HeaderMap,
    Bytes,
);

pub async fn token_v2(
    s: State<EntraState>,
    t: Path<String>,
    id: Option<Extension<RequestId>>,
    m: Method,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    token((s, t, id, m, h, b), Endpoint::V2).await
}

pub async fn token_v1(
    s: State<EntraState>,
    t: Path<String>,
    id: Option<Extension<RequestId>>,
    m: Method,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    token((s, t, id, m, h, b), Endpoint::V1).await
}

async fn token(parts: TokenRequestParts, endpoint: Endpoint) -> Response {
    let (State(state), Path(tenant), request_id, method, headers, body) = parts;
    let result = if method == Method::POST {
        issue(&state, tenant, &headers, &body, endpoint).await
    } else {
        Err(EntraError::PostOnly(method.to_string()))
    };
    let mut response = match result {
        Ok(token) => token_response(&token, endpoint),
        Err(error) => error.oauth_response(
            &oauth_context(&headers, request_id.map(|Extension(id)| id)),
            state.issuer.clock.now(),
        ),
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

async fn issue(
    state: &EntraState,
    tenant: String,
    headers: &HeaderMap,
    body: &[u8],
    endpoint: Endpoint,
) -> Result<IssuedToken> {
    let form = parse_form(headers, body)?;
    let grant_type = form
        .get("grant_type")
        .ok_or(EntraError::MissingParameter("grant_type"))?;
    // Entra resolves the tenant before anything else.
    let tenant = state.issuer.tenant(&tenant).await?;
    if grant_type == "authorization_code" && endpoint == Endpoint::V2 {
        let field = |name: &'static str| form.get(name).ok_or(EntraError::MissingParameter(name));
        let grant = state.sign_ins.redeem(
            field("code")?,
            field("client_id")?,
            field("redirect_uri")?,
            field("code_verifier")?,
            state.issuer.clock.unix(),
        )?;
        if grant.tenant_id != tenant.id {
            return Err(EntraError::InvalidGrant(
                50020,
                "The authorization code was issued by another tenant.".into(),
            ));
        }
        return state.issuer.user_token(&grant).await;
    }
    if grant_type != "client_credentials" {
        return Err(EntraError::UnsupportedGrantType(grant_type.clone()));
    }
    let basic = basic_credentials(headers)?;
    let assertion = match form.get("client_assertion") {
        Some(jwt) => {
            let kind = form
                .get("client_assertion_type")
                .ok_or(EntraError::MissingParameter("client_assertion_type"))?;
            if kind != JWT_BEARER {
                return Err(EntraError::InvalidClientAssertion {
                    code: 50027,
                    message: format!("client_assertion_type must be '{JWT_BEARER}', got '{kind}'."),
                });
            }
            Some(jwt.clone())
        }
        None => None,
    };
    let secret = form
        .get("client_secret")
        .cloned()
        .or_else(|| basic.as_ref().map(|(_, s)| s.clone()));
    let client_id = form
        .get("client_id")
        .cloned()
        .or_else(|| basic.map(|(id, _)| id))
        .ok_or(EntraError::MissingParameter("client_id"))?;
    let credential = match (secret, assertion) {
        (Some(secret), None) => ClientCredential::Secret(secret),
        (None, Some(jwt)) => ClientCredential::Assertion(jwt),
        (Some(_), Some(_)) => return Err(EntraError::AmbiguousClientCredential),
        (None, None) => return Err(EntraError::MissingClientCredential),
    };
    let resource = match endpoint {
        Endpoint::V2 => resources::resource_from_scope(
            form.get("scope")
                .ok_or(EntraError::MissingParameter("scope"))?,
        )?,
        Endpoint::V1 => form
            .get("resource")
            .cloned()
            .ok_or(EntraError::MissingParameter("resource"))?,
    };
    let capabilities_requested = form
        .get("claims")
        .is_some_and(|claims| requests_cp1(claims));
    state
        .issuer
        .client_credentials(ClientCredentialsRequest {
            tenant,
            client_id,
            credential,
            resource,
            capabilities_requested,
        })
        .await
}

fn token_response(token: &IssuedToken, endpoint: Endpoint) -> Response {
    let body = match endpoint {
        Endpoint::V2 => json!({
            "token_type": "Bearer",
            "expires_in": token.expires_in,
            "ext_expires_in": token.expires_in,
            "access_token": token.access_token,
        }),
        // v1 reports every number as a string, and echoes the resource.
        Endpoint::V1 => json!({
            "token_type": "Bearer",
            "expires_in": token.expires_in.to_string(),
            "ext_expires_in": token.expires_in.to_string(),
            "expires_on": token.expires_on.to_string(),
            "not_before": token.not_before.to_string(),
            "resource": token.resource,
            "access_token": token.access_token,
        }),
    };
    Json(body).into_response()
}

/// The form parameters; a parameter given twice is refused rather than guessed at.
fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<HashMap<String, String>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(EntraError::MalformedRequest(format!(
            "the Content-Type is '{content_type}'; send the parameters as application/x-www-form-urlencoded."
        )));
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|e| EntraError::MalformedRequest(format!("the body cannot be decoded ({e}).")))?;
    let mut form = HashMap::with_capacity(pairs.len());
    for (key, value) in pairs {
        if form.insert(key.clone(), value).is_some() {
            return Err(EntraError::MalformedRequest(format!(
                "the parameter '{key}' appears more than once."
            )));
        }
    }
    Ok(form)
}

/// `Authorization: Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return Ok(None);
    };
    let malformed = || {
        EntraError::MalformedRequest(
            "the Basic Authorization header is not base64(client_id:client_secret).".into(),
        )
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let unescape = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| malformed())
    };
    Ok(Some((unescape(id)?, unescape(secret)?)))
}

/// True when a `claims` request asks for the CP1 client capability (CAE).
fn requests_cp1(claims: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(claims)
        .ok()
        .and_then(|v| v.pointer("/access_token/xms_cc/values").cloned())
        .and_then(|v| v.as_array().cloned())
        .is_some_and(|values| values.iter().any(|v| v == "CP1"))
}
