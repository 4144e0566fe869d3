//! The secrets data plane over HTTPS: challenge authentication, access policies and every
//! operation with its bad inputs.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use sim_core::well_known;

#[tokio::test]
async fn unauthenticated_requests_get_the_challenge_of_the_vault_tenant() {
    let t = start().await;
    let url = format!("{}/secrets/x?{API}", t.vault("azsim"));
    let (status, body, headers) = t.send(Method::PUT, &url, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code(&body), "Unauthorized");
    assert!(message(&body).starts_with("AKV10000"), "{body}");
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert_eq!(
        challenge,
        format!(
            "Bearer authorization=\"{}/{TENANT}\", resource=\"https://vault.localhost:{}\"",
            t.entra_url, t.data_port
        )
    );
}

#[tokio::test]
async fn invalid_expired_and_wrong_audience_tokens_are_refused_with_the_challenge() {
    let t = start().await;
    let (status, body, headers) = t
        .kv(Method::GET, "azsim", "/secrets", None, "not-a-jwt")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(headers.contains_key("www-authenticate"));

    let arm = t.admin_arm_token().await;
    let (status, body, _) = t.kv(Method::GET, "azsim", "/secrets", None, &arm).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message(&body).starts_with("AKV10022"), "{body}");

    // A token for the challenge resource of this host is accepted like vault.azure.net.
    let scope = format!("https://vault.localhost:{}/.default", t.data_port);
    let local = t
        .token(
            well_known::ADMIN_CLIENT_ID,
            well_known::ADMIN_CLIENT_SECRET,
            &scope,
        )
        .await;
    let (status, _, _) = t.kv(Method::GET, "azsim", "/secrets", None, &local).await;
    assert_eq!(status, StatusCode::OK);

    let token = t.admin_kv_token().await;
    t.clock.advance(2 * 3600).unwrap();
    let (status, body, _) = t.kv(Method::GET, "azsim", "/secrets", None, &token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(message(&body).starts_with("AKV10005"), "{body}");
}

#[tokio::test]
async fn set_get_update_and_versions() {
    let t = start().await;
    let token = t.admin_kv_token().await;
    let body = json!({"value": "v1", "contentType": "text/plain", "tags": {"env": "test"},
                      "attributes": {"enabled": true, "exp": 1900000000}});
    let (status, v1, _) = t
        .kv(Method::PUT, "azsim", "/secrets/app-key", Some(body), &token)
        .await;
    assert_eq!(status, StatusCode::OK, "{v1}");
    assert_eq!(v1["attributes"]["exp"], 1900000000);
    assert_eq!(v1["attributes"]["recoveryLevel"], "Recoverable+Purgeable");
    let id1 = v1["id"].as_str().unwrap();
    let version1 = id1.rsplit('/').next().unwrap();
    assert_eq!(version1.len(), 32);
    assert!(id1.starts_with(&format!("{}/secrets/app-key/", t.vault("azsim"))));

    let (_, v2, _) = t
        .kv(
            Method::PUT,
            "azsim",
            "/secrets/app-key",
            Some(json!({"value": "v2"})),
            &token,
        )
        .await;
    for path in ["/secrets/app-key/", "/secrets/app-key", "/secrets/APP-KEY/"] {
        let (status, latest, _) = t.kv(Method::GET, "azsim", path, None, &token).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(latest["value"], "v2", "{path}");
        assert_eq!(latest["id"], v2["id"]);
    }
    let (_, old, _) = t
        .kv(
            Method::GET,
            "azsim",
            &format!("/secrets/app-key/{version1}"),
            None,
            &token,
        )
        .await;
    assert_eq!(old["value"], "v1");

    let (status, updated, _) = t
        .kv(
            Method::PATCH,
            "azsim",
            &format!("/secrets/app-key/{version1}"),
            Some(json!({"contentType": "application/json", "attributes": {"enabled": false}})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        updated.get("value").is_none(),
        "update must not return the value"
    );
    assert_eq!(updated["contentType"], "application/json");
    let (status, body, _) = t
        .kv(
            Method::GET,
            "azsim",
            &format!("/secrets/app-key/{version1}"),
            None,
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["innererror"]["code"], "SecretDisabled");

    let (_, versions, _) = t
        .kv(
            Method::GET,
            "azsim",
            "/secrets/app-key/versions",
            None,
            &token,
        )
        .await;
    assert_eq!(versions["value"].as_array().unwrap().len(), 2);

    let unknown = "0123456789abcdef0123456789abcdef";
    let (status, body, _) = t
        .kv(
            Method::GET,
            "azsim",
            &format!("/secrets/app-key/{unknown}"),
            None,
            &token,
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "SecretNotFound")
    );
    let (status, body, _) = t
        .kv(Method::GET, "azsim", "/secrets/nothing/", None, &token)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "SecretNotFound")
    );
}

