//! Resource groups and Recovery Services vaults over ARM: lifecycle, transitions and every
//! refusal with its ARM code.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn resource_groups_create_get_head_list_delete() {
    let t = start().await;
    let token = t.admin().await;
    let path = group_path("rg1");
    let (status, body, headers) = t
        .arm(
            Method::PUT,
            &path,
            Some(json!({"location": "westeurope"})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["type"], "Microsoft.Resources/resourceGroups");
    assert!(
        headers.contains_key("x-ms-correlation-request-id")
            && headers.contains_key("x-ms-request-id")
    );
    let (status, _, _) = t
        .arm(
            Method::PUT,
            &path,
            Some(json!({"location": "westeurope", "tags": {"a": "b"}})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // azure-mgmt-resource sends lower-case `resourcegroups`.
    let lower = format!("/subscriptions/{SUB}/resourcegroups/RG1");
    let (status, body, _) = t.arm(Method::GET, &lower, None, &token).await;
    assert_eq!(
        (status, body["tags"]["a"].as_str()),
        (StatusCode::OK, Some("b"))
    );
    let (status, _, _) = t.arm(Method::HEAD, &path, None, &token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body, _) = t.arm(Method::GET, &group_path("nope"), None, &token).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "ResourceGroupNotFound")
    );
    let (status, _, _) = t.arm(Method::HEAD, &group_path("nope"), None, &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body, _) = t
        .arm(
            Method::PUT,
            &group_path("bad/name."),
            Some(json!({"location": "x"})),
            &token,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a slash splits the path: {body}"
    );
    let (status, body, _) = t
        .arm(
            Method::PUT,
            &group_path("ends."),
            Some(json!({"location": "x"})),
            &token,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "InvalidResourceName")
    );
    let (status, body, _) = t
        .arm(Method::PUT, &group_path("noloc"), Some(json!({})), &token)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, list, _) = t
        .arm(
            Method::GET,
            &format!("/subscriptions/{SUB}/resourcegroups"),
            None,
            &token,
        )
        .await;
    let names: Vec<&str> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["azsim", "rg1"], "the default group and the new one");
    let (status, _, _) = t.arm(Method::DELETE, &path, None, &token).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = t.arm(Method::DELETE, &path, None, &token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn subscriptions_tenants_and_cloud_metadata_for_the_cli() {
    let t = start().await;
    let token = t.admin().await;
    let (_, subs, _) = t.arm(Method::GET, "/subscriptions", None, &token).await;
    assert_eq!(subs["value"][0]["subscriptionId"], SUB);
    assert_eq!(subs["value"][0]["tenantId"], TENANT);
    let (status, _, _) = t
        .arm(Method::GET, &format!("/subscriptions/{SUB}"), None, &token)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body, _) = t
        .arm(
            Method::GET,
            "/subscriptions/00000000-0000-0000-0000-000000000000",
            None,
            &token,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "SubscriptionNotFound")
    );
    let (status, meta, _) = t
        .send(
            Method::GET,
            &format!("{}/metadata/endpoints?api-version=2022-09-01", t.url),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        meta["authentication"]["loginEndpoint"],
        format!("{}/", t.entra_url)
    );
    assert_eq!(meta["resourceManager"], format!("{}/", t.url));
    assert!(
        meta["suffixes"]["keyVaultDns"]
            .as_str()
            .unwrap()
            .starts_with("vault.localhost:")
    );
    let (_, array, _) = t
        .send(
            Method::GET,
            &format!("{}/metadata/endpoints?api-version=2019-05-01", t.url),
            None,
            None,
        )
        .await;
    assert!(array.is_array());
}

