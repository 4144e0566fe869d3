//! Small pieces every Azure-shaped service needs the same way: JSON bodies parsed with an
//! error naming the bad field, ARM timestamps, region comparison, and the host a request
//! was sent to (for ids and absolute links).

use axum::http::{HeaderMap, Uri, header};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;

/// Parses a JSON request body. The error is a message for the caller that names the path
/// of the bad field (e.g. `properties.enablePurgeProtection`).
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("The request body is empty; send the resource as JSON.".into());
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        if path == "." || e.inner().is_syntax() || e.inner().is_eof() {
            format!("The request body is not valid JSON: {}", e.inner())
        } else {
            format!(
                "The request body has an invalid value at '{path}': {}",
                e.inner()
            )
        }
    })
}

/// RFC 3339 in UTC, as ARM writes timestamps.
pub fn iso(unix: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Azure compares regions without case or spaces ("West Europe" = "westeurope").
pub fn same_location(a: &str, b: &str) -> bool {
    let normalise = |s: &str| s.replace(' ', "").to_ascii_lowercase();
    normalise(a) == normalise(b)
}

/// The `host[:port]` a request was sent to: the URI authority over HTTP/2, `Host` otherwise.
pub fn request_authority(uri: &Uri, headers: &HeaderMap) -> String {
    uri.authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        properties: Properties,
    }

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Properties {
        enabled: bool,
    }

    #[test]
    fn body_errors_name_the_field() {
        let error = parse_body::<Body>(br#"{"properties":{"enabled":"yes"}}"#).unwrap_err();
        assert!(error.contains("properties.enabled"), "{error}");
        assert!(parse_body::<Body>(b"  ").unwrap_err().contains("empty"));
        assert!(
            parse_body::<Body>(b"{oops")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(same_location("West Europe", "westeurope"));
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
    }
}
