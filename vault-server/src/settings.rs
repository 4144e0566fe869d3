//! The settable properties of a Recovery Services vault: defaults, the merge of a request
//! into the stored document, canonical enum spelling (clients send any case), and the rules
//! on transitions (immutability only moves forward once Locked, redundancy is fixed once
//! items are protected, `AlwaysON` soft delete stays on).

use serde_json::{Map, Value, json};

use crate::error::{Result, VsError};

/// What a new vault starts with (Azure's defaults).
pub fn defaults() -> Map<String, Value> {
    let value = json!({
        "publicNetworkAccess": "Enabled",
        "redundancySettings": {
            "standardTierStorageRedundancy": "GeoRedundant",
            "crossRegionRestore": "Disabled",
        },
        "securitySettings": {
            "immutabilitySettings": {"state": "Disabled"},
            "softDeleteSettings": {
                "softDeleteState": "Enabled",
                "softDeleteRetentionPeriodInDays": 14,
                "enhancedSecurityState": "Enabled",
            },
            "multiUserAuthorization": "Disabled",
        },
        "monitoringSettings": {
            "azureMonitorAlertSettings": {"alertsForAllJobFailures": "Enabled"},
            "classicAlertSettings": {"alertsForCriticalOperations": "Disabled"},
        },
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// Properties the service owns; a request carrying them is not an error, they are ignored.
const READ_ONLY: &[&str] = &[
    "provisioningState",
    "privateEndpointConnections",
    "privateEndpointStateForBackup",
    "privateEndpointStateForSiteRecovery",
    "backupStorageVersion",
    "bcdrSecurityLevel",
    "secureScore",
    "moveState",
    "moveDetails",
];

/// Merges `request` (JSON merge: objects recursively, other values replace) into `current`.
pub fn merge(current: &mut Map<String, Value>, request: &Map<String, Value>) {
    for (key, value) in request {
        if READ_ONLY.contains(&key.as_str()) || key == "multiUserAuthorization" {
            continue;
        }
        match (current.get_mut(key), value) {
            (Some(Value::Object(existing)), Value::Object(incoming)) => merge(existing, incoming),
            (_, Value::Null) => {
                current.remove(key);
            }
            _ => {
                current.insert(key.clone(), value.clone());
            }
        }
    }
}

fn get_str<'a>(map: &'a Map<String, Value>, path: &[&str]) -> Option<&'a str> {
    let mut value = map.get(path[0])?;
    for key in &path[1..] {
        value = value.get(key)?;
    }
    value.as_str()
}

fn set_str(map: &mut Map<String, Value>, path: &[&str], canonical: &str) {
    let mut value = map.get_mut(path[0]);
    for key in &path[1..] {
        value = value.and_then(|v| v.get_mut(key));
    }
    if let Some(value) = value {
        *value = Value::String(canonical.to_string());
    }
}

/// Rewrites an enum value to its canonical spelling, or names the allowed values.
fn canonical(map: &mut Map<String, Value>, path: &[&str], allowed: &[&str]) -> Result<()> {
    let Some(given) = get_str(map, path) else {
        if let Some(v) = lookup(map, path)
            && !v.is_null()
        {
            return Err(VsError::BadRequest(format!(
                "properties.{} must be a string, one of: {}.",
                path.join("."),
                allowed.join(", ")
            )));
        }
        return Ok(());
    };
    match allowed.iter().find(|a| a.eq_ignore_ascii_case(given)) {
        Some(value) => {
            set_str(map, path, value);
            Ok(())
        }
        None => Err(VsError::BadRequest(format!(
            "properties.{} '{given}' is not valid; use one of: {}.",
            path.join("."),
            allowed.join(", ")
        ))),
    }
}

fn lookup<'a>(map: &'a Map<String, Value>, path: &[&str]) -> Option<&'a Value> {
    let mut value = map.get(path[0])?;
    for key in &path[1..] {
        value = value.get(key)?;
    }
    Some(value)
}

