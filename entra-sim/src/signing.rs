//! Token-signing keys: RSA-2048 with a self-signed certificate each, like Entra's. The
//! `kid` (and `x5t`) is the base64url SHA-1 thumbprint of that certificate. Keys live in
//! the database so tokens keep verifying across restarts; rotation makes the current key
//! "previous" (still in the JWKS, so tokens it signed stay valid) and adds a new one.
//!
//! Signing uses an aws-lc `RsaKeyPair` parsed once: jsonwebtoken's `encode` re-parses and
//! re-validates the private key on every call, which halved token throughput.

use std::sync::{Arc, RwLock};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde::Serialize;
use sqlx::SqlitePool;

use crate::error::{EntraError, Result};

pub struct SigningKeys {
    pool: SqlitePool,
    active: RwLock<Arc<ActiveKeys>>,
}

struct ActiveKeys {
    kid: String,
    key: Option<RsaKeyPair>,
    /// base64url of the JWS header, identical for every token of this key.
    encoded_header: String,
    jwks: JwkSet,
}

struct StoredKey {
    kid: String,
    private_key_pem: String,
    certificate_der: Vec<u8>,
}

impl SigningKeys {
    /// Loads the stored keys, generating the first one on a fresh database.
    pub async fn load_or_create(pool: SqlitePool, now: i64) -> Result<Self> {
        let keys = SigningKeys {
            pool,
            active: RwLock::new(Arc::new(ActiveKeys {
                kid: String::new(),
                key: None,
                encoded_header: String::new(),
                jwks: JwkSet { keys: vec![] },
            })),
        };
        if keys.stored("current").await?.is_none() {
            keys.rotate(now).await?;
        } else {
            keys.reload().await?;
        }
        Ok(keys)
    }

    /// Adds a new current key; the old current becomes previous, the old previous goes.
    /// Returns the new `kid`.
    pub async fn rotate(&self, now: i64) -> Result<String> {
        let fresh = tokio::task::spawn_blocking(generate_key)
            .await
            .map_err(|e| EntraError::Crypto(e.to_string()))??;
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM signing_keys WHERE state = 'previous'")
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE signing_keys SET state = 'previous' WHERE state = 'current'")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, private_key_pem, certificate_der, state, created_at) VALUES (?, ?, ?, 'current', ?)",
        )
        .bind(&fresh.kid)
        .bind(&fresh.private_key_pem)
        .bind(&fresh.certificate_der)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.reload().await?;
        tracing::info!(kid = %fresh.kid, "token-signing key rotated");
        Ok(fresh.kid)
    }

    async fn stored(&self, state: &str) -> Result<Option<StoredKey>> {
        let row = sqlx::query_as::<_, (String, String, Vec<u8>)>(
            "SELECT kid, private_key_pem, certificate_der FROM signing_keys WHERE state = ?",
        )
        .bind(state)
        .fetch_optional(&self.pool)
        .await?;
        Ok(
            row.map(|(kid, private_key_pem, certificate_der)| StoredKey {
                kid,
                private_key_pem,
                certificate_der,
            }),
        )
    }

    async fn reload(&self) -> Result<()> {
        let current = self
            .stored("current")
            .await?
            .ok_or_else(|| EntraError::Crypto("no current signing key".into()))?;
        let previous = self.stored("previous").await?;
        let pkcs8 = rustls_pki_types_pem(&current.private_key_pem)?;
        let key = RsaKeyPair::from_pkcs8(&pkcs8)
            .map_err(|e| EntraError::Crypto(format!("signing key unreadable: {e}")))?;
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.kid = Some(current.kid.clone());
        header.x5t = Some(current.kid.clone());
        let encoded_header = URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&header).map_err(|e| EntraError::Crypto(e.to_string()))?);
        let mut jwks = vec![public_jwk(&current)?];
        if let Some(previous) = &previous {
            jwks.push(public_jwk(previous)?);
        }
        *self.active.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ActiveKeys {
            kid: current.kid,
            key: Some(key),
            encoded_header,
            jwks: JwkSet { keys: jwks },
        });
        Ok(())
    }

    fn active(&self) -> Arc<ActiveKeys> {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The public keys: current and previous.
    pub fn jwks(&self) -> JwkSet {
        self.active().jwks.clone()
    }

    pub fn current_kid(&self) -> String {
        self.active().kid.clone()
    }

    /// Signs `claims` with the current key: a compact JWS, RS256, with `typ`, `kid` and
    /// `x5t` in the header.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String> {
        let active = self.active();
        let key = active
            .key
            .as_ref()
            .ok_or_else(|| EntraError::Crypto("no signing key loaded".into()))?;
        let payload = serde_json::to_vec(claims).map_err(|e| EntraError::Crypto(e.to_string()))?;
        let mut jws = format!(
            "{}.{}",
            active.encoded_header,
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut signature = vec![0u8; key.public_modulus_len()];
        key.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            jws.as_bytes(),
            &mut signature,
        )
        .map_err(|_| EntraError::Crypto("RSA signing failed".into()))?;
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jws)
    }
}

fn public_jwk(stored: &StoredKey) -> Result<Jwk> {
    let key = EncodingKey::from_rsa_pem(stored.private_key_pem.as_bytes()).map_err(crypto)?;
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).map_err(crypto)?;
    jwk.common.key_id = Some(stored.kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.x509_sha1_fingerprint = Some(stored.kid.clone());
    jwk.common.x509_chain = Some(vec![STANDARD.encode(&stored.certificate_der)]);
    // Entra's JWKS entries carry no "alg"; clients pick RS256 from the token header.
    jwk.common.key_algorithm = None;
    Ok(jwk)
}

fn generate_key() -> Result<StoredKey> {
    let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
        .map_err(|e| EntraError::Crypto(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "accounts.azsim.localhost");
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(5 * 365);
    let cert = params
        .self_signed(&key)
        .map_err(|e| EntraError::Crypto(e.to_string()))?;
    let der = cert.der().to_vec();
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
    Ok(StoredKey {
        kid: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
        private_key_pem: key.serialize_pem(),
        certificate_der: der,
    })
}

/// The DER inside a PKCS#8 "PRIVATE KEY" PEM block.
fn rustls_pki_types_pem(pem: &str) -> Result<Vec<u8>> {
    use rustls_pki_types::PrivatePkcs8KeyDer;
    use rustls_pki_types::pem::PemObject;
    PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
        .map(|der| der.secret_pkcs8_der().to_vec())
        .map_err(|e| EntraError::Crypto(format!("signing key PEM unreadable: {e}")))
}

fn crypto(e: jsonwebtoken::errors::Error) -> EntraError {
    EntraError::Crypto(e.to_string())
}
