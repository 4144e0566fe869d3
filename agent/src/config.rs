//! The agent's state on this machine, under its home directory (`--home`,
//! `MARS_AGENT_HOME`, default `~/.mars-agent`, mode 0700):
//! - `agent.json`: installation settings and the registration (vault, endpoints, the
//!   machine's identity certificate, the wrapped master key);
//! - `machine-key.pem`, `master.key` (0600): the machine identity's private key and the
//!   master key, so scheduled backups need no passphrase (MARS keeps it protected the same
//!   way, by the machine);
//! - the cache directory (chosen at install): the unchanged-file index per protected path.
//!
//! Every file is written beside and renamed, so a crash leaves the old file or the new.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};
use crate::keys::{MasterKey, WrappedKey};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentConfig {
    pub cache_dir: PathBuf,
    pub proxy: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub registration: Option<Registration>,
    /// Folders `mars-agent service` backs up on a schedule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<crate::schedule::Schedule>,
    /// Upload rates for work and non-work hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<crate::throttle::Throttle>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    pub server_name: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub vault: String,
    pub service_url: String,
    pub authority: String,
    pub tenant_id: String,
    /// The machine identity's app id in Entra.
    pub client_id: String,
    pub certificate_pem: String,
    pub encryption: WrappedKey,
    pub registered_at: i64,
}

pub struct Home {
    pub dir: PathBuf,
}

impl Home {
    pub fn new(dir: PathBuf) -> Self {
        Home { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn load(&self) -> Result<AgentConfig> {
        let path = self.path("agent.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                AgentError::Usage(format!(
                    "the agent is not installed in {}; run `mars-agent install --cache-dir DIR` first",
                    self.dir.display()
                ))
            } else {
                AgentError::io(&path, e)
            }
        })?;
        serde_json::from_str(&text).map_err(|e| {
            AgentError::Usage(format!(
                "{} is damaged ({e}); reinstall the agent",
                path.display()
            ))
        })
    }

    pub fn save(&self, config: &AgentConfig) -> Result<()> {
        create_private_dir(&self.dir)?;
        let json = serde_json::to_vec_pretty(config).expect("the configuration serialises");
        write_atomic(&self.path("agent.json"), &json)
    }

    pub fn registration(&self) -> Result<(AgentConfig, Registration)> {
        let config = self.load()?;
        let registration = config
            .registration
            .clone()
            .ok_or(AgentError::NotRegistered)?;
        Ok((config, registration))
    }

    pub fn save_secrets(&self, machine_key_pem: &str, master: &MasterKey) -> Result<()> {
        create_private_dir(&self.dir)?;
        write_atomic(&self.path("machine-key.pem"), machine_key_pem.as_bytes())?;
        write_atomic(
            &self.path("master.key"),
            STANDARD.encode(master.bytes()).as_bytes(),
        )
    }

    pub fn machine_key(&self) -> Result<String> {
        let path = self.path("machine-key.pem");
        std::fs::read_to_string(&path).map_err(|e| AgentError::io(&path, e))
    }

    pub fn master_key(&self) -> Result<MasterKey> {
        let path = self.path("master.key");
        let text = std::fs::read_to_string(&path).map_err(|e| AgentError::io(&path, e))?;
        let raw = STANDARD.decode(text.trim()).map_err(|_| {
            AgentError::Crypto(format!(
                "{} is damaged; register again with the passphrase",
                path.display()
            ))
        })?;
        MasterKey::from_bytes(&raw)
    }

    pub fn forget_secrets(&self) -> Result<()> {
        for name in ["machine-key.pem", "master.key"] {
            let path = self.path(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(AgentError::io(&path, e)),
            }
        }
        Ok(())
    }
}

pub fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| AgentError::io(dir, e))
}

/// Writes `bytes` to `path` through a temporary file and a rename (mode 0600).
/// Creates `path` (mode 0600) with `bytes`; refuses an existing file, so nothing the user
/// keeps (a passphrase, say) is ever overwritten.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            AgentError::Usage(format!(
                "{} exists; --generate-passphrase never overwrites a file (it may hold the passphrase of a registered server). Name a new file.",
                path.display()
            ))
        } else {
            AgentError::io(path, e)
        }
    })?;
    file.write_all(bytes).map_err(|e| AgentError::io(path, e))?;
    file.sync_all().map_err(|e| AgentError::io(path, e))
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_replacing(path, bytes, true)
}

/// Like [`write_atomic`] but without waiting for the disk: for caches, which a crash may
/// lose (the old version or none is then read) but never leave half-written.
pub fn write_cache(path: &Path, bytes: &[u8]) -> Result<()> {
    write_replacing(path, bytes, false)
}

fn write_replacing(path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&temporary)
        .map_err(|e| AgentError::io(&temporary, e))?;
    file.write_all(bytes)
        .map_err(|e| AgentError::io(&temporary, e))?;
    if durable {
        file.sync_all().map_err(|e| AgentError::io(&temporary, e))?;
    }
    std::fs::rename(&temporary, path).map_err(|e| AgentError::io(path, e))
}
