//! Access policies: who may do what with a vault's secrets, keys, certificates and storage
//! accounts. The stored shape is ARM's `AccessPolicyEntry`; the data plane checks secret
//! permissions against the caller's tenant and object id.

use serde::{Deserialize, Serialize};
use sim_core::auth::Principal;

use crate::error::KvError;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessPolicy {
    pub tenant_id: String,
    pub object_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<String>,
    pub permissions: Permissions,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Permissions {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage: Vec<String>,
}

/// A secret operation's permission, as access policies name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretPermission {
    Get,
    List,
    Set,
    Delete,
    Recover,
    Backup,
    Restore,
    Purge,
}

impl SecretPermission {
    pub fn name(self) -> &'static str {
        match self {
            SecretPermission::Get => "get",
            SecretPermission::List => "list",
            SecretPermission::Set => "set",
            SecretPermission::Delete => "delete",
            SecretPermission::Recover => "recover",
            SecretPermission::Backup => "backup",
            SecretPermission::Restore => "restore",
            SecretPermission::Purge => "purge",
        }
    }
}

const SECRET_PERMISSIONS: &[&str] = &[
    "all", "get", "list", "set", "delete", "backup", "restore", "recover", "purge",
];
const KEY_PERMISSIONS: &[&str] = &[
    "all",
    "encrypt",
    "decrypt",
    "wrapkey",
    "unwrapkey",
    "sign",
    "verify",
    "get",
    "list",
    "create",
    "update",
    "import",
    "delete",
    "backup",
    "restore",
    "recover",
    "purge",
    "release",
    "rotate",
    "getrotationpolicy",
    "setrotationpolicy",
];
const CERTIFICATE_PERMISSIONS: &[&str] = &[
    "all",
    "get",
    "list",
    "delete",
    "create",
    "import",
    "update",
    "managecontacts",
    "getissuers",
    "listissuers",
    "setissuers",
    "deleteissuers",
    "manageissuers",
    "recover",
    "purge",
    "backup",
    "restore",
];
const STORAGE_PERMISSIONS: &[&str] = &[
    "all",
    "get",
    "list",
    "delete",
    "set",
    "update",
    "regeneratekey",
    "getsas",
    "listsas",
    "deletesas",
    "setsas",
    "recover",
    "backup",
    "restore",
    "purge",
];

