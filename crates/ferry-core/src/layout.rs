//! Where an object goes on an appliance disk, and the names an appliance would reject.
//!
//! A disk export writes each object at a path under the device root. Each [`Layout`] follows
//! the rules of the service that later loads the disk: Azure Data Box and Data Box Disk (one
//! folder per storage type, then one per container; NTFS/SMB naming), AWS Snowball Edge (S3
//! keys), Google Transfer Appliance (GCS object names), or `plain` (the key as a path). Every
//! layout refuses keys that could leave the device root (`..`, `.`, absolute, empty segments,
//! NUL, backslashes) and names the device file system cannot hold.
//!
//! [`Layout::place`] maps one key: the path to write, a rename with its reason (an Azure
//! container name made valid), or a refusal with its reason. Checks that need every key (a key
//! that is both a file and a folder, names equal but for case) are the engine's.

use std::fmt;

/// Files at a device root that belong to the shipment manifest; no object may take their names.
pub const SHIPMENT_FILES: [&str; 3] = ["SHA256SUMS", "ferry-shipment.jsonl", "ferry-bom.txt"];

/// The folder at a device root that holds the exported manifest generation (the source's
/// identity of every object, for the delta after the ingest); no object may be under it.
pub const SHIPPED_MANIFEST_DIR: &str = "ferry-manifest";

/// Whether `path` (at a device root) is a shipment file or under the shipped manifest's folder.
/// The folder's name is compared without case: a device may not tell `Ferry-Manifest` apart.
pub fn reserved_on_device(path: &str) -> bool {
    let first = path.split('/').next().unwrap_or(path);
    SHIPMENT_FILES.contains(&path) || first.eq_ignore_ascii_case(SHIPPED_MANIFEST_DIR)
}

const RESERVED: &str = "name is reserved for the shipment manifest at the device root";

/// The appliance a disk export is laid out for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayoutKind {
    /// The key as a path under the root; only the file system's own rules apply.
    Plain,
    /// Azure Data Box: `<account>_BlockBlob/<container>/<blob>` (the shares as mounted side by side).
    Databox,
    /// Azure Data Box Disk: `BlockBlob/<container>/<blob>` at the disk root (NTFS).
    DataboxDisk,
    /// AWS Snowball Edge (NFS mount of one bucket): the S3 key as a path.
    Snowball,
    /// Google Transfer Appliance: the GCS object name as a path.
    TransferAppliance,
}

impl LayoutKind {
    pub const ALL: [LayoutKind; 5] =
        [LayoutKind::Plain, LayoutKind::Databox, LayoutKind::DataboxDisk, LayoutKind::Snowball, LayoutKind::TransferAppliance];

    pub fn name(self) -> &'static str {
        match self {
            LayoutKind::Plain => "plain",
            LayoutKind::Databox => "databox",
            LayoutKind::DataboxDisk => "databox-disk",
            LayoutKind::Snowball => "snowball",
            LayoutKind::TransferAppliance => "transfer-appliance",
        }
    }

    fn is_azure(self) -> bool {
        matches!(self, LayoutKind::Databox | LayoutKind::DataboxDisk)
    }
}

impl fmt::Display for LayoutKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The Azure storage type a Data Box folder loads into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AzureType {
    #[default]
    BlockBlob,
    PageBlob,
    AzureFile,
}

impl AzureType {
    pub fn folder(self) -> &'static str {
        match self {
            AzureType::BlockBlob => "BlockBlob",
            AzureType::PageBlob => "PageBlob",
            AzureType::AzureFile => "AzureFile",
        }
    }

    /// The largest object the appliance loads as this type (Data Box limits).
    fn max_size(self) -> u64 {
        match self {
            // 4.75 TiB for block blobs, 8 TiB for page blobs, 1 TiB per Azure file.
            AzureType::BlockBlob => 4_750 * (1 << 30),
            AzureType::PageBlob => 8 << 40,
            AzureType::AzureFile => 1 << 40,
        }
    }
}

/// A layout with the options that shape its paths.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layout {
    pub kind: LayoutKind,
    /// Data Box layouts: every object goes into this container (share, for Azure Files);
    /// without it the key's first folder is the container.
    pub container: Option<String>,
    pub azure_type: AzureType,
    /// Data Box: the storage account the device's shares are named after (`<account>_BlockBlob`).
    pub account: Option<String>,
    /// Transfer Appliance and Snowball: the prefix the objects are loaded under, counted in the
    /// name length limit.
    pub prefix: Option<String>,
}

