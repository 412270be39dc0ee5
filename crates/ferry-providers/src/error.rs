//! Provider errors: structured, classified, and free of credentials.

use ferry_core::{ErrorClass, FailureKind};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    #[error("{provider}: bucket or container {bucket:?} does not exist")]
    NoSuchBucket { provider: &'static str, bucket: String },
    #[error("{provider}: access to {bucket:?} denied (check the credentials in the standard environment): {detail}")]
    Denied { provider: &'static str, bucket: String, detail: String },
    #[error("{provider}: cannot reach {endpoint}: {detail}")]
    Unreachable { provider: &'static str, endpoint: String, detail: String },
    #[error("{provider}: {key:?} not found")]
    NotFound { provider: &'static str, key: String },
    #[error("{provider}: invalid key {key:?}: {reason}")]
    BadKey { provider: &'static str, key: String, reason: String },
    /// A request failed: `kind` says how (a status, a timeout, a dropped connection…), set
    /// where the failure was seen; `class` what to do about it.
    #[error("{provider}: {op} {key:?} failed: {detail}")]
    Request { provider: &'static str, op: &'static str, key: String, detail: String, class: ErrorClass, kind: FailureKind },
    /// Bytes corrupted on the way: a checksum the service or ferry computed does not match
    /// the bytes. Reading or sending them again is the repair ([`ErrorClass::Restart`]).
    #[error("{provider}: {op} {key:?} failed: checksum mismatch: {detail}")]
    Corrupted { provider: &'static str, op: &'static str, key: String, detail: String },
    /// A condition ferry sent with a read of the source (`If-Match` an entity tag, a generation
    /// match) failed: the object changed since its first bytes were read. The caller starts the
    /// object over from its current version, never joining bytes of two versions.
    #[error("{provider}: {key:?} changed while it was being read: {detail}")]
    Changed { provider: &'static str, key: String, detail: String },
    #[error("{provider}: configuration: {detail}")]
    Config { provider: &'static str, detail: String },
    #[error(
        "{provider}: an upload of {key:?} was cut off while being created and the service cannot list uploads to find it; \
         a lifecycle rule (abort incomplete multipart uploads) removes it"
    )]
    UnlistedUpload { provider: &'static str, key: String },
    /// A local file could not be read or written. Classified by what happened: a file this user
    /// may not read or write, or a full file system, fails that object alone.
    #[error("local disk {path}: {}", describe(source))]
    Io { path: PathBuf, source: std::io::Error },
    /// The local destination's root directory itself cannot be created or written: no object
    /// can be, so the run stops.
    #[error("local disk {path}: cannot write the destination directory: {}", describe(source))]
    RootUnwritable { path: PathBuf, source: std::io::Error },
    /// ferry will not read or write `path` (the key's file) as it is: see [`Refusal`].
    #[error("local disk {path}: {refusal}")]
    Refused { path: PathBuf, refusal: Refusal },
    /// The headers, metadata and tags a local file keeps beside it (`--local-metadata`: its
    /// sidecar or xattr, at `path`) cannot be read; that object fails, never copied without them.
    #[error("local disk {path}: the object's metadata (--local-metadata) cannot be read: {detail}")]
    Metadata { path: PathBuf, detail: String },
}

/// What a local path is, when it is not what ferry reads or writes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Unknown,
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileKind::Regular => "a regular file",
            FileKind::Directory => "a directory",
            FileKind::Symlink => "a symlink",
            FileKind::Fifo => "a FIFO",
            FileKind::Socket => "a socket",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Unknown => "not a regular file",
        })
    }
}

/// Why ferry refuses a local path: it never reads or writes through a symlink it was not asked
/// to follow, and reads only regular files (a FIFO would block, a device has no end).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The source object is not a regular file.
    Source(FileKind),
    /// A followed source symlink resolves to `target`, outside the source root.
    LeavesRoot { target: PathBuf },
    /// A directory on the way to a source object is not a directory.
    SourceComponent { component: String, kind: FileKind },
    /// A directory on the way to a destination object is not a directory.
    DestinationComponent { component: String, kind: FileKind },
    /// The key is ferry's at a local root (`.ferry-meta`, where sidecars are kept, or under it):
    /// never an object's, whatever `--local-metadata` says.
    Reserved,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Source(FileKind::Symlink) => {
                write!(f, "is a symlink; ferry does not follow symlinks (--follow-symlinks follows those inside the source)")
            }
            Refusal::Source(kind) => write!(f, "is {kind}; ferry copies only regular files"),
            Refusal::LeavesRoot { target } => {
                write!(f, "is a symlink to {}, outside the source; ferry does not read outside it", target.display())
            }
            Refusal::SourceComponent { component, kind: FileKind::Symlink } => {
                write!(f, "source path component {component} is a symlink; ferry does not follow symlinks")
            }
            Refusal::SourceComponent { component, kind } => write!(f, "source path component {component} is {kind}, not a directory"),
            Refusal::DestinationComponent { component, kind: FileKind::Symlink } => {
                write!(f, "destination path component {component} is a symlink; ferry does not write through symlinks")
            }
            Refusal::DestinationComponent { component, kind } => {
                write!(f, "destination path component {component} is {kind}, not a directory")
            }
            Refusal::Reserved => write!(
                f,
                "{} at a local root is reserved for ferry's metadata sidecars (--local-metadata); no object is written there",
                crate::local::SIDECAR_DIR
            ),
        }
    }
}

