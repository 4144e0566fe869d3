//! Restore: all or part of a recovery point, to an alternate directory or the original
//! location, with a conflict policy. Every chunk is authenticated under its id and, when
//! compressed, checked against the checksum of the content it was made from, before use
//! (see `sealing`); entries with absolute paths or `..` are refused before anything is
//! written; nothing is written through a symlink.
//!
//! plan → fetch → verify → write: [`plan`] chooses the entries and groups files into fetch
//! units; [`fetch`] reads and verifies each unit (the next while the current is written);
//! [`writer`] writes files beside their names and renames them when complete. Fetching runs
//! on the async runtime, decoding and writing on blocking threads.
//!
//! What restic keeps, this keeps: holes (all-zero chunks are skipped, not written), hard
//! links among the restored names, owners (when running as root), `user.` extended
//! attributes, names that are not UTF-8, and every directory's mtime including the root's.
//! A chunk that fails verification damages only the files that use it: the rest is
//! restored and the damaged files are reported with their pack and chunk ids.

pub(crate) mod fetch;
mod plan;
mod writer;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::agent::Agent;
use crate::error::{AgentError, Result};
use crate::manifest::{Entry, Kind, Manifest};
use crate::sealing::Sealer;
use fetch::{Ahead, Fetched, Task, fetch_chunks};
use plan::{Plan, WINDOW_CHUNKS, no_symlink_between, safe_relative};
pub use plan::{relative_selections, select};
use writer::{
    CreatedOwner, FileWriter, finish, link_to_first, remove_existing, set_metadata, set_owner,
};

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
    crate::dictionary::load(&agent, &sealer, &manifest.dictionaries).await?;
    // The selected entries are copies: the manifest's memory is given back before any data
    // arrives.
    let root = manifest.root.clone();
    drop(manifest);
    let mut planned = Vec::with_capacity(entries.len());
    for entry in entries {
        let relative = safe_relative(&entry.path_bytes())?;
        planned.push((relative, entry));
    }
    std::fs::create_dir_all(target).map_err(|e| AgentError::io(target, e))?;
    let target = std::fs::canonicalize(target).map_err(|e| AgentError::io(target, e))?;
    let job = agent.vault.start_job("Restore", &root).await?;
    let report = RestoreReport {
        recovery_point: recovery_point.to_string(),
        target: target.display().to_string(),
        job: job.clone(),
        ..RestoreReport::default()
    };
    let (report_back, result) =
        restore_entries(&agent, &sealer, planned, &target, conflict, report).await;
    let mut report = report_back;
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
    let _ = agent.vault.finish_job(&job, status, details).await;
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

/// Fetch units downloaded and decoded ahead of the writer.
const UNITS_AHEAD: usize = 3;

/// Writes `planned` under `target`; returns the report and the outcome. The next
/// [`UNITS_AHEAD`] units are fetched (async, in order) while one is written (blocking
/// threads): memory holds a few units of at most [`plan::BATCH_BYTES`] each.
async fn restore_entries(
    agent: &Arc<Agent>,
    sealer: &Sealer,
    planned: Vec<(PathBuf, Entry)>,
    target: &Path,
    conflict: OnConflict,
    report: RestoreReport,
) -> (RestoreReport, Result<()>) {
    let plan = Plan::new(&planned);
    let units = plan.units(&planned);
    let total = plan.bytes(&planned);
    let (tx, rx) = tokio::sync::mpsc::channel::<Fetched>(1);
    let fetcher = {
        let (agent, sealer) = (agent.clone(), sealer.clone());
        let units = units.into_iter().map(move |ids| {
            let (agent, sealer) = (agent.clone(), sealer.clone());
            async move { fetch_chunks(&agent, &sealer, ids.iter()).await }
        });
        Task(tokio::spawn(async move {
            let mut units = Ahead::new(units, UNITS_AHEAD);
            while let Some(fetched) = units.next().await {
                let fetched = fetched.and_then(|fetched| fetched);
                let failed = fetched.is_err();
                if tx.send(fetched).await.is_err() || failed {
                    return;
                }
            }
        }))
    };
    let bar = crate::progress::bytes(agent.progress, total, "restore");
    let target = target.to_path_buf();
    let writing = tokio::task::spawn_blocking(move || {
        let mut report = report;
        let mut rx = rx;
        let result = write_all(
            &planned,
            &plan,
            &target,
            conflict,
            &mut report,
            &mut rx,
            &bar,
        );
        bar.finish_and_clear();
        (report, result)
    });
    let outcome = writing.await;
    drop(fetcher);
    match outcome {
        Ok(done) => done,
        Err(e) => (
            RestoreReport::default(),
            Err(AgentError::Integrity(format!(
                "the restore writer stopped: {e}"
            ))),
        ),
    }
}

