//! `azsim env`: shell settings for the Azure SDKs, CLI and managed-identity clients.

use std::path::PathBuf;

use sim_core::well_known;

use crate::Ports;

#[derive(clap::Args)]
pub struct EnvArgs {
    /// Data directory of the running azsim (where the development CA is).
    #[arg(long, env = "AZSIM_DATA_DIR", default_value = ".azsim")]
    pub data_dir: PathBuf,
    /// Host name clients use to reach azsim.
    #[arg(long, env = "AZSIM_HOST", default_value = "localhost")]
    pub host: String,
    #[command(flatten)]
    pub ports: Ports,
}

pub fn print(args: &EnvArgs) -> anyhow::Result<()> {
    let ca_path = args.data_dir.join("tls").join("ca.pem");
    let ca = std::fs::canonicalize(&ca_path).ok();
    let entra = format!("https://{}:{}", args.host, args.ports.entra_port);
    let mi = format!("http://{}:{}", args.host, args.ports.mi_port);
    let lines = [
        ("AZURE_TENANT_ID", well_known::TENANT_ID.to_string()),
        (
            "AZURE_SUBSCRIPTION_ID",
            well_known::SUBSCRIPTION_ID.to_string(),
        ),
        ("AZURE_CLIENT_ID", well_known::ADMIN_CLIENT_ID.to_string()),
        (
            "AZURE_CLIENT_SECRET",
            well_known::ADMIN_CLIENT_SECRET.to_string(),
        ),
        ("AZURE_AUTHORITY_HOST", entra.clone()),
        ("AZSIM_ENTRA_URL", entra),
        ("AZSIM_MANAGED_IDENTITY_URL", mi.clone()),
        (
            "AZSIM_KEYVAULT_URL",
            format!(
                "https://{}.vault.localhost:{}",
                well_known::DEFAULT_KEY_VAULT,
                args.ports.keyvault_port
            ),
        ),
        (
            "AZSIM_ARM_URL",
            format!("https://{}:{}", args.host, args.ports.vault_server_port),
        ),
        (
            "AZSIM_KEYVAULT_MGMT_URL",
            format!("https://{}:{}", args.host, args.ports.keyvault_mgmt_port),
        ),
        ("IDENTITY_ENDPOINT", format!("{mi}/msi/token")),
        ("IDENTITY_HEADER", well_known::IDENTITY_HEADER.to_string()),
        ("AZURE_POD_IDENTITY_AUTHORITY_HOST", mi),
    ];
    for (name, value) in lines {
        println!("export {name}={}", shell_quote(&value));
    }
    match ca {
        Some(ca) => {
            let ca = shell_quote(&ca.display().to_string());
            println!("export REQUESTS_CA_BUNDLE={ca}");
            println!("export SSL_CERT_FILE={ca}");
        }
        None => println!(
            "# No development CA at {} yet: run `azsim up` first (with --in-memory, save https://{}:{}/ca.pem and point REQUESTS_CA_BUNDLE at it).",
            ca_path.display(),
            args.host,
            args.ports.entra_port
        ),
    }
    println!(
        "# Python: pass disable_instance_discovery=True to ClientSecretCredential/CertificateCredential (no environment variable exists)."
    );
    Ok(())
}

/// Single-quotes a value for POSIX shells.
fn shell_quote(value: &str) -> String {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:~=".contains(c))
    {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}
