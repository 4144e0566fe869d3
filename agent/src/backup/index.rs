//! The unchanged-file index: per protected path, each file's size, mtime, ctime and inode
//! with its chunk ids. A file that matches is not read again. The index belongs to one
//! registration and master key, so a new vault never reuses chunk ids it does not hold.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::agent::Agent;
use crate::config::write_cache;
use crate::error::Result;

#[derive(Serialize, Deserialize, Clone, PartialEq)]
pub struct IndexEntry {
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
    inode: u64,
    pub chunks: Vec<String>,
    /// `user.` extended attributes: setting one changes the ctime, so an unchanged file
    /// keeps them and is not asked again (listing them was 15 % of a no-op backup).
    /// `None` in an index written before they were recorded: list them.
    #[serde(default)]
    pub xattrs: Option<BTreeMap<String, String>>,
}

pub type Index = HashMap<String, IndexEntry>;

/// The index belongs to one protected path of one registration: another vault or another
/// master key must never reuse chunk ids it does not hold.
pub fn index_path(agent: &Agent, root: &str) -> PathBuf {
    let key = agent.cache_key(Some(root));
    agent.config.cache_dir.join(format!("index-{key}.json"))
}

pub fn load_index(path: &Path) -> Index {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

pub fn unchanged(entry: &IndexEntry, meta: &std::fs::Metadata) -> bool {
    entry.size == meta.len()
        && entry.mtime == meta.mtime()
        && entry.mtime_nsec == meta.mtime_nsec()
        && entry.ctime == meta.ctime()
        && entry.ctime_nsec == meta.ctime_nsec()
        && entry.inode == meta.ino()
}

/// Saves the index (after the recovery point is committed). It is a cache: not synced to
/// disk (that wait was 7 % of a no-op backup); after a power failure the previous index,
/// or none, is read, and changed files are found by reading them.
pub fn save_index(path: &Path, index: &Index) -> Result<()> {
    write_cache(
        path,
        &serde_json::to_vec(index).expect("an index serialises"),
    )
}

/// Forgets the files that use any of `chunks` (ones the vault no longer holds), so the next
/// backup reads them again.
pub fn forget_files_using(path: &Path, chunks: &HashSet<String>) -> Result<()> {
    let mut index = load_index(path);
    index.retain(|_, entry| !entry.chunks.iter().any(|id| chunks.contains(id)));
    save_index(path, &index)
}

impl IndexEntry {
    pub fn of(
        meta: &std::fs::Metadata,
        chunks: Vec<String>,
        xattrs: BTreeMap<String, String>,
    ) -> Self {
        IndexEntry {
            size: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime: meta.ctime(),
            ctime_nsec: meta.ctime_nsec(),
            inode: meta.ino(),
            chunks,
            xattrs: Some(xattrs),
        }
    }
}