/// The next fetched unit, waiting on a blocking thread.
fn next_unit(rx: &mut tokio::sync::mpsc::Receiver<Fetched>) -> Fetched {
    rx.blocking_recv()
        .unwrap_or_else(|| Err(AgentError::Service("the chunk fetcher stopped".into())))
}

/// The writer's side, in plan order: directories and links, files as their units arrive,
/// later hard-link names, then directory metadata deepest first (writing inside a
/// directory changes its mtime).
fn write_all(
    planned: &[(PathBuf, Entry)],
    plan: &Plan,
    target: &Path,
    conflict: OnConflict,
    report: &mut RestoreReport,
    rx: &mut tokio::sync::mpsc::Receiver<Fetched>,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    let path_of = |index: usize| target.join(&planned[index].0);
    for &index in &plan.first {
        let (path, entry) = (path_of(index), &planned[index].1);
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
            Kind::File => {}
        }
    }
    // Where the first name of each hard-link group was written.
    let mut written_groups: HashMap<u64, PathBuf> = HashMap::new();
    // Parent directories already checked for symlinks and created, and who owns new files
    // in them.
    let mut ready: HashMap<PathBuf, Option<CreatedOwner>> = HashMap::new();
    for group in &plan.groups {
        let mut owners = Vec::with_capacity(group.len());
        for &index in group {
            owners.push(prepare_parent(target, &path_of(index), &mut ready)?);
        }
        if Plan::is_large(planned, group) {
            let (path, entry) = (path_of(group[0]), &planned[group[0]].1);
            let mut writer = FileWriter::open(&path, entry.mode, conflict, owners[0], report)?;
            let mut damage = None;
            for ids in entry.chunks.chunks(WINDOW_CHUNKS) {
                let unit = next_unit(rx)?;
                if let (Some(writer), None) = (writer.as_mut(), &damage) {
                    damage = writer.write(ids, &unit)?;
                }
            }
            if let Some(writer) = writer {
                finish(writer, entry, damage, conflict, report, &mut written_groups)?;
            }
            bar.inc(entry.size);
        } else {
            let unit = next_unit(rx)?;
            let files: Vec<(PathBuf, &Entry, Option<CreatedOwner>)> = group
                .iter()
                .zip(owners)
                .map(|(&index, owner)| (path_of(index), &planned[index].1, owner))
                .collect();
            write_small_files(&files, &unit, conflict, report, &mut written_groups, bar)?;
        }
    }
    for &index in &plan.later_links {
        link_to_first(
            &path_of(index),
            &planned[index].1,
            &written_groups,
            conflict,
            report,
        )?;
    }
    for (relative, entry) in planned.iter().rev() {
        if entry.kind == Kind::Dir {
            set_metadata(&target.join(relative), entry)?;
        }
    }
    Ok(())
}

/// Checks (no symlink on the way) and creates the parent of `path` once per directory;
/// returns who owns the files created in it.
fn prepare_parent(
    target: &Path,
    path: &Path,
    ready: &mut HashMap<PathBuf, Option<CreatedOwner>>,
) -> Result<Option<CreatedOwner>> {
    let parent = path.parent().unwrap_or(target);
    if let Some(owner) = ready.get(parent) {
        return Ok(*owner);
    }
    no_symlink_between(target, path)?;
    std::fs::create_dir_all(parent).map_err(|e| AgentError::io(parent, e))?;
    let owner = CreatedOwner::in_directory(parent)?;
    ready.insert(parent.to_path_buf(), owner);
    Ok(owner)
}

/// Writes a group of small files whose chunks are all in `unit`, split across one thread
/// per core: creating, filling and renaming thousands of small files is system-call bound.
fn write_small_files(
    files: &[(PathBuf, &Entry, Option<CreatedOwner>)],
    unit: &fetch::Unit,
    conflict: OnConflict,
    report: &mut RestoreReport,
    written_groups: &mut HashMap<u64, PathBuf>,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    let writers = crate::cores();
    let per_writer = files.len().div_ceil(writers).max(1);
    let parts: Vec<Result<(RestoreReport, HashMap<u64, PathBuf>)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(per_writer)
            .map(|part| {
                scope.spawn(move || {
                    let mut report = RestoreReport::default();
                    let mut groups = HashMap::new();
                    for (path, entry, owner) in part {
                        if let Some(mut writer) =
                            FileWriter::open(path, entry.mode, conflict, *owner, &mut report)?
                        {
                            let damage = writer.write(&entry.chunks, unit)?;
                            finish(writer, entry, damage, conflict, &mut report, &mut groups)?;
                        }
                        bar.inc(entry.size);
                    }
                    Ok((report, groups))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(AgentError::Integrity("a writer stopped".into())))
            })
            .collect()
    });
    for part in parts {
        let (part, groups) = part?;
        report.files += part.files;
        report.bytes += part.bytes;
        report.skipped += part.skipped;
        report.damaged.extend(part.damaged);
        written_groups.extend(groups);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::plan::*;
    use super::writer::*;

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
