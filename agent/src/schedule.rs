//! Backup schedules (MARS: Schedule Backup → Specify Backup Schedule): up to three times a
//! day, every day or on chosen weekdays, per protected folder. A schedule lives in the
//! agent's configuration (what `mars-agent service` runs) and on the vault, as the
//! `schedulePolicy` of the item's MabProtectionPolicy (what ARM, the SDK and `az` show).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, NaiveTime, TimeDelta, Utc, Weekday};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::agent::Agent;
use crate::config::Home;
use crate::error::{AgentError, Result};

/// One protected folder's schedule.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// The protected folder (absolute).
    pub path: PathBuf,
    #[serde(default)]
    pub excludes: Vec<String>,
    /// `HH:MM`, UTC on the service's clock; one to three.
    pub times: Vec<String>,
    /// Weekdays (`Monday`…); empty means every day.
    #[serde(default)]
    pub days: Vec<String>,
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("Monday", Weekday::Mon),
    ("Tuesday", Weekday::Tue),
    ("Wednesday", Weekday::Wed),
    ("Thursday", Weekday::Thu),
    ("Friday", Weekday::Fri),
    ("Saturday", Weekday::Sat),
    ("Sunday", Weekday::Sun),
];

impl Schedule {
    /// Checks and canonicalises what the command line gave.
    pub fn new(
        path: &Path,
        excludes: Vec<String>,
        times: &[String],
        days: &[String],
    ) -> Result<Self> {
        let path = std::fs::canonicalize(path).map_err(|e| AgentError::io(path, e))?;
        if times.is_empty() || times.len() > 3 {
            return Err(AgentError::Usage(
                "--times takes one to three times a day, like 09:00,13:00,21:00 (MARS's limit)"
                    .into(),
            ));
        }
        let mut canonical_times = Vec::new();
        for time in times {
            let parsed = NaiveTime::parse_from_str(time.trim(), "%H:%M").map_err(|_| {
                AgentError::Usage(format!("--times '{time}' must be HH:MM (24-hour, UTC)"))
            })?;
            canonical_times.push(parsed.format("%H:%M").to_string());
        }
        canonical_times.sort();
        canonical_times.dedup();
        let mut canonical_days = Vec::new();
        for day in days {
            let lower = day.trim().to_ascii_lowercase();
            let found = WEEKDAYS
                .iter()
                .find(|(name, _)| lower.len() >= 3 && name.to_ascii_lowercase().starts_with(&lower))
                .ok_or_else(|| {
                    AgentError::Usage(format!(
                        "--days '{day}' is not a weekday (mon, tue, wed, thu, fri, sat, sun)"
                    ))
                })?;
            if !canonical_days.contains(&found.0.to_string()) {
                canonical_days.push(found.0.to_string());
            }
        }
        Ok(Schedule {
            path,
            excludes,
            times: canonical_times,
            days: canonical_days,
        })
    }

    fn runs_on(&self, weekday: Weekday) -> bool {
        self.days.is_empty()
            || self
                .days
                .iter()
                .any(|d| WEEKDAYS.iter().any(|(name, w)| name == d && *w == weekday))
    }

    /// The scheduled instants in `(after, until]`, oldest first.
    pub fn slots(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut day = after.date_naive();
        while day <= until.date_naive() {
            if self.runs_on(day.weekday()) {
                for time in &self.times {
                    let Ok(at) = NaiveTime::parse_from_str(time, "%H:%M") else {
                        continue;
                    };
                    let slot = day.and_time(at).and_utc();
                    if slot > after && slot <= until {
                        out.push(slot);
                    }
                }
            }
            day += TimeDelta::days(1);
        }
        out.sort();
        out
    }

    /// The MabProtectionPolicy `schedulePolicy` for this schedule.
    pub fn schedule_policy(&self) -> Value {
        let times: Vec<String> = self
            .times
            .iter()
            .map(|t| format!("2020-01-01T{t}:00Z"))
            .collect();
        if self.days.is_empty() {
            json!({"schedulePolicyType": "SimpleSchedulePolicy", "scheduleRunFrequency": "Daily",
                   "scheduleRunTimes": times})
        } else {
            json!({"schedulePolicyType": "SimpleSchedulePolicy", "scheduleRunFrequency": "Weekly",
                   "scheduleRunDays": self.days, "scheduleRunTimes": times})
        }
    }
}

