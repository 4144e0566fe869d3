//! `azsim demo`: the seed's whole story in one command, one narrated line per step with its
//! time — a resource group and a Recovery Services vault (LRS, immutability Unlocked, a
//! system-assigned identity), a Key Vault that lets the vault's identity `set` secrets,
//! vault credentials, an agent installed and registered with its passphrase saved in Key
//! Vault, a backup, the recovery point seen through ARM, and a verified restore.
//!
//! It uses the running stack when one answers on the given ports, else starts its own in
//! this process (in memory, free ports). The agent is the real `mars-agent` binary beside
//! this one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sim_core::well_known;

use crate::Target;
use crate::api::Endpoints;

#[derive(clap::Args)]
pub struct DemoArgs {
    #[command(flatten)]
    target: Target,
    /// Print the steps as JSON (one object at the end).
    #[arg(long)]
    json: bool,
    /// Wait up to this many seconds for a running stack to answer (and fail if none does)
    /// instead of starting one: for services still starting, as in docker-compose.
    #[arg(long, value_name = "SECONDS")]
    wait: Option<u64>,
}

/// The running stack's endpoints when it answers (entra-sim and ARM healthy).
async fn running(located: &crate::Located) -> Option<Endpoints> {
    let endpoints = Endpoints::of(located, Duration::from_secs(30)).await.ok()?;
    for url in [&endpoints.entra, &endpoints.arm] {
        let health = endpoints.http.get(format!("{url}/health")).send().await;
        if !health.is_ok_and(|r| r.status().is_success()) {
            return None;
        }
    }
    Some(endpoints)
}

struct Narrator {
    json: bool,
    steps: Vec<Value>,
    started: Instant,
}

impl Narrator {
    fn step(&mut self, what: &str, detail: String, since: Instant) {
        let seconds = since.elapsed().as_secs_f64();
        if !self.json {
            println!("  {seconds:>5.2} s  {what}: {detail}");
        }
        self.steps
            .push(json!({"step": what, "detail": detail, "seconds": seconds}));
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mut narrator = Narrator {
        json: args.json,
        steps: Vec::new(),
        started: Instant::now(),
    };
    let located = args.target.locate()?;
    let mut found = running(&located).await;
    if let Some(seconds) = args.wait {
        let since = Instant::now();
        let deadline = since + Duration::from_secs(seconds);
        while found.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(500)).await;
            found = running(&located).await;
        }
        if found.is_none() {
            bail!(
                "no azsim answered at {} and {} within {seconds} s",
                located.entra_url(),
                located.arm_url()
            );
        }
        narrator.step(
            "stack",
            format!("answering at {}", located.arm_url()),
            since,
        );
    }
    let (endpoints, own) = match found {
        Some(endpoints) => (endpoints, None),
        None => {
            let since = Instant::now();
            let stack = azsim_testkit::Stack::start().await?;
            let endpoints = crate::stack_endpoints(&stack);
            narrator.step(
                "stack",
                format!(
                    "no azsim answered on the given ports: started one in this process (ARM {})",
                    endpoints.arm
                ),
                since,
            );
            (endpoints, Some(stack))
        }
    };
    let outcome = story(&endpoints, &mut narrator).await;
    if let Some(stack) = own {
        stack.shutdown().await;
    }
    let verified = outcome?;
    let total = narrator.started.elapsed().as_secs_f64();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"steps": narrator.steps, "verified": verified, "seconds": total})
            )?
        );
    } else {
        println!(
            "demo complete in {total:.2} s: the restored files match the originals byte for byte"
        );
    }
    Ok(())
}

async fn arm(
    e: &Endpoints,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    e.arm(method, path, body).await
}

fn agent_binary() -> anyhow::Result<PathBuf> {
    let binary = std::env::current_exe()?.with_file_name("mars-agent");
    if !binary.exists() {
        bail!(
            "{} is missing: build the agent beside azsim (cargo build -p agent)",
            binary.display()
        );
    }
    Ok(binary)
}

