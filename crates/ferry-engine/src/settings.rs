//! The run settings a job keeps (`[settings]` in `job.toml`, never credentials), so that every
//! run of one job writes its objects the same way.
//!
//! A copy that wrote the first objects with `--sse AES256` and a resume that left the flag out
//! used to write the rest unencrypted, and `verify` could not tell. Now the first copy that
//! writes keeps every setting below (given or default); a later run that leaves a flag out
//! takes the kept value, and one that gives another value is refused before anything is
//! written (a usage error, exit 2). Two kinds of setting:
//! - how objects are written and what travels with them (`--storage-class`, `--sse`,
//!   `--sse-kms-key-id`, `--gcs-kms-key`, `--azure-encryption-scope`, `--local-metadata`,
//!   `--tags`): changing one halfway would leave a destination written two ways, so another
//!   value is refused;
//! - how archived source objects are read (`--archived`, `--restore-days`, `--restore-tier`):
//!   changing them changes nothing already written (e.g. `skip` on the first run, `restore`
//!   on the next, the natural way to get archived objects after all), so a given value is
//!   taken and kept in place of the old one.
//!
//! `--restore-wait` is how long this run waits, never kept. A job made by an older ferry has
//! no `[settings]`: its next copy keeps what it is given.

use crate::{Archived, EngineError, Result, TagsMode};
use ferry_core::{RestoreRequest, RestoreTier, Scheme};
use ferry_providers::local::LocalMetadata;
use ferry_providers::placement::{self, Sse, WriteSettings};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a command line asked for: `None` where the flag was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AskedSettings {
    pub storage_class: Option<String>,
    /// `--storage-class-map`, as [`parse_class_map`] reads it.
    pub storage_class_map: Option<Vec<(String, String)>>,
    pub sse: Option<Sse>,
    pub gcs_kms_key: Option<String>,
    pub azure_encryption_scope: Option<String>,
    pub tags: Option<TagsMode>,
    /// `--archived restore` (`true`) or `skip`.
    pub restore: Option<bool>,
    pub restore_days: Option<u32>,
    pub restore_tier: Option<RestoreTier>,
    /// Whether `--restore-wait` was given (it needs `--archived restore`, given or kept).
    pub restore_wait: bool,
    /// `--backup-to`.
    pub backup_to: Option<ferry_core::Location>,
}

/// A job's settings as one run uses them, and as `job.toml` keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// `--storage-class`, as the destination's provider spells it; `None`: its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse: Option<SseAlgorithm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sse_kms_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs_kms_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_encryption_scope: Option<String>,
    #[serde(default)]
    pub local_metadata: LocalMetadataSetting,
    #[serde(default)]
    pub tags: TagsMode,
    /// `--archived restore` with these days and tier; `None`: `--archived skip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreRequest>,
    /// `--backup-to`: where what a write replaces is kept (a location URL, never a credential:
    /// a URL with one is refused when parsed). Given, it is taken and kept; left out, the kept
    /// one goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_to: Option<String>,
    /// `--storage-class-map`: a source class (the source provider's spelling) to the class its
    /// objects are written in (the destination's); an unmapped class gets `storage_class`.
    /// Last: a TOML table.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage_class_map: BTreeMap<String, String>,
}

/// `--sse` as kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SseAlgorithm {
    #[serde(rename = "AES256")]
    Aes256,
    #[serde(rename = "aws:kms")]
    AwsKms,
}

/// `--local-metadata` as kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LocalMetadataSetting {
    #[default]
    None,
    Xattr,
    Sidecar,
}

impl From<LocalMetadata> for LocalMetadataSetting {
    fn from(m: LocalMetadata) -> Self {
        match m {
            LocalMetadata::None => Self::None,
            LocalMetadata::Xattr => Self::Xattr,
            LocalMetadata::Sidecar => Self::Sidecar,
        }
    }
}

