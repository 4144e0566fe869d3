//! Who may manage vaults: Azure RBAC roles at subscription scope (Owner, Contributor,
//! Reader). The well-known admin app is Owner of the well-known subscription; other
//! principals get a role through `PUT /admin/roleAssignments/{objectId}`.

use sim_core::auth::Principal;
use sim_core::well_known;
use sqlx::SqlitePool;

use crate::error::{ArmDenial, KvError, Result};

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

/// Only the well-known subscription exists.
pub fn check_subscription(subscription: &str) -> Result<()> {
    if subscription.eq_ignore_ascii_case(well_known::SUBSCRIPTION_ID) {
        Ok(())
    } else {
        Err(KvError::SubscriptionNotFound(subscription.to_string()))
    }
}

/// Allows `action` (e.g. `Microsoft.KeyVault/vaults/write`) when the caller holds a role
/// on the subscription that covers it.
pub async fn authorize(
    pool: &SqlitePool,
    caller: &Principal,
    subscription: &str,
    action: &str,
    write: bool,
) -> Result<()> {
    check_subscription(subscription)?;
    let role: Option<String> = if caller.tenant_id.eq_ignore_ascii_case(well_known::TENANT_ID) {
        sqlx::query_scalar(
            "SELECT role FROM role_assignments WHERE subscription_id = ? AND object_id = ?",
        )
        .bind(subscription)
        .bind(&caller.object_id)
        .fetch_optional(pool)
        .await?
    } else {
        None
    };
    match role.as_deref().and_then(Role::parse) {
        Some(role) if !write || role.can_write() => Ok(()),
        _ => Err(KvError::AuthorizationFailed(Box::new(ArmDenial {
            app_id: caller.app_id.clone(),
            object_id: caller.object_id.clone(),
            action: action.to_string(),
            scope: format!("/subscriptions/{subscription}"),
        }))),
    }
}

pub async fn assign(
    pool: &SqlitePool,
    subscription: &str,
    object_id: &str,
    role: Role,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO role_assignments (subscription_id, object_id, role) VALUES (?, ?, ?) \
         ON CONFLICT (subscription_id, object_id) DO UPDATE SET role = excluded.role",
    )
    .bind(subscription)
    .bind(object_id)
    .bind(role.name())
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn unassign(pool: &SqlitePool, subscription: &str, object_id: &str) -> Result<bool> {
    let result =
        sqlx::query("DELETE FROM role_assignments WHERE subscription_id = ? AND object_id = ?")
            .bind(subscription)
            .bind(object_id)
            .execute(pool)
            .await?;
    Ok(result.rows_affected() > 0)
}

/// The admin app owns the well-known subscription.
pub async fn seed(pool: &SqlitePool) -> Result<()> {
    assign(
        pool,
        well_known::SUBSCRIPTION_ID,
        well_known::ADMIN_OBJECT_ID,
        Role::Owner,
    )
    .await
}
