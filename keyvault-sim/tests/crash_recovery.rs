//! kill -9 of the keyvault-sim process during a burst of writes: after a restart on the same
//! data directory, every acknowledged write is there with its value, and the service takes
//! new writes.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sim_core::cli::Runtime;
use sim_core::db::Storage;
use sim_core::tls::TlsMaterial;
use sim_core::{SimClock, well_known};

/// Starts the keyvault-sim binary on the data directory; returns it and its data-plane URL.
fn spawn_keyvault(dir: &std::path::Path, authority: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyvault-sim"))
        .args([
            "--data-dir",
            dir.to_str().unwrap(),
            "--port",
            "0",
            "--management-port",
            "0",
        ])
        .args(["--authority", authority])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    sim_core::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::Disk(dir.path().to_path_buf());
    let runtime = Runtime {
        tls: TlsMaterial::load_or_create(Some(dir.path()), &[]).unwrap(),
        storage,
        clock: SimClock::in_memory(),
    };
    let entra = entra_sim::start(&runtime, IpAddr::V4(Ipv4Addr::LOCALHOST), 0, 0)
        .await
        .unwrap();
    let authority = entra.https.url();
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(runtime.tls.ca_pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let token: Value = http
        .post(format!(
            "{authority}/{}/oauth2/v2.0/token",
            well_known::TENANT_ID
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", well_known::ADMIN_CLIENT_ID),
            ("client_secret", well_known::ADMIN_CLIENT_SECRET),
            ("scope", "https://vault.azure.net/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_string();

    let (mut child, url) = spawn_keyvault(dir.path(), &authority);
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for writer in 0..8 {
        let (http, url, token, acknowledged) = (
            http.clone(),
            url.clone(),
            token.clone(),
            acknowledged.clone(),
        );
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("w{writer}-{i}");
                let value = format!("value of {name}");
                let response = http
                    .put(format!("{url}/secrets/{name}?api-version=7.4"))
                    .bearer_auth(&token)
                    .json(&json!({"value": value}))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == StatusCode::OK => {
                        acknowledged.lock().unwrap().push((name, value))
                    }
                    _ => break,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    child.kill().unwrap(); // SIGKILL: no shutdown path runs
    child.wait().unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 20,
        "the burst wrote something: {}",
        acknowledged.len()
    );

    let (mut child, url) = spawn_keyvault(dir.path(), &authority);
    for (name, value) in &acknowledged {
        let body: Value = http
            .get(format!("{url}/secrets/{name}/?api-version=7.4"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["value"], value.as_str(), "{name} lost after kill -9");
    }
    // Every listed secret reads back: no secret was left without its version.
    let mut next = Some(format!("{url}/secrets?api-version=7.4"));
    while let Some(page_url) = next {
        let page: Value = http
            .get(&page_url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for item in page["value"].as_array().unwrap() {
            let id = item["id"].as_str().unwrap();
            let status = http
                .get(format!("{id}/?api-version=7.4"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, StatusCode::OK, "{id}");
        }
        next = page["nextLink"].as_str().map(str::to_string);
    }
    let status = http
        .put(format!("{url}/secrets/after-restart?api-version=7.4"))
        .bearer_auth(&token)
        .json(&json!({"value": "fine"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    child.kill().unwrap();
    child.wait().unwrap();
    entra.shutdown().await;
}
