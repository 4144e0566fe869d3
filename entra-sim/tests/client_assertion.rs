//! Certificate credentials: client assertions signed with a registered certificate's key.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Certificate {
    pem: String,
    key: EncodingKey,
    x5t: String,
    x5t_s256: String,
}

fn certificate() -> Certificate {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["client.test".into()])
        .unwrap()
        .self_signed(&pair)
        .unwrap();
    let der = cert.der().to_vec();
    Certificate {
        pem: cert.pem(),
        key: EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).unwrap(),
        x5t: URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            &der,
        )),
        x5t_s256: URL_SAFE_NO_PAD
            .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der)),
    }
}

async fn app_with_certificate(entra: &TestEntra, cert: &Certificate) -> String {
    let (app_id, _, _) = entra.register_app("cert-client").await;
    let (status, body) = entra
        .admin(
            Method::POST,
            &format!("/admin/tenants/{TENANT}/applications/{app_id}/certificates"),
            Some(json!({"certificate": cert.pem})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["thumbprintSha1"], cert.x5t);
    app_id
}

fn assertion_claims(entra: &TestEntra, client_id: &str) -> Value {
    let now = entra.clock.unix() as f64 + 0.25;
    json!({"aud": entra.token_url(TENANT), "iss": client_id, "sub": client_id, "exp": now + 600.0, "iat": now, "jti": uuid::Uuid::new_v4()})
}

fn sign(
    alg: Algorithm,
    x5t: Option<&str>,
    x5t_s256: Option<&str>,
    claims: &Value,
    key: &EncodingKey,
) -> String {
    let mut header = Header::new(alg);
    header.x5t = x5t.map(str::to_owned);
    header.x5t_s256 = x5t_s256.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

async fn redeem(entra: &TestEntra, client_id: &str, assertion: &str) -> (StatusCode, Value) {
    entra
        .token_request(
            TENANT,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion),
                ("scope", ARM_SCOPE),
            ],
        )
        .await
}

#[tokio::test]
async fn rs256_with_x5t_and_ps256_with_x5t_s256_are_accepted() {
    let entra = start().await;
    let cert = certificate();
    let app_id = app_with_certificate(&entra, &cert).await;
    let claims = assertion_claims(&entra, &app_id);
    for assertion in [
        sign(Algorithm::RS256, Some(&cert.x5t), None, &claims, &cert.key),
        sign(
            Algorithm::PS256,
            None,
            Some(&cert.x5t_s256),
            &claims,
            &cert.key,
        ),
        // MSAL Python pads base64url thumbprints.
        sign(
            Algorithm::RS256,
            Some(&format!("{}=", cert.x5t)),
            None,
            &claims,
            &cert.key,
        ),
    ] {
        let (status, body) = redeem(&entra, &app_id, &assertion).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            common::claims(body["access_token"].as_str().unwrap())["appidacr"],
            "2"
        );
    }
}

#[tokio::test]
async fn bad_assertions_are_refused() {
    let entra = start().await;
    let cert = certificate();
    let app_id = app_with_certificate(&entra, &cert).await;
    let good = assertion_claims(&entra, &app_id);
    let other = certificate();
    let with = |key: &str, value: Value| {
        let mut claims = good.clone();
        claims[key] = value;
        claims
    };
    let now = entra.clock.unix() as f64;
    let table: Vec<(&str, String, u64)> = vec![
        (
            "signed by another key",
            sign(Algorithm::RS256, Some(&cert.x5t), None, &good, &other.key),
            700027,
        ),
        (
            "unregistered certificate",
            sign(Algorithm::RS256, Some(&other.x5t), None, &good, &other.key),
            700027,
        ),
        (
            "no thumbprint",
            sign(Algorithm::RS256, None, None, &good, &cert.key),
            700027,
        ),
        (
            "expired",
            sign(
                Algorithm::RS256,
                Some(&cert.x5t),
                None,
                &with("exp", json!(now - 3600.0)),
                &cert.key,
            ),
            700024,
        ),
        (
            "wrong audience",
            sign(
                Algorithm::RS256,
                Some(&cert.x5t),
                None,
                &with("aud", json!("https://example.com/token")),
                &cert.key,
            ),
            700212,
        ),
        (
            "another tenant's endpoint",
            sign(
                Algorithm::RS256,
                Some(&cert.x5t),
                None,
                &with(
                    "aud",
                    json!(entra.token_url("11111111-1111-1111-1111-111111111111")),
                ),
                &cert.key,
            ),
            700212,
        ),
        (
            "issuer is another app",
            sign(
                Algorithm::RS256,
                Some(&cert.x5t),
                None,
                &with("iss", json!("someone-else")),
                &cert.key,
            ),
            700021,
        ),
        ("not a JWT", "not-a-jwt".to_string(), 50027),
    ];
    for (case, assertion, code) in table {
        let (status, body) = redeem(&entra, &app_id, &assertion).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(body["error"], "invalid_client", "{case}");
        assert_eq!(aadsts(&body), code, "{case}: {body}");
    }
}

#[tokio::test]
async fn certificate_upload_refuses_bad_input() {
    let entra = start().await;
    let (app_id, _, _) = entra.register_app("cert-client").await;
    let path = format!("/admin/tenants/{TENANT}/applications/{app_id}/certificates");
    let ec = rcgen::generate_simple_self_signed(vec!["ec.test".into()]).unwrap();
    let table = [
        json!({"certificate": "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----"}),
        json!({"certificate": ec.signing_key.serialize_pem()}),
        json!({"certificate": ec.cert.pem()}),
        json!({"certificate": "%%%"}),
        json!({"cert": "missing field"}),
    ];
    for body in table {
        let (status, answer) = entra.admin(Method::POST, &path, Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().len() > 10);
    }
}
