//! Small pieces every Azure-shaped service needs the same way: JSON bodies parsed with an
//! error naming the bad field, ARM timestamps, region comparison, and the host a request
//! was sent to (for ids and absolute links).

mod call;
pub use call::{ArmCall, Filter};

/// ARM's answer to a request without `?api-version=`, the same on every ARM plane.
pub fn require_api_version(
    query: &std::collections::BTreeMap<String, String>,
) -> Result<(), crate::ApiError> {
    match query.contains_key("api-version") {
        true => Ok(()),
        false => Err(crate::ApiError::bad_request(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )),
    }
}

use axum::http::{HeaderMap, Uri, header};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::DeserializeOwned;

/// Audiences Azure Resource Manager accepts (with and without the trailing slash, and the
/// classic management audience the CLI may use).
pub const ARM_AUDIENCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.azure.com/",
    "https://management.core.windows.net",
    "https://management.core.windows.net/",
];

/// The correlation id of an ARM request: the client's `x-ms-correlation-request-id` (or
/// `x-ms-client-request-id`), else a new one. ARM echoes it on the response.
pub fn correlation_id(headers: &HeaderMap) -> axum::http::HeaderValue {
    headers
        .get("x-ms-correlation-request-id")
        .or_else(|| headers.get("x-ms-client-request-id"))
        .cloned()
        .unwrap_or_else(|| {
            axum::http::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .expect("a uuid is a header value")
        })
}

/// Deepest JSON nesting a request body may have (ARM documents need far less).
pub const MAX_JSON_DEPTH: usize = 64;

/// How deeply `body` nests arrays and objects (brackets inside strings do not count).
fn json_depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Parses a JSON request body. The error is a message for the caller that names the path
/// of the bad field (e.g. `properties.enablePurgeProtection`).
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("The request body is empty; send the resource as JSON.".into());
    }
    if json_depth(body) > MAX_JSON_DEPTH {
        return Err(format!(
            "The request body nests JSON deeper than {MAX_JSON_DEPTH} levels; send a flatter document."
        ));
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

/// Characters that change how text displays without being visible: bidirectional
/// overrides and isolates, zero-width characters, the byte-order mark, and the
/// replacement character that stands for bytes that were not UTF-8.
pub fn is_deceptive(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}' | '\u{FFFD}')
}

/// A display name: 1 to `max` characters, none of them control or deceptive characters.
pub fn check_display_name(what: &str, name: &str, max: usize) -> Result<(), String> {
    let count = name.chars().count();
    if count == 0 || count > max {
        return Err(format!("{what} must be 1 to {max} characters."));
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || is_deceptive(*c)) {
        return Err(format!(
            "{what} contains the character U+{:04X}; control characters and bidirectional or invisible formatting characters are not allowed.",
            c as u32
        ));
    }
    Ok(())
}

/// A resource name taken from a URL path (Azure's rule for every resource type): 1 to
/// `max` characters, no control or deceptive characters, none of `< > * % & : \ ? / #`,
/// not `.` or `..`, and not ending with a period or a space.
pub fn check_resource_name(kind: &str, name: &str, max: usize) -> Result<(), String> {
    let invalid = |why: &str| {
        Err(format!(
            "{kind} name '{}' is invalid: {why}",
            name.escape_debug()
        ))
    };
    let count = name.chars().count();
    if count == 0 || count > max {
        return invalid(&format!("use 1 to {max} characters."));
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || is_deceptive(*c)) {
        return invalid(&format!(
            "it contains U+{:04X} (control, invisible or bidirectional characters, and bytes that are not UTF-8, are not allowed).",
            c as u32
        ));
    }
    if let Some(c) = name.chars().find(|c| "<>*%&:\\?/#".contains(*c)) {
        return invalid(&format!(
            "it contains '{c}' (none of < > * % & : \\ ? / # may appear)."
        ));
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return invalid("it must not end with a period or a space.");
    }
    Ok(())
}

