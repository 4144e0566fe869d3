//! `keyvault-sim`: the Key Vault emulator on its own (`azsim up` runs it with the others).
//! It verifies tokens against the entra-sim at `--authority`.

use clap::Parser;
use sim_core::auth::{KeyCache, KeySource};
use sim_core::cli::CommonArgs;
use sim_core::well_known;

#[derive(Parser)]
#[command(
    name = "keyvault-sim",
    version,
    about = "Azure Key Vault emulator (azsim)"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// HTTPS port of the data plane (secrets).
    #[arg(long, env = "AZSIM_KEYVAULT_PORT", default_value_t = well_known::KEYVAULT_PORT)]
    port: u16,
    /// HTTPS port of the management plane (Microsoft.KeyVault/vaults).
    #[arg(long, env = "AZSIM_KEYVAULT_MGMT_PORT", default_value_t = well_known::KEYVAULT_MANAGEMENT_PORT)]
    management_port: u16,
    /// URL of the entra-sim whose tokens are accepted (and named in the 401 challenge).
    #[arg(
        long,
        env = "AZSIM_AUTHORITY",
        default_value = "https://localhost:10010"
    )]
    authority: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sim_core::install_crypto_provider();
    let args = Args::parse();
    sim_core::server::init_logging(args.common.log_format);
    let runtime = args.common.runtime()?;
    let keys = KeyCache::new(KeySource::remote(&args.authority, &runtime.tls.ca_pem)?);
    let running = keyvault_sim::start(
        &runtime,
        args.common.bind,
        args.port,
        args.management_port,
        keys,
        args.authority.clone(),
    )
    .await?;
    println!(
        "keyvault-sim listening on {} (management: {})",
        running.data.url(),
        running.management.url()
    );
    sim_core::server::shutdown_signal().await;
    running.shutdown().await;
    Ok(())
}
