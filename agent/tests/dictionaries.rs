//! Compression dictionaries end to end: small files and large compressible files take
//! less room with them; a lost cache gets the same dictionaries back from the vault (so
//! chunks sealed with them stay referenced); restore, restore on another machine and
//! `check --read-data` open every chunk.

mod common;

use std::path::Path;

use common::*;

const WORDS: [&str; 12] = [
    "backup",
    "vault",
    "chunk",
    "index",
    "restore",
    "policy",
    "retention",
    "schedule",
    "agent",
    "token",
    "upload",
    "stream",
];

/// 1,000 small source-like files: a licence header and lines drawn from one pool of
/// 3,000 (files share much, each repeats little), and a 6 MiB log.
fn make_tree(root: &Path) {
    let mut state = 7u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut word = || WORDS[next() as usize % WORDS.len()];
    let pool: Vec<String> = (0..3000)
        .map(|n| {
            format!(
                "    let {}_{} = {}.{}_{}({n});\n",
                word(),
                word(),
                word(),
                word(),
                word()
            )
        })
        .collect();
    let header = "// Licensed under the Apache License, Version 2.0 (the \"License\");\n// you may not use this file except in compliance with the License.\n".repeat(4);
    for file in 0..1000 {
        let dir = root.join(format!("src/module_{:02}", file % 20));
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = header.clone();
        while text.len() < 2000 + (file * 13) % 6000 {
            text.push_str(&pool[next() as usize % pool.len()]);
        }
        std::fs::write(dir.join(format!("file_{file:03}.rs")), text).unwrap();
    }
    let mut log = String::new();
    for line in 0..100_000u64 {
        log.push_str(&format!(
            "2024-06-01T00:{:02}:{:02}Z INFO [{}] job={} bytes={} {}",
            line / 60 % 60,
            line % 60,
            WORDS[next() as usize % WORDS.len()],
            next() % 5000,
            next() % 1_000_000,
            pool[next() as usize % pool.len()]
        ));
    }
    std::fs::write(root.join("service.log"), log).unwrap();
}

/// Byte for byte (`diff -r`).
fn assert_same_tree(original: &Path, restored: &Path) {
    let differ = std::process::Command::new("diff")
        .arg("-r")
        .arg(original)
        .arg(restored)
        .output()
        .unwrap();
    let says = String::from_utf8_lossy(&differ.stdout);
    assert!(differ.status.success(), "{}", &says[..says.len().min(2000)]);
}

fn zstd_size(data: &[u8]) -> u64 {
    zstd::bulk::compress(data, 3).unwrap().len() as u64
}

