//! The directory admin API and the shared admin routes: who may call them, what they do,
//! and their bad inputs.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn the_admin_api_needs_an_admin_plane_token_with_the_admin_role() {
    let entra = start().await;
    let (status, body) = entra.call(Method::GET, "/admin/tenants", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "AuthenticationFailed");

    let (_, arm) = entra.secret_token(ADMIN_ID, ADMIN_SECRET, ARM_SCOPE).await;
    let (status, body) = entra
        .call(
            Method::GET,
            "/admin/tenants",
            None,
            arm["access_token"].as_str(),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a management token has the wrong audience: {body}"
    );

    let (client_id, secret, _) = entra.register_app("not-admin").await;
    let (_, plain) = entra
        .secret_token(&client_id, &secret, "api://azsim/.default")
        .await;
    let (status, body) = entra
        .call(
            Method::GET,
            "/admin/tenants",
            None,
            plain["access_token"].as_str(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "AuthorizationFailed");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&client_id)
    );
}

#[tokio::test]
async fn an_app_created_through_the_api_can_sign_in_until_deleted() {
    let entra = start().await;
    let (client_id, secret, _) = entra.register_app("ci-runner").await;
    let (status, _) = entra.secret_token(&client_id, &secret, ARM_SCOPE).await;
    assert_eq!(status, StatusCode::OK);
    let (status, app) = entra
        .admin(
            Method::GET,
            &format!("/admin/tenants/{TENANT}/applications/{client_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app["passwordCredentials"][0]["hint"], &secret[..3]);
    assert!(
        app["passwordCredentials"][0].get("secretText").is_none(),
        "secrets are shown once only"
    );
    let (status, _) = entra
        .admin(
            Method::DELETE,
            &format!("/admin/tenants/{TENANT}/applications/{client_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = entra.secret_token(&client_id, &secret, ARM_SCOPE).await;
    assert_eq!((status.as_u16(), aadsts(&body)), (400, 700016));
}

#[tokio::test]
async fn fixtures_choose_the_app_id_and_secret() {
    let entra = start().await;
    let apps = format!("/admin/tenants/{TENANT}/applications");
    let app_id = "0ddba11a-0000-4000-8000-0000000000f1";
    let (status, app) = entra
        .admin(
            Method::POST,
            &apps,
            Some(json!({"displayName": "fixture", "appId": app_id})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    assert_eq!(app["appId"], app_id);
    let secret = "fixture-secret-0123456789";
    let (status, created) = entra
        .admin(
            Method::POST,
            &format!("{apps}/{app_id}/secrets"),
            Some(json!({"displayName": "ci", "secretText": secret})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, _) = entra.secret_token(app_id, secret, ARM_SCOPE).await;
    assert_eq!(status, StatusCode::OK);

    for (what, path, body, expected) in [
        (
            "app id taken",
            apps.clone(),
            json!({"displayName": "again", "appId": app_id}),
            409,
        ),
        (
            "app id not a GUID",
            apps.clone(),
            json!({"displayName": "x", "appId": "app-1"}),
            400,
        ),
        (
            "secret too short",
            format!("{apps}/{app_id}/secrets"),
            json!({"secretText": "short"}),
            400,
        ),
        (
            "secret with a space",
            format!("{apps}/{app_id}/secrets"),
            json!({"secretText": "sixteen chars and more"}),
            400,
        ),
    ] {
        let (status, body) = entra.admin(Method::POST, &path, Some(body)).await;
        assert_eq!(status.as_u16(), expected, "{what}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
    }
}

#[tokio::test]
async fn a_removed_secret_stops_working() {
    let entra = start().await;
    let (client_id, secret, _) = entra.register_app("rotating").await;
    let (_, app) = entra
        .admin(
            Method::GET,
            &format!("/admin/tenants/{TENANT}/applications/{client_id}"),
            None,
        )
        .await;
    let key_id = app["passwordCredentials"][0]["keyId"].as_str().unwrap();
    let (status, _) = entra
        .admin(
            Method::DELETE,
            &format!("/admin/tenants/{TENANT}/applications/{client_id}/secrets/{key_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = entra.secret_token(&client_id, &secret, ARM_SCOPE).await;
    assert_eq!((status.as_u16(), aadsts(&body)), (401, 7000215));
}

#[tokio::test]
async fn admin_bad_inputs_get_clear_4xx() {
    let entra = start().await;
    let apps = format!("/admin/tenants/{TENANT}/applications");
    let table: Vec<(&str, Method, String, Option<serde_json::Value>, u16)> = vec![
        (
            "tenant without name",
            Method::POST,
            "/admin/tenants".into(),
            Some(json!({"displayName": ""})),
            400,
        ),
        (
            "tenant id not a GUID",
            Method::POST,
            "/admin/tenants".into(),
            Some(json!({"displayName": "x", "id": "nope"})),
            400,
        ),
        (
            "tenant bad domain",
            Method::POST,
            "/admin/tenants".into(),
            Some(json!({"displayName": "x", "domain": "no spaces.com"})),
            400,
        ),
        (
            "duplicate domain",
            Method::POST,
            "/admin/tenants".into(),
            Some(json!({"displayName": "x", "domain": "azsim.onmicrosoft.com"})),
            409,
        ),
        (
            "unknown field",
            Method::POST,
            "/admin/tenants".into(),
            Some(json!({"displayName": "x", "colour": "red"})),
            400,
        ),
        (
            "unknown tenant",
            Method::GET,
            "/admin/tenants/nope.onmicrosoft.com".into(),
            None,
            404,
        ),
        (
            "delete well-known tenant",
            Method::DELETE,
            format!("/admin/tenants/{TENANT}"),
            None,
            409,
        ),
        (
            "app bad identifier uri",
            Method::POST,
            apps.clone(),
            Some(json!({"displayName": "a", "identifierUris": ["ftp://x"]})),
            400,
        ),
        (
            "app role with spaces",
            Method::POST,
            apps.clone(),
            Some(json!({"displayName": "a", "appRoles": [{"value": "a b"}]})),
            400,
        ),
        (
            "unknown app",
            Method::GET,
            format!("{apps}/00000000-0000-0000-0000-000000000000"),
            None,
            404,
        ),
        (
            "delete well-known admin",
            Method::DELETE,
            format!("{apps}/{ADMIN_ID}"),
            None,
            409,
        ),
        (
            "secret in the past",
            Method::POST,
            format!("{apps}/{ADMIN_ID}/secrets"),
            Some(json!({"endDateTime": 1})),
            400,
        ),
        (
            "identity bad type",
            Method::POST,
            format!("/admin/tenants/{TENANT}/managedIdentities"),
            Some(json!({"type": "Both", "name": "x", "resourceId": "/subscriptions/x"})),
            400,
        ),
        (
            "identity bad resource id",
            Method::POST,
            format!("/admin/tenants/{TENANT}/managedIdentities"),
            Some(json!({"type": "UserAssigned", "name": "x", "resourceId": "x"})),
            400,
        ),
        (
            "role not defined",
            Method::POST,
            format!("/admin/tenants/{TENANT}/appRoleAssignments"),
            Some(
                json!({"principalId": "a2e0c0de-5e11-4a55-9a2e-00000000001a", "resourceAppId": "a2e0c0de-5e11-4a55-9a2e-0000000000ad", "appRole": "Nope"}),
            ),
            400,
        ),
        (
            "role already held",
            Method::POST,
            format!("/admin/tenants/{TENANT}/appRoleAssignments"),
            Some(
                json!({"principalId": "a2e0c0de-5e11-4a55-9a2e-00000000001a", "resourceAppId": "a2e0c0de-5e11-4a55-9a2e-0000000000ad", "appRole": "Azsim.Admin"}),
            ),
            409,
        ),
        (
            "unknown route",
            Method::GET,
            "/admin/nothing/here".into(),
            None,
            404,
        ),
    ];
    for (case, method, path, body, status) in table {
        let (got, answer) = entra.admin(method, &path, body).await;
        assert_eq!(got.as_u16(), status, "{case}: {answer}");
        assert!(
            answer["error"]["code"].is_string() && answer["error"]["message"].is_string(),
            "{case}: {answer}"
        );
    }
    let token = entra.admin_token().await;
    let response = entra
        .http
        .post(format!("{}/admin/tenants", entra.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_clock_moves_only_for_admins_and_refuses_bad_moves() {
    let entra = start().await;
    let (status, before) = entra.call(Method::GET, "/admin/clock", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = entra
        .call(
            Method::POST,
            "/admin/clock",
            Some(json!({"advanceSeconds": 60})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, after) = entra
        .admin(
            Method::POST,
            "/admin/clock",
            Some(json!({"advanceSeconds": 86_400})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert!(after["unix"].as_i64().unwrap() - before["unix"].as_i64().unwrap() >= 86_400);
    for bad in [
        json!({"advanceSeconds": -5}),
        json!({}),
        json!({"set": "tomorrow"}),
        json!({"advanceSeconds": 1, "reset": true}),
    ] {
        let (status, body) = entra
            .admin(Method::POST, "/admin/clock", Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (status, reset) = entra
        .admin(Method::POST, "/admin/clock", Some(json!({"reset": true})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reset["offsetSeconds"], 0);
}

#[tokio::test]
async fn reset_removes_created_principals_and_keeps_the_well_known_ones() {
    let entra = start().await;
    let (client_id, secret, _) = entra.register_app("temporary").await;
    let (status, _) = entra.admin(Method::POST, "/admin/reset", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = entra.secret_token(&client_id, &secret, ARM_SCOPE).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = entra.secret_token(ADMIN_ID, ADMIN_SECRET, ARM_SCOPE).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn health_and_ca_are_public() {
    let entra = start().await;
    let response = entra
        .http
        .get(format!("{}/health", entra.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-ms-request-id"));
    let ca = entra
        .http
        .get(format!("{}/ca.pem", entra.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(ca, entra.ca_pem);
}
