//! Vault identity, vault credentials (download, sign-in with the file's certificate,
//! expiry on the simulated clock), certificate upload, usages, extended info, and the
//! Backup views and policies with their bad inputs.

mod common;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The text of `<element>` in the credentials XML.
fn element<'a>(xml: &'a str, name: &str) -> &'a str {
    let open = format!("<{name}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{name}> in {xml}"))
        + open.len();
    let end = xml[start..].find(&format!("</{name}>")).unwrap() + start;
    &xml[start..end]
}

async fn download(t: &TestArm, token: &str) -> (StatusCode, String, String) {
    let url = format!(
        "{}{}/azsimVaultCredentials?{API}",
        t.url,
        vault_path("rg1", "vault1")
    );
    let response = t.http.post(url).bearer_auth(token).send().await.unwrap();
    let status = response.status();
    let disposition = response
        .headers()
        .get("content-disposition")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, disposition, response.text().await.unwrap())
}

/// Signs in to entra-sim as the file's service principal with a client assertion made
/// with the file's key, as the agent does.
async fn sign_in_with(t: &TestArm, xml: &str) -> (StatusCode, Value) {
    let pem = String::from_utf8(STANDARD.decode(element(xml, "ManagementCert")).unwrap()).unwrap();
    let cert_pem = &pem[..pem.find("-----END CERTIFICATE-----").unwrap() + 25];
    let der = rustls_pem_der(cert_pem);
    let client_id = element(xml, "ServicePrincipalClientId");
    let tenant = element(xml, "AadTenantId");
    let token_url = format!(
        "{}/{tenant}/oauth2/v2.0/token",
        element(xml, "AadAuthority")
    );
    let now = t.clock.unix();
    let claims = json!({"aud": token_url, "iss": client_id, "sub": client_id, "iat": now, "nbf": now, "exp": now + 600, "jti": uuid::Uuid::new_v4()});
    let mut header = Header::new(Algorithm::RS256);
    header.x5t = Some(URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        &der,
    )));
    let key_pem = &pem[pem.find("-----BEGIN PRIVATE KEY-----").unwrap()..];
    let assertion = jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    t.token_for(&[
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", &assertion),
        ("scope", "https://management.azure.com/.default"),
    ])
    .await
}

fn rustls_pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

