//! sim-core: what every azsim service shares.
//!
//! A service crate is a library that builds an `axum::Router`; sim-core turns it into a
//! running HTTPS server and supplies the pieces every simulated Azure service needs in the
//! same shape:
//!
//! - [`tls`]: the development CA and the leaf certificate, created once in the data
//!   directory and reused, so clients trust one `ca.pem` across restarts.
//! - [`server`]: `serve(router, config)` over rustls (port 0 supported), request ids,
//!   access log, graceful shutdown; header/body/idle timeouts, 413 before oversized bodies
//!   are read, panics answered as logged 500s, and a `Date` header from the simulated clock.
//! - [`auth`]: verification of entra-sim access tokens against its JWKS, as an axum
//!   extractor whose rejection each service maps into its own error envelope.
//! - [`clock`]: the simulated clock every expiry reads, moved by `/admin/clock`.
//! - [`db`]: SQLite (WAL, foreign keys) on disk or in memory, with migrations.
//! - [`admin`]: `/health`, `/ca.pem`, `/admin/clock`, `/admin/reset`.
//! - [`api_error`]: the `{"error":{"code","message"}}` envelope of ARM, Key Vault and
//!   the admin API.
//! - [`arm`]: JSON bodies (depth-limited, errors naming the field), Azure name rules,
//!   regions and their pairs, ARM audiences and correlation ids, timestamps.

pub mod admin;
pub mod api_error;
pub mod arm;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod db;
pub mod rbac;
pub mod server;
pub mod tls;
pub mod well_known;

pub use api_error::ApiError;
pub use clock::SimClock;

/// Failures while bringing a service up: the only errors sim-core itself raises.
/// Request-time failures belong to each service's own error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate generation failed: {0}")]
    Certificate(String),
    #[error("TLS configuration failed: {0}")]
    Tls(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The cause is the source (printed once, by whoever prints the chain).
    #[error("{service} cannot listen on {addr}{hint}")]
    Bind {
        service: &'static str,
        addr: std::net::SocketAddr,
        /// What to do about it (the flag that picks another port), or empty.
        hint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    pub(crate) fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Installs aws-lc-rs as the process-wide rustls provider. Every binary and test calls
/// this first; calling it twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
