//! Local disk (or any mounted file system) as a provider.
//!
//! # Writes: never through a symlink, never half-done
//! A key's directories are opened one at a time beneath the root (`openat` with
//! `O_NOFOLLOW | O_DIRECTORY` from the root's descriptor) and created where missing (`mkdirat`;
//! each new directory is fsynced into its parent before anything is written in it). A
//! component that is a symlink or not a directory fails that object
//! ([`Refusal::DestinationComponent`](crate::Refusal::DestinationComponent)); nothing is written outside the root.
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
//! socket or device fails that object ([`Refusal::Source`](crate::Refusal::Source)). With
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
//! name of a temp file ([`is_temp_name`]).//!
//! # Layout
//! - `mod.rs`: [`LocalProvider`], its constructor and the [`Provider`] methods.
//! - `fs.rs`: the file system beneath the root: keys to segments, directories opened without
//!   following a symlink, temp files, durable placing, reads of regular files only.
//! - `list.rs`: the walk, every entry in file-name order, what is not a file as skipped.
//! - `multipart.rs`: [`Multipart`] as parts written at their offsets into one temp file.
//! - `attrs.rs`: headers, metadata and tags kept in an xattr or a sidecar ([`LocalMetadata`]).
//!
//! A local location has no server-side copy.

mod attrs;
mod fs;
mod list;
mod multipart;

pub use attrs::{LocalMetadata, SIDECAR_DIR};

use crate::{Fetched, Multipart, Provider, ProviderError, PutAttrs, PutReceipt, Result};
use async_trait::async_trait;
use bytes::Bytes;
use ferry_core::{Evidence, Limits, Location, ObjectEntry};
use fs::*;
use futures::stream::BoxStream;
use rustix::fs::AtFlags;
use rustix::io::Errno;
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

pub use fs::is_temp_name;

const PROVIDER: &str = "local";

/// Local disk: parts are written at their offsets into one temp file.
pub const LIMITS: Limits =
    Limits { min_part_size: 1, max_part_size: u64::MAX, max_parts: u64::MAX, max_object_size: u64::MAX, default_part_size: 8 << 20 };

/// The registry's opener (see [`crate::REGISTRY`]).
pub(crate) fn open(
    location: &Location,
    connect: &crate::Connect,
    run: &std::sync::Arc<crate::RunContext>,
) -> futures::future::BoxFuture<'static, Result<std::sync::Arc<dyn Provider>>> {
    let (location, connect, buffers) = (location.clone(), connect.clone(), run.buffers().clone());
    Box::pin(async move {
        let provider: std::sync::Arc<dyn Provider> = std::sync::Arc::new(
            LocalProvider::new(location).follow_symlinks(connect.follow_symlinks).metadata(connect.local_metadata).buffers(buffers),
        );
        Ok(provider)
    })
}

pub struct LocalProvider {
    location: Location,
    root: PathBuf,
    /// List (and read) what symbolic links inside the root point to, when that stays inside.
    follow_symlinks: bool,
    /// Where reads take their buffers: the run's pool (see [`LocalProvider::buffers`]).
    buffers: ferry_core::buffers::BufferPool,
    /// Where headers, metadata and tags are kept, if anywhere.
    metadata: LocalMetadata,
}

impl LocalProvider {
    /// An adapter with a pool of its own; [`crate::open`] hands it the run's instead.
    pub fn new(location: Location) -> LocalProvider {
        let root = PathBuf::from(&location.prefix);
        LocalProvider { location, root, follow_symlinks: false, buffers: Default::default(), metadata: LocalMetadata::None }
    }

    /// Reads into buffers of `pool` (a run's, so its memory budget bounds them).
    pub fn buffers(mut self, pool: ferry_core::buffers::BufferPool) -> LocalProvider {
        self.buffers = pool;
        self
    }

    /// Reads (`get`, `head`) a symlink whose resolved target stays inside the root instead of
    /// refusing it; one that leaves the root is refused either way. Writes never follow one.
    pub fn follow_symlinks(mut self, follow: bool) -> LocalProvider {
        self.follow_symlinks = follow;
        self
    }

    /// Keeps headers, metadata and tags as `metadata` says (`--local-metadata`).
    pub fn metadata(mut self, metadata: LocalMetadata) -> LocalProvider {
        self.metadata = metadata;
        self
    }

    /// A key that is ferry's at a local root (`.ferry-meta` or under it) is never an object's,
    /// whatever the mode: with sidecars it would break or fake the store, and without them a
    /// later sidecar run would take it for one.
    fn refuse_reserved(&self, key: &str) -> Result<()> {
        match attrs::is_reserved(key) {
            true => Err(ProviderError::Refused { path: self.root.join(key), refusal: crate::Refusal::Reserved }),
            false => Ok(()),
        }
    }

