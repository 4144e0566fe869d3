//! `Microsoft.KeyVault/vaults` over ARM paths: lifecycle, access-policy edits, soft-deleted
//! vaults, authorization, and bad inputs.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sim_core::well_known;

fn vault_body(extra: Value) -> Value {
    let mut properties = json!({
        "tenantId": TENANT,
        "sku": {"family": "A", "name": "standard"},
        "accessPolicies": [],
    });
    for (key, value) in extra.as_object().unwrap() {
        properties[key] = value.clone();
    }
    json!({"location": "eastus", "tags": {"team": "backup"}, "properties": properties})
}

#[tokio::test]
async fn create_get_list_patch_delete_recover() {
    let t = start().await;
    let token = t.admin_arm_token().await;
    let path = TestKv::vault_path("rg1", "kv1");
    let (status, vault, headers) = t
        .arm(Method::PUT, &path, Some(vault_body(json!({}))), &token)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{vault}");
    assert!(headers.contains_key("x-ms-correlation-request-id"));
    assert!(headers.contains_key("x-ms-request-id"));
    assert_eq!(vault["type"], "Microsoft.KeyVault/vaults");
    assert_eq!(vault["id"], path);
    assert_eq!(vault["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        vault["properties"]["vaultUri"],
        format!("{}/", t.vault("kv1"))
    );
    assert_eq!(vault["properties"]["softDeleteRetentionInDays"], 90);
    assert_eq!(vault["tags"]["team"], "backup");

    let (status, again, _) = t
        .arm(Method::PUT, &path, Some(vault_body(json!({}))), &token)
        .await;
    assert_eq!(status, StatusCode::OK, "a second PUT updates: {again}");

    // ARM paths are case-insensitive.
    let lower = path.to_ascii_lowercase();
    let (status, got, _) = t.arm(Method::GET, &lower, None, &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["name"], "kv1");

    let group_list = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/rg1/providers/Microsoft.KeyVault/vaults"
    );
    let (_, list, _) = t.arm(Method::GET, &group_list, None, &token).await;
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    let sub_list =
        format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.KeyVault/vaults?$top=1");
    let (_, page, _) = t.arm(Method::GET, &sub_list, None, &token).await;
    assert_eq!(page["value"].as_array().unwrap().len(), 1);
    let next = page["nextLink"].as_str().expect("two vaults, one per page");
    assert!(next.starts_with(&t.mgmt_url), "{next}");
    let (_, second, _) = t.send(Method::GET, next, None, Some(&token)).await;
    assert_eq!(second["value"].as_array().unwrap().len(), 1);

    let (status, patched, _) = t
        .arm(
            Method::PATCH,
            &path,
            Some(json!({"tags": {"team": "ops"}, "properties": {"enablePurgeProtection": true}})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["tags"]["team"], "ops");
    assert_eq!(patched["properties"]["enablePurgeProtection"], true);
    assert_eq!(
        patched["properties"]["accessPolicies"],
        json!([]),
        "PATCH keeps what it does not name"
    );

    // A secret survives the vault's soft delete and recovery.
    let kv_token = t.admin_kv_token().await;
    let policy = json!({"properties": {"accessPolicies": [{"tenantId": TENANT, "objectId": well_known::ADMIN_OBJECT_ID, "permissions": {"secrets": ["all"]}}]}});
    t.arm(
        Method::PUT,
        &format!("{path}/accessPolicies/replace"),
        Some(policy),
        &token,
    )
    .await;
    let (status, _, _) = t
        .kv(
            Method::PUT,
            "kv1",
            "/secrets/kept",
            Some(json!({"value": "x"})),
            &kv_token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, _, _) = t.arm(Method::DELETE, &path, None, &token).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = t.arm(Method::DELETE, &path, None, &token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body, _) = t.arm(Method::GET, &path, None, &token).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "ResourceNotFound")
    );
    let (status, _, _) = t
        .kv(Method::GET, "kv1", "/secrets/kept/", None, &kv_token)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a deleted vault does not answer"
    );

    let deleted_path = format!(
        "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.KeyVault/locations/eastus/deletedVaults/kv1"
    );
    let (status, deleted, _) = t.arm(Method::GET, &deleted_path, None, &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deleted["properties"]["vaultId"], path);
    assert_eq!(deleted["properties"]["purgeProtectionEnabled"], true);
    let (status, body, _) = t
        .arm(Method::PUT, &path, Some(vault_body(json!({}))), &token)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "ConflictError")
    );
    let (status, body, _) = t
        .arm(Method::POST, &format!("{deleted_path}/purge"), None, &token)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "purge protection: {body}");

    let (status, body, _) = t
        .arm(
            Method::PUT,
            &path,
            Some(json!({"location": "eastus", "properties": {"createMode": "recover"}})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, secret, _) = t
        .kv(Method::GET, "kv1", "/secrets/kept/", None, &kv_token)
        .await;
    assert_eq!(secret["value"], "x");
}

