//! Who may use the ARM management planes: Azure RBAC roles at subscription scope (Owner,
//! Contributor, Reader). Each service keeps the assignments in its own database, in the
//! table this module owns (`rbac.sql`, created by `Roles::open`); the well-known admin app
//! is Owner of the well-known subscription, and `PUT /admin/roleAssignments/{objectId}`
//! assigns others.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use axum::body::Bytes;
use axum::extract::{FromRef, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sqlx::SqlitePool;

use crate::admin::require_admin;
use crate::api_error::ApiError;
use crate::auth::{Authenticated, Principal, TokenVerifier};
use crate::well_known;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Owner,
    Contributor,
    Reader,
}

impl Role {
    pub fn parse(name: &str) -> Option<Role> {
        match name.to_ascii_lowercase().as_str() {
            "owner" => Some(Role::Owner),
            "contributor" => Some(Role::Contributor),
            "reader" => Some(Role::Reader),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Owner => "Owner",
            Role::Contributor => "Contributor",
            Role::Reader => "Reader",
        }
    }

    fn can_write(self) -> bool {
        matches!(self, Role::Owner | Role::Contributor)
    }
}

/// Why an ARM call was not authorized.
#[derive(Debug, thiserror::Error)]
pub enum RbacError {
    #[error("The subscription '{0}' could not be found.")]
    SubscriptionNotFound(String),
    #[error(
        "The client '{}' with object id '{}' does not have authorization to perform action '{}' over scope '{}' or the scope is invalid. Assign it the Owner or Contributor role on the subscription.",
        .0.app_id, .0.object_id, .0.action, .0.scope
    )]
    Denied(Box<Denial>),
    #[error("role assignments could not be read: {0}")]
    Storage(#[from] sqlx::Error),
}

#[derive(Debug)]
pub struct Denial {
    pub app_id: String,
    pub object_id: String,
    pub action: String,
    pub scope: String,
}

impl From<&RbacError> for ApiError {
    fn from(error: &RbacError) -> Self {
        let (status, code) = match error {
            RbacError::SubscriptionNotFound(_) => (StatusCode::NOT_FOUND, "SubscriptionNotFound"),
            RbacError::Denied(_) => (StatusCode::FORBIDDEN, "AuthorizationFailed"),
            RbacError::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
        };
        ApiError::new(status, code, error.to_string())
    }
}

/// Only the well-known subscription exists.
pub fn check_subscription(subscription: &str) -> Result<(), RbacError> {
    if subscription.eq_ignore_ascii_case(well_known::SUBSCRIPTION_ID) {
        Ok(())
    } else {
        Err(RbacError::SubscriptionNotFound(subscription.to_string()))
    }
}

/// The role assignments of one service, with the roles looked up so far kept in memory
/// (every ARM request asks; assignments change rarely and only through this type).
pub struct Roles {
    pool: SqlitePool,
    known: RwLock<HashMap<(String, String), Option<Role>>>,
}

impl Roles {
    /// The assignments kept in `pool`, creating their table when the service's own
    /// migrations did not.
    pub async fn open(pool: SqlitePool) -> Result<Arc<Self>, sqlx::Error> {
        sqlx::raw_sql(include_str!("rbac.sql"))
            .execute(&pool)
            .await?;
        Ok(Arc::new(Roles {
            pool,
            known: RwLock::default(),
        }))
    }

