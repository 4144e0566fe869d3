//! Interactive sign-in: the OAuth 2.0 authorization-code grant with PKCE (RFC 7636, S256
//! only), for the well-known admin user through the well-known public client (the azsim
//! portal). `/authorize` checks the client and redirect URI, shows a sign-in form, checks
//! the user's password and hands out a one-time code bound to the client, the redirect
//! URI, the code challenge and the resource; the token endpoint redeems it once, within
//! five minutes (simulated clock), against the code verifier.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sim_core::well_known;

use crate::error::{EntraError, Result};

/// Seconds a code stays redeemable.
const CODE_LIFETIME: i64 = 300;

/// What a sign-in request asks for (the `/authorize` query, then the form).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub response_type: String,
    pub redirect_uri: String,
    pub scope: String,
    #[serde(default)]
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    #[serde(default)]
    pub login_hint: Option<String>,
}

/// A signed-in user.
#[derive(Clone, Debug)]
pub struct User {
    pub object_id: String,
    pub upn: String,
    pub name: String,
}

#[derive(Clone, Debug)]
pub struct Grant {
    pub tenant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub challenge: String,
    pub scope: String,
    pub user: User,
    expires_at: i64,
}

#[derive(Default)]
pub struct SignIns {
    codes: Mutex<HashMap<String, Grant>>,
}

/// Whether the client may sign users in and send them back to `redirect_uri`. An error
/// here is shown to the user (never redirected: the URI is not trusted yet).
pub fn check_client(client_id: &str, redirect_uri: &str) -> Result<()> {
    if !client_id.eq_ignore_ascii_case(well_known::PORTAL_CLIENT_ID) {
        return Err(EntraError::InvalidInput(format!(
            "AADSTS700016: Application '{client_id}' is not a public client of this tenant that may sign users in (the portal's client id is {}).",
            well_known::PORTAL_CLIENT_ID
        )));
    }
    // https://<host[:port]>/portal/signin exactly: no query, fragment or user info.
    let allowed = redirect_uri
        .strip_prefix("https://")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(authority, path)| {
            !authority.is_empty()
                && !authority.contains('@')
                && format!("/{path}") == well_known::PORTAL_REDIRECT_PATH
        });
    if !allowed {
        return Err(EntraError::InvalidInput(format!(
            "AADSTS50011: The redirect URI '{redirect_uri}' does not match the redirect URIs configured for the application: https://<host>{}.",
            well_known::PORTAL_REDIRECT_PATH
        )));
    }
    Ok(())
}

/// The rest of the request, once the redirect URI is trusted (errors go back to it).
pub fn check_request(
    request: &AuthorizeRequest,
) -> std::result::Result<(), (&'static str, String)> {
    if request.response_type != "code" {
        return Err((
            "unsupported_response_type",
            format!(
                "AADSTS700054: response_type '{}' is not supported: use 'code'.",
                request.response_type
            ),
        ));
    }
    match (request.code_challenge.as_deref(), request.code_challenge_method.as_deref()) {
        (Some(challenge), Some("S256")) if challenge.len() == 43 => Ok(()),
        (None, _) => Err((
            "invalid_request",
            "AADSTS9002325: Proof Key for Code Exchange is required: send code_challenge and code_challenge_method=S256.".into(),
        )),
        _ => Err((
            "invalid_request",
            "AADSTS501491: code_challenge must be a base64url SHA-256 (43 characters) with code_challenge_method=S256.".into(),
        )),
    }
}

/// The well-known admin user, when the password is right (compared in constant time).
pub fn check_user(username: &str, password: &str) -> Result<User> {
    let password_ok = aws_lc_rs::constant_time::verify_slices_are_equal(
        password.as_bytes(),
        well_known::ADMIN_USER_PASSWORD.as_bytes(),
    )
    .is_ok();
    if !username.eq_ignore_ascii_case(well_known::ADMIN_USER) || !password_ok {
        return Err(EntraError::InvalidInput(
            "AADSTS50126: Error validating credentials due to invalid username or password.".into(),
        ));
    }
    Ok(User {
        object_id: well_known::ADMIN_USER_OBJECT_ID.into(),
        upn: well_known::ADMIN_USER.into(),
        name: "azsim admin".into(),
    })
}

