//! Storage redundancy, for real: a GRS vault's data reaches its paired region, a regional
//! outage stops the primary data plane (503) while a cross-region restore from the
//! secondary is byte-exact, LRS refuses cross-region restore, and a ZRS vault survives the
//! loss of a zone. On-disk storage, so the stores can be looked at (and a zone removed).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Machine, Stack, files_under, noise, start_on, stderr};
use serde_json::{Value, json};
use sim_core::db::Storage;

/// A folder of a few files, some larger than a chunk.
fn make_data(root: &Path) {
    std::fs::create_dir_all(root.join("docs")).unwrap();
    for i in 0..6u64 {
        std::fs::write(
            root.join("docs").join(format!("f{i}.bin")),
            noise(200_000 + i as usize * 150_000, i + 11),
        )
        .unwrap();
    }
    std::fs::write(root.join("notes.txt"), "geo-redundant notes\n".repeat(300)).unwrap();
}

/// The relative path and bytes of every file under `root`, sorted.
fn tree(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = files_under(root)
        .into_iter()
        .map(|p| {
            (
                p.strip_prefix(root).unwrap().to_path_buf(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

impl Stack {
    async fn admin(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let token = self.kit.token("api://azsim/.default").await.unwrap();
        let response = self
            .http
            .request(method, format!("{}{path}", self.arm))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn patch_vault(&self, vault: &str, properties: Value) {
        let token = self.arm_token().await;
        let response = self
            .http
            .patch(format!("{}?api-version=2026-11-01", self.vault_url(vault)))
            .bearer_auth(token)
            .json(&json!({ "properties": properties }))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap()
        );
    }

    /// Waits until no replication is pending for `vault`; returns the status seen.
    async fn replicated(&self, vault: &str) -> Value {
        for _ in 0..200 {
            let (_, status) = self.admin(reqwest::Method::GET, "/admin/regions").await;
            let entry = status["vaults"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == vault)
                .cloned()
                .unwrap();
            if entry["replication"]["objects"] == 0 {
                return entry;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("replication of {vault} did not finish");
    }
}

/// Whether backup data is in local directories (not Azure Blob Storage / Azurite, which CI
/// also runs this suite against): only then can the stores be looked at as files.
fn local_stores() -> bool {
    std::env::var_os("AZSIM_BLOB_URL").is_none()
}

/// Relative paths of the objects of a store directory.
fn objects(store: &Path) -> Vec<PathBuf> {
    if !store.exists() {
        return Vec::new();
    }
    let mut found: Vec<PathBuf> = files_under(store)
        .into_iter()
        .map(|p| p.strip_prefix(store).unwrap().to_path_buf())
        .collect();
    found.sort();
    found
}

/// A machine registered to a new vault with `redundancy`, and a folder of data for it.
async fn machine_on(stack: &Stack, vault: &str, redundancy: &str) -> (Machine, PathBuf) {
    stack.vault(vault).await;
    stack
        .patch_vault(
            vault,
            json!({"redundancySettings": {"standardTierStorageRedundancy": redundancy}}),
        )
        .await;
    let credentials = stack
        .credentials(vault, &format!("{vault}.VaultCredentials"))
        .await;
    let passphrase = stack.write("passphrase", common::PASSPHRASE);
    let machine = stack.machine("server1").await;
    let out = machine.register(&credentials, &passphrase).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let data = stack.dir.path().join("data");
    make_data(&data);
    (machine, data)
}

/// Restores `point` into a new directory; the restored copy of the backed-up folder.
async fn restore(machine: &Machine, stack: &Stack, point: &str, extra: &[&str]) -> PathBuf {
    let target = stack.dir.path().join(format!("restored-{point}"));
    let mut args = vec!["restore", point, "--target", target.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = machine.run(&args).await;
    assert!(out.status.success(), "{}", stderr(&out));
    files_under(&target)
        .into_iter()
        .find(|p| p.ends_with("notes.txt"))
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

async fn backup(machine: &Machine, data: &Path) -> String {
    let answer = machine
        .json(&["backup", "--include", data.to_str().unwrap()])
        .await;
    answer[0]["recoveryPoint"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grs_replicates_and_restores_across_regions_during_an_outage() {
    let state = tempfile::tempdir().unwrap();
    let stack = start_on(Storage::Disk(state.path().to_path_buf())).await;
    let (machine, _) = stack.registered("geo", "server1").await;
    stack
        .patch_vault(
            "geo",
            json!({"redundancySettings": {"crossRegionRestore": "Enabled"}}),
        )
        .await;
    let data = stack.dir.path().join("data");
    make_data(&data);
    let point = backup(&machine, &data).await;

    // Every object of the primary (westeurope) reaches the paired region, northeurope.
    let status = stack.replicated("geo").await;
    assert_eq!(
        (
            status["region"].as_str(),
            status["secondaryRegion"].as_str()
        ),
        (Some("westeurope"), Some("northeurope"))
    );
    let primary = objects(&state.path().join("blobs"));
    if local_stores() {
        let secondary = objects(&state.path().join("regions/northeurope"));
        assert!(
            primary.iter().any(|p| p.starts_with("packs")),
            "{primary:?}"
        );
        assert_eq!(primary, secondary, "the secondary holds every object");
    }

    // West Europe goes down: the primary data plane answers 503, nothing is written.
    let (status, _) = stack
        .admin(reqwest::Method::PUT, "/admin/regions/West%20Europe/outage")
        .await;
    assert_eq!(status, 200);
    std::fs::write(data.join("new.txt"), "written during the outage").unwrap();
    let refused = machine
        .run(&["backup", "--include", data.to_str().unwrap()])
        .await;
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("RegionUnavailable"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        objects(&state.path().join("blobs")),
        primary,
        "nothing written in the region"
    );
    let target = stack.dir.path().join("restored-primary");
    let refused = machine
        .run(&["restore", &point, "--target", target.to_str().unwrap()])
        .await;
    assert!(!refused.status.success(), "the primary cannot restore");

    // The secondary lists the point and restores it byte for byte.
    let listed = machine
        .json(&["recovery-points", "--secondary-region"])
        .await;
    assert!(listed.to_string().contains(&point), "{listed}");
    let restored_root = restore(&machine, &stack, &point, &["--secondary-region"]).await;
    std::fs::remove_file(data.join("new.txt")).unwrap();
    assert_eq!(tree(&restored_root), tree(&data));

    // Back up again once the region is back.
    stack
        .admin(reqwest::Method::DELETE, "/admin/regions/westeurope/outage")
        .await;
    let out = machine
        .run(&["backup", "--include", data.to_str().unwrap()])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, bad) = stack
        .admin(reqwest::Method::PUT, "/admin/regions/atlantis/outage")
        .await;
    assert_eq!(status, 400, "{bad}");
    stack.kit.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lrs_keeps_one_copy_and_refuses_cross_region_restore() {
    let state = tempfile::tempdir().unwrap();
    let stack = start_on(Storage::Disk(state.path().to_path_buf())).await;
    let (machine, data) = machine_on(&stack, "local", "LocallyRedundant").await;
    let point = backup(&machine, &data).await;
    assert!(
        objects(&state.path().join("regions")).is_empty(),
        "one copy only"
    );
    let target = stack.dir.path().join("restored");
    let out = machine
        .run(&[
            "restore",
            &point,
            "--target",
            target.to_str().unwrap(),
            "--secondary-region",
        ])
        .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("GeoRedundant"), "{}", stderr(&out));

    // A GRS vault without Cross Region Restore refuses too, naming the setting.
    let (grs, _) = stack.registered("geo-no-crr", "server2").await;
    backup(&grs, &data).await;
    let out = grs.run(&["recovery-points", "--secondary-region"]).await;
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("crossRegionRestore"),
        "{}",
        stderr(&out)
    );
    stack.kit.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zrs_survives_the_loss_of_a_zone() {
    let state = tempfile::tempdir().unwrap();
    let stack = start_on(Storage::Disk(state.path().to_path_buf())).await;
    let (machine, data) = machine_on(&stack, "zonal", "ZoneRedundant").await;
    let point = backup(&machine, &data).await;

    // Three copies, in three zones of West Europe, written before the backup returned.
    let zone1 = objects(&state.path().join("blobs"));
    for zone in [2, 3] {
        let path = state.path().join(format!("zones/westeurope/{zone}"));
        assert_eq!(objects(&path), zone1, "zone {zone}");
    }
    assert!(
        objects(&state.path().join("regions")).is_empty(),
        "no other region"
    );

    // Zone 1 is lost: every object of this vault there disappears.
    std::fs::remove_dir_all(state.path().join("blobs/packs")).unwrap();
    std::fs::remove_dir_all(state.path().join("blobs/manifests")).unwrap();
    let restored_root = restore(&machine, &stack, &point, &[]).await;
    assert_eq!(tree(&restored_root), tree(&data));
    stack.kit.shutdown().await;
}
