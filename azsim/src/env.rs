//! `azsim env`: shell settings for the Azure SDKs, CLI and managed-identity clients.

use std::fmt::Write as _;

use sim_core::well_known;

use crate::Target;

#[derive(clap::Args)]
pub struct EnvArgs {
    #[command(flatten)]
    pub target: Target,
}

pub async fn print(args: &EnvArgs) -> anyhow::Result<()> {
    let mut out = String::new();
    let located = args.target.locate()?;
    let ports = located.ports;
    let host = &located.host;
    let entra = located.entra_url();
    let mi = format!("http://{host}:{}", ports.managed_identity);
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
                ports.keyvault
            ),
        ),
        ("AZSIM_ARM_URL", located.arm_url()),
        (
            "AZSIM_KEYVAULT_MGMT_URL",
            located.url(ports.keyvault_management),
        ),
        ("IDENTITY_ENDPOINT", format!("{mi}/msi/token")),
        ("IDENTITY_HEADER", well_known::IDENTITY_HEADER.to_string()),
        ("AZURE_POD_IDENTITY_AUTHORITY_HOST", mi),
    ];
    for (name, value) in lines {
        writeln!(out, "export {name}={}", shell_quote(&value))?;
    }
    match located.ca_file().await {
        Ok(ca) if ca.exists() => {
            let ca = std::fs::canonicalize(&ca).unwrap_or(ca);
            let ca = shell_quote(&ca.display().to_string());
            writeln!(out, "export REQUESTS_CA_BUNDLE={ca}")?;
            writeln!(out, "export SSL_CERT_FILE={ca}")
        }
        Ok(missing) => writeln!(
            out,
            "# No development CA at {} yet: run `azsim up` first.",
            missing.display()
        ),
        Err(error) => writeln!(out, "# No development CA: {error:#}"),
    }?;
    writeln!(
        out,
        "# Python: pass disable_instance_discovery=True to ClientSecretCredential/CertificateCredential (no environment variable exists)."
    )?;
    writeln!(
        out,
        "# Key Vault host names (*.vault.localhost) need `azsim hosts --write` (or your own resolver) on plain glibc."
    )?;
    // `azsim env | head` closing the pipe early is not an error.
    match std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
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
