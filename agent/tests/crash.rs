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
        std::fs::write(root.join(format!("part-{i}.bin")), noise(24 << 20, i)).unwrap();
    }
}

async fn packs(stack: &Stack) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM packs")
        .fetch_one(&stack.kit.vault_server.server.state.pool)
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
/// A child process killed when dropped: a test that fails half-way leaves no server running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_vault_server(dir: &std::path::Path, port: u16, authority: &str) -> KillOnDrop {
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
    KillOnDrop(child)
}

/// entra-sim in this process, vault-server as its own process (so it can be killed), a
/// vault, and a registered agent.
struct ProcessStack {
    dir: tempfile::TempDir,
    state: std::path::PathBuf,
    runtime: sim_core::cli::Runtime,
    entra: entra_sim::Running,
    authority: String,
    port: u16,
    server: KillOnDrop,
    http: reqwest::Client,
    vault: String,
    machine: Machine,
}

impl ProcessStack {
    async fn start() -> ProcessStack {
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
        let server = spawn_vault_server(&state, port, &authority);
        let http = reqwest::Client::builder()
            .tls_certs_only([
                reqwest::Certificate::from_pem(runtime.tls.ca_pem.as_bytes()).unwrap(),
            ])
            .build()
            .unwrap();
        let base = format!(
            "https://localhost:{port}/subscriptions/{}/resourceGroups/rg1",
            sim_core::well_known::SUBSCRIPTION_ID
        );
        let vault = format!("{base}/providers/Microsoft.RecoveryServices/vaults/v1");
        let mut stack = ProcessStack {
            dir,
            state,
            runtime,
            entra,
            authority,
            port,
            server,
            http,
            vault,
            machine: Machine {
                home: std::path::PathBuf::new(),
                name: "server1".into(),
            },
        };
        let token = stack.token("https://management.azure.com/.default").await;
        stack
            .http
            .put(format!("{base}?api-version=1"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"location": "westeurope"}))
            .send()
            .await
            .unwrap();
        stack
            .http
            .put(format!("{}?api-version=1", stack.vault))
            .bearer_auth(&token)
            .json(&serde_json::json!({"location": "westeurope"}))
            .send()
            .await
            .unwrap();
        let xml = stack
            .http
            .post(format!(
                "{}/azsimVaultCredentials?api-version=1",
                stack.vault
            ))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let dir = stack.dir.path();
        let credentials = dir.join("v1.VaultCredentials");
        std::fs::write(&credentials, xml).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &stack.runtime.tls.ca_pem).unwrap();
        let passphrase = dir.join("passphrase");
        std::fs::write(&passphrase, "a passphrase of some length").unwrap();
        stack.machine.home = dir.join("home");
        let cache = dir.join("cache");
        let out = stack
            .machine
            .run(&[
                "install",
                "--cache-dir",
                cache.to_str().unwrap(),
                "--ca-file",
                ca_file.to_str().unwrap(),
            ])
            .await;
        assert!(out.status.success(), "{}", stderr(&out));
        let out = stack.machine.register(&credentials, &passphrase).await;
        assert!(out.status.success(), "{}", stderr(&out));
        stack
    }

    /// A token of the well-known admin app for `scope`.
    async fn token(&self, scope: &str) -> String {
        let token: Value = self
            .http
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                self.authority,
                sim_core::well_known::TENANT_ID
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", sim_core::well_known::ADMIN_CLIENT_ID),
                ("client_secret", sim_core::well_known::ADMIN_CLIENT_SECRET),
                ("scope", scope),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        token["access_token"].as_str().unwrap().to_string()
    }

    /// SIGKILL, then a new process on the same state.
    fn kill_and_restart(&mut self) {
        self.server.0.kill().unwrap();
        self.server.0.wait().unwrap();
        self.server = spawn_vault_server(&self.state, self.port, &self.authority);
    }

    async fn stop(mut self) {
        self.server.0.kill().unwrap();
        self.server.0.wait().unwrap();
        self.entra.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_vault_server_mid_upload_the_agent_retries_and_completes() {
    let mut stack = ProcessStack::start().await;
    let data = stack.dir.path().join("data");
    make_data(&data);
    let backup = std::process::Command::new(env!("CARGO_BIN_EXE_mars-agent"))
        .arg("--home")
        .arg(&stack.machine.home)
        .args(["--json", "backup", "--include", data.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let packs = stack.state.join("blobs").join("packs");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !packs.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no pack reached the server"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // SIGKILL mid-upload; the agent retries while the new process starts.
    stack.server.0.kill().unwrap();
    stack.server.0.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.server = spawn_vault_server(&stack.state, stack.port, &stack.authority);

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
    let target = stack.dir.path().join("restored");
    let point = report[0]["recoveryPoint"].as_str().unwrap().to_string();
    let out = stack
        .machine
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
    stack.stop().await;
}

/// Rewrites part `i` of the data with other incompressible bytes.
fn rewrite(root: &std::path::Path, i: u64) {
    std::fs::write(
        root.join(format!("part-{i}.bin")),
        noise(24 << 20, i + 1000),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_vault_server_during_repacks_loses_nothing_live() {
    let mut stack = ProcessStack::start().await;
    let data = stack.dir.path().join("data");
    make_data(&data);
    let tomorrow = (chrono::Utc::now() + chrono::TimeDelta::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let first = stack
        .machine
        .json(&[
            "backup",
            "--include",
            data.to_str().unwrap(),
            "--retain-until",
            &tomorrow,
        ])
        .await;
    for i in 0..5 {
        rewrite(&data, i);
    }
    let second = stack
        .machine
        .json(&["backup", "--include", data.to_str().unwrap()])
        .await;
    let kept = second[0]["recoveryPoint"].as_str().unwrap().to_string();
    let packs_before = std::fs::read_dir(stack.state.join("blobs/packs"))
        .unwrap()
        .count();
    assert!(packs_before > 0);

    // Three days on, for entra-sim (here) and the vault-server process alike.
    // (The admin token is taken first: the process checks it before its clock moves.)
    let admin = stack.token("api://azsim/.default").await;
    stack.runtime.clock.advance(3 * 86_400).unwrap();
    let moved = stack
        .http
        .post(format!("https://localhost:{}/admin/clock", stack.port))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"set": stack.runtime.clock.now().to_rfc3339()}))
        .send()
        .await
        .unwrap();
    assert!(moved.status().is_success(), "{:?}", moved.text().await);

    // Each listing sweeps: the first point expires and its packs are repacked. Kill the
    // process at growing delays into the sweep until one completes.
    let items = format!("{}/backupProtectedItems?api-version=1", stack.vault);
    let mut killed = 0;
    for delay in [5u64, 15, 40, 120, 250, 500, 900] {
        let token = stack.token("https://management.azure.com/.default").await;
        let request = stack.http.get(&items).bearer_auth(&token).send();
        let outcome = tokio::time::timeout(Duration::from_millis(delay), request).await;
        if matches!(outcome, Ok(Ok(ref r)) if r.status().is_success()) {
            break;
        }
        stack.kill_and_restart();
        killed += 1;
    }
    let token = stack.token("https://management.azure.com/.default").await;
    let listed = stack
        .http
        .get(&items)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(listed.status().is_success());
    assert!(killed > 0, "the sweep was interrupted at least once");

    let points = stack.machine.json(&["recovery-points"]).await;
    let names: Vec<&str> = points
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [kept.as_str()], "the first point expired");
    assert_ne!(first[0]["recoveryPoint"].as_str().unwrap(), kept);
    let target = stack.dir.path().join("restored");
    let out = stack
        .machine
        .run(&["restore", &kept, "--target", target.to_str().unwrap()])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    for i in 0..6 {
        let name = format!("part-{i}.bin");
        assert!(
            std::fs::read(data.join(&name)).unwrap() == std::fs::read(target.join(&name)).unwrap(),
            "{name} restores byte-exact"
        );
    }
    stack.stop().await;
}

/// Relative paths of the objects under a store directory. object_store's local store
/// writes through a staging file (`name#N`) renamed into place; one a kill leaves behind is
/// not an object (object_store does not list it).
fn store_objects(store: &std::path::Path) -> Vec<std::path::PathBuf> {
    if !store.exists() {
        return Vec::new();
    }
    let mut found: Vec<_> = files_under(store)
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains('#'))
        .map(|p| p.strip_prefix(store).unwrap().to_path_buf())
        .collect();
    found.sort();
    found
}

impl ProcessStack {
    async fn admin(&self, method: reqwest::Method, path: &str) -> Value {
        let token = self.token("api://azsim/.default").await;
        let response = self
            .http
            .request(method, format!("https://localhost:{}{path}", self.port))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    async fn pending_replication(&self) -> i64 {
        let status = self.admin(reqwest::Method::GET, "/admin/regions").await;
        status["vaults"][0]["replication"]["objects"]
            .as_i64()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_vault_server_during_replication_loses_nothing() {
    let mut stack = ProcessStack::start().await;
    // The vault is GeoRedundant (the default): West Europe copies to North Europe. Hold
    // replication back with an outage of North Europe, so the backup fills the queue.
    stack
        .admin(reqwest::Method::PUT, "/admin/regions/northeurope/outage")
        .await;
    let data = stack.dir.path().join("data");
    make_data(&data);
    let out = stack
        .machine
        .run(&["backup", "--include", data.to_str().unwrap()])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let queued = stack.pending_replication().await;
    assert!(queued > 0, "the queue holds the backup's objects");

    // North Europe comes back; replication starts and the server is killed (-9) while it
    // runs, then again after the restart.
    stack
        .admin(reqwest::Method::DELETE, "/admin/regions/northeurope/outage")
        .await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    stack.kill_and_restart();
    tokio::time::sleep(Duration::from_millis(30)).await;
    stack.kill_and_restart();

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while stack.pending_replication().await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "replication never caught up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let primary = store_objects(&stack.state.join("blobs"));
    let secondary = store_objects(&stack.state.join("regions/northeurope"));
    assert!(primary.len() as i64 >= queued, "{primary:?}");
    assert_eq!(primary, secondary, "every object reached the secondary");
    for path in &primary {
        assert_eq!(
            std::fs::read(stack.state.join("blobs").join(path)).unwrap(),
            std::fs::read(stack.state.join("regions/northeurope").join(path)).unwrap(),
            "{path:?} is whole in the secondary"
        );
    }
    stack.stop().await;
}
