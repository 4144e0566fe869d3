//! vault-server's side of an ARM request ([`sim_core::arm::ArmCall`], shared with
//! keyvault-sim): its errors in this crate's type, and the response helpers.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;
pub use sim_core::arm::ArmCall;

use crate::error::{Result, VsError};

/// Items per page when the client does not say (`$top`).
const DEFAULT_PAGE: usize = 100;

/// What vault-server's handlers ask of a call beyond the shared type.
pub trait CallExt {
    fn no_route(&self) -> VsError;
    /// The body as `T`; errors name the field.
    fn parse<T: DeserializeOwned>(&self) -> Result<T>;
    /// A page of at most `$top` (default 100) items.
    fn paged(&self, items: Vec<Value>) -> Response;
}

impl CallExt for ArmCall {
    fn no_route(&self) -> VsError {
        VsError::NoRoute {
            method: self.method.to_string(),
            path: self.path.clone(),
        }
    }

    fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        parse_json(&self.body)
    }

    fn paged(&self, items: Vec<Value>) -> Response {
        self.page(items, Some(DEFAULT_PAGE))
    }
}

pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    sim_core::arm::parse_body(body).map_err(VsError::BadRequest)
}

pub fn ok(body: Value) -> Response {
    (StatusCode::OK, Json(body)).into_response()
}

pub fn created(body: Value) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

pub use sim_core::arm::iso;
