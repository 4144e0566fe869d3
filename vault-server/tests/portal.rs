//! The portal's edges without a browser (tests/portal drives a real one): nothing is shown
//! or changed without a session, sign-in always carries a PKCE challenge, and a stale or
//! forged callback signs nobody in.

mod common;

use common::*;

fn no_redirects(t: &TestArm) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(t.ca_pem.as_bytes()).unwrap()])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn nothing_without_a_session_and_no_sign_in_from_a_forged_callback() {
    let t = start().await;
    let browser = no_redirects(&t);
    for (method, path) in [
        (reqwest::Method::GET, "/portal"),
        (reqwest::Method::POST, "/portal/vaults"),
        (reqwest::Method::GET, "/portal/vaults/rg/v"),
        (reqwest::Method::POST, "/portal/vaults/rg/v/settings"),
        (reqwest::Method::GET, "/portal/vaults/rg/v/credentials"),
    ] {
        let response = browser
            .request(method.clone(), format!("{}{path}", t.url))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_redirection(),
            "{method} {path}: {}",
            response.status()
        );
        let location = response.headers()["location"].to_str().unwrap();
        assert!(
            location.starts_with(&format!("{}/{TENANT}/oauth2/v2.0/authorize?", t.entra_url)),
            "{location}"
        );
        assert!(
            location.contains("code_challenge_method=S256") && location.contains("code_challenge=")
        );
        assert!(
            location.contains("redirect_uri=https%3A%2F%2Flocalhost%3A"),
            "{location}"
        );
    }
    for query in [
        "code=forged&state=never-issued",
        "error=access_denied&error_description=no",
        "",
    ] {
        let response = browser
            .get(format!("{}/portal/signin?{query}", t.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers().get("set-cookie").is_none(),
            "nobody is signed in"
        );
        let page = response.text().await.unwrap();
        assert!(page.contains("Sign-in failed"), "{page}");
    }
    // A cookie the portal never issued is no session.
    let response = browser
        .get(format!("{}/portal", t.url))
        .header("cookie", "azsim_portal=made-up")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection());
}

/// Signs in as a browser would, without one: returns the session cookie.
async fn sign_in(t: &TestArm, browser: &reqwest::Client) -> String {
    let to_entra = browser
        .get(format!("{}/portal", t.url))
        .send()
        .await
        .unwrap();
    let authorize = to_entra.headers()["location"].to_str().unwrap().to_string();
    let (url, query) = authorize.split_once('?').unwrap();
    let mut form: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    form.push(("username".into(), sim_core::well_known::ADMIN_USER.into()));
    form.push((
        "password".into(),
        sim_core::well_known::ADMIN_USER_PASSWORD.into(),
    ));
    let back = browser.post(url).form(&form).send().await.unwrap();
    let callback = back.headers()["location"].to_str().unwrap().to_string();
    assert!(
        callback.starts_with(&format!("{}/portal/signin?code=", t.url)),
        "{callback}"
    );
    let signed_in = browser.get(callback).send().await.unwrap();
    assert_eq!(signed_in.headers()["location"], "/portal");
    let cookie = signed_in.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("Secure") && cookie.contains("SameSite=Lax")
    );
    cookie.split(';').next().unwrap().to_string()
}

/// `/portal` with a session cookie.
async fn portal_home(t: &TestArm, browser: &reqwest::Client, cookie: &str) -> reqwest::Response {
    browser
        .get(format!("{}/portal", t.url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_session_lasts_as_long_as_its_token() {
    let t = start().await;
    let browser = no_redirects(&t);
    let cookie = sign_in(&t, &browser).await;
    let page = portal_home(&t, &browser, &cookie).await;
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Recovery Services vaults")
    );

    // An hour later (simulated) the token would be refused: the portal signs in again.
    t.clock.advance(3600).unwrap();
    let later = portal_home(&t, &browser, &cookie).await;
    assert!(later.status().is_redirection());
    assert!(
        later.headers()["location"]
            .to_str()
            .unwrap()
            .contains("/oauth2/v2.0/authorize?")
    );
}
