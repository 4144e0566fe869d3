//! The managed-identity endpoint: App Service and IMDS protocols over plain HTTP.

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sim_core::well_known;

async fn app_service(entra: &TestEntra, query: &str, header: Option<&str>) -> (StatusCode, Value) {
    let mut request = entra
        .http
        .get(format!("{}/msi/token?{query}", entra.mi_base));
    if let Some(value) = header {
        request = request.header("X-IDENTITY-HEADER", value);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn imds(entra: &TestEntra, query: &str, metadata: bool) -> (StatusCode, Value) {
    let mut request = entra.http.get(format!(
        "{}/metadata/identity/oauth2/token?{query}",
        entra.mi_base
    ));
    if metadata {
        request = request.header("Metadata", "true");
    }
    let response = request.send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn app_service_protocol_issues_a_token_for_the_host_identity() {
    let entra = start().await;
    assert!(entra.mi_base.starts_with("http://"));
    let (status, body) = app_service(
        &entra,
        "api-version=2019-08-01&resource=https://vault.azure.net",
        Some(well_known::IDENTITY_HEADER),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["client_id"], well_known::HOST_IDENTITY_CLIENT_ID);
    assert!(body["expires_on"].as_str().unwrap().parse::<i64>().is_ok());
    let claims = claims(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], "https://vault.azure.net");
    assert_eq!(claims["xms_mirid"], well_known::HOST_IDENTITY_RESOURCE_ID);
    assert_eq!(claims["appidacr"], "2");
}

#[tokio::test]
async fn a_user_assigned_identity_is_chosen_by_client_id_or_resource_id() {
    let entra = start().await;
    let resource_id = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/backup";
    let (status, identity) = entra
        .admin(
            Method::POST,
            &format!("/admin/tenants/{TENANT}/managedIdentities"),
            Some(json!({"type": "UserAssigned", "name": "backup", "resourceId": resource_id})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{identity}");
    let client_id = identity["clientId"].as_str().unwrap();
    let (status, body) = imds(
        &entra,
        &format!(
            "api-version=2018-02-01&resource=https://management.azure.com&client_id={client_id}"
        ),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["client_id"], client_id);
    assert_eq!(body["expires_in"], "3599");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["oid"],
        identity["principalId"]
    );
    let (status, body) = app_service(
        &entra,
        &format!(
            "api-version=2019-08-01&resource=https://management.azure.com&mi_res_id={resource_id}"
        ),
        Some(well_known::IDENTITY_HEADER),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["client_id"], client_id);
}

#[tokio::test]
async fn app_service_bad_requests() {
    let entra = start().await;
    let h = Some(well_known::IDENTITY_HEADER);
    let table: Vec<(&str, &str, Option<&str>, u16)> = vec![
        (
            "no header",
            "api-version=2019-08-01&resource=https://vault.azure.net",
            None,
            401,
        ),
        (
            "wrong header",
            "api-version=2019-08-01&resource=https://vault.azure.net",
            Some("guess"),
            401,
        ),
        ("no resource", "api-version=2019-08-01", h, 400),
        ("no api-version", "resource=https://vault.azure.net", h, 400),
        (
            "unknown identity",
            "api-version=2019-08-01&resource=https://vault.azure.net&client_id=00000000-0000-0000-0000-000000000000",
            h,
            400,
        ),
        (
            "two selectors",
            "api-version=2019-08-01&resource=https://vault.azure.net&client_id=a&object_id=b",
            h,
            400,
        ),
        (
            "unknown resource",
            "api-version=2019-08-01&resource=https://nope.example.com",
            h,
            400,
        ),
    ];
    for (case, query, header, status) in table {
        let (got, body) = app_service(&entra, query, header).await;
        assert_eq!(got.as_u16(), status, "{case}: {body}");
        assert_eq!(body["statusCode"], status, "{case}");
        assert!(body["message"].as_str().unwrap().len() > 10, "{case}");
    }
}

#[tokio::test]
async fn imds_bad_requests() {
    let entra = start().await;
    let table: Vec<(&str, &str, bool, &str)> = vec![
        (
            "no Metadata header",
            "api-version=2018-02-01&resource=https://vault.azure.net",
            false,
            "invalid_request",
        ),
        (
            "no resource",
            "api-version=2018-02-01",
            true,
            "invalid_request",
        ),
        (
            "no api-version",
            "resource=https://vault.azure.net",
            true,
            "invalid_request",
        ),
        (
            "unknown identity",
            "api-version=2018-02-01&resource=https://vault.azure.net&object_id=nope",
            true,
            "invalid_request",
        ),
        (
            "unknown resource",
            "api-version=2018-02-01&resource=https://nope.example.com",
            true,
            "invalid_resource",
        ),
    ];
    for (case, query, metadata, error) in table {
        let (status, body) = imds(&entra, query, metadata).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {body}");
        assert_eq!(body["error"], error, "{case}");
    }
}
