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

fn up(data: &Path) -> Up {
    up_with(data, &[])
}

/// `azsim up` with `extra` flags; the ports come from the `azsim.json` it publishes.
fn up_with(data: &Path, extra: &[&str]) -> Up {
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
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut ready = false;
    for line in BufReader::new(stdout).lines() {
        if line.unwrap().starts_with("Run `eval") {
            ready = true;
            break;
        }
    }
    assert!(ready, "azsim up did not start");
    let published: Value =
        serde_json::from_slice(&std::fs::read(data.join("azsim.json")).unwrap()).unwrap();
    let port = |name: &str| published["ports"][name].as_u64().unwrap() as u16;
    Up {
        child,
        entra: port("entra"),
        keyvault: port("keyvault"),
        vault_server: port("vaultServer"),
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

const SEED: &str = r#"{
  "resourceGroups": [{"name": "ci-rg", "location": "westeurope"}],
  "recoveryServicesVaults": [{"resourceGroup": "ci-rg", "name": "ci-vault", "location": "westeurope",
    "properties": {"redundancySettings": {"standardTierStorageRedundancy": "LocallyRedundant"}},
    "identity": {"type": "SystemAssigned"}}],
  "applications": [{"appId": "0ddba11a-0000-4000-8000-00000000c1c1", "displayName": "ci-app",
    "secrets": [{"displayName": "ci", "secretText": "ci-app-secret-0123456789"}]}],
  "roleAssignments": [{"appId": "0ddba11a-0000-4000-8000-00000000c1c1", "role": "Reader"}],
  "keyVaults": [{"resourceGroup": "ci-rg", "name": "cikv", "location": "westeurope",
    "accessPolicies": [{"objectId": "a2e0c0de-5e11-4a55-9a2e-00000000001a", "permissions": {"secrets": ["all"]}}],
    "secrets": {"db-password": "hunter2"}}]
}"#;

fn stdout_of(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn one_stack_per_data_directory_found_by_its_settings_file_and_seeded_idempotently() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let seed = work.path().join("seed.json");
    std::fs::write(&seed, SEED).unwrap();
    let mut stack = up_with(&data, &["--seed", seed.to_str().unwrap()]);
    let dir = data.to_str().unwrap();

    // A second `up` on the same directory is refused, naming the running one.
    let out = azsim(&["up", "--data-dir", dir, "--entra-port", "0"]);
    assert!(!out.status.success());
    let refused = String::from_utf8_lossy(&out.stderr);
    assert!(
        refused.contains("another `azsim up` is running"),
        "{refused}"
    );
    assert!(refused.contains(&stack.child.id().to_string()), "{refused}");

    // `env` needs only the data directory: ports and CA come from azsim.json.
    let env = stdout_of(&azsim(&["env", "--data-dir", dir]));
    assert!(
        env.contains(&format!(
            "export AZSIM_ARM_URL=https://localhost:{}",
            stack.vault_server
        )),
        "{env}"
    );
    let ca = data.join("tls/ca.pem").canonicalize().unwrap();
    assert!(env.contains(&format!("export REQUESTS_CA_BUNDLE={}", ca.display())));

    // What the seed made is there, through the public APIs.
    let http = client(&ca);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (entra, arm) = (stack.entra, stack.vault_server);
    runtime.block_on(async {
        let token = |client_id: &'static str, secret: &'static str| {
            let http = http.clone();
            async move {
                let answer: Value = http
                    .post(format!(
                        "https://localhost:{entra}/{}/oauth2/v2.0/token",
                        well_known::TENANT_ID
                    ))
                    .form(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", client_id),
                        ("client_secret", secret),
                        ("scope", "https://management.azure.com/.default"),
                    ])
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                answer["access_token"].as_str().unwrap().to_string()
            }
        };
        // The seeded app signs in with its seeded secret and reads as a Reader.
        let app = token(
            "0ddba11a-0000-4000-8000-00000000c1c1",
            "ci-app-secret-0123456789",
        )
        .await;
        let vault: Value = http
            .get(format!("https://localhost:{arm}/subscriptions/{}/resourceGroups/ci-rg/providers/Microsoft.RecoveryServices/vaults/ci-vault?api-version=2026-11-01", well_known::SUBSCRIPTION_ID))
            .bearer_auth(&app)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            vault["properties"]["redundancySettings"]["standardTierStorageRedundancy"],
            "LocallyRedundant",
            "{vault}"
        );
        assert!(vault["identity"]["principalId"].is_string(), "{vault}");
        let write = http
            .put(format!("https://localhost:{arm}/subscriptions/{}/resourceGroups/other?api-version=2021-04-01", well_known::SUBSCRIPTION_ID))
            .bearer_auth(&app)
            .json(&json!({"location": "westeurope"}))
            .send()
            .await
            .unwrap();
        assert_eq!(write.status(), 403, "a Reader cannot write");
    });

    // Seeding again changes nothing.
    let again = stdout_of(&azsim(&["seed", seed.to_str().unwrap(), "--data-dir", dir]));
    assert!(!again.contains("created"), "{again}");
    assert_eq!(again.matches("unchanged").count(), 4, "{again}");

    // A bad entry is named: where in the file, or which entry the service refused.
    let bad = work.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"resourceGroups": [{"name": "x", "loc": "westeurope"}]}"#,
    )
    .unwrap();
    let out = azsim(&["seed", bad.to_str().unwrap(), "--data-dir", dir]);
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && message.contains("resourceGroups[0]"),
        "{message}"
    );
    std::fs::write(
        &bad,
        r#"{"recoveryServicesVaults": [{"resourceGroup": "ci-rg", "name": "v2", "location": "atlantis"}]}"#,
    )
    .unwrap();
    let out = azsim(&["seed", bad.to_str().unwrap(), "--data-dir", dir]);
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{message}");
    assert!(
        message.contains("recoveryServicesVaults[0] 'ci-rg/v2'") && message.contains("atlantis"),
        "{message}"
    );

    // `hosts --write` keeps one marked block with every Key Vault.
    let hosts = work.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let write = [
        "hosts",
        "--write",
        "--hosts-file",
        hosts.to_str().unwrap(),
        "--data-dir",
        dir,
    ];
    stdout_of(&azsim(&write));
    let first = std::fs::read_to_string(&hosts).unwrap();
    stdout_of(&azsim(&write));
    assert_eq!(std::fs::read_to_string(&hosts).unwrap(), first);
    assert!(first.starts_with("127.0.0.1 localhost\n"), "{first}");
    assert!(
        first.contains("127.0.0.1 azsim.vault.localhost\n127.0.0.1 cikv.vault.localhost\n"),
        "{first}"
    );

    // Regions: an outage is listed and lifted; the seeded LRS vault shows its placement.
    stdout_of(&azsim(&[
        "region",
        "outage",
        "westeurope",
        "--data-dir",
        dir,
    ]));
    let status: Value =
        serde_json::from_str(&stdout_of(&azsim(&["region", "--json", "--data-dir", dir]))).unwrap();
    assert_eq!(status["outages"], json!(["westeurope"]), "{status}");
    let seeded = status["vaults"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "ci-vault")
        .unwrap();
    assert_eq!(seeded["redundancy"], "LocallyRedundant");
    assert_eq!(seeded["secondaryRegion"], "northeurope");
    stdout_of(&azsim(&[
        "region",
        "restore",
        "westeurope",
        "--data-dir",
        dir,
    ]));
    let out = azsim(&["region", "outage", "atlantis", "--data-dir", dir]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("atlantis"));

    // A graceful stop withdraws the settings file and frees the directory.
    let pid = stack.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    stack.child.wait().unwrap();
    assert!(!data.join("azsim.json").exists());
}

#[test]
fn env_fetches_the_ca_of_an_in_memory_stack() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let stack = up_with(&data, &["--in-memory"]);
    assert!(
        !data.join("tls").exists(),
        "nothing but the settings on disk"
    );
    let env = stdout_of(&azsim(&["env", "--data-dir", data.to_str().unwrap()]));
    let ca = env
        .lines()
        .find_map(|l| l.strip_prefix("export SSL_CERT_FILE="))
        .unwrap_or_else(|| panic!("{env}"));
    let http = client(Path::new(ca));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        http.get(format!("https://localhost:{}/health", stack.vault_server))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
}
