//! Back Up Now for one protected path.
//!
//! Unchanged files (same size, mtime, ctime and inode as in the local index) reuse their
//! chunk lists without being read. Changed files stream through FastCDC (about 1 MiB
//! chunks) and keyed BLAKE3; each batch of ids asks the vault which it lacks (one query);
//! only those are sealed (zstd, AES-256-GCM) by one worker per core and packed into
//! ~12 MiB packs that upload as they fill. The recovery point is committed last, in one
//! request the vault checks against the chunks it holds; the index is saved after that.
//! A killed run leaves its uploaded packs in the vault, so the next run skips them.
//!
//! scan → chunk → seal → pack → upload → commit: [`crate::walk`] scans, [`producer`] reads,
//! chunks and filters what the vault lacks, [`uploader`] seals, packs and uploads, and
//! [`run`] commits the recovery point and then saves the [`index`].

mod index;
mod producer;
mod uploader;

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};

use backup_protocol::{CommitRequest, CommitResponse};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::json;
use tokio::runtime::Handle;

use crate::agent::Agent;
use crate::error::{AgentError, Result};
use crate::manifest::{Entry, Kind, Manifest, encode_path};
use crate::walk;
use index::{Index, IndexEntry, forget_files_using, index_path, load_index, save_index, unchanged};
use producer::{Batch, Group, Producer, filter_missing};
use uploader::{Sealed, seal_worker, upload_packs};

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupReport {
    pub path: String,
    pub item: String,
    pub recovery_point: String,
    pub job: String,
    pub status: String,
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub files_read: u64,
    pub bytes_scanned: u64,
    pub bytes_read: u64,
    pub chunks_uploaded: u64,
    pub bytes_uploaded: u64,
    pub packs_uploaded: u64,
    pub warnings: Vec<String>,
    pub seconds: f64,
}

/// Backs up `root` and commits a recovery point.
pub async fn run(
    agent: Arc<Agent>,
    root: &Path,
    excludes: Vec<glob::Pattern>,
    retain_until: Option<i64>,
) -> Result<BackupReport> {
    let started = std::time::Instant::now();
    let root = std::fs::canonicalize(root).map_err(|e| AgentError::io(root, e))?;
    let root_text = root
        .to_str()
        .ok_or_else(|| AgentError::Usage(format!("{} is not a UTF-8 path", root.display())))?
        .to_string();
    let (item, job) = tokio::try_join!(
        agent.vault.protect(&root_text),
        agent.vault.start_job("Backup", &root_text)
    )?;

    let outcome = back_up(&agent, &root, &root_text, &item, &excludes, retain_until).await;
    let (mut report, committed) = match outcome {
        Ok(done) => done,
        Err(error) => {
            let details = json!({"errorDetails": [{"errorString": error.to_string(), "recommendations": []}]});
            let _ = agent.vault.finish_job(&job, "Failed", details).await;
            return Err(error);
        }
    };
    report.path = root_text;
    report.item = item;
    report.job = job.clone();
    report.recovery_point = committed.name;
    report.status = if report.warnings.is_empty() {
        "Completed"
    } else {
        "CompletedWithWarnings"
    }
    .to_string();
    report.seconds = started.elapsed().as_secs_f64();
    let details = json!({
        "propertyBag": {
            "Files": report.files.to_string(),
            "BackupSize": format!("{} bytes", report.bytes_scanned),
            "UploadedBytes": report.bytes_uploaded.to_string(),
            "RecoveryPoint": report.recovery_point,
        },
        "errorDetails": report.warnings.iter().map(|w| json!({"errorString": w, "recommendations": []})).collect::<Vec<_>>(),
    });
    agent
        .vault
        .finish_job(&job, &report.status, details)
        .await?;
    Ok(report)
}

