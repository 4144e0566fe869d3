//! Interactive sign-in (authorization code + PKCE) as a browser and the portal perform it:
//! the sign-in page, a wrong password, the redirect with a code, the code redeemed once
//! against its verifier for a user token, and each bad request.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use reqwest::StatusCode;
use sim_core::well_known;

const REDIRECT: &str = "https://localhost:10012/portal/signin";

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref())
}

fn authorize_query(challenge: &str) -> Vec<(&'static str, String)> {
    vec![
        ("client_id", well_known::PORTAL_CLIENT_ID.into()),
        ("response_type", "code".into()),
        ("redirect_uri", REDIRECT.into()),
        ("scope", ARM_SCOPE.into()),
        ("state", "xyz".into()),
        ("code_challenge", challenge.into()),
        ("code_challenge_method", "S256".into()),
    ]
}

/// A client that does not follow redirects (the test reads `Location`).
fn browser(entra: &TestEntra) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(entra.ca_pem.as_bytes()).unwrap()])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn sign_in(entra: &TestEntra, query: &[(&str, String)], password: &str) -> reqwest::Response {
    let mut form: Vec<(&str, String)> = query.to_vec();
    form.push(("username", well_known::ADMIN_USER.into()));
    form.push(("password", password.into()));
    browser(entra)
        .post(format!("{}/{TENANT}/oauth2/v2.0/authorize", entra.base))
        .form(&form)
        .send()
        .await
        .unwrap()
}

fn location_params(response: &reqwest::Response) -> Vec<(String, String)> {
    let location = response.headers()["location"].to_str().unwrap();
    let (base, query) = location.split_once('?').unwrap();
    assert_eq!(base, REDIRECT);
    serde_urlencoded::from_str(query).unwrap()
}

#[tokio::test]
async fn the_admin_user_signs_in_with_pkce_and_gets_a_user_token() {
    let entra = start().await;
    let verifier = "a-verifier-of-at-least-43-characters-0123456789";
    let query = authorize_query(&challenge(verifier));

    let page = browser(&entra)
        .get(format!(
            "{}/{TENANT}/oauth2/v2.0/authorize?{}",
            entra.base,
            serde_urlencoded::to_string(&query).unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("type=\"password\"") && html.contains("name=\"code_challenge\""),
        "{html}"
    );

    let wrong = sign_in(&entra, &query, "not the password").await;
    assert_eq!(wrong.status(), StatusCode::OK, "the page again");
    assert!(wrong.text().await.unwrap().contains("AADSTS50126"));

    let signed_in = sign_in(&entra, &query, well_known::ADMIN_USER_PASSWORD).await;
    assert_eq!(signed_in.status(), StatusCode::FOUND);
    let params = location_params(&signed_in);
    assert!(params.contains(&("state".into(), "xyz".into())));
    let code = params.iter().find(|(k, _)| k == "code").unwrap().1.clone();

    let redeem = |verifier: &str| {
        let code = code.clone();
        let verifier = verifier.to_string();
        let entra = &entra;
        async move {
            entra
                .token_request(
                    TENANT,
                    &[
                        ("grant_type", "authorization_code"),
                        ("client_id", well_known::PORTAL_CLIENT_ID),
                        ("code", &code),
                        ("redirect_uri", REDIRECT),
                        ("code_verifier", &verifier),
                        ("scope", ARM_SCOPE),
                    ],
                )
                .await
        }
    };
    let (status, body) = redeem(verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = claims(body["access_token"].as_str().unwrap());
    assert_eq!(claims["idtyp"], "user");
    assert_eq!(claims["oid"], well_known::ADMIN_USER_OBJECT_ID);
    assert_eq!(claims["upn"], well_known::ADMIN_USER);
    assert_eq!(claims["appid"], well_known::PORTAL_CLIENT_ID);
    assert_eq!(claims["scp"], "user_impersonation");
    assert_eq!(claims["aud"], "https://management.azure.com");

    let (status, body) = redeem(verifier).await;
    assert_eq!(
        (status.as_u16(), aadsts(&body)),
        (400, 70008),
        "a code works once"
    );
}

#[tokio::test]
async fn bad_sign_in_requests_are_refused_where_they_should_be() {
    let entra = start().await;
    let verifier = "a-verifier-of-at-least-43-characters-0123456789";
    let good = authorize_query(&challenge(verifier));
    let get = |query: Vec<(&'static str, String)>| {
        let client = browser(&entra);
        let url = format!("{}/{TENANT}/oauth2/v2.0/authorize", entra.base);
        let url = format!("{url}?{}", serde_urlencoded::to_string(&query).unwrap());
        async move { client.get(url).send().await.unwrap() }
    };
    let with = |name: &str, value: &str| {
        let mut query = good.clone();
        query.retain(|(k, _)| *k != name);
        if !value.is_empty() {
            let name: &'static str = Box::leak(name.to_string().into_boxed_str());
            query.push((name, value.to_string()));
        }
        query
    };

    // An untrusted client or redirect URI: a page, never a redirect.
    for query in [
        with("redirect_uri", "https://evil.example/steal"),
        with("redirect_uri", "http://localhost:10012/portal/signin"),
        with("client_id", well_known::ADMIN_CLIENT_ID),
        with("client_id", ""),
    ] {
        let response = get(query).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.headers().get("location").is_none());
    }
    // Anything else goes back to the client with the error.
    for (query, error) in [
        (with("code_challenge", ""), "invalid_request"),
        (with("code_challenge_method", "plain"), "invalid_request"),
        (with("response_type", "token"), "unsupported_response_type"),
    ] {
        let response = get(query).await;
        assert_eq!(response.status(), StatusCode::FOUND);
        let params = location_params(&response);
        assert!(
            params.contains(&("error".into(), error.into())),
            "{params:?}"
        );
    }

    // The token endpoint: a wrong verifier, a made-up code, missing fields.
    let signed_in = sign_in(&entra, &good, well_known::ADMIN_USER_PASSWORD).await;
    let code = location_params(&signed_in)
        .into_iter()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1;
    let form = |code: &str, verifier: &str| {
        vec![
            ("grant_type", "authorization_code".to_string()),
            ("client_id", well_known::PORTAL_CLIENT_ID.to_string()),
            ("code", code.to_string()),
            ("redirect_uri", REDIRECT.to_string()),
            ("code_verifier", verifier.to_string()),
        ]
    };
    for (fields, expected) in [
        (form(&code, &"x".repeat(50)), 501481),
        (form("made-up", verifier), 70008),
        (form(&code, verifier)[..4].to_vec(), 900144),
    ] {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = entra.token_request(TENANT, &fields).await;
        assert_eq!((status.as_u16(), aadsts(&body)), (400, expected), "{body}");
    }
}
