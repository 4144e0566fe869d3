//! mars-agent: a backup agent modelled on the Azure Backup MARS agent.
//!
//! [`keys`] (passphrase, master key), [`credentials`] (the `.VaultCredentials` file),
//! [`client`] (Entra sign-in, vault-server calls), [`sealing`] (chunks and packs),
//! [`manifest`], [`walk`], [`backup`], [`restore`], [`network`], [`config`] (state on this machine),
//! [`agent`] (registration and the registered agent).

pub mod agent;
pub mod backup;
pub mod client;
pub mod config;
pub mod credentials;
pub mod error;
pub mod keys;
pub mod manifest;
pub mod network;
pub mod progress;
pub mod protection;
pub mod restore;
pub mod sealing;
pub mod walk;