/// The kind of a local I/O error; `otherwise` for one its kind does not name.
fn kind_of_io(e: &std::io::Error, otherwise: FailureKind) -> FailureKind {
    match e.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => FailureKind::DeviceFull,
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => FailureKind::Denied,
        std::io::ErrorKind::TimedOut => FailureKind::Timeout,
        std::io::ErrorKind::NotFound => FailureKind::NotFound,
        _ => otherwise,
    }
}

/// An I/O error in a few plain words where its kind says enough.
fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::StorageFull => "no space left on device".into(),
        std::io::ErrorKind::QuotaExceeded => "disk quota exceeded".into(),
        std::io::ErrorKind::ReadOnlyFilesystem => "read-only file system".into(),
        _ => e.to_string(),
    }
}

impl ProviderError {
    pub fn class(&self) -> ErrorClass {
        match self {
            ProviderError::NoSuchBucket { .. } | ProviderError::Denied { .. } | ProviderError::Config { .. } => ErrorClass::Fatal,
            ProviderError::Unreachable { .. } => ErrorClass::Retryable,
            ProviderError::NotFound { .. }
            | ProviderError::BadKey { .. }
            | ProviderError::UnlistedUpload { .. }
            | ProviderError::Refused { .. }
            | ProviderError::Metadata { .. }
            | ProviderError::Changed { .. } => ErrorClass::PerObject,
            ProviderError::Request { class, .. } => *class,
            // Sending the same request again repairs it (the retry layer does, within the
            // request); once that is used up, or for bytes received, the object starts over.
            ProviderError::Corrupted { .. } => ErrorClass::Restart,
            ProviderError::RootUnwritable { .. } => ErrorClass::Fatal,
            // A file this user may not read (or a directory it may not write) is that object's
            // problem; so is a full file system: a smaller object may still fit, and a disk
            // export moves the object to another device (see `is_full`). A read-only file system
            // takes every write with it.
            ProviderError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::ReadOnlyFilesystem => ErrorClass::Fatal,
                // No request layer sits under a local file: the object starts over.
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut => ErrorClass::Restart,
                _ => ErrorClass::PerObject,
            },
        }
    }

    /// The local file system written to is full (or the user's quota on it is used up).
    pub fn is_full(&self) -> bool {
        matches!(self, ProviderError::Io { source, .. }
            if matches!(source.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded))
    }

    /// What kind of failure this is, carried as a value to the run's report and retry counts.
    pub fn kind(&self) -> FailureKind {
        match self {
            ProviderError::NoSuchBucket { .. } | ProviderError::NotFound { .. } => FailureKind::NotFound,
            ProviderError::Denied { .. } => FailureKind::Denied,
            ProviderError::Unreachable { .. } => FailureKind::Connection,
            ProviderError::BadKey { .. } => FailureKind::Rejected,
            ProviderError::Request { kind, .. } => *kind,
            ProviderError::Corrupted { .. } => FailureKind::CorruptedInTransit,
            ProviderError::Changed { .. } => FailureKind::SourceChanged,
            ProviderError::Config { .. } => FailureKind::Config,
            ProviderError::UnlistedUpload { .. } => FailureKind::Other,
            ProviderError::Io { source, .. } => kind_of_io(source, FailureKind::Other),
            ProviderError::RootUnwritable { source, .. } => kind_of_io(source, FailureKind::DestinationRefused),
            ProviderError::Refused { refusal: Refusal::DestinationComponent { .. } | Refusal::Reserved, .. } => {
                FailureKind::DestinationRefused
            }
            ProviderError::Metadata { .. } => FailureKind::MetadataUnreadable,
            ProviderError::Refused { .. } => FailureKind::SourceRefused,
        }
    }

    /// Bytes corrupted on the way (a checksum the other side or ferry computed does not match):
    /// sent or read again, and counted under the `checksum mismatch` retry cause.
    pub fn corrupted(provider: &'static str, op: &'static str, key: impl Into<String>, detail: impl std::fmt::Display) -> ProviderError {
        ProviderError::Corrupted { provider, op, key: key.into(), detail: detail.to_string() }
    }

    /// Whether this is a [`ProviderError::Corrupted`] error.
    pub fn is_corrupted(&self) -> bool {
        matches!(self, ProviderError::Corrupted { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ProviderError {
        let path = path.into();
        move |source| ProviderError::Io { path, source }
    }
}

/// An error and its sources, joined with `: `, for one-line messages, with the query of any URL
/// in them cut off (a SAS token or a signed URL's signature travels there).
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(": ");
        text.push_str(&s.to_string());
        cur = s.source();
    }
    without_queries(&text)
}

