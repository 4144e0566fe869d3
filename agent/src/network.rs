//! `check-network`: for each endpoint the agent needs (Entra, the vault service, optionally
//! a Key Vault) — DNS, TCP, TLS trust, and a token — with the fix for each failure.

use std::time::Duration;

use serde::Serialize;

use crate::client::{CertIdentity, Service, http_client};
use crate::vault_client::VaultClient;

#[derive(Serialize)]
pub struct Check {
    pub endpoint: String,
    pub step: &'static str,
    pub ok: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((authority.to_string(), 443)),
    }
}

/// DNS, TCP and TLS checks of one https endpoint (`probe` is a path that answers).
pub async fn endpoint(
    name: &str,
    url: &str,
    probe: &str,
    ca_file: Option<&std::path::Path>,
    proxy: Option<&str>,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut push = |step, ok, detail: String, fix: Option<String>| {
        checks.push(Check {
            endpoint: format!("{name} ({url})"),
            step,
            ok,
            detail,
            fix,
        })
    };
    let Some((host, port)) = host_port(url) else {
        push(
            "url",
            false,
            format!("'{url}' is not an https URL"),
            Some("Use the https URL from the vault credentials.".into()),
        );
        return checks;
    };
    if proxy.is_none() {
        let lookup = if host == "localhost" || host.ends_with(".localhost") {
            Ok(vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))])
        } else {
            tokio::net::lookup_host((host.as_str(), port))
                .await
                .map(|a| a.collect::<Vec<_>>())
        };
        let addresses = match lookup {
            Ok(addresses) if !addresses.is_empty() => {
                push(
                    "dns",
                    true,
                    format!("{host} -> {}", addresses[0].ip()),
                    None,
                );
                addresses
            }
            other => {
                let why = other
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "no address".into());
                push(
                    "dns",
                    false,
                    why,
                    Some(format!("Make {host} resolve (DNS or /etc/hosts).")),
                );
                return checks;
            }
        };
        match tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(addresses[0]),
        )
        .await
        {
            Ok(Ok(_)) => push("tcp", true, format!("connected to {}", addresses[0]), None),
            Ok(Err(e)) => {
                push(
                    "tcp",
                    false,
                    e.to_string(),
                    Some(format!(
                        "Check that the service listens on port {port} and no firewall blocks it."
                    )),
                );
                return checks;
            }
            Err(_) => {
                push(
                    "tcp",
                    false,
                    "timed out after 5 s".into(),
                    Some("Check routing and firewalls.".into()),
                );
                return checks;
            }
        }
    }
    let client = match http_client(ca_file, proxy) {
        Ok(client) => client,
        Err(e) => {
            push(
                "tls",
                false,
                e.to_string(),
                Some("Fix --ca-file / --proxy with `mars-agent install`.".into()),
            );
            return checks;
        }
    };
    match client
        .get(format!("{}{probe}", url.trim_end_matches('/')))
        .send()
        .await
    {
        Ok(response) => push(
            "tls",
            true,
            format!("trusted certificate, HTTP {}", response.status().as_u16()),
            None,
        ),
        Err(e) => {
            let text = format!("{e:?}");
            let fix = if text.contains("certificate") || text.contains("UnknownIssuer") {
                "Trust the azsim development CA: `mars-agent install --ca-file <data-dir>/tls/ca.pem`."
            } else {
                "Check the proxy and that the service is up."
            };
            push("tls", false, e.to_string(), Some(fix.into()));
        }
    }
    checks
}

/// Signs in as `identity` and calls the vault service once.
pub async fn token(identity: CertIdentity, service_url: &str, client: reqwest::Client) -> Check {
    let vault = VaultClient::new(Service::new(client, service_url, identity));
    let endpoint = format!("token ({service_url})");
    match vault.jobs().await {
        Ok(_)
        | Err(crate::error::AgentError::Service(_))
        | Err(crate::error::AgentError::NotFound(_))
            if vault.service().has_token().await =>
        {
            Check {
                endpoint,
                step: "token",
                ok: true,
                detail: "signed in with the certificate".into(),
                fix: None,
            }
        }
        Err(e) => {
            // The fix depends on what failed: trust, reachability, or the identity itself.
            let fix = match &e {
                crate::error::AgentError::Network(m)
                    if m.contains("certificate") || m.contains("UnknownIssuer") =>
                {
                    "Trust the azsim development CA: `mars-agent install --ca-file <data-dir>/tls/ca.pem`."
                }
                crate::error::AgentError::Network(_) => {
                    "Start the stack (`azsim up`) or check the URL, port and proxy."
                }
                crate::error::AgentError::Unregistered(_) => {
                    "Register again with fresh vault credentials (`mars-agent register`)."
                }
                _ => "Download fresh vault credentials, or register again.",
            };
            Check {
                endpoint,
                step: "token",
                ok: false,
                detail: e.to_string(),
                fix: Some(fix.into()),
            }
        }
        Ok(_) => Check {
            endpoint,
            step: "token",
            ok: false,
            detail: "no token".into(),
            fix: None,
        },
    }
}

/// Every check for this machine: Entra, the vault service, an optional Key Vault, and a
/// sign-in — as the registration's machine identity, or with `vault_credentials` when
/// given (before registering).
pub async fn check(
    home: &crate::config::Home,
    vault_credentials: Option<&std::path::Path>,
    key_vault_uri: Option<&str>,
) -> crate::error::Result<Vec<Check>> {
    let config = home.load()?;
    let (identity, service_url) = match (vault_credentials, &config.registration) {
        (Some(file), _) => {
            let credentials = crate::credentials::VaultCredentials::load(file)?;
            let service_url = credentials.service_url.clone();
            (CertIdentity::of_credentials(&credentials), service_url)
        }
        (None, Some(registration)) => (
            CertIdentity::of_registration(registration, home.machine_key()?),
            registration.service_url.clone(),
        ),
        (None, None) => {
            return Err(crate::error::AgentError::Usage(
                "not registered: pass --vault-credentials FILE to check with them".into(),
            ));
        }
    };
    let (ca, proxy) = (config.ca_file.as_deref(), config.proxy.as_deref());
    let mut checks = Vec::new();
    let discovery = format!(
        "/{}/v2.0/.well-known/openid-configuration",
        identity.tenant_id
    );
    checks.extend(endpoint("Entra ID", &identity.authority, &discovery, ca, proxy).await);
    checks.extend(endpoint("vault service", &service_url, "/health", ca, proxy).await);
    if let Some(uri) = key_vault_uri {
        checks.extend(endpoint("Key Vault", uri, "/health", ca, proxy).await);
    }
    checks.push(
        token(
            identity,
            &service_url,
            crate::client::http_client(ca, proxy)?,
        )
        .await,
    );
    Ok(checks)
}
