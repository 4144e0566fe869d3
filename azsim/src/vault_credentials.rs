//! `azsim vault-credentials --resource-group RG --vault NAME -o FILE`: downloads a fresh
//! `.VaultCredentials` file from the running vault-server, as the portal's download button
//! does, with the well-known admin app's ARM token.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use sim_core::well_known;

use crate::Ports;

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
    /// Data directory of the running azsim (for its CA).
    #[arg(long, env = "AZSIM_DATA_DIR", default_value = ".azsim")]
    data_dir: PathBuf,
    /// Host name of the running azsim.
    #[arg(long, env = "AZSIM_HOST", default_value = "localhost")]
    host: String,
    #[command(flatten)]
    ports: Ports,
}

pub async fn run(args: VaultCredentialsArgs) -> anyhow::Result<()> {
    let ca_path = args.data_dir.join("tls").join("ca.pem");
    let ca = std::fs::read(&ca_path).with_context(|| {
        format!(
            "reading the development CA at {}; is azsim running with this --data-dir?",
            ca_path.display()
        )
    })?;
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca)?])
        .timeout(Duration::from_secs(30))
        .build()?;
    let entra = format!("https://{}:{}", args.host, args.ports.entra_port);
    let token =
        crate::clock::well_known_token(&http, &entra, "https://management.azure.com/.default")
            .await?;
    let url = format!(
        "https://{}:{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.RecoveryServices/vaults/{}/azsimVaultCredentials?api-version=2026-11-01",
        args.host,
        args.ports.vault_server_port,
        well_known::SUBSCRIPTION_ID,
        args.resource_group,
        args.vault
    );
    let response = http.post(url).bearer_auth(token).send().await?;
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
    std::fs::write(&output, body).with_context(|| format!("writing {}", output.display()))?;
    println!("{}", output.display());
    Ok(())
}
