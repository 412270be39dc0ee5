//! The file system beneath a root: no symlink followed on the way to a key, writes made
//! durable before they are named, reads of regular files only.

use super::*;
use crate::TEMP_MARK;
use crate::error::{FileKind, Refusal};
use crate::{ProviderError, PutAttrs, Result};
use chrono::{DateTime, Utc};
use ferry_core::ObjectEntry;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file's mode when the source has none (an object store).
pub(super) const FILE_MODE: u32 = 0o644;
/// Directories ferry creates.
pub(super) const DIR_MODE: u32 = 0o755;
/// Opens a directory, never a symlink to one.
pub(super) const DIR: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// Whether `name` is one of ferry's temp files: `.ferry-tmp-ID`, or `.NAME.ferry-tmp-ID` as
/// ferry named them before (ID: hex, or `put`). Listings record them as skipped ferry temp
/// files; keys cannot take them.
pub fn is_temp_name(name: &str) -> bool {
    temp_id_of(name).is_some()
}

/// The upload id in a temp file's name.
pub(super) fn temp_id_of(name: &str) -> Option<&str> {
    let (stem, id) = name.rsplit_once(TEMP_MARK)?;
    // A device's shipment reserve is ferry's too; any other id must be one ferry makes.
    if stem == ".shipment-reserve" && id == "0" {
        return Some(id);
    }
    (stem.is_empty() || (stem.len() > 1 && stem.starts_with('.'))).then_some(id).filter(|id| is_upload_id(id))
}

/// The temp file of upload (or put) `id`.
pub(super) fn temp_name(id: &str) -> String {
    format!("{TEMP_MARK}{id}")
}

/// Upload ids name temp files: only ferry's own (hex) ids are accepted, and `put` of old.
pub(super) fn is_upload_id(id: &str) -> bool {
    // ferry's ids are 32 lowercase hex digits (a UUID); a user's `.ferry-tmp-ab` is not one.
    id == "put" || (id.len() == 32 && id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
}

pub(super) fn checked_id(upload_id: &str) -> Result<String> {
    if is_upload_id(upload_id) {
        Ok(upload_id.to_string())
    } else {
        Err(ProviderError::BadKey { provider: PROVIDER, key: upload_id.to_string(), reason: "not an upload id of ferry's".into() })
    }
}

/// The key's path segments, refusing any key that could leave the root or take a temp name.
pub(super) fn segments(key: &str) -> Result<Vec<&str>> {
    let bad = |reason: &str| ProviderError::BadKey { provider: PROVIDER, key: key.to_string(), reason: reason.to_string() };
    crate::check_key(key).map_err(bad)?;
    key.split('/')
        .map(|seg| match seg {
            "" => Err(bad("empty path segment (leading, trailing or doubled '/')")),
            "." | ".." => Err(bad("'.' or '..' segment would leave the destination root")),
            s if is_temp_name(s) => Err(bad("name is reserved for ferry's temp files")),
            s => Ok(s),
        })
        .collect()
}

pub(super) fn etag_of(meta: &Metadata) -> String {
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{mtime:x}-{:x}", meta.len())
}

/// A local file's version: its inode and change time. Neither can be set back by a user (a
/// `mv` over a file brings another inode; a write, even with its modification time restored
/// by `touch -r`, moves the change time), so a file replaced at the same size and time is
/// seen as another version, which the entity tag (modification time and size) alone misses.
pub(super) fn version_of(meta: &Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!("{:x}-{}.{:09}", meta.ino(), meta.ctime(), meta.ctime_nsec())
}

pub(super) fn entry_of(key: String, meta: &Metadata) -> ObjectEntry {
    ObjectEntry {
        content_type: mime_guess::from_path(&key).first_raw().map(str::to_string),
        last_modified: meta.modified().ok().map(DateTime::<Utc>::from),
        etag: Some(etag_of(meta)),
        version: Some(version_of(meta)),
        size: meta.len(),
        key,
        ..Default::default()
    }
}

pub(super) fn kind_of(file_type: FileType) -> FileKind {
    match file_type {
        FileType::RegularFile => FileKind::Regular,
        FileType::Directory => FileKind::Directory,
        FileType::Symlink => FileKind::Symlink,
        FileType::Fifo => FileKind::Fifo,
        FileType::Socket => FileKind::Socket,
        FileType::CharacterDevice => FileKind::CharDevice,
        FileType::BlockDevice => FileKind::BlockDevice,
        _ => FileKind::Unknown,
    }
}

/// What `name` in `dir` is, without following it.
pub(super) fn kind_at(dir: &OwnedFd, name: &OsStr) -> FileKind {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map(|s| kind_of(FileType::from_raw_mode(s.st_mode)))
        .unwrap_or(FileKind::Unknown)
}

/// Why a directory on the way to a key could not be opened.
pub(super) enum Step {
    Missing,
    Not(FileKind),
    /// It could not be created.
    Create(std::io::Error),
    Io(std::io::Error),
}

/// Opens directory `name` in `dir` without following a symlink; with `create`, makes it when
/// missing (0755, fsynced into `dir` before anything is written in it).
pub(super) fn open_dir(dir: &OwnedFd, name: &OsStr, create: bool) -> std::result::Result<OwnedFd, Step> {
    let mut created = false;
    for _ in 0..3 {
        match rustix::fs::openat(dir, name, DIR, Mode::empty()) {
            Ok(fd) if created => {
                // Exactly 0755, whatever the umask; durable in its parent.
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(DIR_MODE)).map_err(|e| Step::Io(e.into()))?;
                rustix::fs::fsync(dir).map_err(|e| Step::Io(e.into()))?;
                return Ok(fd);
            }
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) if create => match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(DIR_MODE)) {
                Ok(()) => created = true,
                Err(Errno::EXIST) => {}
                Err(e) => return Err(Step::Create(e.into())),
            },
            Err(Errno::NOENT) => return Err(Step::Missing),
            Err(Errno::LOOP | Errno::NOTDIR) => return Err(Step::Not(kind_at(dir, name))),
            Err(e) => return Err(Step::Io(e.into())),
        }
    }
    Err(Step::Io(std::io::Error::other("directory keeps changing while being created")))
}

