//! `mars-agent service`: the long-running agent. It runs each scheduled backup when its
//! time comes on the *service's* clock (learned from the vault's `Date` header, so `azsim
//! clock advance` drives it), one backup at a time, one service per agent home (a lock
//! file). It re-reads the schedules when the configuration changes, logs one line per job,
//! and stops on SIGTERM or Ctrl-C after the backup in progress (if any) has finished.
//!
//! A time that passed while the service was stopped is not run late, as MARS does. When
//! the clock jumps over several times of one folder at once, that folder is backed up once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::agent::Agent;
use crate::config::Home;
use crate::error::{AgentError, Result};
use crate::schedule::Schedule;

/// How often the service looks at the clock (real time).
pub const POLL: Duration = Duration::from_millis(500);

/// Holds the agent home's service lock while the service runs.
struct Lock {
    _file: std::fs::File,
}

fn lock(home: &Home) -> Result<Lock> {
    let path = home.dir.join("service.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| AgentError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(Lock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(AgentError::Usage(format!(
            "another mars-agent service runs for {} (it holds {}); stop it first",
            home.dir.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(AgentError::io(&path, e)),
    }
}

fn config_stamp(home: &Home) -> Option<SystemTime> {
    std::fs::metadata(home.dir.join("agent.json"))
        .and_then(|m| m.modified())
        .ok()
}

fn log(json_output: bool, event: serde_json::Value, human: String) {
    if json_output {
        println!("{event}");
    } else {
        println!("{} {human}", Utc::now().format("%Y-%m-%dT%H:%M:%SZ"));
    }
}

/// Runs until SIGTERM or Ctrl-C.
pub async fn run(home: &Home, json_output: bool) -> Result<()> {
    let _lock = lock(home)?;
    let mut agent: Arc<Agent> = Agent::open(home, false)?;
    let mut schedules: Vec<Schedule> = home.load()?.schedules;
    let mut stamp = config_stamp(home);
    let mut last: DateTime<Utc> = service_time(&agent).await?;
    log(
        json_output,
        json!({"event": "started", "serviceTime": last.to_rfc3339(), "schedules": schedules.len()}),
        format!(
            "service started (service time {last}); {} scheduled folder(s)",
            schedules.len()
        ),
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| AgentError::io("SIGTERM handler", e))?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(POLL) => {}
        }
        if config_stamp(home) != stamp {
            stamp = config_stamp(home);
            agent = Agent::open(home, false)?;
            schedules = home.load()?.schedules;
            log(
                json_output,
                json!({"event": "reloaded", "schedules": schedules.len()}),
                format!(
                    "schedules reloaded: {} scheduled folder(s)",
                    schedules.len()
                ),
            );
        }
        let now = match service_time(&agent).await {
            Ok(now) => now,
            Err(error) => {
                log(
                    json_output,
                    json!({"event": "unreachable", "error": error.to_string()}),
                    format!("the vault cannot be reached: {error}"),
                );
                continue;
            }
        };
        if now < last {
            // The clock went back (azsim clock set/reset): start counting from here.
            last = now;
            continue;
        }
        for schedule in &schedules {
            let due = schedule.slots(last, now);
            let Some(slot) = due.last() else { continue };
            backup(&agent, schedule, *slot, json_output).await;
        }
        last = now;
    }
    log(
        json_output,
        json!({"event": "stopped"}),
        "service stopped".into(),
    );
    Ok(())
}

/// The service's time, asked of the vault (its `Date` header).
async fn service_time(agent: &Agent) -> Result<DateTime<Utc>> {
    let now = agent.vault.service().probe_time().await?;
    Ok(DateTime::from_timestamp(now, 0).unwrap_or_default())
}

/// One scheduled backup; its outcome is logged (the job on the vault says the same).
async fn backup(agent: &Arc<Agent>, schedule: &Schedule, slot: DateTime<Utc>, json_output: bool) {
    let excludes: Vec<glob::Pattern> = schedule
        .excludes
        .iter()
        .filter_map(|p| glob::Pattern::new(p).ok())
        .collect();
    let path: PathBuf = schedule.path.clone();
    match crate::backup::run(agent.clone(), &path, excludes, None).await {
        Ok(report) => log(
            json_output,
            json!({"event": "backup", "path": path, "slot": slot.to_rfc3339(), "status": report.status,
                   "recoveryPoint": report.recovery_point, "job": report.job}),
            format!(
                "scheduled backup of {} ({slot}): {} → recovery point {}",
                path.display(),
                report.status,
                report.recovery_point
            ),
        ),
        Err(error) => log(
            json_output,
            json!({"event": "backup", "path": path, "slot": slot.to_rfc3339(), "status": "Failed",
                   "error": error.to_string()}),
            format!(
                "scheduled backup of {} ({slot}) failed: {error}",
                path.display()
            ),
        ),
    }
}
