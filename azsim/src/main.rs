//! `azsim`: the all-in-one launcher.
//!
//! - `azsim up` runs every service in one process (entra-sim, keyvault-sim, vault-server);
//! - `azsim env` prints the shell settings that point the Azure SDKs and CLI at it;
//! - `azsim clock` reads or moves the simulated clock of every running service;
//! - `azsim vault-credentials` downloads a vault's `.VaultCredentials` file;
//! - `azsim demo` runs the seed's story once, narrated.

mod clock;
mod demo;
mod env;
mod vault_credentials;

use std::net::IpAddr;

use clap::{Parser, Subcommand};
use sim_core::cli::CommonArgs;
use sim_core::well_known;

#[derive(Parser)]
#[command(
    name = "azsim",
    version,
    about = "A local Azure Backup cloud: Entra ID, Key Vault and Recovery Services vaults"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in this process until Ctrl-C or SIGTERM.
    Up(UpArgs),
    /// Print `export` lines that point the Azure SDKs at a running azsim.
    Env(env::EnvArgs),
    /// Show or move the simulated clock on every running service.
    Clock(clock::ClockArgs),
    /// Download a Recovery Services vault's credentials file (for agent registration).
    VaultCredentials(vault_credentials::VaultCredentialsArgs),
    /// Run the whole story once, narrated: vault, Key Vault, credentials, agent, backup,
    /// restore (on the running stack, or one started for the demo).
    Demo(demo::DemoArgs),
}

/// Where a running azsim is, for the commands that call it (`clock`, `vault-credentials`).
#[derive(clap::Args)]
pub struct Target {
    /// Data directory of the running azsim (for its CA).
    #[arg(long, global = true, env = "AZSIM_DATA_DIR", default_value = ".azsim")]
    pub data_dir: std::path::PathBuf,
    /// CA certificate to trust instead of `<data-dir>/tls/ca.pem`.
    #[arg(long, global = true, env = "AZSIM_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Host name of the running azsim.
    #[arg(long, global = true, env = "AZSIM_HOST", default_value = "localhost")]
    pub host: String,
    #[command(flatten)]
    pub ports: Ports,
}

impl Target {
    /// An HTTPS client trusting the running azsim's CA.
    pub fn http(&self, timeout: std::time::Duration) -> anyhow::Result<reqwest::Client> {
        use anyhow::Context;
        let ca_path = self
            .ca_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("tls").join("ca.pem"));
        let ca = std::fs::read(&ca_path).with_context(|| {
            format!(
                "reading the development CA at {}; is azsim running with this --data-dir (or pass --ca-file)?",
                ca_path.display()
            )
        })?;
        Ok(reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca)?])
            .timeout(timeout)
            .build()?)
    }

    pub fn url(&self, port: u16) -> String {
        format!("https://{}:{port}", self.host)
    }
}

/// A request that could not be sent, with what usually fixes it.
pub fn unreachable(url: &str, error: reqwest::Error) -> anyhow::Error {
    let mut cause = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(inner) = source {
        cause = format!("{cause}: {inner}");
        source = inner.source();
    }
    let hint = if cause.contains("Connection refused") {
        " Is azsim running (`azsim up`)? If it runs on other ports, pass the same port flags here."
    } else {
        ""
    };
    anyhow::anyhow!("cannot reach {url}: {cause}.{hint}")
}

#[derive(clap::Args)]
struct UpArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    ports: Ports,
    /// Address of the managed-identity endpoint. It stays on loopback even with
    /// `--bind 0.0.0.0`: it gives the host identity's tokens to anyone who reaches it.
    #[arg(long, env = "AZSIM_MI_BIND", default_value = "127.0.0.1")]
    mi_bind: IpAddr,
}

