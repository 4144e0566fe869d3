//! The vault keeps its promises on the simulated clock: retention by policy over 400 days
//! against a table computed here, garbage collection and repacking that keep every live
//! chunk, soft delete with security PINs and undelete, and immutability on every path.

mod common;

use bytes::Bytes;
use chrono::{DateTime, Datelike, Months, TimeDelta, Utc, Weekday};
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn all_four_kinds() -> Value {
    json!({"properties": {
        "backupManagementType": "MAB",
        "schedulePolicy": {"schedulePolicyType": "SimpleSchedulePolicy", "scheduleRunFrequency": "Daily",
            "scheduleRunTimes": ["2020-01-01T21:00:00Z"]},
        "retentionPolicy": {"retentionPolicyType": "LongTermRetentionPolicy",
            "dailySchedule": {"retentionTimes": ["2020-01-01T21:00:00Z"], "retentionDuration": {"count": 7, "durationType": "Days"}},
            "weeklySchedule": {"daysOfTheWeek": ["Sunday"], "retentionTimes": ["2020-01-01T21:00:00Z"],
                "retentionDuration": {"count": 4, "durationType": "Weeks"}},
            "monthlySchedule": {"retentionScheduleFormatType": "Weekly",
                "retentionScheduleWeekly": {"daysOfTheWeek": ["Sunday"], "weeksOfTheMonth": ["First"]},
                "retentionTimes": ["2020-01-01T21:00:00Z"], "retentionDuration": {"count": 3, "durationType": "Months"}},
            "yearlySchedule": {"retentionScheduleFormatType": "Weekly", "monthsOfYear": ["January"],
                "retentionScheduleWeekly": {"daysOfTheWeek": ["Sunday"], "weeksOfTheMonth": ["First"]},
                "retentionTimes": ["2020-01-01T21:00:00Z"], "retentionDuration": {"count": 1, "durationType": "Years"}}}
    }})
}

/// How long a daily 21:00 point of `day` lives under `all_four_kinds`, worked out here
/// from the calendar alone.
fn expected_expiry(day: DateTime<Utc>) -> DateTime<Utc> {
    let sunday = day.weekday() == Weekday::Sun;
    let first_sunday = sunday && day.day() <= 7;
    let mut keep = day + TimeDelta::days(7);
    if sunday {
        keep = keep.max(day + TimeDelta::weeks(4));
    }
    if first_sunday {
        keep = keep.max(day.checked_add_months(Months::new(3)).unwrap());
    }
    if first_sunday && day.month() == 1 {
        keep = keep.max(day.checked_add_months(Months::new(12)).unwrap());
    }
    keep
}

async fn vault_with(properties: Value) -> TestArm {
    let t = start().await;
    t.group("rg1").await;
    let mut body = minimal_vault();
    body["properties"] = properties;
    t.vault("rg1", "vault1", body).await;
    t
}

async fn new_item(t: &TestArm, token: &str, path: &str) -> String {
    let (_, item, _) = data_plane(
        t,
        Method::POST,
        "/items",
        Some(json!({"path": path})),
        token,
    )
    .await;
    item["item"].as_str().unwrap().to_string()
}

