//! The agent against a whole azsim: register, back up a tree with every kind of entry,
//! restore it elsewhere byte for byte with metadata, back up again after small edits,
//! restore on another machine, and the refusals.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;

fn make_tree(root: &Path) {
    std::fs::create_dir_all(root.join("docs/empty dir")).unwrap();
    std::fs::create_dir_all(root.join("ünïcödé ✓/nested deeper")).unwrap();
    std::fs::write(
        root.join("docs/report with spaces.txt"),
        "quarterly numbers\n".repeat(500),
    )
    .unwrap();
    std::fs::write(root.join("docs/empty.txt"), "").unwrap();
    std::fs::write(
        root.join("ünïcödé ✓/nested deeper/日本語.md"),
        "こんにちは\n".repeat(100),
    )
    .unwrap();
    std::fs::write(root.join("big.bin"), noise(100 * 1024 * 1024, 7)).unwrap();
    std::fs::write(
        root.join("log.txt"),
        "line of a log file that repeats\n".repeat(200_000),
    )
    .unwrap();
    std::os::unix::fs::symlink("docs/report with spaces.txt", root.join("link-to-report")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("link-outside")).unwrap();
    std::fs::set_permissions(
        root.join("docs/empty.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(root.join("log.txt"), std::fs::Permissions::from_mode(0o444)).unwrap();
    let script = root.join("run.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        root.join("docs/empty dir"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
}

/// Everything that must survive: kind, content digest, mode, mtime, link target.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let description = if meta.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {:o} {}", meta.mode() & 0o7777, meta.mtime())
            } else {
                let digest = blake3::hash(&std::fs::read(&path).unwrap()).to_hex();
                format!(
                    "file {:o} {}.{} {} {digest}",
                    meta.mode() & 0o7777,
                    meta.mtime(),
                    meta.mtime_nsec(),
                    meta.len()
                )
            };
            out.insert(rel, description);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn back_up_restore_elsewhere_and_back_up_again_incrementally() {
    let stack = start().await;
    stack.vault("vault1").await;
    let data = stack.dir.path().join("data");
    make_tree(&data);
    let before = snapshot(&data);

    let credentials = stack.credentials("vault1", "vault1.VaultCredentials").await;
    let passphrase = stack.write("passphrase", PASSPHRASE);
    let server1 = stack.machine("server1").await;
    let out = server1.register(&credentials, &passphrase).await;
    assert!(out.status.success(), "{}", stderr(&out));

    let first = server1
        .json(&["backup", "--include", data.to_str().unwrap()])
        .await;
    let first = &first[0];
    assert_eq!(first["status"], "Completed", "{first}");
    let uploaded_first = first["bytesUploaded"].as_u64().unwrap();
    assert!(
        uploaded_first > 100 * 1024 * 1024,
        "the random file is stored whole: {first}"
    );
    assert!(
        uploaded_first < 110 * 1024 * 1024,
        "text compresses: {first}"
    );

    let points = server1.json(&["recovery-points"]).await;
    let point = points[0]["name"].as_str().unwrap().to_string();
    let target = stack.dir.path().join("restored");
    let restored = server1
        .json(&["restore", &point, "--target", target.to_str().unwrap()])
        .await;
    assert_eq!(restored["files"], 6, "{restored}");
    let mut after = snapshot(&target);
    let mut expected = before.clone();
    // Directory mtimes of the root itself are not compared (the target existed).
    after.retain(|k, _| !k.is_empty());
    expected.retain(|k, _| !k.is_empty());
    assert_eq!(after, expected, "byte-for-byte and metadata");

    // Small edits: only the changed chunks travel.
    std::fs::write(
        data.join("docs/report with spaces.txt"),
        "quarterly numbers, revised\n".repeat(500),
    )
    .unwrap();
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(data.join("log.txt"))
        .unwrap();
    std::io::Write::write_all(&mut log, b"one more line\n").unwrap();
    drop(log);
    let second = server1
        .json(&["backup", "--include", data.to_str().unwrap()])
        .await;
    let second = &second[0];
    assert_eq!(
        second["filesRead"], 2,
        "only the edited files are read: {second}"
    );
    let uploaded_second = second["bytesUploaded"].as_u64().unwrap();
    assert!(
        uploaded_second < 2 * 1024 * 1024,
        "only changed chunks are uploaded: {second}"
    );

    let third = server1
        .json(&["backup", "--include", data.to_str().unwrap()])
        .await;
    assert_eq!(third[0]["filesRead"], 0);
    assert_eq!(third[0]["bytesUploaded"], 0);

    // The vault's Backup views show what happened (ARM).
    let token = stack.arm_token().await;
    let items: serde_json::Value = stack
        .http
        .get(format!(
            "{}/backupProtectedItems?api-version=2026-10-01",
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
        items["value"][0]["properties"]["lastBackupStatus"],
        "Completed"
    );
    assert_eq!(
        items["value"][0]["properties"]["extendedInfo"]["recoveryPointCount"],
        3
    );
    let jobs: serde_json::Value = stack
        .http
        .get(format!(
            "{}/backupJobs?api-version=2026-10-01",
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
        jobs["value"].as_array().unwrap().len(),
        4,
        "3 backups and a restore: {jobs}"
    );

    // Another machine restores server1's backup with server1's passphrase.
    let fresh = stack.credentials("vault1", "fresh.VaultCredentials").await;
    let passphrase2 = stack.write("passphrase2", "another long passphrase 1234");
    let server2 = stack.machine("server2").await;
    let out = server2.register(&fresh, &passphrase2).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let elsewhere = stack.dir.path().join("elsewhere");
    let wrong = server2
        .run(&[
            "restore",
            &point,
            "--target",
            elsewhere.to_str().unwrap(),
            "--from-server",
            "server1",
            "--passphrase-file",
            passphrase2.to_str().unwrap(),
        ])
        .await;
    assert_eq!(
        wrong.status.code(),
        Some(4),
        "wrong passphrase: {}",
        stderr(&wrong)
    );
    assert!(
        !elsewhere.exists(),
        "nothing written with a wrong passphrase"
    );
    let out = server2
        .run(&[
            "restore",
            &point,
            "docs",
            "--target",
            elsewhere.to_str().unwrap(),
            "--from-server",
            "server1",
            "--passphrase-file",
            passphrase.to_str().unwrap(),
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(elsewhere.join("docs/report with spaces.txt")).unwrap(),
        "quarterly numbers\n".repeat(500)
    );
    assert!(
        !elsewhere.join("big.bin").exists(),
        "only the selected path"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registration_refusals() {
    let stack = start().await;
    stack.vault("vault1").await;
    let short = stack.write("short", "fifteen chars!!");
    let good = stack.write("good", PASSPHRASE);
    let machine = stack.machine("server1").await;

    let old = stack.credentials("vault1", "old.VaultCredentials").await;
    let latest = stack.credentials("vault1", "latest.VaultCredentials").await;
    let out = machine.register(&latest, &short).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("at least 16"), "{}", stderr(&out));

    let out = machine.register(&old, &good).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not the latest"), "{}", stderr(&out));

    let out = machine.register(&latest, &good).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let other = stack.write("other", "a different passphrase!!");
    let again = stack.credentials("vault1", "again.VaultCredentials").await;
    let out = machine.register(&again, &other).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "re-registering needs the same passphrase: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("another passphrase"),
        "{}",
        stderr(&out)
    );
    let out = machine.register(&again, &good).await;
    assert!(
        out.status.success(),
        "the same passphrase re-registers: {}",
        stderr(&out)
    );

    let expiring = stack
        .credentials("vault1", "expiring.VaultCredentials")
        .await;
    stack.clock.advance(11 * 86_400).unwrap();
    let late = stack.machine("late").await;
    let out = late.register(&expiring, &good).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_network_and_backups_that_complete_with_warnings() {
    let stack = start().await;
    stack.vault("vault1").await;
    let credentials = stack.credentials("vault1", "v.VaultCredentials").await;
    let machine = stack.machine("server1").await;

    let checks = machine
        .json(&[
            "check-network",
            "--vault-credentials",
            credentials.to_str().unwrap(),
        ])
        .await;
    let checks = checks.as_array().unwrap();
    assert!(checks.iter().all(|c| c["ok"] == true), "{checks:?}");
    let steps: Vec<&str> = checks.iter().map(|c| c["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["dns", "tcp", "tls", "dns", "tcp", "tls", "token"]);
    let out = machine
        .run(&[
            "check-network",
            "--vault-credentials",
            credentials.to_str().unwrap(),
            "--key-vault-uri",
            "https://nosuch.invalid:1",
        ])
        .await;
    assert_eq!(out.status.code(), Some(5));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL dns") && text.contains("fix:"), "{text}");

    let passphrase = stack.write("passphrase", PASSPHRASE);
    assert!(
        machine
            .register(&credentials, &passphrase)
            .await
            .status
            .success()
    );
    let data = stack.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("kept.txt"), "kept").unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(data.join("app.sock")).unwrap();
    let out = machine
        .run(&["--json", "backup", "--include", data.to_str().unwrap()])
        .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "completed with warnings: {}",
        stderr(&out)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report[0]["status"], "CompletedWithWarnings");
    let warning = report[0]["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("app.sock") && warning.contains("socket"),
        "{warning}"
    );
    assert_eq!(report[0]["files"], 1);
}
