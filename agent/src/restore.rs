//! Restore: all or part of a recovery point, to an alternate directory or the original
//! location, with a conflict policy. Every chunk is authenticated and checked against its
//! id before use; entries with absolute paths or `..` are refused before anything is
//! written; nothing is written through a symlink; a file is written beside its final name
//! (under a short temporary name, whatever the length of the real one) and renamed only
//! when complete, so a partial file never looks restored.
//!
//! What restic keeps, this keeps: holes (all-zero chunks are skipped, not written), hard
//! links among the restored names, owners (when running as root), `user.` extended
//! attributes, names that are not UTF-8, and every directory's mtime including the root's.
//! A chunk that fails verification damages only the files that use it: the rest is
//! restored and the damaged files are reported with their pack and chunk ids.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

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
    /// Replace the existing file with the restored one.
    Overwrite,
    /// Keep the existing file and do not restore this one.
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
    /// Files not restored because backup data they need failed verification.
    pub damaged: Vec<DamagedFile>,
}

/// A file a restore could not produce, and the stored data at fault.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DamagedFile {
    pub path: String,
    pub pack: String,
    pub chunk: String,
    pub reason: String,
}

/// The longest file name Linux file systems take (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// Refuses entry paths that could leave the target.
fn safe_relative(path: &[u8]) -> Result<PathBuf> {
    let candidate = Path::new(OsStr::from_bytes(path));
    let mut out = PathBuf::new();
    for component in candidate.components() {
        match component {
            Component::Normal(part) => out.push(part),
            _ => {
                return Err(AgentError::Integrity(format!(
                    "the recovery point holds an unsafe path '{}' (absolute or with '..'); nothing was restored",
                    String::from_utf8_lossy(path)
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

/// Selections as paths inside the recovery point: relative ones as given, absolute ones
/// (how a user names what they lost) relative to the backed-up root.
pub fn relative_selections(root: &str, selections: &[String]) -> Vec<String> {
    let root = root.trim_end_matches('/');
    selections
        .iter()
        .map(|s| {
            let inside = if s.starts_with('/') {
                s.strip_prefix(root)
                    .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                    .unwrap_or(s)
            } else {
                s.as_str()
            };
            inside.trim_matches('/').to_string()
        })
        .collect()
}

fn selected(entry: &Entry, selection: &str) -> bool {
    selection.is_empty()
        || entry.path == selection
        || entry
            .path
            .strip_prefix(selection)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The entries under `selections` (everything when there are none); a selection that
/// matches nothing is an error naming it.
pub fn select(manifest: &Manifest, selections: &[String]) -> Result<Vec<Entry>> {
    let relative = relative_selections(&manifest.root, selections);
    for (given, inside) in selections.iter().zip(&relative) {
        if !manifest.entries.iter().any(|e| selected(e, inside)) {
            return Err(AgentError::Usage(format!(
                "nothing in the recovery point matches '{given}' (it holds {} backed up from {}; name paths relative to that root or under it)",
                manifest.entries.len(),
                manifest.root
            )));
        }
    }
    Ok(manifest
        .entries
        .iter()
        .filter(|e| relative.is_empty() || relative.iter().any(|s| selected(e, s)))
        .cloned()
        .collect())
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
    let entries = select(&manifest, selections)?;
    let mut planned = Vec::with_capacity(entries.len());
    for entry in entries {
        let relative = safe_relative(&entry.path_bytes())?;
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
    let result = result.and_then(|()| match report.damaged.as_slice() {
        [] => Ok(()),
        damaged => Err(AgentError::Damaged {
            message: damage_message(damaged, &report),
            files: damaged.to_vec(),
        }),
    });
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

fn damage_message(damaged: &[DamagedFile], report: &RestoreReport) -> String {
    let mut lines = vec![format!(
        "{} file(s) could not be restored because backup data they need is damaged in the vault ({} other files restored to {}):",
        damaged.len(),
        report.files,
        report.target
    )];
    for file in damaged {
        lines.push(format!(
            "  {}: chunk {} in pack {}: {}",
            file.path, file.chunk, file.pack, file.reason
        ));
    }
    lines.join("\n")
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
    // batches whose chunks are fetched together. The second and later names of a hard-link
    // group are linked to the first once it is written.
    let mut files = Vec::new();
    let mut later_links: Vec<(PathBuf, &Entry)> = Vec::new();
    let mut first_of_group: HashMap<u64, ()> = HashMap::new();
    for (relative, entry) in planned {
        let path = target.join(relative);
        no_symlink_between(target, &path)?;
        match entry.kind {
            Kind::Dir => {
                std::fs::create_dir_all(&path).map_err(|e| AgentError::io(&path, e))?;
                report.directories += 1;
            }
            Kind::Symlink => {
                let Some(link) = entry.target_bytes() else {
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
                std::os::unix::fs::symlink(OsStr::from_bytes(&link), &path)
                    .map_err(|e| AgentError::io(&path, e))?;
                set_owner(&path, entry, false)?;
                report.symlinks += 1;
            }
            Kind::File => match entry.link {
                Some(group) if first_of_group.insert(group, ()).is_some() => {
                    later_links.push((path, entry));
                }
                _ => files.push((path, entry)),
            },
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
    // Where the first name of each hard-link group was written.
    let mut written_groups: HashMap<u64, PathBuf> = HashMap::new();
    let result = async {
        for group in &groups {
            match group.as_slice() {
                [(path, entry)] if entry.size > BATCH_BYTES => {
                    let mut writer = FileWriter::open(path, conflict, report)?;
                    let mut damage = None;
                    for ids in entry.chunks.chunks(WINDOW_CHUNKS) {
                        let unit = next_unit(&mut rx).await?;
                        if let (Some(writer), None) = (writer.as_mut(), &damage) {
                            damage = writer.write(ids, &unit)?;
                        }
                    }
                    if let Some(writer) = writer {
                        finish(writer, entry, damage, conflict, report, &mut written_groups)?;
                    }
                    bar.inc(entry.size);
                }
                _ => {
                    let unit = next_unit(&mut rx).await?;
                    for (path, entry) in group {
                        if let Some(mut writer) = FileWriter::open(path, conflict, report)? {
                            let damage = writer.write(&entry.chunks, &unit)?;
                            finish(writer, entry, damage, conflict, report, &mut written_groups)?;
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
    for (path, entry) in later_links {
        link_to_first(&path, entry, &written_groups, conflict, report)?;
    }
    // Directory metadata last, deepest first: writing inside a directory changes its mtime.
    for (relative, entry) in planned.iter().rev() {
        if entry.kind == Kind::Dir {
            let path = target.join(relative);
            set_metadata(&path, entry)?;
        }
    }
    Ok(())
}

/// Completes one file: renamed into place, or removed and reported when data was damaged.
fn finish(
    writer: FileWriter,
    entry: &Entry,
    damage: Option<(String, String, String)>,
    conflict: OnConflict,
    report: &mut RestoreReport,
    written_groups: &mut HashMap<u64, PathBuf>,
) -> Result<()> {
    if let Some((chunk, pack, reason)) = damage {
        let _ = std::fs::remove_file(&writer.partial);
        report.damaged.push(DamagedFile {
            path: entry.path.clone(),
            pack,
            chunk,
            reason,
        });
        return Ok(());
    }
    let destination = writer.finish(entry, conflict, report)?;
    if let Some(group) = entry.link {
        written_groups.insert(group, destination);
    }
    Ok(())
}

/// A later name of a hard-link group: a link to the first name's restored file.
fn link_to_first(
    path: &Path,
    entry: &Entry,
    written_groups: &HashMap<u64, PathBuf>,
    conflict: OnConflict,
    report: &mut RestoreReport,
) -> Result<()> {
    let Some(first) = entry.link.and_then(|g| written_groups.get(&g)) else {
        // The first name was skipped or damaged; this name shares its fate.
        report.skipped += 1;
        return Ok(());
    };
    let mut destination = path.to_path_buf();
    if std::fs::symlink_metadata(path).is_ok() {
        match conflict {
            OnConflict::Skip => {
                report.skipped += 1;
                return Ok(());
            }
            OnConflict::Copy => destination = copy_name(path),
            OnConflict::Overwrite => remove_existing(path)?,
        }
    }
    if let Some(parent) = destination.parent() {
        std::fs::create_dir_all(parent).map_err(|e| AgentError::io(parent, e))?;
    }
    std::fs::hard_link(first, &destination).map_err(|e| AgentError::io(&destination, e))?;
    report.files += 1;
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

/// `name (restored N)` beside `path`, shortening the name to fit `NAME_MAX`.
fn copy_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(OsStr::as_bytes).unwrap_or(b"file");
    (1..)
        .map(|n| {
            let suffix = format!(" (restored {n})");
            let keep = name.len().min(NAME_MAX - suffix.len());
            let mut candidate = name[..keep].to_vec();
            candidate.extend_from_slice(suffix.as_bytes());
            path.with_file_name(OsStr::from_bytes(&candidate))
        })
        .find(|candidate| std::fs::symlink_metadata(candidate).is_err())
        .expect("an unused name exists")
}

/// Chunks of one unit: the verified plaintexts, and the chunks that failed (with the pack
/// they are in and why).
#[derive(Default)]
struct Unit {
    chunks: HashMap<String, Vec<u8>>,
    damaged: HashMap<String, (String, String)>,
}

type Fetched = Result<Unit>;

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
    /// The file ends in a hole (skipped zeros): its length must be set.
    hole_at_end: bool,
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
        // A short name that fits NAME_MAX whatever the real name's length.
        let token = uuid::Uuid::new_v4().simple().to_string();
        let partial = destination.with_file_name(format!(".mars-{}.partial", &token[..12]));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(|e| AgentError::io(&partial, e))?;
        Ok(Some(FileWriter {
            partial,
            destination,
            file: std::io::BufWriter::with_capacity(1 << 20, file),
            written: 0,
            hole_at_end: false,
        }))
    }

    /// Writes the chunks `ids` in order; all-zero chunks become holes. Returns the first
    /// damaged chunk (id, pack, reason) instead of writing past it.
    fn write(&mut self, ids: &[String], unit: &Unit) -> Result<Option<(String, String, String)>> {
        for id in ids {
            let Some(data) = unit.chunks.get(id) else {
                let (pack, reason) = unit
                    .damaged
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| (String::new(), "the chunk was not fetched".into()));
                return Ok(Some((id.clone(), pack, reason)));
            };
            if is_zero(data) {
                self.file
                    .seek(SeekFrom::Current(data.len() as i64))
                    .map_err(|e| AgentError::io(&self.partial, e))?;
                self.hole_at_end = true;
            } else {
                self.file
                    .write_all(data)
                    .map_err(|e| AgentError::io(&self.partial, e))?;
                self.hole_at_end = false;
            }
            self.written += data.len() as u64;
        }
        Ok(None)
    }

    /// Renames the complete file into place; returns where it went.
    fn finish(
        self,
        entry: &Entry,
        conflict: OnConflict,
        report: &mut RestoreReport,
    ) -> Result<PathBuf> {
        let FileWriter {
            partial,
            destination,
            file,
            written,
            hole_at_end,
        } = self;
        let file = file
            .into_inner()
            .map_err(|e| AgentError::io(&partial, e.into_error()))?;
        if hole_at_end {
            file.set_len(written)
                .map_err(|e| AgentError::io(&partial, e))?;
        }
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
        Ok(destination)
    }
}

/// All zeros? Blocks are OR-folded (vectorised), stopping at the first block with data.
fn is_zero(data: &[u8]) -> bool {
    data.chunks(4096)
        .all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// Whether owners can be restored: only root may give files away.
fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn set_owner(path: &Path, entry: &Entry, follow: bool) -> Result<()> {
    if !running_as_root() || (entry.uid.is_none() && entry.gid.is_none()) {
        return Ok(());
    }
    let result = if follow {
        std::os::unix::fs::chown(path, entry.uid, entry.gid)
    } else {
        std::os::unix::fs::lchown(path, entry.uid, entry.gid)
    };
    result.map_err(|e| AgentError::io(path, e))
}

fn set_xattrs(path: &Path, entry: &Entry) -> Result<()> {
    for (name, value) in &entry.xattrs {
        let value = STANDARD.decode(value).map_err(|_| {
            AgentError::Integrity(format!(
                "the extended attribute {name} of {} is malformed",
                entry.path
            ))
        })?;
        xattr::set(path, name, &value).map_err(|e| AgentError::io(path, e))?;
    }
    Ok(())
}

/// Owner, extended attributes, mode and mtime through the handle just written. The owner
/// goes first: chown clears set-id bits that the mode then restores.
fn set_file_metadata(file: &std::fs::File, path: &Path, entry: &Entry) -> Result<()> {
    if running_as_root() && (entry.uid.is_some() || entry.gid.is_some()) {
        std::os::unix::fs::fchown(file, entry.uid, entry.gid)
            .map_err(|e| AgentError::io(path, e))?;
    }
    set_xattrs(path, entry)?;
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
    set_owner(path, entry, true)?;
    set_xattrs(path, entry)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(entry.mode))
        .map_err(|e| AgentError::io(path, e))?;
    let file = std::fs::File::open(path).map_err(|e| AgentError::io(path, e))?;
    file.set_modified(mtime_of(entry))
        .map_err(|e| AgentError::io(path, e))
}

/// Authenticates and decompresses the chunks of one downloaded range on every core; a
/// chunk that fails is reported, not fatal.
fn decode_parallel(
    sealer: &Sealer,
    bytes: &[u8],
    range_start: u64,
    chunks: &[(String, u64, u64)],
    pack: &str,
    unit: &mut Unit,
) -> Result<()> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let per_worker = chunks.len().div_ceil(workers).max(1);
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .chunks(per_worker)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(id, offset, length)| {
                            let from = (offset - range_start) as usize;
                            let opened = match bytes.get(from..from + *length as usize) {
                                Some(blob) => sealer.open(id, blob),
                                None => Err(AgentError::Integrity(format!(
                                    "pack {pack} is shorter than its index says"
                                ))),
                            };
                            (id.clone(), opened)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(chunks.len());
        for handle in handles {
            out.extend(
                handle
                    .join()
                    .map_err(|_| AgentError::Integrity("a decoder stopped".into()))?,
            );
        }
        Ok::<_, AgentError>(out)
    })?;
    for (id, opened) in results {
        match opened {
            Ok(data) => {
                unit.chunks.insert(id, data);
            }
            Err(e) => {
                unit.damaged.insert(id, (pack.to_string(), e.to_string()));
            }
        }
    }
    Ok(())
}

/// Fetches and verifies chunks: located in one query, read as coalesced ranges per pack.
async fn fetch_chunks<'a>(
    agent: &Agent,
    sealer: &Sealer,
    ids: impl Iterator<Item = &'a String>,
) -> Fetched {
    let mut unique: Vec<String> = ids.cloned().collect();
    unique.sort();
    unique.dedup();
    let mut unit = Unit::default();
    if unique.is_empty() {
        return Ok(unit);
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
            let wanted = &chunks[start..end];
            match agent
                .service
                .get_bytes(
                    &format!("/backup/v1/packs/{pack}"),
                    Some((range_start, range_end)),
                )
                .await
            {
                Ok(bytes) => {
                    decode_parallel(sealer, &bytes, range_start, wanted, &pack, &mut unit)?;
                }
                // The pack is gone or shorter than its index: its chunks are damaged.
                Err(AgentError::NotFound(reason)) | Err(AgentError::Service(reason)) => {
                    for (id, _, _) in wanted {
                        unit.damaged
                            .insert(id.clone(), (pack.clone(), reason.clone()));
                    }
                }
                Err(other) => return Err(other),
            }
            start = end;
        }
    }
    Ok(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_and_parent_paths_are_refused() {
        assert!(safe_relative(b"docs/a.txt").is_ok());
        assert!(safe_relative(b"docs/\xff\xfe.bin").is_ok());
        for bad in ["/etc/passwd", "../outside", "docs/../../x", "a/./../b"] {
            assert!(safe_relative(bad.as_bytes()).is_err(), "{bad}");
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

    #[test]
    fn absolute_selections_are_taken_relative_to_the_backed_up_root() {
        let given = vec![
            "/tmp/src/docs/a.txt".to_string(),
            "docs".to_string(),
            "/tmp/src".to_string(),
            "/elsewhere/x".to_string(),
            "/tmp/srcother".to_string(),
        ];
        assert_eq!(
            relative_selections("/tmp/src", &given),
            vec!["docs/a.txt", "docs", "", "elsewhere/x", "tmp/srcother"]
        );
    }

    #[test]
    fn copies_of_names_at_the_limit_still_fit() {
        let dir = tempfile::tempdir().unwrap();
        let long = "n".repeat(250);
        let path = dir.path().join(&long);
        std::fs::write(&path, b"x").unwrap();
        let copy = copy_name(&path);
        assert!(copy.file_name().unwrap().len() <= NAME_MAX);
        std::fs::write(&copy, b"y").unwrap();
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[0; 1000]));
        let mut data = vec![0u8; 1001];
        data[1000] = 1;
        assert!(!is_zero(&data));
        data[1000] = 0;
        data[3] = 1;
        assert!(!is_zero(&data));
    }
}
