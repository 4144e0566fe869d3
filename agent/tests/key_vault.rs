//! `register --key-vault-uri`: the vault saves the passphrase in Key Vault through its
//! managed identity, which needs `set` there; without it, registration fails naming the
//! identity and the permission, and nothing is registered.

mod common;

use common::*;
use serde_json::{Value, json};
use sim_core::well_known;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_passphrase_is_saved_in_key_vault_only_with_the_set_permission() {
    let stack = start().await;
    stack.vault("vault1").await;
    let token = stack.arm_token().await;
    let vault: Value = stack
        .http
        .patch(format!(
            "{}?api-version=2026-11-01",
            stack.vault_url("vault1")
        ))
        .bearer_auth(&token)
        .json(&json!({"identity": {"type": "SystemAssigned"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let principal = vault["identity"]["principalId"]
        .as_str()
        .unwrap()
        .to_string();
    let kv_port = stack.kit.keyvault.data.addr.port();
    let kv_uri = format!("https://azsim.vault.localhost:{kv_port}");
    let passphrase_text = "saved in key vault 0123456789";
    let passphrase = stack.write("passphrase", passphrase_text);
    let credentials = stack.credentials("vault1", "v.VaultCredentials").await;
    let machine = stack.machine("server1").await;
    let register = |machine: &Machine| {
        let (credentials, passphrase, kv_uri) =
            (credentials.clone(), passphrase.clone(), kv_uri.clone());
        let home = machine.home.clone();
        async move {
            Machine {
                home,
                name: "server1".into(),
            }
            .run(&[
                "register",
                "--vault-credentials",
                credentials.to_str().unwrap(),
                "--passphrase-file",
                passphrase.to_str().unwrap(),
                "--server-name",
                "server1",
                "--key-vault-uri",
                &kv_uri,
            ])
            .await
        }
    };

    let refused = register(&machine).await;
    assert!(!refused.status.success());
    let message = stderr(&refused);
    assert!(
        message.contains(&principal) && message.contains("secrets set permission"),
        "{message}"
    );
    let status = machine.json(&["status"]).await;
    assert_eq!(status["registered"], false, "nothing registered locally");
    let containers: Value = stack
        .http
        .get(format!(
            "{}/backupProtectionContainers?api-version=2026-10-01",
            stack.vault_url("vault1")
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        containers["value"],
        json!([]),
        "nothing registered in the vault"
    );

    // Grant the vault's identity `set` on the default Key Vault, then register again.
    let policy = format!(
        "{}/subscriptions/{}/resourceGroups/azsim/providers/Microsoft.KeyVault/vaults/azsim/accessPolicies/add?api-version=2026-05-15",
        stack.kit.keyvault.management.url(),
        well_known::SUBSCRIPTION_ID
    );
    let granted = stack
        .http
        .put(policy)
        .bearer_auth(&token)
        .json(&json!({"properties": {"accessPolicies": [{"tenantId": well_known::TENANT_ID, "objectId": principal, "permissions": {"secrets": ["set"]}}]}}))
        .send()
        .await
        .unwrap();
    assert!(granted.status().is_success());
    let out = register(&machine).await;
    assert!(out.status.success(), "{}", stderr(&out));

    // The secret is there, readable by whoever Key Vault allows (the admin app).
    let kv_token: Value = stack
        .http
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            stack.entra_url,
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
    let client = reqwest::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(&std::fs::read(&stack.ca_file).unwrap()).unwrap(),
        ])
        .resolve(
            "azsim.vault.localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], kv_port)),
        )
        .build()
        .unwrap();
    let secret: Value = client
        .get(format!(
            "{kv_uri}/secrets/mars-server1-vault1/?api-version=7.4"
        ))
        .bearer_auth(kv_token["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(secret["value"], passphrase_text, "{secret}");
}