#[tokio::test]
async fn deleted_vaults_are_purged_on_request_and_after_retention() {
    let t = start().await;
    let token = t.admin_arm_token().await;
    for name in ["kv1", "kv2"] {
        let path = TestKv::vault_path("rg1", name);
        t.arm(
            Method::PUT,
            &path,
            Some(vault_body(json!({"softDeleteRetentionInDays": 7}))),
            &token,
        )
        .await;
        t.arm(Method::DELETE, &path, None, &token).await;
    }
    let list = format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.KeyVault/deletedVaults");
    let (_, deleted, _) = t.arm(Method::GET, &list, None, &token).await;
    assert_eq!(deleted["value"].as_array().unwrap().len(), 2);
    let purge = format!(
        "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.KeyVault/locations/eastus/deletedVaults/kv1/purge"
    );
    let (status, _, _) = t.arm(Method::POST, &purge, None, &token).await;
    assert_eq!(status, StatusCode::OK);
    t.clock.advance(8 * 86_400).unwrap();
    let token = t.admin_arm_token().await;
    let (_, deleted, _) = t.arm(Method::GET, &list, None, &token).await;
    assert_eq!(deleted["value"], json!([]));
    let (status, _, _) = t
        .arm(
            Method::PUT,
            &TestKv::vault_path("rg1", "kv2"),
            Some(vault_body(json!({}))),
            &token,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the name is free after the retention"
    );
}