/// What a layout does with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Written at this path (relative to the device root, `/`-separated).
    Path(String),
    /// Written at this path, under a name the rules made valid; says what changed and why.
    Renamed { path: String, reason: String },
    /// Not written: the appliance or the device could not hold it, or it could leave the root.
    Refused(String),
}

impl Placement {
    pub fn path(&self) -> Option<&str> {
        match self {
            Placement::Path(p) | Placement::Renamed { path: p, .. } => Some(p),
            Placement::Refused(_) => None,
        }
    }
}

/// Longest file or folder name most file systems hold (ext4, XFS, NTFS), in bytes.
const NAME_MAX: usize = 255;
/// S3 keys and GCS object names: at most 1024 bytes of UTF-8.
const KEY_MAX: usize = 1024;
const S3_MAX_OBJECT: u64 = 5 << 40;
/// Names Windows (NTFS, SMB shares, Azure Files) reserves, with or without an extension.
const WINDOWS_RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9", "LPT1", "LPT2", "LPT3", "LPT4",
    "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

impl Layout {
    pub fn new(kind: LayoutKind) -> Layout {
        Layout { kind, container: None, azure_type: AzureType::default(), account: None, prefix: None }
    }

    /// Whether two paths that differ only in case are the same file on the device (NTFS and
    /// SMB shares are case-insensitive).
    pub fn case_insensitive(&self) -> bool {
        self.kind.is_azure()
    }

    /// Where `key` (of an object of `size` bytes) goes on a device, or why it cannot.
    pub fn place(&self, key: &str, size: u64) -> Placement {
        if let Err(reason) = escape_check(key) {
            return Placement::Refused(reason);
        }
        if let Some(reason) = file_system_check(key) {
            return Placement::Refused(reason);
        }
        match self.kind {
            LayoutKind::Plain => match reserved_on_device(key) {
                true => Placement::Refused(RESERVED.into()),
                false => Placement::Path(key.to_string()),
            },
            LayoutKind::Snowball => self.s3_key(key, size),
            LayoutKind::TransferAppliance => self.gcs_name(key),
            LayoutKind::Databox | LayoutKind::DataboxDisk => self.azure(key, size),
        }
    }

    fn full_name_len(&self, key: &str) -> usize {
        self.prefix.as_deref().map(|p| p.trim_end_matches('/').len() + 1).unwrap_or(0) + key.len()
    }

    fn s3_key(&self, key: &str, size: u64) -> Placement {
        if reserved_on_device(key) {
            return Placement::Refused(RESERVED.into());
        }
        if self.full_name_len(key) > KEY_MAX {
            return Placement::Refused(format!("S3 keys are at most {KEY_MAX} bytes; this one is {}", self.full_name_len(key)));
        }
        if size > S3_MAX_OBJECT {
            return Placement::Refused(format!("S3 objects are at most 5 TiB; this one is {size} bytes"));
        }
        Placement::Path(key.to_string())
    }

    fn gcs_name(&self, key: &str) -> Placement {
        if reserved_on_device(key) {
            return Placement::Refused(RESERVED.into());
        }
        let len = self.full_name_len(key);
        if len > KEY_MAX {
            return Placement::Refused(format!("GCS object names are at most {KEY_MAX} bytes including the prefix; this one is {len}"));
        }
        if key.contains(['\r', '\n']) {
            return Placement::Refused("GCS object names cannot contain carriage returns or line feeds".into());
        }
        if key.starts_with(".well-known/acme-challenge/") {
            return Placement::Refused("GCS refuses object names starting with .well-known/acme-challenge/".into());
        }
        Placement::Path(key.to_string())
    }

