//! Seed files: the resources a test suite or a demo expects to find, created at start-up
//! (`azsim up --seed FILE`) or on a running stack (`azsim seed FILE`).
//!
//! Every entry goes through the public APIs (ARM, the Key Vault data plane, entra-sim's
//! admin API) as the well-known admin app, so a seed meets exactly the validation a client
//! meets. Applying a seed twice changes nothing: a resource that exists is left as it is
//! (its settings are not re-applied: a vault with protected items may no longer change
//! redundancy), a secret is set only when its current value differs, an application
//! secret only when none has its display name. An error names the entry that failed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sim_core::well_known;

use crate::Target;
use crate::api::{Endpoints, subscription_path};

#[derive(clap::Args)]
pub struct SeedArgs {
    /// The seed file (JSON).
    file: PathBuf,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    resource_groups: Vec<ResourceGroup>,
    #[serde(default)]
    recovery_services_vaults: Vec<RecoveryServicesVault>,
    #[serde(default)]
    key_vaults: Vec<KeyVault>,
    #[serde(default)]
    applications: Vec<Application>,
    #[serde(default)]
    role_assignments: Vec<RoleAssignment>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResourceGroup {
    name: String,
    location: String,
    #[serde(default)]
    tags: Map<String, Value>,
}

/// A Recovery Services vault; `properties` and `identity` are ARM's own shapes
/// (`redundancySettings`, `securitySettings`, `restoreSettings`, …).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RecoveryServicesVault {
    resource_group: String,
    name: String,
    location: String,
    #[serde(default)]
    properties: Map<String, Value>,
    identity: Option<Value>,
    #[serde(default)]
    tags: Map<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyVault {
    resource_group: String,
    name: String,
    location: String,
    /// ARM access policies; `tenantId` may be left out.
    #[serde(default)]
    access_policies: Vec<Value>,
    /// Other ARM properties (`enableSoftDelete`, `softDeleteRetentionInDays`, …).
    #[serde(default)]
    properties: Map<String, Value>,
    /// Secret name → value.
    #[serde(default)]
    secrets: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Application {
    /// The client id to create it with (so tests can name it).
    app_id: String,
    display_name: String,
    #[serde(default)]
    identifier_uris: Vec<String>,
    #[serde(default)]
    app_roles: Vec<Value>,
    #[serde(default)]
    secrets: Vec<ApplicationSecret>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApplicationSecret {
    display_name: String,
    secret_text: String,
    /// Unix seconds; two years from now when absent.
    end_date_time: Option<i64>,
}

/// An Azure RBAC role on the well-known subscription (the scope azsim models), for a
/// principal's object id or an application's client id (its service principal).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RoleAssignment {
    principal_id: Option<String>,
    app_id: Option<String>,
    /// `Owner`, `Contributor` or `Reader`.
    role: String,
}

/// What applying a seed did, entry by entry.
#[derive(Debug, Default)]
pub struct Report {
    pub created: Vec<String>,
    pub unchanged: Vec<String>,
    /// Role assignments, which are upserts (set whether or not they were there).
    pub assigned: Vec<String>,
}

pub async fn run(args: SeedArgs) -> anyhow::Result<()> {
    let located = args.target.locate()?;
    let endpoints = Endpoints::of(&located, Duration::from_secs(30)).await?;
    let report = apply(&endpoints, &read(&args.file)?).await?;
    for entry in &report.created {
        println!("created    {entry}");
    }
    for entry in &report.unchanged {
        println!("unchanged  {entry}");
    }
    for entry in &report.assigned {
        println!("assigned   {entry}");
    }
    Ok(())
}

/// `azsim up --seed FILE`: apply, print one summary line.
pub async fn apply_file(endpoints: &Endpoints, file: &Path) -> anyhow::Result<()> {
    let report = apply(endpoints, &read(file)?).await?;
    println!(
        "seeded from {}: {} created, {} already there, {} role assignments",
        file.display(),
        report.created.len(),
        report.unchanged.len(),
        report.assigned.len()
    );
    Ok(())
}

pub fn read(file: &Path) -> anyhow::Result<Seed> {
    let text =
        std::fs::read(file).with_context(|| format!("reading seed file {}", file.display()))?;
    let mut deserializer = serde_json::Deserializer::from_slice(&text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        anyhow::anyhow!(
            "seed file {}: at '{}': {}",
            file.display(),
            e.path(),
            e.inner()
        )
    })
}

pub async fn apply(e: &Endpoints, seed: &Seed) -> anyhow::Result<Report> {
    let mut report = Report::default();
    for (i, group) in seed.resource_groups.iter().enumerate() {
        let entry = format!("resourceGroups[{i}] '{}'", group.name);
        let created = resource_group(e, group).await.context(entry.clone())?;
        report.note(created, entry);
    }
    for (i, vault) in seed.recovery_services_vaults.iter().enumerate() {
        let entry = format!(
            "recoveryServicesVaults[{i}] '{}/{}'",
            vault.resource_group, vault.name
        );
        let created = recovery_services_vault(e, vault)
            .await
            .context(entry.clone())?;
        report.note(created, entry);
    }
    for (i, app) in seed.applications.iter().enumerate() {
        let entry = format!("applications[{i}] '{}' ({})", app.display_name, app.app_id);
        let created = application(e, app).await.context(entry.clone())?;
        report.note(created, entry);
    }
    for (i, assignment) in seed.role_assignments.iter().enumerate() {
        let who = match (&assignment.principal_id, &assignment.app_id) {
            (Some(object_id), None) => object_id.clone(),
            (None, Some(app_id)) => format!("app {app_id}"),
            _ => bail!("roleAssignments[{i}]: give either principalId or appId"),
        };
        let entry = format!("roleAssignments[{i}] {} for {who}", assignment.role);
        role_assignment(e, assignment)
            .await
            .context(entry.clone())?;
        report.assigned.push(entry);
    }
    // Key Vaults last: their access policies may name the identities created above.
    for (i, vault) in seed.key_vaults.iter().enumerate() {
        let entry = format!("keyVaults[{i}] '{}/{}'", vault.resource_group, vault.name);
        let created = key_vault(e, vault).await.context(entry.clone())?;
        report.note(created, entry);
    }
    Ok(report)
}

impl Report {
    fn note(&mut self, created: bool, entry: String) {
        match created {
            true => self.created.push(entry),
            false => self.unchanged.push(entry),
        }
    }
}

fn group_path(group: &str) -> String {
    format!("{}/resourceGroups/{group}", subscription_path())
}

async fn resource_group(e: &Endpoints, group: &ResourceGroup) -> anyhow::Result<bool> {
    let path = group_path(&group.name);
    if e.arm_get(&path).await?.is_some() {
        return Ok(false);
    }
    e.arm(
        Method::PUT,
        &path,
        Some(json!({"location": group.location, "tags": group.tags})),
    )
    .await?;
    Ok(true)
}

async fn recovery_services_vault(
    e: &Endpoints,
    vault: &RecoveryServicesVault,
) -> anyhow::Result<bool> {
    let path = format!(
        "{}/providers/Microsoft.RecoveryServices/vaults/{}",
        group_path(&vault.resource_group),
        vault.name
    );
    if e.arm_get(&path).await?.is_some() {
        return Ok(false);
    }
    e.arm(
        Method::PUT,
        &path,
        Some(json!({"location": vault.location, "tags": vault.tags,
            "sku": {"name": "RS0", "tier": "Standard"}, "properties": {}})),
    )
    .await?;
    // Settings as the portal applies them after creation, one PATCH each, so an error
    // names the setting.
    for (name, value) in &vault.properties {
        e.arm(
            Method::PATCH,
            &path,
            Some(json!({"properties": {name.clone(): value.clone()}})),
        )
        .await
        .with_context(|| format!("properties.{name}"))?;
    }
    if let Some(identity) = &vault.identity {
        e.arm(Method::PATCH, &path, Some(json!({"identity": identity})))
            .await
            .context("identity")?;
    }
    Ok(true)
}

async fn key_vault(e: &Endpoints, vault: &KeyVault) -> anyhow::Result<bool> {
    let path = format!(
        "{}/providers/Microsoft.KeyVault/vaults/{}",
        group_path(&vault.resource_group),
        vault.name
    );
    let created = match e.arm_get(&path).await? {
        Some(_) => false,
        None => {
            let mut properties = vault.properties.clone();
            properties
                .entry("tenantId")
                .or_insert(json!(well_known::TENANT_ID));
            properties
                .entry("sku")
                .or_insert(json!({"family": "A", "name": "standard"}));
            let policies: Vec<Value> = vault
                .access_policies
                .iter()
                .map(|policy| {
                    let mut policy = policy.clone();
                    if let Some(object) = policy.as_object_mut() {
                        object
                            .entry("tenantId")
                            .or_insert(json!(well_known::TENANT_ID));
                    }
                    policy
                })
                .collect();
            properties.insert("accessPolicies".into(), Value::Array(policies));
            e.arm(
                Method::PUT,
                &path,
                Some(json!({"location": vault.location, "properties": properties})),
            )
            .await?;
            true
        }
    };
    let mut changed = created;
    for (name, value) in &vault.secrets {
        let current = e
            .get_secret(&vault.name, name)
            .await
            .with_context(|| format!("secrets.{name}"))?;
        if current.as_deref() != Some(value) {
            e.set_secret(&vault.name, name, value)
                .await
                .with_context(|| format!("secrets.{name}"))?;
            changed = true;
        }
    }
    Ok(changed)
}

async fn application(e: &Endpoints, app: &Application) -> anyhow::Result<bool> {
    let base = format!("/admin/tenants/{}/applications", well_known::TENANT_ID);
    let existing = e
        .entra_admin(Method::GET, &format!("{base}/{}", app.app_id), None)
        .await?;
    let mut changed = false;
    let secrets_present: Vec<String> = match existing {
        Some(found) => found["passwordCredentials"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["displayName"].as_str().map(str::to_owned))
            .collect(),
        None => {
            e.entra_admin(
                Method::POST,
                &base,
                Some(json!({"appId": app.app_id, "displayName": app.display_name,
                    "identifierUris": app.identifier_uris, "appRoles": app.app_roles})),
            )
            .await?;
            changed = true;
            Vec::new()
        }
    };
    for secret in &app.secrets {
        if secrets_present.contains(&secret.display_name) {
            continue;
        }
        if secret.display_name.trim().is_empty() {
            bail!("secrets need a displayName (it is what makes a second seed skip them)");
        }
        let mut body =
            json!({"displayName": secret.display_name, "secretText": secret.secret_text});
        if let Some(end) = secret.end_date_time {
            body["endDateTime"] = json!(end);
        }
        e.entra_admin(
            Method::POST,
            &format!("{base}/{}/secrets", app.app_id),
            Some(body),
        )
        .await
        .with_context(|| format!("secret '{}'", secret.display_name))?;
        changed = true;
    }
    Ok(changed)
}

/// Each ARM plane keeps its own role assignments: vault-server's and keyvault-sim's.
async fn role_assignment(e: &Endpoints, assignment: &RoleAssignment) -> anyhow::Result<()> {
    let object_id = match (&assignment.principal_id, &assignment.app_id) {
        (Some(object_id), _) => object_id.clone(),
        (None, Some(app_id)) => {
            let path = format!(
                "/admin/tenants/{}/applications/{app_id}",
                well_known::TENANT_ID
            );
            let app = e
                .entra_admin(Method::GET, &path, None)
                .await?
                .with_context(|| format!("no application has appId '{app_id}'"))?;
            app["servicePrincipalId"]
                .as_str()
                .context("the application has no service principal")?
                .to_string()
        }
        (None, None) => bail!("give either principalId or appId"),
    };
    let body = json!({"role": assignment.role});
    for base in [&e.arm, &e.keyvault_mgmt] {
        let url = format!("{base}/admin/roleAssignments/{object_id}");
        e.admin_put(&url, &body).await?;
    }
    Ok(())
}