impl From<LocalMetadataSetting> for LocalMetadata {
    fn from(m: LocalMetadataSetting) -> Self {
        match m {
            LocalMetadataSetting::None => Self::None,
            LocalMetadataSetting::Xattr => Self::Xattr,
            LocalMetadataSetting::Sidecar => Self::Sidecar,
        }
    }
}

impl Settings {
    /// `--backup-to`, as a location.
    pub fn backup_to(&self) -> Result<Option<ferry_core::Location>> {
        self.backup_to.as_deref().map(ferry_core::Location::parse).transpose().map_err(EngineError::from)
    }

    /// The S3 encryption these settings ask for.
    pub fn sse(&self) -> Option<Sse> {
        match self.sse? {
            SseAlgorithm::Aes256 => Some(Sse::Aes256),
            SseAlgorithm::AwsKms => Some(Sse::Kms { key_id: self.sse_kms_key_id.clone() }),
        }
    }

    /// What every write to the destination carries.
    pub fn write(&self) -> WriteSettings {
        WriteSettings {
            storage_class: self.storage_class.clone(),
            sse: self.sse(),
            gcs_kms_key: self.gcs_kms_key.clone(),
            azure_encryption_scope: self.azure_encryption_scope.clone(),
        }
    }

    /// `--archived` as a copy takes it.
    pub fn archived(&self) -> Archived {
        self.restore.map_or(Archived::Skip, Archived::Restore)
    }

    /// The settings a run of a job writing to a `destination` uses: what `asked` gives, checked
    /// against the destination's provider, and what the job `kept` (if any run kept settings)
    /// for the rest; `local_metadata` is the one `--local-metadata` already settled (see
    /// [`settle_local_metadata`]). Refused (a usage error, nothing written) where `asked`
    /// contradicts a kept setting that shapes the destination.
    pub fn settle(
        kept: Option<&Settings>,
        asked: &AskedSettings,
        (source, destination): (Scheme, Scheme),
        local_metadata: LocalMetadata,
    ) -> Result<Settings> {
        let setting = EngineError::WriteSetting;
        let map = match &asked.storage_class_map {
            None => None,
            Some(pairs) => {
                let mut map = BTreeMap::new();
                for (from, to) in pairs {
                    let from = placement::class_of(source, from, "--storage-class-map", "source").map_err(setting)?;
                    let to = placement::class_of(destination, to, "--storage-class-map", "destination").map_err(setting)?;
                    if map.insert(from.clone(), to.clone()).is_some_and(|was| was != to) {
                        return Err(setting(format!("--storage-class-map: {from} is mapped twice")));
                    }
                }
                Some(map)
            }
        };
        let show_map = |m: &BTreeMap<String, String>| {
            Some(m.iter().map(|(from, to)| format!("{from}={to}")).collect::<Vec<_>>().join(",")).filter(|s| !s.is_empty())
        };
        let storage_class_map =
            keep_shown("--storage-class-map", kept.map(|s| s.storage_class_map.clone()), map, show_map)?.unwrap_or_default();
        let storage_class =
            asked.storage_class.as_deref().map(|c| placement::storage_class_for(destination, c)).transpose().map_err(setting)?;
        let sse = asked.sse.clone().map(|s| placement::sse_for(destination, s)).transpose().map_err(setting)?;
        if asked.gcs_kms_key.is_some() {
            placement::only_for(destination, Scheme::Gcs, "--gcs-kms-key").map_err(setting)?;
        }
        if asked.azure_encryption_scope.is_some() {
            placement::only_for(destination, Scheme::Azure, "--azure-encryption-scope").map_err(setting)?;
        }
        let k = |f: fn(&Settings) -> Option<String>| kept.map(f);
        let storage_class = keep("--storage-class", k(|s| s.storage_class.clone()), storage_class.map(Some))?;
        let asked_sse = sse.map(|s| match s {
            Sse::Aes256 => (SseAlgorithm::Aes256, None),
            Sse::Kms { key_id } => (SseAlgorithm::AwsKms, key_id),
        });
        let kept_sse = kept.map(|s| s.sse.map(|a| (a, s.sse_kms_key_id.clone())));
        let sse = keep_shown("--sse", kept_sse, asked_sse.map(Some), show_sse)?.flatten();
        let gcs_kms_key = keep("--gcs-kms-key", k(|s| s.gcs_kms_key.clone()), asked.gcs_kms_key.clone().map(Some))?;
        let azure_encryption_scope =
            keep("--azure-encryption-scope", k(|s| s.azure_encryption_scope.clone()), asked.azure_encryption_scope.clone().map(Some))?;
        let tags = keep_shown("--tags", kept.map(|s| s.tags), asked.tags, |t| Some(format!("{t:?}").to_lowercase()))?;

        // How archived objects are read: what is given wins (and is kept), the rest as kept.
        let kept_restore = kept.and_then(|s| s.restore);
        let restore = match asked.restore.unwrap_or(kept_restore.is_some()) {
            false => None,
            true => {
                let base = kept_restore.unwrap_or(RestoreRequest { days: 1, tier: RestoreTier::Standard });
                Some(RestoreRequest { days: asked.restore_days.unwrap_or(base.days), tier: asked.restore_tier.unwrap_or(base.tier) })
            }
        };
        if restore.is_none() {
            let given = [
                ("--restore-days", asked.restore_days.is_some()),
                ("--restore-tier", asked.restore_tier.is_some()),
                ("--restore-wait", asked.restore_wait),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
                let why = if asked.restore.is_some() { "" } else { " (this job skips archived objects)" };
                return Err(EngineError::WriteSetting(format!("{flag} applies only with --archived restore{why}")));
            }
        }
        let (sse, sse_kms_key_id) = sse.map_or((None, None), |(a, key)| (Some(a), key));
        Ok(Settings {
            storage_class,
            sse,
            sse_kms_key_id,
            gcs_kms_key,
            azure_encryption_scope,
            local_metadata: local_metadata.into(),
            tags: tags.unwrap_or_default(),
            restore,
            backup_to: asked.backup_to.as_ref().map(|l| l.to_string()).or_else(|| kept.and_then(|k| k.backup_to.clone())),
            storage_class_map,
        })
    }
}

