//! Writing restored files: each beside its final name under a short temporary name, renamed
//! only when complete (a partial file never looks restored); all-zero chunks become holes;
//! owners (as root), `user.` extended attributes, mode and mtime are set through the
//! handle; later names of a hard-link group become links to the first.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::fetch::Unit;
use super::{DamagedFile, OnConflict, RestoreReport};
use crate::error::{AgentError, Result};
use crate::manifest::Entry;

/// The longest file name Linux file systems take (`NAME_MAX`).
pub const NAME_MAX: usize = 255;

/// Completes one file: renamed into place, or removed and reported when data was damaged.
pub fn finish(
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
    if let (Some(group), Some(destination)) = (entry.link, destination) {
        written_groups.insert(group, destination);
    }
    Ok(())
}

/// A later name of a hard-link group: a link to the first name's restored file.
pub fn link_to_first(
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

pub fn remove_existing(path: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| AgentError::io(path, e))?;
    if meta.is_dir() {
        std::fs::remove_dir_all(path).map_err(|e| AgentError::io(path, e))
    } else {
        std::fs::remove_file(path).map_err(|e| AgentError::io(path, e))
    }
}

/// `name (restored N)` beside `path`, shortening the name to fit `NAME_MAX`.
pub fn copy_name(path: &Path) -> PathBuf {
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

/// Who owns a file this process creates in a directory, when that is certain: its
/// effective user and group, in a directory of that group. (Elsewhere a new file may take
/// the directory's group — set-gid directories, `grpid` mounts — or not; it is then chowned
/// as before.) A file that should be owned so needs no chown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreatedOwner {
    uid: u32,
    gid: u32,
}

impl CreatedOwner {
    /// `None` when not running as root (owners are not restored then) or when the owner of
    /// a new file in `directory` is not certain.
    pub fn in_directory(directory: &Path) -> Result<Option<CreatedOwner>> {
        if !running_as_root() {
            return Ok(None);
        }
        let meta = std::fs::metadata(directory).map_err(|e| AgentError::io(directory, e))?;
        let gid = nix::unistd::getegid().as_raw();
        Ok((meta.gid() == gid).then(|| CreatedOwner {
            uid: nix::unistd::geteuid().as_raw(),
            gid,
        }))
    }

    fn owns(&self, entry: &Entry) -> bool {
        entry.uid.is_none_or(|uid| uid == self.uid) && entry.gid.is_none_or(|gid| gid == self.gid)
    }
}

/// A file being restored: written beside its name, renamed when complete.
pub struct FileWriter {
    partial: PathBuf,
    /// The name it is restored to (when that is taken, the conflict policy decides at the
    /// rename).
    destination: PathBuf,
    created_owner: Option<CreatedOwner>,
    /// Unbuffered: chunks are written whole, one system call each, without another copy.
    file: std::fs::File,
    written: u64,
    /// The file ends in a hole (skipped zeros): its length must be set.
    hole_at_end: bool,
}

impl FileWriter {
    /// `None` when the conflict policy skips the file. The parent directory must exist and
    /// new files in it be owned by `created_owner`. Whether the name is taken is asked
    /// here only to skip: copy and overwrite decide when the file is renamed into place
    /// (a lookup per file was 2 % of a restore).
    pub fn open(
        path: &Path,
        mode: u32,
        conflict: OnConflict,
        created_owner: Option<CreatedOwner>,
        report: &mut RestoreReport,
    ) -> Result<Option<Self>> {
        if conflict == OnConflict::Skip && std::fs::symlink_metadata(path).is_ok() {
            report.skipped += 1;
            return Ok(None);
        }
        let destination = path.to_path_buf();
        let partial = destination.with_file_name(partial_name());
        // Created with its mode when the umask leaves it whole: no chmod after.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(entry_mode_at_creation(mode))
            .open(&partial)
            .map_err(|e| AgentError::io(&partial, e))?;
        Ok(Some(FileWriter {
            partial,
            destination,
            created_owner,
            file,
            written: 0,
            hole_at_end: false,
        }))
    }

