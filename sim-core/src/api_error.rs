//! The error envelope shared by ARM, Key Vault and the admin plane:
//! `{"error":{"code":"...","message":"..."}}`. Services build an [`ApiError`] from their own
//! error enum in one place and return it; Entra's OAuth endpoints use their own shape.

use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Key Vault's `innererror.code` (for example `AccessDenied`), when the service sends one.
    pub inner_code: Option<String>,
    /// Extra response headers (for example `WWW-Authenticate` on a 401).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            inner_code: None,
            headers: Vec::new(),
        }
    }

    pub fn bad_request(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn with_inner_code(mut self, code: impl Into<String>) -> Self {
        self.inner_code = Some(code.into());
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.inner_code {
            None => json!({"error": {"code": self.code, "message": self.message}}),
            Some(inner) => json!({"error": {
                "code": self.code,
                "message": self.message,
                "innererror": {"code": inner},
            }}),
        };
        let body = Json(body);
        let mut response = (self.status, body).into_response();
        // Azure names the error in a header too, so a client can tell a lasting refusal
        // (e.g. RegionUnavailable) from a brief one without reading the body.
        if let Ok(code) = axum::http::HeaderValue::from_str(&self.code) {
            response.headers_mut().insert("x-ms-error-code", code);
        }
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}