/// Opens the root directory. Its own path is the user's choice: a symlink in it is followed.
pub(super) fn open_root(root: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// Creates directory `path` and its missing parents, each fsynced into its parent.
pub(super) fn create_root(path: &Path) -> std::io::Result<()> {
    let missing: Vec<&Path> = path.ancestors().take_while(|a| !a.as_os_str().is_empty() && !a.exists()).collect();
    for dir in missing.into_iter().rev() {
        match std::fs::create_dir(dir) {
            Ok(()) => {
                let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                File::open(parent)?.sync_all()?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The directory a key's file lives in, opened beneath the root, and the file's name there.
pub(super) struct Parent {
    pub(super) dir: OwnedFd,
    pub(super) name: String,
    /// The key's path, for messages.
    pub(super) path: PathBuf,
    /// `dir` is the root itself.
    pub(super) at_root: bool,
}

impl Parent {
    /// A failed write here (see [`write_error`]).
    pub(super) fn error(&self, source: std::io::Error) -> ProviderError {
        write_error(self.at_root, &self.path, source)
    }
}

/// A write to `path` failed: when it was creating an entry in the root itself and the root
/// refuses writes, no object can be written and the run stops; otherwise (a directory this
/// user may not write, a full file system) it fails this object alone.
pub(super) fn write_error(at_root: bool, path: &Path, source: std::io::Error) -> ProviderError {
    use std::io::ErrorKind::{PermissionDenied, ReadOnlyFilesystem};
    match source.kind() {
        PermissionDenied | ReadOnlyFilesystem if at_root => {
            ProviderError::RootUnwritable { path: path.parent().unwrap_or(path).to_path_buf(), source }
        }
        _ => ProviderError::Io { path: path.to_path_buf(), source },
    }
}

/// Opens the directory of `key` beneath `root` for writing, creating what is missing (the root
/// too) when `create`; `Ok(None)` when it is missing and not created.
pub(super) fn parent_for_write(root: &Path, key: &str, create: bool) -> Result<Option<Parent>> {
    let segs = segments(key)?;
    let path = root.join(key);
    let root_error = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            ProviderError::RootUnwritable { path: root.to_path_buf(), source }
        }
        _ => ProviderError::Io { path: root.to_path_buf(), source },
    };
    let mut dir = match open_root(root) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            create_root(root).map_err(root_error)?;
            open_root(root).map_err(root_error)?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(root_error(e)),
    };
    let (name, dirs) = segs.split_last().expect("a key has a segment");
    for (i, seg) in dirs.iter().enumerate() {
        dir = match open_dir(&dir, OsStr::new(seg), create) {
            Ok(fd) => fd,
            Err(Step::Missing) => return Ok(None),
            Err(Step::Not(kind)) => {
                let component = dirs[..=i].join("/");
                return Err(ProviderError::Refused { path, refusal: Refusal::DestinationComponent { component, kind } });
            }
            Err(Step::Create(source)) => return Err(write_error(i == 0, &root.join(dirs[..=i].join("/")), source)),
            Err(Step::Io(source)) => return Err(ProviderError::Io { path, source }),
        };
    }
    Ok(Some(Parent { dir, name: name.to_string(), path, at_root: dirs.is_empty() }))
}

/// Removes the folders above `key` beneath `root` that are empty, deepest first; stops at the
/// first that is not empty, is missing, or is not a plain folder (a link is never followed or
/// removed). The root itself is never removed.
pub(super) fn prune_empty_parents(root: &Path, key: &str) -> Result<()> {
    let segs = segments(key)?;
    let Some((_, dirs)) = segs.split_last() else { return Ok(()) };
    let mut holders = vec![open_root(root).map_err(|source| ProviderError::Io { path: root.to_path_buf(), source })?];
    for seg in dirs {
        match open_dir(holders.last().expect("the root at least"), OsStr::new(seg), false) {
            Ok(fd) => holders.push(fd),
            Err(_) => return Ok(()),
        }
    }
    // `holders[i]` is the folder that holds `dirs[i]`.
    for (i, seg) in dirs.iter().enumerate().rev() {
        if rustix::fs::unlinkat(&holders[i], *seg, AtFlags::REMOVEDIR).is_err() {
            break;
        }
    }
    Ok(())
}

/// Creates temp file `name` in `dir`: never an existing name, never through a symlink, 0600.
pub(super) fn create_temp(dir: &OwnedFd, name: &str) -> std::io::Result<File> {
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))?))
}

