//! `azsim`: the all-in-one launcher.
//!
//! - `azsim up` runs every service in one process (entra-sim, keyvault-sim, vault-server);
//! - `azsim env` prints the shell settings that point the Azure SDKs and CLI at it;
//! - `azsim clock` reads or moves the simulated clock of every running service;
//! - `azsim vault-credentials` downloads a vault's `.VaultCredentials` file;
//! - `azsim demo` runs the seed's story once, narrated.

mod api;
mod clock;
mod container;
mod demo;
mod env;
mod hosts;
mod region;
mod seed;
mod target;
mod vault_credentials;

pub use target::{Located, Ports, Target};

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
    /// Print (or write into /etc/hosts) the host names of every Key Vault, which plain
    /// glibc does not resolve under `.localhost`.
    Hosts(hosts::HostsArgs),
    /// Create the resources a seed file describes on the running stack (as `up --seed`).
    Seed(seed::SeedArgs),
    /// Create (or reuse) the development CA and certificate in a data directory, for
    /// services started separately (docker-compose).
    Tls(container::TlsArgs),
    /// Check that services answer `/health` (a container health check).
    Health(container::HealthArgs),
    /// Simulated regional outages and replication status (`status`, `outage R`, `restore R`).
    Region(region::RegionArgs),
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
    /// Create the resources a JSON file describes once the stack is up (idempotent:
    /// what exists is left as it is). See the README's "Seeding" section.
    #[arg(long, env = "AZSIM_SEED")]
    seed: Option<std::path::PathBuf>,
    #[command(flatten)]
    blobs: vault_server::blobs::BlobArgs,
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    sim_core::server::init_logging(args.common.log_format);
    let data_dir = args.common.data_dir.clone();
    let _lock = target::DataDirLock::acquire(&data_dir)?;
    let ports = args.ports.over(target::PortNumbers::default());
    let stack = azsim_testkit::Stack::start_with(azsim_testkit::Options {
        storage: args.common.storage(),
        bind: args.common.bind,
        managed_identity_bind: args.mi_bind,
        ports: azsim_testkit::Ports {
            entra: ports.entra,
            managed_identity: ports.managed_identity,
            keyvault: ports.keyvault,
            keyvault_management: ports.keyvault_management,
            vault_server: ports.vault_server,
        },
        tls_names: args.common.tls_names.clone(),
        blobs: args.blobs.azure().map_err(anyhow::Error::msg)?,
    })
    .await?;
    let published = target::StackFile {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        bind: args.common.bind,
        in_memory: args.common.in_memory,
        ca_file: match args.common.in_memory {
            false => Some(std::fs::canonicalize(&stack.ca_file)?),
            true => None,
        },
        ports: target::PortNumbers {
            entra: stack.entra.https.addr.port(),
            managed_identity: stack.entra.managed_identity.addr.port(),
            keyvault: stack.keyvault.data.addr.port(),
            keyvault_management: stack.keyvault.management.addr.port(),
            vault_server: stack.vault_server.https.addr.port(),
        },
    };
    let outcome = match &args.seed {
        Some(file) => seed::apply_file(&stack_endpoints(&stack), file).await,
        None => Ok(()),
    };
    if let Err(error) = outcome {
        stack.shutdown().await;
        return Err(error);
    }
    published.write(&data_dir)?;
    announce(&stack, &published, &data_dir);
    sim_core::server::shutdown_signal().await;
    stack.shutdown().await;
    target::StackFile::remove(&data_dir);
    Ok(())
}

/// The API client for a stack running in this process.
fn stack_endpoints(stack: &azsim_testkit::Stack) -> api::Endpoints {
    api::Endpoints {
        http: stack.http.clone(),
        entra: stack.entra_url(),
        arm: stack.arm_url(),
        keyvault_mgmt: stack.keyvault.management.url(),
        keyvault_port: stack.keyvault.data.addr.port(),
        ca_file: stack.ca_file.clone(),
    }
}

fn announce(
    stack: &azsim_testkit::Stack,
    published: &target::StackFile,
    data_dir: &std::path::Path,
) {
    let (entra, keyvault, vault_server) = (&stack.entra, &stack.keyvault, &stack.vault_server);
    let keyvault_port = published.ports.keyvault;
    let ca = match &published.ca_file {
        Some(path) => path.display().to_string(),
        None => format!("in memory: served at {}/ca.pem", entra.https.url()),
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
        "  key vaults         https://<vault>.vault.localhost:{keyvault_port} (default vault '{}' also at https://localhost:{keyvault_port}; `azsim hosts` for the hosts file)",
        well_known::DEFAULT_KEY_VAULT
    );
    println!("  keyvault mgmt      {}", keyvault.management.url());
    println!("  vault-server (ARM) {}", vault_server.https.url());
    println!("  development CA     {ca}");
    println!("  tenant             {}", well_known::TENANT_ID);
    println!("  subscription       {}", well_known::SUBSCRIPTION_ID);
    println!("  admin client id    {}", well_known::ADMIN_CLIENT_ID);
    println!("  admin secret       {}", well_known::ADMIN_CLIENT_SECRET);
    println!(
        "  settings           {}",
        data_dir.join(target::STATE_FILE).display()
    );
    println!(
        "Run `eval \"$(azsim env --data-dir {})\"` in another shell to point the Azure SDKs here.",
        data_dir.display()
    );
}

#[tokio::main]
async fn main() {
    sim_core::install_crypto_provider();
    let result = match Cli::parse().command {
        Command::Up(args) => up(args).await,
        Command::Env(args) => env::print(&args).await,
        Command::Hosts(args) => hosts::run(args).await,
        Command::Seed(args) => seed::run(args).await,
        Command::Tls(args) => container::tls(args),
        Command::Health(args) => container::health(args).await,
        Command::Region(args) => region::run(args).await,
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