#[tokio::test]
async fn vault_credentials_name_the_vault_and_sign_in_until_they_expire() {
    let t = start().await;
    t.group("rg1").await;
    let vault = t.vault("rg1", "vault1", minimal_vault()).await;
    let token = t.admin().await;
    let (status, disposition, xml) = download(&t, &token).await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    assert!(
        disposition.contains("vault1_") && disposition.contains(".VaultCredentials"),
        "{disposition}"
    );
    assert!(
        xml.contains("<RSBackupVaultAADCreds")
            && xml.contains("Microsoft.Azure.Portal.RecoveryServices.Models.Common")
    );
    assert_eq!(element(&xml, "Version"), "2.0");
    assert_eq!(element(&xml, "SubscriptionId"), SUB);
    assert_eq!(element(&xml, "ResourceName"), "vault1");
    assert_eq!(element(&xml, "ResourceGroup"), "rg1");
    assert_eq!(
        element(&xml, "Location"),
        vault["location"].as_str().unwrap()
    );
    assert_eq!(element(&xml, "AadTenantId"), TENANT);
    assert_eq!(element(&xml, "AadAuthority"), t.entra_url);
    assert_eq!(element(&xml, "IdMgmtRestEndpoint"), format!("{}/", t.url));
    assert!(element(&xml, "ResourceId").parse::<i64>().unwrap() > 0);

    let (status, body) = sign_in_with(&t, &xml).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the file's certificate signs in: {body}"
    );

    // Valid for 10 days on the simulated clock.
    t.clock.advance(9 * 86_400).unwrap();
    assert_eq!(sign_in_with(&t, &xml).await.0, StatusCode::OK);
    t.clock.advance(2 * 86_400).unwrap();
    let (status, body) = sign_in_with(&t, &xml).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "expired credentials: {body}"
    );

    let outsider_denied = download(&t, "not-a-token").await.0;
    assert_eq!(outsider_denied, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn certificate_upload_registers_the_public_key_and_refuses_garbage() {
    let t = start().await;
    t.group("rg1").await;
    t.vault("rg1", "vault1", minimal_vault()).await;
    let token = t.admin().await;
    let path = format!("{}/certificates/cred1", vault_path("rg1", "vault1"));
    for (body, status) in [
        (
            json!({"properties": {"authType": "AAD", "certificate": "not base64!"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"properties": {"authType": "AAD", "certificate": STANDARD.encode(b"not a certificate")}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"properties": {"authType": "ACS", "certificate": "AAAA"}}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"properties": {}}), StatusCode::BAD_REQUEST),
    ] {
        let (got, answer, _) = t.arm(Method::PUT, &path, Some(body), &token).await;
        assert_eq!(got, status, "{answer}");
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (status, uploaded, _) = t
        .arm(Method::PUT, &path, Some(json!({"properties": {"authType": "AAD", "certificate": STANDARD.encode(cert.der())}})), &token)
        .await;
    assert_eq!(status, StatusCode::OK, "{uploaded}");
    let properties = &uploaded["properties"];
    assert_eq!(properties["authType"], "AzureActiveDirectory");
    assert_eq!(properties["aadTenantId"], TENANT);
    assert!(properties["resourceId"].is_i64());
    assert_eq!(properties["thumbprint"].as_str().unwrap().len(), 40);
}

#[tokio::test]
async fn system_assigned_identity_lives_in_entra_sim() {
    let t = start().await;
    t.group("rg1").await;
    let mut body = minimal_vault();
    body["identity"] = json!({"type": "SystemAssigned"});
    let vault = t.vault("rg1", "vault1", body).await;
    let principal = vault["identity"]["principalId"].as_str().unwrap();
    assert_eq!(vault["identity"]["tenantId"], TENANT);
    let admin_plane = t
        .token(
            sim_core::well_known::ADMIN_CLIENT_ID,
            sim_core::well_known::ADMIN_CLIENT_SECRET,
            "api://azsim/.default",
        )
        .await;
    let list = format!("{}/admin/tenants/{TENANT}/managedIdentities", t.entra_url);
    let (_, identities, _) = t.send(Method::GET, &list, None, Some(&admin_plane)).await;
    let found = identities["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["principalId"] == principal);
    assert_eq!(found.unwrap()["resourceId"], vault["id"]);

    let token = t.admin().await;
    let (status, patched, _) = t
        .arm(
            Method::PATCH,
            &vault_path("rg1", "vault1"),
            Some(json!({"identity": {"type": "None"}})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(patched.get("identity").is_none(), "{patched}");
    let (_, identities, _) = t.send(Method::GET, &list, None, Some(&admin_plane)).await;
    assert!(
        !identities["value"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["principalId"] == principal)
    );
}

#[tokio::test]
async fn usages_extended_info_and_configs() {
    let t = start().await;
    t.group("rg1").await;
    t.vault("rg1", "vault1", minimal_vault()).await;
    let token = t.admin().await;
    let path = vault_path("rg1", "vault1");
    let (_, usages, _) = t
        .arm(Method::GET, &format!("{path}/usages"), None, &token)
        .await;
    let names: Vec<&str> = usages["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"]["value"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"MABContainersCount") && names.contains(&"GRSStorageUsage"),
        "{usages}"
    );

    let info = format!("{path}/extendedInformation/vaultExtendedInfo");
    let (status, _, _) = t.arm(Method::GET, &info, None, &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body, _) = t
        .arm(
            Method::PUT,
            &info,
            Some(json!({"integrityKey": "x"})),
            &token,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "properties are required: {body}"
    );
    let (status, _, _) = t
        .arm(
            Method::PUT,
            &info,
            Some(json!({"properties": {"integrityKey": "abc=", "algorithm": "None"}})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, got, _) = t
        .arm(
            Method::PATCH,
            &info,
            Some(json!({"properties": {"algorithm": "SHA256"}})),
            &token,
        )
        .await;
    assert_eq!(
        (
            got["properties"]["integrityKey"].as_str(),
            got["properties"]["algorithm"].as_str()
        ),
        (Some("abc="), Some("SHA256"))
    );

    let config = format!("{path}/backupconfig/vaultconfig");
    let (_, body, _) = t.arm(Method::GET, &config, None, &token).await;
    assert_eq!(body["properties"]["softDeleteFeatureState"], "Enabled");
    let (status, body, _) = t
        .arm(
            Method::PATCH,
            &config,
            Some(json!({"properties": {"softDeleteFeatureState": "Sometimes"}})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, body, _) = t
        .arm(
            Method::PATCH,
            &config,
            Some(json!({"properties": {"softDeleteFeatureState": "AlwaysON"}})),
            &token,
        )
        .await;
    assert_eq!(
        body["properties"]["isSoftDeleteFeatureStateEditable"],
        false
    );
    let (_, vault, _) = t.arm(Method::GET, &path, None, &token).await;
    assert_eq!(
        vault["properties"]["securitySettings"]["softDeleteSettings"]["softDeleteState"],
        "AlwaysON"
    );

    let storage = format!("{path}/backupstorageconfig/vaultstorageconfig");
    let (status, body, _) = t
        .arm(
            Method::PUT,
            &storage,
            Some(json!({"properties": {"storageType": "ZoneRedundant"}})),
            &token,
        )
        .await;
    assert_eq!(
        (status, body["properties"]["storageModelType"].as_str()),
        (StatusCode::OK, Some("ZoneRedundant"))
    );
    let (status, _, _) = t
        .arm(
            Method::PATCH,
            &storage,
            Some(json!({"properties": {"crossRegionRestoreFlag": true}})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "CRR needs GeoRedundant");
}

fn mab_policy(times: usize, daily: i64) -> Value {
    json!({"properties": {
        "backupManagementType": "MAB",
        "schedulePolicy": {"schedulePolicyType": "SimpleSchedulePolicy", "scheduleRunFrequency": "Daily",
                           "scheduleRunTimes": vec!["2025-01-01T02:00:00Z"; times]},
        "retentionPolicy": {"retentionPolicyType": "LongTermRetentionPolicy",
            "dailySchedule": {"retentionTimes": ["2025-01-01T02:00:00Z"], "retentionDuration": {"count": daily, "durationType": "Days"}},
            "weeklySchedule": {"daysOfTheWeek": ["Sunday"], "retentionTimes": ["2025-01-01T02:00:00Z"], "retentionDuration": {"count": 12, "durationType": "Weeks"}}},
    }})
}

#[tokio::test]
async fn policies_are_validated_and_views_page_with_their_filter() {
    let t = start().await;
    t.group("rg1").await;
    t.vault("rg1", "vault1", minimal_vault()).await;
    let token = t.admin().await;
    let path = vault_path("rg1", "vault1");
    let (status, saved, _) = t
        .arm(
            Method::PUT,
            &format!("{path}/backupPolicies/Nightly"),
            Some(mab_policy(3, 9999)),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["properties"]["protectedItemsCount"], 0);
    for (body, mentions) in [
        (mab_policy(4, 30), "1 to 3"),
        (mab_policy(1, 6), "7 to 9999"),
        (mab_policy(1, 10_000), "7 to 9999"),
        (
            json!({"properties": {"backupManagementType": "AzureIaasVM"}}),
            "MAB",
        ),
        (json!({}), "MAB"),
    ] {
        let (status, answer, _) = t
            .arm(
                Method::PUT,
                &format!("{path}/backupPolicies/Bad"),
                Some(body),
                &token,
            )
            .await;
        assert_eq!(
            (status, code(&answer)),
            (StatusCode::BAD_REQUEST, "BMSUserErrorInvalidPolicyInput"),
            "{answer}"
        );
        assert!(message(&answer).contains(mentions), "{mentions}: {answer}");
    }
    let mut weekly_bad = mab_policy(1, 30);
    weekly_bad["properties"]["retentionPolicy"]["weeklySchedule"]["retentionDuration"]["count"] =
        json!(3);
    let (status, _, _) = t
        .arm(
            Method::PUT,
            &format!("{path}/backupPolicies/Bad"),
            Some(weekly_bad),
            &token,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "weekly retention starts at 4 weeks"
    );
    let (status, _, _) = t
        .arm(
            Method::GET,
            &format!("{path}/backupPolicies/Bad"),
            None,
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing half-written");

    // Jobs page with an absolute nextLink that carries the filter.
    let state = t.state();
    let vault = state.vaults.get(SUB, "rg1", "vault1").await.unwrap();
    for i in 0..3 {
        sqlx::query("INSERT INTO jobs (vault_id, id, seq, operation, status, entity_name, server_name, start_time, end_time, details) VALUES (?, ?, ?, 'Backup', 'Completed', 'C:\\', 'mars01', 100, 160, '{}')")
            .bind(vault.id)
            .bind(format!("00000000-0000-0000-0000-00000000000{i}"))
            .bind(i)
            .execute(&state.pool)
            .await
            .unwrap();
    }
    let filter = "%24filter=backupManagementType%20eq%20%27MAB%27&%24top=2";
    let (_, page, _) = t
        .arm(
            Method::GET,
            &format!("{path}/backupJobs?{filter}"),
            None,
            &token,
        )
        .await;
    assert_eq!(page["value"].as_array().unwrap().len(), 2);
    assert_eq!(page["value"][0]["properties"]["jobType"], "MabJob");
    assert_eq!(page["value"][0]["properties"]["duration"], "PT60S");
    let next = page["nextLink"].as_str().unwrap();
    assert!(
        next.contains("filter") && next.starts_with(&t.url),
        "{next}"
    );
    let (_, rest, _) = t.send(Method::GET, next, None, Some(&token)).await;
    assert_eq!(rest["value"].as_array().unwrap().len(), 1);
    assert!(rest.get("nextLink").is_none());
    let (status, job, _) = t
        .arm(
            Method::GET,
            &format!("{path}/backupJobs/00000000-0000-0000-0000-000000000001"),
            None,
            &token,
        )
        .await;
    assert_eq!(
        (status, job["properties"]["mabServerName"].as_str()),
        (StatusCode::OK, Some("mars01"))
    );
    let (_, failed, _) = t
        .arm(
            Method::GET,
            &format!("{path}/backupJobs?%24filter=status%20eq%20%27Failed%27"),
            None,
            &token,
        )
        .await;
    assert_eq!(failed["value"], json!([]));
}