#[tokio::test]
async fn bad_names_values_bodies_and_queries_are_400() {
    let t = start().await;
    let token = t.admin_kv_token().await;
    let long = "a".repeat(128);
    for name in ["bad_name", "dot.name", long.as_str()] {
        let (status, body, _) = t
            .kv(
                Method::PUT,
                "azsim",
                &format!("/secrets/{name}"),
                Some(json!({"value": "x"})),
                &token,
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "BadParameter"),
            "{name}"
        );
    }
    let ok_long = "a".repeat(127);
    let (status, _, _) = t
        .kv(
            Method::PUT,
            "azsim",
            &format!("/secrets/{ok_long}"),
            Some(json!({"value": "x"})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, body, _) = t
        .kv(
            Method::PUT,
            "azsim",
            "/secrets/big",
            Some(json!({"value": "x".repeat(25 * 1024 + 1)})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("25 KiB"), "{body}");
    let (status, _, _) = t
        .kv(
            Method::PUT,
            "azsim",
            "/secrets/big",
            Some(json!({"value": "x".repeat(25 * 1024)})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let url = format!("{}/secrets/broken?{API}", t.vault("azsim"));
    let response = t
        .http
        .put(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"value\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let (status, body, _) = t
        .kv(
            Method::PUT,
            "azsim",
            "/secrets/novalue",
            Some(json!({"contentType": "x"})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("value"), "{body}");
    let (status, body, _) = t
        .kv(
            Method::PUT,
            "azsim",
            "/secrets/badattr",
            Some(json!({"value": "x", "attributes": {"exp": "soon"}})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("attributes.exp"), "{body}");

    let no_version = format!("{}/secrets", t.vault("azsim"));
    let (status, body, _) = t.send(Method::GET, &no_version, None, Some(&token)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("api-version"), "{body}");
    let future = format!("{}/secrets?api-version=2099-01-01", t.vault("azsim"));
    let (status, _, _) = t.send(Method::GET, &future, None, Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "an unknown api-version is accepted");

    for bad in ["0", "26", "many"] {
        let (status, _, _) = t
            .kv(
                Method::GET,
                "azsim",
                &format!("/secrets?maxresults={bad}"),
                None,
                &token,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "maxresults={bad}");
    }
    let (status, _, _) = t
        .kv(
            Method::GET,
            "azsim",
            "/secrets?$skiptoken=%%%",
            None,
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, body, _) = t.kv(Method::GET, "nosuch", "/secrets", None, &token).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "VaultNotFound")
    );
}

#[tokio::test]
async fn lists_page_with_absolute_next_links() {
    let t = start().await;
    let token = t.admin_kv_token().await;
    for i in 0..7 {
        t.kv(
            Method::PUT,
            "azsim",
            &format!("/secrets/s{i}"),
            Some(json!({"value": "x"})),
            &token,
        )
        .await;
    }
    let mut url = format!("{}/secrets?{API}&maxresults=3", t.vault("azsim"));
    let mut names = Vec::new();
    let mut pages = 0;
    loop {
        let (status, page, _) = t.send(Method::GET, &url, None, Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for item in page["value"].as_array().unwrap() {
            assert!(item.get("value").is_none());
            names.push(
                item["id"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
            );
        }
        match page["nextLink"].as_str() {
            Some(next) => {
                assert!(next.starts_with(&t.vault("azsim")), "{next}");
                url = next.to_string();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["s0", "s1", "s2", "s3", "s4", "s5", "s6"]);
}

#[tokio::test]
async fn soft_delete_recover_purge_and_automatic_purge_on_the_clock() {
    let t = start().await;
    let token = t.admin_kv_token().await;
    t.kv(
        Method::PUT,
        "azsim",
        "/secrets/gone",
        Some(json!({"value": "x"})),
        &token,
    )
    .await;

    let (status, body, _) = t
        .kv(
            Method::POST,
            "azsim",
            "/deletedsecrets/gone/recover",
            None,
            &token,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "recovering a live secret: {body}"
    );

    let (status, deleted, _) = t
        .kv(Method::DELETE, "azsim", "/secrets/gone", None, &token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        deleted["recoveryId"],
        format!("{}/deletedsecrets/gone", t.vault("azsim"))
    );
    let deleted_date = deleted["deletedDate"].as_i64().unwrap();
    assert_eq!(
        deleted["scheduledPurgeDate"].as_i64().unwrap(),
        deleted_date + 90 * 86_400
    );

    let (status, body, _) = t
        .kv(
            Method::PUT,
            "azsim",
            "/secrets/gone",
            Some(json!({"value": "y"})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["error"]["innererror"]["code"],
        "ObjectIsDeletedButRecoverable"
    );
    let (status, _, _) = t
        .kv(Method::DELETE, "azsim", "/secrets/gone", None, &token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleting twice");

    let (status, _, _) = t
        .kv(
            Method::POST,
            "azsim",
            "/deletedsecrets/gone/recover",
            None,
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body, _) = t
        .kv(Method::GET, "azsim", "/secrets/gone/", None, &token)
        .await;
    assert_eq!(body["value"], "x");

    t.kv(Method::DELETE, "azsim", "/secrets/gone", None, &token)
        .await;
    let (status, _, _) = t
        .kv(
            Method::DELETE,
            "azsim",
            "/deletedsecrets/gone",
            None,
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = t
        .kv(Method::GET, "azsim", "/deletedsecrets/gone", None, &token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Retention ends on the simulated clock: the deleted secret disappears by itself.
    t.kv(
        Method::PUT,
        "azsim",
        "/secrets/aging",
        Some(json!({"value": "old"})),
        &token,
    )
    .await;
    t.kv(Method::DELETE, "azsim", "/secrets/aging", None, &token)
        .await;
    t.clock.advance(89 * 86_400).unwrap();
    let token = t.admin_kv_token().await;
    let (status, _, _) = t
        .kv(Method::GET, "azsim", "/deletedsecrets/aging", None, &token)
        .await;
    assert_eq!(status, StatusCode::OK);
    t.clock.advance(2 * 86_400).unwrap();
    let token = t.admin_kv_token().await;
    let (status, _, _) = t
        .kv(Method::GET, "azsim", "/deletedsecrets/aging", None, &token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = t
        .kv(
            Method::PUT,
            "azsim",
            "/secrets/aging",
            Some(json!({"value": "new"})),
            &token,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the name is free again after the purge"
    );
}

#[tokio::test]
async fn purge_protection_refuses_purge() {
    let t = start().await;
    t.create_vault(
        "guarded",
        json!({"enablePurgeProtection": true, "softDeleteRetentionInDays": 7}),
    )
    .await;
    let token = t.admin_kv_token().await;
    let (_, set, _) = t
        .kv(
            Method::PUT,
            "guarded",
            "/secrets/keep",
            Some(json!({"value": "x"})),
            &token,
        )
        .await;
    assert_eq!(set["attributes"]["recoveryLevel"], "CustomizedRecoverable");
    assert_eq!(set["attributes"]["recoverableDays"], 7);
    t.kv(Method::DELETE, "guarded", "/secrets/keep", None, &token)
        .await;
    let (status, body, _) = t
        .kv(
            Method::DELETE,
            "guarded",
            "/deletedsecrets/keep",
            None,
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(message(&body).contains("purge protection"), "{body}");
}

#[tokio::test]
async fn backup_and_restore_into_another_vault_of_the_subscription() {
    let t = start().await;
    t.create_vault("kv1", json!({})).await;
    t.create_vault("kv2", json!({})).await;
    let token = t.admin_kv_token().await;
    t.kv(
        Method::PUT,
        "kv1",
        "/secrets/moving",
        Some(json!({"value": "one"})),
        &token,
    )
    .await;
    t.kv(
        Method::PUT,
        "kv1",
        "/secrets/moving",
        Some(json!({"value": "two"})),
        &token,
    )
    .await;
    let (status, backup, _) = t
        .kv(Method::POST, "kv1", "/secrets/moving/backup", None, &token)
        .await;
    assert_eq!(status, StatusCode::OK);
    let blob = backup["value"].as_str().unwrap().to_string();

    let (status, body, _) = t
        .kv(
            Method::POST,
            "kv1",
            "/secrets/restore",
            Some(json!({"value": blob})),
            &token,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "restore onto an existing name: {body}"
    );

    let (status, restored, _) = t
        .kv(
            Method::POST,
            "kv2",
            "/secrets/restore",
            Some(json!({"value": blob})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert!(
        restored["id"]
            .as_str()
            .unwrap()
            .starts_with(&t.vault("kv2"))
    );
    let (_, latest, _) = t
        .kv(Method::GET, "kv2", "/secrets/moving/", None, &token)
        .await;
    assert_eq!(latest["value"], "two");
    let (_, versions, _) = t
        .kv(Method::GET, "kv2", "/secrets/moving/versions", None, &token)
        .await;
    assert_eq!(versions["value"].as_array().unwrap().len(), 2);

    let mut tampered = blob.into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [
        json!({"value": tampered}),
        json!({"value": "!!"}),
        json!({}),
    ] {
        let (status, body, _) = t
            .kv(Method::POST, "kv2", "/secrets/restore", Some(bad), &token)
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "BadParameter")
        );
    }
}

#[tokio::test]
async fn access_policies_decide_and_denials_name_the_permission_and_caller() {
    let t = start().await;
    let (app_id, secret, object_id) = t.register_app("reader").await;
    let token = t
        .token(&app_id, &secret, "https://vault.azure.net/.default")
        .await;
    let (status, body, _) = t.kv(Method::GET, "azsim", "/secrets", None, &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(code(&body), "Forbidden");
    assert_eq!(body["error"]["innererror"]["code"], "AccessDenied");
    let text = message(&body);
    assert!(
        text.contains(&format!("oid={object_id}")) && text.contains("secrets list permission"),
        "{text}"
    );

    let arm = t.admin_arm_token().await;
    let policy = json!({"properties": {"accessPolicies": [{
        "tenantId": TENANT, "objectId": object_id, "permissions": {"secrets": ["Get", "List"]}
    }]}});
    let path = format!(
        "{}/accessPolicies/add",
        TestKv::vault_path("azsim", "azsim")
    );
    let (status, body, _) = t.arm(Method::PUT, &path, Some(policy), &arm).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, _, _) = t.kv(Method::GET, "azsim", "/secrets", None, &token).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body, _) = t
        .kv(
            Method::PUT,
            "azsim",
            "/secrets/nope",
            Some(json!({"value": "x"})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(message(&body).contains("secrets set permission"), "{body}");
}

#[tokio::test]
async fn the_data_directory_never_holds_a_plaintext_secret() {
    let dir = tempfile::tempdir().unwrap();
    let marker = "PLAINTEXT-MARKER-7f3a9c";
    {
        let t = start_with(sim_core::db::Storage::Disk(dir.path().to_path_buf())).await;
        let token = t.admin_kv_token().await;
        let (status, _, _) = t
            .kv(
                Method::PUT,
                "azsim",
                "/secrets/hidden",
                Some(json!({"value": marker})),
                &token,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, backup, _) = t
            .kv(
                Method::POST,
                "azsim",
                "/secrets/hidden/backup",
                None,
                &token,
            )
            .await;
        assert!(!backup["value"].as_str().unwrap().contains(marker));
        t.kv.shutdown().await;
        t.entra.shutdown().await;
    }
    let mut stack = vec![dir.path().to_path_buf()];
    let mut files = 0;
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap() {
            let entry = entry.unwrap().path();
            if entry.is_dir() {
                stack.push(entry);
            } else {
                // SQLite removes its -wal/-shm files as the pool closes after shutdown: a
                // file gone meanwhile holds nothing any more.
                let bytes = match std::fs::read(&entry) {
                    Ok(bytes) => bytes,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => panic!("{}: {e}", entry.display()),
                };
                files += 1;
                assert!(
                    !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                    "{} holds the secret in plaintext",
                    entry.display()
                );
            }
        }
    }
    assert!(files >= 2, "the store was written to disk");
}
