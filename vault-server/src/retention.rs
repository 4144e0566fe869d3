//! How long a recovery point is kept: the retention tags it earns from its item's MAB
//! policy (daily, weekly, monthly, yearly, judged on its UTC creation date) and the expiry
//! the longest of them gives. A Back Up Now point with its own `retain-until` keeps that
//! date instead (tag `AdHoc`).

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeDelta, Utc};
use serde_json::Value;

/// Tags and expiry of one recovery point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// `Daily`, `Weekly`, `Monthly`, `Yearly` (in that order), or `AdHoc`.
    pub tags: Vec<&'static str>,
    /// Unix seconds.
    pub expires: i64,
}

impl Retention {
    /// The tags as ARM's `ruleName` shows them (`Daily,Weekly`).
    pub fn rule(&self) -> String {
        self.tags.join(",")
    }
}

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
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
const WEEKS: [&str; 4] = ["First", "Second", "Third", "Fourth"];

/// The retention of a point created at `created` under `policy` (MabProtectionPolicy
/// properties), or until `retain_until` when the user chose a date.
pub fn plan(policy: &Value, created: i64, retain_until: Option<i64>) -> Retention {
    if let Some(until) = retain_until {
        return Retention {
            tags: vec!["AdHoc"],
            expires: until,
        };
    }
    let retention = &policy["retentionPolicy"];
    let at = DateTime::<Utc>::from_timestamp(created, 0).unwrap_or_default();
    let date = at.date_naive();
    let mut tags = Vec::new();
    let mut expires: Option<DateTime<Utc>> = None;
    let mut keep = |tag: &'static str, until: Option<DateTime<Utc>>| {
        if let Some(until) = until {
            tags.push(tag);
            expires = Some(expires.map_or(until, |e| e.max(until)));
        }
    };
    let daily = &retention["dailySchedule"];
    if daily.is_object() {
        keep("Daily", add(at, &daily["retentionDuration"]));
    }
    let weekly = &retention["weeklySchedule"];
    if weekly.is_object() && names_weekday(&weekly["daysOfTheWeek"], date) {
        keep("Weekly", add(at, &weekly["retentionDuration"]));
    }
    let monthly = &retention["monthlySchedule"];
    if monthly.is_object() && day_of_month_matches(monthly, date) {
        keep("Monthly", add(at, &monthly["retentionDuration"]));
    }
    let yearly = &retention["yearlySchedule"];
    if yearly.is_object()
        && listed(&yearly["monthsOfYear"], MONTHS[date.month0() as usize])
        && day_of_month_matches(yearly, date)
    {
        keep("Yearly", add(at, &yearly["retentionDuration"]));
    }
    match expires {
        Some(until) => Retention {
            tags,
            expires: until.timestamp(),
        },
        // A point on a day no rule names (a Back Up Now on another day) is kept as long as
        // the shortest rule would keep it, as MARS keeps ad-hoc backups.
        None => Retention {
            tags: vec!["AdHoc"],
            expires: shortest(retention)
                .and_then(|d| add(at, d))
                .unwrap_or(at + TimeDelta::days(30))
                .timestamp(),
        },
    }
}

fn shortest(retention: &Value) -> Option<&Value> {
    [
        "dailySchedule",
        "weeklySchedule",
        "monthlySchedule",
        "yearlySchedule",
    ]
    .iter()
    .map(|k| &retention[*k]["retentionDuration"])
    .find(|d| d.is_object())
}

/// `at` plus `{count, durationType}` (calendar months and years).
fn add(at: DateTime<Utc>, duration: &Value) -> Option<DateTime<Utc>> {
    let count = duration["count"].as_i64().filter(|c| *c > 0)?;
    match duration["durationType"]
        .as_str()?
        .to_ascii_lowercase()
        .as_str()
    {
        "days" => at.checked_add_signed(TimeDelta::days(count)),
        "weeks" => at.checked_add_signed(TimeDelta::weeks(count)),
        "months" => at.checked_add_months(Months::new(u32::try_from(count).ok()?)),
        "years" => at.checked_add_months(Months::new(u32::try_from(count * 12).ok()?)),
        _ => None,
    }
}

fn listed(names: &Value, wanted: &str) -> bool {
    names
        .as_array()
        .into_iter()
        .flatten()
        .any(|n| n.as_str().is_some_and(|n| n.eq_ignore_ascii_case(wanted)))
}

fn names_weekday(names: &Value, date: NaiveDate) -> bool {
    listed(
        names,
        WEEKDAYS[date.weekday().num_days_from_monday() as usize],
    )
}

fn last_day_of_month(date: NaiveDate) -> bool {
    date.succ_opt()
        .is_none_or(|next| next.month() != date.month())
}

