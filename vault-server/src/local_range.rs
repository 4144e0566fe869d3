//! Ranges of objects in the local backend, read straight from their files into
//! uninitialised capacity. object_store's local store zero-fills each buffer before reading
//! into it: a tenth of the server's CPU while it served a restore.

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
