//! The vault's lifecycle through the agent: a policy bound to a folder, tags and expiry on
//! every point, points that expire on the simulated clock and whose data is collected,
//! deleting data with a security PIN (soft delete, undelete), and an immutable vault that
//! refuses while every point still restores.

mod common;

use common::*;
use serde_json::{Value, json};

async fn arm(
    stack: &Stack,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let token = stack.arm_token().await;
    let mut request = stack
        .http
        .request(
            method,
            format!("{}{path}?api-version=2026-11-01", stack.vault_url("vault1")),
        )
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn pin(stack: &Stack) -> String {
    let (status, body) = arm(
        stack,
        reqwest::Method::POST,
        "/backupSecurityPIN",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["securityPIN"].as_str().unwrap().to_string()
}

async fn stored_bytes(stack: &Stack) -> u64 {
    let (_, usages) = arm(stack, reqwest::Method::GET, "/usages", None).await;
    usages["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| {
            u["name"]["value"]
                .as_str()
                .unwrap()
                .ends_with("StorageUsage")
        })
        .map(|u| u["currentValue"].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn points_follow_the_policy_expire_and_their_data_is_collected() {
    let stack = start().await;
    let machine = stack.registered("vault1", "server1").await.0;
    let data = stack.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for n in 0..4 {
        std::fs::write(data.join(format!("f{n}.bin")), noise(3 << 20, n)).unwrap();
    }
    let set = machine
        .json(&[
            "policy",
            "set",
            "--include",
            data.to_str().unwrap(),
            "--name",
            "Files",
            "--daily",
            "10",
            "--weekly",
            "5",
            "--day",
            "sun",
        ])
        .await;
    assert_eq!(set["policy"], "Files");
    let shown = machine.json(&["policy", "show"]).await;
    assert_eq!(shown[0]["policy"], "Files");
    assert_eq!(
        shown[0]["retention"]["dailySchedule"]["retentionDuration"]["count"],
        10
    );
    let (_, items) = arm(&stack, reqwest::Method::GET, "/backupProtectedItems", None).await;
    assert_eq!(items["value"][0]["properties"]["policyName"], "Files");

    // The first point is kept only until tomorrow; the second follows the policy.
    let tomorrow = (chrono::Utc::now() + chrono::TimeDelta::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let first = machine
        .json(&[
            "backup",
            "--include",
            data.to_str().unwrap(),
            "--retain-until",
            &tomorrow,
        ])
        .await;
    // Three of four files change: the first point's pack becomes mostly garbage.
    for n in 0..3 {
        std::fs::write(data.join(format!("f{n}.bin")), noise(3 << 20, n + 100)).unwrap();
    }
    machine
        .json(&["backup", "--include", data.to_str().unwrap()])
        .await;
    let points = machine.json(&["recovery-points"]).await;
    assert_eq!(points.as_array().unwrap().len(), 2);
    assert_eq!(points[1]["tags"], json!(["AdHoc"]));
    assert!(
        points[0]["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("Daily"))
    );
    assert!(
        points[0]["expires"].as_str().unwrap().ends_with('Z'),
        "{points}"
    );
    let before = stored_bytes(&stack).await;
    assert!(before > 17 << 20, "{before}");

    stack.clock.advance(3 * 86_400).unwrap();
    let points = machine.json(&["recovery-points"]).await;
    assert_eq!(points.as_array().unwrap().len(), 1, "{points}");
    assert_ne!(points[0]["name"], first[0]["recoveryPoint"]);
    let after = stored_bytes(&stack).await;
    assert!(
        after < before - (5 << 20),
        "the first point's own data is collected: {before} → {after}"
    );
    let target = stack.dir.path().join("restored");
    let point = points[0]["name"].as_str().unwrap();
    machine
        .json(&["restore", point, "--target", target.to_str().unwrap()])
        .await;
    for n in 0..4u64 {
        let seed = if n < 3 { n + 100 } else { n };
        assert_eq!(
            std::fs::read(target.join(format!("f{n}.bin"))).unwrap(),
            noise(3 << 20, seed)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_data_needs_the_pin_and_can_be_undone() {
    let stack = start().await;
    let machine = stack.registered("vault1", "server1").await.0;
    let data = stack.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.txt"), "alpha").unwrap();
    machine
        .json(&["backup", "--include", data.to_str().unwrap()])
        .await;
    let path = data.to_str().unwrap();
    let out = machine
        .run(&[
            "stop-protection",
            "--include",
            path,
            "--delete-data",
            "--security-pin",
            "123",
        ])
        .await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("PIN"), "{}", stderr(&out));
    let pin = pin(&stack).await;
    let stopped = machine
        .json(&[
            "stop-protection",
            "--include",
            path,
            "--delete-data",
            "--security-pin",
            &pin,
        ])
        .await;
    assert_eq!(stopped["deleteData"], true);
    let shown = machine.json(&["policy", "show"]).await;
    assert!(shown[0]["deletedAt"].is_number(), "{shown}");
    let undone = machine.json(&["undelete", "--include", path]).await;
    assert_eq!(undone["undeleted"], true);
    let points = machine.json(&["recovery-points"]).await;
    assert_eq!(points.as_array().unwrap().len(), 1);
    // Keeping the data: protection stops, the points stay.
    let kept = machine.json(&["stop-protection", "--include", path]).await;
    assert_eq!(kept["deleteData"], false);
    let shown = machine.json(&["policy", "show"]).await;
    assert_eq!(shown[0]["protectionState"], "ProtectionStopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_immutable_vault_keeps_every_point_restorable() {
    let stack = start().await;
    let machine = stack.registered("vault1", "server1").await.0;
    let (status, body) = arm(
        &stack,
        reqwest::Method::PATCH,
        "",
        Some(json!({"properties": {"securitySettings": {"immutabilitySettings": {"state": "Unlocked"}}}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let data = stack.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("keep.bin"), noise(1 << 20, 9)).unwrap();
    let backup = machine
        .json(&["backup", "--include", data.to_str().unwrap()])
        .await;
    let pin = pin(&stack).await;
    let out = machine
        .run(&[
            "stop-protection",
            "--include",
            data.to_str().unwrap(),
            "--delete-data",
            "--security-pin",
            &pin,
        ])
        .await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("immutable"), "{}", stderr(&out));
    let out = machine.run(&["unregister"]).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("immutable"), "{}", stderr(&out));
    let target = stack.dir.path().join("restored");
    let point = backup[0]["recoveryPoint"].as_str().unwrap();
    machine
        .json(&["restore", point, "--target", target.to_str().unwrap()])
        .await;
    assert_eq!(
        std::fs::read(target.join("keep.bin")).unwrap(),
        noise(1 << 20, 9)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_after_every_point_expired_uploads_again_what_was_collected() {
    let stack = start().await;
    let machine = stack.registered("vault1", "server1").await.0;
    let data = stack.dir.path().join("data");
    std::fs::create_dir_all(data.join("src")).unwrap();
    std::fs::write(data.join("big.bin"), noise(3 << 20, 7)).unwrap();
    for n in 0..300 {
        let text = format!("fn item_{n}() -> u32 {{ {n} }}\n").repeat(40 + n % 30);
        std::fs::write(data.join(format!("src/f{n}.rs")), text).unwrap();
    }
    let tomorrow = (chrono::Utc::now() + chrono::TimeDelta::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let include = data.to_str().unwrap();
    machine
        .json(&["backup", "--include", include, "--retain-until", &tomorrow])
        .await;
    // The only point expires and its data is collected; the agent's cache still knows
    // every file and the dictionaries it sealed them with.
    stack.clock.advance(3 * 86_400).unwrap();
    let points = machine.json(&["recovery-points"]).await;
    assert_eq!(points.as_array().unwrap().len(), 0, "{points}");
    assert!(stored_bytes(&stack).await < 1 << 20);

    // The commit names chunks the vault no longer holds: the agent forgets the files that
    // used them and reads every one again.
    let again = machine.json(&["backup", "--include", include]).await;
    assert_eq!(again[0]["status"], "Completed", "{again}");
    assert_eq!(again[0]["filesRead"], 301, "{again}");
    let next = machine.json(&["backup", "--include", include]).await;
    assert_eq!(next[0]["filesRead"], 0, "{next}");
    let points = machine.json(&["recovery-points"]).await;
    let target = stack.dir.path().join("restored");
    let restored = machine
        .json(&[
            "restore",
            points[0]["name"].as_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
        ])
        .await;
    assert_eq!(restored["files"], 301, "{restored}");
    assert_eq!(
        std::fs::read(target.join("big.bin")).unwrap(),
        noise(3 << 20, 7)
    );
    let checked = machine.json(&["check", "--read-data"]).await;
    assert!(
        checked["damaged"].as_array().unwrap().is_empty(),
        "{checked}"
    );
}
