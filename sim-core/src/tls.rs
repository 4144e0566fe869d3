//! The development CA and the serving certificate.
//!
//! The CA is generated once into `<data-dir>/tls/` and reused, so a client that trusts
//! `ca.pem` (via `REQUESTS_CA_BUNDLE`) keeps trusting every restart. The leaf certificate is
//! reused while it still covers the requested names and is not near expiry; otherwise a new
//! one is signed by the same CA. With `--in-memory` both live only in memory and the CA is
//! still served at `GET /ca.pem`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{Datelike, TimeDelta, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::Error;

/// Names every leaf certificate covers: loopback, the `*.localhost` family used for
/// per-vault Key Vault hosts, and the docker-compose service names.
pub const DEFAULT_NAMES: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "::1",
    "*.localhost",
    "*.vault.localhost",
    "entra-sim",
    "keyvault-sim",
    "vault-server",
    "azsim",
];

const CA_COMMON_NAME: &str = "azsim Development CA";
/// A leaf this close to expiry is replaced at start-up.
const LEAF_RENEW_BEFORE_DAYS: i64 = 30;

/// PEM material a server needs, plus the CA for clients.
#[derive(Clone, Debug)]
pub struct TlsMaterial {
    pub ca_pem: String,
    /// Leaf certificate followed by the CA certificate.
    pub chain_pem: String,
    pub key_pem: String,
    /// Where `ca.pem` lives on disk, if anywhere.
    pub ca_path: Option<PathBuf>,
}

impl TlsMaterial {
    /// Loads the CA and leaf from `data_dir/tls` (creating them on first use), or generates
    /// throw-away ones when `data_dir` is `None`. `extra_names` are added to the SANs.
    pub fn load_or_create(
        data_dir: Option<&Path>,
        extra_names: &[String],
    ) -> Result<Arc<Self>, Error> {
        let mut names: Vec<String> = DEFAULT_NAMES.iter().map(|s| s.to_string()).collect();
        for name in extra_names {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let material = match data_dir {
            None => {
                let (ca_pem, ca_key_pem) = generate_ca()?;
                let (leaf_pem, key_pem) = sign_leaf(&ca_pem, &ca_key_pem, &names)?;
                TlsMaterial {
                    chain_pem: format!("{leaf_pem}{ca_pem}"),
                    ca_pem,
                    key_pem,
                    ca_path: None,
                }
            }
            Some(dir) => load_or_create_on_disk(&dir.join("tls"), &names)?,
        };
        Ok(Arc::new(material))
    }

    /// A rustls server configuration (HTTP/2 and HTTP/1.1 via ALPN).
    pub async fn rustls_config(&self) -> Result<axum_server::tls_rustls::RustlsConfig, Error> {
        axum_server::tls_rustls::RustlsConfig::from_pem(
            self.chain_pem.clone().into_bytes(),
            self.key_pem.clone().into_bytes(),
        )
        .await
        .map_err(|e| Error::Tls(e.to_string()))
    }
}

fn load_or_create_on_disk(dir: &Path, names: &[String]) -> Result<TlsMaterial, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let ca_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca-key.pem");
    if !ca_path.exists() {
        let (ca_pem, ca_key_pem) = generate_ca()?;
        // The key first, then the certificate with a no-replace link: when two processes
        // start together, one CA wins and both use it.
        write_private(&ca_key_path.with_extension("pem.new"), &ca_key_pem)?;
        let cert_tmp = dir.join(format!("ca.pem.{}", std::process::id()));
        std::fs::write(&cert_tmp, &ca_pem).map_err(|e| Error::io(&cert_tmp, e))?;
        if std::fs::hard_link(&cert_tmp, &ca_path).is_ok() {
            std::fs::rename(ca_key_path.with_extension("pem.new"), &ca_key_path)
                .map_err(|e| Error::io(&ca_key_path, e))?;
        }
        let _ = std::fs::remove_file(&cert_tmp);
        let _ = std::fs::remove_file(ca_key_path.with_extension("pem.new"));
    }
    let ca_pem = read(&ca_path)?;
    let ca_key_pem = read(&ca_key_path)?;

