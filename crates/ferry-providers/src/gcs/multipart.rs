//! Parallel composite uploads: part objects, composed 32 at a time, checked and cleaned.

use crate::{Multipart, MultipartUpload, PartReceipt, ProviderError, PutAttrs, PutReceipt, Result};
use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;

use super::client::*;
use super::*;
use crate::TEMP_MARK;

/// GCS composes at most 32 sources per call.
const COMPOSE_FANIN: usize = 32;

#[async_trait]
impl Multipart for GcsProvider {
    async fn start(&self, key: &str, attrs: &PutAttrs, _size: u64, id: &str) -> Result<Box<dyn MultipartUpload>> {
        Ok(Box::new(self.upload(key, id, attrs, Vec::new())))
    }

    /// Part objects are the upload's state: those that exist (with their CRC32C) are held.
    async fn resume(
        &self,
        key: &str,
        upload_id: &str,
        attrs: &PutAttrs,
        _size: u64,
        _recorded: &[PartReceipt],
    ) -> Result<Option<(Box<dyn MultipartUpload>, Vec<PartReceipt>)>> {
        let upload = self.upload(key, upload_id, attrs, Vec::new());
        let prefix = upload.temp_name("");
        let found = self.client.list_prefix(&prefix).await?;
        let mut held = Vec::new();
        let mut names = Vec::new();
        for o in found {
            names.push(o.name.clone());
            let index = o.name.strip_prefix(&prefix).and_then(|s| s.parse::<u32>().ok());
            let crc = b64_to_hex(o.crc32c.as_deref()).and_then(|h| u32::from_str_radix(&h, 16).ok());
            if let (Some(index), Some(crc32c), Some(size)) = (index, crc, o.size.as_deref().and_then(|s| s.parse().ok())) {
                held.push(PartReceipt { index, id: o.name, size, crc32c });
            }
        }
        held.sort_by_key(|p| p.index);
        let upload = self.upload(key, upload_id, attrs, names);
        Ok(Some((Box::new(upload), held)))
    }

    /// Part objects under the prefix, grouped by upload.
    async fn stale_uploads(&self, before: DateTime<Utc>) -> Result<Vec<crate::OpenUpload>> {
        let pages: Vec<Vec<crate::OpenUpload>> = self.stale_upload_pages(before).try_collect().await?;
        Ok(pages.into_iter().flatten().collect())
    }

    /// Part objects under the prefix, grouped by upload, a listing page at a time. A listing is
    /// in name order and an upload's part objects share a name prefix, so they come together:
    /// only the upload the page ended in is held over to the next page.
    fn stale_upload_pages(&self, before: DateTime<Utc>) -> BoxStream<'_, Result<Vec<crate::OpenUpload>>> {
        struct Listing {
            token: Option<String>,
            open: Option<crate::OpenUpload>,
            done: bool,
        }
        let prefix = self.location.prefix.as_str();
        futures::stream::unfold(Listing { token: None, open: None, done: false }, move |mut at| async move {
            if at.done {
                return None;
            }
            let page = match self.client.list_page(prefix, at.token.as_deref()).await {
                Ok(page) => page,
                Err(e) => {
                    at.done = true;
                    return Some((Err(e), at));
                }
            };
            let mut out = Vec::new();
            for o in page.items {
                // Any other name after an upload's parts means they have all been listed.
                let Some((dest, id)) = part_object(&o.name) else {
                    out.extend(at.open.take());
                    continue;
                };
                let key = dest.get(prefix.len()..).unwrap_or(dest);
                let created = o.time_created.or(o.updated);
                match &mut at.open {
                    Some(u) if u.key == key && u.upload_id == id => u.initiated = u.initiated.min(created),
                    open => {
                        let next = crate::OpenUpload { key: key.to_string(), upload_id: id.to_string(), initiated: created };
                        out.extend(open.replace(next));
                    }
                }
            }
            match page.next_page_token {
                Some(token) => at.token = Some(token),
                None => {
                    at.done = true;
                    out.extend(at.open.take());
                }
            }
            out.retain(|u| u.initiated.is_none_or(|t| t < before));
            Some((Ok(out), at))
        })
        .boxed()
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<()> {
        let upload = self.upload(key, upload_id, &PutAttrs::default(), Vec::new());
        let names = self.client.list_prefix(&upload.temp_name("")).await?.into_iter().map(|o| o.name).collect();
        *upload.parts.lock().expect("parts lock") = names;
        upload.delete_temps().await
    }
}

impl GcsProvider {
    fn upload(&self, key: &str, id: &str, attrs: &PutAttrs, existing: Vec<String>) -> GcsUpload {
        GcsUpload {
            client: self.client.clone(),
            dest: self.location.key_for(key),
            key: key.to_string(),
            id: id.to_string(),
            attrs: attrs.clone(),
            parts: Arc::new(std::sync::Mutex::new(existing)),
        }
    }
}

