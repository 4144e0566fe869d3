//! The body of `PUT`/`PATCH .../Microsoft.KeyVault/vaults/{name}`, parsed with errors that
//! name the field to fix, and the rules a vault's settings must follow.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::KvError;
use crate::policy::{self, AccessPolicy};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VaultRequest {
    pub location: Option<String>,
    pub tags: Option<Map<String, Value>>,
    #[serde(default)]
    pub properties: VaultRequestProperties,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VaultRequestProperties {
    pub tenant_id: Option<String>,
    pub sku: Option<Sku>,
    pub access_policies: Option<Vec<AccessPolicy>>,
    pub enable_soft_delete: Option<bool>,
    pub soft_delete_retention_in_days: Option<i64>,
    pub enable_purge_protection: Option<bool>,
    pub enable_rbac_authorization: Option<bool>,
    pub create_mode: Option<String>,
    pub enabled_for_deployment: Option<bool>,
    pub enabled_for_disk_encryption: Option<bool>,
    pub enabled_for_template_deployment: Option<bool>,
    pub public_network_access: Option<String>,
    pub network_acls: Option<Value>,
}

#[derive(Deserialize, Clone)]
pub struct Sku {
    #[serde(default)]
    pub family: Option<String>,
    pub name: String,
}

/// Fields kept verbatim in the `options` column and returned as given.
const OPTION_FIELDS: &[&str] = &[
    "enabledForDeployment",
    "enabledForDiskEncryption",
    "enabledForTemplateDeployment",
    "publicNetworkAccess",
    "networkAcls",
];

impl VaultRequest {
    /// A PUT sends the whole vault: its location, tenant and SKU are required (as on Azure),
    /// and the location must be a known region.
    pub fn check_complete(&self) -> Result<(), KvError> {
        let Some(location) = &self.location else {
            return Err(KvError::BadParameter(
                "The 'location' property is required: a PUT sends the whole vault (use PATCH to change some of it).".into(),
            ));
        };
        if sim_core::arm::region(location).is_none() {
            return Err(KvError::BadParameter(sim_core::arm::unknown_location(
                location,
                "resource type 'Microsoft.KeyVault/vaults'",
            )));
        }
        let recovering = self
            .properties
            .create_mode
            .as_deref()
            .is_some_and(|m| m.eq_ignore_ascii_case("recover"));
        if !recovering && (self.properties.tenant_id.is_none() || self.properties.sku.is_none()) {
            return Err(KvError::BadParameter(
                "properties.tenantId and properties.sku are required: a PUT sends the whole vault."
                    .into(),
            ));
        }
        Ok(())
    }
}

impl VaultRequestProperties {
    /// The pass-through options present in this request.
    pub fn options(&self) -> Map<String, Value> {
        let mut options = Map::new();
        let values = [
            self.enabled_for_deployment.map(Value::from),
            self.enabled_for_disk_encryption.map(Value::from),
            self.enabled_for_template_deployment.map(Value::from),
            self.public_network_access.clone().map(Value::from),
            self.network_acls.clone(),
        ];
        for (field, value) in OPTION_FIELDS.iter().zip(values) {
            if let Some(value) = value {
                options.insert((*field).to_string(), value);
            }
        }
        options
    }
}

/// Parses a JSON body; the error names the path of the bad field.
pub fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, KvError> {
    sim_core::arm::parse_body(body).map_err(KvError::InvalidRequest)
}

/// Vault names: 3–24 characters, letters, digits and hyphens, starting with a letter,
/// ending with a letter or digit, without consecutive hyphens.
pub fn validate_name(name: &str) -> Result<(), KvError> {
    let bytes = name.as_bytes();
    let valid = (3..=24).contains(&bytes.len())
        && bytes[0].is_ascii_alphabetic()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        && !name.contains("--");
    if valid {
        Ok(())
    } else {
        Err(KvError::InvalidVaultName(name.to_string()))
    }
}

pub fn validate_tenant(tenant: &str) -> Result<(), KvError> {
    uuid::Uuid::parse_str(tenant).map(|_| ()).map_err(|_| {
        KvError::InvalidRequest(format!(
            "properties.tenantId '{tenant}' is not a GUID; use the tenant whose identities will call the vault."
        ))
    })
}

/// `standard` or `premium` (family `A`), normalised to lower case.
pub fn validate_sku(sku: &Sku) -> Result<String, KvError> {
    if let Some(family) = &sku.family
        && !family.eq_ignore_ascii_case("A")
    {
        return Err(KvError::InvalidRequest(format!(
            "properties.sku.family '{family}' is not valid; use 'A'."
        )));
    }
    match sku.name.to_ascii_lowercase().as_str() {
        name @ ("standard" | "premium") => Ok(name.to_string()),
        _ => Err(KvError::InvalidRequest(format!(
            "properties.sku.name '{}' is not valid; use 'standard' or 'premium'.",
            sku.name
        ))),
    }
}

pub fn validate_retention(days: i64) -> Result<(), KvError> {
    if (7..=90).contains(&days) {
        Ok(())
    } else {
        Err(KvError::InvalidRequest(format!(
            "properties.softDeleteRetentionInDays must be between 7 and 90; {days} was given."
        )))
    }
}

/// The settings every request may carry, checked against the vault's current state.
pub fn check_settings(
    properties: &VaultRequestProperties,
    current_purge_protection: Option<bool>,
    current_retention: Option<i64>,
) -> Result<(), KvError> {
    if properties.enable_soft_delete == Some(false) {
        return Err(KvError::InvalidRequest(
            "properties.enableSoftDelete cannot be false: soft delete is always on for Key Vault. Use softDeleteRetentionInDays (7-90) to shorten the retention.".into(),
        ));
    }
    if properties.enable_rbac_authorization == Some(true) {
        return Err(KvError::InvalidRequest(
            "properties.enableRbacAuthorization=true is not simulated by keyvault-sim; authorize callers with properties.accessPolicies instead.".into(),
        ));
    }
    if let Some(days) = properties.soft_delete_retention_in_days {
        validate_retention(days)?;
        if let Some(current) = current_retention
            && current != days
        {
            return Err(KvError::InvalidRequest(format!(
                "properties.softDeleteRetentionInDays cannot be changed after the vault is created (it is {current})."
            )));
        }
    }
    if properties.enable_purge_protection == Some(false) && current_purge_protection == Some(true) {
        return Err(KvError::InvalidRequest(
            "properties.enablePurgeProtection cannot be turned off once it is enabled.".into(),
        ));
    }
    if let Some(access) = &properties.public_network_access
        && !["enabled", "disabled"].contains(&access.to_ascii_lowercase().as_str())
    {
        return Err(KvError::InvalidRequest(format!(
            "properties.publicNetworkAccess '{access}' is not valid; use 'Enabled' or 'Disabled'."
        )));
    }
    if let Some(policies) = &properties.access_policies {
        policy::validate(policies)?;
    }
    if let Some(mode) = &properties.create_mode
        && !["default", "recover"].contains(&mode.to_ascii_lowercase().as_str())
    {
        return Err(KvError::InvalidRequest(format!(
            "properties.createMode '{mode}' is not valid; use 'default' or 'recover'."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_names_follow_azure_rules() {
        for good in ["abc", "my-vault-1", "A23456789012345678901234"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "1abc",
            "abc-",
            "a--b",
            "a_bc",
            "A234567890123456789012345",
            "ab c",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_errors_name_the_field() {
        let error = parse::<VaultRequest>(br#"{"properties":{"enablePurgeProtection":"yes"}}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("properties.enablePurgeProtection"),
            "{error}"
        );
        assert!(parse::<VaultRequest>(b"{not json").is_err());
        assert!(parse::<VaultRequest>(b"").is_err());
    }

    #[test]
    fn settings_transitions_are_one_way() {
        let mut properties = VaultRequestProperties {
            enable_purge_protection: Some(false),
            ..Default::default()
        };
        assert!(check_settings(&properties, Some(true), None).is_err());
        assert!(check_settings(&properties, Some(false), None).is_ok());
        properties.soft_delete_retention_in_days = Some(30);
        assert!(check_settings(&properties, None, Some(90)).is_err());
        properties.soft_delete_retention_in_days = Some(6);
        assert!(check_settings(&properties, None, None).is_err());
    }
}