#[tokio::test]
async fn bad_vault_requests_are_refused_with_arm_codes() {
    let t = start().await;
    let token = t.admin_arm_token().await;
    for name in [
        "ab",
        "1vault",
        "a--b",
        "vault_x",
        "a234567890123456789012345",
        "ends-",
    ] {
        let (status, body, _) = t
            .arm(
                Method::PUT,
                &TestKv::vault_path("rg1", name),
                Some(vault_body(json!({}))),
                &token,
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "VaultNameNotValid"),
            "{name}"
        );
    }
    let path = TestKv::vault_path("rg1", "kv1");
    let cases = [
        (
            json!({"properties": {"tenantId": TENANT, "sku": {"name": "standard"}, "accessPolicies": []}}),
            "location",
        ),
        (
            vault_body(json!({"sku": {"family": "A", "name": "gold"}})),
            "sku.name",
        ),
        (vault_body(json!({"tenantId": "not-a-guid"})), "tenantId"),
        (
            vault_body(json!({"softDeleteRetentionInDays": 91})),
            "softDeleteRetentionInDays",
        ),
        (
            vault_body(json!({"enableSoftDelete": false})),
            "enableSoftDelete",
        ),
        (
            vault_body(json!({"enableRbacAuthorization": true})),
            "enableRbacAuthorization",
        ),
        (
            vault_body(
                json!({"accessPolicies": [{"tenantId": TENANT, "objectId": TENANT, "permissions": {"secrets": ["read"]}}]}),
            ),
            "'read'",
        ),
        (
            vault_body(json!({"enablePurgeProtection": "yes"})),
            "properties.enablePurgeProtection",
        ),
        (
            json!({"location": "eastus", "properties": {"tenantId": TENANT, "sku": {"name": "standard"}}}),
            "accessPolicies",
        ),
    ];
    for (body, mentions) in cases {
        let (status, answer, _) = t.arm(Method::PUT, &path, Some(body), &token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(message(&answer).contains(mentions), "{mentions}: {answer}");
    }
    let url = format!("{}{path}?{ARM_API}", t.mgmt_url);
    let response = t
        .http
        .put(&url)
        .bearer_auth(&token)
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    t.arm(
        Method::PUT,
        &path,
        Some(vault_body(json!({"softDeleteRetentionInDays": 30}))),
        &token,
    )
    .await;
    let (status, body, _) = t
        .arm(
            Method::PUT,
            &TestKv::vault_path("rg2", "kv1"),
            Some(vault_body(json!({}))),
            &token,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "VaultAlreadyExists")
    );
    let (status, body, _) = t
        .arm(
            Method::PATCH,
            &path,
            Some(json!({"properties": {"softDeleteRetentionInDays": 60}})),
            &token,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "retention is fixed at creation: {body}"
    );
    let (status, body, _) = t
        .arm(
            Method::PUT,
            &format!("{path}/accessPolicies/merge"),
            Some(json!({"properties": {"accessPolicies": []}})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body, _) = t
        .arm(
            Method::GET,
            &TestKv::vault_path("rg1", "missing"),
            None,
            &token,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "ResourceNotFound")
    );
    let other =
        "/subscriptions/00000000-0000-0000-0000-000000000000/providers/Microsoft.KeyVault/vaults";
    let (status, body, _) = t.arm(Method::GET, other, None, &token).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "SubscriptionNotFound")
    );

    let no_version = format!("{}{path}", t.mgmt_url);
    let (status, body, _) = t.send(Method::GET, &no_version, None, Some(&token)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "MissingApiVersionParameter")
    );
    let (status, body, _) = t
        .send(Method::GET, &format!("{no_version}?{ARM_API}"), None, None)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "AuthenticationFailed")
    );

    let check =
        format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.KeyVault/checkNameAvailability");
    let (_, taken, _) = t
        .arm(
            Method::POST,
            &check,
            Some(json!({"name": "kv1", "type": "Microsoft.KeyVault/vaults"})),
            &token,
        )
        .await;
    assert_eq!(
        (taken["nameAvailable"].clone(), taken["reason"].clone()),
        (json!(false), json!("AlreadyExists"))
    );
    let (_, invalid, _) = t
        .arm(
            Method::POST,
            &check,
            Some(json!({"name": "x", "type": "Microsoft.KeyVault/vaults"})),
            &token,
        )
        .await;
    assert_eq!(invalid["reason"], "AccountNameInvalid");
    let (_, free, _) = t
        .arm(
            Method::POST,
            &check,
            Some(json!({"name": "free-name", "type": "Microsoft.KeyVault/vaults"})),
            &token,
        )
        .await;
    assert_eq!(free["nameAvailable"], true);
}

#[tokio::test]
async fn only_subscription_owners_and_contributors_manage_vaults() {
    let t = start().await;
    let (app_id, secret, object_id) = t.register_app("outsider").await;
    let token = t
        .token(&app_id, &secret, "https://management.azure.com/.default")
        .await;
    let path = TestKv::vault_path("rg1", "kv1");
    let (status, body, _) = t
        .arm(Method::PUT, &path, Some(vault_body(json!({}))), &token)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "AuthorizationFailed")
    );
    assert!(
        message(&body).contains(&object_id) && message(&body).contains("vaults/write"),
        "{body}"
    );

    let admin = t.admin_plane_token().await;
    let assign = format!("{}/admin/roleAssignments/{object_id}", t.mgmt_url);
    let (status, body, _) = t
        .send(
            Method::PUT,
            &assign,
            Some(json!({"role": "Reader"})),
            Some(&admin),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = t
        .arm(Method::PUT, &path, Some(vault_body(json!({}))), &token)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "Reader cannot write");
    let list = format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.KeyVault/vaults");
    let (status, _, _) = t.arm(Method::GET, &list, None, &token).await;
    assert_eq!(status, StatusCode::OK, "Reader can read");

    t.send(
        Method::PUT,
        &assign,
        Some(json!({"role": "Contributor"})),
        Some(&admin),
    )
    .await;
    let (status, _, _) = t
        .arm(Method::PUT, &path, Some(vault_body(json!({}))), &token)
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let (status, _, _) = t
        .send(
            Method::PUT,
            &assign,
            Some(json!({"role": "God"})),
            Some(&admin),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = t
        .send(
            Method::PUT,
            &assign,
            Some(json!({"role": "Owner"})),
            Some(&token),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "an ARM token is not an admin-plane token"
    );
}