impl SignIns {
    /// A fresh one-time code for `grant`.
    pub fn issue(
        &self,
        request: &AuthorizeRequest,
        tenant_id: &str,
        user: User,
        now: i64,
    ) -> Result<String> {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes)
            .map_err(|_| EntraError::Crypto("random generator failed".into()))?;
        let code = URL_SAFE_NO_PAD.encode(bytes);
        let grant = Grant {
            tenant_id: tenant_id.to_string(),
            client_id: request.client_id.clone(),
            redirect_uri: request.redirect_uri.clone(),
            challenge: request.code_challenge.clone().unwrap_or_default(),
            scope: request.scope.clone(),
            user,
            expires_at: now + CODE_LIFETIME,
        };
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        codes.retain(|_, g| g.expires_at > now);
        codes.insert(code.clone(), grant);
        Ok(code)
    }

    /// Redeems `code` once: the client, redirect URI and verifier must match what it was
    /// issued for. A code presented twice is gone after the first time, whatever happens.
    pub fn redeem(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        verifier: &str,
        now: i64,
    ) -> Result<Grant> {
        let grant = self
            .codes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(code)
            .filter(|g| g.expires_at > now)
            .ok_or(EntraError::InvalidGrant(
                70008,
                "The provided authorization code or refresh token has expired or was already used. Send a new interactive authorization request.".into(),
            ))?;
        if !grant.client_id.eq_ignore_ascii_case(client_id) || grant.redirect_uri != redirect_uri {
            return Err(EntraError::InvalidGrant(
                70002,
                "The authorization code was issued to another client or redirect URI.".into(),
            ));
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        if (43..=128).contains(&verifier.len())
            && URL_SAFE_NO_PAD.encode(digest.as_ref()) == grant.challenge
        {
            Ok(grant)
        } else {
            Err(EntraError::InvalidGrant(
                501481,
                "The Code_Verifier does not match the code_challenge supplied in the authorization request.".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(challenge: &str) -> AuthorizeRequest {
        AuthorizeRequest {
            client_id: well_known::PORTAL_CLIENT_ID.into(),
            response_type: "code".into(),
            redirect_uri: "https://localhost:10012/portal/signin".into(),
            scope: "https://management.azure.com/.default".into(),
            state: Some("s".into()),
            code_challenge: Some(challenge.into()),
            code_challenge_method: Some("S256".into()),
            login_hint: None,
        }
    }

    #[test]
    fn a_code_is_redeemed_once_with_its_verifier() {
        let verifier = "v".repeat(50);
        let challenge = URL_SAFE_NO_PAD.encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref(),
        );
        let sign_ins = SignIns::default();
        let user = check_user(well_known::ADMIN_USER, well_known::ADMIN_USER_PASSWORD).unwrap();
        let issue = || {
            sign_ins
                .issue(&request(&challenge), "t", user.clone(), 0)
                .unwrap()
        };
        let redirect = "https://localhost:10012/portal/signin";
        let code = issue();
        assert!(
            sign_ins
                .redeem(
                    &code,
                    well_known::PORTAL_CLIENT_ID,
                    redirect,
                    &"w".repeat(50),
                    1
                )
                .is_err()
        );
        assert!(
            sign_ins
                .redeem(&code, well_known::PORTAL_CLIENT_ID, redirect, &verifier, 1)
                .is_err(),
            "gone after one try"
        );
        let code = issue();
        assert!(
            sign_ins
                .redeem(
                    &code,
                    well_known::PORTAL_CLIENT_ID,
                    redirect,
                    &verifier,
                    301
                )
                .is_err(),
            "expired"
        );
        let code = issue();
        assert!(
            sign_ins
                .redeem(
                    &code,
                    well_known::PORTAL_CLIENT_ID,
                    "https://evil/portal/signin",
                    &verifier,
                    1
                )
                .is_err()
        );
        let code = issue();
        let grant = sign_ins
            .redeem(&code, well_known::PORTAL_CLIENT_ID, redirect, &verifier, 1)
            .unwrap();
        assert_eq!(grant.user.object_id, well_known::ADMIN_USER_OBJECT_ID);
    }

    #[test]
    fn clients_redirects_users_and_challenges_are_checked() {
        assert!(
            check_client(
                well_known::PORTAL_CLIENT_ID,
                "https://localhost:1/portal/signin"
            )
            .is_ok()
        );
        assert!(
            check_client(
                well_known::PORTAL_CLIENT_ID,
                "http://localhost:1/portal/signin"
            )
            .is_err()
        );
        assert!(
            check_client(
                well_known::PORTAL_CLIENT_ID,
                "https://localhost:1/elsewhere"
            )
            .is_err()
        );
        assert!(
            check_client(
                well_known::ADMIN_CLIENT_ID,
                "https://localhost:1/portal/signin"
            )
            .is_err()
        );
        assert!(check_user(well_known::ADMIN_USER, "wrong").is_err());
        assert!(check_user("someone@else", well_known::ADMIN_USER_PASSWORD).is_err());
        let mut plain = request(&"x".repeat(43));
        plain.code_challenge_method = Some("plain".into());
        assert!(check_request(&plain).is_err());
        plain.code_challenge = None;
        assert!(check_request(&plain).is_err());
        assert!(check_request(&request(&"x".repeat(43))).is_ok());
    }
}
