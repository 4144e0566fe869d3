//! `azsim vault-credentials --resource-group RG --vault NAME -o FILE`: downloads a fresh
//! `.VaultCredentials` file from the running vault-server, as the portal's download button
//! does, with the well-known admin app's ARM token.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use sim_core::well_known;

use crate::Target;

#[derive(clap::Args)]
pub struct VaultCredentialsArgs {
    /// Resource group of the Recovery Services vault.
    #[arg(long, short = 'g')]
    resource_group: String,
    /// Name of the Recovery Services vault.
    #[arg(long, short = 'v')]
    vault: String,
    /// Where to write the file (default: the name vault-server suggests, in this directory).
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    #[command(flatten)]
    target: Target,
}

pub async fn run(args: VaultCredentialsArgs) -> anyhow::Result<()> {
    let target = args.target.locate()?;
    let http = target.http(Duration::from_secs(30)).await?;
    let entra = target.entra_url();
    let token =
        crate::clock::well_known_token(&http, &entra, "https://management.azure.com/.default")
            .await?;
    let url = format!(
        "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.RecoveryServices/vaults/{}/azsimVaultCredentials?api-version=2026-11-01",
        target.arm_url(),
        well_known::SUBSCRIPTION_ID,
        args.resource_group,
        args.vault
    );
    let response = http
        .post(&url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| crate::unreachable(&url, e))?;
    let status = response.status();
    let suggested = response
        .headers()
        .get(reqwest::header::CONTENT_DISPOSITION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("filename=\"").nth(1))
        .map(|v| v.trim_end_matches('"').to_string());
    let body = response.text().await?;
    if !status.is_success() {
        let message: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        bail!(
            "vault-server refused ({status}): {}",
            message["error"]["message"].as_str().unwrap_or(&body)
        );
    }
    let output = args
        .output
        .or(suggested.map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(format!("{}.VaultCredentials", args.vault)));
    // The file holds the registration certificate's private key: owner-only, like a key.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&output)
        .with_context(|| format!("writing {}", output.display()))?;
    std::fs::set_permissions(&output, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("writing {}", output.display()))?;
    std::io::Write::write_all(&mut file, body.as_bytes())
        .with_context(|| format!("writing {}", output.display()))?;
    println!("{}", output.display());
    Ok(())
}
