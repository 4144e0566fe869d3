//! Bandwidth throttling (MARS: Change Properties → Throttling): one upload rate during work
//! hours on work days, another outside them, between 512 Kbps and 1023 Mbps. Periods are
//! judged on the service's clock at each upload, so the rate changes mid-backup when the
//! period does. Uploads are paced as a leaky bucket: each pack is released once it and the
//! bytes before it would have drained at the current rate.

use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::error::{AgentError, Result};

/// MARS's limits, in bytes per second.
const MIN_RATE: u64 = 512 * 1000 / 8;
const MAX_RATE: u64 = 1023 * 1000 * 1000 / 8;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Throttle {
    /// `HH:MM`, UTC on the service's clock.
    pub work_start: String,
    pub work_end: String,
    /// Weekdays as numbers from Monday = 0.
    pub work_days: Vec<u32>,
    /// Bytes per second.
    pub work_rate: u64,
    pub non_work_rate: u64,
}

/// `2MiB/s`, `512KiB/s`, `16Mbps`, `512Kbps`, `1000000` (bytes/s) → bytes per second.
pub fn parse_rate(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| AgentError::Usage(format!("rate '{text}' must be like 2MiB/s or 16Mbps")))?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b/s" => 1.0,
        "kib/s" => 1024.0,
        "mib/s" => 1024.0 * 1024.0,
        "kbps" => 1000.0 / 8.0,
        "mbps" => 1000.0 * 1000.0 / 8.0,
        other => {
            return Err(AgentError::Usage(format!(
                "unknown rate unit '{other}' in '{text}': use KiB/s, MiB/s, Kbps or Mbps"
            )));
        }
    };
    let rate = (number * factor).round() as u64;
    if !(MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(AgentError::Usage(format!(
            "rate '{text}' is outside MARS's range, 512 Kbps to 1023 Mbps"
        )));
    }
    Ok(rate)
}

/// `09:00-18:00` → (start, end).
pub fn parse_hours(text: &str) -> Result<(String, String)> {
    let bad = || AgentError::Usage(format!("--work-hours '{text}' must be like 09:00-18:00"));
    let (start, end) = text.split_once('-').ok_or_else(bad)?;
    let start = NaiveTime::parse_from_str(start.trim(), "%H:%M").map_err(|_| bad())?;
    let end = NaiveTime::parse_from_str(end.trim(), "%H:%M").map_err(|_| bad())?;
    if start >= end {
        return Err(bad());
    }
    Ok((
        start.format("%H:%M").to_string(),
        end.format("%H:%M").to_string(),
    ))
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// `mon-fri`, `mon,wed,fri`, `sat-sun` → weekday numbers (Monday = 0).
pub fn parse_days(text: &str) -> Result<Vec<u32>> {
    let day = |name: &str| {
        let lower = name.trim().to_ascii_lowercase();
        DAYS.iter()
            .position(|d| lower.len() >= 3 && lower.starts_with(d))
            .map(|p| p as u32)
            .ok_or_else(|| AgentError::Usage(format!("--work-days '{name}' is not a weekday")))
    };
    let mut days = Vec::new();
    for part in text.split(',') {
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (day(from)?, day(to)?);
                if from > to {
                    return Err(AgentError::Usage(format!(
                        "--work-days '{part}' runs backwards (use mon-fri)"
                    )));
                }
                days.extend(from..=to);
            }
            None => days.push(day(part)?),
        }
    }
    days.sort();
    days.dedup();
    Ok(days)
}

impl Throttle {
    /// The rate in force at `now` (service time).
    pub fn rate_at(&self, now: DateTime<Utc>) -> u64 {
        let weekday = now.weekday().num_days_from_monday();
        let time = now.time().format("%H:%M").to_string();
        let work =
            self.work_days.contains(&weekday) && time >= self.work_start && time < self.work_end;
        if work {
            self.work_rate
        } else {
            self.non_work_rate
        }
    }

    fn weekday_names(&self) -> Vec<&'static str> {
        self.work_days
            .iter()
            .filter_map(|d| DAYS.get(*d as usize).copied())
            .collect()
    }

    pub fn describe(&self) -> String {
        format!(
            "{}/s during {}-{} on {}, {}/s otherwise",
            human_rate(self.work_rate),
            self.work_start,
            self.work_end,
            self.weekday_names().join(","),
            human_rate(self.non_work_rate)
        )
    }
}

fn human_rate(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / 1024.0 / 1024.0)
    } else {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    }
}

/// Paces uploads to the throttle's current rate (no pacing without a throttle).
pub struct Pacer {
    throttle: Option<Throttle>,
    /// When the bytes admitted so far will have drained.
    drained_at: Mutex<Instant>,
}

impl Pacer {
    pub fn new(throttle: Option<Throttle>) -> Self {
        Pacer {
            throttle,
            drained_at: Mutex::new(Instant::now()),
        }
    }

    /// Waits until `bytes`, queued behind what was admitted before, would have been sent at
    /// the rate in force at `service_now`.
    pub async fn admit(&self, bytes: u64, service_now: DateTime<Utc>) {
        let Some(throttle) = &self.throttle else {
            return;
        };
        let rate = throttle.rate_at(service_now).max(1);
        // The pack takes bytes/rate after the ones before it have drained; it is released
        // when that time is up (as if it had trickled out at the rate).
        let release = {
            let mut drained = self.drained_at.lock().await;
            let start = (*drained).max(Instant::now());
            *drained = start + Duration::from_secs_f64(bytes as f64 / rate as f64);
            *drained
        };
        tokio::time::sleep_until(release.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_hours_and_days_parse_within_mars_limits() {
        assert_eq!(parse_rate("2MiB/s").unwrap(), 2 * 1024 * 1024);
        assert_eq!(parse_rate("512Kbps").unwrap(), 64_000);
        assert_eq!(parse_rate("16Mbps").unwrap(), 2_000_000);
        assert!(parse_rate("100Kbps").is_err(), "below 512 Kbps");
        assert!(parse_rate("2000Mbps").is_err(), "above 1023 Mbps");
        assert!(parse_rate("fast").is_err());
        assert_eq!(
            parse_hours("09:00-18:00").unwrap(),
            ("09:00".into(), "18:00".into())
        );
        assert!(parse_hours("18:00-09:00").is_err());
        assert_eq!(parse_days("mon-fri").unwrap(), vec![0, 1, 2, 3, 4]);
        assert_eq!(parse_days("sat,mon").unwrap(), vec![0, 5]);
        assert!(parse_days("fri-mon").is_err());
    }

    #[test]
    fn the_period_decides_the_rate() {
        let throttle = Throttle {
            work_start: "09:00".into(),
            work_end: "18:00".into(),
            work_days: vec![0, 1, 2, 3, 4],
            work_rate: 1_000_000,
            non_work_rate: 8_000_000,
        };
        // 2026-11-30 is a Monday.
        let at = |t: &str| t.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(throttle.rate_at(at("2026-11-30T10:00:00Z")), 1_000_000);
        assert_eq!(throttle.rate_at(at("2026-11-30T18:00:00Z")), 8_000_000);
        assert_eq!(
            throttle.rate_at(at("2026-12-05T10:00:00Z")),
            8_000_000,
            "Saturday"
        );
    }
}