#[tokio::test]
async fn vault_create_update_patch_list_delete() {
    let t = start().await;
    t.group("rg1").await;
    let token = t.admin().await;
    let created = t.vault("rg1", "vault1", json!({
        "location": "westeurope", "tags": {"env": "test"}, "sku": {"name": "RS0", "tier": "Standard"},
        "properties": {"redundancySettings": {"standardTierStorageRedundancy": "zoneredundant"},
                       "securitySettings": {"softDeleteSettings": {"softDeleteState": "AlwaysOn", "softDeleteRetentionPeriodInDays": 30}}},
    })).await;
    let properties = &created["properties"];
    assert_eq!(properties["provisioningState"], "Succeeded");
    assert_eq!(
        properties["redundancySettings"]["standardTierStorageRedundancy"],
        "ZoneRedundant"
    );
    assert_eq!(
        properties["securitySettings"]["softDeleteSettings"]["softDeleteState"],
        "AlwaysON"
    );
    assert_eq!(properties["privateEndpointStateForBackup"], "None");
    assert_eq!(properties["publicNetworkAccess"], "Enabled");
    assert_eq!(created["sku"]["name"], "RS0");
    assert!(created["etag"].is_string());
    assert!(created.get("identity").is_none());

    let path = vault_path("rg1", "vault1");
    let (status, again, _) = t
        .arm(
            Method::PUT,
            &vault_path("rg1", "VAULT1"),
            Some(minimal_vault()),
            &token,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the same name in another case is the same vault: {again}"
    );
    assert_eq!(
        again["tags"]["env"], "test",
        "PUT merges like Azure's vault update"
    );
    let (status, body, _) = t
        .arm(Method::PATCH, &path, Some(json!({"properties": {"securitySettings": {"softDeleteSettings": {"softDeleteState": "Disabled"}}}})), &token)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "AlwaysON stays on: {body}");
    let (status, body, _) = t
        .arm(Method::PATCH, &path, Some(json!({"properties": {"securitySettings": {"softDeleteSettings": {"softDeleteRetentionPeriodInDays": 181}}}})), &token)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(message(&body).contains("14 and 180"));

    let (_, list, _) = t
        .arm(
            Method::GET,
            &format!(
                "{}/providers/Microsoft.RecoveryServices/vaults",
                group_path("rg1")
            ),
            None,
            &token,
        )
        .await;
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    let (_, list, _) = t
        .arm(
            Method::GET,
            &format!("/subscriptions/{SUB}/providers/Microsoft.RecoveryServices/vaults"),
            None,
            &token,
        )
        .await;
    assert_eq!(list["value"].as_array().unwrap().len(), 1);

    let (status, _, _) = t.arm(Method::DELETE, &path, None, &token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body, _) = t.arm(Method::GET, &path, None, &token).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "ResourceNotFound")
    );
    let (status, _, _) = t.arm(Method::DELETE, &path, None, &token).await;
    assert_eq!(
        status,
        StatusCode::NO_CONTENT,
        "deleting what is gone is fine in ARM"
    );
}

#[tokio::test]
async fn bad_vault_requests_are_refused_with_arm_codes() {
    let t = start().await;
    t.group("rg1").await;
    let token = t.admin().await;
    let long = "a".repeat(51);
    for name in ["a", long.as_str(), "1vault", "my_vault"] {
        let (status, body, _) = t
            .arm(
                Method::PUT,
                &vault_path("rg1", name),
                Some(minimal_vault()),
                &token,
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "InvalidResourceName"),
            "{name}"
        );
    }
    let (status, body, _) = t
        .arm(
            Method::PUT,
            &vault_path("nogroup", "vault1"),
            Some(minimal_vault()),
            &token,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "ResourceGroupNotFound")
    );
    let (status, body, _) = t
        .arm(Method::GET, &vault_path("rg1", "ghost"), None, &token)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "ResourceNotFound")
    );
    let cases = [
        (json!({"properties": {}}), "location"),
        (
            json!({"location": "westeurope", "properties": {"redundancySettings": {"standardTierStorageRedundancy": "Tape"}}}),
            "Tape",
        ),
        (
            json!({"location": "westeurope", "properties": {"redundancySettings": {"standardTierStorageRedundancy": "LocallyRedundant", "crossRegionRestore": "Enabled"}}}),
            "GeoRedundant",
        ),
        (
            json!({"location": "westeurope", "sku": {"name": "Gold"}}),
            "sku.name",
        ),
        (
            json!({"location": "westeurope", "identity": {"type": "UserAssigned"}}),
            "identity.type",
        ),
        (
            json!({"location": "westeurope", "properties": {"securitySettings": {"immutabilitySettings": {"state": "Locked"}}}}),
            "Unlocked",
        ),
        (
            json!({"location": "westeurope", "tags": "not-a-map"}),
            "tags",
        ),
    ];
    for (body, mentions) in cases {
        let (status, answer, _) = t
            .arm(
                Method::PUT,
                &vault_path("rg1", "vault1"),
                Some(body),
                &token,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(message(&answer).contains(mentions), "{mentions}: {answer}");
    }
    let url = format!("{}{}?{API}", t.url, vault_path("rg1", "vault1"));
    let response = t
        .http
        .put(&url)
        .bearer_auth(&token)
        .body("{\"location\":")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let no_version = format!("{}{}", t.url, vault_path("rg1", "vault1"));
    let (status, body, _) = t.send(Method::GET, &no_version, None, Some(&token)).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "MissingApiVersionParameter")
    );
    let (status, body, _) = t
        .send(
            Method::GET,
            &format!("{no_version}?api-version=1999-01-01"),
            None,
            Some(&token),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "any api-version is accepted: {body}"
    );
    let (status, body, _) = t
        .send(Method::GET, &format!("{no_version}?{API}"), None, None)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNAUTHORIZED, "AuthenticationFailed")
    );
    let kv_token = t
        .token(
            sim_core::well_known::ADMIN_CLIENT_ID,
            sim_core::well_known::ADMIN_CLIENT_SECRET,
            "https://vault.azure.net/.default",
        )
        .await;
    let (status, _, _) = t
        .arm(Method::GET, &vault_path("rg1", "vault1"), None, &kv_token)
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a Key Vault token is not an ARM token"
    );
}