    /// Writes the chunks `ids` in order; all-zero chunks become holes. Returns the first
    /// damaged chunk (id, pack, reason) instead of writing past it.
    pub fn write(
        &mut self,
        ids: &[String],
        unit: &Unit,
    ) -> Result<Option<(String, String, String)>> {
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

    /// Renames the complete file into place; returns where it went (`None`: skipped, its
    /// name was taken meanwhile).
    fn finish(
        self,
        entry: &Entry,
        conflict: OnConflict,
        report: &mut RestoreReport,
    ) -> Result<Option<PathBuf>> {
        let FileWriter {
            partial,
            destination,
            created_owner,
            file,
            written,
            hole_at_end,
        } = self;
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
        set_file_metadata(&file, &partial, entry, created_owner)?;
        drop(file);
        let placed = put_in_place(&partial, &destination, conflict).inspect_err(|_| {
            let _ = std::fs::remove_file(&partial);
        })?;
        match placed {
            Some(_) => {
                report.files += 1;
                report.bytes += entry.size;
            }
            None => report.skipped += 1,
        }
        Ok(placed)
    }
}

/// Renames a complete file to `path` (complete files only ever appear under their real
/// name), following the conflict policy when the name is taken: overwrite replaces what is
/// there (a directory too), copy takes the next `name (restored N)`, skip removes the file.
/// Returns where it went.
fn put_in_place(partial: &Path, path: &Path, conflict: OnConflict) -> Result<Option<PathBuf>> {
    if conflict == OnConflict::Overwrite {
        return match std::fs::rename(partial, path) {
            Ok(()) => Ok(Some(path.to_path_buf())),
            Err(e)
                if e.kind() == std::io::ErrorKind::IsADirectory
                    || e.raw_os_error() == Some(nix::libc::ENOTEMPTY) =>
            {
                remove_existing(path)?;
                std::fs::rename(partial, path).map_err(|e| AgentError::io(path, e))?;
                Ok(Some(path.to_path_buf()))
            }
            Err(e) => Err(AgentError::io(path, e)),
        };
    }
    let mut destination = path.to_path_buf();
    loop {
        match rename_no_replace(partial, &destination) {
            Ok(()) => return Ok(Some(destination)),
            Err(nix::errno::Errno::EEXIST) if conflict == OnConflict::Skip => {
                let _ = std::fs::remove_file(partial);
                return Ok(None);
            }
            // Taken (perhaps since `copy_name` looked): the next free name.
            Err(nix::errno::Errno::EEXIST) => destination = copy_name(path),
            Err(errno) => return Err(AgentError::io(&destination, errno.into())),
        }
    }
}

/// `rename` that fails with `EEXIST` instead of replacing `to`. File systems without
/// `RENAME_NOREPLACE` get a lookup first (not atomic, as restore was before it).
fn rename_no_replace(from: &Path, to: &Path) -> nix::Result<()> {
    use nix::errno::Errno;
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
        match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
            Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {}
            done => return done,
        }
    }
    if std::fs::symlink_metadata(to).is_ok() {
        return Err(Errno::EEXIST);
    }
    std::fs::rename(from, to).map_err(|e| Errno::try_from(e).unwrap_or(Errno::EIO))
}

/// All zeros? Blocks are OR-folded (vectorised), stopping at the first block with data.
pub fn is_zero(data: &[u8]) -> bool {
    data.chunks(4096)
        .all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// Whether owners can be restored: only root may give files away. Asked once (it was a
/// system call per restored file).
fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| nix::unistd::geteuid().is_root())
}

/// A short temporary name that fits NAME_MAX whatever the real name's length: a random
/// prefix per process and a counter (a random name per file was a system call each).
fn partial_name() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..8].to_string());
    format!(
        ".mars-{prefix}{:x}.partial",
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The process's umask, read without changing it (`umask(2)` can only set it, and another
/// thread could create a file meanwhile); `None` where /proc does not say.
fn umask() -> Option<u32> {
    static UMASK: OnceLock<Option<u32>> = OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("Umask:"))?;
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
    })
}

