//! Versions (`--all-versions`): object versioning read from the bucket (`versioning.enabled`),
//! every generation listed with `versions=true`, each read by its `generation`. GCS has no
//! delete markers: a deleted object's generations stay, noncurrent.

use super::multipart::part_object;
use super::*;
use crate::{Result, Versions};
use futures::StreamExt;

/// A key and its generations listed so far, as (generation, entry).
type Held = (String, Vec<(u64, ObjectEntry)>);

/// A key's generations oldest first (generations grow with each write of a name).
fn oldest_first((_, mut generations): Held) -> impl Iterator<Item = ObjectEntry> {
    generations.sort_by_key(|(generation, _)| *generation);
    generations.into_iter().map(|(_, e)| e)
}

#[async_trait]
impl Versions for GcsProvider {
    async fn keeps_versions(&self) -> Result<bool> {
        let c = &self.client;
        let url = format!("{}/storage/v1/b/{}", c.base, enc(&c.bucket));
        let resp = c.send("get bucket", "", || c.http.get(&url)).await?;
        let bucket: serde_json::Value = c.json("get bucket", "", resp).await?;
        Ok(bucket["versioning"]["enabled"].as_bool() == Some(true))
    }

    fn list_versions(&self) -> BoxStream<'_, Result<Vec<ObjectEntry>>> {
        let prefix = self.location.prefix.as_str();
        // State: the next page's token (`None`: the listing is over) and the key whose
        // generations may go on in the next page.
        type State = (Option<Option<String>>, Option<Held>);
        futures::stream::unfold((Some(None), None), move |(token, mut held): State| async move {
            let Some(token) = token else {
                return Some((Ok(oldest_first(held?).collect()), (None, None)));
            };
            let page = match self.client.list_versions_page(prefix, token.as_deref()).await {
                Ok(page) => page,
                Err(e) => return Some((Err(e), (None, None))),
            };
            let next = page.next_page_token.map(Some);
            let mut out = Vec::new();
            for o in page.items {
                let Some(key) = o.name.get(prefix.len()..).map(str::to_string) else { continue };
                let generation = o.generation.as_deref().and_then(|g| g.parse::<u64>().ok()).unwrap_or(0);
                let entry = match part_object(&o.name) {
                    Some(_) => ObjectEntry::skipped(key.clone(), ferry_core::SkipReason::FerryTempFile),
                    None => o.entry(key.clone()),
                };
                let entry = ObjectEntry { pinned: true, ..entry };
                match held.take() {
                    Some((k, mut before)) if k == key => {
                        before.push((generation, entry));
                        held = Some((k, before));
                    }
                    Some(done) => {
                        out.extend(oldest_first(done));
                        held = Some((key, vec![(generation, entry)]));
                    }
                    None => held = Some((key, vec![(generation, entry)])),
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
        let full = format!("{}{key}", self.location.prefix);
        let mut generations: Vec<(u64, ObjectEntry)> = Vec::new();
        let mut token: Option<String> = None;
        // Bounded: every page gives the next token, and the last none.
        loop {
            let page = self.client.list_versions_page(&full, token.as_deref()).await?;
            let next = page.next_page_token;
            for o in page.items.into_iter().filter(|o| o.name == full) {
                let generation = o.generation.as_deref().and_then(|g| g.parse::<u64>().ok()).unwrap_or(0);
                generations.push((generation, ObjectEntry { pinned: true, ..o.entry(key.to_string()) }));
            }
            match next {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        Ok(oldest_first((key.to_string(), generations)).collect())
    }
}