/// The upload a name belongs to when it is one of ferry's part objects: `DEST.ferry-tmp-ID-PART`,
/// ID the upload's 32 hex digits, gives `(DEST, ID)`. A user's `report.ferry-tmp-2024.csv` is
/// not one: listings copy it and `clean` never aborts it.
pub(super) fn part_object(name: &str) -> Option<(&str, &str)> {
    let (dest, rest) = name.rsplit_once(TEMP_MARK)?;
    let (id, part) = rest.split_once('-')?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !part.is_empty()).then_some((dest, id))
}

struct GcsUpload {
    client: Client,
    dest: String,
    key: String,
    id: String,
    attrs: PutAttrs,
    /// Every temporary object created so far, for cleanup.
    parts: Arc<std::sync::Mutex<Vec<String>>>,
}

impl GcsUpload {
    fn temp_name(&self, suffix: &str) -> String {
        format!("{}{TEMP_MARK}{}-{suffix}", self.dest, self.id)
    }

    async fn delete_temps(&self) -> Result<()> {
        let names = std::mem::take(&mut *self.parts.lock().expect("parts lock"));
        let results: Vec<Result<()>> =
            futures::stream::iter(names).map(|n| async move { self.client.delete(&n).await }).buffer_unordered(16).collect().await;
        results.into_iter().collect()
    }
}

#[async_trait]
impl MultipartUpload for GcsUpload {
    fn upload_id(&self) -> Option<String> {
        Some(self.id.clone())
    }

    fn put_part(&mut self, index: u32, _offset: u64, data: Bytes, crc32c: u32) -> BoxFuture<'static, Result<PartReceipt>> {
        let name = self.temp_name(&format!("{index:05}"));
        {
            let mut parts = self.parts.lock().expect("parts lock");
            if !parts.contains(&name) {
                parts.push(name.clone());
            }
        }
        let client = self.client.clone();
        Box::pin(async move {
            let size = data.len() as u64;
            let o = client.upload_media(&name, data).await?;
            stored_as_sent(&o, crc32c, "upload part", &name)?;
            Ok(PartReceipt { index, id: name, size, crc32c })
        })
    }

    async fn complete(self: Box<Self>, parts: Vec<PartReceipt>) -> Result<PutReceipt> {
        let expected = parts.iter().fold((0u32, 0u64), |(crc, len), p| {
            (if len == 0 { p.crc32c } else { ferry_core::crc32c_combine(crc, p.crc32c, p.size) }, len + p.size)
        });
        let mut names: Vec<String> = parts.into_iter().map(|p| p.id).collect();
        let mut round = 0;
        let result = async {
            while names.len() > COMPOSE_FANIN {
                round += 1;
                let mut next = Vec::new();
                for (i, group) in names.chunks(COMPOSE_FANIN).enumerate() {
                    let name = self.temp_name(&format!("c{round}-{i:05}"));
                    self.parts.lock().expect("parts lock").push(name.clone());
                    self.client.compose(&name, group, None).await?;
                    next.push(name);
                }
                names = next;
            }
            let o = self.client.compose(&self.dest, &names, Some(&self.attrs)).await?;
            let want = ferry_core::digest::crc32c_hex(expected.0);
            match b64_to_hex(o.crc32c.as_deref()) {
                Some(got) if got != want => Err(ProviderError::corrupted(
                    PROVIDER,
                    "compose",
                    self.key.clone(),
                    format!("composite crc32c {got} differs from the parts' combined {want}"),
                )),
                _ => Ok(PutReceipt { etag: o.etag, version: o.generation }),
            }
        }
        .await;
        let cleanup = self.delete_temps().await;
        let receipt = result?;
        cleanup?;
        Ok(receipt)
    }

    async fn abort(self: Box<Self>) -> Result<()> {
        self.delete_temps().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 12, case 4: only ferry's own part objects are set aside, never a user's look-alike.
    #[test]
    fn part_objects_are_ferrys_own_only() {
        let id = "3f2a9c0d1e2b4a5f8e7d6c5b4a392817";
        assert_eq!(part_object(&format!("dir/big.bin.ferry-tmp-{id}-00001")), Some(("dir/big.bin", id)));
        assert_eq!(part_object(&format!("dir/big.bin.ferry-tmp-{id}-c1-00002")), Some(("dir/big.bin", id)));
        for theirs in ["report.ferry-tmp-2024.csv", "report.ferry-tmp-2024-x.csv", "a.ferry-tmp-", "x.ferry-tmp-zz-1", "plain.txt"] {
            assert_eq!(part_object(theirs), None, "{theirs}");
        }
    }
}
