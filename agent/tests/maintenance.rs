//! Keeping backups healthy: `check` (and `--read-data`) finds missing and damaged chunks
//! and names the files, and a passphrase change re-wraps the key so only the new one opens
//! the backups.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_finds_damaged_and_missing_chunks_and_names_the_files() {
    let state = tempfile::tempdir().unwrap();
    let stack = start_on(sim_core::db::Storage::Disk(state.path().to_path_buf())).await;
    stack.vault("vault1").await;
    let machine = stack.registered("vault1", "server1").await.0;
    let data = stack.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for n in 0..4 {
        std::fs::write(data.join(format!("f{n}.bin")), noise(300_000, n)).unwrap();
    }
    machine
        .json(&["backup", "--include", data.to_str().unwrap()])
        .await;
    let clean = machine.json(&["check"]).await;
    assert_eq!(clean["chunks"], 4, "{clean}");
    let read = machine.json(&["check", "--read-data"]).await;
    assert_eq!(read["chunksRead"], 4, "{read}");

    // One flipped byte: only reading the data finds it.
    let pack = files_under(&state.path().join("blobs/packs")).remove(0);
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[100] ^= 0x42;
    std::fs::write(&pack, bytes).unwrap();
    assert!(machine.run(&["check"]).await.status.success());
    let out = machine.run(&["--json", "check", "--read-data"]).await;
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    let damaged = answer["error"]["damaged"].as_array().unwrap();
    assert_eq!(damaged.len(), 1, "{answer}");
    assert!(damaged[0]["path"].as_str().unwrap().ends_with(".bin"));
    assert_eq!(
        damaged[0]["pack"],
        pack.file_name().unwrap().to_str().unwrap()
    );

    // The vault loses its packs: every file is missing data, found without reading.
    sqlx::query("DELETE FROM packs")
        .execute(&stack.kit.vault_server.server.state.pool)
        .await
        .unwrap();
    let out = machine.run(&["--json", "check"]).await;
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        answer["error"]["damaged"].as_array().unwrap().len(),
        4,
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_passphrase_change_rewraps_the_key_and_needs_the_pin() {
    let stack = start().await;
    stack.vault("vault1").await;
    let server1 = stack.registered("vault1", "server1").await.0;
    let data = stack.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.txt"), "kept across passphrases").unwrap();
    let backup = server1
        .json(&["backup", "--include", data.to_str().unwrap()])
        .await;
    let point = backup[0]["recoveryPoint"].as_str().unwrap().to_string();
    let new = stack.write("new-passphrase", "an entirely new passphrase 99");

    let out = server1
        .run(&[
            "change-passphrase",
            "--security-pin",
            "000000",
            "--passphrase-file",
            new.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.status.code(), Some(5), "a wrong PIN: {}", stderr(&out));
    let token = stack.arm_token().await;
    let pin: Value = stack
        .http
        .post(format!(
            "{}/backupSecurityPIN?api-version=2026-11-01",
            stack.vault_url("vault1")
        ))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pin = pin["securityPIN"].as_str().unwrap();
    let changed = server1
        .json(&[
            "change-passphrase",
            "--security-pin",
            pin,
            "--passphrase-file",
            new.to_str().unwrap(),
        ])
        .await;
    assert_eq!(changed["changed"], true);

    // Another machine of the vault restores server1's backup with the new passphrase only.
    let server2 = stack.registered("vault1", "server2").await.0;
    let old = stack.write("old-passphrase", PASSPHRASE);
    let target = stack.dir.path().join("restored");
    let args = |file: &std::path::Path| {
        vec![
            "restore".to_string(),
            point.clone(),
            "--target".into(),
            target.to_str().unwrap().into(),
            "--from-server".into(),
            "server1".into(),
            "--passphrase-file".into(),
            file.to_str().unwrap().into(),
        ]
    };
    let with_old: Vec<String> = args(&old);
    let out = server2
        .run(&with_old.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let with_new: Vec<String> = args(&new);
    let out = server2
        .run(&with_new.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(target.join("a.txt")).unwrap(),
        "kept across passphrases"
    );
    // server1 itself keeps working (its master key did not change).
    server1
        .json(&["backup", "--include", data.to_str().unwrap()])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_throttled_backup_is_much_slower_than_an_unthrottled_one() {
    let stack = start().await;
    stack.vault("vault1").await;
    let machine = stack.registered("vault1", "server1").await.0;
    let timed = |dir: std::path::PathBuf| {
        let machine = &machine;
        async move {
            let started = std::time::Instant::now();
            let out = machine
                .run(&["backup", "--include", dir.to_str().unwrap()])
                .await;
            assert!(out.status.success(), "{}", stderr(&out));
            started.elapsed()
        }
    };
    let fast_data = stack.dir.path().join("fast");
    std::fs::create_dir_all(&fast_data).unwrap();
    std::fs::write(fast_data.join("a.bin"), noise(6 << 20, 1)).unwrap();
    let fast = timed(fast_data).await;

    let set = machine
        .json(&[
            "throttle",
            "set",
            "--work-hours",
            "00:00-23:59",
            "--work-days",
            "mon-sun",
            "--work-rate",
            "1MiB/s",
            "--non-work-rate",
            "1MiB/s",
        ])
        .await;
    assert_eq!(set["workRate"], 1 << 20);
    let slow_data = stack.dir.path().join("slow");
    std::fs::create_dir_all(&slow_data).unwrap();
    std::fs::write(slow_data.join("b.bin"), noise(6 << 20, 2)).unwrap();
    let slow = timed(slow_data).await;
    assert!(
        slow > std::time::Duration::from_secs(4) && slow > fast * 3,
        "6 MiB at 1 MiB/s took {slow:?}; unthrottled {fast:?}"
    );
    let off = machine.json(&["throttle", "off"]).await;
    assert!(off.is_null());
    let refused = machine
        .run(&[
            "throttle",
            "set",
            "--work-rate",
            "10Kbps",
            "--non-work-rate",
            "1MiB/s",
        ])
        .await;
    assert_eq!(refused.status.code(), Some(2));
}