fn cached_dictionaries(cache: &Path) -> Vec<u8> {
    let found: Vec<_> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("dictionaries-")
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    std::fs::read(&found[0]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dictionaries_shrink_the_data_survive_a_lost_cache_and_open_everywhere() {
    let stack = start().await;
    let (server1, _) = stack.registered("vault1", "server1").await;
    let data = stack.dir.path().join("data");
    make_tree(&data);
    let plain: u64 = files_under(&data)
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).unwrap();
            match bytes.len() > 128 * 1024 {
                // The log as the agent cuts it: about 1 MiB chunks.
                true => bytes.chunks(1 << 20).map(zstd_size).sum(),
                false => zstd_size(&bytes),
            }
        })
        .sum();

    let first = server1
        .json(&["backup", "--include", data.to_str().unwrap()])
        .await;
    assert_eq!(first[0]["status"], "Completed", "{first}");
    let uploaded = first[0]["bytesUploaded"].as_u64().unwrap();
    // The dictionaries travel too, as do blob headers and pack indexes, and still the
    // whole is smaller.
    assert!(
        uploaded < plain,
        "{uploaded} bytes uploaded; zstd alone makes {plain}"
    );
    let cache = stack.dir.path().join("cache-server1");
    let dictionaries = cached_dictionaries(&cache);

    // The cache is lost (a reinstall): the next backup reads the dictionaries back from
    // the newest recovery point instead of making new ones.
    std::fs::remove_dir_all(&cache).unwrap();
    std::fs::create_dir_all(&cache).unwrap();
    // 200 small files change: they alone are sealed, with the small-file dictionary.
    let mut changed_plain = 0;
    for file in (0..1000).step_by(5) {
        let path = data.join(format!("src/module_{:02}/file_{file:03}.rs", file % 20));
        let mut text = std::fs::read_to_string(&path).unwrap();
        text = text
            .replacen("Apache License", "Apache Licence", 1)
            .replace(" = ", " == ");
        changed_plain += zstd_size(text.as_bytes());
        std::fs::write(&path, text).unwrap();
    }
    let second = server1
        .json(&["backup", "--include", data.to_str().unwrap()])
        .await;
    assert_eq!(second[0]["status"], "Completed", "{second}");
    assert!(
        cached_dictionaries(&cache) == dictionaries,
        "the same dictionaries ({} bytes cached before)",
        dictionaries.len()
    );
    let uploaded = second[0]["bytesUploaded"].as_u64().unwrap();
    let overhead = 200 * 200;
    assert!(
        uploaded < changed_plain * 8 / 10 + overhead,
        "{uploaded} bytes uploaded for 200 small files; zstd alone makes {changed_plain}"
    );

    let points = server1.json(&["recovery-points"]).await;
    assert_eq!(points.as_array().unwrap().len(), 2);
    for point in points.as_array().unwrap() {
        let target = stack
            .dir
            .path()
            .join(format!("restored-{}", point["name"].as_str().unwrap()));
        let restored = server1
            .json(&[
                "restore",
                point["name"].as_str().unwrap(),
                "--target",
                target.to_str().unwrap(),
            ])
            .await;
        assert!(
            restored["damaged"].as_array().is_none_or(|d| d.is_empty()),
            "{restored}"
        );
        assert_eq!(restored["files"], 1001, "{restored}");
    }
    let newest = stack
        .dir
        .path()
        .join(format!("restored-{}", points[0]["name"].as_str().unwrap()));
    assert_same_tree(&data, &newest);

    // A restore takes the dictionaries from the cache only when their content has the ids
    // the manifest names: a damaged cache is passed over for the vault's copies.
    let cache_file = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("dictionaries-"))
        .unwrap();
    let mut damaged = std::fs::read(&cache_file).unwrap();
    for at in (100..damaged.len()).step_by(4096) {
        damaged[at] ^= 0x55;
    }
    std::fs::write(&cache_file, damaged).unwrap();
    let again = stack.dir.path().join("restored-with-a-damaged-cache");
    let restored = server1
        .json(&[
            "restore",
            points[0]["name"].as_str().unwrap(),
            "--target",
            again.to_str().unwrap(),
        ])
        .await;
    assert_eq!(restored["files"], 1001, "{restored}");
    assert_same_tree(&data, &again);
    std::fs::write(&cache_file, &dictionaries).unwrap();

    // Another machine, with server1's passphrase, loads the dictionaries from the manifest.
    let (server2, _) = stack.registered("vault1", "server2").await;
    let passphrase = stack.write("server1-passphrase", PASSPHRASE);
    let elsewhere = stack.dir.path().join("elsewhere");
    let restored = server2
        .json(&[
            "restore",
            points[0]["name"].as_str().unwrap(),
            "--from-server",
            "server1",
            "--passphrase-file",
            passphrase.to_str().unwrap(),
            "--target",
            elsewhere.to_str().unwrap(),
        ])
        .await;
    assert_eq!(restored["files"], 1001, "{restored}");
    assert_same_tree(&data, &elsewhere);

    let checked = server1.json(&["check", "--read-data"]).await;
    assert!(
        checked["damaged"].as_array().unwrap().is_empty(),
        "{checked}"
    );
    assert!(checked["chunksRead"].as_u64().unwrap() >= 1002, "{checked}");
}
