//! What restic keeps, the agent keeps: names at the file-system limit and names that are
//! not UTF-8, holes in sparse files, hard links, owners, `user.` extended attributes and the
//! restored root's mtime; and a damaged pack spoils only the files that use it.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// Backs up `data` and restores the recovery point into a new directory.
async fn round_trip(stack: &Stack, machine: &Machine, data: &Path) -> (Value, PathBuf) {
    let backup = machine
        .json(&["backup", "--include", data.to_str().unwrap()])
        .await;
    assert_eq!(backup[0]["status"], "Completed", "{backup}");
    let point = backup[0]["recoveryPoint"].as_str().unwrap().to_string();
    let target = stack.dir.path().join(format!("restored-{point}"));
    let restored = machine
        .json(&["restore", &point, "--target", target.to_str().unwrap()])
        .await;
    (restored, target)
}

fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(leftovers(&path));
        } else if path.to_string_lossy().contains("partial") {
            found.push(path);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn names_at_the_limit_and_names_that_are_not_utf8_restore_byte_exact() {
    let stack = start().await;
    let machine = stack.registered("vault1", "server1").await.0;
    let data = stack.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let long = "l".repeat(250);
    std::fs::write(data.join(&long), b"a name of 250 bytes").unwrap();
    let latin1 = OsStr::from_bytes(b"caf\xe9 \xff.txt");
    std::fs::write(data.join(latin1), b"not UTF-8").unwrap();
    let odd_dir = data.join(OsStr::from_bytes(b"dir \xfe"));
    std::fs::create_dir(&odd_dir).unwrap();
    std::fs::write(odd_dir.join("inner.txt"), b"inside").unwrap();
    std::os::unix::fs::symlink(OsStr::from_bytes(b"caf\xe9 \xff.txt"), data.join("link")).unwrap();

    let (restored, target) = round_trip(&stack, &machine, &data).await;
    assert_eq!(restored["files"], 3, "{restored}");
    assert_eq!(
        std::fs::read(target.join(&long)).unwrap(),
        b"a name of 250 bytes"
    );
    assert_eq!(std::fs::read(target.join(latin1)).unwrap(), b"not UTF-8");
    assert_eq!(
        std::fs::read(target.join(OsStr::from_bytes(b"dir \xfe/inner.txt"))).unwrap(),
        b"inside"
    );
    assert_eq!(
        std::fs::read_link(target.join("link"))
            .unwrap()
            .as_os_str()
            .as_bytes(),
        b"caf\xe9 \xff.txt"
    );
    // Restoring again beside the existing files: copies of a 250-byte name still fit.
    let point = restored["recoveryPoint"].as_str().unwrap();
    let again = machine
        .json(&["restore", point, "--target", target.to_str().unwrap()])
        .await;
    assert_eq!(again["files"], 3, "{again}");
    assert!(leftovers(&target).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sparse_files_keep_their_holes() {
    let stack = start().await;
    let machine = stack.registered("vault1", "server1").await.0;
    let data = stack.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // 64 MiB: 1 MiB of data, a 62 MiB hole, 1 MiB of data; and one ending in a hole.
    let sparse = data.join("disk.img");
    let file = std::fs::File::create(&sparse).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[7u8; 1 << 20], 0).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[9u8; 1 << 20], 63 << 20).unwrap();
    drop(file);
    let tail = data.join("tail-hole.img");
    let file = std::fs::File::create(&tail).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"head", 0).unwrap();
    file.set_len(40 << 20).unwrap();
    drop(file);

    let (restored, target) = round_trip(&stack, &machine, &data).await;
    assert_eq!(restored["files"], 2, "{restored}");
    for name in ["disk.img", "tail-hole.img"] {
        let original = std::fs::read(data.join(name)).unwrap();
        let copy = std::fs::read(target.join(name)).unwrap();
        assert!(original == copy, "{name} differs");
        let allocated = std::fs::metadata(target.join(name)).unwrap().blocks() * 512;
        assert!(
            allocated < 16 << 20,
            "{name}: {allocated} bytes allocated for a mostly empty file"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hard_links_owners_extended_attributes_and_the_root_mtime_are_kept() {
    let stack = start().await;
    let machine = stack.registered("vault1", "server1").await.0;
    let data = stack.dir.path().join("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("original.txt"), b"shared content").unwrap();
    std::fs::hard_link(data.join("original.txt"), data.join("sub/second-name.txt")).unwrap();
    std::fs::write(data.join("owned.txt"), b"owned by someone else").unwrap();
    let as_root = nix::unistd::geteuid().is_root();
    if as_root {
        std::os::unix::fs::chown(data.join("owned.txt"), Some(1234), Some(5678)).unwrap();
    }
    let with_xattr = data.join("tagged.txt");
    std::fs::write(&with_xattr, b"tagged").unwrap();
    xattr::set(&with_xattr, "user.origin", b"scanner \x00\x01").unwrap();
    xattr::set(data.join("sub"), "user.colour", b"blue").unwrap();
    let root_mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000);
    std::fs::File::open(&data)
        .unwrap()
        .set_modified(root_mtime)
        .unwrap();

    let (restored, target) = round_trip(&stack, &machine, &data).await;
    assert_eq!(restored["files"], 4, "{restored}");
    let first = std::fs::metadata(target.join("original.txt")).unwrap();
    let second = std::fs::metadata(target.join("sub/second-name.txt")).unwrap();
    assert_eq!(first.ino(), second.ino(), "restored as one inode");
    assert_eq!(first.nlink(), 2);
    if as_root {
        let owned = std::fs::metadata(target.join("owned.txt")).unwrap();
        assert_eq!((owned.uid(), owned.gid()), (1234, 5678));
    }
    assert_eq!(
        xattr::get(target.join("tagged.txt"), "user.origin").unwrap(),
        Some(b"scanner \x00\x01".to_vec())
    );
    assert_eq!(
        xattr::get(target.join("sub"), "user.colour").unwrap(),
        Some(b"blue".to_vec())
    );
    assert_eq!(
        std::fs::metadata(&target).unwrap().modified().unwrap(),
        root_mtime,
        "the restored root keeps its mtime"
    );

    // The next backup takes unchanged files' attributes from its index without listing
    // them; a changed attribute changes the ctime, so that file is looked at again.
    std::fs::write(data.join("also-tagged.txt"), b"also").unwrap();
    xattr::set(data.join("also-tagged.txt"), "user.origin", b"first").unwrap();
    round_trip(&stack, &machine, &data).await;
    xattr::set(data.join("also-tagged.txt"), "user.origin", b"second").unwrap();
    let (second, target) = round_trip(&stack, &machine, &data).await;
    assert_eq!(second["files"], 5, "{second}");
    assert_eq!(
        xattr::get(target.join("tagged.txt"), "user.origin").unwrap(),
        Some(b"scanner \x00\x01".to_vec()),
        "an unchanged file keeps its attributes"
    );
    assert_eq!(
        xattr::get(target.join("also-tagged.txt"), "user.origin").unwrap(),
        Some(b"second".to_vec()),
        "a changed attribute is backed up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_damaged_pack_spoils_only_the_files_that_use_it() {
    let state = tempfile::tempdir().unwrap();
    let stack = start_on(sim_core::db::Storage::Disk(state.path().to_path_buf())).await;
    let machine = stack.registered("vault1", "server1").await.0;
    let data = stack.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for n in 0..8u64 {
        std::fs::write(
            data.join(format!("file-{n}.bin")),
            noise(200_000, 2 * n + 1),
        )
        .unwrap();
    }
    let backup = machine
        .json(&["backup", "--include", data.to_str().unwrap()])
        .await;
    let point = backup[0]["recoveryPoint"].as_str().unwrap().to_string();

    // Flip one byte inside the first blob of the one pack.
    let packs = files_under(&state.path().join("blobs/packs"));
    assert_eq!(packs.len(), 1, "{packs:?}");
    let mut bytes = std::fs::read(&packs[0]).unwrap();
    let index = backup_protocol::parse_index(&bytes).unwrap();
    let damaged_chunk = index[0].id.clone();
    let offset = index[0].offset as usize + 40;
    bytes[offset] ^= 0x55;
    std::fs::write(&packs[0], bytes).unwrap();
    let pack_id = packs[0].file_name().unwrap().to_str().unwrap().to_string();

    let target = stack.dir.path().join("restored");
    let out = machine
        .run(&[
            "--json",
            "restore",
            &point,
            "--target",
            target.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    let damaged = answer["error"]["damaged"].as_array().unwrap();
    assert_eq!(damaged.len(), 1, "{answer}");
    assert_eq!(damaged[0]["chunk"], damaged_chunk.as_str());
    assert_eq!(damaged[0]["pack"], pack_id.as_str());
    let lost = damaged[0]["path"].as_str().unwrap();
    assert!(answer["error"]["message"].as_str().unwrap().contains(lost));
    for n in 0..8u64 {
        let name = format!("file-{n}.bin");
        if name == lost {
            assert!(!target.join(&name).exists());
        } else {
            assert_eq!(
                std::fs::read(target.join(&name)).unwrap(),
                noise(200_000, 2 * n + 1),
                "{name}"
            );
        }
    }
    assert!(leftovers(&target).is_empty(), "{:?}", leftovers(&target));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_error_is_a_json_object_with_json() {
    let stack = start().await;
    let machine = stack.registered("vault1", "server1").await.0;
    for args in [
        vec!["--json", "restore", "no-such-point", "--target", "/tmp/x"],
        vec!["--json", "ls", "no-such-point"],
        vec!["--json", "backup"],
        vec!["--json", "no-such-command"],
        vec!["--json", "backup", "--include", "/no/such/dir"],
    ] {
        let out = machine.run(&args).await;
        assert!(!out.status.success(), "{args:?}");
        let answer: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        assert!(answer["error"]["message"].as_str().is_some(), "{answer}");
        assert_eq!(
            answer["error"]["exitCode"].as_i64(),
            out.status.code().map(i64::from),
            "{answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restoring_over_existing_names_copies_skips_or_overwrites() {
    let stack = start().await;
    let machine = stack.registered("vault1", "server1").await.0;
    let data = stack.dir.path().join("data");
    std::fs::create_dir_all(data.join("dir")).unwrap();
    std::fs::write(data.join("a.txt"), b"backed-up a").unwrap();
    std::fs::write(data.join("b.txt"), b"backed-up b").unwrap();
    std::fs::write(data.join("dir/c.txt"), b"backed-up c").unwrap();
    let (_, first) = round_trip(&stack, &machine, &data).await;
    let point = machine.json(&["recovery-points"]).await[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let restore = |policy: &'static str, target: PathBuf| {
        let (machine, point) = (&machine, point.clone());
        async move {
            machine
                .json(&[
                    "restore",
                    &point,
                    "--target",
                    target.to_str().unwrap(),
                    "--on-conflict",
                    policy,
                ])
                .await
        }
    };
    // The target holds another a.txt, and a directory where c.txt goes.
    let prepare = |name: &str| {
        let target = stack.dir.path().join(name);
        std::fs::create_dir_all(target.join("dir/c.txt")).unwrap();
        std::fs::write(target.join("a.txt"), b"local a").unwrap();
        target
    };

    let target = prepare("copy");
    let report = restore("copy", target.clone()).await;
    assert_eq!(report["files"], 3, "{report}");
    assert_eq!(std::fs::read(target.join("a.txt")).unwrap(), b"local a");
    assert_eq!(
        std::fs::read(target.join("a.txt (restored 1)")).unwrap(),
        b"backed-up a"
    );
    assert_eq!(std::fs::read(target.join("b.txt")).unwrap(), b"backed-up b");
    assert!(target.join("dir/c.txt").is_dir());
    assert_eq!(
        std::fs::read(target.join("dir/c.txt (restored 1)")).unwrap(),
        b"backed-up c"
    );
    // Again: every name is taken now, so each file gets the next free one.
    let again = restore("copy", target.clone()).await;
    assert_eq!(again["files"], 3, "{again}");
    assert_eq!(
        std::fs::read(target.join("a.txt (restored 2)")).unwrap(),
        b"backed-up a"
    );
    assert_eq!(
        std::fs::read(target.join("b.txt (restored 1)")).unwrap(),
        b"backed-up b"
    );

    let target = prepare("skip");
    let report = restore("skip", target.clone()).await;
    assert_eq!(
        (report["files"].clone(), report["skipped"].clone()),
        (1.into(), 2.into()),
        "{report}"
    );
    assert_eq!(std::fs::read(target.join("a.txt")).unwrap(), b"local a");
    assert_eq!(std::fs::read(target.join("b.txt")).unwrap(), b"backed-up b");
    assert!(target.join("dir/c.txt").is_dir());

    let target = prepare("overwrite");
    let report = restore("overwrite", target.clone()).await;
    assert_eq!(report["files"], 3, "{report}");
    assert_eq!(std::fs::read(target.join("a.txt")).unwrap(), b"backed-up a");
    assert_eq!(
        std::fs::read(target.join("dir/c.txt")).unwrap(),
        b"backed-up c",
        "the directory in the way was replaced"
    );

    for dir in [
        first,
        stack.dir.path().join("copy"),
        stack.dir.path().join("skip"),
        target,
    ] {
        assert_eq!(
            leftovers(&dir),
            Vec::<PathBuf>::new(),
            "no partial files left"
        );
    }
}
