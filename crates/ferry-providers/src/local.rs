//! Local disk (or any mounted file system) as a provider.
//!
//! # Writes: never through a symlink, never half-done
//! A key's directories are opened one at a time beneath the root (`openat` with
//! `O_NOFOLLOW | O_DIRECTORY` from the root's descriptor) and created where missing (`mkdirat`;
//! each new directory is fsynced into its parent before anything is written in it). A
//! component that is a symlink or not a directory fails that object
//! ([`Refusal::DestinationComponent`]); nothing is written outside the root.
//!
//! A put writes an unnamed file in the key's directory (`O_TMPFILE`), gives it its mode
//! (fchmod), fsyncs it, links it as `.ferry-tmp-RANDOM` and renames that over the final name
//! relative to the directory's descriptor (a symlink there is replaced, not followed); then the
//! directory is fsynced. A crash mid-put leaves nothing behind. Where the file system has no
//! `O_TMPFILE` (FAT, exFAT), the random temp name is created up front with
//! `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600, so a planted name is never written through (a
//! crash can then leave one, which `ferry clean DST` removes). A multipart upload writes its
//! parts at their offsets, in any order, into `.ferry-tmp-UPLOADID` (created the same way; the
//! id is the one journaled before the upload starts, so a resume finds the file) and completes
//! the same way. Temp names are 43 bytes whatever the object's name: a 255-byte name still fits.
//!
//! # Reads: regular files only
//! `get` and `head` resolve the key the same way (no symlink followed), open the file with
//! `O_NOFOLLOW | O_NONBLOCK` (a FIFO cannot block) and check what was opened: a symlink, FIFO,
//! socket or device fails that object ([`Refusal::Source`]). With
//! [`follow_symlinks`](LocalProvider::follow_symlinks), a symlink whose resolved target stays
//! inside the (canonical) root is read; one that leaves it is refused.
//!
//! # Permissions
//! A written file gets [`PutAttrs::mode`]` & 0o777` (from a local source, the source file's
//! bits: never setuid, setgid or sticky), else 0644; directories ferry creates get 0755. Both
//! are set exactly, whatever the umask. `get` and `head` report a file's bits in
//! [`ObjectEntry::mode`].
//!
//! Keys are refused if they could escape the root (`..`, `.`, empty segments, NUL) or take the
//! name of a temp file ([`is_temp_name`]).

use crate::error::{FileKind, Refusal};
use crate::{Fetched, Multipart, MultipartUpload, PartReceipt, Provider, ProviderError, PutAttrs, PutReceipt, Result};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use ferry_core::{Limits, Location, ObjectEntry};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::Write;
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const PROVIDER: &str = "local";
use crate::TEMP_MARK;
const PAGE: usize = 1000;
/// A file's mode when the source has none (an object store).
const FILE_MODE: u32 = 0o644;
/// Directories ferry creates.
const DIR_MODE: u32 = 0o755;
/// Opens a directory, never a symlink to one.
const DIR: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

pub struct LocalProvider {
    location: Location,
    root: PathBuf,
    /// List (and read) what symbolic links inside the root point to, when that stays inside.
    follow_symlinks: bool,
}

impl LocalProvider {
    pub fn new(location: Location) -> LocalProvider {
        let root = PathBuf::from(&location.prefix);
        LocalProvider { location, root, follow_symlinks: false }
    }

    /// Reads (`get`, `head`) a symlink whose resolved target stays inside the root instead of
    /// refusing it; one that leaves the root is refused either way. Writes never follow one.
    pub fn follow_symlinks(mut self, follow: bool) -> LocalProvider {
        self.follow_symlinks = follow;
        self
    }

    /// Free space for this root's file system: bytes an unprivileged writer may still use, and
    /// the block size files are allocated in.
    pub fn space(&self) -> Result<Space> {
        let vfs = rustix::fs::statvfs(&self.root).map_err(|e| ProviderError::Io { path: self.root.clone(), source: e.into() })?;
        Ok(Space { available: vfs.f_bavail.saturating_mul(vfs.f_frsize), block: vfs.f_frsize.max(512) })
    }