/// Creates an unnamed file in `dir` (O_TMPFILE): there is no name to plant, and a crash leaves
/// nothing behind. `None` where the file system cannot (FAT, exFAT, some network file systems).
pub(super) fn create_unnamed(dir: &OwnedFd) -> std::io::Result<Option<File>> {
    match rustix::fs::openat(dir, ".", OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC, Mode::from_raw_mode(0o600)) {
        Ok(fd) => Ok(Some(File::from(fd))),
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Gives unnamed `file` a fresh random temp name in `dir` (a link never replaces an existing
/// name, nor follows one), and returns the name.
pub(super) fn link_unnamed(file: &File, dir: &OwnedFd) -> std::io::Result<String> {
    for _ in 0..4 {
        let tmp = temp_name(&uuid::Uuid::new_v4().simple().to_string());
        let linked = match rustix::fs::linkat(file, "", dir, tmp.as_str(), AtFlags::EMPTY_PATH) {
            // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc does the same for anyone.
            Err(Errno::NOENT | Errno::PERM) => {
                let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(file));
                rustix::fs::linkat(rustix::fs::CWD, proc.as_str(), dir, tmp.as_str(), AtFlags::SYMLINK_FOLLOW)
            }
            other => other,
        };
        match linked {
            Ok(()) => return Ok(tmp),
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(std::io::Error::other("no fresh temp name after 4 tries"))
}

/// Gives a written file its mode and makes its bytes durable.
pub(super) fn seal(file: &File, mode: u32) -> std::io::Result<()> {
    rustix::fs::fchmod(file, Mode::from_raw_mode(mode))?;
    file.sync_all()
}

/// Renames temp file `tmp` over the final name (replacing whatever entry is there, a symlink
/// included, never following it) and makes the rename durable.
pub(super) fn place(parent: &Parent, tmp: &str) -> std::io::Result<()> {
    rustix::fs::renameat(&parent.dir, tmp, &parent.dir, parent.name.as_str())?;
    rustix::fs::fsync(&parent.dir)?;
    Ok(())
}

/// The mode to give a written file.
pub(super) fn file_mode(attrs: &PutAttrs) -> u32 {
    attrs.mode.map(|m| m & 0o777).unwrap_or(FILE_MODE)
}

/// Opens the file of `key` under `root` to read it (`read`) or only to look at it: a regular
/// file reached without following a symlink — or, with `follow`, through symlinks that resolve
/// inside the root. Anything else is refused; a missing file is `NotFound`.
pub(super) fn open_source(root: &Path, follow: bool, key: &str, read: bool) -> Result<(File, Metadata)> {
    let segs = segments(key)?;
    let path = root.join(key);
    if !follow {
        let names: Vec<&OsStr> = segs.iter().map(OsStr::new).collect();
        return open_beneath(root, &names, read, &path, key);
    }
    let canonical_root = std::fs::canonicalize(root).map_err(ProviderError::io(root))?;
    let resolved = match std::fs::canonicalize(&path) {
        Ok(p) => p,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
            return Err(ProviderError::NotFound { provider: PROVIDER, key: key.to_string() });
        }
        Err(source) => return Err(ProviderError::Io { path, source }),
    };
    let Ok(rel) = resolved.strip_prefix(&canonical_root) else {
        return Err(ProviderError::Refused { path, refusal: Refusal::LeavesRoot { target: resolved.clone() } });
    };
    // The resolved path has no symlink in it, and is opened without following any: one planted
    // since is refused, not followed out of the root.
    let names: Vec<&OsStr> = rel.iter().collect();
    open_beneath(&canonical_root, &names, read, &path, key)
}

/// Opens `names` beneath directory `base` without following a symlink (see [`open_source`]);
/// `path` and `key` name the object in errors.
pub(super) fn open_beneath(base: &Path, names: &[&OsStr], read: bool, path: &Path, key: &str) -> Result<(File, Metadata)> {
    let not_found = || ProviderError::NotFound { provider: PROVIDER, key: key.to_string() };
    let io = |source: std::io::Error| ProviderError::Io { path: path.to_path_buf(), source };
    let refused = |refusal: Refusal| ProviderError::Refused { path: path.to_path_buf(), refusal };
    let mut dir = match open_root(base) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(e) => return Err(io(e)),
    };
    let Some((name, dirs)) = names.split_last() else { return Err(refused(Refusal::Source(FileKind::Directory))) };
    for (i, seg) in dirs.iter().enumerate() {
        dir = match open_dir(&dir, seg, false) {
            Ok(fd) => fd,
            // A file where a directory was: the key no longer exists.
            Err(Step::Missing | Step::Not(FileKind::Regular)) => return Err(not_found()),
            Err(Step::Not(kind)) => {
                let component = dirs[..=i].iter().map(|s| s.to_string_lossy()).collect::<Vec<_>>().join("/");
                return Err(refused(Refusal::SourceComponent { component, kind }));
            }
            Err(Step::Io(e) | Step::Create(e)) => return Err(io(e)),
        };
    }
    let regular = |meta: &Metadata| match kind_of(FileType::from_raw_mode(meta.mode())) {
        FileKind::Regular => Ok(()),
        kind => Err(refused(Refusal::Source(kind))),
    };
    // Looked at first without opening it to read (O_PATH): a device or FIFO is never opened.
    let look = match rustix::fs::openat(&dir, *name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(Errno::NOENT) => return Err(not_found()),
        Err(e) => return Err(io(e.into())),
    };
    let meta = look.metadata().map_err(io)?;
    regular(&meta)?;
    if !read {
        return Ok((look, meta));
    }
    // Swapped since? O_NOFOLLOW refuses a symlink, O_NONBLOCK keeps a FIFO from blocking the
    // open, and what was opened is checked again.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let file = match rustix::fs::openat(&dir, *name, flags, Mode::empty()) {
        Ok(fd) => File::from(fd),
        Err(Errno::NOENT) => return Err(not_found()),
        Err(Errno::LOOP) => return Err(refused(Refusal::Source(FileKind::Symlink))),
        Err(e) => return Err(io(e.into())),
    };
    let meta = file.metadata().map_err(io)?;
    regular(&meta)?;
    Ok((file, meta))
}

/// What `get` and `head` report: the entry, with the file's permission bits.
pub(super) fn read_entry(key: &str, meta: &Metadata) -> ObjectEntry {
    ObjectEntry { mode: Some(meta.mode() & 0o777), ..entry_of(key.to_string(), meta) }
}