/// Vault properties that are objects of settings.
const OBJECT_SETTINGS: &[&[&str]] = &[
    &["securitySettings"],
    &["securitySettings", "immutabilitySettings"],
    &["securitySettings", "softDeleteSettings"],
    &["redundancySettings"],
    &["monitoringSettings"],
    &["restoreSettings"],
    &["encryption"],
    &["upgradeDetails"],
];

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub const REDUNDANCY: &[&str] = &["GeoRedundant", "LocallyRedundant", "ZoneRedundant"];
const ENABLED_DISABLED: &[&str] = &["Enabled", "Disabled"];
const IMMUTABILITY: &[&str] = &["Disabled", "Unlocked", "Locked"];
const SOFT_DELETE: &[&str] = &["Enabled", "Disabled", "AlwaysON"];

pub fn redundancy(properties: &Map<String, Value>) -> &str {
    get_str(
        properties,
        &["redundancySettings", "standardTierStorageRedundancy"],
    )
    .unwrap_or("GeoRedundant")
}

pub fn immutability(properties: &Map<String, Value>) -> &str {
    get_str(
        properties,
        &["securitySettings", "immutabilitySettings", "state"],
    )
    .unwrap_or("Disabled")
}

pub fn soft_delete_state(properties: &Map<String, Value>) -> &str {
    get_str(
        properties,
        &["securitySettings", "softDeleteSettings", "softDeleteState"],
    )
    .unwrap_or("Enabled")
}

/// Canonicalises `next` and checks it against the rules and the vault's `current` state.
pub fn validate(
    vault: &str,
    current: Option<&Map<String, Value>>,
    next: &mut Map<String, Value>,
    items_protected: bool,
) -> Result<()> {
    // Known settings groups must be objects: a number or a string there is a mistake to
    // name, not something to ignore.
    for path in OBJECT_SETTINGS {
        if let Some(value) = lookup(next, path)
            && !value.is_object()
            && !value.is_null()
        {
            return Err(VsError::BadRequest(format!(
                "properties.{} must be an object; {} was given.",
                path.join("."),
                kind_of(value)
            )));
        }
    }
    canonical(next, &["publicNetworkAccess"], ENABLED_DISABLED)?;
    canonical(
        next,
        &["redundancySettings", "standardTierStorageRedundancy"],
        REDUNDANCY,
    )?;
    canonical(
        next,
        &["redundancySettings", "crossRegionRestore"],
        ENABLED_DISABLED,
    )?;
    canonical(
        next,
        &["securitySettings", "immutabilitySettings", "state"],
        IMMUTABILITY,
    )?;
    canonical(
        next,
        &["securitySettings", "softDeleteSettings", "softDeleteState"],
        SOFT_DELETE,
    )?;
    canonical(
        next,
        &[
            "securitySettings",
            "softDeleteSettings",
            "enhancedSecurityState",
        ],
        SOFT_DELETE,
    )?;
    if let Some(days) = lookup(
        next,
        &[
            "securitySettings",
            "softDeleteSettings",
            "softDeleteRetentionPeriodInDays",
        ],
    ) {
        match days.as_i64() {
            Some(14..=180) => {}
            _ => {
                return Err(VsError::BadRequest(format!(
                    "properties.securitySettings.softDeleteSettings.softDeleteRetentionPeriodInDays must be a number of days between 14 and 180; {days} was given."
                )));
            }
        }
    }
    if get_str(next, &["redundancySettings", "crossRegionRestore"]) == Some("Enabled")
        && redundancy(next) != "GeoRedundant"
    {
        return Err(VsError::BadRequest(format!(
            "Cross Region Restore needs GeoRedundant storage; vault {vault} is {}.",
            redundancy(next)
        )));
    }
    let Some(current) = current else {
        if immutability(next) == "Locked" {
            return Err(VsError::BadRequest(
                "A new vault cannot start Locked: create it with immutability Unlocked, then lock it.".into(),
            ));
        }
        return Ok(());
    };
    match (immutability(current), immutability(next)) {
        ("Locked", "Locked") => {}
        ("Locked", _) => return Err(VsError::ImmutabilityLocked(vault.to_string())),
        ("Disabled", "Locked") => {
            return Err(VsError::BadRequest(format!(
                "Immutability of vault {vault} is Disabled: enable it (Unlocked) first, then lock it."
            )));
        }
        _ => {}
    }
    if soft_delete_state(current) == "AlwaysON" && soft_delete_state(next) != "AlwaysON" {
        return Err(VsError::BadRequest(format!(
            "Soft delete of vault {vault} is AlwaysON and can no longer be changed."
        )));
    }
    if items_protected && redundancy(current) != redundancy(next) {
        return Err(VsError::RedundancyLocked {
            vault: vault.to_string(),
            current: redundancy(current).to_string(),
            requested: redundancy(next).to_string(),
        });
    }
    Ok(())
}