/// Runs the pipeline and commits its recovery point; saves the index once committed.
///
/// The index can name chunks the vault no longer holds: when every recovery point that held
/// them expired or was deleted, collection freed them. The commit then says so
/// (`ChunksNotStored`); the files that used them are forgotten and the backup runs again,
/// reading those files and uploading what is missing (the dictionaries too).
async fn back_up(
    agent: &Arc<Agent>,
    root: &Path,
    root_text: &str,
    item: &str,
    excludes: &[glob::Pattern],
    retain_until: Option<i64>,
) -> Result<(BackupReport, CommitResponse)> {
    let index_file = index_path(agent, root_text);
    let mut again = false;
    loop {
        let (pipeline_agent, pipeline_root) = (agent.clone(), root.to_path_buf());
        let pipeline_excludes = excludes.to_vec();
        let (mut manifest, report, index) = tokio::task::spawn_blocking(move || {
            pipeline(
                &pipeline_agent,
                &pipeline_root,
                &pipeline_excludes,
                again,
                Handle::current(),
            )
        })
        .await
        .map_err(|e| AgentError::Service(format!("the backup pipeline stopped: {e}")))??;
        manifest.root = root_text.to_string();
        let sealed = manifest.seal(&agent.sealer);
        let chunks = manifest.chunk_ids();
        let commit = CommitRequest {
            item: item.to_string(),
            manifest: STANDARD.encode(sealed),
            chunks,
            retain_until,
        };
        match agent.vault.commit(&commit).await {
            Ok(committed) => {
                if let Some(index) = index {
                    save_index(&index_file, &index)?;
                }
                return Ok((report, committed));
            }
            Err(AgentError::ChunksNotStored(_)) if !again => {
                let missing: HashSet<String> = agent
                    .vault
                    .missing(commit.chunks)
                    .await?
                    .into_iter()
                    .collect();
                forget_files_using(&index_file, &missing)?;
                again = true;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Walk, chunk, seal and upload; returns the manifest (without root), the report, and the
/// new index when it differs from the one read. `offer_dictionaries`: send the dictionaries
/// to the vault even if no file is read (they are otherwise sent with the first data sealed
/// with them).
fn pipeline(
    agent: &Arc<Agent>,
    root: &Path,
    excludes: &[glob::Pattern],
    offer_dictionaries: bool,
    runtime: Handle,
) -> Result<(Manifest, BackupReport, Option<Index>)> {
    let mut report = BackupReport::default();
    // The index is read while the tree is walked.
    let (old_index, (walked, warnings)) = std::thread::scope(|scope| {
        let index =
            scope.spawn(|| load_index(&index_path(agent, root.to_str().unwrap_or_default())));
        let walked = walk::walk(root, excludes);
        (index.join().unwrap_or_default(), walked)
    });
    report.warnings = warnings;
    let protected: u64 = walked
        .iter()
        .filter(|w| w.kind == Kind::File)
        .map(|w| w.meta.len())
        .sum();
    check_cache_space(&agent.config.cache_dir, protected)?;
    let reading: Vec<&walk::Walked> = walked
        .iter()
        .filter(|w| w.kind == Kind::File)
        .filter(|w| old_index.get(&w.rel).is_none_or(|e| !unchanged(e, &w.meta)))
        .collect();
    let to_read: u64 = reading.iter().map(|w| w.meta.len()).sum();
    let dictionaries = runtime.block_on(crate::dictionary::for_backup(agent, &reading))?;
    drop(reading);
    let sealer = agent.sealer.with_dictionaries(&dictionaries);
    let bar = crate::progress::bytes(agent.progress, to_read, "backup");
    let mut new_index = Index::new();
    let mut entries: Vec<Entry> = Vec::with_capacity(walked.len());
    // Hard links: (device, inode) of files with more than one name → their link group.
    let mut link_groups: HashMap<(u64, u64), u64> = HashMap::new();

    let workers = crate::cores();
    // Short queues: what waits in them is memory; a few chunks per worker keep it busy.
    let (batch_tx, batch_rx) = sync_channel::<Batch>(1);
    let (seal_tx, seal_rx) = sync_channel::<Group>(workers);
    let (pack_tx, pack_rx) = sync_channel::<Sealed>(workers);
    let seal_rx = Arc::new(Mutex::new(seal_rx));
    let uploaded = Mutex::new((0u64, 0u64, 0u64));
    let failure: Mutex<Option<AgentError>> = Mutex::new(None);

    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (rx, tx, sealer) = (seal_rx.clone(), pack_tx.clone(), sealer.clone());
            scope.spawn(move || seal_worker(&sealer, &rx, &tx));
        }
        drop(pack_tx);
        // Only the workers hold the receiver: if they all stop, the producer's sends fail
        // instead of blocking.
        drop(seal_rx);
        let uploader = scope.spawn(|| upload_packs(agent, &runtime, pack_rx, &uploaded, &failure));
        let (runtime, failure) = (&runtime, &failure);
        scope.spawn(move || filter_missing(agent, runtime, batch_rx, seal_tx, failure));

        let mut producer = Producer {
            agent,
            batch_tx,
            known: HashSet::new(),
            batch: Vec::new(),
            batch_bytes: 0,
        };
        // The dictionaries go to the vault with the first data sealed with them (a backup
        // that reads nothing seals nothing; the points before it hold them).
        for dictionary in dictionaries
            .iter()
            .filter(|_| to_read > 0 || offer_dictionaries)
        {
            producer.chunk(dictionary.bytes().clone(), &mut Vec::new());
        }
        for walked in walked {
            if failure.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                break;
            }
            let (mtime, mtime_nsec) = walk::mtime(&walked.meta);
            let index_key = match &walked.raw {
                Some(raw) => format!("\0{}", STANDARD.encode(raw)),
                None => walked.rel.clone(),
            };
            let mut entry = Entry {
                path: walked.rel.clone(),
                kind: walked.kind.clone(),
                mode: walked.meta.mode() & 0o7777,
                mtime,
                mtime_nsec,
                size: 0,
                chunks: Vec::new(),
                target: None,
                raw_path: walked.raw.as_deref().map(|raw| STANDARD.encode(raw)),
                raw_target: None,
                uid: Some(walked.meta.uid()),
                gid: Some(walked.meta.gid()),
                xattrs: Default::default(),
                link: None,
            };
            match walked.kind {
                Kind::Dir => {
                    report.directories += 1;
                    entry.xattrs = user_xattrs(&walked.abs, &mut report.warnings);
                }
                Kind::Symlink => {
                    report.symlinks += 1;
                    match std::fs::read_link(&walked.abs) {
                        Ok(target) => {
                            let (text, raw) = encode_path(target.as_os_str().as_bytes());
                            entry.target = Some(text);
                            entry.raw_target = raw;
                        }
                        Err(e) => {
                            report.warnings.push(format!(
                                "{}: cannot read the link target: {e}",
                                walked.abs.display()
                            ));
                            continue;
                        }
                    }
                }
                Kind::File => {
                    entry.size = walked.meta.len();
                    report.bytes_scanned += entry.size;
                    if walked.meta.nlink() > 1 {
                        let next = link_groups.len() as u64;
                        let key = (walked.meta.dev(), walked.meta.ino());
                        entry.link = Some(*link_groups.entry(key).or_insert(next));
                    }
                    let previous = old_index
                        .get(&index_key)
                        .filter(|e| unchanged(e, &walked.meta));
                    entry.xattrs = match previous.and_then(|p| p.xattrs.as_ref()) {
                        Some(xattrs) => xattrs.clone(),
                        None => user_xattrs(&walked.abs, &mut report.warnings),
                    };
                    let chunks = match previous {
                        Some(previous) => previous.chunks.clone(),
                        None => match producer.file(&walked) {
                            Ok(chunks) => {
                                bar.inc(entry.size);
                                report.files_read += 1;
                                report.bytes_read += entry.size;
                                chunks
                            }
                            Err(e) => {
                                report
                                    .warnings
                                    .push(format!("{}: not backed up: {e}", walked.abs.display()));
                                continue;
                            }
                        },
                    };
                    report.files += 1;
                    entry.chunks = chunks.clone();
                    new_index.insert(
                        index_key,
                        IndexEntry::of(&walked.meta, chunks, entry.xattrs.clone()),
                    );
                }
            }
            entries.push(entry);
        }
        producer.flush();
        drop(producer);
        let _ = uploader.join();
    });
    bar.finish_and_clear();
    if let Some(error) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(error);
    }
    let (chunks, bytes, packs) = uploaded.into_inner().unwrap_or_else(|p| p.into_inner());
    report.chunks_uploaded = chunks;
    report.bytes_uploaded = bytes;
    report.packs_uploaded = packs;
    let manifest = Manifest {
        root: String::new(),
        created: chrono::Utc::now().timestamp(),
        entries,
        dictionaries: dictionaries.iter().map(|d| d.id().to_string()).collect(),
    };
    // An index that did not change is not written again (serialising it was 5 % of a no-op
    // backup, after the commit).
    let changed = (new_index != old_index).then_some(new_index);
    Ok((manifest, report, changed))
}

