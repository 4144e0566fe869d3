//! The regions admin API: simulated regional outages and replication status.
//! `GET /admin/regions` — outages, and each vault's region, paired region, redundancy and
//! the replication it still waits for; `PUT|DELETE /admin/regions/{region}/outage` — take a
//! region down or bring it back (admin-plane token).

use std::sync::Arc;

use axum::extract::{FromRef, Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::json;
use sim_core::ApiError;
use sim_core::admin::require_admin;
use sim_core::auth::{Authenticated, TokenVerifier};

use super::VsState;
use crate::blobs::Redundancy;
use crate::error::VsError;

#[derive(Clone)]
struct RegionsState(VsState);

impl FromRef<RegionsState> for Arc<TokenVerifier> {
    fn from_ref(state: &RegionsState) -> Self {
        state.0.admin_verifier.clone()
    }
}

pub fn admin_router(state: VsState) -> Router {
    Router::new()
        .route("/admin/regions", get(status))
        .route(
            "/admin/regions/{region}/outage",
            put(start_outage).delete(end_outage),
        )
        .with_state(RegionsState(state))
}

fn api(error: impl Into<VsError>) -> ApiError {
    ApiError::from(&error.into())
}

async fn status(
    Authenticated(admin, _): Authenticated<ApiError>,
    State(RegionsState(state)): State<RegionsState>,
) -> Result<Response, ApiError> {
    require_admin(&admin)?;
    let mut vaults = Vec::new();
    for vault in state.vaults.all().await.map_err(api)? {
        let Some(placement) = state.blobs.placement(vault.id).await.map_err(api)? else {
            continue;
        };
        let pending = state.blobs.pending(vault.id).await.map_err(api)?;
        vaults.push(json!({
            "id": vault.arm_id(),
            "name": vault.name,
            "region": placement.region,
            "secondaryRegion": placement.secondary,
            "redundancy": match placement.redundancy {
                Redundancy::Local => "LocallyRedundant",
                Redundancy::Zone => "ZoneRedundant",
                Redundancy::Geo => "GeoRedundant",
            },
            "replication": pending,
        }));
    }
    Ok(Json(json!({"outages": state.blobs.outages(), "vaults": vaults})).into_response())
}

async fn start_outage(
    auth: Authenticated<ApiError>,
    state: State<RegionsState>,
    Path(region): Path<String>,
) -> Result<Response, ApiError> {
    set_outage(auth, state, region, true).await
}

async fn end_outage(
    auth: Authenticated<ApiError>,
    state: State<RegionsState>,
    Path(region): Path<String>,
) -> Result<Response, ApiError> {
    set_outage(auth, state, region, false).await
}

async fn set_outage(
    Authenticated(admin, _): Authenticated<ApiError>,
    State(RegionsState(state)): State<RegionsState>,
    region: String,
    down: bool,
) -> Result<Response, ApiError> {
    require_admin(&admin)?;
    let Some(canonical) = sim_core::arm::region(&region) else {
        return Err(ApiError::bad_request(
            "LocationNotAvailableForResourceType",
            sim_core::arm::unknown_location(&region, "regions"),
        ));
    };
    state.blobs.set_outage(canonical, down).await.map_err(api)?;
    Ok(
        Json(json!({"region": canonical, "outage": down, "outages": state.blobs.outages()}))
            .into_response(),
    )
}
