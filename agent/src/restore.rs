//! Restore: all or part of a recovery point, to an alternate directory or the original
//! location, with a conflict policy. Every chunk is authenticated and checked against its
//! id before use; entries with absolute paths or `..` are refused before anything is
//! written; nothing is written through a symlink; a file is written beside its final name
//! and renamed only when complete, so a partial file never looks restored.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::agent::Agent;
use crate::error::{AgentError, Result};
use crate::manifest::{Entry, Kind, Manifest};
use crate::sealing::Sealer;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnConflict {
    /// Keep the existing file and restore beside it as `name (restored N)`.
    Copy,
    Overwrite,
    Skip,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    pub recovery_point: String,
    pub target: String,
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub bytes: u64,
    pub skipped: u64,
    pub job: String,
    pub seconds: f64,
}

/// Refuses entry paths that could leave the target.
fn safe_relative(path: &str) -> Result<PathBuf> {
    let candidate = Path::new(path);
    let mut out = PathBuf::new();
    for component in candidate.components() {
        match component {
            Component::Normal(part) => out.push(part),
            _ => {
                return Err(AgentError::Integrity(format!(
                    "the recovery point holds an unsafe path '{path}' (absolute or with '..'); nothing was restored"
                )));
            }
        }
    }
    Ok(out)
}

/// Fails if any existing component between `target` and `path` is a symlink.
fn no_symlink_between(target: &Path, path: &Path) -> Result<()> {
    let relative = path.strip_prefix(target).unwrap_or(path);
    let mut current = target.to_path_buf();
    let components: Vec<_> = relative.components().collect();
    for component in components.iter().take(components.len().saturating_sub(1)) {
        current.push(component);
        if let Ok(meta) = std::fs::symlink_metadata(&current)
            && meta.file_type().is_symlink()
        {
            return Err(AgentError::Integrity(format!(
                "{} is a symlink: restore never writes through links",
                current.display()
            )));
        }
    }
    Ok(())
}

/// File bytes fetched and held at once.
const BATCH_BYTES: u64 = 16 * 1024 * 1024;
/// Largest single range read from a pack.
const RANGE_BYTES: u64 = 16 * 1024 * 1024;

fn wanted(entry: &Entry, selections: &[String]) -> bool {
    selections.is_empty()
        || selections.iter().any(|s| {
            let s = s.trim_matches('/');
            s.is_empty() || entry.path == s || entry.path.starts_with(&format!("{s}/"))
        })
}

/// Restores with `sealer` (this server's, or another server's from its passphrase).
pub async fn run(
    agent: Arc<Agent>,
    sealer: Sealer,
    manifest: Manifest,
    recovery_point: &str,
    selections: &[String],
    target: &Path,
    conflict: OnConflict,
) -> Result<RestoreReport> {
    let started = std::time::Instant::now();
    let entries: Vec<Entry> = manifest
        .entries
        .into_iter()
        .filter(|e| wanted(e, selections))
        .collect();
    let mut planned = Vec::with_capacity(entries.len());
    for entry in entries {
        let relative = safe_relative(&entry.path)?;
        planned.push((relative, entry));
    }
    std::fs::create_dir_all(target).map_err(|e| AgentError::io(target, e))?;
    let target = std::fs::canonicalize(target).map_err(|e| AgentError::io(target, e))?;
    let job: Value = agent
        .service
        .post(
            "/backup/v1/jobs",
            &serde_json::json!({"operation": "Restore", "entity": manifest.root}),
        )
        .await?;
    let job = job["id"].as_str().unwrap_or_default().to_string();
    let mut report = RestoreReport {
        recovery_point: recovery_point.to_string(),
        target: target.display().to_string(),
        job: job.clone(),
        ..RestoreReport::default()
    };
    let result = restore_entries(&agent, &sealer, &planned, &target, conflict, &mut report).await;
    let status = if result.is_ok() {
        "Completed"
    } else {
        "Failed"
    };
    let details = match &result {
        Ok(()) => {
            serde_json::json!({"propertyBag": {"Files": report.files.to_string(), "RestoredBytes": report.bytes.to_string()}})
        }
        Err(e) => {
            serde_json::json!({"errorDetails": [{"errorString": e.to_string(), "recommendations": []}]})
        }
    };
    let _ = agent
        .service
        .patch(
            &format!("/backup/v1/jobs/{job}"),
            &serde_json::json!({"status": status, "details": details}),
        )
        .await;
    result?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn restore_entries(
    agent: &Agent,
    sealer: &Sealer,
    planned: &[(PathBuf, Entry)],
    target: &Path,
    conflict: OnConflict,
    report: &mut RestoreReport,
) -> Result<()> {
    // Directories and links first (in path order, parents before children), then files in
    // batches whose chunks are fetched together.
    let mut files = Vec::new();
    for (relative, entry) in planned {
        let path = target.join(relative);
        no_symlink_between(target, &path)?;
        match entry.kind {
            Kind::Dir => {
                std::fs::create_dir_all(&path).map_err(|e| AgentError::io(&path, e))?;
                report.directories += 1;
            }
            Kind::Symlink => {
                let Some(link) = entry.target.as_deref() else {
                    continue;
                };
                if std::fs::symlink_metadata(&path).is_ok() {
                    match conflict {
                        OnConflict::Skip | OnConflict::Copy => {
                            report.skipped += 1;
                            continue;
                        }
                        OnConflict::Overwrite => remove_existing(&path)?,
                    }
                }
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| AgentError::io(parent, e))?;
                }
                std::os::unix::fs::symlink(link, &path).map_err(|e| AgentError::io(&path, e))?;
                report.symlinks += 1;
            }
            Kind::File => files.push((path, entry)),
        }
    }
    let mut batch: Vec<(PathBuf, &Entry)> = Vec::new();
    let mut batch_bytes = 0u64;
    for (path, entry) in files {
        if entry.size > BATCH_BYTES {
            // Large files stream through in windows, so memory stays bounded.
            restore_files(agent, sealer, &[(path, entry)], conflict, report).await?;
            continue;
        }
        batch_bytes += entry.size;
        batch.push((path, entry));
        if batch_bytes >= BATCH_BYTES || batch.len() >= 512 {
            restore_files(agent, sealer, &batch, conflict, report).await?;
            batch.clear();
            batch_bytes = 0;
        }
    }
    restore_files(agent, sealer, &batch, conflict, report).await?;
    // Directory metadata last: writing files inside would change their mtimes.
    for (relative, entry) in planned.iter().rev() {
        if entry.kind == Kind::Dir {
            let path = target.join(relative);
            set_metadata(&path, entry)?;
        }
    }
    Ok(())
}