#[tokio::test]
async fn immutability_moves_forward_and_locked_is_final() {
    let t = start().await;
    t.group("rg1").await;
    let token = t.admin().await;
    t.vault("rg1", "vault1", minimal_vault()).await;
    let path = vault_path("rg1", "vault1");
    let state = |s: &str| json!({"properties": {"securitySettings": {"immutabilitySettings": {"state": s}}}});
    let (status, body, _) = t
        .arm(Method::PATCH, &path, Some(state("Locked")), &token)
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "Disabled cannot jump to Locked: {body}"
    );
    for step in ["Unlocked", "Disabled", "Unlocked", "Locked"] {
        let (status, body, _) = t.arm(Method::PATCH, &path, Some(state(step)), &token).await;
        assert_eq!(status, StatusCode::OK, "{step}: {body}");
        assert_eq!(
            body["properties"]["securitySettings"]["immutabilitySettings"]["state"],
            step
        );
    }
    for back in ["Unlocked", "Disabled"] {
        let (status, body, _) = t.arm(Method::PATCH, &path, Some(state(back)), &token).await;
        assert_eq!(
            (status, code(&body)),
            (
                StatusCode::BAD_REQUEST,
                "UserErrorImmutabilityStateLockedCannotBeChanged"
            )
        );
    }
}

