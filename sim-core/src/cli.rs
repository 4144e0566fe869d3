//! Flags every azsim binary shares, each also readable from an environment variable.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::clock::SimClock;
use crate::db::Storage;
use crate::server::LogFormat;
use crate::tls::TlsMaterial;

#[derive(clap::Args, Clone, Debug)]
pub struct CommonArgs {
    /// Directory for databases, the development CA and blob data.
    #[arg(long, env = "AZSIM_DATA_DIR", default_value = ".azsim")]
    pub data_dir: PathBuf,
    /// Keep nothing on disk: state, CA and keys live only as long as the process (`azsim up`
    /// still writes its ports to `<data-dir>/azsim.json`, for the other subcommands).
    #[arg(long, env = "AZSIM_IN_MEMORY")]
    pub in_memory: bool,
    /// Address to listen on.
    #[arg(long, env = "AZSIM_BIND", default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Extra host name for the TLS certificate (repeatable), e.g. a machine's DNS name.
    #[arg(long = "tls-name", env = "AZSIM_TLS_NAMES", value_delimiter = ',')]
    pub tls_names: Vec<String>,
    /// Log output format.
    #[arg(long, env = "AZSIM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl CommonArgs {
    pub fn storage(&self) -> Storage {
        if self.in_memory {
            Storage::Memory
        } else {
            Storage::Disk(self.data_dir.clone())
        }
    }

    /// The shared pieces a process needs before starting services.
    pub fn runtime(&self) -> Result<Runtime, crate::Error> {
        Runtime::new(self.storage(), &self.tls_names)
    }
}

impl Runtime {
    /// The data directory (private), the development CA and certificate (reused from it),
    /// and the clock (its offset kept there); all in memory for `Storage::Memory`.
    pub fn new(storage: Storage, tls_names: &[String]) -> Result<Runtime, crate::Error> {
        if let Some(dir) = storage.data_dir() {
            create_private_dir(dir)?;
        }
        let tls = TlsMaterial::load_or_create(storage.data_dir(), tls_names)?;
        let clock = match storage.data_dir() {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
                SimClock::persistent(dir)?
            }
            None => SimClock::in_memory(),
        };
        Ok(Runtime {
            storage,
            tls,
            clock,
        })
    }
}

/// Creates the data directory readable by its owner only (it holds keys and databases).
/// An existing directory keeps the mode its owner chose.
fn create_private_dir(dir: &std::path::Path) -> Result<(), crate::Error> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| crate::Error::io(dir, e))
}

/// What every service in a process shares.
#[derive(Clone)]
pub struct Runtime {
    pub storage: Storage,
    pub tls: Arc<TlsMaterial>,
    pub clock: SimClock,
}
