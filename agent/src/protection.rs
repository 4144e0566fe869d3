//! What the vault keeps and for how long, seen from the machine: the retention policy bound
//! to a protected folder (MARS's "Select Retention Policy" screen), stopping protection
//! with or without deleting the data (which needs the vault's security PIN), and undoing a
//! soft delete. The vault enforces all of it; the agent names the item and asks.

use std::path::Path;

use backup_protocol::{ItemState, StopRequest};
use serde_json::{Value, json};

use crate::agent::Agent;
use crate::error::{AgentError, Result};

/// Retention asked for on the command line; `None` leaves a rule out.
#[derive(Debug, Clone)]
pub struct RetentionChoice {
    /// Daily backups kept this many days.
    pub daily_days: Option<u32>,
    /// Backups of `day` kept this many weeks.
    pub weekly_weeks: Option<u32>,
    /// The first `day` of each month, kept this many months.
    pub monthly_months: Option<u32>,
    /// The first `day` of `month`, kept this many years.
    pub yearly_years: Option<u32>,
    /// Sunday..Saturday.
    pub day: String,
    /// January..December.
    pub month: String,
    /// `HH:MM` UTC, up to three.
    pub times: Vec<String>,
}

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// `sun`, `Sunday`, … → `Sunday`.
fn canonical(given: &str, names: &[&str], what: &str) -> Result<String> {
    let lower = given.to_ascii_lowercase();
    names
        .iter()
        .find(|n| n.to_ascii_lowercase().starts_with(&lower) && lower.len() >= 3)
        .map(|n| n.to_string())
        .ok_or_else(|| {
            AgentError::Usage(format!(
                "{what} '{given}' is not one of {} (three letters are enough)",
                names.join(", ")
            ))
        })
}

impl RetentionChoice {
    /// The MabProtectionPolicy properties the vault stores.
    pub fn to_policy(&self) -> Result<Value> {
        if self.times.is_empty() || self.times.len() > 3 {
            return Err(AgentError::Usage(
                "--times takes one to three times a day, like 09:00,21:00".into(),
            ));
        }
        let mut times = Vec::new();
        for time in &self.times {
            let parsed = chrono::NaiveTime::parse_from_str(time, "%H:%M").map_err(|_| {
                AgentError::Usage(format!("--times '{time}' must be HH:MM (24-hour, UTC)"))
            })?;
            times.push(format!("2020-01-01T{}:00Z", parsed.format("%H:%M")));
        }
        let day = canonical(&self.day, &DAYS, "--day")?;
        let month = canonical(&self.month, &MONTHS, "--month")?;
        let first_day = json!({"daysOfTheWeek": [day], "weeksOfTheMonth": ["First"]});
        let mut retention = json!({"retentionPolicyType": "LongTermRetentionPolicy"});
        let duration = |count: u32, unit: &str| json!({"count": count, "durationType": unit});
        if let Some(days) = self.daily_days {
            retention["dailySchedule"] =
                json!({"retentionTimes": [times[0]], "retentionDuration": duration(days, "Days")});
        }
        if let Some(weeks) = self.weekly_weeks {
            retention["weeklySchedule"] = json!({"daysOfTheWeek": [day], "retentionTimes": [times[0]],
                "retentionDuration": duration(weeks, "Weeks")});
        }
        if let Some(months) = self.monthly_months {
            retention["monthlySchedule"] = json!({"retentionScheduleFormatType": "Weekly",
                "retentionScheduleWeekly": first_day, "retentionTimes": [times[0]],
                "retentionDuration": duration(months, "Months")});
        }
        if let Some(years) = self.yearly_years {
            retention["yearlySchedule"] = json!({"retentionScheduleFormatType": "Weekly",
                "monthsOfYear": [month], "retentionScheduleWeekly": first_day,
                "retentionTimes": [times[0]], "retentionDuration": duration(years, "Years")});
        }
        Ok(json!({
            "backupManagementType": "MAB",
            "schedulePolicy": {"schedulePolicyType": "SimpleSchedulePolicy",
                "scheduleRunFrequency": "Daily", "scheduleRunTimes": times},
            "retentionPolicy": retention,
        }))
    }
}

