//! Multipart uploads: parts written at their offsets, in any order, into one temp file.

use super::fs::*;
use super::*;
use crate::TEMP_MARK;
use crate::{Multipart, MultipartUpload, PartReceipt, ProviderError, PutAttrs, PutReceipt, Result};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;

#[async_trait]
impl Multipart for LocalProvider {
    async fn start(&self, key: &str, attrs: &PutAttrs, _size: u64, id: &str) -> Result<Box<dyn MultipartUpload>> {
        self.refuse_reserved(key)?;
        // The attributes are kept as the upload starts: a sidecar ahead of its file (a crash
        // leaves one for a file the retry then writes), an xattr on the temp file itself.
        if self.metadata == LocalMetadata::Sidecar {
            self.write_sidecar(key, attrs).await?;
        }
        let xattr = (self.metadata == LocalMetadata::Xattr).then(|| super::attrs::Kept::of(attrs, None)).flatten();
        let (root, key, mode, id) = (self.root.clone(), key.to_string(), file_mode(attrs), checked_id(id)?);
        blocking(move || {
            let parent = parent_for_write(&root, &key, true)?.expect("created");
            let tmp = temp_name(&id);
            let file = create_temp(&parent.dir, &tmp).map_err(|e| parent.error(e))?;
            if let Some(json) = &xattr {
                rustix::fs::fsetxattr(&file, super::attrs::XATTR, json, rustix::fs::XattrFlags::empty())
                    .map_err(|e| parent.error(e.into()))?;
            }
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
            Ok(PutReceipt { etag: Some(etag_of(&meta)), version: Some(version_of(&meta)) })
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
