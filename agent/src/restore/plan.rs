//! Planning a restore: which entries (selections, including original absolute paths), where
//! they go (paths checked before anything is written), and in which units their chunks are
//! fetched (small files in batches, large ones in windows).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{AgentError, Result};
use crate::manifest::{Entry, Kind, Manifest};

/// File bytes fetched and held at once.
pub const BATCH_BYTES: u64 = 8 * 1024 * 1024;

/// Chunks of a large file fetched at once (about 8 MiB).
pub const WINDOW_CHUNKS: usize = 8;

/// Refuses entry paths that could leave the target.
pub fn safe_relative(path: &[u8]) -> Result<PathBuf> {
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
pub fn no_symlink_between(target: &Path, path: &Path) -> Result<()> {
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

/// What the writer does, in order: directories and links, files in groups (a group of one
/// large file is written window by window), then the later names of hard-link groups.
pub struct Plan {
    /// Directories and symlinks (indices into the planned entries), parents first.
    pub first: Vec<usize>,
    /// Files, grouped by the unit(s) their chunks arrive in.
    pub groups: Vec<Vec<usize>>,
    /// Second and later names of hard-link groups.
    pub later_links: Vec<usize>,
}

impl Plan {
    pub fn new(planned: &[(PathBuf, Entry)]) -> Self {
        let mut first = Vec::new();
        let mut later_links = Vec::new();
        let mut files = Vec::new();
        let mut seen_groups: HashMap<u64, ()> = HashMap::new();
        for (index, (_, entry)) in planned.iter().enumerate() {
            match entry.kind {
                Kind::Dir | Kind::Symlink => first.push(index),
                Kind::File => match entry.link {
                    Some(group) if seen_groups.insert(group, ()).is_some() => {
                        later_links.push(index)
                    }
                    _ => files.push(index),
                },
            }
        }
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut batch: Vec<usize> = Vec::new();
        let mut batch_bytes = 0u64;
        for index in files {
            let size = planned[index].1.size;
            if size > BATCH_BYTES {
                if !batch.is_empty() {
                    groups.push(std::mem::take(&mut batch));
                    batch_bytes = 0;
                }
                groups.push(vec![index]);
                continue;
            }
            batch_bytes += size;
            batch.push(index);
            if batch_bytes >= BATCH_BYTES || batch.len() >= 512 {
                groups.push(std::mem::take(&mut batch));
                batch_bytes = 0;
            }
        }
        if !batch.is_empty() {
            groups.push(batch);
        }
        Plan {
            first,
            groups,
            later_links,
        }
    }

    /// A group that is one large file, written window by window.
    pub fn is_large(planned: &[(PathBuf, Entry)], group: &[usize]) -> bool {
        matches!(group, [one] if planned[*one].1.size > BATCH_BYTES)
    }

    /// The chunk ids of each fetch unit, in the order the writer consumes them.
    pub fn units(&self, planned: &[(PathBuf, Entry)]) -> Vec<Vec<String>> {
        self.groups
            .iter()
            .flat_map(|group| {
                if Self::is_large(planned, group) {
                    planned[group[0]]
                        .1
                        .chunks
                        .chunks(WINDOW_CHUNKS)
                        .map(<[String]>::to_vec)
                        .collect::<Vec<_>>()
                } else {
                    vec![
                        group
                            .iter()
                            .flat_map(|i| planned[*i].1.chunks.iter().cloned())
                            .collect(),
                    ]
                }
            })
            .collect()
    }

    /// Bytes of file data the plan writes.
    pub fn bytes(&self, planned: &[(PathBuf, Entry)]) -> u64 {
        self.groups
            .iter()
            .flatten()
            .map(|i| planned[*i].1.size)
            .sum()
    }
}
