//! Token issuance: who is asking (a confidential client or a managed identity), for which
//! resource, and the v1 access token Azure resources receive (reference §2.6).

use std::sync::Arc;

use serde::Serialize;
use sim_core::SimClock;
use uuid::Uuid;

use crate::assertion;
use crate::directory::{Directory, IdentitySelector, ManagedIdentity, Tenant};
use crate::error::{EntraError, Result};
use crate::resources::{self, ResolvedResource};
use crate::signing::SigningKeys;

/// Lifetime of an access token, in seconds (what `expires_in` reports).
pub const TOKEN_LIFETIME: i64 = 3599;

/// The client credential a token request carries.
pub enum ClientCredential {
    Secret(String),
    /// A client assertion (already checked to be of type jwt-bearer).
    Assertion(String),
}

pub struct ClientCredentialsRequest {
    /// The tenant of the endpoint (see [`TokenIssuer::tenant`]).
    pub tenant: Tenant,
    pub client_id: String,
    pub credential: ClientCredential,
    /// The resource (from `scope` minus `/.default`, or the v1 `resource` parameter).
    pub resource: String,
    /// The client asked for CAE claims (`xms_cc`).
    pub capabilities_requested: bool,
}

#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: i64,
    pub expires_on: i64,
    pub not_before: i64,
    pub resource: String,
}

/// Whose token it is.
struct Subject<'a> {
    tenant_id: &'a str,
    object_id: &'a str,
    app_id: &'a str,
    /// `appidacr`: "1" secret, "2" certificate or managed identity.
    app_id_acr: &'static str,
    mi_resource_id: Option<&'a str>,
    /// A signed-in user (interactive sign-in), else an app or managed identity.
    user: Option<&'a crate::interactive::User>,
}

#[derive(Serialize)]
struct AccessTokenClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    aio: String,
    appid: &'a str,
    appidacr: &'a str,
    idp: &'a str,
    idtyp: &'static str,
    oid: &'a str,
    rh: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    roles: Vec<String>,
    sub: &'a str,
    tid: &'a str,
    uti: String,
    ver: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    xms_cc: Option<[&'static str; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xms_mirid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upn: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scp: Option<&'static str>,
}

#[derive(Clone)]
pub struct TokenIssuer {
    pub directory: Directory,
    pub keys: Arc<SigningKeys>,
    pub clock: SimClock,
}

impl TokenIssuer {
    /// Resolves the tenant path segment of an endpoint (GUID or domain).
    pub async fn tenant(&self, segment: &str) -> Result<Tenant> {
        if matches!(
            segment.to_ascii_lowercase().as_str(),
            "common" | "organizations" | "consumers"
        ) {
            return Err(EntraError::TenantRequired(segment.to_string()));
        }
        self.directory
            .resolve_tenant(segment)
            .await?
            .ok_or_else(|| EntraError::TenantNotFound(segment.to_string()))
    }

    /// The client-credentials grant: authenticate the app, resolve the resource, mint.
    pub async fn client_credentials(
        &self,
        request: ClientCredentialsRequest,
    ) -> Result<IssuedToken> {
        let tenant = &request.tenant;
        let client = self
            .directory
            .client_application(&tenant.id, &request.client_id)
            .await?
            .ok_or_else(|| EntraError::ApplicationNotFound {
                client_id: request.client_id.clone(),
                tenant: tenant.id.clone(),
            })?;
        let now = self.clock.unix();
        let app_id_acr = match &request.credential {
            ClientCredential::Secret(secret) => {
                self.directory.check_secret(&client, secret, now).await?;
                "1"
            }
            ClientCredential::Assertion(jwt) => {
                let certificates = self.directory.certificates(&client.app_object_id).await?;
                let audience_ok = |aud: &str| names_token_endpoint_of(aud, tenant);
                assertion::verify(jwt, &client.app_id, &certificates, audience_ok, now)?;
                "2"
            }
        };
        let resource = resources::resolve(&self.directory, &tenant.id, &request.resource).await?;
        let roles = self
            .directory
            .roles_for(&client.service_principal_id, &resource.app_id)
            .await?;
        let subject = Subject {
            tenant_id: &tenant.id,
            object_id: &client.service_principal_id,
            app_id: &client.app_id,
            app_id_acr,
            mi_resource_id: None,
            user: None,
        };
        self.mint(&subject, &resource, roles, request.capabilities_requested)
    }

    /// A token for a managed identity (the default host identity when `selector` is None).
    pub async fn managed_identity(
        &self,
        selector: Option<IdentitySelector>,
        resource: &str,
    ) -> Result<(IssuedToken, ManagedIdentity)> {
        let selector = selector.unwrap_or(IdentitySelector::ClientId(
            sim_core::well_known::HOST_IDENTITY_CLIENT_ID.into(),
        ));
        let identity = self
            .directory
            .managed_identity(&selector)
            .await?
            .ok_or_else(|| EntraError::NotFound {
                kind: "Managed identity",
                id: match &selector {
                    IdentitySelector::ClientId(v)
                    | IdentitySelector::ObjectId(v)
                    | IdentitySelector::ResourceId(v) => v.clone(),
                },
            })?;
        let resource = resources::resolve(&self.directory, &identity.tenant_id, resource).await?;
        let roles = self
            .directory
            .roles_for(&identity.principal_id, &resource.app_id)
            .await?;
        let subject = Subject {
            tenant_id: &identity.tenant_id,
            object_id: &identity.principal_id,
            app_id: &identity.client_id,
            app_id_acr: "2",
            mi_resource_id: Some(&identity.resource_id),
            user: None,
        };
        let token = self.mint(&subject, &resource, roles, false)?;
        Ok((token, identity))
    }