    /// The sidecar's kept document for `key`, if there is one: a regular file beneath the root
    /// reached without following a symlink (as any object's data), read up to its bound.
    fn read_sidecar(root: &std::path::Path, key: &str) -> Result<Option<Vec<u8>>> {
        let side = attrs::sidecar_key(key);
        let path = root.join(&side);
        let unreadable = |detail: String| ProviderError::Metadata { path: path.clone(), detail };
        match open_source(root, false, &side, true) {
            Ok((file, meta)) => {
                if meta.len() > attrs::MAX_DOC as u64 {
                    return Err(unreadable(format!("the sidecar is over {} KiB", attrs::MAX_DOC >> 10)));
                }
                let mut buf = vec![0u8; meta.len() as usize];
                file.read_exact_at(&mut buf, 0).map_err(|source| ProviderError::Io { path: path.clone(), source })?;
                Ok(Some(buf))
            }
            Err(ProviderError::NotFound { .. }) => Ok(None),
            // A symlink, FIFO or folder where the sidecar should be, or on the way to it.
            Err(ProviderError::Refused { refusal, .. }) => Err(unreadable(refusal.to_string())),
            Err(e) => Err(e),
        }
    }

    /// `entry` with what the file keeps beside it; a kept document that cannot be read fails the
    /// object ([`ProviderError::Metadata`]).
    fn with_kept(metadata: LocalMetadata, root: &std::path::Path, file: &std::fs::File, mut entry: ObjectEntry) -> Result<ObjectEntry> {
        // Known to have no tags either way: nobody asks for them (`Provider::tags`).
        entry.tags = Some(ferry_core::Tags::new());
        let (kept, path) = match metadata {
            LocalMetadata::None => return Ok(entry),
            LocalMetadata::Xattr => {
                let path = root.join(&entry.key);
                let kept = attrs::read_xattr(file).map_err(|e| match e {
                    attrs::XattrError::TooLarge => ProviderError::Metadata {
                        path: path.clone(),
                        detail: format!("xattr {} is over {} KiB", attrs::XATTR, attrs::MAX_DOC >> 10),
                    },
                    attrs::XattrError::Io(source) => ProviderError::Io { path: path.clone(), source },
                })?;
                (kept, path)
            }
            LocalMetadata::Sidecar => (Self::read_sidecar(root, &entry.key)?, root.join(attrs::sidecar_key(&entry.key))),
        };
        if let Some(json) = kept {
            let what = match metadata {
                LocalMetadata::Xattr => format!("xattr {}: ", attrs::XATTR),
                _ => String::new(),
            };
            attrs::Kept::apply(&json, &mut entry).map_err(|detail| ProviderError::Metadata { path, detail: format!("{what}{detail}") })?;
        }
        Ok(entry)
    }