fn agent(home: &Path, args: &[&str]) -> anyhow::Result<Value> {
    let out = Command::new(agent_binary()?)
        .arg("--home")
        .arg(home)
        .arg("--json")
        .args(args)
        .output()
        .context("running mars-agent")?;
    if !out.status.success() {
        bail!(
            "mars-agent {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
}

/// The story; returns whether the restore matched.
async fn story(e: &Endpoints, n: &mut Narrator) -> anyhow::Result<bool> {
    let suffix = &uuid_suffix();
    let group = format!("demo-rg-{suffix}");
    let vault = format!("demo-vault-{suffix}");
    let key_vault = format!("demokv{suffix}");
    let sub = well_known::SUBSCRIPTION_ID;
    let group_path = format!("/subscriptions/{sub}/resourceGroups/{group}");
    let vault_path = format!("{group_path}/providers/Microsoft.RecoveryServices/vaults/{vault}");

    let t = Instant::now();
    arm(
        e,
        reqwest::Method::PUT,
        &group_path,
        Some(json!({"location": "westeurope"})),
    )
    .await?;
    n.step("resource group", format!("{group} in West Europe"), t);

    let t = Instant::now();
    arm(
        e,
        reqwest::Method::PUT,
        &vault_path,
        Some(json!({"location": "westeurope",
        "sku": {"name": "RS0", "tier": "Standard"}, "properties": {}})),
    )
    .await?;
    n.step(
        "vault",
        format!("{vault} (2-50 characters, a letter first, letters, digits and hyphens)"),
        t,
    );

    let t = Instant::now();
    arm(
        e,
        reqwest::Method::PATCH,
        &vault_path,
        Some(json!({"properties": {
        "redundancySettings": {"standardTierStorageRedundancy": "LocallyRedundant"}}})),
    )
    .await?;
    n.step(
        "storage replication",
        "Locally-redundant (LRS); fixed once items are protected".into(),
        t,
    );

    let t = Instant::now();
    arm(
        e,
        reqwest::Method::PATCH,
        &vault_path,
        Some(json!({"properties": {
        "securitySettings": {"immutabilitySettings": {"state": "Unlocked"}}}})),
    )
    .await?;
    n.step(
        "immutability",
        "Unlocked: no recovery point can be deleted before it expires".into(),
        t,
    );

    let t = Instant::now();
    let with_identity = arm(
        e,
        reqwest::Method::PATCH,
        &vault_path,
        Some(json!({"identity": {"type": "SystemAssigned"}})),
    )
    .await?;
    let principal = with_identity["identity"]["principalId"]
        .as_str()
        .context("the vault has no identity")?
        .to_string();
    n.step(
        "managed identity",
        format!("system-assigned, principal {principal}"),
        t,
    );

    let t = Instant::now();
    arm(e, reqwest::Method::PUT, &format!("{group_path}/providers/Microsoft.KeyVault/vaults/{key_vault}"),
        Some(json!({"location": "westeurope", "properties": {"tenantId": well_known::TENANT_ID,
            "sku": {"family": "A", "name": "standard"}, "accessPolicies": [
                {"tenantId": well_known::TENANT_ID, "objectId": principal, "permissions": {"secrets": ["set"]}},
                {"tenantId": well_known::TENANT_ID, "objectId": well_known::ADMIN_OBJECT_ID, "permissions": {"secrets": ["all"]}}]}}))).await?;
    n.step(
        "key vault",
        format!("{key_vault}: the vault's identity may set secrets"),
        t,
    );

    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    let t = Instant::now();
    let credentials = arm(
        e,
        reqwest::Method::POST,
        &format!("{vault_path}/azsimVaultCredentials"),
        None,
    )
    .await?;
    let credentials_file = dir.join(format!("{vault}.VaultCredentials"));
    std::fs::write(&credentials_file, credentials.as_str().unwrap_or_default())?;
    n.step(
        "vault credentials",
        format!("{} (valid 10 days)", credentials_file.display()),
        t,
    );

    let t = Instant::now();
    let home = dir.join("agent-home");
    let cache = dir.join("agent-cache");
    agent(
        &home,
        &[
            "install",
            "--cache-dir",
            cache.to_str().unwrap_or_default(),
            "--ca-file",
            e.ca_file.to_str().unwrap_or_default(),
        ],
    )?;
    let passphrase = dir.join("passphrase.txt");
    let key_vault_uri = format!("https://{key_vault}.vault.localhost:{}", e.keyvault_port);
    let registered = agent(
        &home,
        &[
            "register",
            "--vault-credentials",
            credentials_file.to_str().unwrap_or_default(),
            "--generate-passphrase",
            passphrase.to_str().unwrap_or_default(),
            "--server-name",
            "demo-server",
            "--key-vault-uri",
            &key_vault_uri,
        ],
    )?;
    n.step(
        "agent",
        format!(
            "installed and registered as {} (passphrase saved in {key_vault})",
            registered["serverName"].as_str().unwrap_or("demo-server")
        ),
        t,
    );

    let data = dir.join("Documents");
    std::fs::create_dir_all(data.join("reports"))?;
    std::fs::write(
        data.join("reports/q4.txt"),
        "quarterly numbers\n".repeat(2_000),
    )?;
    std::fs::write(data.join("notes.md"), "# notes\n".repeat(500))?;
    let photo: Vec<u8> = (0..2_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(data.join("photo.raw"), &photo)?;
    let t = Instant::now();
    let backup = agent(
        &home,
        &["backup", "--include", data.to_str().unwrap_or_default()],
    )?;
    let point = backup[0]["recoveryPoint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    n.step(
        "backup",
        format!("{} files → recovery point {point}", backup[0]["files"]),
        t,
    );

    let t = Instant::now();
    let items = arm(
        e,
        reqwest::Method::GET,
        &format!("{vault_path}/backupProtectedItems"),
        None,
    )
    .await?;
    let item = items["value"][0]["name"]
        .as_str()
        .context("no protected item in ARM")?
        .to_string();
    let points = arm(e, reqwest::Method::GET, &format!(
        "{vault_path}/backupFabrics/Azure/protectionContainers/demo-server/protectedItems/{item}/recoveryPoints"), None).await?;
    let seen = points["value"]
        .as_array()
        .is_some_and(|p| p.iter().any(|p| p["name"] == point.as_str()));
    if !seen {
        bail!("recovery point {point} is not in the ARM view");
    }
    n.step("recovery point in ARM", format!("{item}: {point}"), t);

    let t = Instant::now();
    let target = dir.join("restored");
    agent(
        &home,
        &[
            "restore",
            &point,
            "--target",
            target.to_str().unwrap_or_default(),
        ],
    )?;
    let same = ["reports/q4.txt", "notes.md", "photo.raw"]
        .iter()
        .all(|f| std::fs::read(data.join(f)).ok() == std::fs::read(target.join(f)).ok());
    if !same {
        bail!("the restored files differ from the originals");
    }
    n.step("restore", "every file restored byte for byte".into(), t);
    Ok(true)
}

fn uuid_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:06x}", nanos % 0xFF_FFFF)
}