fn remove_existing(path: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| AgentError::io(path, e))?;
    if meta.is_dir() {
        std::fs::remove_dir_all(path).map_err(|e| AgentError::io(path, e))
    } else {
        std::fs::remove_file(path).map_err(|e| AgentError::io(path, e))
    }
}

fn copy_name(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    (1..)
        .map(|n| path.with_file_name(format!("{name} (restored {n})")))
        .find(|candidate| std::fs::symlink_metadata(candidate).is_err())
        .expect("an unused name exists")
}

async fn restore_files(
    agent: &Agent,
    sealer: &Sealer,
    batch: &[(PathBuf, &Entry)],
    conflict: OnConflict,
    report: &mut RestoreReport,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let single_large = batch.len() == 1 && batch[0].1.size > BATCH_BYTES;
    let mut chunks = if single_large {
        HashMap::new()
    } else {
        fetch_chunks(
            agent,
            sealer,
            batch.iter().flat_map(|(_, e)| e.chunks.iter()),
        )
        .await?
    };
    for (path, entry) in batch {
        let mut destination = path.clone();
        if std::fs::symlink_metadata(path).is_ok() {
            match conflict {
                OnConflict::Skip => {
                    report.skipped += 1;
                    continue;
                }
                OnConflict::Copy => destination = copy_name(path),
                OnConflict::Overwrite => {}
            }
        }
        if let Some(parent) = destination.parent() {
            std::fs::create_dir_all(parent).map_err(|e| AgentError::io(parent, e))?;
        }
        let partial = destination.with_file_name(format!(
            ".{}.mars-partial",
            destination
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("file")
        ));
        let file = std::fs::File::create(&partial).map_err(|e| AgentError::io(&partial, e))?;
        let mut file = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut written = 0u64;
        // Chunks of a large file come in windows of about BATCH_BYTES.
        let window = if single_large {
            32
        } else {
            entry.chunks.len().max(1)
        };
        for ids in entry.chunks.chunks(window) {
            if single_large {
                chunks = fetch_chunks(agent, sealer, ids.iter()).await?;
            }
            for id in ids {
                let data = chunks
                    .get(id)
                    .ok_or_else(|| AgentError::Integrity(format!("chunk {id} was not fetched")))?;
                file.write_all(data)
                    .map_err(|e| AgentError::io(&partial, e))?;
                written += data.len() as u64;
            }
        }
        let file = file
            .into_inner()
            .map_err(|e| AgentError::io(&partial, e.into_error()))?;
        if written != entry.size {
            let _ = std::fs::remove_file(&partial);
            return Err(AgentError::Integrity(format!(
                "{} restored to {written} bytes instead of {}",
                destination.display(),
                entry.size
            )));
        }
        set_file_metadata(&file, &partial, entry)?;
        drop(file);
        if conflict == OnConflict::Overwrite
            && std::fs::symlink_metadata(&destination).is_ok_and(|m| m.is_dir())
        {
            remove_existing(&destination)?;
        }
        // Complete files only ever appear under their real name.
        std::fs::rename(&partial, &destination).map_err(|e| AgentError::io(&destination, e))?;
        report.files += 1;
        report.bytes += entry.size;
    }
    Ok(())
}

