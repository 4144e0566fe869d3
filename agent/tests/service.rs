//! The agent as a service: scheduled backups run at their times on the service's clock
//! (moved by the simulated clock), one per slot, none late after a stop, one service per
//! home, and a graceful stop on SIGTERM.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use serde_json::Value;

const PASSPHRASE: &str = "correct horse battery staple 42";

fn service(machine: &Machine) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mars-agent"))
        .arg("--home")
        .arg(&machine.home)
        .args(["--json", "service"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn points(stack: &Stack) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM recovery_points")
        .fetch_one(&stack.kit.vault_server.server.state.pool)
        .await
        .unwrap()
}

/// Waits until the vault holds `count` recovery points.
async fn wait_for(stack: &Stack, count: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while points(stack).await < count {
        assert!(
            Instant::now() < deadline,
            "{} points, expected {count}",
            points(stack).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And no more than that.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(points(stack).await, count);
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_times_a_day_for_two_days_makes_six_points() {
    let stack = start().await;
    stack.vault("vault1").await;
    let start_at: DateTime<Utc> = "2027-01-04T06:00:00Z".parse().unwrap();
    stack.clock.set(start_at).unwrap();
    let credentials = stack.credentials("vault1", "v.VaultCredentials").await;
    let passphrase = stack.write("passphrase", PASSPHRASE);
    let machine = stack.machine("server1").await;
    assert!(
        machine
            .register(&credentials, &passphrase)
            .await
            .status
            .success()
    );
    let data = stack.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.txt"), "scheduled").unwrap();
    let set = machine
        .json(&[
            "schedule",
            "set",
            "--include",
            data.to_str().unwrap(),
            "--times",
            "09:00,13:00,21:00",
        ])
        .await;
    let policy = set["policy"].as_str().unwrap().to_string();
    // The schedule is the item's policy schedule on the vault.
    let token = stack.arm_token().await;
    let shown: Value = stack
        .http
        .get(format!(
            "{}/backupPolicies/{policy}?api-version=2026-11-01",
            stack.vault_url("vault1")
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        shown["properties"]["schedulePolicy"]["scheduleRunTimes"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "{shown}"
    );

    let mut child = service(&machine);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = Command::new(env!("CARGO_BIN_EXE_mars-agent"))
        .arg("--home")
        .arg(&machine.home)
        .arg("service")
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2), "one service per home");
    assert!(String::from_utf8_lossy(&second.stderr).contains("another mars-agent service"));

    let mut expected = 0;
    for day in 0..2 {
        for hour in [9, 13, 21] {
            let slot =
                start_at - TimeDelta::hours(6) + TimeDelta::days(day) + TimeDelta::hours(hour);
            stack.clock.set(slot + TimeDelta::minutes(1)).unwrap();
            expected += 1;
            wait_for(&stack, expected).await;
        }
    }
    assert_eq!(expected, 6);
    // A jump over several slots backs the folder up once.
    stack.clock.advance(2 * 86_400).unwrap();
    wait_for(&stack, 7).await;
    assert!(
        terminate(&mut child).success(),
        "SIGTERM stops the service cleanly"
    );

    // A slot that passes while the service is stopped is not run late.
    stack.clock.advance(86_400).unwrap();
    let mut child = service(&machine);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(points(&stack).await, 7);
    let now = stack.clock.now();
    let next = now
        .date_naive()
        .succ_opt()
        .unwrap()
        .and_hms_opt(9, 0, 30)
        .unwrap()
        .and_utc();
    stack.clock.set(next).unwrap();
    wait_for(&stack, 8).await;
    assert!(terminate(&mut child).success());

    let cleared = machine
        .json(&["schedule", "clear", "--include", data.to_str().unwrap()])
        .await;
    assert!(cleared["cleared"].is_string());
    let shown = machine.json(&["schedule", "show"]).await;
    assert_eq!(shown, serde_json::json!([]));
}