/// Whether `date` is the day a monthly or yearly rule names: a weekday in given weeks of
/// the month (`Weekly` format), or given dates of the month (`Daily` format).
fn day_of_month_matches(rule: &Value, date: NaiveDate) -> bool {
    let format = rule["retentionScheduleFormatType"]
        .as_str()
        .unwrap_or("Weekly");
    if format.eq_ignore_ascii_case("Daily") {
        return rule["retentionScheduleDaily"]["daysOfTheMonth"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|day| {
                if day["isLast"].as_bool() == Some(true) {
                    last_day_of_month(date)
                } else {
                    day["date"].as_u64() == Some(u64::from(date.day()))
                }
            });
    }
    let weekly = &rule["retentionScheduleWeekly"];
    if !names_weekday(&weekly["daysOfTheWeek"], date) {
        return false;
    }
    let week = WEEKS.get(((date.day() - 1) / 7) as usize).copied();
    let is_last = date.day() + 7 > days_in_month(date);
    week.is_some_and(|w| listed(&weekly["weeksOfTheMonth"], w))
        || (is_last && listed(&weekly["weeksOfTheMonth"], "Last"))
}

fn days_in_month(date: NaiveDate) -> u32 {
    let first_next = if date.month() == 12 {
        NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
    };
    first_next
        .and_then(|d| d.pred_opt())
        .map(|d| d.day())
        .unwrap_or(28)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text).unwrap().timestamp()
    }

    fn policy() -> Value {
        json!({"retentionPolicy": {
            "retentionPolicyType": "LongTermRetentionPolicy",
            "dailySchedule": {"retentionDuration": {"count": 7, "durationType": "Days"}},
            "weeklySchedule": {"daysOfTheWeek": ["Sunday"], "retentionDuration": {"count": 4, "durationType": "Weeks"}},
            "monthlySchedule": {"retentionScheduleFormatType": "Weekly",
                "retentionScheduleWeekly": {"daysOfTheWeek": ["Sunday"], "weeksOfTheMonth": ["First"]},
                "retentionDuration": {"count": 3, "durationType": "Months"}},
            "yearlySchedule": {"retentionScheduleFormatType": "Daily", "monthsOfYear": ["January"],
                "retentionScheduleDaily": {"daysOfTheMonth": [{"date": 1, "isLast": false}]},
                "retentionDuration": {"count": 2, "durationType": "Years"}},
        }})
    }

    #[test]
    fn tags_come_from_the_date_and_the_longest_rule_wins() {
        // Wednesday 2026-12-02: daily only.
        let wednesday = plan(&policy(), at("2026-12-02T21:00:00Z"), None);
        assert_eq!(wednesday.tags, ["Daily"]);
        assert_eq!(wednesday.expires, at("2026-12-09T21:00:00Z"));
        // Sunday 2026-12-06, the first Sunday of December: daily, weekly and monthly.
        let sunday = plan(&policy(), at("2026-12-06T21:00:00Z"), None);
        assert_eq!(sunday.tags, ["Daily", "Weekly", "Monthly"]);
        assert_eq!(sunday.expires, at("2027-03-06T21:00:00Z"));
        // Friday 2027-01-01: daily and yearly (the 1st of January).
        let new_year = plan(&policy(), at("2027-01-01T21:00:00Z"), None);
        assert_eq!(new_year.tags, ["Daily", "Yearly"]);
        assert_eq!(new_year.expires, at("2029-01-01T21:00:00Z"));
        assert_eq!(new_year.rule(), "Daily,Yearly");
    }

    #[test]
    fn retain_until_and_days_no_rule_names() {
        let chosen = plan(
            &policy(),
            at("2026-12-02T21:00:00Z"),
            Some(at("2030-01-01T00:00:00Z")),
        );
        assert_eq!(
            (chosen.tags, chosen.expires),
            (vec!["AdHoc"], at("2030-01-01T00:00:00Z"))
        );
        let weekly_only = json!({"retentionPolicy": {
            "weeklySchedule": {"daysOfTheWeek": ["Sunday"], "retentionDuration": {"count": 4, "durationType": "Weeks"}}}});
        let monday = plan(&weekly_only, at("2026-12-07T10:00:00Z"), None);
        assert_eq!(monday.tags, ["AdHoc"]);
        assert_eq!(monday.expires, at("2027-01-04T10:00:00Z"));
    }

    #[test]
    fn last_weeks_and_last_days_of_the_month() {
        let rule = json!({"retentionScheduleFormatType": "Weekly",
            "retentionScheduleWeekly": {"daysOfTheWeek": ["Thursday"], "weeksOfTheMonth": ["Last"]}});
        // 2026-12-31 is the last Thursday of December; 2026-12-24 is not.
        assert!(day_of_month_matches(
            &rule,
            NaiveDate::from_ymd_opt(2026, 12, 31).unwrap()
        ));
        assert!(!day_of_month_matches(
            &rule,
            NaiveDate::from_ymd_opt(2026, 12, 24).unwrap()
        ));
        let last = json!({"retentionScheduleFormatType": "Daily",
            "retentionScheduleDaily": {"daysOfTheMonth": [{"isLast": true}]}});
        assert!(day_of_month_matches(
            &last,
            NaiveDate::from_ymd_opt(2027, 2, 28).unwrap()
        ));
        assert!(!day_of_month_matches(
            &last,
            NaiveDate::from_ymd_opt(2027, 2, 27).unwrap()
        ));
    }
}
