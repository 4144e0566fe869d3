//! Which vault a request is for, from the host it was sent to — one vault per host name,
//! because the SDK needs ids rooted at the origin (`/secrets/{name}/{version}`):
//!
//! - `{vault}.vault.{suffix}[:port]` → `{vault}`; challenge resource `https://vault.{suffix}[:port]`
//!   (so the SDK's `verify_challenge_resource` passes);
//! - `{vault}.localhost[:port]` → `{vault}`;
//! - `localhost`, an IP address or a single-label name → the default vault.

use sim_core::well_known::DEFAULT_KEY_VAULT;

#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    pub vault: String,
    /// `host[:port]`, lower case, as ids and links must show it.
    pub origin: String,
    /// The resource named in the 401 challenge, which tokens may be issued for.
    pub resource: String,
}

pub fn resolve(authority: &str) -> Target {
    let origin = authority.to_ascii_lowercase();
    let (host, port) = split_port(&origin);
    let port_suffix = match port {
        Some(port) if port != "443" => format!(":{port}"),
        _ => String::new(),
    };
    let labels: Vec<&str> = host.split('.').collect();
    let is_ip = host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[');
    let (vault, resource_host) = if is_ip || labels.len() < 2 {
        (DEFAULT_KEY_VAULT.to_string(), "vault.localhost".to_string())
    } else if labels.len() >= 3 && labels[1] == "vault" {
        (labels[0].to_string(), labels[1..].join("."))
    } else if labels.len() == 2 && labels[1] == "localhost" {
        (labels[0].to_string(), "vault.localhost".to_string())
    } else {
        (DEFAULT_KEY_VAULT.to_string(), "vault.localhost".to_string())
    };
    Target {
        vault,
        resource: format!("https://{resource_host}{port_suffix}"),
        origin,
    }
}

fn split_port(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        // [::1]:port
        return match rest.split_once(']') {
            Some((ip, tail)) => (&authority[..ip.len() + 2], tail.strip_prefix(':')),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => (host, Some(port)),
        _ => (authority, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_hosts_map_to_vaults_and_challenge_resources() {
        let t = resolve("MyVault.vault.localhost:10011");
        assert_eq!(t.vault, "myvault");
        assert_eq!(t.origin, "myvault.vault.localhost:10011");
        assert_eq!(t.resource, "https://vault.localhost:10011");

        let t = resolve("kv1.localhost:10011");
        assert_eq!(
            (t.vault.as_str(), t.resource.as_str()),
            ("kv1", "https://vault.localhost:10011")
        );

        let t = resolve("prod.vault.azure.net:443");
        assert_eq!(
            (t.vault.as_str(), t.resource.as_str()),
            ("prod", "https://vault.azure.net")
        );

        for default in [
            "localhost:10011",
            "127.0.0.1:10011",
            "[::1]:10011",
            "keyvault-sim:10011",
        ] {
            let t = resolve(default);
            assert_eq!(t.vault, DEFAULT_KEY_VAULT, "{default}");
            assert_eq!(t.resource, "https://vault.localhost:10011", "{default}");
        }
    }
}
