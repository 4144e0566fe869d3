//! The agent's keys. A random 256-bit master key encrypts everything; an Argon2id key from
//! the passphrase wraps it (changing the passphrase would rewrap only). From the master key
//! come the chunk-id key (keyed BLAKE3, so ids reveal nothing about content) and the data
//! key (AES-256-GCM), plus a check value the vault keeps to recognise the same key on
//! re-registration.

use aes_gcm::aead::{Aead, Generate, Key, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};

/// Argon2id cost: 64 MiB, 3 passes, 1 lane (MARS-like: a deliberate second on a laptop).
const MEMORY_KIB: u32 = 64 * 1024;
const ITERATIONS: u32 = 3;
const PARALLELISM: u32 = 1;
const WRAP_CONTEXT: &[u8] = b"azsim mars master key v1";

/// What the vault stores for a server: enough to unwrap the master key with the passphrase.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WrappedKey {
    pub algorithm: String,
    pub salt: String,
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    pub nonce: String,
    pub wrapped: String,
}

/// Passphrase rules of MARS: at least 16 characters, ASCII ≤ 127 only.
/// A new random passphrase (48 hex digits, 192 bits).
pub fn generate_passphrase() -> Result<String> {
    let mut raw = [0u8; 24];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| AgentError::Crypto("no randomness".into()))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

pub fn check_passphrase(passphrase: &str) -> Result<()> {
    if passphrase.chars().count() < 16 {
        return Err(AgentError::Usage(format!(
            "The passphrase has {} characters; it needs at least 16.",
            passphrase.chars().count()
        )));
    }
    if !passphrase.is_ascii() {
        return Err(AgentError::Usage(
            "The passphrase may contain only ASCII characters (codes up to 127).".into(),
        ));
    }
    Ok(())
}

fn kek(
    passphrase: &str,
    salt: &[u8],
    memory: u32,
    iterations: u32,
    lanes: u32,
) -> Result<[u8; 32]> {
    let params = Params::new(memory, iterations, lanes, Some(32))
        .map_err(|e| AgentError::Crypto(format!("Argon2 parameters: {e}")))?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut out)
        .map_err(|e| AgentError::Crypto(format!("Argon2: {e}")))?;
    Ok(out)
}

pub struct MasterKey {
    bytes: [u8; 32],
}

impl MasterKey {
    pub fn generate() -> Self {
        let key = Key::<Aes256Gcm>::generate();
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&key);
        MasterKey { bytes }
    }

    pub fn from_bytes(raw: &[u8]) -> Result<Self> {
        let bytes: [u8; 32] = raw
            .try_into()
            .map_err(|_| AgentError::Crypto("the master key must be 32 bytes".into()))?;
        Ok(MasterKey { bytes })
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    pub fn wrap(&self, passphrase: &str) -> Result<WrappedKey> {
        let mut salt = [0u8; 16];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| AgentError::Crypto("no randomness".into()))?;
        let kek = kek(passphrase, &salt, MEMORY_KIB, ITERATIONS, PARALLELISM)?;
        let cipher = Aes256Gcm::new_from_slice(&kek).expect("32-byte key");
        let nonce = Nonce::generate();
        let wrapped = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &self.bytes,
                    aad: WRAP_CONTEXT,
                },
            )
            .map_err(|_| AgentError::Crypto("wrapping failed".into()))?;
        Ok(WrappedKey {
            algorithm: "argon2id+aes-256-gcm".into(),
            salt: STANDARD.encode(salt),
            memory_kib: MEMORY_KIB,
            iterations: ITERATIONS,
            parallelism: PARALLELISM,
            nonce: STANDARD.encode(nonce),
            wrapped: STANDARD.encode(wrapped),
        })
    }

    /// The master key, or [`AgentError::WrongPassphrase`].
    pub fn unwrap(wrapped: &WrappedKey, passphrase: &str) -> Result<Self> {
        let decode = |s: &str| {
            STANDARD
                .decode(s)
                .map_err(|_| AgentError::Crypto("the stored key information is damaged".into()))
        };
        let salt = decode(&wrapped.salt)?;
        if wrapped.memory_kib > 4 * 1024 * 1024
            || wrapped.iterations > 100
            || wrapped.parallelism > 16
        {
            return Err(AgentError::Crypto(
                "the stored key parameters are out of range".into(),
            ));
        }
        let kek = kek(
            passphrase,
            &salt,
            wrapped.memory_kib,
            wrapped.iterations,
            wrapped.parallelism,
        )?;
        let cipher = Aes256Gcm::new_from_slice(&kek).expect("32-byte key");
        let nonce = Nonce::try_from(decode(&wrapped.nonce)?.as_slice())
            .map_err(|_| AgentError::Crypto("the stored nonce is damaged".into()))?;
        let ciphertext = decode(&wrapped.wrapped)?;
        let plain = cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &ciphertext,
                    aad: WRAP_CONTEXT,
                },
            )
            .map_err(|_| AgentError::WrongPassphrase)?;
        MasterKey::from_bytes(&plain)
    }

    pub fn chunk_id_key(&self) -> [u8; 32] {
        blake3::derive_key("azsim mars 2026 chunk ids", &self.bytes)
    }

    pub fn data_key(&self) -> [u8; 32] {
        blake3::derive_key("azsim mars 2026 data encryption", &self.bytes)
    }

    /// What the vault compares on re-registration (reveals nothing about the key).
    pub fn check_value(&self) -> String {
        blake3::derive_key("azsim mars 2026 key check", &self.bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_round_trips_and_a_wrong_passphrase_is_named() {
        let key = MasterKey::generate();
        let wrapped = key.wrap("correct horse battery staple").unwrap();
        let back = MasterKey::unwrap(&wrapped, "correct horse battery staple").unwrap();
        assert_eq!(back.bytes(), key.bytes());
        assert!(matches!(
            MasterKey::unwrap(&wrapped, "incorrect horse battery staple"),
            Err(AgentError::WrongPassphrase)
        ));
    }

    #[test]
    fn passphrases_follow_the_mars_rules() {
        assert!(check_passphrase("sixteen-chars-ok").is_ok());
        assert!(check_passphrase("fifteen-chars!!").is_err());
        assert!(check_passphrase("sixteen-chars-é-no").is_err());
    }
}
