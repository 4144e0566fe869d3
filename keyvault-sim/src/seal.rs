//! Encryption at rest: secret values and backup blobs are sealed with AES-256-GCM under a
//! per-installation key, so the data directory never holds a plaintext secret.
//!
//! The key lives in `<data>/keyvault/seal.key` (mode 0600), created on first start; with
//! `--in-memory` it is random per process. Each sealed value is `nonce || ciphertext+tag`,
//! and the associated data names what the value is (vault, secret, version), so a value
//! copied onto another row fails to open instead of leaking.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, Generate, Key, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sim_core::db::Storage;

const NONCE_LEN: usize = 12;
const KEY_LEN: usize = 32;

#[derive(Clone)]
pub struct SealKey {
    cipher: Aes256Gcm,
}

impl SealKey {
    /// Loads the installation key, creating it on first use.
    pub fn load_or_create(storage: &Storage) -> Result<Self, sim_core::Error> {
        let key = match storage.data_dir() {
            None => Key::<Aes256Gcm>::generate(),
            Some(dir) => load_or_create_file(&dir.join("keyvault"))?,
        };
        Ok(SealKey {
            cipher: Aes256Gcm::new(&key),
        })
    }

    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let nonce = Nonce::generate();
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Opens a value sealed with the same `context`; `None` when it was altered, sealed
    /// under another key or for another context.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).ok()?;
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .ok()
    }
}

fn load_or_create_file(dir: &Path) -> Result<Key<Aes256Gcm>, sim_core::Error> {
    let path = dir.join("seal.key");
    let io = |e| sim_core::Error::Io {
        path: path.display().to_string(),
        source: e,
    };
    match std::fs::read(&path) {
        Ok(bytes) => Key::<Aes256Gcm>::try_from(bytes.as_slice()).map_err(|_| {
            sim_core::Error::Config(format!(
                "{} must hold exactly {KEY_LEN} bytes; restore it from a backup or delete the data directory",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io)?;
            let key = Key::<Aes256Gcm>::generate();
            // Write beside and rename: a crash leaves either no key or a whole one.
            let temporary = dir.join("seal.key.tmp");
            let mut file = private_file(&temporary).map_err(io)?;
            file.write_all(&key).map_err(io)?;
            file.sync_all().map_err(io)?;
            std::fs::rename(&temporary, &path).map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_in_their_context() {
        let key = SealKey::load_or_create(&Storage::Memory).unwrap();
        let sealed = key.seal(b"hunter2", b"vault/s1/v1");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(key.open(&sealed, b"vault/s1/v1").unwrap(), b"hunter2");
        assert!(key.open(&sealed, b"vault/s1/v2").is_none());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(key.open(&tampered, b"vault/s1/v1").is_none());
        let other = SealKey::load_or_create(&Storage::Memory).unwrap();
        assert!(other.open(&sealed, b"vault/s1/v1").is_none());
    }

    #[test]
    fn the_key_file_is_reused_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::Disk(dir.path().to_path_buf());
        let sealed = SealKey::load_or_create(&storage).unwrap().seal(b"x", b"c");
        let again = SealKey::load_or_create(&storage).unwrap();
        assert_eq!(again.open(&sealed, b"c").unwrap(), b"x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("keyvault/seal.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