async fn commit(t: &TestArm, token: &str, item: &str, retain_until: Option<i64>) -> Value {
    let (status, point, _) = data_plane(
        t,
        Method::POST,
        "/recoveryPoints",
        Some(json!({"item": item, "manifest": "bQ==", "chunks": [], "retainUntil": retain_until})),
        token,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{point}");
    point
}

fn item_path(item: &str) -> String {
    format!(
        "{}/backupFabrics/Azure/protectionContainers/server-a/protectedItems/{item}",
        vault_path("rg1", "vault1")
    )
}

#[tokio::test]
async fn four_hundred_days_of_points_keep_exactly_what_the_policy_says() {
    let t = vault_with(json!({})).await;
    let token = t.admin().await;
    let login = machine_login(&t, "vault1", "server-a").await;
    let a = login.token(&t).await;
    let (status, body, _) = t
        .arm(
            Method::PUT,
            &format!("{}/backupPolicies/FourKinds", vault_path("rg1", "vault1")),
            Some(all_four_kinds()),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let item = new_item(&t, &a, "/data").await;
    let (status, body, _) = t
        .arm(
            Method::PUT,
            &item_path(&item),
            Some(
                json!({"properties": {"protectedItemType": "MabFileFolderProtectedItem",
                "policyId": format!("{}/backupPolicies/FourKinds", vault_path("rg1", "vault1"))}}),
            ),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["properties"]["policyName"], "FourKinds");

    let first: DateTime<Utc> = "2026-12-01T21:00:00Z".parse().unwrap();
    let mut made = Vec::new();
    for day in 0..400 {
        let at = first + TimeDelta::days(day);
        t.clock.set(at).unwrap();
        let a = login.token(&t).await;
        let point = commit(&t, &a, &item, None).await;
        made.push((point["name"].as_str().unwrap().to_string(), at));
    }
    let now = first + TimeDelta::days(400);
    t.clock.set(now).unwrap();
    let token = t.admin().await;
    let a = login.token(&t).await;
    let mut expected: Vec<String> = made
        .iter()
        .filter(|(_, at)| expected_expiry(*at) > now)
        .map(|(name, _)| name.clone())
        .collect();
    let (_, listed, _) = t
        .arm(
            Method::GET,
            &format!("{}/recoveryPoints?$top=1000", item_path(&item)),
            None,
            &token,
        )
        .await;
    let points = listed["value"].as_array().unwrap();
    let mut survivors: Vec<String> = points
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    expected.sort();
    survivors.sort();
    assert_eq!(survivors, expected);
    assert!(
        survivors.len() > 10 && survivors.len() < 30,
        "{}",
        survivors.len()
    );
    for point in points {
        let name = point["name"].as_str().unwrap();
        let (_, at) = made.iter().find(|(n, _)| n == name).unwrap();
        let properties = &point["properties"]["recoveryPointProperties"];
        assert_eq!(
            properties["expiryTime"].as_str().unwrap(),
            sim_core::arm::iso(expected_expiry(*at).timestamp()),
            "{point}"
        );
        assert!(
            properties["ruleName"].as_str().unwrap().contains("Daily")
                || at.weekday() == Weekday::Sun
        );
    }
    // The data plane shows the same points with their tags.
    let (_, own, _) = data_plane(
        &t,
        Method::GET,
        "/servers/server-a/recoveryPoints",
        None,
        &a,
    )
    .await;
    assert_eq!(own["value"].as_array().unwrap().len(), survivors.len());
    // A Back Up Now point keeps the date it was given.
    let until = (now + TimeDelta::days(3)).timestamp();
    let adhoc = commit(&t, &a, &item, Some(until)).await;
    assert_eq!(adhoc["expires"], until);
    assert_eq!(adhoc["tags"], json!(["AdHoc"]));
}

#[tokio::test]
async fn expired_points_are_collected_and_mostly_garbage_packs_are_repacked() {
    let t = vault_with(json!({})).await;
    let state = t.state();
    let vault = state.vaults.get(SUB, "rg1", "vault1").await.unwrap();
    let data = &state.data;
    let id = |c: char| c.to_string().repeat(64);
    let (a, b, c, d) = (id('a'), id('b'), id('c'), id('d'));
    let blob_c = vec![3u8; 100];
    let (p1, body1) = pack(&[(&a, &[1u8; 1000]), (&b, &[2u8; 1000]), (&c, &blob_c)]);
    let (p2, body2) = pack(&[(&d, &[4u8; 500])]);
    data.put_pack(vault.id, &p1, vec![Bytes::from(body1)], 1)
        .await
        .unwrap();
    data.put_pack(vault.id, &p2, vec![Bytes::from(body2)], 1)
        .await
        .unwrap();
    state
        .backup
        .register_container(&vault, "server-a", "test", 1)
        .await
        .unwrap();
    state
        .backup
        .protect_item(&vault, "server-a", "item", "/data", 1)
        .await
        .unwrap();
    let retain = |until| vault_server::retention::plan(&Value::Null, 1, Some(until));
    let m = Bytes::from_static(b"m");
    data.commit(
        &vault,
        "server-a",
        "item",
        "rp-short",
        m.clone(),
        &[a.clone(), b.clone(), c.clone(), d.clone()],
        1,
        &retain(100),
    )
    .await
    .unwrap();
    data.commit(
        &vault,
        "server-a",
        "item",
        "rp-long",
        m,
        std::slice::from_ref(&c),
        1,
        &retain(10_000),
    )
    .await
    .unwrap();
    let before = state.lifecycle.stored_bytes(&vault).await.unwrap();

    let report = state.lifecycle.sweep(&vault, 101).await.unwrap();
    assert_eq!(
        (report.packs_deleted, report.packs_repacked),
        (1, 1),
        "{report:?}"
    );
    let after = state.lifecycle.stored_bytes(&vault).await.unwrap();
    assert!(after < before / 5, "stored {before} → {after}");
    assert_eq!(
        data.missing(vault.id, &[a.clone(), b.clone(), c.clone(), d.clone()])
            .await
            .unwrap(),
        vec![a, b, d],
        "only the live chunk is left"
    );
    let located = data
        .locate(vault.id, std::slice::from_ref(&c))
        .await
        .unwrap();
    let new_pack = located[0].pack.as_str();
    assert_ne!(new_pack, p1);
    let offset = located[0].offset;
    let bytes = data
        .read_pack(vault.id, new_pack, Some((offset, offset + 100)), None)
        .await
        .unwrap();
    assert_eq!(&bytes[..], &blob_c[..], "the sealed bytes moved unchanged");
    assert_eq!(
        &data
            .manifest(vault.id, "server-a", "rp-long", None)
            .await
            .unwrap()[..],
        b"m"
    );
    assert!(matches!(
        data.manifest(vault.id, "server-a", "rp-short", None).await,
        Err(vault_server::VsError::NotFound(_))
    ));
    // Nothing more to do, and the old packs are gone from storage.
    let again = state.lifecycle.collect(&vault).await.unwrap();
    assert_eq!((again.packs_deleted, again.packs_repacked), (0, 0));
    assert!(data.read_pack(vault.id, &p1, None, None).await.is_err());
    assert!(data.read_pack(vault.id, &p2, None, None).await.is_err());
}

async fn pin(t: &TestArm, token: &str) -> String {
    let (status, body, _) = t
        .arm(
            Method::POST,
            &format!("{}/backupSecurityPIN", vault_path("rg1", "vault1")),
            Some(json!({})),
            token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["expiryTimeInUtcTicks"].as_i64().unwrap() > 0);
    body["securityPIN"].as_str().unwrap().to_string()
}

async fn stop(t: &TestArm, a: &str, item: &str, pin: Option<&str>) -> (StatusCode, Value) {
    let (status, body, _) = data_plane(
        t,
        Method::POST,
        "/items/stop",
        Some(json!({"item": item, "deleteData": true, "securityPin": pin})),
        a,
    )
    .await;
    (status, body)
}

#[tokio::test]
async fn deleting_data_needs_a_pin_and_soft_delete_keeps_it_recoverable() {
    let t = vault_with(json!({})).await;
    let token = t.admin().await;
    let login = machine_login(&t, "vault1", "server-a").await;
    let a = login.token(&t).await;
    let item = new_item(&t, &a, "/data").await;
    commit(&t, &a, &item, None).await;

    let (status, body) = stop(&t, &a, &item, None).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "BMSUserErrorSecurityPinInvalid")
    );
    let (status, body) = stop(&t, &a, &item, Some("000000x")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(message(&body).contains("not valid"), "{body}");
    let old = pin(&t, &token).await;
    t.clock.advance(6 * 60).unwrap();
    let a = login.token(&t).await;
    let token = t.admin().await;
    let (status, body) = stop(&t, &a, &item, Some(&old)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("expired"), "{body}");

    let fresh = pin(&t, &token).await;
    let (status, body) = stop(&t, &a, &item, Some(&fresh)).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = stop(&t, &a, &item, Some(&fresh)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a PIN works once: {body}");
    let (_, shown, _) = t.arm(Method::GET, &item_path(&item), None, &token).await;
    assert_eq!(
        shown["properties"]["isScheduledForDeferredDelete"], true,
        "{shown}"
    );
    assert!(shown["properties"]["deferredDeleteTimeInUTC"].is_string());
    assert_eq!(shown["properties"]["protectionState"], "ProtectionStopped");
    let (_, points, _) = t
        .arm(
            Method::GET,
            &format!("{}/recoveryPoints", item_path(&item)),
            None,
            &token,
        )
        .await;
    assert_eq!(
        points["value"][0]["properties"]["recoveryPointProperties"]["isSoftDeleted"],
        true
    );
    // Backups of deleted data are refused until it is undeleted.
    let (status, _, _) = data_plane(
        &t,
        Method::POST,
        "/recoveryPoints",
        Some(json!({"item": item, "manifest": "bQ==", "chunks": []})),
        &a,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Undelete through ARM (as the portal does), then delete again and let it lapse.
    let (status, body, _) = t
        .arm(
            Method::PUT,
            &item_path(&item),
            Some(json!({"properties": {"protectedItemType": "MabFileFolderProtectedItem", "isRehydrate": true}})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["properties"]["isScheduledForDeferredDelete"], false);
    let (status, _, _) = t.arm(Method::DELETE, &item_path(&item), None, &token).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    t.clock.advance(13 * 86_400).unwrap();
    let token = t.admin().await;
    let (status, _, _) = t.arm(Method::GET, &item_path(&item), None, &token).await;
    assert_eq!(status, StatusCode::OK, "kept for the 14 soft-delete days");
    t.clock.advance(2 * 86_400).unwrap();
    let token = t.admin().await;
    let a = login.token(&t).await;
    let (status, _, _) = t.arm(Method::GET, &item_path(&item), None, &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "purged after them");

    // Soft delete Disabled: deleted at once.
    let (status, body, _) = t
        .arm(
            Method::PATCH,
            &vault_path("rg1", "vault1"),
            Some(json!({"properties": {"securitySettings": {"softDeleteSettings": {"softDeleteState": "Disabled"}}}})),
            &token,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let other = new_item(&t, &a, "/other").await;
    commit(&t, &a, &other, None).await;
    let fresh = pin(&t, &token).await;
    let (status, _) = stop(&t, &a, &other, Some(&fresh)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = t.arm(Method::GET, &item_path(&other), None, &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn immutable_vaults_refuse_every_early_removal() {
    for state in ["Unlocked", "Locked"] {
        let t = vault_with(json!({})).await;
        let token = t.admin().await;
        let vault = vault_path("rg1", "vault1");
        for step in ["Unlocked", state] {
            let (status, body, _) = t
                .arm(
                    Method::PATCH,
                    &vault,
                    Some(json!({"properties": {"securitySettings": {"immutabilitySettings": {"state": step}}}})),
                    &token,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let a = machine(&t, "vault1", "server-a").await;
        let item = new_item(&t, &a, "/data").await;
        let point = commit(&t, &a, &item, None).await;
        let refused = |status: StatusCode, body: &Value, what: &str| {
            assert_eq!(status, StatusCode::BAD_REQUEST, "{state} {what}: {body}");
            assert_eq!(
                code(body),
                "BMSUserErrorImmutableRecoveryPointNotExpired",
                "{state} {what}"
            );
        };

        let fresh = pin(&t, &token).await;
        let (status, body) = stop(&t, &a, &item, Some(&fresh)).await;
        refused(status, &body, "delete data (agent)");
        let (status, body, _) = t.arm(Method::DELETE, &item_path(&item), None, &token).await;
        refused(status, &body, "delete data (ARM)");
        let (status, body, _) = t
            .arm(
                Method::DELETE,
                &format!("{vault}/registeredIdentities/server-a"),
                None,
                &token,
            )
            .await;
        refused(status, &body, "unregister");
        let (status, body, _) = data_plane(&t, Method::DELETE, "/register", None, &a).await;
        refused(status, &body, "unregister (agent)");
        let mut shorter = vault_server::policy::default_mab();
        shorter["retentionPolicy"]["dailySchedule"]["retentionDuration"]["count"] = json!(7);
        let (status, body, _) = t
            .arm(
                Method::PUT,
                &format!("{vault}/backupPolicies/DefaultPolicy"),
                Some(json!({"properties": shorter})),
                &token,
            )
            .await;
        refused(status, &body, "shorter retention");
        let (status, body, _) = t.arm(Method::DELETE, &vault, None, &token).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{state} vault delete: {body}"
        );
        let (status, body, _) = t
            .arm(Method::DELETE, &group_path("rg1"), None, &token)
            .await;
        assert!(status.is_client_error(), "{state} group delete: {body}");
        // Longer retention is allowed and moves the expiry out.
        let mut longer = vault_server::policy::default_mab();
        longer["retentionPolicy"]["dailySchedule"]["retentionDuration"]["count"] = json!(60);
        let (status, body, _) = t
            .arm(
                Method::PUT,
                &format!("{vault}/backupPolicies/DefaultPolicy"),
                Some(json!({"properties": longer})),
                &token,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        // The point is intact and still served.
        let (_, points, _) = t
            .arm(
                Method::GET,
                &format!("{}/recoveryPoints", item_path(&item)),
                None,
                &token,
            )
            .await;
        assert_eq!(points["value"].as_array().unwrap().len(), 1);
        let (status, _, _) = t
            .send(
                Method::GET,
                &format!(
                    "{}/backup/v1/servers/server-a/recoveryPoints/{}/manifest",
                    t.url,
                    point["name"].as_str().unwrap()
                ),
                None,
                Some(&a),
            )
            .await;
        assert_eq!(status, StatusCode::OK);

        // Once the point expires, deleting is allowed.
        t.clock.advance(61 * 86_400).unwrap();
        let token = t.admin().await;
        let (status, body, _) = t.arm(Method::DELETE, &item_path(&item), None, &token).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{state}: {body}");
    }
}
