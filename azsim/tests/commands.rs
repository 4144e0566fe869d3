//! The `azsim` commands against a real `azsim up`: the clock moves and returns with flags
//! after the subcommand, vault credentials are written private, and a taken port is named
//! once with the flag that moves it.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use sim_core::well_known;

const AZSIM: &str = env!("CARGO_BIN_EXE_azsim");

/// `azsim up` on free ports; stopped when dropped.
struct Up {
    child: Child,
    entra: u16,
    keyvault: u16,
    vault_server: u16,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port_of(line: &str) -> u16 {
    let url = line.split_whitespace().nth(1).unwrap_or_default();
    url.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"))
}

fn up(data: &Path) -> Up {
    let mut child = Command::new(AZSIM)
        .args(["up", "--data-dir"])
        .arg(data)
        .args([
            "--entra-port",
            "0",
            "--mi-port",
            "0",
            "--keyvault-port",
            "0",
            "--keyvault-mgmt-port",
            "0",
            "--vault-server-port",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut ports = (0, 0, 0);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let trimmed = line.trim_start();
        if trimmed.starts_with("entra-sim ") {
            ports.0 = port_of(trimmed);
        } else if trimmed.starts_with("keyvault-sim ") {
            ports.1 = port_of(trimmed);
        } else if trimmed.starts_with("vault-server (ARM)") {
            ports.2 = port_of(&trimmed.replace("vault-server (ARM)", "vault-server"));
        } else if trimmed.starts_with("Run `eval") {
            break;
        }
    }
    assert!(ports.0 > 0 && ports.1 > 0 && ports.2 > 0, "{ports:?}");
    Up {
        child,
        entra: ports.0,
        keyvault: ports.1,
        vault_server: ports.2,
    }
}

fn azsim(args: &[&str]) -> std::process::Output {
    Command::new(AZSIM).args(args).output().unwrap()
}

#[test]
fn the_clock_moves_and_resets_with_flags_after_the_subcommand() {
    let data = tempfile::tempdir().unwrap();
    let stack = up(data.path());
    let dir = data.path().to_str().unwrap().to_string();
    let (entra, keyvault, vault_server) = (
        stack.entra.to_string(),
        stack.keyvault.to_string(),
        stack.vault_server.to_string(),
    );
    let ports = [
        "--entra-port",
        entra.as_str(),
        "--keyvault-port",
        keyvault.as_str(),
        "--vault-server-port",
        vault_server.as_str(),
    ];
    for action in [
        vec!["advance", "2h"],
        vec!["reset"],
        vec!["advance", "30d"],
        vec!["reset"],
    ] {
        let mut args = vec!["clock"];
        args.extend(action.iter().copied());
        args.extend(["--data-dir", dir.as_str()]);
        args.extend(ports);
        let out = azsim(&args);
        assert!(
            out.status.success(),
            "azsim {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        assert_eq!(printed.lines().count(), 3, "every service moved: {printed}");
    }

    // Vault credentials hold a private key: the file is the owner's alone.
    let ca = data.path().join("tls/ca.pem");
    let http = client(&ca);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let token: Value = http
            .post(format!(
                "https://localhost:{entra}/{}/oauth2/v2.0/token",
                well_known::TENANT_ID
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", well_known::ADMIN_CLIENT_ID),
                ("client_secret", well_known::ADMIN_CLIENT_SECRET),
                ("scope", "https://management.azure.com/.default"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = token["access_token"].as_str().unwrap();
        let group = format!(
            "https://localhost:{vault_server}/subscriptions/{}/resourceGroups/rg1",
            well_known::SUBSCRIPTION_ID
        );
        for (url, body) in [
            (
                format!("{group}?api-version=2021-04-01"),
                json!({"location": "westeurope"}),
            ),
            (
                format!(
                    "{group}/providers/Microsoft.RecoveryServices/vaults/vault1?api-version=2026-11-01"
                ),
                json!({"location": "westeurope", "sku": {"name": "RS0", "tier": "Standard"}, "properties": {}}),
            ),
        ] {
            let response = http
                .put(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
        }
    });
    let output = data.path().join("vault1.VaultCredentials");
    let out = azsim(&[
        "vault-credentials",
        "-g",
        "rg1",
        "-v",
        "vault1",
        "-o",
        output.to_str().unwrap(),
        "--ca-file",
        ca.to_str().unwrap(),
        "--entra-port",
        &entra,
        "--vault-server-port",
        &vault_server,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&output).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // The demo on this running stack: every step, and a verified restore.
    let out = azsim(&[
        "demo",
        "--json",
        "--data-dir",
        &dir,
        "--entra-port",
        &entra,
        "--keyvault-port",
        &keyvault,
        "--vault-server-port",
        &vault_server,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let demo: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(demo["verified"], true, "{demo}");
    let steps: Vec<&str> = demo["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps.first(),
        Some(&"resource group"),
        "it used the running stack"
    );
    assert_eq!(steps.last(), Some(&"restore"));
    assert!(steps.contains(&"key vault") && steps.contains(&"recovery point in ARM"));

    // A second stack on the same ports: the taken port is named once, with its flag.
    let second = tempfile::tempdir().unwrap();
    let out = Command::new(AZSIM)
        .args(["up", "--data-dir"])
        .arg(second.path())
        .args(["--entra-port", &entra])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let message = String::from_utf8_lossy(&out.stderr);
    assert_eq!(message.matches("in use").count(), 1, "{message}");
    assert!(message.contains("--entra-port"), "{message}");
}

/// An HTTPS client trusting the stack's CA.
fn client(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap()
}

#[test]
fn the_demo_starts_its_own_stack_when_none_runs() {
    let nowhere = tempfile::tempdir().unwrap();
    let out = azsim(&[
        "demo",
        "--json",
        "--data-dir",
        nowhere.path().join("none").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let demo: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(demo["verified"], true);
    assert_eq!(demo["steps"][0]["step"], "stack");
}
