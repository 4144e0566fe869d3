//! The token endpoints: what a client-credentials request gets, and every bad input's
//! Entra-shaped error.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn client_secret_in_the_body_gets_a_v1_access_token_for_the_resource() {
    let entra = start().await;
    let (status, body) = entra.secret_token(ADMIN_ID, ADMIN_SECRET, ARM_SCOPE).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    let claims = claims(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "https://management.azure.com");
    assert_eq!(claims["iss"], format!("https://sts.windows.net/{TENANT}/"));
    assert_eq!(claims["tid"], TENANT);
    assert_eq!(claims["appid"], ADMIN_ID);
    assert_eq!(claims["appidacr"], "1");
    assert_eq!(claims["ver"], "1.0");
    assert_eq!(claims["sub"], claims["oid"]);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3599
    );
}

#[tokio::test]
async fn the_double_slash_scope_of_the_cli_keeps_its_audience() {
    let entra = start().await;
    let (status, body) = entra
        .secret_token(
            ADMIN_ID,
            ADMIN_SECRET,
            "https://management.core.windows.net//.default",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["aud"],
        "https://management.core.windows.net/"
    );
}

#[tokio::test]
async fn the_local_key_vault_challenge_resource_is_a_valid_scope() {
    let entra = start().await;
    let (status, body) = entra
        .secret_token(
            ADMIN_ID,
            ADMIN_SECRET,
            "https://vault.localhost:10011/.default",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["aud"],
        "https://vault.localhost:10011"
    );
}