    /// Writes (or, with nothing to keep, removes) `key`'s sidecar.
    async fn write_sidecar(&self, key: &str, attrs: &PutAttrs) -> Result<()> {
        let side = attrs::sidecar_key(key);
        match attrs::Kept::of(attrs, Some(key)) {
            Some(json) => self.put_file(&side, Bytes::from(json), &PutAttrs::default()).await.map(|_| ()),
            None => self.delete_file(&side).await,
        }
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

pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
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
        LIMITS
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
        self.listing()
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectEntry>> {
        self.refuse_reserved(key)?;
        let (root, follow, key, kept) = (self.root.clone(), self.follow_symlinks, key.to_string(), self.metadata);
        // An xattr is read through a descriptor opened for reading (not a path-only one).
        blocking(move || match open_source(&root, follow, &key, kept == LocalMetadata::Xattr) {
            Ok((file, meta)) => Ok(Some(Self::with_kept(kept, &root, &file, read_entry(&key, &meta))?)),
            Err(ProviderError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<Fetched> {
        self.refuse_reserved(key)?;
        let (root, follow, key, pool, kept) =
            (self.root.clone(), self.follow_symlinks, key.to_string(), self.buffers.clone(), self.metadata);
        blocking(move || {
            let (file, meta) = open_source(&root, follow, &key, true)?;
            let range = range.unwrap_or(0..meta.len());
            let mut buf = pool.take_filled((range.end - range.start) as usize);
            file.read_exact_at(&mut buf, range.start).map_err(|source| ProviderError::Io { path: root.join(&key), source })?;
            let object = Self::with_kept(kept, &root, &file, read_entry(&key, &meta))?;
            Ok(Fetched { data: pool.freeze(buf), object, checked: Some(Evidence::LocalFile) })
        })
        .await
    }

    async fn put(&self, key: &str, data: Bytes, _crc32c: u32, attrs: &PutAttrs) -> Result<PutReceipt> {
        self.refuse_reserved(key)?;
        let receipt = self.put_file(key, data, attrs).await?;
        if self.metadata == LocalMetadata::Sidecar {
            self.write_sidecar(key, attrs).await?;
        }
        Ok(receipt)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        // The store's files are removed only with their objects (`delete_file` below).
        self.refuse_reserved(key)?;
        self.delete_file(key).await?;
        if self.metadata == LocalMetadata::Sidecar {
            self.delete_file(&attrs::sidecar_key(key)).await?;
        }
        Ok(())
    }

    async fn prune_folders(&self, key: &str) -> Result<()> {
        self.refuse_reserved(key)?;
        let (root, key) = (self.root.clone(), key.to_string());
        blocking(move || fs::prune_empty_parents(&root, &key)).await
    }

    fn etag_names_content(&self) -> bool {
        false
    }

    fn carries(&self) -> ferry_core::Carries {
        match self.metadata {
            LocalMetadata::None => ferry_core::Carries::NOTHING,
            LocalMetadata::Xattr | LocalMetadata::Sidecar => ferry_core::Carries::ALL,
        }
    }

    fn multipart(&self) -> Option<&dyn Multipart> {
        Some(self)
    }
}

impl LocalProvider {
    /// Writes one file durably (see the module docs), with its xattr when kept there.
    async fn put_file(&self, key: &str, data: Bytes, attrs: &PutAttrs) -> Result<PutReceipt> {
        let xattr = (self.metadata == LocalMetadata::Xattr).then(|| attrs::Kept::of(attrs, None)).flatten();
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
                if let Some(json) = &xattr {
                    rustix::fs::fsetxattr(&file, attrs::XATTR, json, rustix::fs::XattrFlags::empty())?;
                }
                seal(&file, mode)?;
                let name = match &tmp {
                    Some(name) => name.clone(),
                    None => tmp.insert(link_unnamed(&file, &parent.dir)?).clone(),
                };
                place(&parent, &name)?;
                file.metadata()
            };
            match written() {
                Ok(meta) => Ok(PutReceipt { etag: Some(etag_of(&meta)), version: Some(version_of(&meta)) }),
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

    async fn delete_file(&self, key: &str) -> Result<()> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{FileKind, Refusal};
    use chrono::Utc;
    use rustix::fs::{FileType, Mode};
    use std::path::Path;

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

    // Issue 15 hostile pass: a rollback of a local copy deleted the files the run made and left
    // their folders behind, empty. Pruning takes the emptied folders only: never one that holds
    // anything, never the root, never through or at a link.
    #[tokio::test]
    async fn pruning_removes_emptied_folders_up_to_the_root_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("dst");
        let p = provider(&root, false);
        for key in ["a/b/c/one.txt", "a/keep.txt", "solo/x/y.txt", "top.txt"] {
            p.put(key, Bytes::from_static(b"data"), 0, &PutAttrs::default()).await.unwrap();
        }
        p.delete("a/b/c/one.txt").await.unwrap();
        p.prune_folders("a/b/c/one.txt").await.unwrap();
        assert!(!root.join("a/b").exists() && root.join("a/keep.txt").exists(), "a/b/c and a/b went, a stays");
        p.delete("solo/x/y.txt").await.unwrap();
        p.prune_folders("solo/x/y.txt").await.unwrap();
        assert!(!root.join("solo").exists() && root.is_dir(), "every emptied folder went, the root stays");
        p.delete("top.txt").await.unwrap();
        p.prune_folders("top.txt").await.unwrap();
        assert!(root.is_dir());
        // A link planted in place of a folder is neither followed nor removed.
        let outside = dir.path().join("outside/empty");
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), root.join("link")).unwrap();
        p.prune_folders("link/empty/k").await.unwrap();
        assert!(outside.is_dir() && root.join("link").is_symlink());
        // A key that is gone already, or whose folder never was: nothing to do.
        p.prune_folders("never/was/here").await.unwrap();
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
    async fn the_store_name_is_reserved_in_every_mode() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [LocalMetadata::None, LocalMetadata::Xattr, LocalMetadata::Sidecar] {
            let p = provider(dir.path(), false).metadata(mode);
            for key in [".ferry-meta", ".ferry-meta/x", ".ferry-meta/ab/cd.json"] {
                let put = p.put(key, Bytes::from_static(b"x"), 0, &PutAttrs::default()).await.unwrap_err();
                assert_eq!((refusal(put), mode), (Refusal::Reserved, mode), "{key}");
                assert_eq!(refusal(p.delete(key).await.unwrap_err()), Refusal::Reserved, "{key}");
                assert_eq!(refusal(p.head(key).await.unwrap_err()), Refusal::Reserved, "{key}");
            }
            // Only at the root, and only that name.
            for key in ["a/.ferry-meta", ".ferry-meta.txt", "b/.ferry-meta/x"] {
                p.put(key, Bytes::from_static(b"x"), 0, &PutAttrs::default()).await.unwrap();
            }
        }
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
