//! The `/backup/v1` paths. Segments that come from users (server names, recovery point and
//! policy names) are percent-encoded here, so callers never build a path by hand.

/// Every route starts here.
pub const PREFIX: &str = "/backup/v1";

pub const REGISTER: &str = "/backup/v1/register";
pub const CHUNKS_MISSING: &str = "/backup/v1/chunks/missing";
pub const CHUNKS_LOCATE: &str = "/backup/v1/chunks/locate";
pub const ITEMS: &str = "/backup/v1/items";
pub const ITEMS_STOP: &str = "/backup/v1/items/stop";
pub const ITEMS_UNDELETE: &str = "/backup/v1/items/undelete";
pub const ITEMS_POLICY: &str = "/backup/v1/items/policy";
pub const JOBS: &str = "/backup/v1/jobs";
pub const RECOVERY_POINTS: &str = "/backup/v1/recoveryPoints";

/// Percent-encodes one path segment (RFC 3986 unreserved characters pass).
pub fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn encryption(server: &str) -> String {
    format!("{PREFIX}/servers/{}/encryption", segment(server))
}

pub fn pack(id: &str) -> String {
    format!("{PREFIX}/packs/{}", segment(id))
}

pub fn job(id: &str) -> String {
    format!("{PREFIX}/jobs/{}", segment(id))
}

pub fn recovery_points(server: &str) -> String {
    format!("{PREFIX}/servers/{}/recoveryPoints", segment(server))
}

pub fn manifest(server: &str, recovery_point: &str) -> String {
    format!(
        "{PREFIX}/servers/{}/recoveryPoints/{}/manifest",
        segment(server),
        segment(recovery_point)
    )
}

pub fn policy(name: &str) -> String {
    format!("{PREFIX}/policies/{}", segment(name))
}

/// The same read in the vault's secondary (paired) region, for cross-region restore:
/// recovery points, manifests, chunk locations and pack ranges
/// (`/backup/v1/x` → `/backup/v1/secondary/x`).
pub fn secondary(route: &str) -> String {
    match route.strip_prefix(PREFIX) {
        Some(rest) => format!("{PREFIX}/secondary{rest}"),
        None => route.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secondary_routes_sit_under_their_prefix() {
        assert_eq!(secondary(&pack("ab")), "/backup/v1/secondary/packs/ab");
        assert_eq!(
            secondary(CHUNKS_LOCATE),
            "/backup/v1/secondary/chunks/locate"
        );
    }

    #[test]
    fn user_segments_are_encoded() {
        assert_eq!(
            encryption("mars01.contoso.local"),
            "/backup/v1/servers/mars01.contoso.local/encryption"
        );
        assert_eq!(
            manifest("a b", "x/y"),
            "/backup/v1/servers/a%20b/recoveryPoints/x%2Fy/manifest"
        );
        assert_eq!(
            policy("Daily (copy)"),
            "/backup/v1/policies/Daily%20%28copy%29"
        );
    }
}
