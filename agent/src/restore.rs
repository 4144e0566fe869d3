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
/// Chunks of a large file fetched at once (about 16 MiB).
const WINDOW_CHUNKS: usize = 16;
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
    agent: &Arc<Agent>,
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
    // Small files go in batches, large ones in windows of chunks; a background task fetches
    // and decodes the next unit while this one is written (at most two units in memory).
    let mut groups: Vec<Vec<(PathBuf, &Entry)>> = Vec::new();
    let mut batch: Vec<(PathBuf, &Entry)> = Vec::new();
    let mut batch_bytes = 0u64;
    for (path, entry) in files {
        if entry.size > BATCH_BYTES {
            if !batch.is_empty() {
                groups.push(std::mem::take(&mut batch));
                batch_bytes = 0;
            }
            groups.push(vec![(path, entry)]);
            continue;
        }
        batch_bytes += entry.size;
        batch.push((path, entry));
        if batch_bytes >= BATCH_BYTES || batch.len() >= 512 {
            groups.push(std::mem::take(&mut batch));
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() {
        groups.push(batch);
    }
    let units: Vec<Vec<String>> = groups
        .iter()
        .flat_map(|group| match group.as_slice() {
            [(_, entry)] if entry.size > BATCH_BYTES => entry
                .chunks
                .chunks(WINDOW_CHUNKS)
                .map(<[String]>::to_vec)
                .collect::<Vec<_>>(),
            _ => vec![
                group
                    .iter()
                    .flat_map(|(_, e)| e.chunks.iter().cloned())
                    .collect(),
            ],
        })
        .collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Fetched>(1);
    let fetcher = {
        let (agent, sealer) = (agent.clone(), sealer.clone());
        tokio::spawn(async move {
            for ids in units {
                let fetched = fetch_chunks(&agent, &sealer, ids.iter()).await;
                let failed = fetched.is_err();
                if tx.send(fetched).await.is_err() || failed {
                    return;
                }
            }
        })
    };
    let total: u64 = groups.iter().flatten().map(|(_, e)| e.size).sum();
    let bar = crate::progress::bytes(agent.progress, total, "restore");
    let result = async {
        for group in &groups {
            match group.as_slice() {
                [(path, entry)] if entry.size > BATCH_BYTES => {
                    let mut writer = FileWriter::open(path, conflict, report)?;
                    for ids in entry.chunks.chunks(WINDOW_CHUNKS) {
                        let chunks = next_unit(&mut rx).await?;
                        if let Some(writer) = writer.as_mut() {
                            writer.write(ids, &chunks)?;
                        }
                    }
                    if let Some(writer) = writer {
                        writer.finish(entry, conflict, report)?;
                    }
                    bar.inc(entry.size);
                }
                _ => {
                    let chunks = next_unit(&mut rx).await?;
                    for (path, entry) in group {
                        if let Some(mut writer) = FileWriter::open(path, conflict, report)? {
                            writer.write(&entry.chunks, &chunks)?;
                            writer.finish(entry, conflict, report)?;
                        }
                        bar.inc(entry.size);
                    }
                }
            }
        }
        Ok::<(), AgentError>(())
    }
    .await;
    fetcher.abort();
    bar.finish_and_clear();
    result?;
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

type Fetched = Result<HashMap<String, Vec<u8>>>;

async fn next_unit(rx: &mut tokio::sync::mpsc::Receiver<Fetched>) -> Fetched {
    rx.recv()
        .await
        .unwrap_or_else(|| Err(AgentError::Service("the chunk fetcher stopped".into())))
}

/// A file being restored: written beside its name, renamed when complete.
struct FileWriter {
    partial: PathBuf,
    destination: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    written: u64,
}

impl FileWriter {
    /// `None` when the conflict policy skips the file.
    fn open(path: &Path, conflict: OnConflict, report: &mut RestoreReport) -> Result<Option<Self>> {
        let mut destination = path.to_path_buf();
        if std::fs::symlink_metadata(path).is_ok() {
            match conflict {
                OnConflict::Skip => {
                    report.skipped += 1;
                    return Ok(None);
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
        Ok(Some(FileWriter {
            partial,
            destination,
            file: std::io::BufWriter::with_capacity(1 << 20, file),
            written: 0,
        }))
    }

    fn write(&mut self, ids: &[String], chunks: &HashMap<String, Vec<u8>>) -> Result<()> {
        for id in ids {
            let data = chunks
                .get(id)
                .ok_or_else(|| AgentError::Integrity(format!("chunk {id} was not fetched")))?;
            self.file
                .write_all(data)
                .map_err(|e| AgentError::io(&self.partial, e))?;
            self.written += data.len() as u64;
        }
        Ok(())
    }

    fn finish(self, entry: &Entry, conflict: OnConflict, report: &mut RestoreReport) -> Result<()> {
        let FileWriter {
            partial,
            destination,
            file,
            written,
        } = self;
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
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_and_parent_paths_are_refused() {
        assert!(safe_relative("docs/a.txt").is_ok());
        for bad in ["/etc/passwd", "../outside", "docs/../../x", "a/./../b"] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nothing_is_written_through_a_symlink() {
        let target = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), target.path().join("escape")).unwrap();
        let through = target.path().join("escape/file.txt");
        assert!(no_symlink_between(target.path(), &through).is_err());
        assert!(no_symlink_between(target.path(), &target.path().join("plain/file.txt")).is_ok());
    }
}
