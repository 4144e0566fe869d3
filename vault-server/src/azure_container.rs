//! Creates an Azure Blob Storage container, which `object_store` does not do: one
//! `PUT {account}/{container}?restype=container` signed with the account's Shared Key
//! (the documented string-to-sign, HMAC-SHA256 with the decoded key). An existing
//! container (409) is success.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::blobs::AzureBlobs;

const VERSION: &str = "2021-08-06";

pub async fn create(azure: &AzureBlobs, container: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(&format!("{}/{container}", azure.endpoint))
        .map_err(|e| format!("container URL: {e}"))?;
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    // Verb, then eleven standard headers (all empty here: no body), then the x-ms-*
    // headers and the resource: `/{account}{path}` (for a path-style endpoint the path
    // repeats the account, as Azurite expects), then the query parameters.
    let string_to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{VERSION}\n/{}{}\nrestype:container",
        azure.account,
        url.path()
    );
    let key = STANDARD
        .decode(&azure.key)
        .map_err(|e| format!("the storage account key is not base64: {e}"))?;
    let signature = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key),
        string_to_sign.as_bytes(),
    );
    let authorization = format!(
        "SharedKey {}:{}",
        azure.account,
        STANDARD.encode(signature.as_ref())
    );
    let response = reqwest::Client::new()
        .put(format!("{url}?restype=container"))
        .header("x-ms-date", date)
        .header("x-ms-version", VERSION)
        .header("Authorization", authorization)
        .header("Content-Length", "0")
        .send()
        .await
        .map_err(|e| format!("creating container {container} at {}: {e}", azure.endpoint))?;
    match response.status().as_u16() {
        201 | 409 => Ok(()),
        status => Err(format!(
            "creating container {container} at {} failed ({status}): {}",
            azure.endpoint,
            response.text().await.unwrap_or_default()
        )),
    }
}
