//! How results look: readable UTC times for people, RFC 3339 for `--json`, and the tables
//! of recovery points and jobs.

use backup_protocol::{Job, RecoveryPoint};
use serde_json::Value;

/// Unix seconds as a local-free, readable UTC time (`-` when absent).
pub fn readable(value: &Value) -> String {
    value
        .as_i64()
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

/// Unix seconds as RFC 3339 for `--json` (null stays null).
pub fn rfc3339(value: &Value) -> Value {
    value
        .as_i64()
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
        .unwrap_or(Value::Null)
}

/// Recovery points as JSON (times RFC 3339) and as lines.
pub fn recovery_points(points: &[RecoveryPoint]) -> (Value, String) {
    let human = points
        .iter()
        .map(|p| {
            format!(
                "{}  {}  expires {}  {:<22} {}",
                p.name,
                readable(&p.created.into()),
                readable(&p.expires.into()),
                p.tags.join(","),
                p.path
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let value = points
        .iter()
        .map(|p| {
            let mut json = serde_json::to_value(p).expect("a point serialises");
            json["created"] = rfc3339(&p.created.into());
            json["expires"] = rfc3339(&p.expires.into());
            json
        })
        .collect();
    (Value::Array(value), human)
}

/// Jobs as JSON (times RFC 3339) and as lines.
pub fn jobs(jobs: &[Job]) -> (Value, String) {
    let human = jobs
        .iter()
        .map(|j| {
            format!(
                "{}  {}  {:<8} {:<22} {}",
                j.id,
                readable(&j.start.into()),
                j.operation,
                j.status,
                j.entity
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let value = jobs
        .iter()
        .map(|j| {
            let mut json = serde_json::to_value(j).expect("a job serialises");
            json["start"] = rfc3339(&j.start.into());
            json["end"] = rfc3339(&j.end.into());
            json
        })
        .collect();
    (Value::Array(value), human)
}