/// Extended attributes of the `user.` namespace (the ones a user owns; `security.` and
/// `trusted.` belong to the system). A file system without xattrs has none.
fn user_xattrs(
    path: &Path,
    warnings: &mut Vec<String>,
) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => return out,
        Err(e) => {
            warnings.push(format!(
                "{}: extended attributes not backed up: {e}",
                path.display()
            ));
            return out;
        }
    };
    for name in names {
        let Some(text) = name.to_str().filter(|n| n.starts_with("user.")) else {
            continue;
        };
        match xattr::get(path, &name) {
            Ok(Some(value)) => {
                out.insert(text.to_string(), STANDARD.encode(value));
            }
            Ok(None) => {}
            Err(e) => warnings.push(format!(
                "{}: extended attribute {text} not backed up: {e}",
                path.display()
            )),
        }
    }
    out
}

/// The cache volume needs free space of at least 5 % of the protected data (MARS's rule).
pub fn check_cache_space(cache: &Path, protected: u64) -> Result<()> {
    let stats = nix::sys::statvfs::statvfs(cache)
        .map_err(|e| AgentError::io(cache, std::io::Error::from_raw_os_error(e as i32)))?;
    let free = stats.blocks_available() as u64 * stats.fragment_size() as u64;
    let needed = protected / 20;
    if free < needed {
        return Err(AgentError::Usage(format!(
            "the cache volume of {} has {} MiB free; it needs at least 5 % of the protected data ({} MiB). Free some space or reinstall with another --cache-dir.",
            cache.display(),
            free >> 20,
            needed >> 20
        )));
    }
    Ok(())
}

pub(crate) fn fail(slot: &Mutex<Option<AgentError>>, error: AgentError) {
    let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
    if slot.is_none() {
        *slot = Some(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_volume_needs_five_percent_of_the_protected_data() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_cache_space(dir.path(), 1024).is_ok());
        let error = check_cache_space(dir.path(), u64::MAX / 2)
            .unwrap_err()
            .to_string();
        assert!(error.contains("5 %"), "{error}");
    }
}