/// Ports of the services (`azsim up`) and where `azsim env`/`azsim clock` find them.
/// Global, so they may follow a subcommand (`azsim clock advance 2h --entra-port 20010`).
#[derive(clap::Args, Clone, Debug)]
pub struct Ports {
    /// entra-sim HTTPS port.
    #[arg(long, global = true, env = "AZSIM_ENTRA_PORT", default_value_t = well_known::ENTRA_PORT)]
    pub entra_port: u16,
    /// Plain-HTTP managed-identity endpoint port.
    #[arg(long, global = true, env = "AZSIM_MI_PORT", default_value_t = well_known::MANAGED_IDENTITY_PORT)]
    pub mi_port: u16,
    /// keyvault-sim data-plane (secrets) HTTPS port.
    #[arg(long, global = true, env = "AZSIM_KEYVAULT_PORT", default_value_t = well_known::KEYVAULT_PORT)]
    pub keyvault_port: u16,
    /// keyvault-sim management-plane (Microsoft.KeyVault/vaults) HTTPS port.
    #[arg(long, global = true, env = "AZSIM_KEYVAULT_MGMT_PORT", default_value_t = well_known::KEYVAULT_MANAGEMENT_PORT)]
    pub keyvault_mgmt_port: u16,
    /// vault-server (ARM) HTTPS port.
    #[arg(long, global = true, env = "AZSIM_VAULT_SERVER_PORT", default_value_t = well_known::VAULT_SERVER_PORT)]
    pub vault_server_port: u16,
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    sim_core::server::init_logging(args.common.log_format);
    let stack = azsim_testkit::Stack::start_with(azsim_testkit::Options {
        storage: args.common.storage(),
        bind: args.common.bind,
        managed_identity_bind: args.mi_bind,
        ports: azsim_testkit::Ports {
            entra: args.ports.entra_port,
            managed_identity: args.ports.mi_port,
            keyvault: args.ports.keyvault_port,
            keyvault_management: args.ports.keyvault_mgmt_port,
            vault_server: args.ports.vault_server_port,
        },
        tls_names: args.common.tls_names.clone(),
    })
    .await?;
    let (entra, keyvault, vault_server) = (&stack.entra, &stack.keyvault, &stack.vault_server);
    let keyvault_port = keyvault.data.addr.port();
    let ca = match args.common.in_memory {
        false => std::fs::canonicalize(&stack.ca_file)?.display().to_string(),
        true => format!(
            "{} (in memory: also at {}/ca.pem)",
            stack.ca_file.display(),
            entra.https.url()
        ),
    };
    println!("azsim is ready");
    println!("  entra-sim          {}", entra.https.url());
    println!(
        "  managed identity   {}/msi/token (IDENTITY_HEADER={})",
        entra.managed_identity.url(),
        well_known::IDENTITY_HEADER
    );
    println!("  keyvault-sim       {}", keyvault.data.url());
    println!(
        "  key vaults         https://<vault>.vault.localhost:{keyvault_port} (default vault '{}' also at https://localhost:{keyvault_port})",
        well_known::DEFAULT_KEY_VAULT
    );
    println!("  keyvault mgmt      {}", keyvault.management.url());
    println!("  vault-server (ARM) {}", vault_server.https.url());
    println!("  development CA     {ca}");
    println!("  tenant             {}", well_known::TENANT_ID);
    println!("  subscription       {}", well_known::SUBSCRIPTION_ID);
    println!("  admin client id    {}", well_known::ADMIN_CLIENT_ID);
    println!("  admin secret       {}", well_known::ADMIN_CLIENT_SECRET);
    println!("Run `eval \"$(azsim env)\"` in another shell to point the Azure SDKs here.");
    sim_core::server::shutdown_signal().await;
    stack.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() {
    sim_core::install_crypto_provider();
    let result = match Cli::parse().command {
        Command::Up(args) => up(args).await,
        Command::Env(args) => env::print(&args),
        Command::Clock(args) => clock::run(args).await,
        Command::VaultCredentials(args) => vault_credentials::run(args).await,
        Command::Demo(args) => demo::run(args).await,
    };
    // One line a person can act on (no backtrace, whatever RUST_BACKTRACE says).
    if let Err(error) = result {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
