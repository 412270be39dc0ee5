//! The walk under the root, a page of entries at a time.

use super::fs::*;
use super::*;
use crate::{ProviderError, Result};
use ferry_core::ObjectEntry;
use futures::StreamExt;
use futures::stream::BoxStream;
use std::path::Path;

const PAGE: usize = 1000;

impl LocalProvider {
    /// Every entry under the root, in file-name order per folder: regular files as objects,
    /// anything else the listing meets as a skipped entry with its reason (symlinks, FIFOs,
    /// sockets, devices, unreadable folders, names that are not UTF-8, ferry's temp files), so
    /// nothing is left out unnamed. With `follow_symlinks`, links whose target stays inside the
    /// root are followed (folders walked, loops refused); others are skipped.
    ///
    /// `.ferry-meta` at the root is never listed as objects: with sidecars, its folder is the
    /// files' metadata (not walked); anything else of that name is one skipped entry
    /// ([`SkipReason::FerryMetadata`](ferry_core::SkipReason::FerryMetadata)).
    pub(super) fn listing(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        let (root, follow) = (self.root.clone(), self.follow_symlinks);
        let sidecars = self.metadata == super::LocalMetadata::Sidecar;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<ObjectEntry>>>(4);
        tokio::task::spawn_blocking(move || {
            let mut page = Vec::with_capacity(PAGE);
            let mut emit = |entry: ObjectEntry| -> bool {
                page.push(entry);
                page.len() < PAGE || tx.blocking_send(Ok(std::mem::replace(&mut page, Vec::with_capacity(PAGE)))).is_ok()
            };
            let walked = walk(&root, follow, sidecars, &mut emit);
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
}

/// Walks `root` for [`LocalProvider::list`], handing each entry to `emit` (which answers
/// whether to go on). `sidecars`: the root's `.ferry-meta` folder is the sidecar store. Fails
/// only when the root itself cannot be read.
fn walk(root: &Path, follow: bool, sidecars: bool, emit: &mut dyn FnMut(ObjectEntry) -> bool) -> Result<()> {
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
        if item.depth() == 1 && item.file_name() == super::SIDECAR_DIR {
            // Ferry's name at the root: the store's folder is metadata, read with each file; a
            // file (or a link, or the folder without sidecars) is named, never copied.
            let is_dir = item.file_type().is_dir();
            if is_dir {
                items.skip_current_dir();
            }
            if sidecars && is_dir && !item.path_is_symlink() {
                continue;
            }
            let key = if is_dir { format!("{}/", super::SIDECAR_DIR) } else { super::SIDECAR_DIR.to_string() };
            if !emit(ObjectEntry::skipped(key, SkipReason::FerryMetadata)) {
                return Ok(());
            }
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