    let leaf_path = dir.join("server.pem");
    let leaf_key_path = dir.join("server-key.pem");
    let names_path = dir.join("server-names.txt");
    let wanted_names = names.join("\n");
    let reusable = leaf_path.exists()
        && leaf_key_path.exists()
        && std::fs::read_to_string(&names_path).ok().as_deref() == Some(wanted_names.as_str())
        && leaf_is_fresh(&read(&leaf_path)?);
    if !reusable {
        let (leaf_pem, key_pem) = sign_leaf(&ca_pem, &ca_key_pem, names)?;
        write_private(&leaf_key_path, &key_pem)?;
        std::fs::write(&leaf_path, &leaf_pem).map_err(|e| Error::io(&leaf_path, e))?;
        std::fs::write(&names_path, &wanted_names).map_err(|e| Error::io(&names_path, e))?;
    }
    let leaf_pem = read(&leaf_path)?;
    Ok(TlsMaterial {
        chain_pem: format!("{leaf_pem}{ca_pem}"),
        ca_pem,
        key_pem: read(&leaf_key_path)?,
        ca_path: Some(ca_path),
    })
}

fn generate_ca() -> Result<(String, String), Error> {
    let key = KeyPair::generate().map_err(cert_err)?;
    let params = ca_params();
    let cert = params.self_signed(&key).map_err(cert_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, "azsim");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = Utc::now();
    params.not_before = rcgen::date_time_ymd(now.year() - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(now.year() + 20, 1, 1);
    params
}

fn sign_leaf(ca_pem: &str, ca_key_pem: &str, names: &[String]) -> Result<(String, String), Error> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(cert_err)?;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key).map_err(cert_err)?;
    let key = KeyPair::generate().map_err(cert_err)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(cert_err)?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "azsim");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    let now = Utc::now();
    // Backdated a day so a client with a slightly slow clock still accepts it.
    params.not_before = to_offset(now - TimeDelta::days(1));
    params.not_after = to_offset(now + TimeDelta::days(365));
    let cert = params.signed_by(&key, &issuer).map_err(cert_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn leaf_is_fresh(leaf_pem: &str) -> bool {
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(leaf_pem.as_bytes()) else {
        return false;
    };
    let Ok(cert) = pem.parse_x509() else {
        return false;
    };
    let not_after = cert.validity().not_after.timestamp();
    not_after - Utc::now().timestamp() > LEAF_RENEW_BEFORE_DAYS * 86_400
}

fn to_offset(t: chrono::DateTime<Utc>) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp()).expect("timestamp in range")
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Writes a private key readable by the owner only.
fn write_private(path: &Path, contents: &str) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| Error::io(path, e))
}

fn cert_err(e: rcgen::Error) -> Error {
    Error::Certificate(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_and_leaf_are_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = TlsMaterial::load_or_create(Some(dir.path()), &[]).unwrap();
        let second = TlsMaterial::load_or_create(Some(dir.path()), &[]).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_eq!(first.chain_pem, second.chain_pem);
        assert!(first.ca_path.as_ref().unwrap().exists());
    }

    #[test]
    fn new_names_reissue_the_leaf_under_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = TlsMaterial::load_or_create(Some(dir.path()), &[]).unwrap();
        let second =
            TlsMaterial::load_or_create(Some(dir.path()), &["backup.example.test".into()]).unwrap();
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_ne!(first.chain_pem, second.chain_pem);
        let (_, pem) = x509_parser::pem::parse_x509_pem(second.chain_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let sans = format!(
            "{:?}",
            cert.subject_alternative_name().unwrap().unwrap().value
        );
        assert!(sans.contains("backup.example.test"), "{sans}");
        assert!(sans.contains("*.vault.localhost"), "{sans}");
    }

    #[test]
    fn ca_key_is_private_to_the_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        TlsMaterial::load_or_create(Some(dir.path()), &[]).unwrap();
        let mode = std::fs::metadata(dir.path().join("tls/ca-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0);
    }
}
