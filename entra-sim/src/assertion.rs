//! Client assertions (certificate credentials): a JWT the client signs with the private
//! key of a certificate registered on its app. MSAL sends RS256 with `x5t` (SHA-1
//! thumbprint) or PS256 with `x5t#S256`; `exp`/`iat` may be floats.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::directory::KeyCredential;
use crate::error::{EntraError, Result};

/// The only `client_assertion_type` Entra accepts.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Skew tolerated on the assertion's times, as Entra does.
const SKEW_SECONDS: f64 = 300.0;

#[derive(Deserialize)]
struct AssertionClaims {
    aud: String,
    iss: String,
    sub: String,
    exp: f64,
    nbf: Option<f64>,
}

fn invalid(code: u32, message: impl Into<String>) -> EntraError {
    EntraError::InvalidClientAssertion {
        code,
        message: message.into(),
    }
}

/// Verifies `assertion` for `client_id`, whose registered certificates are `certificates`.
/// `audience_ok` says whether an `aud` names this tenant's token endpoint.
pub fn verify(
    assertion: &str,
    client_id: &str,
    certificates: &[KeyCredential],
    audience_ok: impl Fn(&str) -> bool,
    now: i64,
) -> Result<()> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|e| {
        invalid(
            50027,
            format!("Invalid JWT token in client_assertion: the header cannot be read ({e})."),
        )
    })?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::PS256) {
        return Err(invalid(
            5002738,
            format!(
                "Invalid JWT token in client_assertion: algorithm {:?} is not supported; use RS256 or PS256.",
                header.alg
            ),
        ));
    }
    // MSAL Python pads its base64url thumbprints with '='; the registry stores them bare.
    let bare = |t: &String| t.trim_end_matches('=').to_string();
    let certificate = match (&header.x5t, &header.x5t_s256) {
        (_, Some(s256)) => certificates
            .iter()
            .find(|c| c.thumbprint_sha256 == bare(s256)),
        (Some(sha1), None) => certificates
            .iter()
            .find(|c| c.thumbprint_sha1 == bare(sha1)),
        (None, None) => {
            return Err(invalid(
                700027,
                "Client assertion failed signature validation: the header names no certificate ('x5t' or 'x5t#S256').",
            ));
        }
    };
    let thumbprint = header.x5t_s256.or(header.x5t).unwrap_or_default();
    let certificate = certificate.ok_or_else(|| {
        invalid(
            700027,
            format!(
                "Client assertion contains an invalid signature. [Reason - The key was not found., Thumbprint of key used by client: '{thumbprint}'. Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'.]"
            ),
        )
    })?;
    let now_f = now as f64;
    if (certificate.end_date_time as f64) < now_f {
        return Err(invalid(
            700027,
            format!(
                "Client assertion failed signature validation: the certificate '{thumbprint}' expired. Register a new certificate."
            ),
        ));
    }
    let (_, cert) = x509_parser::parse_x509_certificate(&certificate.certificate_der)
        .map_err(|e| EntraError::Crypto(format!("stored certificate unreadable: {e}")))?;
    let key = DecodingKey::from_rsa_der(&cert.public_key().subject_public_key.data);

    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => invalid(
                700027,
                format!("Client assertion contains an invalid signature. [Reason - The signature does not match certificate '{thumbprint}'.]"),
            ),
            _ => invalid(50027, format!("Invalid JWT token in client_assertion: the claims cannot be read ({e}).")),
        })?
        .claims;

    if !claims.iss.eq_ignore_ascii_case(client_id) || !claims.sub.eq_ignore_ascii_case(client_id) {
        return Err(invalid(
            700021,
            format!(
                "Client assertion application identifier doesn't match 'client_id' parameter: iss '{}', sub '{}', client_id '{client_id}'.",
                claims.iss, claims.sub
            ),
        ));
    }
    let not_before = claims.nbf.unwrap_or(f64::MIN);
    if claims.exp + SKEW_SECONDS < now_f || not_before - SKEW_SECONDS > now_f {
        return Err(invalid(
            700024,
            format!(
                "Client assertion is not within its valid time range. Current time: {now}, expiry time of assertion {}.",
                claims.exp as i64
            ),
        ));
    }
    if !audience_ok(&claims.aud) {
        return Err(invalid(
            700212,
            format!(
                "Client assertion audience claim does not match the token endpoint: aud '{}'. Use this tenant's token endpoint URL.",
                claims.aud
            ),
        ));
    }
    Ok(())
}
