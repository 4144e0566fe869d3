//! Commands for stacks whose services run as separate processes or containers
//! (docker-compose, an image without a shell): `azsim tls` prepares the development CA and
//! certificate they share before any of them starts, and `azsim health` is the health check
//! a container runtime runs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use sim_core::db::Storage;

#[derive(clap::Args)]
pub struct TlsArgs {
    /// The data directory the services will share.
    #[arg(long, env = "AZSIM_DATA_DIR", default_value = ".azsim")]
    data_dir: PathBuf,
    /// Extra certificate names (repeatable), e.g. the services' container names.
    #[arg(long = "tls-name", env = "AZSIM_TLS_NAMES", value_delimiter = ',')]
    tls_names: Vec<String>,
}

/// Creates (or reuses) `<data-dir>/tls`; prints the CA's path.
pub fn tls(args: TlsArgs) -> anyhow::Result<()> {
    let runtime =
        sim_core::cli::Runtime::new(Storage::Disk(args.data_dir.clone()), &args.tls_names)
            .with_context(|| format!("preparing {}", args.data_dir.display()))?;
    let ca = runtime
        .tls
        .ca_path
        .clone()
        .context("the CA was not written to disk")?;
    println!("{}", ca.display());
    Ok(())
}

#[derive(clap::Args)]
pub struct HealthArgs {
    /// Service URLs (`https://entra-sim:10010`); each `/health` must answer 200.
    #[arg(required = true)]
    urls: Vec<String>,
    /// The CA to trust.
    #[arg(long, env = "AZSIM_CA_FILE")]
    ca_file: PathBuf,
}

pub async fn health(args: HealthArgs) -> anyhow::Result<()> {
    let ca = std::fs::read(&args.ca_file)
        .with_context(|| format!("reading {}", args.ca_file.display()))?;
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca)?])
        .timeout(Duration::from_secs(5))
        .build()?;
    for url in &args.urls {
        let probe = format!("{}/health", url.trim_end_matches('/'));
        let response = http
            .get(&probe)
            .send()
            .await
            .map_err(|e| crate::unreachable(&probe, e))?;
        if !response.status().is_success() {
            bail!("{probe} answered {}", response.status());
        }
        println!("{probe}: ok");
    }
    Ok(())
}
