//! `GET|POST /{tenant}/oauth2/v2.0/authorize`: interactive sign-in (authorization code +
//! PKCE) for the well-known admin user. GET shows the sign-in page; POST checks the
//! password and redirects to the client with a one-time code. A bad client or redirect URI
//! is shown on the page (never redirected to); any other problem goes back to the client as
//! `error`/`error_description`, as Entra does.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use sim_core::well_known;

use super::EntraState;
use crate::interactive::{self, AuthorizeRequest};

pub async fn page(
    State(state): State<EntraState>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let request: AuthorizeRequest = match serde_urlencoded::from_str(
        query.as_deref().unwrap_or_default(),
    ) {
        Ok(request) => request,
        Err(error) => {
            return problem(
                StatusCode::BAD_REQUEST,
                &format!(
                    "AADSTS900144: The authorization request is incomplete ({error}): it needs client_id, response_type, redirect_uri, scope, code_challenge and code_challenge_method."
                ),
            );
        }
    };
    if let Err(response) = checked(&state, &tenant, &request).await {
        return response;
    }
    sign_in_page(&tenant, &request, None, StatusCode::OK)
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(flatten)]
    request: AuthorizeRequest,
    username: String,
    password: String,
}

pub async fn sign_in(
    State(state): State<EntraState>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<SignInForm>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "The sign-in form is incomplete: it needs the authorization request's fields, a username and a password.",
        );
    };
    let tenant_id = match checked(&state, &tenant, &form.request).await {
        Ok(id) => id,
        Err(response) => return response,
    };
    let user = match interactive::check_user(&form.username, &form.password) {
        Ok(user) => user,
        Err(error) => {
            return sign_in_page(
                &tenant,
                &form.request,
                Some(&error.to_string()),
                StatusCode::OK,
            );
        }
    };
    let now = state.issuer.clock.unix();
    match state.sign_ins.issue(&form.request, &tenant_id, user, now) {
        Ok(code) => redirect(&form.request, &[("code", code.as_str())]),
        Err(error) => problem(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
    }
}

/// The tenant, client and redirect URI (else a page), then the rest of the request (else
/// back to the client with the error). Returns the tenant id.
async fn checked(
    state: &EntraState,
    tenant: &str,
    request: &AuthorizeRequest,
) -> Result<String, Response> {
    let tenant = state
        .issuer
        .tenant(tenant)
        .await
        .map_err(|e| problem(StatusCode::BAD_REQUEST, &e.to_string()))?;
    interactive::check_client(&request.client_id, &request.redirect_uri)
        .map_err(|e| problem(StatusCode::BAD_REQUEST, &e.to_string()))?;
    interactive::check_request(request).map_err(|(error, description)| {
        redirect(
            request,
            &[("error", error), ("error_description", &description)],
        )
    })?;
    Ok(tenant.id)
}

/// `302` to the client's redirect URI with `params` and the request's `state`.
fn redirect(request: &AuthorizeRequest, params: &[(&str, &str)]) -> Response {
    let mut query: Vec<(&str, &str)> = params.to_vec();
    if let Some(state) = request.state.as_deref() {
        query.push(("state", state));
    }
    let query = serde_urlencoded::to_string(&query).unwrap_or_default();
    let location = format!("{}?{query}", request.redirect_uri);
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (STYLE) }
            }
            body { main { (body) } }
        }
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f3f2f1;margin:0}\
main{max-width:420px;margin:10vh auto;background:#fff;padding:2rem 2.5rem;box-shadow:0 2px 6px #0002}\
h1{font-size:1.4rem;font-weight:600}label{display:block;margin:1rem 0 .3rem}\
input[type=text],input[type=password],input[type=email]{width:100%;padding:.5rem;box-sizing:border-box;border:1px solid #8a8886}\
button{margin-top:1.5rem;background:#0067b8;color:#fff;border:0;padding:.6rem 1.6rem;font-size:1rem;cursor:pointer}\
.error{color:#a80000;margin-top:1rem}.note{color:#605e5c;font-size:.85rem;margin-top:1.5rem}";

fn sign_in_page(
    tenant: &str,
    request: &AuthorizeRequest,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let hidden = [
        ("client_id", Some(request.client_id.as_str())),
        ("response_type", Some(request.response_type.as_str())),
        ("redirect_uri", Some(request.redirect_uri.as_str())),
        ("scope", Some(request.scope.as_str())),
        ("state", request.state.as_deref()),
        ("code_challenge", request.code_challenge.as_deref()),
        (
            "code_challenge_method",
            request.code_challenge_method.as_deref(),
        ),
    ];
    let markup = layout(
        "Sign in to azsim",
        html! {
            h1 { "Sign in" }
            p { "to the azsim portal (Microsoft Entra ID, simulated)" }
            form method="post" action=(format!("/{tenant}/oauth2/v2.0/authorize")) {
                @for (name, value) in hidden {
                    @if let Some(value) = value {
                        input type="hidden" name=(name) value=(value);
                    }
                }
                label for="username" { "Email or username" }
                input type="email" id="username" name="username" autocomplete="username" required
                    value=(request.login_hint.as_deref().unwrap_or(well_known::ADMIN_USER));
                label for="password" { "Password" }
                input type="password" id="password" name="password" autocomplete="current-password" required autofocus;
                @if let Some(error) = error {
                    p.error role="alert" { (error) }
                }
                button type="submit" id="sign-in" { "Sign in" }
            }
            p.note { "The well-known development user is " code { (well_known::ADMIN_USER) } " (password in the azsim README)." }
        },
    );
    (status, Html(markup.into_string())).into_response()
}

fn problem(status: StatusCode, message: &str) -> Response {
    let markup = layout(
        "Sign-in problem",
        html! {
            h1 { "Sorry, but we're having trouble signing you in." }
            p.error role="alert" { (message) }
        },
    );
    (status, Html(markup.into_string())).into_response()
}
