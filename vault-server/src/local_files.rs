//! What the server does with the local backend's files itself, beside object_store:
//! - ranges of objects read straight from their files into uninitialised capacity
//!   (object_store's local store zero-fills each buffer before reading into it: a tenth of
//!   the server's CPU while it served a restore);
//! - the staging files of writes a crash interrupted, removed at the next start.

use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use object_store::path::Path as ObjectPath;

use crate::blobs::BlobError;

/// The file of `path` under a local store's root, when the path needs no encoding (every
/// path this server writes); `None` sends the read through object_store.
pub fn file_of(root: &Path, path: &ObjectPath) -> Option<PathBuf> {
    let text = path.as_ref();
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/_-.".contains(&b));
    (plain
        && !text
            .split('/')
            .any(|part| part.is_empty() || part == ".." || part == "."))
    .then(|| root.join(text))
}

/// Bytes `range` of `file`: [`BlobError::NotFound`] when it does not exist, an error when it
/// is shorter than the range (a damaged object), as object_store answers.
pub async fn read(file: PathBuf, range: Range<u64>) -> Result<Bytes, BlobError> {
    tokio::task::spawn_blocking(move || {
        let failed = |e: std::io::Error| store_error(&file, e);
        let mut handle = match std::fs::File::open(&file) {
            Ok(handle) => handle,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobError::NotFound),
            Err(e) => return Err(failed(e)),
        };
        let wanted = range.end.saturating_sub(range.start);
        handle.seek(SeekFrom::Start(range.start)).map_err(failed)?;
        let mut buffer = Vec::with_capacity(wanted as usize);
        handle
            .take(wanted)
            .read_to_end(&mut buffer)
            .map_err(failed)?;
        if buffer.len() as u64 != wanted {
            return Err(failed(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "range {}..{} asked, the object ends at {}",
                    range.start,
                    range.end,
                    range.start + buffer.len() as u64
                ),
            )));
        }
        Ok(Bytes::from(buffer))
    })
    .await
    .map_err(|e| store_error(Path::new("(a read)"), std::io::Error::other(e.to_string())))?
}

fn store_error(file: &Path, error: std::io::Error) -> BlobError {
    BlobError::Store(object_store::Error::Generic {
        store: "LocalFileSystem",
        source: format!("{}: {error}", file.display()).into(),
    })
}

/// Removes the staging files of writes a crash interrupted under `root`, and says how many.
/// object_store writes an object to `name#<n>` beside it and renames it into place; a kill
/// between the two left that file forever (listing skips it, so collection never saw it).
/// Called when the stores open, before anything is written: `azsim up` holds the data
/// directory's lock, so no other writer can own such a file. Object names here are ids
/// and never hold `#`.
pub fn remove_interrupted_writes(root: &Path) -> usize {
    let is_staging = |name: &std::ffi::OsStr| {
        name.to_str()
            .and_then(|name| name.rsplit_once('#'))
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut removed = 0;
    let mut directories = vec![root.to_path_buf()];
    while let Some(directory) = directories.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => directories.push(entry.path()),
                Ok(kind) if kind.is_file() && is_staging(&entry.file_name()) => {
                    match std::fs::remove_file(entry.path()) {
                        Ok(()) => removed += 1,
                        Err(e) => tracing::warn!(
                            "could not remove {}, left by an interrupted write: {e}",
                            entry.path().display()
                        ),
                    }
                }
                _ => {}
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ranges_missing_files_and_short_objects() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let path = ObjectPath::from("packs/1/ab/abcd");
        let file = file_of(root, &path).unwrap();
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read(file.clone(), 2..5).await.unwrap(), &b"234"[..]);
        assert_eq!(read(file.clone(), 0..10).await.unwrap(), &b"0123456789"[..]);
        let short = read(file.clone(), 8..12).await.unwrap_err().to_string();
        assert!(short.contains("the object ends at 10"), "{short}");
        let missing = read(root.join("packs/1/ab/none"), 0..1).await;
        assert!(matches!(missing, Err(BlobError::NotFound)));
        assert!(file_of(root, &ObjectPath::from("packs/1/a b")).is_none());
    }
}
