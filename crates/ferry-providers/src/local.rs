//! Local disk (or any mounted file system) as a provider.
//!
//! Writes never land half-done under their final name: a put writes `.NAME.ferry-tmp-ID` beside
//! the target, fsyncs it and renames it over. Multipart uploads write each part at its offset
//! into such a temp file (parts may arrive in any order), and complete with fsync + rename.
//! Keys are refused if they could escape the root (`..`, `.`, empty segments, NUL).

use crate::{Fetched, Multipart, MultipartUpload, PartReceipt, Provider, ProviderError, PutAttrs, PutReceipt, Result};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use ferry_core::{Limits, Location, ObjectEntry};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use std::fs::{File, Metadata};
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const PROVIDER: &str = "local";
use crate::TEMP_MARK;
const PAGE: usize = 1000;

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

    /// Follows symbolic links whose target stays inside the root (`--follow-symlinks`).
    pub fn following_symlinks(mut self, follow: bool) -> LocalProvider {
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
        let bad = |reason: &str| ProviderError::BadKey { provider: PROVIDER, key: key.to_string(), reason: reason.to_string() };
        crate::check_key(key).map_err(bad)?;
        let mut path = self.root.clone();
        for seg in key.split('/') {
            match seg {
                "" => return Err(bad("empty path segment (leading, trailing or doubled '/')")),
                "." | ".." => return Err(bad("'.' or '..' segment would leave the destination root")),
                s if crate::is_temp_name(s) => return Err(bad("name is reserved for ferry's temp files")),
                s => path.push(s),
            }
        }
        Ok(path)
    }
}

/// Free space on a file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub available: u64,
    pub block: u64,
}

/// Makes a rename durable: fsyncs the directory that holds `path`.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
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

fn temp_path(target: &Path, id: &str) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    target.with_file_name(format!(".{name}{TEMP_MARK}{id}"))
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(ProviderError::io(parent))?;
    }
    Ok(())
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
        let path = self.path_of(key)?;
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(entry_of(key.to_string(), &m))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || e.kind() == std::io::ErrorKind::NotADirectory => Ok(None),
            Err(e) => Err(ProviderError::Io { path, source: e }),
        }
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Fetched> {
        let path = self.path_of(key)?;
        let key = key.to_string();
        blocking(move || {
            let io = |e: std::io::Error| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    ProviderError::NotFound { provider: PROVIDER, key: key.clone() }
                } else {
                    ProviderError::Io { path: path.clone(), source: e }
                }
            };
            let mut f = File::open(&path).map_err(io)?;
            let meta = f.metadata().map_err(io)?;
            let range = range.unwrap_or(0..meta.len());
            let mut buf = ferry_core::buffers::take_filled((range.end - range.start) as usize);
            f.seek(SeekFrom::Start(range.start)).map_err(io)?;
            f.read_exact(&mut buf).map_err(io)?;
            Ok(Fetched { data: ferry_core::buffers::freeze(buf), object: entry_of(key.clone(), &meta), checked: Some("local file") })
        })
        .await
    }

    async fn put(&self, key: &str, data: Bytes, _crc32c: u32, _attrs: &PutAttrs) -> Result<PutReceipt> {
        let path = self.path_of(key)?;
        blocking(move || {
            create_parent(&path)?;
            // One temp name per key: a put cut short by a crash is overwritten by the next one.
            let tmp = temp_path(&path, "put");
            let result = (|| {
                let mut f = File::create(&tmp)?;
                f.write_all(&data)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                sync_parent(&path)?;
                std::fs::metadata(&path)
            })();
            match result {
                Ok(meta) => Ok(PutReceipt { etag: Some(etag_of(&meta)) }),
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    Err(ProviderError::Io { path, source: e })
                }
            }
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ProviderError::Io { path, source: e }),
        }
    }

    fn multipart(&self) -> Option<&dyn Multipart> {
        Some(self)
    }
}

#[async_trait]
impl Multipart for LocalProvider {
    async fn start(&self, key: &str, _attrs: &PutAttrs, _size: u64, id: &str) -> Result<Box<dyn MultipartUpload>> {
        let target = self.path_of(key)?;
        let id = sanitize_id(id)?;
        let tmp = temp_path(&target, &id);
        let file = {
            let (target, tmp) = (target.clone(), tmp.clone());
            blocking(move || {
                create_parent(&target)?;
                File::create(&tmp).map_err(ProviderError::io(&tmp))
            })
            .await?
        };
        Ok(Box::new(LocalUpload { id, target, tmp, file: Arc::new(file) }))
    }