    async fn role(&self, subscription: &str, object_id: &str) -> Result<Option<Role>, RbacError> {
        let key = (
            subscription.to_ascii_lowercase(),
            object_id.to_ascii_lowercase(),
        );
        if let Some(role) = self
            .known
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(*role);
        }
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM role_assignments WHERE subscription_id = ? AND object_id = ?",
        )
        .bind(subscription)
        .bind(object_id)
        .fetch_optional(&self.pool)
        .await?;
        let role = role.as_deref().and_then(Role::parse);
        self.known
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, role);
        Ok(role)
    }

    fn forget(&self) {
        self.known
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Allows `action` (e.g. `Microsoft.KeyVault/vaults/write`) when the caller holds a
    /// role on the subscription that covers it (any role reads; Owner and Contributor write).
    pub async fn authorize(
        &self,
        caller: &Principal,
        subscription: &str,
        action: &str,
        write: bool,
    ) -> Result<(), RbacError> {
        check_subscription(subscription)?;
        let role = if caller.tenant_id.eq_ignore_ascii_case(well_known::TENANT_ID) {
            self.role(subscription, &caller.object_id).await?
        } else {
            None
        };
        match role {
            Some(role) if !write || role.can_write() => Ok(()),
            _ => Err(RbacError::Denied(Box::new(Denial {
                app_id: caller.app_id.clone(),
                object_id: caller.object_id.clone(),
                action: action.to_string(),
                scope: format!("/subscriptions/{subscription}"),
            }))),
        }
    }

    pub async fn assign(
        &self,
        subscription: &str,
        object_id: &str,
        role: Role,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO role_assignments (subscription_id, object_id, role) VALUES (?, ?, ?) \
             ON CONFLICT (subscription_id, object_id) DO UPDATE SET role = excluded.role",
        )
        .bind(subscription)
        .bind(object_id)
        .bind(role.name())
        .execute(&self.pool)
        .await?;
        self.forget();
        Ok(())
    }

    /// Removes every role of `object_id`; `false` when it had none.
    pub async fn unassign(&self, object_id: &str) -> Result<bool, sqlx::Error> {
        let removed = sqlx::query("DELETE FROM role_assignments WHERE object_id = ?")
            .bind(object_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        self.forget();
        Ok(removed > 0)
    }

    /// Makes the admin app and the admin user Owners of the well-known subscription.
    pub async fn seed(&self) -> Result<(), sqlx::Error> {
        for owner in [
            well_known::ADMIN_OBJECT_ID,
            well_known::ADMIN_USER_OBJECT_ID,
        ] {
            self.assign(well_known::SUBSCRIPTION_ID, owner, Role::Owner)
                .await?;
        }
        Ok(())
    }

    /// Drops every assignment, then seeds again.
    pub async fn reset(&self) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM role_assignments")
            .execute(&self.pool)
            .await?;
        self.forget();
        self.seed().await
    }
}

#[derive(Clone)]
struct AdminState {
    roles: Arc<Roles>,
    verifier: Arc<TokenVerifier>,
}

impl FromRef<AdminState> for Arc<TokenVerifier> {
    fn from_ref(state: &AdminState) -> Self {
        state.verifier.clone()
    }
}

/// `PUT|DELETE /admin/roleAssignments/{objectId}` (admin-plane token), body
/// `{"role": "Owner|Contributor|Reader", "subscriptionId"?}`.
pub fn admin_router(roles: Arc<Roles>, verifier: Arc<TokenVerifier>) -> Router {
    Router::new()
        .route(
            "/admin/roleAssignments/{object_id}",
            put(assign_role).delete(unassign_role),
        )
        .with_state(AdminState { roles, verifier })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleBody {
    role: String,
    subscription_id: Option<String>,
}

async fn assign_role(
    Authenticated(admin, _): Authenticated<ApiError>,
    State(state): State<AdminState>,
    Path(object_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_admin(&admin)?;
    let body: RoleBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "InvalidRequestContent",
            format!("The body must be {{\"role\": \"Owner|Contributor|Reader\"}}: {e}"),
        )
    })?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::bad_request(
            "InvalidRoleDefinition",
            format!(
                "Role '{}' is not simulated; use Owner, Contributor or Reader.",
                body.role
            ),
        )
    })?;
    if uuid::Uuid::parse_str(&object_id).is_err() {
        return Err(ApiError::bad_request(
            "InvalidPrincipalId",
            format!("'{object_id}' is not an object id (a GUID)."),
        ));
    }
    let subscription = body
        .subscription_id
        .unwrap_or_else(|| well_known::SUBSCRIPTION_ID.to_string());
    check_subscription(&subscription).map_err(|e| ApiError::from(&e))?;
    state
        .roles
        .assign(&subscription, &object_id, role)
        .await
        .map_err(|e| ApiError::from(&RbacError::Storage(e)))?;
    Ok(Json(json!({
        "objectId": object_id,
        "role": role.name(),
        "scope": format!("/subscriptions/{subscription}"),
    }))
    .into_response())
}

async fn unassign_role(
    Authenticated(admin, _): Authenticated<ApiError>,
    State(state): State<AdminState>,
    Path(object_id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&admin)?;
    let removed = state
        .roles
        .unassign(&object_id)
        .await
        .map_err(|e| ApiError::from(&RbacError::Storage(e)))?;
    Ok(if removed {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    }
    .into_response())
}
