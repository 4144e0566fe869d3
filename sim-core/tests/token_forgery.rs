//! Forged and misdirected tokens against sim-core's verifier: each one is refused, with
//! the reason a service will report. A test key stands in for entra-sim's so the tests can
//! sign arbitrary claims.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sim_core::SimClock;
use sim_core::auth::{KeyCache, KeySource, TenantPolicy, TokenError, TokenVerifier};

const TENANT: &str = "a2e0c0de-5e11-4a55-9a2e-000000000001";
const OTHER_TENANT: &str = "11111111-2222-4333-8444-555555555555";
const AUDIENCE: &str = "https://management.azure.com/";

struct TestIssuer {
    kid: String,
    key: EncodingKey,
    public_pem: String,
    jwks: JwkSet,
}

fn test_issuer(kid: &str) -> TestIssuer {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let key = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.into());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    TestIssuer {
        kid: kid.into(),
        key,
        public_pem: pair.public_key_pem(),
        jwks: JwkSet { keys: vec![jwk] },
    }
}

fn claims(clock: &SimClock) -> Value {
    let now = clock.unix();
    json!({
        "aud": AUDIENCE, "iss": format!("https://sts.windows.net/{TENANT}/"),
        "iat": now, "nbf": now, "exp": now + 3600,
        "tid": TENANT, "oid": "00000000-0000-0000-0000-0000000000aa", "appid": "00000000-0000-0000-0000-0000000000bb",
        "roles": ["Reader"], "ver": "1.0",
    })
}

fn sign(issuer: &TestIssuer, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(issuer.kid.clone());
    jsonwebtoken::encode(&header, claims, &issuer.key).unwrap()
}

fn verifier(issuer: &TestIssuer, clock: &SimClock, tenants: TenantPolicy) -> TokenVerifier {
    let jwks = issuer.jwks.clone();
    let cache = KeyCache::new(KeySource::Local(Arc::new(move || jwks.clone())));
    TokenVerifier::new(
        cache,
        vec![AUDIENCE.into(), "https://management.azure.com".into()],
        tenants,
        clock.clone(),
    )
}

fn setup() -> (TestIssuer, SimClock, TokenVerifier) {
    let issuer = test_issuer("test-key-1");
    let clock = SimClock::in_memory();
    let verifier = verifier(&issuer, &clock, TenantPolicy::Only(vec![TENANT.into()]));
    (issuer, clock, verifier)
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

#[tokio::test]
async fn a_well_formed_token_is_accepted_with_its_claims() {
    let (issuer, clock, verifier) = setup();
    let principal = verifier
        .verify(&sign(&issuer, &claims(&clock)))
        .await
        .unwrap();
    assert_eq!(principal.tenant_id, TENANT);
    assert_eq!(principal.object_id, "00000000-0000-0000-0000-0000000000aa");
    assert_eq!(principal.app_id, "00000000-0000-0000-0000-0000000000bb");
    assert!(principal.has_role("Reader"));
}

#[tokio::test]
async fn alg_none_is_refused() {
    let (_, clock, verifier) = setup();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"test-key-1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(&clock)).unwrap());
    let token = format!("{header}.{payload}.");
    assert_eq!(
        verifier.verify(&token).await,
        Err(TokenError::UnsupportedAlgorithm("none".into()))
    );
}

#[tokio::test]
async fn hs256_keyed_with_the_public_key_is_refused() {
    let (issuer, clock, verifier) = setup();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(issuer.kid.clone());
    let token = jsonwebtoken::encode(
        &header,
        &claims(&clock),
        &EncodingKey::from_secret(issuer.public_pem.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        verifier.verify(&token).await,
        Err(TokenError::UnsupportedAlgorithm("HS256".into()))
    );
}

#[tokio::test]
async fn a_key_outside_the_jwks_is_refused() {
    let (_, clock, verifier) = setup();
    let stranger = test_issuer("not-in-jwks");
    let result = verifier.verify(&sign(&stranger, &claims(&clock))).await;
    assert_eq!(result, Err(TokenError::UnknownKey("not-in-jwks".into())));
}

#[tokio::test]
async fn a_known_kid_with_another_keys_signature_is_refused() {
    let (_, clock, verifier) = setup();
    let impostor = test_issuer("test-key-1");
    assert_eq!(
        verifier.verify(&sign(&impostor, &claims(&clock))).await,
        Err(TokenError::InvalidSignature)
    );
}

#[tokio::test]
async fn a_tampered_payload_is_refused() {
    let (issuer, clock, verifier) = setup();
    let token = sign(&issuer, &claims(&clock));
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&with(claims(&clock), "roles", json!(["Owner"]))).unwrap());
    parts[1] = &forged;
    assert_eq!(
        verifier.verify(&parts.join(".")).await,
        Err(TokenError::InvalidSignature)
    );
}

