//! The agent's one error type; each variant maps to an exit code (see `main.rs`).

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Bad input from the user: fix the command line or the files named.
    #[error("{0}")]
    Usage(String),
    #[error("the passphrase is wrong: it does not unlock this server's backups")]
    WrongPassphrase,
    #[error("the agent is not registered; run `mars-agent register` first")]
    NotRegistered,
    /// The vault no longer knows this server (unregistered through the portal or ARM).
    #[error("{0}")]
    Unregistered(String),
    /// A restore finished what it could; these files were damaged in the vault.
    #[error("{message}")]
    Damaged {
        message: String,
        files: Vec<crate::restore::DamagedFile>,
    },
    #[error("{0}")]
    Credentials(String),
    /// The vault does not have what was asked for.
    #[error("{0}")]
    NotFound(String),
    /// The vault or Entra refused, with its message.
    #[error("{0}")]
    Service(String),
    /// A commit named chunks the vault does not hold (any more).
    #[error("vault-server refused: {0}")]
    ChunksNotStored(String),
    #[error("cannot reach the service: {0}")]
    Network(String),
    #[error("{0}")]
    Crypto(String),
    #[error("backup data failed verification: {0}")]
    Integrity(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl AgentError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        AgentError::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            AgentError::Usage(_)
            | AgentError::Credentials(_)
            | AgentError::NotRegistered
            | AgentError::Unregistered(_) => 2,
            AgentError::WrongPassphrase => 4,
            AgentError::Network(_)
            | AgentError::Service(_)
            | AgentError::ChunksNotStored(_)
            | AgentError::NotFound(_) => 5,
            AgentError::Integrity(_) | AgentError::Crypto(_) | AgentError::Damaged { .. } => 6,
            AgentError::Io { .. } => 7,
        }
    }

    /// A short stable name of the kind of failure (the `code` of `--json` errors).
    pub fn code(&self) -> &'static str {
        match self {
            AgentError::Usage(_) => "Usage",
            AgentError::WrongPassphrase => "WrongPassphrase",
            AgentError::NotRegistered => "NotRegistered",
            AgentError::Unregistered(_) => "Unregistered",
            AgentError::Damaged { .. } => "DamagedData",
            AgentError::Credentials(_) => "Credentials",
            AgentError::NotFound(_) => "NotFound",
            AgentError::Service(_) => "ServiceRefused",
            AgentError::ChunksNotStored(_) => "ChunksNotStored",
            AgentError::Network(_) => "Network",
            AgentError::Crypto(_) => "Crypto",
            AgentError::Integrity(_) => "Integrity",
            AgentError::Io { .. } => "Io",
        }
    }

    /// The `--json` form: `{"error": {"code", "message", "exitCode", …}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut error = serde_json::json!({
            "code": self.code(),
            "message": self.to_string(),
            "exitCode": self.exit_code(),
        });
        if let AgentError::Damaged { files, .. } = self {
            error["damaged"] = serde_json::to_value(files).unwrap_or_default();
        }
        serde_json::json!({ "error": error })
    }
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;
