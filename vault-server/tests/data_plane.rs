//! The pack store of the backup data plane and its bad inputs: damaged or malformed packs,
//! ranges past the end, unknown packs and commits that reference missing chunks.

mod common;

use bytes::Bytes;
use common::*;
use vault_server::VsError;

#[tokio::test]
async fn packs_are_checked_on_upload_and_ranges_stay_inside_them() {
    let t = start().await;
    t.group("rg1").await;
    t.vault("rg1", "vault1", minimal_vault()).await;
    let state = t.state();
    let vault = state.vaults.get(SUB, "rg1", "vault1").await.unwrap();
    let data = &state.data;
    let chunk = "a".repeat(64);
    let (id, body) = pack(&[(&chunk, b"sealed bytes")]);

    let wrong_id = "b".repeat(64);
    let damaged = data
        .put_pack(vault.id, &wrong_id, vec![Bytes::from(body.clone())], 1)
        .await;
    assert!(matches!(damaged, Err(VsError::BadRequest(m)) if m.contains("does not match")));
    let mut bad_index = body.clone();
    let len = bad_index.len();
    bad_index[len - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    let bad_id = blake3::hash(&bad_index).to_hex().to_string();
    let malformed = data
        .put_pack(vault.id, &bad_id, vec![Bytes::from(bad_index)], 1)
        .await;
    assert!(matches!(malformed, Err(VsError::BadRequest(m)) if m.contains("malformed")));

    assert_eq!(
        data.missing(vault.id, std::slice::from_ref(&chunk))
            .await
            .unwrap(),
        std::slice::from_ref(&chunk)
    );
    assert_eq!(
        data.put_pack(vault.id, &id, vec![Bytes::from(body.clone())], 1)
            .await
            .unwrap(),
        1
    );
    assert!(
        data.missing(vault.id, std::slice::from_ref(&chunk))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        data.put_pack(vault.id, &id, vec![Bytes::from(body.clone())], 1)
            .await
            .unwrap(),
        1,
        "idempotent"
    );

    // A pack arrives in parts, split anywhere (here inside the index and its length).
    let other = "e".repeat(64);
    let (parted_id, parted) = pack(&[(&other, b"more sealed bytes")]);
    let cuts = [5, parted.len() - 30, parted.len() - 2];
    let parts = vec![
        Bytes::copy_from_slice(&parted[..cuts[0]]),
        Bytes::copy_from_slice(&parted[cuts[0]..cuts[1]]),
        Bytes::copy_from_slice(&parted[cuts[1]..cuts[2]]),
        Bytes::copy_from_slice(&parted[cuts[2]..]),
    ];
    assert_eq!(
        data.put_pack(vault.id, &parted_id, parts, 1).await.unwrap(),
        1
    );
    let stored = data
        .read_pack(vault.id, &parted_id, None, None)
        .await
        .unwrap();
    assert_eq!(&stored[..], &parted[..], "stored as one body");
    let located = data
        .locate(vault.id, std::slice::from_ref(&other))
        .await
        .unwrap();
    assert_eq!(
        (located[0].pack.as_str(), located[0].length),
        (parted_id.as_str(), 17)
    );
    let bad = data.locate(vault.id, &["E".repeat(64)]).await;
    assert!(matches!(bad, Err(VsError::BadRequest(m)) if m.contains("not a chunk id")));
    let unknown_chunk = data.locate(vault.id, &["f".repeat(64)]).await;
    assert!(matches!(unknown_chunk, Err(VsError::NotFound(_))));
    let empty_id = blake3::hash(b"").to_hex().to_string();
    let empty = data.put_pack(vault.id, &empty_id, Vec::new(), 1).await;
    assert!(matches!(empty, Err(VsError::BadRequest(m)) if m.contains("trailer")));

    let first = data
        .read_pack(vault.id, &id, Some((0, 12)), None)
        .await
        .unwrap();
    assert_eq!(&first[..], b"sealed bytes");
    let past = data
        .read_pack(vault.id, &id, Some((0, body.len() as u64 + 1)), None)
        .await;
    assert!(matches!(past, Err(VsError::BadRequest(m)) if m.contains("past the end")));
    let unknown = data.read_pack(vault.id, &"c".repeat(64), None, None).await;
    assert!(matches!(unknown, Err(VsError::NotFound(_))));
    assert!(matches!(
        data.missing(vault.id, &["NOT-HEX".into()]).await,
        Err(VsError::BadRequest(_))
    ));

    state
        .backup
        .register_container(&vault, "server1", "test", 1)
        .await
        .unwrap();
    state
        .backup
        .protect_item(&vault, "server1", "item1", "/data", 1)
        .await
        .unwrap();
    let orphan = data
        .commit(
            &vault,
            "server1",
            "item1",
            "rp1",
            Bytes::from_static(b"m"),
            &["d".repeat(64)],
            2,
            &vault_server::retention::plan(&serde_json::Value::Null, 2, Some(100)),
        )
        .await;
    assert!(matches!(orphan, Err(VsError::ChunksNotStored(m)) if m.contains("does not hold")));
    let unprotected = data
        .commit(
            &vault,
            "server1",
            "other",
            "rp1",
            Bytes::from_static(b"m"),
            std::slice::from_ref(&chunk),
            2,
            &vault_server::retention::plan(&serde_json::Value::Null, 2, Some(100)),
        )
        .await;
    assert!(matches!(unprotected, Err(VsError::BadRequest(m)) if m.contains("not protected")));
    data.commit(
        &vault,
        "server1",
        "item1",
        "rp1",
        Bytes::from_static(b"m"),
        &[chunk],
        2,
        &vault_server::retention::plan(&serde_json::Value::Null, 2, Some(100)),
    )
    .await
    .unwrap();
    assert_eq!(
        &data
            .manifest(vault.id, "server1", "rp1", None)
            .await
            .unwrap()[..],
        b"m"
    );
}
