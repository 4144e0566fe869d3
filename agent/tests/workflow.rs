//! The agent's workflow edges a first-time user meets: the simulated clock, relative paths
//! given at install, unregistering through ARM, generated passphrases, a wrong passphrase
//! file, and naming what to restore by its original absolute path.

mod common;

use common::*;
use serde_json::Value;

fn small_tree(stack: &Stack) -> std::path::PathBuf {
    let data = stack.dir.path().join("data");
    std::fs::create_dir_all(data.join("docs")).unwrap();
    std::fs::write(data.join("docs/a.txt"), b"alpha").unwrap();
    std::fs::write(data.join("b.txt"), b"bravo").unwrap();
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_agent_follows_the_simulated_clock_and_credentials_expire_after_ten_days() {
    let stack = start().await;
    let (machine, _) = stack.registered("vault1", "server1").await;
    let data = small_tree(&stack);
    stack.clock.advance(2 * 3600).unwrap();
    let backup = machine
        .json(&["backup", "--include", data.to_str().unwrap()])
        .await;
    assert_eq!(backup[0]["status"], "Completed", "{backup}");

    let fresh = stack.credentials("vault1", "fresh.VaultCredentials").await;
    stack.clock.advance(11 * 86_400).unwrap();
    let other = stack.machine("server2").await;
    let passphrase = stack.write("passphrase2", PASSPHRASE);
    let out = other.register(&fresh, &passphrase).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
    // The registered machine's own identity still works eleven days on.
    let points = machine.json(&["recovery-points"]).await;
    assert_eq!(points.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relative_ca_file_works_from_any_directory() {
    let stack = start().await;
    let home = stack.dir.path().join("home-rel");
    let run = |cwd: &std::path::Path, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_mars-agent"))
            .current_dir(cwd)
            .arg("--home")
            .arg(&home)
            .args(args)
            .output()
            .unwrap()
    };
    std::fs::copy(&stack.ca_file, stack.dir.path().join("ca.pem")).unwrap();
    let out = run(
        stack.dir.path(),
        &["install", "--cache-dir", "cache-rel", "--ca-file", "ca.pem"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let config: Value =
        serde_json::from_slice(&std::fs::read(home.join("agent.json")).unwrap()).unwrap();
    let ca = config["caFile"].as_str().unwrap();
    assert!(ca.starts_with('/'), "{config}");
    stack.vault("vault1").await;
    let credentials = stack.credentials("vault1", "v.VaultCredentials").await;
    let passphrase = stack.write("passphrase", PASSPHRASE);
    let elsewhere = tempfile::tempdir().unwrap();
    let out = run(
        elsewhere.path(),
        &[
            "register",
            "--vault-credentials",
            credentials.to_str().unwrap(),
            "--passphrase-file",
            passphrase.to_str().unwrap(),
            "--server-name",
            "rel",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unregistering_through_arm_revokes_the_machine_identity() {
    let stack = start().await;
    let (machine, _) = stack.registered("vault1", "server1").await;
    let data = small_tree(&stack);
    let backup = machine
        .json(&["backup", "--include", data.to_str().unwrap()])
        .await;
    assert_eq!(backup[0]["status"], "Completed");
    let token = stack.arm_token().await;
    let response = stack
        .http
        .delete(format!(
            "{}/registeredIdentities/server1?api-version=2026-11-01",
            stack.vault_url("vault1")
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let out = machine
        .run(&["backup", "--include", data.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unregistered from the vault; register again"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("503"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_generated_passphrase_never_overwrites_a_file_and_a_failed_registration_leaves_none() {
    let stack = start().await;
    let (machine, credentials) = stack.registered("vault1", "server1").await;
    let keep = stack.write(
        "precious-passphrase",
        "the passphrase of a registered server",
    );
    let out = machine
        .run(&[
            "register",
            "--vault-credentials",
            credentials.to_str().unwrap(),
            "--generate-passphrase",
            keep.to_str().unwrap(),
            "--server-name",
            "server1",
        ])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("never overwrites"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(&keep).unwrap(),
        "the passphrase of a registered server"
    );

    let broken = stack.write("broken.VaultCredentials", "<not credentials/>");
    let fresh = stack.dir.path().join("new-passphrase");
    let other = stack.machine("server2").await;
    let out = other
        .run(&[
            "register",
            "--vault-credentials",
            broken.to_str().unwrap(),
            "--generate-passphrase",
            fresh.to_str().unwrap(),
        ])
        .await;
    assert!(!out.status.success());
    assert!(
        !fresh.exists(),
        "no passphrase file from a failed registration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_passphrase_file_is_refused_and_original_paths_select_what_to_restore() {
    let stack = start().await;
    let (machine, _) = stack.registered("vault1", "server1").await;
    let data = small_tree(&stack);
    let backup = machine
        .json(&["backup", "--include", data.to_str().unwrap()])
        .await;
    let point = backup[0]["recoveryPoint"].as_str().unwrap().to_string();
    let target = stack.dir.path().join("restored");
    let wrong = stack.write("wrong", "this is not the passphrase at all");
    for command in [
        vec![
            "restore",
            &point,
            "--target",
            target.to_str().unwrap(),
            "--passphrase-file",
            wrong.to_str().unwrap(),
        ],
        vec!["ls", &point, "--passphrase-file", wrong.to_str().unwrap()],
    ] {
        let out = machine.run(&command).await;
        assert_eq!(out.status.code(), Some(4), "{command:?}: {}", stderr(&out));
    }
    assert!(!target.exists(), "nothing restored with a wrong passphrase");
    let right = stack.write("right", PASSPHRASE);
    let listed = machine
        .json(&["ls", &point, "--passphrase-file", right.to_str().unwrap()])
        .await;
    assert!(listed.as_array().unwrap().len() >= 3);

    // The original absolute path names what to restore, as a user remembers it.
    let original = data.join("docs");
    let original = std::fs::canonicalize(original).unwrap();
    let restored = machine
        .json(&[
            "restore",
            &point,
            original.to_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
        ])
        .await;
    assert_eq!(restored["files"], 1, "{restored}");
    assert_eq!(std::fs::read(target.join("docs/a.txt")).unwrap(), b"alpha");
    let listed = machine
        .json(&["ls", &point, original.to_str().unwrap()])
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");

    let missing = data.join("no-such-thing");
    for command in [
        vec![
            "restore",
            &point,
            missing.to_str().unwrap(),
            "--target",
            target.to_str().unwrap(),
        ],
        vec!["ls", &point, missing.to_str().unwrap()],
    ] {
        let out = machine.run(&command).await;
        assert_eq!(out.status.code(), Some(2), "{command:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("no-such-thing"), "{}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_connections_name_the_url_and_the_fix() {
    let stack = start().await;
    let (machine, _) = stack.registered("vault1", "server1").await;
    // Point the registration at a port where nothing listens.
    let config_path = machine.home.join("agent.json");
    let text = std::fs::read_to_string(&config_path).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let service = stack.arm.clone();
    std::fs::write(
        &config_path,
        text.replace(&service, &format!("https://localhost:{port}")),
    )
    .unwrap();
    let out = machine.run(&["jobs"]).await;
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(message.contains(&format!("localhost:{port}")), "{message}");
    assert!(message.contains("azsim up"), "{message}");
}

#[test]
fn every_flag_and_argument_of_every_command_says_what_it_is() {
    let commands = [
        "install",
        "check-network",
        "register",
        "backup",
        "recovery-points",
        "ls",
        "restore",
        "jobs",
        "status",
        "unregister",
        "policy set",
        "policy show",
        "stop-protection",
        "undelete",
        "check",
        "change-passphrase",
        "schedule set",
        "schedule show",
        "schedule clear",
        "service",
        "throttle set",
        "throttle show",
        "throttle off",
    ];
    for command in commands {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_mars-agent"))
            .args(command.split(' '))
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout).to_string();
        let mut in_list = false;
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.ends_with(':') && !line.starts_with(' ') {
                in_list = matches!(*line, "Options:" | "Arguments:");
                continue;
            }
            let trimmed = line.trim_start();
            if in_list && trimmed.starts_with("- ") {
                assert!(
                    trimmed.contains(": "),
                    "mars-agent {command}: value '{trimmed}' has no description"
                );
                continue;
            }
            let is_entry = in_list
                && (trimmed.starts_with('-')
                    || trimmed.starts_with('<')
                    || trimmed.starts_with('['));
            if !is_entry || line.len() - trimmed.len() > 6 {
                continue;
            }
            // `  --flag <VALUE>  what it is`, or the description on the next line.
            let described = trimmed.contains("  ")
                || lines
                    .get(i + 1)
                    .is_some_and(|next| next.len() - next.trim_start().len() > 6);
            assert!(
                described,
                "mars-agent {command}: '{trimmed}' has no description\n{help}"
            );
        }
    }
}
