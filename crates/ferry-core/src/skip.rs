//! Why a listed entry is not copied: every entry a listing meets is either an object to copy or
//! one of these, so nothing a source holds is left out without a name and a reason.

use serde::{Deserialize, Serialize};

/// Why a listing entry is recorded but not copied. Travels as this value from the provider's
/// listing through the manifest (column `skipped`) and the journal (state `skipped`) to the
/// plan's output, the copy's report, `verify` and `manifest export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SkipReason {
    /// A zero-byte object named like a folder (`photos/`): the destination's folders are implied
    /// by the keys under them. The only reason that is not a loss.
    DirectoryMarker,
    /// A symbolic link, not followed (`--follow-symlinks` follows those inside the source root).
    Symlink,
    /// A symbolic link that leads outside the source root, or nowhere: never followed.
    SymlinkOutsideRoot,
    /// A symbolic link that leads back to a folder it is under.
    SymlinkLoop,
    /// A named pipe: reading it would wait for a writer forever.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A block or character device.
    Device,
    /// A folder (or an entry) the listing could not read (permissions): whatever is under it is unknown.
    Unreadable,
    /// A name that is not valid UTF-8: no key can name it faithfully.
    InvalidName,
    /// One of ferry's own temporary files (an upload in progress, a device's reserve).
    FerryTempFile,
    /// `.ferry-meta` at a local source's root: the name ferry keeps local metadata sidecars
    /// under. With `--local-metadata sidecar` its folder is read as the files' metadata and not
    /// listed at all; anything else under that name (a file, or the folder in another mode) is
    /// named with this reason, never copied as objects. A loss: what it holds does not arrive.
    FerryMetadata,
    /// An S3 delete marker met by an `--all-versions` listing: a version without bytes that
    /// says the key was deleted then. Recorded in its place among the key's versions, never
    /// written (the destination keeps the versions before it, and shows the key).
    DeleteMarker,
}

impl SkipReason {
    pub const ALL: [SkipReason; 12] = [
        SkipReason::DirectoryMarker,
        SkipReason::Symlink,
        SkipReason::SymlinkOutsideRoot,
        SkipReason::SymlinkLoop,
        SkipReason::Fifo,
        SkipReason::Socket,
        SkipReason::Device,
        SkipReason::Unreadable,
        SkipReason::InvalidName,
        SkipReason::FerryTempFile,
        SkipReason::FerryMetadata,
        SkipReason::DeleteMarker,
    ];

    /// The stable name written to manifests, journals and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::DirectoryMarker => "directory-marker",
            SkipReason::Symlink => "symlink",
            SkipReason::SymlinkOutsideRoot => "symlink-outside-root",
            SkipReason::SymlinkLoop => "symlink-loop",
            SkipReason::Fifo => "fifo",
            SkipReason::Socket => "socket",
            SkipReason::Device => "device",
            SkipReason::Unreadable => "unreadable",
            SkipReason::InvalidName => "invalid-name",
            SkipReason::FerryTempFile => "ferry-temp-file",
            SkipReason::FerryMetadata => "ferry-metadata",
            SkipReason::DeleteMarker => "delete-marker",
        }
    }

    pub fn parse(text: &str) -> Option<SkipReason> {
        SkipReason::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// What the user can do about it, for the one-line explanation in outputs.
    pub fn advice(self) -> &'static str {
        match self {
            SkipReason::DirectoryMarker => "folder marker; folders are implied by the keys under them",
            SkipReason::Symlink => "symbolic link not followed; --follow-symlinks copies what links inside the source point to",
            SkipReason::SymlinkOutsideRoot => "symbolic link leading outside the source (or nowhere); never followed",
            SkipReason::SymlinkLoop => "symbolic link leading back to a folder above it",
            SkipReason::Fifo => "named pipe; not a file",
            SkipReason::Socket => "socket; not a file",
            SkipReason::Device => "device node; not a file",
            SkipReason::Unreadable => "folder or entry ferry may not read; fix its permissions and plan it in a new job",
            SkipReason::InvalidName => "name is not valid UTF-8; rename it and plan again",
            SkipReason::FerryTempFile => "ferry's own temporary file",
            SkipReason::FerryMetadata => {
                "the name ferry keeps local metadata sidecars under; --local-metadata sidecar reads that folder as the files' metadata"
            }
            SkipReason::DeleteMarker => "delete marker (a version without bytes); not written, so the destination still shows the key",
        }
    }

    /// Whether a source entry for this reason is data the destination will lack: such skips
    /// make `copy` and `verify` exit 1. A folder marker carries nothing, nor does a delete
    /// marker (it is counted and named, not a failure).
    pub fn is_loss(self) -> bool {
        !matches!(self, SkipReason::DirectoryMarker | SkipReason::FerryTempFile | SkipReason::DeleteMarker)
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name's bytes as a key when they are not UTF-8: valid runs kept, every invalid byte written
/// `\xNN`, so the entry can be named in outputs (it is never used as a path).
pub fn escape_invalid_name(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let names: std::collections::BTreeSet<_> = SkipReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), SkipReason::ALL.len());
        for r in SkipReason::ALL {
            assert_eq!(SkipReason::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{}\"", r.as_str()));
        }
        assert_eq!(SkipReason::parse("nonsense"), None);
        assert!(!SkipReason::DirectoryMarker.is_loss() && SkipReason::Fifo.is_loss());
    }

    #[test]
    fn invalid_bytes_are_escaped() {
        assert_eq!(escape_invalid_name(b"caf\xe9/x.txt"), "caf\\xe9/x.txt");
        assert_eq!(escape_invalid_name("ok ü".as_bytes()), "ok ü");
    }
}