/// Reads `--storage-class-map SRC=DST[,SRC=DST…]` (checked against the providers by
/// [`Settings::settle`]), or says why it cannot.
pub fn parse_class_map(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .map(|pair| match pair.split_once('=') {
            Some((from, to)) if !from.trim().is_empty() && !to.trim().is_empty() => Ok((from.trim().to_string(), to.trim().to_string())),
            _ => Err(format!("--storage-class-map: {:?} is not SRC=DST (e.g. GLACIER_IR=Archive,STANDARD=Hot)", pair.trim())),
        })
        .collect()
}

/// `--local-metadata` for any command on a job: the one given, else the one kept, else none;
/// refused where it contradicts the kept one (a local side read or written another way).
pub fn settle_local_metadata(kept: Option<&Settings>, asked: Option<LocalMetadata>) -> Result<LocalMetadata> {
    let show = |m: &LocalMetadataSetting| Some(format!("{m:?}").to_lowercase());
    let m = keep_shown("--local-metadata", kept.map(|s| s.local_metadata), asked.map(LocalMetadataSetting::from), show)?;
    Ok(m.unwrap_or_default().into())
}

fn show_sse(s: &Option<(SseAlgorithm, Option<String>)>) -> Option<String> {
    let (algorithm, key) = s.as_ref()?;
    let algorithm = match algorithm {
        SseAlgorithm::Aes256 => "AES256",
        SseAlgorithm::AwsKms => "aws:kms",
    };
    Some(match key {
        Some(key) => format!("{algorithm} --sse-kms-key-id {key}"),
        None => algorithm.to_string(),
    })
}

/// A setting whose value is the flag's text (`None`: not given, the default).
fn keep(flag: &'static str, kept: Option<Option<String>>, asked: Option<Option<String>>) -> Result<Option<String>> {
    Ok(keep_shown(flag, kept, asked, |v: &Option<String>| v.clone())?.flatten())
}

