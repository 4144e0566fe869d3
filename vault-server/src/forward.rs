//! `providers/Microsoft.KeyVault/...` requests go to keyvault-sim's management plane, so
//! one ARM endpoint serves both providers (the Azure CLI knows only one). The caller's
//! token travels with the request; keyvault-sim authenticates and authorizes it.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::error::VsError;

/// Request headers worth passing on.
const FORWARDED: &[&str] = &[
    "authorization",
    "content-type",
    "accept",
    "x-ms-client-request-id",
    "x-ms-correlation-request-id",
];

pub async fn forward(
    http: &reqwest::Client,
    target: &str,
    origin: &str,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let url = format!("{}{path_and_query}", target.trim_end_matches('/'));
    let mut request = http.request(method, &url).body(body);
    for name in FORWARDED {
        if let Some(value) = headers.get(*name) {
            request = request.header(*name, value);
        }
    }
    request = request.header("x-forwarded-host", origin);
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            return VsError::Upstream(format!(
                "keyvault-sim could not be reached at {target}: {e}"
            ))
            .into_response();
        }
    };
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out_headers = HeaderMap::new();
    for (name, value) in response.headers() {
        if matches!(
            name.as_str(),
            "content-type" | "x-ms-correlation-request-id" | "www-authenticate"
        ) && let Ok(value) = HeaderValue::from_bytes(value.as_bytes())
        {
            out_headers.insert(name.clone(), value);
        }
    }
    match response.bytes().await {
        Ok(body) => (status, out_headers, body).into_response(),
        Err(e) => VsError::Upstream(format!("keyvault-sim answer was cut: {e}")).into_response(),
    }
}
