//! Walking a protected path: every directory (empty ones too), regular file and symlink,
//! with the metadata the manifest and the unchanged-file index need. What cannot be backed
//! up (unreadable entries, sockets, devices, FIFOs) is reported, never silently skipped.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::manifest::Kind;

pub struct Walked {
    /// Relative to the root, `/`-separated (`""` for the root); lossy when a name is not
    /// UTF-8 (then `raw` holds the bytes).
    pub rel: String,
    pub raw: Option<Vec<u8>>,
    pub abs: PathBuf,
    pub kind: Kind,
    pub meta: std::fs::Metadata,
}

/// Directories this close to the root have their children walked on one thread per core:
/// a walk is one `statx` per entry, and 20,000 of them on one thread were a fifth of a
/// no-op backup.
const PARALLEL_DEPTH: usize = 2;

/// Entries under `root` in path order (parents before children), and the warnings.
pub fn walk(root: &Path, excludes: &[glob::Pattern]) -> (Vec<Walked>, Vec<String>) {
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    visit(root, Vec::new(), 0, excludes, &mut entries, &mut warnings);
    (entries, warnings)
}

fn excluded(rel: &str, excludes: &[glob::Pattern]) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    excludes.iter().any(|p| p.matches(rel) || p.matches(name))
}

fn visit(
    abs: &Path,
    rel: Vec<u8>,
    depth: usize,
    excludes: &[glob::Pattern],
    out: &mut Vec<Walked>,
    warnings: &mut Vec<String>,
) {
    let meta = match std::fs::symlink_metadata(abs) {
        Ok(meta) => meta,
        Err(e) => {
            warnings.push(format!("{}: cannot read metadata: {e}", abs.display()));
            return;
        }
    };
    let kind = meta.file_type();
    let kind = if kind.is_symlink() {
        Kind::Symlink
    } else if kind.is_dir() {
        Kind::Dir
    } else if kind.is_file() {
        Kind::File
    } else {
        let what = if kind.is_socket() {
            "a socket"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_block_device() || kind.is_char_device() {
            "a device"
        } else {
            "an unsupported file type"
        };
        warnings.push(format!("{}: not backed up: {what}", abs.display()));
        return;
    };
    let is_dir = kind == Kind::Dir;
    let text = String::from_utf8_lossy(&rel).into_owned();
    let raw = std::str::from_utf8(&rel).is_err().then(|| rel.clone());
    out.push(Walked {
        rel: text,
        raw,
        abs: abs.to_path_buf(),
        kind,
        meta,
    });
    if !is_dir {
        return;
    }
    let children = match std::fs::read_dir(abs) {
        Ok(children) => children,
        Err(e) => {
            warnings.push(format!("{}: cannot list directory: {e}", abs.display()));
            return;
        }
    };
    let mut names: Vec<_> = children
        .filter_map(|c| c.ok())
        .map(|c| c.file_name())
        .collect();
    names.sort();
    let children: Vec<(PathBuf, Vec<u8>)> = names
        .into_iter()
        .filter_map(|name| {
            // Names are bytes on Unix: ones that are not UTF-8 are kept exactly (the
            // manifest carries their bytes).
            let mut child_rel = rel.clone();
            if !child_rel.is_empty() {
                child_rel.push(b'/');
            }
            child_rel.extend_from_slice(name.as_bytes());
            (!excluded(&String::from_utf8_lossy(&child_rel), excludes))
                .then(|| (abs.join(&name), child_rel))
        })
        .collect();
    let workers = crate::cores();
    if depth >= PARALLEL_DEPTH || workers < 2 || children.len() < 2 {
        for (child, child_rel) in children {
            visit(&child, child_rel, depth + 1, excludes, out, warnings);
        }
        return;
    }
    // Contiguous shares, joined in order: the result is the same as a walk on one thread.
    let share = children.len().div_ceil(workers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = children
            .chunks(share)
            .map(|part| {
                scope.spawn(move || {
                    let (mut found, mut warned) = (Vec::new(), Vec::new());
                    for (child, child_rel) in part {
                        let child_rel = child_rel.clone();
                        visit(
                            child,
                            child_rel,
                            depth + 1,
                            excludes,
                            &mut found,
                            &mut warned,
                        );
                    }
                    (found, warned)
                })
            })
            .collect();
        for handle in handles {
            let (found, warned) = handle.join().expect("a walker does not panic");
            out.extend(found);
            warnings.extend(warned);
        }
    });
}

/// Modification time of `meta` as (seconds, nanoseconds).
pub fn mtime(meta: &std::fs::Metadata) -> (i64, u32) {
    (meta.mtime(), meta.mtime_nsec() as u32)
}