/// The mode to create a file with: its own when the umask keeps every bit of it (then it
/// needs no chmod), else the usual 0666.
fn entry_mode_at_creation(mode: u32) -> u32 {
    match mode_is_set_at_creation(mode) {
        true => mode,
        false => 0o666,
    }
}

/// Set-id and sticky bits are not taken at creation (and chown clears set-id bits); a
/// file its owner cannot write gets its mode last (extended attributes are set by path,
/// which needs write permission).
fn mode_is_set_at_creation(mode: u32) -> bool {
    mode & !0o777 == 0 && mode & 0o200 != 0 && umask().is_some_and(|umask| mode & umask == 0)
}

pub fn set_owner(path: &Path, entry: &Entry, follow: bool) -> Result<()> {
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
/// goes first (unless the file was created with it): chown clears set-id bits that the
/// mode then restores.
fn set_file_metadata(
    file: &std::fs::File,
    path: &Path,
    entry: &Entry,
    created_owner: Option<CreatedOwner>,
) -> Result<()> {
    if running_as_root()
        && (entry.uid.is_some() || entry.gid.is_some())
        && !created_owner.is_some_and(|owner| owner.owns(entry))
    {
        std::os::unix::fs::fchown(file, entry.uid, entry.gid)
            .map_err(|e| AgentError::io(path, e))?;
    }
    set_xattrs(path, entry)?;
    if !mode_is_set_at_creation(entry.mode) {
        file.set_permissions(std::fs::Permissions::from_mode(entry.mode))
            .map_err(|e| AgentError::io(path, e))?;
    }
    file.set_modified(mtime_of(entry))
        .map_err(|e| AgentError::io(path, e))
}

fn mtime_of(entry: &Entry) -> std::time::SystemTime {
    std::time::UNIX_EPOCH
        + std::time::Duration::new(entry.mtime.max(0) as u64, entry.mtime_nsec.min(999_999_999))
}

pub fn set_metadata(path: &Path, entry: &Entry) -> Result<()> {
    set_owner(path, entry, true)?;
    set_xattrs(path, entry)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(entry.mode))
        .map_err(|e| AgentError::io(path, e))?;
    let file = std::fs::File::open(path).map_err(|e| AgentError::io(path, e))?;
    file.set_modified(mtime_of(entry))
        .map_err(|e| AgentError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_the_umask_keeps_are_given_at_creation_the_rest_after() {
        let umask = umask().expect("Linux says the umask in /proc");
        assert!(mode_is_set_at_creation(0o600 & !umask));
        assert!(
            !mode_is_set_at_creation(0o4755),
            "set-id bits come after chown"
        );
        assert!(!mode_is_set_at_creation(0o1777), "so does the sticky bit");
        assert!(
            !mode_is_set_at_creation(0o444),
            "read-only: xattrs are set first"
        );
        if umask != 0 {
            assert!(!mode_is_set_at_creation(0o777), "bits the umask would drop");
        }
        assert_eq!(entry_mode_at_creation(0o4755), 0o666);
    }

    #[test]
    fn files_skip_chown_only_where_their_owner_is_certain() {
        let dir = tempfile::tempdir().unwrap();
        let owner = CreatedOwner::in_directory(dir.path()).unwrap();
        if !running_as_root() {
            assert_eq!(owner, None, "owners are restored only as root");
            return;
        }
        let owner = owner.expect("a directory of root's group");
        let file = dir.path().join("created");
        std::fs::write(&file, b"x").unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!((owner.uid, owner.gid), (meta.uid(), meta.gid()));
        // A directory of another group: a new file might take that group, so it is chowned.
        let other = dir.path().join("other group");
        std::fs::create_dir(&other).unwrap();
        std::os::unix::fs::chown(&other, None, Some(owner.gid + 4242)).unwrap();
        assert_eq!(CreatedOwner::in_directory(&other).unwrap(), None);
    }

    #[test]
    fn temporary_names_are_short_and_distinct() {
        let names: std::collections::HashSet<String> = (0..1000).map(|_| partial_name()).collect();
        assert_eq!(names.len(), 1000);
        assert!(
            names
                .iter()
                .all(|n| n.len() < 40 && n.starts_with(".mars-"))
        );
    }
}
