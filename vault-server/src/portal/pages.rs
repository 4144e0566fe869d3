//! The portal's pages (maud: escaped by construction). Plain HTML forms, no script; the jobs
//! list refreshes itself. Labels on every control, headings in order, usable by keyboard.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

const STYLE: &str = "body{font-family:system-ui,'Segoe UI',sans-serif;margin:0;background:#faf9f8;color:#323130}\
header{background:#0078d4;color:#fff;padding:.6rem 1.5rem;display:flex;align-items:center;justify-content:space-between}\
header a{color:#fff;text-decoration:none;font-weight:600}header button{background:none;border:1px solid #fff;color:#fff;padding:.3rem .8rem;cursor:pointer}\
main{max-width:1180px;margin:0 auto;padding:1rem 1.5rem 3rem}h1{font-size:1.5rem;font-weight:600}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #edebe9;padding-bottom:.3rem}\
table{border-collapse:collapse;width:100%;background:#fff}th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid #edebe9;font-size:.92rem}th{background:#f3f2f1}\
form.card,section.card{background:#fff;padding:1rem 1.2rem;border:1px solid #edebe9;margin:.8rem 0}label{display:block;margin:.6rem 0 .2rem;font-weight:600;font-size:.9rem}\
input,select{padding:.4rem;border:1px solid #8a8886;min-width:16rem}button.primary,a.button{background:#0078d4;color:#fff;border:0;padding:.5rem 1.2rem;margin-top:.8rem;cursor:pointer;text-decoration:none;display:inline-block}\
button:disabled{background:#c8c6c4;cursor:not-allowed}.notice{background:#fff4ce;border-left:4px solid #ffb900;padding:.6rem 1rem}.ok{background:#dff6dd;border-left-color:#107c10}\
.hint{color:#605e5c;font-size:.85rem}.warning{color:#a4262c;font-weight:600}dl{display:grid;grid-template-columns:14rem 1fr;gap:.3rem 1rem;background:#fff;padding:1rem;border:1px solid #edebe9}dt{font-weight:600}\
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1rem}.card h2{margin-top:0}\
input[type=checkbox]{min-width:0;margin-right:.4rem}label.inline{font-weight:400}:focus{outline:2px solid #000;outline-offset:2px}";