/// The policy name that carries a folder's schedule on the vault.
fn policy_name(server: &str, path: &Path) -> String {
    let digest = blake3::hash(path.as_os_str().as_encoded_bytes()).to_hex();
    let server: String = server
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(100)
        .collect();
    format!("schedule-{server}-{}", &digest[..8])
}

/// Stores `schedule` on the vault (the item's policy keeps its retention and gets this
/// schedule) and in the agent's configuration, replacing the folder's earlier schedule.
pub async fn set(agent: &Agent, home: &Home, schedule: Schedule) -> Result<Value> {
    let path = schedule
        .path
        .to_str()
        .ok_or_else(|| {
            AgentError::Usage(format!("{} is not a UTF-8 path", schedule.path.display()))
        })?
        .to_string();
    let item = agent.vault.protect(&path).await?;
    let current = agent
        .vault
        .items()
        .await?
        .into_iter()
        .find(|i| i.item == item)
        .map(|i| i.policy)
        .unwrap_or_else(|| "DefaultPolicy".into());
    let mut policy = agent.vault.policy(&current).await?.properties;
    policy["schedulePolicy"] = schedule.schedule_policy();
    let name = policy_name(&agent.registration.server_name, &schedule.path);
    agent.vault.put_policy(&name, policy).await?;
    agent.vault.bind_policy(&item, &name).await?;
    let mut config = home.load()?;
    config.schedules.retain(|s| s.path != schedule.path);
    config.schedules.push(schedule.clone());
    home.save(&config)?;
    Ok(
        json!({"path": path, "item": item, "policy": name, "times": schedule.times, "days": schedule.days}),
    )
}

/// Removes a folder's schedule here (the service stops running it); the vault keeps the
/// item's policy and its retention.
pub fn clear(home: &Home, path: &Path) -> Result<bool> {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mut config = home.load()?;
    let before = config.schedules.len();
    config.schedules.retain(|s| s.path != path);
    let removed = config.schedules.len() != before;
    home.save(&config)?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn slots_fall_on_the_times_and_days_given() {
        let dir = tempfile::tempdir().unwrap();
        let daily = Schedule::new(
            dir.path(),
            vec![],
            &["21:00".into(), "09:00".into(), "13:00".into()],
            &[],
        )
        .unwrap();
        assert_eq!(daily.times, ["09:00", "13:00", "21:00"]);
        let two_days = daily.slots(at("2026-12-01T00:00:00Z"), at("2026-12-03T00:00:00Z"));
        assert_eq!(two_days.len(), 6);
        assert_eq!(two_days[0], at("2026-12-01T09:00:00Z"));
        // A slot exactly at the start was already due before: not again.
        assert!(
            daily
                .slots(at("2026-12-01T09:00:00Z"), at("2026-12-01T12:00:00Z"))
                .is_empty()
        );
        let weekly = Schedule::new(
            dir.path(),
            vec![],
            &["10:00".into()],
            &["mon".into(), "fri".into()],
        )
        .unwrap();
        assert_eq!(weekly.days, ["Monday", "Friday"]);
        // 2026-11-30 is a Monday, 2026-12-04 a Friday.
        let week = weekly.slots(at("2026-11-30T00:00:00Z"), at("2026-12-07T00:00:00Z"));
        assert_eq!(
            week,
            vec![at("2026-11-30T10:00:00Z"), at("2026-12-04T10:00:00Z")]
        );
        assert_eq!(weekly.schedule_policy()["scheduleRunFrequency"], "Weekly");
        assert!(Schedule::new(dir.path(), vec![], &["25:00".into()], &[]).is_err());
        assert!(
            Schedule::new(
                dir.path(),
                vec![],
                &["1:00".into(), "2:00".into(), "3:00".into(), "4:00".into()],
                &[]
            )
            .is_err()
        );
        assert!(Schedule::new(dir.path(), vec![], &["10:00".into()], &["someday".into()]).is_err());
    }
}
