//! Crash safety: kill -9 of the agent mid-backup, and of vault-server mid-upload. After
//! either, no partial recovery point is visible and the next run completes, reusing what
//! was already uploaded.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// A tree big enough for several packs (incompressible).
fn make_data(root: &std::path::Path) {
    std::fs::create_dir_all(root).unwrap();
    for i in 0..6u64 {
        let mut state = i * 7919 + 1;
        let mut bytes = Vec::with_capacity(24 << 20);
        while bytes.len() < 24 << 20 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.extend_from_slice(&state.to_le_bytes());
        }
        std::fs::write(root.join(format!("part-{i}.bin")), bytes).unwrap();
    }
}

async fn packs(stack: &Stack) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM packs")
        .fetch_one(&stack.vs.server.state.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_agent_mid_backup_then_rerun_reuses_uploaded_packs() {
    let stack = start().await;
    stack.vault("vault1").await;
    let data = stack.dir.path().join("data");
    make_data(&data);
    let credentials = stack.credentials("vault1", "v.VaultCredentials").await;
    let passphrase = stack.write("passphrase", "a passphrase of some length");
    let machine = stack.machine("server1").await;
    assert!(
        machine
            .register(&credentials, &passphrase)
            .await
            .status
            .success()
    );

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mars-agent"))
        .arg("--home")
        .arg(&machine.home)
        .args(["backup", "--include", data.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while packs(&stack).await < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "no pack uploaded in time"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before it could be killed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let uploaded_before = packs(&stack).await;

    let points = machine.json(&["recovery-points"]).await;
    assert_eq!(
        points,
        Value::Array(vec![]),
        "no partial recovery point is visible"
    );

    let rerun = machine
        .json(&["backup", "--include", data.to_str().unwrap()])
        .await;
    assert_eq!(rerun[0]["status"], "Completed", "{rerun}");
    let total = 6 * (24u64 << 20);
    let uploaded = rerun[0]["bytesUploaded"].as_u64().unwrap();
    assert!(
        uploaded_before >= 1 && uploaded < total,
        "the rerun reused {uploaded_before} uploaded pack(s): {rerun}"
    );

    let target = stack.dir.path().join("restored");
    let point = machine.json(&["recovery-points"]).await[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let out = machine
        .run(&["restore", &point, "--target", target.to_str().unwrap()])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    for i in 0..6 {
        let name = format!("part-{i}.bin");
        assert_eq!(
            std::fs::read(data.join(&name)).unwrap(),
            std::fs::read(target.join(&name)).unwrap()
        );
    }
}

/// Starts the vault-server binary on `port` with its state in `dir`.
fn spawn_vault_server(dir: &std::path::Path, port: u16, authority: &str) -> std::process::Child {
    let binary =
        std::path::Path::new(env!("CARGO_BIN_EXE_mars-agent")).with_file_name("vault-server");
    assert!(
        binary.exists(),
        "{} is missing: build the workspace (cargo build --workspace)",
        binary.display()
    );
    let child = std::process::Command::new(binary)
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "--port",
            &port.to_string(),
            "--authority",
            authority,
        ])
        .args(["--keyvault-management", "https://127.0.0.1:9"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "vault-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_vault_server_mid_upload_the_agent_retries_and_completes() {
    use sim_core::cli::Runtime;
    use sim_core::db::Storage;
    sim_core::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("vault-server");
    let runtime = Runtime {
        storage: Storage::Memory,
        tls: sim_core::tls::TlsMaterial::load_or_create(Some(&state), &[]).unwrap(),
        clock: sim_core::SimClock::in_memory(),
    };
    let entra = entra_sim::start(&runtime, std::net::Ipv4Addr::LOCALHOST.into(), 0, 0)
        .await
        .unwrap();
    let authority = entra.https.url();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = spawn_vault_server(&state, port, &authority);

    // The vault, through the server process's ARM endpoint.
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(runtime.tls.ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let token: Value = http
        .post(format!(
            "{authority}/{}/oauth2/v2.0/token",
            sim_core::well_known::TENANT_ID
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", sim_core::well_known::ADMIN_CLIENT_ID),
            ("client_secret", sim_core::well_known::ADMIN_CLIENT_SECRET),
            ("scope", "https://management.azure.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap();
    let base = format!(
        "https://localhost:{port}/subscriptions/{}/resourceGroups/rg1",
        sim_core::well_known::SUBSCRIPTION_ID
    );
    http.put(format!("{base}?api-version=1"))
        .bearer_auth(token)
        .json(&serde_json::json!({"location": "westeurope"}))
        .send()
        .await
        .unwrap();
    let vault = format!("{base}/providers/Microsoft.RecoveryServices/vaults/v1");
    http.put(format!("{vault}?api-version=1"))
        .bearer_auth(token)
        .json(&serde_json::json!({"location": "westeurope"}))
        .send()
        .await
        .unwrap();
    let xml = http
        .post(format!("{vault}/azsimVaultCredentials?api-version=1"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let credentials = dir.path().join("v1.VaultCredentials");
    std::fs::write(&credentials, xml).unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &runtime.tls.ca_pem).unwrap();
    let passphrase = dir.path().join("passphrase");
    std::fs::write(&passphrase, "a passphrase of some length").unwrap();

    let machine = Machine {
        home: dir.path().join("home"),
        name: "server1".into(),
    };
    let cache = dir.path().join("cache");
    let out = machine
        .run(&[
            "install",
            "--cache-dir",
            cache.to_str().unwrap(),
            "--ca-file",
            ca_file.to_str().unwrap(),
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = machine.register(&credentials, &passphrase).await;
    assert!(out.status.success(), "{}", stderr(&out));

    let data = dir.path().join("data");
    make_data(&data);
    let backup = std::process::Command::new(env!("CARGO_BIN_EXE_mars-agent"))
        .arg("--home")
        .arg(&machine.home)
        .args(["--json", "backup", "--include", data.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let packs = state.join("blobs").join("packs");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !packs.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no pack reached the server"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill().unwrap(); // SIGKILL, mid-upload
    server.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut server = spawn_vault_server(&state, port, &authority);

    let output = tokio::task::spawn_blocking(move || backup.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "the agent retried through the restart: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report[0]["status"], "Completed");
    let target = dir.path().join("restored");
    let point = report[0]["recoveryPoint"].as_str().unwrap().to_string();
    let out = machine
        .run(&["restore", &point, "--target", target.to_str().unwrap()])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    for i in 0..6 {
        let name = format!("part-{i}.bin");
        assert_eq!(
            std::fs::read(data.join(&name)).unwrap(),
            std::fs::read(target.join(&name)).unwrap()
        );
    }
    server.kill().unwrap();
    server.wait().unwrap();
    entra.shutdown().await;
}