/// `text` with every `http://` or `https://` URL's query (from `?` to the URL's end) replaced
/// by `?…`.
pub(crate) fn without_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["http://", "https://"].iter().filter_map(|scheme| rest.find(scheme)).min() {
        let (before, url) = rest.split_at(at);
        out.push_str(before);
        let end = url.find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>' | '<' | ',')).unwrap_or(url.len());
        let (url, after) = url.split_at(end);
        match url.split_once('?') {
            Some((base, _)) => {
                out.push_str(base);
                out.push_str("?…");
            }
            None => out.push_str(url),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retries::Cause;

    #[test]
    fn corruption_is_a_kind_not_a_message() {
        let corrupted = ProviderError::corrupted("s3", "get", "a/b", "stored crc32c 1, sent 2");
        assert_eq!(corrupted.to_string(), "s3: get \"a/b\" failed: checksum mismatch: stored crc32c 1, sent 2", "the message users see");
        assert!(corrupted.is_corrupted());
        assert_eq!((corrupted.kind(), corrupted.class()), (FailureKind::CorruptedInTransit, ErrorClass::Restart));
        assert_eq!(Cause::of(corrupted.kind()).as_str(), "checksum mismatch");
        // Words in a message decide nothing: the kind set where the failure was seen does.
        let detail = "checksum mismatch: HTTP 429 timed out".to_string();
        let kind = FailureKind::Connection;
        let worded = ProviderError::Request { provider: "s3", op: "get", key: "k".into(), detail, class: ErrorClass::Retryable, kind };
        assert!(!worded.is_corrupted());
        assert_eq!(Cause::of(worded.kind()), Cause::Connection);
    }

    #[test]
    fn local_failures_have_kinds() {
        let full = ProviderError::Io { path: "/d/k".into(), source: std::io::ErrorKind::StorageFull.into() };
        assert_eq!(full.kind(), FailureKind::DeviceFull);
        assert!(full.is_full());
        let refusal = Refusal::DestinationComponent { component: "a".into(), kind: FileKind::Regular };
        assert_eq!(ProviderError::Refused { path: "/d/a/k".into(), refusal }.kind(), FailureKind::DestinationRefused);
        let refusal = Refusal::Source(FileKind::Fifo);
        assert_eq!(ProviderError::Refused { path: "/s/k".into(), refusal }.kind(), FailureKind::SourceRefused);
    }

    #[test]
    fn urls_lose_their_queries_and_nothing_else() {
        let text = "error sending request for url (http://127.0.0.1:1/c/k?sv=1&sig=SECRET): refused; see https://x.y/z, ok?";
        assert_eq!(without_queries(text), "error sending request for url (http://127.0.0.1:1/c/k?…): refused; see https://x.y/z, ok?");
        assert_eq!(without_queries("no url? none"), "no url? none");
        assert_eq!(without_queries("https://a/b?sig=1"), "https://a/b?…");
    }
}