/// RFC 3339 in UTC, as ARM writes timestamps.
pub fn iso(unix: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Azure regions azsim accepts: (name, display name, paired region). The pairs are Azure's
/// documented region pairs (what geo-redundant storage replicates to).
pub const REGIONS: &[(&str, &str, &str)] = &[
    ("eastus", "East US", "westus"),
    ("eastus2", "East US 2", "centralus"),
    ("westus", "West US", "eastus"),
    ("westus2", "West US 2", "westcentralus"),
    ("westus3", "West US 3", "eastus"),
    ("centralus", "Central US", "eastus2"),
    ("northcentralus", "North Central US", "southcentralus"),
    ("southcentralus", "South Central US", "northcentralus"),
    ("westcentralus", "West Central US", "westus2"),
    ("canadacentral", "Canada Central", "canadaeast"),
    ("canadaeast", "Canada East", "canadacentral"),
    ("brazilsouth", "Brazil South", "southcentralus"),
    ("northeurope", "North Europe", "westeurope"),
    ("westeurope", "West Europe", "northeurope"),
    ("uksouth", "UK South", "ukwest"),
    ("ukwest", "UK West", "uksouth"),
    ("francecentral", "France Central", "francesouth"),
    ("francesouth", "France South", "francecentral"),
    ("germanywestcentral", "Germany West Central", "germanynorth"),
    ("germanynorth", "Germany North", "germanywestcentral"),
    ("switzerlandnorth", "Switzerland North", "switzerlandwest"),
    ("switzerlandwest", "Switzerland West", "switzerlandnorth"),
    ("norwayeast", "Norway East", "norwaywest"),
    ("norwaywest", "Norway West", "norwayeast"),
    ("swedencentral", "Sweden Central", "swedensouth"),
    ("swedensouth", "Sweden South", "swedencentral"),
    ("eastasia", "East Asia", "southeastasia"),
    ("southeastasia", "Southeast Asia", "eastasia"),
    ("japaneast", "Japan East", "japanwest"),
    ("japanwest", "Japan West", "japaneast"),
    ("koreacentral", "Korea Central", "koreasouth"),
    ("koreasouth", "Korea South", "koreacentral"),
    ("australiaeast", "Australia East", "australiasoutheast"),
    ("australiasoutheast", "Australia Southeast", "australiaeast"),
    ("centralindia", "Central India", "southindia"),
    ("southindia", "South India", "centralindia"),
    ("uaenorth", "UAE North", "uaecentral"),
    ("uaecentral", "UAE Central", "uaenorth"),
    ("southafricanorth", "South Africa North", "southafricawest"),
    ("southafricawest", "South Africa West", "southafricanorth"),
];

/// The canonical name of a region (`"West Europe"` → `westeurope`), if azsim knows it.
pub fn region(location: &str) -> Option<&'static str> {
    REGIONS
        .iter()
        .find(|(name, display, _)| {
            same_location(location, name) || same_location(location, display)
        })
        .map(|(name, _, _)| *name)
}

/// The paired region of `location` (where geo-redundant copies go).
pub fn paired_region(location: &str) -> Option<&'static str> {
    let name = region(location)?;
    REGIONS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, pair)| *pair)
}

/// The refusal for an unknown region, as ARM words it (`what`: "resource group" or
/// "resource type 'Microsoft.RecoveryServices/vaults'").
pub fn unknown_location(location: &str, what: &str) -> String {
    let names: Vec<&str> = REGIONS.iter().map(|(name, _, _)| *name).collect();
    format!(
        "The provided location '{location}' is not available for {what}. List of available regions is '{}'.",
        names.join(",")
    )
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

    #[test]
    fn deep_json_is_refused_before_parsing() {
        let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
        let error = parse_body::<serde_json::Value>(deep.as_bytes()).unwrap_err();
        assert!(error.contains("deeper than 64"), "{error}");
        let fine = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(parse_body::<serde_json::Value>(fine.as_bytes()).is_ok());
        let quoted = format!("{{\"a\": \"{}\"}}", "[".repeat(100));
        assert!(parse_body::<serde_json::Value>(quoted.as_bytes()).is_ok());
    }

    #[test]
    fn resource_names_from_paths_follow_azure_rules() {
        for bad in [
            "..",
            ".",
            "../../etc/passwd",
            "a/b",
            "a\\b",
            "tab\there",
            "bidi\u{202e}txt",
            "bad\u{FFFD}utf8",
            "trailing.",
            "",
            "per%cent",
        ] {
            assert!(check_resource_name("Policy", bad, 150).is_err(), "{bad:?}");
        }
        for good in [
            "DefaultPolicy",
            "daily-policy_2",
            "Policy (copy)",
            "Ünïcode",
        ] {
            assert!(check_resource_name("Policy", good, 150).is_ok(), "{good:?}");
        }
        assert!(check_display_name("displayName", "evil\u{202e}gnp.exe", 256).is_err());
        assert!(check_display_name("displayName", "line\nbreak", 256).is_err());
        assert!(check_display_name("displayName", "My app", 256).is_ok());
    }

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