    /// A user's token from a redeemed authorization code (delegated: `scp`, no app roles).
    pub async fn user_token(&self, grant: &crate::interactive::Grant) -> Result<IssuedToken> {
        let resource = resources::resource_from_scope(&grant.scope)?;
        let resource = resources::resolve(&self.directory, &grant.tenant_id, &resource).await?;
        let subject = Subject {
            tenant_id: &grant.tenant_id,
            object_id: &grant.user.object_id,
            app_id: &grant.client_id,
            // A public client: no client authentication.
            app_id_acr: "0",
            mi_resource_id: None,
            user: Some(&grant.user),
        };
        self.mint(&subject, &resource, Vec::new(), false)
    }

    fn mint(
        &self,
        subject: &Subject<'_>,
        resource: &ResolvedResource,
        roles: Vec<String>,
        cae: bool,
    ) -> Result<IssuedToken> {
        let now = self.clock.unix();
        let issuer = format!("https://sts.windows.net/{}/", subject.tenant_id);
        let claims = AccessTokenClaims {
            aud: &resource.audience,
            iss: &issuer,
            iat: now,
            nbf: now,
            exp: now + TOKEN_LIFETIME,
            aio: opaque(),
            appid: subject.app_id,
            appidacr: subject.app_id_acr,
            idp: &issuer,
            idtyp: if subject.user.is_some() {
                "user"
            } else {
                "app"
            },
            oid: subject.object_id,
            rh: format!("0.{}.", opaque()),
            roles,
            sub: subject.object_id,
            tid: subject.tenant_id,
            uti: opaque(),
            ver: "1.0",
            xms_cc: cae.then_some(["CP1"]),
            xms_mirid: subject.mi_resource_id,
            upn: subject.user.map(|u| u.upn.as_str()),
            name: subject.user.map(|u| u.name.as_str()),
            scp: subject.user.map(|_| "user_impersonation"),
        };
        Ok(IssuedToken {
            access_token: self.keys.sign(&claims)?,
            expires_in: TOKEN_LIFETIME,
            expires_on: now + TOKEN_LIFETIME,
            not_before: now,
            resource: resource.audience.clone(),
        })
    }
}

/// True when `aud` is this tenant's v1 or v2 token endpoint (any host: the simulator is
/// reached as localhost, 127.0.0.1 or a compose name alike).
fn names_token_endpoint_of(aud: &str, tenant: &Tenant) -> bool {
    let Some(rest) = aud.strip_prefix("https://") else {
        return false;
    };
    let Some((_, path)) = rest.split_once('/') else {
        return false;
    };
    let path = path.trim_end_matches('/');
    let Some((segment, endpoint)) = path.split_once('/') else {
        return false;
    };
    let names_tenant =
        segment.eq_ignore_ascii_case(&tenant.id) || segment.eq_ignore_ascii_case(&tenant.domain);
    names_tenant
        && (endpoint == "oauth2/v2.0/token" || endpoint == "oauth2/token" || endpoint == "v2.0")
}

/// Opaque claim values (`aio`, `rh`, `uti`): random, meaningless to clients.
fn opaque() -> String {
    Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> Tenant {
        Tenant {
            id: "a2e0c0de-5e11-4a55-9a2e-000000000001".into(),
            display_name: "t".into(),
            domain: "azsim.onmicrosoft.com".into(),
            created_at: 0,
        }
    }

    #[test]
    fn assertion_audience_must_be_this_tenants_token_endpoint() {
        let t = tenant();
        let table = [
            (
                "https://localhost:10010/a2e0c0de-5e11-4a55-9a2e-000000000001/oauth2/v2.0/token",
                true,
            ),
            (
                "https://login.localhost/azsim.onmicrosoft.com/oauth2/token",
                true,
            ),
            (
                "https://localhost:10010/a2e0c0de-5e11-4a55-9a2e-000000000001/v2.0",
                true,
            ),
            (
                "https://localhost:10010/00000000-0000-0000-0000-000000000000/oauth2/v2.0/token",
                false,
            ),
            (
                "https://localhost:10010/a2e0c0de-5e11-4a55-9a2e-000000000001/oauth2/authorize",
                false,
            ),
            (
                "http://localhost:10010/a2e0c0de-5e11-4a55-9a2e-000000000001/oauth2/v2.0/token",
                false,
            ),
            ("a2e0c0de-5e11-4a55-9a2e-000000000001", false),
        ];
        for (aud, ok) in table {
            assert_eq!(names_token_endpoint_of(aud, &t), ok, "{aud}");
        }
    }
}