/// Checks ids and permission names; the error names the entry and the value to fix.
pub fn validate(policies: &[AccessPolicy]) -> Result<(), KvError> {
    if policies.len() > 1024 {
        return Err(KvError::InvalidRequest(format!(
            "A vault holds at most 1024 access policies; {} were given.",
            policies.len()
        )));
    }
    for (index, policy) in policies.iter().enumerate() {
        for (field, value) in [
            ("tenantId", &policy.tenant_id),
            ("objectId", &policy.object_id),
        ] {
            if uuid::Uuid::parse_str(value).is_err() {
                return Err(KvError::InvalidRequest(format!(
                    "properties.accessPolicies[{index}].{field} '{value}' is not a GUID."
                )));
            }
        }
        let lists = [
            ("keys", &policy.permissions.keys, KEY_PERMISSIONS),
            ("secrets", &policy.permissions.secrets, SECRET_PERMISSIONS),
            (
                "certificates",
                &policy.permissions.certificates,
                CERTIFICATE_PERMISSIONS,
            ),
            ("storage", &policy.permissions.storage, STORAGE_PERMISSIONS),
        ];
        for (kind, given, allowed) in lists {
            if let Some(bad) = given
                .iter()
                .find(|p| !allowed.contains(&p.to_ascii_lowercase().as_str()))
            {
                return Err(KvError::InvalidRequest(format!(
                    "properties.accessPolicies[{index}].permissions.{kind} contains '{bad}', which is not a {kind} permission. Allowed: {}.",
                    allowed.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// True when some policy of the caller's tenant and object id grants `permission`.
pub fn allows(policies: &[AccessPolicy], caller: &Principal, permission: SecretPermission) -> bool {
    policies.iter().any(|policy| {
        policy.tenant_id.eq_ignore_ascii_case(&caller.tenant_id)
            && policy.object_id.eq_ignore_ascii_case(&caller.object_id)
            && policy
                .application_id
                .as_deref()
                .is_none_or(|app| app.eq_ignore_ascii_case(&caller.app_id))
            && policy
                .permissions
                .secrets
                .iter()
                .any(|p| p.eq_ignore_ascii_case("all") || p.eq_ignore_ascii_case(permission.name()))
    })
}

/// How `accessPolicies/{operationKind}` changes the list.
#[derive(Clone, Copy, Debug)]
pub enum PolicyEdit {
    /// Add the permissions to the entry of the same identity (or add the entry).
    Add,
    /// Replace the entry of the same identity (or add it).
    Replace,
    /// Remove the permissions from the entry; an entry left with none disappears.
    Remove,
}

impl PolicyEdit {
    pub fn parse(kind: &str) -> Option<Self> {
        match kind.to_ascii_lowercase().as_str() {
            "add" => Some(PolicyEdit::Add),
            "replace" => Some(PolicyEdit::Replace),
            "remove" => Some(PolicyEdit::Remove),
            _ => None,
        }
    }
}

pub fn apply(current: &mut Vec<AccessPolicy>, edit: PolicyEdit, changes: &[AccessPolicy]) {
    for change in changes {
        let existing = current.iter_mut().position(|p| same_identity(p, change));
        match (edit, existing) {
            (PolicyEdit::Add, Some(i)) => {
                let entry = &mut current[i].permissions;
                union(&mut entry.keys, &change.permissions.keys);
                union(&mut entry.secrets, &change.permissions.secrets);
                union(&mut entry.certificates, &change.permissions.certificates);
                union(&mut entry.storage, &change.permissions.storage);
            }
            (PolicyEdit::Replace, Some(i)) => current[i] = change.clone(),
            (PolicyEdit::Add | PolicyEdit::Replace, None) => current.push(change.clone()),
            (PolicyEdit::Remove, Some(i)) => {
                let entry = &mut current[i].permissions;
                subtract(&mut entry.keys, &change.permissions.keys);
                subtract(&mut entry.secrets, &change.permissions.secrets);
                subtract(&mut entry.certificates, &change.permissions.certificates);
                subtract(&mut entry.storage, &change.permissions.storage);
                if *entry == Permissions::default() {
                    current.remove(i);
                }
            }
            (PolicyEdit::Remove, None) => {}
        }
    }
}

fn same_identity(a: &AccessPolicy, b: &AccessPolicy) -> bool {
    a.tenant_id.eq_ignore_ascii_case(&b.tenant_id)
        && a.object_id.eq_ignore_ascii_case(&b.object_id)
        && a.application_id.as_deref().map(str::to_ascii_lowercase)
            == b.application_id.as_deref().map(str::to_ascii_lowercase)
}

fn union(into: &mut Vec<String>, add: &[String]) {
    for permission in add {
        if !into.iter().any(|p| p.eq_ignore_ascii_case(permission)) {
            into.push(permission.clone());
        }
    }
}

fn subtract(from: &mut Vec<String>, remove: &[String]) {
    from.retain(|p| !remove.iter().any(|r| r.eq_ignore_ascii_case(p)));
}

#[cfg(test)]
mod tests {
    use super::*;

    const TENANT: &str = "a2e0c0de-5e11-4a55-9a2e-000000000001";
    const OBJECT: &str = "a2e0c0de-5e11-4a55-9a2e-0000000000aa";

    fn policy(secrets: &[&str]) -> AccessPolicy {
        AccessPolicy {
            tenant_id: TENANT.into(),
            object_id: OBJECT.into(),
            application_id: None,
            permissions: Permissions {
                secrets: secrets.iter().map(|s| s.to_string()).collect(),
                ..Permissions::default()
            },
        }
    }

    fn caller(tenant: &str) -> Principal {
        Principal {
            tenant_id: tenant.into(),
            object_id: OBJECT.to_uppercase(),
            app_id: "app".into(),
            audience: "https://vault.azure.net".into(),
            roles: vec![],
        }
    }

    #[test]
    fn permissions_match_case_insensitively_and_all_grants_everything() {
        let policies = vec![policy(&["Get", "List"])];
        assert!(allows(&policies, &caller(TENANT), SecretPermission::Get));
        assert!(!allows(&policies, &caller(TENANT), SecretPermission::Set));
        assert!(!allows(
            &policies,
            &caller("a2e0c0de-5e11-4a55-9a2e-0000000000ff"),
            SecretPermission::Get
        ));
        assert!(allows(
            &[policy(&["all"])],
            &caller(TENANT),
            SecretPermission::Purge
        ));
    }

    #[test]
    fn add_replace_remove_edit_the_entry_of_the_same_identity() {
        let mut current = vec![policy(&["get"])];
        apply(&mut current, PolicyEdit::Add, &[policy(&["set", "GET"])]);
        assert_eq!(current[0].permissions.secrets, ["get", "set"]);
        apply(&mut current, PolicyEdit::Replace, &[policy(&["list"])]);
        assert_eq!(current[0].permissions.secrets, ["list"]);
        apply(&mut current, PolicyEdit::Remove, &[policy(&["list"])]);
        assert!(current.is_empty());
    }

    #[test]
    fn unknown_permission_names_are_refused_by_name() {
        let error = validate(&[policy(&["get", "read"])])
            .unwrap_err()
            .to_string();
        assert!(error.contains("'read'"), "{error}");
        let mut bad_id = policy(&["get"]);
        bad_id.object_id = "nope".into();
        assert!(
            validate(&[bad_id])
                .unwrap_err()
                .to_string()
                .contains("objectId")
        );
    }
}
