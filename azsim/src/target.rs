//! Where a running `azsim up` is.
//!
//! `azsim up` writes its effective settings (ports, bind address, CA, in memory or not) to
//! `<data-dir>/azsim.json` and holds `<data-dir>/azsim.lock` while it runs, so a second
//! `up` on the same directory is refused and the other subcommands (`env`, `clock`,
//! `vault-credentials`, `demo`, `hosts`, `seed`) need only `--data-dir`: an explicit port
//! flag wins, then the file, then the default port.

use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sim_core::well_known;

/// The settings file's name inside the data directory.
pub const STATE_FILE: &str = "azsim.json";
const LOCK_FILE: &str = "azsim.lock";

/// What `azsim up` publishes about itself.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StackFile {
    pub pid: u32,
    pub version: String,
    pub bind: IpAddr,
    pub in_memory: bool,
    /// The development CA on disk; `None` for an in-memory stack (served at `/ca.pem`).
    pub ca_file: Option<PathBuf>,
    pub ports: PortNumbers,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PortNumbers {
    pub entra: u16,
    pub managed_identity: u16,
    pub keyvault: u16,
    pub keyvault_management: u16,
    pub vault_server: u16,
}

impl Default for PortNumbers {
    fn default() -> Self {
        PortNumbers {
            entra: well_known::ENTRA_PORT,
            managed_identity: well_known::MANAGED_IDENTITY_PORT,
            keyvault: well_known::KEYVAULT_PORT,
            keyvault_management: well_known::KEYVAULT_MANAGEMENT_PORT,
            vault_server: well_known::VAULT_SERVER_PORT,
        }
    }
}

impl StackFile {
    pub fn read(data_dir: &Path) -> anyhow::Result<Option<StackFile>> {
        let path = data_dir.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{} is not an azsim settings file", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Writes the file whole (temporary name, then rename): readers never see half of it.
    pub fn write(&self, data_dir: &Path) -> anyhow::Result<()> {
        let path = data_dir.join(STATE_FILE);
        let partial = data_dir.join(format!("{STATE_FILE}.partial"));
        std::fs::write(&partial, serde_json::to_vec_pretty(self)?)
            .and_then(|()| std::fs::rename(&partial, &path))
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn remove(data_dir: &Path) {
        let _ = std::fs::remove_file(data_dir.join(STATE_FILE));
    }
}

/// The exclusive lock of one `azsim up` on its data directory, released when dropped or
/// when the process dies (an OS file lock: a `kill -9` leaves nothing to clean up).
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    pub fn acquire(data_dir: &Path) -> anyhow::Result<DataDirLock> {
        // Owner-only, as the services create it (it will hold keys and databases).
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let path = data_dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(DataDirLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = StackFile::read(data_dir)
                    .ok()
                    .flatten()
                    .map(|s| format!(" (pid {}, ARM on port {})", s.pid, s.ports.vault_server))
                    .unwrap_or_default();
                bail!(
                    "another `azsim up` is running on data directory {}{holder}: stop it, or pass another --data-dir",
                    data_dir.display()
                )
            }
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }
}

/// Ports of the services (`azsim up`) and where the other subcommands find them. Global,
/// so they may follow a subcommand (`azsim clock advance 2h --entra-port 20010`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Ports {
    /// entra-sim HTTPS port [default: 10010, or what `<data-dir>/azsim.json` says].
    #[arg(long, global = true, env = "AZSIM_ENTRA_PORT")]
    pub entra_port: Option<u16>,
    /// Plain-HTTP managed-identity endpoint port [default: 10013].
    #[arg(long, global = true, env = "AZSIM_MI_PORT")]
    pub mi_port: Option<u16>,
    /// keyvault-sim data-plane (secrets) HTTPS port [default: 10011].
    #[arg(long, global = true, env = "AZSIM_KEYVAULT_PORT")]
    pub keyvault_port: Option<u16>,
    /// keyvault-sim management-plane (Microsoft.KeyVault/vaults) HTTPS port [default: 10014].
    #[arg(long, global = true, env = "AZSIM_KEYVAULT_MGMT_PORT")]
    pub keyvault_mgmt_port: Option<u16>,
    /// vault-server (ARM) HTTPS port [default: 10012].
    #[arg(long, global = true, env = "AZSIM_VAULT_SERVER_PORT")]
    pub vault_server_port: Option<u16>,
}

impl Ports {
    /// The flags given, the rest from `base`.
    pub fn over(&self, base: PortNumbers) -> PortNumbers {
        PortNumbers {
            entra: self.entra_port.unwrap_or(base.entra),
            managed_identity: self.mi_port.unwrap_or(base.managed_identity),
            keyvault: self.keyvault_port.unwrap_or(base.keyvault),
            keyvault_management: self.keyvault_mgmt_port.unwrap_or(base.keyvault_management),
            vault_server: self.vault_server_port.unwrap_or(base.vault_server),
        }
    }
}

