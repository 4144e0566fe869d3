//! `azsim hosts [--write]`: the hosts-file lines for every Key Vault's data-plane host.
//!
//! Key Vault clients reach a vault at `https://<vault>.vault.localhost:<port>`, the only
//! form whose challenge passes the SDKs' `verify_challenge_resource` (the request host
//! must be a subdomain of the challenge resource, and `localhost` has no parent). Plain
//! glibc does not resolve `*.localhost`, so this writes the names into a marked block of
//! `/etc/hosts`, replaced whole on every run (idempotent; nothing outside it changes).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use sim_core::well_known;

use crate::Target;
use crate::api::{Endpoints, subscription_path};

const BEGIN: &str = "# BEGIN azsim: Key Vault host names (managed by `azsim hosts --write`)";
const END: &str = "# END azsim";

#[derive(clap::Args)]
pub struct HostsArgs {
    /// Write the lines into the hosts file (a marked block, replaced on each run).
    #[arg(long)]
    write: bool,
    /// The hosts file to maintain.
    #[arg(long, default_value = "/etc/hosts")]
    hosts_file: PathBuf,
    /// The address the names resolve to.
    #[arg(long, default_value = "127.0.0.1")]
    address: std::net::IpAddr,
    #[command(flatten)]
    target: Target,
}

pub async fn run(args: HostsArgs) -> anyhow::Result<()> {
    let located = args.target.locate()?;
    let endpoints = Endpoints::of(&located, Duration::from_secs(30)).await?;
    let listed = endpoints
        .arm(
            reqwest::Method::GET,
            &format!(
                "{}/providers/Microsoft.KeyVault/vaults",
                subscription_path()
            ),
            None,
        )
        .await?;
    let mut vaults = vec![well_known::DEFAULT_KEY_VAULT.to_string()];
    vaults.extend(vault_names(&listed));
    let block = block(&vaults, args.address);
    if !args.write {
        print!("{block}");
        return Ok(());
    }
    let current = std::fs::read_to_string(&args.hosts_file)
        .with_context(|| format!("reading {}", args.hosts_file.display()))?;
    let updated = with_block(&current, &block);
    if updated == current {
        println!(
            "{} is up to date ({} names)",
            args.hosts_file.display(),
            vaults.len()
        );
        return Ok(());
    }
    replace(&args.hosts_file, &updated)?;
    println!("{}: {} names", args.hosts_file.display(), vaults.len());
    Ok(())
}

fn vault_names(listed: &Value) -> Vec<String> {
    let mut names: Vec<String> = listed["value"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .map(str::to_ascii_lowercase)
        .filter(|name| name != well_known::DEFAULT_KEY_VAULT)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The marked block: one name per line, so a diff shows which vault came or went.
fn block(vaults: &[String], address: std::net::IpAddr) -> String {
    let mut text = format!("{BEGIN}\n");
    for vault in vaults {
        text.push_str(&format!("{address} {vault}.vault.localhost\n"));
    }
    text.push_str(END);
    text.push('\n');
    text
}

/// `current` with its azsim block replaced by `block` (appended when there is none).
fn with_block(current: &str, block: &str) -> String {
    let mut kept = String::new();
    let mut inside = false;
    for line in current.lines() {
        match line.trim_end() {
            BEGIN => inside = true,
            END if inside => inside = false,
            _ if inside => {}
            _ => {
                kept.push_str(line);
                kept.push('\n');
            }
        }
    }
    if !kept.is_empty() && !kept.ends_with("\n\n") {
        kept.push('\n');
    }
    kept + block
}

/// Replaces the file whole where possible (a rename); a bind-mounted `/etc/hosts` (as in
/// containers) cannot be renamed over, so it is then rewritten in place.
fn replace(path: &Path, text: &str) -> anyhow::Result<()> {
    let partial = path.with_extension("azsim-partial");
    let renamed = std::fs::write(&partial, text).and_then(|()| {
        if let Ok(meta) = std::fs::metadata(path) {
            std::fs::set_permissions(&partial, meta.permissions())?;
        }
        std::fs::rename(&partial, path)
    });
    if renamed.is_err() {
        let _ = std::fs::remove_file(&partial);
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_is_appended_once_and_replaced_after() {
        let hosts = "127.0.0.1 localhost\n::1 localhost\n";
        let address = "127.0.0.1".parse().unwrap();
        let first = with_block(hosts, &block(&["azsim".into()], address));
        assert!(first.starts_with(hosts));
        assert!(first.contains("127.0.0.1 azsim.vault.localhost\n"));
        assert_eq!(
            with_block(&first, &block(&["azsim".into()], address)),
            first
        );
        let second = with_block(&first, &block(&["azsim".into(), "kv1".into()], address));
        assert_eq!(second.matches(BEGIN).count(), 1);
        assert!(second.starts_with(hosts));
        assert!(second.ends_with("127.0.0.1 kv1.vault.localhost\n# END azsim\n"));
    }

    #[test]
    fn listed_names_are_lower_case_unique_and_skip_the_default() {
        let listed = serde_json::json!({"value": [{"name": "KV2"}, {"name": "azsim"}, {"name": "kv1"}, {"name": "kv2"}]});
        assert_eq!(vault_names(&listed), ["kv1", "kv2"]);
    }
}