    /// The file a key maps to, refusing any key that could leave the root.
    pub fn path_of(&self, key: &str) -> Result<PathBuf> {
        segments(key)?;
        Ok(self.root.join(key))
    }
}

/// Free space on a file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub available: u64,
    pub block: u64,
}

/// Whether `name` is one of ferry's temp files: `.ferry-tmp-ID`, or `.NAME.ferry-tmp-ID` as
/// ferry named them before (ID: hex, or `put`). Listings record them as skipped ferry temp
/// files; keys cannot take them.
pub fn is_temp_name(name: &str) -> bool {
    temp_id_of(name).is_some()
}

/// The upload id in a temp file's name.
fn temp_id_of(name: &str) -> Option<&str> {
    let (stem, id) = name.rsplit_once(TEMP_MARK)?;
    // A device's shipment reserve is ferry's too; any other id must be one ferry makes.
    if stem == ".shipment-reserve" && id == "0" {
        return Some(id);
    }
    (stem.is_empty() || (stem.len() > 1 && stem.starts_with('.'))).then_some(id).filter(|id| is_upload_id(id))
}

/// The temp file of upload (or put) `id`.
fn temp_name(id: &str) -> String {
    format!("{TEMP_MARK}{id}")
}

/// Upload ids name temp files: only ferry's own (hex) ids are accepted, and `put` of old.
fn is_upload_id(id: &str) -> bool {
    // ferry's ids are 32 lowercase hex digits (a UUID); a user's `.ferry-tmp-ab` is not one.
    id == "put" || (id.len() == 32 && id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
}

fn checked_id(upload_id: &str) -> Result<String> {
    if is_upload_id(upload_id) {
        Ok(upload_id.to_string())
    } else {
        Err(ProviderError::BadKey { provider: PROVIDER, key: upload_id.to_string(), reason: "not an upload id of ferry's".into() })
    }
}

/// The key's path segments, refusing any key that could leave the root or take a temp name.
fn segments(key: &str) -> Result<Vec<&str>> {
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

fn etag_of(meta: &Metadata) -> String {
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{mtime:x}-{:x}", meta.len())
}

fn entry_of(key: String, meta: &Metadata) -> ObjectEntry {
    ObjectEntry {
        content_type: mime_guess::from_path(&key).first_raw().map(str::to_string),
        last_modified: meta.modified().ok().map(DateTime::<Utc>::from),
        etag: Some(etag_of(meta)),
        size: meta.len(),
        key,
        ..Default::default()
    }
}

fn kind_of(file_type: FileType) -> FileKind {
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
fn kind_at(dir: &OwnedFd, name: &OsStr) -> FileKind {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map(|s| kind_of(FileType::from_raw_mode(s.st_mode)))
        .unwrap_or(FileKind::Unknown)
}

/// Why a directory on the way to a key could not be opened.
enum Step {
    Missing,
    Not(FileKind),
    /// It could not be created.
    Create(std::io::Error),
    Io(std::io::Error),
}

/// Opens directory `name` in `dir` without following a symlink; with `create`, makes it when
/// missing (0755, fsynced into `dir` before anything is written in it).
fn open_dir(dir: &OwnedFd, name: &OsStr, create: bool) -> std::result::Result<OwnedFd, Step> {
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
fn open_root(root: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// Creates directory `path` and its missing parents, each fsynced into its parent.
fn create_root(path: &Path) -> std::io::Result<()> {
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
struct Parent {
    dir: OwnedFd,
    name: String,
    /// The key's path, for messages.
    path: PathBuf,
    /// `dir` is the root itself.
    at_root: bool,
}

impl Parent {
    /// A failed write here (see [`write_error`]).
    fn error(&self, source: std::io::Error) -> ProviderError {
        write_error(self.at_root, &self.path, source)
    }
}

/// A write to `path` failed: when it was creating an entry in the root itself and the root
/// refuses writes, no object can be written and the run stops; otherwise (a directory this
/// user may not write, a full file system) it fails this object alone.
fn write_error(at_root: bool, path: &Path, source: std::io::Error) -> ProviderError {
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
fn parent_for_write(root: &Path, key: &str, create: bool) -> Result<Option<Parent>> {
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

/// Creates temp file `name` in `dir`: never an existing name, never through a symlink, 0600.
fn create_temp(dir: &OwnedFd, name: &str) -> std::io::Result<File> {
    let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(File::from(rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o600))?))
}

/// Creates an unnamed file in `dir` (O_TMPFILE): there is no name to plant, and a crash leaves
/// nothing behind. `None` where the file system cannot (FAT, exFAT, some network file systems).
fn create_unnamed(dir: &OwnedFd) -> std::io::Result<Option<File>> {
    match rustix::fs::openat(dir, ".", OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC, Mode::from_raw_mode(0o600)) {
        Ok(fd) => Ok(Some(File::from(fd))),
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Gives unnamed `file` a fresh random temp name in `dir` (a link never replaces an existing
/// name, nor follows one), and returns the name.
fn link_unnamed(file: &File, dir: &OwnedFd) -> std::io::Result<String> {
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
fn seal(file: &File, mode: u32) -> std::io::Result<()> {
    rustix::fs::fchmod(file, Mode::from_raw_mode(mode))?;
    file.sync_all()
}

/// Renames temp file `tmp` over the final name (replacing whatever entry is there, a symlink
/// included, never following it) and makes the rename durable.
fn place(parent: &Parent, tmp: &str) -> std::io::Result<()> {
    rustix::fs::renameat(&parent.dir, tmp, &parent.dir, parent.name.as_str())?;
    rustix::fs::fsync(&parent.dir)?;
    Ok(())
}

/// The mode to give a written file.
fn file_mode(attrs: &PutAttrs) -> u32 {
    attrs.mode.map(|m| m & 0o777).unwrap_or(FILE_MODE)
}

/// Opens the file of `key` under `root` to read it (`read`) or only to look at it: a regular
/// file reached without following a symlink — or, with `follow`, through symlinks that resolve
/// inside the root. Anything else is refused; a missing file is `NotFound`.
fn open_source(root: &Path, follow: bool, key: &str, read: bool) -> Result<(File, Metadata)> {
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
fn open_beneath(base: &Path, names: &[&OsStr], read: bool, path: &Path, key: &str) -> Result<(File, Metadata)> {
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
fn read_entry(key: &str, meta: &Metadata) -> ObjectEntry {
    ObjectEntry { mode: Some(meta.mode() & 0o777), ..entry_of(key.to_string(), meta) }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.expect("blocking file task panicked")
}

#[async_trait]
impl Provider for LocalProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    fn location(&self) -> &Location {
        &self.location
    }

    fn limits(&self) -> Limits {
        Limits::LOCAL
    }

    async fn check(&self, for_write: bool) -> Result<()> {
        match std::fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(ProviderError::Config { provider: PROVIDER, detail: format!("{} is not a directory", self.root.display()) }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && for_write => {
                // Created on first write; its nearest existing ancestor must be a directory.
                let mut up = self.root.parent();
                while let Some(dir) = up {
                    if dir.is_dir() {
                        return Ok(());
                    }
                    if dir.exists() {
                        break;
                    }
                    up = dir.parent();
                }
                Err(ProviderError::Config { provider: PROVIDER, detail: format!("cannot create {}", self.root.display()) })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ProviderError::NoSuchBucket { provider: PROVIDER, bucket: self.root.display().to_string() })
            }
            Err(e) => Err(ProviderError::Io { path: self.root.clone(), source: e }),
        }
    }

    /// Every entry under the root, in file-name order per folder: regular files as objects,
    /// anything else the listing meets as a skipped entry with its reason (symlinks, FIFOs,
    /// sockets, devices, unreadable folders, names that are not UTF-8, ferry's temp files), so
    /// nothing is left out unnamed. With `follow_symlinks`, links whose target stays inside the
    /// root are followed (folders walked, loops refused); others are skipped.
    fn list(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        let (root, follow) = (self.root.clone(), self.follow_symlinks);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<ObjectEntry>>>(4);
        tokio::task::spawn_blocking(move || {
            let mut page = Vec::with_capacity(PAGE);
            let mut emit = |entry: ObjectEntry| -> bool {
                page.push(entry);
                page.len() < PAGE || tx.blocking_send(Ok(std::mem::replace(&mut page, Vec::with_capacity(PAGE)))).is_ok()
            };
            let walked = walk(&root, follow, &mut emit);
            match walked {
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                }
                Ok(()) if !page.is_empty() => {
                    let _ = tx.blocking_send(Ok(page));
                }
                Ok(()) => {}
            }
        });
        tokio_stream_from(rx).boxed()
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectEntry>> {
        let (root, follow, key) = (self.root.clone(), self.follow_symlinks, key.to_string());
        blocking(move || match open_source(&root, follow, &key, false) {
            Ok((_, meta)) => Ok(Some(read_entry(&key, &meta))),
            Err(ProviderError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Fetched> {
        let (root, follow, key) = (self.root.clone(), self.follow_symlinks, key.to_string());
        blocking(move || {
            let (file, meta) = open_source(&root, follow, &key, true)?;
            let range = range.unwrap_or(0..meta.len());
            let mut buf = ferry_core::buffers::take_filled((range.end - range.start) as usize);
            file.read_exact_at(&mut buf, range.start).map_err(|source| ProviderError::Io { path: root.join(&key), source })?;
            Ok(Fetched { data: ferry_core::buffers::freeze(buf), object: read_entry(&key, &meta), checked: Some("local file") })
        })
        .await
    }

    async fn put(&self, key: &str, data: Bytes, _crc32c: u32, attrs: &PutAttrs) -> Result<PutReceipt> {
        let (root, key, mode) = (self.root.clone(), key.to_string(), file_mode(attrs));
        blocking(move || {
            let parent = parent_for_write(&root, &key, true)?.expect("created");
            // An unnamed file, named only once written; else a fresh random name created with
            // O_EXCL. Either way nobody can plant the name ahead.
            let (mut file, mut tmp) = match create_unnamed(&parent.dir).map_err(|e| parent.error(e))? {
                Some(file) => (file, None),
                None => {
                    let tmp = temp_name(&uuid::Uuid::new_v4().simple().to_string());
                    (create_temp(&parent.dir, &tmp).map_err(|e| parent.error(e))?, Some(tmp))
                }
            };
            let mut written = || {
                file.write_all(&data)?;
                seal(&file, mode)?;
                let name = match &tmp {
                    Some(name) => name.clone(),
                    None => tmp.insert(link_unnamed(&file, &parent.dir)?).clone(),
                };
                place(&parent, &name)?;
                file.metadata()
            };
            match written() {
                Ok(meta) => Ok(PutReceipt { etag: Some(etag_of(&meta)) }),
                Err(e) => {
                    if let Some(tmp) = &tmp {
                        let _ = rustix::fs::unlinkat(&parent.dir, tmp.as_str(), AtFlags::empty());
                    }
                    Err(parent.error(e))
                }
            }
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let (root, key) = (self.root.clone(), key.to_string());
        blocking(move || {
            let Some(parent) = parent_for_write(&root, &key, false)? else { return Ok(()) };
            match rustix::fs::unlinkat(&parent.dir, parent.name.as_str(), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(parent.error(e.into())),
            }
        })
        .await
    }

    fn multipart(&self) -> Option<&dyn Multipart> {
        Some(self)
    }
}

#[async_trait]
impl Multipart for LocalProvider {
    async fn start(&self, key: &str, attrs: &PutAttrs, _size: u64, id: &str) -> Result<Box<dyn MultipartUpload>> {
        let (root, key, mode, id) = (self.root.clone(), key.to_string(), file_mode(attrs), checked_id(id)?);
        blocking(move || {
            let parent = parent_for_write(&root, &key, true)?.expect("created");
            let tmp = temp_name(&id);
            let file = create_temp(&parent.dir, &tmp).map_err(|e| parent.error(e))?;
            let upload: Box<dyn MultipartUpload> = Box::new(LocalUpload { id, parent: Arc::new(parent), tmp, file: Arc::new(file), mode });
            Ok(upload)
        })
        .await
    }

    /// The temp file is the upload; a part the journal recorded counts as held when the bytes at
    /// its range still have its CRC32C (a torn write fails that check and is sent again). A temp
    /// name that is not a plain file of its own (a symlink, a hard link) is not resumed.
    async fn resume(
        &self,
        key: &str,
        upload_id: &str,
        attrs: &PutAttrs,
        _size: u64,
        recorded: &[PartReceipt],
    ) -> Result<Option<(Box<dyn MultipartUpload>, Vec<PartReceipt>)>> {
        let (root, key, mode, id) = (self.root.clone(), key.to_string(), file_mode(attrs), checked_id(upload_id)?);
        let recorded = recorded.to_vec();
        blocking(move || {
            let Some(parent) = parent_for_write(&root, &key, false)? else { return Ok(None) };
            let tmp = temp_name(&id);
            let flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
            let file = match rustix::fs::openat(&parent.dir, tmp.as_str(), flags, Mode::empty()) {
                Ok(fd) => File::from(fd),
                Err(Errno::NOENT | Errno::LOOP) => return Ok(None),
                Err(e) => return Err(parent.error(e.into())),
            };
            let meta = file.metadata().map_err(|e| parent.error(e))?;
            if !meta.is_file() || meta.nlink() != 1 {
                return Ok(None);
            }
            let mut held = Vec::new();
            for part in recorded {
                let offset: u64 = part.id.parse().unwrap_or(u64::MAX);
                if offset.saturating_add(part.size) > meta.len() {
                    continue;
                }
                let mut buf = vec![0u8; part.size as usize];
                file.read_exact_at(&mut buf, offset).map_err(|e| parent.error(e))?;
                if ferry_core::crc32c(&buf) == part.crc32c {
                    held.push(part);
                }
            }
            let upload: Box<dyn MultipartUpload> = Box::new(LocalUpload { id, parent: Arc::new(parent), tmp, file: Arc::new(file), mode });
            Ok(Some((upload, held)))
        })
        .await
    }

    /// ferry's temp files under the root (interrupted multipart uploads and puts, in the naming
    /// of this version and the one before). Each is reported under its own path as the key, so
    /// `abort_upload` finds it whatever object it was for.
    async fn stale_uploads(&self, before: DateTime<Utc>) -> Result<Vec<crate::OpenUpload>> {
        let root = self.root.clone();
        blocking(move || {
            let mut out = Vec::new();
            for item in walkdir::WalkDir::new(&root).follow_links(false).sort_by_file_name().into_iter().filter_map(|i| i.ok()) {
                let name = item.file_name().to_string_lossy().into_owned();
                let Some(id) = temp_id_of(&name).filter(|_| item.file_type().is_file()) else { continue };
                let modified = item.metadata().ok().and_then(|m| m.modified().ok()).map(DateTime::<Utc>::from);
                if modified.is_some_and(|t| t >= before) {
                    continue;
                }
                let Some(key) = item.path().strip_prefix(&root).ok().and_then(|p| p.to_str()) else { continue };
                out.push(crate::OpenUpload { key: key.to_string(), upload_id: id.to_string(), initiated: modified });
            }
            Ok(out)
        })
        .await
    }

    /// Removes upload `upload_id`'s temp file in the directory of `key` — `key` is the object's,
    /// or the temp file's own as [`Multipart::stale_uploads`] reports it. The name ferry gave
    /// such a file before (`.NAME.ferry-tmp-ID`) is removed too.
    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        let (root, id) = (self.root.clone(), checked_id(upload_id)?);
        // The temp file's own path: its directory is what matters.
        let (dir_key, name) = match key.rsplit_once('/') {
            Some((dir, name)) => (Some(dir), name),
            None => (None, key),
        };
        let names: Vec<String> = match temp_id_of(name) {
            Some(own) if own == id => vec![name.to_string()],
            _ => vec![temp_name(&id), format!(".{name}{TEMP_MARK}{id}")],
        };
        // A placeholder object name in the temp file's directory, to open that directory.
        let probe = match dir_key {
            Some(dir) => format!("{dir}/x"),
            None => "x".to_string(),
        };
        if names.len() == 2 {
            segments(key)?;
        }
        blocking(move || {
            let Some(parent) = parent_for_write(&root, &probe, false)? else { return Ok(()) };
            for tmp in names {
                match rustix::fs::unlinkat(&parent.dir, tmp.as_str(), AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT | Errno::NAMETOOLONG) => {}
                    Err(e) => return Err(ProviderError::Io { path: parent.path.with_file_name(&tmp), source: e.into() }),
                }
            }
            Ok(())
        })
        .await
    }
}

struct LocalUpload {
    id: String,
    parent: Arc<Parent>,
    tmp: String,
    file: Arc<File>,
    mode: u32,
}

#[async_trait]
impl MultipartUpload for LocalUpload {
    fn upload_id(&self) -> Option<String> {
        Some(self.id.clone())
    }

    fn put_part(&mut self, index: u32, offset: u64, data: Bytes, crc32c: u32) -> BoxFuture<'static, Result<PartReceipt>> {
        let (file, parent) = (self.file.clone(), self.parent.clone());
        Box::pin(blocking(move || {
            file.write_all_at(&data, offset).map_err(|e| parent.error(e))?;
            Ok(PartReceipt { index, id: format!("{offset}"), size: data.len() as u64, crc32c })
        }))
    }

    async fn complete(self: Box<Self>, parts: Vec<PartReceipt>) -> Result<PutReceipt> {
        let size: u64 = parts.iter().map(|p| p.size).sum();
        blocking(move || {
            let done = (|| {
                self.file.set_len(size)?;
                seal(&self.file, self.mode)?;
                place(&self.parent, &self.tmp)?;
                self.file.metadata()
            })();
            let meta = done.map_err(|e| self.parent.error(e))?;
            Ok(PutReceipt { etag: Some(etag_of(&meta)) })
        })
        .await
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        blocking(move || match rustix::fs::unlinkat(&self.parent.dir, self.tmp.as_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.parent.error(e.into())),
        })
        .await
    }
}

/// Walks `root` for [`LocalProvider::list`], handing each entry to `emit` (which answers
/// whether to go on). Fails only when the root itself cannot be read.
fn walk(root: &Path, follow: bool, emit: &mut dyn FnMut(ObjectEntry) -> bool) -> Result<()> {
    use ferry_core::SkipReason;
    use std::os::unix::fs::FileTypeExt;
    // Where followed links may lead: the root as the file system resolves it.
    let real_root = match follow {
        true => Some(std::fs::canonicalize(root).map_err(ProviderError::io(root))?),
        false => None,
    };
    let key_of = |path: &Path| -> std::result::Result<String, String> {
        let rel = path.strip_prefix(root).expect("walkdir stays under its root");
        rel.to_str().map(str::to_string).ok_or_else(|| ferry_core::skip::escape_invalid_name(rel.as_os_str().as_encoded_bytes()))
    };
    let mut items = walkdir::WalkDir::new(root).follow_links(follow).sort_by_file_name().into_iter();
    while let Some(item) = items.next() {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                let path = e.path().unwrap_or(root).to_path_buf();
                if path == root && e.depth() == 0 {
                    let source = e.into_io_error().unwrap_or_else(|| std::io::Error::other("cannot read the folder"));
                    return Err(ProviderError::Io { path, source });
                }
                let reason = if e.loop_ancestor().is_some() {
                    SkipReason::SymlinkLoop
                } else if e.io_error().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) {
                    // Gone since the folder was read (or a link to nowhere, when following).
                    match std::fs::symlink_metadata(&path) {
                        Ok(m) if m.file_type().is_symlink() => SkipReason::SymlinkOutsideRoot,
                        _ => continue,
                    }
                } else {
                    SkipReason::Unreadable
                };
                let key = key_of(&path).unwrap_or_else(|escaped| escaped);
                let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
                let key = if is_dir && reason == SkipReason::Unreadable { format!("{key}/") } else { key };
                if !emit(ObjectEntry::skipped(key, reason)) {
                    return Ok(());
                }
                continue;
            }
        };
        if item.depth() == 0 {
            continue;
        }
        let name = item.file_name().to_string_lossy();
        let key = match key_of(item.path()) {
            Ok(key) => key,
            Err(escaped) => {
                // Every file under a folder whose name is not UTF-8 is named (escaped) too.
                if item.file_type().is_dir() {
                    continue;
                }
                if !emit(ObjectEntry::skipped(escaped, SkipReason::InvalidName)) {
                    return Ok(());
                }
                continue;
            }
        };
        // A followed link must stay inside the root, or it is skipped (and not walked into).
        if item.path_is_symlink()
            && let Some(real_root) = &real_root
        {
            let inside = std::fs::canonicalize(item.path()).is_ok_and(|target| target.starts_with(real_root));
            if !inside {
                if item.file_type().is_dir() {
                    items.skip_current_dir();
                }
                if !emit(ObjectEntry::skipped(key, SkipReason::SymlinkOutsideRoot)) {
                    return Ok(());
                }
                continue;
            }
        }
        let kind = item.file_type();
        let reason = if kind.is_dir() {
            continue;
        } else if is_temp_name(&name) {
            // Whatever it is (a planted link too): a name ferry's writes own, never an object.
            SkipReason::FerryTempFile
        } else if kind.is_symlink() {
            // Not followed (without --follow-symlinks), or a link to nowhere.
            match follow {
                false => SkipReason::Symlink,
                true => SkipReason::SymlinkOutsideRoot,
            }
        } else if kind.is_fifo() {
            SkipReason::Fifo
        } else if kind.is_socket() {
            SkipReason::Socket
        } else if kind.is_block_device() || kind.is_char_device() {
            SkipReason::Device
        } else {
            match item.metadata() {
                Ok(meta) => {
                    if !emit(entry_of(key, &meta)) {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) if e.io_error().is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) => continue,
                Err(_) => SkipReason::Unreadable,
            }
        };
        if !emit(ObjectEntry::skipped(key, reason)) {
            return Ok(());
        }
    }
    Ok(())
}

/// A stream over a bounded channel's receiver.
pub(crate) fn tokio_stream_from<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_root() {
        let p = LocalProvider::new(Location::parse("/tmp/root").unwrap());
        assert_eq!(p.path_of("a/b c/d").unwrap(), PathBuf::from("/tmp/root/a/b c/d"));
        for bad in ["../etc/passwd", "a/../../x", "/abs", "a//b", "a/", "./a", "x\0y", ""] {
            assert!(p.path_of(bad).is_err(), "{bad:?} accepted");
        }
        // Temp names are reserved; names that merely contain the mark are a user's.
        for reserved in [
            ".ferry-tmp-0123456789abcdef0123456789abcdef",
            "a/.ferry-tmp-put",
            ".x.ferry-tmp-0123456789abcdef0123456789abcdef",
            ".shipment-reserve.ferry-tmp-0",
        ] {
            assert!(p.path_of(reserved).is_err(), "{reserved:?} accepted");
        }
        for user in ["report.ferry-tmp-2024.csv", ".ferry-tmp-notes", "x.ferry-tmp-abc", ".ferry-tmp-ab", ".notes.txt.ferry-tmp-beef"] {
            assert!(p.path_of(user).is_ok(), "{user:?} refused");
        }
    }

    fn provider(root: &Path, follow: bool) -> LocalProvider {
        LocalProvider::new(Location::parse(root.to_str().unwrap()).unwrap()).follow_symlinks(follow)
    }

    fn refusal(e: ProviderError) -> Refusal {
        match e {
            ProviderError::Refused { refusal, .. } => refusal,
            other => panic!("not a refusal: {other}"),
        }
    }

    #[tokio::test]
    async fn symlinks_are_read_only_when_followed_and_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("src");
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::write(root.join("real/a.txt"), b"inside").unwrap();
        std::fs::write(dir.path().join("outside.txt"), b"outside").unwrap();
        std::os::unix::fs::symlink(root.join("real/a.txt"), root.join("abs-inside")).unwrap();
        std::os::unix::fs::symlink("real/a.txt", root.join("rel-inside")).unwrap();
        std::os::unix::fs::symlink("real", root.join("linked-dir")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside.txt"), root.join("outside")).unwrap();
        std::os::unix::fs::symlink("../outside.txt", root.join("rel-outside")).unwrap();

        let strict = provider(&root, false);
        for key in ["abs-inside", "rel-inside", "outside"] {
            assert_eq!(refusal(strict.get(key, None).await.unwrap_err()), Refusal::Source(FileKind::Symlink), "{key}");
            assert_eq!(refusal(strict.head(key).await.unwrap_err()), Refusal::Source(FileKind::Symlink), "{key}");
        }
        let through_dir = refusal(strict.get("linked-dir/a.txt", None).await.unwrap_err());
        assert_eq!(through_dir, Refusal::SourceComponent { component: "linked-dir".into(), kind: FileKind::Symlink });
        let read = strict.get("real/a.txt", None).await.unwrap();
        assert_eq!(&read.data[..], b"inside");

        let follow = provider(&root, true);
        for key in ["abs-inside", "rel-inside", "linked-dir/a.txt"] {
            let got = follow.get(key, None).await.unwrap();
            assert_eq!(&got.data[..], b"inside", "{key}");
            assert_eq!(got.object.key, key);
            assert_eq!(follow.head(key).await.unwrap().unwrap().size, 6, "{key}");
        }
        for key in ["outside", "rel-outside"] {
            assert!(matches!(refusal(follow.get(key, None).await.unwrap_err()), Refusal::LeavesRoot { .. }), "{key}");
            assert!(matches!(refusal(follow.head(key).await.unwrap_err()), Refusal::LeavesRoot { .. }), "{key}");
        }
        assert_eq!(follow.head("missing").await.unwrap(), None);
    }

    #[tokio::test]
    async fn fifos_are_refused_without_blocking_and_modes_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        rustix::fs::mknodat(rustix::fs::CWD, root.join("fifo"), FileType::Fifo, Mode::from_raw_mode(0o644), 0).unwrap();
        std::fs::write(root.join("private"), b"x").unwrap();
        std::fs::set_permissions(root.join("private"), std::os::unix::fs::PermissionsExt::from_mode(0o4750)).unwrap();
        let p = provider(root, false);
        assert_eq!(refusal(p.get("fifo", None).await.unwrap_err()), Refusal::Source(FileKind::Fifo));
        assert_eq!(refusal(p.head("fifo").await.unwrap_err()), Refusal::Source(FileKind::Fifo));
        assert_eq!(p.head("private").await.unwrap().unwrap().mode, Some(0o750));
        assert_eq!(p.get("private", None).await.unwrap().object.mode, Some(0o750));
    }

    #[tokio::test]
    async fn temp_files_are_short_unpredictable_and_found_by_clean() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("dst");
        let p = provider(&root, false);
        let long = format!("d/{}", "n".repeat(255));
        p.put(&long, Bytes::from_static(b"one"), 0, &PutAttrs::default()).await.unwrap();
        assert_eq!(std::fs::read(root.join(&long)).unwrap(), b"one");
        let mp = p.multipart().unwrap();
        let id = "00112233445566778899aabbccddeeff";
        let mut upload = mp.start(&long, &PutAttrs::default(), 3, id).await.unwrap();
        upload.put_part(0, 0, Bytes::from_static(b"two"), 0).await.unwrap();
        drop(upload);
        let temp = root.join("d").join(format!(".ferry-tmp-{id}"));
        assert!(temp.is_file());
        // An old-style temp file is found too; each is reported under its own path.
        std::fs::write(root.join("d/.old.ferry-tmp-put"), b"").unwrap();
        let stale = mp.stale_uploads(Utc::now() + chrono::Duration::seconds(60)).await.unwrap();
        let mut found: Vec<(String, String)> = stale.into_iter().map(|u| (u.key, u.upload_id)).collect();
        found.sort();
        assert_eq!(
            found,
            [("d/.ferry-tmp-00112233445566778899aabbccddeeff".into(), id.into()), ("d/.old.ferry-tmp-put".into(), "put".into())]
        );
        for (key, id) in &found {
            mp.abort_upload(key, id).await.unwrap();
        }
        assert_eq!(std::fs::read_dir(root.join("d")).unwrap().count(), 1, "temp files were left");
        // The journal's way: the object's key and the upload id.
        let upload = mp.start(&long, &PutAttrs::default(), 3, id).await.unwrap();
        drop(upload);
        mp.abort_upload(&long, id).await.unwrap();
        assert!(!temp.exists());
    }
}