/// Where a running azsim is, for the commands that call it.
#[derive(clap::Args, Clone, Debug)]
pub struct Target {
    /// Data directory of the running azsim (its `azsim.json` and CA).
    #[arg(long, global = true, env = "AZSIM_DATA_DIR", default_value = ".azsim")]
    pub data_dir: PathBuf,
    /// CA certificate to trust instead of the one the running azsim names.
    #[arg(long, global = true, env = "AZSIM_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Host name of the running azsim.
    #[arg(long, global = true, env = "AZSIM_HOST", default_value = "localhost")]
    pub host: String,
    /// entra-sim's URL, when it is not `https://<host>:<entra-port>` (services on separate
    /// hosts, as in docker-compose).
    #[arg(long, global = true)]
    pub entra_url: Option<String>,
    /// vault-server's (ARM) URL, when it is not `https://<host>:<vault-server-port>`.
    #[arg(long, global = true)]
    pub arm_url: Option<String>,
    #[command(flatten)]
    pub ports: Ports,
}

/// A running azsim, located.
#[derive(Clone, Debug)]
pub struct Located {
    pub host: String,
    pub ports: PortNumbers,
    /// The CA to trust, when it is (or may be) on disk.
    ca_file: Option<PathBuf>,
    in_memory: bool,
    entra_url: Option<String>,
    arm_url: Option<String>,
}

impl Target {
    pub fn locate(&self) -> anyhow::Result<Located> {
        let published = StackFile::read(&self.data_dir)?;
        let ports = self
            .ports
            .over(published.as_ref().map(|s| s.ports).unwrap_or_default());
        let in_memory = published.as_ref().is_some_and(|s| s.in_memory);
        let ca_file = self.ca_file.clone().or_else(|| match &published {
            Some(StackFile { ca_file, .. }) => ca_file.clone(),
            None => Some(self.data_dir.join("tls").join("ca.pem")),
        });
        Ok(Located {
            host: self.host.clone(),
            ports,
            ca_file,
            in_memory,
            entra_url: self.entra_url.clone(),
            arm_url: self.arm_url.clone(),
        })
    }
}

impl Located {
    pub fn url(&self, port: u16) -> String {
        format!("https://{}:{port}", self.host)
    }

    pub fn entra_url(&self) -> String {
        match &self.entra_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => self.url(self.ports.entra),
        }
    }

    pub fn arm_url(&self) -> String {
        match &self.arm_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => self.url(self.ports.vault_server),
        }
    }

    /// The CA file to trust. An in-memory stack has none on disk: its `/ca.pem` is fetched
    /// into a temporary file, and kept only if the server then proves it holds that CA's
    /// certificate (a TLS handshake that trusts nothing else).
    pub async fn ca_file(&self) -> anyhow::Result<PathBuf> {
        if let Some(path) = &self.ca_file
            && (path.exists() || !self.in_memory)
        {
            return Ok(path.clone());
        }
        let url = format!("{}/ca.pem", self.entra_url());
        let insecure = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(10))
            .build()?;
        let pem = insecure
            .get(&url)
            .send()
            .await
            .map_err(|e| crate::unreachable(&url, e))?
            .error_for_status()?
            .bytes()
            .await?;
        let checked = trusting(&pem, Duration::from_secs(10))?;
        let health = format!("{}/health", self.entra_url());
        checked
            .get(&health)
            .send()
            .await
            .with_context(|| format!("{url} served a CA that {health} is not signed by"))?;
        let path = std::env::temp_dir().join(format!("azsim-ca-{}.pem", self.ports.entra));
        std::fs::write(&path, &pem).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// An HTTPS client trusting the running azsim's CA only.
    pub async fn http(&self, timeout: Duration) -> anyhow::Result<reqwest::Client> {
        let path = self.ca_file().await?;
        let ca = std::fs::read(&path).with_context(|| {
            format!(
                "reading the development CA at {}; is azsim running with this --data-dir (or pass --ca-file)?",
                path.display()
            )
        })?;
        trusting(&ca, timeout)
    }
}

fn trusting(ca_pem: &[u8], timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem)?])
        .timeout(timeout)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_published_ports_which_win_over_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let target = |ports: Ports| Target {
            data_dir: dir.path().to_path_buf(),
            ca_file: None,
            host: "localhost".into(),
            entra_url: None,
            arm_url: None,
            ports,
        };
        assert_eq!(
            target(Ports::default()).locate().unwrap().ports,
            PortNumbers::default()
        );
        let published = StackFile {
            pid: 1,
            version: "test".into(),
            bind: "127.0.0.1".parse().unwrap(),
            in_memory: false,
            ca_file: Some(dir.path().join("ca.pem")),
            ports: PortNumbers {
                entra: 1,
                managed_identity: 2,
                keyvault: 3,
                keyvault_management: 4,
                vault_server: 5,
            },
        };
        published.write(dir.path()).unwrap();
        assert_eq!(StackFile::read(dir.path()).unwrap(), Some(published));
        let located = target(Ports {
            entra_port: Some(9),
            ..Ports::default()
        })
        .locate()
        .unwrap();
        assert_eq!((located.ports.entra, located.ports.vault_server), (9, 5));
        assert_eq!(located.ca_file, Some(dir.path().join("ca.pem")));
    }

    #[test]
    fn a_second_lock_on_one_data_directory_is_refused_with_the_holder_named() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let refused = DataDirLock::acquire(dir.path()).err().unwrap().to_string();
        assert!(refused.contains("another `azsim up`"), "{refused}");
        drop(first);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
