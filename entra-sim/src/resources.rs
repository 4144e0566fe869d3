//! Resources a token can be requested for, and how a requested scope becomes an audience.
//!
//! Real tenants hold service principals of Microsoft's first-party APIs; the simulator has
//! the ones Azure Backup's story needs, with their real app ids and identifier URIs, plus
//! the simulator's own admin API. Apps registered in a tenant are resources too (by app
//! id, `api://{appId}` or their identifier URIs).

use crate::directory::Directory;
use crate::error::{EntraError, Result};

/// App id of the simulator's own admin API (`api://azsim`).
pub const AZSIM_ADMIN_API_APP_ID: &str = "a2e0c0de-5e11-4a55-9a2e-0000000000ad";

pub struct FirstPartyResource {
    pub app_id: &'static str,
    pub display_name: &'static str,
    /// Compared case-insensitively, ignoring one trailing slash.
    pub identifier_uris: &'static [&'static str],
    /// Hosts (any port) that also name this resource: the local Key Vault challenge
    /// resource is `https://vault.localhost:<port>`.
    pub local_hosts: &'static [&'static str],
    pub app_roles: &'static [&'static str],
}

pub const FIRST_PARTY: &[FirstPartyResource] = &[
    FirstPartyResource {
        app_id: "797f4846-ba00-4fd7-ba43-dac1f8f63013",
        display_name: "Windows Azure Service Management API",
        identifier_uris: &[
            "https://management.azure.com",
            "https://management.core.windows.net",
        ],
        local_hosts: &["management.localhost"],
        app_roles: &[],
    },
    FirstPartyResource {
        app_id: "cfa8b339-82a2-471a-a3c9-0fc0be7a4093",
        display_name: "Azure Key Vault",
        identifier_uris: &["https://vault.azure.net"],
        local_hosts: &["vault.localhost"],
        app_roles: &[],
    },
    FirstPartyResource {
        app_id: "e406a681-f3d4-42a8-90b6-c2b029497af1",
        display_name: "Azure Storage",
        identifier_uris: &["https://storage.azure.com"],
        local_hosts: &[],
        app_roles: &[],
    },
    FirstPartyResource {
        app_id: "00000003-0000-0000-c000-000000000000",
        display_name: "Microsoft Graph",
        identifier_uris: &["https://graph.microsoft.com"],
        local_hosts: &[],
        app_roles: &[],
    },
    FirstPartyResource {
        app_id: AZSIM_ADMIN_API_APP_ID,
        display_name: "azsim Admin API",
        identifier_uris: &["api://azsim"],
        local_hosts: &[],
        app_roles: &[sim_core::well_known::ADMIN_ROLE],
    },
];

pub fn first_party_by_app_id(app_id: &str) -> Option<&'static FirstPartyResource> {
    FIRST_PARTY
        .iter()
        .find(|r| r.app_id.eq_ignore_ascii_case(app_id))
}

fn first_party_by_uri(resource: &str) -> Option<&'static FirstPartyResource> {
    let wanted = resource.trim_end_matches('/').to_ascii_lowercase();
    if let Some(found) = FIRST_PARTY
        .iter()
        .find(|r| r.app_id == wanted || r.identifier_uris.iter().any(|u| *u == wanted))
    {
        return Some(found);
    }
    let host = wanted.strip_prefix("https://")?;
    let host = host.split(':').next()?;
    FIRST_PARTY.iter().find(|r| r.local_hosts.contains(&host))
}

/// The resource a token is for: its app id (to look up roles) and the `aud` to stamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedResource {
    pub app_id: String,
    pub audience: String,
    /// False for first-party resources that define no app roles (no lookup needed).
    pub defines_roles: bool,
}

/// Turns a v2 `scope` parameter into the one resource it names.
/// Client credentials accept exactly one `<resource>/.default`; `openid`, `profile` and
/// `offline_access` are tolerated and ignored, as Entra does.
pub fn resource_from_scope(scope: &str) -> Result<String> {
    let mut resources = scope
        .split_whitespace()
        .filter(|s| !matches!(*s, "openid" | "profile" | "offline_access"));
    let (Some(only), None) = (resources.next(), resources.next()) else {
        return Err(EntraError::InvalidScope(scope.to_string()));
    };
    match only.strip_suffix("/.default") {
        Some(resource) if !resource.is_empty() => Ok(resource.to_string()),
        _ => Err(EntraError::InvalidScope(scope.to_string())),
    }
}

/// Resolves a resource URI or app id in `tenant_id`. The audience is the resource exactly
/// as requested (so `https://management.core.windows.net/` keeps its slash), like Entra's
/// v1 tokens.
pub async fn resolve(
    directory: &Directory,
    tenant_id: &str,
    resource: &str,
) -> Result<ResolvedResource> {
    if let Some(first_party) = first_party_by_uri(resource) {
        return Ok(ResolvedResource {
            app_id: first_party.app_id.to_string(),
            audience: resource.to_string(),
            defines_roles: !first_party.app_roles.is_empty(),
        });
    }
    match directory
        .application_for_resource(tenant_id, resource)
        .await?
    {
        Some((app_id, _)) => Ok(ResolvedResource {
            app_id,
            audience: resource.to_string(),
            defines_roles: true,
        }),
        None => Err(EntraError::ResourceNotFound {
            resource: resource.to_string(),
            tenant: tenant_id.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_parsing_follows_entra() {
        let table = [
            (
                "https://management.azure.com/.default",
                Some("https://management.azure.com"),
            ),
            (
                "https://management.core.windows.net//.default",
                Some("https://management.core.windows.net/"),
            ),
            (
                "https://vault.azure.net/.default offline_access",
                Some("https://vault.azure.net"),
            ),
            ("api://azsim/.default", Some("api://azsim")),
            ("https://management.azure.com/user_impersonation", None),
            ("https://a/.default https://b/.default", None),
            ("/.default", None),
            ("", None),
            ("openid", None),
        ];
        for (scope, expected) in table {
            assert_eq!(
                resource_from_scope(scope).ok().as_deref(),
                expected,
                "scope {scope:?}"
            );
        }
    }

    #[test]
    fn first_party_resources_match_with_and_without_slash_and_local_hosts() {
        assert!(first_party_by_uri("https://management.azure.com/").is_some());
        assert!(first_party_by_uri("HTTPS://Management.Core.Windows.Net").is_some());
        assert_eq!(
            first_party_by_uri("https://vault.localhost:10011")
                .unwrap()
                .display_name,
            "Azure Key Vault"
        );
        assert!(first_party_by_uri("https://evil.example.com").is_none());
        assert!(first_party_by_uri("https://vault.localhost.evil.com").is_none());
    }
}