    fn azure(&self, key: &str, size: u64) -> Placement {
        let kind = self.azure_type;
        let (container, blob) = match &self.container {
            Some(c) => (c.as_str(), key),
            None => match key.split_once('/') {
                Some((c, rest)) => (c, rest),
                None => {
                    return Placement::Refused(
                        "a file at the top level has no container (the first folder is the container); give --container NAME".into(),
                    );
                }
            },
        };
        let Some(valid) = container_name(container) else {
            return Placement::Refused(format!(
                "{container:?} cannot be made a valid container name (3-63 lowercase letters, digits and hyphens)"
            ));
        };
        if let Some(reason) = windows_check(blob) {
            return Placement::Refused(reason);
        }
        match kind {
            AzureType::BlockBlob | AzureType::PageBlob => {
                if blob.chars().count() > KEY_MAX {
                    return Placement::Refused(format!(
                        "blob names are at most {KEY_MAX} characters; this one has {}",
                        blob.chars().count()
                    ));
                }
                let segments = blob.split('/').count();
                if segments > 254 {
                    return Placement::Refused(format!("blob names have at most 254 path segments; this one has {segments}"));
                }
            }
            AzureType::AzureFile => {
                if blob.len() > 2048 {
                    return Placement::Refused(format!("Azure Files paths are at most 2048 characters; this one has {}", blob.len()));
                }
            }
        }
        if kind == AzureType::PageBlob && !size.is_multiple_of(512) {
            return Placement::Refused(format!("page blobs are a multiple of 512 bytes; this object is {size}"));
        }
        if size > kind.max_size() {
            return Placement::Refused(format!(
                "{} objects are at most {} bytes on Data Box; this one is {size}",
                kind.folder(),
                kind.max_size()
            ));
        }
        let share = match (self.kind, &self.account) {
            (LayoutKind::Databox, Some(account)) => format!("{account}_{}", kind.folder()),
            _ => kind.folder().to_string(),
        };
        let path = format!("{share}/{valid}/{blob}");
        if valid != container {
            let what = if self.container.is_some() { "--container" } else { "first folder" };
            return Placement::Renamed {
                path,
                reason: format!(
                    "container ({what}) {container:?} becomes {valid:?}: Azure container names are 3-63 lowercase letters, digits and hyphens"
                ),
            };
        }
        Placement::Path(path)
    }
}

/// Keys that could leave the root or are not a path at all.
fn escape_check(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("empty key".into());
    }
    if key.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    if key.starts_with('/') {
        return Err("absolute path: would leave the export root".into());
    }
    if key.contains('\r') {
        return Err("contains a carriage return, which SHA256SUMS lines cannot carry".into());
    }
    if key.contains('\\') {
        return Err("contains a backslash, a path separator on Windows and SMB: could map outside its folder".into());
    }
    for seg in key.split('/') {
        match seg {
            "" => return Err("empty path segment (doubled or trailing '/')".into()),
            "." | ".." => return Err(format!("'{seg}' segment: would leave the export root")),
            _ => {}
        }
    }
    Ok(())
}

/// Names the device's file system cannot hold, whatever the appliance.
fn file_system_check(key: &str) -> Option<String> {
    if let Some(seg) = key.split('/').find(|s| s.len() > NAME_MAX) {
        return Some(format!("a name is {} bytes; file systems hold at most {NAME_MAX} ({}…)", seg.len(), truncate(seg, 40)));
    }
    if key.split('/').any(|s| s.contains(".ferry-tmp-")) {
        return Some("name is reserved for ferry's temp files".into());
    }
    None
}

/// NTFS / SMB / Azure Files naming: what Data Box and Data Box Disk reject or rename.
fn windows_check(path: &str) -> Option<String> {
    for seg in path.split('/') {
        if let Some(c) = seg.chars().find(|c| matches!(c, '"' | '*' | ':' | '<' | '>' | '?' | '|') || (*c as u32) < 0x20) {
            return Some(format!("{c:?} in {seg:?} is not allowed in Windows/SMB file names"));
        }
        if seg.ends_with('.') || seg.ends_with(' ') {
            return Some(format!("{seg:?} ends in a dot or space, which Windows/SMB drops (and blob names must not end in '.')"));
        }
        let stem = seg.split('.').next().unwrap_or(seg);
        if WINDOWS_RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
            return Some(format!("{seg:?} is a reserved name on Windows/SMB and Azure Files"));
        }
    }
    None
}