#[tokio::test]
async fn http_basic_client_authentication_works() {
    let entra = start().await;
    let response = entra
        .http
        .post(entra.token_url(TENANT))
        .basic_auth(ADMIN_ID, Some(ADMIN_SECRET))
        .form(&[("grant_type", "client_credentials"), ("scope", ARM_SCOPE)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_tenant_domain_works_like_its_id() {
    let entra = start().await;
    let (status, body) = entra
        .token_request(
            "azsim.onmicrosoft.com",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", ADMIN_ID),
                ("client_secret", ADMIN_SECRET),
                ("scope", ARM_SCOPE),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["tid"],
        TENANT
    );
}

#[tokio::test]
async fn the_v1_endpoint_takes_a_resource_and_answers_with_strings() {
    let entra = start().await;
    let response = entra
        .http
        .post(format!("{}/{TENANT}/oauth2/token", entra.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", ADMIN_ID),
            ("client_secret", ADMIN_SECRET),
            ("resource", "https://vault.azure.net"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], "3599");
    assert_eq!(body["resource"], "https://vault.azure.net");
    assert!(body["expires_on"].as_str().unwrap().parse::<i64>().is_ok());
}

#[tokio::test]
async fn cae_claims_add_the_client_capability() {
    let entra = start().await;
    let claims_param = r#"{"access_token": {"xms_cc": {"values": ["CP1"]}}}"#;
    let (status, body) = entra
        .token_request(
            TENANT,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", ADMIN_ID),
                ("client_secret", ADMIN_SECRET),
                ("scope", "https://vault.azure.net/.default"),
                ("client_info", "1"),
                ("claims", claims_param),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["xms_cc"],
        json!(["CP1"])
    );
}

#[tokio::test]
async fn app_roles_granted_on_a_resource_appear_in_its_tokens_only() {
    let entra = start().await;
    let admin = claims(&entra.admin_token().await);
    assert_eq!(admin["roles"], json!(["Azsim.Admin"]));
    let (_, arm) = entra.secret_token(ADMIN_ID, ADMIN_SECRET, ARM_SCOPE).await;
    assert!(
        claims(arm["access_token"].as_str().unwrap())
            .get("roles")
            .is_none()
    );
}

#[tokio::test]
async fn an_app_registered_as_a_resource_issues_its_roles() {
    let entra = start().await;
    let (status, api) = entra
        .admin(
            Method::POST,
            &format!("/admin/tenants/{TENANT}/applications"),
            Some(json!({"displayName": "orders-api", "identifierUris": ["api://orders"], "appRoles": [{"value": "Orders.Read"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{api}");
    let (client_id, secret, principal) = entra.register_app("orders-client").await;
    let (status, body) = entra
        .admin(
            Method::POST,
            &format!("/admin/tenants/{TENANT}/appRoleAssignments"),
            Some(json!({"principalId": principal, "resourceAppId": api["appId"], "appRole": "Orders.Read"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = entra
        .secret_token(&client_id, &secret, "api://orders/.default")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = claims(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "api://orders");
    assert_eq!(claims["roles"], json!(["Orders.Read"]));
}

/// (case, form, HTTP status, OAuth error, AADSTS code) for every refused request.
type RefusedRequest<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str, u64);

#[tokio::test]
async fn bad_requests_get_entra_errors() {
    let entra = start().await;
    let ok = [
        ("grant_type", "client_credentials"),
        ("client_id", ADMIN_ID),
        ("client_secret", ADMIN_SECRET),
        ("scope", ARM_SCOPE),
    ];
    let replace = |key: &'static str, value: &'static str| -> Vec<(&'static str, &'static str)> {
        ok.iter()
            .map(|&(k, v)| if k == key { (k, value) } else { (k, v) })
            .collect()
    };
    let without = |key: &str| -> Vec<(&'static str, &'static str)> {
        ok.iter().copied().filter(|(k, _)| *k != key).collect()
    };
    let table: Vec<RefusedRequest> = vec![
        (
            "wrong secret",
            replace("client_secret", "not-the-secret"),
            401,
            "invalid_client",
            7000215,
        ),
        (
            "unknown app",
            replace("client_id", "00000000-0000-0000-0000-000000000000"),
            400,
            "unauthorized_client",
            700016,
        ),
        (
            "no credential",
            without("client_secret"),
            401,
            "invalid_client",
            7000216,
        ),
        (
            "no client id",
            without("client_id"),
            400,
            "invalid_request",
            900144,
        ),
        (
            "no grant type",
            without("grant_type"),
            400,
            "invalid_request",
            900144,
        ),
        ("no scope", without("scope"), 400, "invalid_request", 900144),
        (
            "unsupported grant",
            replace("grant_type", "password"),
            400,
            "unsupported_grant_type",
            70003,
        ),
        (
            "delegated scope",
            replace("scope", "https://management.azure.com/user_impersonation"),
            400,
            "invalid_scope",
            70011,
        ),
        (
            "two resources",
            replace(
                "scope",
                "https://management.azure.com/.default https://vault.azure.net/.default",
            ),
            400,
            "invalid_scope",
            70011,
        ),
        (
            "unknown resource",
            replace("scope", "https://unknown.example.com/.default"),
            400,
            "invalid_resource",
            500011,
        ),
        (
            "wrong assertion type",
            {
                let mut f = without("client_secret");
                f.extend([
                    ("client_assertion", "x.y.z"),
                    ("client_assertion_type", "urn:wrong"),
                ]);
                f
            },
            401,
            "invalid_client",
            50027,
        ),
    ];
    for (case, form, status, error, code) in table {
        let (got_status, body) = entra.token_request(TENANT, &form).await;
        assert_eq!(got_status.as_u16(), status, "{case}: {body}");
        assert_eq!(body["error"], error, "{case}: {body}");
        assert_eq!(aadsts(&body), code, "{case}: {body}");
        let description = body["error_description"].as_str().unwrap();
        assert!(
            description.starts_with(&format!("AADSTS{code}: ")),
            "{case}: {description}"
        );
        assert!(
            description.contains("Trace ID: ") && description.contains("Correlation ID: "),
            "{case}"
        );
        assert!(
            body["trace_id"].is_string()
                && body["correlation_id"].is_string()
                && body["timestamp"].is_string()
        );
    }
}

#[tokio::test]
async fn unknown_and_generic_tenants_are_refused() {
    let entra = start().await;
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", ADMIN_ID),
        ("client_secret", ADMIN_SECRET),
        ("scope", ARM_SCOPE),
    ];
    let (status, body) = entra
        .token_request("00000000-1111-2222-3333-444444444444", &form)
        .await;
    assert_eq!((status.as_u16(), aadsts(&body)), (400, 90002), "{body}");
    let (status, body) = entra.token_request("common", &form).await;
    assert_eq!((status.as_u16(), aadsts(&body)), (400, 50059), "{body}");
}

#[tokio::test]
async fn malformed_bodies_are_refused() {
    let entra = start().await;
    let cases: Vec<(&str, &str, &[u8])> = vec![
        (
            "json body",
            "application/json",
            br#"{"grant_type":"client_credentials"}"#,
        ),
        ("no content type", "", b"grant_type=client_credentials"),
        (
            "duplicate parameter",
            "application/x-www-form-urlencoded",
            b"grant_type=client_credentials&grant_type=password",
        ),
    ];
    for (case, content_type, body) in cases {
        let mut request = entra.http.post(entra.token_url(TENANT)).body(body.to_vec());
        if !content_type.is_empty() {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{case}");
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(json["error"], "invalid_request", "{case}: {json}");
    }
    // Invalid UTF-8 is decoded lossily (serde_urlencoded), so it is refused as a grant type.
    let response = entra
        .http
        .post(entra.token_url(TENANT))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(&b"grant_type=%FF%FE"[..])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(aadsts(&response.json().await.unwrap()), 70003);
    let response = entra
        .http
        .get(entra.token_url(TENANT))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(aadsts(&response.json().await.unwrap()), 900561);
}

#[tokio::test]
async fn an_expired_secret_is_refused_with_7000222() {
    let entra = start().await;
    let (client_id, secret, _) = entra.register_app("short-lived").await;
    let (status, _) = entra.secret_token(&client_id, &secret, ARM_SCOPE).await;
    assert_eq!(status, StatusCode::OK);
    entra.clock.advance(3 * 365 * 86_400).unwrap();
    let (status, body) = entra.secret_token(&client_id, &secret, ARM_SCOPE).await;
    assert_eq!((status.as_u16(), aadsts(&body)), (401, 7000222), "{body}");
}

#[tokio::test]
async fn the_trace_id_is_the_request_id() {
    let entra = start().await;
    let response = entra
        .http
        .post(entra.token_url(TENANT))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let request_id = response.headers()["x-ms-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["trace_id"], request_id);
}