#[tokio::test]
async fn an_expired_token_is_refused_on_the_simulated_clock() {
    let (issuer, clock, verifier) = setup();
    let token = sign(&issuer, &claims(&clock));
    assert!(verifier.verify(&token).await.is_ok());
    clock.advance(3600 + 61).unwrap();
    assert!(matches!(
        verifier.verify(&token).await,
        Err(TokenError::Expired { .. })
    ));
}

#[tokio::test]
async fn small_clock_skew_is_tolerated() {
    let (issuer, clock, verifier) = setup();
    let now = clock.unix();
    let token = sign(
        &issuer,
        &with(
            with(claims(&clock), "exp", json!(now - 30)),
            "nbf",
            json!(now + 30),
        ),
    );
    assert!(verifier.verify(&token).await.is_ok());
}

#[tokio::test]
async fn a_token_not_yet_valid_is_refused() {
    let (issuer, clock, verifier) = setup();
    let token = sign(
        &issuer,
        &with(claims(&clock), "nbf", json!(clock.unix() + 600)),
    );
    assert!(matches!(
        verifier.verify(&token).await,
        Err(TokenError::NotYetValid { .. })
    ));
}

#[tokio::test]
async fn a_wrong_audience_is_refused() {
    let (issuer, clock, verifier) = setup();
    let token = sign(
        &issuer,
        &with(claims(&clock), "aud", json!("https://vault.azure.net")),
    );
    assert_eq!(
        verifier.verify(&token).await,
        Err(TokenError::WrongAudience("https://vault.azure.net".into()))
    );
}

#[tokio::test]
async fn a_wrong_issuer_is_refused() {
    let (issuer, clock, verifier) = setup();
    let table = [
        "https://evil.example.com/".to_string(),
        format!("https://sts.windows.net/{OTHER_TENANT}/"),
        format!("https://sts.windows.net/{TENANT}"),
    ];
    for iss in table {
        let token = sign(&issuer, &with(claims(&clock), "iss", json!(iss)));
        assert_eq!(
            verifier.verify(&token).await,
            Err(TokenError::WrongIssuer(iss.clone())),
            "{iss}"
        );
    }
}

#[tokio::test]
async fn another_tenant_is_refused() {
    let (issuer, clock, verifier) = setup();
    let token = sign(
        &issuer,
        &with(
            with(claims(&clock), "tid", json!(OTHER_TENANT)),
            "iss",
            json!(format!("https://sts.windows.net/{OTHER_TENANT}/")),
        ),
    );
    assert_eq!(
        verifier.verify(&token).await,
        Err(TokenError::TenantNotAccepted(OTHER_TENANT.into()))
    );
}

#[tokio::test]
async fn missing_or_malformed_headers_are_refused() {
    let (_, _, verifier) = setup();
    assert_eq!(verifier.verify_header(None).await, Err(TokenError::Missing));
    assert_eq!(
        verifier.verify_header(Some("Basic abc")).await,
        Err(TokenError::NotBearer)
    );
    assert_eq!(
        verifier.verify_header(Some("Bearer")).await,
        Err(TokenError::NotBearer)
    );
    assert!(matches!(
        verifier.verify_header(Some("Bearer not-a-jwt")).await,
        Err(TokenError::Malformed(_))
    ));
}

#[tokio::test]
async fn a_token_without_kid_is_refused() {
    let (issuer, clock, verifier) = setup();
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims(&clock), &issuer.key).unwrap();
    assert!(matches!(
        verifier.verify(&token).await,
        Err(TokenError::Malformed(_))
    ));
}