/// `name` made a valid Azure container name (3-63 of `a-z0-9-`, starting and ending with a
/// letter or digit, no `--`), or `None` when too little of it is left.
pub fn container_name(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out.truncate(63);
    while out.ends_with('-') {
        out.pop();
    }
    (out.len() >= 3).then_some(out)
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(layout: &Layout, key: &str, size: u64) -> String {
        match layout.place(key, size) {
            Placement::Refused(r) => r,
            other => panic!("{key:?} on {}: {other:?}", layout.kind),
        }
    }

    #[test]
    fn no_layout_lets_a_key_leave_the_root() {
        for kind in LayoutKind::ALL {
            let layout = Layout { container: Some("data".into()), ..Layout::new(kind) };
            for key in ["../../etc/passwd", "/abs", "a/../../b", "a/./b", "a//b", "a\\..\\b", "nul\0byte", ""] {
                refused(&layout, key, 1);
            }
            assert!(layout.place("a/b c/d.txt", 1).path().is_some(), "{kind}");
        }
    }

    #[test]
    fn databox_maps_the_first_folder_to_a_container_and_names_renames() {
        let disk = Layout::new(LayoutKind::DataboxDisk);
        assert_eq!(disk.place("photos/2024/a.jpg", 5), Placement::Path("BlockBlob/photos/2024/a.jpg".into()));
        let Placement::Renamed { path, reason } = disk.place("My_Photos/a.jpg", 5) else { panic!() };
        assert_eq!(path, "BlockBlob/my-photos/a.jpg");
        assert!(reason.contains("\"My_Photos\""), "{reason}");
        assert!(refused(&disk, "top.txt", 1).contains("--container"));
        assert!(refused(&disk, "ab/x", 1).contains("container"), "two letters are too short");
        assert!(refused(&disk, "ccc/name.", 1).contains("dot"));
        assert!(refused(&disk, "ccc/a:b", 1).contains("':'"));
        assert!(refused(&disk, "ccc/CON.txt", 1).contains("reserved"));
        let deep = format!("ccc/{}x", "s/".repeat(254));
        assert!(refused(&disk, &deep, 1).contains("254"));
        let page = Layout { azure_type: AzureType::PageBlob, ..disk.clone() };
        assert!(refused(&page, "disks/a.vhd", 1000).contains("512"));
        assert_eq!(page.place("disks/a.vhd", 1024), Placement::Path("PageBlob/disks/a.vhd".into()));
        let boxed = Layout { account: Some("acct".into()), container: Some("all".into()), ..Layout::new(LayoutKind::Databox) };
        assert_eq!(boxed.place("top.txt", 1), Placement::Path("acct_BlockBlob/all/top.txt".into()));
    }

    // Issue 15: the export ships its manifest generation under `ferry-manifest/` at each device
    // root; a key there would be overwritten by it, or taken for it at the ingest.
    #[test]
    fn no_layout_places_a_key_under_the_shipped_manifest() {
        for kind in [LayoutKind::Plain, LayoutKind::Snowball, LayoutKind::TransferAppliance] {
            let layout = Layout::new(kind);
            for key in ["ferry-manifest", "ferry-manifest/gen-0001/manifest.json", "Ferry-Manifest/x"] {
                assert!(refused(&layout, key, 1).contains("reserved"), "{key:?} on {kind}");
            }
            for key in ["ferry-manifest-notes.txt", "a/ferry-manifest/x"] {
                assert!(layout.place(key, 1).path().is_some(), "{key:?} on {kind}");
            }
        }
        // The Azure layouts put every blob under its storage type's folder.
        let disk = Layout::new(LayoutKind::DataboxDisk);
        assert_eq!(disk.place("ferry-manifest/x", 1), Placement::Path("BlockBlob/ferry-manifest/x".into()));
    }

    #[test]
    fn object_store_layouts_count_bytes_and_the_prefix() {
        let long = vec!["k".repeat(204); 5].join("/");
        let ta = Layout { prefix: Some("landing/2026".into()), ..Layout::new(LayoutKind::TransferAppliance) };
        assert!(refused(&ta, &long, 1).contains("including the prefix"), "1024 bytes + prefix");
        assert!(Layout::new(LayoutKind::TransferAppliance).place(&long, 1).path().is_some(), "1024 bytes alone fit");
        assert!(refused(&ta, "a\nb", 1).contains("line feeds"));
        let snow = Layout::new(LayoutKind::Snowball);
        assert!(refused(&snow, "big", 6 << 40).contains("5 TiB"));
        assert!(refused(&snow, "SHA256SUMS", 1).contains("shipment"));
        assert!(refused(&Layout::new(LayoutKind::Plain), &"n".repeat(256), 1).contains("255"));
    }

    #[test]
    fn container_names_are_made_valid_or_refused() {
        assert_eq!(container_name("Logs__2024--Q1-").as_deref(), Some("logs-2024-q1"));
        assert_eq!(container_name("data").as_deref(), Some("data"));
        assert_eq!(container_name("日本").as_deref(), None);
        assert_eq!(container_name(&"a".repeat(80)).map(|s| s.len()), Some(63));
    }
}