    /// The temp file is the upload; a part the journal recorded counts as held when the bytes at
    /// its range still have its CRC32C (a torn write fails that check and is sent again).
    async fn resume(
        &self,
        key: &str,
        upload_id: &str,
        _attrs: &PutAttrs,
        _size: u64,
        recorded: &[PartReceipt],
    ) -> Result<Option<(Box<dyn MultipartUpload>, Vec<PartReceipt>)>> {
        let target = self.path_of(key)?;
        let tmp = temp_path(&target, &sanitize_id(upload_id)?);
        let recorded = recorded.to_vec();
        let opened = {
            let tmp = tmp.clone();
            blocking(move || {
                let file = match File::options().read(true).write(true).open(&tmp) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(ProviderError::Io { path: tmp, source: e }),
                };
                let len = file.metadata().map_err(ProviderError::io(&tmp))?.len();
                let mut held = Vec::new();
                for part in recorded {
                    let offset: u64 = part.id.parse().unwrap_or(u64::MAX);
                    if offset.saturating_add(part.size) > len {
                        continue;
                    }
                    let mut buf = vec![0u8; part.size as usize];
                    file.read_exact_at(&mut buf, offset).map_err(ProviderError::io(&tmp))?;
                    if ferry_core::crc32c(&buf) == part.crc32c {
                        held.push(part);
                    }
                }
                Ok(Some((file, held)))
            })
            .await?
        };
        Ok(opened.map(|(file, held)| {
            let upload: Box<dyn MultipartUpload> = Box::new(LocalUpload { id: upload_id.to_string(), target, tmp, file: Arc::new(file) });
            (upload, held)
        }))
    }

    /// ferry's temp files under the root (interrupted multipart uploads and puts).
    async fn stale_uploads(&self, before: DateTime<Utc>) -> Result<Vec<crate::OpenUpload>> {
        let root = self.root.clone();
        blocking(move || {
            let mut out = Vec::new();
            for item in walkdir::WalkDir::new(&root).follow_links(false).sort_by_file_name().into_iter().filter_map(|i| i.ok()) {
                let name = item.file_name().to_string_lossy().into_owned();
                let Some((stem, id)) = name.split_once(TEMP_MARK) else { continue };
                let Some(target) = stem.strip_prefix('.') else { continue };
                let modified = item.metadata().ok().and_then(|m| m.modified().ok()).map(DateTime::<Utc>::from);
                if modified.is_some_and(|t| t >= before) {
                    continue;
                }
                let dir = item
                    .path()
                    .parent()
                    .and_then(|p| p.strip_prefix(&root).ok())
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let key = if dir.is_empty() { target.to_string() } else { format!("{dir}/{target}") };
                out.push(crate::OpenUpload { key, upload_id: id.to_string(), initiated: modified });
            }
            Ok(out)
        })
        .await
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        let tmp = temp_path(&self.path_of(key)?, &sanitize_id(upload_id)?);
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ProviderError::Io { path: tmp, source: e }),
            _ => Ok(()),
        }
    }
}

/// Upload ids name temp files: only ferry's own (hex) ids are accepted.
fn sanitize_id(upload_id: &str) -> Result<String> {
    if upload_id == "put" || (!upload_id.is_empty() && upload_id.chars().all(|c| c.is_ascii_hexdigit())) {
        Ok(upload_id.to_string())
    } else {
        Err(ProviderError::BadKey { provider: PROVIDER, key: upload_id.to_string(), reason: "not an upload id of ferry's".into() })
    }
}

struct LocalUpload {
    id: String,
    target: PathBuf,
    tmp: PathBuf,
    file: Arc<File>,
}

#[async_trait]
impl MultipartUpload for LocalUpload {
    fn upload_id(&self) -> Option<String> {
        Some(self.id.clone())
    }

    fn put_part(&mut self, index: u32, offset: u64, data: Bytes, crc32c: u32) -> BoxFuture<'static, Result<PartReceipt>> {
        let (file, tmp) = (self.file.clone(), self.tmp.clone());
        Box::pin(blocking(move || {
            file.write_all_at(&data, offset).map_err(ProviderError::io(&tmp))?;
            Ok(PartReceipt { index, id: format!("{offset}"), size: data.len() as u64, crc32c })
        }))
    }

    async fn complete(self: Box<Self>, parts: Vec<PartReceipt>) -> Result<PutReceipt> {
        let size: u64 = parts.iter().map(|p| p.size).sum();
        blocking(move || {
            let io = ProviderError::io(&self.tmp);
            let done = (|| {
                self.file.set_len(size)?;
                self.file.sync_all()?;
                std::fs::rename(&self.tmp, &self.target)?;
                sync_parent(&self.target)?;
                std::fs::metadata(&self.target)
            })();
            let meta = done.map_err(io)?;
            Ok(PutReceipt { etag: Some(etag_of(&meta)) })
        })
        .await
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        match std::fs::remove_file(&self.tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ProviderError::Io { path: self.tmp.clone(), source: e }),
            _ => Ok(()),
        }
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
        } else if crate::is_temp_name(&name) {
            SkipReason::FerryTempFile
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
    }
}