/// The vault's item for a protected folder of this machine.
pub async fn find_item(agent: &Agent, path: &Path) -> Result<ItemState> {
    let canonical = std::fs::canonicalize(path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.display().to_string());
    agent
        .vault
        .items()
        .await?
        .into_iter()
        .find(|i| i.path == canonical)
        .ok_or_else(|| {
            AgentError::Usage(format!(
                "{canonical} is not a protected item of this server; back it up first (see `mars-agent policy show`)"
            ))
        })
}

/// The items of this server with their policies.
pub async fn show(agent: &Agent) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for item in agent.vault.items().await? {
        let policy = agent.vault.policy(&item.policy).await?;
        let mut shown = serde_json::to_value(&item).expect("an item serialises");
        shown["retention"] = policy.properties["retentionPolicy"].clone();
        shown["schedule"] = policy.properties["schedulePolicy"].clone();
        out.push(shown);
    }
    Ok(out)
}

/// Stores `policy` as `name` and binds it to the item of `path` (protecting the folder if
/// it is not yet). Existing points are re-planned by the vault.
pub async fn set_policy(agent: &Agent, path: &Path, name: &str, policy: &Value) -> Result<Value> {
    let root = std::fs::canonicalize(path).map_err(|e| AgentError::io(path, e))?;
    let root = root
        .to_str()
        .ok_or_else(|| AgentError::Usage(format!("{} is not a UTF-8 path", root.display())))?
        .to_string();
    let item = agent.vault.protect(&root).await?;
    agent.vault.put_policy(name, policy.clone()).await?;
    agent.vault.bind_policy(&item, name).await?;
    Ok(json!({"item": item, "path": root, "policy": name}))
}

/// Stops protection of `path`; with `delete_data`, its backup data goes (soft delete keeps
/// it recoverable for the vault's soft-delete days).
pub async fn stop(
    agent: &Agent,
    path: &Path,
    delete_data: bool,
    security_pin: Option<&str>,
) -> Result<Value> {
    let item = find_item(agent, path).await?;
    agent
        .vault
        .stop(&StopRequest {
            item: item.item.clone(),
            delete_data,
            security_pin: security_pin.map(str::to_string),
        })
        .await?;
    Ok(json!({"item": item.item, "path": item.path, "deleteData": delete_data}))
}

/// Brings back soft-deleted backup data of `path`.
pub async fn undelete(agent: &Agent, path: &Path) -> Result<Value> {
    let item = find_item(agent, path).await?;
    agent.vault.undelete(&item.item).await?;
    Ok(json!({"item": item.item, "path": item.path, "undeleted": true}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_choice_becomes_a_mab_policy() {
        let choice = RetentionChoice {
            daily_days: Some(30),
            weekly_weeks: Some(12),
            monthly_months: None,
            yearly_years: Some(5),
            day: "sun".into(),
            month: "jan".into(),
            times: vec!["21:00".into()],
        };
        let policy = choice.to_policy().unwrap();
        assert_eq!(
            policy["retentionPolicy"]["weeklySchedule"]["daysOfTheWeek"][0],
            "Sunday"
        );
        assert_eq!(
            policy["retentionPolicy"]["yearlySchedule"]["monthsOfYear"][0],
            "January"
        );
        assert!(policy["retentionPolicy"].get("monthlySchedule").is_none());
        assert_eq!(
            policy["schedulePolicy"]["scheduleRunTimes"][0],
            "2020-01-01T21:00:00Z"
        );
        let bad = RetentionChoice {
            day: "xx".into(),
            ..choice
        };
        assert!(bad.to_policy().is_err());
    }
}
