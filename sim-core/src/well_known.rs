//! The well-known development identity, like Azurite's well-known account: fixed values
//! created on first start so that docs, tests and `azsim env` can name them.
//! They are public by design; never use them outside a local simulation.

/// Tenant id of the default development tenant.
pub const TENANT_ID: &str = "a2e0c0de-5e11-4a55-9a2e-000000000001";
/// Verified domain of the default tenant.
pub const TENANT_DOMAIN: &str = "azsim.onmicrosoft.com";
/// Subscription id of the default subscription (owned by the default tenant).
pub const SUBSCRIPTION_ID: &str = "a2e0c0de-5e11-4a55-9a2e-000000000002";
/// Client (application) id of the well-known admin app.
pub const ADMIN_CLIENT_ID: &str = "a2e0c0de-5e11-4a55-9a2e-00000000000a";
/// Client secret of the well-known admin app.
pub const ADMIN_CLIENT_SECRET: &str = "azsim~DevAdminSecret.0000000000000000000000";
/// Header value the App Service managed-identity protocol expects (`IDENTITY_HEADER`).
pub const IDENTITY_HEADER: &str = "azsim-identity-header";
/// Client id of the well-known system-assigned managed identity served by default on the
/// managed-identity endpoint (the "machine" azsim runs on).
pub const HOST_IDENTITY_CLIENT_ID: &str = "a2e0c0de-5e11-4a55-9a2e-00000000000b";
/// Resource id of that identity.
pub const HOST_IDENTITY_RESOURCE_ID: &str = "/subscriptions/a2e0c0de-5e11-4a55-9a2e-000000000002/resourceGroups/azsim/providers/Microsoft.Compute/virtualMachines/azsim-host";

/// Audience of the simulator's own admin plane (`/admin/*` writes on every service).
pub const ADMIN_AUDIENCE: &str = "api://azsim";
/// App role a token must carry to use the admin plane.
pub const ADMIN_ROLE: &str = "Azsim.Admin";

/// Default ports (`azsim up`); each can be changed by flag or environment variable.
pub const ENTRA_PORT: u16 = 10010;
pub const KEYVAULT_PORT: u16 = 10011;
pub const VAULT_SERVER_PORT: u16 = 10012;
pub const MANAGED_IDENTITY_PORT: u16 = 10013;

/// Resource group that holds the resources azsim creates on its own (the default Key Vault).
pub const DEFAULT_RESOURCE_GROUP: &str = "azsim";
/// Azure region every default resource is placed in.
pub const DEFAULT_LOCATION: &str = "eastus";
/// Name of the Key Vault served at the bare `localhost` host (and `azsim.vault.localhost`).
pub const DEFAULT_KEY_VAULT: &str = "azsim";
/// Object id of the well-known admin app's service principal.
pub const ADMIN_OBJECT_ID: &str = "a2e0c0de-5e11-4a55-9a2e-00000000001a";
/// Port of keyvault-sim's management plane (`Microsoft.KeyVault/vaults` over ARM paths).
pub const KEYVAULT_MANAGEMENT_PORT: u16 = 10014;

/// The well-known admin user (interactive sign-in: the portal), Owner of the subscription.
pub const ADMIN_USER: &str = "admin@azsim.onmicrosoft.com";
/// Its password.
pub const ADMIN_USER_PASSWORD: &str = "azsim~DevAdminPassword.000000000000000000";
/// Its object id (`oid` of its tokens).
pub const ADMIN_USER_OBJECT_ID: &str = "a2e0c0de-5e11-4a55-9a2e-00000000001c";
/// Client id of the well-known public client that signs users in: the azsim portal.
pub const PORTAL_CLIENT_ID: &str = "a2e0c0de-5e11-4a55-9a2e-00000000000c";
/// The one redirect path the portal client may use (any `https://` origin: the simulator is
/// reached as localhost, 127.0.0.1 or a compose name alike).
pub const PORTAL_REDIRECT_PATH: &str = "/portal/signin";