/// Vault names: 2–50 characters, a letter first, then letters, digits and hyphens.
pub fn validate_name(name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let valid = (2..=50).contains(&bytes.len())
        && bytes[0].is_ascii_alphabetic()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-');
    if valid {
        Ok(())
    } else {
        Err(VsError::InvalidName(format!(
            "Vault name '{name}' is invalid: use 2-50 characters, starting with a letter, containing only letters, numbers and hyphens."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(mut base: Map<String, Value>, patch: Value) -> Map<String, Value> {
        merge(&mut base, patch.as_object().unwrap());
        base
    }

    #[test]
    fn names_follow_the_portal_rule() {
        for good in ["ab", "Vault-1", &"a".repeat(50)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["a", "1vault", "va_ult", &"a".repeat(51), "v ault", "-vault"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enums_are_canonicalised_and_unknown_values_refused() {
        let mut next = with(
            defaults(),
            json!({"redundancySettings": {"standardTierStorageRedundancy": "locallyredundant"},
                   "securitySettings": {"softDeleteSettings": {"softDeleteState": "AlwaysOn"}}}),
        );
        validate("v", None, &mut next, false).unwrap();
        assert_eq!(redundancy(&next), "LocallyRedundant");
        assert_eq!(soft_delete_state(&next), "AlwaysON");
        let mut bad = with(
            defaults(),
            json!({"redundancySettings": {"standardTierStorageRedundancy": "Tape"}}),
        );
        assert!(validate("v", None, &mut bad, false).is_err());
    }

    #[test]
    fn immutability_moves_forward_and_locked_is_final() {
        let state = |s: &str| {
            with(
                defaults(),
                json!({"securitySettings": {"immutabilitySettings": {"state": s}}}),
            )
        };
        let check = |from: &str, to: &str| validate("v", Some(&state(from)), &mut state(to), false);
        assert!(check("Disabled", "Unlocked").is_ok());
        assert!(check("Unlocked", "Locked").is_ok());
        assert!(check("Unlocked", "Disabled").is_ok());
        assert!(check("Disabled", "Locked").is_err());
        assert!(matches!(
            check("Locked", "Unlocked"),
            Err(VsError::ImmutabilityLocked(_))
        ));
        assert!(matches!(
            check("Locked", "Disabled"),
            Err(VsError::ImmutabilityLocked(_))
        ));
    }

    #[test]
    fn redundancy_is_fixed_once_items_are_protected() {
        let lrs = with(
            defaults(),
            json!({"redundancySettings": {"standardTierStorageRedundancy": "LocallyRedundant"}}),
        );
        assert!(validate("v", Some(&defaults()), &mut lrs.clone(), false).is_ok());
        assert!(matches!(
            validate("v", Some(&defaults()), &mut lrs.clone(), true),
            Err(VsError::RedundancyLocked { .. })
        ));
        let mut crr = with(
            lrs,
            json!({"redundancySettings": {"crossRegionRestore": "Enabled"}}),
        );
        assert!(
            validate("v", None, &mut crr, false).is_err(),
            "CRR needs GRS"
        );
    }
}
