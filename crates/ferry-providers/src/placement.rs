//! How the destination stores what ferry writes: the storage class (S3), class (GCS) or access
//! tier (Azure) asked with `--storage-class`, and S3 server-side encryption (`--sse`). Checked against the destination's provider before
//! anything is written, so a misspelt class is one usage error, not a failure per object.

use ferry_core::Scheme;

/// Settings every write to the destination carries (put, multipart start, server copy).
/// Given on the destination's [`Connect`](crate::Connect) only; the source's stays default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSettings {
    /// The class to write in, as the provider names it (checked by [`storage_class_for`]);
    /// `None`: the destination's default class.
    pub storage_class: Option<String>,
    /// S3 server-side encryption every write asks for (checked by [`sse_for`]); `None`: the
    /// bucket's default encryption.
    pub sse: Option<Sse>,
    /// GCS: the Cloud KMS key (`projects/…/cryptoKeys/…`) objects are encrypted with
    /// (`--gcs-kms-key`, the upload's `kmsKeyName`); `None`: the bucket's default.
    pub gcs_kms_key: Option<String>,
    /// Azure: the encryption scope blobs are written in (`--azure-encryption-scope`,
    /// `x-ms-encryption-scope`); `None`: the container's default.
    pub azure_encryption_scope: Option<String>,
}

/// S3 server-side encryption on write (`--sse`, `--sse-kms-key-id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// SSE-S3: `AES256`, keys S3 manages.
    Aes256,
    /// SSE-KMS: `aws:kms` with this key (`None`: the account's AWS-managed key). The ETag of
    /// such an object is not the MD5 of its bytes: the proof is its CRC.
    Kms { key_id: Option<String> },
}

impl Sse {
    /// How the report names it (a key id or ARN names a key, it is no secret).
    pub fn describe(&self) -> String {
        match self {
            Sse::Aes256 => "AES256".into(),
            Sse::Kms { key_id: None } => "aws:kms".into(),
            Sse::Kms { key_id: Some(key) } => format!("aws:kms (key {key})"),
        }
    }
}

/// Refuses `flag`, which only a destination of `wanted` has, for one of `scheme`.
pub fn only_for(scheme: Scheme, wanted: Scheme, flag: &str) -> Result<(), String> {
    let name = match wanted {
        Scheme::S3 => "an S3",
        Scheme::Gcs => "a GCS",
        Scheme::Azure => "an Azure",
        Scheme::Local => "a local",
    };
    if scheme == wanted { Ok(()) } else { Err(format!("{flag} applies to {name} destination only")) }
}

/// `sse` for a destination of `scheme`, or a one-line reason it is refused: only S3 has it
/// (GCS and Azure encrypt with their own keys unless told otherwise).
pub fn sse_for(scheme: Scheme, sse: Sse) -> Result<Sse, String> {
    only_for(scheme, Scheme::S3, "--sse").map(|()| sse)
}

const S3_CLASSES: &[&str] = &[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
    "OUTPOSTS",
    "SNOW",
    "EXPRESS_ONEZONE",
];
const GCS_CLASSES: &[&str] = &["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE", "MULTI_REGIONAL", "REGIONAL", "DURABLE_REDUCED_AVAILABILITY"];
const AZURE_TIERS: &[&str] = &["Hot", "Cool", "Cold", "Archive"];

/// The provider's own spelling of `asked` (case does not matter) for a destination of
/// `scheme`, or a one-line reason it is refused.
pub fn storage_class_for(scheme: Scheme, asked: &str) -> Result<String, String> {
    class_of(scheme, asked, "--storage-class", "destination")
}

/// The provider's own spelling of class `asked` (case does not matter) on a `side`
/// (`source`, `destination`) of `scheme`, or a one-line reason, naming `flag`, it is refused.
pub fn class_of(scheme: Scheme, asked: &str, flag: &str, side: &str) -> Result<String, String> {
    let (known, what): (&[&str], &str) = match scheme {
        Scheme::S3 => (S3_CLASSES, "an S3 storage class"),
        Scheme::Gcs => (GCS_CLASSES, "a GCS storage class"),
        Scheme::Azure => (AZURE_TIERS, "an Azure access tier"),
        Scheme::Local => return Err(format!("{flag} does not apply to a local {side}")),
    };
    known
        .iter()
        .find(|k| k.eq_ignore_ascii_case(asked))
        .map(|k| k.to_string())
        .ok_or_else(|| format!("{flag} {asked}: not {what}; one of {}", known.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_checked_per_provider_and_spelt_its_way() {
        assert_eq!(storage_class_for(Scheme::S3, "standard_ia"), Ok("STANDARD_IA".into()));
        assert_eq!(storage_class_for(Scheme::Gcs, "nearline"), Ok("NEARLINE".into()));
        assert_eq!(storage_class_for(Scheme::Azure, "COOL"), Ok("Cool".into()));
        // A class of another provider is refused, naming the ones this one has.
        let e = storage_class_for(Scheme::S3, "NEARLINE").unwrap_err();
        assert!(e.contains("not an S3 storage class") && e.contains("GLACIER_IR"), "{e}");
        assert!(storage_class_for(Scheme::Azure, "STANDARD_IA").is_err());
        assert!(storage_class_for(Scheme::Gcs, "Hot").is_err());
        assert!(storage_class_for(Scheme::Local, "STANDARD").unwrap_err().contains("local destination"));
    }

    #[test]
    fn sse_is_for_s3_destinations_only() {
        assert_eq!(sse_for(Scheme::S3, Sse::Aes256), Ok(Sse::Aes256));
        for other in [Scheme::Gcs, Scheme::Azure, Scheme::Local] {
            assert_eq!(sse_for(other, Sse::Aes256), Err("--sse applies to an S3 destination only".into()));
        }
        assert_eq!(only_for(Scheme::S3, Scheme::Gcs, "--gcs-kms-key"), Err("--gcs-kms-key applies to a GCS destination only".into()));
        assert_eq!(only_for(Scheme::Azure, Scheme::Azure, "--azure-encryption-scope"), Ok(()));
        assert_eq!(Sse::Kms { key_id: Some("k-1".into()) }.describe(), "aws:kms (key k-1)");
    }
}