/// Mode and mtime through the handle just written (no second open).
fn set_file_metadata(file: &std::fs::File, path: &Path, entry: &Entry) -> Result<()> {
    file.set_permissions(std::fs::Permissions::from_mode(entry.mode))
        .map_err(|e| AgentError::io(path, e))?;
    file.set_modified(mtime_of(entry))
        .map_err(|e| AgentError::io(path, e))
}

fn mtime_of(entry: &Entry) -> std::time::SystemTime {
    std::time::UNIX_EPOCH
        + std::time::Duration::new(entry.mtime.max(0) as u64, entry.mtime_nsec.min(999_999_999))
}

fn set_metadata(path: &Path, entry: &Entry) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(entry.mode))
        .map_err(|e| AgentError::io(path, e))?;
    let file = std::fs::File::open(path).map_err(|e| AgentError::io(path, e))?;
    file.set_modified(mtime_of(entry))
        .map_err(|e| AgentError::io(path, e))
}

/// Authenticates and decompresses the chunks of one downloaded range on every core.
fn decode_parallel(
    sealer: &Sealer,
    bytes: &[u8],
    range_start: u64,
    chunks: &[(String, u64, u64)],
    pack: &str,
) -> Result<Vec<(String, Vec<u8>)>> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let per_worker = chunks.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .chunks(per_worker)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(id, offset, length)| {
                            let from = (offset - range_start) as usize;
                            let blob =
                                bytes.get(from..from + *length as usize).ok_or_else(|| {
                                    AgentError::Integrity(format!(
                                        "pack {pack} is shorter than its index says"
                                    ))
                                })?;
                            Ok((id.clone(), sealer.open(id, blob)?))
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(chunks.len());
        for handle in handles {
            out.extend(
                handle
                    .join()
                    .map_err(|_| AgentError::Integrity("a decoder stopped".into()))??,
            );
        }
        Ok(out)
    })
}

/// Fetches and verifies chunks: located in one query, read as coalesced ranges per pack.
async fn fetch_chunks<'a>(
    agent: &Agent,
    sealer: &Sealer,
    ids: impl Iterator<Item = &'a String>,
) -> Result<HashMap<String, Vec<u8>>> {
    let mut unique: Vec<String> = ids.cloned().collect();
    unique.sort();
    unique.dedup();
    let mut out = HashMap::with_capacity(unique.len());
    if unique.is_empty() {
        return Ok(out);
    }
    let located: Value = agent
        .service
        .post(
            "/backup/v1/chunks/locate",
            &serde_json::json!({"ids": unique}),
        )
        .await?;
    let mut by_pack: HashMap<String, Vec<(String, u64, u64)>> = HashMap::new();
    for chunk in located["chunks"].as_array().into_iter().flatten() {
        let (Some(id), Some(pack), Some(offset), Some(length)) = (
            chunk["id"].as_str(),
            chunk["pack"].as_str(),
            chunk["offset"].as_u64(),
            chunk["length"].as_u64(),
        ) else {
            return Err(AgentError::Integrity(
                "the vault's chunk locations are malformed".into(),
            ));
        };
        by_pack
            .entry(pack.to_string())
            .or_default()
            .push((id.to_string(), offset, length));
    }
    for (pack, mut chunks) in by_pack {
        chunks.sort_by_key(|c| c.1);
        // Coalesce neighbouring chunks into ranges of at most RANGE_BYTES.
        let mut start = 0;
        while start < chunks.len() {
            let mut end = start + 1;
            while end < chunks.len()
                && chunks[end].1 <= chunks[end - 1].1 + chunks[end - 1].2 + 1024 * 1024
                && chunks[end].1 + chunks[end].2 - chunks[start].1 <= RANGE_BYTES
            {
                end += 1;
            }
            let range_start = chunks[start].1;
            let range_end = chunks[end - 1].1 + chunks[end - 1].2;
            let bytes = agent
                .service
                .get_bytes(
                    &format!("/backup/v1/packs/{pack}"),
                    Some((range_start, range_end)),
                )
                .await?;
            let wanted = &chunks[start..end];
            let decoded = decode_parallel(sealer, &bytes, range_start, wanted, &pack)?;
            out.extend(decoded);
            start = end;
        }
    }
    Ok(out)
}
