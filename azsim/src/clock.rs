//! `azsim clock [advance DURATION | set TIME | reset]`: moves the simulated clock of every
//! running service with an admin-plane token of the well-known admin app. All services are
//! *set* to the same target time (never advanced one by one), so services sharing a
//! process and services in separate processes end up agreeing.

use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sim_core::well_known;

use crate::Target;

#[derive(clap::Args)]
pub struct ClockArgs {
    #[command(subcommand)]
    action: Option<ClockAction>,
    #[command(flatten)]
    target: Target,
}

#[derive(clap::Subcommand)]
enum ClockAction {
    /// Move forward, e.g. `30d`, `12h`, `90m`, `45s` (or plain seconds).
    Advance { duration: String },
    /// Move to an RFC 3339 time, e.g. `2027-01-01T00:00:00Z`.
    Set { time: String },
    /// Return to real time.
    Reset,
}

pub async fn run(args: ClockArgs) -> anyhow::Result<()> {
    let target = args.target.locate()?;
    let http = target.http(Duration::from_secs(10)).await?;
    let entra = target.entra_url();
    let services = [
        entra.clone(),
        target.url(target.ports.keyvault),
        target.arm_url(),
    ];
    let clock_url = format!("{entra}/admin/clock");
    let current: Value = http
        .get(&clock_url)
        .send()
        .await
        .map_err(|e| crate::unreachable(&clock_url, e))?
        .error_for_status()?
        .json()
        .await?;
    let Some(action) = args.action else {
        println!("{}", current["now"].as_str().unwrap_or_default());
        return Ok(());
    };
    let body = match action {
        ClockAction::Advance { duration } => {
            let now: DateTime<Utc> = current["now"]
                .as_str()
                .context("clock response has no 'now'")?
                .parse()?;
            let target = now + chrono::TimeDelta::seconds(parse_duration(&duration)?);
            json!({ "set": target.to_rfc3339() })
        }
        ClockAction::Set { time } => json!({ "set": time }),
        ClockAction::Reset => json!({ "reset": true }),
    };
    for service in services {
        // A fresh token for each service: the previous move may have put the time before
        // the last token's `nbf` (services in one process share one clock).
        let token = admin_token(&http, &entra).await?;
        let url = format!("{service}/admin/clock");
        let response = http
            .post(&url)
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .map_err(|e| crate::unreachable(&url, e))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "{service} refused the clock move ({status}): {}",
                answer["error"]["message"]
            );
        }
        println!("{service}: {}", answer["now"].as_str().unwrap_or_default());
    }
    Ok(())
}

/// A token for the admin plane from the well-known admin app.
async fn admin_token(http: &reqwest::Client, entra: &str) -> anyhow::Result<String> {
    well_known_token(http, entra, "api://azsim/.default").await
}

/// A token of the well-known admin app for `scope`.
pub async fn well_known_token(
    http: &reqwest::Client,
    entra: &str,
    scope: &str,
) -> anyhow::Result<String> {
    let url = format!("{entra}/{}/oauth2/v2.0/token", well_known::TENANT_ID);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", well_known::ADMIN_CLIENT_ID),
        ("client_secret", well_known::ADMIN_CLIENT_SECRET),
        ("scope", scope),
    ];
    let response: Value = http
        .post(&url)
        .form(&form)
        .send()
        .await
        .map_err(|e| crate::unreachable(&url, e))?
        .json()
        .await?;
    response["access_token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| {
            format!(
                "entra-sim refused the admin token: {}",
                response["error_description"]
            )
        })
}

/// `30d`, `12h`, `90m`, `45s`, `3600` → seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let number: i64 = number
        .parse()
        .with_context(|| format!("'{text}' is not a duration like 30d, 12h, 90m or 45s"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => bail!("unknown unit '{unit}' in '{text}': use s, m, h, d or w"),
    };
    number.checked_mul(factor).context("duration too large")
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d").unwrap(), 30 * 86_400);
        assert_eq!(parse_duration("12h").unwrap(), 43_200);
        assert_eq!(parse_duration("90m").unwrap(), 5_400);
        assert_eq!(parse_duration("45").unwrap(), 45);
        assert!(parse_duration("-5d").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("d").is_err());
    }
}
