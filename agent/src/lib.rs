//! mars-agent: a backup agent modelled on the Azure Backup MARS agent.
//!
//! Layout, by job:
//! - on this machine: [`config`] (the agent's state: `agent.json`, keys), [`keys`]
//!   (passphrase, Argon2id, the wrapped master key), [`credentials`] (the
//!   `.VaultCredentials` file), [`walk`] (what a protected path holds), [`manifest`] (what a
//!   recovery point holds, sealed), [`sealing`] (chunk ids, AES-256-GCM, zstd),
//!   [`dictionary`] (zstd's dictionaries for small files and for large chunks);
//! - talking to the cloud: [`client`] (Entra sign-in at the service's time, retries),
//!   [`vault_client`] (every `/backup/v1` call, typed by `backup_protocol`), [`network`]
//!   (check-network);
//! - the work: [`agent`] (registration, the registered agent), [`backup`] (scan → chunk →
//!   seal → pack → upload → commit), [`restore`] (plan → fetch → verify → write),
//!   [`protection`] (policies, stop protection, undelete), [`check`] (integrity),
//!   [`schedule`] and [`service`] (scheduled backups on the service's clock), [`throttle`]
//!   (upload rates by work and non-work hours);
//! - for people: [`output`] (times and tables), [`progress`] (bars on a terminal), and
//!   [`error`] (one error type; each kind is an exit code).

pub mod agent;
pub mod backup;
pub mod check;
pub mod client;
pub mod config;
pub mod credentials;
pub mod dictionary;
pub mod error;
pub mod keys;
pub mod manifest;
pub mod network;
pub mod output;
pub mod progress;
pub mod protection;
pub mod restore;
pub mod schedule;
pub mod sealing;
pub mod service;
pub mod throttle;
pub mod vault_client;
pub mod walk;

/// Threads that run at once on this machine: the sealers, the walk's and the restore's
/// writers are one per core.
pub fn cores() -> usize {
    // Asked once: the standard library reads three cgroup files each time (the walk asked
    // for every directory: 700 file opens in a backup of the benchmark's tree).
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
