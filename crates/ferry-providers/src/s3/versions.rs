//! Versions (`--all-versions`): bucket versioning asked once, every version listed with
//! ListObjectVersions (paged by key and version-id markers through the run's retry layer),
//! each read by its version id.

use super::client::*;
use super::*;
use crate::{Result, Versions, unquote};
use aws_sdk_s3::operation::list_object_versions::ListObjectVersionsOutput;
use aws_sdk_s3::types::BucketVersioningStatus;
use ferry_core::{ObjectEntry, SkipReason};

/// A page's entries of one key, newest first as S3 lists them, with whether each is the latest.
type Held = (String, Vec<(bool, ObjectEntry)>);

impl S3Provider {
    /// One page of ListObjectVersions after the markers.
    async fn versions_page(&self, markers: &(Option<String>, Option<String>)) -> Result<ListObjectVersionsOutput> {
        self.versions_page_under(&self.location.prefix, markers).await
    }

    /// One page of ListObjectVersions of the keys under the full `prefix`, after the markers.
    async fn versions_page_under(&self, prefix: &str, markers: &(Option<String>, Option<String>)) -> Result<ListObjectVersionsOutput> {
        request(&self.run, 0, || async {
            let req = self.client.list_object_versions().bucket(&self.location.bucket).prefix(prefix);
            let req = req.set_key_marker(markers.0.clone()).set_version_id_marker(markers.1.clone());
            req.send().await.map_err(|e| self.failed("list versions", &self.location.prefix, e))
        })
        .await
    }

    /// A page's versions and delete markers as entries of their keys, newest first per key.
    /// S3 lists both newest first per key but in two lists: they are merged by time, the latest
    /// first (a delete marker and a version of the same millisecond are told apart by `IsLatest`
    /// only when one of them is the latest).
    fn version_entries(&self, page: &ListObjectVersionsOutput) -> Vec<Held> {
        let prefix_len = self.location.prefix.len();
        let mut all: Vec<(String, bool, ObjectEntry)> = Vec::new();
        for v in page.versions() {
            let Some(key) = v.key().and_then(|k| k.get(prefix_len..)) else { continue };
            let entry = ObjectEntry {
                key: key.to_string(),
                size: v.size().unwrap_or(0).max(0) as u64,
                last_modified: to_chrono(v.last_modified()),
                etag: v.e_tag().map(unquote),
                version: Some(v.version_id().unwrap_or("null").to_string()),
                pinned: true,
                storage_class: Some(storage_class(v.storage_class().map(|c| c.as_str()), None, None)),
                ..Default::default()
            };
            all.push((key.to_string(), v.is_latest().unwrap_or(false), entry));
        }
        for m in page.delete_markers() {
            let Some(key) = m.key().and_then(|k| k.get(prefix_len..)) else { continue };
            let entry = ObjectEntry {
                version: Some(m.version_id().unwrap_or("null").to_string()),
                pinned: true,
                last_modified: to_chrono(m.last_modified()),
                ..ObjectEntry::skipped(key.to_string(), SkipReason::DeleteMarker)
            };
            all.push((key.to_string(), m.is_latest().unwrap_or(false), entry));
        }
        // Keys in order; in a key, the latest, then newest first. The sort is stable: S3's own
        // order stands among equals.
        all.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then_with(|| b.2.last_modified.cmp(&a.2.last_modified)));
        let mut keys: Vec<Held> = Vec::new();
        for (key, latest, entry) in all {
            match keys.last_mut() {
                Some((k, versions)) if *k == key => versions.push((latest, entry)),
                _ => keys.push((key, vec![(latest, entry)])),
            }
        }
        keys
    }
}

#[async_trait]
impl Versions for S3Provider {
    async fn keeps_versions(&self) -> Result<bool> {
        request(&self.run, 0, || async {
            match self.client.get_bucket_versioning().bucket(&self.location.bucket).send().await {
                Ok(o) => Ok(o.status() == Some(&BucketVersioningStatus::Enabled)),
                // Some S3-compatible services (moto) answer under another root element than
                // `VersioningConfiguration`, which the SDK will not parse: the answer is still
                // the `Status` inside it.
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 200) => {
                    let body = e.raw_response().and_then(|r| r.body().bytes()).unwrap_or_default();
                    Ok(String::from_utf8_lossy(body).contains("<Status>Enabled</Status>"))
                }
                Err(e) => Err(self.failed("versioning", &self.location.prefix, e)),
            }
        })
        .await
    }

    fn list_versions(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        // State: the next page's markers (`None`: the listing is over), and the key whose
        // versions may go on in the next page.
        type State = (Option<(Option<String>, Option<String>)>, Option<Held>);
        futures::stream::unfold((Some((None, None)), None), move |(markers, mut held): State| async move {
            let Some(markers) = markers else {
                // The last key's versions, oldest first.
                let (_, versions) = held?;
                return Some((Ok(versions.into_iter().rev().map(|(_, e)| e).collect()), (None, None)));
            };
            let page = match self.versions_page(&markers).await {
                Ok(page) => page,
                Err(e) => return Some((Err(e), (None, None))),
            };
            let next = match page.is_truncated() {
                Some(true) => Some((page.next_key_marker().map(str::to_string), page.next_version_id_marker().map(str::to_string))),
                _ => None,
            };
            let mut out = Vec::new();
            for (key, versions) in self.version_entries(&page) {
                match held.take() {
                    Some((k, mut before)) if k == key => {
                        before.extend(versions);
                        held = Some((k, before));
                    }
                    Some((_, before)) => {
                        out.extend(before.into_iter().rev().map(|(_, e)| e));
                        held = Some((key, versions));
                    }
                    None => held = Some((key, versions)),
                }
            }
            Some((Ok(out), (next, held)))
        })
        .boxed()
    }

    async fn head_version(&self, key: &str, version: &str) -> Result<Option<ObjectEntry>> {
        self.head_of(key, Some(version)).await
    }

    async fn get_version(&self, key: &str, version: &str, range: Option<Range<u64>>) -> Result<Fetched> {
        self.get_of(key, Some(version), range).await
    }

    async fn versions_of(&self, key: &str) -> Result<Vec<ObjectEntry>> {
        let full = self.full_key(key);
        let mut markers = (None, None);
        let mut newest_first = Vec::new();
        // Bounded: every page moves the markers on, and S3 ends a listing with no next markers.
        loop {
            let page = self.versions_page_under(&full, &markers).await?;
            for (k, versions) in self.version_entries(&page) {
                if k == key {
                    newest_first.extend(versions.into_iter().map(|(_, e)| e));
                }
            }
            match page.is_truncated() {
                Some(true) => markers = (page.next_key_marker().map(str::to_string), page.next_version_id_marker().map(str::to_string)),
                _ => break,
            }
        }
        newest_first.reverse();
        Ok(newest_first)
    }
}
