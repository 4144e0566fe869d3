//! OpenID discovery, JWKS, key rotation, and sim-core's verifier reading the JWKS over
//! HTTPS exactly as keyvault-sim and vault-server do.

mod common;

use std::sync::Arc;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sim_core::auth::{KeyCache, KeySource, TenantPolicy, TokenError, TokenVerifier};

async fn get(entra: &TestEntra, path: &str) -> (StatusCode, Value) {
    entra.call(Method::GET, path, None, None).await
}

fn arm_verifier(entra: &TestEntra, tenants: TenantPolicy) -> TokenVerifier {
    let keys = KeyCache::new(KeySource::remote(&entra.base, &entra.ca_pem).unwrap());
    TokenVerifier::new(
        keys,
        vec!["https://management.azure.com".into()],
        tenants,
        entra.clock.clone(),
    )
}

#[tokio::test]
async fn openid_configuration_v2_names_https_endpoints_of_the_tenant() {
    let entra = start().await;
    let (status, doc) = get(
        &entra,
        &format!("/{TENANT}/v2.0/.well-known/openid-configuration"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["token_endpoint"], entra.token_url(TENANT));
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{}/{TENANT}/oauth2/v2.0/authorize", entra.base)
    );
    assert_eq!(doc["issuer"], format!("{}/{TENANT}/v2.0", entra.base));
    assert_eq!(
        doc["jwks_uri"],
        format!("{}/{TENANT}/discovery/v2.0/keys", entra.base)
    );
    let (_, common) = get(
        &entra,
        "/organizations/v2.0/.well-known/openid-configuration",
    )
    .await;
    assert_eq!(
        common["issuer"],
        format!("{}/{{tenantid}}/v2.0", entra.base)
    );
}

#[tokio::test]
async fn openid_configuration_v1_uses_the_sts_issuer() {
    let entra = start().await;
    let (status, doc) = get(
        &entra,
        "/azsim.onmicrosoft.com/.well-known/openid-configuration",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["issuer"], format!("https://sts.windows.net/{TENANT}/"));
    assert_eq!(
        doc["token_endpoint"],
        format!("{}/azsim.onmicrosoft.com/oauth2/token", entra.base)
    );
}

#[tokio::test]
async fn an_unknown_tenant_has_no_configuration() {
    let entra = start().await;
    let (status, body) = get(
        &entra,
        "/nope.onmicrosoft.com/v2.0/.well-known/openid-configuration",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(aadsts(&body), 90002);
}

#[tokio::test]
async fn instance_discovery_points_back_at_the_simulator() {
    let entra = start().await;
    let url = format!(
        "/common/discovery/instance?api-version=1.1&authorization_endpoint=https://localhost/{TENANT}/oauth2/v2.0/authorize"
    );
    let (status, body) = get(&entra, &url).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["tenant_discovery_endpoint"],
        format!(
            "{}/{TENANT}/v2.0/.well-known/openid-configuration",
            entra.base
        )
    );
}

#[tokio::test]
async fn jwks_keys_carry_kid_x5t_and_certificate() {
    let entra = start().await;
    let (status, jwks) = get(&entra, "/common/discovery/v2.0/keys").await;
    assert_eq!(status, StatusCode::OK);
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["use"], "sig");
    assert_eq!(key["kid"], key["x5t"]);
    assert!(key["x5c"][0].as_str().unwrap().len() > 500);
    let token = entra.admin_token().await;
    let header: Value = {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap();
        serde_json::from_slice(&raw).unwrap()
    };
    assert_eq!(header["kid"], key["kid"]);
    assert_eq!(header["x5t"], key["kid"]);
    assert_eq!(header["typ"], "JWT");
}

