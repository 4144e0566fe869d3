//! `entra-sim`: the Entra ID emulator on its own (`azsim up` runs it with the others).

use clap::Parser;
use sim_core::cli::CommonArgs;
use sim_core::well_known;

#[derive(Parser)]
#[command(
    name = "entra-sim",
    version,
    about = "Microsoft Entra ID emulator (azsim)"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// HTTPS port (OAuth, discovery, JWKS, admin API).
    #[arg(long, env = "AZSIM_ENTRA_PORT", default_value_t = well_known::ENTRA_PORT)]
    port: u16,
    /// Plain-HTTP port of the managed-identity endpoint.
    #[arg(long, env = "AZSIM_MI_PORT", default_value_t = well_known::MANAGED_IDENTITY_PORT)]
    managed_identity_port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sim_core::install_crypto_provider();
    let args = Args::parse();
    sim_core::server::init_logging(args.common.log_format);
    let runtime = args.common.runtime()?;
    let running = entra_sim::start(
        &runtime,
        args.common.bind,
        args.port,
        args.managed_identity_port,
    )
    .await?;
    println!(
        "entra-sim listening on {} (managed identity: {})",
        running.https.url(),
        running.managed_identity.url()
    );
    sim_core::server::shutdown_signal().await;
    running.shutdown().await;
    Ok(())
}