fn layout(title: &str, refresh: Option<u32>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(seconds) = refresh {
                    meta http-equiv="refresh" content=(seconds);
                }
                title { (title) " — azsim portal" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a href="/portal" { "azsim · Recovery Services vaults" }
                    form method="post" action="/portal/signout" {
                        button type="submit" { "Sign out" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A card of the vault page that posts one `section` of its settings.
fn settings_form(base: &str, id: &str, title: &str, section: &str, fields: Markup) -> Markup {
    html! {
        form.card method="post" action=(format!("{base}/settings")) id=(id) {
            h2 { (title) }
            input type="hidden" name="section" value=(section);
            (fields)
        }
    }
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn list(value: &Value) -> Vec<Value> {
    value["value"].as_array().cloned().unwrap_or_default()
}

pub fn problem(title: &str, message: &str) -> Markup {
    layout(
        title,
        None,
        html! {
            h1 { (title) }
            p.notice role="alert" { (message) }
            p { a href="/portal" { "Back to the vaults" } }
        },
    )
}

pub fn signed_out() -> Markup {
    layout(
        "Signed out",
        None,
        html! { h1 { "You signed out" } p { a href="/portal" { "Sign in again" } } },
    )
}

/// The vault list and the Create vault form (`form`: the values to show again after a
/// refusal).
pub fn vaults(vaults: &Value, groups: &Value, notice: Option<&str>, form: &Value) -> Markup {
    let vaults = list(vaults);
    let groups = list(groups);
    layout(
        "Recovery Services vaults",
        None,
        html! {
            h1 { "Recovery Services vaults" }
            @if let Some(notice) = notice {
                p.notice role="alert" id="notice" { (notice) }
            }
            table aria-label="Recovery Services vaults" {
                thead { tr { th { "Name" } th { "Resource group" } th { "Location" } th { "Storage redundancy" } } }
                tbody {
                    @if vaults.is_empty() {
                        tr { td colspan="4" { "No vaults yet: create one below." } }
                    }
                    @for vault in &vaults {
                        @let group = text(vault, "/id").split('/').nth(4).unwrap_or("");
                        tr {
                            td { a href=(format!("/portal/vaults/{group}/{}", text(vault, "/name"))) { (text(vault, "/name")) } }
                            td { (group) }
                            td { (text(vault, "/location")) }
                            td { (text(vault, "/properties/redundancySettings/standardTierStorageRedundancy")) }
                        }
                    }
                }
            }
            h2 { "Create Recovery Services vault" }
            form.card method="post" action="/portal/vaults" id="create-vault" {
                p.hint { "Subscription: azsim (a2e0c0de-5e11-4a55-9a2e-000000000002)" }
                label for="resource_group" { "Resource group" }
                select id="resource_group" name="resource_group" {
                    option value="" { "— choose —" }
                    @for group in &groups {
                        option value=(text(group, "/name")) { (text(group, "/name")) }
                    }
                }
                label for="new_resource_group" { "…or create new" }
                input id="new_resource_group" name="new_resource_group" value=(text(form, "/newResourceGroup"));
                label for="name" { "Vault name" }
                input id="name" name="name" required value=(text(form, "/name"))
                    aria-describedby="name-rules";
                p.hint id="name-rules" { "2 to 50 characters: letters, digits and hyphens, starting with a letter." }
                label for="location" { "Region" }
                select id="location" name="location" {
                    @for (name, display, _) in sim_core::arm::REGIONS {
                        option value=(name) selected[*name == text(form, "/location") || (text(form, "/location").is_empty() && *name == "westeurope")] { (display) }
                    }
                }
                div { button.primary type="submit" id="create" { "Review + create" } }
            }
        },
    )
}

/// Jobs matching the chosen status and operation.
pub fn filter_jobs(jobs: &Value, status: Option<&str>, operation: Option<&str>) -> Vec<Value> {
    let wanted = |value: &str, filter: Option<&str>| {
        filter.is_none_or(|f| f.is_empty() || f.eq_ignore_ascii_case(value))
    };
    list(jobs)
        .into_iter()
        .filter(|j| wanted(text(j, "/properties/status"), status))
        .filter(|j| wanted(text(j, "/properties/operation"), operation))
        .collect()
}

/// What the vault page shows, as ARM answered.
pub struct VaultView<'a> {
    pub group: &'a str,
    pub vault: &'a Value,
    pub servers: &'a Value,
    /// Each backup item with its recovery points.
    pub points: &'a [(Value, Value)],
    pub jobs: &'a [Value],
    pub key_vaults: &'a Value,
}

pub fn vault(
    view: VaultView<'_>,
    notice: Option<&str>,
    status: Option<&str>,
    operation: Option<&str>,
) -> Markup {
    let VaultView {
        group,
        vault,
        servers,
        points,
        jobs,
        key_vaults,
    } = view;
    let key_vaults = list(key_vaults);
    let soft_delete = text(
        vault,
        "/properties/securitySettings/softDeleteSettings/softDeleteState",
    );
    let soft_delete_days = vault
        .pointer("/properties/securitySettings/softDeleteSettings/softDeleteRetentionPeriodInDays")
        .and_then(Value::as_i64)
        .unwrap_or(14);
    let name = text(vault, "/name");
    let base = format!("/portal/vaults/{group}/{name}");
    let redundancy = text(
        vault,
        "/properties/redundancySettings/standardTierStorageRedundancy",
    );
    let crr = text(vault, "/properties/redundancySettings/crossRegionRestore") == "Enabled";
    let immutability = match text(
        vault,
        "/properties/securitySettings/immutabilitySettings/state",
    ) {
        "" => "Disabled",
        state => state,
    };
    let principal = text(vault, "/identity/principalId");
    let protected = !points.is_empty();
    let servers = list(servers);
    layout(
        name,
        Some(30),
        html! {
            h1 { (name) " " span.hint { "Recovery Services vault" } }
            @if let Some(notice) = notice {
                p.notice.ok[notice == "Saved."] role="status" id="notice" { (notice) }
            }
            dl aria-label="Overview" {
                dt { "Resource group" } dd { (group) }
                dt { "Location" } dd { (text(vault, "/location")) }
                dt { "Storage redundancy" } dd id="redundancy" { (redundancy) }
                dt { "Cross Region Restore" } dd { (if crr { "Enabled" } else { "Disabled" }) }
                dt { "Immutability" } dd id="immutability" { (immutability) }
                dt { "Soft delete" } dd { (text(vault, "/properties/securitySettings/softDeleteSettings/softDeleteState")) }
                dt { "Identity" } dd id="identity" { @if principal.is_empty() { "None" } @else { "System assigned, principal " (principal) } }
            }
            div.grid {
                (settings_form(&base, "backup-configuration", "Properties › Backup Configuration", "redundancy", html! {
                    label for="redundancy-select" { "Storage replication type" }
                    select id="redundancy-select" name="redundancy" disabled[protected] aria-describedby="redundancy-hint" {
                        @for (value, label) in [("GeoRedundant", "Geo-redundant (GRS)"), ("LocallyRedundant", "Locally-redundant (LRS)"), ("ZoneRedundant", "Zone-redundant (ZRS)")] {
                            option value=(value) selected[value == redundancy] { (label) }
                        }
                    }
                    label.inline { input type="checkbox" name="cross_region_restore" value="on" checked[crr] disabled[protected]; "Enable Cross Region Restore (GRS only)" }
                    p.hint id="redundancy-hint" {
                        @if protected { "The storage replication type cannot be changed once items are protected in the vault: stop protection and delete their data first, or use a new vault." }
                        @else { "Choose before the first backup: it cannot change once items are protected." }
                    }
                    button.primary type="submit" id="save-redundancy" disabled[protected] { "Save" }
                }))
                (settings_form(&base, "immutability-form", "Properties › Immutable vault", "immutability", html! {
                    label for="immutability-select" { "Immutability" }
                    select id="immutability-select" name="immutability" {
                        @for value in ["Disabled", "Unlocked", "Locked"] {
                            option value=(value) selected[value == immutability] { (value) }
                        }
                    }
                    p.warning { "Locked is irreversible: once locked, immutability cannot be disabled, and no recovery point can be deleted before it expires." }
                    button.primary type="submit" id="save-immutability" { "Save" }
                }))
                (settings_form(&base, "identity-form", "Identity", "identity", html! {
                    label for="identity-select" { "System assigned managed identity" }
                    select id="identity-select" name="identity" {
                        option value="on" selected[!principal.is_empty()] { "On" }
                        option value="off" selected[principal.is_empty()] { "Off" }
                    }
                    button.primary type="submit" id="save-identity" { "Save" }
                }))
                (settings_form(&base, "soft-delete-form", "Properties › Security settings › Soft delete", "softdelete", html! {
                    label for="soft-delete-select" { "Soft delete for cloud workloads" }
                    select id="soft-delete-select" name="soft_delete" {
                        @for value in ["Enabled", "Disabled", "AlwaysON"] {
                            option value=(value) selected[value == soft_delete] { (value) }
                        }
                    }
                    label for="soft-delete-days" { "Retention of deleted backup data (days, 14–180)" }
                    input id="soft-delete-days" name="soft_delete_days" type="number" min="14" max="180" value=(soft_delete_days);
                    p.hint { "AlwaysON cannot be turned off again." }
                    button.primary type="submit" id="save-soft-delete" { "Save" }
                }))
                (settings_form(&base, "key-vault-form", "Key Vault access for the vault's identity", "keyvault", html! {
                    label for="key-vault-select" { "Key Vault where agents save their passphrase" }
                    select id="key-vault-select" name="key_vault" disabled[principal.is_empty()] {
                        @for key_vault in &key_vaults {
                            option value=(text(key_vault, "/id")) { (text(key_vault, "/name")) }
                        }
                    }
                    p.hint {
                        @if principal.is_empty() { "Turn on the vault's system-assigned identity first." }
                        @else { "Grants the identity " code { "set" } " on the Key Vault's secrets (an access policy)." }
                    }
                    button.primary type="submit" id="grant-key-vault" disabled[principal.is_empty() || key_vaults.is_empty()] { "Grant set" }
                }))
                section.card aria-labelledby="prepare" {
                    h2 id="prepare" { "Getting started › Backup" }
                    p { "Where is your workload running? " strong { "On-premises" } ". What do you want to back up? " strong { "Files and folders" } "." }
                    p { "Prepare infrastructure: install the agent (" code { "mars-agent install" } "), then register it with the vault credentials." }
                    a.button href=(format!("{base}/credentials")) id="download-credentials" download { "Download vault credentials" }
                    p.hint { "The credentials are valid for 10 days." }
                }
            }
            h2 { "Backup Infrastructure › Protected servers" }
            table id="servers" aria-label="Protected servers" {
                thead { tr { th { "Server" } th { "Agent version" } th { "Items" } th { "Last backup" } th { span.hint { "Actions" } } } }
                tbody {
                    @if servers.is_empty() { tr { td colspan="5" { "No server registered yet." } } }
                    @for server in &servers {
                        tr {
                            td { (text(server, "/properties/friendlyName")) }
                            td { (text(server, "/properties/agentVersion")) }
                            td { (server["properties"]["protectedItemCount"]) }
                            td { (text(server, "/properties/extendedInfo/lastBackupStatus")) }
                            td {
                                form method="post" action=(format!("{base}/servers/{}/delete", text(server, "/name"))) {
                                    button type="submit" class="delete-server" id=(format!("delete-server-{}", text(server, "/name"))) aria-label=(format!("Delete server {}", text(server, "/properties/friendlyName"))) { "Delete" }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Backup items (Files and folders)" }
            table id="items" aria-label="Backup items" {
                thead { tr { th { "Item" } th { "Server" } th { "Last backup status" } th { "Last backup" } th { "Recovery points" } } }
                tbody {
                    @if points.is_empty() { tr { td colspan="5" { "No backup items yet." } } }
                    @for (item, listed) in points {
                        tr {
                            td { (text(item, "/properties/friendlyName")) }
                            td { (text(item, "/properties/containerName")) }
                            td { (text(item, "/properties/lastBackupStatus")) }
                            td { (text(item, "/properties/lastBackupTime")) }
                            td {
                                ul {
                                    @for point in list(listed) {
                                        li.point {
                                            (text(&point, "/properties/recoveryPointTime"))
                                            @let expiry = text(&point, "/properties/recoveryPointProperties/expiryTime");
                                            @if !expiry.is_empty() { " (expires " (expiry) ")" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Backup jobs" }
            form method="get" action=(base) id="job-filter" {
                label for="status" { "Status" }
                select id="status" name="status" {
                    @for value in ["", "InProgress", "Completed", "CompletedWithWarnings", "Failed", "Cancelled"] {
                        option value=(value) selected[status == Some(value)] { @if value.is_empty() { "All" } @else { (value) } }
                    }
                }
                label for="operation" { "Operation" }
                select id="operation" name="operation" {
                    @for value in ["", "Backup", "Restore"] {
                        option value=(value) selected[operation == Some(value)] { @if value.is_empty() { "All" } @else { (value) } }
                    }
                }
                button.primary type="submit" id="filter-jobs" { "Filter" }
                p.hint { "This page refreshes every 30 seconds." }
            }
            table id="jobs" aria-label="Backup jobs" {
                thead { tr { th { "Operation" } th { "Status" } th { "Server" } th { "Item" } th { "Started" } } }
                tbody {
                    @if jobs.is_empty() { tr { td colspan="5" { "No jobs." } } }
                    @for job in jobs {
                        tr {
                            td { (text(job, "/properties/operation")) }
                            td { (text(job, "/properties/status")) }
                            td { (text(job, "/properties/mabServerName")) }
                            td { (text(job, "/properties/entityFriendlyName")) }
                            td { (text(job, "/properties/startTime")) }
                        }
                    }
                }
            }
        },
    )
}