#[tokio::test]
async fn redundancy_is_fixed_and_delete_refused_once_a_server_protects_items() {
    let t = start().await;
    t.group("rg1").await;
    let token = t.admin().await;
    t.vault("rg1", "vault1", minimal_vault()).await;
    let path = vault_path("rg1", "vault1");
    let storage = format!("{path}/backupstorageconfig/vaultstorageconfig");
    let (status, _, _) = t
        .arm(
            Method::PATCH,
            &storage,
            Some(json!({"properties": {"storageType": "LocallyRedundant"}})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // The agent's registration and first backup (the data plane's domain calls).
    let state = t.state();
    let vault = state.vaults.get(SUB, "rg1", "vault1").await.unwrap();
    state
        .backup
        .register_container(&vault, "mars01.contoso.local", "2.0.9302.0", 1)
        .await
        .unwrap();
    state
        .backup
        .protect_item(
            &vault,
            "mars01.contoso.local",
            "item;C:\\data",
            "C:\\data",
            1,
        )
        .await
        .unwrap();

    let (_, config, _) = t.arm(Method::GET, &storage, None, &token).await;
    assert_eq!(config["properties"]["storageTypeState"], "Locked");
    let (status, body, _) = t
        .arm(
            Method::PATCH,
            &storage,
            Some(json!({"properties": {"storageType": "GeoRedundant"}})),
            &token,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (
            StatusCode::BAD_REQUEST,
            "BMSUserErrorRedundancySettingsUpdateNotAllowed"
        )
    );
    let (status, _, _) = t
        .arm(Method::PATCH, &path, Some(json!({"properties": {"redundancySettings": {"standardTierStorageRedundancy": "GeoRedundant"}}})), &token)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (_, containers, _) = t
        .arm(
            Method::GET,
            &format!(
                "{path}/backupProtectionContainers?$filter=backupManagementType%20eq%20%27MAB%27"
            ),
            None,
            &token,
        )
        .await;
    assert_eq!(
        containers["value"][0]["properties"]["containerType"],
        "Windows"
    );
    assert_eq!(
        containers["value"][0]["properties"]["protectedItemCount"],
        1
    );
    let (_, items, _) = t
        .arm(
            Method::GET,
            &format!("{path}/backupProtectedItems"),
            None,
            &token,
        )
        .await;
    assert_eq!(
        items["value"][0]["properties"]["protectedItemType"],
        "MabFileFolderProtectedItem"
    );
    let item_url = format!(
        "{path}/backupFabrics/Azure/protectionContainers/mars01.contoso.local/protectedItems/item%3BC%3A%5Cdata"
    );
    let (status, item, _) = t.arm(Method::GET, &item_url, None, &token).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "percent-encoded item names are decoded: {item}"
    );
    let (_, other, _) = t
        .arm(
            Method::GET,
            &format!(
                "{path}/backupProtectedItems?$filter=backupManagementType%20eq%20%27AzureIaasVM%27"
            ),
            None,
            &token,
        )
        .await;
    assert_eq!(other["value"], json!([]));

    let (status, body, _) = t.arm(Method::DELETE, &path, None, &token).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "ServiceResourceNotEmpty")
    );
    let (status, _, _) = t
        .arm(
            Method::DELETE,
            &format!("{path}/registeredIdentities/mars01.contoso.local"),
            None,
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = t.arm(Method::DELETE, &path, None, &token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn callers_need_a_role_on_the_subscription() {
    let t = start().await;
    t.group("rg1").await;
    let admin_plane = t
        .token(
            sim_core::well_known::ADMIN_CLIENT_ID,
            sim_core::well_known::ADMIN_CLIENT_SECRET,
            "api://azsim/.default",
        )
        .await;
    let (_, app, _) = t
        .send(
            Method::POST,
            &format!("{}/admin/tenants/{TENANT}/applications", t.entra_url),
            Some(json!({"displayName": "outsider"})),
            Some(&admin_plane),
        )
        .await;
    let app_id = app["appId"].as_str().unwrap();
    let object_id = app["servicePrincipalId"].as_str().unwrap();
    let (_, secret, _) = t
        .send(
            Method::POST,
            &format!(
                "{}/admin/tenants/{TENANT}/applications/{app_id}/secrets",
                t.entra_url
            ),
            Some(json!({})),
            Some(&admin_plane),
        )
        .await;
    let token = t
        .token(
            app_id,
            secret["secretText"].as_str().unwrap(),
            "https://management.azure.com/.default",
        )
        .await;
    let (status, body, _) = t
        .arm(
            Method::PUT,
            &vault_path("rg1", "vault1"),
            Some(minimal_vault()),
            &token,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, "AuthorizationFailed")
    );
    assert!(message(&body).contains(object_id), "{body}");
    let (_, subs, _) = t.arm(Method::GET, "/subscriptions", None, &token).await;
    assert_eq!(subs["value"], json!([]), "no role, no subscription listed");

    let assign = format!("{}/admin/roleAssignments/{object_id}", t.url);
    let (status, _, _) = t
        .send(
            Method::PUT,
            &assign,
            Some(json!({"role": "Contributor"})),
            Some(&admin_plane),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = t
        .arm(
            Method::PUT,
            &vault_path("rg1", "vault1"),
            Some(minimal_vault()),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn key_vault_requests_are_forwarded_to_keyvault_sim() {
    let t = start().await;
    t.group("rg1").await;
    let token = t.admin().await;
    let path = format!(
        "{}/providers/Microsoft.KeyVault/vaults/armkv1",
        group_path("rg1")
    );
    let body = json!({"location": "westeurope", "properties": {"tenantId": TENANT, "sku": {"family": "A", "name": "standard"}, "accessPolicies": []}});
    let (status, created, _) = t.arm(Method::PUT, &path, Some(body), &token).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["type"], "Microsoft.KeyVault/vaults");
    let (status, body, _) = t
        .arm(
            Method::GET,
            &format!(
                "{}/providers/Microsoft.KeyVault/vaults/missing",
                group_path("rg1")
            ),
            None,
            &token,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "ResourceNotFound")
    );
    let list = format!("/subscriptions/{SUB}/providers/Microsoft.KeyVault/vaults?$top=1");
    let (_, page, _) = t.arm(Method::GET, &list, None, &token).await;
    let next = page["nextLink"]
        .as_str()
        .expect("two vaults: the default and armkv1");
    assert!(
        next.starts_with(&t.url),
        "links point at the ARM endpoint the client called: {next}"
    );
}