#[tokio::test]
async fn tokens_verify_against_the_jwks_fetched_over_https() {
    let entra = start().await;
    let (_, body) = entra.secret_token(ADMIN_ID, ADMIN_SECRET, ARM_SCOPE).await;
    let principal = arm_verifier(&entra, TenantPolicy::Only(vec![TENANT.into()]))
        .verify(body["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(principal.app_id, ADMIN_ID);
    assert_eq!(principal.tenant_id, TENANT);
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_and_new_kids_are_fetched() {
    let entra = start().await;
    let verifier = arm_verifier(&entra, TenantPolicy::Any);
    let (_, before) = entra.secret_token(ADMIN_ID, ADMIN_SECRET, ARM_SCOPE).await;
    let old_token = before["access_token"].as_str().unwrap().to_string();
    verifier.verify(&old_token).await.unwrap();

    let (status, rotated) = entra
        .admin(Method::POST, "/admin/signingKeys/rotate", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let (_, jwks) = get(&entra, "/common/discovery/v2.0/keys").await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);

    let (_, after) = entra.secret_token(ADMIN_ID, ADMIN_SECRET, ARM_SCOPE).await;
    let new_token = after["access_token"].as_str().unwrap();
    assert_eq!(
        claims_kid(new_token),
        rotated["currentKid"].as_str().unwrap()
    );
    verifier
        .verify(new_token)
        .await
        .expect("unknown kid triggers a JWKS refresh");
    verifier
        .verify(&old_token)
        .await
        .expect("previous key still in the JWKS");
}

fn claims_kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

#[tokio::test]
async fn a_token_of_another_tenant_is_refused_by_a_single_tenant_service() {
    let entra = start().await;
    let (status, tenant) = entra
        .admin(Method::POST, "/admin/tenants", Some(serde_json::json!({"displayName": "Fabrikam", "domain": "fabrikam.onmicrosoft.com"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tenant}");
    let other = tenant["id"].as_str().unwrap();
    let (status, app) = entra
        .admin(
            Method::POST,
            &format!("/admin/tenants/{other}/applications"),
            Some(serde_json::json!({"displayName": "f"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let app_id = app["appId"].as_str().unwrap();
    let (_, secret) = entra
        .admin(
            Method::POST,
            &format!("/admin/tenants/{other}/applications/{app_id}/secrets"),
            None,
        )
        .await;
    let (status, body) = entra
        .token_request(
            other,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", app_id),
                ("client_secret", secret["secretText"].as_str().unwrap()),
                ("scope", ARM_SCOPE),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let result = arm_verifier(&entra, TenantPolicy::Only(vec![TENANT.into()]))
        .verify(body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(result, Err(TokenError::TenantNotAccepted(other.into())));
    // The app is unknown in the default tenant.
    let (status, body) = entra
        .token_request(
            TENANT,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", app_id),
                ("client_secret", "x"),
                ("scope", ARM_SCOPE),
            ],
        )
        .await;
    assert_eq!((status.as_u16(), aadsts(&body)), (400, 700016));
}

#[tokio::test]
async fn tokens_expire_on_the_simulated_clock() {
    let entra = start().await;
    let verifier = arm_verifier(&entra, TenantPolicy::Any);
    let (_, body) = entra.secret_token(ADMIN_ID, ADMIN_SECRET, ARM_SCOPE).await;
    let token = body["access_token"].as_str().unwrap();
    verifier.verify(token).await.unwrap();
    entra.clock.advance(2 * 3600).unwrap();
    assert!(matches!(
        verifier.verify(token).await,
        Err(TokenError::Expired { .. })
    ));
    let _ = Arc::new(());
}

#[tokio::test]
async fn the_managed_identity_port_answers_health_and_refuses_forwarded_requests() {
    let t = common::start().await;
    let base = t.running.managed_identity.url();
    let http = reqwest::Client::new();
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let forwarded = http
        .get(format!(
            "{base}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net"
        ))
        .header("Metadata", "true")
        .header("X-Forwarded-For", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 400);
    let body: serde_json::Value = forwarded.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("X-Forwarded-For"),
        "{body}"
    );
    let direct = http
        .get(format!(
            "{base}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net"
        ))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 200);
}
