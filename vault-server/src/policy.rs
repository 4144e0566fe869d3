//! Validation of a MARS (MAB) protection policy: a simple daily or weekly schedule with at
//! most three run times a day, and long-term retention within the MARS ranges (daily
//! 7–9999 days, weekly 4–5163 weeks, monthly 3–1188 months, yearly 1–99 years).

use serde_json::Value;

use crate::error::{Result, VsError};

const DAYS: &[&str] = &[
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

fn invalid(message: String) -> VsError {
    VsError::InvalidPolicy(message)
}

/// The policy every new vault has (the MARS wizard's defaults: daily at 21:00 UTC, daily
/// points kept 30 days).
pub const DEFAULT_POLICY: &str = "DefaultPolicy";

pub fn default_mab() -> Value {
    serde_json::json!({
        "backupManagementType": "MAB",
        "schedulePolicy": {
            "schedulePolicyType": "SimpleSchedulePolicy",
            "scheduleRunFrequency": "Daily",
            "scheduleRunTimes": ["2020-01-01T21:00:00Z"],
        },
        "retentionPolicy": {
            "retentionPolicyType": "LongTermRetentionPolicy",
            "dailySchedule": {
                "retentionTimes": ["2020-01-01T21:00:00Z"],
                "retentionDuration": {"count": 30, "durationType": "Days"},
            },
        },
    })
}

/// Checks `properties` of a PUT body and returns them in canonical form.
pub fn validate(properties: &Value) -> Result<Value> {
    let kind = properties["backupManagementType"]
        .as_str()
        .unwrap_or_default();
    if !kind.eq_ignore_ascii_case("MAB") {
        return Err(invalid(format!(
            "properties.backupManagementType '{kind}' is not simulated; only MAB (MARS agent) policies are."
        )));
    }
    let schedule = &properties["schedulePolicy"];
    if schedule["schedulePolicyType"].as_str() != Some("SimpleSchedulePolicy") {
        return Err(invalid(
            "properties.schedulePolicy must be a SimpleSchedulePolicy.".into(),
        ));
    }
    let frequency = schedule["scheduleRunFrequency"]
        .as_str()
        .unwrap_or_default();
    let times = schedule["scheduleRunTimes"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    match frequency.to_ascii_lowercase().as_str() {
        "daily" | "weekly" => {}
        _ => {
            return Err(invalid(format!(
                "scheduleRunFrequency '{frequency}' is not valid for MARS; use Daily or Weekly."
            )));
        }
    }
    if !(1..=3).contains(&times) {
        return Err(invalid(format!(
            "scheduleRunTimes has {times} entries; MARS backs up at 1 to 3 times a day."
        )));
    }
    if frequency.eq_ignore_ascii_case("weekly") {
        let days = schedule["scheduleRunDays"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if days.is_empty()
            || days
                .iter()
                .any(|d| !DAYS.contains(&d.as_str().unwrap_or_default()))
        {
            return Err(invalid(
                "A weekly schedule needs scheduleRunDays, each one of Sunday..Saturday.".into(),
            ));
        }
    }
    let retention = &properties["retentionPolicy"];
    if retention["retentionPolicyType"].as_str() != Some("LongTermRetentionPolicy") {
        return Err(invalid(
            "properties.retentionPolicy must be a LongTermRetentionPolicy.".into(),
        ));
    }
    let ranges = [
        ("dailySchedule", "Days", 7, 9999),
        ("weeklySchedule", "Weeks", 4, 5163),
        ("monthlySchedule", "Months", 3, 1188),
        ("yearlySchedule", "Years", 1, 99),
    ];
    let mut any = false;
    for (schedule, unit, min, max) in ranges {
        let Some(rule) = retention.get(schedule).filter(|r| !r.is_null()) else {
            continue;
        };
        any = true;
        let duration = &rule["retentionDuration"];
        let count = duration["count"].as_i64().unwrap_or(-1);
        let kind = duration["durationType"].as_str().unwrap_or_default();
        if !kind.eq_ignore_ascii_case(unit) {
            return Err(invalid(format!(
                "retentionPolicy.{schedule}.retentionDuration.durationType must be {unit}; '{kind}' was given."
            )));
        }
        if !(min..=max).contains(&count) {
            return Err(invalid(format!(
                "retentionPolicy.{schedule} keeps {count} {unit}; MARS allows {min} to {max} {unit}."
            )));
        }
    }
    if !any {
        return Err(invalid(
            "The retention policy keeps nothing: add at least a daily or weekly schedule.".into(),
        ));
    }
    let mut canonical = properties.clone();
    canonical["backupManagementType"] = "MAB".into();
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_policy_is_valid() {
        validate(&default_mab()).unwrap();
    }
    use serde_json::json;

    fn policy(times: usize, daily_days: i64) -> Value {
        json!({
            "backupManagementType": "MAB",
            "schedulePolicy": {"schedulePolicyType": "SimpleSchedulePolicy", "scheduleRunFrequency": "Daily",
                "scheduleRunTimes": vec!["2025-01-01T00:00:00Z"; times]},
            "retentionPolicy": {"retentionPolicyType": "LongTermRetentionPolicy",
                "dailySchedule": {"retentionTimes": ["2025-01-01T00:00:00Z"],
                    "retentionDuration": {"count": daily_days, "durationType": "Days"}}},
        })
    }

    #[test]
    fn ranges_and_run_times_are_enforced() {
        assert!(validate(&policy(1, 30)).is_ok());
        assert!(validate(&policy(3, 9999)).is_ok());
        assert!(validate(&policy(4, 30)).is_err());
        assert!(validate(&policy(1, 6)).is_err());
        assert!(validate(&policy(1, 10000)).is_err());
        let mut vm = policy(1, 30);
        vm["backupManagementType"] = "AzureIaasVM".into();
        assert!(validate(&vm).is_err());
    }
}