/// The value a run uses of a setting that shapes the destination: the one `asked`, else the
/// one `kept`, else `None` (the default); refused where both are there and differ. `show`
/// says a value the way the flag takes it (`None`: the flag was not given).
fn keep_shown<T: PartialEq>(
    flag: &'static str,
    kept: Option<T>,
    asked: Option<T>,
    show: impl Fn(&T) -> Option<String>,
) -> Result<Option<T>> {
    match (kept, asked) {
        (Some(kept), Some(asked)) if kept != asked => {
            let given = show(&asked).map_or_else(|| flag.to_string(), |v| format!("{flag} {v}"));
            let was = show(&kept).map_or_else(|| format!("without {flag}"), |v| format!("with {flag} {v}"));
            Err(EngineError::SettingChanged { given, was })
        }
        (_, Some(asked)) => Ok(Some(asked)),
        (kept, None) => Ok(kept),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aes() -> AskedSettings {
        AskedSettings { sse: Some(Sse::Aes256), storage_class: Some("standard_ia".into()), ..Default::default() }
    }

    #[test]
    fn a_left_out_flag_takes_the_kept_value_and_another_value_is_refused() {
        let first = Settings::settle(None, &aes(), (Scheme::S3, Scheme::S3), LocalMetadata::None).unwrap();
        assert_eq!((first.sse, first.storage_class.as_deref()), (Some(SseAlgorithm::Aes256), Some("STANDARD_IA")));
        let resumed = Settings::settle(Some(&first), &AskedSettings::default(), (Scheme::S3, Scheme::S3), LocalMetadata::None).unwrap();
        assert_eq!(resumed, first);
        // The same value in another case is the same value.
        assert_eq!(Settings::settle(Some(&first), &aes(), (Scheme::S3, Scheme::S3), LocalMetadata::None).unwrap(), first);
        let kms = AskedSettings { sse: Some(Sse::Kms { key_id: Some("k".into()) }), ..Default::default() };
        let err = Settings::settle(Some(&first), &kms, (Scheme::S3, Scheme::S3), LocalMetadata::None).unwrap_err();
        assert!(err.is_usage());
        assert_eq!(err.to_string().lines().count(), 1);
        assert!(err.to_string().starts_with("--sse aws:kms --sse-kms-key-id k: this job was first copied with --sse AES256"), "{err}");
        // Kept without a flag: giving it is a contradiction too.
        let plain = Settings::settle(None, &AskedSettings::default(), (Scheme::S3, Scheme::S3), LocalMetadata::None).unwrap();
        let err = Settings::settle(Some(&plain), &aes(), (Scheme::S3, Scheme::S3), LocalMetadata::None).unwrap_err().to_string();
        assert!(err.contains("first copied without --storage-class"), "{err}");
        let skip = AskedSettings { tags: Some(TagsMode::Skip), ..Default::default() };
        assert!(Settings::settle(Some(&plain), &skip, (Scheme::S3, Scheme::S3), LocalMetadata::None).is_err());
        assert!(settle_local_metadata(Some(&plain), Some(LocalMetadata::Sidecar)).is_err());
        assert_eq!(settle_local_metadata(Some(&first), None).unwrap(), LocalMetadata::None);
    }

    #[test]
    fn archived_settings_follow_the_latest_run_and_restore_flags_need_restore() {
        let restore = AskedSettings { restore: Some(true), restore_tier: Some(RestoreTier::Bulk), ..Default::default() };
        let first = Settings::settle(None, &restore, (Scheme::S3, Scheme::S3), LocalMetadata::None).unwrap();
        assert_eq!(first.restore, Some(RestoreRequest { days: 1, tier: RestoreTier::Bulk }));
        let days = AskedSettings { restore_days: Some(3), restore_wait: true, ..Default::default() };
        let next = Settings::settle(Some(&first), &days, (Scheme::S3, Scheme::S3), LocalMetadata::None).unwrap();
        assert_eq!(next.restore, Some(RestoreRequest { days: 3, tier: RestoreTier::Bulk }));
        let skip = AskedSettings { restore: Some(false), ..Default::default() };
        assert_eq!(Settings::settle(Some(&next), &skip, (Scheme::S3, Scheme::S3), LocalMetadata::None).unwrap().restore, None);
        for asked in [
            AskedSettings { restore_days: Some(3), ..Default::default() },
            AskedSettings { restore_tier: Some(RestoreTier::Expedited), restore: Some(false), ..Default::default() },
            AskedSettings { restore_wait: true, ..Default::default() },
        ] {
            let err = Settings::settle(None, &asked, (Scheme::S3, Scheme::S3), LocalMetadata::None).unwrap_err();
            assert!(err.to_string().contains("applies only with --archived restore"), "{err}");
        }
    }

    #[test]
    fn a_class_map_is_checked_against_both_providers_and_kept() {
        let pairs = parse_class_map("glacier_ir=archive, STANDARD_IA = Cool,STANDARD=Hot").unwrap();
        let asked = AskedSettings { storage_class_map: Some(pairs), ..Default::default() };
        let s = Settings::settle(None, &asked, (Scheme::S3, Scheme::Azure), LocalMetadata::None).unwrap();
        let want = [("GLACIER_IR", "Archive"), ("STANDARD", "Hot"), ("STANDARD_IA", "Cool")];
        assert_eq!(s.storage_class_map, want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<BTreeMap<_, _>>());
        assert_eq!(toml::from_str::<Settings>(&toml::to_string(&s).unwrap()).unwrap(), s);
        let resumed = Settings::settle(Some(&s), &AskedSettings::default(), (Scheme::S3, Scheme::Azure), LocalMetadata::None).unwrap();
        assert_eq!(resumed.storage_class_map, s.storage_class_map);
        let other = AskedSettings { storage_class_map: Some(parse_class_map("STANDARD=Cool").unwrap()), ..Default::default() };
        let err = Settings::settle(Some(&s), &other, (Scheme::S3, Scheme::Azure), LocalMetadata::None).unwrap_err().to_string();
        assert!(
            err.starts_with("--storage-class-map STANDARD=Cool: this job was first copied with --storage-class-map GLACIER_IR=Archive,"),
            "{err}"
        );
        for (text, scheme, says) in [
            ("STANDARD=NEARLINE", Scheme::Azure, "--storage-class-map NEARLINE: not an Azure access tier"),
            ("Hot=Cool", Scheme::Azure, "--storage-class-map Hot: not an S3 storage class"),
            ("STANDARD=Cool,standard=Hot", Scheme::Azure, "STANDARD is mapped twice"),
            ("STANDARD=STANDARD", Scheme::Local, "--storage-class-map does not apply to a local destination"),
        ] {
            let asked = AskedSettings { storage_class_map: Some(parse_class_map(text).unwrap()), ..Default::default() };
            let err = Settings::settle(None, &asked, (Scheme::S3, scheme), LocalMetadata::None).unwrap_err().to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
        for bad in ["STANDARD", "=Hot", "STANDARD=", "A=B,,C=D"] {
            assert!(parse_class_map(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kept_settings_read_back_from_toml() {
        let s = Settings {
            storage_class: Some("GLACIER_IR".into()),
            sse: Some(SseAlgorithm::AwsKms),
            sse_kms_key_id: Some("alias/x".into()),
            local_metadata: LocalMetadataSetting::Sidecar,
            tags: TagsMode::Skip,
            restore: Some(RestoreRequest { days: 2, tier: RestoreTier::Bulk }),
            ..Default::default()
        };
        let text = toml::to_string(&s).unwrap();
        assert!(text.contains("sse = \"aws:kms\"") && text.contains("local_metadata = \"sidecar\""), "{text}");
        assert_eq!(toml::from_str::<Settings>(&text).unwrap(), s);
        assert_eq!(toml::from_str::<Settings>("").unwrap(), Settings::default());
    }
}
