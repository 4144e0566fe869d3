//! `Microsoft.Resources/resourceGroups`: the containers every vault lives in.

use serde_json::{Map, Value, json};
use sqlx::SqlitePool;

use crate::error::{Result, VsError};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ResourceGroup {
    pub subscription_id: String,
    pub name: String,
    pub location: String,
    pub tags: String,
}

impl ResourceGroup {
    pub fn to_json(&self) -> Value {
        let tags: Map<String, Value> = serde_json::from_str(&self.tags).unwrap_or_default();
        json!({
            "id": format!("/subscriptions/{}/resourceGroups/{}", self.subscription_id, self.name),
            "name": self.name,
            "type": "Microsoft.Resources/resourceGroups",
            "location": self.location,
            "tags": tags,
            "properties": {"provisioningState": "Succeeded"},
        })
    }
}

/// Resource group names: 1–90 letters, digits, `_ - . ( )`, not ending with a period.
pub fn validate_name(name: &str) -> Result<()> {
    let valid = (1..=90).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "_-.()".contains(c))
        && !name.ends_with('.');
    if valid {
        Ok(())
    } else {
        Err(VsError::InvalidName(format!(
            "Resource group name '{name}' is invalid: use 1-90 letters, digits, underscores, hyphens, periods or parentheses, not ending with a period."
        )))
    }
}

pub async fn get(pool: &SqlitePool, subscription: &str, name: &str) -> Result<ResourceGroup> {
    sqlx::query_as::<_, ResourceGroup>(
        "SELECT subscription_id, name, location, tags FROM resource_groups WHERE subscription_id = ? AND name = ?",
    )
    .bind(subscription)
    .bind(name)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| VsError::ResourceGroupNotFound(name.to_string()))
}

pub async fn list(pool: &SqlitePool, subscription: &str) -> Result<Vec<ResourceGroup>> {
    Ok(sqlx::query_as::<_, ResourceGroup>(
        "SELECT subscription_id, name, location, tags FROM resource_groups WHERE subscription_id = ? ORDER BY name",
    )
    .bind(subscription)
    .fetch_all(pool)
    .await?)
}

/// Creates or updates; `true` when created. The location of an existing group is fixed.
pub async fn put(
    pool: &SqlitePool,
    subscription: &str,
    name: &str,
    location: Option<String>,
    tags: Option<Map<String, Value>>,
    now: i64,
) -> Result<(ResourceGroup, bool)> {
    validate_name(name)?;
    match get(pool, subscription, name).await {
        Ok(existing) => {
            if let Some(location) = &location
                && !same_location(location, &existing.location)
            {
                return Err(VsError::BadRequest(format!(
                    "Resource group '{name}' already exists in location '{}'; it cannot move to '{location}'.",
                    existing.location
                )));
            }
            if let Some(tags) = tags {
                sqlx::query(
                    "UPDATE resource_groups SET tags = ? WHERE subscription_id = ? AND name = ?",
                )
                .bind(Value::Object(tags).to_string())
                .bind(subscription)
                .bind(name)
                .execute(pool)
                .await?;
            }
            Ok((get(pool, subscription, name).await?, false))
        }
        Err(VsError::ResourceGroupNotFound(_)) => {
            let location = location.ok_or_else(|| {
                VsError::BadRequest(
                    "The 'location' property is required to create a resource group.".into(),
                )
            })?;
            if sim_core::arm::region(&location).is_none() {
                return Err(VsError::LocationNotAvailable {
                    code: "LocationNotAvailableForResourceGroup",
                    message: sim_core::arm::unknown_location(&location, "resource group"),
                });
            }
            sqlx::query(
                "INSERT INTO resource_groups (subscription_id, name, location, tags, created_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(subscription)
            .bind(name)
            .bind(&location)
            .bind(Value::Object(tags.unwrap_or_default()).to_string())
            .bind(now)
            .execute(pool)
            .await?;
            Ok((get(pool, subscription, name).await?, true))
        }
        Err(e) => Err(e),
    }
}

pub use sim_core::arm::same_location;

/// Removes a group's row (its vaults are deleted first, by the caller).
pub async fn delete(pool: &SqlitePool, subscription: &str, name: &str) -> Result<()> {
    sqlx::query("DELETE FROM resource_groups WHERE subscription_id = ? AND name = ?")
        .bind(subscription)
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}

/// Every group and vault row goes (the admin API's reset); the default group comes back
/// with [`seed_default`].
pub async fn reset(pool: &SqlitePool) -> Result<()> {
    sqlx::query("DELETE FROM vaults").execute(pool).await?;
    sqlx::query("DELETE FROM resource_groups")
        .execute(pool)
        .await?;
    Ok(())
}

/// The well-known group that holds the default Key Vault: it exists from the start, so
/// `az group list` shows it and Key Vaults in it belong to a real group.
pub async fn seed_default(pool: &SqlitePool, now: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO resource_groups (subscription_id, name, location, tags, created_at) VALUES (?, ?, ?, '{}', ?) \
         ON CONFLICT DO NOTHING",
    )
    .bind(sim_core::well_known::SUBSCRIPTION_ID)
    .bind(sim_core::well_known::DEFAULT_RESOURCE_GROUP)
    .bind(sim_core::well_known::DEFAULT_LOCATION)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}
