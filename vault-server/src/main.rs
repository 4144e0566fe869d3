//! `vault-server`: the ARM endpoint on its own (`azsim up` runs it with the others).

use clap::Parser;
use sim_core::auth::{KeyCache, KeySource};
use sim_core::cli::CommonArgs;
use sim_core::well_known;

#[derive(Parser)]
#[command(
    name = "vault-server",
    version,
    about = "Azure Resource Manager and Recovery Services vault emulator (azsim)"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// HTTPS port.
    #[arg(long, env = "AZSIM_VAULT_SERVER_PORT", default_value_t = well_known::VAULT_SERVER_PORT)]
    port: u16,
    /// URL of the entra-sim whose tokens are accepted and where vault identities live.
    #[arg(
        long,
        env = "AZSIM_AUTHORITY",
        default_value = "https://localhost:10010"
    )]
    authority: String,
    /// keyvault-sim's management URL (Microsoft.KeyVault requests are forwarded there).
    #[arg(
        long,
        env = "AZSIM_KEYVAULT_MGMT_URL",
        default_value = "https://localhost:10014"
    )]
    keyvault_management: String,
    /// entra-sim's managed-identity endpoint (vault identities' tokens for Key Vault).
    #[arg(
        long,
        env = "AZSIM_MANAGED_IDENTITY_URL",
        default_value = "http://localhost:10013"
    )]
    managed_identity_url: String,
    /// Key Vault DNS suffix announced in /metadata/endpoints.
    #[arg(
        long,
        env = "AZSIM_KEYVAULT_DNS",
        default_value = "vault.localhost:10011"
    )]
    keyvault_dns: String,
    /// Host that `*.vault.localhost` Key Vault names resolve to when saving passphrases
    /// (default: loopback). docker-compose sets it to the keyvault-sim service.
    #[arg(long, env = "AZSIM_KEYVAULT_HOST")]
    keyvault_host: Option<String>,
    #[command(flatten)]
    blobs: vault_server::blobs::BlobArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sim_core::install_crypto_provider();
    let args = Args::parse();
    sim_core::server::init_logging(args.common.log_format);
    let runtime = args.common.runtime()?;
    let keys = KeyCache::new(KeySource::remote(&args.authority, &runtime.tls.ca_pem)?);
    let config = vault_server::Config {
        authority: args.authority.clone(),
        ca_pem: runtime.tls.ca_pem.clone(),
        keyvault_management: Some(args.keyvault_management.clone()),
        keyvault_dns: Some(args.keyvault_dns.clone()),
        managed_identity: Some(args.managed_identity_url.clone()),
        keyvault_host: args.keyvault_host.clone(),
        blobs: args.blobs.azure().map_err(anyhow::Error::msg)?,
    };
    let running = vault_server::start(&runtime, args.common.bind, args.port, keys, config).await?;
    println!("vault-server listening on {}", running.https.url());
    sim_core::server::shutdown_signal().await;
    running.shutdown().await;
    Ok(())
}
