//! JSON shapes of the data plane: SecretBundle, SecretItem and their deleted forms
//! (timestamps in Unix seconds, ids rooted at the vault's origin).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::secrets::{Deletion, SecretVersion};
use crate::vaults::Vault;

/// `attributes` of a bundle or item.
pub fn attributes(vault: &Vault, secret: &SecretVersion) -> Value {
    let mut attributes = json!({
        "enabled": secret.enabled,
        "created": secret.created,
        "updated": secret.updated,
        "recoveryLevel": vault.recovery_level(),
        "recoverableDays": vault.soft_delete_days,
    });
    if let Some(nbf) = secret.not_before {
        attributes["nbf"] = nbf.into();
    }
    if let Some(exp) = secret.expires {
        attributes["exp"] = exp.into();
    }
    attributes
}

fn common(vault: &Vault, secret: &SecretVersion, id: String) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("id".into(), id.into());
    body.insert("attributes".into(), attributes(vault, secret));
    if let Some(content_type) = &secret.content_type {
        body.insert("contentType".into(), content_type.clone().into());
    }
    if let Some(tags) = &secret.tags {
        body.insert("tags".into(), Value::Object(tags.clone()));
    }
    body
}

/// SecretBundle: the version id, and the value when it was opened.
pub fn bundle(origin: &str, vault: &Vault, secret: &SecretVersion) -> Value {
    let mut body = common(
        vault,
        secret,
        format!(
            "https://{origin}/secrets/{}/{}",
            secret.name, secret.version
        ),
    );
    if let Some(value) = &secret.value {
        body.insert("value".into(), value.clone().into());
    }
    Value::Object(body)
}

/// SecretItem of `GET /secrets` (id without version) or of `/versions` (with).
pub fn item(origin: &str, vault: &Vault, secret: &SecretVersion, with_version: bool) -> Value {
    let id = if with_version {
        format!(
            "https://{origin}/secrets/{}/{}",
            secret.name, secret.version
        )
    } else {
        format!("https://{origin}/secrets/{}", secret.name)
    };
    Value::Object(common(vault, secret, id))
}

fn add_deletion(origin: &str, mut body: Value, name: &str, deletion: Deletion) -> Value {
    body["recoveryId"] = format!("https://{origin}/deletedsecrets/{name}").into();
    body["deletedDate"] = deletion.deleted_at.into();
    body["scheduledPurgeDate"] = deletion.scheduled_purge_at.into();
    body
}

pub fn deleted_bundle(
    origin: &str,
    vault: &Vault,
    secret: &SecretVersion,
    deletion: Deletion,
) -> Value {
    add_deletion(
        origin,
        bundle(origin, vault, secret),
        &secret.name,
        deletion,
    )
}

pub fn deleted_item(
    origin: &str,
    vault: &Vault,
    secret: &SecretVersion,
    deletion: Deletion,
) -> Value {
    add_deletion(
        origin,
        item(origin, vault, secret, false),
        &secret.name,
        deletion,
    )
}

/// Body of `PUT /secrets/{name}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetBody {
    pub value: Option<String>,
    pub content_type: Option<String>,
    pub tags: Option<Map<String, Value>>,
    pub attributes: Option<AttributesBody>,
}

/// Body of `PATCH /secrets/{name}/{version}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateBody {
    pub content_type: Option<String>,
    pub tags: Option<Map<String, Value>>,
    pub attributes: Option<AttributesBody>,
}

#[derive(Deserialize, Default)]
pub struct AttributesBody {
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
}

#[derive(Deserialize)]
pub struct RestoreBody {
    pub value: Option<String>,
}
