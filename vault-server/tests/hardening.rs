//! The defects probing found, each with its case: data-plane objects belong to their
//! server, bodies are read only after authentication and within each route's limit,
//! stalled bodies end, `$filter` cannot panic the server, names and JSON shapes are
//! checked, abandoned jobs fail, and the ARM routes the Azure CLI needs exist.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn one_vault() -> TestArm {
    let t = start().await;
    t.group("rg1").await;
    t.vault("rg1", "vault1", minimal_vault()).await;
    t
}

#[tokio::test]
async fn data_plane_objects_belong_to_their_server() {
    let t = one_vault().await;
    let a = machine(&t, "vault1", "server-a").await;
    let b = machine(&t, "vault1", "server-b").await;
    let (status, job, _) = data_plane(
        &t,
        Method::POST,
        "/jobs",
        Some(json!({"operation": "Backup", "entity": "/data"})),
        &b,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    let job_id = job["id"].as_str().unwrap();
    let (status, body, _) = data_plane(
        &t,
        Method::PATCH,
        &format!("/jobs/{job_id}"),
        Some(json!({"status": "Completed"})),
        &a,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another server's job: {body}"
    );
    let (_, jobs, _) = data_plane(&t, Method::GET, "/jobs", None, &a).await;
    assert!(jobs["value"].as_array().unwrap().is_empty(), "{jobs}");
    let (_, jobs, _) = data_plane(&t, Method::GET, "/jobs", None, &b).await;
    assert_eq!(jobs["value"][0]["status"], "InProgress");

    let (_, item, _) = data_plane(
        &t,
        Method::POST,
        "/items",
        Some(json!({"path": "/tmp/src/data"})),
        &b,
    )
    .await;
    let item = item["item"].as_str().unwrap().to_string();
    assert!(!item.contains('/'), "one path segment: {item}");
    let (status, body, _) = data_plane(
        &t,
        Method::POST,
        "/recoveryPoints",
        Some(json!({"item": item, "manifest": "bQ==", "chunks": []})),
        &a,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        message(&body).contains("not protected on server server-a"),
        "{body}"
    );
    let (status, _, _) = data_plane(
        &t,
        Method::POST,
        "/recoveryPoints",
        Some(json!({"item": item, "manifest": "bQ==", "chunks": []})),
        &b,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // The item's ARM id has no extra segments.
    let token = t.admin().await;
    let (status, shown, _) = t
        .arm(
            Method::GET,
            &format!(
                "{}/backupFabrics/Azure/protectionContainers/server-b/protectedItems/{item}",
                vault_path("rg1", "vault1")
            ),
            None,
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["properties"]["friendlyName"], "/tmp/src/data");
}

#[tokio::test]
async fn unregistering_through_arm_revokes_the_machine_identity() {
    let t = one_vault().await;
    let a = machine(&t, "vault1", "server-a").await;
    let token = t.admin().await;
    let (status, _, _) = t
        .arm(
            Method::DELETE,
            &format!(
                "{}/registeredIdentities/server-a",
                vault_path("rg1", "vault1")
            ),
            None,
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body, _) = data_plane(
        &t,
        Method::POST,
        "/items",
        Some(json!({"path": "/data"})),
        &a,
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "ServerNotRegistered"),
        "{body}"
    );
}

#[tokio::test]
async fn killed_backups_fail_when_the_next_starts_and_stale_jobs_time_out() {
    let t = one_vault().await;
    let a = machine(&t, "vault1", "server-a").await;
    let start = |operation: &'static str| {
        let (t, a) = (&t, a.clone());
        async move {
            let (_, job, _) = data_plane(
                t,
                Method::POST,
                "/jobs",
                Some(json!({"operation": operation, "entity": "/data"})),
                &a,
            )
            .await;
            job["id"].as_str().unwrap().to_string()
        }
    };
    let killed = start("Backup").await;
    let next = start("Backup").await;
    let restore = start("Restore").await;
    let (_, jobs, _) = data_plane(&t, Method::GET, "/jobs", None, &a).await;
    let status_of = |jobs: &Value, id: &str| {
        jobs["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["id"] == id)
            .map(|j| (j["status"].clone(), j["details"].to_string()))
            .unwrap()
    };
    let (status, details) = status_of(&jobs, &killed);
    assert_eq!(status, "Failed");
    assert!(details.contains("interrupted"), "{details}");
    assert_eq!(status_of(&jobs, &next).0, "InProgress");
    assert_eq!(status_of(&jobs, &restore).0, "InProgress");
    t.clock.advance(25 * 3600).unwrap();
    // The ARM view sees the same, as the portal would.
    let token = t.admin().await;
    let (_, arm_jobs, _) = t
        .arm(
            Method::GET,
            &format!("{}/backupJobs", vault_path("rg1", "vault1")),
            None,
            &token,
        )
        .await;
    let statuses: Vec<&str> = arm_jobs["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["properties"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["Failed", "Failed", "Failed"], "{arm_jobs}");
}

/// A TLS connection to vault-server that sends `head` (and `body`) as given and returns
/// the first response bytes and how long they took.
fn raw_tls(t: &TestArm, head: String, body: Vec<u8>) -> (String, Duration) {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(t.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let port = t.kit.vault_server.https.addr.port();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let started = Instant::now();
    tls.write_all(head.as_bytes()).unwrap();
    tls.write_all(&body).unwrap();
    tls.flush().unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tls.read(&mut answer).unwrap_or(0);
    (
        String::from_utf8_lossy(&answer[..n]).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_read_after_authentication_and_within_each_routes_limit() {
    sim_core::server::set_read_timeout(Duration::from_secs(1));
    let t = one_vault().await;
    let a = machine(&t, "vault1", "server-a").await;
    // 200 MB announced, 1 KiB sent, no token: refused at once, nothing waited for.
    let head = "POST /backup/v1/register HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 209715200\r\n\r\n".to_string();
    let tt = &t;
    let (answer, took) = tokio::task::block_in_place(|| raw_tls(tt, head, vec![b' '; 1024]));
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // With a token: a JSON route takes kilobytes, a pack 256 MiB.
    let (status, body, _) = data_plane(
        &t,
        Method::POST,
        "/jobs",
        Some(json!({"operation": "Backup", "entity": "x".repeat(64 * 1024)})),
        &a,
    )
    .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge")
    );
    let head = format!(
        "PUT /backup/v1/packs/{} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {a}\r\nContent-Length: {}\r\n\r\n",
        "a".repeat(64),
        300u64 << 20
    );
    let (answer, _) = tokio::task::block_in_place(|| raw_tls(tt, head, Vec::new()));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A body that stops arriving ends with 408 after the read timeout.
    let head = format!(
        "POST /backup/v1/jobs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {a}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    let (answer, took) = tokio::task::block_in_place(|| raw_tls(tt, head, b"{\"".to_vec()));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[tokio::test]
async fn a_filter_with_multi_byte_characters_is_answered() {
    let t = one_vault().await;
    let token = t.admin().await;
    let (status, body, _) = t
        .arm(
            Method::GET,
            &format!(
                "{}/backupProtectedItems?$filter=a%C3%A9%E2%82%ACx%20and%20b%20eq%20%27c%27",
                vault_path("rg1", "vault1")
            ),
            None,
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_from_paths_json_types_depth_and_required_fields_are_checked() {
    let t = one_vault().await;
    let token = t.admin().await;
    let vault = vault_path("rg1", "vault1");
    let policy = json!({"properties": vault_server::policy::default_mab()});
    // `..` itself, sent raw (HTTP clients resolve it away before sending).
    let body = serde_json::to_vec(&policy).unwrap();
    let head = format!(
        "PUT {vault}/backupPolicies/..?{API} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let tt = &t;
    let (answer, _) = tokio::task::block_in_place(|| raw_tls(tt, head, body));
    assert!(
        answer.starts_with("HTTP/1.1 400") && answer.contains("InvalidResourceName"),
        "{answer}"
    );
    for name in [
        "..%2F..%2Fetc%2Fpasswd",
        "a%2Fb",
        "ctl%01x",
        "rtl%E2%80%AEgnp",
        "bad%FFutf8",
    ] {
        let (status, body, _) = t
            .arm(
                Method::PUT,
                &format!("{vault}/backupPolicies/{name}"),
                Some(policy.clone()),
                &token,
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "InvalidResourceName"),
            "{name}: {body}"
        );
        let (status, body, _) = t
            .arm(
                Method::PUT,
                &format!("{vault}/certificates/{name}"),
                Some(json!({"properties": {"authType": "AAD", "certificate": "AAAA"}})),
                &token,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
    }
    let (_, listed, _) = t
        .arm(
            Method::GET,
            &format!("{vault}/backupPolicies"),
            None,
            &token,
        )
        .await;
    let names: Vec<&str> = listed["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["DefaultPolicy"], "nothing else stored");

    for wrong in [json!(12345), json!("garbage"), json!([1, 2])] {
        let (status, body, _) = t
            .arm(
                Method::PATCH,
                &vault,
                Some(json!({"properties": {"securitySettings": wrong}})),
                &token,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(message(&body).contains("securitySettings"), "{body}");
    }
    let (status, body, _) = t
        .arm(
            Method::PUT,
            &vault,
            Some(json!({"sku": {"name": "RS0"}, "properties": {}})),
            &token,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "vault PUT without location: {body}"
    );
    let (status, body, _) = t
        .arm(Method::PUT, &group_path("rg1"), Some(json!({})), &token)
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "group PUT without location: {body}"
    );
    let (status, body, _) = t
        .arm(
            Method::PUT,
            &format!(
                "{}/providers/Microsoft.KeyVault/vaults/kv-empty",
                group_path("rg1")
            ),
            Some(json!({})),
            &token,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "Key Vault PUT {{}}: {body}"
    );
    let deep = format!(
        "{{\"location\": \"westeurope\", \"tags\": {}{}}}",
        "[".repeat(70),
        "]".repeat(70)
    );
    let response = t
        .http
        .patch(format!("{}{vault}?{API}", t.url))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert!(message(&body).contains("deeper than 64"), "{body}");

    // Admin-plane display names refuse control and bidirectional characters.
    let admin = admin_plane(&t).await;
    for name in ["evil\u{202e}gnp.exe", "new\nline"] {
        let (status, body, _) = t
            .send(
                Method::POST,
                &format!("{}/admin/tenants/{TENANT}/applications", t.entra_url),
                Some(json!({"displayName": name})),
                Some(&admin),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?}: {body}");
    }
}

#[tokio::test]
async fn locations_redundancy_metadata_and_the_default_policy() {
    let t = start().await;
    let token = t.admin().await;
    let (status, body, _) = t
        .arm(
            Method::PUT,
            &group_path("rg-nowhere"),
            Some(json!({"location": "nowhere-land"})),
            &token,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (
            StatusCode::BAD_REQUEST,
            "LocationNotAvailableForResourceGroup"
        )
    );
    t.group("rg1").await;
    let (status, body, _) = t
        .arm(
            Method::PUT,
            &group_path("rg1"),
            Some(json!({"location": "eastus"})),
            &token,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a group cannot move: {body}"
    );
    let mut nowhere = minimal_vault();
    nowhere["location"] = json!("nowhere-land");
    let (status, body, _) = t
        .arm(
            Method::PUT,
            &vault_path("rg1", "v-nowhere"),
            Some(nowhere),
            &token,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (
            StatusCode::BAD_REQUEST,
            "LocationNotAvailableForResourceType"
        ),
        "{body}"
    );
    assert!(message(&body).contains("nowhere-land"));

    let mut lrs = minimal_vault();
    lrs["properties"] =
        json!({"redundancySettings": {"standardTierStorageRedundancy": "LocallyRedundant"}});
    t.vault("rg1", "vault1", lrs).await;
    let a = machine(&t, "vault1", "server-a").await;
    data_plane(&t, Method::POST, "/items", Some(json!({"path": "/d"})), &a).await;
    let (status, body, _) = t
        .arm(
            Method::PATCH,
            &vault_path("rg1", "vault1"),
            Some(json!({"properties": {"redundancySettings": {"standardTierStorageRedundancy": "ZoneRedundant"}}})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&body).contains("is LocallyRedundant") && message(&body).contains("ZoneRedundant"),
        "{body}"
    );

    let (_, metadata, _) = t
        .send(
            Method::GET,
            &format!("{}/metadata/endpoints?api-version=2022-09-01", t.url),
            None,
            None,
        )
        .await;
    assert!(
        metadata.get("portal").is_none(),
        "no portal yet: {metadata}"
    );
    let (_, policies, _) = t
        .arm(
            Method::GET,
            &format!("{}/backupPolicies", vault_path("rg1", "vault1")),
            None,
            &token,
        )
        .await;
    assert_eq!(policies["value"][0]["name"], "DefaultPolicy");
    assert_eq!(
        policies["value"][0]["properties"]["backupManagementType"],
        "MAB"
    );
}

#[tokio::test]
async fn generic_resources_resource_guards_and_one_set_of_groups() {
    let t = one_vault().await;
    let token = t.admin().await;
    let (_, groups, _) = t
        .arm(
            Method::GET,
            &format!("/subscriptions/{SUB}/resourcegroups"),
            None,
            &token,
        )
        .await;
    assert!(
        groups["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "azsim"),
        "the default Key Vault's group exists: {groups}"
    );
    let kv_body = json!({"location": "westeurope", "properties": {"tenantId": TENANT, "sku": {"family": "A", "name": "standard"}, "accessPolicies": []}});
    let (status, body, _) = t
        .arm(
            Method::PUT,
            &format!(
                "{}/providers/Microsoft.KeyVault/vaults/kv-nogroup",
                group_path("nosuchrg")
            ),
            Some(kv_body.clone()),
            &token,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "ResourceGroupNotFound"),
        "{body}"
    );
    let (status, body, _) = t
        .arm(
            Method::PUT,
            &format!(
                "{}/providers/Microsoft.KeyVault/vaults/kv-one",
                group_path("rg1")
            ),
            Some(kv_body),
            &token,
        )
        .await;
    assert!(status.is_success(), "{body}");

    let (status, all, _) = t
        .arm(
            Method::GET,
            &format!("/subscriptions/{SUB}/resources"),
            None,
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let types: Vec<(String, String)> = all["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["type"].as_str().unwrap().to_string(),
                r["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(types.contains(&("Microsoft.RecoveryServices/vaults".into(), "vault1".into())));
    assert!(types.contains(&("Microsoft.KeyVault/vaults".into(), "kv-one".into())));
    let (_, key_vaults, _) = t
        .arm(
            Method::GET,
            &format!(
                "/subscriptions/{SUB}/resources?$filter=resourceType%20eq%20%27Microsoft.KeyVault%2Fvaults%27"
            ),
            None,
            &token,
        )
        .await;
    let names: Vec<&str> = key_vaults["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"kv-one") && !names.contains(&"vault1"),
        "{key_vaults}"
    );
    assert!(
        key_vaults["value"][0]["id"]
            .as_str()
            .unwrap()
            .contains("/resourceGroups/")
    );
    let (status, in_group, _) = t
        .arm(
            Method::GET,
            &format!("{}/resources", group_path("rg1")),
            None,
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(in_group["value"].as_array().unwrap().len(), 2, "{in_group}");
    let (status, hsms, _) = t
        .arm(
            Method::GET,
            &format!("/subscriptions/{SUB}/providers/Microsoft.KeyVault/deletedManagedHSMs"),
            None,
            &token,
        )
        .await;
    assert_eq!((status, hsms["value"].clone()), (StatusCode::OK, json!([])));
    let (status, proxies, _) = t
        .arm(
            Method::GET,
            &format!("{}/backupResourceGuardProxies", vault_path("rg1", "vault1")),
            None,
            &token,
        )
        .await;
    assert_eq!(
        (status, proxies["value"].clone()),
        (StatusCode::OK, json!([]))
    );
}
