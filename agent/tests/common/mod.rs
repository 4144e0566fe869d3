//! A whole azsim in-process (azsim-testkit: entra-sim, keyvault-sim, vault-server; in
//! memory, port 0) and the real `mars-agent` binary pointed at it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};
use sim_core::db::Storage;
use sim_core::{SimClock, well_known};

pub struct Stack {
    /// The whole azsim, in-process (azsim-testkit).
    pub kit: azsim_testkit::Stack,
    pub http: reqwest::Client,
    pub clock: SimClock,
    pub arm: String,
    pub entra_url: String,
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
}

pub async fn start() -> Stack {
    start_on(Storage::Memory).await
}

pub async fn start_on(storage: Storage) -> Stack {
    let kit = azsim_testkit::Stack::start_with(azsim_testkit::Options {
        storage,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    Stack {
        arm: kit.arm_url(),
        entra_url: kit.entra_url(),
        http: kit.http.clone(),
        clock: kit.clock.clone(),
        ca_file: kit.ca_file.clone(),
        dir,
        kit,
    }
}

impl Stack {
    pub async fn arm_token(&self) -> String {
        self.kit
            .token("https://management.azure.com/.default")
            .await
            .unwrap()
    }

    pub fn vault_url(&self, vault: &str) -> String {
        format!(
            "{}/subscriptions/{}/resourceGroups/rg1/providers/Microsoft.RecoveryServices/vaults/{vault}",
            self.arm,
            well_known::SUBSCRIPTION_ID
        )
    }

    /// Creates resource group rg1 (once) and a vault.
    pub async fn vault(&self, name: &str) {
        let token = self.arm_token().await;
        let group = format!(
            "{}/subscriptions/{}/resourceGroups/rg1?api-version=2025-04-01",
            self.arm,
            well_known::SUBSCRIPTION_ID
        );
        self.http
            .put(group)
            .bearer_auth(&token)
            .json(&json!({"location": "westeurope"}))
            .send()
            .await
            .unwrap();
        let response = self
            .http
            .put(format!("{}?api-version=2026-11-01", self.vault_url(name)))
            .bearer_auth(&token)
            .json(&json!({"location": "westeurope", "sku": {"name": "RS0", "tier": "Standard"}, "properties": {}}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    /// Downloads fresh vault credentials into the test directory.
    pub async fn credentials(&self, vault: &str, file: &str) -> PathBuf {
        let token = self.arm_token().await;
        let response = self
            .http
            .post(format!(
                "{}/azsimVaultCredentials?api-version=2026-11-01",
                self.vault_url(vault)
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
        let path = self.dir.path().join(file);
        std::fs::write(&path, response.text().await.unwrap()).unwrap();
        path
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A machine: an agent home installed with this stack's CA.
    pub async fn machine(&self, name: &str) -> Machine {
        let home = self.dir.path().join(format!("home-{name}"));
        let cache = self.dir.path().join(format!("cache-{name}"));
        let machine = Machine {
            home,
            name: name.to_string(),
        };
        let out = machine
            .run(&[
                "install",
                "--cache-dir",
                cache.to_str().unwrap(),
                "--ca-file",
                self.ca_file.to_str().unwrap(),
            ])
            .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        machine
    }
}

pub struct Machine {
    pub home: PathBuf,
    pub name: String,
}

impl Machine {
    /// Runs `mars-agent --home HOME ARGS` without blocking the servers' runtime.
    pub async fn run(&self, args: &[&str]) -> Output {
        let home = self.home.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_mars-agent"))
                .arg("--home")
                .arg(&home)
                .args(&args)
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    }

    pub async fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all).await;
        assert!(
            out.status.success() || out.status.code() == Some(1),
            "mars-agent {args:?} failed ({:?}): {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    pub async fn register(&self, credentials: &Path, passphrase: &Path) -> Output {
        self.run(&[
            "register",
            "--vault-credentials",
            credentials.to_str().unwrap(),
            "--passphrase-file",
            passphrase.to_str().unwrap(),
            "--server-name",
            &self.name,
        ])
        .await
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The passphrase the test machines register with.
pub const PASSPHRASE: &str = "correct horse battery staple 42";

impl Stack {
    /// A machine `name` registered to `vault` (created if new) with [`PASSPHRASE`]; also
    /// returns the credentials file it used.
    pub async fn registered(&self, vault: &str, name: &str) -> (Machine, PathBuf) {
        self.vault(vault).await;
        let credentials = self
            .credentials(vault, &format!("{name}.VaultCredentials"))
            .await;
        let passphrase = self.write(&format!("passphrase-{name}"), PASSPHRASE);
        let machine = self.machine(name).await;
        let out = machine.register(&credentials, &passphrase).await;
        assert!(out.status.success(), "{}", stderr(&out));
        (machine, credentials)
    }
}

/// Deterministic incompressible bytes (xorshift); each seed gives other bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed * 2 + 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Every file below `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}
